//! `goalcast demo`: the main job end to end on a scratch copy of a warehouse.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use clap::Args;

use super::output::{self, thousands};
use crate::context::{ContextOptions, build_context};
use crate::engage::{self, EngageRequest, EngagedBucket};
use crate::error::{Error, Result};
use crate::goals::{self, records::from_batches};
use crate::nightly::{self, RunOptions, records::ResultRecord};
use crate::predict::{self, BucketCuts, Direction, GoalDefinition, PredictOptions};
use crate::segments::{DEFAULT_SEGMENTS_DIR, SegmentCatalog};
use crate::warehouse::{STAGING_DIR, Warehouse, lock::LOCK_FILE};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder for the scratch copy and the demo's files; it must not exist yet. Default: a new
    /// folder in the system's temporary directory.
    #[arg(long)]
    pub scratch: Option<PathBuf>,
    /// Event of the demo goal.
    #[arg(long, default_value = "Charged")]
    pub event: String,
    /// Start of the demo goal (UTC), as YYYY-MM-DD.
    #[arg(long, default_value = "1997-09-30")]
    pub as_of: String,
    /// Last day of the demo goal (UTC), as YYYY-MM-DD.
    #[arg(long, default_value = "1997-12-28")]
    pub end_date: String,
    /// Folder of segment SQL files.
    #[arg(long, default_value = DEFAULT_SEGMENTS_DIR)]
    pub segments_dir: PathBuf,
}

const STEPS: usize = 6;

fn step(number: usize, title: &str) {
    println!("\n== {number}/{STEPS} {title}");
}

pub async fn run(source: &str, args: DemoArgs, context: &ContextOptions) -> Result<()> {
    let as_of = parse_day(&args.as_of, "--as-of")?;
    let end_date = parse_day(&args.end_date, "--end-date")?;
    let source_folder = Warehouse::open(source, false)?
        .local_folder()
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "the demo copies a local warehouse folder, and {source} is not one"
            ))
        })?;
    let scratch = match args.scratch {
        Some(folder) => folder,
        None => std::env::temp_dir().join(format!(
            "goalcast-demo-{}",
            chrono::Utc::now().format("%Y%m%d-%H%M%S")
        )),
    };
    if scratch.exists() {
        return Err(Error::input(
            &scratch,
            "the scratch folder already exists; pass a new --scratch folder",
        ));
    }
    let root = scratch.join("warehouse");
    copy_warehouse(&source_folder, &root)?;
    let warehouse = Warehouse::open(root.to_str().expect("the scratch path is UTF-8"), false)?;
    println!(
        "goalcast demo: working on a copy of {}",
        source_folder.display()
    );
    println!("  in {}", scratch.display());

    step(1, "Segments");
    let catalog = SegmentCatalog::new(&args.segments_dir);
    output::print_segment_list(&catalog, "text")?;

    step(2, "Predict and create a goal");
    let definition = GoalDefinition {
        name: format!("{} by {end_date}", args.event),
        segment: "all_users".into(),
        event_names: vec![args.event.clone()],
        event_filter: None,
        direction: Direction::Maximize,
        end_date,
        time_zone: "UTC".into(),
        start_micros: predict::local_midnight_micros(as_of, chrono_tz::UTC)?,
    };
    println!(
        "Goal: users of all_users perform {} from {as_of} through {end_date} (UTC).",
        args.event
    );
    let ctx = build_context(&warehouse, context).await?;
    let spinner = crate::progress::spinner("training and scoring".into());
    let prediction =
        predict::predict(&ctx, &catalog, &definition, &PredictOptions::default()).await;
    spinner.finish_and_clear();
    let prediction = prediction?;
    let existing = goals::load_goals(&warehouse, context).await?;
    let goal = goals::save_goal(
        &warehouse,
        existing,
        &definition,
        &prediction,
        BucketCuts::default(),
    )
    .await?;
    output::print_prediction(&definition, &prediction, Some(&goal), "text")?;

    step(3, "Engage Moderately Likely with a 5% control group");
    let audience = scratch.join("moderately_likely_audience.csv");
    let request = EngageRequest {
        goal_id: goal.goal_id,
        bucket: EngagedBucket::ModeratelyLikely,
        control_percent: None,
        export: Some(audience),
    };
    let engagement = engage::engage(&warehouse, context, &request).await?;
    output::print_engagement(&engagement, "text")?;

    step(4, "Replay the nightly job over the goal window");
    let days = (end_date - as_of).num_days().max(0) as u64 + 1;
    let bar = crate::progress::count_bar(days, "nightly", "days");
    let runs = nightly::run_range(
        &warehouse,
        as_of,
        end_date,
        &RunOptions::default(),
        |summary| {
            bar.set_message(summary.day.to_string());
            bar.inc(1);
        },
    )
    .await;
    bar.finish_and_clear();
    let runs = runs?;
    let rows: u64 = runs.iter().map(|run| run.rows_written).sum();
    println!(
        "Ran {} nightly runs, {as_of} through {end_date}: {} rows written; goal {} expired.",
        runs.len(),
        thousands(rows),
        goal.goal_id
    );

    step(5, "Final report");
    let ctx = build_context(&warehouse, context).await?;
    print_final_report(&ctx, &goal).await?;
    let details = goals::goal_details(&ctx, &warehouse, context, goal.goal_id).await?;
    if let Some(latest) = &details.uplift {
        println!("\nTest vs control");
        for (bucket, uplift) in &latest.buckets {
            output::print_uplift(bucket, uplift);
        }
    }

    step(6, "Where to look next");
    let report = scratch.join("report.html");
    crate::report::write_report(&warehouse, context, goal.goal_id, &report).await?;
    println!("HTML report:   {}", report.display());
    println!(
        "Test audience: {}",
        scratch.join("moderately_likely_audience.csv").display()
    );
    println!(
        "Tables:        {} (Parquet; `goalcast tables` lists them)",
        root.display()
    );
    println!("Try (or `goalcast` in place of `cargo run --` once installed):");
    println!("  cargo run -- --warehouse {} sql \\", root.display());
    println!("    \"SELECT day, performers, predicted_performers FROM goal_daily \\");
    println!("     WHERE bucket = 'All' AND arm = 'all' ORDER BY day DESC LIMIT 5\"");
    Ok(())
}

fn parse_day(text: &str, option: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| Error::InvalidArgument(format!("invalid {option} {text:?}: use YYYY-MM-DD")))
}

/// Prints the expired goal's `goal_results`: predicted against actual, and rates per bucket.
async fn print_final_report(
    ctx: &datafusion::prelude::SessionContext,
    goal: &goals::records::GoalRecord,
) -> Result<()> {
    let results: Vec<ResultRecord> = from_batches(
        &ctx.sql(&format!(
            "SELECT * EXCLUDE (goal_id) FROM goal_results WHERE goal_id = {}",
            goal.goal_id
        ))
        .await?
        .collect()
        .await?,
    )?;
    let headline = results
        .iter()
        .find(|row| row.bucket == "All" && row.arm == "all")
        .ok_or_else(|| {
            Error::InvalidArgument(format!("goal {} has no final results", goal.goal_id))
        })?;
    println!(
        "Predicted {:.0} performers (90% interval {:.0} to {:.0}); actual {}: {:+.1}%, {}.",
        headline.predicted_performers,
        headline.interval_low.unwrap_or(f64::NAN),
        headline.interval_high.unwrap_or(f64::NAN),
        thousands(headline.performers as u64),
        headline.error_percent.unwrap_or(f64::NAN),
        if headline.interval_covered == Some(true) {
            "inside the interval"
        } else {
            "outside the interval"
        }
    );
    println!("Actual rates by bucket:");
    for bucket in predict::BUCKETS {
        if let Some(row) = results
            .iter()
            .find(|row| row.bucket == bucket && row.arm == "all")
        {
            println!(
                "  {bucket:<18}{:>8} users  achieved {:>5.1}%  predicted {:>5.1}%",
                thousands(row.users as u64),
                100.0 * row.achieve_rate.unwrap_or(0.0),
                100.0 * row.predicted_achievers / (row.users.max(1) as f64)
            );
        }
    }
    Ok(())
}

/// Copies the committed content of a local warehouse folder, without staged writes or a lock.
fn copy_warehouse(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|error| Error::input(to, error.to_string()))?;
    let entries = std::fs::read_dir(from)
        .map_err(|error| Error::input(from, format!("cannot read the warehouse: {error}")))?;
    for entry in entries {
        let entry = entry.map_err(|error| Error::input(from, error.to_string()))?;
        let name = entry.file_name();
        if name == STAGING_DIR || name == LOCK_FILE {
            continue;
        }
        let target = to.join(&name);
        if entry.path().is_dir() {
            copy_warehouse(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .map_err(|error| Error::input(entry.path(), format!("cannot copy: {error}")))?;
        }
    }
    Ok(())
}
