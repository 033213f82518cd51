//! Atomic table writes: stage, commit the manifest, promote.
//!
//! A write puts its Parquet files under `_staging/<write id>/<table>/`, where no reader looks.
//! [`TableWrite::commit`] then writes a manifest that lists the new file set together with the
//! moves and deletions still to apply (the commit point), applies them, and rewrites the
//! manifest without them. A crash before the commit point leaves the old manifest and old files
//! untouched; a crash after it is rolled forward by [`Warehouse::recover`].

use std::collections::BTreeSet;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use url::Url;

use super::manifest::{
    DataFile, MANIFEST_VERSION, Manifest, PartitionColumn, Pending, partition_of,
};
use super::{STAGING_DIR, Warehouse, delete_if_exists, validate_name};
use crate::error::{Error, Result};

/// The committed files that a write supersedes.
#[derive(Debug, Clone)]
pub enum Replace {
    /// Every file of the table.
    All,
    /// The files in these partition folders (e.g. `event_date=1997-01-01`), plus any
    /// partition that the write itself contains.
    Partitions(BTreeSet<String>),
    /// Exactly these committed files, by path relative to the table. The commit fails when one
    /// of them is no longer in the manifest, because another write replaced it meanwhile.
    Files(BTreeSet<String>),
}

/// A write in progress to one table.
#[derive(Debug)]
pub struct TableWrite {
    warehouse: Warehouse,
    table: String,
    write_id: String,
    partition_columns: Vec<PartitionColumn>,
}

impl TableWrite {
    /// Starts a write to `table`, whose files are partitioned by `partition_columns`.
    pub fn begin(
        warehouse: &Warehouse,
        table: &str,
        partition_columns: Vec<PartitionColumn>,
    ) -> Result<Self> {
        validate_name("table", table)?;
        let write_id = new_write_id();
        Ok(Self::with_write_id(
            warehouse,
            table,
            partition_columns,
            write_id,
        ))
    }

    pub(super) fn with_write_id(
        warehouse: &Warehouse,
        table: &str,
        partition_columns: Vec<PartitionColumn>,
        write_id: String,
    ) -> Self {
        TableWrite {
            warehouse: warehouse.clone(),
            table: table.to_string(),
            write_id,
            partition_columns,
        }
    }

    /// Returns the id of this write, also used in file names.
    pub fn write_id(&self) -> &str {
        &self.write_id
    }

    /// Returns the staging folder, relative to the warehouse root.
    fn staging_relative(&self) -> String {
        format!("{STAGING_DIR}/{}/{}", self.write_id, self.table)
    }

    /// Returns the URL of the staging folder, for DataFusion writers; it ends in `/`.
    pub fn staging_url(&self) -> Url {
        self.warehouse
            .url()
            .join(&format!("{}/", self.staging_relative()))
            .expect("the staging path joins onto the root URL")
    }

    /// Writes `batches` as one Parquet file at `relative` inside the staging folder.
    pub async fn put_batches(
        &self,
        relative: &str,
        schema: SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<()> {
        self.put_bytes(relative, encode_parquet(schema, batches, TABLE_ZSTD_LEVEL)?)
            .await
    }

    /// Stages `batches` like [`TableWrite::put_batches`] unless the partition of `relative`
    /// already contains one committed file with exactly these bytes. Returns whether it staged the
    /// file, so that a rerun that computes the same rows rewrites nothing.
    pub async fn put_batches_if_changed(
        &self,
        relative: &str,
        schema: SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<bool> {
        let bytes = encode_parquet(schema, batches, TABLE_ZSTD_LEVEL)?;
        let partition = partition_of(relative);
        let committed: Vec<DataFile> = match self.warehouse.manifest(&self.table).await? {
            Some(manifest) => manifest
                .files
                .into_iter()
                .filter(|file| file.partition == partition)
                .collect(),
            None => Vec::new(),
        };
        if let [file] = committed.as_slice()
            && file.bytes == bytes.len() as u64
        {
            let path = self
                .warehouse
                .path(&format!("{}/{}", self.table, file.path));
            let stored = self.warehouse.store().get(&path).await?.bytes().await?;
            if stored == bytes.as_slice() {
                return Ok(false);
            }
        }
        self.put_bytes(relative, bytes).await?;
        Ok(true)
    }

    /// Stages an encoded Parquet file at `relative` inside the staging folder.
    pub async fn put_bytes(&self, relative: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self
            .warehouse
            .path(&format!("{}/{relative}", self.staging_relative()));
        self.warehouse
            .store()
            .put(&path, PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// Commits the staged files, superseding the committed files that `replace` selects.
    pub async fn commit(self, replace: Replace) -> Result<Manifest> {
        let manifest = self.commit_point(replace).await?;
        finish_commit(&self.warehouse, manifest).await
    }

    /// Writes the commit point and stops before promoting the staged files, as a process that
    /// crashes right after committing would. For tests of [`Warehouse::recover`].
    #[doc(hidden)]
    pub async fn commit_point_only(self, replace: Replace) -> Result<Manifest> {
        self.commit_point(replace).await
    }

    /// Writes the manifest that lists the new file set and the work still pending.
    async fn commit_point(&self, replace: Replace) -> Result<Manifest> {
        let manifest = self.prepare(replace).await?;
        self.warehouse.put_manifest(&manifest).await?;
        tracing::debug!(
            table = self.table,
            write_id = self.write_id,
            "committed manifest"
        );
        Ok(manifest)
    }

    /// Returns the table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Builds the manifest that lists the new file set and the work still pending, without
    /// writing it.
    pub(super) async fn prepare(&self, replace: Replace) -> Result<Manifest> {
        let warehouse = &self.warehouse;
        let store = warehouse.store();
        let staging = warehouse.path(&self.staging_relative());
        let staged: Vec<_> = list_or_empty(store.as_ref(), &staging).await?;

        let mut new_files = Vec::new();
        let mut moves = Vec::new();
        for object in staged {
            let from = warehouse.relative(&object.location);
            let inner = from
                .strip_prefix(&format!("{}/", self.staging_relative()))
                .unwrap_or(&from)
                .to_string();
            if !inner.ends_with(".parquet") {
                continue;
            }
            let inner = committed_name(&inner, &self.write_id);
            let metadata =
                super::read_parquet_metadata(store.as_ref(), &object.location, object.size).await?;
            let rows = metadata.file_metadata().num_rows() as u64;
            new_files.push(DataFile {
                partition: partition_of(&inner),
                path: inner.clone(),
                rows,
                bytes: object.size,
            });
            moves.push((from, inner));
        }

        let previous = warehouse.manifest(&self.table).await?;
        let previous_files = previous.map(|manifest| manifest.files).unwrap_or_default();
        let superseded: Box<dyn Fn(&DataFile) -> bool> = match &replace {
            Replace::All => Box::new(|_| true),
            Replace::Partitions(partitions) => {
                let mut partitions = partitions.clone();
                partitions.extend(new_files.iter().map(|file| file.partition.clone()));
                Box::new(move |file: &DataFile| partitions.contains(&file.partition))
            }
            Replace::Files(paths) => {
                if let Some(gone) = paths
                    .iter()
                    .find(|path| !previous_files.iter().any(|file| &file.path == *path))
                {
                    return Err(Error::Locked(format!(
                        "file {gone} of table {} was replaced by another write while this one \
                         ran; run the command again",
                        self.table
                    )));
                }
                let paths = paths.clone();
                Box::new(move |file: &DataFile| paths.contains(&file.path))
            }
        };
        let (deleted, kept): (Vec<DataFile>, Vec<DataFile>) = previous_files
            .into_iter()
            .partition(|file| superseded(file));

        let mut files = kept;
        files.extend(new_files);
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let manifest = Manifest {
            format_version: MANIFEST_VERSION,
            table: self.table.clone(),
            partition_columns: self.partition_columns.clone(),
            write_id: self.write_id.clone(),
            committed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            files,
            pending: Some(Pending {
                moves,
                deletes: deleted.into_iter().map(|file| file.path).collect(),
            }),
        };
        Ok(manifest)
    }

    /// Removes the staged files of a write that will not be committed.
    pub async fn abort(self) -> Result<()> {
        let staging = self
            .warehouse
            .path(&format!("{STAGING_DIR}/{}", self.write_id));
        let store = self.warehouse.store();
        for object in list_or_empty(store.as_ref(), &staging).await? {
            delete_if_exists(store.as_ref(), &object.location).await?;
        }
        if let Some(local) = self.warehouse.local_folder() {
            remove_empty_folders(&local.join(STAGING_DIR), true);
        }
        Ok(())
    }
}

/// Returns a new write id: the UTC start time, then random characters.
pub(super) fn new_write_id() -> String {
    format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Applies the pending moves and deletions of a committed manifest, then clears them.
///
/// Every step tolerates having been done already, so a crash at any point can be rolled
/// forward by calling this again.
pub(super) async fn finish_commit(
    warehouse: &Warehouse,
    mut manifest: Manifest,
) -> Result<Manifest> {
    let Some(pending) = manifest.pending.take() else {
        return Ok(manifest);
    };
    let store = warehouse.store();
    let table = manifest.table.clone();
    let new_paths: BTreeSet<&str> = pending.moves.iter().map(|(_, to)| to.as_str()).collect();
    for (from, to) in &pending.moves {
        let from_path = warehouse.path(from);
        let to_path = warehouse.path(&format!("{table}/{to}"));
        match store.rename(&from_path, &to_path).await {
            Ok(()) => {}
            Err(object_store::Error::NotFound { .. }) => {
                // Already moved by an earlier attempt; the target must be there.
                store
                    .head(&to_path)
                    .await
                    .map_err(|_| Error::CorruptManifest {
                        path: format!("{table}/_table.json"),
                        message: format!("staged file {from} and its target {to} are both missing"),
                    })?;
            }
            Err(error) => return Err(error.into()),
        }
    }
    for old in &pending.deletes {
        // A new file may reuse the name of a superseded one; the move above replaced it.
        if !new_paths.contains(old.as_str()) {
            delete_if_exists(store.as_ref(), &warehouse.path(&format!("{table}/{old}"))).await?;
        }
    }
    warehouse.put_manifest(&manifest).await?;
    if let Some(local) = warehouse.local_folder() {
        remove_empty_folders(&local.join(STAGING_DIR), true);
        remove_empty_folders(&local.join(&table), false);
    }
    Ok(manifest)
}

/// The zstd level of committed table files.
pub const TABLE_ZSTD_LEVEL: i32 = 3;

/// Returns a writer of one Parquet file into memory, compressed with zstd at `level` (1 to 22).
pub fn parquet_writer(schema: SchemaRef, level: i32) -> Result<ArrowWriter<Vec<u8>>> {
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(level)?))
        .build();
    Ok(ArrowWriter::try_new(Vec::new(), schema, Some(properties))?)
}

/// Encodes record batches as one Parquet file, compressed with zstd at `level` (1 to 22).
pub fn encode_parquet(schema: SchemaRef, batches: &[RecordBatch], level: i32) -> Result<Vec<u8>> {
    let mut writer = parquet_writer(schema, level)?;
    for batch in batches {
        writer.write(batch)?;
    }
    Ok(writer.into_inner()?)
}

/// Returns the name a staged file gets in the table: its staged name with the write id added
/// before `.parquet`, unless the name contains the id already.
///
/// No write reuses the name of a committed file, so a reader that listed a table before a
/// commit either finds the bytes it expects or finds no file, never another file's bytes.
fn committed_name(staged: &str, write_id: &str) -> String {
    let name = staged.rsplit('/').next().unwrap_or(staged);
    if name.contains(write_id) {
        return staged.to_string();
    }
    let stem = staged.strip_suffix(".parquet").unwrap_or(staged);
    format!("{stem}-{write_id}.parquet")
}

/// Returns whether the write `write_id` (which starts with its UTC start time) began before
/// `cutoff`; ids that do not parse count as old.
pub(super) fn write_started_before(write_id: &str, cutoff: chrono::DateTime<chrono::Utc>) -> bool {
    let started = write_id
        .get(..15)
        .and_then(|text| chrono::NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%S").ok());
    match started {
        Some(started) => started.and_utc() < cutoff,
        None => true,
    }
}

pub(crate) async fn list_or_empty(
    store: &dyn ObjectStore,
    prefix: &object_store::path::Path,
) -> Result<Vec<object_store::ObjectMeta>> {
    match store.list(Some(prefix)).try_collect().await {
        Ok(objects) => Ok(objects),
        Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
        Err(error) => Err(error.into()),
    }
}

/// Removes empty folders below `folder`, bottom up, and `folder` itself when `remove_self` is
/// set and it ends up empty. Errors are ignored because an empty folder left behind is harmless.
pub(super) fn remove_empty_folders(folder: &std::path::Path, remove_self: bool) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|kind| kind.is_dir()).unwrap_or(false) {
            remove_empty_folders(&entry.path(), true);
        }
    }
    if remove_self {
        let _ = std::fs::remove_dir(folder);
    }
}
