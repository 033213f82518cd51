//! The logistic regression: feature transforms, standardization and fitting with linfa.

use linfa::Dataset;
use linfa::traits::Fit;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2, Axis, ShapeBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Days used for "never happened" in recency features: about ten years.
const NEVER_DAYS: f64 = 3650.0;

/// Names of the model's inputs, in column order.
pub const FEATURE_NAMES: [&str; 28] = [
    "log_days_since_last_goal_event",
    "has_goal_history",
    "log_goal_events_7d",
    "log_goal_events_30d",
    "log_goal_events_90d",
    "log_goal_events_all",
    "log_goal_days_all",
    "log_days_since_last_event",
    "log_events_30d",
    "log_events_90d",
    "log_events_all",
    "log_tenure_days",
    "log_goal_amount_all",
    "log_goal_amount_90d",
    "log_goal_days_per_horizon",
    "log_overdue_ratio",
    "has_repeat_goal_days",
    "last_goal_event_within_14d",
    "last_goal_event_within_30d",
    "last_goal_event_within_60d",
    "last_goal_event_within_90d",
    "last_goal_event_within_150d",
    "last_goal_event_within_240d",
    "goal_days_1",
    "goal_days_2",
    "goal_days_3",
    "goal_days_4_to_5",
    "goal_days_6_to_9",
];

/// The raw per-user values read from `sql/features/user_features.sql`.
#[derive(Debug, Clone, Default)]
pub struct RawFeatures {
    pub events_all: f64,
    pub events_30d: f64,
    pub events_90d: f64,
    pub goal_events_all: f64,
    pub goal_events_7d: f64,
    pub goal_events_30d: f64,
    pub goal_events_90d: f64,
    pub goal_days_all: f64,
    pub goal_amount_all: f64,
    pub goal_amount_90d: f64,
    pub days_since_first_event: Option<f64>,
    pub days_since_last_event: Option<f64>,
    pub days_since_first_goal_event: Option<f64>,
    pub days_since_last_goal_event: Option<f64>,
    pub mean_days_between_goal_days: Option<f64>,
}

impl RawFeatures {
    /// Returns the model inputs in [`FEATURE_NAMES`] order; `horizon_days` scales the
    /// historical goal rate to the goal's horizon.
    pub fn to_vector(&self, horizon_days: f64) -> [f64; FEATURE_NAMES.len()] {
        let ln = |value: f64| value.max(0.0).ln_1p();
        let flag = |condition: bool| f64::from(u8::from(condition));
        let tenure = self.days_since_first_event.unwrap_or(0.0).max(1.0);
        let goal_recency = self.days_since_last_goal_event.unwrap_or(NEVER_DAYS);
        let (overdue, has_gap) = match self.mean_days_between_goal_days {
            Some(gap) if gap > 0.0 => (ln(goal_recency / gap), 1.0),
            _ => (0.0, 0.0),
        };
        [
            ln(goal_recency),
            flag(self.goal_events_all > 0.0),
            ln(self.goal_events_7d),
            ln(self.goal_events_30d),
            ln(self.goal_events_90d),
            ln(self.goal_events_all),
            ln(self.goal_days_all),
            ln(self.days_since_last_event.unwrap_or(NEVER_DAYS)),
            ln(self.events_30d),
            ln(self.events_90d),
            ln(self.events_all),
            ln(tenure),
            ln(self.goal_amount_all),
            ln(self.goal_amount_90d),
            ln(self.goal_days_all * horizon_days / tenure),
            overdue,
            has_gap,
            flag(goal_recency < 14.0),
            flag(goal_recency < 30.0),
            flag(goal_recency < 60.0),
            flag(goal_recency < 90.0),
            flag(goal_recency < 150.0),
            flag(goal_recency < 240.0),
            flag(self.goal_days_all == 1.0),
            flag(self.goal_days_all == 2.0),
            flag(self.goal_days_all == 3.0),
            flag((4.0..=5.0).contains(&self.goal_days_all)),
            flag((6.0..=9.0).contains(&self.goal_days_all)),
        ]
    }
}

/// A fitted model: standardization plus logistic regression coefficients.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FittedModel {
    pub means: Vec<f64>,
    pub scales: Vec<f64>,
    pub intercept: f64,
    /// Coefficients on standardized inputs, in [`FEATURE_NAMES`] order.
    pub coefficients: Vec<f64>,
}

/// Fits an L2-regularized logistic regression on standardized inputs.
///
/// `l2` is the penalty on the sum of squared coefficients, added to the summed log-loss.
pub fn fit(inputs: &Array2<f64>, outcomes: &[bool], l2: f64) -> Result<FittedModel> {
    let means = inputs
        .mean_axis(Axis(0))
        .expect("training set is not empty");
    let mut scales = inputs.std_axis(Axis(0), 0.0);
    // A constant column carries no information; a unit scale keeps it finite.
    scales.mapv_inplace(|scale| if scale > 1e-9 { scale } else { 1.0 });
    // Column-major, because linfa's gradient multiplies the transposed inputs by a vector and
    // so walks each input column. In row-major order those reads stride across memory.
    let mut standardized = Array2::zeros(inputs.raw_dim().f());
    standardized.assign(&((inputs - &means) / &scales));
    let targets = Array1::from_iter(outcomes.iter().copied());
    let dataset = Dataset::new(standardized, targets);
    // linfa's loss is summed over rows, so the tolerance scales with the row count to bound
    // the mean gradient by 1e-4. Tighter bounds cost several times the iterations and moved
    // CDNOW's predicted count by less than 0.05%.
    let tolerance = 1e-4 * outcomes.len() as f64;
    let fitted = LogisticRegression::default()
        .alpha(l2)
        .max_iterations(200)
        .gradient_tolerance(tolerance)
        .fit(&dataset)
        .map_err(|error| Error::InvalidArgument(format!("model fitting failed: {error}")))?;
    // linfa models the probability of the more frequent class; flip the signs when that class
    // is `false` so the coefficients always describe the positive outcome.
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    let coefficients: Vec<f64> = fitted.params().iter().map(|c| sign * c).collect();
    let intercept = sign * fitted.intercept();
    if !intercept.is_finite() || coefficients.iter().any(|c| !c.is_finite()) {
        return Err(Error::InvalidArgument(
            "model fitting produced non-finite coefficients; the training data may be degenerate"
                .into(),
        ));
    }
    Ok(FittedModel {
        means: means.to_vec(),
        scales: scales.to_vec(),
        intercept,
        coefficients,
    })
}

impl FittedModel {
    /// Returns the probability of the positive outcome for each row of `inputs`, clipped to
    /// [1e-6, 1 - 1e-6] so downstream logs and ratios stay finite.
    pub fn predict(&self, inputs: &Array2<f64>) -> Vec<f64> {
        inputs
            .rows()
            .into_iter()
            .map(|row| self.probability(row.as_slice().expect("rows are contiguous")))
            .collect()
    }

    /// Returns the probability of the positive outcome for one row of inputs, clipped as in
    /// [`FittedModel::predict`].
    pub fn probability(&self, row: &[f64]) -> f64 {
        let z: f64 = row
            .iter()
            .enumerate()
            .map(|(j, &x)| (x - self.means[j]) / self.scales[j] * self.coefficients[j])
            .sum::<f64>()
            + self.intercept;
        let p = 1.0 / (1.0 + (-z).exp());
        if p.is_finite() {
            p.clamp(1e-6, 1.0 - 1e-6)
        } else {
            0.5
        }
    }

    /// Returns each feature with the odds ratio of a one-standard-deviation increase.
    pub fn odds_ratios(&self) -> Vec<(String, f64)> {
        FEATURE_NAMES
            .iter()
            .zip(&self.coefficients)
            .map(|(name, coefficient)| (name.to_string(), coefficient.exp()))
            .collect()
    }
}
