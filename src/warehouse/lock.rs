//! One run at a time per warehouse.
//!
//! The lock is the object `_lock.json` at the warehouse root, created with a put that fails
//! when the object exists (an atomic create on the local store and on S3). It names its
//! holder: run id, command, host, process id and start time. The holder refreshes
//! `heartbeat_at` every [`HEARTBEAT_SECS`] seconds. A lock counts as stale, and is taken over,
//! when its process is gone (same host) or its heartbeat is older than [`STALE_AFTER_SECS`]
//! seconds (any host).

use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::{Warehouse, delete_if_exists};
use crate::error::{Error, Result};

/// Name of the lock object at the warehouse root.
pub const LOCK_FILE: &str = "_lock.json";

/// How often the holder refreshes its heartbeat.
pub const HEARTBEAT_SECS: u64 = 30;

/// Age of the heartbeat after which any process may take the lock over.
pub const STALE_AFTER_SECS: i64 = 300;

/// The holder of the lock, as recorded in `_lock.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LockHolder {
    pub run_id: String,
    pub command: String,
    pub host: String,
    pub pid: u32,
    pub acquired_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "run {} ({}), process {} on host {}, since {}",
            self.run_id,
            self.command,
            self.pid,
            self.host,
            self.acquired_at.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

impl LockHolder {
    /// Returns why this lock may be taken over, or `None` while its holder may be alive.
    pub fn stale_reason(&self, now: DateTime<Utc>) -> Option<String> {
        if self.host == this_host() && !process_alive(self.pid) {
            return Some(format!("process {} no longer exists", self.pid));
        }
        let silent = (now - self.heartbeat_at).num_seconds();
        if silent < -STALE_AFTER_SECS {
            return Some(format!("its heartbeat is {} s in the future", -silent));
        }
        (silent > STALE_AFTER_SECS).then(|| format!("no heartbeat for {silent} s"))
    }
}

/// The warehouse's run lock, held until [`RunLock::release`] or drop.
#[derive(Debug)]
pub struct RunLock {
    warehouse: Warehouse,
    holder: LockHolder,
    heartbeat: tokio::task::JoinHandle<()>,
    released: bool,
}

impl RunLock {
    /// Takes the lock for `run_id`, taking over a stale lock, or fails naming the holder.
    pub async fn acquire(warehouse: &Warehouse, run_id: &str, command: &str) -> Result<Self> {
        let now = Utc::now();
        let holder = LockHolder {
            run_id: run_id.to_string(),
            command: command.to_string(),
            host: this_host(),
            pid: std::process::id(),
            acquired_at: now,
            heartbeat_at: now,
        };
        let path = warehouse.path(LOCK_FILE);
        let store = warehouse.store().clone();
        for attempt in 0..2 {
            let payload = PutPayload::from(serde_json::to_vec_pretty(&holder)?);
            let options = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            match store.put_opts(&path, payload, options).await {
                Ok(_) => {
                    let heartbeat = tokio::spawn(heartbeat(warehouse.clone(), holder.clone()));
                    tracing::debug!(run_id, "acquired the warehouse lock");
                    return Ok(RunLock {
                        warehouse: warehouse.clone(),
                        holder,
                        heartbeat,
                        released: false,
                    });
                }
                Err(object_store::Error::AlreadyExists { .. }) if attempt == 0 => {
                    let Some(current) = read_holder(warehouse).await? else {
                        continue;
                    };
                    let Some(reason) = current.stale_reason(Utc::now()) else {
                        return Err(locked(warehouse, &current));
                    };
                    tracing::warn!(
                        holder = %current,
                        reason,
                        "taking over a stale warehouse lock"
                    );
                    delete_if_exists(store.as_ref(), &path).await?;
                }
                Err(object_store::Error::AlreadyExists { .. }) => {
                    return match read_holder(warehouse).await? {
                        Some(current) => Err(locked(warehouse, &current)),
                        None => Err(Error::Locked(format!(
                            "the lock of warehouse {} changed hands while goalcast was taking \
                             it; retry",
                            warehouse.url()
                        ))),
                    };
                }
                Err(error) => return Err(error.into()),
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Fails when another process has taken the lock over, as after a pause of this one
    /// longer than the stale age. A run checks this before it commits.
    pub async fn ensure_held(&self) -> Result<()> {
        match read_holder(&self.warehouse).await? {
            Some(current) if current.run_id == self.holder.run_id => Ok(()),
            Some(current) => Err(Error::Locked(format!(
                "run {} lost the lock of warehouse {} to {current}, so it committed nothing",
                self.holder.run_id,
                self.warehouse.url()
            ))),
            None => Err(Error::Locked(format!(
                "run {} lost the lock of warehouse {} (the lock was removed), so it committed \
                 nothing",
                self.holder.run_id,
                self.warehouse.url()
            ))),
        }
    }

    /// Returns the holder record this process wrote.
    pub fn holder(&self) -> &LockHolder {
        &self.holder
    }

    /// Releases the lock.
    pub async fn release(mut self) -> Result<()> {
        self.released = true;
        self.heartbeat.abort();
        delete_if_held_by(&self.warehouse, |current| {
            current.run_id == self.holder.run_id
        })
        .await?;
        tracing::debug!(run_id = self.holder.run_id, "released the warehouse lock");
        Ok(())
    }
}

impl Drop for RunLock {
    /// Releases the lock in the background when its holder is dropped without
    /// [`RunLock::release`], as a run cancelled by a timeout is.
    fn drop(&mut self) {
        self.heartbeat.abort();
        if self.released {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let warehouse = self.warehouse.clone();
            let run_id = self.holder.run_id.clone();
            runtime.spawn(async move {
                let released =
                    delete_if_held_by(&warehouse, |current| current.run_id == run_id).await;
                if let Err(error) = released {
                    tracing::warn!(%error, run_id, "could not release an abandoned run's lock");
                }
            });
        }
    }
}

/// Deletes the lock when this process holds it, for a process that abandons its runs.
pub async fn release_own(warehouse: &Warehouse) -> Result<()> {
    let host = this_host();
    let pid = std::process::id();
    delete_if_held_by(warehouse, |current| {
        current.host == host && current.pid == pid
    })
    .await
}

/// Deletes the lock when `is_holder` accepts the holder it names. Another process may have
/// taken the lock over after a long pause of this one, and its lock must stay.
async fn delete_if_held_by(
    warehouse: &Warehouse,
    is_holder: impl Fn(&LockHolder) -> bool,
) -> Result<()> {
    if read_holder(warehouse)
        .await?
        .is_some_and(|current| is_holder(&current))
    {
        delete_if_exists(warehouse.store().as_ref(), &warehouse.path(LOCK_FILE)).await?;
    }
    Ok(())
}

/// Reads the current lock holder, or `None` when the warehouse is not locked.
pub async fn read_holder(warehouse: &Warehouse) -> Result<Option<LockHolder>> {
    let path = warehouse.path(LOCK_FILE);
    match warehouse.store().get(&path).await {
        Ok(result) => {
            let bytes = result.bytes().await?;
            let holder =
                serde_json::from_slice(&bytes).map_err(|error| Error::CorruptManifest {
                    path: path.to_string(),
                    message: format!("{error}; delete it if no goalcast run is in progress"),
                })?;
            Ok(Some(holder))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

fn locked(warehouse: &Warehouse, holder: &LockHolder) -> Error {
    Error::Locked(format!(
        "warehouse {} is locked by {holder}; wait for that run to finish (a lock whose process \
         has ended is taken over automatically, and one without a heartbeat for {} minutes \
         from any host)",
        warehouse.url(),
        STALE_AFTER_SECS / 60
    ))
}

/// Refreshes the holder's heartbeat every [`HEARTBEAT_SECS`] seconds until the lock is taken
/// over or the task is aborted.
async fn heartbeat(warehouse: Warehouse, mut holder: LockHolder) {
    let path = warehouse.path(LOCK_FILE);
    let store = warehouse.store().clone();
    let mut interval = tokio::time::interval(Duration::from_secs(HEARTBEAT_SECS));
    interval.tick().await;
    loop {
        interval.tick().await;
        // Stop when another process has taken the lock over. An unreadable lock counts as
        // taken over too, so this process never overwrites a lock it cannot read.
        let still_ours = matches!(
            read_holder(&warehouse).await,
            Ok(Some(current)) if current.run_id == holder.run_id
        );
        if !still_ours {
            tracing::warn!(run_id = holder.run_id, "the warehouse lock was taken over");
            return;
        }
        holder.heartbeat_at = Utc::now();
        let Ok(bytes) = serde_json::to_vec_pretty(&holder) else {
            return;
        };
        if let Err(error) = store.put(&path, PutPayload::from(bytes)).await {
            tracing::warn!(%error, "could not refresh the warehouse lock's heartbeat");
        }
    }
}

/// Returns this machine's host name.
fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Returns whether a process with this id exists on this machine.
fn process_alive(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    if !proc.exists() {
        // Without /proc the check is impossible; rely on the heartbeat age.
        return true;
    }
    proc.join(pid.to_string()).exists()
}
