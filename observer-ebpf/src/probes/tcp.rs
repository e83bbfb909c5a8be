//! TCP flows on watched ports, from tracepoints only (no kprobes needed):
//! - `sock:inet_sock_set_state`: SYN sent (flow opens), established, closed;
//! - `tcp:tcp_retransmit_skb`: retransmitted SYNs and segments;
//! - `tcp:tcp_receive_reset`: RST received;
//! - `sock:inet_sk_error_report`: the error the socket reported (ECONNREFUSED, ETIMEDOUT, ...);
//! - `sock:sock_send_length` / `sock:sock_recv_length`: payload bytes, added to counters in
//!   `FLOWS` that user space reads every second (no event per packet); an established socket on
//!   a watched port that is not in `FLOWS` yet (it connected before the capture) is adopted there.
//!
//! Field offsets come from `/sys/kernel/tracing/events/<category>/<name>/format`.

use core::ptr::addr_of_mut;

use aya_ebpf::bindings::BPF_NOEXIST;
use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::tracepoint,
    programs::TracePointContext,
    EbpfContext,
};
use observer_ebpf::{
    Flow, FlowEvent, Owner, SockErrorEvent, Tuple, AF_INET, AF_INET6, CONFIG_ADOPT,
    CONFIG_ADOPT_AT_END, CONFIG_SK_V6_DADDR_OFFSET, CONFIG_TCP_BYTES_ACKED_OFFSET,
    CONFIG_TCP_BYTES_RECEIVED_OFFSET, COUNTER_RINGBUF_FULL, KIND_FLOW_ADOPT, KIND_FLOW_CLOSE,
    KIND_FLOW_ESTABLISHED, KIND_FLOW_OPEN, KIND_SOCK_ERROR, SKC_DADDR_OFFSET, SKC_DPORT_OFFSET,
    SKC_FAMILY_OFFSET, SKC_NUM_OFFSET, SKC_RCV_SADDR_OFFSET, SKC_STATE_OFFSET, TCP_CLOSE,
    TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_SYN_SENT,
};

use super::{
    maps::{count, port_watched, sk_err_offset, submit_flags, CONFIG, EVENTS, FLOWS, WATCH_PORTS},
    owner::current_owner,
};

const IPPROTO_TCP: u16 = 6;
const MSG_PEEK: i32 = 2;

/// Reads a tracepoint field straight from the context: a tracepoint program may load from its
/// context at constant, naturally aligned offsets (the kernel checks, when it attaches the
/// program, that they lie inside the event). `bpf_probe_read` per field cost a helper call each,
/// and these programs run at every TCP state change and every send and receive of the host.
#[inline(always)]
fn field<T: Copy>(ctx: &TracePointContext, offset: usize) -> Result<T, i64> {
    // SAFETY: offsets come from the tracepoint's format file and are aligned for their type.
    Ok(unsafe { ctx.as_ptr().cast::<u8>().add(offset).cast::<T>().read() })
}

/// Reads the address/port block that several tracepoints share: sport, dport, family at
/// `ports`, `ports + 2`, `ports + 4`; IPv4 addresses at `v4`, `v4 + 4`; IPv6 at `v6`, `v6 + 16`.
#[inline(always)]
fn tuple_at(ctx: &TracePointContext, ports: usize, v4: usize, v6: usize) -> Result<Tuple, i64> {
    let mut tuple = Tuple {
        sport: field(ctx, ports)?,
        dport: field(ctx, ports + 2)?,
        family: field(ctx, ports + 4)?,
        ..Tuple::default()
    };
    // Addresses through `bpf_probe_read` (byte arrays read from the context made LLVM spill
    // past the 512-byte stack); they are read only when a flow starts or is adopted.
    // SAFETY: offsets come from the tracepoint's format file.
    if tuple.family == AF_INET6 {
        tuple.saddr = unsafe { ctx.read_at(v6) }.map_err(i64::from)?;
        tuple.daddr = unsafe { ctx.read_at(v6 + 16) }.map_err(i64::from)?;
    } else if tuple.family == AF_INET {
        let s: [u8; 4] = unsafe { ctx.read_at(v4) }.map_err(i64::from)?;
        let d: [u8; 4] = unsafe { ctx.read_at(v4 + 4) }.map_err(i64::from)?;
        tuple.saddr[..4].copy_from_slice(&s);
        tuple.daddr[..4].copy_from_slice(&d);
    }
    Ok(tuple)
}

#[inline(always)]
fn emit_flow(kind: u32, key: u64, flow: &Flow, now: u64) {
    let Some(mut entry) = EVENTS.reserve::<FlowEvent>(0) else {
        count(COUNTER_RINGBUF_FULL);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at a reserved, exclusively owned record of the right size.
    unsafe {
        addr_of_mut!((*ev).kind).write(kind);
        addr_of_mut!((*ev)._pad).write(0);
        addr_of_mut!((*ev).ts_ns).write(now);
        addr_of_mut!((*ev).key).write(key);
        addr_of_mut!((*ev).flow).write(*flow);
    }
    entry.submit(submit_flags(size_of::<FlowEvent>()));
}

// sock:inet_sock_set_state
const SS_SKADDR: usize = 8;
const SS_OLDSTATE: usize = 16;
const SS_NEWSTATE: usize = 20;
const SS_PORTS: usize = 24;
const SS_PROTOCOL: usize = 30;
const SS_V4: usize = 32;
const SS_V6: usize = 40;

#[tracepoint]
pub fn tcp_set_state(ctx: TracePointContext) -> u32 {
    let _ = try_set_state(&ctx);
    0
}

#[inline(always)]
fn try_set_state(ctx: &TracePointContext) -> Result<(), i64> {
    if field::<u16>(ctx, SS_PROTOCOL)? != IPPROTO_TCP {
        return Ok(());
    }
    let key: u64 = field(ctx, SS_SKADDR)?;
    let old = field::<i32>(ctx, SS_OLDSTATE)? as u32;
    let new = field::<i32>(ctx, SS_NEWSTATE)? as u32;
    let now = unsafe { bpf_ktime_get_ns() };

    if new == TCP_SYN_SENT && old == TCP_CLOSE {
        let tuple = tuple_at(ctx, SS_PORTS, SS_V4, SS_V6)?;
        if !port_watched(tuple.dport) {
            return Ok(());
        }
        let flow = Flow {
            tuple,
            owner: current_owner(),
            ts_syn_ns: now,
            states_seen: 1 << TCP_SYN_SENT,
            ..Flow::default()
        };
        let _ = FLOWS.insert(&key, &flow, 0);
        emit_flow(KIND_FLOW_OPEN, key, &flow, now);
        return Ok(());
    }

    let flow = match FLOWS.get_ptr_mut(&key) {
        Some(flow) => flow,
        None => {
            if old != TCP_ESTABLISHED || CONFIG.get(CONFIG_ADOPT_AT_END).copied().unwrap_or(0) != 1
            {
                return Ok(());
            }
            adopt_at_end(ctx, key, new, now)?;
            let Some(flow) = FLOWS.get_ptr_mut(&key) else {
                return Ok(());
            };
            flow
        }
    };
    // The source port is only assigned after the SYN_SENT transition.
    let sport: u16 = field(ctx, SS_PORTS)?;
    // SAFETY: `flow` points into the map value; state changes of one socket are serialised.
    unsafe {
        if sport != 0 {
            (*flow).tuple.sport = sport;
        }
        if new < 32 {
            (*flow).states_seen |= 1 << new;
        }
        if new == TCP_ESTABLISHED && (*flow).ts_established_ns == 0 {
            (*flow).ts_established_ns = now;
            emit_flow(KIND_FLOW_ESTABLISHED, key, &*flow, now);
        } else if new == TCP_CLOSE {
            let offset = sk_err_offset();
            if (*flow).sk_err == 0 && offset != 0 && offset < 4096 {
                let at = (key as usize + offset as usize) as *const i32;
                (*flow).sk_err = bpf_probe_read_kernel(at).unwrap_or(0);
            }
            read_tcp_bytes(key, &mut *flow);
            emit_flow(KIND_FLOW_CLOSE, key, &*flow, now);
            let _ = FLOWS.remove(&key);
        }
    }
    Ok(())
}

/// A connection to a watched port that leaves ESTABLISHED without being tracked (it connected
/// before the capture; see `CONFIG_ADOPT_AT_END`): tracked from here, so its close is reported.
#[inline(always)]
fn adopt_at_end(ctx: &TracePointContext, key: u64, new: u32, now: u64) -> Result<(), i64> {
    let tuple = tuple_at(ctx, SS_PORTS, SS_V4, SS_V6)?;
    // SAFETY: read-only lookup of a plain value.
    if unsafe { WATCH_PORTS.get(&tuple.dport).is_none() } {
        return Ok(());
    }
    let flow = Flow {
        tuple,
        // A local close runs in the process's context; the peer's FIN arrives in softirq,
        // where the current task is anyone's (user space knows the process from sock_diag).
        owner: if new == TCP_FIN_WAIT1 {
            current_owner()
        } else {
            Owner::default()
        },
        ts_syn_ns: now,
        ts_established_ns: now,
        states_seen: 1 << TCP_ESTABLISHED,
        ..Flow::default()
    };
    if FLOWS.insert(&key, &flow, BPF_NOEXIST.into()).is_ok() {
        emit_flow(KIND_FLOW_ADOPT, key, &flow, now);
    }
    Ok(())
}

/// On kernels without the length tracepoints, the socket's own counters (`tcp_sock`'s
/// `bytes_acked` and `bytes_received`, at offsets from BTF) at the close: the flow's final byte
/// counts, also for flows shorter than user space's one-second poll.
#[inline(always)]
fn read_tcp_bytes(sk: u64, flow: &mut Flow) {
    let acked = CONFIG
        .get(CONFIG_TCP_BYTES_ACKED_OFFSET)
        .copied()
        .unwrap_or(0);
    let received = CONFIG
        .get(CONFIG_TCP_BYTES_RECEIVED_OFFSET)
        .copied()
        .unwrap_or(0);
    if acked == 0 || received == 0 || acked >= 8192 || received >= 8192 {
        return;
    }
    if let Ok(v) = sk_field::<u64>(sk, acked as usize) {
        flow.bytes_sent = flow.bytes_sent.max(v);
    }
    if let Ok(v) = sk_field::<u64>(sk, received as usize) {
        flow.bytes_received = flow.bytes_received.max(v);
    }
}

// tcp:tcp_retransmit_skb
const RT_SKADDR: usize = 16;
const RT_STATE: usize = 24;

#[tracepoint]
pub fn tcp_retransmit(ctx: TracePointContext) -> u32 {
    let _ = try_retransmit(&ctx);
    0
}

#[inline(always)]
fn try_retransmit(ctx: &TracePointContext) -> Result<(), i64> {
    let key: u64 = field(ctx, RT_SKADDR)?;
    let Some(flow) = FLOWS.get_ptr_mut(&key) else {
        return Ok(());
    };
    let state = field::<i32>(ctx, RT_STATE)? as u32;
    // SAFETY: pointer into the map value. Retransmissions of one socket run under its lock, so
    // a plain increment is enough (the BPF target has no 32-bit atomics).
    unsafe {
        if state == TCP_SYN_SENT {
            (*flow).syn_retransmits += 1;
        } else {
            (*flow).retransmits += 1;
        }
    }
    Ok(())
}

// tcp:tcp_receive_reset
const RR_SKADDR: usize = 8;

#[tracepoint]
pub fn tcp_reset_received(ctx: TracePointContext) -> u32 {
    let _ = try_reset(&ctx);
    0
}

#[inline(always)]
fn try_reset(ctx: &TracePointContext) -> Result<(), i64> {
    let key: u64 = field(ctx, RR_SKADDR)?;
    if let Some(flow) = FLOWS.get_ptr_mut(&key) {
        // SAFETY: pointer into the map value.
        unsafe { (*flow).ts_rst_ns = bpf_ktime_get_ns() };
    }
    Ok(())
}

// sock:inet_sk_error_report
const ER_ERROR: usize = 8;
const ER_PORTS: usize = 12;
const ER_PROTOCOL: usize = 18;
const ER_V4: usize = 20;
const ER_V6: usize = 28;

#[tracepoint]
pub fn sock_error(ctx: TracePointContext) -> u32 {
    let _ = try_sock_error(&ctx);
    0
}

#[inline(always)]
fn try_sock_error(ctx: &TracePointContext) -> Result<(), i64> {
    if field::<u16>(ctx, ER_PROTOCOL)? != IPPROTO_TCP {
        return Ok(());
    }
    let tuple = tuple_at(ctx, ER_PORTS, ER_V4, ER_V6)?;
    if !port_watched(tuple.dport) {
        return Ok(());
    }
    let error: i32 = field(ctx, ER_ERROR)?;
    let Some(mut entry) = EVENTS.reserve::<SockErrorEvent>(0) else {
        count(COUNTER_RINGBUF_FULL);
        return Ok(());
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: reserved, exclusively owned record of the right size.
    unsafe {
        ev.write(SockErrorEvent {
            kind: KIND_SOCK_ERROR,
            error,
            ts_ns: bpf_ktime_get_ns(),
            tuple,
        });
    }
    entry.submit(submit_flags(size_of::<SockErrorEvent>()));
    Ok(())
}

// sock:sock_send_length and sock:sock_recv_length
const SL_SK: usize = 8;
const SL_PROTOCOL: usize = 18;
const SL_RET: usize = 20;
const SL_FLAGS: usize = 24;

#[tracepoint]
pub fn tcp_bytes_sent(ctx: TracePointContext) -> u32 {
    let _ = try_bytes(&ctx, true);
    0
}

#[tracepoint]
pub fn tcp_bytes_received(ctx: TracePointContext) -> u32 {
    let _ = try_bytes(&ctx, false);
    0
}

#[inline(always)]
fn try_bytes(ctx: &TracePointContext, sent: bool) -> Result<(), i64> {
    if field::<u16>(ctx, SL_PROTOCOL)? != IPPROTO_TCP {
        return Ok(());
    }
    let ret: i32 = field(ctx, SL_RET)?;
    if ret <= 0 {
        return Ok(());
    }
    if !sent && field::<i32>(ctx, SL_FLAGS)? & MSG_PEEK != 0 {
        return Ok(());
    }
    let key: u64 = field(ctx, SL_SK)?;
    let Some(flow) = FLOWS.get_ptr_mut(&key) else {
        if CONFIG.get(CONFIG_ADOPT).copied().unwrap_or(0) == 1 {
            let _ = adopt(key, sent, ret as u64);
        }
        return Ok(());
    };
    // SAFETY: pointer into the map value. Each direction has its own counter, and one socket's
    // sends (or receives) are serialised by the socket lock, so plain adds do not lose bytes in
    // practice (the BPF target offers no fetch-add to Rust).
    unsafe {
        let now = bpf_ktime_get_ns();
        if sent {
            (*flow).bytes_sent += ret as u64;
            (*flow).ts_last_send_ns = now;
        } else {
            (*flow).bytes_received += ret as u64;
            (*flow).ts_last_recv_ns = now;
        }
    }
    Ok(())
}

/// Reads a field of the socket at `sk`.
#[inline(always)]
fn sk_field<T>(sk: u64, offset: usize) -> Result<T, i64> {
    // SAFETY: a read through the kernel's checked copy; a bad address gives an error.
    unsafe { bpf_probe_read_kernel((sk as usize + offset) as *const T) }.map_err(i64::from)
}

/// Adopts the socket `sk`, which just moved `bytes` of payload, if it is an established TCP
/// connection to a port named in `WATCH_PORTS` (not with all ports watched: an accepted inbound
/// connection could not be told from an outbound one).
#[inline(always)]
fn adopt(sk: u64, sent: bool, bytes: u64) -> Result<(), i64> {
    // The port first: most sockets that get here are on other ports (servers, local services).
    let dport = u16::from_be(sk_field::<u16>(sk, SKC_DPORT_OFFSET)?);
    // SAFETY: read-only lookup of a plain value.
    if unsafe { WATCH_PORTS.get(&dport).is_none() } {
        return Ok(());
    }
    if u32::from(sk_field::<u8>(sk, SKC_STATE_OFFSET)?) != TCP_ESTABLISHED {
        return Ok(());
    }
    let mut tuple = Tuple {
        family: sk_field(sk, SKC_FAMILY_OFFSET)?,
        sport: sk_field(sk, SKC_NUM_OFFSET)?,
        dport,
        ..Tuple::default()
    };
    if tuple.family == AF_INET {
        let d: [u8; 4] = sk_field(sk, SKC_DADDR_OFFSET)?;
        let s: [u8; 4] = sk_field(sk, SKC_RCV_SADDR_OFFSET)?;
        tuple.daddr[..4].copy_from_slice(&d);
        tuple.saddr[..4].copy_from_slice(&s);
    } else if tuple.family == AF_INET6 {
        let offset = CONFIG.get(CONFIG_SK_V6_DADDR_OFFSET).copied().unwrap_or(0) as usize;
        if offset == 0 || offset >= 4096 {
            return Ok(());
        }
        tuple.daddr = sk_field(sk, offset)?;
        tuple.saddr = sk_field(sk, offset + 16)?;
    } else {
        return Ok(());
    }
    let now = unsafe { bpf_ktime_get_ns() };
    let mut flow = Flow {
        tuple,
        owner: current_owner(),
        ts_syn_ns: now,
        ts_established_ns: now,
        states_seen: 1 << TCP_ESTABLISHED,
        ..Flow::default()
    };
    if sent {
        flow.bytes_sent = bytes;
        flow.ts_last_send_ns = now;
    } else {
        flow.bytes_received = bytes;
        flow.ts_last_recv_ns = now;
    }
    // Only the first of concurrent adopters (a send and a receive on two CPUs) announces it.
    if FLOWS.insert(&sk, &flow, BPF_NOEXIST.into()).is_ok() {
        emit_flow(KIND_FLOW_ADOPT, sk, &flow, now);
    }
    Ok(())
}
