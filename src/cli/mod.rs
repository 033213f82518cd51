//! The `goalcast` command line: argument parsing and one function per command.

mod demo;
mod goal;
mod import;
mod output;
mod run;
mod schedule;
mod shell;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::context::{ContextOptions, DEFAULT_MEMORY_LIMIT_BYTES, build_context};
use crate::error::{Error, Result};
use crate::query::{self, OutputFormat};
use crate::warehouse::{DEFAULT_WAREHOUSE, Warehouse};

/// Predictive user segments over a Parquet warehouse.
#[derive(Debug, Parser)]
#[command(name = "goalcast", version, max_term_width = 100)]
pub struct Cli {
    /// Warehouse root: a local folder or s3://bucket/prefix (credentials from AWS_* variables).
    #[arg(long, global = true, env = "GOALCAST_WAREHOUSE", default_value = DEFAULT_WAREHOUSE)]
    pub warehouse: String,

    /// Memory for query execution, e.g. 512MiB or 4GiB; larger operations spill to disk.
    #[arg(long, global = true, env = "GOALCAST_MEMORY_LIMIT", value_parser = parse_bytes)]
    pub memory_limit: Option<usize>,

    /// Log more: -v for progress of each step, -vv for debugging detail.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process; boxing buys nothing
pub enum Command {
    /// Load events or profiles from CSV, JSON lines or Parquet files.
    #[command(subcommand)]
    Import(import::ImportCommand),

    /// Predict, create and manage goals.
    #[command(subcommand)]
    Goal(goal::GoalCommand),

    /// List segments and show their users.
    #[command(subcommand)]
    Segment(goal::SegmentCommand),

    /// Run the main job end to end on a scratch copy of the warehouse: predict, create and
    /// engage a goal, replay the nightly job, and report.
    Demo(demo::DemoArgs),

    /// Run the nightly job: actual performers against the prediction, and goal expiry.
    Run(run::RunArgs),

    /// Run the jobs of the jobs folder on their cron schedules until SIGINT or SIGTERM.
    Schedule(schedule::ScheduleArgs),

    /// Write a synthetic warehouse with known per-user event probabilities.
    Generate(GenerateArgs),

    /// Run a read-only SQL query, or open an interactive shell when no query is given.
    Sql(SqlArgs),

    /// Write a goal's report: one HTML file that opens without a network.
    Report {
        /// The goal id, from `goalcast goal list`.
        goal_id: i64,
        /// The HTML file to write; default goal-ID-report.html in the current folder.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },

    /// Merge the files of each table partition into one, so that queries open fewer files.
    Compact(CompactArgs),

    /// List the warehouse's tables with row counts and columns.
    Tables {
        /// Output format: table or json.
        #[arg(long, default_value = "table")]
        format: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Number of users.
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,
    /// Number of days of events, from --start-date.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Random seed; the same seed and sizes give the same data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// First day of the generated events (UTC), as YYYY-MM-DD.
    #[arg(long, default_value = "2026-01-01")]
    pub start_date: String,
    /// Replace the tables of a warehouse that already has some.
    #[arg(long)]
    pub replace: bool,
}

#[derive(Debug, clap::Args)]
pub struct CompactArgs {
    /// Tables to compact (default: every table of the warehouse).
    pub tables: Vec<String>,
    /// Largest number of rows in one compacted file. Larger partitions get several files.
    #[arg(long, default_value_t = crate::warehouse::compact::DEFAULT_MAX_ROWS_PER_FILE)]
    pub max_rows_per_file: u64,
    /// Output format: table or json.
    #[arg(long, default_value = "table")]
    pub format: String,
}

#[derive(Debug, clap::Args)]
pub struct SqlArgs {
    /// The query; omit it for an interactive shell.
    pub query: Option<String>,
    /// Output format: table, csv, json (JSON lines) or parquet.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Write the results to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let context_options = ContextOptions {
        memory_limit_bytes: cli.memory_limit.unwrap_or(DEFAULT_MEMORY_LIMIT_BYTES),
        target_partitions: None,
    };
    match cli.command {
        Command::Import(command) => {
            let warehouse = Warehouse::open(&cli.warehouse, true)?;
            warehouse.recover().await?;
            import::run(&warehouse, command, &context_options).await
        }
        Command::Goal(command) => {
            let warehouse = open_for_reading(&cli.warehouse).await?;
            goal::run(&warehouse, command, &context_options).await
        }
        Command::Segment(command) => {
            let warehouse = open_for_reading(&cli.warehouse).await?;
            goal::run_segment(&warehouse, command, &context_options).await
        }
        Command::Demo(args) => demo::run(&cli.warehouse, args, &context_options).await,
        Command::Run(args) => {
            let warehouse = open_for_reading(&cli.warehouse).await?;
            run::run(&warehouse, args, &context_options).await
        }
        Command::Schedule(args) => {
            let warehouse = open_for_reading(&cli.warehouse).await?;
            schedule::run(&warehouse, args, &context_options).await
        }
        Command::Generate(args) => generate(&cli.warehouse, args).await,
        Command::Compact(args) => {
            let warehouse = open_for_reading(&cli.warehouse).await?;
            compact(&warehouse, args).await
        }
        Command::Sql(args) => {
            let warehouse = open_for_reading(&cli.warehouse).await?;
            let ctx = build_context(&warehouse, &context_options).await?;
            let format: OutputFormat = args.format.parse()?;
            match args.query {
                Some(sql) => {
                    query::check_output(format, args.output.as_deref())?;
                    let started = query::start_read_only(&ctx, &warehouse, &sql).await?;
                    query::write_results(started, format, args.output.as_deref()).await?;
                    Ok(())
                }
                None => shell::run(&ctx, &warehouse, format).await,
            }
        }
        Command::Report { goal_id, out } => {
            let warehouse = open_for_reading(&cli.warehouse).await?;
            let out = out.unwrap_or_else(|| PathBuf::from(format!("goal-{goal_id}-report.html")));
            let summary =
                crate::report::write_report(&warehouse, &context_options, goal_id, &out).await?;
            output::print_report_summary(&summary, &out);
            Ok(())
        }
        Command::Tables { format } => {
            let warehouse = open_for_reading(&cli.warehouse).await?;
            let ctx = build_context(&warehouse, &context_options).await?;
            let tables = query::list_tables(&warehouse, &ctx).await?;
            output::print_tables(&warehouse, &tables, &format)
        }
    }
}

async fn open_for_reading(location: &str) -> Result<Warehouse> {
    let warehouse = Warehouse::open(location, false)?;
    warehouse.recover().await?;
    Ok(warehouse)
}

async fn generate(location: &str, args: GenerateArgs) -> Result<()> {
    let warehouse = Warehouse::open(location, true)?;
    warehouse.recover().await?;
    let existing = warehouse.table_names().await?;
    if !existing.is_empty() && !args.replace {
        return Err(Error::InvalidArgument(format!(
            "warehouse {} already has tables ({}); pass --replace to overwrite them or choose \
             another --warehouse",
            warehouse.url(),
            existing.join(", ")
        )));
    }
    let start_date =
        chrono::NaiveDate::parse_from_str(&args.start_date, "%Y-%m-%d").map_err(|_| {
            Error::InvalidArgument(format!(
                "invalid --start-date {:?}: use YYYY-MM-DD",
                args.start_date
            ))
        })?;
    let config = crate::generate::GeneratorConfig {
        users: args.users,
        days: args.days,
        seed: args.seed,
        start_date,
        chunk_users: crate::generate::DEFAULT_CHUNK_USERS,
    };
    let summary = crate::generate::generate(&warehouse, &config).await?;
    output::print_generate_summary(&warehouse, &summary);
    Ok(())
}

/// Compacts the tables of `args` under the run lock, so that no nightly run or goal creation
/// writes them meanwhile.
async fn compact(warehouse: &Warehouse, args: CompactArgs) -> Result<()> {
    if !matches!(args.format.as_str(), "table" | "json") {
        return Err(Error::InvalidArgument(format!(
            "invalid --format {:?}: use table or json",
            args.format
        )));
    }
    crate::warehouse::compact::check_max_rows(args.max_rows_per_file)?;
    let known = warehouse.table_names().await?;
    let tables = if args.tables.is_empty() {
        known
    } else {
        if let Some(unknown) = args.tables.iter().find(|table| !known.contains(table)) {
            return Err(Error::TableNotFound {
                name: unknown.clone(),
                warehouse: warehouse.url().to_string(),
            });
        }
        args.tables
    };
    let run_id = crate::nightly::new_run_id();
    let lock = crate::warehouse::RunLock::acquire(warehouse, &run_id, "compact").await?;
    let mut summaries = Vec::new();
    for table in &tables {
        let compacted = crate::warehouse::compact::compact_table(
            warehouse,
            table,
            args.max_rows_per_file,
            Some(&lock),
        )
        .await;
        match compacted {
            Ok(summary) => summaries.push(summary),
            Err(error) => {
                lock.release().await?;
                // The tables before this one are committed, so their summaries print first.
                output::print_compact_summaries(warehouse, &summaries, &args.format)?;
                return Err(error);
            }
        }
    }
    lock.release().await?;
    output::print_compact_summaries(warehouse, &summaries, &args.format)
}

/// Parses a byte size such as `512MiB`, `4GiB`, `4G` or `1000000`.
pub fn parse_bytes(text: &str) -> std::result::Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| {
        format!("invalid size {text:?}: use a number with an optional unit such as 512MiB or 4GiB")
    })?;
    let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0_f64.powi(4),
        other => {
            return Err(format!(
                "invalid size unit {other:?}: use KiB, MiB, GiB or TiB"
            ));
        }
    };
    let bytes = number * multiplier;
    if bytes < 16.0 * 1024.0 * 1024.0 {
        return Err(format!("size {text:?} is below the 16MiB minimum"));
    }
    Ok(bytes as usize)
}
