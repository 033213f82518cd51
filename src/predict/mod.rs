//! Instant prediction for a goal: honest-in-time training, backtests, scoring and buckets.
//!
//! For a goal starting at S with horizon H, training rows come from cutoffs c_k = S - H - k·step
//! (step = min(H, 30 days)): the segment is evaluated at c_k, features read events before c_k,
//! and the label is a goal event in [c_k, c_k + H). Every label window therefore ends at or
//! before S, and no event at or after S is read. The most recent cutoff is held out to measure
//! quality. Up to three backtests predict a cutoff with a model of the older ones, and their
//! relative count error widens the interval. The final model is fitted on every
//! cutoff and scores the target group: the segment's users at S, with features at S.

pub mod features;
pub mod metrics;
pub mod model;
pub mod sample;

use std::collections::HashMap;

use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;
use datafusion::prelude::SessionContext;
use ndarray::Array2;
use rayon::slice::ParallelSliceMut;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::segments::SegmentCatalog;
use metrics::CalibrationBin;
use model::{FEATURE_NAMES, FittedModel};

const MICROS_PER_DAY: f64 = 86_400_000_000.0;

/// Whether the goal wants users to perform its events or to avoid them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Maximize,
    Minimize,
}

impl std::str::FromStr for Direction {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "maximize" => Ok(Direction::Maximize),
            "minimize" => Ok(Direction::Minimize),
            other => Err(Error::InvalidArgument(format!(
                "invalid direction {other:?}: use maximize or minimize"
            ))),
        }
    }
}

impl Direction {
    /// Returns the name used in tables and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Maximize => "maximize",
            Direction::Minimize => "minimize",
        }
    }
}

/// The definition of a goal, independent of its storage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GoalDefinition {
    pub name: String,
    pub segment: String,
    /// A user performs the goal's events by performing any of these.
    pub event_names: Vec<String>,
    /// An SQL condition on event columns, such as `amount >= 20`.
    pub event_filter: Option<String>,
    pub direction: Direction,
    /// Last day of the goal, inclusive, in `time_zone`.
    pub end_date: NaiveDate,
    pub time_zone: String,
    /// Start of the goal, UTC microseconds.
    pub start_micros: i64,
}

impl GoalDefinition {
    /// Returns the zone of the end date.
    pub fn zone(&self) -> Result<Tz> {
        crate::import::time::parse_time_zone(&self.time_zone)
    }

    /// Returns the first instant after the goal, UTC microseconds: midnight after the end date.
    pub fn end_micros(&self) -> Result<i64> {
        let next_day = self.end_date.succ_opt().ok_or_else(|| {
            Error::InvalidArgument(format!("end date {} is out of range", self.end_date))
        })?;
        local_midnight_micros(next_day, self.zone()?)
    }

    /// Returns the horizon in microseconds, failing when the end is not after the start.
    pub fn horizon_micros(&self) -> Result<i64> {
        let horizon = self.end_micros()? - self.start_micros;
        if horizon <= 0 {
            return Err(Error::InvalidArgument(format!(
                "end date {} ({}) is not after the start {}; pick a later end date",
                self.end_date,
                self.time_zone,
                format_micros(self.start_micros)
            )));
        }
        Ok(horizon)
    }
}

/// Returns midnight at the start of `date` in `zone`, as UTC microseconds.
pub fn local_midnight_micros(date: NaiveDate, zone: Tz) -> Result<i64> {
    let naive = date.and_hms_opt(0, 0, 0).expect("midnight exists");
    zone.from_local_datetime(&naive)
        .earliest()
        .or_else(|| {
            zone.from_local_datetime(&(naive + chrono::Duration::hours(1)))
                .earliest()
        })
        .map(|time| time.timestamp_micros())
        .ok_or_else(|| {
            Error::InvalidArgument(format!("midnight of {date} does not exist in {zone}"))
        })
}

/// Formats UTC microseconds as RFC 3339, with fractional seconds only when there are any.
pub fn format_micros(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| micros.to_string())
}

/// Cut points that split users into intent buckets by their probability of achieving the goal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum BucketCuts {
    /// By rank: Most Likely from the `upper` percentile up, Least Likely below `lower`.
    Percentiles { upper: f64, lower: f64 },
    /// By probability: Most Likely at `upper` or above, Least Likely below `lower`.
    Probabilities { upper: f64, lower: f64 },
}

impl Default for BucketCuts {
    fn default() -> Self {
        BucketCuts::Percentiles {
            upper: 200.0 / 3.0,
            lower: 100.0 / 3.0,
        }
    }
}

impl std::str::FromStr for BucketCuts {
    type Err = Error;

    /// Parses `tertiles`, `percentiles:UPPER,LOWER` (0-100) or `probabilities:UPPER,LOWER` (0-1).
    fn from_str(text: &str) -> Result<Self> {
        let invalid = || {
            Error::InvalidArgument(format!(
                "invalid bucket cuts {text:?}: use tertiles, percentiles:UPPER,LOWER (e.g. \
                 percentiles:80,40) or probabilities:UPPER,LOWER (e.g. probabilities:0.5,0.2)"
            ))
        };
        if text == "tertiles" {
            return Ok(BucketCuts::default());
        }
        let (kind, values) = text.split_once(':').ok_or_else(invalid)?;
        let (upper, lower) = values.split_once(',').ok_or_else(invalid)?;
        let upper: f64 = upper.trim().parse().map_err(|_| invalid())?;
        let lower: f64 = lower.trim().parse().map_err(|_| invalid())?;
        let limit = match kind {
            "percentiles" => 100.0,
            "probabilities" => 1.0,
            _ => return Err(invalid()),
        };
        if !(0.0..=limit).contains(&lower) || !(0.0..=limit).contains(&upper) || lower > upper {
            return Err(invalid());
        }
        Ok(if kind == "percentiles" {
            BucketCuts::Percentiles { upper, lower }
        } else {
            BucketCuts::Probabilities { upper, lower }
        })
    }
}

/// Settings of the prediction.
#[derive(Debug, Clone)]
pub struct PredictOptions {
    /// Minimum numbers of positive and negative training examples.
    pub min_positives: usize,
    pub min_negatives: usize,
    /// Maximum number of training cutoffs.
    pub max_cutoffs: usize,
    /// Days of history needed before the earliest cutoff.
    pub min_history_days: f64,
    pub buckets: BucketCuts,
    /// L2 penalty of the logistic regression.
    pub l2: f64,
    /// Maximum number of training rows; larger training sets are sampled by user id.
    pub max_training_rows: usize,
}

impl Default for PredictOptions {
    fn default() -> Self {
        PredictOptions {
            min_positives: 100,
            min_negatives: 100,
            max_cutoffs: 6,
            min_history_days: 30.0,
            buckets: BucketCuts::default(),
            l2: 1.0,
            max_training_rows: 200_000,
        }
    }
}

/// The intent buckets, from most to least likely to achieve the goal.
pub const BUCKETS: [&str; 3] = ["Most Likely", "Moderately Likely", "Least Likely"];

/// One target user's prediction.
#[derive(Debug, Clone, Serialize)]
pub struct UserPrediction {
    pub user_id: String,
    /// Probability of performing the goal's events before the end.
    pub probability: f64,
    /// Probability of achieving the goal: `probability` for maximize, its complement for
    /// minimize.
    pub achieve_probability: f64,
    /// Percentile rank of `achieve_probability` in the target group, 0 to 100.
    pub score: u8,
    pub bucket: &'static str,
}

/// Counts and expected performers of one bucket.
#[derive(Debug, Clone, Serialize)]
pub struct BucketSummary {
    pub bucket: &'static str,
    pub users: u64,
    pub mean_probability: f64,
    pub expected_performers: f64,
}

/// A backtest: one cutoff predicted by a model of the older cutoffs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Backtest {
    pub cutoff: String,
    pub users: u64,
    pub predicted_count: f64,
    pub actual_count: u64,
    pub relative_error: f64,
}

/// Quality of the model, measured on the held-out most recent cutoff.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelQuality {
    pub training_rows: u64,
    pub training_positives: u64,
    pub cutoffs: Vec<String>,
    pub holdout_rows: u64,
    pub auc: Option<f64>,
    pub log_loss: f64,
    pub brier: f64,
    pub calibration: Vec<CalibrationBin>,
    pub backtests: Vec<Backtest>,
    /// Root mean square of the backtests' relative count errors.
    pub count_error_rms: f64,
    /// Odds ratio of a one-standard-deviation increase of each input.
    pub odds_ratios: Vec<(String, f64)>,
}

/// The expected number of users who have performed the events by the end of each goal day.
#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    /// Calendar day in the goal's time zone.
    pub day: NaiveDate,
    pub expected_cumulative: f64,
    pub low: f64,
    pub high: f64,
}

/// A goal's prediction.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub target_users: u64,
    /// Expected number of target users who perform the events before the end.
    pub predicted_count: f64,
    /// 90% interval of that number.
    pub interval_low: f64,
    pub interval_high: f64,
    /// Expected number of users who achieve the goal (equal to `predicted_count` for
    /// maximize, the rest of the group for minimize).
    pub predicted_achievers: f64,
    pub quality: ModelQuality,
    pub buckets: Vec<BucketSummary>,
    pub curve: Vec<CurvePoint>,
    #[serde(skip)]
    pub users: Vec<UserPrediction>,
    #[serde(skip)]
    pub model: FittedModel,
}

/// One cutoff's training rows.
struct Cutoff {
    at_micros: i64,
    /// Model inputs and outcomes of the sampled users.
    inputs: Vec<[f64; FEATURE_NAMES.len()]>,
    outcomes: Vec<bool>,
    /// Days to the first goal event of each sampled user who performed the events.
    days_to_first: Vec<f64>,
}

impl Cutoff {
    /// Returns the number of sampled users who performed the events.
    fn positives(&self) -> usize {
        self.outcomes.iter().filter(|&&outcome| outcome).count()
    }
}

/// Predicts `goal` from the warehouse tables registered in `ctx`.
pub async fn predict(
    ctx: &SessionContext,
    catalog: &SegmentCatalog,
    goal: &GoalDefinition,
    options: &PredictOptions,
) -> Result<Prediction> {
    let segment = catalog.load(&goal.segment)?;
    register_goal_events(ctx, goal).await?;
    let horizon = goal.horizon_micros()?;
    let horizon_days = horizon as f64 / MICROS_PER_DAY;
    let (first_event, event_rows) = event_extent(ctx).await?;
    let cutoffs = plan_cutoffs(goal.start_micros, horizon, first_event, options)?;
    tracing::info!(
        cutoffs = cutoffs.len(),
        horizon_days,
        "planned training cutoffs"
    );

    // The target group's size first: it sets the share of users sampled for training.
    let target_size = features::target_size(ctx, &segment, goal.start_micros).await?;
    if target_size == 0 {
        return Err(no_target_users(goal));
    }
    tracing::info!(users = target_size, "sized the target group");
    let target_population = if segment.is_all_users() {
        None
    } else {
        Some(ctx.table_provider("population").await?)
    };
    let share = (options.max_training_rows as f64 / (target_size * cutoffs.len()) as f64).min(1.0);
    let (training_ctx, sample) = if sample::worth_copying(share, event_rows) {
        let sampled = sample::sampled_context(ctx, share).await?;
        register_goal_events_unchecked(&sampled, goal).await?;
        tracing::info!(share, "copied the sampled users for training");
        (sampled, Some(share))
    } else if share < 1.0 {
        // A copy would hold too many events, so each window reads the full tables and keeps
        // the sampled users.
        tracing::info!(share, "sampled users for training");
        (ctx.clone(), Some(share))
    } else {
        (ctx.clone(), None)
    };

    let mut training = Vec::new();
    for &at in &cutoffs {
        let snapshot = features::snapshot(&training_ctx, &segment, at, sample).await?;
        let first = features::first_events(&training_ctx, at, at + horizon).await?;
        let mut cutoff = Cutoff {
            at_micros: at,
            inputs: Vec::with_capacity(snapshot.user_ids.len()),
            outcomes: Vec::with_capacity(snapshot.user_ids.len()),
            days_to_first: Vec::new(),
        };
        for (user, raw) in snapshot.user_ids.iter().zip(&snapshot.features) {
            let days = first.get(user);
            if let Some(&days) = days {
                cutoff.days_to_first.push(days);
            }
            cutoff.inputs.push(raw.to_vector(horizon_days));
            cutoff.outcomes.push(days.is_some());
        }
        tracing::info!(
            cutoff = format_micros(at),
            users = snapshot.user_ids.len(),
            positives = cutoff.days_to_first.len(),
            "read training cutoff"
        );
        training.push(cutoff);
    }
    drop(training_ctx);
    check_sufficiency(goal, &training, options)?;

    // The final fit runs beside the backtests' fits, one thread each.
    let (quality, model) = std::thread::scope(|scope| {
        let final_fit = scope.spawn(|| {
            let all: Vec<&Cutoff> = training.iter().collect();
            let (inputs, outcomes) = stack(&all);
            model::fit(&inputs, &outcomes, options.l2)
        });
        let quality = evaluate(&training, options);
        (
            quality,
            final_fit.join().expect("model fitting does not panic"),
        )
    });
    let (quality, model) = (quality?, model?);
    tracing::info!(
        backtests = quality.backtests.len(),
        rows = quality.training_rows,
        "fitted the model and its backtests"
    );

    // Scores the target group batch by batch as its features stream out of one query, so they
    // are never all in memory.
    if let Some(population) = target_population {
        ctx.deregister_table("population")?;
        ctx.register_table("population", population)?;
    }
    let mut scored: Vec<(String, f64)> = Vec::with_capacity(target_size);
    features::for_each_target_batch(ctx, &segment, goal.start_micros, |user_ids, raws| {
        for (user_id, raw) in user_ids.into_iter().zip(&raws) {
            scored.push((user_id, model.probability(&raw.to_vector(horizon_days))));
        }
    })
    .await?;
    if scored.is_empty() {
        return Err(no_target_users(goal));
    }
    tracing::info!(users = scored.len(), "scored the target group");
    // Sorted by user id, so the stored predictions do not depend on how the query split its
    // work.
    scored.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let (user_ids, probabilities): (Vec<String>, Vec<f64>) = scored.into_iter().unzip();
    let users = score_users(user_ids, &probabilities, goal.direction, options.buckets);
    tracing::info!(users = users.len(), "sorted and bucketed the target group");
    let predicted_count: f64 = probabilities.iter().sum();
    let bernoulli_variance: f64 = probabilities.iter().map(|p| p * (1.0 - p)).sum();
    let model_variance = (quality.count_error_rms * predicted_count).powi(2);
    let half_width = 1.645 * (bernoulli_variance + model_variance).sqrt();
    let target_users = users.len() as u64;
    let interval_low = (predicted_count - half_width).max(0.0);
    let interval_high = (predicted_count + half_width).min(target_users as f64);
    let days_to_first: Vec<f64> = training
        .iter()
        .flat_map(|c| c.days_to_first.clone())
        .collect();
    let curve = daily_curve(
        goal,
        &days_to_first,
        predicted_count,
        interval_low,
        interval_high,
    )?;
    let predicted_achievers = match goal.direction {
        Direction::Maximize => predicted_count,
        Direction::Minimize => target_users as f64 - predicted_count,
    };
    Ok(Prediction {
        target_users,
        predicted_count,
        interval_low,
        interval_high,
        predicted_achievers,
        buckets: summarize_buckets(&users),
        quality: ModelQuality {
            odds_ratios: model.odds_ratios(),
            ..quality
        },
        curve,
        users,
        model,
    })
}

fn no_target_users(goal: &GoalDefinition) -> Error {
    Error::InvalidArgument(format!(
        "segment {:?} has no users at {}; pick a larger segment or a later start",
        goal.segment,
        format_micros(goal.start_micros)
    ))
}

/// Registers `goal_events`, the events that count for the goal, and `flagged_events`, every
/// event with `is_goal_event` telling whether it counts.
pub(crate) async fn register_goal_events(
    ctx: &SessionContext,
    goal: &GoalDefinition,
) -> Result<()> {
    if goal.event_names.is_empty() {
        return Err(Error::InvalidArgument(
            "a goal needs at least one event name".into(),
        ));
    }
    for name in &goal.event_names {
        if !event_name_occurs(ctx, name).await? {
            let known = distinct_event_names(ctx).await?;
            return Err(Error::InvalidArgument(format!(
                "event {name:?} does not occur in the events table; known events: {}",
                known.join(", ")
            )));
        }
    }
    register_goal_events_unchecked(ctx, goal).await
}

/// Returns whether any event is named `name`. The scan stops at the first match, so a name that
/// occurs costs a file or two instead of the whole table.
async fn event_name_occurs(ctx: &SessionContext, name: &str) -> Result<bool> {
    let events = ctx.table("events").await.map_err(|error| {
        Error::InvalidArgument(format!(
            "cannot read the events table ({error}); import events first"
        ))
    })?;
    let first = events
        .filter(datafusion::prelude::col("event_name").eq(datafusion::prelude::lit(name)))?
        .select_columns(&["event_name"])?
        .limit(0, Some(1))?
        .collect()
        .await?;
    Ok(first.iter().any(|batch| batch.num_rows() > 0))
}

/// Registers `goal_events` without checking that the event names occur, because that check
/// scans the events table. For goals whose names were checked when they were created.
pub(crate) async fn register_goal_events_unchecked(
    ctx: &SessionContext,
    goal: &GoalDefinition,
) -> Result<()> {
    let events = ctx.table("events").await?;
    let names: Vec<datafusion::prelude::Expr> = goal
        .event_names
        .iter()
        .map(|name| datafusion::prelude::lit(name.as_str()))
        .collect();
    let mut condition = datafusion::prelude::col("event_name").in_list(names, false);
    if let Some(filter) = &goal.event_filter {
        // Parsed as one expression, so a filter cannot close its parentheses and widen the
        // event restriction.
        let expression = events.parse_sql_expr(filter).map_err(|error| {
            Error::InvalidArgument(format!(
                "invalid event filter {filter:?}: {error}; write one SQL condition on the events \
                 columns user_id, event_name, event_time, amount, properties, event_date"
            ))
        })?;
        condition = condition.and(expression);
    }
    let invalid = |error: datafusion::error::DataFusionError| {
        Error::InvalidArgument(format!(
            "invalid event filter {:?}: {error}",
            goal.event_filter.as_deref().unwrap_or("")
        ))
    };
    let view = events.clone().filter(condition.clone()).map_err(invalid)?;
    let flagged = events
        .with_column(
            "is_goal_event",
            datafusion::functions::expr_fn::coalesce(vec![
                condition,
                datafusion::prelude::lit(false),
            ]),
        )
        .map_err(invalid)?;
    ctx.deregister_table("goal_events")?;
    ctx.register_table("goal_events", view.into_view())?;
    ctx.deregister_table("flagged_events")?;
    ctx.register_table("flagged_events", flagged.into_view())?;
    Ok(())
}

/// Returns the distinct event names of the events table, sorted.
pub async fn distinct_event_names(ctx: &SessionContext) -> Result<Vec<String>> {
    let batches = ctx
        .sql("SELECT DISTINCT event_name FROM events ORDER BY event_name")
        .await
        .map_err(|error| {
            Error::InvalidArgument(format!(
                "cannot read the events table ({error}); import events first"
            ))
        })?
        .collect()
        .await?;
    let mut names = Vec::new();
    for batch in &batches {
        let column = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)?;
        let column = arrow::array::AsArray::as_string::<i32>(&column);
        names.extend(column.iter().flatten().map(str::to_string));
    }
    Ok(names)
}

/// Returns the time of the first event and the number of events. Both come from the files'
/// statistics, without a scan.
async fn event_extent(ctx: &SessionContext) -> Result<(i64, usize)> {
    let batches = ctx
        .sql("SELECT min(event_time), count(*) FROM events")
        .await?
        .collect()
        .await?;
    let column = arrow::compute::cast(
        batches[0].column(0),
        &arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
    )?;
    let column =
        arrow::array::AsArray::as_primitive::<arrow::datatypes::TimestampMicrosecondType>(&column);
    if arrow::array::Array::is_null(column, 0) {
        return Err(Error::InvalidArgument(
            "the events table is empty; import events first".into(),
        ));
    }
    let rows = arrow::compute::cast(batches[0].column(1), &arrow::datatypes::DataType::UInt64)?;
    let rows = arrow::array::AsArray::as_primitive::<arrow::datatypes::UInt64Type>(&rows).value(0);
    Ok((column.value(0), rows as usize))
}

/// Returns the training cutoffs, most recent first.
fn plan_cutoffs(
    start: i64,
    horizon: i64,
    first_event: i64,
    options: &PredictOptions,
) -> Result<Vec<i64>> {
    let step = horizon.min((30.0 * MICROS_PER_DAY) as i64);
    let min_history = (options.min_history_days * MICROS_PER_DAY) as i64;
    let cutoffs: Vec<i64> = (0..options.max_cutoffs as i64)
        .map(|k| start - horizon - k * step)
        .take_while(|&cutoff| cutoff - min_history >= first_event)
        .collect();
    if cutoffs.len() < 2 {
        let needed = first_event + min_history + horizon + step;
        let days = (horizon as f64 / MICROS_PER_DAY).round();
        return Err(Error::InvalidArgument(format!(
            "not enough history for an honest {days}-day prediction: events start {}, and \
             training needs two windows of the goal's length ending by the start, each after \
             {} days of history, so the start must be on or after {}; choose an earlier end \
             date (a shorter goal) or a later start",
            format_micros(first_event),
            options.min_history_days,
            format_micros(needed)
        )));
    }
    Ok(cutoffs)
}

fn check_sufficiency(
    goal: &GoalDefinition,
    training: &[Cutoff],
    options: &PredictOptions,
) -> Result<()> {
    let rows: usize = training.iter().map(|c| c.outcomes.len()).sum();
    let positives: usize = training.iter().map(Cutoff::positives).sum();
    let negatives = rows - positives;
    if positives >= options.min_positives && negatives >= options.min_negatives {
        return Ok(());
    }
    let suggestion = if positives < options.min_positives {
        "broaden the events (more event names or a looser filter), pick a larger segment, or \
         lower --min-positives"
    } else {
        "pick a segment where some users do not perform the events, or lower --min-negatives"
    };
    Err(Error::InvalidArgument(format!(
        "too little history to predict goal {:?}: the {} training windows hold {rows} users, \
         {positives} who performed {} and {negatives} who did not; at least {} of each are \
         needed. To fix: {suggestion}",
        goal.name,
        training.len(),
        goal.event_names.join(" or "),
        options.min_positives.max(options.min_negatives),
    )))
}

/// Measures quality on the held-out cutoff and backtests the count on up to three cutoffs.
fn evaluate(training: &[Cutoff], options: &PredictOptions) -> Result<ModelQuality> {
    // Each backtest fits its own model, one thread each.
    let fits: Vec<Result<Option<HeldOut>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..training.len().saturating_sub(1).min(3))
            .map(|k| scope.spawn(move || backtest(training, k, options)))
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("model fitting does not panic"))
            .collect()
    });
    let mut backtests = Vec::new();
    let mut holdout = None;
    for (k, fit) in fits.into_iter().enumerate() {
        let Some((backtest, probabilities)) = fit? else {
            continue;
        };
        backtests.push(backtest);
        if k == 0 {
            holdout = Some((probabilities, training[0].outcomes.clone()));
        }
    }
    let (probabilities, outcomes) = holdout.ok_or_else(|| {
        Error::InvalidArgument(
            "the older training windows hold only one outcome, so the model cannot be \
             validated; choose a longer history or broader events"
                .into(),
        )
    })?;
    let count_error_rms = (backtests
        .iter()
        .map(|b| b.relative_error.powi(2))
        .sum::<f64>()
        / backtests.len().max(1) as f64)
        .sqrt();
    Ok(ModelQuality {
        training_rows: training.iter().map(|c| c.outcomes.len() as u64).sum(),
        training_positives: training.iter().map(|c| c.positives() as u64).sum(),
        cutoffs: training
            .iter()
            .map(|c| format_micros(c.at_micros))
            .collect(),
        holdout_rows: outcomes.len() as u64,
        auc: metrics::auc(&probabilities, &outcomes),
        log_loss: metrics::log_loss(&probabilities, &outcomes),
        brier: metrics::brier(&probabilities, &outcomes),
        calibration: metrics::calibration(&probabilities, &outcomes),
        backtests,
        count_error_rms,
        odds_ratios: Vec::new(),
    })
}

/// A backtest with the probabilities it gave the held-out cutoff's users.
type HeldOut = (Backtest, Vec<f64>);

/// Predicts cutoff `k` with a model of the older cutoffs. Returns `None` when the older cutoffs
/// contain only one outcome.
fn backtest(training: &[Cutoff], k: usize, options: &PredictOptions) -> Result<Option<HeldOut>> {
    let older: Vec<&Cutoff> = training[k + 1..].iter().collect();
    let (inputs, outcomes) = stack(&older);
    if outcomes.iter().all(|&o| o) || outcomes.iter().all(|&o| !o) {
        return Ok(None);
    }
    let model = model::fit(&inputs, &outcomes, options.l2)?;
    let held_out = &training[k];
    let probabilities = model.predict(&to_matrix(&held_out.inputs));
    let predicted: f64 = probabilities.iter().sum();
    let actual = held_out.positives() as u64;
    let backtest = Backtest {
        cutoff: format_micros(held_out.at_micros),
        users: held_out.outcomes.len() as u64,
        predicted_count: predicted,
        actual_count: actual,
        relative_error: (predicted - actual as f64) / (actual as f64).max(1.0),
    };
    Ok(Some((backtest, probabilities)))
}

fn stack(cutoffs: &[&Cutoff]) -> (Array2<f64>, Vec<bool>) {
    let rows: Vec<[f64; FEATURE_NAMES.len()]> = cutoffs
        .iter()
        .flat_map(|c| c.inputs.iter().copied())
        .collect();
    let outcomes = cutoffs
        .iter()
        .flat_map(|c| c.outcomes.iter().copied())
        .collect();
    (to_matrix(&rows), outcomes)
}

fn to_matrix(rows: &[[f64; FEATURE_NAMES.len()]]) -> Array2<f64> {
    let flat: Vec<f64> = rows.iter().flat_map(|row| row.iter().copied()).collect();
    Array2::from_shape_vec((rows.len(), FEATURE_NAMES.len()), flat).expect("rows have equal length")
}

/// Scores and buckets users by their probability of achieving the goal. `user_ids` must come
/// sorted.
fn score_users(
    user_ids: Vec<String>,
    probabilities: &[f64],
    direction: Direction,
    cuts: BucketCuts,
) -> Vec<UserPrediction> {
    let achieve: Vec<f64> = probabilities
        .iter()
        .map(|&p| {
            if direction == Direction::Maximize {
                p
            } else {
                1.0 - p
            }
        })
        .collect();
    let n = achieve.len();
    let mut order: Vec<usize> = (0..n).collect();
    // Ties break by user id so that buckets do not depend on input order. The ids come sorted,
    // so their positions order them as well as the strings and are cheaper to compare.
    debug_assert!(user_ids.is_sorted());
    order.par_sort_unstable_by(|&a, &b| achieve[a].total_cmp(&achieve[b]).then(a.cmp(&b)));
    let mut percentile = vec![0.0; n];
    for (rank, &index) in order.iter().enumerate() {
        percentile[index] = if n > 1 {
            100.0 * rank as f64 / (n - 1) as f64
        } else {
            100.0
        };
    }
    user_ids
        .into_iter()
        .enumerate()
        .map(|(i, user_id)| {
            let bucket = match cuts {
                BucketCuts::Percentiles { upper, lower } => bucket_of(percentile[i], upper, lower),
                BucketCuts::Probabilities { upper, lower } => bucket_of(achieve[i], upper, lower),
            };
            UserPrediction {
                user_id,
                probability: probabilities[i],
                achieve_probability: achieve[i],
                score: percentile[i].round() as u8,
                bucket,
            }
        })
        .collect()
}

fn bucket_of(value: f64, upper: f64, lower: f64) -> &'static str {
    if value >= upper {
        BUCKETS[0]
    } else if value >= lower {
        BUCKETS[1]
    } else {
        BUCKETS[2]
    }
}

fn summarize_buckets(users: &[UserPrediction]) -> Vec<BucketSummary> {
    BUCKETS
        .iter()
        .map(|&bucket| {
            let members: Vec<&UserPrediction> =
                users.iter().filter(|u| u.bucket == bucket).collect();
            let expected: f64 = members.iter().map(|u| u.probability).sum();
            BucketSummary {
                bucket,
                users: members.len() as u64,
                mean_probability: expected / members.len().max(1) as f64,
                expected_performers: expected,
            }
        })
        .collect()
}

/// Spreads the predicted count over the goal's days with the time-to-first-event distribution
/// of the training windows.
fn daily_curve(
    goal: &GoalDefinition,
    days_to_first: &[f64],
    predicted: f64,
    low: f64,
    high: f64,
) -> Result<Vec<CurvePoint>> {
    let zone = goal.zone()?;
    let mut sorted = days_to_first.to_vec();
    sorted.sort_by(f64::total_cmp);
    let start_day = chrono::DateTime::from_timestamp_micros(goal.start_micros)
        .expect("start is in range")
        .with_timezone(&zone)
        .date_naive();
    let mut points = Vec::new();
    let mut day = start_day;
    while day <= goal.end_date {
        let day_end = local_midnight_micros(day.succ_opt().expect("in range"), zone)?;
        let elapsed_days = (day_end - goal.start_micros) as f64 / MICROS_PER_DAY;
        let share = if sorted.is_empty() {
            0.0
        } else {
            sorted.partition_point(|&d| d < elapsed_days) as f64 / sorted.len() as f64
        };
        points.push(CurvePoint {
            day,
            expected_cumulative: predicted * share,
            low: low * share,
            high: high * share,
        });
        day = day.succ_opt().expect("in range");
    }
    Ok(points)
}

/// Returns the index of each user id, for joining predictions with other rows.
pub fn index_users(users: &[UserPrediction]) -> HashMap<&str, usize> {
    users
        .iter()
        .enumerate()
        .map(|(i, u)| (u.user_id.as_str(), i))
        .collect()
}
