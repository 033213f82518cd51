//! Job definitions: one TOML file per job in the jobs folder.

use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use serde::Deserialize;

use crate::error::{Error, Result};

/// Largest accepted `timeout_minutes`: a week.
pub const MAX_TIMEOUT_MINUTES: u64 = 7 * 24 * 60;
/// Largest accepted `retries`.
pub const MAX_RETRIES: u32 = 100;
/// Largest accepted `retry_delay_seconds`: a day.
pub const MAX_RETRY_DELAY_SECONDS: u64 = 24 * 60 * 60;

/// Default folder of job definitions.
pub const DEFAULT_JOBS_DIR: &str = "jobs";

/// One scheduled job, as written in `jobs/<name>.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobDefinition {
    /// Name recorded in `job_runs`; runs of the same name share their history.
    pub name: String,
    /// Cron expression with seconds: `sec min hour day-of-month month day-of-week`.
    pub schedule: String,
    /// IANA zone of the schedule and of the days the job computes.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// The command the job runs.
    pub command: JobCommand,
    /// Minutes after which a run is abandoned; it then commits nothing.
    #[serde(default = "default_timeout_minutes")]
    pub timeout_minutes: u64,
    /// Further attempts of a failed run before the job waits for its next tick.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Seconds between attempts.
    #[serde(default = "default_retry_delay_seconds")]
    pub retry_delay_seconds: u64,
}

/// The commands a job can run.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum JobCommand {
    /// The nightly tracking run of `goalcast run`.
    Nightly {
        /// Days each run rewrites; default 3.
        restate_days: Option<u32>,
    },
}

fn default_time_zone() -> String {
    "UTC".into()
}

fn default_timeout_minutes() -> u64 {
    120
}

fn default_retries() -> u32 {
    2
}

fn default_retry_delay_seconds() -> u64 {
    300
}

impl std::fmt::Display for JobCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobCommand::Nightly { restate_days } => write!(
                f,
                "nightly, restating {} days",
                restate_days.unwrap_or(crate::nightly::DEFAULT_RESTATE_DAYS)
            ),
        }
    }
}

impl JobDefinition {
    /// Returns the job's zone.
    pub fn zone(&self) -> Result<Tz> {
        crate::import::time::parse_time_zone(&self.time_zone)
    }

    /// Parses and checks one job file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| Error::input(path, format!("cannot read the job file: {error}")))?;
        let job: JobDefinition = toml::from_str(&text)
            .map_err(|error| Error::input(path, format!("invalid job definition: {error}")))?;
        job.check()
            .map_err(|error| Error::input(path, error.to_string()))?;
        Ok(job)
    }

    fn check(&self) -> Result<()> {
        crate::warehouse::validate_name("job", &self.name)?;
        self.zone()?;
        // Parsed by the scheduler itself, so a file that loads here also schedules.
        tokio_cron_scheduler::Job::new_async(self.schedule.as_str(), |_, _| Box::pin(async {}))
            .map_err(|error| {
                Error::InvalidArgument(format!(
                    "invalid schedule {:?}: {error}; write six fields, seconds first, e.g. \
                     \"0 30 2 * * *\" for 02:30 every day",
                    self.schedule
                ))
            })?;
        if !(1..=MAX_TIMEOUT_MINUTES).contains(&self.timeout_minutes) {
            return Err(Error::InvalidArgument(format!(
                "timeout_minutes {} is out of range; use 1 to {MAX_TIMEOUT_MINUTES} (a week)",
                self.timeout_minutes
            )));
        }
        if self.retries > MAX_RETRIES {
            return Err(Error::InvalidArgument(format!(
                "retries {} is out of range; use 0 to {MAX_RETRIES}",
                self.retries
            )));
        }
        if self.retry_delay_seconds > MAX_RETRY_DELAY_SECONDS {
            return Err(Error::InvalidArgument(format!(
                "retry_delay_seconds {} is out of range; use 0 to {MAX_RETRY_DELAY_SECONDS} (a day)",
                self.retry_delay_seconds
            )));
        }
        if let JobCommand::Nightly {
            restate_days: Some(0),
        } = self.command
        {
            return Err(Error::InvalidArgument(
                "restate_days must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Reads every `*.toml` file of `folder`, sorted by file name. Fails on the first invalid
/// file, or when two files define the same job name.
pub fn load_jobs(folder: &Path) -> Result<Vec<JobDefinition>> {
    let entries = std::fs::read_dir(folder)
        .map_err(|error| Error::input(folder, format!("cannot read the jobs folder: {error}")))?;
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    paths.sort();
    let mut jobs: Vec<JobDefinition> = Vec::new();
    for path in paths {
        let job = JobDefinition::from_file(&path)?;
        if jobs.iter().any(|other| other.name == job.name) {
            return Err(Error::input(
                &path,
                format!("job name {:?} is defined twice; rename one", job.name),
            ));
        }
        jobs.push(job);
    }
    Ok(jobs)
}
