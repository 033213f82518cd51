//! Sampling users by a stable hash of their id, in Rust and as the SQL function `sample_key`.
//!
//! A user's key depends only on the id, so a user is in or out of every training window
//! together, on every run and platform.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::array::{ArrayRef, AsArray, Float64Array};
use arrow::compute::concat_batches;
use arrow::datatypes::DataType;
use arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::{DataFrame, Expr, SessionContext, col, lit};
use futures::StreamExt;

use crate::error::{Error, Result};

/// Name of the SQL function that returns a user id's sample key.
pub const SAMPLE_KEY_FUNCTION: &str = "sample_key";

/// Returns the sample key of `user_id`: a number in [0, 1] from the FNV-1a hash of its UTF-8
/// bytes. A user is in a sample of share `s` when the key is below `s`.
pub fn sample_key(user_id: &str) -> f64 {
    // FNV-1a: stable across runs and platforms, unlike the standard library's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in user_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as f64 / u64::MAX as f64
}

/// Returns whether `user_id` falls in a sample of `share` of all users.
pub fn in_sample(user_id: &str, share: f64) -> bool {
    sample_key(user_id) < share
}

/// Returns the SQL function `sample_key(user_id)`, null for a null id.
pub fn sample_key_udf() -> ScalarUDF {
    create_udf(
        SAMPLE_KEY_FUNCTION,
        vec![DataType::Utf8],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(|arguments: &[ColumnarValue]| match &arguments[0] {
            ColumnarValue::Array(array) => {
                let keys: Float64Array = array
                    .as_string::<i32>()
                    .iter()
                    .map(|id| id.map(sample_key))
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(keys) as ArrayRef))
            }
            ColumnarValue::Scalar(scalar) => {
                let key = match scalar {
                    ScalarValue::Utf8(Some(id)) => Some(sample_key(id)),
                    _ => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Float64(key)))
            }
        }),
    )
}

/// The largest share of users whose rows [`sampled_context`] copies into memory. Above it the
/// copy saves little, because each window would scan most of the events anyway.
const MAX_COPIED_SHARE: f64 = 0.5;

/// The maximum number of events, estimated as the share times the events table's rows, that
/// [`sampled_context`] copies: roughly 1 GiB at an estimated 100 bytes per event. A small
/// segment on a large warehouse gets a large share of every user's events, and copying those
/// would hold a large part of the warehouse in memory.
const MAX_COPIED_EVENTS: f64 = 10_000_000.0;

/// Whether training on a sample of `share` of the users should copy their rows into memory
/// ([`sampled_context`]) rather than read the full tables in each window. `event_rows` is the
/// number of rows of the events table.
pub fn worth_copying(share: f64, event_rows: usize) -> bool {
    share <= MAX_COPIED_SHARE && share * event_rows as f64 <= MAX_COPIED_EVENTS
}

/// Tables copied to the sample: the ones segments and features read user rows from.
const SAMPLED_TABLES: [&str; 2] = ["events", "profiles"];

/// Returns a session whose `events` and `profiles` hold only the users in a sample of
/// `share`, read into memory. Every other table is the one in `ctx`.
///
/// Training evaluates segments on these tables. A segment whose condition reads only each
/// user's own rows selects the same sampled users here as on the full tables.
///
/// NOTE: the copy contains the whole history of about `max_training_rows / windows` users, every
/// column included, so its memory grows with events per user, not with the warehouse.
pub async fn sampled_context(ctx: &SessionContext, share: f64) -> Result<SessionContext> {
    let sampled = SessionContext::new_with_config_rt(ctx.copied_config(), ctx.runtime_env());
    sampled.register_udf(sample_key_udf());
    let schema = ctx
        .catalog("datafusion")
        .and_then(|catalog| catalog.schema("public"))
        .ok_or_else(|| Error::InvalidArgument("the session has no default schema".into()))?;
    for name in schema.table_names() {
        let Some(table) = schema.table(&name).await? else {
            continue;
        };
        let has_user_id = table.schema().field_with_name("user_id").is_ok();
        if SAMPLED_TABLES.contains(&name.as_str()) && has_user_id {
            let rows = ctx
                .table(name.as_str())
                .await?
                .filter(sample_key_expr().lt(lit(share)))?;
            let memory = copy_to_memory(rows, "the training sample").await?;
            sampled.register_table(name.as_str(), Arc::new(memory))?;
        } else {
            sampled.register_table(name.as_str(), table)?;
        }
    }
    Ok(sampled)
}

/// Runs `rows` and copies its result into a table in memory, one partition per partition of
/// the plan, copied in parallel. `description` names the copy in errors.
pub(crate) async fn copy_to_memory(rows: DataFrame, description: &str) -> Result<MemTable> {
    let schema: SchemaRef = rows.schema().inner().clone();
    let streams = rows.execute_stream_partitioned().await?;
    // Spawned all at once, so the partitions are copied in parallel.
    let copies: Vec<_> = streams
        .into_iter()
        .map(|stream| tokio::spawn(copy_rows(schema.clone(), stream)))
        .collect();
    let mut partitions = Vec::new();
    for copy in copies {
        partitions.push(copy.await.map_err(|error| {
            Error::InvalidArgument(format!("copying {description} failed: {error}"))
        })??);
    }
    Ok(MemTable::try_new(schema, partitions)?)
}

/// Copies the rows of `stream` into batches of their own. The few sampled rows of a scanned file
/// can share buffers with the file's whole decoded batch, and at 10M users keeping them kept
/// about 1.3 GiB of decoded files in memory.
async fn copy_rows(
    schema: SchemaRef,
    mut stream: SendableRecordBatchStream,
) -> Result<Vec<RecordBatch>> {
    let mut copies = Vec::new();
    let mut pending = Vec::new();
    let mut pending_rows = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        pending_rows += batch.num_rows();
        pending.push(batch);
        if pending_rows >= COPY_BATCH_ROWS {
            copies.push(concat_batches(&schema, &pending)?);
            pending.clear();
            pending_rows = 0;
        }
    }
    copies.push(concat_batches(&schema, &pending)?);
    Ok(copies)
}

/// Rows per batch of the sampled tables.
const COPY_BATCH_ROWS: usize = 64 * 1024;

/// Returns the expression `sample_key(user_id)`.
pub fn sample_key_expr() -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(sample_key_udf()),
        vec![col("user_id")],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_spread() {
        // Fixed values: a change of the hash would silently change every sampled model.
        assert_eq!(
            sample_key(""),
            0xcbf2_9ce4_8422_2325_u64 as f64 / u64::MAX as f64
        );
        let share = (0..100_000)
            .filter(|i| in_sample(&format!("u{i:06}"), 0.1))
            .count() as f64
            / 100_000.0;
        assert!((share - 0.1).abs() < 0.005, "share {share}");
    }
}
