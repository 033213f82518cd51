//! Helpers shared by the integration tests: temporary warehouses, source files, and running the
//! real `goalcast` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use goalcast::context::{ContextOptions, build_context};
use goalcast::import::time::TimeFormat;
use goalcast::import::{EventMapping, EventNameSource, SourceOptions};
use goalcast::warehouse::Warehouse;

/// Returns the Parquet file of the CDNOW source rows, duplicates included.
pub fn cdnow_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cdnow_master.parquet")
}

/// A warehouse in a temporary folder, removed on drop.
pub struct TempWarehouse {
    pub dir: tempfile::TempDir,
    pub warehouse: Warehouse,
}

impl TempWarehouse {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("goalcast-test")
            .tempdir()
            .unwrap();
        let warehouse = Warehouse::open(dir.path().join("wh").to_str().unwrap(), true).unwrap();
        TempWarehouse { dir, warehouse }
    }

    /// Returns the warehouse folder.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("wh")
    }

    /// Writes `contents` to a file named `name` beside the warehouse and returns its path.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Writes `batch` as a Parquet file named `name` beside the warehouse.
    pub fn parquet(&self, name: &str, batch: &RecordBatch) -> PathBuf {
        let path = self.dir.path().join(name);
        let file = std::fs::File::create(&path).unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        writer.write(batch).unwrap();
        writer.close().unwrap();
        path
    }

    /// Runs a query and returns the results.
    pub async fn query(&self, sql: &str) -> Vec<RecordBatch> {
        let ctx = build_context(&self.warehouse, &ContextOptions::default())
            .await
            .unwrap();
        goalcast::query::collect_read_only(&ctx, &self.warehouse, sql)
            .await
            .unwrap()
    }

    /// Runs a query that returns one BIGINT and returns it.
    pub async fn count(&self, sql: &str) -> i64 {
        let batches = self.query(sql).await;
        batches[0].column(0).as_primitive::<Int64Type>().value(0)
    }

    /// Runs a query that returns one BIGINT, outside any async runtime.
    pub fn count_sync(&self, sql: &str) -> i64 {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(self.count(sql))
    }

    /// Runs a query and renders each row as its trimmed cells joined by `|`, for exact
    /// comparisons.
    pub async fn rows(&self, sql: &str) -> Vec<String> {
        let batches = self.query(sql).await;
        let text = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        text.lines()
            .filter(|line| line.starts_with('|'))
            .skip(1)
            .map(|line| {
                let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
                cells.join("|")
            })
            .collect()
    }

    /// Runs the `goalcast` binary on this warehouse.
    pub fn run(&self, args: &[&str]) -> Output {
        goalcast_command(args)
            .arg("--warehouse")
            .arg(self.root())
            .output()
            .unwrap()
    }
}

/// Copies the shipped CDNOW warehouse, so tests never write into the repository.
pub fn cdnow_copy() -> TempWarehouse {
    let wh = TempWarehouse::new();
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/warehouse");
    let status = std::process::Command::new("cp")
        .args([
            "-r",
            &format!("{source}/events"),
            wh.root().to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    wh
}

/// Creates goal 1 on a CDNOW copy: Charged from 30 September through 28 December 1997.
///
/// Two training windows instead of the default six make it about four times faster.
pub fn create_cdnow_goal(wh: &TempWarehouse, name: &str) {
    let output = wh.run(&[
        "goal",
        "create",
        "--name",
        name,
        "--event",
        "Charged",
        "--end-date",
        "1997-12-28",
        "--as-of",
        "1997-09-30",
        "--max-windows",
        "2",
        "--segments-dir",
        concat!(env!("CARGO_MANIFEST_DIR"), "/sql/segments"),
    ]);
    let text = success(&output);
    assert!(text.contains("Created goal 1"), "{text}");
}

/// Returns a `goalcast` command with progress bars off.
pub fn goalcast_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_goalcast"));
    command
        .args(args)
        .env("GOALCAST_NO_PROGRESS", "1")
        .env_remove("GOALCAST_WAREHOUSE");
    command
}

/// Returns standard output, panicking with standard error when the command failed.
pub fn success(output: &Output) -> String {
    assert!(
        output.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Returns standard error, panicking when the command succeeded.
pub fn failure(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "command succeeded: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Returns the default mapping: columns `user_id`, `event_name`, `event_time`, `amount`.
pub fn default_mapping() -> EventMapping {
    EventMapping {
        user_id_column: "user_id".into(),
        event_name: EventNameSource::Column("event_name".into()),
        time_column: "event_time".into(),
        time_format: TimeFormat::Auto,
        time_zone: chrono_tz::UTC,
        amount_column: "amount".into(),
        amount_required: false,
        ignore_columns: Vec::new(),
    }
}

/// Returns the mapping of the CDNOW source columns.
pub fn cdnow_mapping() -> EventMapping {
    EventMapping {
        user_id_column: "customer_id".into(),
        event_name: EventNameSource::Constant("Charged".into()),
        time_column: "date".into(),
        time_format: TimeFormat::Pattern("%Y%m%d".into()),
        time_zone: chrono_tz::UTC,
        amount_column: "dollar_value".into(),
        amount_required: true,
        ignore_columns: Vec::new(),
    }
}

/// Source options that pick the format from the extension.
pub fn by_extension() -> SourceOptions {
    SourceOptions {
        format: None,
        delimiter: None,
    }
}

/// Shares a schema reference for building test batches.
pub fn schema(fields: Vec<arrow::datatypes::Field>) -> Arc<arrow::datatypes::Schema> {
    Arc::new(arrow::datatypes::Schema::new(fields))
}
