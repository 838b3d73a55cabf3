//! The single error type of the crate.

use std::fmt;

/// Why a datagram could not be read. Every variant names the field that was
/// wrong and, where it helps, the byte offset, so a gateway log line is enough
/// to diagnose a capture without re-running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuicError {
    /// The datagram (or a coalesced packet inside it) starts with a short
    /// header or is empty: it cannot open a connection.
    NotLongHeader {
        offset: usize,
        first_byte: Option<u8>,
    },
    /// A long header carries a version this crate has no Initial keys for.
    UnsupportedVersion(u32),
    /// A field runs past the end of the bytes that should hold it.
    Truncated { field: &'static str, offset: usize },
    /// A connection ID longer than the 20 bytes QUIC v1/v2 allow (RFC 9000 17.2).
    ConnectionIdTooLong {
        field: &'static str,
        len: u8,
        offset: usize,
    },
    /// The Length field of a long-header packet claims more bytes than the datagram has.
    LengthExceedsDatagram {
        offset: usize,
        length: u64,
        available: usize,
    },
    /// An Initial packet too short to hold a packet number and the 16-byte
    /// header-protection sample (RFC 9001 5.4.2).
    PacketTooShort { offset: usize, length: usize },
    /// AEAD authentication failed: wrong keys, corrupted or forged packet.
    Decrypt { offset: usize, packet_number: u64 },
    /// Reserved header bits were non-zero after a successful decryption (RFC 9000 17.2).
    ReservedBits { offset: usize, first_byte: u8 },
    /// A frame type not allowed (or not handled) in a client Initial packet.
    UnexpectedFrame { frame_type: u64, offset: usize },
    /// CRYPTO data beyond the reassembly limit.
    CryptoTooLarge { end: u64, limit: usize },
    /// The client closed the connection before its ClientHello was complete.
    ConnectionClosed { error_code: u64 },
    /// The first handshake message is not a ClientHello.
    NotClientHello { msg_type: u8 },
    /// A ClientHello field whose length or value is inconsistent.
    MalformedHello { field: &'static str, offset: usize },
    /// The same TLS extension appears twice; a gateway must not guess which one the server reads.
    DuplicateExtension { ext_type: u16 },
    /// The `server_name` host name is empty or not printable ASCII.
    InvalidServerName { offset: usize },
}

impl fmt::Display for QuicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotLongHeader {
                offset,
                first_byte: Some(b),
            } => write!(
                f,
                "byte {offset}: first byte {b:#04x} is not a QUIC long header (high bit clear)"
            ),
            Self::NotLongHeader {
                offset,
                first_byte: None,
            } => {
                write!(f, "byte {offset}: no packet (empty datagram)")
            }
            Self::UnsupportedVersion(v) => {
                write!(f, "bytes 1..5: unsupported QUIC version {v:#010x}")
            }
            Self::Truncated { field, offset } => {
                write!(f, "byte {offset}: truncated while reading {field}")
            }
            Self::ConnectionIdTooLong { field, len, offset } => {
                write!(f, "byte {offset}: {field} length {len} exceeds 20")
            }
            Self::LengthExceedsDatagram {
                offset,
                length,
                available,
            } => write!(
                f,
                "byte {offset}: long header Length {length} exceeds the {available} bytes left in the datagram"
            ),
            Self::PacketTooShort { offset, length } => write!(
                f,
                "byte {offset}: Initial packet body of {length} bytes is too short for a packet number and a 16-byte sample"
            ),
            Self::Decrypt {
                offset,
                packet_number,
            } => write!(
                f,
                "byte {offset}: AEAD authentication failed for Initial packet number {packet_number}"
            ),
            Self::ReservedBits { offset, first_byte } => write!(
                f,
                "byte {offset}: reserved bits set in unprotected first byte {first_byte:#04x}"
            ),
            Self::UnexpectedFrame { frame_type, offset } => write!(
                f,
                "payload byte {offset}: frame type {frame_type:#x} is not allowed in a client Initial"
            ),
            Self::CryptoTooLarge { end, limit } => {
                write!(
                    f,
                    "CRYPTO data up to offset {end} exceeds the {limit}-byte limit"
                )
            }
            Self::ConnectionClosed { error_code } => write!(
                f,
                "client sent CONNECTION_CLOSE (error code {error_code:#x}) before its ClientHello was complete"
            ),
            Self::NotClientHello { msg_type } => write!(
                f,
                "CRYPTO byte 0: handshake message type {msg_type} is not ClientHello (1)"
            ),
            Self::MalformedHello { field, offset } => {
                write!(f, "ClientHello byte {offset}: malformed {field}")
            }
            Self::DuplicateExtension { ext_type } => {
                write!(f, "ClientHello: extension {ext_type:#06x} appears twice")
            }
            Self::InvalidServerName { offset } => write!(
                f,
                "ClientHello byte {offset}: server_name host name is empty or not printable ASCII"
            ),
        }
    }
}

impl std::error::Error for QuicError {}
