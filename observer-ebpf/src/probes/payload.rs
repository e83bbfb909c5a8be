//! The first bytes of watched TCP flows, from the same cgroup_skb programs as DNS: the first
//! segment with payload a local socket sends to a watched port (a TLS ClientHello, an HTTP
//! CONNECT request), and for `WATCH_REPLY` ports (HTTP proxies) the first one it receives back
//! (the proxy's status line). Each is copied once per socket and direction (`PAYLOAD_SEEN`),
//! cut at `PAYLOAD_PREFIX_MAX` bytes; every later segment costs one map lookup. Nothing is
//! parsed here: user space reads the server name, the CONNECT target and the status.

use core::ptr::addr_of_mut;

use aya_ebpf::{
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_get_socket_cookie, bpf_skb_load_bytes},
    },
    programs::SkBuffContext,
    EbpfContext as _,
};
use observer_ebpf::{
    PayloadEvent, Tuple, COUNTER_RINGBUF_FULL, KIND_FLOW_PAYLOAD, PAYLOAD_FLAG_EGRESS,
    PAYLOAD_FLAG_INGRESS, PAYLOAD_FLAG_TRUNCATED, PAYLOAD_PREFIX_MAX, WATCH_FLOW, WATCH_REPLY,
};

use super::maps::{count, port_watch_bits, submit_flags, EVENTS, PAYLOAD_SEEN};

/// Copies the segment's payload if it is the first of its socket in its direction on a watched
/// port. `port` is the remote port (destination when sent, source when received);
/// `payload_off` the offset of the payload, after a TCP header of `doff` bytes.
#[inline(always)]
pub fn first_payload(
    ctx: &SkBuffContext,
    ingress: bool,
    tuple: &Tuple,
    port: u16,
    payload_off: u32,
    doff: u32,
) -> Result<(), i64> {
    let skb_len = ctx.len();
    if doff < 20 || skb_len <= payload_off {
        // SYN, ACK, FIN without data (or a broken header): nothing to look up.
        return Ok(());
    }
    let bits = port_watch_bits(port);
    let wanted = if ingress { WATCH_REPLY } else { WATCH_FLOW };
    if bits & wanted == 0 {
        return Ok(());
    }
    let direction = if ingress {
        PAYLOAD_FLAG_INGRESS
    } else {
        PAYLOAD_FLAG_EGRESS
    };
    // SAFETY: helper on the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    match PAYLOAD_SEEN.get_ptr_mut(&cookie) {
        Some(seen) => {
            // SAFETY: points into the map value; a lost race copies a segment twice at worst,
            // and user space keeps the first.
            unsafe {
                if *seen & direction != 0 {
                    return Ok(());
                }
                *seen |= direction;
            }
        }
        None => {
            let _ = PAYLOAD_SEEN.insert(&cookie, &direction, 0);
        }
    }
    let payload_len = skb_len - payload_off;
    let Some(mut entry) = EVENTS.reserve::<PayloadEvent>(0) else {
        count(COUNTER_RINGBUF_FULL);
        return Ok(());
    };
    let ev = entry.as_mut_ptr();
    let mut flags = direction;
    let mut captured = payload_len;
    if captured > PAYLOAD_PREFIX_MAX as u32 {
        captured = PAYLOAD_PREFIX_MAX as u32;
        flags |= PAYLOAD_FLAG_TRUNCATED;
    }
    // SAFETY: `ev` points at a reserved, exclusively owned ring buffer record of the right size.
    unsafe {
        addr_of_mut!((*ev).kind).write(KIND_FLOW_PAYLOAD);
        addr_of_mut!((*ev).ts_ns).write(bpf_ktime_get_ns());
        addr_of_mut!((*ev).cookie).write(cookie);
        addr_of_mut!((*ev).tuple).write(*tuple);
        addr_of_mut!((*ev).payload_len).write(payload_len);
        let dst = addr_of_mut!((*ev).payload).cast::<core::ffi::c_void>();
        // As for DNS: a length the verifier can prove to be in 1..=PAYLOAD_PREFIX_MAX.
        let len = ((core::hint::black_box(captured).wrapping_sub(1))
            & (PAYLOAD_PREFIX_MAX as u32 - 1))
            + 1;
        if bpf_skb_load_bytes(ctx.skb.skb.cast(), payload_off, dst, len) != 0 {
            captured = 0;
        }
        addr_of_mut!((*ev).captured_len).write(captured);
        addr_of_mut!((*ev).flags).write(flags);
    }
    entry.submit(submit_flags(size_of::<PayloadEvent>()));
    Ok(())
}
