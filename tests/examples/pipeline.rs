//! The user-space cost of an event, without the kernel, the lab or root: raw ring-buffer records
//! as the kernel writes them (DNS floods, connection storms) decoded, tracked and correlated the
//! way `observer record` does, timed and their heap allocations counted.
//!
//! ```sh
//! cargo xtask bench --pipeline   # or: cargo run --release -p observer-tests --example pipeline
//! ```
//!
//! `PIPELINE_ROUNDS=N` sets the rounds (median shown), `PIPELINE_N=N` the responses or
//! connections of a phase, `PIPELINE_PHASE=unique` runs only the phases whose name has that word.
//! Under `perf record --call-graph dwarf` it shows where the per-message time goes.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    hint::black_box,
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use observer_tests::flood;

use observer::{
    capture::{
        record::{self, decode},
        ProbeStatus,
    },
    catalog::Catalog,
    export,
    pipeline::{correlate::Correlator, dnsmatch::DnsCheck, events::Observed, tracker::Tracker},
};
use observer_ebpf::{
    DnsEvent, Flow, FlowEvent, Owner, Tuple, DNS_FLAG_EGRESS, DNS_FLAG_INGRESS,
    DNS_FLAG_OWNER_KNOWN, DNS_PAYLOAD_MAX, KIND_DNS, KIND_FLOW_CLOSE, KIND_FLOW_ESTABLISHED,
    KIND_FLOW_OPEN, TCP_CLOSE, TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_SYN_SENT,
};

/// Counts heap allocations (the per-message cost that hides from profiles in page faults and
/// allocator locks).
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Client sockets of the flood (the lab bench's client threads).
const CLIENTS: u16 = 4;
/// Nanoseconds between two records (100,000 records/s).
const STEP_NS: u64 = 10_000;

fn tuple(sport: u16, dport: u16, src: [u8; 4], dst: [u8; 4]) -> Tuple {
    record::tuple(
        std::net::SocketAddr::from((src, sport)),
        std::net::SocketAddr::from((dst, dport)),
    )
}

fn owner() -> Owner {
    let mut o = Owner {
        pid: 4242,
        tid: 4242,
        cgroup_id: 7,
        ..Owner::default()
    };
    o.comm[..5].copy_from_slice(b"flood");
    o
}

const RUNNER: [u8; 4] = [198, 18, 0, 2];
const SERVER: [u8; 4] = [198, 18, 0, 1];

/// The query and the answer the lab's responder gives for `name` ([`flood::answer`]).
fn exchange(id: u16, name: &str) -> (Vec<u8>, Vec<u8>) {
    let mut q = Vec::with_capacity(128);
    flood::query(id, name, &mut q);
    let mut r = q.clone();
    r.resize(q.len() + flood::ANSWER_LEN, 0);
    let len = flood::answer(&mut r, q.len()).expect("a query the responder answers");
    r.truncate(len);
    (q, r)
}

/// The bytes of an ABI record, as the kernel writes it.
fn encode<T: Copy>(record: &T) -> Vec<u8> {
    // SAFETY: only called on `DnsEvent` and `FlowEvent`, `#[repr(C)]` records whose padding is
    // explicit fields: every byte is initialized.
    unsafe { std::slice::from_raw_parts(std::ptr::from_ref(record).cast::<u8>(), size_of::<T>()) }
        .to_vec()
}

/// A `KIND_DNS` record as the kernel reserves it: the header and the payload rounded up to 8.
fn dns_record(ts_ns: u64, ingress: bool, sport: u16, payload: &[u8]) -> Vec<u8> {
    let mut ev = DnsEvent {
        kind: KIND_DNS,
        flags: DNS_FLAG_OWNER_KNOWN
            | if ingress {
                DNS_FLAG_INGRESS
            } else {
                DNS_FLAG_EGRESS
            },
        ts_ns,
        cookie: 1000 + u64::from(sport),
        cgroup_id: 7,
        tuple: if ingress {
            tuple(53, sport, SERVER, RUNNER)
        } else {
            tuple(sport, 53, RUNNER, SERVER)
        },
        owner: owner(),
        payload_len: payload.len() as u32,
        captured_len: payload.len().min(DNS_PAYLOAD_MAX) as u32,
        tcp_seq: 0,
        _pad: 0,
        exchange: 0,
        payload: [0; DNS_PAYLOAD_MAX],
    };
    let n = payload.len().min(DNS_PAYLOAD_MAX);
    ev.payload[..n].copy_from_slice(&payload[..n]);
    let header = std::mem::offset_of!(DnsEvent, payload);
    let mut bytes = encode(&ev);
    bytes.truncate(header + n.div_ceil(8) * 8);
    bytes
}

/// A DNS flood: `n` exchanges from `CLIENTS` sockets, each query followed by its response.
fn dns_flood(n: u64, unique: bool) -> Vec<Vec<u8>> {
    let mut records = Vec::with_capacity(2 * n as usize);
    let mut name = String::new();
    for i in 0..n {
        let sport = 40_000 + (i % u64::from(CLIENTS)) as u16;
        let id = (i / u64::from(CLIENTS)) as u16;
        name.clear();
        if unique {
            name.push_str(&format!("u{i}-{sport}.flood.example"));
        } else {
            name.push_str(flood::REPEATED_NAMES[i as usize % flood::REPEATED_NAMES.len()]);
        }
        let (q, r) = exchange(id, &name);
        let ts = 1_000_000_000 + 2 * i * STEP_NS;
        records.push(dns_record(ts, false, sport, &q));
        records.push(dns_record(ts + STEP_NS, true, sport, &r));
    }
    records
}

/// A connection storm: `n` short connections to port 443, each opened, established and closed.
fn connections(n: u64) -> Vec<Vec<u8>> {
    (0..n).flat_map(connection).collect()
}

/// The records of the `i`th connection of a storm: opened, established and closed.
fn connection(i: u64) -> [Vec<u8>; 3] {
    let sport = 10_000 + (i % 50_000) as u16;
    let ts = 1_000_000_000 + 3 * i * STEP_NS;
    let mut flow = Flow {
        tuple: tuple(sport, 443, RUNNER, SERVER),
        owner: owner(),
        ts_syn_ns: ts,
        states_seen: 1 << TCP_SYN_SENT,
        ..Flow::default()
    };
    let key = 0xffff_0000_0000 + i;
    let event = |kind, ts_ns, flow| {
        encode(&FlowEvent {
            kind,
            _pad: 0,
            ts_ns,
            key,
            flow,
        })
    };
    let open = event(KIND_FLOW_OPEN, ts, flow);
    flow.ts_established_ns = ts + STEP_NS / 2;
    flow.states_seen |= 1 << TCP_ESTABLISHED;
    let established = event(KIND_FLOW_ESTABLISHED, ts + STEP_NS, flow);
    flow.bytes_sent = 64;
    flow.bytes_received = 2;
    flow.ts_last_send_ns = ts + STEP_NS;
    flow.ts_last_recv_ns = ts + STEP_NS;
    flow.states_seen |= (1 << TCP_FIN_WAIT1) | (1 << TCP_CLOSE);
    [
        open,
        established,
        event(KIND_FLOW_CLOSE, ts + 2 * STEP_NS, flow),
    ]
}

/// What one pass through the pipeline cost.
struct Cost {
    ns_per_record: f64,
    allocs_per_record: f64,
    /// Growth of the resident memory over the whole pass (the state the pipeline keeps).
    held_kb: i64,
}

/// One pass of `records` through the pipeline of `observer record`. The first half fills the
/// tables (their growth is not the steady state of a long capture); the second half is timed.
fn run(records: &[Vec<u8>], exchanges: u64) -> Cost {
    const CHUNK: usize = 256;
    let rss0 = rss_kb();
    let mut tracker = Tracker::new();
    let mut correlator = Correlator::new(Catalog::builtin());
    let mut batch = Vec::with_capacity(4096);
    let warm_chunks = records.len() / 2 / CHUNK;
    let (mut allocs, mut t0) = (0, Instant::now());
    for (i, chunk) in records.chunks(CHUNK).enumerate() {
        if i == warm_chunks {
            allocs = ALLOCS.load(Ordering::Relaxed);
            t0 = Instant::now();
        }
        for record in chunk {
            match decode(record) {
                Ok(event) => tracker.on_event_into(event, &mut batch),
                Err(_) => tracker.on_undecodable(),
            }
        }
        for (ts, observed) in &mut batch {
            correlator.observe(*ts, observed);
        }
        batch.clear();
    }
    let elapsed = t0.elapsed();
    let allocs = ALLOCS.load(Ordering::Relaxed) - allocs;
    let held_kb = rss_kb() - rss0;
    let judged = black_box(&correlator).dns_checks();
    assert!(
        judged.rejected() == 0 && judged.count(DnsCheck::Matched) == exchanges,
        "every response of a flood answers its query: {judged:?}"
    );
    let timed = (records.len() - warm_chunks * CHUNK) as f64;
    Cost {
        ns_per_record: elapsed.as_nanos() as f64 / timed,
        allocs_per_record: allocs as f64 / timed,
        held_kb,
    }
}

/// What `observer record` holds with `n` flows: the resident memory its tables grew by, and
/// its peak while it writes the report (JSON, its default format) at the end.
struct Held {
    tables_kb: i64,
    peak_kb: i64,
}

/// `n` short connections through the pipeline of `observer record` (their records made one
/// connection at a time, so that only the pipeline's state is resident), then its report.
fn record_memory(n: u64) -> Held {
    // Writing 5 resets the peak (VmHWM) to the current resident memory.
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("cannot reset the peak memory ({e}): the peak below includes the phases before");
    }
    let rss0 = rss_kb();
    let mut tracker = Tracker::new();
    let mut correlator = Correlator::new(Catalog::builtin());
    // As `record` starts: a report without it says it is incomplete.
    correlator.observe(
        0,
        &mut Observed::CaptureStarted {
            cgroup: "/sys/fs/cgroup".to_owned(),
            ports: vec![443],
            all_ports: false,
            probes: vec![ProbeStatus {
                program: "flow_state".to_owned(),
                hook: "tracepoint sock/inet_sock_set_state".to_owned(),
                attached: true,
                error: None,
            }],
            sources: Vec::new(),
            proxies: Vec::new(),
        },
    );
    let mut batch = Vec::with_capacity(4096);
    for i in 0..n {
        for record in connection(i) {
            match decode(&record) {
                Ok(event) => tracker.on_event_into(event, &mut batch),
                Err(_) => tracker.on_undecodable(),
            }
        }
        for (ts, observed) in &mut batch {
            correlator.observe(*ts, observed);
        }
        batch.clear();
    }
    let tables_kb = rss_kb() - rss0;
    let out = std::env::temp_dir().join(format!("pipeline-report-{}.json", std::process::id()));
    export::write_report(&mut correlator, &out, export::Format::Json).expect("the report");
    let _ = std::fs::remove_file(&out);
    Held {
        tables_kb,
        peak_kb: peak_rss_kb() - rss0,
    }
}

/// The peak resident memory of this process (since the last reset), in kB.
fn peak_rss_kb() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Resident memory of this process, in kB.
fn rss_kb() -> i64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<i64>().ok())
        .map_or(0, |pages| pages * 4)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The memory line: `record_memory` in a process of its own, whose heap the other phases have
/// not grown (memory they freed would be reused and not show).
fn print_record_memory(n: u64) {
    if std::env::var_os(MEMORY_CHILD).is_some() {
        let held = record_memory(n);
        println!(
            "record memory, {n} flows: tables {:.1} MB ({:.0} bytes per flow), peak while \
             writing the report {:.1} MB over the start",
            held.tables_kb as f64 / 1024.0,
            held.tables_kb as f64 * 1024.0 / n as f64,
            held.peak_kb as f64 / 1024.0,
        );
        return;
    }
    let status = std::env::current_exe().and_then(|exe| {
        std::process::Command::new(exe)
            .env(MEMORY_CHILD, "1")
            .status()
    });
    match status {
        Ok(s) if s.success() => {}
        other => eprintln!("the record memory phase failed: {other:?}"),
    }
}

/// Set in the child process that measures the memory of `record`.
const MEMORY_CHILD: &str = "PIPELINE_MEMORY_CHILD";

fn main() {
    let rounds = env_number("PIPELINE_ROUNDS", 5).max(1);
    let n = env_number("PIPELINE_N", 100_000);
    let only = std::env::var("PIPELINE_PHASE").ok();
    if std::env::var_os(MEMORY_CHILD).is_some() {
        return print_record_memory(n);
    }
    // (name, unit, records per unit, DNS exchanges per unit, the records)
    type Build = fn(u64) -> Vec<Vec<u8>>;
    let phases: [(&str, &str, u64, u64, Build); 3] = [
        ("DNS, repeated names", "response", 2, 1, |n| {
            dns_flood(n, false)
        }),
        ("DNS, unique names", "response", 2, 1, |n| {
            dns_flood(n, true)
        }),
        ("connections", "connection", 3, 0, connections),
    ];
    if only
        .as_ref()
        .is_none_or(|o| "record memory".contains(o.as_str()))
    {
        print_record_memory(n);
    }
    println!(
        "{:<20} {:>9} {:>9} {:>13} {:>16}",
        "phase", "ns/record", "allocs", "µs per unit", "bytes held/unit"
    );
    for (name, unit, records_per, exchanges_per, build) in phases {
        if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        let records = build(n);
        let costs: Vec<Cost> = (0..rounds)
            .map(|_| run(&records, exchanges_per * n))
            .collect();
        let ns = median(costs.iter().map(|c| c.ns_per_record).collect());
        let allocs = median(costs.iter().map(|c| c.allocs_per_record).collect());
        // The first round grows the heap; later rounds reuse what it freed.
        let held = costs.iter().map(|c| c.held_kb).max().unwrap_or(0) as f64;
        println!(
            "{name:<20} {ns:>9.0} {allocs:>9.1} {:>8.2}/{unit:<4} {:>16.0}",
            ns * records_per as f64 / 1000.0,
            held * 1024.0 / n as f64,
        );
    }
}
