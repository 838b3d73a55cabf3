//! [`InitialReader`]: follows one client connection through its Initial
//! packets until the ClientHello is complete.

use crate::learning::quic::QuicError;
use crate::learning::quic::client_hello::{self, ClientHelloInfo};
use crate::learning::quic::crypto_stream::CryptoStream;
use crate::learning::quic::frames;
use crate::learning::quic::initial::{
    LongHeader, Opener, PacketKind, open_initial, parse_long_header,
};

/// Result of feeding one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The ClientHello is not complete yet: feed the next client datagram.
    NeedMore,
    /// The ClientHello is complete. Further pushes return it again.
    Hello(ClientHelloInfo),
}

/// One client connection being read: feed it every client->server datagram, in order.
///
/// Memory is bounded by the crypto-stream limit ([`crate::learning::quic::MAX_CRYPTO`]) plus
/// the size of the datagram being processed.
#[derive(Default)]
pub struct InitialReader {
    opener: Option<Opener>,
    /// Largest Initial packet number decrypted, for packet number recovery.
    largest_pn: Option<u64>,
    stream: CryptoStream,
    hello: Option<ClientHelloInfo>,
}

impl InitialReader {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads every packet of `datagram`: Initial packets are decrypted and
    /// their CRYPTO data collected; other long-header packets (0-RTT,
    /// Handshake) are skipped by their Length; a short-header packet ends
    /// the datagram.
    ///
    /// A failed datagram leaves the reader usable: CRYPTO data is only kept
    /// from packets that authenticated and parsed.
    ///
    /// # Errors
    /// Any [`QuicError`]: the datagram is not a long-header QUIC packet, has
    /// an unsupported version, is truncated or fails authentication, carries
    /// a frame not allowed in Initial packets, or the ClientHello is
    /// malformed. [`QuicError::ConnectionClosed`] when the client gave up
    /// before completing its hello.
    pub fn push(&mut self, datagram: &[u8]) -> Result<Progress, QuicError> {
        if let Some(hello) = &self.hello {
            return Ok(Progress::Hello(hello.clone()));
        }
        let mut closed = None;
        let mut pos = 0;
        loop {
            match datagram.get(pos) {
                // A datagram must start with a long header to be useful here;
                // after one, anything else is 1-RTT data we cannot read.
                Some(&b) if b & 0x80 == 0 && pos > 0 => break,
                None if pos > 0 => break,
                _ => {}
            }
            let hdr = parse_long_header(datagram, pos)?;
            match hdr.kind {
                PacketKind::Initial => {
                    if let Some(code) = self.read_initial(datagram, &hdr)? {
                        closed = Some(code);
                    }
                }
                PacketKind::Retry => break,
                PacketKind::ZeroRtt | PacketKind::Handshake => {}
            }
            pos = hdr.end;
        }
        match client_hello::parse(self.stream.contiguous())? {
            Some(h) => {
                let version = self.opener.as_ref().map(|o| o.version);
                let info = ClientHelloInfo {
                    server_name: h.server_name,
                    ech: h.ech,
                    alpn: h.alpn,
                    // An opener always exists once CRYPTO data does.
                    version: version.unwrap_or(crate::learning::quic::Version::V1),
                };
                self.hello = Some(info.clone());
                Ok(Progress::Hello(info))
            }
            None => match closed {
                Some(error_code) => Err(QuicError::ConnectionClosed { error_code }),
                None => Ok(Progress::NeedMore),
            },
        }
    }

    /// Decrypts one Initial packet and stores its CRYPTO data; returns the
    /// `CONNECTION_CLOSE` error code if the packet carried one.
    fn read_initial(
        &mut self,
        datagram: &[u8],
        hdr: &LongHeader<'_>,
    ) -> Result<Option<u64>, QuicError> {
        // Keys come from the DCID of the first Initial seen: later Initials
        // may carry the server's chosen connection ID but keep those keys
        // (RFC 9001 5.2).
        let keys = self
            .opener
            .get_or_insert_with(|| Opener::new(hdr.version, hdr.dcid));
        let opened = match open_initial(keys, datagram, hdr, self.largest_pn) {
            Ok(o) => o,
            // After a Retry or Version Negotiation the client starts over with
            // a new DCID or version and keys derived from it (RFC 9000 17.2.5.2,
            // 6); try those before giving up, and restart the stream if they work.
            Err(e @ QuicError::Decrypt { .. })
                if keys.version != hdr.version || keys.dcid != hdr.dcid =>
            {
                let fresh = Opener::new(hdr.version, hdr.dcid);
                let o = open_initial(&fresh, datagram, hdr, None).map_err(|_| e)?;
                *self = Self {
                    opener: Some(fresh),
                    ..Self::default()
                };
                o
            }
            Err(e) => return Err(e),
        };
        let frames = frames::walk(&opened.payload)?;
        for f in &frames.crypto {
            self.stream.insert(f.offset, f.data)?;
        }
        self.largest_pn = Some(
            self.largest_pn
                .map_or(opened.packet_number, |l| l.max(opened.packet_number)),
        );
        Ok(frames.close)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learning::quic::Version;
    use crate::learning::quic::testutil::{
        HelloSpec, Packet, client_hello, crypto_frame, hex, seal_initial,
    };

    const RFC_DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
    const RFC_V1: &str = include_str!("fixtures/rfc9001_a2_client_initial.hex");
    const RFC_V2: &str = include_str!("fixtures/rfc9369_a2_client_initial.hex");

    fn hello_of(p: Result<Progress, QuicError>) -> ClientHelloInfo {
        match p {
            Ok(Progress::Hello(h)) => h,
            other => panic!("expected a hello, got {other:?}"),
        }
    }

    fn packet<'a>(version: Version, dcid: &'a [u8], pn: u64, payload: &'a [u8]) -> Packet<'a> {
        Packet {
            version,
            key_dcid: dcid,
            dcid,
            scid: &[0xaa; 20],
            token: &[],
            pn,
            pn_len: 1,
            payload,
        }
    }

    #[test]
    fn rfc_sample_packets() {
        for (fixture, version) in [(RFC_V1, Version::V1), (RFC_V2, Version::V2)] {
            let h = hello_of(InitialReader::new().push(&hex(fixture)));
            assert_eq!(
                h,
                ClientHelloInfo {
                    server_name: Some("example.com".into()),
                    ech: false,
                    alpn: vec!["alpn".into()],
                    version
                }
            );
        }
    }

    /// A hello cut into four pieces spread over two datagrams in shuffled
    /// order, mixed with PING and PADDING, with an overlapping retransmission
    /// and a coalesced 0-RTT packet after the second Initial.
    #[test]
    fn hello_split_across_datagrams() {
        let msg = client_hello(&HelloSpec {
            sni: Some("split.example.net"),
            alpn: &["h3"],
            pad: 1500,
            ..HelloSpec::default()
        });
        assert!(msg.len() > 1500);
        let dcid = [7u8; 12];
        for version in [Version::V1, Version::V2, Version::Draft29] {
            let mut p1 = vec![0x01];
            p1.extend(crypto_frame(900, &msg[900..1300]));
            p1.extend([0; 5]);
            p1.extend(crypto_frame(0, &msg[..300]));
            p1.resize(1150, 0);
            let d1 = seal_initial(&packet(version, &dcid, 0, &p1));

            let mut p2 = crypto_frame(1300, &msg[1300..]);
            p2.push(0x01);
            p2.extend(crypto_frame(300, &msg[300..900]));
            p2.extend(crypto_frame(250, &msg[250..350]));
            let mut d2 = seal_initial(&packet(version, &dcid, 1, &p2));
            // 0-RTT packet: type 0b01 in v1, 0b10 in v2; its body is opaque to us.
            let zero_rtt_type: u8 = if version == Version::V2 { 0b10 } else { 0b01 };
            d2.push(0xc0 | zero_rtt_type << 4);
            d2.extend(version.wire().to_be_bytes());
            d2.extend([12].iter().chain(&dcid).chain(&[0]));
            d2.extend([0x40, 40]);
            d2.extend([0x5a; 40]);
            d2.extend([0; 30]); // trailing zeros look like a short header: ignored

            let mut r = InitialReader::new();
            assert_eq!(r.push(&d1), Ok(Progress::NeedMore), "{version:?}");
            let h = hello_of(r.push(&d2));
            assert_eq!(h.server_name.as_deref(), Some("split.example.net"));
            assert_eq!(h.alpn, ["h3"]);
            assert_eq!(h.version, version);
            // Later datagrams (here: garbage) do not disturb a finished reader.
            assert_eq!(hello_of(r.push(&[0x40; 10])), h);
        }
    }

    #[test]
    fn distinct_errors() {
        let good = hex(RFC_V1);

        let mut unknown = good.clone();
        unknown[1..5].copy_from_slice(&[0x1a, 0x2a, 0x3a, 0x4a]);
        let e1 = InitialReader::new().push(&unknown).unwrap_err();
        assert_eq!(e1, QuicError::UnsupportedVersion(0x1a2a_3a4a));

        let e2 = InitialReader::new().push(&good[..600]).unwrap_err();
        assert_eq!(
            e2,
            QuicError::LengthExceedsDatagram {
                offset: 16,
                length: 1182,
                available: 582
            }
        );

        let mut bad_tag = good.clone();
        *bad_tag.last_mut().unwrap() ^= 1;
        let mut r = InitialReader::new();
        let e3 = r.push(&bad_tag).unwrap_err();
        assert_eq!(
            e3,
            QuicError::Decrypt {
                offset: 0,
                packet_number: 2
            }
        );

        assert_eq!(
            e1.to_string(),
            "bytes 1..5: unsupported QUIC version 0x1a2a3a4a"
        );
        assert_eq!(
            e2.to_string(),
            "byte 16: long header Length 1182 exceeds the 582 bytes left in the datagram"
        );
        assert_eq!(
            e3.to_string(),
            "byte 0: AEAD authentication failed for Initial packet number 2"
        );
        // The failed datagram did not poison the reader.
        assert_eq!(
            hello_of(r.push(&good)).server_name.as_deref(),
            Some("example.com")
        );
    }

    #[test]
    fn short_header_and_empty_datagrams() {
        assert_eq!(
            InitialReader::new().push(&[0x41, 1, 2]),
            Err(QuicError::NotLongHeader {
                offset: 0,
                first_byte: Some(0x41)
            })
        );
        assert_eq!(
            InitialReader::new().push(&[]),
            Err(QuicError::NotLongHeader {
                offset: 0,
                first_byte: None
            })
        );
    }

    #[test]
    fn disallowed_frame_and_connection_close() {
        let dcid = [1u8; 8];
        let mut stream_frame = vec![0x08, 0x00, 0x01, 0x02];
        stream_frame.resize(40, 0);
        let d = seal_initial(&packet(Version::V1, &dcid, 0, &stream_frame));
        assert_eq!(
            InitialReader::new().push(&d),
            Err(QuicError::UnexpectedFrame {
                frame_type: 8,
                offset: 0
            })
        );

        let mut close = vec![0x1c, 0x01, 0x00, 0x00];
        close.resize(40, 0);
        let d = seal_initial(&packet(Version::V1, &dcid, 0, &close));
        assert_eq!(
            InitialReader::new().push(&d),
            Err(QuicError::ConnectionClosed { error_code: 1 })
        );
    }

    /// After a Retry the client resends its Initial with the server-chosen
    /// DCID and keys derived from it; the reader follows.
    #[test]
    fn new_dcid_after_retry() {
        let msg = client_hello(&HelloSpec {
            sni: Some("retry.example"),
            ..HelloSpec::default()
        });
        let mut first = crypto_frame(0, &msg[..50]);
        first.resize(1100, 0);
        let mut r = InitialReader::new();
        assert_eq!(
            r.push(&seal_initial(&packet(Version::V1, &[1; 8], 0, &first))),
            Ok(Progress::NeedMore)
        );
        let mut again = crypto_frame(0, &msg);
        again.resize(1100, 0);
        let h = hello_of(r.push(&seal_initial(&packet(Version::V1, &[2; 8], 0, &again))));
        assert_eq!(h.server_name.as_deref(), Some("retry.example"));
    }

    /// Later Initials keep the first DCID's keys even when they carry another DCID.
    #[test]
    fn later_initial_with_server_cid_uses_first_keys() {
        let msg = client_hello(&HelloSpec {
            sni: Some("keys.example"),
            ..HelloSpec::default()
        });
        let mut r = InitialReader::new();
        let p1 = crypto_frame(0, &msg[..60]);
        assert_eq!(
            r.push(&seal_initial(&packet(Version::V1, &[3; 8], 0, &p1))),
            Ok(Progress::NeedMore)
        );
        let p2 = crypto_frame(60, &msg[60..]);
        let second = Packet {
            dcid: &[9; 4],
            pn: 1,
            ..packet(Version::V1, &[3; 8], 1, &p2)
        };
        let h = hello_of(r.push(&seal_initial(&second)));
        assert_eq!(h.server_name.as_deref(), Some("keys.example"));
    }

    /// No prefix and no single-bit flip of a valid datagram may panic or yield
    /// a hello: every byte of the RFC packet is header-protected,
    /// authenticated, or both. Flips of the type bits turn the Initial into a
    /// 0-RTT/Handshake/Retry packet, which is skipped (`NeedMore`); all other
    /// flips must be errors.
    #[test]
    fn truncations_and_bit_flips_never_panic() {
        for fixture in [RFC_V1, RFC_V2] {
            let good = hex(fixture);
            for cut in 0..good.len() {
                assert!(
                    InitialReader::new().push(&good[..cut]).is_err(),
                    "prefix {cut}"
                );
            }
            for i in 0..good.len() {
                for bit in 0..8 {
                    let mut d = good.clone();
                    d[i] ^= 1 << bit;
                    let r = InitialReader::new().push(&d);
                    if i == 0 && (bit == 4 || bit == 5) {
                        assert_eq!(r, Ok(Progress::NeedMore));
                    } else {
                        assert!(r.is_err(), "byte {i} bit {bit}: {r:?}");
                    }
                }
            }
        }
    }

    /// Mutations inside the encrypted payload, re-sealed so they pass the
    /// AEAD and reach the frame and ClientHello parsers.
    #[test]
    fn mutated_plaintext_never_panics() {
        let mut payload = hex(include_str!("fixtures/rfc9001_a2_crypto_frame.hex"));
        let frame_len = payload.len();
        payload.resize(1162, 0);
        let seal = |p: &[u8]| seal_initial(&packet(Version::V1, &RFC_DCID, 0, p));
        let mut outcomes = [0usize; 2];
        for i in 0..frame_len {
            for mask in [0x01, 0x80, 0xff] {
                let mut p = payload.clone();
                p[i] ^= mask;
                let ok = InitialReader::new().push(&seal(&p)).is_ok();
                outcomes[usize::from(ok)] += 1;
            }
        }
        // Some mutations (e.g. in the random) are harmless, many are not.
        assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
        for cut in 0..frame_len {
            let mut p = payload[..cut].to_vec();
            p.resize(40, 0);
            let _ = InitialReader::new().push(&seal(&p));
        }
        // A cheap deterministic PRNG for multi-byte corruption.
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..2000 {
            let mut p = payload.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = usize::try_from(x % frame_len as u64).unwrap();
                p[at] = x.to_be_bytes()[3];
            }
            let _ = InitialReader::new().push(&seal(&p));
        }
    }
}
