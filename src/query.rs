//! `goalcast sql` and `goalcast tables`: read-only ad-hoc SQL over the warehouse.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{DataFrame, SessionContext};
use futures::StreamExt;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::warehouse::Warehouse;

/// The output format of query results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// An aligned text table.
    Table,
    Csv,
    /// JSON lines: one object per row.
    Json,
    /// A Parquet file; needs an output path.
    Parquet,
}

impl FromStr for OutputFormat {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "table" => Ok(OutputFormat::Table),
            "csv" => Ok(OutputFormat::Csv),
            "json" | "jsonl" => Ok(OutputFormat::Json),
            "parquet" => Ok(OutputFormat::Parquet),
            other => Err(Error::InvalidArgument(format!(
                "invalid output format {other:?}: use table, csv, json or parquet"
            ))),
        }
    }
}

/// Plans `sql`, rejecting any statement that would write or change the session.
pub async fn plan_read_only(ctx: &SessionContext, sql: &str) -> Result<DataFrame> {
    let plan = ctx.state().create_logical_plan(sql).await?;
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    if options.verify_plan(&plan).is_err() {
        return Err(Error::ReadOnly(format!(
            "goalcast sql is read-only and does not run {} statements; use SELECT (with WITH, \
             JOIN, EXPLAIN as needed) to read, and goalcast import to load data",
            statement_kind(&plan)
        )));
    }
    Ok(ctx.execute_logical_plan(plan).await?)
}

fn statement_kind(plan: &LogicalPlan) -> &'static str {
    match plan {
        LogicalPlan::Ddl(_) => "DDL (CREATE, DROP)",
        LogicalPlan::Dml(_) => "INSERT, UPDATE, DELETE or COPY",
        LogicalPlan::Copy(_) => "COPY",
        LogicalPlan::Statement(_) => "SET, transaction or prepared",
        LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => "EXPLAIN of writing",
        _ => "writing",
    }
}

/// The maximum number of times a query runs when commits keep deleting the files it planned to
/// read.
const ATTEMPTS: u32 = 3;

/// A read-only query that has produced its first batch.
pub struct StartedQuery {
    schema: SchemaRef,
    first: Option<RecordBatch>,
    rest: SendableRecordBatchStream,
}

impl StartedQuery {
    /// Runs `dataframe` up to its first batch.
    pub async fn start(dataframe: DataFrame) -> Result<Self> {
        let schema: SchemaRef = dataframe.schema().inner().clone();
        let mut rest = dataframe.execute_stream().await?;
        let first = rest.next().await.transpose()?;
        Ok(StartedQuery {
            schema,
            first,
            rest,
        })
    }
}

/// Plans `sql` read-only and runs it up to its first batch.
///
/// A commit that lands while the query opens its files can delete a file the query had planned
/// to read. The query is then planned again on the tables' new manifests, up to [`ATTEMPTS`]
/// times in all. Past the first batch, rows may already be printed, so an error is returned as
/// is.
pub async fn start_read_only(
    ctx: &SessionContext,
    warehouse: &Warehouse,
    sql: &str,
) -> Result<StartedQuery> {
    let mut attempt = 1;
    loop {
        let started = match plan_read_only(ctx, sql).await {
            Ok(dataframe) => StartedQuery::start(dataframe).await,
            Err(error) => Err(error),
        };
        match started {
            Err(error) if attempt < ATTEMPTS && error.missing_file().is_some() => {
                tracing::info!(
                    file = error.missing_file(),
                    "a commit replaced a file the query was reading; running it again"
                );
                crate::context::refresh_tables(ctx, warehouse).await?;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Runs `sql` read-only and returns all its rows, retrying like [`start_read_only`].
pub async fn collect_read_only(
    ctx: &SessionContext,
    warehouse: &Warehouse,
    sql: &str,
) -> Result<Vec<RecordBatch>> {
    let StartedQuery {
        first, mut rest, ..
    } = start_read_only(ctx, warehouse, sql).await?;
    let mut batches: Vec<RecordBatch> = first.into_iter().collect();
    while let Some(batch) = rest.next().await {
        batches.push(batch?);
    }
    Ok(batches)
}

/// Checks that `format` can be written to `output`, so that a command can reject the pair before
/// it runs its query.
pub fn check_output(format: OutputFormat, output: Option<&Path>) -> Result<()> {
    if format == OutputFormat::Parquet && output.is_none() {
        return Err(Error::InvalidArgument(
            "--format parquet needs --output FILE".to_string(),
        ));
    }
    Ok(())
}

/// Writes the rows of `query` in `format` to `output`, or to standard output.
///
/// A file output is written to a temporary name beside it and renamed when complete. Returns the
/// number of rows written.
pub async fn write_results(
    query: StartedQuery,
    format: OutputFormat,
    output: Option<&Path>,
) -> Result<u64> {
    check_output(format, output)?;
    let StartedQuery {
        schema,
        first,
        rest,
    } = query;
    let mut stream = futures::stream::iter(first.map(Ok)).chain(rest);
    match output {
        Some(path) => {
            let temporary = temporary_sibling(path);
            let file = std::fs::File::create(&temporary)
                .map_err(|error| Error::input(path, format!("cannot create: {error}")))?;
            let result = async {
                let mut sink = Sink::new(format, schema, std::io::BufWriter::new(file))?;
                while let Some(batch) = stream.next().await {
                    sink.write(&batch?)?;
                }
                sink.finish()
            }
            .await;
            match result {
                Ok(rows) => {
                    std::fs::rename(&temporary, path)?;
                    Ok(rows)
                }
                Err(error) => {
                    let _ = std::fs::remove_file(&temporary);
                    Err(error)
                }
            }
        }
        None => {
            let mut sink = Sink::new(format, schema, std::io::BufWriter::new(std::io::stdout()))?;
            while let Some(batch) = stream.next().await {
                sink.write(&batch?)?;
            }
            sink.finish()
        }
    }
}

fn temporary_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().to_string())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.goalcast-tmp"))
}

enum Sink<W: Write + Send> {
    Table(W, Vec<RecordBatch>, u64),
    Csv(arrow::csv::Writer<W>, u64),
    Json(arrow::json::LineDelimitedWriter<W>, u64),
    Parquet(parquet::arrow::ArrowWriter<W>, u64),
}

impl<W: Write + Send> Sink<W> {
    fn new(format: OutputFormat, schema: SchemaRef, out: W) -> Result<Self> {
        Ok(match format {
            OutputFormat::Table => Sink::Table(out, Vec::new(), 0),
            OutputFormat::Csv => Sink::Csv(arrow::csv::WriterBuilder::new().build(out), 0),
            OutputFormat::Json => Sink::Json(arrow::json::LineDelimitedWriter::new(out), 0),
            OutputFormat::Parquet => {
                Sink::Parquet(parquet::arrow::ArrowWriter::try_new(out, schema, None)?, 0)
            }
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            Sink::Table(_, batches, rows) => {
                *rows += batch.num_rows() as u64;
                batches.push(batch.clone());
            }
            Sink::Csv(writer, rows) => {
                *rows += batch.num_rows() as u64;
                writer.write(batch)?;
            }
            Sink::Json(writer, rows) => {
                *rows += batch.num_rows() as u64;
                writer.write(batch)?;
            }
            Sink::Parquet(writer, rows) => {
                *rows += batch.num_rows() as u64;
                writer.write(batch)?;
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<u64> {
        match self {
            Sink::Table(mut out, batches, rows) => {
                writeln!(
                    out,
                    "{}",
                    arrow::util::pretty::pretty_format_batches(&batches)?
                )?;
                writeln!(out, "{rows} row{}", if rows == 1 { "" } else { "s" })?;
                out.flush()?;
                Ok(rows)
            }
            Sink::Csv(writer, rows) => {
                writer.into_inner().flush()?;
                Ok(rows)
            }
            Sink::Json(mut writer, rows) => {
                writer.finish()?;
                writer.into_inner().flush()?;
                Ok(rows)
            }
            Sink::Parquet(writer, rows) => {
                writer.close()?;
                Ok(rows)
            }
        }
    }
}

/// One table of the warehouse as listed by `goalcast tables`.
#[derive(Debug, Clone, Serialize)]
pub struct TableListing {
    pub name: String,
    pub rows: u64,
    pub files: usize,
    pub bytes: u64,
    pub partition_columns: Vec<String>,
    /// Column name and SQL type, in table order (partition columns last).
    pub columns: Vec<(String, String)>,
    pub committed_at: String,
}

/// Lists every table with its size and columns.
pub async fn list_tables(warehouse: &Warehouse, ctx: &SessionContext) -> Result<Vec<TableListing>> {
    let mut listings = Vec::new();
    for name in warehouse.table_names().await? {
        let manifest = warehouse.require_manifest(&name).await?;
        let columns = match ctx.table_provider(name.as_str()).await {
            Ok(provider) => provider
                .schema()
                .fields()
                .iter()
                .map(|field| {
                    let nullable = if field.is_nullable() { "" } else { " not null" };
                    (
                        field.name().clone(),
                        format!("{}{nullable}", field.data_type()),
                    )
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        listings.push(TableListing {
            rows: manifest.row_count(),
            files: manifest.files.len(),
            bytes: manifest.byte_count(),
            partition_columns: manifest
                .partition_columns
                .iter()
                .map(|c| c.name.clone())
                .collect(),
            columns,
            committed_at: manifest.committed_at.clone(),
            name,
        });
    }
    Ok(listings)
}
