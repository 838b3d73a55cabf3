//! Counting and reporting: per-CPU counter rows, and ring-buffer events that never hold a
//! packet back (a full buffer only counts a lost event).

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use vigie_common::{
    counters::{CounterKey, CounterValue, stat},
    event::FlowEvent,
    flow::{FlowEntry, FlowKey},
};

use crate::maps::{COUNTER_CACHE, COUNTERS, EVENTS, STATS, bump};

const BPF_NOEXIST: u64 = 1;

#[inline(always)]
pub fn count(key: &CounterKey, bytes: u32, new_flow: bool) {
    if let Some(row) = COUNTER_CACHE.get_ptr_mut(key.cache_row()) {
        let word = key.word();
        // SAFETY: this CPU's copy of the row: only this CPU touches it while the program runs.
        unsafe {
            let claimed = (*row).key.word();
            if claimed == word || claimed == 0 {
                if claimed == 0 {
                    (*row).key = *key;
                }
                (*row).value.packets += 1;
                (*row).value.bytes += u64::from(bytes);
                (*row).value.flows += u64::from(new_flow);
                return;
            }
        }
    }
    // The row belongs to another key on this CPU: the hash map counts this one.
    if let Some(row) = COUNTERS.get_ptr_mut(key) {
        // SAFETY: per-CPU row: only this CPU writes it while the program runs.
        unsafe {
            (*row).packets += 1;
            (*row).bytes += u64::from(bytes);
            (*row).flows += u64::from(new_flow);
        }
        return;
    }
    let row = CounterValue {
        packets: 1,
        bytes: u64::from(bytes),
        flows: u64::from(new_flow),
    };
    if COUNTERS.insert(key, &row, BPF_NOEXIST).is_err() {
        // Either another CPU created the row in between (its next packet counts) or the map
        // is full: the daemon exports the latter as a health signal.
        bump(&STATS, stat::COUNTER_ROWS_FULL);
    }
}

#[inline(always)]
pub fn event(key: &FlowKey, entry: &FlowEntry, flags: u32, packet_len: u32) {
    let Some(mut slot) = EVENTS.reserve::<FlowEvent>(0) else {
        bump(&STATS, stat::EVENTS_LOST);
        return;
    };
    slot.write(FlowEvent {
        key: *key,
        // The coarse clock (the monotonic clock as of the last scheduler tick: up to 4 ms
        // behind at 250 Hz, 10 ms at 100 Hz) reads no hardware counter: a fraction of the
        // precise clock's cost on every new flow. Events tell when a flow started, which a
        // tick's precision serves.
        // SAFETY: no preconditions; a helper call.
        timestamp_ns: unsafe { bpf_ktime_get_coarse_ns() },
        classes: entry.classes,
        service: entry.service,
        evidence: entry.evidence,
        group: entry.group,
        rule: entry.rule,
        action: entry.action,
        generation: entry.generation,
        flags: entry.flags | flags,
        packet_len,
    });
    slot.submit(0);
}
