//! BI readers: DuckDB, pyarrow and pandas read every warehouse table the way an analyst would,
//! and get the row counts, column types and values that `goalcast sql` returns.
//!
//! The readers run in `tests/readers.py` with the Python of `.venv`, which `bash .ci/test`
//! creates from `.ci/requirements.txt`. The tables come from `goalcast tables`, so every table
//! that goalcast writes is covered without being named here.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use arrow::array::{Float64Array, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field};
use common::{TempWarehouse, cdnow_copy, create_cdnow_goal, success};
use goalcast::warehouse::{PartitionColumn, PartitionType, TableWrite};
use serde_json::{Map, Value};

const READERS: [&str; 5] = [
    "duckdb",
    "pyarrow",
    "pandas",
    "pyarrow_typed",
    "pandas_typed",
];

/// One table as `goalcast tables --format json` lists it.
#[derive(Debug, serde::Deserialize)]
struct Listing {
    name: String,
    rows: u64,
    partition_columns: Vec<String>,
    columns: Vec<(String, String)>,
}

impl Listing {
    /// Returns each column's name and Arrow type, without the `not null` suffix.
    fn column_types(&self) -> Vec<(&str, &str)> {
        self.columns
            .iter()
            .map(|(name, kind)| (name.as_str(), kind.trim_end_matches(" not null")))
            .collect()
    }
}

fn python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} not found: run `bash .ci/test` once to create .venv with duckdb, pyarrow and pandas \
         from .ci/requirements.txt",
        python.display()
    );
    python
}

fn list_tables(wh: &TempWarehouse) -> (String, Vec<Listing>) {
    let text = success(&wh.run(&["tables", "--format", "json"]));
    let listings = serde_json::from_str(&text).unwrap();
    (text, listings)
}

/// Runs `tests/readers.py` with `args` in the warehouse folder and returns its JSON output.
fn run_python<T: serde::de::DeserializeOwned>(
    wh: &TempWarehouse,
    tables_json: &str,
    args: &[&str],
) -> T {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/readers.py");
    let mut child = Command::new(python())
        .arg(script)
        .args(args)
        .current_dir(wh.root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(tables_json.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "tests/readers.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Returns the row count and, per column, the non-null count, minimum and maximum from
/// `goalcast sql`, in the canonical forms of `tests/readers.py`.
fn goalcast_stats(wh: &TempWarehouse, listing: &Listing) -> (u64, Map<String, Value>) {
    let mut selections = vec!["count(*) AS row_count".to_string()];
    for (index, (name, kind)) in listing.column_types().into_iter().enumerate() {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        let (minimum, maximum) = if kind.starts_with("Timestamp") {
            (
                format!("arrow_cast(min({quoted}), 'Int64')"),
                format!("arrow_cast(max({quoted}), 'Int64')"),
            )
        } else {
            (format!("min({quoted})"), format!("max({quoted})"))
        };
        selections.push(format!("count({quoted}) AS count_{index}"));
        selections.push(format!("{minimum} AS min_{index}"));
        selections.push(format!("{maximum} AS max_{index}"));
    }
    let sql = format!("SELECT {} FROM {}", selections.join(", "), listing.name);
    let text = success(&wh.run(&["sql", &sql, "--format", "json"]));
    let row: Map<String, Value> = serde_json::from_str(text.trim()).unwrap();
    let mut stats = Map::new();
    for (index, (name, _)) in listing.column_types().into_iter().enumerate() {
        let value = |key: &str| row.get(&format!("{key}_{index}")).cloned();
        stats.insert(
            name.to_string(),
            serde_json::json!({
                "count": value("count").unwrap(),
                "min": value("min").unwrap_or(Value::Null),
                "max": value("max").unwrap_or(Value::Null),
            }),
        );
    }
    (row["row_count"].as_u64().unwrap(), stats)
}

/// Returns the type name that `reader` should report for a column of Arrow type `arrow_type`.
///
/// The plain pyarrow and pandas reads infer Hive partition columns as dictionaries
/// (`pq.read_table` calls `HivePartitioning.discover(infer_dictionary=True)`), so only the
/// `_typed` reads, with the recipe from docs/tables.md, get the stored types there. pandas
/// has no date dtype and stores dates as `datetime.date` objects, and it turns integer columns
/// with nulls into float64.
fn expected_type(reader: &str, arrow_type: &str, partition: bool, has_nulls: bool) -> String {
    let dictionary =
        |values: &str| format!("dictionary<values={values}, indices=int32, ordered=0>");
    match (reader, arrow_type) {
        ("pyarrow", "Int64") if partition => dictionary("int32"),
        ("pyarrow", "Date32" | "Utf8") if partition => dictionary("string"),
        ("pandas", "Int64") if partition => "category<int32>".into(),
        ("pandas", "Date32" | "Utf8") if partition => "category<str>".into(),

        ("duckdb", "Utf8") => "VARCHAR".into(),
        ("duckdb", "Int64") => "BIGINT".into(),
        ("duckdb", "Int32") => "INTEGER".into(),
        ("duckdb", "Float64") => "DOUBLE".into(),
        ("duckdb", "Boolean") => "BOOLEAN".into(),
        ("duckdb", "Date32") => "DATE".into(),
        ("duckdb", "Timestamp(µs, \"UTC\")") => "TIMESTAMP WITH TIME ZONE".into(),

        ("pyarrow" | "pyarrow_typed", "Utf8") => "string".into(),
        ("pyarrow" | "pyarrow_typed", "Int64") => "int64".into(),
        ("pyarrow" | "pyarrow_typed", "Int32") => "int32".into(),
        ("pyarrow" | "pyarrow_typed", "Float64") => "double".into(),
        ("pyarrow" | "pyarrow_typed", "Boolean") => "bool".into(),
        ("pyarrow" | "pyarrow_typed", "Date32") => "date32[day]".into(),
        ("pyarrow" | "pyarrow_typed", "Timestamp(µs, \"UTC\")") => "timestamp[us, tz=UTC]".into(),

        ("pandas" | "pandas_typed", "Utf8") => "str".into(),
        ("pandas" | "pandas_typed", "Int64" | "Int32") if has_nulls => "float64".into(),
        ("pandas" | "pandas_typed", "Int64") => "int64".into(),
        ("pandas" | "pandas_typed", "Int32") => "int32".into(),
        ("pandas" | "pandas_typed", "Float64") => "float64".into(),
        ("pandas" | "pandas_typed", "Boolean") if has_nulls => "object<bool>".into(),
        ("pandas" | "pandas_typed", "Boolean") => "bool".into(),
        ("pandas" | "pandas_typed", "Date32") => "object<date>".into(),
        ("pandas" | "pandas_typed", "Timestamp(µs, \"UTC\")") => "datetime64[us, UTC]".into(),
        _ => panic!(
            "no expected {reader} type for Arrow type {arrow_type}; add it to expected_type \
             after checking what the reader returns"
        ),
    }
}

/// Compares two canonical values. Numbers compare as f64 because JSON writers differ on
/// `1.0` versus `1`.
fn same_value(left: &Value, right: &Value) -> bool {
    match (left.as_f64(), right.as_f64()) {
        (Some(left), Some(right)) => left == right,
        _ => left == right,
    }
}

/// Reads every table with every reader, checks it against goalcast and returns the table
/// names checked.
fn check_readers(wh: &TempWarehouse) -> Vec<String> {
    let (tables_json, listings) = list_tables(wh);
    let results: Map<String, Value> = run_python(wh, &tables_json, &["tables"]);
    for listing in &listings {
        let table = listing.name.as_str();
        let (rows, stats) = goalcast_stats(wh, listing);
        assert_eq!(
            rows, listing.rows,
            "{table}: goalcast sql and goalcast tables"
        );
        for reader in READERS {
            let result = &results[table][reader];
            assert_eq!(
                result["rows"].as_u64(),
                Some(rows),
                "{table}: row count from {reader}"
            );

            let columns: Vec<(String, String)> =
                serde_json::from_value(result["columns"].clone()).unwrap();
            let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
            let expected_names: Vec<&str> = listing
                .column_types()
                .into_iter()
                .map(|(name, _)| name)
                .collect();
            assert_eq!(names, expected_names, "{table}: column names from {reader}");

            for ((name, arrow_type), (_, reader_type)) in
                listing.column_types().into_iter().zip(&columns)
            {
                let partition = listing.partition_columns.iter().any(|c| c == name);
                let has_nulls = stats[name]["count"].as_u64() != Some(rows);
                let expected = expected_type(reader, arrow_type, partition, has_nulls);
                assert_eq!(
                    reader_type, &expected,
                    "{table}.{name} ({arrow_type}): type from {reader}"
                );
                for key in ["count", "min", "max"] {
                    let got = &result["stats"][name][key];
                    let want = &stats[name][key];
                    assert!(
                        same_value(got, want),
                        "{table}.{name}: {key} from {reader} is {got}, goalcast sql returns {want}"
                    );
                }
            }
        }
    }
    listings.into_iter().map(|listing| listing.name).collect()
}

/// Returns the SQL blocks of the "Example queries" section of docs/tables.md.
fn documented_queries() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/tables.md");
    let text = std::fs::read_to_string(path).unwrap();
    let start = text
        .find("\n## Example queries\n")
        .expect("docs/tables.md has an \"Example queries\" section");
    let section = &text[start + 1..];
    let section = &section[..section[1..]
        .find("\n## ")
        .map_or(section.len(), |end| end + 1)];
    section
        .split("```sql\n")
        .skip(1)
        .map(|block| block[..block.find("```").unwrap()].to_string())
        .collect()
}

/// Returns the header and rows of a `goalcast sql --format csv` run.
fn goalcast_csv(wh: &TempWarehouse, sql: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let text = success(&wh.run(&["sql", sql, "--format", "csv"]));
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    let rows = reader
        .records()
        .map(|record| record.unwrap().iter().map(str::to_string).collect())
        .collect();
    (header, rows)
}

/// Compares two result cells: numbers within rounding noise, times as instants, the rest as
/// text.
fn same_cell(left: &str, right: &str) -> bool {
    if let (Ok(left), Ok(right)) = (left.parse::<f64>(), right.parse::<f64>()) {
        return (left - right).abs() <= 1e-9 * left.abs().max(1.0);
    }
    let instant = chrono::DateTime::parse_from_rfc3339;
    if let (Ok(left), Ok(right)) = (instant(left), instant(right)) {
        return left == right;
    }
    left == right
}

/// Runs the documented queries in goalcast and DuckDB, checks that both return the same rows
/// and returns the number of queries run.
fn check_documented_queries(wh: &TempWarehouse) -> usize {
    let queries = documented_queries();
    let (tables_json, _) = list_tables(wh);
    let file = wh.file("queries.json", &serde_json::to_string(&queries).unwrap());
    let results: Vec<Value> = run_python(wh, &tables_json, &["queries", file.to_str().unwrap()]);
    for (query, duckdb) in queries.iter().zip(&results) {
        let duckdb_rows: Vec<Vec<String>> = serde_json::from_value(duckdb["rows"].clone()).unwrap();
        assert!(
            !duckdb_rows.is_empty(),
            "DuckDB returns no rows for:\n{query}"
        );
        if query.starts_with("-- DuckDB only") {
            continue;
        }
        let (header, rows) = goalcast_csv(wh, query);
        let duckdb_header: Vec<String> = serde_json::from_value(duckdb["columns"].clone()).unwrap();
        assert_eq!(header, duckdb_header, "column names of:\n{query}");
        assert_eq!(rows.len(), duckdb_rows.len(), "row count of:\n{query}");
        for (index, (row, duckdb_row)) in rows.iter().zip(&duckdb_rows).enumerate() {
            let same = row.len() == duckdb_row.len()
                && row.iter().zip(duckdb_row).all(|(a, b)| same_cell(a, b));
            assert!(
                same,
                "row {index} of:\n{query}\ngoalcast: {row:?}\nDuckDB:   {duckdb_row:?}"
            );
        }
    }
    queries.len()
}

/// Stages a predictions file for goal 1 without committing it, as a write interrupted before
/// its commit point leaves it.
async fn stage_uncommitted_predictions(wh: &TempWarehouse) {
    let schema = common::schema(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("probability", DataType::Float64, false),
        Field::new("achieve_probability", DataType::Float64, false),
        Field::new("score", DataType::Int32, false),
        Field::new("bucket", DataType::Utf8, false),
    ]);
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            std::sync::Arc::new(StringArray::from(vec!["staged"])),
            std::sync::Arc::new(Float64Array::from(vec![0.5])),
            std::sync::Arc::new(Float64Array::from(vec![0.5])),
            std::sync::Arc::new(Int32Array::from(vec![50])),
            std::sync::Arc::new(StringArray::from(vec!["Most Likely"])),
        ],
    )
    .unwrap();
    let partitioning = vec![PartitionColumn {
        name: "goal_id".into(),
        data_type: PartitionType::Int64,
    }];
    let write = TableWrite::begin(&wh.warehouse, "predictions", partitioning).unwrap();
    write
        .put_batches("goal_id=1/part-0.parquet", schema, &[batch])
        .await
        .unwrap();
}

#[test]
fn goal_tables_read_by_bi_readers() {
    let wh = cdnow_copy();
    create_cdnow_goal(&wh, "Q4 buyers");
    // Engaging a bucket and running the nightly job through the end date writes the
    // engagement and tracking tables too.
    success(&wh.run(&["goal", "engage", "1", "--bucket", "most"]));
    success(&wh.run(&["run", "--from", "1997-09-30", "--to", "1997-12-28"]));
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(stage_uncommitted_predictions(&wh));

    let tables = check_readers(&wh);
    for table in [
        "events",
        "goals",
        "target_groups",
        "predictions",
        "model_runs",
        "goal_curves",
        "control_groups",
        "goal_daily",
        "goal_results",
        "job_runs",
    ] {
        assert!(
            tables.iter().any(|name| name == table),
            "{table} missing from {tables:?}"
        );
    }
    let queries = check_documented_queries(&wh);
    assert!(
        queries >= 11,
        "only {queries} queries found in docs/tables.md"
    );

    // The staged file exists, and the equal row counts above show that no reader counted it.
    let staged = std::fs::read_dir(wh.root().join("_staging"))
        .unwrap()
        .count();
    assert_eq!(staged, 1, "one staged write under _staging/");
}

#[test]
fn generated_tables_read_by_bi_readers() {
    let wh = TempWarehouse::new();
    success(&wh.run(&["generate", "--users", "2000", "--days", "60", "--seed", "3"]));
    let tables = check_readers(&wh);
    assert_eq!(tables, ["events", "profiles", "truth", "truth_calendar"]);
}
