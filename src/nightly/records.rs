//! Rows of the tables the nightly job writes: `goal_daily`, `goal_results` and `job_runs`.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::schema::timestamp_type;

/// Bucket label of the rows that cover every bucket.
pub const ALL_BUCKETS: &str = "All";
/// Arm label of the rows that cover every member of a bucket.
pub const ALL_ARMS: &str = "all";
/// The arms of an engaged bucket.
pub const TEST: &str = "test";
pub const CONTROL: &str = "control";
/// Arm of the members of a bucket that is not engaged, as `sql/nightly/event_days.sql` names it.
pub const NO_ARM: &str = "none";

/// One goal day for one bucket and arm. Table `goal_daily`, partitioned by `goal_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyRecord {
    /// Calendar day in the goal's time zone.
    pub day: String,
    /// Days since the goal's first day, which is 0.
    pub day_index: i32,
    pub bucket: String,
    pub arm: String,
    /// Members of the bucket and arm.
    pub users: i64,
    /// Members with a goal event from the start through the end of this day.
    pub performers: i64,
    /// Goal events of members on this day.
    pub events: i64,
    /// Goal events of members from the start through the end of this day.
    pub cumulative_events: i64,
    /// The predicted number of performers by the end of this day.
    pub predicted_performers: f64,
    /// 90% interval of that number; only on the rows of every bucket and arm.
    #[serde(default)]
    pub predicted_low: Option<f64>,
    #[serde(default)]
    pub predicted_high: Option<f64>,
}

pub fn goal_daily_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("day", DataType::Date32, false),
        Field::new("day_index", DataType::Int32, false),
        Field::new("bucket", DataType::Utf8, false),
        Field::new("arm", DataType::Utf8, false),
        Field::new("users", DataType::Int64, false),
        Field::new("performers", DataType::Int64, false),
        Field::new("events", DataType::Int64, false),
        Field::new("cumulative_events", DataType::Int64, false),
        Field::new("predicted_performers", DataType::Float64, false),
        Field::new("predicted_low", DataType::Float64, true),
        Field::new("predicted_high", DataType::Float64, true),
    ]))
}

/// The final figures of an expired goal for one bucket and arm. Table `goal_results`,
/// partitioned by `goal_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord {
    pub bucket: String,
    pub arm: String,
    /// The goal's last day.
    pub final_day: String,
    pub users: i64,
    pub performers: i64,
    /// Members who achieved the goal: performers for maximize goals, the others for minimize.
    pub achievers: i64,
    /// `achievers / users`.
    #[serde(default)]
    pub achieve_rate: Option<f64>,
    pub predicted_performers: f64,
    pub predicted_achievers: f64,
    /// `100 · (predicted − actual) / actual` for performers; absent when no member performed.
    #[serde(default)]
    pub error_percent: Option<f64>,
    #[serde(default)]
    pub interval_low: Option<f64>,
    #[serde(default)]
    pub interval_high: Option<f64>,
    /// Whether the 90% interval contains the actual performers.
    #[serde(default)]
    pub interval_covered: Option<bool>,
    /// Test against control, on the rows of a test arm.
    #[serde(default)]
    pub uplift_abs: Option<f64>,
    #[serde(default)]
    pub uplift_rel: Option<f64>,
    #[serde(default)]
    pub uplift_low: Option<f64>,
    #[serde(default)]
    pub uplift_high: Option<f64>,
    #[serde(default)]
    pub p_value: Option<f64>,
    #[serde(default)]
    pub incremental_achievers: Option<f64>,
    #[serde(default)]
    pub min_detectable_effect: Option<f64>,
    /// The comparison's verdict: `significant`, `not_significant`, `control_too_small`
    /// or `no_variation`.
    #[serde(default)]
    pub verdict: Option<String>,
}

pub fn goal_results_schema() -> SchemaRef {
    let optional_float = |name: &str| Field::new(name, DataType::Float64, true);
    Arc::new(Schema::new(vec![
        Field::new("bucket", DataType::Utf8, false),
        Field::new("arm", DataType::Utf8, false),
        Field::new("final_day", DataType::Date32, false),
        Field::new("users", DataType::Int64, false),
        Field::new("performers", DataType::Int64, false),
        Field::new("achievers", DataType::Int64, false),
        optional_float("achieve_rate"),
        Field::new("predicted_performers", DataType::Float64, false),
        Field::new("predicted_achievers", DataType::Float64, false),
        optional_float("error_percent"),
        optional_float("interval_low"),
        optional_float("interval_high"),
        Field::new("interval_covered", DataType::Boolean, true),
        optional_float("uplift_abs"),
        optional_float("uplift_rel"),
        optional_float("uplift_low"),
        optional_float("uplift_high"),
        optional_float("p_value"),
        optional_float("incremental_achievers"),
        optional_float("min_detectable_effect"),
        Field::new("verdict", DataType::Utf8, true),
    ]))
}

/// One run of a job for one day. Table `job_runs`, one row per run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRunRecord {
    pub run_id: String,
    pub job: String,
    /// The day the run computed.
    pub day: String,
    pub started_at: String,
    pub finished_at: String,
    /// `succeeded` or `failed`.
    pub status: String,
    /// Goals the run updated.
    pub goals: i64,
    /// Goals the run closed.
    pub expired_goals: i64,
    pub rows_written: i64,
    #[serde(default)]
    pub error: Option<String>,
}

pub fn job_runs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("job", DataType::Utf8, false),
        Field::new("day", DataType::Date32, false),
        Field::new("started_at", timestamp_type(), false),
        Field::new("finished_at", timestamp_type(), false),
        Field::new("status", DataType::Utf8, false),
        Field::new("goals", DataType::Int64, false),
        Field::new("expired_goals", DataType::Int64, false),
        Field::new("rows_written", DataType::Int64, false),
        Field::new("error", DataType::Utf8, true),
    ]))
}
