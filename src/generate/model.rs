//! The generative model: per-user traits, seasonality, and the events they produce.

use chrono::{Datelike, NaiveDate, Weekday};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution, Exp, Gamma, LogNormal, Poisson};

/// Event names; a generated event's kind is its index here.
pub const EVENT_NAMES: [&str; 5] = [
    "App Launched",
    "Product Viewed",
    "Add To Cart",
    "Charged",
    "App Uninstalled",
];

/// Index of `Charged` in [`EVENT_NAMES`].
pub const CHARGED: usize = 3;
/// Index of `App Uninstalled` in [`EVENT_NAMES`].
pub const UNINSTALLED: usize = 4;

/// Cities with their country and a multiplier on user activity.
pub const CITIES: [(&str, &str, f64, f64); 8] = [
    // (city, country, share of users, activity multiplier)
    ("San Francisco", "US", 0.10, 1.25),
    ("New York", "US", 0.18, 1.10),
    ("Chicago", "US", 0.08, 0.95),
    ("London", "GB", 0.14, 1.05),
    ("Berlin", "DE", 0.10, 0.90),
    ("Mumbai", "IN", 0.18, 0.80),
    ("São Paulo", "BR", 0.12, 0.85),
    ("Tokyo", "JP", 0.10, 1.00),
];

/// Platforms with their share of users; web users cannot uninstall an app.
pub const PLATFORMS: [(&str, f64); 3] = [("iOS", 0.40), ("Android", 0.45), ("Web", 0.15)];

/// Product categories used in `properties`.
pub const CATEGORIES: [&str; 6] = ["music", "books", "electronics", "fashion", "home", "games"];

/// How far before the first generated day signups may lie, in days.
pub const SIGNUP_LEAD_DAYS: f64 = 180.0;

/// Daily seasonality factors and their running sum, from the first generated day on.
#[derive(Debug, Clone)]
pub struct Calendar {
    pub start_date: NaiveDate,
    pub days: u32,
    /// Factor of each day, covering the generated days and the 366 days after them.
    pub factors: Vec<f64>,
    /// `cumulative[d]` is the sum of the factors of the days before day `d`; one longer than
    /// `factors`.
    pub cumulative: Vec<f64>,
}

impl Calendar {
    /// Builds the calendar for `days` generated days plus a year after them.
    pub fn new(start_date: NaiveDate, days: u32) -> Self {
        let span = days as usize + 366;
        let factors: Vec<f64> = (0..span)
            .map(|day| season_factor(start_date + chrono::Days::new(day as u64)))
            .collect();
        let mut cumulative = Vec::with_capacity(span + 1);
        cumulative.push(0.0);
        for factor in &factors {
            cumulative.push(cumulative.last().unwrap() + factor);
        }
        Calendar {
            start_date,
            days,
            factors,
            cumulative,
        }
    }

    /// Returns the seasonal exposure from day 0 to `t` (fractional days since the start).
    pub fn exposure(&self, t: f64) -> f64 {
        let t = t.clamp(0.0, self.factors.len() as f64);
        let day = (t.floor() as usize).min(self.factors.len() - 1);
        self.cumulative[day] + self.factors[day] * (t - day as f64)
    }

    /// Returns the time whose exposure is `target`, the inverse of [`Calendar::exposure`].
    pub fn time_at_exposure(&self, target: f64) -> f64 {
        let day = self
            .cumulative
            .partition_point(|&c| c <= target)
            .saturating_sub(1);
        let day = day.min(self.factors.len() - 1);
        day as f64 + (target - self.cumulative[day]) / self.factors[day]
    }
}

/// Seasonality of one day: a yearly wave peaking in summer, a holiday-season lift and busier
/// weekends. The factors average about 1.
pub fn season_factor(date: NaiveDate) -> f64 {
    let yearly =
        1.0 + 0.15 * (2.0 * std::f64::consts::PI * (date.ordinal() as f64 - 100.0) / 365.25).sin();
    let holiday =
        if (date.month() == 11 && date.day() >= 20) || (date.month() == 12 && date.day() <= 24) {
            1.3
        } else {
            1.0
        };
    let weekly = match date.weekday() {
        Weekday::Sat | Weekday::Sun => 1.15,
        _ => 0.94,
    };
    yearly * holiday * weekly
}

/// The latent state of one user.
#[derive(Debug, Clone)]
pub struct UserTraits {
    /// Signup time in fractional days since the first generated day (negative: before it).
    pub signup: f64,
    /// Churn time in fractional days since the first generated day.
    pub churn: f64,
    pub city: usize,
    pub platform: usize,
    /// Whether the user emits `App Uninstalled` at churn.
    pub uninstalls: bool,
    /// Events per day of each Poisson event kind at a seasonal factor of 1.
    pub rates: [f64; 4],
    /// Typical order value of the user.
    pub order_value: f64,
    pub favourite_category: usize,
}

/// One generated event, before it becomes a row.
#[derive(Debug, Clone, Copy)]
pub struct RawEvent {
    pub user: u32,
    pub kind: u8,
    /// Fractional days since the first generated day.
    pub time: f64,
    pub amount: f64,
    /// Category index for views and carts, item count for purchases.
    pub detail: u8,
}

/// Returns the random stream of user `user` under `seed`.
pub fn user_rng(seed: u64, user: u64) -> SmallRng {
    // SplitMix64 of the pair, so nearby users get unrelated streams.
    let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ user;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    SmallRng::seed_from_u64(z ^ (z >> 31))
}

/// Draws the traits of one user.
pub fn draw_traits(rng: &mut SmallRng, days: u32) -> UserTraits {
    let signup = rng.random_range(-SIGNUP_LEAD_DAYS..days as f64);
    let city = pick(rng, CITIES.iter().map(|city| city.2));
    let platform = pick(rng, PLATFORMS.iter().map(|platform| platform.1));
    let activity = Gamma::new(0.8, 1.0 / 0.8).expect("valid shape").sample(rng) * CITIES[city].3;
    let intent = Beta::new(2.0, 5.0).expect("valid shape").sample(rng);
    let mean_lifetime = 120.0 + 400.0 * intent;
    let lifetime = Exp::new(1.0 / mean_lifetime)
        .expect("positive rate")
        .sample(rng);
    let uninstalls = PLATFORMS[platform].0 != "Web" && rng.random_bool(0.7);
    let order_value = LogNormal::new(25f64.ln(), 0.5)
        .expect("valid sigma")
        .sample(rng);
    UserTraits {
        signup,
        churn: signup + lifetime,
        city,
        platform,
        uninstalls,
        rates: [
            0.038 * activity,
            0.025 * activity,
            0.032 * activity * intent,
            0.023 * activity * intent,
        ],
        order_value,
        favourite_category: rng.random_range(0..CATEGORIES.len()),
    }
}

/// Appends the events of one user within the generated days to `events`.
pub fn simulate(
    rng: &mut SmallRng,
    user: u32,
    traits: &UserTraits,
    calendar: &Calendar,
    events: &mut Vec<RawEvent>,
) {
    let begin = traits.signup.max(0.0);
    let end = traits.churn.min(calendar.days as f64);
    if end > begin {
        let (from, to) = (calendar.exposure(begin), calendar.exposure(end));
        for (kind, rate) in traits.rates.iter().enumerate() {
            let mean = rate * (to - from);
            if mean <= 0.0 {
                continue;
            }
            let count = Poisson::new(mean).expect("positive mean").sample(rng) as u64;
            for _ in 0..count {
                let time = calendar.time_at_exposure(rng.random_range(from..to));
                let (amount, detail) = event_detail(rng, kind, traits);
                events.push(RawEvent {
                    user,
                    kind: kind as u8,
                    time,
                    amount,
                    detail,
                });
            }
        }
    }
    if traits.uninstalls && traits.churn >= 0.0 && traits.churn < calendar.days as f64 {
        events.push(RawEvent {
            user,
            kind: UNINSTALLED as u8,
            time: traits.churn,
            amount: f64::NAN,
            detail: 0,
        });
    }
}

fn event_detail(rng: &mut SmallRng, kind: usize, traits: &UserTraits) -> (f64, u8) {
    match kind {
        CHARGED => {
            let noise = LogNormal::new(0.0, 0.35).expect("valid sigma").sample(rng);
            let amount = (traits.order_value * noise * 100.0).round() / 100.0;
            let items = 1 + Poisson::new(0.6).expect("positive mean").sample(rng) as u8;
            (amount.max(0.99), items)
        }
        1 | 2 => {
            let category = if rng.random_bool(0.6) {
                traits.favourite_category
            } else {
                rng.random_range(0..CATEGORIES.len())
            };
            (f64::NAN, category as u8)
        }
        _ => (f64::NAN, 0),
    }
}

fn pick(rng: &mut SmallRng, weights: impl Iterator<Item = f64>) -> usize {
    let mut target: f64 = rng.random();
    let mut last = 0;
    for (index, weight) in weights.enumerate() {
        last = index;
        if target < weight {
            return index;
        }
        target -= weight;
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposure_inverts() {
        let calendar = Calendar::new(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(), 30);
        for t in [0.0, 0.5, 3.25, 29.99] {
            let back = calendar.time_at_exposure(calendar.exposure(t));
            assert!((back - t).abs() < 1e-9, "{t} came back as {back}");
        }
    }

    #[test]
    fn user_streams_are_reproducible() {
        let a = draw_traits(&mut user_rng(7, 42), 100);
        let b = draw_traits(&mut user_rng(7, 42), 100);
        assert_eq!(a.signup, b.signup);
        let c = draw_traits(&mut user_rng(8, 42), 100);
        assert_ne!(a.signup, c.signup);
    }
}
