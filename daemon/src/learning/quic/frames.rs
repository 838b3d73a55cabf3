//! Walks the frames of a decrypted client Initial payload (RFC 9000 12.4, 19).
//!
//! Only the frame types RFC 9000 permits in Initial packets are accepted;
//! anything else means we decrypted garbage or the client is broken, and a
//! gateway should not guess.

use crate::learning::quic::QuicError;
use crate::learning::quic::cursor::Cursor;

/// One CRYPTO frame's data and where it goes in the crypto stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CryptoFrame<'a> {
    pub offset: u64,
    pub data: &'a [u8],
}

/// What a payload carried that matters to the reader.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Frames<'a> {
    pub crypto: Vec<CryptoFrame<'a>>,
    /// Error code of a `CONNECTION_CLOSE` frame, if the client sent one.
    pub close: Option<u64>,
}

/// Parses every frame of `payload`; offsets in errors are payload offsets.
pub(crate) fn walk(payload: &[u8]) -> Result<Frames<'_>, QuicError> {
    let mut c = Cursor::new(payload, 0);
    let mut out = Frames::default();
    while !c.is_empty() {
        let at = c.offset();
        match c.varint("frame type")? {
            // PADDING and PING carry no body.
            0x00 | 0x01 => {}
            ty @ (0x02 | 0x03) => {
                c.varint("ACK largest acknowledged")?;
                c.varint("ACK delay")?;
                let ranges = c.varint("ACK range count")?;
                c.varint("ACK first range")?;
                // Each range is at least two bytes, so a huge count fails on
                // truncation long before it could loop for long.
                for _ in 0..ranges {
                    c.varint("ACK gap")?;
                    c.varint("ACK range length")?;
                }
                if ty == 0x03 {
                    c.varint("ACK ECT0 count")?;
                    c.varint("ACK ECT1 count")?;
                    c.varint("ACK ECN-CE count")?;
                }
            }
            0x06 => {
                let offset = c.varint("CRYPTO offset")?;
                let len = c.varint_len("CRYPTO length")?;
                let data = c.bytes(len, "CRYPTO data")?;
                out.crypto.push(CryptoFrame { offset, data });
            }
            ty @ (0x1c | 0x1d) => {
                let code = c.varint("CONNECTION_CLOSE error code")?;
                if ty == 0x1c {
                    c.varint("CONNECTION_CLOSE frame type")?;
                }
                let len = c.varint_len("CONNECTION_CLOSE reason length")?;
                c.bytes(len, "CONNECTION_CLOSE reason")?;
                out.close = Some(code);
            }
            frame_type => {
                return Err(QuicError::UnexpectedFrame {
                    frame_type,
                    offset: at,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_frames() {
        let payload = [
            0x01, // PING
            0x02, 0x05, 0x00, 0x01, 0x00, 0x01, 0x01, // ACK: 1 extra range
            0x03, 0x05, 0x00, 0x00, 0x00, 0x07, 0x08, 0x09, // ACK with ECN counts
            0x06, 0x40, 0x10, 0x03, b'a', b'b', b'c', // CRYPTO offset 16, 3 bytes
            0x00, 0x00, // PADDING
            0x06, 0x00, 0x01, b'z', // CRYPTO offset 0, 1 byte
            0x1c, 0x0a, 0x06, 0x02, b'n', b'o', // CONNECTION_CLOSE
            0x00,
        ];
        let f = walk(&payload).unwrap();
        assert_eq!(
            f.crypto,
            vec![
                CryptoFrame {
                    offset: 16,
                    data: b"abc"
                },
                CryptoFrame {
                    offset: 0,
                    data: b"z"
                }
            ]
        );
        assert_eq!(f.close, Some(0x0a));
    }

    #[test]
    fn rejects_stream_frame_with_offset() {
        let err = walk(&[0x00, 0x01, 0x08, 0x00]).unwrap_err();
        assert_eq!(
            err,
            QuicError::UnexpectedFrame {
                frame_type: 0x08,
                offset: 2
            }
        );
    }

    #[test]
    fn truncated_crypto_frame() {
        // Claims 5 bytes of data, has 2.
        let err = walk(&[0x06, 0x00, 0x05, 1, 2]).unwrap_err();
        assert_eq!(
            err,
            QuicError::Truncated {
                field: "CRYPTO length",
                offset: 2
            }
        );
        // Truncated inside the offset varint (2-byte encoding, 1 byte present).
        let err = walk(&[0x06, 0x40]).unwrap_err();
        assert_eq!(
            err,
            QuicError::Truncated {
                field: "CRYPTO offset",
                offset: 2
            }
        );
    }

    #[test]
    fn huge_ack_range_count_fails_fast() {
        let payload = [0x02, 0x00, 0x00, 0xbf, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00];
        assert!(matches!(
            walk(&payload),
            Err(QuicError::Truncated {
                field: "ACK gap",
                ..
            })
        ));
    }
}
