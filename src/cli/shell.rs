//! The interactive SQL shell of `goalcast sql`.

use datafusion::prelude::SessionContext;
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use crate::error::{Error, Result};
use crate::query::{self, OutputFormat};
use crate::warehouse::Warehouse;

/// Reads statements ending in `;` and prints their results until `\q`, `exit` or end of input.
pub async fn run(ctx: &SessionContext, warehouse: &Warehouse, format: OutputFormat) -> Result<()> {
    if format == OutputFormat::Parquet {
        return Err(Error::InvalidArgument(
            "the interactive shell prints results; use table, csv or json".into(),
        ));
    }
    let mut editor =
        DefaultEditor::new().map_err(|error| Error::InvalidArgument(error.to_string()))?;
    let history = std::env::var_os("HOME")
        .map(|home| std::path::PathBuf::from(home).join(".goalcast_history"));
    if let Some(history) = &history {
        let _ = editor.load_history(history);
    }
    println!(
        "goalcast SQL shell (read-only). End statements with ';'. \\d lists tables, \\q quits."
    );
    let mut statement = String::new();
    loop {
        let prompt = if statement.is_empty() {
            "goalcast> "
        } else {
            "      ..> "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                statement.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(error) => return Err(Error::InvalidArgument(error.to_string())),
        };
        let trimmed = line.trim();
        if statement.is_empty() {
            match trimmed {
                "" => continue,
                "\\q" | "exit" | "quit" => break,
                "\\d" => {
                    let _ = editor.add_history_entry(trimmed);
                    run_statement(ctx, warehouse, "SHOW TABLES", format).await;
                    continue;
                }
                _ => {}
            }
        }
        statement.push_str(&line);
        statement.push('\n');
        if trimmed.ends_with(';') {
            let _ = editor.add_history_entry(statement.trim());
            let sql = statement.trim().trim_end_matches(';').to_string();
            statement.clear();
            run_statement(ctx, warehouse, &sql, format).await;
        }
    }
    if let Some(history) = &history {
        let _ = editor.save_history(history);
    }
    Ok(())
}

/// Runs one statement on the tables as last committed, so that a shell left open across a
/// nightly run shows its results.
async fn run_statement(
    ctx: &SessionContext,
    warehouse: &Warehouse,
    sql: &str,
    format: OutputFormat,
) {
    let result = async {
        crate::context::refresh_tables(ctx, warehouse).await?;
        let started = query::start_read_only(ctx, warehouse, sql).await?;
        query::write_results(started, format, None).await
    }
    .await;
    if let Err(error) = result {
        eprintln!("error: {error}");
    }
}
