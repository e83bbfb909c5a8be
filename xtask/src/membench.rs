//! `cargo xtask bench --memory`: the memory budget of `observer report`, measured, without root.
//!
//! A flood is written as an event log (the JSON lines `observer record --events` writes, see
//! docs/events.md): [`ANSWERED`] DNS answers for unique names of more than 200 characters, each
//! behind a chain of two CNAMEs as long; [`UNANSWERED`] queries for unique names never answered;
//! and [`FLOWS`] flows to undeclared destinations (half to the answered names' addresses, half to
//! addresses no answer named). The release `observer report` replays it; its peak resident set
//! (the child's `ru_maxrss`, from `wait4`) must stay under [`BUDGET_BYTES`]. The tables this
//! grows are bounded in bytes (docs/architecture.md, "What is bounded"), so the report says it is
//! incomplete and by how much; this bench checks both.
//!
//! It is a measurement, not a timed unit test: it runs in a minute or two and prints the number.

use std::{
    fs::File,
    io::{BufWriter, Write},
    os::unix::process::ExitStatusExt,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

/// Answers for unique long names.
pub const ANSWERED: u32 = 300_000;
/// Queries for unique long names, never answered.
pub const UNANSWERED: u32 = 300_000;
/// Flows to undeclared destinations.
pub const FLOWS: u32 = 5_000;
/// The peak resident set `observer report` may reach on the flood.
pub const BUDGET_BYTES: u64 = 256 << 20;

/// 2026-11-27T07:00:00Z, where the flood starts.
const BASE_HOUR: &str = "2026-11-27T07";

/// RFC 3339 time `ns` nanoseconds after [`BASE_HOUR`] (at most an hour later).
fn ts(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    format!(
        "{BASE_HOUR}:{:02}:{:02}.{:09}Z",
        s / 60,
        s % 60,
        ns % 1_000_000_000
    )
}

/// A unique name of more than 200 characters (`tag` tells the kinds apart).
fn long_name(tag: &str, i: u32) -> String {
    let label = "x".repeat(60);
    format!("{tag}{i:07}.{label}.{label}.{label}.bench.example")
}

fn process() -> &'static str {
    r#"{"pid":4242,"comm":"bench","cgroup_id":1}"#
}

fn dns(event: &str, at: u64, cookie: u64, id: u32, name: &str, answers: &str) -> String {
    let rcode = if event == "dns_response" {
        r#""rcode":"NOERROR","#
    } else {
        ""
    };
    format!(
        r#"{{"ts":"{}","event":"{event}","process":{},"cgroup_id":1,"socket_cookie":{cookie},"server":"198.18.0.2:53","client":"198.18.0.1:{}","payload_len":512,"capture_cut":false,"id":{},{rcode}"tc":false,"questions":[{{"name":"{name}","type":"A"}}],"answers":[{answers}]}}"#,
        ts(at),
        process(),
        1024 + cookie % 60_000,
        id % 65_536,
    )
}

/// The address answered for the `i`th name (198.18.0.0/16, shared by a few names each).
fn answered_addr(i: u32) -> String {
    format!("198.18.{}.{}", (i / 256) % 256, i % 256)
}

/// Writes the flood to `path`.
pub fn write_flood(path: &Path) -> Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::new(file);
    let probes = r#"[{"program":"dns_ingress","hook":"cgroup_skb ingress /sys/fs/cgroup","attached":true},{"program":"dns_egress","hook":"cgroup_skb egress /sys/fs/cgroup","attached":true}]"#;
    writeln!(
        out,
        r#"{{"ts":"{}","event":"capture_started","cgroup":"/sys/fs/cgroup","ports":[443],"all_ports":false,"probes":{probes}}}"#,
        ts(0)
    )?;
    // 10 µs apart: the whole flood in a dozen seconds of event time.
    let mut at = 1_000_000_000;
    let mut cookie = 1_000;
    for i in 0..ANSWERED {
        let name = long_name("a", i);
        let c1 = long_name("c", i);
        let c2 = long_name("d", i);
        let answers = format!(
            r#"{{"name":"{name}","type":"CNAME","ttl":300,"data":"{c1}"}},{{"name":"{c1}","type":"CNAME","ttl":300,"data":"{c2}"}},{{"name":"{c2}","type":"A","ttl":300,"data":"{}"}}"#,
            answered_addr(i)
        );
        writeln!(out, "{}", dns("dns_query", at, cookie, i, &name, ""))?;
        writeln!(
            out,
            "{}",
            dns("dns_response", at + 5_000, cookie, i, &name, &answers)
        )?;
        at += 10_000;
        cookie += 1;
    }
    for i in 0..UNANSWERED {
        let name = long_name("u", i);
        writeln!(out, "{}", dns("dns_query", at, cookie, i, &name, ""))?;
        at += 10_000;
        cookie += 1;
    }
    for i in 0..FLOWS {
        let dst = if i % 2 == 0 {
            format!("{}:443", answered_addr(ANSWERED - 1 - i))
        } else {
            format!("198.19.{}.{}:443", (i / 256) % 256, i % 256)
        };
        let flow_id = u64::from(i) + 1;
        let src = format!("198.18.0.1:{}", 1024 + i % 60_000);
        writeln!(
            out,
            r#"{{"ts":"{}","event":"flow_opened","flow_id":{flow_id},"process":{},"src":"198.18.0.1:0","dst":"{dst}"}}"#,
            ts(at),
            process()
        )?;
        writeln!(
            out,
            r#"{{"ts":"{}","event":"flow_closed","flow_id":{flow_id},"process":{},"src":"{src}","dst":"{dst}","outcome":"closed","closed_by":"local","established":true,"rst_received":false,"syn_retransmits":0,"retransmits":0,"bytes_sent":700,"bytes_received":4000,"connect_ms":0.1,"duration_ms":4.0,"idle_ms":0.1,"since_poll_ms":4.0}}"#,
            ts(at + 4_000_000),
            process()
        )?;
        at += 10_000;
    }
    // The end, long enough after the last query for every unanswered one to time out.
    writeln!(
        out,
        r#"{{"ts":"{}","event":"capture_stats","events":{},"lost_events":0,"undecodable_events":0,"malformed_dns":0,"dns_skipped":0}}"#,
        ts(at + 60_000_000_000),
        2 * ANSWERED + UNANSWERED + 2 * FLOWS
    )?;
    out.flush()?;
    Ok(())
}

/// Runs `binary report EVENTS --out REPORT`; returns its peak resident set in bytes.
fn peak_rss_of(binary: &Path, events: &Path, report: &Path) -> Result<u64> {
    let mut child = Command::new(binary)
        .arg("report")
        .arg(events)
        .arg("--out")
        .arg(report)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let pid = libc::pid_t::try_from(child.id()).context("child pid out of range")?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not waited for yet; both pointers are to live locals.
    let waited = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
    if waited != pid {
        let error = std::io::Error::last_os_error();
        let _ = child.kill();
        bail!("waiting for {} failed: {error}", binary.display());
    }
    let status = std::process::ExitStatus::from_raw(status);
    if !status.success() {
        bail!("{} report failed: {status}", binary.display());
    }
    // Linux gives ru_maxrss in kibibytes.
    Ok(u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024)
}

/// What the report says about its completeness: (`complete`, `incomplete_because`), read from
/// its capture section (the report is pretty-printed JSON, `observer report --format json`).
fn completeness(report: &Path) -> Result<(bool, Vec<String>)> {
    let text = std::fs::read_to_string(report)
        .with_context(|| format!("cannot read the report {}", report.display()))?;
    let complete = text.contains(r#""complete": true"#) || text.contains(r#""complete":true"#);
    let mut reasons = Vec::new();
    if let Some(at) = text.find("\"incomplete_because\"") {
        let rest = &text[at..];
        let list = rest.find('[').map_or("", |open| {
            let after = &rest[open + 1..];
            after.find(']').map_or(after, |close| &after[..close])
        });
        reasons = list
            .split("\",")
            .map(|r| r.trim().trim_matches('"').to_owned())
            .filter(|r| !r.is_empty())
            .collect();
    }
    Ok((complete, reasons))
}

/// Writes the flood under `dir`, replays it with `binary` and checks the budget.
pub fn run(binary: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let events = dir.join("memory-flood.jsonl");
    let report = dir.join("memory-flood-report.json");
    eprintln!(
        "xtask: writing {} ({ANSWERED} answers for unique long names behind CNAME chains, \
         {UNANSWERED} unanswered queries, {FLOWS} flows to undeclared destinations)",
        events.display()
    );
    write_flood(&events)?;
    let size = std::fs::metadata(&events).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "xtask: replaying {} MB with {} report",
        size >> 20,
        binary.display()
    );
    let started = std::time::Instant::now();
    let peak = peak_rss_of(binary, &events, &report)?;
    let elapsed = started.elapsed();
    let (complete, reasons) = completeness(&report)?;
    println!(
        "memory: observer report of the flood: peak RSS {:.1} MiB (budget {} MiB), {:.1} s",
        peak as f64 / f64::from(1 << 20),
        BUDGET_BYTES >> 20,
        elapsed.as_secs_f64()
    );
    println!("memory: report complete: {complete}");
    for r in &reasons {
        println!("memory:   incomplete because {r}");
    }
    let _ = std::fs::remove_file(&events);
    if peak > BUDGET_BYTES {
        bail!(
            "observer report used {} MiB at its peak, over the budget of {} MiB",
            peak >> 20,
            BUDGET_BYTES >> 20
        );
    }
    if complete {
        bail!("the report of a flood that overflowed its bounds says it is complete");
    }
    Ok(())
}
