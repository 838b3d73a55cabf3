//! Reassembly of the client's CRYPTO stream at the Initial level.
//!
//! Clients such as current Chrome cut the ClientHello into many CRYPTO frames
//! and shuffle them across packets, so data arrives in any order and may
//! overlap (retransmissions). Memory is bounded: no byte beyond
//! [`MAX_CRYPTO`] is accepted, whatever the frames claim.

use crate::learning::quic::QuicError;

/// Largest crypto-stream offset accepted. A ClientHello with post-quantum key
/// shares is a few KiB, and the kernel hands over at most eight datagrams of
/// a flow (some 12 KiB): 16 KiB is ample, and caps what each of the
/// thousands of connections read at once can make the daemon hold.
pub const MAX_CRYPTO: usize = 16 * 1024;

#[derive(Debug, Default)]
pub(crate) struct CryptoStream {
    data: Vec<u8>,
    /// One flag per byte of `data`: received or not. A bitmap rather than a
    /// range list keeps every insert linear in its own length, so a flood of
    /// tiny disjoint fragments cannot make reassembly quadratic.
    have: Vec<bool>,
    /// Length of the gap-free prefix starting at offset 0.
    prefix: usize,
}

impl CryptoStream {
    /// Stores `bytes` at `offset`. Overlapping data overwrites: RFC 9000 19.6
    /// requires retransmitted CRYPTO data to be identical, and deciding which
    /// copy of a misbehaving client's data is "right" is not our job.
    pub(crate) fn insert(&mut self, offset: u64, bytes: &[u8]) -> Result<(), QuicError> {
        let end = u64::try_from(bytes.len())
            .ok()
            .and_then(|n| offset.checked_add(n));
        let range = end
            .and_then(|end| usize::try_from(end).ok())
            .filter(|&end| end <= MAX_CRYPTO)
            .map(|end| (end - bytes.len(), end));
        let Some((start, end)) = range else {
            return Err(QuicError::CryptoTooLarge {
                end: end.unwrap_or(u64::MAX),
                limit: MAX_CRYPTO,
            });
        };
        if bytes.is_empty() {
            return Ok(());
        }
        if self.data.len() < end {
            self.data.resize(end, 0);
            self.have.resize(end, false);
        }
        if let (Some(dst), Some(flags)) =
            (self.data.get_mut(start..end), self.have.get_mut(start..end))
        {
            dst.copy_from_slice(bytes);
            flags.fill(true);
        }
        while self.have.get(self.prefix) == Some(&true) {
            self.prefix += 1;
        }
        Ok(())
    }

    /// The bytes received without a gap from offset 0.
    pub(crate) fn contiguous(&self) -> &[u8] {
        self.data.get(..self.prefix).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_and_overlap() {
        let mut s = CryptoStream::default();
        s.insert(6, b"ghij").unwrap();
        assert_eq!(s.contiguous(), b"");
        s.insert(0, b"abc").unwrap();
        assert_eq!(s.contiguous(), b"abc");
        s.insert(2, b"cdefg").unwrap(); // overlaps both neighbours
        assert_eq!(s.contiguous(), b"abcdefghij");
        s.insert(0, b"").unwrap();
        assert_eq!(s.contiguous(), b"abcdefghij");
    }

    #[test]
    fn bounded() {
        let mut s = CryptoStream::default();
        s.insert(MAX_CRYPTO as u64 - 1, b"x").unwrap();
        assert_eq!(
            s.insert(MAX_CRYPTO as u64 - 1, b"xy"),
            Err(QuicError::CryptoTooLarge {
                end: MAX_CRYPTO as u64 + 1,
                limit: MAX_CRYPTO
            })
        );
        assert_eq!(
            s.insert(u64::MAX, b"x"),
            Err(QuicError::CryptoTooLarge {
                end: u64::MAX,
                limit: MAX_CRYPTO
            })
        );
        assert_eq!(s.contiguous(), b"");
    }
}
