//! Schemas of the input tables and the names of their columns.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::warehouse::{PartitionColumn, PartitionType};

/// Name of the events table.
pub const EVENTS: &str = "events";
/// Name of the profiles table.
pub const PROFILES: &str = "profiles";
/// The column that identifies a user in every table.
pub const USER_ID: &str = "user_id";
/// The partition column of `events`: the UTC calendar date of `event_time`.
pub const EVENT_DATE: &str = "event_date";

/// The time zone of every stored timestamp.
pub const UTC: &str = "UTC";

/// Returns the type of every stored timestamp: microseconds in UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
}

/// The columns stored in the files of `events`, without the partition column.
pub static EVENTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(USER_ID, DataType::Utf8, false),
        Field::new("event_name", DataType::Utf8, false),
        Field::new("event_time", timestamp_type(), false),
        Field::new("amount", DataType::Float64, true),
        Field::new("properties", DataType::Utf8, true),
    ]))
});

/// Returns the Hive partitioning of `events`.
pub fn events_partitioning() -> Vec<PartitionColumn> {
    vec![PartitionColumn {
        name: EVENT_DATE.to_string(),
        data_type: PartitionType::Date,
    }]
}
