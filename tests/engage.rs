//! Engagement: control-group assignment, the stored `control_groups` rows, the test audience
//! export, and the uplift statistics on generated and real data.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Float64Type};
use chrono::NaiveDate;
use common::{TempWarehouse, failure, success};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use goalcast::context::{ContextOptions, build_context};
use goalcast::engage::stats::{self, Verdict};
use goalcast::engage::{ALL_BUCKET, assign_control_groups};
use goalcast::generate::{GeneratorConfig, generate};
use goalcast::models::{self, timestamp_parameter};
use goalcast::predict::Direction;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEGMENTS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/segments");

/// Generates 3,000 users and creates goal 1 on them, as `goal_lifecycle_and_active_limit` in
/// tests/goals.rs does.
fn generated_goal(extra: &[&str]) -> TempWarehouse {
    let wh = TempWarehouse::new();
    success(&wh.run(&[
        "generate", "--users", "3000", "--days", "200", "--seed", "4",
    ]));
    let mut args = vec![
        "goal",
        "create",
        "--name",
        "first",
        "--event",
        "Charged",
        "--end-date",
        "2026-07-19",
        "--as-of",
        "2026-06-20",
        "--segments-dir",
        SEGMENTS_DIR,
    ];
    args.extend_from_slice(extra);
    let text = success(&wh.run(&args));
    assert!(text.contains("Created goal 1"), "{text}");
    wh
}

/// Returns `round(users * percent / 100)` with halves rounded up, in integers.
fn expected_control(users: i64, percent: i64) -> i64 {
    (users * percent + 50) / 100
}

/// Returns a column of strings; Parquet files read back as string views, which are cast.
fn string_column(batch: &RecordBatch, name: &str) -> Vec<String> {
    let column = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"));
    let column = arrow::compute::cast(column, &DataType::Utf8).unwrap();
    column
        .as_string::<i32>()
        .iter()
        .map(|value| value.unwrap().to_string())
        .collect()
}

/// Returns the rows of batches with `user_id`, `bucket` and `arm` as sorted triples.
fn assignment_rows(batches: &[RecordBatch]) -> Vec<(String, String, String)> {
    let mut rows: Vec<(String, String, String)> = batches
        .iter()
        .flat_map(|batch| {
            let users = string_column(batch, "user_id");
            let buckets = string_column(batch, "bucket");
            let arms = string_column(batch, "arm");
            users
                .into_iter()
                .zip(buckets)
                .zip(arms)
                .map(|((user, bucket), arm)| (user, bucket, arm))
                .collect::<Vec<_>>()
        })
        .collect();
    rows.sort();
    rows
}

/// Registers `users` as a table of (user_id, bucket) split into `partitions` partitions, in
/// the given order.
fn users_table(ctx: &SessionContext, name: &str, users: &[(String, String)], partitions: usize) {
    let schema = common::schema(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("bucket", DataType::Utf8, false),
    ]);
    let chunk = users.len().div_ceil(partitions).max(1);
    let batches: Vec<Vec<RecordBatch>> = users
        .chunks(chunk)
        .map(|rows| {
            let ids: StringArray = rows.iter().map(|row| Some(row.0.as_str())).collect();
            let buckets: StringArray = rows.iter().map(|row| Some(row.1.as_str())).collect();
            vec![
                RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(buckets)])
                    .unwrap(),
            ]
        })
        .collect();
    let table = MemTable::try_new(schema, batches).unwrap();
    ctx.deregister_table(name).unwrap();
    ctx.register_table(name, Arc::new(table)).unwrap();
}

async fn assign(
    ctx: &SessionContext,
    goal_id: i64,
    percent: u32,
    users: &[(String, String)],
    partitions: usize,
) -> Vec<(String, String, String)> {
    users_table(ctx, "input_users", users, partitions);
    let dataframe = ctx.table("input_users").await.unwrap();
    let batches = assign_control_groups(ctx, goal_id, percent, dataframe)
        .await
        .unwrap();
    assignment_rows(&batches)
}

fn control_users(rows: &[(String, String, String)]) -> BTreeSet<String> {
    rows.iter()
        .filter(|row| row.2 == "control")
        .map(|row| row.0.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn assignment_is_salted_order_free_and_rounded() {
    let ctx = SessionContext::new();
    let users: Vec<(String, String)> = (0..3_000)
        .map(|index| (format!("user{index}"), "All".to_string()))
        .collect();

    // Input order, partitioning and duplicates do not change the groups.
    let forward = assign(&ctx, 1, 5, &users, 1).await;
    let mut shuffled: Vec<(String, String)> = users.iter().rev().cloned().collect();
    shuffled.extend(users.iter().take(100).cloned());
    let reversed = assign(&ctx, 1, 5, &shuffled, 7).await;
    assert_eq!(forward, reversed);
    assert_eq!(forward.len(), 3_000);
    assert_eq!(control_users(&forward).len(), 150);

    // The goal id salts the hash: another goal holds out other users. Independent 5% samples
    // of 3,000 share 7.5 users on average.
    let other_goal = assign(&ctx, 2, 5, &users, 1).await;
    assert_eq!(control_users(&other_goal).len(), 150);
    let shared = control_users(&forward)
        .intersection(&control_users(&other_goal))
        .count();
    assert!(
        shared < 30,
        "{shared} of 150 control users shared by goals 1 and 2"
    );

    // Each bucket is rounded on its own, halves up: 10, 30 and 50 users at 5% give 0.5, 1.5
    // and 2.5, so 1, 2 and 3 control users; 9 users give 0.45, so none.
    let mut sized = Vec::new();
    for (bucket, size) in [("A", 10), ("B", 30), ("C", 50), ("D", 9)] {
        for index in 0..size {
            sized.push((format!("{bucket}{index}"), bucket.to_string()));
        }
    }
    let rows = assign(&ctx, 7, 5, &sized, 3).await;
    let mut controls: BTreeMap<String, usize> = BTreeMap::new();
    for (_, bucket, arm) in &rows {
        let count = controls.entry(bucket.clone()).or_default();
        if arm == "control" {
            *count += 1;
        }
    }
    let expected: BTreeMap<String, usize> = [("A", 1), ("B", 2), ("C", 3), ("D", 0)]
        .into_iter()
        .map(|(bucket, count)| (bucket.to_string(), count))
        .collect();
    assert_eq!(controls, expected);

    // Percentages outside 1 to 50 are rejected by the library as well as the command line.
    for percent in [0, 51] {
        let dataframe = ctx.table("input_users").await.unwrap();
        let error = assign_control_groups(&ctx, 7, percent, dataframe)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!(
                "invalid control percent {percent}: use a whole number from 1 to 50"
            )),
            "{error}"
        );
    }
}

/// Reads the user ids of a Parquet or CSV export, in file order.
async fn exported_users(path: &std::path::Path) -> Vec<String> {
    let ctx = SessionContext::new();
    let file = path.to_str().unwrap();
    let dataframe = if file.ends_with(".parquet") {
        ctx.read_parquet(file, Default::default()).await.unwrap()
    } else {
        ctx.read_csv(file, Default::default()).await.unwrap()
    };
    let batches = dataframe.collect().await.unwrap();
    batches
        .iter()
        .flat_map(|batch| string_column(batch, "user_id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn bucket_engagement_is_exact_and_stable() {
    let wh = generated_goal(&[]);
    let parquet = wh.dir.path().join("moderately.parquet");
    let csv = wh.dir.path().join("least.csv");

    // A rejected export name writes nothing.
    let error = failure(&wh.run(&[
        "goal",
        "engage",
        "1",
        "--bucket",
        "least",
        "--export",
        "least.txt",
    ]));
    assert!(
        error.contains("invalid export file least.txt: the name must end in .parquet or .csv"),
        "{error}"
    );
    assert!(!wh.root().join("control_groups").exists());

    success(&wh.run(&["goal", "engage", "1", "--bucket", "most"]));
    let text = success(&wh.run(&[
        "goal",
        "engage",
        "1",
        "--bucket",
        "moderately",
        "--control-percent",
        "10",
        "--export",
        parquet.to_str().unwrap(),
    ]));
    assert!(
        text.contains("Engaged Moderately Likely of goal 1"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&success(&wh.run(&[
        "goal",
        "engage",
        "1",
        "--bucket",
        "least",
        "--control-percent",
        "50",
        "--export",
        csv.to_str().unwrap(),
        "--format",
        "json",
    ])))
    .unwrap();
    assert_eq!(json["bucket"], "Least Likely");
    assert_eq!(json["newly_assigned"], true);
    assert_eq!(json["control_percent"], 50);

    // Every bucket's users are assigned once, with exactly round(n * percent / 100) in control.
    for (bucket, percent) in [
        ("Most Likely", 5),
        ("Moderately Likely", 10),
        ("Least Likely", 50),
    ] {
        let users = wh
            .count(&format!(
                "SELECT count(*) FROM predictions WHERE goal_id = 1 AND bucket = '{bucket}'"
            ))
            .await;
        assert!(users > 500, "{bucket} has {users} users");
        let assigned = wh
            .count(&format!(
                "SELECT count(DISTINCT c.user_id) FROM control_groups c JOIN predictions p \
                 ON p.user_id = c.user_id AND p.goal_id = c.goal_id AND p.bucket = c.bucket \
                 WHERE c.goal_id = 1 AND c.bucket = '{bucket}'"
            ))
            .await;
        assert_eq!(assigned, users, "{bucket}");
        let rows = wh
            .count(&format!(
                "SELECT count(*) FROM control_groups WHERE goal_id = 1 AND bucket = '{bucket}'"
            ))
            .await;
        assert_eq!(rows, users, "{bucket}");
        let control = wh
            .count(&format!(
                "SELECT count(*) FROM control_groups WHERE goal_id = 1 AND bucket = '{bucket}' \
                 AND arm = 'control'"
            ))
            .await;
        assert_eq!(control, expected_control(users, percent), "{bucket}");
        if bucket == "Moderately Likely" {
            let test_users: Vec<String> = wh
                .rows(&format!(
                    "SELECT user_id FROM control_groups WHERE goal_id = 1 AND bucket = '{bucket}' \
                     AND arm = 'test' ORDER BY user_id"
                ))
                .await;
            assert_eq!(exported_users(&parquet).await, test_users);
        }
        if bucket == "Least Likely" {
            assert_eq!(json["users"].as_i64().unwrap(), users);
            assert_eq!(json["control_users"].as_i64().unwrap(), control);
            assert_eq!(json["export"]["users"].as_i64().unwrap(), users - control);
            let test_users: Vec<String> = wh
                .rows(&format!(
                    "SELECT user_id FROM control_groups WHERE goal_id = 1 AND bucket = '{bucket}' \
                     AND arm = 'test' ORDER BY user_id"
                ))
                .await;
            assert_eq!(exported_users(&csv).await, test_users);
        }
    }

    // The library recomputes the stored groups in this process from the predictions.
    let ctx = build_context(&wh.warehouse, &ContextOptions::default())
        .await
        .unwrap();
    let engaged = ctx
        .sql("SELECT user_id, bucket FROM predictions WHERE goal_id = 1 AND bucket = 'Moderately Likely'")
        .await
        .unwrap();
    let recomputed = assignment_rows(&assign_control_groups(&ctx, 1, 10, engaged).await.unwrap());
    let stored = assignment_rows(
        &wh.query("SELECT user_id, bucket, arm FROM control_groups WHERE goal_id = 1 AND bucket = 'Moderately Likely'")
            .await,
    );
    assert_eq!(recomputed, stored);

    // Engaging again in a new process returns the same audience and writes nothing.
    let manifest = wh.root().join("control_groups/_table.json");
    let before = std::fs::read(&manifest).unwrap();
    let again = wh.dir.path().join("again.parquet");
    let text = success(&wh.run(&[
        "goal",
        "engage",
        "1",
        "--bucket",
        "moderately",
        "--export",
        again.to_str().unwrap(),
    ]));
    assert!(text.contains("was already engaged"), "{text}");
    assert!(text.contains("(10%)"), "{text}");
    assert_eq!(std::fs::read(&manifest).unwrap(), before);
    assert_eq!(exported_users(&again).await, exported_users(&parquet).await);

    // A different percentage for an engaged bucket, or all users next to engaged buckets, is
    // rejected without writing.
    let error = failure(&wh.run(&[
        "goal",
        "engage",
        "1",
        "--bucket",
        "moderately",
        "--control-percent",
        "5",
    ]));
    assert!(
        error.contains("Moderately Likely of goal 1 is already engaged with a 10% control group"),
        "{error}"
    );
    let error = failure(&wh.run(&["goal", "engage", "1", "--bucket", "all"]));
    assert!(
        error.contains(
            "goal 1 already has engaged buckets (Most Likely, Moderately Likely, Least Likely)"
        ),
        "{error}"
    );
    assert_eq!(std::fs::read(&manifest).unwrap(), before);

    // goal show lists the engaged buckets.
    let show: serde_json::Value = serde_json::from_str(&success(
        &wh.run(&["goal", "show", "1", "--format", "json"]),
    ))
    .unwrap();
    let buckets: Vec<&str> = show["engagements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["bucket"].as_str().unwrap())
        .collect();
    assert_eq!(
        buckets,
        vec!["Most Likely", "Moderately Likely", "Least Likely"]
    );
}

#[test]
fn all_users_engagement_and_rejections() {
    // Probability cuts that leave the Most Likely bucket empty.
    let wh = generated_goal(&["--buckets", "probabilities:0.999,0.01"]);
    let error = failure(&wh.run(&["goal", "engage", "1", "--bucket", "most"]));
    assert!(
        error.contains("Most Likely of goal 1 has no users, so there is no one to engage"),
        "{error}"
    );
    for (percent, message) in [
        (
            "0",
            "invalid control percent 0: use a whole number from 1 to 50",
        ),
        (
            "51",
            "invalid control percent 51: use a whole number from 1 to 50",
        ),
        (
            "2.5",
            "invalid value '2.5' for '--control-percent <PERCENT>'",
        ),
    ] {
        let error = failure(&wh.run(&[
            "goal",
            "engage",
            "1",
            "--bucket",
            "all",
            "--control-percent",
            percent,
        ]));
        assert!(error.contains(message), "{error}");
    }
    let error = failure(&wh.run(&["goal", "engage", "1", "--bucket", "likely"]));
    assert!(
        error.contains("invalid bucket \"likely\": use most, moderately, least or all"),
        "{error}"
    );
    let error = failure(&wh.run(&["goal", "engage", "9", "--bucket", "all"]));
    assert!(
        error.contains("goal 9 not found; existing goals: 1"),
        "{error}"
    );
    assert!(!wh.root().join("control_groups").exists());

    let text = success(&wh.run(&["goal", "engage", "1", "--bucket", "all"]));
    assert!(text.contains("Engaged All of goal 1"), "{text}");
    let users = wh.count_sync("SELECT target_users FROM goals WHERE goal_id = 1");
    assert_eq!(
        wh.count_sync("SELECT count(DISTINCT user_id) FROM control_groups WHERE goal_id = 1 AND bucket = 'All'"),
        users
    );
    assert_eq!(
        wh.count_sync("SELECT count(*) FROM control_groups WHERE goal_id = 1 AND arm = 'control'"),
        expected_control(users, 5)
    );
    let error = failure(&wh.run(&["goal", "engage", "1", "--bucket", "moderately"]));
    assert!(
        error.contains(
            "all users of goal 1 are already engaged, so Moderately Likely cannot be engaged on its own"
        ),
        "{error}"
    );

    success(&wh.run(&["goal", "archive", "1"]));
    let error = failure(&wh.run(&["goal", "engage", "1", "--bucket", "all"]));
    assert!(
        error.contains("goal 1 is archived; only active goals can be engaged"),
        "{error}"
    );
}

/// Extracts the DuckDB recipe from docs/tables.md.
fn documented_recipe() -> String {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/tables.md")).unwrap();
    let start = docs.find("<!-- control-groups-recipe -->").unwrap();
    let end = docs.find("<!-- end control-groups-recipe -->").unwrap();
    let block = &docs[start..end];
    let sql_start = block.find("```sql\n").unwrap() + "```sql\n".len();
    let sql_end = block[sql_start..].find("```").unwrap() + sql_start;
    block[sql_start..sql_end].to_string()
}

/// Runs `sql` with DuckDB from the test virtual environment and returns the rows as
/// (user_id, bucket, arm), sorted.
fn run_duckdb(sql: &str) -> Vec<(String, String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} not found: run `bash .ci/test` once to create .venv with DuckDB",
        python.display()
    );
    let output = std::process::Command::new(&python)
        .arg("-c")
        .arg(
            "import sys, duckdb\n\
             for row in duckdb.sql(sys.stdin.read()).fetchall():\n    print('\\t'.join(row))",
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(sql.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(
        output.status.success(),
        "DuckDB failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut rows: Vec<(String, String, String)> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let cells: Vec<&str> = line.split('\t').collect();
            (
                cells[0].to_string(),
                cells[1].to_string(),
                cells[2].to_string(),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn documented_recipe_matches_in_duckdb() {
    let wh = generated_goal(&[]);
    success(&wh.run(&["goal", "engage", "1", "--bucket", "moderately"]));
    success(&wh.run(&[
        "goal",
        "engage",
        "1",
        "--bucket",
        "least",
        "--control-percent",
        "10",
    ]));
    let warehouse = format!("'{}/", wh.root().display());
    let recipe = documented_recipe().replace("'warehouse/", &warehouse);

    // The recipe as documented: goal 1, Moderately Likely, 5%.
    let stored = assignment_rows(
        &wh.query("SELECT user_id, bucket, arm FROM control_groups WHERE goal_id = 1 AND bucket = 'Moderately Likely'")
            .await,
    );
    assert!(stored.iter().any(|row| row.2 == "control"));
    assert_eq!(run_duckdb(&recipe), stored);

    // The same recipe with the bucket and percentage changed.
    let changed = recipe
        .replace("'Moderately Likely'", "'Least Likely'")
        .replace("bucket_users * 5 / 100.0", "bucket_users * 10 / 100.0");
    assert_ne!(changed, recipe);
    let stored = assignment_rows(
        &wh.query("SELECT user_id, bucket, arm FROM control_groups WHERE goal_id = 1 AND bucket = 'Least Likely'")
            .await,
    );
    assert_eq!(run_duckdb(&changed), stored);
}

/// Counts test and control users and achievers for one simulated campaign.
struct ArmCounts {
    test_users: u64,
    test_achievers: u64,
    control_users: u64,
    control_achievers: u64,
}

#[tokio::test(flavor = "multi_thread")]
async fn uplift_interval_covers_injected_effect() {
    // 20,000 generated users, each with a true probability of buying in June 2026. For each of
    // 20 seeds, the goal id salts the real assignment (5% control), and outcomes are drawn
    // from the true probabilities. A campaign that converts a share `lift` of the test users
    // who would not have bought raises each test user's probability from p to
    // p + lift * (1 - p), so the true uplift is lift times the mean of 1 - p.
    let wh = TempWarehouse::new();
    let config = GeneratorConfig {
        users: 20_000,
        days: 200,
        seed: 21,
        start_date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        chunk_users: goalcast::generate::DEFAULT_CHUNK_USERS,
    };
    generate(&wh.warehouse, &config).await.unwrap();
    let ctx = build_context(&wh.warehouse, &ContextOptions::default())
        .await
        .unwrap();
    let micros = |text: &str| {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_micros()
    };
    let truth = models::dataframe(
        &ctx,
        models::TRUTH_WINDOW_PROBABILITY,
        &[
            (
                "window_start",
                timestamp_parameter(micros("2026-06-01T00:00:00Z")),
            ),
            (
                "window_end",
                timestamp_parameter(micros("2026-07-01T00:00:00Z")),
            ),
        ],
    )
    .await
    .unwrap();
    ctx.register_table("window_truth", truth.into_view())
        .unwrap();
    let batches = ctx
        .sql(
            "SELECT user_id, probability FROM window_truth WHERE event_name = 'Charged' \
             ORDER BY user_id",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut probabilities: Vec<(String, f64)> = Vec::new();
    for batch in &batches {
        let users = string_column(batch, "user_id");
        let values = batch.column(1).as_primitive::<Float64Type>();
        probabilities.extend(users.into_iter().zip(values.values().iter().copied()));
    }
    assert_eq!(probabilities.len(), 20_000);
    let mean_probability =
        probabilities.iter().map(|(_, p)| p).sum::<f64>() / probabilities.len() as f64;
    assert!(
        (0.02..0.5).contains(&mean_probability),
        "mean June probability {mean_probability:.3}"
    );

    let engaged: Vec<(String, String)> = probabilities
        .iter()
        .map(|(user, _)| (user.clone(), ALL_BUCKET.to_string()))
        .collect();
    let lift = 0.05;
    let true_uplift = lift * (1.0 - mean_probability);
    let (mut covered, mut significant_with_effect, mut significant_without_effect) = (0, 0, 0);
    for seed in 1..=20_u64 {
        let rows = assign(&ctx, seed as i64, 5, &engaged, 2).await;
        let arms: HashMap<&str, bool> = rows
            .iter()
            .map(|(user, _, arm)| (user.as_str(), arm == "control"))
            .collect();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut with_effect = ArmCounts::new();
        let mut without_effect = ArmCounts::new();
        for (user, probability) in &probabilities {
            let is_control = arms[user.as_str()];
            let draw: f64 = rng.random();
            let treated = probability + lift * (1.0 - probability);
            let achieved_with_effect = if is_control {
                draw < *probability
            } else {
                draw < treated
            };
            with_effect.add(is_control, achieved_with_effect);
            without_effect.add(is_control, draw < *probability);
        }
        let result = with_effect.uplift();
        if result.uplift_low <= true_uplift && true_uplift <= result.uplift_high {
            covered += 1;
        }
        if result.p_value < stats::ALPHA {
            significant_with_effect += 1;
        }
        let null = without_effect.uplift();
        if null.p_value < stats::ALPHA {
            significant_without_effect += 1;
        }
        assert_eq!(null.control_users, 1_000);
        assert_ne!(null.verdict, Verdict::NoVariation);
    }
    eprintln!(
        "true uplift {true_uplift:.4}: covered in {covered}/20, significant in \
         {significant_with_effect}/20; without an effect significant in \
         {significant_without_effect}/20"
    );
    assert!(
        covered >= 17,
        "the 95% interval covered the true uplift in {covered} of 20"
    );
    assert!(
        significant_without_effect <= 3,
        "{significant_without_effect} of 20 campaigns without an effect were significant"
    );
    assert!(
        significant_with_effect >= 10,
        "only {significant_with_effect} of 20 campaigns with an effect were significant"
    );
}

impl ArmCounts {
    fn new() -> Self {
        ArmCounts {
            test_users: 0,
            test_achievers: 0,
            control_users: 0,
            control_achievers: 0,
        }
    }

    fn add(&mut self, is_control: bool, achieved: bool) {
        if is_control {
            self.control_users += 1;
            self.control_achievers += u64::from(achieved);
        } else {
            self.test_users += 1;
            self.test_achievers += u64::from(achieved);
        }
    }

    fn uplift(&self) -> stats::Uplift {
        stats::uplift(
            Direction::Maximize,
            self.test_users,
            self.test_achievers,
            self.control_users,
            self.control_achievers,
        )
        .unwrap()
    }
}

/// Copies the shipped CDNOW events into a temporary warehouse, so the test never writes into
/// the repository.
fn cdnow_copy() -> TempWarehouse {
    let wh = TempWarehouse::new();
    std::fs::create_dir_all(wh.root()).unwrap();
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/warehouse/events");
    let status = std::process::Command::new("cp")
        .args(["-r", source, wh.root().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    wh
}

#[test]
fn cdnow_engagement_shows_no_uplift() {
    // CDNOW ran no campaign, so test and control of the Moderately Likely bucket differ only
    // by chance: the uplift is near zero and its interval covers zero.
    let wh = cdnow_copy();
    success(&wh.run(&[
        "goal",
        "create",
        "--name",
        "Q4 buyers",
        "--event",
        "Charged",
        "--end-date",
        "1997-12-28",
        "--as-of",
        "1997-09-30",
        "--segments-dir",
        SEGMENTS_DIR,
    ]));
    let json: serde_json::Value = serde_json::from_str(&success(&wh.run(&[
        "goal",
        "engage",
        "1",
        "--bucket",
        "moderately",
        "--format",
        "json",
    ])))
    .unwrap();
    assert_eq!(json["control_percent"], 5);

    let count = |arm: &str, achievers: bool| {
        let condition = if achievers {
            "AND user_id IN (SELECT user_id FROM events WHERE event_name = 'Charged' \
             AND event_time >= '1997-09-30T00:00:00Z' AND event_time < '1997-12-29T00:00:00Z')"
        } else {
            ""
        };
        wh.count_sync(&format!(
            "SELECT count(*) FROM control_groups WHERE goal_id = 1 \
             AND bucket = 'Moderately Likely' AND arm = '{arm}' {condition}"
        )) as u64
    };
    let (test_users, control_users) = (count("test", false), count("control", false));
    assert_eq!(json["test_users"].as_u64().unwrap(), test_users);
    assert_eq!(json["control_users"].as_u64().unwrap(), control_users);
    let result = stats::uplift(
        Direction::Maximize,
        test_users,
        count("test", true),
        control_users,
        count("control", true),
    )
    .unwrap();
    eprintln!("CDNOW Moderately Likely, 5% control: {result:?}");
    assert!(result.uplift_low < 0.0, "{result:?}");
    assert!(result.uplift_high > 0.0, "{result:?}");
    assert!(
        result.uplift_abs.abs() < result.min_detectable_effect.unwrap(),
        "{result:?}"
    );
}
