//! cgroup_skb ingress/egress on the root cgroup v2: copy the payload of DNS responses received
//! (source port 53) and queries sent (destination port 53) by any local socket, IPv4 and IPv6,
//! over UDP and TCP (resolvers fall back to TCP when a UDP answer was truncated); TCP segments
//! of other ports go to `payload` (the first bytes of watched flows). Nothing is
//! parsed here beyond the IP, IPv6 extension, UDP and TCP headers: user space decodes the DNS
//! messages and, for TCP, reassembles the length-prefixed messages from the segments (each
//! segment's sequence number is copied with it).
//!
//! A record is built in a per-CPU scratch slot and copied with only the payload bytes captured.
//! Exact repeats of a UDP exchange user space already read are counted instead of copied: the
//! query is held, its answer compared by keyed hash with answers user space called repeatable
//! (see `DNS_PENDING_MAP` in the ABI for the rules that keep every verdict exact). The hashes
//! read whole words with masks computed arithmetically: a branch on the data per word made the
//! verifier walk the rest of the program once per message length (over its 1M-instruction
//! limit).

use core::{mem::offset_of, ptr::addr_of_mut};

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_get_socket_cookie, bpf_skb_cgroup_id, bpf_skb_load_bytes},
    },
    macros::cgroup_skb,
    programs::SkBuffContext,
    EbpfContext as _,
};
use observer_ebpf::{
    DnsEvent, DnsPending, DnsPendingKey, Owner, Tuple, AF_INET, AF_INET6, CONFIG_DNS_KEY_HI,
    CONFIG_DNS_KEY_LO, CONFIG_DNS_REPEATS, COUNTER_DNS_REPEATS, COUNTER_DNS_SKIPPED,
    COUNTER_RINGBUF_FULL, DNS_FLAG_EGRESS, DNS_FLAG_EXCHANGE, DNS_FLAG_HELD, DNS_FLAG_INGRESS,
    DNS_FLAG_OWNER_KNOWN, DNS_FLAG_TCP, DNS_FLAG_TRUNCATED, DNS_PAYLOAD_MAX, DNS_RECENT_SLOTS,
    DNS_REPEAT_MAX_LEN, DNS_REPEAT_WINDOW_NS, KIND_DNS,
};

use super::maps::{
    count, output_flags, CONFIG, DNS_PENDING, DNS_RECENT_ANSWERS, DNS_RECENT_QUERIES, DNS_SCRATCH,
    EVENTS, SOCK_OWNERS,
};

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
    // Headers are read with as few `bpf_skb_load_bytes` calls as they allow (each is a helper
    // call, and these programs see every packet of the host): the whole IPv4 header or the fixed
    // IPv6 one, then the start of the UDP/TCP header.
    let first: u8 = ctx.load(0)?;
    let mut tuple = Tuple::default();
    let (proto, l4): (u8, u32) = match first >> 4 {
        4 => {
            let ip: [u8; 20] = ctx.load(0)?;
            let proto = ip[9];
            if proto != IPPROTO_UDP && proto != IPPROTO_TCP {
                return Ok(());
            }
            tuple.family = AF_INET;
            tuple.saddr[..4].copy_from_slice(&ip[12..16]);
            tuple.daddr[..4].copy_from_slice(&ip[16..20]);
            // Sockets see reassembled datagrams, so there are no fragments to care about here.
            let l4 = u32::from(first & 0x0f) * 4;
            if l4 < 20 {
                return Ok(());
            }
            (proto, l4)
        }
        6 => {
            let ip: [u8; 40] = ctx.load(0)?;
            tuple.family = AF_INET6;
            tuple.saddr.copy_from_slice(&ip[8..24]);
            tuple.daddr.copy_from_slice(&ip[24..40]);
            let mut next = ip[6];
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
    // Ports, and for TCP the sequence number and data offset (a TCP header has 20 bytes at
    // least; a UDP datagram may end after its 8).
    let mut l4h = [0u8; 16];
    if proto == IPPROTO_TCP {
        l4h = ctx.load(l4 as usize)?;
    } else {
        let udp: [u8; 4] = ctx.load(l4 as usize)?;
        l4h[..4].copy_from_slice(&udp);
    }
    tuple.sport = u16::from_be_bytes([l4h[0], l4h[1]]);
    tuple.dport = u16::from_be_bytes([l4h[2], l4h[3]]);
    let doff = u32::from(l4h[12] >> 4) * 4;
    let port = if ingress { tuple.sport } else { tuple.dport };
    if port != DNS_PORT {
        if proto == IPPROTO_TCP {
            return super::payload::first_payload(ctx, ingress, &tuple, port, l4 + doff, doff);
        }
        return Ok(());
    }
    let mut tcp_seq: u32 = 0;
    let payload_off = if proto == IPPROTO_TCP {
        tcp_seq = u32::from_be_bytes([l4h[4], l4h[5], l4h[6], l4h[7]]);
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

    let Some(scratch) = DNS_SCRATCH.get_ptr_mut(0) else {
        return Ok(());
    };
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
    // SAFETY: `scratch` is this CPU's own slot of a per-CPU array; nothing else runs on this CPU
    // while the program does.
    let ev = unsafe { addr_of_mut!((*scratch).event) };
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
        addr_of_mut!((*ev).exchange).write(0);
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
    let whole = flags & DNS_FLAG_TRUNCATED == 0 && captured == payload_len;
    // Every UDP answer looks for a held query of its socket and id (whatever its length: a held
    // query must reach user space before any answer to it); only whole queries are compared.
    if proto == IPPROTO_UDP && (ingress || whole) && repeats_on() {
        // SAFETY: as above, this CPU's own scratch slot.
        let repeat = unsafe {
            if ingress {
                on_response(scratch, captured, whole)
            } else {
                on_query(scratch, captured)
            }
        };
        if repeat {
            return Ok(());
        }
    }
    // SAFETY: as above.
    unsafe { output(ev, captured) };
    Ok(())
}

/// Copies a DNS record to `EVENTS`: its header and the `captured` bytes of payload (rounded up
/// to 8), not the whole 512-byte room.
///
/// # Safety
/// `ev` points at a `DnsEvent` in a map value.
#[inline(always)]
unsafe fn output(ev: *const DnsEvent, captured: u32) {
    let header = offset_of!(DnsEvent, payload) as u64;
    let size = core::hint::black_box(header + ((u64::from(captured) + 7) & !7));
    if size > size_of::<DnsEvent>() as u64 {
        return;
    }
    // SAFETY: `size` bytes from `ev` are inside the map value the caller gave.
    let bytes = unsafe { core::slice::from_raw_parts(ev.cast::<u8>(), size as usize) };
    if EVENTS.output::<[u8]>(bytes, output_flags(size)).is_err() {
        count(COUNTER_RINGBUF_FULL);
    }
}

#[inline(always)]
fn repeats_on() -> bool {
    CONFIG.get(CONFIG_DNS_REPEATS).copied().unwrap_or(0) == 1
}

#[inline(always)]
fn dns_key() -> u64 {
    let lo = CONFIG.get(CONFIG_DNS_KEY_LO).copied().unwrap_or(0);
    let hi = CONFIG.get(CONFIG_DNS_KEY_HI).copied().unwrap_or(0);
    u64::from(lo) | (u64::from(hi) << 32)
}

#[inline(always)]
fn mix(h: u64, w: u64) -> u64 {
    let h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

/// Keyed hash of a message of `len` bytes (at most `DNS_REPEAT_MAX_LEN`), all but its id, word
/// by word; the bytes beyond the message (left from an earlier packet) are masked out. Masks are
/// computed without a branch on the data, so the verifier walks this once.
#[inline(always)]
fn hash_message(payload: &[u8; DNS_PAYLOAD_MAX], len: u32, key: u64) -> u64 {
    let words = payload.as_ptr().cast::<u64>();
    let mut h = mix(key, u64::from(len));
    for i in 0..DNS_REPEAT_MAX_LEN / 8 {
        // SAFETY: word `i` < DNS_REPEAT_MAX_LEN / 8 of a DNS_PAYLOAD_MAX array, 8-aligned (its
        // offset in `DnsEvent` is a multiple of 8, checked in the ABI, and map values are).
        let mut w = unsafe { words.add(i).read() };
        if i == 0 {
            // The id (the first two bytes) differs from one exchange to the next.
            w &= !0xffff;
        }
        h = mix(h, w & word_mask(len, i as i64));
    }
    h
}

/// The mask of the bytes of word `i` that lie in a message of `len` bytes: all, some (the
/// low-order ones, as words are read little-endian) or none. Arithmetic only.
#[inline(always)]
fn word_mask(len: u32, i: i64) -> u64 {
    let d = core::hint::black_box(i64::from(len) - 8 * i);
    // max(d, 0)
    let d = d & !(d >> 63);
    // min(d, 8)
    let over = (8 - d) >> 63;
    let valid = ((d & !over) | (8 & over)) as u64;
    let all = 0u64.wrapping_sub(valid >> 3);
    ((1u64 << ((valid * 8) & 63)).wrapping_sub(1)) | all
}

/// Keyed hash of a DNS client's process (pid and cgroup) and of its server (address and port).
#[inline(always)]
fn party(ev: &DnsEvent, server: &[u8; 16], port: u16) -> u64 {
    let mut h = mix(dns_key(), u64::from(ev.owner.pid) | (u64::from(port) << 32));
    h = mix(h, ev.cgroup_id);
    h = mix(
        h,
        u64::from_ne_bytes([
            server[0], server[1], server[2], server[3], server[4], server[5], server[6], server[7],
        ]),
    );
    mix(
        h,
        u64::from_ne_bytes([
            server[8], server[9], server[10], server[11], server[12], server[13], server[14],
            server[15],
        ]),
    )
}

/// The slot of `hash` in a recent cache.
#[inline(always)]
fn slot(hash: u64) -> u32 {
    (hash as u32) & (DNS_RECENT_SLOTS - 1)
}

/// A query (see `DNS_PENDING_MAP`): held when it repeats a recent copied one (returns true: not
/// to be copied now), else noted as recent.
///
/// # Safety
/// `p` is this CPU's scratch slot, its event filled.
#[inline(always)]
unsafe fn on_query(p: *mut DnsPending, len: u32) -> bool {
    // SAFETY: per the contract.
    let p = unsafe { &mut *p };
    let ev = &p.event;
    let payload = &ev.payload;
    // A held query of this socket and id (an id reused, a resend): copied first, so that user
    // space never sees an answer before its query.
    let pending_key = DnsPendingKey {
        cookie: ev.cookie,
        id: u32::from(u16::from_be_bytes([payload[0], payload[1]])),
        _pad: 0,
    };
    if let Some(old) = DNS_PENDING.get_ptr_mut(&pending_key) {
        // SAFETY: a live map value (see `on_response`).
        release(unsafe { &mut *old });
        let _ = DNS_PENDING.remove(&pending_key);
    }
    // Only queries of a known process are compared: with no owner, different processes would
    // look alike.
    if ev.flags & DNS_FLAG_OWNER_KNOWN == 0
        || !(17..=DNS_REPEAT_MAX_LEN as u32).contains(&len)
        || payload[2] & 0xf8 != 0
        || payload[4] != 0
        || payload[5] != 1
    {
        return false;
    }
    let hash = hash_message(payload, len, party(ev, &ev.tuple.daddr, ev.tuple.dport));
    let now = ev.ts_ns;
    let Some(recent) = DNS_RECENT_QUERIES.get_ptr_mut(slot(hash)) else {
        return false;
    };
    // SAFETY: an array slot; a concurrent writer at worst makes a repeat look new or a new query
    // look like a repeat, and holding is always safe (the query is copied at its answer).
    let recent = unsafe { &mut *recent };
    if recent.hash == hash && now.wrapping_sub(recent.ts_ns) <= DNS_REPEAT_WINDOW_NS {
        p.held = 1;
        // Never over another held query of that socket and id (it would be lost).
        if DNS_PENDING
            .insert(&pending_key, &*p, u64::from(BPF_NOEXIST))
            .is_ok()
        {
            return true;
        }
        // No room to hold it, or that id is held already: copied as always.
        p.held = 0;
        return false;
    }
    recent.hash = hash;
    recent.ts_ns = now;
    false
}

/// A response (see `DNS_PENDING_MAP`): returns true when it is counted as a repeat (neither it
/// nor its held query copied). Otherwise a held query of its socket and id is copied first, and
/// the response carries its hash (`DNS_FLAG_EXCHANGE`).
///
/// # Safety
/// `p` is this CPU's scratch slot, its event filled.
#[inline(always)]
unsafe fn on_response(p: *mut DnsPending, len: u32, whole: bool) -> bool {
    // SAFETY: per the contract.
    let p = unsafe { &mut *p };
    if len < 12 {
        return false;
    }
    let ev = &mut p.event;
    let comparable = whole && len <= DNS_REPEAT_MAX_LEN as u32;
    let mut exchange = 0;
    if comparable {
        exchange = hash_message(&ev.payload, len, party(ev, &ev.tuple.saddr, ev.tuple.sport));
        ev.flags |= DNS_FLAG_EXCHANGE;
        ev.exchange = exchange;
    }
    let pending_key = DnsPendingKey {
        cookie: ev.cookie,
        id: u32::from(u16::from_be_bytes([ev.payload[0], ev.payload[1]])),
        _pad: 0,
    };
    let Some(pending) = DNS_PENDING.get_ptr_mut(&pending_key) else {
        return false;
    };
    // SAFETY: a live map value; another CPU may clear `held` at the same time, which at worst
    // copies a held query twice (user space reads that as a resend).
    let pending = unsafe { &mut *pending };
    if pending.event.tuple.family != ev.tuple.family
        || pending.event.tuple.daddr != ev.tuple.saddr
        || pending.event.tuple.dport != ev.tuple.sport
    {
        // Another server answered: not this query's answer (user space judges it).
        release(pending);
        return false;
    }
    if !comparable {
        // Its answer, too long (or cut) to be compared: judged in user space, after its query.
        release(pending);
        let _ = DNS_PENDING.remove(&pending_key);
        return false;
    }
    let payload = &ev.payload;
    // A response (QR), not cut (TC), NOERROR, with answers.
    let answered =
        payload[2] & 0x82 == 0x80 && payload[3] & 0x0f == 0 && (payload[6] != 0 || payload[7] != 0);
    let now = ev.ts_ns;
    let known = answered
        && pending.held == 1
        && DNS_RECENT_ANSWERS.get(slot(exchange)).is_some_and(|r| {
            r.hash == exchange && now.wrapping_sub(r.ts_ns) <= DNS_REPEAT_WINDOW_NS
        });
    if known && DNS_PENDING.remove(&pending_key).is_ok() {
        count(COUNTER_DNS_REPEATS);
        return true;
    }
    release(pending);
    // The query is answered: a later response is a duplicate, whoever sent it.
    let _ = DNS_PENDING.remove(&pending_key);
    false
}

/// Copies a held query now (its answer is to be judged in user space).
#[inline(always)]
fn release(pending: &mut DnsPending) {
    if pending.held == 1 {
        pending.held = 0;
        pending.event.flags |= DNS_FLAG_HELD;
        let captured = pending.event.captured_len;
        // SAFETY: the event is in a map value.
        unsafe { output(&pending.event, captured) };
    }
}
