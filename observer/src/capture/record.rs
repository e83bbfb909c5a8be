//! Decoding of raw ring-buffer records into typed kernel events.
//!
//! The kernel writes the `#[repr(C)]` records of `observer_ebpf::abi`; this module checks their
//! kind and size and copies them out. It never trusts a record: a short or unknown one is an
//! error the caller counts, not a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use observer_ebpf::{
    DnsEvent, Flow, FlowEvent, Owner, PayloadEvent, SockErrorEvent, Tuple, AF_INET, AF_INET6,
    COMM_LEN, DNS_FLAG_EXCHANGE, DNS_FLAG_INGRESS, DNS_FLAG_OWNER_KNOWN, DNS_FLAG_TCP,
    DNS_FLAG_TRUNCATED, DNS_PAYLOAD_MAX, KIND_DNS, KIND_FLOW_ADOPT, KIND_FLOW_CLOSE,
    KIND_FLOW_ESTABLISHED, KIND_FLOW_OPEN, KIND_FLOW_PAYLOAD, KIND_SOCK_ERROR,
    PAYLOAD_FLAG_INGRESS, PAYLOAD_FLAG_TRUNCATED, PAYLOAD_PREFIX_MAX,
};
use serde::{Deserialize, Serialize};

/// A record from the kernel, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelEvent {
    FlowOpen(FlowRecord),
    FlowEstablished(FlowRecord),
    FlowClose(FlowRecord),
    /// A flow first seen established, moving payload: it connected before the capture.
    FlowAdopt(FlowRecord),
    SockError(SockError),
    Dns(DnsPacket),
    /// The first payload of a watched flow in one direction.
    Payload(PayloadPacket),
}

/// The first TCP segment with payload of a watched flow, in one direction, as the kernel copied
/// it (a prefix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadPacket {
    pub ts_ns: u64,
    /// True for the server's first bytes (received), false for the client's (sent).
    pub received: bool,
    /// Socket cookie of the local socket.
    pub cookie: u64,
    /// Addresses as in the packet: for received bytes `src` is the server.
    pub endpoints: Endpoints,
    /// The segment's payload length.
    pub payload_len: u32,
    /// The copied prefix (at most `PAYLOAD_PREFIX_MAX` bytes).
    pub payload: Vec<u8>,
    /// The segment was longer than the prefix copied.
    pub cut: bool,
}

/// A flow event: the flow's state in the kernel at `ts_ns`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    pub ts_ns: u64,
    /// Opaque kernel key of the flow.
    pub key: u64,
    pub flow: Flow,
}

/// An error reported on a TCP socket to a watched port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SockError {
    pub ts_ns: u64,
    /// Positive errno.
    pub error: i32,
    pub endpoints: Endpoints,
}

/// One DNS packet as the kernel copied it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsPacket {
    pub ts_ns: u64,
    /// True for a response received, false for a query sent.
    pub response: bool,
    pub cookie: u64,
    pub cgroup_id: u64,
    /// Addresses as in the packet: for a response `src` is the server.
    pub endpoints: Endpoints,
    pub process: Option<Process>,
    /// UDP payload length on the wire.
    pub payload_len: u32,
    /// The copied payload (cut at `DNS_PAYLOAD_MAX`).
    pub payload: Vec<u8>,
    /// The payload was longer than what the kernel copies.
    pub cut: bool,
    /// A TCP segment (DNS over TCP) and its sequence number; `None` for UDP.
    pub tcp_seq: Option<u32>,
    /// A response the kernel saw as the first answer to a query of its socket, from the server
    /// asked, with the query's question: the key under which user space may tell the kernel
    /// that exact repeats of it need not be copied (`Capture::remember_dns_answers`).
    pub exchange: Option<u64>,
}

/// Source and destination of a flow or packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Endpoints {
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

/// The process behind a socket.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub comm: std::sync::Arc<str>,
    pub cgroup_id: u64,
    /// The job `observer daemon` followed this process for (its slot), when it was one of a
    /// job's processes; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<u32>,
}

impl From<&Owner> for Process {
    fn from(owner: &Owner) -> Self {
        Self {
            pid: owner.pid,
            comm: comm_text(&owner.comm),
            cgroup_id: owner.cgroup_id,
            job: (owner.job != 0).then_some(owner.job),
        }
    }
}

/// Task names kept for reuse, per thread: a storm's records come from a few processes, and
/// every flow and DNS message would otherwise copy its task name into a new allocation.
const COMM_SLOTS: usize = 64;

/// A kept task name: its kernel bytes and its text.
type CommSlot = Option<([u8; COMM_LEN], std::sync::Arc<str>)>;

thread_local! {
    static COMMS: std::cell::RefCell<Vec<CommSlot>> =
        std::cell::RefCell::new(vec![None; COMM_SLOTS]);
}

/// The text of a kernel task name (up to its first NUL, invalid UTF-8 replaced), shared with
/// the records before it that had the same bytes.
fn comm_text(comm: &[u8; COMM_LEN]) -> std::sync::Arc<str> {
    let text = || {
        let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
        std::sync::Arc::<str>::from(String::from_utf8_lossy(&comm[..end]))
    };
    // The slot of these bytes (a collision only replaces the slot's name).
    let slot = (crate::hash::fnv1a(comm) % COMM_SLOTS as u64) as usize;
    COMMS
        .try_with(|slots| {
            let mut slots = slots.borrow_mut();
            match &slots[slot] {
                Some((bytes, shared)) if bytes == comm => shared.clone(),
                _ => {
                    let shared = text();
                    slots[slot] = Some((*comm, shared.clone()));
                    shared
                }
            }
        })
        .unwrap_or_else(|_| text())
}

/// Turns the ABI tuple into socket addresses; IPv4-mapped IPv6 addresses (dual-stack sockets)
/// become plain IPv4 so a flow has one spelling whatever socket family made it.
pub fn endpoints(tuple: &Tuple) -> Endpoints {
    let ip = |bytes: &[u8; 16]| -> IpAddr {
        if tuple.family == AF_INET {
            IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
        } else {
            let v6 = Ipv6Addr::from(*bytes);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
    };
    Endpoints {
        src: SocketAddr::new(ip(&tuple.saddr), tuple.sport),
        dst: SocketAddr::new(ip(&tuple.daddr), tuple.dport),
    }
}

/// The ABI tuple of two socket addresses, as the kernel programs write it (ports in host order):
/// the inverse of [`endpoints`]. Addresses of two families leave both addresses zero.
pub fn tuple(src: SocketAddr, dst: SocketAddr) -> Tuple {
    let mut t = Tuple {
        family: if src.is_ipv4() { AF_INET } else { AF_INET6 },
        sport: src.port(),
        dport: dst.port(),
        ..Tuple::default()
    };
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            t.saddr[..4].copy_from_slice(&a.octets());
            t.daddr[..4].copy_from_slice(&b.octets());
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            t.saddr = a.octets();
            t.daddr = b.octets();
        }
        _ => {}
    }
    t
}

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is too short for its header")]
    Short(usize),
    #[error("record of kind {kind} has {len} bytes, expected at least {expected}")]
    Size {
        kind: u32,
        len: usize,
        expected: usize,
    },
    #[error("unknown record kind {0}")]
    Kind(u32),
    #[error("address family {0} is neither IPv4 nor IPv6")]
    Family(u16),
}

/// Reads a `T` from the start of `bytes` (which may be unaligned).
fn read<T: Copy>(kind: u32, bytes: &[u8]) -> Result<T, DecodeError> {
    let expected = size_of::<T>();
    if bytes.len() < expected {
        return Err(DecodeError::Size {
            kind,
            len: bytes.len(),
            expected,
        });
    }
    // SAFETY: the length is checked above and every ABI type is plain data for which any bit
    // pattern is valid.
    Ok(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
}

fn check_family(family: u16) -> Result<(), DecodeError> {
    if family == AF_INET || family == AF_INET6 {
        Ok(())
    } else {
        Err(DecodeError::Family(family))
    }
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<KernelEvent, DecodeError> {
    let kind = u32::from_ne_bytes(
        bytes
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(DecodeError::Short(bytes.len()))?,
    );
    match kind {
        KIND_FLOW_OPEN | KIND_FLOW_ESTABLISHED | KIND_FLOW_CLOSE | KIND_FLOW_ADOPT => {
            let ev: FlowEvent = read(kind, bytes)?;
            check_family(ev.flow.tuple.family)?;
            let record = FlowRecord {
                ts_ns: ev.ts_ns,
                key: ev.key,
                flow: ev.flow,
            };
            Ok(match kind {
                KIND_FLOW_OPEN => KernelEvent::FlowOpen(record),
                KIND_FLOW_ESTABLISHED => KernelEvent::FlowEstablished(record),
                KIND_FLOW_ADOPT => KernelEvent::FlowAdopt(record),
                _ => KernelEvent::FlowClose(record),
            })
        }
        KIND_SOCK_ERROR => {
            let ev: SockErrorEvent = read(kind, bytes)?;
            check_family(ev.tuple.family)?;
            Ok(KernelEvent::SockError(SockError {
                ts_ns: ev.ts_ns,
                // The kernel reports -errno; any value may arrive (i32::MIN has no absolute).
                error: ev.error.saturating_abs(),
                endpoints: endpoints(&ev.tuple),
            }))
        }
        KIND_DNS => {
            // The kernel copies the header and only the payload bytes captured (rounded up to 8).
            let header = std::mem::offset_of!(DnsEvent, payload);
            if bytes.len() < header {
                return Err(DecodeError::Size {
                    kind,
                    len: bytes.len(),
                    expected: header,
                });
            }
            let n = bytes.len().min(size_of::<DnsEvent>());
            let mut whole = std::mem::MaybeUninit::<DnsEvent>::zeroed();
            // SAFETY: at most `size_of::<DnsEvent>()` bytes are copied into it, and a zeroed
            // `DnsEvent` is a valid one (plain data: any bit pattern is), whatever the copy
            // covered: the record is built in place, not copied twice.
            let ev: DnsEvent = unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), whole.as_mut_ptr().cast::<u8>(), n);
                whole.assume_init()
            };
            check_family(ev.tuple.family)?;
            let captured = (ev.captured_len as usize)
                .min(DNS_PAYLOAD_MAX)
                .min(n - header);
            Ok(KernelEvent::Dns(DnsPacket {
                ts_ns: ev.ts_ns,
                response: ev.flags & DNS_FLAG_INGRESS != 0,
                cookie: ev.cookie,
                cgroup_id: ev.cgroup_id,
                endpoints: endpoints(&ev.tuple),
                process: (ev.flags & DNS_FLAG_OWNER_KNOWN != 0).then(|| Process::from(&ev.owner)),
                payload_len: ev.payload_len,
                payload: ev.payload[..captured].to_vec(),
                cut: ev.flags & DNS_FLAG_TRUNCATED != 0,
                tcp_seq: (ev.flags & DNS_FLAG_TCP != 0).then_some(ev.tcp_seq),
                exchange: (ev.flags & DNS_FLAG_EXCHANGE != 0).then_some(ev.exchange),
            }))
        }
        KIND_FLOW_PAYLOAD => {
            let ev: PayloadEvent = read(kind, bytes)?;
            check_family(ev.tuple.family)?;
            let captured = (ev.captured_len as usize).min(PAYLOAD_PREFIX_MAX);
            Ok(KernelEvent::Payload(PayloadPacket {
                ts_ns: ev.ts_ns,
                received: ev.flags & PAYLOAD_FLAG_INGRESS != 0,
                cookie: ev.cookie,
                endpoints: endpoints(&ev.tuple),
                payload_len: ev.payload_len,
                payload: ev.payload[..captured].to_vec(),
                cut: ev.flags & PAYLOAD_FLAG_TRUNCATED != 0 || (ev.payload_len as usize) > captured,
            }))
        }
        other => Err(DecodeError::Kind(other)),
    }
}

/// Encodes a record the way the kernel does (tests build kernel records with it).
#[cfg(test)]
pub fn encode<T: Copy>(record: &T) -> Vec<u8> {
    // SAFETY: `T` is one of the plain `#[repr(C)]` ABI records, readable as bytes.
    unsafe { std::slice::from_raw_parts(std::ptr::from_ref(record).cast::<u8>(), size_of::<T>()) }
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use observer_ebpf::DNS_FLAG_EGRESS;

    /// An owner whose task name is `name`.
    fn owner(name: &[u8]) -> Owner {
        let mut o = Owner::default();
        o.comm[..name.len()].copy_from_slice(name);
        o
    }

    fn tuple_v4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Tuple {
        tuple(
            SocketAddr::from((src, sport)),
            SocketAddr::from((dst, dport)),
        )
    }

    #[test]
    fn decodes_flow_events() {
        let mut flow = Flow {
            tuple: tuple_v4([198, 18, 0, 1], 40000, [198, 18, 1, 10], 443),
            bytes_sent: 10,
            ..Flow::default()
        };
        flow.owner.pid = 42;
        flow.owner.comm[..4].copy_from_slice(b"curl");
        let ev = FlowEvent {
            kind: KIND_FLOW_CLOSE,
            ts_ns: 7,
            key: 99,
            flow,
            ..FlowEvent::default()
        };
        let decoded = decode(&encode(&ev)).unwrap();
        let KernelEvent::FlowClose(record) = decoded else {
            panic!("{decoded:?}")
        };
        assert_eq!(record.key, 99);
        assert_eq!(record.flow.bytes_sent, 10);
        assert_eq!(&*Process::from(&record.flow.owner).comm, "curl");
        assert_eq!(
            endpoints(&record.flow.tuple).dst,
            "198.18.1.10:443".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn a_task_name_is_shared_by_the_records_that_carry_it_and_its_text_is_exact() {
        let a = Process::from(&owner(b"curl"));
        let b = Process::from(&owner(b"curl"));
        assert!(std::sync::Arc::ptr_eq(&a.comm, &b.comm));
        assert_eq!(&*Process::from(&owner(b"git")).comm, "git");
        assert_eq!(&*Process::from(&owner(b"curl")).comm, "curl");
        // Every slot taken by other names, then the first again: still its own text.
        for i in 0..(4 * COMM_SLOTS) {
            let name = format!("w{i}");
            assert_eq!(&*Process::from(&owner(name.as_bytes())).comm, name);
        }
        assert_eq!(&*Process::from(&owner(b"curl")).comm, "curl");
        assert_eq!(&*Process::from(&owner(b"a\xffb")).comm, "a\u{fffd}b");
        assert_eq!(
            &*Process::from(&owner(&[b'x'; COMM_LEN])).comm,
            "x".repeat(COMM_LEN)
        );
        assert_eq!(&*Process::from(&owner(b"")).comm, "");
    }

    #[test]
    fn ipv4_mapped_addresses_become_ipv4() {
        let mut t = Tuple {
            family: AF_INET6,
            sport: 1,
            dport: 443,
            ..Tuple::default()
        };
        t.daddr = "::ffff:198.18.1.10".parse::<Ipv6Addr>().unwrap().octets();
        assert_eq!(
            endpoints(&t).dst,
            "198.18.1.10:443".parse::<SocketAddr>().unwrap()
        );
        t.daddr = "fd00::10".parse::<Ipv6Addr>().unwrap().octets();
        assert_eq!(
            endpoints(&t).dst,
            "[fd00::10]:443".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn decodes_dns_packets_and_bounds_the_payload() {
        let mut ev = DnsEvent {
            kind: KIND_DNS,
            flags: DNS_FLAG_EGRESS,
            ts_ns: 1,
            cookie: 5,
            cgroup_id: 6,
            tuple: tuple_v4([198, 18, 0, 1], 5353, [198, 18, 0, 2], 53),
            owner: Owner::default(),
            payload_len: 3,
            captured_len: 3,
            tcp_seq: 0,
            _pad: 0,
            exchange: 77,
            payload: [0; DNS_PAYLOAD_MAX],
        };
        ev.payload[..3].copy_from_slice(&[1, 2, 3]);
        let KernelEvent::Dns(packet) = decode(&encode(&ev)).unwrap() else {
            panic!()
        };
        assert!(!packet.response);
        assert_eq!(packet.payload, vec![1, 2, 3]);
        assert_eq!(packet.process, None);
        // Not flagged as an exchange: the key is not read.
        assert_eq!(packet.exchange, None);
        // The kernel copies the header and the captured bytes rounded up to 8, not the whole
        // struct; a record cut inside the payload keeps what it has.
        ev.flags |= DNS_FLAG_EXCHANGE;
        let header = std::mem::offset_of!(DnsEvent, payload);
        let KernelEvent::Dns(packet) = decode(&encode(&ev)[..header + 8]).unwrap() else {
            panic!()
        };
        assert_eq!(packet.payload, vec![1, 2, 3]);
        assert_eq!(packet.exchange, Some(77));
        ev.captured_len = 20;
        let KernelEvent::Dns(packet) = decode(&encode(&ev)[..header + 8]).unwrap() else {
            panic!()
        };
        assert_eq!(packet.payload.len(), 8);
        assert!(decode(&encode(&ev)[..header - 1]).is_err());
        ev.captured_len = 3;
        // A lying length never reads past the payload.
        ev.captured_len = 100_000;
        let KernelEvent::Dns(packet) = decode(&encode(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(packet.payload.len(), DNS_PAYLOAD_MAX);
    }

    #[test]
    fn decodes_first_payloads_and_bounds_them() {
        let mut ev = PayloadEvent {
            kind: KIND_FLOW_PAYLOAD,
            flags: PAYLOAD_FLAG_INGRESS,
            ts_ns: 3,
            cookie: 8,
            tuple: tuple_v4([198, 18, 1, 10], 3128, [198, 18, 0, 1], 40000),
            payload_len: 12,
            captured_len: 12,
            payload: [0; PAYLOAD_PREFIX_MAX],
        };
        ev.payload[..12].copy_from_slice(b"HTTP/1.1 200");
        let KernelEvent::Payload(p) = decode(&encode(&ev)).unwrap() else {
            panic!()
        };
        assert!(p.received && !p.cut);
        assert_eq!(p.payload, b"HTTP/1.1 200");
        assert_eq!(p.endpoints.src.port(), 3128);
        // A lying length never reads past the prefix, and a short copy is a cut one.
        ev.captured_len = u32::MAX;
        ev.payload_len = 5000;
        let KernelEvent::Payload(p) = decode(&encode(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(p.payload.len(), PAYLOAD_PREFIX_MAX);
        assert!(p.cut);
        assert!(decode(&encode(&ev)[..100]).is_err());
    }

    #[test]
    fn bad_records_are_errors_not_panics() {
        assert_eq!(decode(&[]), Err(DecodeError::Short(0)));
        assert_eq!(decode(&[1, 0]), Err(DecodeError::Short(2)));
        assert_eq!(decode(&77u32.to_ne_bytes()), Err(DecodeError::Kind(77)));
        assert!(matches!(
            decode(&KIND_DNS.to_ne_bytes()),
            Err(DecodeError::Size { kind: KIND_DNS, .. })
        ));
        let ev = SockErrorEvent {
            kind: KIND_SOCK_ERROR,
            error: 111,
            ts_ns: 0,
            tuple: Tuple::default(),
        };
        assert_eq!(decode(&encode(&ev)), Err(DecodeError::Family(0)));
    }

    #[test]
    fn any_error_value_decodes() {
        // Found by the record fuzz target: -i32::MIN overflowed.
        for error in [i32::MIN, -111, 111, 0, i32::MAX] {
            let ev = SockErrorEvent {
                kind: KIND_SOCK_ERROR,
                error,
                ts_ns: 0,
                tuple: tuple_v4([198, 18, 0, 1], 1, [198, 18, 1, 10], 443),
            };
            let KernelEvent::SockError(e) = decode(&encode(&ev)).unwrap() else {
                panic!()
            };
            assert!(e.error >= 0, "{error}");
        }
    }

    /// The kernel's wake-up rule (`observer_ebpf::ring_wakes`): one wake-up per 32 KiB that
    /// become waiting, whatever the record sizes, and again after the consumer drained.
    #[test]
    fn the_ring_buffer_wakes_user_space_once_per_32_kib_waiting() {
        use observer_ebpf::{ring_record_bytes, ring_wakes, EVENTS_WAKEUP_BYTES};
        // Record sizes of the ABI: flow events, short and long DNS records, payloads.
        let sizes = [
            size_of::<FlowEvent>() as u64,
            176,
            648,
            size_of::<PayloadEvent>() as u64,
        ];
        for drain_every in [None, Some(997), Some(50)] {
            let (mut queued, mut total, mut wakes, mut expected) = (0u64, 0u64, 0u64, 0u64);
            for i in 0..100_000usize {
                let len = sizes[i % sizes.len()];
                let before = queued;
                queued += ring_record_bytes(len);
                total += ring_record_bytes(len);
                if ring_wakes(queued, len) {
                    wakes += 1;
                }
                expected += queued / EVENTS_WAKEUP_BYTES - before / EVENTS_WAKEUP_BYTES;
                if drain_every.is_some_and(|n| i % n == n - 1) {
                    queued = 0;
                }
            }
            assert_eq!(wakes, expected, "drained every {drain_every:?}");
            assert!(
                wakes > 0 || drain_every == Some(50),
                "{total} bytes, no wake-up"
            );
            if drain_every.is_none() {
                assert_eq!(wakes, total / EVENTS_WAKEUP_BYTES);
            }
        }
        // Below the first 32 KiB nothing wakes; a record that ends exactly on the mark does.
        assert!(!ring_wakes(EVENTS_WAKEUP_BYTES - 8, 100));
        assert!(ring_wakes(EVENTS_WAKEUP_BYTES, 100));
        assert!(!ring_wakes(
            EVENTS_WAKEUP_BYTES + ring_record_bytes(100),
            100
        ));
    }

    /// Bytes after the first NUL do not change the text; each thread has its own names.
    #[test]
    fn a_task_name_ends_at_its_first_nul_and_threads_keep_their_own() {
        let a = Process::from(&owner(b"curl\0garbage"));
        let b = Process::from(&owner(b"curl"));
        assert_eq!(a.comm, b.comm);
        assert_eq!(&*a.comm, "curl");
        assert_eq!(&*Process::from(&owner(b"ab\xff\0\xfe")).comm, "ab\u{fffd}");
        let other = std::thread::spawn(move || Process::from(&owner(b"curl")).comm)
            .join()
            .expect("thread");
        assert_eq!(&*other, "curl");
        assert!(
            !std::sync::Arc::ptr_eq(&other, &b.comm),
            "a cache per thread"
        );
    }
}
