//! The library's error type.
//!
//! Each variant names what failed and on which value. The CLI prints the whole chain, so the
//! messages here stay short and leave the hint about what to do next in the variant text.

use std::path::PathBuf;

/// A goalcast library error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A table, segment or goal name that is not a plain lower-case identifier.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        kind: &'static str,
        name: String,
        reason: &'static str,
    },

    /// A warehouse location that cannot be opened.
    #[error("invalid warehouse {location:?}: {message}")]
    InvalidWarehouse { location: String, message: String },

    /// A table that the warehouse does not contain.
    #[error(
        "table {name:?} not found in warehouse {warehouse}; run `goalcast tables` to list the tables"
    )]
    TableNotFound { name: String, warehouse: String },

    /// A table manifest that cannot be parsed or contradicts the files beside it.
    #[error("corrupt manifest {path}: {message}")]
    CorruptManifest { path: String, message: String },

    /// An input file that cannot be imported as a whole.
    #[error("{}: {message}", path.display())]
    Input { path: PathBuf, message: String },

    /// A command-line or configuration value that is out of range or malformed.
    #[error("{0}")]
    InvalidArgument(String),

    /// A SQL statement that `goalcast sql` does not run because it would write.
    #[error("{0}")]
    ReadOnly(String),

    /// Another run holds the warehouse's run lock.
    #[error("{0}")]
    Locked(String),

    /// A failure injected by a test between the steps of a run.
    #[error("injected failure after step {0}")]
    Injected(String),

    /// A report chart that plotters failed to draw.
    #[error("failed to draw the {chart} chart: {message}")]
    Chart {
        chart: &'static str,
        message: String,
    },

    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),

    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),

    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),

    #[error(transparent)]
    ObjectStore(#[from] object_store::Error),

    #[error(transparent)]
    Io(#[from] std::io::Error),

    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Builds an [`Error::Input`] for `path`.
    pub fn input(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Input {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Returns the path of the warehouse file whose absence caused this error, if a file that
    /// a query had planned to read was missing.
    ///
    /// A commit deletes the files it supersedes, and a query that started before the commit
    /// may still plan to read them. Such a query succeeds when run again.
    pub fn missing_file(&self) -> Option<String> {
        if let Error::ObjectStore(object_store::Error::NotFound { path, .. }) = self {
            return Some(path.clone());
        }
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(error) = cause {
            if let Some(object_store::Error::NotFound { path, .. }) =
                error.downcast_ref::<object_store::Error>()
            {
                return Some(path.clone());
            }
            cause = error.source();
        }
        None
    }
}
