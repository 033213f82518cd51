//! The nightly job: actual performers against the prediction, day by day, and goal expiry.
//!
//! A run for day D updates every active goal that has started by D. For each goal it counts,
//! per bucket and arm, the members who performed a goal event from the start through the end of
//! each day (`activity.rs`), and writes the days from the first one not yet
//! stored, or the last `restate_days` days when those are all stored, so that late events
//! reach recent days while older days stay as they were. A goal whose end date is D or earlier
//! is closed: its status becomes `expired` and `goal_results` gets its final figures.
//!
//! Everything a run writes, its own `job_runs` row included, commits in one
//! [`Transaction`]. A run that fails changes no table except for the `job_runs` row that
//! records the failure. Runs hold the warehouse's [`RunLock`].

mod activity;
pub mod records;
mod window;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{NaiveDate, Utc};
use chrono_tz::Tz;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider, SchemaProvider,
};
use datafusion::datasource::MemTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::context::{ContextOptions, build_context};
use crate::engage::{self, stats::Uplift};
use crate::error::{Error, Result};
use crate::goals::records::{GoalRecord, from_batches, to_batch};
use crate::goals::{self, GOALS, goal_partitioning};
use crate::models::{self, SqlModel};
use crate::predict::{self, BUCKETS, Direction, format_micros, local_midnight_micros};
use crate::warehouse::{Manifest, Replace, RunLock, TableWrite, Transaction, Warehouse};
use records::{
    ALL_ARMS, ALL_BUCKETS, CONTROL, DailyRecord, JobRunRecord, NO_ARM, ResultRecord, TEST,
};
use window::GoalSpan;

pub const GOAL_DAILY: &str = "goal_daily";
pub const GOAL_RESULTS: &str = "goal_results";
pub const JOB_RUNS: &str = "job_runs";

/// Name under which `goalcast run` and the default schedule record their runs.
pub const NIGHTLY_JOB: &str = "nightly";

/// The default [`RunOptions::max_shared_events`]. The copy keeps only the goals' event names,
/// so it contains at most this many events: roughly 2 GiB at an estimated 100 bytes per
/// event, and usually a fraction of that.
///
/// NOTE: the limit counts every event of the goals' days, not only the goals' event names, so a
/// run over long windows scans once per goal even when the goals' own events would fit.
pub const DEFAULT_MAX_SHARED_EVENTS: u64 = 20_000_000;

/// Days restated by every run, so that events arriving late are counted.
pub const DEFAULT_RESTATE_DAYS: u32 = 3;

/// The steps of a run, in order; a test can inject a failure after any of them.
pub const STEPS: &[&str] = &["goal_daily", "goal_results", "goals", "job_runs"];

const ARM_COUNTS: SqlModel = SqlModel {
    path: "sql/nightly/arm_counts.sql",
    sql: include_str!("../../sql/nightly/arm_counts.sql"),
};

/// The nightly models, for tests that plan each one.
pub const MODELS: &[SqlModel] = &[ARM_COUNTS, activity::EVENT_DAYS];

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Job name recorded in `job_runs`.
    pub job: String,
    /// Number of most recent days each run rewrites.
    pub restate_days: u32,
    pub context: ContextOptions,
    /// The maximum number of events, counted over the days the run's goals span, that a run
    /// reads once into memory for all of its goals. Above it, each goal scans those days on its
    /// own.
    pub max_shared_events: u64,
    /// Fails the run after the named step of [`STEPS`], for tests of atomicity.
    #[doc(hidden)]
    pub fail_after: Option<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            job: NIGHTLY_JOB.into(),
            restate_days: DEFAULT_RESTATE_DAYS,
            context: ContextOptions::default(),
            max_shared_events: DEFAULT_MAX_SHARED_EVENTS,
            fail_after: None,
        }
    }
}

impl RunOptions {
    fn check(&self) -> Result<()> {
        if self.restate_days == 0 {
            return Err(Error::InvalidArgument(
                "--restate-days must be at least 1".into(),
            ));
        }
        if let Some(step) = &self.fail_after
            && !STEPS.contains(&step.as_str())
        {
            return Err(Error::InvalidArgument(format!(
                "unknown step {step:?}; steps: {}",
                STEPS.join(", ")
            )));
        }
        Ok(())
    }

    fn inject(&self, step: &str) -> Result<()> {
        if self.fail_after.as_deref() == Some(step) {
            return Err(Error::Injected(step.to_string()));
        }
        Ok(())
    }
}

/// The day a run computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunDay {
    /// Yesterday in each goal's time zone.
    Yesterday,
    /// The same calendar day for every goal.
    Day(NaiveDate),
}

/// The outcome of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub job: String,
    pub day: NaiveDate,
    pub goals: Vec<GoalUpdate>,
    pub rows_written: u64,
}

/// The update a run made to one goal.
#[derive(Debug, Clone, Serialize)]
pub struct GoalUpdate {
    pub goal_id: i64,
    pub name: String,
    /// Last day computed, in the goal's time zone.
    pub day: NaiveDate,
    pub days_written: usize,
    /// Members with a goal event through `day`, and the prediction for that day.
    pub performers: i64,
    pub predicted_performers: f64,
    pub expired: bool,
}

/// Runs the nightly job for one day, holding the warehouse's run lock.
pub async fn run(warehouse: &Warehouse, day: RunDay, options: &RunOptions) -> Result<RunSummary> {
    options.check()?;
    if let RunDay::Day(day) = day {
        check_day_has_ended(day)?;
    }
    let run_id = new_run_id();
    let lock = RunLock::acquire(warehouse, &run_id, &format!("{} run", options.job)).await?;
    let result = run_locked(warehouse, &lock, day, options, run_id).await;
    lock.release().await?;
    result
}

/// Runs the nightly job for each day from `from` through `to`, in order, under one lock.
/// Stops at the first failed day. `on_day` is called with each finished run.
pub async fn run_range(
    warehouse: &Warehouse,
    from: NaiveDate,
    to: NaiveDate,
    options: &RunOptions,
    mut on_day: impl FnMut(&RunSummary),
) -> Result<Vec<RunSummary>> {
    options.check()?;
    if from > to {
        return Err(Error::InvalidArgument(format!(
            "--from {from} is after --to {to}; give the first day first"
        )));
    }
    check_day_has_ended(to)?;
    let lock_id = new_run_id();
    let lock = RunLock::acquire(warehouse, &lock_id, &format!("{} run", options.job)).await?;
    let mut summaries = Vec::new();
    let mut result = Ok(());
    for day in from.iter_days().take_while(|day| *day <= to) {
        match run_locked(warehouse, &lock, RunDay::Day(day), options, new_run_id()).await {
            Ok(summary) => {
                on_day(&summary);
                summaries.push(summary);
            }
            Err(error) => {
                result = Err(error);
                break;
            }
        }
    }
    lock.release().await?;
    result.map(|_| summaries)
}

/// Rejects a day that has not ended anywhere yet: the nightly job counts finished days only.
/// A day that has ended in some zones (today in UTC, say) is accepted; each goal then counts
/// through its own last finished day.
fn check_day_has_ended(day: NaiveDate) -> Result<()> {
    // UTC+14 (Etc/GMT-14) is the first zone to finish a calendar day.
    let earliest_end = local_midnight_micros(
        day.succ_opt().expect("in range"),
        chrono_tz::Etc::GMTMinus14,
    )?;
    if earliest_end > Utc::now().timestamp_micros() {
        return Err(Error::InvalidArgument(format!(
            "day {day} has not ended yet; the nightly job counts finished days, so pass \
             yesterday or an earlier day"
        )));
    }
    Ok(())
}

/// Returns a new run id: the UTC time, then random characters.
pub fn new_run_id() -> String {
    format!(
        "{}-{}",
        Utc::now().format("%Y%m%dT%H%M%S"),
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    )
}

/// Runs one day with the lock held; records the run in `job_runs` whatever its outcome.
pub async fn run_locked(
    warehouse: &Warehouse,
    lock: &RunLock,
    day: RunDay,
    options: &RunOptions,
    run_id: String,
) -> Result<RunSummary> {
    let started = Utc::now();
    let record_day = match day {
        RunDay::Day(day) => day,
        RunDay::Yesterday => Utc::now().date_naive().pred_opt().expect("in range"),
    };
    tracing::info!(run_id, job = options.job, day = %record_day, "run started");
    let mut transaction = Transaction::begin(warehouse);
    let staged = stage_run(
        warehouse,
        &mut transaction,
        day,
        record_day,
        options,
        &run_id,
        started,
    )
    .await;
    let outcome = match staged {
        Ok(summary) => match lock.ensure_held().await {
            Ok(()) => transaction.commit().await.map(|_| summary),
            Err(error) => {
                transaction.abort().await.ok();
                // The lock's new holder owns the warehouse now; record nothing.
                return Err(error);
            }
        },
        Err(error) => {
            if let Err(abort_error) = transaction.abort().await {
                tracing::warn!(%abort_error, "could not remove a failed run's staged files");
            }
            Err(error)
        }
    };
    match outcome {
        Ok(summary) => {
            tracing::info!(
                run_id,
                job = options.job,
                day = %record_day,
                goals = summary.goals.len(),
                rows = summary.rows_written,
                "run succeeded"
            );
            Ok(summary)
        }
        Err(error) => {
            tracing::error!(run_id, %error, "run failed");
            let record = JobRunRecord {
                run_id: run_id.clone(),
                job: options.job.clone(),
                day: record_day.to_string(),
                started_at: format_micros(started.timestamp_micros()),
                finished_at: format_micros(Utc::now().timestamp_micros()),
                status: "failed".into(),
                goals: 0,
                expired_goals: 0,
                rows_written: 0,
                error: Some(error.to_string()),
            };
            let write = TableWrite::begin(warehouse, JOB_RUNS, Vec::new())?;
            let ctx = build_context(warehouse, &options.context).await?;
            stage_job_runs(&ctx, &write, record).await?;
            write.commit(Replace::All).await?;
            Err(error)
        }
    }
}

/// Computes a run and stages all of its writes in `transaction`.
async fn stage_run(
    warehouse: &Warehouse,
    transaction: &mut Transaction,
    day: RunDay,
    record_day: NaiveDate,
    options: &RunOptions,
    run_id: &str,
    started: chrono::DateTime<Utc>,
) -> Result<RunSummary> {
    let ctx = build_context(warehouse, &options.context).await?;
    register_empty_control_groups(&ctx)?;
    let mut all_goals = goals::load_goals(warehouse, &options.context).await?;

    let daily_write = transaction.table(GOAL_DAILY, goal_partitioning())?;
    let results_write = transaction.table(GOAL_RESULTS, goal_partitioning())?;
    let mut daily_partitions = BTreeSet::new();
    let mut results_partitions = BTreeSet::new();
    let mut updates = Vec::new();
    let mut rows_written = 0u64;

    let mut spans = Vec::new();
    for (index, goal) in all_goals.iter().enumerate() {
        if goal.status == "active"
            && let Some(span) = GoalSpan::of(goal, day)?
        {
            spans.push((index, span));
        }
    }
    let shared: Vec<&GoalSpan> = spans.iter().map(|(_, span)| span).collect();
    window::share_window_events(&ctx, warehouse, &shared, options.max_shared_events).await?;
    // Goals are counted two at a time, each in its own session because each registers its own
    // `goal_events`. One goal's count keeps the second core busy only part of the time.
    let mut all_computed: Vec<ComputedGoal> = Vec::new();
    if !spans.is_empty() {
        // Each goal's pass reads the predictions files that this manifest lists.
        let predictions = &warehouse
            .manifest(goals::PREDICTIONS)
            .await?
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "the warehouse has active goals but no {} table; create the goals again",
                    goals::PREDICTIONS
                ))
            })?;
        let mut counts: Vec<BoxFuture<'_, Result<ComputedGoal>>> = Vec::new();
        for (index, span) in &spans {
            let (ctx, goal) = (&ctx, &all_goals[*index]);
            counts.push(Box::pin(async move {
                let goal_ctx = fork_session(ctx).await?;
                compute_goal(&goal_ctx, warehouse, predictions, goal, span, options).await
            }));
        }
        all_computed = futures::stream::iter(counts)
            .buffered(GOALS_AT_ONCE)
            .try_collect()
            .await?;
    }

    for ((index, span), computed) in spans.iter().zip(all_computed) {
        let goal = &mut all_goals[*index];
        let definition = &span.definition;
        let last_day = span.last_day;
        let partition = format!("goal_id={}", goal.goal_id);
        let batch = to_batch(records::goal_daily_schema(), &computed.rows)?;
        let changed = daily_write
            .put_batches_if_changed(
                &format!("{partition}/part-0.parquet"),
                batch.schema(),
                &[batch],
            )
            .await?;
        if changed {
            rows_written += computed.rows.len() as u64;
            daily_partitions.insert(partition.clone());
        }
        options.inject("goal_daily")?;

        let expired = last_day == definition.end_date;
        if expired {
            let results = final_results(goal, definition.direction, &computed.rows, last_day)?;
            let batch = to_batch(records::goal_results_schema(), &results)?;
            results_write
                .put_batches(
                    &format!("{partition}/part-0.parquet"),
                    batch.schema(),
                    &[batch],
                )
                .await?;
            rows_written += results.len() as u64;
            results_partitions.insert(partition.clone());
            options.inject("goal_results")?;
            goal.status = "expired".into();
        }
        let headline = computed
            .rows
            .iter()
            .rfind(|row| row.bucket == ALL_BUCKETS && row.arm == ALL_ARMS);
        updates.push(GoalUpdate {
            goal_id: goal.goal_id,
            name: goal.name.clone(),
            day: last_day,
            days_written: computed.days_written,
            performers: headline.map_or(0, |row| row.performers),
            predicted_performers: headline.map_or(0.0, |row| row.predicted_performers),
            expired,
        });
    }

    if !daily_partitions.is_empty() {
        transaction.add(daily_write, Replace::Partitions(daily_partitions))?;
    }
    let expired_goals = results_partitions.len();
    if !results_partitions.is_empty() {
        transaction.add(results_write, Replace::Partitions(results_partitions))?;
        let goals_write = transaction.table(GOALS, Vec::new())?;
        goals::stage_goals(&goals_write, &all_goals).await?;
        rows_written += all_goals.len() as u64;
        transaction.add(goals_write, Replace::All)?;
        options.inject("goals")?;
    }

    let record = JobRunRecord {
        run_id: run_id.to_string(),
        job: options.job.clone(),
        day: record_day.to_string(),
        started_at: format_micros(started.timestamp_micros()),
        finished_at: format_micros(Utc::now().timestamp_micros()),
        status: "succeeded".into(),
        goals: updates.len() as i64,
        expired_goals: expired_goals as i64,
        rows_written: rows_written as i64,
        error: None,
    };
    let runs_write = transaction.table(JOB_RUNS, Vec::new())?;
    stage_job_runs(&ctx, &runs_write, record).await?;
    transaction.add(runs_write, Replace::All)?;
    options.inject("job_runs")?;

    Ok(RunSummary {
        run_id: run_id.to_string(),
        job: options.job.clone(),
        day: record_day,
        goals: updates,
        rows_written,
    })
}

/// Goals a run counts at the same time.
const GOALS_AT_ONCE: usize = 2;

/// Returns a session with the configuration, runtime and tables of `ctx` in a catalog of its
/// own, so that the tables and views it registers stay out of `ctx`.
async fn fork_session(ctx: &SessionContext) -> Result<SessionContext> {
    let options = ctx.copied_config();
    let defaults = &options.options().catalog;
    let (catalog_name, schema_name) = (
        defaults.default_catalog.clone(),
        defaults.default_schema.clone(),
    );
    let source = ctx
        .catalog(&catalog_name)
        .and_then(|catalog| catalog.schema(&schema_name))
        .expect("every session has its default schema");
    let schema = Arc::new(MemorySchemaProvider::new());
    for name in source.table_names() {
        if let Some(table) = source.table(&name).await? {
            schema.register_table(name, table)?;
        }
    }
    let catalog = Arc::new(MemoryCatalogProvider::new());
    catalog.register_schema(&schema_name, schema)?;
    let catalogs = Arc::new(MemoryCatalogProviderList::new());
    catalogs.register_catalog(catalog_name, catalog);
    let state = SessionStateBuilder::new_from_existing(ctx.state())
        .with_catalog_list(catalogs)
        .build();
    Ok(SessionContext::new_with_state(state))
}

/// Stages `job_runs` with its existing rows and `record` appended.
async fn stage_job_runs(
    ctx: &SessionContext,
    write: &TableWrite,
    record: JobRunRecord,
) -> Result<()> {
    let mut runs: Vec<JobRunRecord> = if ctx.table_exist(JOB_RUNS)? {
        from_batches(
            &ctx.sql("SELECT * FROM job_runs ORDER BY started_at, run_id")
                .await?
                .collect()
                .await?,
        )?
    } else {
        Vec::new()
    };
    runs.push(record);
    let batch = to_batch(records::job_runs_schema(), &runs)?;
    write
        .put_batches("part-0.parquet", batch.schema(), &[batch])
        .await
}

/// Registers an empty `control_groups` when no bucket of any goal has been engaged.
fn register_empty_control_groups(ctx: &SessionContext) -> Result<()> {
    if ctx.table_exist("control_groups")? {
        return Ok(());
    }
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("goal_id", arrow::datatypes::DataType::Int64, false),
        arrow::datatypes::Field::new("user_id", arrow::datatypes::DataType::Utf8, false),
        arrow::datatypes::Field::new("bucket", arrow::datatypes::DataType::Utf8, false),
        arrow::datatypes::Field::new("arm", arrow::datatypes::DataType::Utf8, false),
    ]));
    ctx.register_table(
        "control_groups",
        Arc::new(MemTable::try_new(schema, vec![vec![]])?),
    )?;
    Ok(())
}

/// Returns the calendar day of a UTC instant in `zone`.
fn local_day(micros: i64, zone: Tz) -> NaiveDate {
    chrono::DateTime::from_timestamp_micros(micros)
        .expect("stored times are in range")
        .with_timezone(&zone)
        .date_naive()
}

/// A goal's `goal_daily` partition after a run.
struct ComputedGoal {
    rows: Vec<DailyRecord>,
    days_written: usize,
}

#[derive(Debug, Deserialize)]
struct MemberCount {
    bucket: String,
    arm: String,
    users: i64,
    expected: f64,
}

#[derive(Debug, Deserialize)]
struct CurveDay {
    day: String,
    expected_cumulative: f64,
    low: f64,
    high: f64,
}

/// Computes the goal's rows through `last_day` and merges them with its stored rows.
async fn compute_goal(
    ctx: &SessionContext,
    warehouse: &Warehouse,
    predictions: &Manifest,
    goal: &GoalRecord,
    span: &GoalSpan,
    options: &RunOptions,
) -> Result<ComputedGoal> {
    let goal_id = goal.goal_id;
    let definition = &span.definition;
    let (zone, start_day, last_day) = (span.zone, span.start_day, span.last_day);
    let stored: Vec<DailyRecord> = if ctx.table_exist(GOAL_DAILY)? {
        from_batches(
            &ctx.sql(&format!(
                "SELECT * EXCLUDE (goal_id) FROM goal_daily WHERE goal_id = {goal_id}"
            ))
            .await?
            .collect()
            .await?,
        )?
    } else {
        Vec::new()
    };
    let next_unstored = stored
        .iter()
        .filter_map(|row| parse_day(&row.day))
        .max()
        .and_then(|day| day.succ_opt())
        .unwrap_or(start_day);
    let restate_from = last_day
        .checked_sub_days(chrono::Days::new(u64::from(options.restate_days - 1)))
        .unwrap_or(start_day);
    let first_day = next_unstored.min(restate_from).max(start_day);

    predict::register_goal_events_unchecked(ctx, definition)
        .await
        .map_err(|error| {
            Error::InvalidArgument(format!(
                "goal {goal_id} ({}): {error}; archive the goal and create it again",
                goal.name
            ))
        })?;
    let zone_name = zone.name();
    if !zone_name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'))
    {
        return Err(Error::InvalidArgument(format!(
            "time zone {zone_name:?} of goal {goal_id} cannot be used in SQL"
        )));
    }
    // The pass reads the predictions files first, so that a damaged file is reported by name.
    let started = std::time::Instant::now();
    let window = activity::Window {
        zone_name,
        start_micros: definition.start_micros,
        through_micros: span.through_micros()?,
    };
    let pass = activity::count_goal(ctx, warehouse, predictions, goal_id, &window).await?;
    let pass_time = started.elapsed();
    let parameters = [("goal_id", ScalarValue::Int64(Some(goal_id)))];
    let arms: Vec<MemberCount> = from_batches(
        &models::dataframe(ctx, ARM_COUNTS, &parameters)
            .await?
            .collect()
            .await?,
    )?;
    tracing::debug!(
        goal_id,
        members_and_activity_seconds = pass_time.as_secs_f64(),
        arms_seconds = (started.elapsed() - pass_time).as_secs_f64(),
        "counted the goal's members and activity"
    );
    let counts = member_cells(pass.buckets, arms);
    let activity = pass.activity;
    let curve: Vec<CurveDay> = from_batches(
        &ctx.sql(&format!(
            "SELECT day, expected_cumulative, low, high FROM goal_curves \
             WHERE goal_id = {goal_id} ORDER BY day"
        ))
        .await?
        .collect()
        .await?,
    )?;
    let curve: BTreeMap<NaiveDate, CurveDay> = curve
        .into_iter()
        .filter_map(|point| parse_day(&point.day).map(|day| (day, point)))
        .collect();

    let fresh = daily_rows(
        goal, &counts, &activity, &curve, start_day, first_day, last_day,
    );
    let days_written = fresh
        .iter()
        .map(|row| row.day.as_str())
        .collect::<BTreeSet<_>>()
        .len();
    let mut rows: Vec<DailyRecord> = stored
        .into_iter()
        .filter(|row| parse_day(&row.day).is_some_and(|day| day < first_day || day > last_day))
        .chain(fresh)
        .collect();
    rows.sort_by_key(|row| {
        (
            row.day.clone(),
            bucket_rank(&row.bucket),
            arm_rank(&row.arm),
        )
    });
    Ok(ComputedGoal { rows, days_written })
}

/// Returns one cell per bucket and arm: the arm rows of `sql/nightly/arm_counts.sql`, and per
/// bucket the members that no arm lists, with arm "none".
fn member_cells(buckets: Vec<activity::BucketTotal>, arms: Vec<MemberCount>) -> Vec<MemberCount> {
    let mut cells = Vec::new();
    for total in buckets {
        let (armed_users, armed_expected) = arms
            .iter()
            .filter(|cell| cell.bucket == total.bucket)
            .fold((0, 0.0), |(users, expected), cell| {
                (users + cell.users, expected + cell.expected)
            });
        if total.users > armed_users {
            cells.push(MemberCount {
                bucket: total.bucket,
                arm: NO_ARM.to_string(),
                users: total.users - armed_users,
                expected: total.expected - armed_expected,
            });
        }
    }
    cells.extend(arms);
    cells
}

fn parse_day(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

fn bucket_rank(bucket: &str) -> usize {
    if bucket == ALL_BUCKETS {
        0
    } else {
        1 + BUCKETS
            .iter()
            .position(|b| *b == bucket)
            .unwrap_or(BUCKETS.len())
    }
}

fn arm_rank(arm: &str) -> usize {
    [ALL_ARMS, TEST, CONTROL]
        .iter()
        .position(|a| *a == arm)
        .unwrap_or(3)
}

/// Builds the rows of the days `first_day..=last_day` from member counts and daily activity.
fn daily_rows(
    goal: &GoalRecord,
    counts: &[MemberCount],
    activity: &[activity::Activity],
    curve: &BTreeMap<NaiveDate, CurveDay>,
    start_day: NaiveDate,
    first_day: NaiveDate,
    last_day: NaiveDate,
) -> Vec<DailyRecord> {
    // Each output row sums the member cells it covers: a bucket or every bucket, an arm or
    // every arm (members of buckets that are not engaged have arm "none").
    let covers = |bucket: &str, arm: &str, cell_bucket: &str, cell_arm: &str| {
        (bucket == ALL_BUCKETS || bucket == cell_bucket) && (arm == ALL_ARMS || arm == cell_arm)
    };
    let mut labels: Vec<(String, String)> = Vec::new();
    for bucket in std::iter::once(ALL_BUCKETS).chain(BUCKETS) {
        labels.push((bucket.to_string(), ALL_ARMS.to_string()));
        for arm in [TEST, CONTROL] {
            // Arms are compared within a bucket only. Pooling the arms of several buckets whose
            // control shares differ would mix buckets of different rates into each arm and show
            // an effect where there is none (Simpson's paradox).
            let engaged = bucket != ALL_BUCKETS
                && counts
                    .iter()
                    .any(|cell| cell.users > 0 && covers(bucket, arm, &cell.bucket, &cell.arm));
            if engaged {
                labels.push((bucket.to_string(), arm.to_string()));
            }
        }
    }
    let last_curve = curve.values().last();
    let share_of = |day: NaiveDate| -> f64 {
        if goal.predicted_count <= 0.0 {
            return 0.0;
        }
        let point = curve
            .range(..=day)
            .next_back()
            .map(|(_, point)| point)
            .or(last_curve);
        point.map_or(0.0, |point| {
            point.expected_cumulative / goal.predicted_count
        })
    };

    let mut rows = Vec::new();
    for (bucket, arm) in &labels {
        let (users, expected) = counts
            .iter()
            .filter(|cell| covers(bucket, arm, &cell.bucket, &cell.arm))
            .fold((0, 0.0), |(users, expected), cell| {
                (users + cell.users, expected + cell.expected)
            });
        let mut by_day: BTreeMap<NaiveDate, (i64, i64)> = BTreeMap::new();
        for cell in activity
            .iter()
            .filter(|cell| covers(bucket, arm, &cell.bucket, &cell.arm))
        {
            let entry = by_day.entry(cell.day).or_default();
            entry.0 += cell.new_performers;
            entry.1 += cell.events;
        }
        let headline = bucket == ALL_BUCKETS && arm == ALL_ARMS;
        let (mut performers, mut cumulative_events) = (0, 0);
        for (index, day) in start_day
            .iter_days()
            .take_while(|day| *day <= last_day)
            .enumerate()
        {
            let (new_performers, events) = by_day.get(&day).copied().unwrap_or_default();
            performers += new_performers;
            cumulative_events += events;
            if day < first_day {
                continue;
            }
            let point = curve.get(&day);
            rows.push(DailyRecord {
                day: day.to_string(),
                day_index: index as i32,
                bucket: bucket.clone(),
                arm: arm.clone(),
                users,
                performers,
                events,
                cumulative_events,
                predicted_performers: match (headline, point) {
                    (true, Some(point)) => point.expected_cumulative,
                    _ => expected * share_of(day),
                },
                predicted_low: headline.then(|| point.map(|p| p.low)).flatten(),
                predicted_high: headline.then(|| point.map(|p| p.high)).flatten(),
            });
        }
    }
    rows
}

/// Builds the final figures of a goal from its rows of the last day.
fn final_results(
    goal: &GoalRecord,
    direction: Direction,
    rows: &[DailyRecord],
    last_day: NaiveDate,
) -> Result<Vec<ResultRecord>> {
    let last = last_day.to_string();
    let mut results: Vec<ResultRecord> = rows
        .iter()
        .filter(|row| row.day == last)
        .map(|row| {
            let achieved = |performers: f64| match direction {
                Direction::Maximize => performers,
                Direction::Minimize => row.users as f64 - performers,
            };
            let achievers = achieved(row.performers as f64) as i64;
            let headline = row.bucket == ALL_BUCKETS && row.arm == ALL_ARMS;
            let performers = row.performers as f64;
            ResultRecord {
                bucket: row.bucket.clone(),
                arm: row.arm.clone(),
                final_day: last.clone(),
                users: row.users,
                performers: row.performers,
                achievers,
                achieve_rate: (row.users > 0).then(|| achievers as f64 / row.users as f64),
                predicted_performers: row.predicted_performers,
                predicted_achievers: achieved(row.predicted_performers),
                error_percent: (row.performers > 0)
                    .then(|| 100.0 * (row.predicted_performers - performers) / performers),
                interval_low: headline.then_some(goal.interval_low),
                interval_high: headline.then_some(goal.interval_high),
                interval_covered: headline
                    .then_some(goal.interval_low <= performers && performers <= goal.interval_high),
                uplift_abs: None,
                uplift_rel: None,
                uplift_low: None,
                uplift_high: None,
                p_value: None,
                incremental_achievers: None,
                min_detectable_effect: None,
                verdict: None,
            }
        })
        .collect();
    for uplift in arm_uplifts(direction, rows.iter().filter(|row| row.day == last)) {
        let (bucket, uplift) = uplift?;
        if let Some(result) = results
            .iter_mut()
            .find(|result| result.bucket == bucket && result.arm == TEST)
        {
            result.uplift_abs = Some(uplift.uplift_abs);
            result.uplift_rel = uplift.uplift_rel;
            result.uplift_low = Some(uplift.uplift_low);
            result.uplift_high = Some(uplift.uplift_high);
            result.p_value = Some(uplift.p_value);
            result.incremental_achievers = Some(uplift.incremental_achievers);
            result.min_detectable_effect = uplift.min_detectable_effect;
            result.verdict = Some(uplift.verdict.as_str().to_string());
        }
    }
    Ok(results)
}

/// Compares the test and control rows of each engaged bucket among `rows` (rows of one day).
fn arm_uplifts<'a>(
    direction: Direction,
    rows: impl Iterator<Item = &'a DailyRecord> + Clone,
) -> impl Iterator<Item = Result<(String, Uplift)>> {
    let achievers = move |row: &DailyRecord| -> u64 {
        match direction {
            Direction::Maximize => row.performers as u64,
            Direction::Minimize => (row.users - row.performers) as u64,
        }
    };
    let pairs: Vec<(&DailyRecord, &DailyRecord)> = rows
        .clone()
        .filter(|row| row.arm == TEST)
        .filter_map(|test| {
            rows.clone()
                .find(|row| row.arm == CONTROL && row.bucket == test.bucket)
                .map(|control| (test, control))
        })
        .collect();
    pairs.into_iter().map(move |(test, control)| {
        let uplift = engage::stats::uplift(
            direction,
            test.users as u64,
            achievers(test),
            control.users as u64,
            achievers(control),
        )?;
        Ok((test.bucket.clone(), uplift))
    })
}

/// Test against control of each engaged bucket on the latest stored day of a goal.
#[derive(Debug, Clone, Serialize)]
pub struct LatestUplift {
    pub day: String,
    pub buckets: Vec<(String, Uplift)>,
}

/// Reads the latest day of a goal's `goal_daily` and compares test and control in each engaged
/// bucket. Returns `None` before the first nightly run or when no bucket is engaged.
pub async fn latest_uplift(
    ctx: &SessionContext,
    goal: &GoalRecord,
) -> Result<Option<LatestUplift>> {
    if !ctx.table_exist(GOAL_DAILY)? {
        return Ok(None);
    }
    let goal_id = goal.goal_id;
    let rows: Vec<DailyRecord> = from_batches(
        &ctx.sql(&format!(
            "SELECT * EXCLUDE (goal_id) FROM goal_daily WHERE goal_id = {goal_id} \
             AND day = (SELECT max(day) FROM goal_daily WHERE goal_id = {goal_id})"
        ))
        .await?
        .collect()
        .await?,
    )?;
    let Some(day) = rows.first().map(|row| row.day.clone()) else {
        return Ok(None);
    };
    let direction: Direction = goal.direction.parse()?;
    let buckets = arm_uplifts(direction, rows.iter()).collect::<Result<Vec<_>>>()?;
    if buckets.is_empty() {
        return Ok(None);
    }
    Ok(Some(LatestUplift { day, buckets }))
}
