//! The HTML report opened in a real browser (headless Chromium), without root: the page the
//! observer writes for the recorded workload is rendered to a screenshot, which must be a PNG of
//! the window's size that is not blank, and its DOM must show the verdict and a blocked host.
//!
//! Chromium never reaches the network: the page has no external asset (its Content-Security-
//! Policy forbids any), the flags turn background networking off, and where unprivileged
//! namespaces are available Chromium runs in a network namespace of its own (`unshare -rn`),
//! which has nothing but a loopback interface that is down.
//!
//! Skipped when `chromium` is not installed, unless `CI` is set (then it fails).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use observer_tests::observer::observer_bin;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../observer/tests/fixtures/runner-workload.jsonl"
);
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 2000;
/// A browser that has not finished by then is killed and the test fails.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("export-html-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the scratch directory");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The browser to use, or None when the test is to be skipped.
fn chromium() -> Option<PathBuf> {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file());
    if found.is_none() {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
        assert!(
            !ci,
            "chromium is not installed and CI is set: install it (`cargo xtask setup` or \
             `apt-get install chromium`)"
        );
        eprintln!("skipping the browser test: chromium is not installed");
    }
    found
}

/// Whether programs can be started in a network namespace of their own without root.
fn can_isolate_network() -> bool {
    Command::new("unshare")
        .args(["-rn", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs headless Chromium on `page` with `args`, in a fresh profile, isolated from the network.
fn run_chromium(
    browser: &Path,
    scratch: &Path,
    name: &str,
    args: &[String],
    page: &Path,
) -> Output {
    let profile = scratch.join(format!("profile-{name}"));
    let mut cmd = if can_isolate_network() {
        let mut c = Command::new("unshare");
        c.args(["-rn"]).arg(browser);
        c
    } else {
        Command::new(browser)
    };
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(format!("file://{}", page.display()))
    .stdin(Stdio::null())
    .stdout(fs::File::create(scratch.join(format!("{name}.stdout"))).expect("stdout file"))
    .stderr(fs::File::create(scratch.join(format!("{name}.stderr"))).expect("stderr file"));
    let mut child = cmd.spawn().expect("start chromium");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if started.elapsed() > BROWSER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium ({name}) did not finish within {BROWSER_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: fs::read(scratch.join(format!("{name}.stdout"))).unwrap_or_default(),
        stderr: fs::read(scratch.join(format!("{name}.stderr"))).unwrap_or_default(),
    }
}

/// The decoded screenshot: its size, and how many distinct colours and non-white pixels a
/// sample of it has.
fn inspect_png(path: &Path) -> (u32, u32, usize, f64) {
    let bytes = fs::read(path).expect("the screenshot exists");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot is not a PNG"
    );
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("a PNG header");
    let mut pixels = vec![0; reader.output_buffer_size().expect("a buffer size")];
    let frame = reader.next_frame(&mut pixels).expect("PNG pixels");
    let channels = frame.color_type.samples();
    let (width, height) = (frame.width, frame.height);
    let mut colours = std::collections::BTreeSet::new();
    let (mut sampled, mut inked) = (0u64, 0u64);
    for y in (0..height).step_by(4) {
        for x in (0..width).step_by(4) {
            let at = (y as usize * width as usize + x as usize) * channels;
            let rgb = &pixels[at..at + channels.min(3)];
            colours.insert(rgb.to_vec());
            sampled += 1;
            if rgb.iter().any(|&c| c < 200) {
                inked += 1;
            }
        }
    }
    (width, height, colours.len(), inked as f64 / sampled as f64)
}

/// The text between `<section id="ID"` and the next `</section>` of a DOM dump.
fn section<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("<section id=\"{id}\""))
        .unwrap_or_else(|| panic!("no section {id} in the DOM"));
    let end = dom[start..]
        .find("</section>")
        .map_or(dom.len(), |n| start + n);
    &dom[start..end]
}

#[test]
fn the_html_report_renders_in_a_browser() {
    let Some(browser) = chromium() else {
        return;
    };
    let bin = observer_bin();
    assert!(
        bin.exists(),
        "observer binary {} not found: build it with `cargo xtask build` or run `cargo xtask test`",
        bin.display()
    );
    let scratch = Scratch::new();
    let page = scratch.0.join("report.html");
    let out = Command::new(&bin)
        .args(["report", FIXTURE, "--format", "html", "--out"])
        .arg(&page)
        .output()
        .expect("run observer report");
    assert!(
        out.status.success(),
        "observer report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let t = Instant::now();
    let png = scratch.0.join("report.png");
    let shot = run_chromium(
        &browser,
        &scratch.0,
        "screenshot",
        &[
            format!("--screenshot={}", png.display()),
            format!("--window-size={WIDTH},{HEIGHT}"),
        ],
        &page,
    );
    assert!(
        shot.status.success() && png.exists(),
        "chromium made no screenshot ({}): {}",
        shot.status,
        String::from_utf8_lossy(&shot.stderr)
    );
    eprintln!("screenshot in {:?}", t.elapsed());
    let (width, height, colours, inked) = inspect_png(&png);
    assert_eq!((width, height), (WIDTH, HEIGHT), "the screenshot's size");
    assert!(colours > 8, "a blank page: {colours} colours in the sample");
    assert!(
        inked > 0.01,
        "a blank page: {:.2}% of the sample is ink",
        inked * 100.0
    );
    // Kept for a look by eye: OBSERVER_KEEP_SCREENSHOT=/path/to/file.png
    if let Some(keep) = std::env::var_os("OBSERVER_KEEP_SCREENSHOT") {
        fs::copy(&png, keep).expect("keep the screenshot");
    }

    let dump = run_chromium(
        &browser,
        &scratch.0,
        "dom",
        &["--dump-dom".to_owned()],
        &page,
    );
    assert!(
        dump.status.success(),
        "chromium --dump-dom failed: {}",
        dump.status
    );
    let dom = String::from_utf8_lossy(&dump.stdout);
    let verdict = section_or_header(&dom);
    assert!(
        verdict.contains("Verdict: The runner can work"),
        "the verdict is not shown: {verdict}"
    );
    let failing = section(&dom, "failing");
    assert!(
        failing.contains("ghcr.io")
            && failing.contains("<span class=\"status blocked\">blocked</span>"),
        "the blocked host is not shown: {failing}"
    );
    assert!(section(&dom, "completeness").contains("Complete"));
}

/// The verdict header of a DOM dump.
fn section_or_header(dom: &str) -> &str {
    let start = dom.find("<header").expect("a verdict header");
    let end = dom[start..]
        .find("</header>")
        .map_or(dom.len(), |n| start + n);
    &dom[start..end]
}
