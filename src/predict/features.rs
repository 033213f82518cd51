//! Running the feature and label SQL models and reading their rows into Rust.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use datafusion::datasource::MemTable;
use datafusion::prelude::{DataFrame, SessionContext};
use futures::StreamExt;

use super::model::RawFeatures;
use crate::error::Result;
use crate::models::{self, SqlModel, cast_column, float_column, text_column, timestamp_parameter};
use crate::segments::Segment;

/// Feature and label SQL models.
pub const USER_ACTIVITY: SqlModel = SqlModel {
    path: "sql/features/user_activity.sql",
    sql: include_str!("../../sql/features/user_activity.sql"),
};

pub const ACTIVE_USERS_ESTIMATE: SqlModel = SqlModel {
    path: "sql/features/active_users_estimate.sql",
    sql: include_str!("../../sql/features/active_users_estimate.sql"),
};

pub const USER_FEATURES: SqlModel = SqlModel {
    path: "sql/features/user_features.sql",
    sql: include_str!("../../sql/features/user_features.sql"),
};

pub const LABELS: SqlModel = SqlModel {
    path: "sql/features/labels.sql",
    sql: include_str!("../../sql/features/labels.sql"),
};

/// The users of a segment at a time, with their features.
pub struct Snapshot {
    pub user_ids: Vec<String>,
    pub features: Vec<RawFeatures>,
}

/// Evaluates `segment` at `at_micros` and registers its users as `population`. With a
/// `share`, only the users whose sample key is below it are kept. Returns the number of users.
pub async fn register_population(
    ctx: &SessionContext,
    segment: &Segment,
    at_micros: i64,
    share: Option<f64>,
) -> Result<usize> {
    let mut users = segment.users(ctx, at_micros).await?;
    if let Some(share) = share {
        users =
            users.filter(super::sample::sample_key_expr().lt(datafusion::prelude::lit(share)))?;
    }
    let batches = users.collect().await?;
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    let schema = batches
        .first()
        .map(|batch| batch.schema())
        .unwrap_or_else(|| {
            Arc::new(arrow::datatypes::Schema::new(vec![
                arrow::datatypes::Field::new("user_id", DataType::Utf8, true),
            ]))
        });
    let population = MemTable::try_new(schema, vec![batches])?;
    ctx.deregister_table("population")?;
    ctx.register_table("population", Arc::new(population))?;
    Ok(rows)
}

/// Plans the features of every `population` user at `at_micros`.
pub async fn plan_features(ctx: &SessionContext, at_micros: i64) -> Result<DataFrame> {
    let activity = plan_activity(ctx, at_micros).await?;
    ctx.deregister_table("user_activity")?;
    ctx.register_table("user_activity", activity.into_view())?;
    models::dataframe(ctx, USER_FEATURES, &[]).await
}

/// Plans the features of every user with an event before `at_micros`, who are the users of the
/// built-in `all_users` segment at that time. It is one aggregate over the events, with no
/// segment to evaluate and no population to join.
pub async fn plan_activity(ctx: &SessionContext, at_micros: i64) -> Result<DataFrame> {
    let parameters = [("cutoff", timestamp_parameter(at_micros))];
    models::dataframe(ctx, USER_ACTIVITY, &parameters).await
}

/// Sizes the target group of `segment` at `at_micros` before its features are read. The
/// built-in `all_users` gets an estimate from [`ACTIVE_USERS_ESTIMATE`], which is cheap; any
/// other segment is evaluated and registered as `population`, and gets its exact size.
pub async fn target_size(ctx: &SessionContext, segment: &Segment, at_micros: i64) -> Result<usize> {
    if !segment.is_all_users() {
        return register_population(ctx, segment, at_micros, None).await;
    }
    let parameters = [("as_of", timestamp_parameter(at_micros))];
    let batches = models::dataframe(ctx, ACTIVE_USERS_ESTIMATE, &parameters)
        .await?
        .collect()
        .await?;
    let users = batches
        .first()
        .filter(|batch| batch.num_rows() > 0)
        .map(|batch| cast_column(batch, "users", &DataType::UInt64))
        .transpose()?
        .map_or(0, |column| {
            column
                .as_primitive::<arrow::datatypes::UInt64Type>()
                .value(0)
        });
    Ok(users as usize)
}

/// Streams the users of `segment` at `at_micros` with their features at that time, and hands
/// each batch to `consume`, so that one batch of the target group's features is in memory at a
/// time. The built-in `all_users` reads [`USER_ACTIVITY`] alone; any other segment needs its
/// users registered as `population` by [`target_size`].
pub async fn for_each_target_batch(
    ctx: &SessionContext,
    segment: &Segment,
    at_micros: i64,
    mut consume: impl FnMut(Vec<String>, Vec<RawFeatures>),
) -> Result<()> {
    let plan = if segment.is_all_users() {
        plan_activity(ctx, at_micros).await?
    } else {
        plan_features(ctx, at_micros).await?
    };
    let mut stream = plan.execute_stream().await?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let mut user_ids = Vec::with_capacity(batch.num_rows());
        let mut features = Vec::with_capacity(batch.num_rows());
        read_features(&batch, &mut user_ids, &mut features)?;
        consume(user_ids, features);
    }
    Ok(())
}

/// Evaluates `segment` at `at_micros` (optionally sampled, see [`register_population`]) and
/// reads its users' features at the same time, sorted by user id.
pub async fn snapshot(
    ctx: &SessionContext,
    segment: &Segment,
    at_micros: i64,
    share: Option<f64>,
) -> Result<Snapshot> {
    register_population(ctx, segment, at_micros, share).await?;
    let batches = plan_features(ctx, at_micros).await?.collect().await?;
    let mut user_ids = Vec::new();
    let mut features = Vec::new();
    for batch in &batches {
        read_features(batch, &mut user_ids, &mut features)?;
    }
    // Sorted by user id, so training gets the same rows in the same order however the query
    // partitioned its work. The fit is then reproducible to the last bit.
    let mut order: Vec<usize> = (0..user_ids.len()).collect();
    order.sort_by(|&a, &b| user_ids[a].cmp(&user_ids[b]));
    let user_ids = order.iter().map(|&i| user_ids[i].clone()).collect();
    let features = order.iter().map(|&i| features[i].clone()).collect();
    Ok(Snapshot { user_ids, features })
}

/// Reads the first goal event of each `population` user in `[start, end)`: days from the start.
pub async fn first_events(
    ctx: &SessionContext,
    start_micros: i64,
    end_micros: i64,
) -> Result<HashMap<String, f64>> {
    let parameters = [
        ("window_start", timestamp_parameter(start_micros)),
        ("window_end", timestamp_parameter(end_micros)),
    ];
    let batches = models::dataframe(ctx, LABELS, &parameters)
        .await?
        .collect()
        .await?;
    let mut first = HashMap::new();
    for batch in &batches {
        let users = text_column(batch, "user_id")?;
        let days = float_column(batch, "days_to_first_event")?;
        for row in 0..batch.num_rows() {
            first.insert(users.value(row).to_string(), days.value(row));
        }
    }
    Ok(first)
}

fn read_features(
    batch: &RecordBatch,
    user_ids: &mut Vec<String>,
    features: &mut Vec<RawFeatures>,
) -> Result<()> {
    let users = text_column(batch, "user_id")?;
    let number = |name: &str| float_column(batch, name);
    let columns = [
        number("events_all")?,
        number("events_30d")?,
        number("events_90d")?,
        number("goal_events_all")?,
        number("goal_events_7d")?,
        number("goal_events_30d")?,
        number("goal_events_90d")?,
        number("goal_days_all")?,
        number("goal_amount_all")?,
        number("goal_amount_90d")?,
        number("days_since_first_event")?,
        number("days_since_last_event")?,
        number("days_since_first_goal_event")?,
        number("days_since_last_goal_event")?,
        number("mean_days_between_goal_days")?,
    ];
    let value = |column: usize, row: usize| columns[column].value(row);
    let optional = |column: usize, row: usize| {
        columns[column]
            .is_valid(row)
            .then(|| columns[column].value(row))
    };
    for row in 0..batch.num_rows() {
        user_ids.push(users.value(row).to_string());
        features.push(RawFeatures {
            events_all: value(0, row),
            events_30d: value(1, row),
            events_90d: value(2, row),
            goal_events_all: value(3, row),
            goal_events_7d: value(4, row),
            goal_events_30d: value(5, row),
            goal_events_90d: value(6, row),
            goal_days_all: value(7, row),
            goal_amount_all: value(8, row),
            goal_amount_90d: value(9, row),
            days_since_first_event: optional(10, row),
            days_since_last_event: optional(11, row),
            days_since_first_goal_event: optional(12, row),
            days_since_last_goal_event: optional(13, row),
            mean_days_between_goal_days: optional(14, row),
        });
    }
    Ok(())
}
