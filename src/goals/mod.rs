//! Saved goals: creating them from a prediction, listing, showing and archiving.
//!
//! A goal's rows live in five tables. `target_groups`, `predictions`, `model_runs` and
//! `goal_curves` are partitioned by `goal_id`, and each goal writes its own partitions first.
//! The goal exists once its row is committed to `goals`, which is written last. A crash in
//! between leaves partitions that no goal row refers to, and the next goal with that id
//! replaces them.

pub mod records;

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};

use datafusion::prelude::SessionContext;
use serde::Serialize;

use crate::context::{ContextOptions, empty_context, register_table};
use crate::error::{Error, Result};
use crate::predict::{BucketCuts, GoalDefinition, Prediction, format_micros};
use crate::warehouse::{
    PartitionColumn, PartitionType, Replace, TABLE_ZSTD_LEVEL, TableWrite, Warehouse,
    encode_parquet,
};
use records::{CurveRecord, GoalRecord, ModelRunRecord, from_batches, to_batch};

pub const GOALS: &str = "goals";
pub const TARGET_GROUPS: &str = "target_groups";
pub const PREDICTIONS: &str = "predictions";
pub const MODEL_RUNS: &str = "model_runs";
pub const GOAL_CURVES: &str = "goal_curves";

/// Default limit on active goals per warehouse.
pub const DEFAULT_MAX_ACTIVE_GOALS: usize = 5;

/// Returns the partitioning of every per-goal table: Hive folders `goal_id=N`.
pub fn goal_partitioning() -> Vec<PartitionColumn> {
    vec![PartitionColumn {
        name: "goal_id".into(),
        data_type: PartitionType::Int64,
    }]
}

/// Reads every goal, ordered by id; an absent table means no goals.
pub async fn load_goals(
    warehouse: &Warehouse,
    options: &ContextOptions,
) -> Result<Vec<GoalRecord>> {
    let Some(manifest) = warehouse.manifest(GOALS).await? else {
        return Ok(Vec::new());
    };
    let ctx = empty_context(warehouse, options)?;
    register_table(&ctx, warehouse, &manifest).await?;
    let batches = ctx
        .sql("SELECT * FROM goals ORDER BY goal_id")
        .await?
        .collect()
        .await?;
    from_batches(&batches)
}

/// Reads one goal, failing with the list of goal ids when it does not exist.
pub async fn load_goal(
    warehouse: &Warehouse,
    options: &ContextOptions,
    goal_id: i64,
) -> Result<GoalRecord> {
    let mut goals = load_goals(warehouse, options).await?;
    let index = position_of(&goals, goal_id).map_err(|error| in_warehouse(error, warehouse))?;
    Ok(goals.swap_remove(index))
}

/// Returns the index of goal `goal_id`, failing with the list of goal ids when it is missing.
fn position_of(goals: &[GoalRecord], goal_id: i64) -> Result<usize> {
    goals
        .iter()
        .position(|goal| goal.goal_id == goal_id)
        .ok_or_else(|| {
            let ids: Vec<String> = goals.iter().map(|goal| goal.goal_id.to_string()).collect();
            Error::InvalidArgument(format!(
                "goal {goal_id} not found; existing goals: {}",
                if ids.is_empty() {
                    "none".to_string()
                } else {
                    ids.join(", ")
                }
            ))
        })
}

/// Adds the warehouse to a goal-not-found error, because a missing `--warehouse` is its usual
/// cause.
fn in_warehouse(error: Error, warehouse: &Warehouse) -> Error {
    match error {
        Error::InvalidArgument(message) => Error::InvalidArgument(format!(
            "{message} (in warehouse {}; pass --warehouse to use another)",
            warehouse.url()
        )),
        other => other,
    }
}

/// Checks that a new goal named `name` may be created.
pub fn check_can_create(goals: &[GoalRecord], name: &str, max_active: usize) -> Result<()> {
    let active: Vec<&GoalRecord> = goals
        .iter()
        .filter(|goal| goal.status == "active")
        .collect();
    if let Some(same) = active.iter().find(|goal| goal.name == name) {
        return Err(Error::InvalidArgument(format!(
            "an active goal named {name:?} already exists (goal {}); choose another name or \
             archive it with `goalcast goal archive {}`",
            same.goal_id, same.goal_id
        )));
    }
    if active.len() >= max_active {
        let ids: Vec<String> = active.iter().map(|goal| goal.goal_id.to_string()).collect();
        return Err(Error::InvalidArgument(format!(
            "the warehouse already has {} active goals (ids {}), the maximum; archive one with \
             `goalcast goal archive ID` or raise the limit with --max-active-goals",
            active.len(),
            ids.join(", ")
        )));
    }
    Ok(())
}

/// Saves a predicted goal: its target group, predictions, model run, curve and goal row.
pub async fn save_goal(
    warehouse: &Warehouse,
    goals: Vec<GoalRecord>,
    definition: &GoalDefinition,
    prediction: &Prediction,
    bucket_cuts: BucketCuts,
) -> Result<GoalRecord> {
    let goal_id = goals.iter().map(|goal| goal.goal_id).max().unwrap_or(0) + 1;
    let now = format_micros(chrono::Utc::now().timestamp_micros());
    let partition = format!("goal_id={goal_id}");

    // The two tables with a row per target user are encoded side by side, on two threads.
    let (target_groups, predictions) = tokio::try_join!(
        encode_on_thread(target_group_batch(prediction, definition.start_micros)?),
        encode_on_thread(predictions_batch(prediction)?),
    )?;
    write_encoded_partition(warehouse, TARGET_GROUPS, &partition, target_groups).await?;
    write_encoded_partition(warehouse, PREDICTIONS, &partition, predictions).await?;

    let quality = &prediction.quality;
    let run = ModelRunRecord {
        created_at: now.clone(),
        training_rows: quality.training_rows as i64,
        training_positives: quality.training_positives as i64,
        cutoffs: serde_json::to_string(&quality.cutoffs)?,
        holdout_rows: quality.holdout_rows as i64,
        auc: quality.auc,
        log_loss: quality.log_loss,
        brier: quality.brier,
        count_error_rms: quality.count_error_rms,
        calibration: serde_json::to_string(&quality.calibration)?,
        backtests: serde_json::to_string(&quality.backtests)?,
        odds_ratios: serde_json::to_string(&quality.odds_ratios)?,
        model: serde_json::to_string(&prediction.model)?,
    };
    write_partition(
        warehouse,
        MODEL_RUNS,
        &partition,
        to_batch(records::model_runs_schema(), &[run])?,
    )
    .await?;

    let curve: Vec<CurveRecord> = prediction
        .curve
        .iter()
        .enumerate()
        .map(|(index, point)| CurveRecord {
            day: point.day.to_string(),
            day_index: index as i32,
            expected_cumulative: point.expected_cumulative,
            low: point.low,
            high: point.high,
        })
        .collect();
    write_partition(
        warehouse,
        GOAL_CURVES,
        &partition,
        to_batch(records::curves_schema(), &curve)?,
    )
    .await?;

    let record = GoalRecord {
        goal_id,
        name: definition.name.clone(),
        segment: definition.segment.clone(),
        event_names: serde_json::to_string(&definition.event_names)?,
        event_filter: definition.event_filter.clone(),
        direction: definition.direction.as_str().to_string(),
        start_time: format_micros(definition.start_micros),
        end_date: definition.end_date.to_string(),
        time_zone: definition.time_zone.clone(),
        end_time: format_micros(definition.end_micros()?),
        status: "active".into(),
        created_at: now,
        archived_at: None,
        target_users: prediction.target_users as i64,
        predicted_count: prediction.predicted_count,
        interval_low: prediction.interval_low,
        interval_high: prediction.interval_high,
        predicted_achievers: prediction.predicted_achievers,
        bucket_cuts: serde_json::to_string(&bucket_cuts)?,
    };
    let mut all = goals;
    all.push(record.clone());
    write_goals(warehouse, &all).await?;
    Ok(record)
}

/// Returns the target group's rows, built column by column because it can hold millions of
/// users.
fn target_group_batch(prediction: &Prediction, added_at_micros: i64) -> Result<RecordBatch> {
    let users = &prediction.users;
    let user_ids = StringArray::from_iter_values(users.iter().map(|u| u.user_id.as_str()));
    let added_at = TimestampMicrosecondArray::from(vec![added_at_micros; users.len()])
        .with_data_type(crate::schema::timestamp_type());
    Ok(RecordBatch::try_new(
        records::target_groups_schema(),
        vec![Arc::new(user_ids), Arc::new(added_at)],
    )?)
}

/// Returns the predictions' rows, column by column like [`target_group_batch`].
fn predictions_batch(prediction: &Prediction) -> Result<RecordBatch> {
    let users = &prediction.users;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            users.iter().map(|u| u.user_id.as_str()),
        )),
        Arc::new(Float64Array::from_iter_values(
            users.iter().map(|u| u.probability),
        )),
        Arc::new(Float64Array::from_iter_values(
            users.iter().map(|u| u.achieve_probability),
        )),
        Arc::new(Int32Array::from_iter_values(
            users.iter().map(|u| i32::from(u.score)),
        )),
        Arc::new(StringArray::from_iter_values(
            users.iter().map(|u| u.bucket),
        )),
    ];
    Ok(RecordBatch::try_new(
        records::predictions_schema(),
        columns,
    )?)
}

/// Marks a goal archived, so it no longer counts against the active limit. Holds the run
/// lock, because it rewrites the goals table that nightly runs also write.
pub async fn archive_goal(
    warehouse: &Warehouse,
    options: &ContextOptions,
    goal_id: i64,
) -> Result<GoalRecord> {
    let run_id = crate::nightly::new_run_id();
    let lock = crate::warehouse::RunLock::acquire(warehouse, &run_id, "goal archive").await?;
    let archived = archive_goal_locked(warehouse, options, goal_id).await;
    lock.release().await?;
    archived
}

async fn archive_goal_locked(
    warehouse: &Warehouse,
    options: &ContextOptions,
    goal_id: i64,
) -> Result<GoalRecord> {
    let mut goals = load_goals(warehouse, options).await?;
    let index = position_of(&goals, goal_id).map_err(|error| in_warehouse(error, warehouse))?;
    let goal = &mut goals[index];
    if goal.status == "archived" {
        return Err(Error::InvalidArgument(format!(
            "goal {goal_id} is already archived"
        )));
    }
    goal.status = "archived".into();
    goal.archived_at = Some(format_micros(chrono::Utc::now().timestamp_micros()));
    let archived = goal.clone();
    write_goals(warehouse, &goals).await?;
    Ok(archived)
}

async fn write_goals(warehouse: &Warehouse, goals: &[GoalRecord]) -> Result<()> {
    let write = TableWrite::begin(warehouse, GOALS, Vec::new())?;
    stage_goals(&write, goals).await?;
    write.commit(Replace::All).await?;
    Ok(())
}

/// Stages the whole `goals` table in `write`, which then replaces every file of the table.
pub async fn stage_goals(write: &TableWrite, goals: &[GoalRecord]) -> Result<()> {
    let batch = to_batch(records::goals_schema(), goals)?;
    write
        .put_batches("part-0.parquet", records::goals_schema(), &[batch])
        .await
}

/// Replaces one `goal_id=N` partition of `table` with `batch`.
pub(crate) async fn write_partition(
    warehouse: &Warehouse,
    table: &str,
    partition: &str,
    batch: arrow::record_batch::RecordBatch,
) -> Result<()> {
    let bytes = encode_parquet(batch.schema(), &[batch], TABLE_ZSTD_LEVEL)?;
    write_encoded_partition(warehouse, table, partition, bytes).await
}

/// Encodes `batch` as Parquet on a blocking thread.
async fn encode_on_thread(batch: arrow::record_batch::RecordBatch) -> Result<Vec<u8>> {
    tokio::task::spawn_blocking(move || encode_parquet(batch.schema(), &[batch], TABLE_ZSTD_LEVEL))
        .await
        .expect("Parquet encoding does not panic")
}

/// Replaces one `goal_id=N` partition of `table` with the Parquet file `bytes`.
async fn write_encoded_partition(
    warehouse: &Warehouse,
    table: &str,
    partition: &str,
    bytes: Vec<u8>,
) -> Result<()> {
    let write = TableWrite::begin(warehouse, table, goal_partitioning())?;
    write
        .put_bytes(&format!("{partition}/part-0.parquet"), bytes)
        .await?;
    write
        .commit(Replace::Partitions(BTreeSet::from([partition.to_string()])))
        .await?;
    Ok(())
}

/// A saved goal with what `goal show` prints about it.
#[derive(Debug, Clone, Serialize)]
pub struct GoalDetails {
    pub goal: GoalRecord,
    pub model_run: Option<ModelRunRecord>,
    /// Bucket, users, mean probability, expected performers.
    pub buckets: Vec<(String, i64, f64, f64)>,
    pub curve: Vec<CurveRecord>,
    /// Engaged buckets with their test and control sizes.
    pub engagements: Vec<crate::engage::EngagementSummary>,
    /// Test against control on the latest day the nightly job computed.
    pub uplift: Option<crate::nightly::LatestUplift>,
}

/// Reads a goal with its model run, bucket sizes and predicted curve.
pub async fn goal_details(
    ctx: &SessionContext,
    warehouse: &Warehouse,
    options: &ContextOptions,
    goal_id: i64,
) -> Result<GoalDetails> {
    let goal = load_goal(warehouse, options, goal_id).await?;
    let model_run = ctx
        .sql(&format!(
            "SELECT * EXCLUDE (goal_id) FROM model_runs WHERE goal_id = {goal_id}"
        ))
        .await?
        .collect()
        .await
        .map(|batches| from_batches::<ModelRunRecord>(&batches))??
        .into_iter()
        .next();
    let bucket_rows = ctx
        .sql(&format!(
            "SELECT bucket, count(*) AS users, avg(probability) AS mean_probability, \
             sum(probability) AS expected FROM predictions WHERE goal_id = {goal_id} \
             GROUP BY bucket"
        ))
        .await?
        .collect()
        .await?;
    #[derive(serde::Deserialize)]
    struct BucketRow {
        bucket: String,
        users: i64,
        mean_probability: f64,
        expected: f64,
    }
    let mut buckets: Vec<(String, i64, f64, f64)> = from_batches::<BucketRow>(&bucket_rows)?
        .into_iter()
        .map(|row| (row.bucket, row.users, row.mean_probability, row.expected))
        .collect();
    buckets.sort_by_key(|row| crate::predict::BUCKETS.iter().position(|b| *b == row.0));
    let curve = from_batches(
        &ctx.sql(&format!(
            "SELECT day, day_index, expected_cumulative, low, high FROM goal_curves \
             WHERE goal_id = {goal_id} ORDER BY day_index"
        ))
        .await?
        .collect()
        .await?,
    )?;
    let engagements = crate::engage::engagements(ctx, goal_id).await?;
    let uplift = crate::nightly::latest_uplift(ctx, &goal).await?;
    Ok(GoalDetails {
        goal,
        model_run,
        buckets,
        curve,
        engagements,
        uplift,
    })
}
