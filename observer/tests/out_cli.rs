//! Black-box tests of `--out` (no root needed, stronger as root): a command never writes over
//! one of its inputs, never replaces a device or a FIFO, and writes regular files whole.

mod common;

use common::observer;
use std::{
    fs,
    os::unix::fs::{FileTypeExt as _, MetadataExt as _},
    path::{Path, PathBuf},
    process::Command,
};

const EVENTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/runner-workload.jsonl"
);
const REPORT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/suggest-report.json"
);

/// A directory of its own under the temporary directory, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("observer-out-cli-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }

    /// A copy of `from` named `name` in the scratch directory.
    fn copy(&self, from: &str, name: &str) -> PathBuf {
        let to = self.0.join(name);
        fs::copy(from, &to).expect("copy fixture");
        to
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Runs `args`, expects the one-line refusal naming `input`, and checks `input` is intact.
fn refused(args: &[&str], input: &Path, original: &[u8]) {
    let (code, stdout, stderr) = observer(args);
    assert_ne!(code, 0, "{args:?} succeeded: {stdout}");
    assert!(
        stderr.contains("refusing to write to") && stderr.contains(s(input)),
        "{args:?}: {stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert_eq!(
        fs::read(input).expect("input still there"),
        original,
        "{args:?}"
    );
}

#[test]
fn report_refuses_to_write_over_its_event_log() {
    let dir = Scratch::new("report");
    let events = dir.copy(EVENTS, "events.jsonl");
    let original = fs::read(&events).expect("read");
    refused(
        &["report", s(&events), "--out", s(&events)],
        &events,
        &original,
    );
    // Through a symlink too.
    let link = dir.0.join("link.json");
    std::os::unix::fs::symlink(&events, &link).expect("symlink");
    refused(
        &["report", s(&events), "--out", s(&link)],
        &events,
        &original,
    );
}

#[test]
fn merge_refuses_to_write_over_one_of_its_reports() {
    let dir = Scratch::new("merge");
    let a = dir.copy(REPORT, "a.json");
    let b = dir.copy(REPORT, "b.json");
    let original = fs::read(&a).expect("read");
    refused(
        &["report", "merge", s(&a), s(&b), "--out", s(&a)],
        &a,
        &original,
    );
    // Another output works.
    let out = dir.0.join("merged.json");
    let (code, _, stderr) = observer(&["report", "merge", s(&a), s(&b), "--out", s(&out)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(fs::read_to_string(&out)
        .expect("merged")
        .contains("\"merged\""));
}

#[test]
fn suggest_refuses_to_write_over_its_input() {
    let dir = Scratch::new("suggest");
    let report = dir.copy(REPORT, "r.json");
    let original = fs::read(&report).expect("read");
    refused(
        &["suggest", "--report", s(&report), "--out", s(&report)],
        &report,
        &original,
    );
    let events = dir.copy(EVENTS, "e.jsonl");
    let original = fs::read(&events).expect("read");
    refused(
        &["suggest", "--events", s(&events), "--out", s(&events)],
        &events,
        &original,
    );
}

#[test]
fn dev_null_and_a_fifo_are_written_into_not_replaced() {
    let null = fs::metadata("/dev/null").expect("stat /dev/null");
    let (code, _, stderr) = observer(&["report", EVENTS, "--out", "/dev/null"]);
    assert_eq!(code, 0, "{stderr}");
    let after = fs::metadata("/dev/null").expect("stat /dev/null");
    assert!(after.file_type().is_char_device(), "/dev/null was replaced");
    assert_eq!((after.ino(), after.rdev()), (null.ino(), null.rdev()));

    let dir = Scratch::new("fifo");
    let fifo = dir.0.join("pipe");
    let status = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(status.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read_to_string(fifo).expect("read the FIFO"))
    };
    let (code, _, stderr) = observer(&["suggest", "--report", REPORT, "--out", s(&fifo)]);
    assert_eq!(code, 0, "{stderr}");
    let rules = reader.join().expect("reader");
    assert!(!rules.is_empty());
    assert!(fs::symlink_metadata(&fifo)
        .expect("stat")
        .file_type()
        .is_fifo());
}
