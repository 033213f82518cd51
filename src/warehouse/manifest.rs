//! The per-table manifest: the commit point of every table write.
//!
//! Each table folder contains `_table.json` beside its Parquet files. Writing that one object is
//! atomic on every supported store (the local store writes a temporary file and renames it, S3
//! replaces objects whole), so the manifest is what makes a table write atomic. While a write
//! is being promoted, `pending` lists the file moves and deletions still to apply. Any later
//! goalcast command finishes them before it reads the table.

use serde::{Deserialize, Serialize};

/// File name of a table's manifest inside its folder.
pub const MANIFEST_FILE: &str = "_table.json";

/// The current manifest format; readers reject newer ones.
pub const MANIFEST_VERSION: u32 = 1;

/// The committed state of one table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    pub table: String,
    /// Hive partition columns, outermost first.
    pub partition_columns: Vec<PartitionColumn>,
    /// Id of the write that produced this state.
    pub write_id: String,
    /// Commit time, RFC 3339 in UTC.
    pub committed_at: String,
    /// Data files, with paths relative to the table folder, sorted by path.
    pub files: Vec<DataFile>,
    /// Moves and deletions that the commit still has to apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
}

/// A Hive partition column and its SQL type.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PartitionColumn {
    pub name: String,
    pub data_type: PartitionType,
}

/// The types a partition column can have.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PartitionType {
    Date,
    Utf8,
    Int64,
}

/// One Parquet file of a table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DataFile {
    /// Path relative to the table folder, e.g.
    /// `event_date=1997-01-01/part-0-20261205T021038-1a2b3c4d.parquet`.
    pub path: String,
    /// Partition folder the file lives in (`event_date=1997-01-01`), empty when unpartitioned.
    pub partition: String,
    pub rows: u64,
    pub bytes: u64,
}

/// Work left between a commit and its completion.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    /// Staged file (relative to the warehouse root) and its final path (relative to the table).
    pub moves: Vec<(String, String)>,
    /// Superseded files, relative to the table folder.
    pub deletes: Vec<String>,
}

impl Manifest {
    /// Returns the total row count of the committed files.
    pub fn row_count(&self) -> u64 {
        self.files.iter().map(|file| file.rows).sum()
    }

    /// Returns the total size in bytes of the committed files.
    pub fn byte_count(&self) -> u64 {
        self.files.iter().map(|file| file.bytes).sum()
    }
}

/// Returns the partition folder of a path relative to the table, or "" when it has none.
pub fn partition_of(relative_path: &str) -> String {
    let folders: Vec<&str> = relative_path.split('/').collect();
    let partition_folders: Vec<&str> = folders[..folders.len().saturating_sub(1)]
        .iter()
        .copied()
        .filter(|folder| folder.contains('='))
        .collect();
    partition_folders.join("/")
}
