//! Byte counters and open connections from the kernel's TCP statistics, through sock_diag netlink
//! (`NETLINK_SOCK_DIAG`, `inet_diag` with `INET_DIAG_INFO`): the fallback for kernels without the
//! `sock:sock_send_length` / `sock:sock_recv_length` tracepoints (before Linux 6.3), which works
//! on every kernel the observer supports.
//!
//! - Once a second, the flows the kernel's `FLOWS` map tracks get the `tcpi_bytes_acked` and
//!   `tcpi_bytes_received` counters of their socket, and go the same way as counters read from
//!   the map (`flow_progress`, throughput).
//! - At start-up, established connections to the watched ports are listed and adopted (their
//!   process found through /proc/*/fd); their counters and their end are then polled.
//!
//! sock_diag answers for one network namespace: the one the netlink socket was created in. The
//! runner's jobs run in containers and namespaces of their own, so a socket is opened per
//! namespace (on a short-lived thread that enters it), found from the flow's process.
//!
//! The parser is a small one over the stable kernel ABI (linux/netlink.h, linux/inet_diag.h,
//! linux/tcp.h), checked on recorded replies; it never panics on a short or odd reply.

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use observer_ebpf::{
    Flow, Owner, Tuple, AF_INET, AF_INET6, COMM_LEN, TCP_CLOSE, TCP_CLOSE_WAIT, TCP_ESTABLISHED,
    TCP_FIN_WAIT1, TCP_LISTEN, TCP_TIME_WAIT,
};

use crate::capture::record::{FlowRecord, KernelEvent};

const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const INET_DIAG_MSG: usize = 72;
const INET_DIAG_INFO: u16 = 2;
const IPPROTO_TCP: u8 = 6;
/// `struct tcp_info` offsets (linux/tcp.h; stable ABI, appended to only).
const TCPI_LAST_DATA_SENT: usize = 44;
const TCPI_LAST_DATA_RECV: usize = 52;
const TCPI_BYTES_ACKED: usize = 120;
const TCPI_BYTES_RECEIVED: usize = 128;
/// Keys of flows adopted here have this bit set; kernel keys are socket addresses, which on
/// x86-64 and arm64 have their top bits set and never this pattern.
const ADOPTED_KEY: u64 = 0x4000_0000_0000_0000;

/// Errors of the sock_diag fallback.
#[derive(Debug, thiserror::Error)]
pub enum SockDiagError {
    #[error("cannot open a sock_diag netlink socket: {0} (is CONFIG_INET_DIAG on? `modprobe inet_diag tcp_diag`)")]
    Open(#[source] io::Error),
    #[error("cannot enter the network namespace {path}: {source} (the observer needs CAP_SYS_ADMIN for it)")]
    Netns { path: PathBuf, source: io::Error },
    #[error("sock_diag request failed: {0}")]
    Io(#[source] io::Error),
    #[error("the kernel refused the sock_diag dump: errno {0}")]
    Refused(i32),
    #[error("malformed sock_diag reply: {0}")]
    Malformed(&'static str),
}

/// One TCP socket as sock_diag reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiagSocket {
    pub family: u16,
    pub state: u8,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub uid: u32,
    pub inode: u32,
    pub cookie: u64,
    /// From `INET_DIAG_INFO` (absent for time-wait sockets).
    pub info: Option<TcpCounters>,
}

/// The `tcp_info` fields the observer uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpCounters {
    pub bytes_acked: u64,
    pub bytes_received: u64,
    /// Milliseconds since data was last sent / received.
    pub last_data_sent_ms: u32,
    pub last_data_recv_ms: u32,
}

/// The dump request for every TCP socket of `family` but listeners, with `tcp_info`.
pub fn dump_request(family: u16, seq: u32) -> Vec<u8> {
    let len = NLMSG_HDR + 56;
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&u32::try_from(len).unwrap_or(72).to_ne_bytes());
    b.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    // struct inet_diag_req_v2: family, protocol, ext, pad, states, sockid (48 bytes, zero).
    b.push(u8::try_from(family).unwrap_or(2));
    b.push(IPPROTO_TCP);
    b.push(1 << (INET_DIAG_INFO - 1));
    b.push(0);
    let states: u32 = !(1 << TCP_LISTEN);
    b.extend_from_slice(&states.to_ne_bytes());
    b.resize(len, 0);
    b
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Parses one datagram of a dump reply: the sockets in it, and whether the dump is done.
pub fn parse_reply(buf: &[u8]) -> Result<(Vec<DiagSocket>, bool), SockDiagError> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + NLMSG_HDR <= buf.len() {
        let len = u32_at(buf, off).ok_or(SockDiagError::Malformed("short header"))? as usize;
        let kind = u16_at(buf, off + 4).ok_or(SockDiagError::Malformed("short header"))?;
        if len < NLMSG_HDR || off + len > buf.len() {
            return Err(SockDiagError::Malformed("message length out of bounds"));
        }
        let body = &buf[off + NLMSG_HDR..off + len];
        match kind {
            NLMSG_DONE => return Ok((out, true)),
            NLMSG_ERROR => {
                let errno = u32_at(body, 0).ok_or(SockDiagError::Malformed("short error"))? as i32;
                if errno != 0 {
                    return Err(SockDiagError::Refused(-errno));
                }
            }
            SOCK_DIAG_BY_FAMILY => {
                if let Some(s) = parse_socket(body) {
                    out.push(s);
                } else {
                    return Err(SockDiagError::Malformed("short inet_diag_msg"));
                }
            }
            _ => {}
        }
        off += align4(len);
    }
    Ok((out, false))
}

/// One `struct inet_diag_msg` and its attributes.
fn parse_socket(body: &[u8]) -> Option<DiagSocket> {
    if body.len() < INET_DIAG_MSG {
        return None;
    }
    let family = u16::from(body[0]);
    let state = body[1];
    // struct inet_diag_sockid at 4: sport, dport (big endian), src[16], dst[16], if, cookie[2].
    let sport = u16::from_be_bytes([body[4], body[5]]);
    let dport = u16::from_be_bytes([body[6], body[7]]);
    let addr = |at: usize| -> Option<IpAddr> {
        match family {
            2 => Some(IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(body.get(at..at + 4)?).ok()?,
            ))),
            10 => Some(IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(body.get(at..at + 16)?).ok()?,
            ))),
            _ => None,
        }
    };
    let src = SocketAddr::new(addr(8)?, sport);
    let dst = SocketAddr::new(addr(24)?, dport);
    let cookie = u64::from(u32_at(body, 44)?) | (u64::from(u32_at(body, 48)?) << 32);
    let uid = u32_at(body, 64)?;
    let inode = u32_at(body, 68)?;
    let mut info = None;
    let mut at = INET_DIAG_MSG;
    while at + 4 <= body.len() {
        let rta_len = usize::from(u16_at(body, at)?);
        let rta_type = u16_at(body, at + 2)?;
        if rta_len < 4 || at + rta_len > body.len() {
            break;
        }
        if rta_type == INET_DIAG_INFO {
            let p = &body[at + 4..at + rta_len];
            // A tcp_info too short for the counters (a very old kernel): no counters, the
            // socket itself still counts.
            info = (|| {
                Some(TcpCounters {
                    bytes_acked: u64_at(p, TCPI_BYTES_ACKED)?,
                    bytes_received: u64_at(p, TCPI_BYTES_RECEIVED)?,
                    last_data_sent_ms: u32_at(p, TCPI_LAST_DATA_SENT)?,
                    last_data_recv_ms: u32_at(p, TCPI_LAST_DATA_RECV)?,
                })
            })();
        }
        at += align4(rta_len);
    }
    Some(DiagSocket {
        family,
        state,
        src,
        dst,
        uid,
        inode,
        cookie,
        info,
    })
}

/// A sock_diag netlink socket bound to one network namespace.
pub struct DiagSocketFd {
    fd: OwnedFd,
    seq: u32,
}

impl DiagSocketFd {
    /// A socket in the observer's own network namespace.
    pub fn open() -> Result<Self, SockDiagError> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(SockDiagError::Open(io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // A dump never blocks the capture loop for long.
        let timeout = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: valid pointer and length.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        Ok(Self { fd, seq: 0 })
    }

    /// A socket in the network namespace of `ns` (a `/proc/PID/ns/net` path): created on a
    /// thread that enters the namespace, so the observer's own threads never change namespace.
    pub fn open_in(ns: &Path) -> Result<Self, SockDiagError> {
        let file = File::open(ns).map_err(|source| SockDiagError::Netns {
            path: ns.to_owned(),
            source,
        })?;
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: plain syscall on a valid descriptor; affects this thread only.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(SockDiagError::Netns {
                        path: ns.to_owned(),
                        source: io::Error::last_os_error(),
                    });
                }
                Self::open()
            })
            .join()
            .unwrap_or_else(|_| Err(SockDiagError::Malformed("namespace thread panicked")))
        })
    }

    /// Every TCP socket of `family` (AF_INET or AF_INET6) but listeners.
    pub fn dump(&mut self, family: u16) -> Result<Vec<DiagSocket>, SockDiagError> {
        self.seq = self.seq.wrapping_add(1);
        let req = dump_request(family, self.seq);
        // SAFETY: zeroed sockaddr_nl is valid; the kernel is the destination (pid 0).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: valid buffer and address.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(SockDiagError::Io(io::Error::last_os_error()));
        }
        let mut all = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: valid buffer of the given length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(SockDiagError::Io(io::Error::last_os_error()));
            }
            let n = usize::try_from(n).unwrap_or(0);
            if n == 0 {
                return Err(SockDiagError::Malformed("empty datagram"));
            }
            let (sockets, done) = parse_reply(&buf[..n])?;
            all.extend(sockets);
            if done {
                return Ok(all);
            }
        }
    }

    /// Both families.
    pub fn dump_all(&mut self) -> Result<Vec<DiagSocket>, SockDiagError> {
        let mut v = self.dump(AF_INET)?;
        // A kernel without IPv6 answers ENOENT or the like: IPv4 alone is still useful.
        if let Ok(v6) = self.dump(AF_INET6) {
            v.extend(v6);
        }
        Ok(v)
    }
}

/// The tuple of a socket, as the kernel programs write it (ports in host order).
pub fn tuple_of(s: &DiagSocket) -> Tuple {
    Tuple {
        family: s.family,
        ..super::record::tuple(s.src, s.dst)
    }
}

/// A tuple as a map key (the ABI struct stays plain data).
type TupleKey = (u16, u16, u16, [u8; 16], [u8; 16]);

fn tuple_key(t: &Tuple) -> TupleKey {
    (t.family, t.sport, t.dport, t.saddr, t.daddr)
}

/// Identity of a network namespace: (device, inode) of its nsfs file.
type NetnsId = (u64, u64);

fn netns_of(path: &Path) -> Option<NetnsId> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// A flow adopted at start-up, followed by polling.
struct Adopted {
    key: u64,
    netns: NetnsId,
    flow: Flow,
    /// Counters when it was adopted (its bytes count from then on).
    base: (u64, u64),
    /// The kernel's key once its programs took it over at its end (`CONFIG_ADOPT_AT_END`): the
    /// kernel then reports its close, with the final counters.
    kernel_key: Option<u64>,
}

/// The polling side of the fallback: netlink sockets per namespace, and adopted flows.
#[derive(Default)]
pub struct Poller {
    sockets: HashMap<NetnsId, (PathBuf, DiagSocketFd)>,
    adopted: HashMap<u64, Adopted>,
    /// Kernel key -> key of the adopted flow it is.
    kernel_keys: HashMap<u64, u64>,
    warned: HashSet<String>,
}

impl Poller {
    pub fn new() -> Self {
        Self::default()
    }

    fn warn_once(&mut self, what: String) {
        if self.warned.len() < 64 && self.warned.insert(what.clone()) {
            eprintln!("observer: warning: {what}");
        }
    }

    /// Dumps the namespace `id` (whose nsfs file is `path`).
    fn dump(&mut self, id: NetnsId, path: &Path) -> Option<Vec<DiagSocket>> {
        if !self.sockets.contains_key(&id) {
            let own = netns_of(Path::new("/proc/self/ns/net")) == Some(id);
            let opened = if own {
                DiagSocketFd::open()
            } else {
                DiagSocketFd::open_in(path)
            };
            match opened {
                Ok(s) => {
                    if self.sockets.len() >= 1024 {
                        self.sockets.clear();
                    }
                    self.sockets.insert(id, (path.to_owned(), s));
                }
                Err(e) => {
                    self.warn_once(format!("byte counts of flows in {}: {e}", path.display()));
                    return None;
                }
            }
        }
        let (_, socket) = self.sockets.get_mut(&id)?;
        match socket.dump_all() {
            Ok(v) => Some(v),
            Err(e) => {
                self.sockets.remove(&id);
                self.warn_once(format!("sock_diag dump of {}: {e}", path.display()));
                None
            }
        }
    }

    /// Fills the byte counters of the kernel's flows from their sockets' `tcp_info` (the
    /// counters are only ever raised), and follows the adopted flows: their counters and, when
    /// their socket is gone or closing, their close. Returns the flows to feed as snapshots and
    /// the close events.
    pub fn poll(&mut self, flows: &mut [(u64, Flow)], now_ns: u64) -> Vec<KernelEvent> {
        // Which namespaces to ask, from the flows' processes.
        let mut wanted: HashMap<NetnsId, PathBuf> = HashMap::new();
        let mut flow_ns: Vec<Option<NetnsId>> = Vec::with_capacity(flows.len());
        for (_, f) in flows.iter() {
            let path = PathBuf::from(format!("/proc/{}/ns/net", f.owner.pid));
            let id = netns_of(&path);
            if let Some(id) = id {
                wanted.entry(id).or_insert(path);
            }
            flow_ns.push(id);
        }
        for a in self.adopted.values() {
            if let (std::collections::hash_map::Entry::Vacant(e), Some((path, _))) =
                (wanted.entry(a.netns), self.sockets.get(&a.netns))
            {
                e.insert(path.clone());
            }
        }
        let mut by_ns: HashMap<NetnsId, HashMap<TupleKey, DiagSocket>> = HashMap::new();
        for (id, path) in wanted {
            if let Some(sockets) = self.dump(id, &path) {
                let map = sockets
                    .into_iter()
                    .map(|s| (tuple_key(&tuple_of(&s)), s))
                    .collect::<HashMap<_, _>>();
                by_ns.insert(id, map);
            }
        }
        for ((_, flow), ns) in flows.iter_mut().zip(flow_ns) {
            let Some(s) = ns
                .and_then(|id| by_ns.get(&id))
                .and_then(|m| m.get(&tuple_key(&flow.tuple)))
            else {
                continue;
            };
            if let Some(info) = s.info {
                apply(flow, &info, (0, 0), now_ns);
            }
        }
        // Adopted flows: counters, then the close of those that are gone or closing.
        let mut events = Vec::new();
        let mut gone = Vec::new();
        for a in self.adopted.values_mut() {
            let Some(map) = by_ns.get(&a.netns) else {
                continue; // the namespace could not be asked this time
            };
            let s = map.get(&tuple_key(&a.flow.tuple));
            if let Some(info) = s.and_then(|s| s.info) {
                apply(&mut a.flow, &info, a.base, now_ns);
            }
            let state = s.map_or(TCP_CLOSE, |s| u32::from(s.state));
            if state < 32 {
                a.flow.states_seen |= 1 << state;
            }
            if (state == TCP_CLOSE || state == TCP_TIME_WAIT) && a.kernel_key.is_none() {
                gone.push(a.key);
            }
        }
        for key in gone {
            if let Some(mut a) = self.adopted.remove(&key) {
                // Who closed first is known only if a closing state was polled; otherwise
                // neither side is named.
                let fins = 1 << TCP_FIN_WAIT1 | 1 << TCP_CLOSE_WAIT;
                if a.flow.states_seen & fins == 0 {
                    a.flow.states_seen |= fins;
                }
                a.flow.states_seen |= 1 << TCP_CLOSE;
                events.push(KernelEvent::FlowClose(FlowRecord {
                    ts_ns: now_ns,
                    key: a.key,
                    flow: a.flow,
                }));
            }
        }
        events
    }

    /// Joins the kernel's events about flows adopted here: the kernel takes a connection over when
    /// it leaves ESTABLISHED (`FlowAdopt`, swallowed: the flow is already open) and reports its
    /// close, whose key and counters are turned into the adopted flow's. Other events pass.
    pub fn rewrite(&mut self, event: KernelEvent) -> Option<KernelEvent> {
        match event {
            KernelEvent::FlowAdopt(r) => {
                let wanted = tuple_key(&r.flow.tuple);
                let Some(a) = self
                    .adopted
                    .values_mut()
                    .find(|a| a.kernel_key.is_none() && tuple_key(&a.flow.tuple) == wanted)
                else {
                    return Some(KernelEvent::FlowAdopt(r));
                };
                a.kernel_key = Some(r.key);
                self.kernel_keys.insert(r.key, a.key);
                None
            }
            KernelEvent::FlowClose(r) => {
                let Some(a) = self
                    .kernel_keys
                    .remove(&r.key)
                    .and_then(|key| self.adopted.remove(&key))
                else {
                    return Some(KernelEvent::FlowClose(r));
                };
                let k = &r.flow;
                let mut flow = a.flow;
                let sent = k.bytes_sent.saturating_sub(a.base.0);
                let received = k.bytes_received.saturating_sub(a.base.1);
                // Payload moved after the last poll (beyond a FIN): when is unknown, so no
                // idle time rather than a wrong one.
                if sent > flow.bytes_sent + 1 || received > flow.bytes_received + 1 {
                    flow.ts_last_send_ns = 0;
                    flow.ts_last_recv_ns = 0;
                }
                flow.states_seen |= k.states_seen;
                flow.bytes_sent = flow.bytes_sent.max(k.bytes_sent.saturating_sub(a.base.0));
                flow.bytes_received = flow
                    .bytes_received
                    .max(k.bytes_received.saturating_sub(a.base.1));
                flow.ts_rst_ns = k.ts_rst_ns;
                flow.retransmits = k.retransmits;
                flow.sk_err = k.sk_err;
                Some(KernelEvent::FlowClose(FlowRecord {
                    ts_ns: r.ts_ns,
                    key: a.key,
                    flow,
                }))
            }
            other => Some(other),
        }
    }

    /// Current snapshots of the adopted flows (to feed with the kernel's own).
    pub fn adopted_flows(&self) -> Vec<(u64, Flow)> {
        self.adopted.values().map(|a| (a.key, a.flow)).collect()
    }

    /// Lists the established connections to `ports` in every network namespace that has a
    /// process, and adopts them: `FlowAdopt` events, with the process that holds the socket.
    pub fn adopt_existing(
        &mut self,
        ports: &[u16],
        cgroup_root: &Path,
        now_ns: u64,
    ) -> Vec<KernelEvent> {
        let mut namespaces: HashMap<NetnsId, PathBuf> = HashMap::new();
        for pid in pids() {
            let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
            if let Some(id) = netns_of(&path) {
                namespaces.entry(id).or_insert(path);
            }
        }
        let mut found: Vec<(NetnsId, DiagSocket)> = Vec::new();
        for (id, path) in namespaces {
            let Some(sockets) = self.dump(id, &path) else {
                continue;
            };
            found.extend(
                sockets
                    .into_iter()
                    .filter(|s| {
                        u32::from(s.state) == TCP_ESTABLISHED && ports.contains(&s.dst.port())
                    })
                    .map(|s| (id, s)),
            );
        }
        if found.is_empty() {
            return Vec::new();
        }
        let inodes: HashSet<u32> = found.iter().map(|(_, s)| s.inode).collect();
        let owners = socket_owners(&inodes, cgroup_root);
        let mut events = Vec::new();
        for (netns, s) in found {
            let key = ADOPTED_KEY | (s.cookie & (ADOPTED_KEY - 1));
            if self.adopted.contains_key(&key) {
                continue;
            }
            let info = s.info.unwrap_or_default();
            let flow = Flow {
                tuple: tuple_of(&s),
                owner: owners.get(&s.inode).copied().unwrap_or_default(),
                ts_syn_ns: now_ns,
                ts_established_ns: now_ns,
                states_seen: 1 << TCP_ESTABLISHED,
                ..Flow::default()
            };
            self.adopted.insert(
                key,
                Adopted {
                    key,
                    netns,
                    flow,
                    base: (info.bytes_acked, info.bytes_received),
                    kernel_key: None,
                },
            );
            events.push(KernelEvent::FlowAdopt(FlowRecord {
                ts_ns: now_ns,
                key,
                flow,
            }));
        }
        events
    }
}

/// Raises a flow's counters to the socket's (minus `base`), and its last-send/receive times.
fn apply(flow: &mut Flow, info: &TcpCounters, base: (u64, u64), now_ns: u64) {
    let sent = info.bytes_acked.saturating_sub(base.0);
    let received = info.bytes_received.saturating_sub(base.1);
    flow.bytes_sent = flow.bytes_sent.max(sent);
    flow.bytes_received = flow.bytes_received.max(received);
    let at = |ms: u32| now_ns.saturating_sub(u64::from(ms) * 1_000_000);
    if sent > 0 {
        flow.ts_last_send_ns = flow.ts_last_send_ns.max(at(info.last_data_sent_ms));
    }
    if received > 0 {
        flow.ts_last_recv_ns = flow.ts_last_recv_ns.max(at(info.last_data_recv_ms));
    }
}

fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The process (and its cgroup) that holds each socket inode, from /proc/*/fd.
fn socket_owners(inodes: &HashSet<u32>, cgroup_root: &Path) -> HashMap<u32, Owner> {
    let mut out = HashMap::new();
    for pid in pids() {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.filter_map(Result::ok) {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u32>().ok())
            else {
                continue;
            };
            if inodes.contains(&inode) && !out.contains_key(&inode) {
                out.insert(inode, owner_of(pid, cgroup_root));
            }
        }
        if out.len() == inodes.len() {
            break;
        }
    }
    out
}

fn owner_of(pid: u32, cgroup_root: &Path) -> Owner {
    let mut owner = Owner {
        pid,
        tid: pid,
        ..Owner::default()
    };
    if let Ok(comm) = std::fs::read(format!("/proc/{pid}/comm")) {
        let comm = comm.strip_suffix(b"\n").unwrap_or(&comm);
        let n = comm.len().min(COMM_LEN - 1);
        owner.comm[..n].copy_from_slice(&comm[..n]);
    }
    // The cgroup v2 id is the inode of the cgroup's directory.
    if let Ok(cgroups) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) {
        if let Some(path) = cgroups.lines().find_map(|l| l.strip_prefix("0::")) {
            let dir = cgroup_root.join(path.trim_start_matches('/'));
            if let Ok(m) = std::fs::metadata(dir) {
                owner.cgroup_id = m.ino();
            }
        }
    }
    owner
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply as the kernel writes it: one established IPv4 socket 198.18.0.1:40000 ->
    /// 198.18.1.10:443 with a 232-byte tcp_info (6.1's size), then NLMSG_DONE.
    fn recorded_reply() -> Vec<u8> {
        let mut msg = vec![0u8; INET_DIAG_MSG];
        msg[0] = 2; // AF_INET
        msg[1] = 1; // ESTABLISHED
        msg[4..6].copy_from_slice(&40000u16.to_be_bytes());
        msg[6..8].copy_from_slice(&443u16.to_be_bytes());
        msg[8..12].copy_from_slice(&[198, 18, 0, 1]);
        msg[24..28].copy_from_slice(&[198, 18, 1, 10]);
        msg[44..48].copy_from_slice(&0x1234u32.to_ne_bytes());
        msg[48..52].copy_from_slice(&0x5u32.to_ne_bytes());
        msg[64..68].copy_from_slice(&1000u32.to_ne_bytes());
        msg[68..72].copy_from_slice(&777u32.to_ne_bytes());
        // An unrelated attribute first (INET_DIAG_SHUTDOWN, 1 byte, padded), then the info.
        msg.extend_from_slice(&5u16.to_ne_bytes());
        msg.extend_from_slice(&8u16.to_ne_bytes());
        msg.extend_from_slice(&[0, 0, 0, 0]);
        let mut info = vec![0u8; 232];
        info[TCPI_LAST_DATA_SENT..TCPI_LAST_DATA_SENT + 4].copy_from_slice(&250u32.to_ne_bytes());
        info[TCPI_LAST_DATA_RECV..TCPI_LAST_DATA_RECV + 4].copy_from_slice(&40u32.to_ne_bytes());
        info[TCPI_BYTES_ACKED..TCPI_BYTES_ACKED + 8].copy_from_slice(&1_000_731u64.to_ne_bytes());
        info[TCPI_BYTES_RECEIVED..TCPI_BYTES_RECEIVED + 8].copy_from_slice(&3_900u64.to_ne_bytes());
        msg.extend_from_slice(&(4 + 232u16).to_ne_bytes());
        msg.extend_from_slice(&INET_DIAG_INFO.to_ne_bytes());
        msg.extend_from_slice(&info);
        let mut out = Vec::new();
        let len = u32::try_from(NLMSG_HDR + msg.len()).unwrap();
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        out.extend_from_slice(&2u16.to_ne_bytes()); // NLM_F_MULTI
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&msg);
        out.extend_from_slice(&20u32.to_ne_bytes());
        out.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        out.extend_from_slice(&2u16.to_ne_bytes());
        out.extend_from_slice(&[0; 12]);
        out
    }

    #[test]
    fn a_dump_reply_gives_the_socket_and_its_counters() {
        let (sockets, done) = parse_reply(&recorded_reply()).expect("parses");
        assert!(done);
        assert_eq!(sockets.len(), 1);
        let s = &sockets[0];
        assert_eq!(s.src, "198.18.0.1:40000".parse().unwrap());
        assert_eq!(s.dst, "198.18.1.10:443".parse().unwrap());
        assert_eq!((s.state, s.uid, s.inode), (1, 1000, 777));
        assert_eq!(s.cookie, 0x5_0000_1234);
        let info = s.info.expect("tcp_info");
        assert_eq!(info.bytes_acked, 1_000_731);
        assert_eq!(info.bytes_received, 3_900);
        assert_eq!((info.last_data_sent_ms, info.last_data_recv_ms), (250, 40));
        let t = tuple_of(s);
        assert_eq!((t.family, t.sport, t.dport), (AF_INET, 40000, 443));
        assert_eq!(&t.daddr[..4], &[198, 18, 1, 10]);
    }

    #[test]
    fn cut_and_lying_replies_are_errors_or_partial_never_panics() {
        let reply = recorded_reply();
        for cut in 0..reply.len() {
            let _ = parse_reply(&reply[..cut]);
        }
        let mut lying = reply.clone();
        lying[0..4].copy_from_slice(&9999u32.to_ne_bytes());
        assert!(matches!(
            parse_reply(&lying),
            Err(SockDiagError::Malformed(_))
        ));
        // A tcp_info too short for the byte counters (a very old kernel): no counters.
        let mut short = reply.clone();
        let info_at = NLMSG_HDR + INET_DIAG_MSG + 8;
        short[info_at..info_at + 2].copy_from_slice(&(4 + 100u16).to_ne_bytes());
        let (s, _) = parse_reply(&short[..]).expect("parses");
        assert_eq!(s[0].info, None);
    }

    #[test]
    fn an_error_reply_is_the_kernels_errno() {
        let mut b = Vec::new();
        b.extend_from_slice(&36u32.to_ne_bytes());
        b.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        b.extend_from_slice(&[0; 10]);
        b.extend_from_slice(&(-libc::ENOENT).to_ne_bytes());
        b.extend_from_slice(&[0; 16]);
        assert!(matches!(parse_reply(&b), Err(SockDiagError::Refused(e)) if e == libc::ENOENT));
    }

    #[test]
    fn the_request_is_a_dump_of_tcp_with_tcp_info() {
        let r = dump_request(AF_INET6, 7);
        assert_eq!(r.len(), 72);
        assert_eq!(u32_at(&r, 0), Some(72));
        assert_eq!(u16_at(&r, 4), Some(SOCK_DIAG_BY_FAMILY));
        assert_eq!(u16_at(&r, 6), Some(NLM_F_REQUEST | NLM_F_DUMP));
        assert_eq!(u32_at(&r, 8), Some(7));
        assert_eq!(&r[16..20], &[10, 6, 2, 0]);
        assert_eq!(u32_at(&r, 20), Some(!(1 << TCP_LISTEN)));
    }

    #[test]
    fn counters_only_rise_and_count_from_the_adoption() {
        let mut f = Flow::default();
        let info = TcpCounters {
            bytes_acked: 5000,
            bytes_received: 9000,
            last_data_sent_ms: 100,
            last_data_recv_ms: 0,
        };
        apply(&mut f, &info, (1000, 0), 2_000_000_000);
        assert_eq!((f.bytes_sent, f.bytes_received), (4000, 9000));
        assert_eq!(f.ts_last_send_ns, 1_900_000_000);
        assert_eq!(f.ts_last_recv_ns, 2_000_000_000);
        apply(&mut f, &TcpCounters::default(), (0, 0), 3_000_000_000);
        assert_eq!((f.bytes_sent, f.bytes_received), (4000, 9000));
    }

    #[test]
    fn the_kernels_close_of_a_flow_adopted_at_start_becomes_that_flows_close() {
        let mut tuple = Tuple {
            family: AF_INET,
            sport: 40000,
            dport: 443,
            ..Tuple::default()
        };
        tuple.daddr[..4].copy_from_slice(&[198, 18, 1, 10]);
        let key = ADOPTED_KEY | 0x77;
        let flow = Flow {
            tuple,
            ts_syn_ns: 5,
            ts_established_ns: 5,
            states_seen: 1 << TCP_ESTABLISHED,
            bytes_received: 100,
            ..Flow::default()
        };
        let mut p = Poller::new();
        p.adopted.insert(
            key,
            Adopted {
                key,
                netns: (0, 0),
                flow,
                base: (1000, 5000),
                kernel_key: None,
            },
        );
        let kernel_key = 0xffff_8880_1234_5678;
        let mut k = Flow {
            tuple,
            ts_syn_ns: 90,
            ..Flow::default()
        };
        let rec = |flow: Flow| FlowRecord {
            ts_ns: 99,
            key: kernel_key,
            flow,
        };
        assert_eq!(
            p.rewrite(KernelEvent::FlowAdopt(rec(k))),
            None,
            "already open"
        );
        // Once the kernel owns its end, polling no longer closes it.
        assert!(p.adopted[&key].kernel_key.is_some());
        k.bytes_sent = 3000;
        k.bytes_received = 9000;
        k.states_seen = 1 << TCP_FIN_WAIT1 | 1 << TCP_CLOSE;
        let Some(KernelEvent::FlowClose(r)) = p.rewrite(KernelEvent::FlowClose(rec(k))) else {
            panic!("a close");
        };
        assert_eq!((r.key, r.ts_ns, r.flow.ts_syn_ns), (key, 99, 5));
        assert_eq!((r.flow.bytes_sent, r.flow.bytes_received), (2000, 4000));
        assert_eq!(
            r.flow.states_seen,
            1 << TCP_ESTABLISHED | 1 << TCP_FIN_WAIT1 | 1 << TCP_CLOSE
        );
        assert!(p.adopted.is_empty());
        // Anyone else's events pass untouched.
        let other = KernelEvent::FlowAdopt(rec(Flow::default()));
        assert_eq!(p.rewrite(other.clone()), Some(other));
    }

    /// The real kernel, no root needed: a loopback connection in the test's own namespace.
    #[test]
    fn the_kernel_reports_a_local_connections_bytes() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(&[7u8; 30_000]).unwrap();
        let mut buf = vec![0u8; 30_000];
        server.read_exact(&mut buf).unwrap();
        server.write_all(&[1u8; 1234]).unwrap();
        let mut back = vec![0u8; 1234];
        client.read_exact(&mut back).unwrap();
        let mut diag = DiagSocketFd::open().expect("sock_diag socket");
        let sockets = diag.dump(AF_INET).expect("dump");
        let mine = sockets
            .iter()
            .find(|s| s.src == client.local_addr().unwrap())
            .unwrap_or_else(|| panic!("our socket in {sockets:#?}"));
        assert_eq!(u32::from(mine.state), TCP_ESTABLISHED);
        let info = mine.info.expect("tcp_info");
        assert_eq!(info.bytes_received, 1234);
        assert!(
            (30_000..=30_001).contains(&info.bytes_acked),
            "{}",
            info.bytes_acked
        );
        assert_ne!(mine.inode, 0);
    }
}
