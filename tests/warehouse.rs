//! The warehouse layer: names, atomic table writes, crash recovery, and S3 through a local
//! S3-compatible server.

mod common;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field};
use common::{TempWarehouse, failure, goalcast_command, schema, success};
use goalcast::warehouse::compact::compact_table;
use goalcast::warehouse::{
    PartitionColumn, PartitionType, Replace, TableWrite, Transaction, Warehouse,
};

fn numbers(values: Vec<i64>) -> (Arc<arrow::datatypes::Schema>, RecordBatch) {
    let schema = schema(vec![Field::new("n", DataType::Int64, false)]);
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))]).unwrap();
    (schema, batch)
}

async fn write_numbers(warehouse: &Warehouse, table: &str, values: Vec<i64>) -> TableWrite {
    let (schema, batch) = numbers(values);
    let write = TableWrite::begin(warehouse, table, Vec::new()).unwrap();
    write
        .put_batches("part-0.parquet", schema, &[batch])
        .await
        .unwrap();
    write
}

/// Writes `values` as the whole of table `table` and commits it.
async fn commit_numbers(warehouse: &Warehouse, table: &str, values: Vec<i64>) {
    write_numbers(warehouse, table, values)
        .await
        .commit(Replace::All)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn table_write_replaces_whole_table() {
    let wh = TempWarehouse::new();
    commit_numbers(&wh.warehouse, "numbers", vec![1, 2]).await;
    commit_numbers(&wh.warehouse, "numbers", vec![3]).await;
    assert_eq!(wh.rows("SELECT n FROM numbers").await, vec!["3"]);
    let manifest = wh.warehouse.require_manifest("numbers").await.unwrap();
    assert_eq!(manifest.row_count(), 1);
    assert!(manifest.pending.is_none());
    let files: Vec<_> = std::fs::read_dir(wh.root().join("numbers"))
        .unwrap()
        .collect();
    assert_eq!(files.len(), 2, "expected one data file and the manifest");
}

#[tokio::test(flavor = "multi_thread")]
async fn uncommitted_write_is_invisible_and_cleaned() {
    let wh = TempWarehouse::new();
    commit_numbers(&wh.warehouse, "numbers", vec![1]).await;
    // A write that stages files and then dies before its commit point.
    let crashed = write_numbers(&wh.warehouse, "numbers", vec![7, 8, 9]).await;
    let write_id = crashed.write_id().to_string();
    std::mem::forget(crashed);
    assert_eq!(wh.rows("SELECT n FROM numbers").await, vec!["1"]);
    // A recent write may still be running in another process, so recovery keeps it.
    wh.warehouse.recover().await.unwrap();
    assert!(wh.root().join("_staging").join(&write_id).exists());
    // Once it is older than the abandonment age it is removed.
    let old_id = format!("20000101T000000{}", &write_id[15..]);
    std::fs::rename(
        wh.root().join("_staging").join(&write_id),
        wh.root().join("_staging").join(old_id),
    )
    .unwrap();
    wh.warehouse.recover().await.unwrap();
    assert!(!wh.root().join("_staging").exists());
    assert_eq!(wh.rows("SELECT n FROM numbers").await, vec!["1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_after_commit_point_rolls_forward() {
    let wh = TempWarehouse::new();
    commit_numbers(&wh.warehouse, "numbers", vec![1]).await;
    let write = write_numbers(&wh.warehouse, "numbers", vec![2, 3]).await;
    let manifest = write.commit_point_only(Replace::All).await.unwrap();
    assert!(manifest.pending.is_some());
    wh.warehouse.recover().await.unwrap();
    let manifest = wh.warehouse.require_manifest("numbers").await.unwrap();
    assert!(manifest.pending.is_none());
    assert_eq!(
        wh.rows("SELECT n FROM numbers ORDER BY n").await,
        vec!["2", "3"]
    );
    // Recovering twice is harmless.
    wh.warehouse.recover().await.unwrap();
    assert_eq!(
        wh.rows("SELECT n FROM numbers ORDER BY n").await,
        vec!["2", "3"]
    );
}

/// Stages `values` as table `table` in `transaction`.
async fn stage_numbers(transaction: &mut Transaction, table: &str, values: Vec<i64>) {
    let write = transaction.table(table, Vec::new()).unwrap();
    let (schema, batch) = numbers(values);
    write
        .put_batches("part-0.parquet", schema, &[batch])
        .await
        .unwrap();
    transaction.add(write, Replace::All).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn transactions_commit_all_tables_or_none() {
    let wh = TempWarehouse::new();
    commit_numbers(&wh.warehouse, "left", vec![1]).await;

    // Aborted: nothing changes and nothing stays staged.
    let mut transaction = Transaction::begin(&wh.warehouse);
    stage_numbers(&mut transaction, "left", vec![2]).await;
    stage_numbers(&mut transaction, "right", vec![2]).await;
    transaction.abort().await.unwrap();
    assert_eq!(wh.rows("SELECT n FROM left").await, ["1"]);
    assert!(wh.warehouse.manifest("right").await.unwrap().is_none());
    assert!(!wh.root().join("_staging").exists());

    // A crash right after the commit point: recovery completes both tables.
    let mut transaction = Transaction::begin(&wh.warehouse);
    stage_numbers(&mut transaction, "left", vec![3]).await;
    stage_numbers(&mut transaction, "right", vec![4]).await;
    transaction.commit_point_only().await.unwrap();
    assert_eq!(wh.rows("SELECT n FROM left").await, ["1"]);
    wh.warehouse.recover().await.unwrap();
    assert_eq!(wh.rows("SELECT n FROM left").await, ["3"]);
    assert_eq!(wh.rows("SELECT n FROM right").await, ["4"]);
    assert!(!wh.root().join("_staging").exists());

    // A table written twice in one transaction is refused.
    let mut transaction = Transaction::begin(&wh.warehouse);
    stage_numbers(&mut transaction, "left", vec![5]).await;
    let write = transaction.table("left", Vec::new()).unwrap();
    let error = transaction.add(write, Replace::All).unwrap_err();
    assert!(
        error.to_string().contains("table left is written twice"),
        "{error}"
    );
    transaction.commit().await.unwrap();
    assert_eq!(wh.rows("SELECT n FROM left").await, ["5"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn partition_replace_keeps_other_partitions() {
    let wh = TempWarehouse::new();
    let partitioning = by_day();
    let write = TableWrite::begin(&wh.warehouse, "daily", partitioning.clone()).unwrap();
    for (day, values) in [("a", vec![1]), ("b", vec![2])] {
        let (schema, batch) = numbers(values);
        write
            .put_batches(&format!("day={day}/part-0.parquet"), schema, &[batch])
            .await
            .unwrap();
    }
    write.commit(Replace::All).await.unwrap();
    let write = TableWrite::begin(&wh.warehouse, "daily", partitioning).unwrap();
    let (schema, batch) = numbers(vec![20, 21]);
    write
        .put_batches("day=b/part-0.parquet", schema, &[batch])
        .await
        .unwrap();
    write
        .commit(Replace::Partitions(BTreeSet::from(["day=b".to_string()])))
        .await
        .unwrap();
    assert_eq!(
        wh.rows("SELECT day, n FROM daily ORDER BY n").await,
        vec!["a|1", "b|20", "b|21"]
    );
}

/// Stages `files` (path, values) in one write to the `daily` table, partitioned by `day`, and
/// commits them over the whole table.
async fn commit_daily(warehouse: &Warehouse, files: &[(&str, Vec<i64>)]) {
    let partitioning = by_day();
    let write = TableWrite::begin(warehouse, "daily", partitioning).unwrap();
    for (path, values) in files {
        let (schema, batch) = numbers(values.clone());
        write.put_batches(path, schema, &[batch]).await.unwrap();
    }
    write.commit(Replace::All).await.unwrap();
}

/// Returns the partitioning of the `daily` test table: one `day` folder per value.
fn by_day() -> Vec<PartitionColumn> {
    vec![PartitionColumn {
        name: "day".into(),
        data_type: PartitionType::Utf8,
    }]
}

/// Returns the paths of the committed files of `table`, in manifest order.
async fn table_paths(warehouse: &Warehouse, table: &str) -> Vec<String> {
    let manifest = warehouse.require_manifest(table).await.unwrap();
    manifest.files.into_iter().map(|file| file.path).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn compaction_merges_then_reruns_nothing() {
    let wh = TempWarehouse::new();
    commit_daily(
        &wh.warehouse,
        &[
            ("day=a/part-0.parquet", vec![1, 2]),
            ("day=a/part-1.parquet", vec![3]),
            ("day=a/part-2.parquet", vec![4, 5]),
            ("day=b/part-0.parquet", vec![6]),
        ],
    )
    .await;
    let before = table_paths(&wh.warehouse, "daily").await;
    let query = "SELECT day, n FROM daily ORDER BY n";
    let rows = wh.rows(query).await;

    let summary = compact_table(&wh.warehouse, "daily", 3, None)
        .await
        .unwrap();
    assert_eq!(
        (
            summary.partitions,
            summary.files_before,
            summary.files_after,
            summary.rows
        ),
        (1, 3, 2, 5)
    );
    assert_eq!(wh.rows(query).await, rows);
    let after = table_paths(&wh.warehouse, "daily").await;
    assert_eq!(after.len(), 3);
    let b_file = before
        .iter()
        .find(|path| path.starts_with("day=b/"))
        .unwrap();
    assert!(
        after.contains(b_file),
        "the one-file partition is untouched"
    );
    let manifest = wh.warehouse.require_manifest("daily").await.unwrap();
    let rows_per_file: Vec<u64> = manifest.files.iter().map(|file| file.rows).collect();
    assert_eq!(
        rows_per_file,
        vec![3, 2, 1],
        "day a split at 3 rows, then day b"
    );

    // Through the command line: at the same size nothing is rewritten, at the default size the
    // two files become one, and a second run rewrites nothing.
    let output = wh.run(&["compact", "daily", "--max-rows-per-file", "3"]);
    assert!(success(&output).contains("daily: nothing to compact"));
    assert_eq!(table_paths(&wh.warehouse, "daily").await, after);
    let output = wh.run(&["compact"]);
    assert!(success(&output).contains("daily: 1 partition from 2 files"));
    let merged = table_paths(&wh.warehouse, "daily").await;
    assert_eq!(merged.len(), 2);
    let output = wh.run(&["compact", "--format", "json"]);
    let summaries: serde_json::Value = serde_json::from_str(&success(&output)).unwrap();
    assert_eq!(summaries[0]["partitions"], 0);
    assert_eq!(table_paths(&wh.warehouse, "daily").await, merged);
    assert_eq!(wh.rows(query).await, rows);

    let output = wh.run(&["compact", "--max-rows-per-file", "0"]);
    assert!(failure(&output).contains("invalid --max-rows-per-file 0"));
    let output = wh.run(&["compact", "nightly"]);
    assert!(failure(&output).contains("table \"nightly\" not found"));
}

#[tokio::test(flavor = "multi_thread")]
async fn compaction_skips_mismatched_partitions() {
    let wh = TempWarehouse::new();
    let partitioning = by_day();
    let write = TableWrite::begin(&wh.warehouse, "daily", partitioning).unwrap();
    for (path, values) in [
        ("day=a/part-0.parquet", vec![1]),
        ("day=b/part-0.parquet", vec![3]),
        ("day=b/part-1.parquet", vec![4]),
    ] {
        let (schema, batch) = numbers(values);
        write.put_batches(path, schema, &[batch]).await.unwrap();
    }
    let text = schema(vec![Field::new("n", DataType::Utf8, false)]);
    let batch = RecordBatch::try_new(
        text.clone(),
        vec![Arc::new(arrow::array::StringArray::from(vec!["two"]))],
    )
    .unwrap();
    write
        .put_batches("day=a/part-1.parquet", text, &[batch])
        .await
        .unwrap();
    write.commit(Replace::All).await.unwrap();
    let before = table_paths(&wh.warehouse, "daily").await;

    let summary = compact_table(&wh.warehouse, "daily", 100, None)
        .await
        .unwrap();
    assert_eq!(summary.partitions, 1, "day b is compacted");
    assert_eq!(summary.skipped.len(), 1);
    let message = &summary.skipped[0];
    assert!(
        message.contains("partition day=a of table daily"),
        "{message}"
    );
    assert!(message.contains("daily/day=a/part-1"), "{message}");
    assert!(message.contains("n Utf8"), "{message}");
    assert!(message.contains("n Int64"), "{message}");
    let after = table_paths(&wh.warehouse, "daily").await;
    let day_a = |paths: &[String]| -> Vec<String> {
        paths
            .iter()
            .filter(|path| path.starts_with("day=a/"))
            .cloned()
            .collect()
    };
    assert_eq!(day_a(&after), day_a(&before), "day a is left as it was");
    assert_eq!(after.len(), 3);
    assert!(
        !wh.root().join("_staging").exists(),
        "no staging folder is left"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn compaction_keeps_empty_partition_file() {
    let wh = TempWarehouse::new();
    commit_daily(
        &wh.warehouse,
        &[
            ("day=a/part-0.parquet", vec![]),
            ("day=a/part-1.parquet", vec![]),
            ("day=b/part-0.parquet", vec![]),
        ],
    )
    .await;
    let summary = compact_table(&wh.warehouse, "daily", 100, None)
        .await
        .unwrap();
    assert_eq!((summary.partitions, summary.files_after), (1, 1));
    assert_eq!(table_paths(&wh.warehouse, "daily").await.len(), 2);
    assert_eq!(wh.count("SELECT count(*) FROM daily").await, 0);
    let summary = compact_table(&wh.warehouse, "daily", 100, None)
        .await
        .unwrap();
    assert_eq!(summary.partitions, 0, "a second run rewrites nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn replacing_superseded_files_fails() {
    let wh = TempWarehouse::new();
    commit_numbers(&wh.warehouse, "numbers", vec![1]).await;
    let old = table_paths(&wh.warehouse, "numbers").await[0].clone();
    let write = write_numbers(&wh.warehouse, "numbers", vec![2]).await;
    // Another write replaces the table before this one commits.
    commit_numbers(&wh.warehouse, "numbers", vec![3]).await;
    let error = write
        .commit(Replace::Files(BTreeSet::from([old.clone()])))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&old) && error.contains("run the command again"),
        "{error}"
    );
    assert_eq!(wh.rows("SELECT n FROM numbers").await, vec!["3"]);
}

#[test]
fn names_that_escape_the_root_are_rejected() {
    let wh = TempWarehouse::new();
    for name in ["../outside", "a/b", "_staging", "Events"] {
        let error = TableWrite::begin(&wh.warehouse, name, Vec::new())
            .unwrap_err()
            .to_string();
        assert!(error.contains("invalid table name"), "{name}: {error}");
    }
}

#[test]
fn missing_warehouse_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let error = failure(
        &goalcast_command(&["tables", "--warehouse", missing.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    assert!(error.contains("no such folder"), "{error}");
    let error = failure(
        &goalcast_command(&["tables", "--warehouse", "gs://bucket/x"])
            .output()
            .unwrap(),
    );
    assert!(error.contains("unsupported URL scheme"), "{error}");
}

/// A moto S3 server on a free loopback port, stopped on drop.
struct S3Server {
    child: Child,
    endpoint: String,
}

impl S3Server {
    fn start() -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let server = std::env::var_os("GOALCAST_MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".venv/bin/moto_server"));
        assert!(
            server.exists(),
            "{} not found: run `bash .ci/test` once, or create .venv with `pip install moto[server]`",
            server.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Creates a bucket with a plain HTTP request, which moto accepts unsigned.
    fn create_bucket(&self, bucket: &str) {
        use std::io::{Read, Write};
        let address = self.endpoint.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        write!(
            stream,
            "PUT /{bucket} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = goalcast_command(args);
        command
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1");
        command
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn s3_warehouse_round_trip() {
    let server = S3Server::start();
    server.create_bucket("lake");
    let warehouse = "s3://lake/analytics/wh";
    let source = common::cdnow_source();
    let import = [
        "import",
        "events",
        source.to_str().unwrap(),
        "--warehouse",
        warehouse,
        "--user-id-column",
        "customer_id",
        "--event-name",
        "Charged",
        "--time-column",
        "date",
        "--time-format",
        "%Y%m%d",
        "--amount-column",
        "dollar_value",
    ];
    let text = success(&server.command(&import).output().unwrap());
    assert!(
        text.contains("rows written                69,404"),
        "{text}"
    );
    let text = success(&server.command(&import).output().unwrap());
    assert!(
        text.contains("rows written                     0"),
        "{text}"
    );

    let query = "SELECT count(*) AS events, count(DISTINCT user_id) AS users FROM events";
    let output = server
        .command(&["sql", query, "--format", "csv", "--warehouse", warehouse])
        .output()
        .unwrap();
    assert_eq!(success(&output), "events,users\n69404,23570\n");
    let output = server
        .command(&["tables", "--warehouse", warehouse])
        .output()
        .unwrap();
    assert!(success(&output).contains("events: 69,404 rows in 546 files"));
}

#[tokio::test(flavor = "multi_thread")]
async fn queries_read_one_commit() {
    let wh = TempWarehouse::new();
    commit_numbers(&wh.warehouse, "numbers", vec![1, 2]).await;
    let first = table_paths(&wh.warehouse, "numbers").await[0].clone();
    let before = goalcast::context::build_context(&wh.warehouse, &Default::default())
        .await
        .unwrap();

    // Halfway through applying a commit, the folder contains the superseded file and the new one.
    let write = write_numbers(&wh.warehouse, "numbers", vec![5]).await;
    let write_id = write.write_id().to_string();
    let manifest = write.commit_point_only(Replace::All).await.unwrap();
    let pending = manifest.pending.clone().unwrap();
    let (from, to) = &pending.moves[0];
    assert!(to.contains(&write_id), "{to} names its write");
    assert!(
        !pending.deletes.contains(to),
        "a new file reuses no committed name"
    );
    std::fs::rename(wh.root().join(from), wh.root().join("numbers").join(to)).unwrap();
    let data_files = std::fs::read_dir(wh.root().join("numbers"))
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().path().extension().unwrap() == "parquet")
        .count();
    assert_eq!(data_files, 2);
    assert_eq!(wh.rows("SELECT n FROM numbers ORDER BY n").await, vec!["5"]);

    // A session opened before the commit reads the rows it started with until the superseded
    // file is deleted.
    assert_eq!(sum(&before).await.unwrap(), 3);
    wh.warehouse.recover().await.unwrap();
    let error = goalcast::error::Error::from(sum(&before).await.unwrap_err());
    let missing = error
        .missing_file()
        .expect("the error names the deleted file");
    assert!(missing.ends_with(&format!("numbers/{first}")), "{missing}");

    // Read-only queries plan again on the new manifest when a commit deleted their files.
    let batches =
        goalcast::query::collect_read_only(&before, &wh.warehouse, "SELECT sum(n) FROM numbers")
            .await
            .unwrap();
    assert_eq!(first_number(&batches), 5);
}

async fn sum(ctx: &datafusion::prelude::SessionContext) -> datafusion::error::Result<i64> {
    let batches = ctx
        .sql("SELECT sum(n) FROM numbers")
        .await?
        .collect()
        .await?;
    Ok(first_number(&batches))
}

/// Returns the first row's first column of a query's result, a BIGINT.
fn first_number(batches: &[RecordBatch]) -> i64 {
    batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0)
}
