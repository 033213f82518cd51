//! `goalcast demo`, the README's first command, on the shipped warehouse.

mod common;

use std::path::Path;

use common::{goalcast_command, success};

/// Lists every file under `folder` with its size, for checking that a folder did not change.
fn listing(folder: &Path) -> Vec<(String, u64)> {
    let mut files = Vec::new();
    let mut stack = vec![folder.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path
                    .strip_prefix(folder)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                files.push((relative, entry.metadata().unwrap().len()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn demo_runs_end_to_end_on_a_scratch_copy() {
    let shipped = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/warehouse"));
    let before = listing(shipped);
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join("demo");
    let output = goalcast_command(&["demo", "--scratch", scratch.to_str().unwrap()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let text = success(&output);

    for heading in [
        "== 1/6 Segments",
        "== 2/6 Predict and create a goal",
        "== 3/6 Engage Moderately Likely with a 5% control group",
        "== 4/6 Replay the nightly job over the goal window",
        "== 5/6 Final report",
        "== 6/6 Where to look next",
    ] {
        assert!(text.contains(heading), "missing {heading:?}:\n{text}");
    }
    // 4,174 of CDNOW's customers bought in the window; the prediction's interval covers it.
    assert!(text.contains("actual 4,174"), "{text}");
    assert!(text.contains("inside the interval"), "{text}");
    assert!(text.contains("Ran 90 nightly runs"), "{text}");
    assert!(text.contains("Test vs control"), "{text}");
    assert!(
        text.lines().all(|line| line.chars().count() <= 100),
        "{text}"
    );

    let report = std::fs::read_to_string(scratch.join("report.html")).unwrap();
    assert!(report.contains("<svg"), "the report has no chart");
    let audience = std::fs::read_to_string(scratch.join("moderately_likely_audience.csv")).unwrap();
    assert!(
        audience.lines().count() > 7000,
        "audience of {} lines",
        audience.lines().count()
    );
    assert!(scratch.join("warehouse/goal_results/_table.json").exists());

    // The shipped warehouse is unchanged, and a second demo into the same folder is refused.
    assert_eq!(listing(shipped), before);
    let again = goalcast_command(&["demo", "--scratch", scratch.to_str().unwrap()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("the scratch folder already exists"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
