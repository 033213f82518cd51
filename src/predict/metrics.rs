//! Quality measures of predicted probabilities against observed outcomes.

use serde::{Deserialize, Serialize};

/// One decile of a calibration table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CalibrationBin {
    /// Decile number: 1 for the lowest predicted probabilities, 10 for the highest.
    pub decile: u32,
    pub users: u64,
    pub mean_predicted: f64,
    pub observed_rate: f64,
}

/// Returns the area under the ROC curve, or `None` without both outcomes.
///
/// Computed as the Mann-Whitney statistic with average ranks for ties.
pub fn auc(probabilities: &[f64], outcomes: &[bool]) -> Option<f64> {
    let positives = outcomes.iter().filter(|&&outcome| outcome).count() as f64;
    let negatives = outcomes.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b]));
    let mut positive_rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && probabilities[order[end]] == probabilities[order[start]] {
            end += 1;
        }
        // Ranks are 1-based; tied values share the mean of their ranks.
        let mean_rank = (start + 1 + end) as f64 / 2.0;
        for &index in &order[start..end] {
            if outcomes[index] {
                positive_rank_sum += mean_rank;
            }
        }
        start = end;
    }
    Some((positive_rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

/// Returns the mean negative log-likelihood, with probabilities clipped to [1e-12, 1 - 1e-12].
pub fn log_loss(probabilities: &[f64], outcomes: &[bool]) -> f64 {
    let total: f64 = probabilities
        .iter()
        .zip(outcomes)
        .map(|(&p, &outcome)| {
            let p = p.clamp(1e-12, 1.0 - 1e-12);
            if outcome { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    total / probabilities.len().max(1) as f64
}

/// Returns the mean squared difference between probability and outcome.
pub fn brier(probabilities: &[f64], outcomes: &[bool]) -> f64 {
    let total: f64 = probabilities
        .iter()
        .zip(outcomes)
        .map(|(&p, &outcome)| (p - f64::from(u8::from(outcome))).powi(2))
        .sum();
    total / probabilities.len().max(1) as f64
}

/// Groups users into deciles of predicted probability and compares each decile's mean
/// prediction with its observed rate.
pub fn calibration(probabilities: &[f64], outcomes: &[bool]) -> Vec<CalibrationBin> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b]));
    let n = order.len();
    (0..10)
        .filter_map(|decile| {
            let slice = &order[decile * n / 10..(decile + 1) * n / 10];
            if slice.is_empty() {
                return None;
            }
            let count = slice.len() as f64;
            let predicted: f64 = slice.iter().map(|&i| probabilities[i]).sum();
            let observed = slice.iter().filter(|&&i| outcomes[i]).count() as f64;
            Some(CalibrationBin {
                decile: decile as u32 + 1,
                users: slice.len() as u64,
                mean_predicted: predicted / count,
                observed_rate: observed / count,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_perfect_and_reversed_ranking() {
        let probabilities = [0.1, 0.2, 0.8, 0.9];
        assert_eq!(auc(&probabilities, &[false, false, true, true]), Some(1.0));
        assert_eq!(auc(&probabilities, &[true, true, false, false]), Some(0.0));
    }

    #[test]
    fn auc_counts_ties_as_half() {
        assert_eq!(auc(&[0.5, 0.5], &[true, false]), Some(0.5));
        assert_eq!(auc(&[0.5, 0.5], &[true, true]), None);
    }

    #[test]
    fn brier_and_log_loss_of_certain_predictions() {
        assert_eq!(brier(&[1.0, 0.0], &[true, false]), 0.0);
        assert!(log_loss(&[0.5], &[true]) - std::f64::consts::LN_2 < 1e-12);
    }

    #[test]
    fn calibration_has_ten_bins() {
        let probabilities: Vec<f64> = (0..100).map(|i| i as f64 / 100.0).collect();
        let outcomes: Vec<bool> = (0..100).map(|i| i >= 50).collect();
        let bins = calibration(&probabilities, &outcomes);
        assert_eq!(bins.len(), 10);
        assert_eq!(bins[0].observed_rate, 0.0);
        assert_eq!(bins[9].observed_rate, 1.0);
    }
}
