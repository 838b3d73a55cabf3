//! Test-only builders: a ClientHello writer and a client-side Initial packet
//! sealer, so tests can produce realistic protected datagrams instead of
//! relying only on canned captures.

use ring::aead::{self, quic};

use crate::learning::quic::initial::{Version, client_secrets};

/// Parses hex, ignoring whitespace and `#` comment lines (the fixture format).
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.bytes().filter(u8::is_ascii_hexdigit))
        .collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

#[derive(Default)]
pub(crate) struct HelloSpec<'a> {
    pub sni: Option<&'a str>,
    pub alpn: &'a [&'a str],
    pub ech: bool,
    /// Bytes of a padding extension (type 21), to make the hello span packets.
    pub pad: usize,
    /// One more raw extension (type, body), appended last.
    pub extra_ext: Option<(u16, Vec<u8>)>,
}

fn push_u16(v: &mut Vec<u8>, n: usize) {
    v.extend_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
}

fn ext(out: &mut Vec<u8>, ty: u16, body: &[u8]) {
    out.extend_from_slice(&ty.to_be_bytes());
    push_u16(out, body.len());
    out.extend_from_slice(body);
}

/// A ClientHello handshake message with a fixed layout: empty session id,
/// two cipher suites, one compression method, then the extensions in the
/// order `server_name`, ALPN, `supported_versions`, ECH, padding, extra.
pub(crate) fn client_hello(spec: &HelloSpec<'_>) -> Vec<u8> {
    let mut exts = Vec::new();
    if let Some(name) = spec.sni {
        let mut body = Vec::new();
        push_u16(&mut body, name.len() + 3);
        body.push(0);
        push_u16(&mut body, name.len());
        body.extend_from_slice(name.as_bytes());
        ext(&mut exts, 0, &body);
    }
    if !spec.alpn.is_empty() {
        let list: Vec<u8> = spec
            .alpn
            .iter()
            .flat_map(|p| std::iter::once(u8::try_from(p.len()).unwrap()).chain(p.bytes()))
            .collect();
        let mut body = Vec::new();
        push_u16(&mut body, list.len());
        body.extend_from_slice(&list);
        ext(&mut exts, 16, &body);
    }
    ext(&mut exts, 43, &[2, 3, 4]); // supported_versions: TLS 1.3
    if spec.ech {
        ext(&mut exts, 0xfe0d, &[0, 0, 1, 0, 1, 7, 0, 0, 0, 0]);
    }
    if spec.pad > 0 {
        ext(&mut exts, 21, &vec![0; spec.pad]);
    }
    if let Some((ty, body)) = &spec.extra_ext {
        ext(&mut exts, *ty, body);
    }
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x11; 32]);
    body.extend_from_slice(&[0, 0, 4, 0x13, 0x01, 0x13, 0x02, 1, 0]);
    push_u16(&mut body, exts.len());
    body.extend_from_slice(&exts);
    let len = u32::try_from(body.len()).unwrap().to_be_bytes();
    let mut msg = vec![1, len[1], len[2], len[3]];
    msg.extend_from_slice(&body);
    msg
}

pub(crate) fn varint(v: u64) -> Vec<u8> {
    match v {
        0..0x40 => vec![u8::try_from(v).unwrap()],
        0x40..0x4000 => (0x4000 | u16::try_from(v).unwrap()).to_be_bytes().to_vec(),
        _ => (0x8000_0000 | u32::try_from(v).unwrap())
            .to_be_bytes()
            .to_vec(),
    }
}

pub(crate) fn crypto_frame(offset: usize, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    f.extend(varint(offset as u64));
    f.extend(varint(data.len() as u64));
    f.extend_from_slice(data);
    f
}

/// What to put in one client Initial packet.
pub(crate) struct Packet<'a> {
    pub version: Version,
    /// Connection ID the keys are derived from (the first Initial's DCID).
    pub key_dcid: &'a [u8],
    pub dcid: &'a [u8],
    pub scid: &'a [u8],
    pub token: &'a [u8],
    /// Full packet number; the low `pn_len` bytes go on the wire.
    pub pn: u64,
    pub pn_len: usize,
    pub payload: &'a [u8],
}

/// Seals a client Initial the way a QUIC client does (RFC 9001 5.3, 5.4):
/// AEAD over the payload with the unprotected header as associated data,
/// then header protection from a sample of the ciphertext. The Length field
/// is always a 2-byte varint, as in the RFC examples.
pub(crate) fn seal_initial(p: &Packet<'_>) -> Vec<u8> {
    let s = client_secrets(p.version, p.key_dcid);
    // Initial is type 0b00 in v1/draft-29 and 0b01 in v2.
    let type_bits = u8::from(p.version == Version::V2);
    let pn_len_bits = u8::try_from(p.pn_len - 1).unwrap();
    let mut pkt = vec![0xc0 | type_bits << 4 | pn_len_bits];
    pkt.extend_from_slice(&p.version.wire().to_be_bytes());
    for cid in [p.dcid, p.scid] {
        pkt.push(u8::try_from(cid.len()).unwrap());
        pkt.extend_from_slice(cid);
    }
    pkt.extend(varint(p.token.len() as u64));
    pkt.extend_from_slice(p.token);
    let length = p.pn_len + p.payload.len() + 16;
    pkt.extend_from_slice(&(0x4000 | u16::try_from(length).unwrap()).to_be_bytes());
    let pn_offset = pkt.len();
    pkt.extend_from_slice(&p.pn.to_be_bytes()[8 - p.pn_len..]);

    let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &s.key).unwrap());
    let mut nonce = s.iv;
    for (n, b) in nonce[4..].iter_mut().zip(p.pn.to_be_bytes()) {
        *n ^= b;
    }
    let mut body = p.payload.to_vec();
    key.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(nonce),
        aead::Aad::from(&pkt),
        &mut body,
    )
    .unwrap();
    pkt.extend_from_slice(&body);

    let hp = quic::HeaderProtectionKey::new(&quic::AES_128, &s.hp).unwrap();
    let mask = hp.new_mask(&pkt[pn_offset + 4..pn_offset + 20]).unwrap();
    pkt[0] ^= mask[0] & 0x0f;
    for i in 0..p.pn_len {
        pkt[pn_offset + i] ^= mask[1 + i];
    }
    pkt
}
