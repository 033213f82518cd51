//! Test versus control comparison of achievement rates: uplift with a 95% interval, the
//! two-proportion test, incremental achievers and the minimum detectable effect.
//!
//! Rates are achiever rates. For a maximize goal an achiever performed the goal's events, and
//! for a minimize goal an achiever did not. So a positive absolute uplift is always good. For
//! minimize goals it equals the reduction in the share of users who performed the events.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

use crate::error::{Error, Result};
use crate::predict::Direction;

/// Significance level of the two-sided test. The interval has confidence `1 - ALPHA`.
pub const ALPHA: f64 = 0.05;

/// Power at which the minimum detectable effect is computed.
pub const POWER: f64 = 0.80;

/// The smallest effect worth detecting, relative to the baseline rate.
///
/// For maximize goals the baseline is the achiever rate and for minimize goals the event rate,
/// both pooled over the two arms. A control group whose minimum detectable effect exceeds this
/// share of the baseline cannot tell a typical campaign from noise.
// NOTE: 25% is a judgment about typical marketing campaigns, not a measured figure.
pub const PLAUSIBLE_RELATIVE_EFFECT: f64 = 0.25;

/// Conclusion that a comparison supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The difference is significant at `ALPHA`.
    Significant,
    /// The difference is not significant, and the arms are large enough that a plausible
    /// effect would likely have been.
    NotSignificant,
    /// The minimum detectable effect exceeds a plausible effect, so the figures are noise
    /// whatever they show.
    ControlTooSmall,
    /// Every user of both arms has the same outcome so far, so nothing can be estimated yet.
    NoVariation,
}

impl Verdict {
    /// Returns the name used in tables and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Significant => "significant",
            Verdict::NotSignificant => "not_significant",
            Verdict::ControlTooSmall => "control_too_small",
            Verdict::NoVariation => "no_variation",
        }
    }
}

/// Test versus control figures of one engaged bucket. Rates and effects are shares (0.02 is
/// two percentage points).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Uplift {
    pub test_users: u64,
    pub test_achievers: u64,
    pub control_users: u64,
    pub control_achievers: u64,
    /// Achiever rate of the test arm.
    pub test_rate: f64,
    /// Achiever rate of the control arm.
    pub control_rate: f64,
    /// `test_rate - control_rate`.
    pub uplift_abs: f64,
    /// `uplift_abs` over the control arm's achiever rate (maximize) or event rate (minimize);
    /// `None` when that rate is 0.
    pub uplift_rel: Option<f64>,
    /// 95% interval of `uplift_abs`.
    pub uplift_low: f64,
    pub uplift_high: f64,
    /// Two-sided p-value of the pooled two-proportion z-test.
    pub p_value: f64,
    /// Test achievers beyond what the control rate predicts: `uplift_abs * test_users`.
    pub incremental_achievers: f64,
    /// Smallest absolute uplift detected with 80% power at the 5% level; `None` when every user
    /// has the same outcome.
    pub min_detectable_effect: Option<f64>,
    /// `PLAUSIBLE_RELATIVE_EFFECT` times the baseline rate, as an absolute uplift.
    pub plausible_effect: f64,
    pub verdict: Verdict,
}

/// Compares the achiever rates of a test and a control arm.
///
/// The interval is Newcombe's hybrid score interval for a difference of proportions: the
/// difference minus and plus the root sum of squares of the two arms' Wilson score
/// half-widths on the matching sides. It keeps its coverage near 95% with few achievers, where
/// the Wald interval does not. The p-value comes from the pooled z-test, so in rare borderline
/// cases a p-value just below 0.05 comes with an interval that includes 0.
/// Fails when an arm has no users or more achievers than users.
pub fn uplift(
    direction: Direction,
    test_users: u64,
    test_achievers: u64,
    control_users: u64,
    control_achievers: u64,
) -> Result<Uplift> {
    for (arm, users, achievers) in [
        ("test", test_users, test_achievers),
        ("control", control_users, control_achievers),
    ] {
        if users == 0 {
            return Err(Error::InvalidArgument(format!(
                "the {arm} arm has no users, so uplift cannot be computed"
            )));
        }
        if achievers > users {
            return Err(Error::InvalidArgument(format!(
                "the {arm} arm has {achievers} achievers but only {users} users"
            )));
        }
    }
    let n_test = test_users as f64;
    let n_control = control_users as f64;
    let test_rate = test_achievers as f64 / n_test;
    let control_rate = control_achievers as f64 / n_control;
    let uplift_abs = test_rate - control_rate;

    let control_baseline = baseline_rate(direction, control_rate);
    let uplift_rel = (control_baseline > 0.0).then(|| uplift_abs / control_baseline);

    let z = standard_normal().inverse_cdf(1.0 - ALPHA / 2.0);
    let (test_low, test_high) = wilson_interval(test_achievers, test_users, z);
    let (control_low, control_high) = wilson_interval(control_achievers, control_users, z);
    let uplift_low = uplift_abs - (test_rate - test_low).hypot(control_high - control_rate);
    let uplift_high = uplift_abs + (test_high - test_rate).hypot(control_rate - control_low);

    let pooled_rate = (test_achievers + control_achievers) as f64 / (n_test + n_control);
    let pooled_spread =
        (pooled_rate * (1.0 - pooled_rate) * (1.0 / n_test + 1.0 / n_control)).sqrt();
    let p_value = if pooled_spread > 0.0 {
        2.0 * standard_normal().sf(uplift_abs.abs() / pooled_spread)
    } else {
        1.0
    };

    let z_power = standard_normal().inverse_cdf(POWER);
    let min_detectable_effect = (pooled_spread > 0.0).then_some((z + z_power) * pooled_spread);
    let pooled_baseline = baseline_rate(direction, pooled_rate);
    let plausible_effect = match direction {
        // An achiever rate cannot rise above 1.
        Direction::Maximize => (PLAUSIBLE_RELATIVE_EFFECT * pooled_baseline).min(1.0 - pooled_rate),
        Direction::Minimize => PLAUSIBLE_RELATIVE_EFFECT * pooled_baseline,
    };
    let verdict = match min_detectable_effect {
        None => Verdict::NoVariation,
        Some(effect) if effect > plausible_effect => Verdict::ControlTooSmall,
        Some(_) if p_value < ALPHA => Verdict::Significant,
        Some(_) => Verdict::NotSignificant,
    };

    Ok(Uplift {
        test_users,
        test_achievers,
        control_users,
        control_achievers,
        test_rate,
        control_rate,
        uplift_abs,
        uplift_rel,
        uplift_low,
        uplift_high,
        p_value,
        incremental_achievers: uplift_abs * n_test,
        min_detectable_effect,
        plausible_effect,
        verdict,
    })
}

/// Returns the rate that relative effects are measured against: the achiever rate for maximize
/// goals and the event rate (the complement) for minimize goals.
fn baseline_rate(direction: Direction, achiever_rate: f64) -> f64 {
    match direction {
        Direction::Maximize => achiever_rate,
        Direction::Minimize => 1.0 - achiever_rate,
    }
}

/// Returns the Wilson score interval of `successes / trials` for the normal quantile `z`.
fn wilson_interval(successes: u64, trials: u64, z: f64) -> (f64, f64) {
    let n = trials as f64;
    let rate = successes as f64 / n;
    let z2 = z * z;
    let denominator = 1.0 + z2 / n;
    let center = (rate + z2 / (2.0 * n)) / denominator;
    let half_width = z / denominator * (rate * (1.0 - rate) / n + z2 / (4.0 * n * n)).sqrt();
    (
        (center - half_width).max(0.0),
        (center + half_width).min(1.0),
    )
}

fn standard_normal() -> Normal {
    Normal::standard()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64, tolerance: f64) -> bool {
        (actual - expected).abs() <= tolerance
    }

    #[test]
    fn hybrid_score_interval_worked_example() {
        // 56/70 vs 48/80: Wilson intervals 0.6918-0.8770 and 0.4905-0.7004 give 0.0524 to
        // 0.3339 around 0.2.
        let result = uplift(Direction::Maximize, 70, 56, 80, 48).unwrap();
        assert!(close(result.uplift_abs, 0.2, 1e-12), "{result:?}");
        assert!(close(result.uplift_low, 0.0524, 5e-5), "{result:?}");
        assert!(close(result.uplift_high, 0.3339, 5e-5), "{result:?}");
    }

    #[test]
    fn hybrid_score_interval_zero_achievers() {
        // 0/10 vs 0/20: the Wilson upper limits 0.2775 and 0.1611 bound the interval.
        let result = uplift(Direction::Maximize, 10, 0, 20, 0).unwrap();
        assert!(close(result.uplift_low, -0.1611, 5e-5), "{result:?}");
        assert!(close(result.uplift_high, 0.2775, 5e-5), "{result:?}");
        assert_eq!(result.p_value, 1.0);
        assert_eq!(result.verdict, Verdict::NoVariation);
        assert_eq!(result.min_detectable_effect, None);
    }

    #[test]
    fn pooled_z_test_p_value() {
        // 120/1000 vs 90/1000: pooled 0.105, z = 0.03 / sqrt(0.105 * 0.895 * 0.002) = 2.18827,
        // two-sided p = 0.028650.
        let result = uplift(Direction::Maximize, 1000, 120, 1000, 90).unwrap();
        assert!(close(result.p_value, 0.028650, 5e-7), "{result:?}");
        assert!(
            close(result.incremental_achievers, 30.0, 1e-9),
            "{result:?}"
        );
        assert!(
            close(result.uplift_rel.unwrap(), 1.0 / 3.0, 1e-12),
            "{result:?}"
        );
    }

    #[test]
    fn minimum_detectable_effect_at_80_percent_power() {
        // (1.959964 + 0.841621) * sqrt(0.1 * 0.9 * (1/9500 + 1/500)) = 0.038564.
        let result = uplift(Direction::Maximize, 9500, 950, 500, 50).unwrap();
        let effect = result.min_detectable_effect.unwrap();
        assert!(close(effect, 0.038564, 5e-6), "{effect}");
        // A plausible effect is 25% of the 10% baseline, well under the detectable 3.9 points.
        assert!(close(result.plausible_effect, 0.025, 1e-12), "{result:?}");
        assert_eq!(result.verdict, Verdict::ControlTooSmall);
    }

    #[test]
    fn large_arms_give_a_verdict() {
        let significant = uplift(Direction::Maximize, 50_000, 6_000, 50_000, 5_000).unwrap();
        assert_eq!(significant.verdict, Verdict::Significant);
        let null = uplift(Direction::Maximize, 50_000, 5_020, 50_000, 5_000).unwrap();
        assert_eq!(null.verdict, Verdict::NotSignificant);
        assert!(null.uplift_low < 0.0, "{null:?}");
        assert!(null.uplift_high > 0.0, "{null:?}");
    }

    #[test]
    fn minimize_uplift_is_the_reduction_in_the_event() {
        // The event rate falls from 20% (control) to 15% (test): achievers rise from 80% to
        // 85%, an absolute uplift of 5 points and a relative reduction of 25% of the event.
        let result = uplift(Direction::Minimize, 20_000, 17_000, 20_000, 16_000).unwrap();
        assert!(close(result.uplift_abs, 0.05, 1e-12), "{result:?}");
        assert!(close(result.uplift_rel.unwrap(), 0.25, 1e-12), "{result:?}");
        assert!(
            close(result.incremental_achievers, 1_000.0, 1e-9),
            "{result:?}"
        );
        // 25% of the 17.5% pooled event rate.
        assert!(close(result.plausible_effect, 0.04375, 1e-12), "{result:?}");
        assert_eq!(result.verdict, Verdict::Significant);
    }

    #[test]
    fn empty_arm_or_excess_achievers_is_an_error() {
        let error = uplift(Direction::Maximize, 100, 10, 0, 0).unwrap_err();
        assert!(
            error.to_string().contains("control arm has no users"),
            "{error}"
        );
        let error = uplift(Direction::Maximize, 100, 101, 10, 1).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("101 achievers but only 100 users"),
            "{error}"
        );
    }
}
