//! Flow events: from the kernel's ring buffer records to JSON lines on their own sink.

use vigie_common::event::FlowEvent;

/// Reads one ring-buffer record; a record too short to be vigie's is skipped, not misread.
#[must_use]
pub fn decode(bytes: &[u8]) -> Option<FlowEvent> {
    let size = std::mem::size_of::<FlowEvent>();
    bytes.get(..size).map(bytemuck::pod_read_unaligned)
}
