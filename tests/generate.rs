//! `goalcast generate`: reproducible output whose truth tables match the events.

mod common;

use std::collections::BTreeSet;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Float64Type;
use chrono::{NaiveDate, TimeZone, Utc};
use common::{TempWarehouse, failure, success};
use goalcast::context::{ContextOptions, build_context};
use goalcast::generate::{GeneratorConfig, generate};
use goalcast::models::{self, timestamp_parameter};

fn config(users: u64, seed: u64) -> GeneratorConfig {
    GeneratorConfig {
        users,
        days: 120,
        seed,
        start_date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        chunk_users: goalcast::generate::DEFAULT_CHUNK_USERS,
    }
}

const FINGERPRINT: &str = "SELECT count(*), count(DISTINCT user_id), sum(CAST(round(amount * 100) AS BIGINT)), \
     min(event_time), max(event_time), sum(length(properties)) FROM events";

#[tokio::test(flavor = "multi_thread")]
async fn same_seed_gives_same_events() {
    let first = TempWarehouse::new();
    let second = TempWarehouse::new();
    let other = TempWarehouse::new();
    generate(&first.warehouse, &config(3_000, 11))
        .await
        .unwrap();
    // In chunks of 1,000 users, each writing its own file per day, then compacted.
    let chunked = GeneratorConfig {
        chunk_users: 1_000,
        ..config(3_000, 11)
    };
    generate(&second.warehouse, &chunked).await.unwrap();
    generate(&other.warehouse, &config(3_000, 12))
        .await
        .unwrap();
    assert_eq!(
        first.rows(FINGERPRINT).await,
        second.rows(FINGERPRINT).await
    );
    assert_ne!(first.rows(FINGERPRINT).await, other.rows(FINGERPRINT).await);
    assert_eq!(
        first.rows("SELECT * FROM profiles ORDER BY user_id").await,
        second.rows("SELECT * FROM profiles ORDER BY user_id").await
    );
    for table in ["events", "profiles", "truth"] {
        let manifest = second.warehouse.require_manifest(table).await.unwrap();
        let partitions: BTreeSet<&str> = manifest
            .files
            .iter()
            .map(|file| file.partition.as_str())
            .collect();
        assert_eq!(
            manifest.files.len(),
            partitions.len(),
            "{table}: one file each"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_have_expected_shape() {
    let wh = TempWarehouse::new();
    let summary = generate(&wh.warehouse, &config(2_000, 5)).await.unwrap();
    assert_eq!(wh.count("SELECT count(*) FROM profiles").await, 2_000);
    assert_eq!(wh.count("SELECT count(*) FROM truth").await, 10_000);
    assert_eq!(
        wh.count("SELECT count(*) FROM events").await as u64,
        summary.events
    );
    let names = wh
        .rows("SELECT DISTINCT event_name FROM events ORDER BY 1")
        .await;
    assert_eq!(
        names,
        vec![
            "Add To Cart",
            "App Launched",
            "App Uninstalled",
            "Charged",
            "Product Viewed"
        ]
    );
    // Every event lies in the generated days, in its partition, and after its user's signup.
    assert_eq!(
        wh.count(
            "SELECT count(*) FROM events e JOIN profiles p USING (user_id) \
             WHERE e.event_time < TIMESTAMP '2026-01-01T00:00:00Z' \
                OR e.event_time >= TIMESTAMP '2026-05-01T00:00:00Z' \
                OR CAST(e.event_time AS DATE) <> e.event_date \
                OR e.event_time < p.signup_time"
        )
        .await,
        0
    );
    // Uninstalls end a user's events.
    assert_eq!(
        wh.count(
            "SELECT count(*) FROM events e JOIN events u ON e.user_id = u.user_id \
             WHERE u.event_name = 'App Uninstalled' AND e.event_time > u.event_time"
        )
        .await,
        0
    );
    assert_eq!(
        wh.count("SELECT count(*) FROM events WHERE event_name = 'Charged' AND amount IS NULL")
            .await,
        0
    );
}

fn sum_f64(batches: &[RecordBatch]) -> f64 {
    batches[0].column(0).as_primitive::<Float64Type>().value(0)
}

/// The achievers of `event` in a window should match the sum of the true probabilities, within
/// the Poisson-binomial noise of that sum.
async fn check_truth(wh: &TempWarehouse, event: &str, from_day: u32, to_day: u32) {
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let window_start = start + chrono::Days::new(from_day as u64);
    let window_end = start + chrono::Days::new(to_day as u64);
    let ctx = build_context(&wh.warehouse, &ContextOptions::default())
        .await
        .unwrap();
    let probabilities = models::dataframe(
        &ctx,
        models::TRUTH_WINDOW_PROBABILITY,
        &[
            (
                "window_start",
                timestamp_parameter(window_start.timestamp_micros()),
            ),
            (
                "window_end",
                timestamp_parameter(window_end.timestamp_micros()),
            ),
        ],
    )
    .await
    .unwrap();
    ctx.register_table("probabilities", probabilities.into_view())
        .unwrap();
    let expected = sum_f64(
        &ctx.sql(&format!(
            "SELECT sum(probability) FROM probabilities WHERE event_name = '{event}'"
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap(),
    );
    let variance = sum_f64(
        &ctx.sql(&format!(
            "SELECT sum(probability * (1 - probability)) FROM probabilities WHERE event_name = '{event}'"
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap(),
    );
    let actual = wh
        .count(&format!(
            "SELECT count(DISTINCT user_id) FROM events WHERE event_name = '{event}' \
             AND event_time >= TIMESTAMP '{}' AND event_time < TIMESTAMP '{}'",
            window_start.to_rfc3339(),
            window_end.to_rfc3339()
        ))
        .await as f64;
    let tolerance = 4.0 * variance.sqrt() + 1.0;
    assert!(
        (actual - expected).abs() <= tolerance,
        "{event} in days {from_day}..{to_day}: {actual} achievers, truth expects {expected:.1} ± {tolerance:.1}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn truth_matches_realized_achievers() {
    let wh = TempWarehouse::new();
    generate(&wh.warehouse, &config(20_000, 3)).await.unwrap();
    check_truth(&wh, "Charged", 60, 90).await;
    check_truth(&wh, "Charged", 0, 120).await;
    check_truth(&wh, "App Launched", 30, 37).await;
    check_truth(&wh, "App Uninstalled", 10, 40).await;
}

#[test]
fn cli_refuses_to_overwrite_without_replace() {
    let wh = TempWarehouse::new();
    let text = success(&wh.run(&["generate", "--users", "500", "--days", "30"]));
    assert!(text.contains("Generated 500 users"), "{text}");
    let error = failure(&wh.run(&["generate", "--users", "500", "--days", "30"]));
    assert!(
        error.contains("already has tables (events, profiles, truth, truth_calendar)"),
        "{error}"
    );
    assert!(error.contains("--replace"), "{error}");
    success(&wh.run(&["generate", "--users", "400", "--days", "30", "--replace"]));
    assert_eq!(wh.count_sync("SELECT count(*) FROM profiles"), 400);
    let error = failure(&wh.run(&["generate", "--users", "0", "--replace"]));
    assert!(error.contains("invalid --users 0"), "{error}");
}
