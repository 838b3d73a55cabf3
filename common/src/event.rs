//! The record the kernel writes to the ring buffer for the first packet of a flow that a
//! non-default rule decided (and for a flow whose verdict a new policy changed).

use crate::flow::FlowKey;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct FlowEvent {
    pub key: FlowKey,
    /// `bpf_ktime_get_coarse_ns`: the monotonic clock (since boot) at the last tick.
    pub timestamp_ns: u64,
    pub classes: u64,
    pub service: u32,
    pub evidence: u32,
    pub group: u32,
    pub rule: u32,
    /// The action the rule asked for.
    pub action: u32,
    pub generation: u32,
    /// `flow::flags` bits.
    pub flags: u32,
    /// Length of the packet that opened the flow.
    pub packet_len: u32,
}
