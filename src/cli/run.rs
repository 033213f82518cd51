//! `goalcast run`: the nightly job for one day or a range of days.

use clap::Args;

use super::output::thousands;
use crate::context::ContextOptions;
use crate::error::{Error, Result};
use crate::nightly::{self, RunDay, RunOptions, RunSummary};
use crate::warehouse::Warehouse;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The day to compute, as YYYY-MM-DD; default yesterday in each goal's time zone.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub date: Option<String>,
    /// First day of a replay, as YYYY-MM-DD; every day through --to runs once, in order.
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// Last day of a replay, as YYYY-MM-DD.
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// Number of most recent days each run rewrites, so events that arrive late are counted.
    #[arg(long, default_value_t = nightly::DEFAULT_RESTATE_DAYS)]
    pub restate_days: u32,
    /// Output format: text or json.
    #[arg(long, default_value = "text")]
    pub format: String,
    /// Fail after this step, for testing that a failed run changes nothing.
    #[arg(long, hide = true)]
    pub fail_after: Option<String>,
}

pub async fn run(warehouse: &Warehouse, args: RunArgs, context: &ContextOptions) -> Result<()> {
    if !matches!(args.format.as_str(), "text" | "json") {
        return Err(Error::InvalidArgument(format!(
            "invalid --format {:?}: use text or json",
            args.format
        )));
    }
    let options = RunOptions {
        restate_days: args.restate_days,
        context: context.clone(),
        fail_after: args.fail_after,
        ..RunOptions::default()
    };
    let summaries = match (args.from, args.to) {
        (Some(from), Some(to)) => {
            let from = parse_day(&from, "--from")?;
            let to = parse_day(&to, "--to")?;
            let days = (to - from).num_days().max(0) as u64 + 1;
            let bar = crate::progress::count_bar(days, "nightly", "days");
            let summaries = nightly::run_range(warehouse, from, to, &options, |summary| {
                bar.set_message(summary.day.to_string());
                bar.inc(1);
            })
            .await;
            bar.finish_and_clear();
            summaries?
        }
        _ => {
            let day = match args.date {
                Some(text) => RunDay::Day(parse_day(&text, "--date")?),
                None => RunDay::Yesterday,
            };
            vec![nightly::run(warehouse, day, &options).await?]
        }
    };
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&summaries)?);
        return Ok(());
    }
    print_summaries(&summaries);
    Ok(())
}

fn parse_day(text: &str, option: &str) -> Result<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| Error::InvalidArgument(format!("invalid {option} {text:?}: use YYYY-MM-DD")))
}

fn print_summaries(summaries: &[RunSummary]) {
    let (Some(first), Some(last)) = (summaries.first(), summaries.last()) else {
        return;
    };
    if summaries.len() == 1 {
        println!(
            "Run {} for {}: {} goals updated, {} rows written.",
            first.run_id,
            first.day,
            first.goals.len(),
            thousands(first.rows_written)
        );
    } else {
        let rows: u64 = summaries.iter().map(|summary| summary.rows_written).sum();
        println!(
            "Ran {} days, {} through {}: {} rows written.",
            summaries.len(),
            first.day,
            last.day,
            thousands(rows)
        );
    }
    // The latest state of each goal any run touched.
    let mut latest = std::collections::BTreeMap::new();
    for summary in summaries {
        for goal in &summary.goals {
            latest.insert(goal.goal_id, goal);
        }
    }
    if latest.is_empty() {
        println!("No active goal had started by then.");
    }
    for goal in latest.values() {
        let error = if goal.performers > 0 {
            format!(
                " (prediction {:+.1}% off the actual)",
                100.0 * (goal.predicted_performers - goal.performers as f64)
                    / goal.performers as f64
            )
        } else {
            String::new()
        };
        println!(
            "  goal {} {:?} through {}: {} performers, {} predicted{}{}",
            goal.goal_id,
            goal.name,
            goal.day,
            thousands(goal.performers as u64),
            super::output::rounded(goal.predicted_performers),
            error,
            if goal.expired { "; expired" } else { "" }
        );
    }
}
