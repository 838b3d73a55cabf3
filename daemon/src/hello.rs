//! TLS ClientHellos built byte by byte (RFC 8446 4.1.2): `explain --sni` hands one to the
//! kernel program, and the tests of the server-name walk choose where the `server_name`
//! extension sits and how the hello is cut into segments.

/// A ClientHello to build.
#[derive(Clone, Debug, Default)]
pub struct ClientHello {
    /// The `server_name` extension's host name; None leaves the extension out.
    pub server_name: Option<String>,
    /// Bytes of a key-share-like extension placed before the server name (post-quantum key
    /// shares make hellos longer than a segment).
    pub before: usize,
    /// Bytes of an extension placed after it.
    pub after: usize,
    /// An `encrypted_client_hello` extension (outer, draft-ietf-tls-esni) before the server
    /// name, which is then the public name.
    pub ech: bool,
}

fn u16_be(n: usize) -> [u8; 2] {
    u16::try_from(n).expect("fits in 16 bits").to_be_bytes()
}

fn extension(kind: u16, body: &[u8]) -> Vec<u8> {
    let mut e = kind.to_be_bytes().to_vec();
    e.extend_from_slice(&u16_be(body.len()));
    e.extend_from_slice(body);
    e
}

impl ClientHello {
    #[must_use]
    pub fn named(name: &str) -> Self {
        Self {
            server_name: Some(name.to_owned()),
            ..Self::default()
        }
    }

    /// The TLS record (header included) holding the handshake message.
    ///
    /// # Panics
    /// When a length does not fit its field: a name over 65,000 bytes or padding as large.
    #[must_use]
    pub fn record(&self) -> Vec<u8> {
        let mut extensions = Vec::new();
        // supported_versions: TLS 1.3.
        extensions.extend(extension(43, &[2, 3, 4]));
        if self.before > 0 {
            extensions.extend(extension(51, &vec![0x5a; self.before]));
        }
        if self.ech {
            // Outer type, a cipher suite, a config id, an encapsulated key and a payload.
            let mut body = vec![0, 0, 1, 0, 1, 7];
            body.extend_from_slice(&u16_be(32));
            body.extend_from_slice(&[0x33; 32]);
            body.extend_from_slice(&u16_be(96));
            body.extend_from_slice(&[0x44; 96]);
            extensions.extend(extension(0xfe0d, &body));
        }
        if let Some(name) = &self.server_name {
            let mut body = u16_be(name.len() + 3).to_vec();
            body.push(0); // host_name
            body.extend_from_slice(&u16_be(name.len()));
            body.extend_from_slice(name.as_bytes());
            extensions.extend(extension(0, &body));
        }
        if self.after > 0 {
            extensions.extend(extension(21, &vec![0; self.after]));
        }
        let mut hello = vec![3, 3];
        hello.extend_from_slice(&[0x11; 32]); // random
        hello.push(32);
        hello.extend_from_slice(&[0x22; 32]); // legacy session id
        let suites = [0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0xc0, 0x2f];
        hello.extend_from_slice(&u16_be(suites.len()));
        hello.extend_from_slice(&suites);
        hello.extend_from_slice(&[1, 0]); // compression: null
        hello.extend_from_slice(&u16_be(extensions.len()));
        hello.extend_from_slice(&extensions);
        let mut handshake = vec![1];
        handshake.extend_from_slice(&u32::try_from(hello.len()).expect("small").to_be_bytes()[1..]);
        handshake.extend_from_slice(&hello);
        let mut record = vec![22, 3, 1];
        record.extend_from_slice(&u16_be(handshake.len()));
        record.extend_from_slice(&handshake);
        record
    }

    /// Where the host name starts in `record()` (None without one).
    #[must_use]
    pub fn name_offset(&self) -> Option<usize> {
        let name = self.server_name.as_ref()?;
        let record = self.record();
        record
            .windows(name.len())
            .rposition(|w| w == name.as_bytes())
    }
}
