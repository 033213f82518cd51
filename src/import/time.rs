//! Parsing of source time values into UTC microseconds.

use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

use crate::error::{Error, Result};

/// The notation of a source's time column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFormat {
    /// RFC 3339 / ISO 8601 date-times (with or without an offset) and `YYYY-MM-DD` dates.
    Auto,
    /// A chrono `strftime` pattern such as `%Y%m%d` or `%d/%m/%Y %H:%M`.
    Pattern(String),
    /// Seconds since the Unix epoch.
    EpochSeconds,
    /// Milliseconds since the Unix epoch.
    EpochMillis,
    /// Microseconds since the Unix epoch.
    EpochMicros,
}

impl FromStr for TimeFormat {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "auto" => Ok(TimeFormat::Auto),
            "epoch_s" | "epoch_seconds" => Ok(TimeFormat::EpochSeconds),
            "epoch_ms" | "epoch_millis" => Ok(TimeFormat::EpochMillis),
            "epoch_us" | "epoch_micros" => Ok(TimeFormat::EpochMicros),
            pattern if pattern.contains('%') => Ok(TimeFormat::Pattern(pattern.to_string())),
            other => Err(Error::InvalidArgument(format!(
                "invalid time format {other:?}: use auto, epoch_s, epoch_ms, epoch_us or a \
                 strftime pattern such as %Y-%m-%d"
            ))),
        }
    }
}

impl TimeFormat {
    /// Returns the number of microseconds in one unit of an epoch format.
    pub fn epoch_micros_per_unit(&self) -> Option<i64> {
        match self {
            TimeFormat::EpochSeconds => Some(1_000_000),
            TimeFormat::EpochMillis => Some(1_000),
            TimeFormat::EpochMicros => Some(1),
            TimeFormat::Auto | TimeFormat::Pattern(_) => None,
        }
    }
}

/// Parses a time zone name such as `UTC` or `America/New_York`.
pub fn parse_time_zone(name: &str) -> Result<Tz> {
    name.parse::<Tz>().map_err(|_| {
        Error::InvalidArgument(format!(
            "unknown time zone {name:?}: use an IANA name such as UTC or Europe/Berlin"
        ))
    })
}

/// Parses `text` as a time in `format`; times without an offset are local times in `zone`.
///
/// Returns `None` when the text does not match the format or names a local time that does not
/// exist (in a daylight-saving gap).
pub fn parse_time_text(text: &str, format: &TimeFormat, zone: Tz) -> Option<i64> {
    let text = text.trim();
    if let Some(micros_per_unit) = format.epoch_micros_per_unit() {
        return parse_epoch(text, micros_per_unit);
    }
    match format {
        TimeFormat::Pattern(pattern) => parse_with_pattern(text, pattern, zone),
        _ => parse_auto(text, zone),
    }
}

/// Converts a count of `micros_per_unit` units since the epoch, rejecting overflow.
pub fn epoch_to_micros(value: i64, micros_per_unit: i64) -> Option<i64> {
    value.checked_mul(micros_per_unit)
}

/// Converts a local wall-clock time in `zone` to UTC microseconds.
///
/// An ambiguous time (in a daylight-saving fold) resolves to its earlier instant.
pub fn local_to_micros(naive: NaiveDateTime, zone: Tz) -> Option<i64> {
    match zone.from_local_datetime(&naive) {
        LocalResult::Single(time) | LocalResult::Ambiguous(time, _) => {
            Some(time.timestamp_micros())
        }
        LocalResult::None => None,
    }
}

fn parse_epoch(text: &str, micros_per_unit: i64) -> Option<i64> {
    if let Ok(whole) = text.parse::<i64>() {
        return epoch_to_micros(whole, micros_per_unit);
    }
    let value = text.parse::<f64>().ok()?;
    let micros = value * micros_per_unit as f64;
    (micros.is_finite() && micros.abs() < i64::MAX as f64).then(|| micros.round() as i64)
}

fn parse_with_pattern(text: &str, pattern: &str, zone: Tz) -> Option<i64> {
    if let Ok(time) = DateTime::parse_from_str(text, pattern) {
        return Some(time.timestamp_micros());
    }
    if let Ok(naive) = NaiveDateTime::parse_from_str(text, pattern) {
        return local_to_micros(naive, zone);
    }
    let date = NaiveDate::parse_from_str(text, pattern).ok()?;
    local_to_micros(date.and_hms_opt(0, 0, 0)?, zone)
}

fn parse_auto(text: &str, zone: Tz) -> Option<i64> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.timestamp_micros());
    }
    for pattern in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%#z"] {
        if let Ok(time) = DateTime::parse_from_str(text, pattern) {
            return Some(time.timestamp_micros());
        }
    }
    let text = text.strip_suffix(" UTC").unwrap_or(text);
    for pattern in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, pattern) {
            return local_to_micros(naive, zone);
        }
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    local_to_micros(date.and_hms_opt(0, 0, 0)?, zone)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UTC: Tz = chrono_tz::UTC;

    fn micros(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_micros()
    }

    #[test]
    fn auto_reads_iso_forms() {
        let expected = micros("2024-03-01T12:30:00Z");
        for text in [
            "2024-03-01T12:30:00Z",
            "2024-03-01T13:30:00+01:00",
            "2024-03-01 12:30:00",
            "2024-03-01T12:30:00.000",
            "2024-03-01 12:30:00 UTC",
        ] {
            assert_eq!(
                parse_time_text(text, &TimeFormat::Auto, UTC),
                Some(expected),
                "{text}"
            );
        }
    }

    #[test]
    fn auto_rejects_bare_numbers() {
        assert_eq!(parse_time_text("19970101", &TimeFormat::Auto, UTC), None);
    }

    #[test]
    fn pattern_reads_dates_in_zone() {
        let format = TimeFormat::Pattern("%Y%m%d".into());
        let zone: Tz = "America/New_York".parse().unwrap();
        let parsed = parse_time_text("19970101", &format, zone);
        assert_eq!(parsed, Some(micros("1997-01-01T05:00:00Z")));
    }

    #[test]
    fn epoch_units_scale() {
        let second = micros("2024-01-01T00:00:00Z") / 1_000_000;
        let text = second.to_string();
        assert_eq!(
            parse_time_text(&text, &TimeFormat::EpochSeconds, UTC),
            Some(second * 1_000_000)
        );
        let millis = (second * 1000).to_string();
        assert_eq!(
            parse_time_text(&millis, &TimeFormat::EpochMillis, UTC),
            Some(second * 1_000_000)
        );
    }

    #[test]
    fn daylight_saving_gap_is_rejected() {
        let zone: Tz = "Europe/Berlin".parse().unwrap();
        let format = TimeFormat::Auto;
        assert_eq!(parse_time_text("2024-03-31 02:30:00", &format, zone), None);
    }
}
