//! From a flow's evidence to a verdict under one policy slot: the source group, then the
//! ordered rules, first match wins, then the policy's default.

use aya_ebpf::maps::lpm_trie::Key;
use vigie_common::{
    action::rule as rule_no,
    flow::FlowKey,
    limits,
    policy::{Rule, SLOT_PREFIX_BITS, Settings, condition},
};

use crate::maps::{DST_V4, DST_V6, RULES, SRC_V4, SRC_V6};

/// What the address table says of the remote side.
pub struct AddressEvidence {
    pub service: u32,
    pub classes: u64,
}

#[inline(always)]
pub fn destination(slot: u32, key: &FlowKey) -> AddressEvidence {
    let found = if key.family == 4 {
        DST_V4.get(&v4_key(slot, &key.remote)).copied()
    } else {
        DST_V6.get(&v6_key(slot, &key.remote)).copied()
    };
    found.map_or(
        AddressEvidence {
            service: 0,
            classes: 0,
        },
        |d| AddressEvidence {
            service: d.service,
            classes: d.classes,
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

/// What a flow is, for the rules.
pub struct Subject {
    pub service: u32,
    pub classes: u64,
    pub group: u32,
    pub proto: u8,
    pub remote_port: u16,
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
/// Returns the rule number (bits 0-31), the action (32-39), and bit 48 set if a rule matched.
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
    let base = slot * limits::MAX_RULES;
    for index in 0..limits::MAX_RULES {
        if index >= rule_count {
            break;
        }
        let Some(rule) = RULES.get(base + index) else {
            break;
        };
        if matches(rule, &subject) {
            return u64::from(index) | (u64::from(rule.action & 0xff) << 32) | MATCHED_BIT;
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

/// Whether a rule matches, computed with arithmetic only and no branch: each condition adds
/// to a mismatch mask. The verifier then walks one path per rule instead of one per
/// combination of conditions, which keeps the 64-rule walk far below its instruction limit.
#[inline(always)]
fn matches(rule: &Rule, subject: &Subject) -> bool {
    let wants = u64::from(rule.conditions);
    let service = u64::from(subject.service);
    let group = u64::from(subject.group);
    let proto = u64::from(rule.proto);
    let port = u64::from(subject.remote_port);
    let mut mismatch = 0u64;
    mismatch |= flag(wants, condition::SERVICES) & (bit128(rule.services, service) ^ 1);
    mismatch |= flag(wants, condition::NO_SERVICE) & nonzero(service);
    mismatch |= flag(wants, condition::GROUPS) & (bit64(rule.groups, group) ^ 1);
    mismatch |= bit64(rule.except_groups, group);
    mismatch |= flag(wants, condition::CLASSES) & (nonzero(rule.classes & subject.classes) ^ 1);
    mismatch |= nonzero(proto) & nonzero(proto ^ u64::from(subject.proto));
    mismatch |= below(port, u64::from(rule.port_min)) | below(u64::from(rule.port_max), port);
    mismatch == 0
}

/// 1 if `bit` is set in `wants`, else 0.
#[inline(always)]
const fn flag(wants: u64, bit: u32) -> u64 {
    (wants >> bit.trailing_zeros()) & 1
}

/// 1 if `x` is not zero, else 0 (the sign bit of `x | -x`).
#[inline(always)]
const fn nonzero(x: u64) -> u64 {
    (x | x.wrapping_neg()) >> 63
}

/// 1 if `a < b` for values below 2^63, else 0.
#[inline(always)]
const fn below(a: u64, b: u64) -> u64 {
    a.wrapping_sub(b) >> 63
}

/// Bit `n` of a 64-bit set (identifiers are below 64 by construction; the mask keeps any
/// other value from shifting out of range).
#[inline(always)]
const fn bit64(set: u64, n: u64) -> u64 {
    (set >> (n & 63)) & 1 & (nonzero(n >> 6) ^ 1)
}

/// Bit `n` of a 128-bit set held as two words.
#[inline(always)]
const fn bit128(set: [u64; 2], n: u64) -> u64 {
    let high = (n >> 6) & 1;
    let in_range = nonzero(n >> 7) ^ 1;
    let low_bit = (set[0] >> (n & 63)) & 1;
    let high_bit = (set[1] >> (n & 63)) & 1;
    ((low_bit & (high ^ 1)) | (high_bit & high)) & in_range
}
