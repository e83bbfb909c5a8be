//! cgroup_skb ingress/egress on the root cgroup v2: copy the payload of DNS responses received
//! (source port 53) and queries sent (destination port 53) by any local socket, IPv4 and IPv6,
//! over UDP and TCP (resolvers fall back to TCP when a UDP answer was truncated); TCP segments
//! of other ports go to `payload` (the first bytes of watched flows). Nothing is
//! parsed here beyond the IP, IPv6 extension, UDP and TCP headers: user space decodes the DNS
//! messages and, for TCP, reassembles the length-prefixed messages from the segments (each
//! segment's sequence number is copied with it).

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
    DNS_FLAG_EGRESS, DNS_FLAG_INGRESS, DNS_FLAG_OWNER_KNOWN, DNS_FLAG_TCP, DNS_FLAG_TRUNCATED,
    DNS_PAYLOAD_MAX, KIND_DNS,
};

use super::maps::{count, submit_flags, EVENTS, SOCK_OWNERS};

/// cgroup_skb programs return 1 to let the packet through; they never drop anything.
const PASS: i32 = 1;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_TCP: u8 = 6;
const DNS_PORT: u16 = 53;
const UDP_HEADER_LEN: u32 = 8;
/// IPv6 extension headers followed before giving up (and counting the packet as skipped).
const MAX_IPV6_EXTENSIONS: usize = 4;
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_DEST_OPTS: u8 = 60;

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
    let (proto, l4): (u8, u32) = match first >> 4 {
        4 => {
            let proto = ctx.load::<u8>(9)?;
            if proto != IPPROTO_UDP && proto != IPPROTO_TCP {
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
            (proto, l4)
        }
        6 => {
            tuple.family = AF_INET6;
            tuple.saddr = ctx.load(8)?;
            tuple.daddr = ctx.load(24)?;
            let mut next = ctx.load::<u8>(6)?;
            let mut off: u32 = 40;
            // Hop-by-hop, routing, destination options and fragment headers before UDP/TCP,
            // a bounded number of them.
            for _ in 0..MAX_IPV6_EXTENSIONS {
                match next {
                    IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS => {
                        let len = u32::from(ctx.load::<u8>(off as usize + 1)?);
                        next = ctx.load::<u8>(off as usize)?;
                        off += (len + 1) * 8;
                    }
                    IPV6_FRAGMENT => {
                        // Only a first fragment carries the UDP/TCP header.
                        let frag = u16::from_be(ctx.load::<u16>(off as usize + 2)?);
                        if frag & 0xfff8 != 0 {
                            count(COUNTER_DNS_SKIPPED);
                            return Ok(());
                        }
                        next = ctx.load::<u8>(off as usize)?;
                        off += 8;
                    }
                    _ => break,
                }
            }
            if next != IPPROTO_UDP && next != IPPROTO_TCP {
                if matches!(
                    next,
                    IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS | IPV6_FRAGMENT
                ) {
                    // More extension headers than followed: counted, not copied.
                    count(COUNTER_DNS_SKIPPED);
                }
                return Ok(());
            }
            (next, off)
        }
        _ => return Ok(()),
    };
    tuple.sport = u16::from_be(ctx.load::<u16>(l4 as usize)?);
    tuple.dport = u16::from_be(ctx.load::<u16>(l4 as usize + 2)?);
    let port = if ingress { tuple.sport } else { tuple.dport };
    if port != DNS_PORT {
        if proto == IPPROTO_TCP {
            return super::payload::first_payload(ctx, ingress, &tuple, port, l4);
        }
        return Ok(());
    }
    let mut tcp_seq: u32 = 0;
    let payload_off = if proto == IPPROTO_TCP {
        tcp_seq = u32::from_be(ctx.load::<u32>(l4 as usize + 4)?);
        let doff = u32::from(ctx.load::<u8>(l4 as usize + 12)? >> 4) * 4;
        if doff < 20 {
            count(COUNTER_DNS_SKIPPED);
            return Ok(());
        }
        let off = l4 + doff;
        if ctx.len() <= off {
            // A segment without payload (SYN, ACK, FIN): nothing of DNS in it.
            return Ok(());
        }
        off
    } else {
        l4 + UDP_HEADER_LEN
    };
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
    if proto == IPPROTO_TCP {
        flags |= DNS_FLAG_TCP;
    }
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
        addr_of_mut!((*ev).tcp_seq).write(tcp_seq);
        addr_of_mut!((*ev)._pad).write(0);
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
