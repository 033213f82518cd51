//! `goalcast schedule`: runs the jobs defined in `jobs/*.toml` on their cron schedules.
//!
//! Cron ticks (tokio-cron-scheduler) only queue a request; one worker task runs the requests
//! in order, so a long run delays later ticks instead of dropping or overlapping them. Every
//! request runs each day from the one after the job's last successful day through yesterday (in
//! the job's time zone) that has not succeeded yet. That makes each day run exactly once,
//! whatever the number of ticks per day: a tick that is missed (the scheduler was down, or
//! a daylight saving change skipped its time) is caught up by the next one, and a tick that
//! repeats finds its day done. At start the worker catches up at once.

pub mod jobs;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::context::{ContextOptions, build_context};
use crate::error::{Error, Result};
use crate::goals::records::from_batches;
use crate::nightly::{self, JOB_RUNS, RunDay, RunOptions};
use crate::warehouse::Warehouse;
pub use jobs::{JobCommand, JobDefinition, load_jobs};

/// Most days one request runs when a job has no successful day yet or a long gap: the latest
/// days of that many.
pub const MAX_CATCH_UP_DAYS: u64 = 31;

/// The source of the current time, replaceable in tests.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that tests set by hand.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(now: DateTime<Utc>) -> Self {
        ManualClock(Mutex::new(now))
    }

    pub fn set(&self, now: DateTime<Utc>) {
        *self.0.lock().expect("the clock lock is not poisoned") = now;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("the clock lock is not poisoned")
    }
}

/// Settings of a scheduler.
pub struct ScheduleOptions {
    pub context: ContextOptions,
    pub clock: Arc<dyn Clock>,
    /// How long a stop waits for the run in flight before abandoning it.
    pub grace: Duration,
    /// Set when the scheduler stops; no new day starts afterwards.
    pub stopping: Arc<AtomicBool>,
}

impl Default for ScheduleOptions {
    fn default() -> Self {
        ScheduleOptions {
            context: ContextOptions::default(),
            clock: Arc::new(SystemClock),
            grace: Duration::from_secs(60),
            stopping: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Returns the days a request at `now` runs for `job`: the days after `last_success` through
/// yesterday in the job's zone, at most [`MAX_CATCH_UP_DAYS`] of them, minus those in `done`.
pub fn days_to_run(
    job: &JobDefinition,
    now: DateTime<Utc>,
    last_success: Option<NaiveDate>,
    done: &[NaiveDate],
) -> Result<Vec<NaiveDate>> {
    let zone = job.zone()?;
    let yesterday = now
        .with_timezone(&zone)
        .date_naive()
        .pred_opt()
        .expect("in range");
    let earliest = yesterday
        .checked_sub_days(chrono::Days::new(MAX_CATCH_UP_DAYS - 1))
        .expect("in range");
    let first = match last_success {
        Some(day) => day.succ_opt().expect("in range").max(earliest),
        None => yesterday,
    };
    Ok(first
        .iter_days()
        .take_while(|day| *day <= yesterday)
        .filter(|day| !done.contains(day))
        .collect())
}

/// Reads the days that `job` ran successfully, sorted.
pub async fn succeeded_days(
    warehouse: &Warehouse,
    context: &ContextOptions,
    job: &str,
) -> Result<Vec<NaiveDate>> {
    let ctx = build_context(warehouse, context).await?;
    if !ctx.table_exist(JOB_RUNS)? {
        return Ok(Vec::new());
    }
    #[derive(serde::Deserialize)]
    struct Row {
        day: String,
    }
    let escaped = job.replace('\'', "''");
    let rows: Vec<Row> = from_batches(
        &ctx.sql(&format!(
            "SELECT DISTINCT day FROM job_runs WHERE job = '{escaped}' \
             AND status = 'succeeded' ORDER BY day"
        ))
        .await?
        .collect()
        .await?,
    )?;
    Ok(rows
        .iter()
        .filter_map(|row| NaiveDate::parse_from_str(&row.day, "%Y-%m-%d").ok())
        .collect())
}

/// Runs every due day of `job` once, in order, retrying a failed day as the job allows.
/// Returns the days that succeeded; stops at the first day that fails after its retries.
pub async fn run_due_days(
    warehouse: &Warehouse,
    job: &JobDefinition,
    options: &ScheduleOptions,
) -> Result<Vec<NaiveDate>> {
    let done = succeeded_days(warehouse, &options.context, &job.name).await?;
    let days = days_to_run(job, options.clock.now(), done.last().copied(), &done)?;
    if days.is_empty() {
        tracing::debug!(job = job.name, "no day is due");
        return Ok(Vec::new());
    }
    tracing::info!(
        job = job.name,
        first = %days[0],
        last = %days[days.len() - 1],
        days = days.len(),
        "running due days"
    );
    let mut succeeded = Vec::new();
    for day in days {
        if options.stopping.load(Ordering::Relaxed) {
            tracing::info!(job = job.name, %day, "stopping before this day");
            break;
        }
        run_day_with_retries(warehouse, job, options, day).await?;
        succeeded.push(day);
    }
    Ok(succeeded)
}

async fn run_day_with_retries(
    warehouse: &Warehouse,
    job: &JobDefinition,
    options: &ScheduleOptions,
    day: NaiveDate,
) -> Result<()> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        // Another scheduler on the same warehouse may have run the day meanwhile.
        // NOTE: two schedulers that pass this check at once both run the day, one after the
        // other, because the run lock serializes runs but does not know about days.
        if succeeded_days(warehouse, &options.context, &job.name)
            .await?
            .contains(&day)
        {
            tracing::info!(job = job.name, %day, "day already succeeded; skipping");
            return Ok(());
        }
        match run_day(warehouse, job, options, day).await {
            Ok(()) => return Ok(()),
            Err(error) if attempt <= job.retries => {
                tracing::warn!(
                    job = job.name,
                    %day,
                    attempt,
                    %error,
                    retry_in_seconds = job.retry_delay_seconds,
                    "run failed; retrying"
                );
                tokio::time::sleep(Duration::from_secs(job.retry_delay_seconds)).await;
            }
            Err(error) => {
                tracing::error!(job = job.name, %day, attempt, %error, "run failed");
                return Err(error);
            }
        }
    }
}

async fn run_day(
    warehouse: &Warehouse,
    job: &JobDefinition,
    options: &ScheduleOptions,
    day: NaiveDate,
) -> Result<()> {
    match &job.command {
        JobCommand::Nightly { restate_days } => {
            let run_options = RunOptions {
                job: job.name.clone(),
                restate_days: restate_days.unwrap_or(nightly::DEFAULT_RESTATE_DAYS),
                context: options.context.clone(),
                ..RunOptions::default()
            };
            let timeout = Duration::from_secs(60 * job.timeout_minutes);
            let run = nightly::run(warehouse, RunDay::Day(day), &run_options);
            match tokio::time::timeout(timeout, run).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err(error),
                Err(_) => Err(Error::InvalidArgument(format!(
                    "job {} timed out after {} minutes on {day}; its writes were not committed",
                    job.name, job.timeout_minutes
                ))),
            }
        }
    }
}

/// Runs `jobs` on their schedules until `stop` completes, then waits up to `options.grace` for
/// the run in flight.
pub async fn run_scheduler(
    warehouse: &Warehouse,
    jobs: Vec<JobDefinition>,
    options: ScheduleOptions,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    if jobs.is_empty() {
        return Err(Error::InvalidArgument(
            "no jobs to schedule; add a jobs/*.toml file".into(),
        ));
    }
    let (sender, mut receiver) = mpsc::unbounded_channel::<usize>();
    let mut scheduler = JobScheduler::new().await.map_err(scheduler_error)?;
    for (index, job) in jobs.iter().enumerate() {
        let sender = sender.clone();
        let name = job.name.clone();
        let cron = Job::new_async_tz(job.schedule.as_str(), job.zone()?, move |_, _| {
            let sender = sender.clone();
            let name = name.clone();
            Box::pin(async move {
                tracing::debug!(job = name, "tick");
                let _ = sender.send(index);
            })
        })
        .map_err(|error| {
            Error::InvalidArgument(format!(
                "job {}: invalid schedule {:?}: {error}",
                job.name, job.schedule
            ))
        })?;
        scheduler.add(cron).await.map_err(scheduler_error)?;
    }
    // Catch up at start, before the first tick.
    for index in 0..jobs.len() {
        let _ = sender.send(index);
    }
    drop(sender);
    scheduler.start().await.map_err(scheduler_error)?;
    tracing::info!(
        jobs = jobs.len(),
        names = jobs
            .iter()
            .map(|job| job.name.as_str())
            .collect::<Vec<_>>()
            .join(","),
        "scheduler started"
    );

    let worker_warehouse = warehouse.clone();
    let worker_jobs = jobs.clone();
    let grace = options.grace;
    let stopping = options.stopping.clone();
    let stop_requested = Arc::new(tokio::sync::Notify::new());
    let worker_stop = stop_requested.clone();
    let worker = tokio::spawn(async move {
        loop {
            // The tick closures keep senders alive, so a stop ends the loop through the
            // notification instead of a closed channel.
            let index = tokio::select! {
                biased;
                _ = worker_stop.notified() => break,
                index = receiver.recv() => match index {
                    Some(index) => index,
                    None => break,
                },
            };
            let job = &worker_jobs[index];
            if let Err(error) = run_due_days(&worker_warehouse, job, &options).await {
                tracing::error!(job = job.name, %error, "job failed; the next tick retries");
            }
        }
    });

    stop.await;
    stopping.store(true, Ordering::Relaxed);
    stop_requested.notify_one();
    tracing::info!("stopping the scheduler");
    scheduler.shutdown().await.map_err(scheduler_error)?;
    let abort = worker.abort_handle();
    match tokio::time::timeout(grace, worker).await {
        Ok(_) => tracing::info!("scheduler stopped"),
        Err(_) => {
            abort.abort();
            crate::warehouse::lock::release_own(warehouse).await?;
            tracing::warn!(
                grace_seconds = grace.as_secs(),
                "abandoned the run in flight; it committed nothing, and its lock is released"
            );
        }
    }
    Ok(())
}

fn scheduler_error(error: tokio_cron_scheduler::JobSchedulerError) -> Error {
    Error::InvalidArgument(format!("cron scheduler: {error}"))
}
