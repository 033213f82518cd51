//! Engaging a goal: holding out a control group from an intent bucket (or from every target
//! user), storing the assignment in `control_groups`, and exporting the test audience.
//!
//! The assignment is the SQL model `sql/engage/control_groups.sql`. It depends only on the goal
//! id, the bucket's users and the control percentage, so anyone can recompute it from the
//! tables. A bucket's rows are written once, on its first engagement, and engaging it again
//! returns them unchanged.

pub mod stats;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::scalar::ScalarValue;
use serde::{Deserialize, Serialize};

use crate::context::{ContextOptions, build_context};
use crate::error::{Error, Result};
use crate::goals::records::{GoalRecord, from_batches};
use crate::models;
use crate::query::{self, OutputFormat};
use crate::schema::timestamp_type;
use crate::warehouse::Warehouse;

/// Name of the table of control-group assignments, partitioned by `goal_id`.
pub const CONTROL_GROUPS: &str = "control_groups";

/// The `bucket` value of an engagement of every target user.
pub const ALL_BUCKET: &str = "All";

/// Control share of an engaged bucket when none is given, in percent.
pub const DEFAULT_CONTROL_PERCENT: u32 = 5;

/// Smallest and largest accepted control share, in percent.
pub const MIN_CONTROL_PERCENT: u32 = 1;
pub const MAX_CONTROL_PERCENT: u32 = 50;

/// The `arm` values of `control_groups`.
pub const TEST_ARM: &str = "test";
pub const CONTROL_ARM: &str = "control";

/// The users a campaign engages: one intent bucket or every target user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngagedBucket {
    MostLikely,
    ModeratelyLikely,
    LeastLikely,
    All,
}

impl std::str::FromStr for EngagedBucket {
    type Err = Error;

    /// Parses the command-line names `most`, `moderately`, `least` and `all`.
    fn from_str(text: &str) -> Result<Self> {
        match text {
            "most" => Ok(EngagedBucket::MostLikely),
            "moderately" => Ok(EngagedBucket::ModeratelyLikely),
            "least" => Ok(EngagedBucket::LeastLikely),
            "all" => Ok(EngagedBucket::All),
            other => Err(Error::InvalidArgument(format!(
                "invalid bucket {other:?}: use most, moderately, least or all"
            ))),
        }
    }
}

impl EngagedBucket {
    /// Returns the name stored in `predictions.bucket` and `control_groups.bucket`.
    pub fn stored_name(self) -> &'static str {
        match self {
            EngagedBucket::MostLikely => crate::predict::BUCKETS[0],
            EngagedBucket::ModeratelyLikely => crate::predict::BUCKETS[1],
            EngagedBucket::LeastLikely => crate::predict::BUCKETS[2],
            EngagedBucket::All => ALL_BUCKET,
        }
    }
}

/// Returns the columns stored in the files of `control_groups`, without the `goal_id`
/// partition.
pub fn control_groups_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("bucket", DataType::Utf8, false),
        Field::new("arm", DataType::Utf8, false),
        Field::new("assigned_at", timestamp_type(), false),
        Field::new("control_percent", DataType::Int32, false),
    ]))
}

/// An engagement request.
#[derive(Debug, Clone)]
pub struct EngageRequest {
    pub goal_id: i64,
    pub bucket: EngagedBucket,
    /// Control share in percent; `None` keeps a stored engagement's share or uses
    /// [`DEFAULT_CONTROL_PERCENT`].
    pub control_percent: Option<u32>,
    /// File for the test audience: `.parquet` or `.csv`.
    pub export: Option<PathBuf>,
}

/// One engaged bucket of a goal as stored in `control_groups`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngagementSummary {
    pub bucket: String,
    pub users: i64,
    pub test_users: i64,
    pub control_users: i64,
    pub control_percent: i32,
    pub assigned_at: String,
}

/// A written test audience file.
#[derive(Debug, Clone, Serialize)]
pub struct AudienceExport {
    pub path: String,
    /// `parquet` or `csv`.
    pub format: &'static str,
    pub users: u64,
}

/// The result of `goalcast goal engage`.
#[derive(Debug, Clone, Serialize)]
pub struct Engagement {
    pub goal_id: i64,
    pub goal_name: String,
    #[serde(flatten)]
    pub summary: EngagementSummary,
    /// Whether this request assigned the groups; false when the bucket was already engaged.
    pub newly_assigned: bool,
    pub export: Option<AudienceExport>,
}

/// Engages a bucket of an active goal: assigns and stores its control group on the first
/// engagement, and exports the test audience when `request.export` is set.
///
/// Fails before writing anything on any of these: a control percentage outside 1 to 50, an
/// export path without a `.parquet` or `.csv` extension, a goal that is not active, all users
/// next to an engaged bucket (or the reverse), a different percentage for an engaged bucket,
/// or a bucket too small to give both arms a user.
///
/// Holds the warehouse's run lock while it works, so two engagements of one goal cannot each
/// rewrite its partition from what they read.
pub async fn engage(
    warehouse: &Warehouse,
    options: &ContextOptions,
    request: &EngageRequest,
) -> Result<Engagement> {
    let run_id = crate::nightly::new_run_id();
    let lock = crate::warehouse::RunLock::acquire(warehouse, &run_id, "goal engage").await?;
    let result = engage_locked(warehouse, options, request).await;
    lock.release().await?;
    result
}

async fn engage_locked(
    warehouse: &Warehouse,
    options: &ContextOptions,
    request: &EngageRequest,
) -> Result<Engagement> {
    if let Some(percent) = request.control_percent {
        validate_control_percent(percent)?;
    }
    let export_format = request.export.as_deref().map(export_format).transpose()?;
    let goal = crate::goals::load_goal(warehouse, options, request.goal_id).await?;
    if goal.status != "active" {
        return Err(Error::InvalidArgument(format!(
            "goal {} is {}; only active goals can be engaged",
            goal.goal_id, goal.status
        )));
    }

    let ctx = build_context(warehouse, options).await?;
    let bucket = request.bucket.stored_name();
    let engaged = engagements(&ctx, goal.goal_id).await?;
    let newly_assigned = match engaged.iter().find(|row| row.bucket == bucket) {
        Some(stored) => {
            check_same_percent(&goal, stored, request.control_percent)?;
            false
        }
        None => {
            check_no_overlap(&goal, bucket, &engaged)?;
            let percent = request.control_percent.unwrap_or(DEFAULT_CONTROL_PERCENT);
            assign_and_store(warehouse, &ctx, &goal, bucket, percent).await?;
            true
        }
    };

    // A new context reads the rows just written, so the summary and the export show what is
    // stored rather than what was computed.
    let ctx = build_context(warehouse, options).await?;
    let summary = engagements(&ctx, goal.goal_id)
        .await?
        .into_iter()
        .find(|row| row.bucket == bucket)
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{bucket} of goal {} is missing from {CONTROL_GROUPS} after it was written",
                goal.goal_id
            ))
        })?;
    let export = match (&request.export, export_format) {
        (Some(path), Some(format)) => {
            Some(export_test_audience(&ctx, goal.goal_id, bucket, path, format).await?)
        }
        _ => None,
    };
    Ok(Engagement {
        goal_id: goal.goal_id,
        goal_name: goal.name,
        summary,
        newly_assigned,
        export,
    })
}

/// Fails unless `percent` is a whole number from 1 to 50.
pub fn validate_control_percent(percent: u32) -> Result<()> {
    if (MIN_CONTROL_PERCENT..=MAX_CONTROL_PERCENT).contains(&percent) {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "invalid control percent {percent}: use a whole number from {MIN_CONTROL_PERCENT} to \
         {MAX_CONTROL_PERCENT}"
    )))
}

/// Returns the export format that the file extension selects.
fn export_format(path: &Path) -> Result<OutputFormat> {
    // Checked before the control group is stored, so a bad path fails before any write.
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.is_dir()
    {
        return Err(Error::input(
            path,
            "the export folder does not exist; create it or choose another --export path",
        ));
    }
    let extension = path
        .extension()
        .map(|extension| extension.to_string_lossy().to_ascii_lowercase());
    match extension.as_deref() {
        Some("parquet") => Ok(OutputFormat::Parquet),
        Some("csv") => Ok(OutputFormat::Csv),
        _ => Err(Error::InvalidArgument(format!(
            "invalid export file {}: the name must end in .parquet or .csv, which selects the \
             format",
            path.display()
        ))),
    }
}

fn check_same_percent(
    goal: &GoalRecord,
    stored: &EngagementSummary,
    requested: Option<u32>,
) -> Result<()> {
    match requested {
        Some(percent) if i64::from(percent) != i64::from(stored.control_percent) => {
            Err(Error::InvalidArgument(format!(
                "{} of goal {} is already engaged with a {}% control group, assigned at {}, and \
                 an assignment never changes; omit --control-percent (or pass {}) to get the \
                 same audience again",
                stored.bucket,
                goal.goal_id,
                stored.control_percent,
                stored.assigned_at,
                stored.control_percent
            )))
        }
        _ => Ok(()),
    }
}

/// Fails when engaging `bucket` would give a user a second assignment: all users next to an
/// engaged bucket, or a bucket next to an engagement of all users.
fn check_no_overlap(goal: &GoalRecord, bucket: &str, engaged: &[EngagementSummary]) -> Result<()> {
    if engaged.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = engaged.iter().map(|row| row.bucket.as_str()).collect();
    if bucket == ALL_BUCKET {
        return Err(Error::InvalidArgument(format!(
            "goal {} already has engaged buckets ({}), so all users cannot be engaged: a user \
             can be in only one control group per goal; engage the remaining buckets one by one",
            goal.goal_id,
            names.join(", ")
        )));
    }
    if names.contains(&ALL_BUCKET) {
        return Err(Error::InvalidArgument(format!(
            "all users of goal {} are already engaged, so {bucket} cannot be engaged on its own: \
             a user can be in only one control group per goal",
            goal.goal_id
        )));
    }
    Ok(())
}

/// Reads the engaged buckets of a goal from `control_groups`, most likely bucket first.
pub async fn engagements(ctx: &SessionContext, goal_id: i64) -> Result<Vec<EngagementSummary>> {
    if !ctx.table_exist(CONTROL_GROUPS)? {
        return Ok(Vec::new());
    }
    let batches = ctx
        .sql(&format!(
            "SELECT bucket, count(*) AS users, \
             sum(CASE WHEN arm = '{TEST_ARM}' THEN 1 ELSE 0 END) AS test_users, \
             sum(CASE WHEN arm = '{CONTROL_ARM}' THEN 1 ELSE 0 END) AS control_users, \
             min(control_percent) AS control_percent, min(assigned_at) AS assigned_at \
             FROM {CONTROL_GROUPS} WHERE goal_id = {goal_id} GROUP BY bucket"
        ))
        .await?
        .collect()
        .await?;
    let mut rows: Vec<EngagementSummary> = from_batches(&batches)?;
    rows.sort_by_key(|row| bucket_order(&row.bucket));
    Ok(rows)
}

/// Returns the display position of a stored bucket name: All, then most to least likely.
fn bucket_order(bucket: &str) -> usize {
    if bucket == ALL_BUCKET {
        return 0;
    }
    1 + crate::predict::BUCKETS
        .iter()
        .position(|name| *name == bucket)
        .unwrap_or(crate::predict::BUCKETS.len())
}

/// Runs the assignment model on `engaged_users` (columns `user_id`, `bucket`) and returns
/// `user_id`, `bucket` and `arm` for each distinct user and bucket.
pub async fn assign_control_groups(
    ctx: &SessionContext,
    goal_id: i64,
    control_percent: u32,
    engaged_users: DataFrame,
) -> Result<Vec<RecordBatch>> {
    validate_control_percent(control_percent)?;
    ctx.deregister_table("engaged_users")?;
    ctx.register_table("engaged_users", engaged_users.into_view())?;
    let parameters = [
        ("goal_id", ScalarValue::Int64(Some(goal_id))),
        (
            "control_percent",
            ScalarValue::Int64(Some(i64::from(control_percent))),
        ),
    ];
    let result = models::dataframe(ctx, models::ENGAGE_CONTROL_GROUPS, &parameters).await;
    let batches = match result {
        Ok(dataframe) => dataframe.collect().await.map_err(Error::from),
        Err(error) => Err(error),
    };
    ctx.deregister_table("engaged_users")?;
    batches
}

/// Assigns the users of `bucket` and writes them next to the goal's other engaged buckets.
async fn assign_and_store(
    warehouse: &Warehouse,
    ctx: &SessionContext,
    goal: &GoalRecord,
    bucket: &str,
    control_percent: u32,
) -> Result<()> {
    let goal_id = goal.goal_id;
    let users_sql = if bucket == ALL_BUCKET {
        format!(
            "SELECT user_id, '{ALL_BUCKET}' AS bucket FROM predictions WHERE goal_id = {goal_id}"
        )
    } else {
        format!(
            "SELECT user_id, bucket FROM predictions WHERE goal_id = {goal_id} AND bucket = '{bucket}'"
        )
    };
    let engaged_users = ctx.sql(&users_sql).await?;
    let assigned = assign_control_groups(ctx, goal_id, control_percent, engaged_users).await?;

    let (mut test_users, mut control_users) = (0_i64, 0_i64);
    for batch in &assigned {
        let arms =
            arrow::array::AsArray::as_string::<i32>(batch.column_by_name("arm").ok_or_else(
                || Error::InvalidArgument("the assignment model returned no arm column".into()),
            )?);
        for arm in arms.iter().flatten() {
            if arm == CONTROL_ARM {
                control_users += 1;
            } else {
                test_users += 1;
            }
        }
    }
    let users = test_users + control_users;
    if users == 0 {
        return Err(Error::InvalidArgument(format!(
            "{bucket} of goal {goal_id} has no users, so there is no one to engage"
        )));
    }
    if test_users == 0 || control_users == 0 {
        return Err(Error::InvalidArgument(format!(
            "a {control_percent}% control group of the {users} users in {bucket} of goal \
             {goal_id} leaves {control_users} control and {test_users} test users; uplift needs \
             both, so choose a --control-percent that gives each arm at least one user"
        )));
    }

    let assigned_micros = chrono::Utc::now().timestamp_micros();
    let mut batches = stored_rows(ctx, goal_id).await?;
    for batch in &assigned {
        batches.push(with_assignment_columns(
            batch,
            assigned_micros,
            control_percent,
        )?);
    }
    let schema = control_groups_schema();
    let combined = arrow::compute::concat_batches(&schema, &batches)?;
    crate::goals::write_partition(
        warehouse,
        CONTROL_GROUPS,
        &format!("goal_id={goal_id}"),
        combined,
    )
    .await?;
    tracing::info!(goal_id, bucket, users, control_users, "engaged bucket");
    Ok(())
}

/// Reads the goal's stored `control_groups` rows in the stored schema.
async fn stored_rows(ctx: &SessionContext, goal_id: i64) -> Result<Vec<RecordBatch>> {
    if !ctx.table_exist(CONTROL_GROUPS)? {
        return Ok(Vec::new());
    }
    let batches = ctx
        .sql(&format!(
            "SELECT user_id, bucket, arm, assigned_at, control_percent FROM {CONTROL_GROUPS} \
             WHERE goal_id = {goal_id}"
        ))
        .await?
        .collect()
        .await?;
    batches
        .iter()
        .map(|batch| conform(batch, control_groups_schema()))
        .collect()
}

/// Adds `assigned_at` and `control_percent` to a batch of the assignment model.
fn with_assignment_columns(
    batch: &RecordBatch,
    assigned_micros: i64,
    control_percent: u32,
) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let assigned_at: ArrayRef = Arc::new(
        TimestampMicrosecondArray::from(vec![assigned_micros; rows])
            .with_timezone(crate::schema::UTC),
    );
    let percent: ArrayRef = Arc::new(Int32Array::from(vec![control_percent as i32; rows]));
    let mut columns = batch.columns().to_vec();
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|field| field.as_ref().clone())
        .collect();
    columns.extend([assigned_at, percent]);
    fields.push(Field::new("assigned_at", timestamp_type(), false));
    fields.push(Field::new("control_percent", DataType::Int32, false));
    let extended = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    conform(&extended, control_groups_schema())
}

/// Selects and casts the columns of `batch` by name into `schema`.
fn conform(batch: &RecordBatch, schema: SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let column = batch.column_by_name(field.name()).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "column {} is missing from a {CONTROL_GROUPS} batch",
                    field.name()
                ))
            })?;
            Ok(arrow::compute::cast(column, field.data_type())?)
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Writes the test arm of an engaged bucket to `path`, atomically, with each user's score and
/// probability from `predictions`, ordered by user id.
async fn export_test_audience(
    ctx: &SessionContext,
    goal_id: i64,
    bucket: &str,
    path: &Path,
    format: OutputFormat,
) -> Result<AudienceExport> {
    let dataframe = ctx
        .sql(&format!(
            "SELECT c.user_id, c.bucket, p.score, p.probability, p.achieve_probability \
             FROM {CONTROL_GROUPS} AS c JOIN predictions AS p \
             ON p.user_id = c.user_id AND p.goal_id = c.goal_id \
             WHERE c.goal_id = {goal_id} AND c.bucket = '{bucket}' AND c.arm = '{TEST_ARM}' \
             ORDER BY c.user_id"
        ))
        .await?;
    let started = query::StartedQuery::start(dataframe).await?;
    let users = query::write_results(started, format, Some(path)).await?;
    Ok(AudienceExport {
        path: path.display().to_string(),
        format: if format == OutputFormat::Parquet {
            "parquet"
        } else {
            "csv"
        },
        users,
    })
}
