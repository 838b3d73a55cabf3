//! Initial packets: versions, long-header parsing, Initial key derivation
//! (RFC 9001 5.2, RFC 9369 3.3), header protection removal (RFC 9001 5.4)
//! and payload decryption (RFC 9001 5.3).

use ring::aead::{self, quic};
use ring::hkdf;

use crate::learning::quic::QuicError;
use crate::learning::quic::cursor::Cursor;

/// The QUIC versions whose Initial packets this crate can decrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// QUIC version 1, RFC 9000 (0x00000001).
    V1,
    /// QUIC version 2, RFC 9369 (0x6b3343cf).
    V2,
    /// draft-ietf-quic-transport-29 (0xff00001d), still seen from old clients.
    Draft29,
}

impl Version {
    /// The 32-bit value carried in the long header.
    #[must_use]
    pub const fn wire(self) -> u32 {
        match self {
            Self::V1 => 0x0000_0001,
            Self::V2 => 0x6b33_43cf,
            Self::Draft29 => 0xff00_001d,
        }
    }

    /// The version for a long-header version field, if it is one we can read.
    #[must_use]
    pub const fn from_wire(v: u32) -> Option<Self> {
        match v {
            0x0000_0001 => Some(Self::V1),
            0x6b33_43cf => Some(Self::V2),
            0xff00_001d => Some(Self::Draft29),
            _ => None,
        }
    }

    /// Salt for HKDF-Extract of the initial secret.
    fn salt(self) -> &'static [u8; 20] {
        match self {
            Self::V1 => &SALT_V1,
            Self::V2 => &SALT_V2,
            Self::Draft29 => &SALT_DRAFT29,
        }
    }

    /// HKDF-Expand-Label labels for the packet key, IV and header-protection key.
    /// v2 changed them so that v1 and v2 keys never coincide (RFC 9369 3.3.2).
    fn labels(self) -> [&'static [u8]; 3] {
        match self {
            Self::V1 | Self::Draft29 => [b"quic key", b"quic iv", b"quic hp"],
            Self::V2 => [b"quicv2 key", b"quicv2 iv", b"quicv2 hp"],
        }
    }

    /// Maps the two long-header type bits to a packet kind; v2 rotated the
    /// codes (RFC 9369 3.2) so middleboxes cannot ossify on the v1 values.
    fn kind(self, type_bits: u8) -> PacketKind {
        let v1_bits = match self {
            Self::V1 | Self::Draft29 => type_bits,
            Self::V2 => type_bits.wrapping_sub(1) & 3,
        };
        match v1_bits {
            0 => PacketKind::Initial,
            1 => PacketKind::ZeroRtt,
            2 => PacketKind::Handshake,
            _ => PacketKind::Retry,
        }
    }
}

const SALT_V1: [u8; 20] = unhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a");
const SALT_V2: [u8; 20] = unhex("0dede3def700a6db819381be6e269dcbf9bd2ed9");
const SALT_DRAFT29: [u8; 20] = unhex("afbfec289993d24c9e9786f19c6111e04390a899");

/// Hex to bytes at compile time, so the salts read exactly as printed in the
/// RFCs. Only ever evaluated in `const` items: a bad literal fails the build.
const fn unhex<const N: usize>(s: &str) -> [u8; N] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("bad hex digit"),
        }
    }
    let b = s.as_bytes();
    assert!(b.len() == 2 * N, "hex literal has the wrong length");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

/// Reads the version of the first packet of a datagram.
///
/// Returns `Ok(Some(_))` for a version this crate can decrypt, `Ok(None)` for
/// a long header with any other version (its value is reported by
/// [`long_header_version`] and by [`crate::learning::quic::InitialReader::push`] as
/// [`QuicError::UnsupportedVersion`]).
///
/// # Errors
/// [`QuicError::NotLongHeader`] for an empty datagram or a short header,
/// [`QuicError::Truncated`] when the version field is cut off.
pub fn version_of(datagram: &[u8]) -> Result<Option<Version>, QuicError> {
    long_header_version(datagram).map(Version::from_wire)
}

/// The raw 32-bit version of the long header at the start of `datagram`.
///
/// # Errors
/// As [`version_of`].
pub fn long_header_version(datagram: &[u8]) -> Result<u32, QuicError> {
    let mut c = Cursor::new(datagram, 0);
    let first = c.u8("first byte").map_err(|_| QuicError::NotLongHeader {
        offset: 0,
        first_byte: None,
    })?;
    if first & 0x80 == 0 {
        return Err(QuicError::NotLongHeader {
            offset: 0,
            first_byte: Some(first),
        });
    }
    c.u32("version")
}

/// Raw client Initial secrets; kept as bytes so tests can compare them with
/// the RFC vectors before they are turned into `ring` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Secrets {
    pub key: [u8; 16],
    pub iv: [u8; 12],
    pub hp: [u8; 16],
}

/// Output length for `ring`'s HKDF, which wants a type describing it.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// The `HkdfLabel` structure of TLS 1.3 (RFC 8446 7.1) with an empty context:
/// uint16 length, opaque label<7..255> = "tls13 " + label, opaque context<0..255>.
fn hkdf_label(len: usize, label: &[u8]) -> Vec<u8> {
    let full = [b"tls13 ".as_slice(), label].concat();
    let mut info = Vec::with_capacity(4 + full.len());
    // Lengths are compile-time constants (<= 32) and labels are short literals.
    info.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
    info.push(u8::try_from(full.len()).unwrap_or(u8::MAX));
    info.extend_from_slice(&full);
    info.push(0);
    info
}

// `ring` only fails HKDF-Expand when the output exceeds 255 hash lengths; the
// lengths below are at most 32 bytes, so the `expect`s cannot trigger.

/// HKDF-Expand-Label producing a new secret (used for "client in").
fn expand_secret(prk: &hkdf::Prk, label: &[u8]) -> hkdf::Prk {
    let info = hkdf_label(32, label);
    prk.expand(&[&info], hkdf::HKDF_SHA256)
        .map(hkdf::Prk::from)
        .expect("HKDF-Expand of 32 bytes")
}

/// HKDF-Expand-Label producing `N` raw bytes (key, IV, header-protection key).
fn expand_bytes<const N: usize>(prk: &hkdf::Prk, label: &[u8]) -> [u8; N] {
    let info = hkdf_label(N, label);
    let mut out = [0u8; N];
    prk.expand(&[&info], Len(N))
        .and_then(|okm| okm.fill(&mut out))
        .expect("HKDF-Expand of at most 16 bytes");
    out
}

/// Client Initial secrets for a connection (RFC 9001 5.2): everything is
/// derived from public values, which is exactly why an on-path gateway can
/// read the ClientHello.
pub(crate) fn client_secrets(version: Version, dcid: &[u8]) -> Secrets {
    let initial = hkdf::Salt::new(hkdf::HKDF_SHA256, version.salt()).extract(dcid);
    let client = expand_secret(&initial, b"client in");
    let [key, iv, hp] = version.labels();
    Secrets {
        key: expand_bytes(&client, key),
        iv: expand_bytes(&client, iv),
        hp: expand_bytes(&client, hp),
    }
}

/// Ready-to-use keys for opening the client's Initial packets.
pub(crate) struct Opener {
    pub version: Version,
    /// The Destination Connection ID the keys were derived from.
    pub dcid: Vec<u8>,
    aead: aead::LessSafeKey,
    hp: quic::HeaderProtectionKey,
    iv: [u8; 12],
}

impl Opener {
    pub(crate) fn new(version: Version, dcid: &[u8]) -> Self {
        let s = client_secrets(version, dcid);
        // Both constructors only reject a key of the wrong length; ours are
        // fixed-size arrays of the right one.
        let key = aead::UnboundKey::new(&aead::AES_128_GCM, &s.key).expect("16-byte AES key");
        let hp = quic::HeaderProtectionKey::new(&quic::AES_128, &s.hp).expect("16-byte HP key");
        Self {
            version,
            dcid: dcid.to_vec(),
            aead: aead::LessSafeKey::new(key),
            hp,
            iv: s.iv,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PacketKind {
    Initial,
    ZeroRtt,
    Handshake,
    Retry,
}

/// The parts of a long header needed to find and open a packet. Offsets are
/// absolute positions in the datagram.
#[derive(Debug)]
pub(crate) struct LongHeader<'a> {
    pub start: usize,
    pub version: Version,
    pub kind: PacketKind,
    pub dcid: &'a [u8],
    /// Where the (protected) packet number begins.
    pub pn_offset: usize,
    /// One past the last byte of this packet; the next coalesced packet starts here.
    pub end: usize,
}

/// Parses the long header starting at `start` (RFC 9000 17.2).
pub(crate) fn parse_long_header(
    datagram: &[u8],
    start: usize,
) -> Result<LongHeader<'_>, QuicError> {
    let rest = datagram.get(start..).unwrap_or_default();
    let mut c = Cursor::new(rest, start);
    let first = c.u8("first byte").map_err(|_| QuicError::NotLongHeader {
        offset: start,
        first_byte: None,
    })?;
    if first & 0x80 == 0 {
        return Err(QuicError::NotLongHeader {
            offset: start,
            first_byte: Some(first),
        });
    }
    let raw = c.u32("version")?;
    let version = Version::from_wire(raw).ok_or(QuicError::UnsupportedVersion(raw))?;
    let dcid = connection_id(&mut c, "DCID")?;
    connection_id(&mut c, "SCID")?;
    let kind = version.kind((first >> 4) & 3);
    if kind == PacketKind::Retry {
        // Retry has no Length field and only servers send it; whatever
        // follows cannot be delimited, so it ends the datagram.
        return Ok(LongHeader {
            start,
            version,
            kind,
            dcid,
            pn_offset: datagram.len(),
            end: datagram.len(),
        });
    }
    if kind == PacketKind::Initial {
        let token_len = c.varint_len("token length")?;
        c.bytes(token_len, "token")?;
    }
    let length_at = c.offset();
    let length = c.varint("Length")?;
    let available = c.remaining();
    let body = usize::try_from(length)
        .ok()
        .filter(|&n| n <= available)
        .ok_or(QuicError::LengthExceedsDatagram {
            offset: length_at,
            length,
            available,
        })?;
    let pn_offset = c.offset();
    Ok(LongHeader {
        start,
        version,
        kind,
        dcid,
        pn_offset,
        end: pn_offset + body,
    })
}

fn connection_id<'a>(c: &mut Cursor<'a>, field: &'static str) -> Result<&'a [u8], QuicError> {
    let offset = c.offset();
    let len = c.u8(field)?;
    // All versions we accept cap connection IDs at 20 bytes; anything longer
    // is malformed and would otherwise be fed to key derivation.
    if len > 20 {
        return Err(QuicError::ConnectionIdTooLong { field, len, offset });
    }
    c.bytes(usize::from(len), field)
}

/// Recovers a full packet number from its truncated encoding (RFC 9000 A.3):
/// picks the value closest to one past the largest number seen so far.
pub(crate) fn decode_packet_number(largest: Option<u64>, truncated: u64, pn_len: usize) -> u64 {
    const MAX: u64 = 1 << 62;
    let expected = largest.map_or(0, |l| l.saturating_add(1));
    let bits = 8 * pn_len.clamp(1, 4);
    let window = 1u64 << bits;
    let half = window / 2;
    let candidate = (expected & !(window - 1)) | (truncated & (window - 1));
    if candidate.saturating_add(half) <= expected && candidate < MAX - window {
        candidate + window
    } else if candidate > expected.saturating_add(half) && candidate >= window {
        candidate - window
    } else {
        candidate
    }
}

/// A decrypted Initial packet.
pub(crate) struct Opened {
    pub packet_number: u64,
    pub payload: Vec<u8>,
}

/// Removes header protection and decrypts one Initial packet. Works on copies,
/// so a failure leaves the caller's state untouched.
pub(crate) fn open_initial(
    opener: &Opener,
    datagram: &[u8],
    hdr: &LongHeader<'_>,
    largest: Option<u64>,
) -> Result<Opened, QuicError> {
    let too_short = QuicError::PacketTooShort {
        offset: hdr.pn_offset,
        length: hdr.end - hdr.pn_offset,
    };
    // The sample starts 4 bytes after the packet number whatever its real
    // length (RFC 9001 5.4.2), so the body must hold at least 4 + 16 bytes.
    let sample = datagram
        .get(hdr.pn_offset + 4..hdr.pn_offset + 20)
        .filter(|_| hdr.pn_offset + 20 <= hdr.end)
        .ok_or(too_short.clone())?;
    let mask = opener.hp.new_mask(sample).map_err(|_| too_short.clone())?;

    let first = datagram.get(hdr.start).ok_or(too_short.clone())? ^ (mask[0] & 0x0f);
    let pn_len = usize::from(first & 0x03) + 1;
    let header_end = hdr.pn_offset + pn_len;
    let mut header = datagram
        .get(hdr.start..header_end)
        .ok_or(too_short.clone())?
        .to_vec();
    header[0] = first;
    let pn_at = hdr.pn_offset - hdr.start;
    let mut truncated = 0u64;
    for (i, m) in mask[1..=pn_len].iter().enumerate() {
        header[pn_at + i] ^= m;
        truncated = (truncated << 8) | u64::from(header[pn_at + i]);
    }
    let packet_number = decode_packet_number(largest, truncated, pn_len);

    // Nonce = IV XOR packet number, left-padded to the IV length (RFC 9001 5.3).
    let mut nonce = opener.iv;
    for (n, p) in nonce[4..].iter_mut().zip(packet_number.to_be_bytes()) {
        *n ^= p;
    }
    let mut payload = datagram.get(header_end..hdr.end).ok_or(too_short)?.to_vec();
    let plain_len = opener
        .aead
        .open_in_place(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(&header),
            &mut payload,
        )
        .map_err(|_| QuicError::Decrypt {
            offset: hdr.start,
            packet_number,
        })?
        .len();
    payload.truncate(plain_len);

    // Checked only after authentication, as RFC 9000 17.2 asks: before it the
    // bits are attacker-controlled noise.
    if first & 0x0c != 0 {
        return Err(QuicError::ReservedBits {
            offset: hdr.start,
            first_byte: first,
        });
    }
    Ok(Opened {
        packet_number,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learning::quic::testutil::{Packet, hex, seal_initial};

    const RFC_DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];

    #[test]
    fn rfc9001_client_keys() {
        let s = client_secrets(Version::V1, &RFC_DCID);
        assert_eq!(s.key.to_vec(), hex("1f369613dd76d5467730efcbe3b1a22d"));
        assert_eq!(s.iv.to_vec(), hex("fa044b2f42a3fd3b46fb255c"));
        assert_eq!(s.hp.to_vec(), hex("9f50449e04a0e810283a1e9933adedd2"));
    }

    #[test]
    fn rfc9369_client_keys() {
        let s = client_secrets(Version::V2, &RFC_DCID);
        assert_eq!(s.key.to_vec(), hex("8b1a0bc121284290a29e0971b5cd045d"));
        assert_eq!(s.iv.to_vec(), hex("91f73e2351d8fa91660e909f"));
        assert_eq!(s.hp.to_vec(), hex("45b95e15235d6f45a6b19cbcb0294ba9"));
    }

    #[test]
    fn hkdf_label_layout() {
        // RFC 9001 A.1 lists the HkdfLabel bytes for "client in" and "quic hp".
        assert_eq!(
            hkdf_label(32, b"client in"),
            hex("00200f746c73313320636c69656e7420696e00")
        );
        assert_eq!(
            hkdf_label(16, b"quic hp"),
            hex("00100d746c733133207175696320687000")
        );
    }

    /// Re-seals the RFC's plaintext with our own test sealer and compares it
    /// with the published packet byte for byte: this checks the sealer used
    /// by the other tests and guards the fixture files against typos.
    #[test]
    fn rfc_packets_match_our_sealer() {
        let mut payload = hex(include_str!("fixtures/rfc9001_a2_crypto_frame.hex"));
        payload.resize(1162, 0);
        for (version, fixture) in [
            (
                Version::V1,
                include_str!("fixtures/rfc9001_a2_client_initial.hex"),
            ),
            (
                Version::V2,
                include_str!("fixtures/rfc9369_a2_client_initial.hex"),
            ),
        ] {
            let sealed = seal_initial(&Packet {
                version,
                key_dcid: &RFC_DCID,
                dcid: &RFC_DCID,
                scid: &[],
                token: &[],
                pn: 2,
                pn_len: 4,
                payload: &payload,
            });
            assert_eq!(sealed, hex(fixture), "{version:?}");
        }
    }

    #[test]
    fn packet_number_recovery() {
        // RFC 9000 A.3 example.
        assert_eq!(
            decode_packet_number(Some(0xa82f_30ea), 0x9b32, 2),
            0xa82f_9b32
        );
        assert_eq!(decode_packet_number(None, 2, 4), 2);
        assert_eq!(decode_packet_number(None, 0, 1), 0);
        // Wraps forward past a 1-byte window...
        assert_eq!(decode_packet_number(Some(0xff), 0x01, 1), 0x101);
        // ...and back for a late packet.
        assert_eq!(decode_packet_number(Some(0x101), 0xff, 1), 0xff);
        assert_eq!(
            decode_packet_number(Some((1 << 62) - 1), 0xffff_ffff, 4),
            (1 << 62) - 1
        );
    }

    #[test]
    fn versions() {
        let v1 = hex(include_str!("fixtures/rfc9001_a2_client_initial.hex"));
        assert_eq!(version_of(&v1), Ok(Some(Version::V1)));
        let v2 = hex(include_str!("fixtures/rfc9369_a2_client_initial.hex"));
        assert_eq!(version_of(&v2), Ok(Some(Version::V2)));
        assert_eq!(
            version_of(&[0xc0, 0xff, 0, 0, 0x1d]),
            Ok(Some(Version::Draft29))
        );
        assert_eq!(version_of(&[0xc0, 0x1a, 0x2a, 0x3a, 0x4a]), Ok(None));
        assert_eq!(
            long_header_version(&[0xc0, 0x1a, 0x2a, 0x3a, 0x4a]),
            Ok(0x1a2a_3a4a)
        );
        assert_eq!(
            version_of(&[0x40, 1, 2, 3, 4]),
            Err(QuicError::NotLongHeader {
                offset: 0,
                first_byte: Some(0x40)
            })
        );
        assert_eq!(
            version_of(&[]),
            Err(QuicError::NotLongHeader {
                offset: 0,
                first_byte: None
            })
        );
        assert_eq!(
            version_of(&[0xc0, 0, 0]),
            Err(QuicError::Truncated {
                field: "version",
                offset: 1
            })
        );
        for v in [Version::V1, Version::V2, Version::Draft29] {
            assert_eq!(Version::from_wire(v.wire()), Some(v));
        }
    }

    #[test]
    fn long_header_fields() {
        let v1 = hex(include_str!("fixtures/rfc9001_a2_client_initial.hex"));
        let h = parse_long_header(&v1, 0).unwrap();
        assert_eq!(
            (h.kind, h.version, h.dcid, h.pn_offset, h.end),
            (PacketKind::Initial, Version::V1, &RFC_DCID[..], 18, 1200)
        );
        // v2 rotates type codes: 0b01 is Initial, 0b00 is Retry.
        assert_eq!(Version::V2.kind(1), PacketKind::Initial);
        assert_eq!(Version::V2.kind(0), PacketKind::Retry);
        assert_eq!(Version::V1.kind(1), PacketKind::ZeroRtt);
        let mut long_cid = v1.clone();
        long_cid[5] = 21;
        assert_eq!(
            parse_long_header(&long_cid, 0).unwrap_err(),
            QuicError::ConnectionIdTooLong {
                field: "DCID",
                len: 21,
                offset: 5
            }
        );
    }
}
