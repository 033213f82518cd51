//! The scheduler: job files, due days, a real cron scheduler with a short schedule, and the
//! `goalcast schedule` process stopping on SIGTERM.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone, Utc};
use common::TempWarehouse;
use goalcast::nightly::{self, RunDay, RunOptions};
use goalcast::schedule::{self, JobDefinition, ManualClock, ScheduleOptions};
use goalcast::warehouse::RunLock;

fn day(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

fn write_job(folder: &Path, file: &str, text: &str) {
    std::fs::create_dir_all(folder).unwrap();
    std::fs::write(folder.join(file), text).unwrap();
}

const FAST_JOB: &str = r#"
name = "fast"
schedule = "* * * * * *"
retries = 0
[command]
kind = "nightly"
"#;

#[test]
fn every_shipped_job_file_parses() {
    let jobs =
        schedule::load_jobs(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/jobs"))).unwrap();
    let names: Vec<&str> = jobs.iter().map(|job| job.name.as_str()).collect();
    assert_eq!(names, ["nightly"]);
    assert_eq!(jobs[0].time_zone, "UTC");
}

#[test]
fn invalid_job_files_name_file_and_problem() {
    let cases = [
        (
            "unknown key",
            "name = \"a\"\nschedule = \"0 0 2 * * *\"\ncolour = 1\n[command]\nkind = \"nightly\"\n",
            "unknown field `colour`",
        ),
        (
            "bad cron",
            "name = \"a\"\nschedule = \"every night\"\n[command]\nkind = \"nightly\"\n",
            "invalid schedule \"every night\"",
        ),
        (
            "five fields",
            "name = \"a\"\nschedule = \"30 2 * * *\"\n[command]\nkind = \"nightly\"\n",
            "write six fields",
        ),
        (
            "bad zone",
            "name = \"a\"\nschedule = \"0 0 2 * * *\"\ntime_zone = \"Mars/Base\"\n[command]\nkind = \"nightly\"\n",
            "Mars/Base",
        ),
        (
            "bad command",
            "name = \"a\"\nschedule = \"0 0 2 * * *\"\n[command]\nkind = \"compact\"\n",
            "unknown variant `compact`",
        ),
        (
            "no command",
            "name = \"a\"\nschedule = \"0 0 2 * * *\"\n",
            "missing field `command`",
        ),
        (
            "zero restate",
            "name = \"a\"\nschedule = \"0 0 2 * * *\"\n[command]\nkind = \"nightly\"\nrestate_days = 0\n",
            "restate_days must be at least 1",
        ),
        (
            "huge timeout",
            "name = \"a\"\nschedule = \"0 0 2 * * *\"\ntimeout_minutes = 400000000000000000\n[command]\nkind = \"nightly\"\n",
            "timeout_minutes 400000000000000000 is out of range",
        ),
        (
            "bad name",
            "name = \"Nightly Job\"\nschedule = \"0 0 2 * * *\"\n[command]\nkind = \"nightly\"\n",
            "invalid job name",
        ),
    ];
    for (case, text, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        write_job(dir.path(), "job.toml", text);
        let error = schedule::load_jobs(dir.path()).unwrap_err().to_string();
        assert!(error.contains("job.toml"), "{case}: {error}");
        assert!(error.contains(expected), "{case}: {error}");
    }

    let dir = tempfile::tempdir().unwrap();
    write_job(dir.path(), "a.toml", FAST_JOB);
    write_job(dir.path(), "b.toml", FAST_JOB);
    let error = schedule::load_jobs(dir.path()).unwrap_err().to_string();
    assert!(
        error.contains("b.toml: job name \"fast\" is defined twice"),
        "{error}"
    );
}

fn job_in(zone: &str) -> JobDefinition {
    let dir = tempfile::tempdir().unwrap();
    write_job(
        dir.path(),
        "job.toml",
        &format!("{FAST_JOB}\n").replace(
            "retries = 0",
            &format!("retries = 0\ntime_zone = \"{zone}\""),
        ),
    );
    schedule::load_jobs(dir.path()).unwrap().remove(0)
}

#[test]
fn due_days_fill_gaps_once_across_daylight_saving() {
    let job = job_in("America/New_York");
    let at = |text: &str| {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    };

    // First run ever: only yesterday in the job's zone (still 1 November at 03:30 UTC).
    let due = schedule::days_to_run(&job, at("2026-11-02T03:30:00Z"), None, &[]).unwrap();
    assert_eq!(due, [day("2026-10-31")]);
    // A gap since the last success is run in order.
    let due = schedule::days_to_run(
        &job,
        at("2026-11-05T12:00:00Z"),
        Some(day("2026-11-01")),
        &[day("2026-11-01")],
    )
    .unwrap();
    assert_eq!(
        due,
        [day("2026-11-02"), day("2026-11-03"), day("2026-11-04")]
    );
    // 01:30 happens twice on 1 November 2026 in New York; the second tick finds its day done.
    let first = at("2026-11-01T05:30:00Z");
    let second = at("2026-11-01T06:30:00Z");
    assert_eq!(
        schedule::days_to_run(&job, first, Some(day("2026-10-30")), &[day("2026-10-30")]).unwrap(),
        [day("2026-10-31")]
    );
    assert!(
        schedule::days_to_run(
            &job,
            second,
            Some(day("2026-10-31")),
            &[day("2026-10-30"), day("2026-10-31")]
        )
        .unwrap()
        .is_empty()
    );
    // 02:30 does not exist on 8 March 2026; the next tick catches the day up.
    let due = schedule::days_to_run(
        &job,
        at("2026-03-09T06:30:00Z"),
        Some(day("2026-03-06")),
        &[day("2026-03-06")],
    )
    .unwrap();
    assert_eq!(due, [day("2026-03-07"), day("2026-03-08")]);
    // A long gap runs the latest 31 days.
    let due = schedule::days_to_run(
        &job,
        at("2026-12-31T12:00:00Z"),
        Some(day("2026-01-01")),
        &[],
    )
    .unwrap();
    assert_eq!(due.len() as u64, schedule::MAX_CATCH_UP_DAYS);
    assert_eq!(*due.last().unwrap(), day("2026-12-30"));
}

/// Waits up to 30 seconds for `condition`.
async fn wait_for(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !condition().await {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn succeeded(wh: &TempWarehouse) -> Vec<String> {
    if !wh.root().join("job_runs").exists() {
        return Vec::new();
    }
    wh.rows("SELECT day, count(*) FROM job_runs WHERE job = 'fast' AND status = 'succeeded' GROUP BY day ORDER BY day")
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduler_catches_up_survives_failures_and_stops() {
    let wh = TempWarehouse::new();
    let options = RunOptions {
        job: "fast".into(),
        ..RunOptions::default()
    };
    nightly::run(&wh.warehouse, RunDay::Day(day("1997-10-01")), &options)
        .await
        .unwrap();

    let jobs_dir = wh.dir.path().join("jobs");
    write_job(&jobs_dir, "fast.toml", FAST_JOB);
    let jobs = schedule::load_jobs(&jobs_dir).unwrap();
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(1997, 10, 6, 12, 0, 0).unwrap(),
    ));
    let schedule_options = ScheduleOptions {
        clock: clock.clone(),
        grace: Duration::from_secs(10),
        ..ScheduleOptions::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let warehouse = wh.warehouse.clone();
    let scheduler = tokio::spawn(async move {
        schedule::run_scheduler(&warehouse, jobs, schedule_options, async {
            let _ = stopped.await;
        })
        .await
    });

    // The start catches up 2 to 5 October, in order, once each.
    let expected: Vec<String> = ["01", "02", "03", "04", "05"]
        .iter()
        .map(|d| format!("1997-10-{d}|1"))
        .collect();
    wait_for("the catch-up", async || succeeded(&wh).await == expected).await;
    let order = wh
        .rows("SELECT day FROM job_runs WHERE job = 'fast' ORDER BY started_at, run_id")
        .await;
    assert_eq!(
        order,
        [
            "1997-10-01",
            "1997-10-02",
            "1997-10-03",
            "1997-10-04",
            "1997-10-05"
        ]
    );

    // While another run holds the lock, ticks fail and nothing is recorded; the scheduler
    // keeps ticking and catches up once the lock is free.
    let lock = RunLock::acquire(&wh.warehouse, "blocker", "test")
        .await
        .unwrap();
    clock.set(Utc.with_ymd_and_hms(1997, 10, 9, 12, 0, 0).unwrap());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(succeeded(&wh).await, expected);
    lock.release().await.unwrap();
    let expected: Vec<String> = (1..=8).map(|d| format!("1997-10-0{d}|1")).collect();
    wait_for("the catch-up after the failures", async || {
        succeeded(&wh).await == expected
    })
    .await;

    // Further ticks on the same day run nothing again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(succeeded(&wh).await, expected);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), scheduler)
        .await
        .expect("the scheduler stops")
        .unwrap()
        .unwrap();
    assert!(!wh.root().join("_lock.json").exists());
}

#[test]
fn schedule_command_stops_on_sigterm() {
    let wh = TempWarehouse::new();
    let jobs_dir = wh.dir.path().join("jobs");
    write_job(&jobs_dir, "fast.toml", FAST_JOB);
    let log = wh.dir.path().join("schedule.log");
    let mut child =
        common::goalcast_command(&["schedule", "--jobs-dir", jobs_dir.to_str().unwrap()])
            .arg("--warehouse")
            .arg(wh.root())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
    let started = Instant::now();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    while !read_log().contains("run succeeded") {
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("no run within 30 s: {}", read_log());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let stopping = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if stopping.elapsed() > Duration::from_secs(15) {
            child.kill().unwrap();
            panic!("goalcast schedule ignored SIGTERM: {}", read_log());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = read_log();
    assert!(exit.success(), "{text}");
    assert!(text.contains("received SIGTERM"), "{text}");
    assert!(text.contains("scheduler stopped"), "{text}");
    // The start ran yesterday (UTC) once.
    let yesterday = Utc::now().date_naive().pred_opt().unwrap();
    assert!(text.contains(&format!("day={yesterday}")), "{text}");
}
