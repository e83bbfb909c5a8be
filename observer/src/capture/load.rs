//! Loading and attaching the kernel programs, and reading what they produce.
//!
//! Programs attach to tracepoints and to the root cgroup v2, so they see every process in every
//! network namespace and container below it. Nothing is pinned: dropping `Capture` detaches
//! everything.

use std::{
    fs::File,
    io,
    path::{Path, PathBuf},
};

use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, CgroupSockopt, Program,
        TracePoint,
    },
    Ebpf,
};
use observer_ebpf::{
    DnsEvent, DnsPending, DnsPendingKey, DnsRecent, Flow, CONFIG_ADOPT, CONFIG_ADOPT_AT_END,
    CONFIG_DNS_KEY_HI, CONFIG_DNS_KEY_LO, CONFIG_DNS_REPEATS, CONFIG_FLAGS, CONFIG_FLAG_ALL_PORTS,
    CONFIG_MAP, CONFIG_SK_ERR_OFFSET, CONFIG_SK_V6_DADDR_OFFSET, CONFIG_TCP_BYTES_ACKED_OFFSET,
    CONFIG_TCP_BYTES_RECEIVED_OFFSET, COUNTERS_MAP, COUNTER_DNS_REPEATS, COUNTER_DNS_SKIPPED,
    COUNTER_JOB_PIDS_FULL, COUNTER_RINGBUF_FULL, DNS_FLAG_HELD, DNS_PENDING_MAP,
    DNS_RECENT_ANSWERS_MAP, DNS_RECENT_SLOTS, EVENTS_MAP, FLOWS_MAP, JOB_PIDS_MAP,
    SKC_FAMILY_OFFSET, SKC_STATE_OFFSET, WATCH_FLOW, WATCH_PORTS_MAP, WATCH_PORTS_MAX, WATCH_REPLY,
};
use tokio::io::unix::AsyncFd;

use serde::{Deserialize, Serialize};

use crate::proxy::discover::WatchedProxy;

use crate::capture::{
    kernel_caps::{self, AdoptionSource, BytesSource, KernelCaps, Plan},
    mountinfo::cgroup2_mount,
};

/// The compiled kernel programs (built by build.rs).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/observer-ebpf"));

/// What to capture.
#[derive(Clone, Debug)]
pub struct CaptureConfig {
    /// Destination ports whose TCP flows are tracked.
    pub ports: Vec<u16>,
    /// Track every destination port.
    pub all_ports: bool,
    /// HTTP proxies the runner goes through: their ports are watched, and their first bytes
    /// back (the status line that says whether a CONNECT went through) copied too.
    pub proxies: Vec<WatchedProxy>,
    /// Follow the process trees of jobs (`observer daemon`): the job programs are attached and
    /// the kernel's job table is shared through this handle.
    pub jobs: Option<crate::capture::jobs::JobPids>,
    /// Also report the capture's totals (`capture_stats`) this often, not only when events were
    /// lost and at the end (a daemon's metrics follow them).
    pub stats_every: Option<std::time::Duration>,
    /// Count exact repeats of DNS exchanges in the kernel instead of copying them (see
    /// `DNS_PENDING_MAP` in the ABI; experimental, `--count-dns-repeats`); off, every DNS packet
    /// is copied.
    pub dns_repeats: bool,
}

impl CaptureConfig {
    /// Every port watched, with its `WATCH_*` bits, each once.
    pub fn watch_bits(&self) -> Vec<(u16, u8)> {
        let mut out: Vec<(u16, u8)> = Vec::new();
        let reply: Vec<u16> = self.proxies.iter().map(|p| p.addr.port()).collect();
        for &port in self.ports.iter().chain(&reply) {
            let bits = if reply.contains(&port) {
                WATCH_FLOW | WATCH_REPLY
            } else {
                WATCH_FLOW
            };
            if !out.iter().any(|(p, _)| *p == port) {
                out.push((port, bits));
            }
        }
        out
    }
}

/// Errors that stop the capture from starting.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(
        "loading eBPF programs needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (missing: {missing}): \
         run as root, e.g. `sudo observer ...`"
    )]
    NotPrivileged { missing: String },
    #[error(
        "cgroup v2 is not mounted (no cgroup2 line in /proc/self/mountinfo): mount it with \
         `mount -t cgroup2 none /sys/fs/cgroup/unified` (or boot with systemd's unified hierarchy)"
    )]
    NoCgroup2,
    #[error("cannot open the cgroup v2 root {path}: {source}")]
    CgroupOpen { path: PathBuf, source: io::Error },
    #[error(
        "the kernel refused the observer's eBPF object: {0}. The observer needs BPF ring buffers \
         (Linux 5.8 or later); check `dmesg` and that /sys/kernel/btf/vmlinux exists"
    )]
    Load(#[source] aya::EbpfError),
    #[error(
        "the eBPF object has no map {0} (the build is broken: rebuild with `cargo xtask build`)"
    )]
    MissingMap(&'static str),
    #[error("cannot use map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error(
        "too many ports to watch ({0}, at most {max}): use --all-ports instead",
        max = WATCH_PORTS_MAX
    )]
    TooManyPorts(usize),
    #[error("no probe could be attached, nothing would be captured:\n{0}")]
    NothingAttached(String),
    #[error("cannot read the ring buffer: {0}")]
    Ring(#[source] io::Error),
    #[error("{0}")]
    UnsupportedKernel(String),
}

/// A hook a program attaches to.
#[derive(Clone, Copy)]
enum Hook {
    Tracepoint(&'static str, &'static str),
    CgroupSkb(CgroupSkbAttachType),
    CgroupSockAddr(&'static str),
    CgroupSockopt(&'static str),
}

/// Every program of the object and where it goes.
const PROBES: &[(&str, Hook)] = &[
    (
        "tcp_set_state",
        Hook::Tracepoint("sock", "inet_sock_set_state"),
    ),
    (
        "tcp_retransmit",
        Hook::Tracepoint("tcp", "tcp_retransmit_skb"),
    ),
    (
        "tcp_reset_received",
        Hook::Tracepoint("tcp", "tcp_receive_reset"),
    ),
    (
        "sock_error",
        Hook::Tracepoint("sock", "inet_sk_error_report"),
    ),
    (
        "tcp_bytes_sent",
        Hook::Tracepoint("sock", "sock_send_length"),
    ),
    (
        "tcp_bytes_received",
        Hook::Tracepoint("sock", "sock_recv_length"),
    ),
    ("dns_ingress", Hook::CgroupSkb(CgroupSkbAttachType::Ingress)),
    ("dns_egress", Hook::CgroupSkb(CgroupSkbAttachType::Egress)),
    ("owner_connect4", Hook::CgroupSockAddr("connect4")),
    ("owner_connect6", Hook::CgroupSockAddr("connect6")),
    ("owner_sendmsg4", Hook::CgroupSockAddr("sendmsg4")),
    ("owner_sendmsg6", Hook::CgroupSockAddr("sendmsg6")),
    ("so_error_seen", Hook::CgroupSockopt("getsockopt")),
];

/// The programs that follow jobs' process trees (only with `CaptureConfig::jobs`).
const JOB_PROBES: &[(&str, Hook)] = &[
    ("job_fork", Hook::Tracepoint("task", "task_newtask")),
    ("job_exit", Hook::Tracepoint("sched", "sched_process_exit")),
];

/// Without these, nothing useful is captured.
const ESSENTIAL: &[&str] = &["tcp_set_state", "dns_ingress"];

impl Hook {
    fn describe(self, cgroup: &Path) -> String {
        match self {
            Self::Tracepoint(cat, name) => format!("tracepoint {cat}/{name}"),
            Self::CgroupSkb(CgroupSkbAttachType::Ingress) => {
                format!("cgroup_skb ingress {}", cgroup.display())
            }
            Self::CgroupSkb(CgroupSkbAttachType::Egress) => {
                format!("cgroup_skb egress {}", cgroup.display())
            }
            Self::CgroupSockAddr(kind) | Self::CgroupSockopt(kind) => {
                format!("cgroup/{kind} {}", cgroup.display())
            }
        }
    }
}

/// A probe and whether it is attached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeStatus {
    /// Program name in the object file.
    pub program: String,
    /// Where it attaches (`tracepoint sock/inet_sock_set_state`, `cgroup_skb ingress ...`).
    pub hook: String,
    pub attached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A running capture.
pub struct Capture {
    ring: AsyncFd<RingBuf<MapData>>,
    flows: HashMap<MapData, u64, Flow>,
    counters: PerCpuArray<MapData, u64>,
    dns_pending: HashMap<MapData, DnsPendingKey, DnsPending>,
    dns_answers: Array<MapData, DnsRecent>,
    pub probes: Vec<ProbeStatus>,
    pub cgroup: PathBuf,
    /// The data source of each need on this kernel (see `kernel_caps`).
    pub plan: Plan,
    /// Holds the programs and their links; dropping it detaches everything.
    _ebpf: Ebpf,
}

impl Capture {
    /// Checks the machine, loads the programs and attaches every probe it can.
    pub fn start(config: &CaptureConfig) -> Result<Self, CaptureError> {
        check_capabilities()?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let cgroup = cgroup2_mount(&mountinfo).ok_or(CaptureError::NoCgroup2)?;
        let cgroup_file = File::open(&cgroup).map_err(|source| CaptureError::CgroupOpen {
            path: cgroup.clone(),
            source,
        })?;
        raise_memlock_limit();
        let tracefs_problem = ensure_tracefs();
        let caps = KernelCaps::probe();
        if let Some(why) = kernel_caps::unsupported(&caps) {
            return Err(CaptureError::UnsupportedKernel(why));
        }
        let plan = kernel_caps::plan(&caps, config.all_ports);

        let mut ebpf = Ebpf::load(OBJECT).map_err(CaptureError::Load)?;
        configure(&mut ebpf, config, &plan)?;

        let mut probes = Vec::new();
        let job_probes = if config.jobs.is_some() {
            JOB_PROBES
        } else {
            &[]
        };
        for &(program, hook) in PROBES.iter().chain(job_probes) {
            // Replaced by the plan's fallback (named in its sources), not a probe that failed.
            if !plan.length_tracepoints && kernel_caps::is_length_tracepoint(program) {
                continue;
            }
            let result = attach(&mut ebpf, program, hook, &cgroup_file);
            let error = result.err().map(|e| match (&hook, &tracefs_problem) {
                (Hook::Tracepoint(..), Some(why)) => format!("{e} ({why})"),
                _ => e,
            });
            probes.push(ProbeStatus {
                program: program.to_owned(),
                hook: hook.describe(&cgroup),
                attached: error.is_none(),
                error,
            });
        }
        if probes
            .iter()
            .filter(|p| ESSENTIAL.contains(&p.program.as_str()))
            .all(|p| !p.attached)
        {
            let lines: Vec<String> = probes
                .iter()
                .map(|p| {
                    format!(
                        "  {} ({}): {}",
                        p.program,
                        p.hook,
                        p.error.as_deref().unwrap_or("ok")
                    )
                })
                .collect();
            return Err(CaptureError::NothingAttached(lines.join("\n")));
        }

        let ring = RingBuf::try_from(take_map(&mut ebpf, EVENTS_MAP)?).map_err(|source| {
            CaptureError::Map {
                name: EVENTS_MAP,
                source,
            }
        })?;
        // SAFETY: the ring buffer owns its map's file descriptor, which stays open and the same
        // for as long as the `RingBuf` (and so the `AsyncFd`) lives.
        let ring =
            unsafe { AsyncFd::register(ring) }.map_err(|e| CaptureError::Ring(e.into_parts().1))?;
        let flows = HashMap::try_from(take_map(&mut ebpf, FLOWS_MAP)?).map_err(|source| {
            CaptureError::Map {
                name: FLOWS_MAP,
                source,
            }
        })?;
        let counters =
            PerCpuArray::try_from(take_map(&mut ebpf, COUNTERS_MAP)?).map_err(|source| {
                CaptureError::Map {
                    name: COUNTERS_MAP,
                    source,
                }
            })?;
        let dns_pending =
            HashMap::try_from(take_map(&mut ebpf, DNS_PENDING_MAP)?).map_err(|source| {
                CaptureError::Map {
                    name: DNS_PENDING_MAP,
                    source,
                }
            })?;
        let dns_answers =
            Array::try_from(take_map(&mut ebpf, DNS_RECENT_ANSWERS_MAP)?).map_err(|source| {
                CaptureError::Map {
                    name: DNS_RECENT_ANSWERS_MAP,
                    source,
                }
            })?;
        if let Some(jobs) = &config.jobs {
            let map = HashMap::try_from(take_map(&mut ebpf, JOB_PIDS_MAP)?).map_err(|source| {
                CaptureError::Map {
                    name: JOB_PIDS_MAP,
                    source,
                }
            })?;
            jobs.install(map);
        }
        release_loading_memory();
        Ok(Self {
            ring,
            flows,
            counters,
            dns_pending,
            dns_answers,
            probes,
            cgroup,
            plan,
            _ebpf: ebpf,
        })
    }

    /// Waits until records are ready, then hands each one to `f`. Returns how many were read.
    pub async fn drain(&mut self, mut f: impl FnMut(&[u8])) -> Result<usize, CaptureError> {
        let mut guard = self.ring.readable_mut().await.map_err(CaptureError::Ring)?;
        let ring = guard.get_inner_mut();
        let mut n = 0;
        while let Some(item) = ring.next() {
            f(&item);
            n += 1;
        }
        guard.clear_ready();
        Ok(n)
    }

    /// Hands every record already waiting to `f`, without waiting: the kernel wakes user space
    /// only when enough has piled up, so the capture loop also drains on its own ticks.
    pub fn drain_pending(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let ring = self.ring.get_mut();
        let mut n = 0;
        while let Some(item) = ring.next() {
            f(&item);
            n += 1;
        }
        n
    }

    /// The kernel's current view of every tracked flow (byte counters included).
    pub fn flows(&self) -> Vec<(u64, Flow)> {
        self.flows.iter().filter_map(Result::ok).collect()
    }

    /// Children of job processes the kernel's job table had no room for, summed over CPUs.
    pub fn job_pids_full(&self) -> u64 {
        self.counter(COUNTER_JOB_PIDS_FULL)
    }

    /// (events lost because the ring buffer was full, DNS packets not copied), summed over CPUs.
    pub fn kernel_counters(&self) -> (u64, u64) {
        (
            self.counter(COUNTER_RINGBUF_FULL),
            self.counter(COUNTER_DNS_SKIPPED),
        )
    }

    /// DNS exchanges the kernel counted as exact repeats instead of copying them.
    pub fn dns_repeats(&self) -> u64 {
        self.counter(COUNTER_DNS_REPEATS)
    }

    /// A `COUNTERS` slot, summed over CPUs.
    fn counter(&self, index: u32) -> u64 {
        self.counters
            .get(&index, 0)
            .map(|values| values.iter().sum::<u64>())
            .unwrap_or(0)
    }

    /// Tells the kernel that user space judged these answers (`DnsEvent::exchange`, with their
    /// `ts_ns`) the first answers to their queries, naming what they say: exact repeats of them
    /// within the window are then counted, not copied. A failed write only means the next repeat
    /// is copied.
    pub fn remember_dns_answers(&mut self, answers: &[(u64, u64)]) {
        for &(hash, ts_ns) in answers {
            let slot = (hash as u32) & (DNS_RECENT_SLOTS - 1);
            let _ = self.dns_answers.set(slot, DnsRecent { hash, ts_ns }, 0);
        }
    }

    /// Takes from the kernel the held DNS queries (repeats of a recent one, waiting for their
    /// answer) sent before `before_ns` (all of them with `u64::MAX`), and hands each to `f` as
    /// the record the kernel would have copied: a query no answer came for is then judged in user
    /// space like any other (a timeout stays a timeout).
    pub fn take_held_dns_queries(&mut self, before_ns: u64, mut f: impl FnMut(&[u8])) -> usize {
        let old: Vec<(DnsPendingKey, DnsPending)> = self
            .dns_pending
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, p)| p.event.ts_ns < before_ns)
            .collect();
        let mut n = 0;
        for (key, pending) in old {
            // Whoever deletes the entry owns it: the kernel, when the answer came meanwhile.
            if self.dns_pending.remove(&key).is_ok() && pending.held == 1 {
                let mut event = pending.event;
                event.flags |= DNS_FLAG_HELD;
                // SAFETY: `DnsEvent` is plain `#[repr(C)]` data with explicit padding.
                let bytes = unsafe {
                    std::slice::from_raw_parts(
                        (&raw const event).cast::<u8>(),
                        size_of::<DnsEvent>(),
                    )
                };
                f(bytes);
                n += 1;
            }
        }
        n
    }
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, CaptureError> {
    ebpf.take_map(name).ok_or(CaptureError::MissingMap(name))
}

/// Writes the port filter before anything is attached.
fn configure(ebpf: &mut Ebpf, config: &CaptureConfig, plan: &Plan) -> Result<(), CaptureError> {
    let watch = config.watch_bits();
    if watch.len() > WATCH_PORTS_MAX as usize {
        return Err(CaptureError::TooManyPorts(watch.len()));
    }
    let map_err = |name| move |source| CaptureError::Map { name, source };
    let mut flags = Array::<_, u32>::try_from(
        ebpf.map_mut(CONFIG_MAP)
            .ok_or(CaptureError::MissingMap(CONFIG_MAP))?,
    )
    .map_err(map_err(CONFIG_MAP))?;
    let value = if config.all_ports {
        CONFIG_FLAG_ALL_PORTS
    } else {
        0
    };
    flags
        .set(CONFIG_FLAGS, value, 0)
        .map_err(map_err(CONFIG_MAP))?;
    let btf = KernelBtf::load();
    match btf.sk_err_offset() {
        Ok(offset) => flags
            .set(CONFIG_SK_ERR_OFFSET, offset, 0)
            .map_err(map_err(CONFIG_MAP))?,
        Err(why) => eprintln!(
            "observer: warning: cannot find sk_err in the kernel's struct sock ({why}); the \
             error of a socket is then known only from sock:inet_sk_error_report, which can \
             miss it"
        ),
    }
    if plan.bytes == (BytesSource::Polled { at_close: true }) {
        match btf.tcp_bytes_offsets() {
            Ok((acked, received)) => {
                flags
                    .set(CONFIG_TCP_BYTES_ACKED_OFFSET, acked, 0)
                    .map_err(map_err(CONFIG_MAP))?;
                flags
                    .set(CONFIG_TCP_BYTES_RECEIVED_OFFSET, received, 0)
                    .map_err(map_err(CONFIG_MAP))?;
            }
            Err(why) => eprintln!(
                "observer: warning: a flow's final byte counts are not read at its close \
                 ({why}); flows shorter than a second show no bytes"
            ),
        }
    }
    if config.dns_repeats {
        let key = random_key();
        flags
            .set(CONFIG_DNS_KEY_LO, key as u32, 0)
            .map_err(map_err(CONFIG_MAP))?;
        flags
            .set(CONFIG_DNS_KEY_HI, (key >> 32) as u32, 0)
            .map_err(map_err(CONFIG_MAP))?;
        flags
            .set(CONFIG_DNS_REPEATS, 1, 0)
            .map_err(map_err(CONFIG_MAP))?;
    }
    if plan.adoption == AdoptionSource::SockDiagAtStart {
        flags
            .set(CONFIG_ADOPT_AT_END, 1, 0)
            .map_err(map_err(CONFIG_MAP))?;
    }
    // Adopting flows that connected before the capture needs the sock_common layout the
    // programs read; with all ports watched it stays off (inbound connections would be adopted).
    if !config.all_ports {
        match btf.sock_common_layout() {
            Ok(v6_daddr) => {
                flags
                    .set(CONFIG_SK_V6_DADDR_OFFSET, v6_daddr.unwrap_or(0), 0)
                    .map_err(map_err(CONFIG_MAP))?;
                flags.set(CONFIG_ADOPT, 1, 0).map_err(map_err(CONFIG_MAP))?;
            }
            Err(why) => eprintln!(
                "observer: warning: flows open before the capture started will not be \
                 adopted ({why})"
            ),
        }
    }
    let mut ports = HashMap::<_, u16, u8>::try_from(
        ebpf.map_mut(WATCH_PORTS_MAP)
            .ok_or(CaptureError::MissingMap(WATCH_PORTS_MAP))?,
    )
    .map_err(map_err(WATCH_PORTS_MAP))?;
    for (port, bits) in watch {
        ports
            .insert(port, bits, 0)
            .map_err(map_err(WATCH_PORTS_MAP))?;
    }
    Ok(())
}

/// A key nobody else knows, for the kernel's DNS repeat hashes (from the kernel's random pool;
/// the clock and pid only if that cannot be read).
fn random_key() -> u64 {
    use std::io::Read as _;
    let mut bytes = [0u8; 8];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok()
    {
        return u64::from_ne_bytes(bytes);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    now ^ (u64::from(std::process::id()) << 40)
}

/// The running kernel's BTF, for the offsets the programs read sockets at.
struct KernelBtf(Result<btf_rs::Btf, String>);

impl KernelBtf {
    fn load() -> Self {
        Self(btf_rs::Btf::from_file("/sys/kernel/btf/vmlinux").map_err(|e| e.to_string()))
    }

    /// Byte offsets of the named direct members of `struct name` (absent ones are left out).
    fn members(&self, name: &str, wanted: &[&str]) -> Result<Vec<(String, u32)>, String> {
        use btf_rs::Type;
        let btf = self.0.as_ref().map_err(Clone::clone)?;
        for ty in btf.resolve_types_by_name(name).map_err(|e| e.to_string())? {
            let Type::Struct(st) = ty else { continue };
            return Ok(st
                .members
                .iter()
                .filter_map(|m| {
                    let n = btf.resolve_name(m).ok()?;
                    wanted
                        .contains(&n.as_str())
                        .then(|| (n, m.bit_offset() / 8))
                })
                .collect());
        }
        Err(format!("no struct {name} in the kernel's BTF"))
    }

    /// Byte offset of `sk_err` in `struct sock`.
    fn sk_err_offset(&self) -> Result<u32, String> {
        self.members("sock", &["sk_err"])?
            .first()
            .map(|(_, offset)| *offset)
            .ok_or_else(|| "no member sk_err in struct sock".to_owned())
    }

    /// Byte offsets of `bytes_acked` and `bytes_received` in `struct tcp_sock` (which starts with
    /// `struct sock`, so they are offsets from the socket's address too).
    fn tcp_bytes_offsets(&self) -> Result<(u32, u32), String> {
        let m = self.members("tcp_sock", &["bytes_acked", "bytes_received"])?;
        let at = |name: &str| m.iter().find(|(n, _)| n == name).map(|(_, o)| *o);
        match (at("bytes_acked"), at("bytes_received")) {
            (Some(a), Some(r)) if a > 0 && r > 0 => Ok((a, r)),
            _ => Err("no bytes_acked/bytes_received in struct tcp_sock".to_owned()),
        }
    }

    /// Checks that `struct sock_common` has the layout of `SKC_*_OFFSET` (family and state
    /// where expected, at the start of `struct sock`) and returns the offset of `skc_v6_daddr`
    /// when `skc_v6_rcv_saddr` follows it (None: IPv6 flows are not adopted).
    fn sock_common_layout(&self) -> Result<Option<u32>, String> {
        let common = self.members(
            "sock_common",
            &[
                "skc_family",
                "skc_state",
                "skc_v6_daddr",
                "skc_v6_rcv_saddr",
            ],
        )?;
        let at = |name: &str| common.iter().find(|(n, _)| n == name).map(|(_, o)| *o);
        let family = (at("skc_family"), SKC_FAMILY_OFFSET as u32);
        let state = (at("skc_state"), SKC_STATE_OFFSET as u32);
        if family.0 != Some(family.1) || state.0 != Some(state.1) {
            return Err(format!(
                "struct sock_common has skc_family at {:?} and skc_state at {:?}, not {} and {}",
                family.0, state.0, family.1, state.1
            ));
        }
        let sock = self.members("sock", &["__sk_common"])?;
        if sock.first().map(|(_, o)| *o) != Some(0) {
            return Err("struct sock does not start with __sk_common".to_owned());
        }
        Ok(match (at("skc_v6_daddr"), at("skc_v6_rcv_saddr")) {
            (Some(d), Some(s)) if s == d + 16 => Some(d),
            _ => None,
        })
    }
}

/// Loads and attaches one program; the error says what failed.
fn attach(ebpf: &mut Ebpf, program: &str, hook: Hook, cgroup: &File) -> Result<(), String> {
    let prog: &mut Program = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("program {program} is not in the object"))?;
    let result = match hook {
        Hook::Tracepoint(category, name) => {
            let tp: &mut TracePoint = prog.try_into().map_err(|e| format!("{e}"))?;
            tp.load().and_then(|()| tp.attach(category, name).map(drop))
        }
        Hook::CgroupSkb(kind) => {
            let skb: &mut CgroupSkb = prog.try_into().map_err(|e| format!("{e}"))?;
            // `Single`: with a bpf link this never replaces other tools' programs
            // (`AllowMultiple` fails with EINVAL on the kernels we target).
            skb.load()
                .and_then(|()| skb.attach(cgroup, kind, CgroupAttachMode::Single).map(drop))
        }
        Hook::CgroupSockopt(_) => {
            let so: &mut CgroupSockopt = prog.try_into().map_err(|e| format!("{e}"))?;
            so.load()
                .and_then(|()| so.attach(cgroup, CgroupAttachMode::Single).map(drop))
        }
        Hook::CgroupSockAddr(_) => {
            let sa: &mut CgroupSockAddr = prog.try_into().map_err(|e| format!("{e}"))?;
            sa.load()
                .and_then(|()| sa.attach(cgroup, CgroupAttachMode::Single).map(drop))
        }
    };
    result.map_err(|e| error_chain(&e))
}

/// An error with its sources, on one line. A verifier log is cut down to its verdict (the line
/// before the statistics); the whole log is huge and only useful to developers.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        parts.push(short(&err.to_string()));
        next = err.source();
    }
    parts.dedup();
    parts.join(": ")
}

fn short(message: &str) -> String {
    let Some((head, log)) = message.split_once("Verifier output:") else {
        return message.lines().next().unwrap_or_default().to_owned();
    };
    let verdict = log
        .lines()
        .take_while(|l| !l.starts_with("verification time"))
        .filter(|l| !l.trim().is_empty())
        .last()
        .unwrap_or("");
    format!(
        "{} (verifier: {})",
        head.trim().trim_end_matches('.'),
        verdict.trim()
    )
}

/// Capabilities needed, as (bit, name), from linux/capability.h.
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const NEEDED_CAPS: &[(u32, &str)] = &[
    (39, "CAP_BPF"),
    (38, "CAP_PERFMON"),
    (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
];

fn check_capabilities() -> Result<(), CaptureError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |bit: u32| effective & (1 << bit) != 0;
    let missing: Vec<&str> = NEEDED_CAPS
        .iter()
        // CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON (it did before Linux 5.8).
        .filter(|&&(bit, _)| {
            let covered = bit != CAP_NET_ADMIN && has(CAP_SYS_ADMIN);
            !has(bit) && !covered
        })
        .map(|(_, name)| *name)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CaptureError::NotPrivileged {
            missing: missing.join(", "),
        })
    }
}

/// Older kernels charge BPF maps to RLIMIT_MEMLOCK; newer ones ignore it.
fn raise_memlock_limit() {
    let limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    let ret = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const limit) };
    if ret != 0 {
        log::debug!(
            "cannot raise RLIMIT_MEMLOCK: {}",
            io::Error::last_os_error()
        );
    }
}

/// Tracepoints are found through tracefs; mount it if nobody did. Returns why it is missing.
fn ensure_tracefs() -> Option<String> {
    let known = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
    if known.iter().any(|p| Path::new(p).join("events").is_dir()) {
        return None;
    }
    // SAFETY: constant NUL-terminated strings.
    let ret = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if ret == 0 {
        None
    } else {
        Some(format!(
            "tracefs is not mounted and mounting it failed ({}): run `mount -t tracefs nodev /sys/kernel/tracing`",
            io::Error::last_os_error()
        ))
    }
}

/// Gives the memory that loading used back to the system. Loading parses the kernel's BTF twice
/// (aya relocating the programs, [`KernelBtf`] reading offsets): some 35 MB of heap, all freed by
/// now but left resident by the allocator, which would otherwise stay the largest part of the
/// observer's memory for as long as it runs (54 MB resident when idle before, 18 MB after, on
/// Linux 6.18).
fn release_loading_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory of the allocator to the system; no pointer
    // is invalidated.
    unsafe {
        libc::malloc_trim(0);
    }
}
