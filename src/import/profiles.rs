//! Import of `profiles`: one row per user, later rows replacing earlier ones.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::ParquetReadOptions;
use parquet::arrow::ArrowWriter;

use super::{ImportSummary, SourceOptions, count, source};
use crate::context::{ContextOptions, empty_context, register_table};
use crate::error::{Error, Result};
use crate::schema::{PROFILES, USER_ID};
use crate::warehouse::{Replace, TableWrite, Warehouse};

/// Column holding each input row's position, so the last row of a user wins.
const SEQUENCE: &str = "_goalcast_seq";

pub(super) async fn import(
    warehouse: &Warehouse,
    paths: &[PathBuf],
    source_options: &SourceOptions,
    user_id_column: &str,
    ignore_columns: &[String],
    context_options: &ContextOptions,
) -> Result<ImportSummary> {
    let started = Instant::now();
    let scratch = tempfile::Builder::new()
        .prefix("goalcast-import")
        .tempdir()?;
    let mut summary = ImportSummary {
        table: PROFILES.to_string(),
        ..Default::default()
    };
    let bar = super::reading_bar(paths);
    let mut sequence = 0_u64;
    let mut staged = 0;
    let mut rejected_samples = Vec::new();
    for (index, path) in paths.iter().enumerate() {
        bar.set_message(path.display().to_string());
        let Some(source) = source::open(path, source_options, &[user_id_column], &bar)? else {
            summary.skip_empty_file(path);
            continue;
        };
        let Some((id_index, id_field)) = source.schema.column_with_name(user_id_column) else {
            let available: Vec<&str> = source
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            return Err(Error::input(
                path,
                format!(
                    "missing column {user_id_column:?} (available: {}); name the user id column \
                     with --user-id-column",
                    available.join(", ")
                ),
            ));
        };
        let id_type = id_field.data_type().clone();
        if !matches!(
            id_type,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ) && !id_type.is_integer()
        {
            return Err(Error::input(
                path,
                format!(
                    "column {user_id_column:?} has type {id_type}; a user id must be text or an integer"
                ),
            ));
        }
        let kept: Vec<usize> = (0..source.schema.fields().len())
            .filter(|&i| {
                let name = source.schema.field(i).name();
                i != id_index && !ignore_columns.contains(name)
            })
            .collect();
        if kept
            .iter()
            .any(|&i| source.schema.field(i).name() == USER_ID)
        {
            return Err(Error::input(
                path,
                format!(
                    "column {USER_ID:?} is not the user id column; drop it with --ignore-column {USER_ID}"
                ),
            ));
        }
        let mut fields = vec![Field::new(USER_ID, DataType::Utf8, false)];
        fields.extend(
            kept.iter()
                .map(|&i| source.schema.field(i).clone().with_nullable(true)),
        );
        fields.push(Field::new(SEQUENCE, DataType::UInt64, false));
        let schema = Arc::new(Schema::new(fields));
        let target = scratch.path().join(format!("part-{index:05}.parquet"));
        let mut writer = ArrowWriter::try_new(File::create(&target)?, schema.clone(), None)?;
        let mut file_rows = 0_u64;
        for batch in source.batches {
            let batch =
                batch.map_err(|error| Error::input(path, format!("cannot read: {error}")))?;
            let ids = arrow::compute::cast(batch.column(id_index), &DataType::Utf8)?;
            let ids = ids
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("cast to Utf8");
            let mut rows = Vec::new();
            for row in 0..batch.num_rows() {
                let id = (!arrow::array::Array::is_null(ids, row)).then(|| ids.value(row).trim());
                if id.is_none_or(str::is_empty) {
                    summary.rows_rejected += 1;
                    if rejected_samples.len() < 3 {
                        rejected_samples.push((
                            "null or empty user id".to_string(),
                            format!("{} row {}", path.display(), file_rows + row as u64 + 1),
                            String::new(),
                        ));
                    }
                } else {
                    rows.push(row as u32);
                }
            }
            file_rows += batch.num_rows() as u64;
            if rows.is_empty() {
                continue;
            }
            let take = arrow::array::UInt32Array::from(rows.clone());
            let trimmed: StringArray = rows
                .iter()
                .map(|&r| Some(ids.value(r as usize).trim()))
                .collect();
            let mut columns: Vec<ArrayRef> = vec![Arc::new(trimmed)];
            for &i in &kept {
                columns.push(arrow::compute::take(batch.column(i), &take, None)?);
            }
            let sequences: UInt64Array = (0..rows.len() as u64).map(|n| sequence + n).collect();
            sequence += rows.len() as u64;
            columns.push(Arc::new(sequences));
            writer.write(&RecordBatch::try_new(schema.clone(), columns)?)?;
        }
        writer.close()?;
        summary.files_read += 1;
        summary.rows_read += file_rows;
        if file_rows == 0 {
            summary
                .files_skipped
                .push(format!("{}: no data rows", path.display()));
        }
        staged += 1;
    }
    bar.finish_and_clear();
    if summary.rows_rejected > 0 {
        summary.rejected_by_reason = vec![("null or empty user id".into(), summary.rows_rejected)];
        summary.rejected_samples = rejected_samples;
    }
    let valid_rows = summary.rows_read - summary.rows_rejected;
    if staged == 0 || valid_rows == 0 {
        return Err(summary.nothing_to_import());
    }

    let ctx = empty_context(warehouse, context_options)?;
    let scratch_path = scratch
        .path()
        .to_str()
        .expect("temporary folders have UTF-8 paths");
    ctx.register_parquet("import_new", scratch_path, ParquetReadOptions::default())
        .await?;
    let distinct_users = count(&ctx, "SELECT count(DISTINCT user_id) FROM import_new").await?;
    summary.duplicates_in_input = valid_rows - distinct_users;
    let latest = format!(
        "SELECT * EXCLUDE ({SEQUENCE}, _goalcast_rank) FROM (SELECT *, row_number() OVER \
         (PARTITION BY user_id ORDER BY {SEQUENCE} DESC) AS _goalcast_rank FROM import_new) \
         WHERE _goalcast_rank = 1"
    );
    let merge = match warehouse.manifest(PROFILES).await? {
        Some(manifest) if manifest.row_count() > 0 => {
            register_table(&ctx, warehouse, &manifest).await?;
            summary.already_present = count(
                &ctx,
                "SELECT count(*) FROM profiles p JOIN (SELECT DISTINCT user_id FROM import_new) n \
                 ON p.user_id = n.user_id",
            )
            .await?;
            format!(
                "SELECT * FROM ({latest} UNION ALL BY NAME SELECT p.* FROM profiles p LEFT ANTI \
                 JOIN (SELECT DISTINCT user_id FROM import_new) n ON p.user_id = n.user_id) \
                 ORDER BY user_id"
            )
        }
        _ => format!("SELECT * FROM ({latest}) ORDER BY user_id"),
    };
    let write = TableWrite::begin(warehouse, PROFILES, Vec::new())?;
    let file_url = write
        .staging_url()
        .join(&format!("part-{}.parquet", write.write_id()))
        .expect("a file name joins onto the staging URL");
    let result = async {
        ctx.sql(&merge)
            .await?
            .write_parquet(file_url.as_str(), DataFrameWriteOptions::new(), None)
            .await?;
        Ok::<_, Error>(())
    }
    .await;
    if let Err(error) = result {
        write.abort().await?;
        return Err(error);
    }
    let manifest = write.commit(Replace::All).await?;
    summary.rows_written = manifest.row_count();
    summary.partitions_written = manifest.files.len();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}
