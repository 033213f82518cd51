//! The SQL models under `sql/`, compiled into the binary, and how to run them.
//!
//! Each model is one query with a header comment that states its grain, inputs and parameters.
//! Parameters are DataFusion placeholders such as `$window_start`, bound by name.

use std::collections::HashMap;

use arrow::array::{ArrayRef, AsArray, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Float64Type};
use datafusion::common::ParamValues;
use datafusion::common::metadata::ScalarAndMetadata;
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::scalar::ScalarValue;

use crate::error::{Error, Result};

/// One SQL model: its path under `sql/` and its text.
#[derive(Debug, Clone, Copy)]
pub struct SqlModel {
    pub path: &'static str,
    pub sql: &'static str,
}

/// The true probability of each event per generated user in a window.
pub const TRUTH_WINDOW_PROBABILITY: SqlModel = SqlModel {
    path: "sql/truth/window_probability.sql",
    sql: include_str!("../sql/truth/window_probability.sql"),
};

/// Test or control for each user of an engaged bucket.
pub const ENGAGE_CONTROL_GROUPS: SqlModel = SqlModel {
    path: "sql/engage/control_groups.sql",
    sql: include_str!("../sql/engage/control_groups.sql"),
};

/// Every model, for tests that plan each one.
pub const ALL: &[SqlModel] = &[TRUTH_WINDOW_PROBABILITY, ENGAGE_CONTROL_GROUPS];

/// Plans `model` in `ctx` with its named parameters bound.
pub async fn dataframe(
    ctx: &SessionContext,
    model: SqlModel,
    parameters: &[(&str, ScalarValue)],
) -> Result<DataFrame> {
    dataframe_from_text(ctx, model.sql, parameters).await
}

/// Plans the text of a model after template substitution, with its named parameters bound.
pub async fn dataframe_from_text(
    ctx: &SessionContext,
    sql: &str,
    parameters: &[(&str, ScalarValue)],
) -> Result<DataFrame> {
    let values: HashMap<String, ScalarAndMetadata> = parameters
        .iter()
        .map(|(name, value)| (name.to_string(), ScalarAndMetadata::from(value.clone())))
        .collect();
    let dataframe = ctx.sql(sql).await?;
    Ok(dataframe.with_param_values(ParamValues::Map(values))?)
}

/// Returns a UTC timestamp parameter value from microseconds since the epoch.
pub fn timestamp_parameter(micros: i64) -> ScalarValue {
    ScalarValue::TimestampMicrosecond(Some(micros), Some("UTC".into()))
}

/// Returns column `name` of `batch` cast to `data_type`.
pub(crate) fn cast_column(
    batch: &RecordBatch,
    name: &str,
    data_type: &DataType,
) -> Result<ArrayRef> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| Error::InvalidArgument(format!("missing column {name}")))?;
    Ok(arrow::compute::cast(column, data_type)?)
}

/// Returns column `name` of `batch` as a plain string array, whichever string type it has.
pub(crate) fn text_column(batch: &RecordBatch, name: &str) -> Result<StringArray> {
    Ok(cast_column(batch, name, &DataType::Utf8)?
        .as_string::<i32>()
        .clone())
}

/// Returns column `name` of `batch` as a Float64 array, whichever numeric type it has.
pub(crate) fn float_column(batch: &RecordBatch, name: &str) -> Result<Float64Array> {
    Ok(cast_column(batch, name, &DataType::Float64)?
        .as_primitive::<Float64Type>()
        .clone())
}
