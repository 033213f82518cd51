//! One pass over a goal's predictions: its members per bucket, and new performers and goal
//! events per bucket, arm and day.
//!
//! `sql/nightly/event_days.sql` lists the goal events with their user and day, sorted by user
//! id. The goal's predictions are stored sorted by user id too, so one pass over the predictions
//! finds the bucket of every performer by comparing neighbouring ids, instead of looking each of
//! the goal's members up in a hash table. Users outside the target group have no prediction and
//! are skipped. The pass reads the Parquet files directly, with `bucket` as dictionary keys, so
//! the bucket names of the members without events are never copied out.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Date32Type, Field, Int32Type, Schema};
use chrono::NaiveDate;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;

use crate::error::{Error, Result};
use crate::models::{self, SqlModel, float_column, text_column, timestamp_parameter};
use crate::warehouse::{Manifest, StoreFile, Warehouse};

pub(super) const EVENT_DAYS: SqlModel = SqlModel {
    path: "sql/nightly/event_days.sql",
    sql: include_str!("../../sql/nightly/event_days.sql"),
};

/// Members of one bucket and the sum of their predicted probabilities.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct BucketTotal {
    pub bucket: String,
    pub users: i64,
    pub expected: f64,
}

/// New performers and goal events of the members of one bucket and arm on one day.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Activity {
    pub bucket: String,
    pub arm: String,
    pub day: NaiveDate,
    pub new_performers: i64,
    pub events: i64,
}

/// Counts from one pass over a goal's predictions.
pub(super) struct GoalPass {
    pub buckets: Vec<BucketTotal>,
    pub activity: Vec<Activity>,
}

/// The window of goal events that a pass counts, with days in a time zone.
pub(super) struct Window<'a> {
    pub zone_name: &'a str,
    pub start_micros: i64,
    /// End of the window, exclusive.
    pub through_micros: i64,
}

/// Counts the members of goal `goal_id` per bucket and their activity in `window`, reading the
/// goal's files in `predictions` (the manifest the run started with). `goal_events` must be
/// registered for the goal.
pub(super) async fn count_goal(
    ctx: &SessionContext,
    warehouse: &Warehouse,
    predictions: &Manifest,
    goal_id: i64,
    window: &Window<'_>,
) -> Result<GoalPass> {
    let sql = EVENT_DAYS.sql.replace("{zone}", window.zone_name);
    let rows = models::dataframe_from_text(
        ctx,
        &sql,
        &[
            ("goal_id", ScalarValue::Int64(Some(goal_id))),
            ("start", timestamp_parameter(window.start_micros)),
            ("through", timestamp_parameter(window.through_micros)),
        ],
    )
    .await?;
    let schema = rows.schema().inner().clone();
    let event_days = Arc::new(EventDays::new(&concat_batches(
        &schema,
        &rows.collect().await?,
    )?)?);

    let parts = prediction_parts(warehouse, predictions, goal_id).await?;
    // The parts run in parallel, and each walks its rows in stored order.
    let counted: Vec<Counts> = futures::stream::iter(parts.into_iter().map(|part| {
        let event_days = event_days.clone();
        async move {
            tokio::spawn(count_part(part, event_days))
                .await
                .map_err(|error| internal(&format!("counting goal {goal_id}: {error}")))?
        }
    }))
    .buffered(std::thread::available_parallelism().map_or(2, usize::from))
    .try_collect()
    .await?;

    let mut buckets: BTreeMap<String, (i64, f64)> = BTreeMap::new();
    let mut activity: BTreeMap<(String, String, i32), (i64, i64)> = BTreeMap::new();
    for counts in counted {
        for (index, name) in counts.buckets.iter().enumerate() {
            let total = buckets.entry(name.clone()).or_default();
            total.0 += counts.members[index].0;
            total.1 += counts.members[index].1;
        }
        for ((bucket, arm, day), (new_performers, events)) in counts.cells {
            let cell = activity
                .entry((
                    counts.buckets[bucket].clone(),
                    event_days.arm_names[arm].clone(),
                    day,
                ))
                .or_default();
            cell.0 += new_performers;
            cell.1 += events;
        }
    }
    let buckets = buckets
        .into_iter()
        .map(|(bucket, (users, expected))| BucketTotal {
            bucket,
            users,
            expected,
        })
        .collect();
    let activity = activity
        .into_iter()
        .map(|((bucket, arm, day), (new_performers, events))| {
            let day = Date32Type::to_naive_date_opt(day)
                .ok_or_else(|| internal(&format!("day {day} is out of range")))?;
            Ok(Activity {
                bucket,
                arm,
                day,
                new_performers,
                events,
            })
        })
        .collect::<Result<_>>()?;
    Ok(GoalPass { buckets, activity })
}

/// A run of row groups of one predictions file, read in order.
struct Part {
    builder: ParquetRecordBatchStreamBuilder<StoreFile>,
    row_groups: Vec<usize>,
    path: String,
}

/// Splits the files of goal `goal_id` in `predictions` into runs of row groups, two per file
/// when it has two row groups or more, so that both cores read a one-file goal.
async fn prediction_parts(
    warehouse: &Warehouse,
    predictions: &Manifest,
    goal_id: i64,
) -> Result<Vec<Part>> {
    let partition = format!("goal_id={goal_id}");
    let mut parts = Vec::new();
    for file in predictions
        .files
        .iter()
        .filter(|file| file.partition == partition)
    {
        let path = format!("{}/{}", predictions.table, file.path);
        let in_file = |error: Error| unreadable(&path, error);
        let mut reader =
            StoreFile::new(warehouse.store().clone(), warehouse.path(&path), file.bytes);
        let metadata = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new())
            .await
            .map_err(|error| in_file(error.into()))?;
        // Bucket names as dictionary keys: the pass looks a name up only for performers.
        let fields: Vec<Field> = metadata
            .schema()
            .fields()
            .iter()
            .map(|field| match field.name().as_str() {
                "bucket" => Field::new(
                    "bucket",
                    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                    field.is_nullable(),
                ),
                _ => field.as_ref().clone(),
            })
            .collect();
        let options = ArrowReaderOptions::new().with_schema(Arc::new(Schema::new(fields)));
        let metadata = ArrowReaderMetadata::try_new(metadata.metadata().clone(), options)
            .map_err(|error| in_file(error.into()))?;
        let row_groups = metadata.metadata().num_row_groups();
        let halves = if row_groups >= 2 {
            vec![
                (0..row_groups / 2).collect(),
                (row_groups / 2..row_groups).collect(),
            ]
        } else {
            vec![(0..row_groups).collect::<Vec<_>>()]
        };
        for half in halves {
            let builder = ParquetRecordBatchStreamBuilder::new_with_metadata(
                reader.clone(),
                metadata.clone(),
            );
            let mask = ProjectionMask::columns(
                builder.parquet_schema(),
                ["user_id", "bucket", "probability"],
            );
            parts.push(Part {
                builder: builder.with_projection(mask),
                row_groups: half,
                path: path.clone(),
            });
        }
    }
    if parts.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "goal {goal_id} has no files in the predictions table; archive the goal and create \
             it again"
        )));
    }
    Ok(parts)
}

/// The rows of `sql/nightly/event_days.sql`, one per goal event, sorted by user id.
struct EventDays {
    user_ids: StringArray,
    days: Vec<i32>,
    /// Index into `arm_names` per row.
    arms: Vec<usize>,
    arm_names: Vec<String>,
}

impl EventDays {
    fn new(batch: &RecordBatch) -> Result<Self> {
        let user_ids = text_column(batch, "user_id")?;
        let days = batch
            .column_by_name("day")
            .and_then(|column| column.as_primitive_opt::<Date32Type>())
            .ok_or_else(|| internal("event days without a date column day"))?
            .values()
            .to_vec();
        let arm_column = text_column(batch, "arm")?;
        let mut arm_names = Vec::new();
        let arms = (0..arm_column.len())
            .map(|row| intern(&mut arm_names, arm_column.value(row)))
            .collect();
        if !(1..user_ids.len()).all(|row| user_ids.value(row - 1) <= user_ids.value(row)) {
            return Err(internal("event days are not sorted by user_id"));
        }
        Ok(EventDays {
            user_ids,
            days,
            arms,
            arm_names,
        })
    }

    fn len(&self) -> usize {
        self.user_ids.len()
    }

    fn user_id(&self, row: usize) -> &str {
        self.user_ids.value(row)
    }

    /// Returns the first row at or after `from` whose user id is not less than `user_id`, given
    /// that the rows before `from` have smaller ids. It probes 1, 2, 4... rows ahead and then
    /// searches between the last two probes, so a near row costs a comparison or two and a far
    /// one a logarithmic number.
    fn seek(&self, from: usize, user_id: &str) -> usize {
        let mut low = from;
        let mut step = 1;
        let mut high = loop {
            let probe = low.saturating_add(step - 1);
            if probe >= self.len() {
                break self.len();
            }
            if self.user_id(probe) >= user_id {
                break probe;
            }
            low = probe + 1;
            step *= 2;
        };
        while low < high {
            let middle = low + (high - low) / 2;
            if self.user_id(middle) < user_id {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
    }
}

/// Counts from one part of the predictions. Buckets are indices into `buckets`, arms into the
/// event rows' arm names.
#[derive(Default)]
struct Counts {
    buckets: Vec<String>,
    /// Members and the sum of their probabilities, per bucket.
    members: Vec<(i64, f64)>,
    /// New performers and events per bucket, arm and day.
    cells: HashMap<(usize, usize, i32), (i64, i64)>,
}

/// Counts the members of one part of the predictions, and the activity of those with goal
/// events.
///
/// A part is expected sorted by user id. While the ids ascend, the cursor in the event rows only
/// moves forward. An id smaller than the one before starts over from the first event row. Each
/// move is an exponential search, so rows in any order cost a logarithmic search each.
async fn count_part(part: Part, event_days: Arc<EventDays>) -> Result<Counts> {
    let in_file = |error: Error| unreadable(&part.path, error);
    let mut stream = part
        .builder
        .with_row_groups(part.row_groups)
        .build()
        .map_err(|error| in_file(error.into()))?;
    let mut counts = Counts::default();
    let mut cursor = 0;
    let mut previous: Option<String> = None;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|error| in_file(error.into()))?;
        let user_ids = text_column(&batch, "user_id").map_err(in_file)?;
        let probabilities = float_column(&batch, "probability").map_err(in_file)?;
        let buckets = batch
            .column_by_name("bucket")
            .and_then(|column| column.as_dictionary_opt::<Int32Type>())
            .ok_or_else(|| {
                in_file(Error::InvalidArgument(
                    "missing string column bucket".into(),
                ))
            })?;
        for (name, nulls) in [
            ("user_id", user_ids.null_count()),
            ("bucket", buckets.null_count()),
            ("probability", probabilities.null_count()),
        ] {
            if nulls > 0 {
                return Err(in_file(Error::InvalidArgument(format!(
                    "{nulls} rows have no {name}"
                ))));
            }
        }
        // This batch's dictionary entries as indices into `counts.buckets`.
        let names = buckets.values().as_string::<i32>();
        let bucket_of: Vec<usize> = (0..names.len())
            .map(|entry| {
                let bucket = intern(&mut counts.buckets, names.value(entry));
                if counts.members.len() <= bucket {
                    counts.members.push((0, 0.0));
                }
                bucket
            })
            .collect();
        let keys = buckets.keys();
        let mut last: Option<&str> = previous.as_deref();
        for row in 0..batch.num_rows() {
            let bucket = bucket_of[keys.value(row) as usize];
            let member = &mut counts.members[bucket];
            member.0 += 1;
            member.1 += probabilities.value(row);

            let user_id = user_ids.value(row);
            if last.is_none_or(|last| last > user_id) {
                cursor = 0;
            }
            last = Some(user_id);
            cursor = event_days.seek(cursor, user_id);
            let arm = match event_days.arms.get(cursor) {
                Some(arm) if event_days.user_id(cursor) == user_id => *arm,
                _ => continue,
            };
            let mut first_day = i32::MAX;
            while cursor < event_days.len() && event_days.user_id(cursor) == user_id {
                let day = event_days.days[cursor];
                first_day = first_day.min(day);
                counts.cells.entry((bucket, arm, day)).or_default().1 += 1;
                cursor += 1;
            }
            counts.cells.entry((bucket, arm, first_day)).or_default().0 += 1;
        }
        previous = last.map(str::to_string);
    }
    Ok(counts)
}

/// Returns the index of `name` in `names`, adding it when absent. The lists contain a few buckets
/// or arms, so a scan is quicker than hashing.
fn intern(names: &mut Vec<String>, name: &str) -> usize {
    match names.iter().position(|known| known == name) {
        Some(index) => index,
        None => {
            names.push(name.to_string());
            names.len() - 1
        }
    }
}

/// Returns the error for a predictions file that cannot be read.
fn unreadable(path: &str, error: Error) -> Error {
    Error::InvalidArgument(format!(
        "failed to read {path}: {error}; restore the file, or archive the goal and create it again"
    ))
}

fn internal(message: &str) -> Error {
    Error::InvalidArgument(format!("nightly activity: {message}"))
}
