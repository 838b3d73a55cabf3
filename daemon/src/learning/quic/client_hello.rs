//! Just enough of a TLS 1.3 ClientHello parser (RFC 8446 4.1.2) to pull out
//! what a gateway routes on: the `server_name` (RFC 6066 3), ALPN (RFC 7301)
//! and whether Encrypted Client Hello (type 0xfe0d) is offered.

use crate::learning::quic::QuicError;
use crate::learning::quic::crypto_stream::MAX_CRYPTO;
use crate::learning::quic::cursor::Cursor;
use crate::learning::quic::initial::Version;

/// What the reader learned from a complete ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHelloInfo {
    /// The `host_name` of the `server_name` extension. With ECH this is the
    /// outer, public name: the real one is encrypted.
    pub server_name: Option<String>,
    /// An `encrypted_client_hello` extension is present.
    pub ech: bool,
    /// ALPN protocol IDs in the client's order (non-UTF-8 bytes replaced).
    pub alpn: Vec<String>,
    /// The QUIC version of the Initial packets that carried the hello.
    pub version: Version,
}

const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_ALPN: u16 = 0x0010;
const EXT_ECH: u16 = 0xfe0d;

/// The TLS part of [`ClientHelloInfo`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Hello {
    pub server_name: Option<String>,
    pub ech: bool,
    pub alpn: Vec<String>,
}

/// Parses the handshake message at the start of the crypto stream.
/// `Ok(None)`: the message is not complete yet.
pub(crate) fn parse(stream: &[u8]) -> Result<Option<Hello>, QuicError> {
    let Some(&msg_type) = stream.first() else {
        return Ok(None);
    };
    // Fail as soon as the type byte is known, not after waiting for more data
    // that a non-ClientHello stream would never complete.
    if msg_type != 1 {
        return Err(QuicError::NotClientHello { msg_type });
    }
    let Some(len) = stream.get(1..4) else {
        return Ok(None);
    };
    let len = usize::from(len[0]) << 16 | usize::from(len[1]) << 8 | usize::from(len[2]);
    if 4 + len > MAX_CRYPTO {
        return Err(QuicError::CryptoTooLarge {
            end: 4 + len as u64,
            limit: MAX_CRYPTO,
        });
    }
    let Some(body) = stream.get(4..4 + len) else {
        return Ok(None);
    };
    // Inside a complete message, running out of bytes means an inner length
    // lies: report it as a malformed hello, not as "need more data".
    parse_body(body).map(Some).map_err(|e| match e {
        QuicError::Truncated { field, offset } => QuicError::MalformedHello { field, offset },
        e => e,
    })
}

fn parse_body(body: &[u8]) -> Result<Hello, QuicError> {
    let mut c = Cursor::new(body, 4);
    c.u16("legacy_version")?;
    c.bytes(32, "random")?;
    let session_id = usize::from(c.u8("legacy_session_id length")?);
    if session_id > 32 {
        return Err(malformed("legacy_session_id length", c.offset() - 1));
    }
    c.bytes(session_id, "legacy_session_id")?;
    let suites_at = c.offset();
    let suites = usize::from(c.u16("cipher_suites length")?);
    if suites < 2 || suites % 2 != 0 {
        return Err(malformed("cipher_suites length", suites_at));
    }
    c.bytes(suites, "cipher_suites")?;
    let compression = usize::from(c.u8("legacy_compression_methods length")?);
    if compression == 0 {
        return Err(malformed(
            "legacy_compression_methods length",
            c.offset() - 1,
        ));
    }
    c.bytes(compression, "legacy_compression_methods")?;

    let mut hello = Hello::default();
    if c.is_empty() {
        // A hello without extensions is legal TLS 1.2; it simply names nothing.
        return Ok(hello);
    }
    let ext_len = usize::from(c.u16("extensions length")?);
    let exts_at = c.offset();
    let exts = c.bytes(ext_len, "extensions")?;
    if !c.is_empty() {
        return Err(malformed("data after extensions", c.offset()));
    }

    let mut c = Cursor::new(exts, exts_at);
    // One bit per extension type: a hello of thousands of tiny extensions costs no more than
    // one pass.
    let mut seen = vec![0u64; 1024];
    while !c.is_empty() {
        let ext_type = c.u16("extension type")?;
        let len = usize::from(c.u16("extension length")?);
        let data_at = c.offset();
        let data = c.bytes(len, "extension data")?;
        // RFC 8446 4.2 forbids duplicates; a gateway that picked one copy
        // while the server picked the other could be steered around.
        let (word, bit) = (usize::from(ext_type / 64), 1u64 << (ext_type % 64));
        if seen[word] & bit != 0 {
            return Err(QuicError::DuplicateExtension { ext_type });
        }
        seen[word] |= bit;
        match ext_type {
            EXT_SERVER_NAME => hello.server_name = server_name(data, data_at)?,
            EXT_ALPN => hello.alpn = alpn(data, data_at)?,
            EXT_ECH => hello.ech = true,
            _ => {}
        }
    }
    Ok(hello)
}

fn malformed(field: &'static str, offset: usize) -> QuicError {
    QuicError::MalformedHello { field, offset }
}

/// The inner vector of an extension, which must fill the extension exactly.
fn list<'a>(data: &'a [u8], at: usize, field: &'static str) -> Result<Cursor<'a>, QuicError> {
    let mut c = Cursor::new(data, at);
    let len = usize::from(c.u16(field)?);
    if len != c.remaining() || len == 0 {
        return Err(malformed(field, at));
    }
    Ok(Cursor::new(c.bytes(len, field)?, at + 2))
}

fn server_name(data: &[u8], at: usize) -> Result<Option<String>, QuicError> {
    let mut c = list(data, at, "server_name list length")?;
    let mut host = None;
    while !c.is_empty() {
        let name_type = c.u8("server_name name_type")?;
        let name_at = c.offset();
        let len = usize::from(c.u16("server_name length")?);
        let name = c.bytes(len, "server_name")?;
        if name_type != 0 {
            continue; // unknown name types are skipped, as RFC 6066 allows
        }
        // RFC 6066 3: at most one name of each type.
        if host.is_some() {
            return Err(malformed("second host_name", name_at));
        }
        // A DNS host name is printable ASCII; refusing anything else keeps
        // control characters and look-alike Unicode out of policy lookups.
        if name.is_empty() || !name.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return Err(QuicError::InvalidServerName { offset: name_at });
        }
        host = Some(name.iter().map(|&b| char::from(b)).collect());
    }
    Ok(host)
}

fn alpn(data: &[u8], at: usize) -> Result<Vec<String>, QuicError> {
    let mut c = list(data, at, "ALPN list length")?;
    let mut out = Vec::new();
    while !c.is_empty() {
        let len_at = c.offset();
        let len = usize::from(c.u8("ALPN protocol length")?);
        if len == 0 {
            return Err(malformed("ALPN protocol length", len_at));
        }
        out.push(String::from_utf8_lossy(c.bytes(len, "ALPN protocol")?).into_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learning::quic::testutil::{HelloSpec, client_hello};

    #[test]
    fn sni_alpn_and_no_ech() {
        let msg = client_hello(&HelloSpec {
            sni: Some("www.example.org"),
            alpn: &["h3", "h3-29"],
            ..HelloSpec::default()
        });
        let h = parse(&msg).unwrap().unwrap();
        assert_eq!(h.server_name.as_deref(), Some("www.example.org"));
        assert_eq!(h.alpn, ["h3", "h3-29"]);
        assert!(!h.ech);
    }

    #[test]
    fn no_sni() {
        let msg = client_hello(&HelloSpec::default());
        assert_eq!(parse(&msg).unwrap().unwrap(), Hello::default());
    }

    #[test]
    fn ech_present() {
        let msg = client_hello(&HelloSpec {
            sni: Some("public.example"),
            ech: true,
            ..HelloSpec::default()
        });
        let h = parse(&msg).unwrap().unwrap();
        assert!(h.ech);
        assert_eq!(h.server_name.as_deref(), Some("public.example"));
    }

    #[test]
    fn alpn_without_sni() {
        let msg = client_hello(&HelloSpec {
            alpn: &["h3"],
            ..HelloSpec::default()
        });
        let h = parse(&msg).unwrap().unwrap();
        assert_eq!(h.server_name, None);
        assert_eq!(h.alpn, ["h3"]);
    }

    #[test]
    fn incomplete_message_needs_more() {
        let msg = client_hello(&HelloSpec {
            sni: Some("a.example"),
            ..HelloSpec::default()
        });
        for cut in 0..msg.len() {
            assert_eq!(parse(&msg[..cut]), Ok(None), "prefix of {cut} bytes");
        }
    }

    #[test]
    fn not_a_client_hello() {
        assert_eq!(
            parse(&[2, 0]),
            Err(QuicError::NotClientHello { msg_type: 2 })
        );
    }

    #[test]
    fn malformed_lengths() {
        let msg = client_hello(&HelloSpec {
            sni: Some("a.example"),
            ..HelloSpec::default()
        });
        // Layout from testutil: header 4, version 2, random 32, session id
        // length at 38 (empty), cipher suites length at 39 (two suites),
        // compression at 45, extensions length at 47, extensions from 49.
        let mut bad = msg.clone();
        bad[38] = 33; // session id longer than 32
        assert_eq!(parse(&bad), Err(malformed("legacy_session_id length", 38)));

        let mut bad = msg.clone();
        bad[40] = 3; // odd cipher_suites length
        assert_eq!(parse(&bad), Err(malformed("cipher_suites length", 39)));

        // server_name list length one more than the extension holds.
        let mut bad = msg.clone();
        let ext = 49; // server_name is the first extension
        bad[ext + 5] += 1;
        assert_eq!(
            parse(&bad),
            Err(malformed("server_name list length", ext + 4))
        );

        // A host_name length running past its list.
        let mut bad = msg.clone();
        bad[ext + 8] += 1;
        assert!(matches!(
            parse(&bad),
            Err(QuicError::MalformedHello {
                field: "server_name",
                ..
            })
        ));

        // Extensions length larger than the message.
        let mut bad = msg.clone();
        let ext_len_at = 47;
        bad[ext_len_at + 1] = bad[ext_len_at + 1].wrapping_add(1);
        assert_eq!(parse(&bad), Err(malformed("extensions", ext_len_at + 2)));

        // Handshake length beyond the crypto limit fails at once.
        assert!(matches!(
            parse(&[1, 0x01, 0x00, 0x00]),
            Err(QuicError::CryptoTooLarge { .. })
        ));
    }

    #[test]
    fn bad_server_names() {
        let msg = client_hello(&HelloSpec {
            sni: Some("bad\u{7f}name"),
            ..HelloSpec::default()
        });
        assert!(matches!(
            parse(&msg),
            Err(QuicError::InvalidServerName { .. })
        ));
        let msg = client_hello(&HelloSpec {
            sni: Some(""),
            ..HelloSpec::default()
        });
        assert!(matches!(
            parse(&msg),
            Err(QuicError::InvalidServerName { .. })
        ));
    }

    #[test]
    fn duplicate_extension() {
        let msg = client_hello(&HelloSpec {
            sni: Some("a.example"),
            extra_ext: Some((0, vec![0, 4, 0, 0, 1, b'b'])),
            ..HelloSpec::default()
        });
        assert_eq!(
            parse(&msg),
            Err(QuicError::DuplicateExtension { ext_type: 0 })
        );
    }
}
