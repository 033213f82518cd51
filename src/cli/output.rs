//! Text and JSON rendering of command results.

use crate::engage::{Engagement, EngagementSummary};
use crate::error::{Error, Result};
use crate::generate::GenerateSummary;
use crate::goals::GoalDetails;
use crate::goals::records::GoalRecord;
use crate::import::ImportSummary;
use crate::predict::{GoalDefinition, Prediction, format_micros};
use crate::query::TableListing;
use crate::report::ReportSummary;
use crate::segments::{Segment, SegmentCatalog};
use crate::warehouse::Warehouse;
use crate::warehouse::compact::CompactSummary;

/// Prints what an import did: as aligned text, or as one JSON object with `json`.
pub fn print_import_summary(summary: &ImportSummary, format: &str) -> Result<()> {
    match format {
        "json" => {
            println!("{}", serde_json::to_string_pretty(summary)?);
            return Ok(());
        }
        "text" => {}
        other => {
            return Err(Error::InvalidArgument(format!(
                "invalid --output-format {other:?}: use text or json"
            )));
        }
    }
    println!(
        "Imported {} from {} file{} in {:.1} s",
        summary.table,
        summary.files_read,
        plural(summary.files_read as u64),
        summary.seconds
    );
    let unit = if summary.table == "events" {
        "partitions"
    } else {
        "files"
    };
    let duplicates_note = if summary.table == "events" {
        "identical in every column; one copy kept"
    } else {
        "same user id; the last row kept"
    };
    let present_label = if summary.table == "events" {
        "already in the table"
    } else {
        "users replaced"
    };
    let lines = [
        ("rows read", summary.rows_read, ""),
        ("rows rejected", summary.rows_rejected, ""),
        (
            "duplicates in input",
            summary.duplicates_in_input,
            duplicates_note,
        ),
        (present_label, summary.already_present, ""),
        ("rows written", summary.rows_written, ""),
        (unit, summary.partitions_written as u64, "rewritten"),
    ];
    for (label, value, note) in lines {
        let note = if note.is_empty() {
            String::new()
        } else {
            format!("  ({note})")
        };
        println!("  {label:<22}{:>12}{note}", thousands(value));
    }
    for (reason, count) in &summary.rejected_by_reason {
        println!("    {reason}: {}", thousands(*count));
    }
    for (reason, location, value) in &summary.rejected_samples {
        let value = if value.is_empty() {
            String::new()
        } else {
            format!(": {value:?}")
        };
        println!("      e.g. {location} ({reason}){value}");
    }
    for skipped in &summary.files_skipped {
        println!("  skipped {skipped}");
    }
    Ok(())
}

/// Prints the table listing as text or JSON.
pub fn print_tables(warehouse: &Warehouse, tables: &[TableListing], format: &str) -> Result<()> {
    match format {
        "json" => println!("{}", serde_json::to_string_pretty(tables)?),
        "table" | "text" => {
            println!("Warehouse {}", warehouse.url());
            if tables.is_empty() {
                println!("  no tables yet; load data with goalcast import or goalcast generate");
            }
            for table in tables {
                let partitioning = if table.partition_columns.is_empty() {
                    String::new()
                } else {
                    format!(", partitioned by {}", table.partition_columns.join(", "))
                };
                println!(
                    "\n{}: {} rows in {} file{} ({}){partitioning}",
                    table.name,
                    thousands(table.rows),
                    table.files,
                    plural(table.files as u64),
                    human_bytes(table.bytes)
                );
                for (name, data_type) in &table.columns {
                    println!("  {name:<24} {data_type}");
                }
            }
        }
        other => {
            return Err(Error::InvalidArgument(format!(
                "invalid --format {other:?}: use table or json"
            )));
        }
    }
    Ok(())
}

/// Prints what `goalcast compact` did to each table.
pub fn print_compact_summaries(
    warehouse: &Warehouse,
    summaries: &[CompactSummary],
    format: &str,
) -> Result<()> {
    if format == "json" {
        println!("{}", serde_json::to_string_pretty(summaries)?);
        return Ok(());
    }
    if summaries.is_empty() {
        println!("Warehouse {} has no tables to compact", warehouse.url());
    }
    for summary in summaries {
        if summary.partitions == 0 {
            println!("{}: nothing to compact", summary.table);
        } else {
            let counted = |n: usize, noun: &str| {
                format!("{} {noun}{}", thousands(n as u64), plural(n as u64))
            };
            println!(
                "{}: {} from {} ({}) to {} ({}), {} rows, in {:.1} s",
                summary.table,
                counted(summary.partitions, "partition"),
                counted(summary.files_before, "file"),
                human_bytes(summary.bytes_before),
                counted(summary.files_after, "file"),
                human_bytes(summary.bytes_after),
                thousands(summary.rows),
                summary.seconds
            );
        }
        for message in &summary.skipped {
            println!("  {message}; the partition was left as it was");
        }
    }
    Ok(())
}

/// Prints what `goalcast generate` wrote.
pub fn print_generate_summary(warehouse: &Warehouse, summary: &GenerateSummary) {
    println!(
        "Generated {} users and {} events over {} days in {:.1} s into {}",
        thousands(summary.users),
        thousands(summary.events),
        summary.days,
        summary.seconds,
        warehouse.url()
    );
    for (event, count) in &summary.events_by_name {
        println!("  {event:<18}{:>14}", thousands(*count));
    }
    println!("Tables: events, profiles, truth, truth_calendar (see `goalcast tables`)");
}

/// Formats a count with thousands separators.
/// Formats a non-negative expected count rounded to a whole number, with thousands separators.
pub fn rounded(value: f64) -> String {
    thousands(value.max(0.0).round() as u64)
}

pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

fn plural(count: u64) -> &'static str {
    if count == 1 { "" } else { "s" }
}

/// Prints a goal's prediction: the count and interval, quality, buckets and top features.
pub fn print_prediction(
    goal: &GoalDefinition,
    prediction: &Prediction,
    saved: Option<&GoalRecord>,
    format: &str,
) -> Result<()> {
    match format {
        "json" => {
            let value =
                serde_json::json!({ "goal": goal, "saved": saved, "prediction": prediction });
            println!("{}", serde_json::to_string_pretty(&value)?);
            return Ok(());
        }
        "text" => {}
        other => {
            return Err(Error::InvalidArgument(format!(
                "invalid --format {other:?}: use text or json"
            )));
        }
    }
    let quality = &prediction.quality;
    if let Some(record) = saved {
        println!(
            "Created goal {} (see `goalcast goal show {}`)",
            record.goal_id, record.goal_id
        );
    }
    println!(
        "Goal {:?}: {} {} in segment {}",
        goal.name,
        goal.direction.as_str(),
        goal.event_names.join(" or "),
        goal.segment,
    );
    println!(
        "  from {} through {} ({})",
        format_micros(goal.start_micros),
        goal.end_date,
        goal.time_zone
    );
    if let Some(filter) = &goal.event_filter {
        println!("  event filter: {filter}");
    }
    println!(
        "  predicted: {} of {} target users perform the events (90% interval {} to {})",
        rounded(prediction.predicted_count),
        thousands(prediction.target_users),
        rounded(prediction.interval_low),
        rounded(prediction.interval_high)
    );
    println!(
        "\nModel quality (held-out window starting {})",
        quality.cutoffs[0]
    );
    println!(
        "  training rows {} ({} positive) from {} windows",
        thousands(quality.training_rows),
        thousands(quality.training_positives),
        quality.cutoffs.len()
    );
    let auc = quality
        .auc
        .map_or("n/a".to_string(), |auc| format!("{auc:.3}"));
    println!(
        "  AUC {auc}   log loss {:.4}   Brier {:.4}",
        quality.log_loss, quality.brier
    );
    for backtest in &quality.backtests {
        println!(
            "  backtest {}: predicted {}, actual {} (prediction {:+.1}% off the actual)",
            backtest.cutoff,
            rounded(backtest.predicted_count),
            thousands(backtest.actual_count),
            100.0 * backtest.relative_error
        );
    }
    println!("  calibration by decile (mean predicted / observed):");
    let cells: Vec<String> = quality
        .calibration
        .iter()
        .map(|bin| format!("{:.2}/{:.2}", bin.mean_predicted, bin.observed_rate))
        .collect();
    // Five deciles per line keep the output within 100 columns.
    for line in cells.chunks(5) {
        println!("    {}", line.join("  "));
    }
    println!("\nIntent buckets");
    for bucket in &prediction.buckets {
        println!(
            "  {:<18}{:>10} users  mean probability {:.3}  expected {:.0}",
            bucket.bucket,
            thousands(bucket.users),
            bucket.mean_probability,
            bucket.expected_performers
        );
    }
    println!("\nTop features (odds ratio per standard deviation)");
    let mut ratios = quality.odds_ratios.clone();
    ratios.sort_by(|a, b| b.1.ln().abs().total_cmp(&a.1.ln().abs()));
    for (name, ratio) in ratios.iter().take(6) {
        println!("  {name:<34}{ratio:>8.2}");
    }
    Ok(())
}

/// Returns whether `format` is json, failing unless it is text or json.
pub fn check_format(format: &str) -> Result<bool> {
    match format {
        "json" => Ok(true),
        "text" => Ok(false),
        other => Err(Error::InvalidArgument(format!(
            "invalid --format {other:?}: use text or json"
        ))),
    }
}

/// Prints one line per goal.
pub fn print_goal_list(goals: &[GoalRecord], format: &str) -> Result<()> {
    if check_format(format)? {
        println!("{}", serde_json::to_string_pretty(goals)?);
        return Ok(());
    }
    if goals.is_empty() {
        println!("No goals yet; create one with `goalcast goal create`.");
        return Ok(());
    }
    println!(
        "{:>4}  {:<24} {:<9} {:<20} {:>10} {:>10}  {:<10} events",
        "id", "name", "status", "segment", "users", "predicted", "end date"
    );
    for goal in goals {
        let events: Vec<String> = serde_json::from_str(&goal.event_names)?;
        println!(
            "{:>4}  {:<24} {:<9} {:<20} {:>10} {:>10.0}  {:<10} {}",
            goal.goal_id,
            truncate(&goal.name, 24),
            goal.status,
            truncate(&goal.segment, 20),
            thousands(goal.target_users as u64),
            goal.predicted_count,
            goal.end_date,
            events.join(", ")
        );
    }
    Ok(())
}

/// Prints a saved goal with its quality, buckets and predicted curve.
pub fn print_goal_details(details: &GoalDetails, format: &str) -> Result<()> {
    if check_format(format)? {
        println!("{}", serde_json::to_string_pretty(details)?);
        return Ok(());
    }
    let goal = &details.goal;
    let events: Vec<String> = serde_json::from_str(&goal.event_names)?;
    println!("Goal {} {:?} ({})", goal.goal_id, goal.name, goal.status);
    println!(
        "  {} {} in segment {}",
        goal.direction,
        events.join(" or "),
        goal.segment
    );
    if let Some(filter) = &goal.event_filter {
        println!("  event filter: {filter}");
    }
    println!(
        "  from {} through {} ({})",
        goal.start_time, goal.end_date, goal.time_zone
    );
    println!(
        "  predicted: {} of {} target users perform the events (90% interval {} to {})",
        rounded(goal.predicted_count),
        thousands(goal.target_users as u64),
        rounded(goal.interval_low),
        rounded(goal.interval_high)
    );
    if let Some(run) = &details.model_run {
        let auc = run.auc.map_or("n/a".to_string(), |auc| format!("{auc:.3}"));
        println!(
            "  model: {} training rows, AUC {auc}, log loss {:.4}, Brier {:.4}, backtest count error {:.1}% (RMS)",
            thousands(run.training_rows as u64),
            run.log_loss,
            run.brier,
            100.0 * run.count_error_rms
        );
    }
    println!("\nIntent buckets");
    for (bucket, users, mean, expected) in &details.buckets {
        println!(
            "  {bucket:<18}{:>10} users  mean probability {mean:.3}  expected {expected:.0}",
            thousands(*users as u64)
        );
    }
    if !details.engagements.is_empty() {
        println!("\nEngaged buckets (control_groups)");
        for engaged in &details.engagements {
            print_engagement_sizes(engaged);
        }
    }
    if !details.engagements.is_empty() {
        match &details.uplift {
            Some(latest) => {
                println!("\nTest vs control through {} (goal_daily)", latest.day);
                for (bucket, uplift) in &latest.buckets {
                    print_uplift(bucket, uplift);
                }
            }
            None => println!("  no nightly run yet: `goalcast run` computes test vs control"),
        }
    }
    if let (Some(first), Some(last)) = (details.curve.first(), details.curve.last()) {
        println!(
            "\nPredicted cumulative performers: {:.0} by {}, {:.0} by {} ({} days in goal_curves)",
            first.expected_cumulative,
            first.day,
            last.expected_cumulative,
            last.day,
            details.curve.len()
        );
    }
    Ok(())
}

/// Prints an engagement: the bucket, its test and control sizes, and the export.
pub fn print_engagement(engagement: &Engagement, format: &str) -> Result<()> {
    if check_format(format)? {
        println!("{}", serde_json::to_string_pretty(engagement)?);
        return Ok(());
    }
    let summary = &engagement.summary;
    if engagement.newly_assigned {
        println!(
            "Engaged {} of goal {} ({:?})",
            summary.bucket, engagement.goal_id, engagement.goal_name
        );
    } else {
        println!(
            "{} of goal {} ({:?}) was already engaged; the stored assignment is unchanged",
            summary.bucket, engagement.goal_id, engagement.goal_name
        );
    }
    print_engagement_sizes(summary);
    match &engagement.export {
        Some(export) => {
            println!(
                "  test audience: {} users written as {} to",
                thousands(export.users),
                export.format
            );
            println!("    {}", export.path);
        }
        None => println!("  test audience: not exported (use --export FILE.parquet or FILE.csv)"),
    }
    Ok(())
}

fn print_engagement_sizes(summary: &EngagementSummary) {
    println!(
        "  {:<18}{:>10} users: {:>10} test, {:>8} control ({}%)",
        summary.bucket,
        thousands(summary.users as u64),
        thousands(summary.test_users as u64),
        thousands(summary.control_users as u64),
        summary.control_percent,
    );
    println!("  {:<18}assigned {}", "", summary.assigned_at);
}

/// Prints where a report went and whether it has actuals.
pub fn print_report_summary(summary: &ReportSummary, out: &std::path::Path) {
    println!(
        "Wrote the report of goal {} to {} ({})",
        summary.goal_id,
        out.display(),
        human_bytes(summary.bytes as u64)
    );
    match &summary.actuals_through {
        Some(day) => println!("  actuals through {day}"),
        None => println!("  no nightly run yet: the report shows the prediction only"),
    }
}

/// Prints the segment names.
pub fn print_segment_list(catalog: &SegmentCatalog, format: &str) -> Result<()> {
    let names = catalog.names()?;
    if check_format(format)? {
        println!("{}", serde_json::to_string_pretty(&names)?);
        return Ok(());
    }
    println!(
        "Segments (built-in all_users, files in {}):",
        catalog.folder().display()
    );
    for name in names {
        println!("  {name}");
    }
    Ok(())
}

/// Prints a segment's size and sample.
pub fn print_segment(
    segment: &Segment,
    as_of_micros: i64,
    size: u64,
    sample: &[String],
    format: &str,
) -> Result<()> {
    if check_format(format)? {
        let value = serde_json::json!({
            "name": segment.name,
            "as_of": format_micros(as_of_micros),
            "users": size,
            "sample": sample,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "Segment {} as of {}: {} users",
        segment.name,
        format_micros(as_of_micros),
        thousands(size)
    );
    if !sample.is_empty() {
        println!("  sample: {}", sample.join(", "));
    }
    Ok(())
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let mut short: String = text.chars().take(width - 1).collect();
        short.push('…');
        short
    }
}

/// Prints the test against control comparison of one engaged bucket, rates in percent.
pub fn print_uplift(bucket: &str, uplift: &crate::engage::stats::Uplift) {
    use crate::engage::stats::Verdict;
    let points = |share: f64| format!("{:+.2}", 100.0 * share);
    println!(
        "  {bucket:<18} test {:.2}% of {}, control {:.2}% of {}",
        100.0 * uplift.test_rate,
        thousands(uplift.test_users),
        100.0 * uplift.control_rate,
        thousands(uplift.control_users)
    );
    let relative = uplift.uplift_rel.map_or(String::new(), |rel| {
        format!(" ({:+.1}% relative)", 100.0 * rel)
    });
    println!(
        "  {:<18} uplift {} points{relative}, 95% interval {} to {}, p = {:.3}",
        "",
        points(uplift.uplift_abs),
        points(uplift.uplift_low),
        points(uplift.uplift_high),
        uplift.p_value
    );
    let verdict = match uplift.verdict {
        Verdict::Significant => format!(
            "significant at 5%: {:+.0} incremental achievers",
            uplift.incremental_achievers
        ),
        Verdict::NotSignificant => "not significant at 5%".to_string(),
        Verdict::ControlTooSmall => format!(
            "control too small: detects {} points at 80% power, plausible effect {:.2}",
            uplift
                .min_detectable_effect
                .map_or("no".to_string(), |mde| format!("{:.2}", 100.0 * mde)),
            100.0 * uplift.plausible_effect
        ),
        Verdict::NoVariation => "no variation yet: every user has the same outcome".to_string(),
    };
    println!("  {:<18} {verdict}", "");
}
