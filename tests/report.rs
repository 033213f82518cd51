//! `goalcast report` in a real browser: headless Chromium renders the report of an engaged
//! CDNOW goal before and after nightly runs, and the test checks the page's DOM, its console
//! output and a screenshot.
//!
//! Chromium is Debian's `chromium` package, which `.ci/run` installs when it is missing.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TempWarehouse, cdnow_copy, success};

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
    success(&wh.run(&["goal", "engage", "1", "--bucket", "most"]));

    // Before any nightly run: the prediction only, with a notice.
    let (summary, rendered) = report_in_chromium(&wh, "before.html");
    assert!(summary.contains("no nightly run yet"), "{summary}");
    check_common(&rendered);
    let dom = &rendered.dom;
    assert!(dom.contains("No nightly run has happened yet for this goal"));
    let cumulative = chart_svg(dom, "chart-cumulative").unwrap();
    assert!(shapes_in_colour(cumulative, "polyline", ACTUAL).is_empty());
    assert!(!dom.contains("chart-test-control"));
    assert_eq!(
        count_pixels(&rendered, ACTUAL_PIXEL),
        0,
        "actual colour before actuals"
    );

    // After nightly runs through 15 November 1997: actuals beside the prediction.
    success(&wh.run(&["run", "--from", "1997-09-30", "--to", "1997-11-15"]));
    let expected_rates = bucket_rates_on(&wh, "1997-11-15");
    assert_eq!(expected_rates.len(), 3, "{expected_rates:?}");
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
    let arms = chart_svg(dom, "chart-test-control-most-likely").expect("test and control chart");
    assert!(
        !dom.contains("chart-test-control-all"),
        "only Most Likely is engaged"
    );
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

/// Returns each bucket's actual rate on `day` from `goal_daily`, the report's source.
fn bucket_rates_on(wh: &TempWarehouse, day: &str) -> BTreeMap<String, f64> {
    let text = success(&wh.run(&[
        "sql",
        &format!(
            "SELECT bucket, performers, users FROM goal_daily \
             WHERE goal_id = 1 AND arm = 'all' AND bucket <> 'All' AND day = DATE '{day}'"
        ),
        "--format",
        "json",
    ]));
    text.lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            let rate = row["performers"].as_f64().unwrap() / row["users"].as_f64().unwrap();
            (row["bucket"].as_str().unwrap().to_string(), rate)
        })
        .collect()
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
