//! The warehouse: a root URL on object storage holding one folder per table.
//!
//! A warehouse is a local folder or an `s3://bucket/prefix` URL. Every table is a folder of
//! Parquet files with a `_table.json` manifest (see [`manifest`]). goalcast's own scratch space
//! is `_staging/` under the root, which no reader treats as a table.
//!
//! **Invariant:** goalcast writes only below the root, and only through [`TableWrite`], so a
//! table is replaced atomically and a failed write leaves the previous state intact.

pub mod compact;
pub mod lock;
pub mod manifest;
mod name;
mod transaction;
mod write;

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use url::Url;

use crate::error::{Error, Result};
pub use lock::RunLock;
pub use manifest::{DataFile, Manifest, PartitionColumn, PartitionType};
pub use name::{MAX_NAME_LEN, validate_name};
pub use transaction::Transaction;
pub use write::{Replace, TABLE_ZSTD_LEVEL, TableWrite, encode_parquet, parquet_writer};

/// Encodes record batches as Parquet with the fastest zstd level, for bulk writes.
pub fn encode_parquet_fast(
    schema: arrow::datatypes::SchemaRef,
    batches: &[arrow::record_batch::RecordBatch],
) -> Result<Vec<u8>> {
    encode_parquet(schema, batches, 1)
}

/// The folder under the root where writes stage their files before they commit.
pub const STAGING_DIR: &str = "_staging";

/// Age after which a write that never committed counts as abandoned and its staged files are
/// removed.
pub const ABANDONED_WRITE_HOURS: i64 = 6;

/// The default warehouse location when neither `--warehouse` nor `GOALCAST_WAREHOUSE` is set.
pub const DEFAULT_WAREHOUSE: &str = "./warehouse";

/// An opened warehouse: its root URL and the object store behind it.
#[derive(Debug, Clone)]
pub struct Warehouse {
    url: Url,
    store: Arc<dyn ObjectStore>,
    root: Path,
}

impl Warehouse {
    /// Opens the warehouse at `location`, a local folder or an `s3://bucket/prefix` URL.
    ///
    /// A local folder is created when `create` is set; otherwise it must exist. S3 credentials,
    /// region and endpoint come from the usual `AWS_*` environment variables.
    pub fn open(location: &str, create: bool) -> Result<Self> {
        let invalid = |message: String| Error::InvalidWarehouse {
            location: location.to_string(),
            message,
        };
        if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid(
                    "the URL has no bucket; use s3://bucket/prefix".into(),
                ));
            }
            let store = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|error| invalid(error.to_string()))?;
            let prefix = prefix.trim_end_matches('/');
            let url = Url::parse(&format!("s3://{bucket}/{prefix}{}", slash(prefix)))
                .map_err(|error| invalid(error.to_string()))?;
            return Ok(Warehouse {
                url,
                store: Arc::new(store),
                root: Path::from(prefix),
            });
        }
        if location.contains("://") && !location.starts_with("file://") {
            return Err(invalid(
                "unsupported URL scheme; use a local folder, file:// or s3://".into(),
            ));
        }
        let folder = std::path::PathBuf::from(location.trim_start_matches("file://"));
        if create {
            std::fs::create_dir_all(&folder)
                .map_err(|error| invalid(format!("cannot create the folder: {error}")))?;
        }
        if !folder.is_dir() {
            return Err(invalid(
                "no such folder; import or generate data into it first".into(),
            ));
        }
        let folder = folder
            .canonicalize()
            .map_err(|error| invalid(error.to_string()))?;
        let url = Url::from_directory_path(&folder)
            .map_err(|()| invalid("the folder path is not absolute".into()))?;
        let root =
            Path::from_filesystem_path(&folder).map_err(|error| invalid(error.to_string()))?;
        Ok(Warehouse {
            url,
            store: Arc::new(LocalFileSystem::new()),
            root,
        })
    }

    /// Returns the root URL, ending in `/`.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Returns the URL of the store that serves this warehouse (`file:///` or `s3://bucket`).
    pub fn store_url(&self) -> Url {
        let mut url = self.url.clone();
        url.set_path("");
        url
    }

    /// Returns the object store behind the warehouse.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Returns the local folder of the warehouse, or `None` for a remote one.
    pub fn local_folder(&self) -> Option<std::path::PathBuf> {
        self.url.to_file_path().ok()
    }

    /// Returns the store path of `relative`, a `/`-separated path below the root.
    pub fn path(&self, relative: &str) -> Path {
        relative
            .split('/')
            .filter(|part| !part.is_empty())
            .fold(self.root.clone(), |path, part| path.join(part))
    }

    /// Returns `path` relative to the root.
    pub fn relative(&self, path: &Path) -> String {
        path.prefix_match(&self.root)
            .map(|parts| {
                parts
                    .map(|part| part.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_else(|| path.to_string())
    }

    /// Returns the URL of a table's folder, ending in `/`.
    pub fn table_url(&self, table: &str) -> Url {
        self.url
            .join(&format!("{table}/"))
            .expect("a validated table name joins onto the root URL")
    }

    /// Reads the manifest of `table`, or `None` when the table does not exist.
    pub async fn manifest(&self, table: &str) -> Result<Option<Manifest>> {
        validate_name("table", table)?;
        let path = self.path(&format!("{table}/{}", manifest::MANIFEST_FILE));
        let bytes = match self.store.get(&path).await {
            Ok(result) => result.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|error| Error::CorruptManifest {
                path: path.to_string(),
                message: error.to_string(),
            })?;
        if manifest.format_version > manifest::MANIFEST_VERSION {
            return Err(Error::CorruptManifest {
                path: path.to_string(),
                message: format!(
                    "format version {} is newer than this goalcast supports ({}); upgrade goalcast",
                    manifest.format_version,
                    manifest::MANIFEST_VERSION
                ),
            });
        }
        Ok(Some(manifest))
    }

    /// Reads the manifest of `table`, failing when the table does not exist.
    pub async fn require_manifest(&self, table: &str) -> Result<Manifest> {
        self.manifest(table)
            .await?
            .ok_or_else(|| Error::TableNotFound {
                name: table.to_string(),
                warehouse: self.url.to_string(),
            })
    }

    /// Writes the manifest of `manifest.table` in one atomic put.
    pub(crate) async fn put_manifest(&self, manifest: &Manifest) -> Result<()> {
        let path = self.path(&format!("{}/{}", manifest.table, manifest::MANIFEST_FILE));
        let bytes = serde_json::to_vec_pretty(manifest)?;
        self.store.put(&path, PutPayload::from(bytes)).await?;
        Ok(())
    }

    /// Lists the names of the tables in the warehouse, sorted.
    pub async fn table_names(&self) -> Result<Vec<String>> {
        let listing = self.store.list_with_delimiter(Some(&self.root)).await?;
        let mut names = Vec::new();
        for prefix in listing.common_prefixes {
            let Some(name) = prefix.filename() else {
                continue;
            };
            if validate_name("table", name).is_err() {
                continue;
            }
            let manifest_path = prefix.clone().join(manifest::MANIFEST_FILE);
            match self.store.head(&manifest_path).await {
                Ok(_) => names.push(name.to_string()),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        names.sort();
        Ok(names)
    }

    /// Finishes commits that a crashed process left half-promoted and removes the staged files
    /// of writes abandoned more than [`ABANDONED_WRITE_HOURS`] hours ago. Every command calls
    /// this before it reads or writes tables.
    ///
    /// NOTE: a write still running in another process is safe only while it is younger than
    /// that age, because goalcast assumes one writer per warehouse at a time.
    pub async fn recover(&self) -> Result<()> {
        // A live run finishes its own commits, and rolling them forward from here would race
        // with it. So commits are only completed when no live process holds the run lock.
        if let Some(holder) = lock::read_holder(self).await?
            && holder.stale_reason(chrono::Utc::now()).is_none()
        {
            tracing::debug!(holder = %holder, "a run is in progress; skipping recovery");
            return Ok(());
        }
        for record in transaction::pending_records(self).await? {
            tracing::warn!(
                write_id = record.write_id,
                "finishing an interrupted transaction"
            );
            transaction::apply(self, record).await?;
        }
        for table in self.table_names().await? {
            if let Some(manifest) = self.manifest(&table).await?
                && manifest.pending.is_some()
            {
                tracing::warn!(
                    table,
                    write_id = manifest.write_id,
                    "finishing an interrupted commit"
                );
                write::finish_commit(self, manifest).await?;
            }
        }
        let staging = self.path(STAGING_DIR);
        let cutoff = chrono::Utc::now() - chrono::Duration::hours(ABANDONED_WRITE_HOURS);
        let mut removed = 0;
        for object in write::list_or_empty(self.store.as_ref(), &staging).await? {
            let relative = self.relative(&object.location);
            let write_id = relative.split('/').nth(1).unwrap_or_default();
            if write::write_started_before(write_id, cutoff) {
                delete_if_exists(self.store.as_ref(), &object.location).await?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(
                files = removed,
                "removed the staged files of abandoned writes"
            );
            if let Some(local) = self.local_folder() {
                write::remove_empty_folders(&local.join(STAGING_DIR), true);
            }
        }
        Ok(())
    }
}

/// Deletes `path`, treating a missing object as already deleted.
pub(crate) async fn delete_if_exists(store: &dyn ObjectStore, path: &Path) -> Result<()> {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Reads the footer metadata of the Parquet file at `path`, which is `size` bytes long.
pub(crate) async fn read_parquet_metadata(
    store: &dyn ObjectStore,
    path: &Path,
    size: u64,
) -> Result<parquet::file::metadata::ParquetMetaData> {
    let not_parquet = |message: &str| {
        Error::from(parquet::errors::ParquetError::General(format!(
            "{path}: {message}"
        )))
    };
    if size < 12 {
        return Err(not_parquet("too small to be a Parquet file"));
    }
    let tail = store.get_range(path, size - 8..size).await?;
    if &tail[4..] != b"PAR1" {
        return Err(not_parquet("missing the Parquet magic bytes"));
    }
    let footer_len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if footer_len + 12 > size {
        return Err(not_parquet("footer length exceeds the file size"));
    }
    let footer = store
        .get_range(path, size - 8 - footer_len..size - 8)
        .await?;
    Ok(parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&footer)?)
}

/// Reads the Arrow schema stored in the Parquet file at `path`.
pub(crate) async fn read_parquet_schema(
    store: &dyn ObjectStore,
    path: &Path,
    size: u64,
) -> Result<arrow::datatypes::SchemaRef> {
    let metadata = read_parquet_metadata(store, path, size).await?;
    let file = metadata.file_metadata();
    let schema =
        parquet::arrow::parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())?;
    Ok(Arc::new(schema))
}

/// A Parquet file of the warehouse, read by byte ranges, for readers that decode it directly
/// instead of through a query.
#[derive(Clone)]
pub(crate) struct StoreFile {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

impl StoreFile {
    /// Returns a reader of the file at `path` of the warehouse's store, of `size` bytes as its
    /// manifest records.
    pub(crate) fn new(store: Arc<dyn ObjectStore>, path: Path, size: u64) -> Self {
        StoreFile { store, path, size }
    }
}

impl parquet::arrow::async_reader::AsyncFileReader for StoreFile {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        Box::pin(async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|error| parquet::errors::ParquetError::External(Box::new(error)))
        })
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<Vec<bytes::Bytes>>> {
        Box::pin(async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(|error| parquet::errors::ParquetError::External(Box::new(error)))
        })
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a parquet::arrow::arrow_reader::ArrowReaderOptions>,
    ) -> futures::future::BoxFuture<
        'a,
        parquet::errors::Result<Arc<parquet::file::metadata::ParquetMetaData>>,
    > {
        Box::pin(async move {
            read_parquet_metadata(self.store.as_ref(), &self.path, self.size)
                .await
                .map(Arc::new)
                .map_err(|error| parquet::errors::ParquetError::External(Box::new(error)))
        })
    }
}

fn slash(prefix: &str) -> &'static str {
    if prefix.is_empty() { "" } else { "/" }
}
