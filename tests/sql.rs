//! `goalcast sql` and `goalcast tables`: read-only enforcement and output formats.

mod common;

use common::{TempWarehouse, failure, success};

fn warehouse_with_events() -> TempWarehouse {
    let wh = TempWarehouse::new();
    let path = wh.file(
        "events.csv",
        "user_id,event_name,event_time,amount\nu1,Charged,2024-01-01T10:00:00Z,12.5\nu2,App Launched,2024-01-02T08:30:00Z,\n",
    );
    success(&wh.run(&["import", "events", path.to_str().unwrap()]));
    wh
}

#[test]
fn writing_statements_are_rejected() {
    let wh = warehouse_with_events();
    let cases = [
        ("CREATE TABLE t AS SELECT 1", "DDL"),
        (
            "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/tmp/x'",
            "DDL",
        ),
        ("DROP TABLE events", "DDL"),
        ("INSERT INTO events SELECT * FROM events", "INSERT"),
        ("COPY events TO '/tmp/goalcast-copy.parquet'", "COPY"),
        ("SET datafusion.execution.batch_size = 1", "SET"),
    ];
    for (sql, kind) in cases {
        let error = failure(&wh.run(&["sql", sql]));
        assert!(
            error.contains("goalcast sql is read-only"),
            "{sql}: {error}"
        );
        assert!(error.contains(kind), "{sql}: {error}");
    }
    assert!(!std::path::Path::new("/tmp/goalcast-copy.parquet").exists());
    assert_eq!(wh.count_sync("SELECT count(*) FROM events"), 2);
}

#[test]
fn csv_and_json_outputs() {
    let wh = warehouse_with_events();
    let query = "SELECT user_id, amount FROM events ORDER BY user_id";
    assert_eq!(
        success(&wh.run(&["sql", query, "--format", "csv"])),
        "user_id,amount\nu1,12.5\nu2,\n"
    );
    assert_eq!(
        success(&wh.run(&["sql", query, "--format", "json"])),
        "{\"user_id\":\"u1\",\"amount\":12.5}\n{\"user_id\":\"u2\"}\n"
    );
    let table = success(&wh.run(&["sql", query]));
    assert!(table.contains("| u1      | 12.5   |"), "{table}");
    assert!(table.ends_with("2 rows\n"), "{table}");
}

#[test]
fn parquet_output_needs_a_file_and_round_trips() {
    let wh = warehouse_with_events();
    let query = "SELECT user_id, event_time FROM events ORDER BY user_id";
    let error = failure(&wh.run(&["sql", query, "--format", "parquet"]));
    assert!(
        error.contains("--format parquet needs --output FILE"),
        "{error}"
    );
    let out = wh.dir.path().join("out.parquet");
    success(&wh.run(&[
        "sql",
        query,
        "--format",
        "parquet",
        "--output",
        out.to_str().unwrap(),
    ]));
    let file = std::fs::File::open(&out).unwrap();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    assert_eq!(reader.metadata().file_metadata().num_rows(), 2);
    assert!(!wh.dir.path().join(".out.parquet.goalcast-tmp").exists());
}

#[test]
fn failed_query_names_the_problem() {
    let wh = warehouse_with_events();
    let error = failure(&wh.run(&["sql", "SELECT nope FROM events"]));
    assert!(error.contains("nope"), "{error}");
    let error = failure(&wh.run(&["sql", "SELECT 1", "--format", "xml"]));
    assert!(error.contains("invalid output format \"xml\""), "{error}");
}

#[test]
fn tables_lists_rows_and_columns() {
    let wh = warehouse_with_events();
    let text = success(&wh.run(&["tables"]));
    assert!(text.contains("events: 2 rows in 2 files"), "{text}");
    assert!(text.contains("partitioned by event_date"), "{text}");
    assert!(
        text.contains("event_time               Timestamp(µs, \"UTC\") not null"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&success(&wh.run(&["tables", "--format", "json"]))).unwrap();
    assert_eq!(json[0]["name"], "events");
    assert_eq!(json[0]["rows"], 2);
}

/// Starts the interactive shell of `goalcast sql` on `wh` with piped standard streams.
fn spawn_shell(wh: &TempWarehouse) -> std::process::Child {
    common::goalcast_command(&["sql", "--warehouse", wh.root().to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn shell_runs_statements_from_input() {
    use std::io::Write;
    let wh = warehouse_with_events();
    let mut child = spawn_shell(&wh);
    let input = "SELECT count(*) AS n\nFROM events;\nDROP TABLE events;\n\\q\n";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = success(&output);
    assert!(stdout.contains("| 2 |"), "{stdout}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("goalcast sql is read-only"), "{stderr}");
}

#[test]
fn shell_reads_commits_made_while_open() {
    use std::io::{BufRead, BufReader, Write};
    let wh = warehouse_with_events();
    let mut child = spawn_shell(&wh);
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut count_events = || {
        stdin
            .write_all(b"SELECT count(*) AS n FROM events;\n")
            .unwrap();
        stdin.flush().unwrap();
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "{lines:?}");
            if line.trim() == "1 row" {
                return lines;
            }
            lines.push(line.trim().to_string());
        }
    };
    assert!(count_events().contains(&"| 2 |".to_string()));

    let path = wh.file(
        "more.csv",
        "user_id,event_name,event_time,amount\nu3,Charged,2024-01-03T10:00:00Z,7\n",
    );
    success(&wh.run(&["import", "events", path.to_str().unwrap()]));
    let after = count_events();
    assert!(after.contains(&"| 3 |".to_string()), "{after:?}");
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let wh = warehouse_with_events();
    let script = format!(
        "{} --warehouse {} sql --format csv 'SELECT value FROM generate_series(1, 1000000)' \
         | head -n 1",
        env!("CARGO_BIN_EXE_goalcast"),
        wh.root().to_str().unwrap()
    );
    let output = std::process::Command::new("bash")
        .args(["-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stdout, "value\n");
    assert_eq!(stderr, "");
}
