//! Compaction: rewrites the partitions of a table that hold many files into one file each.
//!
//! Every file a query opens costs a request, a footer read and a decoder setup, whatever its
//! size. `goalcast generate` writes one file per day and per chunk of users, which makes 40
//! files a day at 10M users. A whole-table scan of one file per day took about half the time.
//!
//! Compaction stages the new files and commits them in place of exactly the files it read.
//! Readers see either the old files or the new ones, and a crash leaves the table as it was. A
//! write that replaced one of those files meanwhile makes the commit fail instead of being lost.
//! Partitions whose rows need as many files as they have are left alone, so a second run
//! rewrites nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use object_store::ObjectStoreExt;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

use super::manifest::DataFile;
use super::write::{Replace, TABLE_ZSTD_LEVEL, TableWrite, parquet_writer};
use super::{RunLock, Warehouse, read_parquet_schema};
use crate::error::{Error, Result};
use crate::progress;

/// The default largest number of rows in one compacted file.
pub const DEFAULT_MAX_ROWS_PER_FILE: u64 = 8_000_000;

/// The outcome of compacting one table.
#[derive(Debug, Clone, Serialize)]
pub struct CompactSummary {
    pub table: String,
    /// Number of partitions rewritten, not counting those left alone.
    pub partitions: usize,
    pub files_before: usize,
    pub files_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub rows: u64,
    pub seconds: f64,
    /// Partitions left as they were because their files differ in columns, one message each.
    pub skipped: Vec<String>,
}

/// Rewrites each partition of `table` whose rows fit in fewer files than it contains. The new
/// files have at most `max_rows_per_file` rows each, in the order of the old files, and one
/// write commits them all. A partition whose files differ in columns is skipped and reported.
/// When `lock` is given, the commit first checks that this process still owns it.
pub async fn compact_table(
    warehouse: &Warehouse,
    table: &str,
    max_rows_per_file: u64,
    lock: Option<&RunLock>,
) -> Result<CompactSummary> {
    check_max_rows(max_rows_per_file)?;
    let started = Instant::now();
    let manifest = warehouse.require_manifest(table).await?;
    let mut partitions: BTreeMap<String, Vec<DataFile>> = BTreeMap::new();
    for file in &manifest.files {
        partitions
            .entry(file.partition.clone())
            .or_default()
            .push(file.clone());
    }
    // A partition is rewritten only when its rows fit in fewer files than it has, so partitions
    // already compacted at this size are left alone. A partition without rows keeps one empty
    // file, so that the table keeps its columns.
    partitions.retain(|_, files| {
        let rows: u64 = files.iter().map(|file| file.rows).sum();
        (rows.div_ceil(max_rows_per_file).max(1) as usize) < files.len()
    });
    let mut summary = CompactSummary {
        table: table.to_string(),
        partitions: 0,
        files_before: 0,
        files_after: 0,
        bytes_before: 0,
        bytes_after: 0,
        rows: 0,
        seconds: 0.0,
        skipped: Vec::new(),
    };
    if partitions.is_empty() {
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }

    let write = Arc::new(TableWrite::begin(
        warehouse,
        table,
        manifest.partition_columns.clone(),
    )?);
    let bar = progress::count_bar(partitions.len() as u64, "compacting", "partitions");
    bar.set_message(table.to_string());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut pending = partitions.into_iter();
    let mut running = tokio::task::JoinSet::new();
    let mut superseded = BTreeSet::new();
    let mut outcome: Result<()> = Ok(());
    loop {
        while outcome.is_ok() && running.len() < workers {
            let Some((partition, files)) = pending.next() else {
                break;
            };
            let write = write.clone();
            let warehouse = warehouse.clone();
            running.spawn(async move {
                compact_partition(&warehouse, &write, &partition, files, max_rows_per_file).await
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        match joined.expect("compaction tasks do not panic") {
            Ok(Compacted::Skipped(message)) => {
                summary.skipped.push(message);
                bar.inc(1);
            }
            Ok(Compacted::Written(written)) => {
                summary.partitions += 1;
                summary.files_before += written.read.len();
                summary.bytes_before += written.read.iter().map(|file| file.bytes).sum::<u64>();
                superseded.extend(written.read.iter().map(|file| file.path.clone()));
                summary.files_after += written.files;
                summary.bytes_after += written.bytes;
                summary.rows += written.rows;
                bar.inc(1);
            }
            Err(error) => {
                if outcome.is_ok() {
                    outcome = Err(error);
                }
            }
        }
    }
    bar.finish_and_clear();
    let write = Arc::into_inner(write).expect("every compaction task has finished");
    if outcome.is_ok()
        && let Some(lock) = lock
    {
        outcome = lock.ensure_held().await;
    }
    if let Err(error) = outcome {
        write.abort().await?;
        return Err(error);
    }
    if superseded.is_empty() {
        write.abort().await?;
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    let spinner = progress::spinner(format!("committing {table}"));
    let committed = write.commit(Replace::Files(superseded)).await;
    spinner.finish_and_clear();
    committed?;
    summary.seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        table,
        partitions = summary.partitions,
        files_before = summary.files_before,
        files_after = summary.files_after,
        seconds = summary.seconds,
        "compacted"
    );
    Ok(summary)
}

/// Rejects a file size limit of zero rows.
pub fn check_max_rows(max_rows_per_file: u64) -> Result<()> {
    if max_rows_per_file == 0 {
        return Err(Error::InvalidArgument(
            "invalid --max-rows-per-file 0: use 1 or more".into(),
        ));
    }
    Ok(())
}

/// The outcome of compacting one partition.
enum Compacted {
    Written(Written),
    /// The partition's files differ in columns, as the message describes.
    Skipped(String),
}

/// The files one partition's compaction read, and the files, rows and bytes it staged.
struct Written {
    read: Vec<DataFile>,
    files: usize,
    rows: u64,
    bytes: u64,
}

/// Reads the files of one partition in order and stages their rows as new files, after checking
/// from their footers that they share their columns, so that a skipped partition stages nothing.
async fn compact_partition(
    warehouse: &Warehouse,
    write: &TableWrite,
    partition: &str,
    files: Vec<DataFile>,
    max_rows_per_file: u64,
) -> Result<Compacted> {
    let table = write.table();
    let prefix = if partition.is_empty() {
        String::new()
    } else {
        format!("{partition}/")
    };
    let store = warehouse.store();
    let mut first: Option<(SchemaRef, &DataFile)> = None;
    for file in &files {
        let relative = format!("{table}/{}", file.path);
        let file_schema =
            read_parquet_schema(store.as_ref(), &warehouse.path(&relative), file.bytes)
                .await
                .map_err(|error| in_file(&relative, error))?;
        match &first {
            None => first = Some((file_schema, file)),
            Some((schema, first_file)) if !same_columns(schema, &file_schema) => {
                let place = if partition.is_empty() {
                    format!("table {table}")
                } else {
                    format!("partition {partition} of table {table}")
                };
                return Ok(Compacted::Skipped(format!(
                    "skipped {place}: {table}/{} has columns ({}) but {table}/{} has ({})",
                    file.path,
                    describe(&file_schema),
                    first_file.path,
                    describe(schema)
                )));
            }
            Some(_) => {}
        }
    }
    let schema = first.expect("a compacted partition has files").0;

    let mut written = Written {
        read: Vec::new(),
        files: 0,
        rows: 0,
        bytes: 0,
    };
    let mut output: Option<(ArrowWriter<Vec<u8>>, u64)> = None;
    for file in &files {
        let relative = format!("{table}/{}", file.path);
        // Inputs are the small files that compaction exists for, so each is read whole.
        let bytes = warehouse
            .store()
            .get(&warehouse.path(&relative))
            .await?
            .bytes()
            .await?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(|error| in_file(&relative, error.into()))?;
        let reader = builder
            .build()
            .map_err(|error| in_file(&relative, error.into()))?;
        for batch in reader {
            let batch = batch.map_err(|error| in_file(&relative, error.into()))?;
            // Files may differ in whether a column is declared nullable. The first file's
            // declaration wins, and a null in a column it declares non-nullable is an error.
            let batch =
                arrow::record_batch::RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
                    .map_err(|error| in_file(&relative, error.into()))?;
            let mut offset = 0;
            while offset < batch.num_rows() {
                let (writer, rows) = match &mut output {
                    Some(open) => open,
                    None => output.insert((parquet_writer(schema.clone(), TABLE_ZSTD_LEVEL)?, 0)),
                };
                let room = (max_rows_per_file - *rows).min((batch.num_rows() - offset) as u64);
                writer.write(&batch.slice(offset, room as usize))?;
                *rows += room;
                offset += room as usize;
                if *rows == max_rows_per_file {
                    let (writer, rows) = output.take().expect("a file is open");
                    stage(write, &prefix, writer, rows, &mut written).await?;
                }
            }
        }
    }
    if written.files == 0 && output.is_none() {
        // A partition without rows keeps one empty file with its columns.
        output = Some((parquet_writer(schema.clone(), TABLE_ZSTD_LEVEL)?, 0));
    }
    if let Some((writer, rows)) = output.take() {
        stage(write, &prefix, writer, rows, &mut written).await?;
    }
    written.read = files;
    Ok(Compacted::Written(written))
}

async fn stage(
    write: &TableWrite,
    prefix: &str,
    writer: ArrowWriter<Vec<u8>>,
    rows: u64,
    written: &mut Written,
) -> Result<()> {
    let bytes = writer.into_inner()?;
    written.files += 1;
    written.rows += rows;
    written.bytes += bytes.len() as u64;
    write
        .put_bytes(
            &format!("{prefix}part-{:05}.parquet", written.files - 1),
            bytes,
        )
        .await
}

fn in_file(relative: &str, error: Error) -> Error {
    Error::InvalidArgument(format!(
        "failed to read {relative}: {error}; restore the file or rewrite its partition"
    ))
}

/// Returns whether two schemas have the same column names and types, in the same order.
fn same_columns(a: &SchemaRef, b: &SchemaRef) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields()
            .iter()
            .zip(b.fields())
            .all(|(x, y)| x.name() == y.name() && x.data_type() == y.data_type())
}

fn describe(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|field| format!("{} {}", field.name(), field.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}
