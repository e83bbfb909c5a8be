//! cgroup_skb ingress/egress on the root cgroup v2: copy the UDP payload of DNS responses received
//! (source port 53) and queries sent (destination port 53) by any local socket, IPv4 and IPv6.
//! Nothing is parsed here beyond the IP and UDP headers; user space decodes the DNS message.

use core::ptr::addr_of_mut;

use aya_ebpf::{
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_get_socket_cookie, bpf_skb_cgroup_id, bpf_skb_load_bytes},
    },
    macros::cgroup_skb,
    programs::SkBuffContext,
    EbpfContext as _,
};
use observer_ebpf::{
    DnsEvent, Owner, Tuple, AF_INET, AF_INET6, COUNTER_DNS_SKIPPED, COUNTER_RINGBUF_FULL,
    DNS_FLAG_EGRESS, DNS_FLAG_INGRESS, DNS_FLAG_OWNER_KNOWN, DNS_FLAG_TRUNCATED, DNS_PAYLOAD_MAX,
    KIND_DNS,
};

use super::maps::{count, submit_flags, EVENTS, SOCK_OWNERS};

/// cgroup_skb programs return 1 to let the packet through; they never drop anything.
const PASS: i32 = 1;
const IPPROTO_UDP: u8 = 17;
const DNS_PORT: u16 = 53;
const UDP_HEADER_LEN: u32 = 8;

#[cgroup_skb(ingress)]
pub fn dns_ingress(ctx: SkBuffContext) -> i32 {
    let _ = try_dns(&ctx, true);
    PASS
}

#[cgroup_skb(egress)]
pub fn dns_egress(ctx: SkBuffContext) -> i32 {
    let _ = try_dns(&ctx, false);
    PASS
}

#[inline(always)]
fn try_dns(ctx: &SkBuffContext, ingress: bool) -> Result<(), i64> {
    let first: u8 = ctx.load(0)?;
    let mut tuple = Tuple::default();
    let l4: u32 = match first >> 4 {
        4 => {
            if ctx.load::<u8>(9)? != IPPROTO_UDP {
                return Ok(());
            }
            tuple.family = AF_INET;
            let src: [u8; 4] = ctx.load(12)?;
            let dst: [u8; 4] = ctx.load(16)?;
            tuple.saddr[..4].copy_from_slice(&src);
            tuple.daddr[..4].copy_from_slice(&dst);
            // Sockets see reassembled datagrams, so there are no fragments to care about here.
            let l4 = u32::from(first & 0x0f) * 4;
            if l4 < 20 {
                return Ok(());
            }
            l4
        }
        6 => {
            tuple.family = AF_INET6;
            tuple.saddr = ctx.load(8)?;
            tuple.daddr = ctx.load(24)?;
            if ctx.load::<u8>(6)? != IPPROTO_UDP {
                // Extension headers before UDP: not followed here.
                return Ok(());
            }
            40
        }
        _ => return Ok(()),
    };
    tuple.sport = u16::from_be(ctx.load::<u16>(l4 as usize)?);
    tuple.dport = u16::from_be(ctx.load::<u16>(l4 as usize + 2)?);
    let port = if ingress { tuple.sport } else { tuple.dport };
    if port != DNS_PORT {
        return Ok(());
    }
    let payload_off = l4 + UDP_HEADER_LEN;
    let skb_len = ctx.len();
    if skb_len <= payload_off {
        count(COUNTER_DNS_SKIPPED);
        return Ok(());
    }
    let payload_len = skb_len - payload_off;

    let Some(mut entry) = EVENTS.reserve::<DnsEvent>(0) else {
        count(COUNTER_RINGBUF_FULL);
        return Ok(());
    };
    let ev = entry.as_mut_ptr();
    let skb = ctx.skb.skb;
    // SAFETY: helpers on the program's own context.
    let (cookie, cgroup_id) =
        unsafe { (bpf_get_socket_cookie(ctx.as_ptr()), bpf_skb_cgroup_id(skb)) };
    let mut flags = if ingress {
        DNS_FLAG_INGRESS
    } else {
        DNS_FLAG_EGRESS
    };
    // SAFETY: read-only lookup of a plain value.
    let owner = match unsafe { SOCK_OWNERS.get(&cookie) } {
        Some(owner) => {
            flags |= DNS_FLAG_OWNER_KNOWN;
            *owner
        }
        None => Owner::default(),
    };
    let mut captured = payload_len;
    if captured > DNS_PAYLOAD_MAX as u32 {
        captured = DNS_PAYLOAD_MAX as u32;
        flags |= DNS_FLAG_TRUNCATED;
    }
    // SAFETY: `ev` points at a reserved, exclusively owned ring buffer record of the right size.
    unsafe {
        addr_of_mut!((*ev).kind).write(KIND_DNS);
        addr_of_mut!((*ev).ts_ns).write(bpf_ktime_get_ns());
        addr_of_mut!((*ev).cookie).write(cookie);
        addr_of_mut!((*ev).cgroup_id).write(cgroup_id);
        addr_of_mut!((*ev).tuple).write(tuple);
        addr_of_mut!((*ev).owner).write(owner);
        addr_of_mut!((*ev).payload_len).write(payload_len);
        let dst = addr_of_mut!((*ev).payload).cast::<core::ffi::c_void>();
        // The verifier needs a length it can prove to be in 1..=DNS_PAYLOAD_MAX, and LLVM drops
        // checks it knows to be redundant: hide the value from LLVM, then mask it into range
        // (`captured` is already in that range, so this changes nothing at run time).
        let len = ((core::hint::black_box(captured).wrapping_sub(1)) & 0x1ff) + 1;
        if bpf_skb_load_bytes(skb.cast(), payload_off, dst, len) != 0 {
            captured = 0;
        }
        addr_of_mut!((*ev).captured_len).write(captured);
        addr_of_mut!((*ev).flags).write(flags);
    }
    entry.submit(submit_flags());
    Ok(())
}
