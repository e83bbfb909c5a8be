//! The maps shared by all programs (names and sizes come from the ABI in `lib.rs`).

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use observer_ebpf::{
    ring_record_bytes, ring_wakes, DnsPending, DnsPendingKey, DnsRecent, Flow, Owner,
    CONFIG_ENTRIES, CONFIG_FLAGS, CONFIG_FLAG_ALL_PORTS, CONFIG_SK_ERR_OFFSET, COUNTER_ENTRIES,
    DNS_PENDING_MAX, DNS_RECENT_SLOTS, EVENTS_BYTES, FLOWS_MAX, JOB_PIDS_MAX, PAYLOAD_SEEN_MAX,
    SOCK_OWNERS_MAX, WATCH_PORTS_MAX,
};

#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

#[map(name = "FLOWS")]
pub static FLOWS: LruHashMap<u64, Flow> = LruHashMap::with_max_entries(FLOWS_MAX, 0);

#[map(name = "SOCK_OWNERS")]
pub static SOCK_OWNERS: LruHashMap<u64, Owner> = LruHashMap::with_max_entries(SOCK_OWNERS_MAX, 0);

#[map(name = "COUNTERS")]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_ENTRIES, 0);

#[map(name = "WATCH_PORTS")]
pub static WATCH_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(WATCH_PORTS_MAX, 0);

#[map(name = "JOB_PIDS")]
pub static JOB_PIDS: HashMap<u32, u32> = HashMap::with_max_entries(JOB_PIDS_MAX, 0);

#[map(name = "PAYLOAD_SEEN")]
pub static PAYLOAD_SEEN: LruHashMap<u64, u32> = LruHashMap::with_max_entries(PAYLOAD_SEEN_MAX, 0);

#[map(name = "DNS_PENDING")]
pub static DNS_PENDING: HashMap<DnsPendingKey, DnsPending> =
    HashMap::with_max_entries(DNS_PENDING_MAX, 0);

#[map(name = "DNS_RECENT_QUERIES")]
pub static DNS_RECENT_QUERIES: Array<DnsRecent> = Array::with_max_entries(DNS_RECENT_SLOTS, 0);

#[map(name = "DNS_RECENT_ANSWERS")]
pub static DNS_RECENT_ANSWERS: Array<DnsRecent> = Array::with_max_entries(DNS_RECENT_SLOTS, 0);

#[map(name = "DNS_SCRATCH")]
pub static DNS_SCRATCH: PerCpuArray<DnsPending> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "CONFIG")]
pub static CONFIG: Array<u32> = Array::with_max_entries(CONFIG_ENTRIES, 0);

/// Flags for submitting a record of `len` bytes already reserved in `EVENTS` (`reserve`: the
/// record is already counted in the bytes waiting): see [`observer_ebpf::ring_wakes`].
#[inline(always)]
pub fn submit_flags(len: usize) -> u64 {
    wake_flags(EVENTS.query(BPF_RB_AVAIL_DATA.into()), len as u64)
}

/// Flags for `EVENTS.output` of a record of `len` bytes (not yet in the ring): see
/// [`observer_ebpf::ring_wakes`].
#[inline(always)]
pub fn output_flags(len: u64) -> u64 {
    wake_flags(
        EVENTS.query(BPF_RB_AVAIL_DATA.into()) + ring_record_bytes(len),
        len,
    )
}

/// Wake user space once per 32 KiB waiting, not once per record. User space also drains on its
/// own ticks, so a crossing missed in a race between CPUs only delays records until the next
/// crossing or tick.
#[inline(always)]
fn wake_flags(queued: u64, len: u64) -> u64 {
    if ring_wakes(queued, len) {
        BPF_RB_FORCE_WAKEUP.into()
    } else {
        BPF_RB_NO_WAKEUP.into()
    }
}

/// Adds one to a `COUNTERS` slot.
#[inline(always)]
pub fn count(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *slot += 1 };
    }
}

/// The configured offset of `sk_err` in `struct sock`, or 0.
#[inline(always)]
pub fn sk_err_offset() -> u32 {
    CONFIG.get(CONFIG_SK_ERR_OFFSET).copied().unwrap_or(0)
}

/// Whether TCP flows to `port` (host byte order) are tracked.
#[inline(always)]
pub fn port_watched(port: u16) -> bool {
    let flags = CONFIG.get(CONFIG_FLAGS).copied().unwrap_or(0);
    if flags & CONFIG_FLAG_ALL_PORTS != 0 {
        return true;
    }
    // SAFETY: read-only lookup of a plain value.
    unsafe { WATCH_PORTS.get(&port).is_some() }
}

/// The `WATCH_*` bits of `port` (host byte order): 0 when it is not watched; `WATCH_FLOW` for
/// every port when all ports are.
#[inline(always)]
pub fn port_watch_bits(port: u16) -> u8 {
    // SAFETY: read-only lookup of a plain value.
    let bits = unsafe { WATCH_PORTS.get(&port).copied().unwrap_or(0) };
    let flags = CONFIG.get(CONFIG_FLAGS).copied().unwrap_or(0);
    if flags & CONFIG_FLAG_ALL_PORTS != 0 {
        bits | observer_ebpf::WATCH_FLOW
    } else {
        bits
    }
}
