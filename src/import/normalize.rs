//! Mapping source batches onto the `events` schema, with per-row rejections.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Float64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Field, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{DateTime, NaiveDate};
use chrono_tz::Tz;
use serde_json::{Map, Value};

use super::time::{TimeFormat, epoch_to_micros, local_to_micros, parse_time_text};
use crate::error::{Error, Result};
use crate::schema::{EVENT_DATE, EVENTS_SCHEMA, UTC};

/// The source columns of each events column.
#[derive(Debug, Clone)]
pub struct EventMapping {
    pub user_id_column: String,
    pub event_name: EventNameSource,
    pub time_column: String,
    pub time_format: TimeFormat,
    /// Zone of source times that carry no offset.
    pub time_zone: Tz,
    /// The amount column; when `amount_required` is false a file without it reads as null.
    pub amount_column: String,
    pub amount_required: bool,
    /// Columns to drop instead of folding into `properties`.
    pub ignore_columns: Vec<String>,
}

/// The event name of each row: a source column or one name for every row.
#[derive(Debug, Clone)]
pub enum EventNameSource {
    Column(String),
    Constant(String),
}

/// The reason a source row was not imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RejectReason {
    MissingUserId,
    MissingEventName,
    MissingTime,
    InvalidTime,
    InvalidAmount,
    InvalidProperties,
}

impl RejectReason {
    /// Returns the phrase used in summaries.
    pub fn describe(self) -> &'static str {
        match self {
            RejectReason::MissingUserId => "null or empty user id",
            RejectReason::MissingEventName => "null or empty event name",
            RejectReason::MissingTime => "null time",
            RejectReason::InvalidTime => "unparseable or out-of-range time",
            RejectReason::InvalidAmount => "amount is not a finite number",
            RejectReason::InvalidProperties => "properties is not a JSON object",
        }
    }
}

/// Counts of rejected rows by reason, with the first few examples of each.
#[derive(Debug, Default, Clone)]
pub struct Rejections {
    pub counts: BTreeMap<RejectReason, u64>,
    /// Up to [`Rejections::SAMPLES_PER_REASON`] examples per reason: location and value.
    pub samples: BTreeMap<RejectReason, Vec<(String, String)>>,
}

impl Rejections {
    pub const SAMPLES_PER_REASON: usize = 3;

    fn record(&mut self, reason: RejectReason, location: impl FnOnce() -> String, value: &str) {
        *self.counts.entry(reason).or_default() += 1;
        let samples = self.samples.entry(reason).or_default();
        if samples.len() < Self::SAMPLES_PER_REASON {
            samples.push((location(), value.chars().take(80).collect()));
        }
    }

    /// Returns the total number of rejected rows.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Adds the counts and samples of `other`.
    pub fn merge(&mut self, other: Rejections) {
        for (reason, count) in other.counts {
            *self.counts.entry(reason).or_default() += count;
        }
        for (reason, samples) in other.samples {
            let mine = self.samples.entry(reason).or_default();
            let room = Self::SAMPLES_PER_REASON.saturating_sub(mine.len());
            mine.extend(samples.into_iter().take(room));
        }
    }
}

/// Returns the schema of normalized batches: the events columns plus `event_date`.
pub fn normalized_schema() -> SchemaRef {
    let mut fields: Vec<Field> = EVENTS_SCHEMA
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(EVENT_DATE, DataType::Date32, false));
    Arc::new(Schema::new(fields))
}

/// Checks that a source's schema has the mapped columns with usable types.
///
/// Returns whether the amount column is present.
pub fn check_columns(path: &Path, schema: &Schema, mapping: &EventMapping) -> Result<bool> {
    let available = || {
        schema
            .fields()
            .iter()
            .map(|field| field.name().as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let require = |column: &str, option: &str| -> Result<()> {
        if schema.column_with_name(column).is_none() {
            return Err(Error::input(
                path,
                format!(
                    "missing column {column:?} (available: {}); name the right one with {option}",
                    available()
                ),
            ));
        }
        Ok(())
    };
    require(&mapping.user_id_column, "--user-id-column")?;
    require(&mapping.time_column, "--time-column")?;
    if let EventNameSource::Column(column) = &mapping.event_name {
        require(
            column,
            "--event-name-column, or give every row one name with --event-name",
        )?;
    }

    let type_of = |column: &str| {
        schema
            .field_with_name(column)
            .map(|f| f.data_type().clone())
    };
    for (column, role) in [
        (mapping.user_id_column.as_str(), "a user id"),
        match &mapping.event_name {
            EventNameSource::Column(column) => (column.as_str(), "an event name"),
            EventNameSource::Constant(_) => (mapping.user_id_column.as_str(), "a user id"),
        },
    ] {
        let data_type = type_of(column)?;
        if !is_text(&data_type) && !data_type.is_integer() {
            return Err(mistyped(path, column, &data_type, role, "text or integers"));
        }
    }
    let time_type = type_of(&mapping.time_column)?;
    let time_ok = is_text(&time_type)
        || matches!(
            time_type,
            DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64
        )
        || ((time_type.is_integer() || time_type.is_floating())
            && mapping.time_format != TimeFormat::Auto);
    if !time_ok {
        let hint = if time_type.is_integer() || time_type.is_floating() {
            "timestamps, dates or text; for numbers pass --time-format epoch_s, epoch_ms, \
             epoch_us or a pattern such as %Y%m%d"
        } else {
            "timestamps, dates or text"
        };
        return Err(mistyped(
            path,
            &mapping.time_column,
            &time_type,
            "a time",
            hint,
        ));
    }

    let has_amount = schema.column_with_name(&mapping.amount_column).is_some();
    if has_amount {
        let data_type = type_of(&mapping.amount_column)?;
        if !is_text(&data_type) && !data_type.is_numeric() {
            return Err(mistyped(
                path,
                &mapping.amount_column,
                &data_type,
                "an amount",
                "numbers",
            ));
        }
    }
    Ok(has_amount)
}

fn mistyped(path: &Path, column: &str, data_type: &DataType, role: &str, expected: &str) -> Error {
    Error::input(
        path,
        format!(
            "column {column:?} has type {data_type}, which cannot hold {role}; expected {expected}"
        ),
    )
}

fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// Converts one source batch to the normalized schema, recording rejected rows.
///
/// `first_row` is the 1-based number of the batch's first data row within its file, used in
/// rejection samples. Values of CSV properties that look like numbers become JSON numbers when
/// `infer_numbers` is set.
pub fn normalize_batch(
    path: &Path,
    batch: &RecordBatch,
    mapping: &EventMapping,
    first_row: u64,
    infer_numbers: bool,
    rejections: &mut Rejections,
) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let location = |row: usize| format!("{} row {}", path.display(), first_row + row as u64);
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .expect("checked by check_columns")
    };

    let user_ids = to_text(column(&mapping.user_id_column))?;
    let event_names = match &mapping.event_name {
        EventNameSource::Column(name) => Some(to_text(column(name))?),
        EventNameSource::Constant(_) => None,
    };
    let times = time_micros(column(&mapping.time_column), mapping)?;
    let amounts = match batch.column_by_name(&mapping.amount_column) {
        Some(array) => Some(amount_values(array)?),
        None => None,
    };
    let properties = properties_json(batch, mapping, infer_numbers)?;

    let mut keep = Vec::with_capacity(rows);
    for row in 0..rows {
        let user_id = user_ids.is_valid(row).then(|| user_ids.value(row).trim());
        let reason = if user_id.is_none_or(str::is_empty) {
            Some((RejectReason::MissingUserId, String::new()))
        } else if event_names
            .as_ref()
            .is_some_and(|names| names.is_null(row) || names.value(row).trim().is_empty())
        {
            Some((RejectReason::MissingEventName, String::new()))
        } else {
            match &times[row] {
                TimeValue::Null => Some((RejectReason::MissingTime, String::new())),
                TimeValue::Invalid(text) => Some((RejectReason::InvalidTime, text.clone())),
                TimeValue::Micros(_) => match amounts.as_ref().map(|values| &values[row]) {
                    Some(AmountValue::Invalid(text)) => {
                        Some((RejectReason::InvalidAmount, text.clone()))
                    }
                    _ => match &properties[row] {
                        PropertiesValue::Invalid(text) => {
                            Some((RejectReason::InvalidProperties, text.clone()))
                        }
                        _ => None,
                    },
                },
            }
        };
        match reason {
            Some((reason, value)) => rejections.record(reason, || location(row), &value),
            None => keep.push(row),
        }
    }

    let user_id: StringArray = keep
        .iter()
        .map(|&row| Some(user_ids.value(row).trim()))
        .collect();
    let event_name: StringArray = match (&event_names, &mapping.event_name) {
        (Some(names), _) => keep
            .iter()
            .map(|&row| Some(names.value(row).trim()))
            .collect(),
        (None, EventNameSource::Constant(name)) => {
            keep.iter().map(|_| Some(name.as_str())).collect()
        }
        (None, EventNameSource::Column(_)) => unreachable!("column names are read above"),
    };
    let micros: Vec<i64> = keep
        .iter()
        .map(|&row| match times[row] {
            TimeValue::Micros(value) => value,
            _ => unreachable!("rows without a time are rejected"),
        })
        .collect();
    let event_date: Date32Array = micros
        .iter()
        .map(|&value| Some(value.div_euclid(86_400_000_000) as i32))
        .collect();
    let event_time = TimestampMicrosecondArray::from(micros).with_timezone(UTC);
    let amount: Float64Array = keep
        .iter()
        .map(|&row| match amounts.as_ref().map(|values| &values[row]) {
            Some(AmountValue::Value(value)) => Some(*value),
            _ => None,
        })
        .collect();
    let properties: StringArray = keep
        .iter()
        .map(|&row| match &properties[row] {
            PropertiesValue::Json(text) => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(user_id),
        Arc::new(event_name),
        Arc::new(event_time),
        Arc::new(amount),
        Arc::new(properties),
        Arc::new(event_date),
    ];
    Ok(RecordBatch::try_new(normalized_schema(), columns)?)
}

/// Casts a text or integer column to UTF-8 strings.
fn to_text(array: &ArrayRef) -> Result<StringArray> {
    Ok(cast(array, &DataType::Utf8)?.as_string::<i32>().clone())
}

enum TimeValue {
    Null,
    Invalid(String),
    Micros(i64),
}

fn time_micros(array: &ArrayRef, mapping: &EventMapping) -> Result<Vec<TimeValue>> {
    let zone = mapping.time_zone;
    let rows = array.len();
    let from_option = |value: Option<i64>, row: usize| match value {
        Some(micros) => TimeValue::Micros(micros),
        None => TimeValue::Invalid(format!("{:?}", display_value(array, row))),
    };
    let mut values = Vec::with_capacity(rows);
    match array.data_type() {
        DataType::Timestamp(unit, tz) => {
            let micros_per_unit_or_nanos = |raw: i64| -> Option<i64> {
                match unit {
                    TimeUnit::Second => raw.checked_mul(1_000_000),
                    TimeUnit::Millisecond => raw.checked_mul(1_000),
                    TimeUnit::Microsecond => Some(raw),
                    TimeUnit::Nanosecond => Some(raw.div_euclid(1_000)),
                }
            };
            let raw: Vec<Option<i64>> = match unit {
                TimeUnit::Second => array.as_primitive::<TimestampSecondType>().iter().collect(),
                TimeUnit::Millisecond => array
                    .as_primitive::<TimestampMillisecondType>()
                    .iter()
                    .collect(),
                TimeUnit::Microsecond => array
                    .as_primitive::<TimestampMicrosecondType>()
                    .iter()
                    .collect(),
                TimeUnit::Nanosecond => array
                    .as_primitive::<TimestampNanosecondType>()
                    .iter()
                    .collect(),
            };
            for (row, raw) in raw.into_iter().enumerate() {
                let Some(raw) = raw else {
                    values.push(TimeValue::Null);
                    continue;
                };
                let utc_micros = micros_per_unit_or_nanos(raw);
                // A timestamp without a zone is a wall-clock time in the source zone.
                let micros = match (tz, utc_micros) {
                    (Some(_), micros) => micros,
                    (None, Some(micros)) => DateTime::from_timestamp_micros(micros)
                        .and_then(|naive| local_to_micros(naive.naive_utc(), zone)),
                    (None, None) => None,
                };
                values.push(from_option(micros, row));
            }
        }
        DataType::Date32 | DataType::Date64 => {
            let days: Vec<Option<i64>> = if array.data_type() == &DataType::Date32 {
                array
                    .as_primitive::<Date32Type>()
                    .iter()
                    .map(|d| d.map(i64::from))
                    .collect()
            } else {
                let millis = array.as_primitive::<Date64Type>();
                millis
                    .iter()
                    .map(|ms| ms.map(|ms| ms.div_euclid(86_400_000)))
                    .collect()
            };
            for (row, day) in days.into_iter().enumerate() {
                let Some(day) = day else {
                    values.push(TimeValue::Null);
                    continue;
                };
                let micros = NaiveDate::from_num_days_from_ce_opt(719_163 + day as i32)
                    .and_then(|date| date.and_hms_opt(0, 0, 0))
                    .and_then(|naive| local_to_micros(naive, zone));
                values.push(from_option(micros, row));
            }
        }
        data_type
            if data_type.is_integer() && mapping.time_format.epoch_micros_per_unit().is_some() =>
        {
            let per_unit = mapping.time_format.epoch_micros_per_unit().unwrap_or(1);
            let integers = cast(array, &DataType::Int64)?;
            for (row, raw) in integers.as_primitive::<Int64Type>().iter().enumerate() {
                values.push(match raw {
                    None => TimeValue::Null,
                    Some(raw) => from_option(epoch_to_micros(raw, per_unit), row),
                });
            }
        }
        _ => {
            let text = to_text(array)?;
            for value in text.iter() {
                values.push(match value {
                    None => TimeValue::Null,
                    Some(value) if value.trim().is_empty() => TimeValue::Null,
                    Some(value) => match parse_time_text(value, &mapping.time_format, zone) {
                        Some(micros) => TimeValue::Micros(micros),
                        None => TimeValue::Invalid(value.to_string()),
                    },
                });
            }
        }
    }
    // Times that chrono cannot represent are rejected rather than wrapped.
    for value in &mut values {
        if let TimeValue::Micros(micros) = value
            && DateTime::from_timestamp_micros(*micros).is_none()
        {
            *value = TimeValue::Invalid(micros.to_string());
        }
    }
    Ok(values)
}

enum AmountValue {
    Null,
    Invalid(String),
    Value(f64),
}

fn amount_values(array: &ArrayRef) -> Result<Vec<AmountValue>> {
    if is_text(array.data_type()) {
        let text = to_text(array)?;
        return Ok(text
            .iter()
            .map(|value| match value.map(str::trim) {
                None | Some("") => AmountValue::Null,
                Some(value) => match value.parse::<f64>() {
                    Ok(number) if number.is_finite() => AmountValue::Value(number),
                    _ => AmountValue::Invalid(value.to_string()),
                },
            })
            .collect());
    }
    let numbers = cast(array, &DataType::Float64)?;
    Ok(numbers
        .as_primitive::<Float64Type>()
        .iter()
        .map(|value| match value {
            None => AmountValue::Null,
            Some(number) if number.is_finite() => AmountValue::Value(number),
            Some(number) => AmountValue::Invalid(number.to_string()),
        })
        .collect())
}

enum PropertiesValue {
    Null,
    Invalid(String),
    Json(String),
}

/// Folds the unmapped columns of each row into a JSON object. A `properties` text column in the
/// source is parsed and merged, and the other columns take precedence over its keys.
fn properties_json(
    batch: &RecordBatch,
    mapping: &EventMapping,
    infer_numbers: bool,
) -> Result<Vec<PropertiesValue>> {
    let mapped: Vec<&str> = [
        Some(mapping.user_id_column.as_str()),
        Some(mapping.time_column.as_str()),
        Some(mapping.amount_column.as_str()),
        match &mapping.event_name {
            EventNameSource::Column(column) => Some(column.as_str()),
            EventNameSource::Constant(_) => None,
        },
    ]
    .into_iter()
    .flatten()
    .chain(mapping.ignore_columns.iter().map(String::as_str))
    .collect();
    let schema = batch.schema();
    let mut embedded = None;
    let mut columns = Vec::new();
    for (index, field) in schema.fields().iter().enumerate() {
        if mapped.contains(&field.name().as_str()) {
            continue;
        }
        if field.name() == "properties" && is_text(field.data_type()) {
            embedded = Some(to_text(batch.column(index))?);
            continue;
        }
        columns.push((
            field.name().clone(),
            json_column(batch.column(index), infer_numbers)?,
        ));
    }
    let mut values = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut object = Map::new();
        if let Some(embedded) = &embedded
            && embedded.is_valid(row)
            && !embedded.value(row).trim().is_empty()
        {
            match serde_json::from_str::<Value>(embedded.value(row)) {
                Ok(Value::Object(parsed)) => object = parsed,
                _ => {
                    values.push(PropertiesValue::Invalid(embedded.value(row).to_string()));
                    continue;
                }
            }
        }
        for (name, column) in &columns {
            if let Some(value) = &column[row] {
                object.insert(name.clone(), value.clone());
            }
        }
        values.push(if object.is_empty() {
            PropertiesValue::Null
        } else {
            PropertiesValue::Json(Value::Object(object).to_string())
        });
    }
    Ok(values)
}

/// Converts a column to JSON values, `None` for nulls and empty text.
fn json_column(array: &ArrayRef, infer_numbers: bool) -> Result<Vec<Option<Value>>> {
    let rows = array.len();
    let data_type = array.data_type();
    if is_text(data_type) {
        let text = to_text(array)?;
        return Ok(text
            .iter()
            .map(|value| match value {
                None | Some("") => None,
                Some(value) if infer_numbers => Some(text_to_json(value)),
                Some(value) => Some(Value::String(value.to_string())),
            })
            .collect());
    }
    if data_type.is_numeric() || data_type == &DataType::Boolean {
        let formatter = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())?;
        return Ok((0..rows)
            .map(|row| {
                if array.is_null(row) {
                    return None;
                }
                let text = formatter.value(row).to_string();
                Some(serde_json::from_str(&text).unwrap_or(Value::String(text)))
            })
            .collect());
    }
    if matches!(
        data_type,
        DataType::Struct(_) | DataType::List(_) | DataType::LargeList(_) | DataType::Map(_, _)
    ) {
        return nested_to_json(array);
    }
    Ok((0..rows)
        .map(|row| (!array.is_null(row)).then(|| Value::String(display_value(array, row))))
        .collect())
}

/// Reads a CSV value as a JSON number when it is written as one, keeping text such as zip codes
/// with leading zeros as strings.
fn text_to_json(text: &str) -> Value {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let leading_zero = digits.len() > 1 && digits.starts_with('0') && !digits.starts_with("0.");
    if !leading_zero {
        if let Ok(integer) = text.parse::<i64>() {
            return Value::from(integer);
        }
        if text.contains('.')
            && !text.ends_with('.')
            && !text.starts_with('.')
            && let Ok(number) = text.parse::<f64>()
            && number.is_finite()
        {
            return Value::from(number);
        }
    }
    Value::String(text.to_string())
}

fn nested_to_json(array: &ArrayRef) -> Result<Vec<Option<Value>>> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "v",
        array.data_type().clone(),
        true,
    )]));
    let batch = RecordBatch::try_new(schema, vec![array.clone()])?;
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    writer.write(&batch)?;
    writer.finish()?;
    let rows: Vec<Value> = serde_json::from_slice(&writer.into_inner())?;
    Ok(rows
        .into_iter()
        .map(|row| row.get("v").cloned().filter(|value| !value.is_null()))
        .collect())
}

fn display_value(array: &ArrayRef, row: usize) -> String {
    ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())
        .map(|formatter| formatter.value(row).to_string())
        .unwrap_or_default()
}
