//! Counting and reporting: per-CPU counter rows, and ring-buffer events that never hold a
//! packet back (a full buffer only counts a lost event).

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use vigie_common::{
    counters::{CounterKey, CounterValue, stat},
    event::FlowEvent,
    flow::{FlowEntry, FlowKey},
    limits::{EVENT_WAKE_BYTES, EVENT_WAKE_INTERVAL_NS},
};

use crate::maps::{COUNTER_CACHE, COUNTERS, EVENT_WAKES, EVENTS, STATS, bump};

const BPF_NOEXIST: u64 = 1;
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;
/// What one event takes in the ring: the kernel's 8-byte record header, rounded up to 8.
const EVENT_RECORD_BYTES: u64 = (size_of::<FlowEvent>() as u64 + 8).next_multiple_of(8);

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
    // The coarse clock (the monotonic clock as of the last scheduler tick: up to 4 ms
    // behind at 250 Hz, 10 ms at 100 Hz) reads no hardware counter: a fraction of the
    // precise clock's cost on every new flow. Events tell when a flow started, which a
    // tick's precision serves.
    // SAFETY: no preconditions; a helper call.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    slot.write(FlowEvent {
        key: *key,
        timestamp_ns: now,
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
    slot.submit(wakeup(now));
}

/// Whether this event wakes the daemon. The ring's own rule wakes it for every event written
/// while it has read all the others, which is every event when it keeps up: an interrupt per
/// new flow. Here a CPU wakes it at most once per `EVENT_WAKE_INTERVAL_NS` on the coarse clock,
/// i.e. for its first event of a scheduler tick (read at once; the tick's later ones wait for
/// the next wakeup or the daemon's poll), and whenever the unread bytes reach a multiple of
/// `EVENT_WAKE_BYTES` (so a burst is read long before the ring fills). Two CPUs writing at
/// once may both count a crossing, or neither: the tick and the poll cover that.
#[inline(always)]
fn wakeup(now: u64) -> u64 {
    let Some(last) = EVENT_WAKES.get_ptr_mut(0) else {
        return 0;
    };
    // This event is counted: the ring's producer moved when it was reserved.
    let unread = EVENTS.query(BPF_RB_AVAIL_DATA);
    let filled_past =
        unread / EVENT_WAKE_BYTES != unread.saturating_sub(EVENT_RECORD_BYTES) / EVENT_WAKE_BYTES;
    // SAFETY: this CPU's entry: only this CPU touches it while the program runs.
    unsafe {
        if filled_past || now.wrapping_sub(*last) >= EVENT_WAKE_INTERVAL_NS {
            *last = now;
            BPF_RB_FORCE_WAKEUP
        } else {
            BPF_RB_NO_WAKEUP
        }
    }
}
