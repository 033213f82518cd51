//! Compaction: rewrites the partitions of a table that hold many files into one file each.
//!
//! Every file a query opens costs a request, a footer read and a decoder setup, whatever its
//! size. `goalcast generate` writes one file per day and per chunk of users, which makes 40
//! files a day at 10M users. A whole-table scan of one file per day took about half the time.
//!
//! Compaction stages the new files and commits them in place of exactly the files it read, so
//! readers see either the old files or the new ones, a crash leaves the table as it was, and a
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
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Serialize;

use super::Warehouse;
use super::manifest::DataFile;
use super::write::{Replace, TableWrite};
use crate::error::{Error, Result};
use crate::progress;

/// The default largest number of rows in one compacted file.
pub const DEFAULT_MAX_ROWS_PER_FILE: u64 = 8_000_000;

/// The outcome of compacting one table.
#[derive(Debug, Clone, Serialize)]
pub struct CompactSummary {
    pub table: String,
    /// Partitions rewritten; partitions left alone are not counted.
    pub partitions: usize,
    pub files_before: usize,
    pub files_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub rows: u64,
    pub seconds: f64,
}

/// Rewrites each partition of `table` whose rows fit in fewer files than it contains. The new
/// files have at most `max_rows_per_file` rows each, in the order of the old files, and one
/// write commits them all.
pub async fn compact_table(
    warehouse: &Warehouse,
    table: &str,
    max_rows_per_file: u64,
) -> Result<CompactSummary> {
    if max_rows_per_file == 0 {
        return Err(Error::InvalidArgument(
            "invalid --max-rows-per-file 0: use 1 or more".into(),
        ));
    }
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
    // already compacted at this size are left alone.
    partitions.retain(|_, files| {
        let rows: u64 = files.iter().map(|file| file.rows).sum();
        (rows.div_ceil(max_rows_per_file) as usize) < files.len()
    });
    let mut summary = CompactSummary {
        table: table.to_string(),
        partitions: partitions.len(),
        files_before: 0,
        files_after: 0,
        bytes_before: 0,
        bytes_after: 0,
        rows: 0,
        seconds: 0.0,
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
            summary.files_before += files.len();
            summary.bytes_before += files.iter().map(|file| file.bytes).sum::<u64>();
            superseded.extend(files.iter().map(|file| file.path.clone()));
            let write = write.clone();
            let warehouse = warehouse.clone();
            running.spawn(async move {
                compact_partition(&warehouse, &write, &partition, &files, max_rows_per_file).await
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        match joined.expect("compaction tasks do not panic") {
            Ok(written) => {
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
    if let Err(error) = outcome {
        write.abort().await?;
        return Err(error);
    }
    let spinner = progress::spinner(format!("committing {table}"));
    let committed = write.commit(Replace::Files(superseded)).await;
    spinner.finish_and_clear();
    committed?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Files, rows and bytes that one partition's compaction staged.
struct Written {
    files: usize,
    rows: u64,
    bytes: u64,
}

/// Reads the files of one partition in order and stages their rows as new files.
async fn compact_partition(
    warehouse: &Warehouse,
    write: &TableWrite,
    partition: &str,
    files: &[DataFile],
    max_rows_per_file: u64,
) -> Result<Written> {
    let table = write.table();
    let prefix = if partition.is_empty() {
        String::new()
    } else {
        format!("{partition}/")
    };
    let mut written = Written {
        files: 0,
        rows: 0,
        bytes: 0,
    };
    let mut schema: Option<SchemaRef> = None;
    let mut output: Option<(ArrowWriter<Vec<u8>>, u64)> = None;
    for file in files {
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
        let file_schema = builder.schema().clone();
        match &schema {
            None => schema = Some(file_schema.clone()),
            Some(first) if !same_columns(first, &file_schema) => {
                return Err(Error::InvalidArgument(format!(
                    "cannot compact partition {prefix:?} of table {table}: file {relative} has \
                     columns ({}) but {} has ({}); rewrite the table with one schema first",
                    describe(&file_schema),
                    files[0].path,
                    describe(first)
                )));
            }
            Some(_) => {}
        }
        let schema = schema.clone().expect("set from the first file");
        let reader = builder
            .build()
            .map_err(|error| in_file(&relative, error.into()))?;
        for batch in reader {
            let batch = batch.map_err(|error| in_file(&relative, error.into()))?;
            // Files may differ in whether a column is declared nullable; the first file's
            // declaration wins, and a null in a column it declares non-nullable is an error.
            let batch =
                arrow::record_batch::RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
                    .map_err(|error| in_file(&relative, error.into()))?;
            let mut offset = 0;
            while offset < batch.num_rows() {
                let (writer, rows) = match &mut output {
                    Some(open) => open,
                    None => output.insert((new_writer(schema.clone())?, 0)),
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
    if let Some((writer, rows)) = output.take() {
        stage(write, &prefix, writer, rows, &mut written).await?;
    }
    Ok(written)
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

fn new_writer(schema: SchemaRef) -> Result<ArrowWriter<Vec<u8>>> {
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .build();
    Ok(ArrowWriter::try_new(Vec::new(), schema, Some(properties))?)
}

fn in_file(relative: &str, error: Error) -> Error {
    Error::InvalidArgument(format!(
        "cannot read {relative}: {error}; restore the file or rewrite its partition"
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
