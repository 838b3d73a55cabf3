//! A bounds-checked reader: every access goes through here, so malformed
//! input turns into an error instead of a panic.

use crate::learning::quic::QuicError;

pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Added to `pos` in errors, so offsets refer to the enclosing buffer
    /// (the datagram, the payload, the handshake message) rather than a sub-slice.
    base: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    /// Offset of the next byte, in the enclosing buffer's coordinates.
    pub(crate) fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], QuicError> {
        let end = self.pos.checked_add(n);
        match end.and_then(|end| self.buf.get(self.pos..end)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(QuicError::Truncated {
                field,
                offset: self.offset(),
            }),
        }
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, QuicError> {
        Ok(self.bytes(1, field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, QuicError> {
        let b = self.bytes(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, QuicError> {
        let b = self.bytes(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// QUIC variable-length integer (RFC 9000 16): the two top bits give the
    /// encoded length 1, 2, 4 or 8 bytes.
    pub(crate) fn varint(&mut self, field: &'static str) -> Result<u64, QuicError> {
        let start = self.pos;
        let first = self.u8(field)?;
        let len = 1usize << (first >> 6);
        let rest = self
            .bytes(len - 1, field)
            .inspect_err(|_| self.pos = start)?;
        Ok(rest
            .iter()
            .fold(u64::from(first & 0x3f), |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// A varint used as a length: it must fit in what is left, which also
    /// makes the conversion to `usize` lossless.
    pub(crate) fn varint_len(&mut self, field: &'static str) -> Result<usize, QuicError> {
        let offset = self.offset();
        let v = self.varint(field)?;
        match usize::try_from(v) {
            Ok(n) if n <= self.remaining() => Ok(n),
            _ => Err(QuicError::Truncated { field, offset }),
        }
    }
}
