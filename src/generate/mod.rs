//! `goalcast generate`: a synthetic warehouse whose event probabilities are known.
//!
//! Every user gets latent traits: a signup time, a city, a platform, an activity level, a
//! purchase intent and a lifetime that ends in churn. They are drawn from a per-user random
//! stream, so the output depends on the seed and sizes but not on the thread count. Each event type is a
//! Poisson process whose rate is the user's rate times a daily seasonality factor, running from
//! signup (or the first generated day) until churn; app users may emit `App Uninstalled` at
//! churn. The `truth` and `truth_calendar` tables record those rates and factors, so the true
//! probability of any event in any window can be computed exactly (see `docs/tables.md`).

mod model;
mod writer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chrono::NaiveDate;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::progress;
use crate::warehouse::Warehouse;
use crate::warehouse::compact::DEFAULT_MAX_ROWS_PER_FILE;
pub use model::{Calendar, EVENT_NAMES, UserTraits};

/// Users generated and written together by default. It bounds memory to one chunk's events per
/// worker.
pub const DEFAULT_CHUNK_USERS: u64 = 250_000;

/// Sizes and seed of a generated warehouse.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub users: u64,
    pub days: u32,
    pub seed: u64,
    /// First generated day; events cover `[start_date, start_date + days)` in UTC.
    pub start_date: NaiveDate,
    /// Users generated and written together. Each chunk writes one file per day, and the
    /// generator then compacts them into one, so the rows do not depend on it.
    pub chunk_users: u64,
}

/// Counts of what `generate` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateSummary {
    pub users: u64,
    pub days: u32,
    pub events: u64,
    pub events_by_name: Vec<(String, u64)>,
    pub seconds: f64,
}

/// Generates the tables `events`, `profiles`, `truth` and `truth_calendar` into `warehouse`,
/// replacing any tables of those names.
pub async fn generate(warehouse: &Warehouse, config: &GeneratorConfig) -> Result<GenerateSummary> {
    if config.users == 0 || config.users > u32::MAX as u64 {
        return Err(Error::InvalidArgument(format!(
            "invalid --users {}: use 1 to {}",
            config.users,
            u32::MAX
        )));
    }
    if config.days == 0 || config.days > 3650 {
        return Err(Error::InvalidArgument(format!(
            "invalid --days {}: use 1 to 3650",
            config.days
        )));
    }
    if config.chunk_users == 0 {
        return Err(Error::InvalidArgument(
            "invalid generator chunk size 0: use 1 user or more".into(),
        ));
    }
    let started = Instant::now();
    let calendar = Calendar::new(config.start_date, config.days);
    let writes = writer::Writes::begin(warehouse)?;
    let chunks = config.users.div_ceil(config.chunk_users);
    let bar = progress::count_bar(config.users, "generating", "users");
    let counts: Vec<AtomicU64> = EVENT_NAMES.iter().map(|_| AtomicU64::new(0)).collect();
    let next_chunk = AtomicU64::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(chunks as usize);
    let handle = tokio::runtime::Handle::current();

    let result = tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let mut threads = Vec::new();
            for _ in 0..workers {
                threads.push(scope.spawn(|| -> Result<()> {
                    loop {
                        let chunk = next_chunk.fetch_add(1, Ordering::Relaxed);
                        if chunk >= chunks {
                            return Ok(());
                        }
                        let first = chunk * config.chunk_users + 1;
                        let last = ((chunk + 1) * config.chunk_users).min(config.users);
                        let files = writer::build_chunk(config, &calendar, chunk, first..=last)?;
                        for (index, count) in files.event_counts.iter().enumerate() {
                            counts[index].fetch_add(*count, Ordering::Relaxed);
                        }
                        handle.block_on(writes.put_chunk(files))?;
                        bar.inc(last + 1 - first);
                    }
                }));
            }
            threads
                .into_iter()
                .map(|thread| thread.join().expect("generator threads do not panic"))
                .collect::<Result<Vec<()>>>()
        })
    });
    bar.finish_and_clear();
    if let Err(error) = result {
        writes.abort().await?;
        return Err(error);
    }
    writes.put_calendar(&calendar).await?;
    let spinner = progress::spinner("committing tables".to_string());
    writes.commit().await?;
    spinner.finish_and_clear();
    if chunks > 1 {
        // Each chunk wrote its own file per day, and queries read one file per day faster.
        for table in [
            crate::schema::EVENTS,
            crate::schema::PROFILES,
            writer::TRUTH,
        ] {
            crate::warehouse::compact::compact_table(
                warehouse,
                table,
                DEFAULT_MAX_ROWS_PER_FILE,
                None,
            )
            .await?;
        }
    }

    let events_by_name: Vec<(String, u64)> = EVENT_NAMES
        .iter()
        .zip(&counts)
        .map(|(name, count)| (name.to_string(), count.load(Ordering::Relaxed)))
        .collect();
    Ok(GenerateSummary {
        users: config.users,
        days: config.days,
        events: events_by_name.iter().map(|(_, count)| count).sum(),
        events_by_name,
        seconds: started.elapsed().as_secs_f64(),
    })
}
