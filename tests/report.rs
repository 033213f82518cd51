//! `goalcast report` in a real browser: headless Chromium renders the report of a CDNOW goal
//! before and after a nightly run, and the test checks the page's DOM, its console output and
//! a screenshot.
//!
//! Chromium is Debian's `chromium` package, which `.ci/run` installs when it is missing.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, AsArray, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Date32Type, Field, Float64Type, Int32Type, Int64Type};
use common::{TempWarehouse, cdnow_copy, success};
use goalcast::warehouse::{PartitionColumn, PartitionType, Replace, TableWrite};

/// Colours of the report's series, as plotters writes them into the SVG.
const PREDICTED: &str = "#1F77B4";
const ACTUAL: &str = "#D66000";
const CONTROL: &str = "#6E6E6E";
const INCREASE: &str = "#2CA02C";
const DECREASE: &str = "#D62728";
/// The same colours as RGB pixels of the screenshot.
const PREDICTED_PIXEL: [u8; 3] = [31, 119, 180];
const ACTUAL_PIXEL: [u8; 3] = [214, 96, 0];

/// Upper bound on one Chromium run; a run that takes longer is killed and fails the test.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(120);

/// A goal name and filter with characters that HTML must escape.
const GOAL_NAME: &str = "Q4 <buyers> & \"friends\"";
const GOAL_FILTER: &str = "amount < 5000";

fn chromium() -> PathBuf {
    let path = std::env::var_os("GOALCAST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "{} not found: run `bash .ci/run`, which installs it, or `apt-get install chromium`",
        path.display()
    );
    path
}

/// What Chromium produced for one page.
struct Rendered {
    dom: String,
    /// Chromium's log, which includes one `:CONSOLE` line per console message of the page.
    log: String,
    /// RGB pixels of the screenshot, row by row.
    pixels: Vec<[u8; 3]>,
}

/// Runs headless Chromium on `page` with `mode` (`--dump-dom` or `--screenshot=FILE`) and
/// returns its standard output and log. Kills its whole process group when it is done or
/// when it exceeds [`CHROMIUM_TIMEOUT`].
fn run_chromium(page: &Path, mode: &str, scratch: &Path) -> (String, String) {
    use std::os::unix::process::CommandExt;

    let profile = tempfile::tempdir_in(scratch).unwrap();
    let stdout_path = scratch.join("chromium.stdout");
    let stderr_path = scratch.join("chromium.stderr");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            // The report must load nothing: no host name resolves.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--window-size=1100,4200",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(mode)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let group = child.id() as i32;
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // SAFETY: kill(2) with a negative pid signals the process group that this test started;
    // ESRCH, when every process has already exited, is ignored.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
    let _ = child.wait();
    let log = std::fs::read_to_string(&stderr_path).unwrap();
    let status = status.unwrap_or_else(|| {
        panic!("Chromium did not finish within {CHROMIUM_TIMEOUT:?} and was killed; log:\n{log}")
    });
    assert!(status.success(), "Chromium failed ({status}); log:\n{log}");
    (std::fs::read_to_string(&stdout_path).unwrap(), log)
}

/// Renders `page` to its DOM, its log and a screenshot.
fn render(page: &Path, scratch: &Path) -> Rendered {
    let (dom, dom_log) = run_chromium(page, "--dump-dom", scratch);
    let screenshot = scratch.join("screenshot.png");
    let (_, screenshot_log) = run_chromium(
        page,
        &format!("--screenshot={}", screenshot.display()),
        scratch,
    );
    Rendered {
        dom,
        log: format!("{dom_log}\n{screenshot_log}"),
        pixels: decode_png(&screenshot),
    }
}

fn decode_png(path: &Path) -> Vec<[u8; 3]> {
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut reader = png::Decoder::new(file).read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buffer).unwrap();
    assert_eq!(info.bit_depth, png::BitDepth::Eight, "screenshot bit depth");
    let channels = info.color_type.samples();
    assert!(
        channels >= 3,
        "screenshot colour type {:?}",
        info.color_type
    );
    buffer[..info.buffer_size()]
        .chunks(channels)
        .map(|pixel| [pixel[0], pixel[1], pixel[2]])
        .collect()
}

/// Returns the console messages in Chromium's log, such as uncaught exceptions.
fn console_messages(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.contains(":CONSOLE") || line.contains("Uncaught"))
        .collect()
}

/// Returns the `<svg>` element inside the element with id `id`, or `None` when either is
/// missing.
fn chart_svg<'a>(dom: &'a str, id: &str) -> Option<&'a str> {
    let start = dom.find(&format!("id=\"{id}\""))?;
    let svg_start = start + dom[start..].find("<svg")?;
    let svg_end = svg_start + dom[svg_start..].find("</svg>")? + "</svg>".len();
    Some(&dom[svg_start..svg_end])
}

/// Returns the number of points of each `tag` element (`polyline`, `polygon`) drawn in
/// `colour`.
fn shapes_in_colour(svg: &str, tag: &str, colour: &str) -> Vec<usize> {
    svg.split(&format!("<{tag} "))
        .skip(1)
        .map(|element| &element[..element.find('>').unwrap()])
        .filter(|attributes| attributes.contains(&format!("=\"{colour}\"")))
        .map(|attributes| {
            let points = attributes.split("points=\"").nth(1).unwrap_or("");
            points[..points.find('"').unwrap_or(0)]
                .split_whitespace()
                .count()
        })
        .collect()
}

/// Returns the number of `tag` elements (`rect`, `circle`) filled with `colour`.
fn filled_in_colour(svg: &str, tag: &str, colour: &str) -> usize {
    svg.split(&format!("<{tag} "))
        .skip(1)
        .map(|element| &element[..element.find('>').unwrap()])
        .filter(|attributes| {
            attributes.contains(&format!("fill=\"{colour}\""))
                && attributes.contains("opacity=\"1\"")
        })
        .count()
}

/// Writes the report of goal 1 and renders it.
fn report_in_chromium(wh: &TempWarehouse, name: &str) -> (String, Rendered) {
    let page = wh.dir.path().join(name);
    let output = success(&wh.run(&["report", "1", "--out", page.to_str().unwrap()]));
    (output, render(&page, wh.dir.path()))
}

/// Checks what every report must show, whatever the nightly runs have written.
fn check_common(rendered: &Rendered) {
    let dom = &rendered.dom;
    assert!(
        console_messages(&rendered.log).is_empty(),
        "console messages: {:?}",
        console_messages(&rendered.log)
    );
    assert!(dom.contains("</footer>"), "the DOM ends early:\n{dom}");
    // Self-contained: nothing in the page can load a resource.
    for marker in [
        "<script", "<link", "<img", "<iframe", "src=", "href=", "url(",
    ] {
        assert!(!dom.contains(marker), "the report contains {marker}");
    }

    // Text from data is escaped, so the goal name creates no element.
    assert!(dom.contains("Q4 &lt;buyers&gt; &amp; \"friends\""), "{dom}");
    assert!(!dom.contains("<buyers>"));
    assert!(dom.contains("amount &lt; 5000"), "the filter is escaped");

    let cumulative = chart_svg(dom, "chart-cumulative").expect("cumulative chart");
    assert_eq!(
        shapes_in_colour(cumulative, "polyline", PREDICTED)
            .into_iter()
            .max(),
        Some(90),
        "the predicted curve has one point per day of the goal"
    );
    assert_eq!(
        shapes_in_colour(cumulative, "polygon", PREDICTED),
        vec![180],
        "the interval band runs along the low and back along the high values"
    );

    let sizes = chart_svg(dom, "chart-bucket-sizes").expect("bucket sizes chart");
    assert_eq!(filled_in_colour(sizes, "rect", PREDICTED), 3, "bucket bars");

    let calibration = chart_svg(dom, "chart-calibration").expect("calibration chart");
    assert_eq!(filled_in_colour(calibration, "circle", PREDICTED), 10);

    let features = chart_svg(dom, "chart-features").expect("features chart");
    let bars =
        filled_in_colour(features, "rect", INCREASE) + filled_in_colour(features, "rect", DECREASE);
    assert_eq!(bars, 10, "one bar per top feature");
    assert!(features.contains("<text"), "feature names are text");

    let pixels = &rendered.pixels;
    let colours: HashSet<[u8; 3]> = pixels.iter().copied().collect();
    assert!(
        colours.len() > 100,
        "{} colours on the screenshot",
        colours.len()
    );
    let non_white = pixels.iter().filter(|p| **p != [255, 255, 255]).count();
    assert!(
        non_white * 20 > pixels.len(),
        "{non_white} of {} pixels are not white",
        pixels.len()
    );
    let predicted_pixels = pixels.iter().filter(|p| **p == PREDICTED_PIXEL).count();
    assert!(
        predicted_pixels > 10_000,
        "{predicted_pixels} pixels in the predicted colour"
    );
}

#[test]
fn report_before_and_after_nightly_run() {
    let wh = cdnow_copy();
    let output = wh.run(&[
        "goal",
        "create",
        "--name",
        GOAL_NAME,
        "--event",
        "Charged",
        "--filter",
        GOAL_FILTER,
        "--end-date",
        "1997-12-28",
        "--as-of",
        "1997-09-30",
        "--max-windows",
        "2",
        "--segments-dir",
        concat!(env!("CARGO_MANIFEST_DIR"), "/sql/segments"),
    ]);
    success(&output);

    // Before any nightly run: the prediction only, with a notice.
    let (summary, rendered) = report_in_chromium(&wh, "before.html");
    assert!(summary.contains("no nightly run yet"), "{summary}");
    check_common(&rendered);
    let dom = &rendered.dom;
    assert!(dom.contains("No nightly run has happened yet for this goal"));
    let cumulative = chart_svg(dom, "chart-cumulative").unwrap();
    assert!(shapes_in_colour(cumulative, "polyline", ACTUAL).is_empty());
    assert!(chart_svg(dom, "chart-test-control").is_none());
    assert_eq!(
        count_pixels(&rendered, ACTUAL_PIXEL),
        0,
        "actual colour before actuals"
    );

    // After nightly runs through 15 November 1997: actuals beside the prediction.
    let through = "1997-11-15";
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let expected_rates = runtime.block_on(write_goal_daily(&wh, through));
    let (summary, rendered) = report_in_chromium(&wh, "after.html");
    assert!(summary.contains("actuals through 1997-11-15"), "{summary}");
    check_common(&rendered);
    let dom = &rendered.dom;
    assert!(!dom.contains("No nightly run has happened yet"));
    assert!(dom.contains("Actual performers through 1997-11-15"));
    for (bucket, rate) in &expected_rates {
        let row = format!("<td>{bucket}</td>");
        let start = dom
            .find(&row)
            .unwrap_or_else(|| panic!("no row for {bucket}"));
        let end = start + dom[start..].find("</tr>").unwrap();
        assert!(
            dom[start..end].contains(&format!("{:.1}%", 100.0 * rate)),
            "{bucket} row should show an actual rate of {:.1}%: {}",
            100.0 * rate,
            &dom[start..end]
        );
    }

    let cumulative = chart_svg(dom, "chart-cumulative").unwrap();
    assert_eq!(
        shapes_in_colour(cumulative, "polyline", ACTUAL)
            .into_iter()
            .max(),
        Some(47),
        "the actual curve has one point per day from 30 September to 15 November"
    );
    let rates = chart_svg(dom, "chart-bucket-rates").unwrap();
    assert_eq!(
        filled_in_colour(rates, "rect", PREDICTED),
        3 + 1,
        "with the legend"
    );
    assert_eq!(
        filled_in_colour(rates, "rect", ACTUAL),
        3 + 1,
        "with the legend"
    );
    let arms = chart_svg(dom, "chart-test-control").expect("test and control chart");
    for colour in [ACTUAL, CONTROL] {
        assert_eq!(
            shapes_in_colour(arms, "polyline", colour).into_iter().max(),
            Some(47),
            "arm line in {colour}"
        );
    }
    assert!(
        count_pixels(&rendered, ACTUAL_PIXEL) > 5_000,
        "{} pixels in the actual colour",
        count_pixels(&rendered, ACTUAL_PIXEL)
    );
}

fn count_pixels(rendered: &Rendered, colour: [u8; 3]) -> usize {
    rendered.pixels.iter().filter(|p| **p == colour).count()
}

#[test]
fn console_errors_are_detected() {
    // The check that the report raises no console message must see one when a page does.
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("broken.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><body><p>broken</p><script>undefinedFunction();</script></body></html>",
    )
    .unwrap();
    let (dom, log) = run_chromium(&page, "--dump-dom", dir.path());
    assert!(dom.contains("<p>broken</p>"), "{dom}");
    let messages = console_messages(&log);
    assert_eq!(messages.len(), 1, "{log}");
    assert!(messages[0].contains("Uncaught ReferenceError"), "{log}");
}

/// A target user of goal 1.
struct Member {
    user_id: String,
    bucket: String,
    probability: f64,
    arm: &'static str,
}

/// The members of one `goal_daily` bucket and arm.
struct Group<'a> {
    bucket: String,
    arm: &'static str,
    members: Vec<&'a Member>,
}

impl<'a> Group<'a> {
    fn of(
        members: &'a [Member],
        bucket: &str,
        arm: &'static str,
        include: impl Fn(&Member) -> bool,
    ) -> Self {
        Group {
            bucket: bucket.to_string(),
            arm,
            members: members.iter().filter(|m| include(m)).collect(),
        }
    }
}

/// One row of `goal_daily`.
struct DailyRow {
    day: i32,
    day_index: i32,
    bucket: String,
    arm: &'static str,
    users: i64,
    performers: i64,
    events: i64,
    cumulative_events: i64,
    predicted: f64,
    low: f64,
    high: f64,
}

/// Writes `goal_daily` rows for goal 1 from the start through `through`, computed from the
/// CDNOW events with the column meanings of the `goal_daily` schema, and returns each bucket's
/// actual rate on the last day.
///
/// Users whose id is a multiple of 5 form the control arm.
async fn write_goal_daily(wh: &TempWarehouse, through: &str) -> BTreeMap<String, f64> {
    let curve = wh
        .query("SELECT day, day_index, expected_cumulative, low, high FROM goal_curves WHERE goal_id = 1 ORDER BY day_index")
        .await;
    let mut days = Vec::new();
    for batch in &curve {
        for row in 0..batch.num_rows() {
            days.push((
                batch.column(0).as_primitive::<Date32Type>().value(row),
                batch.column(1).as_primitive::<Int32Type>().value(row),
                batch.column(2).as_primitive::<Float64Type>().value(row),
                batch.column(3).as_primitive::<Float64Type>().value(row),
                batch.column(4).as_primitive::<Float64Type>().value(row),
            ));
        }
    }
    let last = days
        .iter()
        .position(|day| {
            chrono::NaiveDate::from_num_days_from_ce_opt(day.0 + 719_163)
                .unwrap()
                .to_string()
                == through
        })
        .unwrap();
    days.truncate(last + 1);
    let first_day = days[0].0;

    // Each target user's bucket, probability and arm.
    let batches = wh
        .query("SELECT user_id, bucket, probability FROM predictions WHERE goal_id = 1")
        .await;
    let mut members = Vec::new();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            let user_id = batch.column(0).as_string::<i32>().value(row).to_string();
            let arm = if user_id.parse::<u64>().unwrap() % 5 == 0 {
                "control"
            } else {
                "test"
            };
            members.push(Member {
                user_id,
                bucket: batch.column(1).as_string::<i32>().value(row).to_string(),
                probability: batch.column(2).as_primitive::<Float64Type>().value(row),
                arm,
            });
        }
    }

    // Goal events per user and day index: the goal's event and filter, from its start.
    let batches = wh
        .query(
            "SELECT user_id, CAST(event_time AS DATE) AS day, count(*) AS events \
             FROM events WHERE event_name = 'Charged' AND amount < 5000 \
             AND event_time >= TIMESTAMP '1997-09-30T00:00:00Z' \
             AND event_time < TIMESTAMP '1997-12-29T00:00:00Z' GROUP BY 1, 2",
        )
        .await;
    let mut user_events: HashMap<String, Vec<(i32, i64)>> = HashMap::new();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            user_events
                .entry(batch.column(0).as_string::<i32>().value(row).to_string())
                .or_default()
                .push((
                    batch.column(1).as_primitive::<Date32Type>().value(row) - first_day,
                    batch.column(2).as_primitive::<Int64Type>().value(row),
                ));
        }
    }

    let mut groups = vec![
        Group::of(&members, "All", "all", |_| true),
        Group::of(&members, "All", "test", |m| m.arm == "test"),
        Group::of(&members, "All", "control", |m| m.arm == "control"),
    ];
    for bucket in ["Most Likely", "Moderately Likely", "Least Likely"] {
        groups.push(Group::of(&members, bucket, "all", |m| m.bucket == bucket));
    }

    let total_probability: f64 = members.iter().map(|m| m.probability).sum();
    let mut rows = Vec::new();
    let mut rates = BTreeMap::new();
    for group in &groups {
        let share = group.members.iter().map(|m| m.probability).sum::<f64>() / total_probability;
        let mut cumulative_events = 0;
        for &(day, day_index, expected, low, high) in &days {
            let mut performers = 0;
            let mut events = 0;
            for member in &group.members {
                let Some(days_with_events) = user_events.get(&member.user_id) else {
                    continue;
                };
                if days_with_events
                    .iter()
                    .any(|(index, _)| *index <= day_index)
                {
                    performers += 1;
                }
                events += days_with_events
                    .iter()
                    .filter(|(index, _)| *index == day_index)
                    .map(|(_, count)| count)
                    .sum::<i64>();
            }
            cumulative_events += events;
            rows.push(DailyRow {
                day,
                day_index,
                bucket: group.bucket.clone(),
                arm: group.arm,
                users: group.members.len() as i64,
                performers,
                events,
                cumulative_events,
                predicted: expected * share,
                low: low * share,
                high: high * share,
            });
            if group.arm == "all" && group.bucket != "All" && day_index == days[last].1 {
                rates.insert(
                    group.bucket.clone(),
                    performers as f64 / group.members.len() as f64,
                );
            }
        }
    }

    let schema = common::schema(vec![
        Field::new("day", DataType::Date32, false),
        Field::new("day_index", DataType::Int32, false),
        Field::new("bucket", DataType::Utf8, false),
        Field::new("arm", DataType::Utf8, false),
        Field::new("users", DataType::Int64, false),
        Field::new("performers", DataType::Int64, false),
        Field::new("events", DataType::Int64, false),
        Field::new("cumulative_events", DataType::Int64, false),
        Field::new("predicted_performers", DataType::Float64, false),
        Field::new("predicted_low", DataType::Float64, true),
        Field::new("predicted_high", DataType::Float64, true),
    ]);
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.day))),
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|r| r.day_index),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| &r.bucket),
        )),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.arm))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.users))),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.performers),
        )),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.events))),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.cumulative_events),
        )),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.predicted),
        )),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.low))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.high))),
    ];
    let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
    let partitioning = vec![PartitionColumn {
        name: "goal_id".into(),
        data_type: PartitionType::Int64,
    }];
    let write = TableWrite::begin(&wh.warehouse, "goal_daily", partitioning).unwrap();
    write
        .put_batches("goal_id=1/part-0.parquet", schema, &[batch])
        .await
        .unwrap();
    write.commit(Replace::All).await.unwrap();
    rates
}
