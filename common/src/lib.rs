//! Types shared by vigie's kernel programs and its daemon.
//!
//! Everything here is `#[repr(C)]` with explicit padding, because the kernel compares map keys
//! byte for byte: an implicit padding byte left uninitialised would silently break lookups.
//! Map names are at most 15 bytes (the kernel's limit).
#![no_std]

pub mod action;
pub mod answer;
pub mod counters;
pub mod event;
pub mod flow;
pub mod learned;
pub mod limits;
pub mod maps;
pub mod matching;
pub mod payload;
pub mod policy;
pub mod quic;
pub mod signal;
pub mod sni;
pub mod stun;

#[cfg(feature = "user")]
mod pod {
    //! `aya::Pod` lets the daemon read and write these types in maps.
    use crate::{counters, event, flow, learned, policy, signal, sni, stun};
    macro_rules! pod {
        ($($t:ty),* $(,)?) => { $(
            // SAFETY: every listed type is #[repr(C)], made only of integers and byte arrays,
            // with explicit padding fields, so any bit pattern is a valid value.
            unsafe impl aya::Pod for $t {}
        )* };
    }
    pod!(
        flow::FlowKey,
        flow::FlowEntry,
        policy::ActivePolicy,
        policy::Settings,
        policy::Rule,
        policy::RuleBlock,
        policy::Destination,
        policy::SourceGroup,
        counters::CounterKey,
        counters::CounterRow,
        counters::CounterValue,
        event::FlowEvent,
        sni::DomainKey,
        stun::StunKey,
        learned::LearnedKey,
        learned::LearnedEndpoint,
        signal::PortKey,
    );
}
