//! `goalcast report`: one self-contained HTML page per goal.
//!
//! The page shows the goal's definition, the predicted cumulative curve with its interval,
//! bucket sizes and rates, model quality and the top features. Once nightly runs have written
//! rows of `goal_daily` for the goal, it adds the actual curve, actual bucket rates and the
//! test and control arms. The page loads nothing: styles are inline, charts are inline SVG
//! drawn by plotters, and it has no script.

mod charts;
mod page;

use std::path::Path;

use crate::context::{ContextOptions, build_context};
use crate::error::{Error, Result};
use crate::goals::records::from_batches;
use crate::goals::{self, GoalDetails};
use crate::nightly::GOAL_DAILY;
use crate::nightly::records::{ALL_ARMS, CONTROL, DailyRecord, TEST};
use crate::predict::metrics::CalibrationBin;
use crate::predict::{BUCKETS, format_micros};
use crate::warehouse::Warehouse;

pub use charts::Day;

/// Number of features in the report's feature chart and table.
pub const TOP_FEATURES: usize = 10;

/// Everything the report shows about one goal.
#[derive(Debug, Clone)]
pub struct ReportData {
    pub details: GoalDetails,
    /// Rows of `goal_daily` for the goal; empty before its first nightly run.
    pub daily: Vec<DailyRecord>,
    pub warehouse: String,
    pub generated_at: String,
}

/// A bucket's size and its predicted and actual shares of users who performed the events.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketRate {
    pub bucket: String,
    pub users: i64,
    /// By the last nightly run's day when there is one, otherwise by the goal's end.
    pub predicted_rate: f64,
    pub actual_rate: Option<f64>,
}

/// Summary of a report that [`write_report`] wrote.
#[derive(Debug, Clone)]
pub struct ReportSummary {
    pub goal_id: i64,
    pub bytes: usize,
    /// Last day with actuals, or `None` before the first nightly run.
    pub actuals_through: Option<String>,
}

/// Reads a goal's rows from every table the report draws on.
pub async fn load_report(
    warehouse: &Warehouse,
    options: &ContextOptions,
    goal_id: i64,
) -> Result<ReportData> {
    let ctx = build_context(warehouse, options).await?;
    let details = goals::goal_details(&ctx, warehouse, options, goal_id).await?;
    // A missing goal_daily table, or one without files, means no nightly run yet.
    let daily = if ctx.table_exist(GOAL_DAILY)? {
        let batches = ctx
            .sql(&format!(
                "SELECT * EXCLUDE (goal_id) FROM {GOAL_DAILY} WHERE goal_id = {goal_id} \
                 ORDER BY day_index, bucket, arm"
            ))
            .await?
            .collect()
            .await?;
        from_batches(&batches)?
    } else {
        Vec::new()
    };
    Ok(ReportData {
        details,
        daily,
        warehouse: warehouse.url().to_string(),
        generated_at: format_micros(chrono::Utc::now().timestamp_micros()),
    })
}

/// Renders the report as one HTML document.
pub fn render(data: &ReportData) -> Result<String> {
    page::render(data)
}

/// Writes the report of goal `goal_id` to `out`, through a temporary file beside it.
pub async fn write_report(
    warehouse: &Warehouse,
    options: &ContextOptions,
    goal_id: i64,
    out: &Path,
) -> Result<ReportSummary> {
    let data = load_report(warehouse, options, goal_id).await?;
    let html = render(&data)?;
    let name = out
        .file_name()
        .ok_or_else(|| Error::input(out, "the output path names no file"))?;
    let temporary = out.with_file_name(format!(".{}.goalcast-tmp", name.to_string_lossy()));
    std::fs::write(&temporary, &html)
        .and_then(|()| std::fs::rename(&temporary, out))
        .map_err(|error| {
            let _ = std::fs::remove_file(&temporary);
            Error::input(out, format!("failed to write the report: {error}"))
        })?;
    Ok(ReportSummary {
        goal_id,
        bytes: html.len(),
        actuals_through: data.actuals_through().map(str::to_string),
    })
}

impl ReportData {
    /// Returns the goal's days as chart positions, from `goal_curves`.
    pub fn days(&self) -> Vec<Day> {
        self.details
            .curve
            .iter()
            .map(|point| Day {
                index: point.day_index,
                label: point.day.clone(),
            })
            .collect()
    }

    /// Returns the last day of `goal_daily`, or `None` before the first nightly run.
    pub fn actuals_through(&self) -> Option<&str> {
        self.daily
            .iter()
            .max_by_key(|row| row.day_index)
            .map(|row| row.day.as_str())
    }

    /// Returns the (day index, value) series of one bucket and arm, with `value` computed
    /// from each row.
    pub fn daily_series(
        &self,
        bucket: &str,
        arm: &str,
        value: impl Fn(&DailyRecord) -> f64,
    ) -> Vec<(i32, f64)> {
        self.daily
            .iter()
            .filter(|row| row.bucket == bucket && row.arm == arm)
            .map(|row| (row.day_index, value(row)))
            .collect()
    }

    /// Returns the share of the users of one bucket and arm who performed the events, per
    /// day.
    pub fn arm_rates(&self, bucket: &str, arm: &str) -> Vec<(i32, f64)> {
        self.daily_series(bucket, arm, |row| {
            row.performers as f64 / row.users.max(1) as f64
        })
    }

    /// Returns the buckets that `goal_daily` splits into test and control arms, in bucket
    /// order. Arms are compared within buckets only, so engaging all users gives each bucket
    /// its arms.
    pub fn engaged_buckets(&self) -> Vec<String> {
        let has_arm = |bucket: &str, arm: &str| {
            self.daily
                .iter()
                .any(|row| row.bucket == bucket && row.arm == arm)
        };
        BUCKETS
            .into_iter()
            .filter(|bucket| has_arm(bucket, TEST) && has_arm(bucket, CONTROL))
            .map(str::to_string)
            .collect()
    }

    /// Returns the last `goal_daily` row of one bucket and arm.
    pub fn latest_row(&self, bucket: &str, arm: &str) -> Option<&DailyRecord> {
        self.daily
            .iter()
            .filter(|row| row.bucket == bucket && row.arm == arm)
            .max_by_key(|row| row.day_index)
    }

    /// Returns each bucket's size with its predicted rate and, after a nightly run, the actual
    /// rate on the last day and the rate predicted for that day.
    pub fn bucket_rates(&self) -> Vec<BucketRate> {
        let last_day = self.daily.iter().map(|row| row.day_index).max();
        self.details
            .buckets
            .iter()
            .map(|(bucket, users, mean_probability, _)| {
                let latest = self.daily.iter().find(|row| {
                    Some(row.day_index) == last_day && &row.bucket == bucket && row.arm == ALL_ARMS
                });
                match latest {
                    Some(row) => BucketRate {
                        bucket: bucket.clone(),
                        users: *users,
                        predicted_rate: row.predicted_performers / row.users.max(1) as f64,
                        actual_rate: Some(row.performers as f64 / row.users.max(1) as f64),
                    },
                    None => BucketRate {
                        bucket: bucket.clone(),
                        users: *users,
                        predicted_rate: *mean_probability,
                        actual_rate: None,
                    },
                }
            })
            .collect()
    }

    /// Returns the calibration deciles of the model run, lowest predictions first.
    pub fn calibration(&self) -> Result<Vec<CalibrationBin>> {
        match &self.details.model_run {
            Some(run) => Ok(serde_json::from_str(&run.calibration)?),
            None => Ok(Vec::new()),
        }
    }

    /// Returns the [`TOP_FEATURES`] features whose odds ratios are furthest from 1, strongest
    /// first.
    pub fn top_features(&self) -> Result<Vec<(String, f64)>> {
        let Some(run) = &self.details.model_run else {
            return Ok(Vec::new());
        };
        let mut features: Vec<(String, f64)> = serde_json::from_str(&run.odds_ratios)?;
        features.retain(|(_, ratio)| ratio.is_finite() && *ratio > 0.0);
        features.sort_by(|a, b| b.1.ln().abs().total_cmp(&a.1.ln().abs()));
        features.truncate(TOP_FEATURES);
        Ok(features)
    }
}
