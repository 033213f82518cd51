//! Table listings taken from manifests, so that a query reads one committed state of a table.
//!
//! DataFusion finds a listing table's files by listing its folder. During a commit that folder
//! briefly contains both the superseded and the new files, so a query could read both.
//! [`Snapshots`] takes the place of DataFusion's listing cache: it returns the files that the
//! manifest listed when the table was registered, and makes no call to the object store.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use datafusion::common::TableReference;
use datafusion::execution::cache::cache_manager::CachedFileList;
use datafusion::execution::cache::{Cache, CacheEntryInfo, CacheValue, TableScopedPath};
use object_store::ObjectMeta;

use crate::warehouse::{Manifest, Warehouse};

/// The file lists of the registered tables, keyed by table name and folder.
#[derive(Debug, Default)]
pub struct Snapshots {
    tables: RwLock<HashMap<TableScopedPath, CachedFileList>>,
}

/// Returns the listing key and file list of `manifest`'s table: the files the manifest lists.
pub fn listing(warehouse: &Warehouse, manifest: &Manifest) -> (TableScopedPath, CachedFileList) {
    // Every file of one commit shares its time, and each commit changes it, which is what
    // DataFusion's metadata caches compare besides the size.
    let last_modified = DateTime::parse_from_rfc3339(&manifest.committed_at)
        .map(|time| time.with_timezone(&Utc))
        .unwrap_or_default();
    let files = manifest
        .files
        .iter()
        .map(|file| ObjectMeta {
            location: warehouse.path(&format!("{}/{}", manifest.table, file.path)),
            last_modified,
            size: file.bytes,
            e_tag: None,
            version: None,
        })
        .collect();
    let key = TableScopedPath {
        table: Some(TableReference::bare(manifest.table.as_str())),
        path: warehouse.path(&manifest.table),
    };
    (key, CachedFileList::new(files))
}

type Entries = HashMap<TableScopedPath, CachedFileList>;

impl Snapshots {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        self.tables
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        self.tables
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl Cache<TableScopedPath, CachedFileList> for Snapshots {
    fn get(&self, key: &TableScopedPath) -> Option<CachedFileList> {
        self.read().get(key).cloned()
    }

    /// Keeps the listings of named tables only, which `register_table` sets from manifests.
    /// Other folders are listed afresh each time.
    fn put(&self, key: &TableScopedPath, value: CachedFileList) -> Option<CachedFileList> {
        key.table.as_ref()?;
        self.write().insert(key.clone(), value)
    }

    fn remove(&self, key: &TableScopedPath) -> Option<CachedFileList> {
        self.write().remove(key)
    }

    fn contains_key(&self, key: &TableScopedPath) -> bool {
        self.read().contains_key(key)
    }

    fn len(&self) -> usize {
        self.read().len()
    }

    fn clear(&self) {
        self.write().clear();
    }

    fn name(&self) -> String {
        "goalcast manifest snapshots".to_string()
    }

    fn cache_limit(&self) -> usize {
        usize::MAX
    }

    fn update_cache_limit(&self, _limit: usize) {}

    fn cache_ttl(&self) -> Option<Duration> {
        None
    }

    fn update_cache_ttl(&self, _ttl: Option<Duration>) {}

    fn drop_table_entries(&self, table_ref: &TableReference) -> datafusion::common::Result<()> {
        self.write()
            .retain(|key, _| key.table.as_ref() != Some(table_ref));
        Ok(())
    }

    fn list_entries(
        &self,
    ) -> datafusion::common::HashMap<TableScopedPath, CacheEntryInfo<CachedFileList>> {
        self.read()
            .iter()
            .map(|(key, value)| {
                let info = CacheEntryInfo {
                    value: value.clone(),
                    size_bytes: value.size(),
                    hits: 0,
                    expires: None,
                };
                (key.clone(), info)
            })
            .collect()
    }
}
