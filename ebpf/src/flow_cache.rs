//! The per-CPU flow cache in front of the flow table (`FLOWS`), in the way of Open vSwitch's
//! exact-match cache: one direct-mapped row per hash of the flow key, on each CPU.
//!
//! A flow-table lookup is a call into the kernel's hash map (a hash over the 40-byte key, a key
//! comparison, the LRU's reference bit): most of what a packet of a known flow costs. A row of
//! this cache is found with a multiply-and-xor hash and an array read the verifier inlines, and
//! compared word by word, all in the program.
//!
//! Only settled verdicts are cached: no ClientHello, STUN message or QUIC name still to be read,
//! and no DNS flow (its answers are handed to the daemon). A row serves only packets under the
//! policy generation it was decided in (a swap makes every row stale), and at most
//! `FLOW_CACHE_CREDIT` packets: then a packet goes through the flow table again, which keeps the
//! table's LRU order true to the flows in use and picks up what changed in the entry meanwhile
//! (the daemon telling a QUIC name after the flow stopped waiting for it, an entry evicted and
//! decided again on another CPU). The credit is per CPU: a flow whose packets several CPUs see
//! may pass up to that many packets on each before such a change shows. Rows are per CPU, written and read by the programs of that
//! CPU only, which never run nested: no locks, no torn rows.

use vigie_common::{
    flow::{FlowEntry, FlowKey, flags},
    limits,
    payload::DNS_PORT,
};

use crate::maps::FLOW_CACHE;

/// Word `i` of the key (`FlowKey` is 40 bytes of integers, aligned to 8). Read in place: the
/// classifier's stack is close to the kernel's limit for a chain of calls.
#[inline(always)]
fn word(key: *const FlowKey, i: usize) -> u64 {
    // SAFETY: `i` < 5 at every call site; the key is a map value or a row, 8-byte aligned.
    unsafe { *key.cast::<u64>().add(i) }
}

/// The row of a key: every word multiplied by its own odd constant, the products folded so
/// that the high bits (which every input bit reaches) mix into the low ones.
#[inline(always)]
fn row_of(key: *const FlowKey) -> u32 {
    let mixed = word(key, 0).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ word(key, 1).wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
        ^ word(key, 2).wrapping_mul(0x1656_67b1_9e37_79f9)
        ^ word(key, 3).wrapping_mul(0x85eb_ca77_c2b2_ae63)
        ^ word(key, 4).wrapping_mul(0x27d4_eb2f_1656_67c5);
    ((mixed ^ (mixed >> 29) ^ (mixed >> 47)) as u32) & (limits::FLOW_CACHE_ROWS - 1)
}

/// The settled entry of the flow `key` under policy `generation`, if this CPU's cache holds it
/// with credit left (one is spent): a pointer into the row, valid for this program run.
#[inline(always)]
pub fn lookup(key: &FlowKey, generation: u32) -> Option<*const FlowEntry> {
    let row = FLOW_CACHE.get_ptr_mut(row_of(key))?;
    // SAFETY: this CPU's row (see the module comment).
    unsafe {
        if (*row).credit == 0 || (*row).entry.generation != generation {
            return None;
        }
        let cached = &raw const (*row).key;
        if word(cached, 0) != word(key, 0)
            || word(cached, 1) != word(key, 1)
            || word(cached, 2) != word(key, 2)
            || word(cached, 3) != word(key, 3)
            || word(cached, 4) != word(key, 4)
        {
            return None;
        }
        (*row).credit -= 1;
        Some(&raw const (*row).entry)
    }
}

/// Caches the entry of `key` just found in (or written to) the flow table, if its verdict is
/// settled.
#[inline(always)]
pub fn fill(key: &FlowKey, entry: &FlowEntry) {
    const UNSETTLED: u32 = flags::SNI_PENDING | flags::STUN_PENDING | flags::QUIC_PENDING;
    if entry.flags & UNSETTLED != 0 || key.remote_port == DNS_PORT {
        return;
    }
    let Some(row) = FLOW_CACHE.get_ptr_mut(row_of(key)) else {
        return;
    };
    // SAFETY: this CPU's row.
    unsafe {
        (*row).key = *key;
        (*row).entry = *entry;
        (*row).credit = limits::FLOW_CACHE_CREDIT;
    }
}
