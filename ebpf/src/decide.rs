//! From a flow's evidence to a verdict under one policy slot: the source group, then the
//! ordered rules, first match wins, then the policy's default.

use aya_ebpf::{helpers::bpf_ktime_get_ns, maps::lpm_trie::Key};
use vigie_common::{
    action::{evidence, rule as rule_no},
    flow::FlowKey,
    learned::{self, LearnedKey},
    limits,
    matching::{Subject, matches},
    policy::{
        DST_V4_GROUP_BIT, SLOT_PREFIX_BITS, Settings, destination_index, dst_v4_block_index,
        dst_v4_block_offset, dst_v4_group_index,
    },
    signal::PortKey,
};

use crate::maps::{
    DECIDING, DESTINATIONS, DST_V4_8, DST_V4_24, DST_V6, LEARNED, LEARNED_FILTER, PORT_SIGNALS,
    RESOLVERS, RULES, SCRATCH, SRC_V4, SRC_V6,
};

/// What the address table (or DNS) says of the remote side.
pub struct AddressEvidence {
    pub service: u32,
    pub classes: u64,
    /// `evidence::ADDRESS`, `evidence::DNS`, or `evidence::NONE` without a service.
    pub evidence: u32,
}

/// What DNS taught of the remote address of the flow in `SCRATCH`, in `slot`, unless expired:
/// its service goes into the entry being decided (`DECIDING`), with DNS as evidence (the
/// address's country classes stay);
/// returns 1 then, else 0. Consulted when the address lists know nothing of the address (a
/// vendor's own list is the stronger statement). A global BPF function: its key and lookup
/// stay off the decision's stack.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn vigie_learned(slot: u64) -> u64 {
    let Some(key) = SCRATCH.get_ptr(0) else {
        return 0;
    };
    // SAFETY: this CPU's scratch entry, valid for the program run.
    let key = unsafe { &*key };
    // Most addresses were never learned: the filter says so without the table's lookup.
    let (word, bit) = learned::filter_position(slot as u32, key.family, &key.remote);
    if LEARNED_FILTER.get(word).is_none_or(|w| *w & bit == 0) {
        return 0;
    }
    let learned_key = LearnedKey {
        slot: (slot & 1) as u8,
        family: key.family,
        pad: [0; 2],
        addr: key.remote,
    };
    let Some(learned) = LEARNED.get_ptr(&learned_key) else {
        return 0;
    };
    let Some(entry) = DECIDING.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: a map value pointer and this CPU's entry, valid for this program run.
    unsafe {
        let (service, expires) = ((*learned).service, (*learned).expires_ns);
        if service == 0 || expires <= bpf_ktime_get_ns() {
            return 0;
        }
        (*entry).service = service;
        (*entry).evidence = evidence::DNS;
    }
    1
}

#[inline(always)]
pub fn destination(slot: u32, key: &FlowKey) -> AddressEvidence {
    let found = if key.family == 4 {
        let addr = u32::from_be_bytes([key.remote[0], key.remote[1], key.remote[2], key.remote[3]]);
        let number = dst_v4(slot, addr);
        DESTINATIONS.get(destination_index(slot, number)).copied()
    } else {
        DST_V6.get(&v6_key(slot, &key.remote)).copied()
    };
    found.map_or(
        AddressEvidence {
            service: 0,
            classes: 0,
            evidence: evidence::NONE,
        },
        |d| AddressEvidence {
            service: d.service,
            classes: d.classes,
            evidence: if d.service == 0 {
                evidence::NONE
            } else {
                evidence::ADDRESS
            },
        },
    )
}

#[inline(always)]
pub fn source_group(slot: u32, key: &FlowKey) -> u32 {
    let found = if key.family == 4 {
        SRC_V4.get(&v4_key(slot, &key.local)).map(|g| g.group)
    } else {
        SRC_V6.get(&v6_key(slot, &key.local)).map(|g| g.group)
    };
    found.unwrap_or(0)
}

#[inline(always)]
fn v4_key(slot: u32, addr: &[u8; 16]) -> Key<[u8; 5]> {
    let data = [slot as u8, addr[0], addr[1], addr[2], addr[3]];
    Key::new(SLOT_PREFIX_BITS + 32, data)
}

#[inline(always)]
fn v6_key(slot: u32, addr: &[u8; 16]) -> Key<[u8; 17]> {
    let mut data = [0u8; 17];
    data[0] = slot as u8;
    data[1..].copy_from_slice(addr);
    Key::new(SLOT_PREFIX_BITS + 128, data)
}

/// The destination number of an IPv4 address (host order) in a slot (see
/// `policy::DstV4Block`): its /24's entry, or the entry of its group when the /24 holds longer
/// prefixes. Array reads only, which the verifier inlines.
#[inline(always)]
fn dst_v4(slot: u32, addr: u32) -> u32 {
    let Some(block) = DST_V4_24.get(dst_v4_block_index(slot, addr)) else {
        return 0;
    };
    let entry = block[dst_v4_block_offset(addr)];
    if entry & DST_V4_GROUP_BIT == 0 {
        return u32::from(entry);
    }
    let group = u32::from(entry & !DST_V4_GROUP_BIT);
    DST_V4_8
        .get(dst_v4_group_index(slot, group))
        .map_or(0, |addresses| u32::from(addresses[(addr & 0xff) as usize]))
}

/// Walks the ordered rules of a slot: the first that matches decides, else the policy's default.
///
/// A global BPF function (external linkage, scalar arguments only): the verifier checks it once,
/// on its own, instead of once per path that reaches it, and the caller sees its result as one
/// unknown value rather than 65 different ones. Arguments are packed to fit the five registers.
///
/// - `policy`: slot (bits 0-7), rule count (8-15), default action (16-23)
/// - `flow`: service (bits 0-15), group (16-31), protocol (32-39), remote port (40-55)
/// - `classes`: the destination's classes
///
/// Returns the matching rule's `number` (bits 0-15; `rule::DEFAULT` for the default), the action (32-39), and bit 48 set if a rule matched.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn vigie_first_match(policy: u64, flow: u64, classes: u64) -> u64 {
    let slot = (policy & 1) as u32;
    let rule_count = ((policy >> 8) & 0xff) as u32;
    let default_action = (policy >> 16) & 0xff;
    let subject = Subject {
        service: (flow & 0xffff) as u32,
        group: ((flow >> 16) & 0xffff) as u32,
        proto: ((flow >> 32) & 0xff) as u8,
        remote_port: ((flow >> 40) & 0xffff) as u16,
        classes,
    };
    if let Some(block) = RULES.get(slot) {
        for index in 0..limits::MAX_RULES {
            if index >= rule_count {
                break;
            }
            let Some(rule) = block.rules.get(index as usize) else {
                break;
            };
            if matches(rule, &subject) {
                return u64::from(rule.number & 0xffff)
                    | (u64::from(rule.action & 0xff) << 32)
                    | MATCHED_BIT;
            }
        }
    }
    u64::from(rule_no::DEFAULT) | (default_action << 32)
}

/// Set in `vigie_first_match`'s result when a rule (not the default) decided.
pub const MATCHED_BIT: u64 = 1 << 48;

/// Packs the arguments of `vigie_first_match`.
#[inline(always)]
pub fn first_match(slot: u32, settings: &Settings, subject: &Subject) -> u64 {
    let policy = u64::from(slot & 1)
        | (u64::from(settings.rule_count.min(limits::MAX_RULES)) << 8)
        | (u64::from(settings.default_action & 0xff) << 16);
    let flow = u64::from(subject.service & 0xffff)
        | (u64::from(subject.group & 0xffff) << 16)
        | (u64::from(subject.proto) << 32)
        | (u64::from(subject.remote_port) << 40);
    vigie_first_match(policy, flow, subject.classes)
}

/// 1 if the flow in `SCRATCH` goes to a well-known encrypted DNS resolver (HTTPS or TLS port):
/// names vigie cannot learn from. A global BPF function, verified once.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn vigie_encrypted_dns() -> u64 {
    let Some(key) = SCRATCH.get_ptr(0) else {
        return 0;
    };
    // SAFETY: this CPU's scratch entry, valid for the program run.
    let key = unsafe { &*key };
    if key.remote_port != 443 && key.remote_port != 853 {
        return 0;
    }
    let resolver = LearnedKey {
        slot: 0,
        family: key.family,
        pad: [0; 2],
        addr: key.remote,
    };
    u64::from(RESOLVERS.get_ptr(&resolver).is_some())
}

/// The service whose signal port the flow in `SCRATCH` goes to, in `slot` (0 for none). A
/// global BPF function, verified once.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn vigie_port_service(slot: u64) -> u64 {
    let Some(key) = SCRATCH.get_ptr(0) else {
        return 0;
    };
    // SAFETY: this CPU's scratch entry, valid for the program run.
    let (proto, port) = unsafe { ((*key).proto, (*key).remote_port) };
    let signal = PortKey {
        slot: (slot & 1) as u8,
        proto,
        port,
    };
    match PORT_SIGNALS.get_ptr(&signal) {
        // SAFETY: a map value pointer, valid for this program run.
        Some(service) => u64::from(unsafe { *service }),
        None => 0,
    }
}
