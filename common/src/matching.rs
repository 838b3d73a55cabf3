//! Whether a rule matches a flow: the one definition that the kernel's rule walk and the
//! daemon's analyses (`vigie check`'s shadowed rules) both run, so that they cannot disagree.
//!
//! Computed with arithmetic only and no branch: each condition adds to a mismatch mask. The
//! verifier then walks one path per rule instead of one per combination of conditions, which
//! keeps the 64-rule walk far below its instruction limit.

// Inlining is what lets the kernel's verifier see the whole walk as straight-line arithmetic.
#![allow(
    clippy::inline_always,
    reason = "the kernel rule walk needs these inlined"
)]

use crate::policy::{Rule, condition};

/// What a flow is, for the rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    /// Kernel service id, 0 when no service was recognised.
    pub service: u32,
    /// Classes the destination carries.
    pub classes: u64,
    /// Source group id, 0 for none.
    pub group: u32,
    pub proto: u8,
    pub remote_port: u16,
}

#[inline(always)]
#[must_use]
pub fn matches(rule: &Rule, subject: &Subject) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    const ANY: Rule = Rule {
        services: [0; 2],
        groups: 0,
        except_groups: 0,
        classes: 0,
        conditions: 0,
        action: 0,
        proto: 0,
        port_min: 0,
        port_max: u16::MAX,
        number: 0,
        pad: 0,
    };

    fn flow(service: u32, group: u32, proto: u8, port: u16) -> Subject {
        Subject {
            service,
            classes: 0,
            group,
            proto,
            remote_port: port,
        }
    }

    #[test]
    fn a_rule_without_conditions_matches_everything() {
        assert!(matches(&ANY, &flow(0, 0, 1, 0)));
        assert!(matches(&ANY, &flow(127, 63, 17, 65535)));
    }

    #[test]
    fn services_in_both_words() {
        let rule = Rule {
            services: [1 << 3, 1 << 1],
            conditions: condition::SERVICES,
            ..ANY
        };
        assert!(matches(&rule, &flow(3, 0, 6, 443)));
        assert!(matches(&rule, &flow(65, 0, 6, 443)));
        assert!(!matches(&rule, &flow(1, 0, 6, 443)));
        assert!(!matches(&rule, &flow(0, 0, 6, 443)));
        assert!(!matches(&rule, &flow(129, 0, 6, 443)), "past the 128 ids");
    }

    #[test]
    fn unknown_groups_exceptions_protocol_and_ports() {
        let unknown = Rule {
            conditions: condition::NO_SERVICE,
            ..ANY
        };
        assert!(matches(&unknown, &flow(0, 0, 6, 1)));
        assert!(!matches(&unknown, &flow(2, 0, 6, 1)));

        let groups = Rule {
            groups: 0b110,
            except_groups: 0b100,
            conditions: condition::GROUPS,
            ..ANY
        };
        assert!(matches(&groups, &flow(0, 1, 6, 1)));
        assert!(!matches(&groups, &flow(0, 2, 6, 1)), "excepted");
        assert!(!matches(&groups, &flow(0, 0, 6, 1)), "in no group");

        let ports = Rule {
            proto: 17,
            port_min: 3478,
            port_max: 3481,
            ..ANY
        };
        assert!(matches(&ports, &flow(0, 0, 17, 3478)));
        assert!(matches(&ports, &flow(0, 0, 17, 3481)));
        assert!(!matches(&ports, &flow(0, 0, 17, 3482)));
        assert!(!matches(&ports, &flow(0, 0, 17, 3477)));
        assert!(!matches(&ports, &flow(0, 0, 6, 3478)));
    }

    #[test]
    fn classes_need_one_shared_bit() {
        let rule = Rule {
            classes: 0b1010,
            conditions: condition::CLASSES,
            ..ANY
        };
        let mut subject = flow(0, 0, 6, 443);
        assert!(!matches(&rule, &subject));
        subject.classes = 0b0010;
        assert!(matches(&rule, &subject));
    }
}
