//! The payload ring's records (`vigie_common::payload::PayloadRecord`), read from their bytes.

use vigie_common::{
    flow::FlowKey,
    payload::{CAPTURE_BYTES, PayloadRecord},
};

/// One payload the kernel handed over.
#[derive(Debug)]
pub struct Payload<'a> {
    pub key: FlowKey,
    /// When the packet crossed the hook (`CLOCK_MONOTONIC`, ns).
    pub timestamp_ns: u64,
    /// `vigie_common::payload::kind`.
    pub kind: u32,
    /// The bytes copied (at most `CAPTURE_BYTES`).
    pub bytes: &'a [u8],
    /// The payload's length on the wire.
    pub wire_len: u32,
}

impl Payload<'_> {
    /// Whether the kernel copied only the start of the payload.
    #[must_use]
    pub fn cut(&self) -> bool {
        self.wire_len as usize > self.bytes.len()
    }
}

/// Reads a record, or None if it is shorter than the record layout (a kernel built from other
/// sources than this daemon).
#[must_use]
pub fn decode(record: &[u8]) -> Option<Payload<'_>> {
    if record.len() < size_of::<PayloadRecord>() {
        return None;
    }
    let key_len = size_of::<FlowKey>();
    let key: FlowKey = bytemuck::pod_read_unaligned(&record[..key_len]);
    let u32_at = |at: usize| {
        u32::from_ne_bytes([record[at], record[at + 1], record[at + 2], record[at + 3]])
    };
    let timestamp_ns = u64::from_ne_bytes(record[key_len..key_len + 8].try_into().ok()?);
    let kind = u32_at(key_len + 8);
    let len = (u32_at(key_len + 12) as usize).min(CAPTURE_BYTES);
    let wire_len = u32_at(key_len + 16);
    let bytes_at = key_len + 24;
    Some(Payload {
        key,
        timestamp_ns,
        kind,
        bytes: &record[bytes_at..bytes_at + len],
        wire_len,
    })
}

/// Builds a record's bytes, as the kernel lays it out (for tests and benchmarks).
#[must_use]
pub fn encode(key: &FlowKey, timestamp_ns: u64, kind: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = bytemuck::bytes_of(key).to_vec();
    out.extend_from_slice(&timestamp_ns.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    let len = payload.len().min(CAPTURE_BYTES);
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&payload[..len]);
    out.resize(size_of::<PayloadRecord>(), 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written() {
        let key = FlowKey {
            local: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            remote: [192, 0, 2, 53, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            local_port: 40000,
            remote_port: 53,
            proto: 17,
            family: 4,
            pad: [0; 2],
        };
        let bytes = encode(&key, 123_456, 1, b"\x12\x34answer");
        let payload = decode(&bytes).expect("a whole record");
        assert_eq!(payload.key, key);
        assert_eq!(payload.timestamp_ns, 123_456);
        assert_eq!(payload.kind, 1);
        assert_eq!(payload.bytes, b"\x12\x34answer");
        assert!(!payload.cut());
        assert!(decode(&bytes[..bytes.len() - 1]).is_none());
    }

    #[test]
    fn a_payload_longer_than_the_capture_is_cut() {
        let bytes = encode(&FlowKey::default(), 1, 3, &[7u8; CAPTURE_BYTES + 100]);
        let payload = decode(&bytes).expect("a whole record");
        assert_eq!(payload.bytes.len(), CAPTURE_BYTES);
        assert!(payload.cut());
    }
}
