//! `goalcast import`: loading event logs and user profiles into the warehouse.
//!
//! Each source file is read as Arrow batches ([`source`]), mapped onto the table's schema with
//! per-row rejections ([`normalize`]), and staged as Parquet in a local scratch folder. A
//! DataFusion query then merges the staged rows with the affected partitions of the table,
//! dropping exact duplicates, and the result replaces those partitions in one commit.
//!
//! Duplicate rule for `events`: rows equal in every column (`user_id`, `event_name`,
//! `event_time`, `amount`, `properties`) are one event, whether they repeat within the input or
//! already exist in the table. Importing the same file twice therefore changes nothing.

pub mod normalize;
pub mod source;
pub mod time;

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow::array::AsArray;
use arrow::datatypes::Date32Type;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use parquet::arrow::ArrowWriter;
use serde::Serialize;

use crate::context::{ContextOptions, empty_context, register_table};
use crate::error::{Error, Result};
use crate::progress;
use crate::schema::{EVENT_DATE, EVENTS, events_partitioning};
use crate::warehouse::{Replace, TableWrite, Warehouse};
pub use normalize::{EventMapping, EventNameSource, RejectReason, Rejections};
pub use source::{Delimiter, SourceFormat, SourceOptions};

/// Counts of an import's work, for the summary and `--output-format json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportSummary {
    pub table: String,
    pub files_read: usize,
    /// Files that held no rows, with the reason.
    pub files_skipped: Vec<String>,
    pub rows_read: u64,
    pub rows_rejected: u64,
    /// Rejected rows by reason.
    pub rejected_by_reason: Vec<(String, u64)>,
    /// A few rejected rows per reason: reason, location, value.
    pub rejected_samples: Vec<(String, String, String)>,
    /// Rows identical to an earlier row of the same input.
    pub duplicates_in_input: u64,
    /// Rows already present in the table (events) or replaced user rows (profiles).
    pub already_present: u64,
    pub rows_written: u64,
    /// Partitions or files rewritten.
    pub partitions_written: usize,
    pub seconds: f64,
}

impl ImportSummary {
    /// Records a skipped 0-byte file.
    fn skip_empty_file(&mut self, path: &Path) {
        tracing::warn!(file = %path.display(), "skipping an empty file");
        self.files_skipped
            .push(format!("{}: empty (0 bytes)", path.display()));
    }

    /// Returns the error for an import that found no row to write.
    fn nothing_to_import(&self) -> Error {
        Error::InvalidArgument(format!(
            "nothing to import: {} rows read, {} rejected, {} files skipped",
            self.rows_read,
            self.rows_rejected,
            self.files_skipped.len()
        ))
    }
}

/// Returns a progress bar over the total size of `paths`.
fn reading_bar(paths: &[PathBuf]) -> indicatif::ProgressBar {
    let total_bytes = paths
        .iter()
        .map(|path| std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0))
        .sum();
    progress::bytes_bar(total_bytes, "reading")
}

/// Imports event files into the `events` table.
pub async fn import_events(
    warehouse: &Warehouse,
    paths: &[PathBuf],
    source_options: &SourceOptions,
    mapping: &EventMapping,
    context_options: &ContextOptions,
) -> Result<ImportSummary> {
    let started = Instant::now();
    let scratch = tempfile::Builder::new()
        .prefix("goalcast-import")
        .tempdir()?;
    let mut summary = ImportSummary {
        table: EVENTS.to_string(),
        ..Default::default()
    };
    let mut rejections = Rejections::default();
    let staged = stage_event_files(
        paths,
        source_options,
        mapping,
        scratch.path(),
        &mut summary,
        &mut rejections,
    )?;
    summary.rows_rejected = rejections.total();
    summary.rejected_by_reason = rejections
        .counts
        .iter()
        .map(|(reason, count)| (reason.describe().to_string(), *count))
        .collect();
    for (reason, samples) in &rejections.samples {
        for (location, value) in samples {
            summary.rejected_samples.push((
                reason.describe().to_string(),
                location.clone(),
                value.clone(),
            ));
        }
    }
    let normalized_rows = summary.rows_read - summary.rows_rejected;
    if staged.is_empty() || normalized_rows == 0 {
        return Err(summary.nothing_to_import());
    }

    let ctx = empty_context(warehouse, context_options)?;
    ctx.register_parquet(
        "import_new",
        scratch
            .path()
            .to_str()
            .expect("temporary folders have UTF-8 paths"),
        ParquetReadOptions::default(),
    )
    .await?;
    let distinct_new = count(
        &ctx,
        "SELECT count(*) FROM (SELECT DISTINCT * FROM import_new)",
    )
    .await?;
    summary.duplicates_in_input = normalized_rows - distinct_new;

    let dates = affected_dates(&ctx).await?;
    let partitions: BTreeSet<String> = dates
        .iter()
        .map(|date| format!("{EVENT_DATE}={date}"))
        .collect();
    let previous = warehouse.manifest(EVENTS).await?;
    let existing_rows: u64 = previous
        .as_ref()
        .map(|manifest| {
            manifest
                .files
                .iter()
                .filter(|file| partitions.contains(&file.partition))
                .map(|file| file.rows)
                .sum()
        })
        .unwrap_or(0);
    let existing_branch = match &previous {
        Some(manifest) if existing_rows > 0 => {
            register_table(&ctx, warehouse, manifest).await?;
            let list = dates
                .iter()
                .map(|d| format!("DATE '{d}'"))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "UNION ALL SELECT user_id, event_name, event_time, amount, properties, event_date \
                 FROM events WHERE event_date IN ({list})"
            )
        }
        _ => String::new(),
    };
    let merge = format!(
        "SELECT DISTINCT user_id, event_name, event_time, amount, properties, event_date \
         FROM (SELECT user_id, event_name, event_time, amount, properties, event_date \
               FROM import_new {existing_branch}) \
         ORDER BY event_date, user_id, event_time, event_name, amount, properties"
    );
    let spinner = progress::spinner(format!("merging into {} partitions", partitions.len()));
    let write = TableWrite::begin(warehouse, EVENTS, events_partitioning())?;
    let result = async {
        ctx.sql(&merge)
            .await?
            .write_parquet(
                write.staging_url().as_str(),
                DataFrameWriteOptions::new().with_partition_by(vec![EVENT_DATE.to_string()]),
                None,
            )
            .await?;
        Ok::<_, Error>(())
    }
    .await;
    spinner.finish_and_clear();
    if let Err(error) = result {
        write.abort().await?;
        return Err(error);
    }
    let manifest = write
        .commit(Replace::Partitions(partitions.clone()))
        .await?;
    let final_rows: u64 = manifest
        .files
        .iter()
        .filter(|file| partitions.contains(&file.partition))
        .map(|file| file.rows)
        .sum();
    summary.rows_written = final_rows - existing_rows;
    summary.already_present = distinct_new - summary.rows_written;
    summary.partitions_written = partitions.len();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Reads, normalizes and stages every input file as Parquet under `scratch`.
fn stage_event_files(
    paths: &[PathBuf],
    source_options: &SourceOptions,
    mapping: &EventMapping,
    scratch: &Path,
    summary: &mut ImportSummary,
    rejections: &mut Rejections,
) -> Result<Vec<PathBuf>> {
    let bar = reading_bar(paths);
    let mut text_columns = vec![
        mapping.user_id_column.as_str(),
        mapping.time_column.as_str(),
    ];
    text_columns.push(mapping.amount_column.as_str());
    if let EventNameSource::Column(column) = &mapping.event_name {
        text_columns.push(column);
    }
    let mut staged = Vec::new();
    let mut amount_seen = false;
    for (index, path) in paths.iter().enumerate() {
        bar.set_message(path.display().to_string());
        let Some(source) = source::open(path, source_options, &text_columns, &bar)? else {
            summary.skip_empty_file(path);
            continue;
        };
        amount_seen |= normalize::check_columns(path, &source.schema, mapping)?;
        let infer_numbers = source.format == SourceFormat::Csv;
        let target = scratch.join(format!("part-{index:05}.parquet"));
        let rows = stage_file(source, mapping, infer_numbers, &target, summary, rejections)?;
        summary.files_read += 1;
        if rows == 0 {
            std::fs::remove_file(&target)?;
            tracing::warn!(file = %path.display(), "skipping a file with no data rows");
            summary
                .files_skipped
                .push(format!("{}: no data rows", path.display()));
            continue;
        }
        staged.push(target);
    }
    bar.finish_and_clear();
    if mapping.amount_required && !amount_seen && !staged.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "no input file has the amount column {:?}; check --amount-column",
            mapping.amount_column
        )));
    }
    Ok(staged)
}

/// Normalizes one source into a Parquet file; returns the number of data rows read.
fn stage_file(
    source: source::Source,
    mapping: &EventMapping,
    infer_numbers: bool,
    target: &Path,
    summary: &mut ImportSummary,
    rejections: &mut Rejections,
) -> Result<u64> {
    let path = source.path.clone();
    let mut writer =
        ArrowWriter::try_new(File::create(target)?, normalize::normalized_schema(), None)?;
    let mut rows_read = 0_u64;
    // CSV sources count their header as line 1, so data rows start at line 2.
    let first_line = if source.format == SourceFormat::Csv {
        2
    } else {
        1
    };
    let format = source.format;
    for batch in source.batches {
        let batch = batch.map_err(|error| {
            // The CSV reader starts after the header line, so its line numbers count data rows.
            let hint = if format == SourceFormat::Csv {
                " (line numbers count data rows after the header; fix or remove that row)"
            } else {
                ""
            };
            Error::input(&path, format!("cannot read: {error}{hint}"))
        })?;
        let normalized = normalize::normalize_batch(
            &path,
            &batch,
            mapping,
            rows_read + first_line,
            infer_numbers,
            rejections,
        )?;
        rows_read += batch.num_rows() as u64;
        if normalized.num_rows() > 0 {
            writer.write(&normalized)?;
        }
    }
    writer.close()?;
    summary.rows_read += rows_read;
    Ok(rows_read)
}

async fn affected_dates(ctx: &SessionContext) -> Result<Vec<String>> {
    let batches = ctx
        .sql("SELECT DISTINCT event_date FROM import_new ORDER BY event_date")
        .await?
        .collect()
        .await?;
    let mut dates = Vec::new();
    for batch in batches {
        let column = batch.column(0).as_primitive::<Date32Type>();
        for row in 0..column.len() {
            if let Some(date) = column.value_as_date(row) {
                dates.push(date.format("%Y-%m-%d").to_string());
            }
        }
    }
    Ok(dates)
}

/// Runs a query that returns one `count(*)` value.
pub(crate) async fn count(ctx: &SessionContext, sql: &str) -> Result<u64> {
    let batches = ctx.sql(sql).await?.collect().await?;
    let value = batches
        .first()
        .filter(|batch| batch.num_rows() > 0)
        .map(|batch| {
            batch
                .column(0)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0)
        })
        .unwrap_or(0);
    Ok(value as u64)
}

/// Imports profile files into the `profiles` table, one row per user.
///
/// Every column but the user id is kept as an attribute. A user that appears again replaces
/// their earlier row: the last row of the input wins, and input rows replace stored rows.
/// Columns missing from one side read as null.
pub async fn import_profiles(
    warehouse: &Warehouse,
    paths: &[PathBuf],
    source_options: &SourceOptions,
    user_id_column: &str,
    ignore_columns: &[String],
    context_options: &ContextOptions,
) -> Result<ImportSummary> {
    profiles::import(
        warehouse,
        paths,
        source_options,
        user_id_column,
        ignore_columns,
        context_options,
    )
    .await
}

mod profiles;
