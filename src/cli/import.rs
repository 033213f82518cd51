//! `goalcast import events|profiles`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::output;
use crate::context::ContextOptions;
use crate::error::{Error, Result};
use crate::import::time::{TimeFormat, parse_time_zone};
use crate::import::{self, EventMapping, EventNameSource, SourceOptions};
use crate::warehouse::Warehouse;

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Load events: one row per user action, appended to `events` without duplicates.
    Events(EventsArgs),
    /// Load user attributes: one row per user, replacing earlier rows of the same users.
    Profiles(ProfilesArgs),
}

#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Input files: .csv, .tsv, .json/.jsonl/.ndjson (one object per line) or .parquet.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Read every file as this format instead of guessing from the extension: csv, json, parquet.
    #[arg(long)]
    pub format: Option<String>,
    /// CSV field separator: one character, `tab`, or `whitespace` for runs of spaces.
    #[arg(long)]
    pub delimiter: Option<String>,
    /// Column holding the user id.
    #[arg(long, default_value = "user_id")]
    pub user_id_column: String,
    /// Column to leave out of the table (repeatable).
    #[arg(long = "ignore-column", value_name = "COLUMN")]
    pub ignore_columns: Vec<String>,
    /// Print the summary as JSON instead of text.
    #[arg(long, default_value = "text", value_name = "text|json")]
    pub output_format: String,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Column holding the event name.
    #[arg(long, default_value = "event_name", conflicts_with = "event_name")]
    pub event_name_column: String,
    /// One event name for every row, for files of a single kind of event.
    #[arg(long)]
    pub event_name: Option<String>,
    /// Column holding the event time.
    #[arg(long, default_value = "event_time")]
    pub time_column: String,
    /// Notation of text or numeric times: auto (ISO 8601), epoch_s, epoch_ms, epoch_us, or a
    /// strftime pattern such as %Y%m%d.
    #[arg(long, default_value = "auto")]
    pub time_format: String,
    /// Time zone of times written without an offset, as an IANA name.
    #[arg(long, default_value = "UTC")]
    pub time_zone: String,
    /// Column holding the amount (revenue); files without it import with null amounts.
    #[arg(long)]
    pub amount_column: Option<String>,
}

#[derive(Debug, Args)]
pub struct ProfilesArgs {
    #[command(flatten)]
    pub source: SourceArgs,
}

pub async fn run(
    warehouse: &Warehouse,
    command: ImportCommand,
    context_options: &ContextOptions,
) -> Result<()> {
    match command {
        ImportCommand::Events(args) => {
            let source_options = source_options(&args.source)?;
            let event_name = match args.event_name {
                Some(name) if name.trim().is_empty() => {
                    return Err(Error::InvalidArgument(
                        "--event-name must not be empty".into(),
                    ));
                }
                Some(name) => EventNameSource::Constant(name),
                None => EventNameSource::Column(args.event_name_column),
            };
            let mapping = EventMapping {
                user_id_column: args.source.user_id_column.clone(),
                event_name,
                time_column: args.time_column,
                time_format: args.time_format.parse::<TimeFormat>()?,
                time_zone: parse_time_zone(&args.time_zone)?,
                amount_required: args.amount_column.is_some(),
                amount_column: args.amount_column.unwrap_or_else(|| "amount".to_string()),
                ignore_columns: args.source.ignore_columns.clone(),
            };
            let summary = import::import_events(
                warehouse,
                &args.source.paths,
                &source_options,
                &mapping,
                context_options,
            )
            .await?;
            output::print_import_summary(&summary, &args.source.output_format)
        }
        ImportCommand::Profiles(args) => {
            let source_options = source_options(&args.source)?;
            let summary = import::import_profiles(
                warehouse,
                &args.source.paths,
                &source_options,
                &args.source.user_id_column,
                &args.source.ignore_columns,
                context_options,
            )
            .await?;
            output::print_import_summary(&summary, &args.source.output_format)
        }
    }
}

fn source_options(args: &SourceArgs) -> Result<SourceOptions> {
    Ok(SourceOptions {
        format: args.format.as_deref().map(str::parse).transpose()?,
        delimiter: args.delimiter.as_deref().map(str::parse).transpose()?,
    })
}
