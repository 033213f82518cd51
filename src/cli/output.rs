//! Text and JSON rendering of command results.

use crate::error::{Error, Result};
use crate::generate::GenerateSummary;
use crate::import::ImportSummary;
use crate::query::TableListing;
use crate::warehouse::Warehouse;

/// Prints what an import did: as aligned text, or as one JSON object with `json`.
pub fn print_import_summary(summary: &ImportSummary, format: &str) -> Result<()> {
    match format {
        "json" => {
            println!("{}", serde_json::to_string_pretty(summary)?);
            return Ok(());
        }
        "text" => {}
        other => {
            return Err(Error::InvalidArgument(format!(
                "invalid --output-format {other:?}: use text or json"
            )));
        }
    }
    println!(
        "Imported {} from {} file{} in {:.1} s",
        summary.table,
        summary.files_read,
        plural(summary.files_read as u64),
        summary.seconds
    );
    let unit = if summary.table == "events" {
        "partitions"
    } else {
        "files"
    };
    let duplicates_note = if summary.table == "events" {
        "identical in every column; one copy kept"
    } else {
        "same user id; the last row kept"
    };
    let present_label = if summary.table == "events" {
        "already in the table"
    } else {
        "users replaced"
    };
    let lines = [
        ("rows read", summary.rows_read, ""),
        ("rows rejected", summary.rows_rejected, ""),
        (
            "duplicates in input",
            summary.duplicates_in_input,
            duplicates_note,
        ),
        (present_label, summary.already_present, ""),
        ("rows written", summary.rows_written, ""),
        (unit, summary.partitions_written as u64, "rewritten"),
    ];
    for (label, value, note) in lines {
        let note = if note.is_empty() {
            String::new()
        } else {
            format!("  ({note})")
        };
        println!("  {label:<22}{:>12}{note}", thousands(value));
    }
    for (reason, count) in &summary.rejected_by_reason {
        println!("    {reason}: {}", thousands(*count));
    }
    for (reason, location, value) in &summary.rejected_samples {
        let value = if value.is_empty() {
            String::new()
        } else {
            format!(": {value:?}")
        };
        println!("      e.g. {location} ({reason}){value}");
    }
    for skipped in &summary.files_skipped {
        println!("  skipped {skipped}");
    }
    Ok(())
}

/// Prints the table listing as text or JSON.
pub fn print_tables(warehouse: &Warehouse, tables: &[TableListing], format: &str) -> Result<()> {
    match format {
        "json" => println!("{}", serde_json::to_string_pretty(tables)?),
        "table" | "text" => {
            println!("Warehouse {}", warehouse.url());
            if tables.is_empty() {
                println!("  no tables yet; load data with goalcast import or goalcast generate");
            }
            for table in tables {
                let partitioning = if table.partition_columns.is_empty() {
                    String::new()
                } else {
                    format!(", partitioned by {}", table.partition_columns.join(", "))
                };
                println!(
                    "\n{}: {} rows in {} file{} ({}){partitioning}",
                    table.name,
                    thousands(table.rows),
                    table.files,
                    plural(table.files as u64),
                    human_bytes(table.bytes)
                );
                for (name, data_type) in &table.columns {
                    println!("  {name:<24} {data_type}");
                }
            }
        }
        other => {
            return Err(Error::InvalidArgument(format!(
                "invalid --format {other:?}: use table or json"
            )));
        }
    }
    Ok(())
}

/// Prints what `goalcast generate` wrote.
pub fn print_generate_summary(warehouse: &Warehouse, summary: &GenerateSummary) {
    println!(
        "Generated {} users and {} events over {} days in {:.1} s into {}",
        thousands(summary.users),
        thousands(summary.events),
        summary.days,
        summary.seconds,
        warehouse.url()
    );
    for (event, count) in &summary.events_by_name {
        println!("  {event:<18}{:>14}", thousands(*count));
    }
    println!("Tables: events, profiles, truth, truth_calendar (see `goalcast tables`)");
}

/// Formats a count with thousands separators.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

fn plural(count: u64) -> &'static str {
    if count == 1 { "" } else { "s" }
}
