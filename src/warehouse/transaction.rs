//! Writes to several tables that commit together or not at all.
//!
//! Each table of a transaction is staged like a single [`TableWrite`], under one shared write
//! id. The commit point is one object, `_staging/<write id>/_commit.json`, that contains every new
//! manifest. Once it exists the manifests are written and promoted one by one, and the record
//! is deleted. [`Warehouse::recover`] rolls a record that is still there forward, so a crash
//! after the commit point completes every table, and a crash before it changes none.

use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::manifest::{Manifest, PartitionColumn};
use super::write::{self, Replace, TableWrite};
use super::{STAGING_DIR, Warehouse, delete_if_exists};
use crate::error::{Error, Result};

/// File name of a transaction's commit record inside its staging folder.
pub const COMMIT_RECORD: &str = "_commit.json";

/// The commit point of a transaction: the manifest each table gets.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CommitRecord {
    pub write_id: String,
    pub tables: Vec<CommittedTable>,
}

/// One table of a commit record.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CommittedTable {
    /// Write id of the manifest this transaction replaces, `None` for a new table. Recovery
    /// applies the record only while the table is still at this state or already at the new
    /// one.
    pub previous_write_id: Option<String>,
    pub manifest: Manifest,
}

/// A set of table writes that commit atomically.
#[derive(Debug)]
pub struct Transaction {
    warehouse: Warehouse,
    write_id: String,
    writes: Vec<(TableWrite, Replace)>,
}

impl Transaction {
    /// Starts an empty transaction.
    pub fn begin(warehouse: &Warehouse) -> Self {
        Transaction {
            warehouse: warehouse.clone(),
            write_id: write::new_write_id(),
            writes: Vec::new(),
        }
    }

    /// Returns a write to `table` that stages its files in this transaction; hand it back with
    /// [`Transaction::add`] once its files are staged.
    pub fn table(
        &self,
        table: &str,
        partition_columns: Vec<PartitionColumn>,
    ) -> Result<TableWrite> {
        super::validate_name("table", table)?;
        Ok(TableWrite::with_write_id(
            &self.warehouse,
            table,
            partition_columns,
            self.write_id.clone(),
        ))
    }

    /// Adds a staged write; it commits with the others, superseding what `replace` selects.
    pub fn add(&mut self, write: TableWrite, replace: Replace) -> Result<()> {
        if self
            .writes
            .iter()
            .any(|(other, _)| other.table() == write.table())
        {
            return Err(Error::InvalidArgument(format!(
                "table {} is written twice in one transaction",
                write.table()
            )));
        }
        self.writes.push((write, replace));
        Ok(())
    }

    /// Returns whether no write has been added.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Commits every added write: all tables change, or none does.
    pub async fn commit(self) -> Result<Vec<Manifest>> {
        if self.writes.is_empty() {
            return Ok(Vec::new());
        }
        let record = self.commit_point().await?;
        let manifests = apply(&self.warehouse, record).await?;
        Ok(manifests)
    }

    /// Writes the commit record and stops, as a process that crashes right after its commit
    /// point would. For tests of [`Warehouse::recover`].
    #[doc(hidden)]
    pub async fn commit_point_only(self) -> Result<()> {
        self.commit_point().await.map(|_| ())
    }

    async fn commit_point(&self) -> Result<CommitRecord> {
        let mut tables = Vec::new();
        for (write, replace) in &self.writes {
            let previous = self.warehouse.manifest(write.table()).await?;
            tables.push(CommittedTable {
                previous_write_id: previous.map(|manifest| manifest.write_id),
                manifest: write.prepare(replace.clone()).await?,
            });
        }
        let record = CommitRecord {
            write_id: self.write_id.clone(),
            tables,
        };
        let path = self.warehouse.path(&record_path(&self.write_id));
        self.warehouse
            .store()
            .put(&path, PutPayload::from(serde_json::to_vec_pretty(&record)?))
            .await?;
        tracing::debug!(write_id = self.write_id, "committed transaction");
        Ok(record)
    }

    /// Removes the staged files of every write of the transaction.
    pub async fn abort(self) -> Result<()> {
        let staging = self
            .warehouse
            .path(&format!("{STAGING_DIR}/{}", self.write_id));
        let store = self.warehouse.store();
        for object in write::list_or_empty(store.as_ref(), &staging).await? {
            delete_if_exists(store.as_ref(), &object.location).await?;
        }
        if let Some(local) = self.warehouse.local_folder() {
            write::remove_empty_folders(&local.join(STAGING_DIR), true);
        }
        Ok(())
    }
}

fn record_path(write_id: &str) -> String {
    format!("{STAGING_DIR}/{write_id}/{COMMIT_RECORD}")
}

/// Writes and promotes every manifest of a commit record, then deletes the record. Tables that
/// have moved on to a third state since the record was written are left alone.
pub(super) async fn apply(warehouse: &Warehouse, record: CommitRecord) -> Result<Vec<Manifest>> {
    let mut manifests = Vec::new();
    for table in record.tables {
        let name = table.manifest.table.clone();
        let current = warehouse.manifest(&name).await?;
        let current_id = current.as_ref().map(|manifest| manifest.write_id.clone());
        let manifest = if current_id.as_deref() == Some(record.write_id.as_str()) {
            // Already written by an earlier attempt; finish it if it is still pending.
            current.expect("the current manifest exists")
        } else if current_id == table.previous_write_id {
            warehouse.put_manifest(&table.manifest).await?;
            table.manifest
        } else {
            tracing::warn!(
                table = name,
                write_id = record.write_id,
                "skipping a table that changed after the transaction's commit point"
            );
            continue;
        };
        manifests.push(write::finish_commit(warehouse, manifest).await?);
    }
    delete_if_exists(
        warehouse.store().as_ref(),
        &warehouse.path(&record_path(&record.write_id)),
    )
    .await?;
    if let Some(local) = warehouse.local_folder() {
        write::remove_empty_folders(&local.join(STAGING_DIR), true);
    }
    Ok(manifests)
}

/// Reads the commit records left in the staging area, oldest first.
pub(super) async fn pending_records(warehouse: &Warehouse) -> Result<Vec<CommitRecord>> {
    let staging = warehouse.path(STAGING_DIR);
    let mut records = Vec::new();
    for object in write::list_or_empty(warehouse.store().as_ref(), &staging).await? {
        if object.location.filename() != Some(COMMIT_RECORD) {
            continue;
        }
        let bytes = warehouse
            .store()
            .get(&object.location)
            .await?
            .bytes()
            .await?;
        let record: CommitRecord =
            serde_json::from_slice(&bytes).map_err(|error| Error::CorruptManifest {
                path: object.location.to_string(),
                message: format!(
                    "{error}; a commit record is written whole, so this one was damaged after \
                     the fact. With no goalcast run in progress, move its folder out of \
                     _staging to drop that transaction, and check the tables it lists"
                ),
            })?;
        records.push(record);
    }
    records.sort_by(|a, b| a.write_id.cmp(&b.write_id));
    Ok(records)
}
