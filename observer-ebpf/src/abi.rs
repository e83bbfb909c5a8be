//! Event records written to the `EVENTS` ring buffer and values kept in the kernel maps.
//!
//! Every record starts with a `u32` kind (one of the `KIND_*` constants) so user space can tell
//! them apart before it reads the rest. All structs have explicit padding and fixed sizes, checked
//! below, so that the kernel and user space agree byte for byte.

/// Ring buffer carrying every event to user space.
pub const EVENTS_MAP: &str = "EVENTS";
/// Live TCP flows on watched ports, keyed by the kernel socket address; user space reads the byte
/// counters from it every second.
pub const FLOWS_MAP: &str = "FLOWS";
/// Owner (process, cgroup) of UDP sockets that talk to port 53, keyed by socket cookie.
pub const SOCK_OWNERS_MAP: &str = "SOCK_OWNERS";
/// Per-CPU counters of what the kernel side could not deliver (see `COUNTER_*`).
pub const COUNTERS_MAP: &str = "COUNTERS";
/// Destination ports whose TCP flows are tracked (key: port in host byte order; value:
/// `WATCH_*` bits).
pub const WATCH_PORTS_MAP: &str = "WATCH_PORTS";
/// Sockets whose first payload was already copied (key: socket cookie; value: `PAYLOAD_FLAG_*`
/// direction bits), so that each flow's first bytes are copied once per direction.
pub const PAYLOAD_SEEN_MAP: &str = "PAYLOAD_SEEN";

/// `WATCH_PORTS` value bit: TCP flows to this port are tracked, and the first payload the
/// client sends on each is copied (`KIND_FLOW_PAYLOAD`).
pub const WATCH_FLOW: u8 = 1;
/// `WATCH_PORTS` value bit: the first payload the server sends back is copied too (HTTP
/// proxies: their answer to CONNECT).
pub const WATCH_REPLY: u8 = 2;
/// Processes of the jobs `observer daemon` follows (key: thread group id; value: the job's slot,
/// never 0). User space puts a job's `Runner.Worker` and its descendants there when the job
/// starts; `task_newtask` adds each new child process (not thread) of a listed process,
/// `sched_process_exit` removes a task when it ends (so a recycled pid is not the job's), and
/// every `Owner` the programs record carries its process's slot (`Owner::job`).
pub const JOB_PIDS_MAP: &str = "JOB_PIDS";
/// Capacity of `JOB_PIDS`; a child that does not fit is counted in `COUNTER_JOB_PIDS_FULL`.
pub const JOB_PIDS_MAX: u32 = 65_536;
/// Runtime configuration written by user space before attaching (see `CONFIG_*`).
pub const CONFIG_MAP: &str = "CONFIG";

/// `CONFIG[CONFIG_FLAGS]` bit: track TCP flows to every destination port.
pub const CONFIG_FLAG_ALL_PORTS: u32 = 1;
/// Index of the flags word in `CONFIG`.
pub const CONFIG_FLAGS: u32 = 0;
/// Index in `CONFIG` of the byte offset of `sk_err` in the kernel's `struct sock` (from BTF;
/// 0 when unknown). The TCP programs read a closing socket's error there.
pub const CONFIG_SK_ERR_OFFSET: u32 = 1;
/// Index in `CONFIG` of the byte offset of `skc_v6_daddr` in `struct sock` (from BTF; 0 when
/// unknown: IPv6 flows are then not adopted). `skc_v6_rcv_saddr` follows it.
pub const CONFIG_SK_V6_DADDR_OFFSET: u32 = 2;
/// Index in `CONFIG` of the adoption switch: when 1, a TCP socket on a watched destination port
/// that moves payload while established but is not in `FLOWS` (it connected before the capture,
/// or was evicted) is adopted: added to `FLOWS` and announced with `KIND_FLOW_ADOPT`. User space
/// sets it only after checking the `struct sock_common` layout the programs read (see
/// `SKC_*_OFFSET`).
pub const CONFIG_ADOPT: u32 = 3;
/// Index in `CONFIG` of the byte offset of `bytes_acked` (u64) in the kernel's `struct tcp_sock`
/// (from BTF; 0: not read). User space sets it, with `CONFIG_TCP_BYTES_RECEIVED_OFFSET`, only on
/// kernels without the `sock_send_length`/`sock_recv_length` tracepoints: a flow's close then
/// carries the socket's own byte counters (bytes acked by the peer, bytes received).
pub const CONFIG_TCP_BYTES_ACKED_OFFSET: u32 = 4;
/// Index in `CONFIG` of the byte offset of `bytes_received` (u64) in `struct tcp_sock`.
pub const CONFIG_TCP_BYTES_RECEIVED_OFFSET: u32 = 5;
/// Index in `CONFIG` of the adopt-at-the-end switch: when 1 (kernels without the length
/// tracepoints, where user space lists the connections open before the capture through
/// sock_diag), a TCP socket to a watched port that leaves ESTABLISHED while not in `FLOWS` is
/// added to `FLOWS` and announced with `KIND_FLOW_ADOPT`, so that its close, and the byte
/// counters read then, reach user space like any other flow's.
pub const CONFIG_ADOPT_AT_END: u32 = 6;
/// Indexes in `CONFIG` of the random 64-bit key of the DNS repeat hashes (low and high words),
/// written by user space at start. The mix is not a PRF: some input differences cancel whatever
/// the key (docs/events.md, why `--count-dns-repeats` is experimental).
pub const CONFIG_DNS_KEY_LO: u32 = 7;
pub const CONFIG_DNS_KEY_HI: u32 = 8;
/// Index in `CONFIG` of the DNS repeat switch: when 1 (`--count-dns-repeats`, experimental),
/// repeated DNS exchanges are counted in the kernel instead of copied (see `DNS_PENDING_MAP`).
pub const CONFIG_DNS_REPEATS: u32 = 9;
/// Number of entries in `CONFIG`.
pub const CONFIG_ENTRIES: u32 = 10;

/// Offsets in `struct sock_common` (at the start of `struct sock`), unchanged since Linux 2.6 and
/// checked against BTF before adoption is switched on.
pub const SKC_DADDR_OFFSET: usize = 0;
pub const SKC_RCV_SADDR_OFFSET: usize = 4;
pub const SKC_DPORT_OFFSET: usize = 12;
pub const SKC_NUM_OFFSET: usize = 14;
pub const SKC_FAMILY_OFFSET: usize = 16;
pub const SKC_STATE_OFFSET: usize = 18;

/// Events lost because the ring buffer was full.
pub const COUNTER_RINGBUF_FULL: u32 = 0;
/// DNS packets seen on port 53 that could not be copied (odd headers, IPv6 extension headers
/// beyond the four followed, non-first fragments).
pub const COUNTER_DNS_SKIPPED: u32 = 1;
/// Children of a job's process that `JOB_PIDS` had no room for (their flows are not the job's).
pub const COUNTER_JOB_PIDS_FULL: u32 = 2;
/// DNS exchanges (a query and its answer) counted instead of copied: exact repeats of an
/// exchange user space already judged (see `DNS_PENDING_MAP`).
pub const COUNTER_DNS_REPEATS: u32 = 3;
/// Number of entries in `COUNTERS`.
pub const COUNTER_ENTRIES: u32 = 4;

/// Capacity of `FLOWS` (an LRU map: the oldest idle flows are evicted first).
pub const FLOWS_MAX: u32 = 131_072;
/// Capacity of `SOCK_OWNERS` (LRU).
pub const SOCK_OWNERS_MAX: u32 = 16_384;
/// Capacity of `PAYLOAD_SEEN` (LRU: a socket evicted before its first payload is copied twice
/// at worst; user space keeps the first copy).
pub const PAYLOAD_SEEN_MAX: u32 = 65_536;
/// Capacity of `WATCH_PORTS`.
pub const WATCH_PORTS_MAX: u32 = 64;
/// Size of the `EVENTS` ring buffer in bytes (a power-of-two multiple of the page size).
pub const EVENTS_BYTES: u32 = 4 * 1024 * 1024;

/// The kernel wakes user space each time the bytes waiting in `EVENTS` cross a multiple of this
/// (once per 32 KiB, not once per record); user space also drains the ring buffer on its own
/// every 100 ms. At high event rates this saves a wake-up (an inter-processor interrupt, and
/// several system calls) per event; at low rates it delays events by at most 100 ms.
pub const EVENTS_WAKEUP_BYTES: u64 = 32 * 1024;

/// The bytes a record of `len` takes in a BPF ring buffer: an 8-byte header, rounded up to 8.
#[inline(always)]
pub const fn ring_record_bytes(len: u64) -> u64 {
    (len + 8 + 7) & !7
}

/// Whether the kernel program wakes user space when it submits a record of `len` bytes with
/// `queued` bytes waiting in `EVENTS` once the record is in: only when that record made the
/// waiting bytes cross a multiple of `EVENTS_WAKEUP_BYTES`. A wake-up is an inter-processor
/// interrupt (a VM exit on a virtual machine); waking at every record of a consumer that had
/// fallen behind cost one per packet in a flood.
#[inline(always)]
pub const fn ring_wakes(queued: u64, len: u64) -> bool {
    queued >= EVENTS_WAKEUP_BYTES && queued & (EVENTS_WAKEUP_BYTES - 1) < ring_record_bytes(len)
}

/// The longest DNS payload copied from one packet; longer ones are cut and flagged.
pub const DNS_PAYLOAD_MAX: usize = 512;

/// Held UDP DNS queries, waiting for their answer (key: `DnsPendingKey`, value: `DnsPending`),
/// so that a repeated exchange costs a counter instead of two copies:
///
/// - A query whose bytes (all but its id) equal a query the same process (pid and cgroup) sent
///   to the same server within `DNS_REPEAT_WINDOW_NS` and that was copied (`DNS_RECENT_QUERIES`)
///   is *held*: kept here, not copied.
/// - Its answer is counted (`COUNTER_DNS_REPEATS`), and neither is copied, only when it is the
///   first answer on that socket with that id, from the server asked, NOERROR with answers, and
///   equal (all but its id, for the same process and server) to an answer user space judged
///   within the window to be the first answer to its query, with that query's question, read
///   in full (user space writes those in `DNS_RECENT_ANSWERS`). Same query, same answer, same
///   place in the exchange: user space would match and read it exactly as it did the first.
/// - Any other answer releases the held query first (copied, `DNS_FLAG_HELD`), then is copied.
/// - User space takes the held queries no answer came for (`DNS_PENDING_SWEEP_NS`), and all of
///   them at the end, and reads them as copied: timeouts stay exact.
///
/// A plain hash map, not an LRU: a held query is never evicted (when the map is full, queries
/// are copied as always).
pub const DNS_PENDING_MAP: &str = "DNS_PENDING";
pub const DNS_PENDING_MAX: u32 = 8192;
/// Recent copied queries: a direct-mapped cache of `DnsRecent` (slot: hash modulo the size; the
/// hash covers the query's bytes but its id, its process and its server). An array: no lock, no
/// eviction list on the path of every query; a collision only means a repeat is copied.
pub const DNS_RECENT_QUERIES_MAP: &str = "DNS_RECENT_QUERIES";
/// Answers user space judged repeatable (see `DNS_PENDING_MAP`): a direct-mapped cache of
/// `DnsRecent` keyed by `DnsEvent::exchange`, written by user space.
pub const DNS_RECENT_ANSWERS_MAP: &str = "DNS_RECENT_ANSWERS";
/// Slots of each recent cache (a power of two).
pub const DNS_RECENT_SLOTS: u32 = 8192;
/// Per-CPU room where a DNS record is built before it is copied or held.
pub const DNS_SCRATCH_MAP: &str = "DNS_SCRATCH";
/// How long a query or answer counts as recent.
pub const DNS_REPEAT_WINDOW_NS: u64 = 1_000_000_000;
/// Held queries older than this are taken by user space (read as copied).
pub const DNS_PENDING_SWEEP_NS: u64 = 2_000_000_000;
/// Only messages up to this long are compared (longer ones are always copied).
pub const DNS_REPEAT_MAX_LEN: usize = 256;
/// The longest prefix copied of a flow's first payload: a CONNECT request, an HTTP request head
/// or a TLS ClientHello up to its server_name in practice (a post-quantum key share can push a
/// hello beyond it; user space says when the name was not in the part copied). A power of two:
/// the kernel masks the length with `PAYLOAD_PREFIX_MAX - 1`.
pub const PAYLOAD_PREFIX_MAX: usize = 1024;
/// Length of a task's command name in the kernel, NUL included.
pub const COMM_LEN: usize = 16;

pub const KIND_FLOW_OPEN: u32 = 1;
pub const KIND_FLOW_ESTABLISHED: u32 = 2;
pub const KIND_FLOW_CLOSE: u32 = 3;
pub const KIND_SOCK_ERROR: u32 = 4;
/// A flow already established when first seen (it connected before the capture): a `FlowEvent`
/// whose `ts_syn_ns` and `ts_established_ns` are the adoption time.
pub const KIND_FLOW_ADOPT: u32 = 6;
pub const KIND_DNS: u32 = 5;
/// `PayloadEvent`: the first payload of a watched TCP flow in one direction.
pub const KIND_FLOW_PAYLOAD: u32 = 7;

/// `AF_INET` and `AF_INET6` as the kernel reports them.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// TCP states (include/net/tcp_states.h).
pub const TCP_ESTABLISHED: u32 = 1;
pub const TCP_SYN_SENT: u32 = 2;
pub const TCP_SYN_RECV: u32 = 3;
pub const TCP_FIN_WAIT1: u32 = 4;
pub const TCP_FIN_WAIT2: u32 = 5;
pub const TCP_TIME_WAIT: u32 = 6;
pub const TCP_CLOSE: u32 = 7;
pub const TCP_CLOSE_WAIT: u32 = 8;
pub const TCP_LAST_ACK: u32 = 9;
pub const TCP_LISTEN: u32 = 10;
pub const TCP_CLOSING: u32 = 11;

/// `DnsEvent::flags`: the packet was received by a local socket (a response).
pub const DNS_FLAG_INGRESS: u32 = 1;
/// `DnsEvent::flags`: the packet was sent by a local socket (a query).
pub const DNS_FLAG_EGRESS: u32 = 2;
/// `DnsEvent::flags`: the payload was longer than `DNS_PAYLOAD_MAX` and was cut.
pub const DNS_FLAG_TRUNCATED: u32 = 4;
/// `DnsEvent::flags`: `owner` is filled (the socket's process is known).
pub const DNS_FLAG_OWNER_KNOWN: u32 = 8;
/// `DnsEvent::flags`: a UDP response short enough to be compared (`DNS_REPEAT_MAX_LEN`);
/// `DnsEvent::exchange` is its keyed hash (all but its id, with its process and server), the
/// key under which user space may call it repeatable (see `DNS_PENDING_MAP`).
pub const DNS_FLAG_EXCHANGE: u32 = 32;
/// `DnsEvent::flags`: a query held in the kernel (a repeat), released when its answer was not a
/// repeat or when user space took it.
pub const DNS_FLAG_HELD: u32 = 64;
/// `DnsEvent::flags`: a TCP segment's payload (DNS over TCP: length-prefixed messages, possibly
/// split across segments); `tcp_seq` is the segment's sequence number.
pub const DNS_FLAG_TCP: u32 = 16;

/// `PayloadEvent::flags`: the segment was sent by the local socket (the client's first bytes).
pub const PAYLOAD_FLAG_EGRESS: u32 = 1;
/// `PayloadEvent::flags`: the segment was received by the local socket (the server's first
/// bytes).
pub const PAYLOAD_FLAG_INGRESS: u32 = 2;
/// `PayloadEvent::flags`: the segment's payload was longer than `PAYLOAD_PREFIX_MAX` and was cut.
pub const PAYLOAD_FLAG_TRUNCATED: u32 = 4;

/// Source and destination of a flow or packet. Addresses are in network byte order; an IPv4
/// address fills the first four bytes. Ports are in host byte order.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Tuple {
    pub family: u16,
    pub sport: u16,
    pub dport: u16,
    pub _pad: u16,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}

/// The process behind a socket, as seen when it connected or sent.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    /// Thread group id (the process id users know).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
    /// The job slot of the process (`JOB_PIDS`), 0 when it belongs to no followed job.
    pub job: u32,
    pub _pad: u32,
}

/// One tracked TCP flow; the value of `FLOWS` and the body of flow events.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    pub tuple: Tuple,
    pub owner: Owner,
    /// `bpf_ktime_get_ns` when the SYN was about to be sent.
    pub ts_syn_ns: u64,
    /// When the handshake completed; 0 if it never did.
    pub ts_established_ns: u64,
    /// When a RST was received; 0 if none was.
    pub ts_rst_ns: u64,
    /// Last time the process sent payload (0: never).
    pub ts_last_send_ns: u64,
    /// Last time the process received payload (0: never).
    pub ts_last_recv_ns: u64,
    /// Payload bytes the process handed to the socket.
    pub bytes_sent: u64,
    /// Payload bytes the process read from the socket.
    pub bytes_received: u64,
    /// Retransmitted SYNs (no answer to the first one).
    pub syn_retransmits: u32,
    /// Other retransmitted segments.
    pub retransmits: u32,
    /// Bit `1 << state` set for every TCP state the flow entered.
    pub states_seen: u32,
    /// The socket's error (positive errno; 0 when none or unknown): what the process read with
    /// `getsockopt(SO_ERROR)` (how non-blocking clients learn that a connect failed), else the
    /// socket's `sk_err` at its close.
    pub sk_err: i32,
}

/// `KIND_FLOW_OPEN`, `KIND_FLOW_ESTABLISHED`, `KIND_FLOW_CLOSE` and `KIND_FLOW_ADOPT`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowEvent {
    pub kind: u32,
    pub _pad: u32,
    pub ts_ns: u64,
    /// Opaque flow key (the kernel socket address); only compared, never shown.
    pub key: u64,
    pub flow: Flow,
}

/// `KIND_SOCK_ERROR`: the kernel reported an error on a TCP socket to a watched port
/// (`sock:inet_sk_error_report`), such as ECONNREFUSED, EHOSTUNREACH or ETIMEDOUT.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SockErrorEvent {
    pub kind: u32,
    /// Positive errno.
    pub error: i32,
    pub ts_ns: u64,
    pub tuple: Tuple,
}

/// `KIND_DNS`: one DNS packet over UDP, or one TCP segment with payload to or from port 53,
/// sent (query) or received (response) by a local socket.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DnsEvent {
    pub kind: u32,
    /// `DNS_FLAG_*` bits.
    pub flags: u32,
    pub ts_ns: u64,
    /// Socket cookie of the local socket.
    pub cookie: u64,
    /// cgroup v2 id of the local socket.
    pub cgroup_id: u64,
    /// Addresses and ports as in the packet (a response comes from port 53).
    pub tuple: Tuple,
    pub owner: Owner,
    /// UDP (or TCP segment) payload length on the wire.
    pub payload_len: u32,
    /// Bytes copied into `payload` (at most `DNS_PAYLOAD_MAX`).
    pub captured_len: u32,
    /// With `DNS_FLAG_TCP`: the segment's sequence number (host byte order); 0 otherwise.
    pub tcp_seq: u32,
    pub _pad: u32,
    /// With `DNS_FLAG_EXCHANGE`: a keyed hash of the response (all but its id), its process and
    /// its server; 0 otherwise.
    pub exchange: u64,
    pub payload: [u8; DNS_PAYLOAD_MAX],
}

/// Key of `DNS_PENDING`: the local socket and the query's id.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsPendingKey {
    pub cookie: u64,
    pub id: u32,
    pub _pad: u32,
}

/// Value of `DNS_PENDING`: the query as it would have been copied.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DnsPending {
    pub event: DnsEvent,
    /// 1 while held (not copied).
    pub held: u32,
    pub _pad: u32,
}

/// A slot of `DNS_RECENT_QUERIES` or `DNS_RECENT_ANSWERS`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsRecent {
    pub hash: u64,
    /// `bpf_ktime_get_ns` of the query copied, or `ts_ns` of the answer judged.
    pub ts_ns: u64,
}

/// `KIND_FLOW_PAYLOAD`: the first TCP segment with payload that a local socket sent to a
/// watched port (or, for `WATCH_REPLY` ports, received from it). Only a prefix is copied; user
/// space parses it (TLS server name, HTTP CONNECT target, proxy status line).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PayloadEvent {
    pub kind: u32,
    /// `PAYLOAD_FLAG_*` bits.
    pub flags: u32,
    pub ts_ns: u64,
    /// Socket cookie of the local socket.
    pub cookie: u64,
    /// Addresses and ports as in the packet (a received segment comes from the server).
    pub tuple: Tuple,
    /// TCP payload length of the segment.
    pub payload_len: u32,
    /// Bytes copied into `payload` (at most `PAYLOAD_PREFIX_MAX`).
    pub captured_len: u32,
    pub payload: [u8; PAYLOAD_PREFIX_MAX],
}

const _: () = assert!(size_of::<Tuple>() == 40);
const _: () = assert!(size_of::<PayloadEvent>() == 1096);
const _: () = assert!(size_of::<Owner>() == 40);
const _: () = assert!(size_of::<Flow>() == 152);
const _: () = assert!(size_of::<FlowEvent>() == 176);
const _: () = assert!(size_of::<SockErrorEvent>() == 56);
const _: () = assert!(size_of::<DnsEvent>() == 648);
const _: () = assert!(size_of::<DnsPending>() == 656);
const _: () = assert!(DNS_RECENT_SLOTS.is_power_of_two());
const _: () = assert!(size_of::<DnsPendingKey>() == 16);
// The kernel reads DNS payloads as aligned 64-bit words.
const _: () = assert!(core::mem::offset_of!(DnsEvent, payload) % 8 == 0);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` data with explicit padding; every bit pattern is valid.
    unsafe impl aya::Pod for super::Flow {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Owner {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DnsPendingKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DnsPending {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DnsRecent {}
}
