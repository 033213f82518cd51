//! Reading source files (CSV, whitespace-separated text, JSON lines, Parquet) as Arrow batches.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use indicatif::ProgressBar;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};

/// Rows per batch read from a source.
const BATCH_ROWS: usize = 64 * 1024;

/// The file formats `goalcast import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    Csv,
    Json,
    Parquet,
}

impl FromStr for SourceFormat {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "csv" => Ok(SourceFormat::Csv),
            "json" | "jsonl" | "ndjson" => Ok(SourceFormat::Json),
            "parquet" => Ok(SourceFormat::Parquet),
            other => Err(Error::InvalidArgument(format!(
                "invalid format {other:?}: use csv, json or parquet"
            ))),
        }
    }
}

/// The field separator of a CSV source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delimiter {
    /// One byte, such as `,`, `;`, `|` or a tab.
    Byte(u8),
    /// Runs of spaces and tabs, with leading and trailing whitespace ignored; no quoting.
    Whitespace,
}

impl FromStr for Delimiter {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "whitespace" => Ok(Delimiter::Whitespace),
            "tab" | "\\t" | "\t" => Ok(Delimiter::Byte(b'\t')),
            one if one.len() == 1 => Ok(Delimiter::Byte(one.as_bytes()[0])),
            other => Err(Error::InvalidArgument(format!(
                "invalid delimiter {other:?}: use one character, tab or whitespace"
            ))),
        }
    }
}

/// How to read the source files.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// The format of every file, or `None` to pick it from each file's extension.
    pub format: Option<SourceFormat>,
    /// The field separator of CSV files; `None` uses a tab for `.tsv` files and `,` otherwise.
    pub delimiter: Option<Delimiter>,
}

/// An open source file: its schema and its batches.
pub struct Source {
    pub path: PathBuf,
    pub format: SourceFormat,
    pub schema: SchemaRef,
    pub batches: Box<dyn Iterator<Item = std::result::Result<RecordBatch, ArrowError>> + Send>,
}

/// Picks the format of `path` from its extension, unless `options` fixes it.
pub fn format_of(path: &Path, options: &SourceOptions) -> Result<SourceFormat> {
    if let Some(format) = options.format {
        return Ok(format);
    }
    let extension = path
        .extension()
        .and_then(|extension| extension.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match extension.as_str() {
        "csv" | "tsv" => Ok(SourceFormat::Csv),
        "json" | "jsonl" | "ndjson" => Ok(SourceFormat::Json),
        "parquet" | "pq" => Ok(SourceFormat::Parquet),
        _ => Err(Error::input(
            path,
            "cannot tell the format from the file extension; pass --format csv, json or parquet",
        )),
    }
}

/// Opens `path` for reading, or returns `None` when the file is empty (0 bytes). Columns named in `text_columns` are read as text from CSV and JSON
/// sources, so that ids keep their leading zeros and times can be parsed with the user's
/// format; CSV columns are always read as text.
pub fn open(
    path: &Path,
    options: &SourceOptions,
    text_columns: &[&str],
    progress: &ProgressBar,
) -> Result<Option<Source>> {
    let format = format_of(path, options)?;
    let file =
        File::open(path).map_err(|error| Error::input(path, format!("cannot open: {error}")))?;
    let size = file.metadata()?.len();
    if size == 0 {
        return Ok(None);
    }
    let (schema, batches) = match format {
        SourceFormat::Csv => open_csv(path, file, options, progress)?,
        SourceFormat::Json => open_json(path, file, text_columns, progress)?,
        SourceFormat::Parquet => open_parquet(path, file, size, progress)?,
    };
    Ok(Some(Source {
        path: path.to_path_buf(),
        format,
        schema,
        batches,
    }))
}

type Batches = Box<dyn Iterator<Item = std::result::Result<RecordBatch, ArrowError>> + Send>;

fn open_csv(
    path: &Path,
    file: File,
    options: &SourceOptions,
    progress: &ProgressBar,
) -> Result<(SchemaRef, Batches)> {
    let is_tsv = path
        .extension()
        .is_some_and(|extension| extension.eq_ignore_ascii_case("tsv"));
    let delimiter = options
        .delimiter
        .unwrap_or(Delimiter::Byte(if is_tsv { b'\t' } else { b',' }));
    let counted = progress.wrap_read(file);
    let (reader, byte): (Box<dyn Read + Send>, u8) = match delimiter {
        Delimiter::Byte(byte) => (Box::new(counted), byte),
        Delimiter::Whitespace => (Box::new(WhitespaceToCsv::new(counted)), b','),
    };
    let mut reader = BufReader::new(reader);
    let header = read_header(&mut reader, byte)
        .map_err(|error| Error::input(path, format!("cannot read the header line: {error}")))?;
    if header.is_empty() {
        return Err(Error::input(path, "the file has no header line"));
    }
    let fields: Vec<Field> = header
        .iter()
        .map(|name| Field::new(name.as_str(), DataType::Utf8, true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let csv = arrow::csv::ReaderBuilder::new(schema.clone())
        .with_header(false)
        .with_delimiter(byte)
        .with_batch_size(BATCH_ROWS)
        .build_buffered(reader)?;
    Ok((schema, Box::new(csv)))
}

/// Reads and splits the first line; column names are trimmed and must be unique.
fn read_header(reader: &mut impl BufRead, delimiter: u8) -> std::io::Result<Vec<String>> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line
        .trim_start_matches('\u{feff}')
        .trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .from_reader(line.as_bytes());
    let record = csv.records().next().transpose()?.unwrap_or_default();
    let mut names: Vec<String> = Vec::new();
    for (index, name) in record.iter().enumerate() {
        let name = name.trim().to_string();
        let name = if name.is_empty() {
            format!("column_{}", index + 1)
        } else {
            name
        };
        if names.contains(&name) {
            return Err(std::io::Error::other(format!(
                "column {name:?} appears twice"
            )));
        }
        names.push(name);
    }
    Ok(names)
}

fn open_json(
    path: &Path,
    file: File,
    text_columns: &[&str],
    progress: &ProgressBar,
) -> Result<(SchemaRef, Batches)> {
    let mut reader = BufReader::new(file);
    let (inferred, _) = arrow::json::reader::infer_json_schema_from_seekable(&mut reader, None)
        .map_err(|error| {
            Error::input(
                path,
                format!("cannot read as JSON lines (one object per line): {error}"),
            )
        })?;
    reader.rewind()?;
    let fields: Vec<Field> = inferred
        .fields()
        .iter()
        .map(|field| {
            if text_columns.contains(&field.name().as_str()) {
                Field::new(field.name(), DataType::Utf8, true)
            } else {
                field.as_ref().clone().with_nullable(true)
            }
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let json = arrow::json::ReaderBuilder::new(schema.clone())
        .with_coerce_primitive(true)
        .with_batch_size(BATCH_ROWS)
        .build(BufReader::new(progress.wrap_read(reader.into_inner())))?;
    Ok((schema, Box::new(json)))
}

fn open_parquet(
    path: &Path,
    file: File,
    size: u64,
    progress: &ProgressBar,
) -> Result<(SchemaRef, Batches)> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|error| Error::input(path, format!("cannot read as Parquet: {error}")))?;
    let schema = builder.schema().clone();
    let total_rows = builder.metadata().file_metadata().num_rows().max(1) as u64;
    let reader = builder.with_batch_size(BATCH_ROWS).build()?;
    let progress = progress.clone();
    let batches = reader.inspect(move |batch| {
        if let Ok(batch) = batch {
            progress.inc(size * batch.num_rows() as u64 / total_rows);
        }
    });
    Ok((schema, Box::new(batches)))
}

/// Turns whitespace-separated lines into comma-separated ones, skipping blank lines.
struct WhitespaceToCsv<R> {
    lines: BufReader<R>,
    buffer: Vec<u8>,
    position: usize,
}

impl<R: Read> WhitespaceToCsv<R> {
    fn new(inner: R) -> Self {
        WhitespaceToCsv {
            lines: BufReader::new(inner),
            buffer: Vec::new(),
            position: 0,
        }
    }
}

impl<R: Read> Read for WhitespaceToCsv<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.position == self.buffer.len() {
            let mut line = String::new();
            if self.lines.read_line(&mut line)? == 0 {
                return Ok(0);
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.is_empty() {
                continue;
            }
            self.buffer = format!("{}\n", fields.join(",")).into_bytes();
            self.position = 0;
        }
        let count = out.len().min(self.buffer.len() - self.position);
        out[..count].copy_from_slice(&self.buffer[self.position..self.position + count]);
        self.position += count;
        Ok(count)
    }
}
