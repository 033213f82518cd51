//! The nightly job on the CDNOW warehouse: counts against raw events, expiry, idempotent and
//! atomic runs, late events, and the run lock.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{Field, Schema};

use chrono::{NaiveDate, TimeZone};
use common::{TempWarehouse, failure, success};
use goalcast::context::{ContextOptions, build_context};
use goalcast::engage::{self, EngageRequest, EngagedBucket};
use goalcast::goals;
use goalcast::nightly::{self, RunDay, RunOptions};
use goalcast::predict::{self, BucketCuts, Direction, GoalDefinition, PredictOptions};
use goalcast::segments::SegmentCatalog;
use goalcast::warehouse::{Replace, RunLock, TableWrite, Warehouse};

fn day(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

fn cdnow_goal(name: &str, time_zone: &str) -> GoalDefinition {
    GoalDefinition {
        name: name.into(),
        segment: "all_users".into(),
        event_names: vec!["Charged".into()],
        event_filter: None,
        direction: Direction::Maximize,
        end_date: day("1997-12-28"),
        time_zone: time_zone.into(),
        start_micros: chrono::Utc
            .with_ymd_and_hms(1997, 9, 30, 0, 0, 0)
            .unwrap()
            .timestamp_micros(),
    }
}

/// Returns a CDNOW warehouse with goal 1 in UTC and goal 2 in New York time, built once per
/// test binary. Goal 2 reuses goal 1's prediction: these tests check counting, not the model.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<(TempWarehouse, std::path::PathBuf)> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            std::thread::spawn(|| {
                let wh = TempWarehouse::new();
                copy_folder(
                    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/warehouse/events")),
                    &wh.root(),
                );
                let runtime = tokio::runtime::Runtime::new().unwrap();
                runtime.block_on(create_goals(&wh.warehouse));
                let root = wh.root();
                (wh, root)
            })
            .join()
            .unwrap()
        })
        .1
        .as_path()
}

async fn create_goals(warehouse: &Warehouse) {
    let options = ContextOptions::default();
    let ctx = build_context(warehouse, &options).await.unwrap();
    let catalog = SegmentCatalog::new(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/segments"));
    let utc = cdnow_goal("q4 utc", "UTC");
    let predict_options = PredictOptions {
        max_cutoffs: 2,
        ..PredictOptions::default()
    };
    let prediction = predict::predict(&ctx, &catalog, &utc, &predict_options)
        .await
        .unwrap();
    for definition in [utc, cdnow_goal("q4 new york", "America/New_York")] {
        let existing = goals::load_goals(warehouse, &options).await.unwrap();
        goals::save_goal(
            warehouse,
            existing,
            &definition,
            &prediction,
            BucketCuts::default(),
        )
        .await
        .unwrap();
    }
}

fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Returns a private copy of the template warehouse.
fn goal_warehouse() -> TempWarehouse {
    let wh = TempWarehouse::new();
    std::fs::remove_dir_all(wh.root()).ok();
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(template())
        .arg(wh.root())
        .status()
        .unwrap();
    assert!(status.success());
    wh
}

async fn replay(wh: &TempWarehouse, from: &str, to: &str) -> Vec<nightly::RunSummary> {
    nightly::run_range(
        &wh.warehouse,
        day(from),
        day(to),
        &RunOptions::default(),
        |_| {},
    )
    .await
    .unwrap()
}

/// Returns a hash of every file under the warehouse except those of `job_runs`.
fn snapshot(root: &Path) -> BTreeMap<String, u64> {
    use std::hash::{Hash, Hasher};
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            let path = entry.path();
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .to_string();
            if relative.starts_with("job_runs") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(&path).unwrap().hash(&mut hasher);
                files.insert(relative, hasher.finish());
            }
        }
    }
    files
}

/// Panics with the paths that differ between two snapshots.
fn assert_same(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, context: &str) {
    let changed: Vec<&String> = before
        .keys()
        .chain(after.keys())
        .filter(|path| before.get(*path) != after.get(*path))
        .collect();
    assert!(changed.is_empty(), "{context}: files changed: {changed:?}");
}

/// Distinct target users with a `Charged` event from the goal's start until `end` (UTC).
async fn raw_performers(wh: &TempWarehouse, end: chrono::DateTime<chrono::Utc>) -> i64 {
    wh.count(&format!(
        "SELECT count(DISTINCT user_id) FROM events WHERE event_name = 'Charged' \
         AND event_time >= TIMESTAMP '1997-09-30T00:00:00Z' \
         AND event_time < to_timestamp_micros({})",
        end.timestamp_micros()
    ))
    .await
}

async fn daily_performers(wh: &TempWarehouse, goal_id: i64, day: &str, bucket: &str) -> i64 {
    wh.count(&format!(
        "SELECT performers FROM goal_daily WHERE goal_id = {goal_id} AND day = DATE '{day}' \
         AND bucket = '{bucket}' AND arm = 'all'"
    ))
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_matches_raw_events_and_expires_goals() {
    let wh = goal_warehouse();
    // CDNOW had no campaign, so an engaged bucket should show no uplift.
    let request = EngageRequest {
        goal_id: 1,
        bucket: EngagedBucket::ModeratelyLikely,
        control_percent: None,
        export: None,
    };
    engage::engage(&wh.warehouse, &ContextOptions::default(), &request)
        .await
        .unwrap();
    let runs = replay(&wh, "1997-09-20", "1997-12-30").await;
    assert_eq!(runs.len(), 102);
    // Days before the start update no goal.
    assert!(runs[0].goals.is_empty());

    let new_york = chrono_tz::America::New_York;
    for checked in [
        "1997-09-30",
        "1997-10-15",
        "1997-10-26",
        "1997-11-02",
        "1997-12-28",
    ] {
        let next = day(checked).succ_opt().unwrap();
        let utc_end = chrono::Utc.from_utc_datetime(&next.and_hms_opt(0, 0, 0).unwrap());
        assert_eq!(
            daily_performers(&wh, 1, checked, "All").await,
            raw_performers(&wh, utc_end).await,
            "UTC goal on {checked}"
        );
        // New York days end at local midnight, which moves by an hour on 1997-10-26.
        let local_end = new_york
            .from_local_datetime(&next.and_hms_opt(0, 0, 0).unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            daily_performers(&wh, 2, checked, "All").await,
            raw_performers(&wh, local_end).await,
            "New York goal on {checked}"
        );
    }
    // CDNOW events sit at midnight UTC, the evening before in New York, so the two goals
    // differ by the events of one UTC day.
    assert_ne!(
        daily_performers(&wh, 1, "1997-10-15", "All").await,
        daily_performers(&wh, 2, "1997-10-15", "All").await
    );

    // Buckets add up to the whole group, and one bucket matches its own raw count.
    let mut bucket_sum = 0;
    for bucket in predict::BUCKETS {
        bucket_sum += daily_performers(&wh, 1, "1997-11-15", bucket).await;
    }
    assert_eq!(
        bucket_sum,
        daily_performers(&wh, 1, "1997-11-15", "All").await
    );
    let most = wh
        .count(
            "SELECT count(DISTINCT e.user_id) FROM events e JOIN predictions p \
             ON p.user_id = e.user_id AND p.goal_id = 1 AND p.bucket = 'Most Likely' \
             WHERE e.event_time >= TIMESTAMP '1997-09-30T00:00:00Z' \
             AND e.event_time < TIMESTAMP '1997-11-16T00:00:00Z'",
        )
        .await;
    assert_eq!(
        daily_performers(&wh, 1, "1997-11-15", "Most Likely").await,
        most
    );

    // One row per day, bucket and arm; no duplicates after 102 runs.
    assert_eq!(
        wh.count("SELECT count(*) FROM goal_daily WHERE goal_id = 1")
            .await,
        90 * 6
    );
    assert_eq!(
        wh.count(
            "SELECT count(*) FROM (SELECT goal_id, day, bucket, arm FROM goal_daily \
             GROUP BY goal_id, day, bucket, arm HAVING count(*) > 1)"
        )
        .await,
        0
    );

    // Both goals expired on their end date with final results.
    assert_eq!(
        wh.rows("SELECT goal_id, status FROM goals ORDER BY goal_id")
            .await,
        ["1|expired", "2|expired"]
    );
    let expired_on: Vec<_> = runs
        .iter()
        .filter(|run| run.goals.iter().any(|goal| goal.expired))
        .map(|run| run.day.to_string())
        .collect();
    assert_eq!(expired_on, ["1997-12-28"]);
    assert_eq!(
        wh.rows(
            "SELECT performers, achievers, final_day, interval_covered IS NOT NULL \
             FROM goal_results WHERE goal_id = 1 AND bucket = 'All' AND arm = 'all'"
        )
        .await,
        ["4174|4174|1997-12-28|true"]
    );
    assert_eq!(
        wh.count("SELECT count(*) FROM goal_results WHERE goal_id = 1")
            .await,
        6
    );
    // Test and control of the engaged bucket: sizes from control_groups, performers from the
    // raw events, and an uplift interval that covers zero. With one bucket engaged, the rows of
    // every bucket (All) have no arms.
    for arm in ["test", "control"] {
        let raw = wh
            .count(&format!(
                "SELECT count(DISTINCT e.user_id) FROM events e JOIN control_groups c \
                 ON c.user_id = e.user_id AND c.goal_id = 1 AND c.arm = '{arm}' \
                 WHERE e.event_time >= TIMESTAMP '1997-09-30T00:00:00Z' \
                 AND e.event_time < TIMESTAMP '1997-12-29T00:00:00Z'"
            ))
            .await;
        let stored = wh
            .count(&format!(
                "SELECT performers FROM goal_results WHERE goal_id = 1 \
                 AND bucket = 'Moderately Likely' AND arm = '{arm}'"
            ))
            .await;
        assert_eq!(stored, raw, "{arm}");
    }
    assert_eq!(
        wh.rows(
            "SELECT uplift_low < 0 AND uplift_high > 0, p_value > 0.05, verdict IS NOT NULL \
             FROM goal_results WHERE goal_id = 1 AND arm = 'test'"
        )
        .await,
        ["true|true|true"]
    );
    assert_eq!(
        wh.count(
            "SELECT count(*) FROM goal_results WHERE goal_id = 1 AND arm = 'control' \
             AND uplift_abs IS NULL"
        )
        .await,
        1
    );

    // Runs after expiry leave expired goals alone.
    assert!(runs.last().unwrap().goals.is_empty());
    assert_eq!(
        wh.rows("SELECT status, count(*) FROM job_runs GROUP BY status")
            .await,
        ["succeeded|102"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rerunning_a_day_changes_no_byte() {
    let wh = goal_warehouse();
    replay(&wh, "1997-09-30", "1997-10-05").await;
    let before = snapshot(&wh.root());
    let run = nightly::run(
        &wh.warehouse,
        RunDay::Day(day("1997-10-05")),
        &RunOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(run.goals.len(), 2);
    assert_same(&before, &snapshot(&wh.root()), "rerun");
    assert_eq!(wh.count("SELECT count(*) FROM job_runs").await, 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_run_changes_no_table() {
    let wh = goal_warehouse();
    replay(&wh, "1997-09-30", "1997-12-27").await;
    for step in nightly::STEPS {
        let before = snapshot(&wh.root());
        let options = RunOptions {
            fail_after: Some(step.to_string()),
            ..RunOptions::default()
        };
        let error = nightly::run(&wh.warehouse, RunDay::Day(day("1997-12-28")), &options)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains(&format!("after step {step}")),
            "{error}"
        );
        assert_same(&before, &snapshot(&wh.root()), step);
        assert!(!wh.root().join("_staging").exists(), "step {step}");
        assert!(!wh.root().join("_lock.json").exists(), "step {step}");
    }
    assert_eq!(
        wh.rows("SELECT status, count(*) FROM job_runs GROUP BY status ORDER BY status")
            .await,
        ["failed|4", "succeeded|89"]
    );
    assert_eq!(
        wh.count("SELECT count(*) FROM job_runs WHERE error LIKE '%after step goals%'")
            .await,
        1
    );
    // The next run completes normally.
    nightly::run(
        &wh.warehouse,
        RunDay::Day(day("1997-12-28")),
        &RunOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        wh.rows("SELECT status FROM goals ORDER BY goal_id").await,
        ["expired", "expired"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn late_events_reach_restated_days_only() {
    let wh = goal_warehouse();
    replay(&wh, "1997-09-30", "1997-10-10").await;
    let before_recent = daily_performers(&wh, 1, "1997-10-09", "All").await;
    let before_old = daily_performers(&wh, 1, "1997-10-02", "All").await;
    let before_last = daily_performers(&wh, 1, "1997-10-10", "All").await;

    // Two target users with no purchase since the start buy late: one on a day inside the
    // three restated days, one on an older day.
    let quiet = wh
        .rows(
            "SELECT user_id FROM target_groups WHERE goal_id = 1 AND user_id NOT IN \
             (SELECT user_id FROM events WHERE event_time >= TIMESTAMP '1997-09-30T00:00:00Z') \
             ORDER BY user_id LIMIT 2",
        )
        .await;
    let csv = format!(
        "user_id,event_name,event_time,amount\n\
         {},Charged,1997-10-09T12:00:00Z,10\n{},Charged,1997-10-02T12:00:00Z,10\n",
        quiet[0], quiet[1]
    );
    let path = wh.file("late.csv", &csv);
    success(&wh.run(&["import", "events", path.to_str().unwrap()]));

    nightly::run(
        &wh.warehouse,
        RunDay::Day(day("1997-10-11")),
        &RunOptions::default(),
    )
    .await
    .unwrap();
    // Day 10-09 is restated and counts both buyers, because performers are cumulative. Day
    // 10-02 is older than the restated days, so it keeps its figure although the raw count moved.
    assert_eq!(
        daily_performers(&wh, 1, "1997-10-09", "All").await,
        before_recent + 2
    );
    assert_eq!(
        daily_performers(&wh, 1, "1997-10-02", "All").await,
        before_old
    );
    assert_eq!(
        raw_performers(
            &wh,
            chrono::Utc.with_ymd_and_hms(1997, 10, 3, 0, 0, 0).unwrap()
        )
        .await,
        before_old + 1
    );
    assert_eq!(
        daily_performers(&wh, 1, "1997-10-11", "All").await,
        raw_performers(
            &wh,
            chrono::Utc.with_ymd_and_hms(1997, 10, 12, 0, 0, 0).unwrap()
        )
        .await
    );
    assert!(daily_performers(&wh, 1, "1997-10-11", "All").await >= before_last + 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn run_lock_blocks_live_holder_takes_over_dead() {
    let wh = goal_warehouse();
    let lock = RunLock::acquire(&wh.warehouse, "holder-run", "test")
        .await
        .unwrap();
    let error = nightly::run(
        &wh.warehouse,
        RunDay::Day(day("1997-10-01")),
        &RunOptions::default(),
    )
    .await
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("is locked by run holder-run (test)"),
        "{message}"
    );
    assert!(
        message.contains(&format!("process {}", std::process::id())),
        "{message}"
    );
    lock.release().await.unwrap();

    // A lock left by a process that has ended.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let now = chrono::Utc::now().to_rfc3339();
    std::fs::write(
        wh.root().join("_lock.json"),
        format!(
            r#"{{"run_id":"killed","command":"run","host":"{}","pid":{dead_pid},
               "acquired_at":"{now}","heartbeat_at":"{now}"}}"#,
            host.trim()
        ),
    )
    .unwrap();
    nightly::run(
        &wh.warehouse,
        RunDay::Day(day("1997-10-01")),
        &RunOptions::default(),
    )
    .await
    .unwrap();
    assert!(!wh.root().join("_lock.json").exists());
}

#[test]
fn run_command_prints_json_and_rejects_bad_days() {
    let wh = goal_warehouse();
    let output = success(&wh.run(&["run", "--date", "1997-10-01", "--format", "json"]));
    let runs: serde_json::Value = serde_json::from_str(&output).unwrap();
    assert_eq!(runs[0]["day"], "1997-10-01");
    assert_eq!(runs[0]["goals"].as_array().unwrap().len(), 2);
    assert_eq!(runs[0]["goals"][0]["days_written"], 2);

    let text = success(&wh.run(&["run", "--from", "1997-10-02", "--to", "1997-10-03"]));
    assert!(
        text.contains("Ran 2 days, 1997-10-02 through 1997-10-03"),
        "{text}"
    );

    let error = failure(&wh.run(&["run", "--from", "1997-10-05", "--to", "1997-10-01"]));
    assert!(
        error.contains("--from 1997-10-05 is after --to 1997-10-01"),
        "{error}"
    );
    let error = failure(&wh.run(&["run", "--date", "1997-13-01"]));
    assert!(
        error.contains("invalid --date \"1997-13-01\": use YYYY-MM-DD"),
        "{error}"
    );
    let error = failure(&wh.run(&["run", "--date", "1997-10-01", "--restate-days", "0"]));
    assert!(
        error.contains("--restate-days must be at least 1"),
        "{error}"
    );
    let tomorrow = (chrono::Utc::now().date_naive() + chrono::Days::new(1)).to_string();
    let error = failure(&wh.run(&["run", "--date", &tomorrow]));
    assert!(
        error.contains(&format!("day {tomorrow} has not ended yet")),
        "{error}"
    );
    let error = failure(&wh.run(&["run", "--from", "1997-10-01", "--to", &tomorrow]));
    assert!(error.contains("has not ended yet"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_events_read_counts_the_same() {
    let shared = goal_warehouse();
    let separate = goal_warehouse();
    let mut options = RunOptions::default();
    replay(&shared, "1997-09-30", "1997-10-20").await;
    options.max_shared_events = 0;
    nightly::run_range(
        &separate.warehouse,
        day("1997-09-30"),
        day("1997-10-20"),
        &options,
        |_| {},
    )
    .await
    .unwrap();
    let query = "SELECT * FROM goal_daily ORDER BY goal_id, day, bucket, arm";
    let rows = shared.rows(query).await;
    // Goal 2 starts a day before goal 1, so it counts 22 days to goal 1's 21. Each day has a
    // row for all users and one per bucket.
    assert_eq!(rows.len(), (21 + 22) * 4);
    assert_eq!(rows, separate.rows(query).await);
}

/// Returns the stored predictions of `goal_id` in one batch, in the order `order_by` gives.
async fn predictions_of(wh: &TempWarehouse, goal_id: i64, order_by: &str) -> RecordBatch {
    let batches = wh
        .query(&format!(
            "SELECT * EXCLUDE (goal_id) FROM predictions WHERE goal_id = {goal_id} \
             ORDER BY {order_by}"
        ))
        .await;
    arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// Replaces the predictions of `goal_id` with one file per batch of `files`.
async fn replace_predictions(wh: &TempWarehouse, goal_id: i64, files: &[RecordBatch]) {
    let write =
        TableWrite::begin(&wh.warehouse, "predictions", goals::goal_partitioning()).unwrap();
    for (index, batch) in files.iter().enumerate() {
        write
            .put_batches(
                &format!("goal_id={goal_id}/part-{index}.parquet"),
                batch.schema(),
                std::slice::from_ref(batch),
            )
            .await
            .unwrap();
    }
    let partition = BTreeSet::from([format!("goal_id={goal_id}")]);
    write.commit(Replace::Partitions(partition)).await.unwrap();
}

/// Rewrites the predictions of `goal_id` as three files whose rows are not sorted by user id.
async fn shuffle_predictions(wh: &TempWarehouse, goal_id: i64) {
    let all = predictions_of(wh, goal_id, "probability DESC, user_id").await;
    let third = all.num_rows() / 3 + 1;
    let files: Vec<RecordBatch> = (0..3)
        .map(|part| {
            let offset = (part * third).min(all.num_rows());
            all.slice(offset, third.min(all.num_rows() - offset))
        })
        .collect();
    replace_predictions(wh, goal_id, &files).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn prediction_order_does_not_change_counts() {
    let sorted = goal_warehouse();
    let shuffled = goal_warehouse();
    for goal_id in [1, 2] {
        shuffle_predictions(&shuffled, goal_id).await;
    }
    for goal_id in [1, 2] {
        let folder = shuffled
            .root()
            .join(format!("predictions/goal_id={goal_id}"));
        assert_eq!(std::fs::read_dir(folder).unwrap().count(), 3);
    }
    replay(&sorted, "1997-09-30", "1997-10-20").await;
    replay(&shuffled, "1997-09-30", "1997-10-20").await;
    let query = "SELECT goal_id, day, bucket, arm, users, performers, events, \
                 round(predicted_performers, 6) AS predicted FROM goal_daily \
                 ORDER BY goal_id, day, bucket, arm";
    let rows = sorted.rows(query).await;
    assert_eq!(rows.len(), (21 + 22) * 4);
    assert_eq!(rows, shuffled.rows(query).await);
}

/// Rewrites the predictions of `goal_id` with `bucket` null in the first row.
async fn null_first_bucket(wh: &TempWarehouse, goal_id: i64) {
    let all = predictions_of(wh, goal_id, "user_id").await;
    let index = all.schema().index_of("bucket").unwrap();
    let buckets = all.column(index).as_string::<i32>();
    let with_null: StringArray = (0..buckets.len())
        .map(|row| (row > 0).then(|| buckets.value(row)))
        .collect();

    let fields: Vec<Field> = all
        .schema()
        .fields()
        .iter()
        .map(|field| field.as_ref().clone().with_nullable(true))
        .collect();
    let mut columns = all.columns().to_vec();
    columns[index] = Arc::new(with_null);
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    replace_predictions(wh, goal_id, &[batch]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_predictions_fail_by_file() {
    let nulls = goal_warehouse();
    null_first_bucket(&nulls, 1).await;
    let error = failure(&nulls.run(&["run", "--date", "1997-10-05"]));
    assert!(error.contains("predictions/goal_id=1/"), "{error}");
    assert!(error.contains("1 rows have no bucket"), "{error}");

    let truncated = goal_warehouse();
    let folder = truncated.root().join("predictions/goal_id=2");
    let file = std::fs::read_dir(&folder)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let error = failure(&truncated.run(&["run", "--date", "1997-10-05"]));
    assert!(
        error.contains("failed to read predictions/goal_id=2/"),
        "{error}"
    );
}
