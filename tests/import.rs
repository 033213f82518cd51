//! Import of events and profiles: round trips, duplicates and every kind of bad input.

mod common;

use std::sync::Arc;

use arrow::array::{
    Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
    TimestampNanosecondArray, TimestampSecondArray,
};
use arrow::datatypes::{DataType, Field};
use common::{
    TempWarehouse, by_extension, cdnow_mapping, cdnow_source, default_mapping, failure, schema,
    success,
};
use goalcast::context::ContextOptions;
use goalcast::import::{self, ImportSummary};

async fn import_events(
    wh: &TempWarehouse,
    paths: &[std::path::PathBuf],
    mapping: &goalcast::import::EventMapping,
) -> goalcast::Result<ImportSummary> {
    import::import_events(
        &wh.warehouse,
        paths,
        &by_extension(),
        mapping,
        &ContextOptions::default(),
    )
    .await
}

fn rejected(summary: &ImportSummary, reason: &str) -> u64 {
    summary
        .rejected_by_reason
        .iter()
        .find(|(name, _)| name == reason)
        .map(|(_, count)| *count)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn cdnow_counts_and_duplicates() {
    let wh = TempWarehouse::new();
    let summary = import_events(&wh, &[cdnow_source()], &cdnow_mapping())
        .await
        .unwrap();
    assert_eq!(summary.rows_read, 69_659);
    assert_eq!(summary.rows_rejected, 0);
    assert_eq!(summary.duplicates_in_input, 255);
    assert_eq!(summary.rows_written, 69_404);
    assert_eq!(
        wh.count("SELECT count(DISTINCT user_id) FROM events").await,
        23_570
    );
    assert_eq!(wh.count("SELECT count(*) FROM events").await, 69_404);
    // Several orders of one customer on one day are distinct events and stay.
    let same_day = wh
        .count("SELECT count(*) FROM (SELECT user_id, event_date FROM events GROUP BY 1, 2 HAVING count(*) > 1)")
        .await;
    assert!(
        same_day > 1_500,
        "only {same_day} customer-days with several orders"
    );
    assert_eq!(
        wh.rows("SELECT properties, amount FROM events WHERE user_id = '00001'")
            .await,
        vec!["{\"number_of_cds\":1}|11.77"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reimport_does_not_double() {
    let wh = TempWarehouse::new();
    import_events(&wh, &[cdnow_source()], &cdnow_mapping())
        .await
        .unwrap();
    let first = wh
        .rows("SELECT * FROM events ORDER BY user_id, event_time, amount")
        .await;
    let again = import_events(&wh, &[cdnow_source()], &cdnow_mapping())
        .await
        .unwrap();
    assert_eq!(again.rows_written, 0);
    assert_eq!(again.already_present, 69_404);
    let second = wh
        .rows("SELECT * FROM events ORDER BY user_id, event_time, amount")
        .await;
    assert_eq!(first, second);
}

#[tokio::test(flavor = "multi_thread")]
async fn appends_new_rows_to_existing_days() {
    let wh = TempWarehouse::new();
    let a = wh.file(
        "a.csv",
        "user_id,event_name,event_time\nu1,Charged,2024-01-01T10:00:00Z\nu2,Charged,2024-01-02T10:00:00Z\n",
    );
    let b = wh.file(
        "b.csv",
        "user_id,event_name,event_time\nu1,Charged,2024-01-01T10:00:00Z\nu3,Charged,2024-01-01T11:00:00Z\n",
    );
    import_events(&wh, &[a], &default_mapping()).await.unwrap();
    let summary = import_events(&wh, &[b], &default_mapping()).await.unwrap();
    assert_eq!(summary.rows_written, 1);
    assert_eq!(summary.already_present, 1);
    assert_eq!(wh.count("SELECT count(*) FROM events").await, 3);
    assert_eq!(
        wh.count("SELECT count(*) FROM events WHERE event_date = DATE '2024-01-02'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_column_names_file_and_column() {
    let wh = TempWarehouse::new();
    let path = wh.file(
        "no_time.csv",
        "user_id,event_name,when\nu1,Charged,2024-01-01\n",
    );
    let error = import_events(&wh, &[path], &default_mapping())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("no_time.csv"), "{error}");
    assert!(error.contains("missing column \"event_time\""), "{error}");
    assert!(
        error.contains("available: user_id, event_name, when"),
        "{error}"
    );
    assert!(error.contains("--time-column"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn mistyped_column_is_an_error() {
    let wh = TempWarehouse::new();
    let batch = RecordBatch::try_new(
        schema(vec![
            Field::new("user_id", DataType::Float64, false),
            Field::new("event_name", DataType::Utf8, false),
            Field::new("event_time", DataType::Utf8, false),
        ]),
        vec![
            Arc::new(Float64Array::from(vec![1.5])),
            Arc::new(StringArray::from(vec!["Charged"])),
            Arc::new(StringArray::from(vec!["2024-01-01"])),
        ],
    )
    .unwrap();
    let path = wh.parquet("float_ids.parquet", &batch);
    let error = import_events(&wh, &[path], &default_mapping())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("float_ids.parquet"), "{error}");
    assert!(
        error.contains("column \"user_id\" has type Float64"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_amount_text_is_rejected() {
    let wh = TempWarehouse::new();
    let path = wh.file(
        "amounts.csv",
        "user_id,event_name,event_time,amount\nu1,Charged,2024-01-01,12.5\nu2,Charged,2024-01-01,twelve\nu3,Charged,2024-01-01,\n",
    );
    let summary = import_events(&wh, &[path], &default_mapping())
        .await
        .unwrap();
    assert_eq!(rejected(&summary, "amount is not a finite number"), 1);
    assert_eq!(summary.rows_written, 2);
    assert_eq!(
        wh.count("SELECT count(*) FROM events WHERE amount IS NULL")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unparseable_times_are_rejected_and_shown() {
    let wh = TempWarehouse::new();
    let path = wh.file(
        "times.csv",
        "user_id,event_name,event_time\nu1,Charged,2024-01-01 10:00:00\nu2,Charged,yesterday\nu3,Charged,\n",
    );
    let summary = import_events(&wh, &[path], &default_mapping())
        .await
        .unwrap();
    assert_eq!(rejected(&summary, "unparseable or out-of-range time"), 1);
    assert_eq!(rejected(&summary, "null time"), 1);
    assert_eq!(summary.rows_written, 1);
    let sample = summary
        .rejected_samples
        .iter()
        .find(|(reason, _, _)| reason.starts_with("unparseable"))
        .unwrap();
    assert!(sample.1.ends_with("times.csv row 3"), "{sample:?}");
    assert_eq!(sample.2, "yesterday");
}

#[tokio::test(flavor = "multi_thread")]
async fn null_and_empty_user_ids_are_rejected() {
    let wh = TempWarehouse::new();
    let csv = wh.file(
        "ids.csv",
        "user_id,event_name,event_time\nu1,Charged,2024-01-01\n,Charged,2024-01-01\n  ,Charged,2024-01-02\n",
    );
    let json = wh.file(
        "ids.jsonl",
        "{\"user_id\": null, \"event_name\": \"Charged\", \"event_time\": \"2024-01-01\"}\n\
         {\"user_id\": 42, \"event_name\": \"Charged\", \"event_time\": \"2024-01-01\"}\n",
    );
    let summary = import_events(&wh, &[csv, json], &default_mapping())
        .await
        .unwrap();
    assert_eq!(rejected(&summary, "null or empty user id"), 3);
    assert_eq!(summary.rows_written, 2);
    assert_eq!(
        wh.rows("SELECT user_id FROM events ORDER BY 1").await,
        vec!["42", "u1"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_files_are_skipped_and_reported() {
    let wh = TempWarehouse::new();
    let zero_bytes = wh.file("zero.csv", "");
    let header_only = wh.file("header.csv", "user_id,event_name,event_time\n");
    let good = wh.file(
        "good.csv",
        "user_id,event_name,event_time\nu1,Charged,2024-01-01\n",
    );
    let summary = import_events(
        &wh,
        &[zero_bytes.clone(), header_only.clone(), good],
        &default_mapping(),
    )
    .await
    .unwrap();
    assert_eq!(summary.rows_written, 1);
    assert_eq!(summary.files_skipped.len(), 2);
    assert!(summary.files_skipped[0].contains("zero.csv: empty (0 bytes)"));
    assert!(summary.files_skipped[1].contains("header.csv: no data rows"));

    let error = import_events(&wh, &[zero_bytes, header_only], &default_mapping())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("nothing to import"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn differing_schemas_read_missing_columns_as_null() {
    let wh = TempWarehouse::new();
    let old = wh.file(
        "old.jsonl",
        "{\"user_id\": \"u1\", \"event_name\": \"Charged\", \"event_time\": \"2024-01-01T00:00:00Z\"}\n",
    );
    let new = wh.file(
        "new.jsonl",
        "{\"user_id\": \"u2\", \"event_name\": \"Charged\", \"event_time\": \"2024-01-01T00:00:00Z\", \"amount\": 9.5, \"coupon\": \"X1\", \"cart\": {\"items\": 2}}\n",
    );
    import_events(&wh, &[old, new], &default_mapping())
        .await
        .unwrap();
    assert_eq!(
        wh.rows("SELECT user_id, amount, properties FROM events ORDER BY user_id")
            .await,
        vec!["u1||", "u2|9.5|{\"cart\":{\"items\":2},\"coupon\":\"X1\"}",]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn required_amount_missing_everywhere_is_an_error() {
    let wh = TempWarehouse::new();
    let path = wh.file(
        "a.csv",
        "user_id,event_name,event_time\nu1,Charged,2024-01-01\n",
    );
    let mut mapping = default_mapping();
    mapping.amount_column = "revenue".into();
    mapping.amount_required = true;
    let error = import_events(&wh, &[path], &mapping)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("no input file has the amount column \"revenue\""),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn timestamps_in_every_unit_and_zone_agree() {
    let wh = TempWarehouse::new();
    // 2024-03-01T12:00:00Z in several encodings.
    let seconds = 1_709_294_400_i64;
    let batch = |name: &str, array: arrow::array::ArrayRef| {
        RecordBatch::try_new(
            schema(vec![
                Field::new("user_id", DataType::Utf8, false),
                Field::new("event_name", DataType::Utf8, false),
                Field::new("event_time", array.data_type().clone(), false),
            ]),
            vec![
                Arc::new(StringArray::from(vec![name])),
                Arc::new(StringArray::from(vec!["Charged"])),
                array,
            ],
        )
        .unwrap()
    };
    let files = vec![
        wh.parquet(
            "s.parquet",
            &batch(
                "s",
                Arc::new(TimestampSecondArray::from(vec![seconds]).with_timezone("UTC")),
            ),
        ),
        wh.parquet(
            "ms.parquet",
            &batch(
                "ms",
                Arc::new(
                    TimestampMillisecondArray::from(vec![seconds * 1000]).with_timezone("+01:00"),
                ),
            ),
        ),
        wh.parquet(
            "ns.parquet",
            &batch(
                "ns",
                Arc::new(
                    TimestampNanosecondArray::from(vec![seconds * 1_000_000_000])
                        .with_timezone("UTC"),
                ),
            ),
        ),
        wh.parquet(
            "naive.parquet",
            &batch("naive", Arc::new(TimestampSecondArray::from(vec![seconds]))),
        ),
        wh.file(
            "text.csv",
            "user_id,event_name,event_time\ntext,Charged,2024-03-01T13:00:00+01:00\n",
        ),
    ];
    import_events(&wh, &files, &default_mapping())
        .await
        .unwrap();
    assert_eq!(
        wh.count("SELECT count(*) FROM events WHERE event_time = TIMESTAMP '2024-03-01T12:00:00Z'")
            .await,
        5
    );

    // Times without a zone are wall-clock times in --time-zone.
    let zoned = TempWarehouse::new();
    let naive = zoned.parquet(
        "naive.parquet",
        &batch("naive", Arc::new(TimestampSecondArray::from(vec![seconds]))),
    );
    let text = zoned.file(
        "text.csv",
        "user_id,event_name,event_time\ntext,Charged,2024-03-01 12:00:00\n",
    );
    let mut mapping = default_mapping();
    mapping.time_zone = "America/New_York".parse().unwrap();
    import_events(&zoned, &[naive, text], &mapping)
        .await
        .unwrap();
    assert_eq!(
        zoned
            .count(
                "SELECT count(*) FROM events WHERE event_time = TIMESTAMP '2024-03-01T17:00:00Z'"
            )
            .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn epoch_numbers_need_a_time_format() {
    let wh = TempWarehouse::new();
    let batch = RecordBatch::try_new(
        schema(vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("event_name", DataType::Utf8, false),
            Field::new("event_time", DataType::Int64, false),
        ]),
        vec![
            Arc::new(StringArray::from(vec!["u1"])),
            Arc::new(StringArray::from(vec!["Charged"])),
            Arc::new(Int64Array::from(vec![1_709_294_400_000])),
        ],
    )
    .unwrap();
    let path = wh.parquet("epoch.parquet", &batch);
    let error = import_events(&wh, std::slice::from_ref(&path), &default_mapping())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("--time-format epoch_s, epoch_ms"), "{error}");
    let mut mapping = default_mapping();
    mapping.time_format = "epoch_ms".parse().unwrap();
    import_events(&wh, &[path], &mapping).await.unwrap();
    assert_eq!(
        wh.count("SELECT count(*) FROM events WHERE event_time = TIMESTAMP '2024-03-01T12:00:00Z'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn whitespace_text_reads_like_cdnow() {
    let wh = TempWarehouse::new();
    let path = wh.file(
        "log.txt",
        " customer_id  date number_of_cds  dollar_value\r\n 00001 19970101  1   11.77\r\n\r\n 00002 19970112  5   77.00\r\n",
    );
    let options = goalcast::import::SourceOptions {
        format: Some(goalcast::import::SourceFormat::Csv),
        delimiter: Some(goalcast::import::Delimiter::Whitespace),
    };
    let summary = import::import_events(
        &wh.warehouse,
        &[path],
        &options,
        &cdnow_mapping(),
        &ContextOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(summary.rows_written, 2);
    assert_eq!(
        wh.rows(
            "SELECT user_id, event_name, event_time, amount, properties FROM events ORDER BY 1"
        )
        .await,
        vec![
            "00001|Charged|1997-01-01T00:00:00Z|11.77|{\"number_of_cds\":1}",
            "00002|Charged|1997-01-12T00:00:00Z|77.0|{\"number_of_cds\":5}",
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_import_leaves_table_unchanged() {
    let wh = TempWarehouse::new();
    let good = wh.file(
        "good.csv",
        "user_id,event_name,event_time\nu1,Charged,2024-01-01\n",
    );
    import_events(&wh, &[good], &default_mapping())
        .await
        .unwrap();
    let before = wh.rows("SELECT * FROM events").await;
    let more = wh.file(
        "more.csv",
        "user_id,event_name,event_time\nu2,Charged,2024-01-01\n",
    );
    let broken = wh.file("broken.csv", "user_id,event_name\nu3,Charged\n");
    assert!(
        import_events(&wh, &[more, broken], &default_mapping())
            .await
            .is_err()
    );
    assert_eq!(wh.rows("SELECT * FROM events").await, before);
    assert!(!wh.root().join("_staging").exists());
}

#[test]
fn cli_import_prints_summary() {
    let wh = TempWarehouse::new();
    let source = common::cdnow_source();
    let output = wh.run(&[
        "import",
        "events",
        source.to_str().unwrap(),
        "--user-id-column",
        "customer_id",
        "--event-name",
        "Charged",
        "--time-column",
        "date",
        "--time-format",
        "%Y%m%d",
        "--amount-column",
        "dollar_value",
    ]);
    let text = success(&output);
    assert!(
        text.contains("rows read                   69,659"),
        "{text}"
    );
    assert!(
        text.contains("duplicates in input            255"),
        "{text}"
    );
    assert!(
        text.contains("rows written                69,404"),
        "{text}"
    );
}

#[test]
fn cli_rejects_unknown_format_and_zone() {
    let wh = TempWarehouse::new();
    let path = wh.file("a.data", "x\n");
    let error = failure(&wh.run(&["import", "events", path.to_str().unwrap()]));
    assert!(
        error.contains("cannot tell the format from the file extension"),
        "{error}"
    );
    let error = failure(&wh.run(&[
        "import",
        "events",
        path.to_str().unwrap(),
        "--format",
        "csv",
        "--time-zone",
        "Mars/Base",
    ]));
    assert!(error.contains("unknown time zone \"Mars/Base\""), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn profiles_upsert_by_user() {
    let wh = TempWarehouse::new();
    let first = wh.file(
        "p1.csv",
        "id,city,plan\n1,Berlin,free\n2,Paris,pro\n2,Lyon,pro\n,Nowhere,free\n",
    );
    let second = wh.file("p2.csv", "id,city,country\n1,Munich,DE\n3,Tokyo,JP\n");
    let options = by_extension();
    let context = ContextOptions::default();
    let summary = import::import_profiles(&wh.warehouse, &[first], &options, "id", &[], &context)
        .await
        .unwrap();
    assert_eq!(summary.rows_rejected, 1);
    assert_eq!(summary.duplicates_in_input, 1);
    assert_eq!(summary.rows_written, 2);
    let summary = import::import_profiles(&wh.warehouse, &[second], &options, "id", &[], &context)
        .await
        .unwrap();
    assert_eq!(summary.already_present, 1);
    assert_eq!(
        wh.rows("SELECT user_id, city, plan, country FROM profiles ORDER BY user_id")
            .await,
        vec!["1|Munich||DE", "2|Lyon|pro|", "3|Tokyo||JP",]
    );
}
