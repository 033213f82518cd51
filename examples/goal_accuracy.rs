//! Measures a goal prediction on a generated warehouse against the generator's truth.
//!
//! Usage: `cargo run --release --example goal_accuracy -- WAREHOUSE START END_DATE EVENT...`
//! where WAREHOUSE was written by `goalcast generate`, START is the goal's start (YYYY-MM-DD,
//! UTC) and END_DATE its last day. Prints the predicted count, the true expected count, the
//! realized count, and calibration by decile of predicted probability against the true
//! probabilities.

use std::collections::HashMap;
use std::time::Instant;

use arrow::array::AsArray;
use arrow::datatypes::Float64Type;
use chrono::NaiveDate;
use goalcast::context::{ContextOptions, build_context};
use goalcast::models::{self, timestamp_parameter};
use goalcast::predict::{self, Direction, GoalDefinition, PredictOptions, local_midnight_micros};
use goalcast::segments::SegmentCatalog;
use goalcast::warehouse::Warehouse;

#[tokio::main]
async fn main() -> goalcast::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: goal_accuracy WAREHOUSE START END_DATE EVENT...");
        std::process::exit(2);
    }
    let warehouse = Warehouse::open(&args[0], false)?;
    let start = NaiveDate::parse_from_str(&args[1], "%Y-%m-%d").expect("START is YYYY-MM-DD");
    let end_date = NaiveDate::parse_from_str(&args[2], "%Y-%m-%d").expect("END_DATE is YYYY-MM-DD");
    let goal = GoalDefinition {
        name: "accuracy".into(),
        segment: "all_users".into(),
        event_names: args[3..].to_vec(),
        event_filter: None,
        direction: Direction::Maximize,
        end_date,
        time_zone: "UTC".into(),
        start_micros: local_midnight_micros(start, chrono_tz::UTC)?,
    };
    let ctx = build_context(&warehouse, &ContextOptions::default()).await?;
    let started = Instant::now();
    let prediction = predict::predict(
        &ctx,
        &SegmentCatalog::new("sql/segments"),
        &goal,
        &PredictOptions::default(),
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();

    // True probability of performing any of the events: 1 - product of (1 - p) per event.
    let truth = models::dataframe(
        &ctx,
        models::TRUTH_WINDOW_PROBABILITY,
        &[
            ("window_start", timestamp_parameter(goal.start_micros)),
            ("window_end", timestamp_parameter(goal.end_micros()?)),
        ],
    )
    .await?;
    ctx.register_table("true_probabilities", truth.into_view())?;
    let names: Vec<String> = goal
        .event_names
        .iter()
        .map(|name| format!("'{name}'"))
        .collect();
    let batches = ctx
        .sql(&format!(
            "SELECT user_id, 1 - exp(sum(ln(1 - least(probability, 0.999999999)))) AS probability \
             FROM true_probabilities WHERE event_name IN ({}) GROUP BY user_id",
            names.join(", ")
        ))
        .await?
        .collect()
        .await?;
    let mut true_probability = HashMap::new();
    for batch in &batches {
        let users = batch.column(0).as_string::<i32>();
        let values = batch.column(1).as_primitive::<Float64Type>();
        for row in 0..batch.num_rows() {
            true_probability.insert(users.value(row).to_string(), values.value(row));
        }
    }

    let mut pairs: Vec<(f64, f64)> = prediction
        .users
        .iter()
        .map(|user| {
            (
                user.probability,
                true_probability.get(&user.user_id).copied().unwrap_or(0.0),
            )
        })
        .collect();
    let expected: f64 = pairs.iter().map(|pair| pair.1).sum();
    let error = (prediction.predicted_count - expected) / expected;
    println!(
        "target users {}, predicted {:.0} [{:.0}, {:.0}], true expected {:.0} ({:+.2}%), prediction took {:.1} s",
        prediction.target_users,
        prediction.predicted_count,
        prediction.interval_low,
        prediction.interval_high,
        expected,
        100.0 * error,
        seconds
    );
    println!(
        "holdout AUC {:?}, backtests {:?}",
        prediction.quality.auc,
        prediction
            .quality
            .backtests
            .iter()
            .map(|b| format!("{:+.1}%", 100.0 * b.relative_error))
            .collect::<Vec<_>>()
    );
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = pairs.len();
    let mut worst: f64 = 0.0;
    println!("decile  mean predicted  mean true  difference (percentage points)");
    for decile in 0..10 {
        let slice = &pairs[decile * n / 10..(decile + 1) * n / 10];
        let predicted = slice.iter().map(|p| p.0).sum::<f64>() / slice.len() as f64;
        let truth = slice.iter().map(|p| p.1).sum::<f64>() / slice.len() as f64;
        worst = worst.max((predicted - truth).abs());
        println!(
            "{:>6}  {predicted:>14.4}  {truth:>9.4}  {:+.2}",
            decile + 1,
            100.0 * (predicted - truth)
        );
    }
    println!(
        "largest decile difference: {:.2} percentage points",
        100.0 * worst
    );
    Ok(())
}
