//! Turning generated users into Parquet files of the four generated tables.

use std::fmt::Write as _;
use std::ops::RangeInclusive;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Float64Array, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::GeneratorConfig;
use super::model::{
    CATEGORIES, CHARGED, CITIES, Calendar, EVENT_NAMES, PLATFORMS, RawEvent, UNINSTALLED,
    draw_traits, simulate, user_rng,
};
use crate::error::Result;
use crate::schema::{
    EVENT_DATE, EVENTS, EVENTS_SCHEMA, PROFILES, UTC, events_partitioning, timestamp_type,
};
use crate::warehouse::{Replace, TableWrite, Warehouse};

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Name of the table with each user's true event rates.
pub const TRUTH: &str = "truth";
/// Name of the table with the daily seasonality factors.
pub const TRUTH_CALENDAR: &str = "truth_calendar";

/// The Parquet files of one chunk of users.
pub struct ChunkFiles {
    pub chunk: u64,
    /// Event files by partition folder.
    pub events: Vec<(String, Vec<u8>)>,
    pub profiles: Vec<u8>,
    pub truth: Vec<u8>,
    /// Events written, by index into [`EVENT_NAMES`].
    pub event_counts: [u64; 5],
}

/// The four table writes of one `generate` run.
pub struct Writes {
    events: TableWrite,
    profiles: TableWrite,
    truth: TableWrite,
    calendar: TableWrite,
}

impl Writes {
    pub fn begin(warehouse: &Warehouse) -> Result<Self> {
        Ok(Writes {
            events: TableWrite::begin(warehouse, EVENTS, events_partitioning())?,
            profiles: TableWrite::begin(warehouse, PROFILES, Vec::new())?,
            truth: TableWrite::begin(warehouse, TRUTH, Vec::new())?,
            calendar: TableWrite::begin(warehouse, TRUTH_CALENDAR, Vec::new())?,
        })
    }

    /// Stages the files of one chunk.
    pub async fn put_chunk(&self, files: ChunkFiles) -> Result<()> {
        let name = format!("part-{:05}.parquet", files.chunk);
        for (partition, bytes) in files.events {
            self.events
                .put_bytes(&format!("{partition}/{name}"), bytes)
                .await?;
        }
        self.profiles.put_bytes(&name, files.profiles).await?;
        self.truth.put_bytes(&name, files.truth).await?;
        Ok(())
    }

    /// Stages the calendar table.
    pub async fn put_calendar(&self, calendar: &Calendar) -> Result<()> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("day", DataType::Date32, false),
            Field::new("season_factor", DataType::Float64, false),
            Field::new("season_days_before", DataType::Float64, false),
        ]));
        let first_day = days_since_epoch(calendar.start_date);
        let days: Date32Array = (0..calendar.factors.len() as i32)
            .map(|d| Some(first_day + d))
            .collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(days),
                Arc::new(Float64Array::from(calendar.factors.clone())),
                Arc::new(Float64Array::from(
                    calendar.cumulative[..calendar.factors.len()].to_vec(),
                )),
            ],
        )?;
        self.calendar
            .put_batches("part-00000.parquet", schema, &[batch])
            .await
    }

    /// Commits the four tables, each atomically.
    pub async fn commit(self) -> Result<()> {
        self.calendar.commit(Replace::All).await?;
        self.truth.commit(Replace::All).await?;
        self.profiles.commit(Replace::All).await?;
        self.events.commit(Replace::All).await?;
        Ok(())
    }

    /// Removes everything staged so far.
    pub async fn abort(self) -> Result<()> {
        self.events.abort().await?;
        self.profiles.abort().await?;
        self.truth.abort().await?;
        self.calendar.abort().await
    }
}

/// Generates the users in `users` and encodes their rows.
pub fn build_chunk(
    config: &GeneratorConfig,
    calendar: &Calendar,
    chunk: u64,
    users: RangeInclusive<u64>,
) -> Result<ChunkFiles> {
    let width = config.users.to_string().len();
    let start_micros = i64::from(days_since_epoch(config.start_date)) * MICROS_PER_DAY;
    let to_micros =
        |days: f64| start_micros + (days * MICROS_PER_DAY as f64 / 1000.0).floor() as i64 * 1000;

    let mut events = Vec::new();
    let mut profiles = ProfileColumns::default();
    let mut truth = TruthColumns::default();
    for user in users {
        let mut rng = user_rng(config.seed, user);
        let traits = draw_traits(&mut rng, config.days);
        simulate(&mut rng, user as u32, &traits, calendar, &mut events);
        let user_id = format!("u{user:0width$}");
        profiles.push(&user_id, &traits, to_micros(traits.signup));
        let active_from = to_micros(traits.signup.max(0.0));
        let active_until = to_micros(traits.churn);
        for (kind, rate) in traits.rates.iter().enumerate() {
            truth.push(
                &user_id,
                EVENT_NAMES[kind],
                Some(*rate),
                active_from,
                active_until,
                None,
            );
        }
        let uninstall_at = traits.uninstalls.then(|| to_micros(traits.churn));
        truth.push(
            &user_id,
            EVENT_NAMES[UNINSTALLED],
            None,
            active_from,
            active_until,
            uninstall_at,
        );
    }

    let mut event_counts = [0_u64; 5];
    let mut rows: Vec<(i64, u32, RawEvent)> = events
        .into_iter()
        .map(|event| (to_micros(event.time), event.user, event))
        .collect();
    rows.sort_by_key(|(micros, user, _)| (micros.div_euclid(MICROS_PER_DAY), *user, *micros));
    let mut event_files = Vec::new();
    for day_rows in
        rows.chunk_by(|a, b| a.0.div_euclid(MICROS_PER_DAY) == b.0.div_euclid(MICROS_PER_DAY))
    {
        let day = day_rows[0].0.div_euclid(MICROS_PER_DAY);
        let date = chrono::DateTime::from_timestamp_micros(day * MICROS_PER_DAY)
            .expect("generated days are in range")
            .date_naive();
        for (_, _, event) in day_rows {
            event_counts[event.kind as usize] += 1;
        }
        let batch = event_batch(day_rows, width)?;
        let bytes = crate::warehouse::encode_parquet_fast(EVENTS_SCHEMA.clone(), &[batch])?;
        event_files.push((format!("{EVENT_DATE}={date}"), bytes));
    }
    Ok(ChunkFiles {
        chunk,
        events: event_files,
        profiles: profiles.encode()?,
        truth: truth.encode()?,
        event_counts,
    })
}

fn event_batch(rows: &[(i64, u32, RawEvent)], width: usize) -> Result<RecordBatch> {
    let mut user_ids = StringBuilder::with_capacity(rows.len(), rows.len() * (width + 1));
    let mut properties = StringBuilder::new();
    let mut json = String::new();
    for (_, user, event) in rows {
        json.clear();
        write!(json, "u{user:0width$}").expect("writing to a String");
        user_ids.append_value(&json);
        json.clear();
        match event.kind as usize {
            CHARGED => write!(json, "{{\"items\":{}}}", event.detail).expect("writing to a String"),
            1 | 2 => write!(
                json,
                "{{\"category\":\"{}\"}}",
                CATEGORIES[event.detail as usize]
            )
            .expect("writing to a String"),
            _ => {}
        }
        if json.is_empty() {
            properties.append_null();
        } else {
            properties.append_value(&json);
        }
    }
    let names: StringArray = rows
        .iter()
        .map(|(_, _, e)| Some(EVENT_NAMES[e.kind as usize]))
        .collect();
    let times =
        TimestampMicrosecondArray::from(rows.iter().map(|(m, _, _)| *m).collect::<Vec<_>>())
            .with_timezone(UTC);
    let amounts: Float64Array = rows
        .iter()
        .map(|(_, _, e)| (!e.amount.is_nan()).then_some(e.amount))
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(user_ids.finish()),
        Arc::new(names),
        Arc::new(times),
        Arc::new(amounts),
        Arc::new(properties.finish()),
    ];
    Ok(RecordBatch::try_new(EVENTS_SCHEMA.clone(), columns)?)
}

#[derive(Default)]
struct ProfileColumns {
    user_id: Vec<String>,
    city: Vec<&'static str>,
    country: Vec<&'static str>,
    platform: Vec<&'static str>,
    signup_time: Vec<i64>,
}

impl ProfileColumns {
    fn push(&mut self, user_id: &str, traits: &super::UserTraits, signup_micros: i64) {
        self.user_id.push(user_id.to_string());
        self.city.push(CITIES[traits.city].0);
        self.country.push(CITIES[traits.city].1);
        self.platform.push(PLATFORMS[traits.platform].0);
        self.signup_time.push(signup_micros);
    }

    fn encode(self) -> Result<Vec<u8>> {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("city", DataType::Utf8, false),
            Field::new("country", DataType::Utf8, false),
            Field::new("platform", DataType::Utf8, false),
            Field::new("signup_time", timestamp_type(), false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(self.user_id)),
                Arc::new(StringArray::from(self.city)),
                Arc::new(StringArray::from(self.country)),
                Arc::new(StringArray::from(self.platform)),
                Arc::new(TimestampMicrosecondArray::from(self.signup_time).with_timezone(UTC)),
            ],
        )?;
        crate::warehouse::encode_parquet_fast(schema, &[batch])
    }
}

#[derive(Default)]
struct TruthColumns {
    user_id: Vec<String>,
    event_name: Vec<&'static str>,
    rate_per_day: Vec<Option<f64>>,
    active_from: Vec<i64>,
    active_until: Vec<i64>,
    occurs_at: Vec<Option<i64>>,
}

impl TruthColumns {
    fn push(
        &mut self,
        user_id: &str,
        event_name: &'static str,
        rate_per_day: Option<f64>,
        active_from: i64,
        active_until: i64,
        occurs_at: Option<i64>,
    ) {
        self.user_id.push(user_id.to_string());
        self.event_name.push(event_name);
        self.rate_per_day.push(rate_per_day);
        self.active_from.push(active_from);
        self.active_until.push(active_until);
        self.occurs_at.push(occurs_at);
    }

    fn encode(self) -> Result<Vec<u8>> {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("event_name", DataType::Utf8, false),
            Field::new("rate_per_day", DataType::Float64, true),
            Field::new("active_from", timestamp_type(), false),
            Field::new("active_until", timestamp_type(), false),
            Field::new("occurs_at", timestamp_type(), true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(self.user_id)),
                Arc::new(StringArray::from(self.event_name)),
                Arc::new(Float64Array::from(self.rate_per_day)),
                Arc::new(TimestampMicrosecondArray::from(self.active_from).with_timezone(UTC)),
                Arc::new(TimestampMicrosecondArray::from(self.active_until).with_timezone(UTC)),
                Arc::new(TimestampMicrosecondArray::from(self.occurs_at).with_timezone(UTC)),
            ],
        )?;
        crate::warehouse::encode_parquet_fast(schema, &[batch])
    }
}

fn days_since_epoch(date: chrono::NaiveDate) -> i32 {
    (date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date")).num_days() as i32
}
