//! Segments: SQL queries that select users, evaluated at a point in time.
//!
//! A segment is a file `<name>.sql` in the segments folder (default `sql/segments`) whose query
//! returns a `user_id` column. It may use the parameter `$as_of`, the evaluation time, so that
//! "in the last 90 days" is relative to a goal's start. `all_users` is built in.

use std::path::{Path, PathBuf};

use datafusion::prelude::{DataFrame, SessionContext};

use crate::error::{Error, Result};
use crate::models::timestamp_parameter;
use crate::warehouse::validate_name;

/// The folder searched for segment files when none is given.
pub const DEFAULT_SEGMENTS_DIR: &str = "sql/segments";

/// The built-in segment of every user with an event before the evaluation time.
pub const ALL_USERS: &str = "all_users";

const ALL_USERS_SQL: &str = include_str!("../sql/segments/all_users.sql");

/// A segment definition.
#[derive(Debug, Clone)]
pub struct Segment {
    pub name: String,
    pub sql: String,
    /// The file it was read from; `None` for the built-in segment.
    pub path: Option<PathBuf>,
}

/// The segments available from one folder plus the built-in ones.
#[derive(Debug, Clone)]
pub struct SegmentCatalog {
    folder: PathBuf,
}

impl SegmentCatalog {
    /// Creates a catalog over `folder`, which need not exist.
    pub fn new(folder: impl Into<PathBuf>) -> Self {
        SegmentCatalog {
            folder: folder.into(),
        }
    }

    /// Returns the folder segment files are read from.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// Lists the names of every segment, sorted, built-in ones included.
    pub fn names(&self) -> Result<Vec<String>> {
        let mut names = vec![ALL_USERS.to_string()];
        if let Ok(entries) = std::fs::read_dir(&self.folder) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|extension| extension == "sql")
                    && let Some(stem) = path.file_stem().and_then(|stem| stem.to_str())
                    && validate_name("segment", stem).is_ok()
                    && stem != ALL_USERS
                {
                    names.push(stem.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Loads the segment `name`, failing with the list of segments when it does not exist.
    pub fn load(&self, name: &str) -> Result<Segment> {
        validate_name("segment", name)?;
        if name == ALL_USERS {
            return Ok(Segment {
                name: name.to_string(),
                sql: ALL_USERS_SQL.to_string(),
                path: None,
            });
        }
        let path = self.folder.join(format!("{name}.sql"));
        match std::fs::read_to_string(&path) {
            Ok(sql) => Ok(Segment {
                name: name.to_string(),
                sql,
                path: Some(path),
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::InvalidArgument(format!(
                    "segment {name:?} not found in {}; available segments: {}",
                    self.folder.display(),
                    self.names()?.join(", ")
                )))
            }
            Err(error) => Err(Error::input(&path, format!("cannot read: {error}"))),
        }
    }
}

impl Segment {
    /// Returns whether this is the built-in `all_users`, every user with an event before the time.
    pub fn is_all_users(&self) -> bool {
        self.path.is_none() && self.name == ALL_USERS
    }

    /// Plans the segment's distinct user ids as of `as_of_micros` (UTC microseconds).
    pub async fn users(&self, ctx: &SessionContext, as_of_micros: i64) -> Result<DataFrame> {
        let body = self.sql.trim().trim_end_matches(';');
        let wrapped = format!(
            "SELECT DISTINCT CAST(user_id AS VARCHAR) AS user_id FROM ({body}) AS segment \
             WHERE user_id IS NOT NULL"
        );
        let dataframe = ctx.sql(&wrapped).await.map_err(|error| self.error(error))?;
        let dataframe = if body.contains("$as_of") {
            let values = datafusion::common::ParamValues::Map(
                [(
                    "as_of".to_string(),
                    timestamp_parameter(as_of_micros).into(),
                )]
                .into_iter()
                .collect(),
            );
            dataframe
                .with_param_values(values)
                .map_err(|error| self.error(error))?
        } else {
            dataframe
        };
        Ok(dataframe)
    }

    fn error(&self, error: datafusion::error::DataFusionError) -> Error {
        let source = match &self.path {
            Some(path) => path.display().to_string(),
            None => format!("built-in segment {}", self.name),
        };
        Error::InvalidArgument(format!(
            "segment {:?} ({source}) failed to plan: {error}; a segment query must return a \
             user_id column and may use $as_of",
            self.name
        ))
    }
}
