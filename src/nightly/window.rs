//! The days each goal of a run counts, and one shared read of the events those goals count.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::datatypes::Date32Type;
use chrono::{NaiveDate, Utc};
use chrono_tz::Tz;
use datafusion::prelude::{DataFrame, SessionContext, col, lit};
use datafusion::scalar::ScalarValue;

use crate::error::Result;
use crate::goals::records::GoalRecord;
use crate::models::timestamp_parameter;
use crate::predict::{self, local_midnight_micros};
use crate::warehouse::Warehouse;

use super::{RunDay, local_day};

/// The days of one goal that a run counts: from the goal's start through `last_day`.
pub(super) struct GoalSpan {
    pub definition: predict::GoalDefinition,
    pub zone: Tz,
    pub start_day: NaiveDate,
    pub last_day: NaiveDate,
}

impl GoalSpan {
    /// Returns the span of `goal` for a run of `day`, or `None` when no day of the goal has
    /// ended by then.
    pub fn of(goal: &GoalRecord, day: RunDay) -> Result<Option<Self>> {
        let definition = goal.definition()?;
        let zone = definition.zone()?;
        let goal_day = match day {
            RunDay::Day(day) => day,
            RunDay::Yesterday => Utc::now()
                .with_timezone(&zone)
                .date_naive()
                .pred_opt()
                .expect("in range"),
        };
        let start_day = local_day(definition.start_micros, zone);
        // Only days that have ended in the goal's zone are counted, so a run for today or a
        // later day stops at yesterday and closes no goal early.
        let now = Utc::now().timestamp_micros();
        let mut last_day = goal_day.min(definition.end_date);
        while local_midnight_micros(last_day.succ_opt().expect("in range"), zone)? > now {
            last_day = last_day.pred_opt().expect("in range");
        }
        if last_day < start_day {
            return Ok(None);
        }
        Ok(Some(GoalSpan {
            definition,
            zone,
            start_day,
            last_day,
        }))
    }

    /// Returns the end of the counted days as UTC microseconds, exclusive.
    pub fn through_micros(&self) -> Result<i64> {
        let next_day = self.last_day.succ_opt().expect("in range");
        Ok(local_midnight_micros(next_day, self.zone)?.min(self.definition.end_micros()?))
    }
}

/// Replaces `events` in `ctx` with the events that the goals of `spans` count, read once into
/// memory, when two goals or more share it and the days they span contain at most
/// `max_events` events. Each goal then reads its own events from memory instead of scanning
/// the same days of the events table again.
pub(super) async fn share_window_events(
    ctx: &SessionContext,
    warehouse: &Warehouse,
    spans: &[&GoalSpan],
    max_events: u64,
) -> Result<()> {
    if spans.len() < 2 {
        return Ok(());
    }
    let mut start = i64::MAX;
    let mut through = i64::MIN;
    let mut names: Vec<String> = Vec::new();
    for span in spans {
        start = start.min(span.definition.start_micros);
        through = through.max(span.through_micros()?);
        for name in &span.definition.event_names {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    // The goals' SQL casts event times to dates in UTC, as these bounds do.
    let first_date = local_day(start, chrono_tz::UTC);
    let last_date = local_day(through, chrono_tz::UTC);

    let Some(manifest) = warehouse.manifest("events").await? else {
        return Ok(());
    };
    // The files' row counts bound the copy: it keeps only the goals' event names.
    let window_rows: u64 = manifest
        .files
        .iter()
        .filter(|file| {
            file.partition
                .strip_prefix("event_date=")
                .and_then(|text| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
                .is_none_or(|date| date >= first_date && date <= last_date)
        })
        .map(|file| file.rows)
        .sum();
    if window_rows > max_events {
        tracing::info!(
            window_rows,
            max_events,
            "each goal reads its events from the events table"
        );
        return Ok(());
    }

    let timestamp = |micros| lit(timestamp_parameter(micros));
    let date = |day| lit(ScalarValue::Date32(Some(Date32Type::from_naive_date(day))));
    let condition = col("event_name")
        .in_list(names.iter().map(|name| lit(name.as_str())).collect(), false)
        .and(col("event_time").gt_eq(timestamp(start)))
        .and(col("event_time").lt(timestamp(through)))
        .and(col("event_date").gt_eq(date(first_date)))
        .and(col("event_date").lt_eq(date(last_date)));

    let events = ctx.table("events").await?;
    let columns = shared_columns(&events, spans);
    let rows = events.clone().filter(condition)?.select_columns(&columns)?;
    let memory = predict::sample::copy_to_memory(rows, "the goals' events").await?;
    ctx.deregister_table("events")?;
    ctx.register_table("events", Arc::new(memory))?;
    tracing::info!(
        goals = spans.len(),
        window_rows,
        columns = columns.join(", "),
        "read the goals' events once"
    );
    Ok(())
}

/// Returns the columns of `events` that the goals of `spans` read: the ones every goal reads
/// and the ones their event filters name, in table order. A filter that does not parse keeps
/// every column, and the goal reports the error when it registers its events.
fn shared_columns<'a>(events: &'a DataFrame, spans: &[&GoalSpan]) -> Vec<&'a str> {
    let mut needed: BTreeSet<String> = ["user_id", "event_name", "event_time", "event_date"]
        .map(String::from)
        .into();
    for span in spans {
        let Some(filter) = &span.definition.event_filter else {
            continue;
        };
        match events.parse_sql_expr(filter) {
            Ok(expression) => needed.extend(
                expression
                    .column_refs()
                    .into_iter()
                    .map(|column| column.name.clone()),
            ),
            Err(_) => {
                return events
                    .schema()
                    .fields()
                    .iter()
                    .map(|field| field.name().as_str())
                    .collect();
            }
        }
    }
    events
        .schema()
        .fields()
        .iter()
        .map(|field| field.name().as_str())
        .filter(|name| needed.contains(*name))
        .collect()
}
