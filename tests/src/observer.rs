//! Running the real observer binary (built by `cargo xtask test`, path in `OBSERVER_BIN`) while a
//! lab produces traffic, and collecting its `watch --json` events.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

/// The observer binary under test.
pub fn observer_bin() -> PathBuf {
    std::env::var_os("OBSERVER_BIN").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/release/observer"
            ))
        },
        PathBuf::from,
    )
}

/// A running `observer watch --json`, its events collected as they come.
pub struct Observer {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    reader: Option<thread::JoinHandle<()>>,
    stderr: Option<thread::JoinHandle<String>>,
}

impl Observer {
    /// Starts `observer watch --json ARGS` and waits until its probes are attached.
    pub fn watch(args: &[&str]) -> Self {
        let bin = observer_bin();
        assert!(
            bin.exists(),
            "observer binary {} not found: build it with `cargo xtask build` or run `cargo xtask test`",
            bin.display()
        );
        let mut child = Command::new(&bin)
            .args(["watch", "--json"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let events = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let sink = Arc::clone(&events);
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("observer printed a line that is not JSON ({e}): {line}")
                });
                sink.lock().expect("events lock").push(value);
            }
        });
        let mut stderr_pipe = child.stderr.take().expect("piped stderr");
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr_pipe.read_to_string(&mut s);
            s
        });
        let observer = Self {
            child,
            events,
            reader: Some(reader),
            stderr: Some(stderr),
        };
        let started =
            observer.wait_for(Duration::from_secs(30), |e| e["event"] == "capture_started");
        if started.is_none() {
            let (events, stderr) = observer.stop_with_stderr();
            panic!("observer did not start within 30 s; events {events:?}; stderr:\n{stderr}");
        }
        observer
    }

    /// Waits until an event matches, returning it.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self
                .events
                .lock()
                .expect("events lock")
                .iter()
                .find(|e| pred(e))
            {
                return Some(found.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Events so far.
    pub fn events(&self) -> Vec<Value> {
        self.events.lock().expect("events lock").clone()
    }

    /// Stops the observer with SIGINT, as an operator would, and returns every event.
    pub fn stop(self) -> Vec<Value> {
        self.stop_with_stderr().0
    }

    /// Stops it and returns the events and what it wrote on stderr.
    pub fn stop_with_stderr(mut self) -> (Vec<Value>, String) {
        let status = self.interrupt();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        assert!(
            status.is_some_and(|s| s.success()),
            "observer exited with {status:?} after SIGINT; stderr:\n{stderr}"
        );
        (self.events(), stderr)
    }

    fn interrupt(&mut self) -> Option<std::process::ExitStatus> {
        let pid = i32::try_from(self.child.id()).ok()?;
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        self.child.wait().ok();
        None
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `hosts[]` entry of a report for `name`; panics with the hosts when there is none.
#[track_caller]
pub fn report_host<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["hosts"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["name"] == name))
        .unwrap_or_else(|| panic!("no host {name} in {:#}", report["hosts"]))
}

/// Events of one kind.
pub fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

/// A running `observer record`, stopped with SIGINT like an operator would.
pub struct Recording {
    child: Child,
    /// Where the report is written when the recording stops.
    pub report: PathBuf,
    /// The event log written as the capture runs.
    pub events: PathBuf,
}

impl Recording {
    /// Starts `observer record --out DIR/report.json --events DIR/events.jsonl ARGS` and waits
    /// until the capture is running.
    pub fn start(dir: &std::path::Path, args: &[&str]) -> Self {
        let report = dir.join("report.json");
        let events = dir.join("events.jsonl");
        let child = Command::new(observer_bin())
            .arg("record")
            .arg("--out")
            .arg(&report)
            .arg("--events")
            .arg(&events)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start observer record");
        let recording = Self {
            child,
            report,
            events,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let started = std::fs::read_to_string(&recording.events)
                .is_ok_and(|log| log.contains("\"event\":\"capture_started\""));
            if started {
                return recording;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let (_, stderr) = recording.stop();
        panic!("observer record did not start within 30 s; stderr:\n{stderr}");
    }

    /// Stops the recording; returns the report (JSON) and stderr.
    pub fn stop(mut self) -> (Value, String) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(pid, libc::SIGINT) };
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut status = None;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                status = Some(s);
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        assert!(
            status.is_some_and(|s| s.success()),
            "observer record exited with {status:?}; stderr:\n{stderr}"
        );
        let text = std::fs::read_to_string(&self.report)
            .unwrap_or_else(|e| panic!("no report at {}: {e}", self.report.display()));
        let report = serde_json::from_str(&text).expect("the report is JSON");
        (report, stderr)
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
