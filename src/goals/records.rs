//! Rows of goalcast's output tables as serde structs, and their conversion to and from Arrow.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::schema::timestamp_type;

/// Converts rows to one record batch of `schema`; timestamps are RFC 3339 strings and dates
/// `YYYY-MM-DD` strings in the rows.
pub fn to_batch<T: Serialize>(schema: SchemaRef, rows: &[T]) -> Result<RecordBatch> {
    let mut decoder = arrow::json::ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.len().max(1))
        .build_decoder()?;
    decoder.serialize(rows)?;
    Ok(decoder
        .flush()?
        .unwrap_or_else(|| RecordBatch::new_empty(schema)))
}

/// Converts record batches back to rows.
pub fn from_batches<T: DeserializeOwned>(batches: &[RecordBatch]) -> Result<Vec<T>> {
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    Ok(serde_json::from_slice(&bytes)?)
}

/// One goal: its definition, status and headline prediction. Table `goals`, one row per goal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GoalRecord {
    pub goal_id: i64,
    pub name: String,
    pub segment: String,
    /// JSON array of event names.
    pub event_names: String,
    #[serde(default)]
    pub event_filter: Option<String>,
    pub direction: String,
    pub start_time: String,
    pub end_date: String,
    pub time_zone: String,
    /// First instant after the goal.
    pub end_time: String,
    /// `active`, `archived` or `expired`.
    pub status: String,
    pub created_at: String,
    #[serde(default)]
    pub archived_at: Option<String>,
    pub target_users: i64,
    pub predicted_count: f64,
    pub interval_low: f64,
    pub interval_high: f64,
    pub predicted_achievers: f64,
    /// JSON of the bucket cut points.
    pub bucket_cuts: String,
}

pub fn goals_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("goal_id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("segment", DataType::Utf8, false),
        Field::new("event_names", DataType::Utf8, false),
        Field::new("event_filter", DataType::Utf8, true),
        Field::new("direction", DataType::Utf8, false),
        Field::new("start_time", timestamp_type(), false),
        Field::new("end_date", DataType::Date32, false),
        Field::new("time_zone", DataType::Utf8, false),
        Field::new("end_time", timestamp_type(), false),
        Field::new("status", DataType::Utf8, false),
        Field::new("created_at", timestamp_type(), false),
        Field::new("archived_at", timestamp_type(), true),
        Field::new("target_users", DataType::Int64, false),
        Field::new("predicted_count", DataType::Float64, false),
        Field::new("interval_low", DataType::Float64, false),
        Field::new("interval_high", DataType::Float64, false),
        Field::new("predicted_achievers", DataType::Float64, false),
        Field::new("bucket_cuts", DataType::Utf8, false),
    ]))
}

/// One target user's prediction. Table `predictions`, partitioned by `goal_id`.
pub fn predictions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("probability", DataType::Float64, false),
        Field::new("achieve_probability", DataType::Float64, false),
        Field::new("score", DataType::Int32, false),
        Field::new("bucket", DataType::Utf8, false),
    ]))
}

/// A member of a goal's frozen target group. Table `target_groups`, partitioned by `goal_id`.
pub fn target_groups_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("added_at", timestamp_type(), false),
    ]))
}

/// The model behind a goal's prediction. Table `model_runs`, partitioned by `goal_id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelRunRecord {
    pub created_at: String,
    pub training_rows: i64,
    pub training_positives: i64,
    /// JSON array of the training cutoffs, most recent (held out) first.
    pub cutoffs: String,
    pub holdout_rows: i64,
    #[serde(default)]
    pub auc: Option<f64>,
    pub log_loss: f64,
    pub brier: f64,
    pub count_error_rms: f64,
    /// JSON array of calibration deciles.
    pub calibration: String,
    /// JSON array of backtests.
    pub backtests: String,
    /// JSON array of [feature, odds ratio] pairs.
    pub odds_ratios: String,
    /// JSON of the fitted model: means, scales, intercept, coefficients.
    pub model: String,
}

pub fn model_runs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("created_at", timestamp_type(), false),
        Field::new("training_rows", DataType::Int64, false),
        Field::new("training_positives", DataType::Int64, false),
        Field::new("cutoffs", DataType::Utf8, false),
        Field::new("holdout_rows", DataType::Int64, false),
        Field::new("auc", DataType::Float64, true),
        Field::new("log_loss", DataType::Float64, false),
        Field::new("brier", DataType::Float64, false),
        Field::new("count_error_rms", DataType::Float64, false),
        Field::new("calibration", DataType::Utf8, false),
        Field::new("backtests", DataType::Utf8, false),
        Field::new("odds_ratios", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, false),
    ]))
}

/// One day of a goal's predicted cumulative curve. Table `goal_curves`, partitioned by
/// `goal_id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CurveRecord {
    pub day: String,
    pub day_index: i32,
    pub expected_cumulative: f64,
    pub low: f64,
    pub high: f64,
}

pub fn curves_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("day", DataType::Date32, false),
        Field::new("day_index", DataType::Int32, false),
        Field::new("expected_cumulative", DataType::Float64, false),
        Field::new("low", DataType::Float64, false),
        Field::new("high", DataType::Float64, false),
    ]))
}

impl GoalRecord {
    /// Rebuilds the goal's definition from its stored row.
    pub fn definition(&self) -> Result<crate::predict::GoalDefinition> {
        let corrupt = |column: &str, value: &str| crate::error::Error::CorruptManifest {
            path: "goals".into(),
            message: format!("goal {} has an invalid {column} {value:?}", self.goal_id),
        };
        let start = chrono::DateTime::parse_from_rfc3339(&self.start_time)
            .map_err(|_| corrupt("start_time", &self.start_time))?;
        let end_date = chrono::NaiveDate::parse_from_str(&self.end_date, "%Y-%m-%d")
            .map_err(|_| corrupt("end_date", &self.end_date))?;
        Ok(crate::predict::GoalDefinition {
            name: self.name.clone(),
            segment: self.segment.clone(),
            event_names: serde_json::from_str(&self.event_names)
                .map_err(|_| corrupt("event_names", &self.event_names))?,
            event_filter: self.event_filter.clone(),
            direction: self.direction.parse()?,
            end_date,
            time_zone: self.time_zone.clone(),
            start_micros: start.timestamp_micros(),
        })
    }
}
