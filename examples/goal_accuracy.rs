//! Measures a goal prediction on a generated warehouse against the generator's truth.
//!
//! Usage: `cargo run --release --example goal_accuracy -- [OPTIONS] WAREHOUSE START END_DATE
//! EVENT...` where START is the goal's start (YYYY-MM-DD, UTC) and END_DATE its last day.
//! Prints the predicted count against the realized count, with the AUC on the goal's window.
//! When WAREHOUSE was written by `goalcast generate`, also prints the true expected count and
//! calibration by decile of predicted probability against the true probabilities.
//!
//! Options change the prediction settings: `--windows N`, `--training-rows N`, `--l2 X`.

use std::collections::HashMap;
use std::time::Instant;

use arrow::array::AsArray;
use arrow::datatypes::Float64Type;
use chrono::NaiveDate;
use datafusion::prelude::SessionContext;
use goalcast::context::{ContextOptions, build_context};
use goalcast::models::{self, timestamp_parameter};
use goalcast::predict::{
    self, Direction, GoalDefinition, PredictOptions, Prediction, local_midnight_micros,
};
use goalcast::segments::SegmentCatalog;
use goalcast::warehouse::Warehouse;

#[tokio::main]
async fn main() -> goalcast::Result<()> {
    // RUST_LOG=info shows the prediction's steps with their times.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut options = PredictOptions::default();
    let mut args = Vec::new();
    let mut raw = std::env::args().skip(1);
    while let Some(arg) = raw.next() {
        let mut value = || raw.next().expect("an option needs a value");
        match arg.as_str() {
            "--windows" => options.max_cutoffs = value().parse().expect("--windows N"),
            "--training-rows" => {
                options.max_training_rows = value().parse().expect("--training-rows N")
            }
            "--l2" => options.l2 = value().parse().expect("--l2 X"),
            _ => args.push(arg),
        }
    }
    if args.len() < 4 {
        eprintln!("usage: goal_accuracy [OPTIONS] WAREHOUSE START END_DATE EVENT...");
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
    let prediction =
        predict::predict(&ctx, &SegmentCatalog::new("sql/segments"), &goal, &options).await?;
    let seconds = started.elapsed().as_secs_f64();

    // Realized outcomes: target users with a goal event in the goal's window.
    let realized = ctx
        .sql(&format!(
            "SELECT DISTINCT CAST(user_id AS VARCHAR) FROM goal_events \
             WHERE event_time >= to_timestamp_micros({}) AND event_time < to_timestamp_micros({})",
            goal.start_micros,
            goal.end_micros()?
        ))
        .await?
        .collect()
        .await?;
    let mut performers = std::collections::HashSet::new();
    for batch in &realized {
        let users = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)?;
        let users = users.as_string::<i32>();
        performers.extend(users.iter().flatten().map(str::to_string));
    }
    let probabilities: Vec<f64> = prediction.users.iter().map(|u| u.probability).collect();
    let outcomes: Vec<bool> = prediction
        .users
        .iter()
        .map(|u| performers.contains(&u.user_id))
        .collect();
    let actual = outcomes.iter().filter(|&&o| o).count() as f64;
    println!(
        "target users {}, predicted {:.0} [{:.0}, {:.0}], actual {actual:.0} ({:+.2}%), \
         AUC on the window {:.4}, prediction took {seconds:.1} s",
        prediction.target_users,
        prediction.predicted_count,
        prediction.interval_low,
        prediction.interval_high,
        100.0 * (prediction.predicted_count - actual) / actual.max(1.0),
        predict::metrics::auc(&probabilities, &outcomes).unwrap_or(f64::NAN),
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
    if ctx.table_exist("truth")? {
        compare_with_truth(&ctx, &goal, &prediction).await?;
    }
    Ok(())
}

async fn compare_with_truth(
    ctx: &SessionContext,
    goal: &GoalDefinition,
    prediction: &Prediction,
) -> goalcast::Result<()> {
    // True probability of performing any of the events: 1 - product of (1 - p) per event.
    let truth = models::dataframe(
        ctx,
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
        "true expected {expected:.0}: predicted {:+.2}% off",
        100.0 * error
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
