//! Running the feature and label SQL models and reading their rows into Rust.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use datafusion::datasource::MemTable;
use datafusion::prelude::{DataFrame, SessionContext};
use futures::StreamExt;

use super::model::RawFeatures;
use crate::error::Result;
use crate::models::{self, SqlModel, timestamp_parameter};
use crate::segments::Segment;

/// Feature and label SQL models.
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
    let parameters = [("cutoff", timestamp_parameter(at_micros))];
    models::dataframe(ctx, USER_FEATURES, &parameters).await
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

/// Streams the features of every `population` user at `at_micros` and hands each batch of
/// users with their features to `consume`, so that no more than one batch of features is in
/// memory at once.
pub async fn for_each_feature_batch(
    ctx: &SessionContext,
    at_micros: i64,
    mut consume: impl FnMut(Vec<String>, Vec<RawFeatures>),
) -> Result<()> {
    let mut stream = plan_features(ctx, at_micros)
        .await?
        .execute_stream()
        .await?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let mut user_ids = Vec::with_capacity(batch.num_rows());
        let mut features = Vec::with_capacity(batch.num_rows());
        read_features(&batch, &mut user_ids, &mut features)?;
        consume(user_ids, features);
    }
    Ok(())
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

/// Returns the column `name` of a model's output cast to `data_type`.
fn cast_column(batch: &RecordBatch, name: &str, data_type: &DataType) -> Result<ArrayRef> {
    let column = batch.column_by_name(name).ok_or_else(|| {
        crate::Error::InvalidArgument(format!("model output is missing column {name}"))
    })?;
    Ok(arrow::compute::cast(column, data_type)?)
}

fn text_column(batch: &RecordBatch, name: &str) -> Result<arrow::array::StringArray> {
    Ok(cast_column(batch, name, &DataType::Utf8)?
        .as_string::<i32>()
        .clone())
}

fn float_column(batch: &RecordBatch, name: &str) -> Result<arrow::array::Float64Array> {
    Ok(cast_column(batch, name, &DataType::Float64)?
        .as_primitive::<Float64Type>()
        .clone())
}
