//! `goalcast schedule`: runs the job definitions until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::context::ContextOptions;
use crate::error::{Error, Result};
use crate::schedule::{self, ScheduleOptions, jobs::DEFAULT_JOBS_DIR};
use crate::warehouse::Warehouse;

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// Folder of job definitions (`*.toml`).
    #[arg(long, default_value = DEFAULT_JOBS_DIR)]
    pub jobs_dir: PathBuf,
    /// Run only these jobs (by name); default every job of the folder.
    #[arg(long = "job")]
    pub jobs: Vec<String>,
    /// Seconds a stop waits for the run in flight before abandoning it.
    #[arg(long, default_value_t = 60)]
    pub grace_seconds: u64,
}

pub async fn run(
    warehouse: &Warehouse,
    args: ScheduleArgs,
    context: &ContextOptions,
) -> Result<()> {
    let mut jobs = schedule::load_jobs(&args.jobs_dir)?;
    for name in &args.jobs {
        if !jobs.iter().any(|job| &job.name == name) {
            let names: Vec<&str> = jobs.iter().map(|job| job.name.as_str()).collect();
            return Err(Error::InvalidArgument(format!(
                "job {name:?} not found in {}; jobs: {}",
                args.jobs_dir.display(),
                names.join(", ")
            )));
        }
    }
    if !args.jobs.is_empty() {
        jobs.retain(|job| args.jobs.contains(&job.name));
    }
    if jobs.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "no job definitions (*.toml) in {}; add one, such as the shipped jobs/nightly.toml",
            args.jobs_dir.display()
        )));
    }
    for job in &jobs {
        eprintln!(
            "job {}: {:?} ({}), {}",
            job.name, job.schedule, job.time_zone, job.command
        );
    }
    eprintln!(
        "Scheduler running on {}; stop it with Ctrl-C or SIGTERM.",
        warehouse.url()
    );
    let options = ScheduleOptions {
        context: context.clone(),
        grace: Duration::from_secs(args.grace_seconds),
        ..ScheduleOptions::default()
    };
    schedule::run_scheduler(warehouse, jobs, options, stop_signal()).await
}

/// Completes on SIGINT or SIGTERM.
async fn stop_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; stop with Ctrl-C");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT"),
        _ = terminate.recv() => tracing::info!("received SIGTERM"),
    }
}
