//! Learn which IP addresses a DNS response ties to which names, following CNAME chains.
//!
//! Built for a gateway that sees untrusted DNS traffic: every length and count is checked
//! against the bytes actually present, nothing panics, and every loop is bounded.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const HEADER_LEN: usize = 12;
/// Smallest question: root name (1 byte) + type + class.
const MIN_QUESTION: usize = 5;
/// Smallest resource record: root name (1) + type, class (4) + TTL (4) + rdlength (2).
const MIN_RR: usize = 11;
const MAX_NAME_WIRE: usize = 255;
const MAX_LABELS: usize = 128;
const MAX_CNAME_HOPS: usize = 16;

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// What was wrong with the input, and where. Offsets count from the start of the slice given
/// to [`parse`] or [`parse_tcp`] (for TCP, from the start of the stream, not of one message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// The message ends inside the named part, which starts at `offset`.
    Truncated { what: &'static str, offset: usize },
    /// The QR bit is clear: a query, not a response.
    NotResponse { offset: usize },
    /// The opcode is not QUERY (0).
    BadOpcode { offset: usize, opcode: u8 },
    /// The header's counts need at least `needed` bytes after it, but only `have` follow.
    TooManyRecords {
        offset: usize,
        needed: usize,
        have: usize,
    },
    /// A length byte whose top two bits are 01 or 10 (reserved / obsolete label types).
    BadLabelType { offset: usize, byte: u8 },
    /// A compression pointer that does not point strictly before itself.
    ForwardPointer { offset: usize, target: usize },
    /// A name (starting at `offset`) longer than 255 bytes or 128 labels once decompressed.
    NameTooLong { offset: usize },
    /// Record data of the wrong size for its type (A not 4 bytes, a CNAME target not filling it).
    BadRdata {
        offset: usize,
        rtype: u16,
        len: usize,
    },
    /// A TCP stream ends inside a message: it needs `needed` bytes (length prefix included)
    /// from `offset`, and `have` are there.
    TruncatedTcp {
        offset: usize,
        needed: usize,
        have: usize,
    },
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { what, offset } => {
                write!(
                    f,
                    "message ends inside the {what} starting at byte {offset}"
                )
            }
            Self::NotResponse { offset } => {
                write!(f, "QR bit clear at byte {offset}: not a response")
            }
            Self::BadOpcode { offset, opcode } => {
                write!(f, "opcode {opcode} at byte {offset} is not QUERY")
            }
            Self::TooManyRecords {
                offset,
                needed,
                have,
            } => write!(
                f,
                "counts at byte {offset} need at least {needed} bytes of records, only {have} follow"
            ),
            Self::BadLabelType { offset, byte } => {
                write!(f, "reserved label type 0x{byte:02x} at byte {offset}")
            }
            Self::ForwardPointer { offset, target } => write!(
                f,
                "compression pointer at byte {offset} points to {target}, not strictly backwards"
            ),
            Self::NameTooLong { offset } => {
                write!(f, "name at byte {offset} exceeds 255 bytes or 128 labels")
            }
            Self::BadRdata { offset, rtype, len } => {
                write!(
                    f,
                    "record data of type {rtype} at byte {offset} has bad length {len}"
                )
            }
            Self::TruncatedTcp {
                offset,
                needed,
                have,
            } => write!(
                f,
                "TCP stream ends inside the message at byte {offset}: needs {needed} bytes, has {have}"
            ),
        }
    }
}

impl std::error::Error for DnsError {}

impl DnsError {
    /// Re-base the offset so errors inside a TCP stream point into the stream.
    fn shifted(mut self, base: usize) -> Self {
        match &mut self {
            Self::Truncated { offset, .. }
            | Self::NotResponse { offset }
            | Self::BadOpcode { offset, .. }
            | Self::TooManyRecords { offset, .. }
            | Self::BadLabelType { offset, .. }
            | Self::NameTooLong { offset }
            | Self::BadRdata { offset, .. }
            | Self::TruncatedTcp { offset, .. } => *offset += base,
            Self::ForwardPointer { offset, target } => {
                *offset += base;
                *target += base;
            }
        }
        self
    }
}

/// An address the response ties to a chain of names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    pub address: IpAddr,
    /// Minimum TTL along the chain (CNAMEs and the address record), in seconds.
    pub ttl: u32,
    /// Question first, then each CNAME target, ending with the A/AAAA owner. Just `[owner]`
    /// when the owner is not reachable from the question through this message's CNAMEs.
    pub names: Vec<String>,
}

/// A parsed DNS response (QR set, opcode QUERY, any rcode).
#[derive(Debug, Clone)]
pub struct Response<'a> {
    message: &'a [u8],
    question: Option<String>,
    /// (owner, target, ttl) from the answer section, class IN.
    cnames: Vec<(String, String, u32)>,
    /// (owner, address, ttl) from the answer section, class IN.
    addrs: Vec<(String, IpAddr, u32)>,
}

impl<'a> Response<'a> {
    /// The raw message this response was parsed from.
    #[must_use]
    pub fn message(&self) -> &'a [u8] {
        self.message
    }

    #[must_use]
    pub fn id(&self) -> u16 {
        u16::from_be_bytes([self.message[0], self.message[1]])
    }

    /// The 4-bit header rcode (an EDNS extended rcode in OPT is not merged in).
    #[must_use]
    pub fn rcode(&self) -> u8 {
        self.message[3] & 0x0f
    }

    /// The first question's name, lower-case, no trailing dot ("" for the root).
    #[must_use]
    pub fn question(&self) -> Option<&str> {
        self.question.as_deref()
    }

    /// Addresses the response ties to names: every A/AAAA record in the answer section, with the
    /// chain of names that leads to it from the question (question -> CNAME -> ... -> owner).
    #[must_use]
    pub fn addresses(&self) -> Vec<Learned> {
        // Walk the CNAME chain from the question once; `chain[i]` carries the minimum TTL of
        // the hops needed to reach it. Stops at 16 hops or on revisiting a name (a loop).
        let mut chain: Vec<(&str, u32)> = Vec::new();
        if let Some(q) = self.question.as_deref() {
            chain.push((q, u32::MAX));
            while chain.len() <= MAX_CNAME_HOPS {
                let (cur, ttl) = chain[chain.len() - 1];
                let Some((_, target, hop_ttl)) = self.cnames.iter().find(|c| c.0 == cur) else {
                    break;
                };
                if chain.iter().any(|(n, _)| n == target) {
                    break;
                }
                chain.push((target, ttl.min(*hop_ttl)));
            }
        }
        self.addrs
            .iter()
            .map(
                |(owner, address, ttl)| match chain.iter().position(|(n, _)| n == owner) {
                    Some(i) => Learned {
                        address: *address,
                        ttl: chain[i].1.min(*ttl),
                        names: chain[..=i].iter().map(|(n, _)| (*n).to_owned()).collect(),
                    },
                    None => Learned {
                        address: *address,
                        ttl: *ttl,
                        names: vec![owner.clone()],
                    },
                },
            )
            .collect()
    }
}

/// Parse one DNS response message (a UDP payload, or a TCP message without its length prefix).
/// Bytes after the last counted record are ignored (some servers pad).
///
/// # Errors
/// Any structural problem: see [`DnsError`].
pub fn parse(message: &[u8]) -> Result<Response<'_>, DnsError> {
    let header = message.get(..HEADER_LEN).ok_or(DnsError::Truncated {
        what: "header",
        offset: 0,
    })?;
    if header[2] & 0x80 == 0 {
        return Err(DnsError::NotResponse { offset: 2 });
    }
    let opcode = (header[2] >> 3) & 0x0f;
    if opcode != 0 {
        return Err(DnsError::BadOpcode { offset: 2, opcode });
    }
    let count = |i: usize| usize::from(u16::from_be_bytes([header[i], header[i + 1]]));
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    // Refuse impossible counts up front, so a lying header costs nothing.
    let needed = qd * MIN_QUESTION + (an + ns + ar) * MIN_RR;
    let have = message.len() - HEADER_LEN;
    if needed > have {
        return Err(DnsError::TooManyRecords {
            offset: 4,
            needed,
            have,
        });
    }

    let mut pos = HEADER_LEN;
    let mut question = None;
    for _ in 0..qd {
        let (name, end) = read_name(message, pos)?;
        if message.len() < end + 4 {
            return Err(DnsError::Truncated {
                what: "question",
                offset: pos,
            });
        }
        question.get_or_insert(name);
        pos = end + 4;
    }

    let mut response = Response {
        message,
        question,
        cnames: Vec::new(),
        addrs: Vec::new(),
    };
    for i in 0..an + ns + ar {
        let rr = read_rr(message, pos)?;
        pos = rr.end;
        // Only answers count; authority and additional (OPT, glue) are validated and skipped.
        if i >= an || rr.class & 0x7fff != CLASS_IN {
            continue;
        }
        let bad = || DnsError::BadRdata {
            offset: rr.rdata_at,
            rtype: rr.rtype,
            len: rr.rdata.len(),
        };
        match rr.rtype {
            TYPE_A => {
                let octets: [u8; 4] = rr.rdata.try_into().map_err(|_| bad())?;
                response
                    .addrs
                    .push((rr.owner, Ipv4Addr::from(octets).into(), rr.ttl));
            }
            TYPE_AAAA => {
                let octets: [u8; 16] = rr.rdata.try_into().map_err(|_| bad())?;
                response
                    .addrs
                    .push((rr.owner, Ipv6Addr::from(octets).into(), rr.ttl));
            }
            TYPE_CNAME => {
                let (target, end) = read_name(message, rr.rdata_at)?;
                // The target must fill the rdata exactly, or the record is lying about its size.
                if end != rr.end {
                    return Err(bad());
                }
                response.cnames.push((rr.owner, target, rr.ttl));
            }
            _ => {}
        }
    }
    Ok(response)
}

/// Parse a TCP payload holding one or more messages, each behind a 2-byte length.
/// An empty stream yields no messages.
///
/// # Errors
/// [`DnsError::TruncatedTcp`] when the stream ends inside a message (or its length prefix);
/// any error from [`parse`], with offsets counted from the start of `stream`.
pub fn parse_tcp(stream: &[u8]) -> Result<Vec<Response<'_>>, DnsError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < stream.len() {
        let rest = &stream[pos..];
        let needed = match rest {
            [hi, lo, ..] => 2 + usize::from(u16::from_be_bytes([*hi, *lo])),
            _ => 2,
        };
        let Some(message) = rest.get(2..needed) else {
            return Err(DnsError::TruncatedTcp {
                offset: pos,
                needed,
                have: rest.len(),
            });
        };
        out.push(parse(message).map_err(|e| e.shifted(pos + 2))?);
        pos += needed;
    }
    Ok(out)
}

/// Whether `name` equals `domain` or ends with "." + `domain`, ASCII case-insensitive.
///
/// One trailing dot is ignored on either side, so "zoom.us." and "zoom.us" are the same.
/// An empty domain (or ".") matches nothing: watching the root is almost surely a mistake.
#[must_use]
pub fn under(name: &str, domain: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).as_bytes();
    let domain = domain.strip_suffix('.').unwrap_or(domain).as_bytes();
    if domain.is_empty() || name.len() < domain.len() {
        return false;
    }
    let split = name.len() - domain.len();
    name[split..].eq_ignore_ascii_case(domain) && (split == 0 || name[split - 1] == b'.')
}

struct Rr<'a> {
    owner: String,
    rtype: u16,
    class: u16,
    ttl: u32,
    rdata: &'a [u8],
    rdata_at: usize,
    end: usize,
}

fn read_rr(msg: &[u8], pos: usize) -> Result<Rr<'_>, DnsError> {
    let (owner, fixed) = read_name(msg, pos)?;
    let truncated = DnsError::Truncated {
        what: "resource record",
        offset: pos,
    };
    let f = msg.get(fixed..fixed + 10).ok_or(truncated.clone())?;
    let rdlen = usize::from(u16::from_be_bytes([f[8], f[9]]));
    let rdata_at = fixed + 10;
    let rdata = msg.get(rdata_at..rdata_at + rdlen).ok_or(truncated)?;
    let ttl = u32::from_be_bytes([f[4], f[5], f[6], f[7]]);
    Ok(Rr {
        owner,
        rtype: u16::from_be_bytes([f[0], f[1]]),
        class: u16::from_be_bytes([f[2], f[3]]),
        // RFC 2181 section 8: a TTL with the top bit set is to be treated as zero.
        ttl: if ttl > 0x7fff_ffff { 0 } else { ttl },
        rdata,
        rdata_at,
        end: rdata_at + rdlen,
    })
}

/// Decode the name at `start`; returns it and the offset just past its in-place bytes.
///
/// Termination: every pointer must point strictly before itself, so a run of pointers with
/// no labels between them strictly decreases; labels are capped by the 255-byte/128-label
/// budget. Hence no loop, however crafted, runs for long.
fn read_name(msg: &[u8], start: usize) -> Result<(String, usize), DnsError> {
    let mut out = String::new();
    let mut pos = start;
    let mut end = None; // set at the first pointer: where the in-place part stops
    let (mut labels, mut wire) = (0, 1); // wire counts the root byte from the start
    loop {
        let len = *msg.get(pos).ok_or(DnsError::Truncated {
            what: "name",
            offset: pos,
        })?;
        match len >> 6 {
            0 if len == 0 => return Ok((out, end.unwrap_or(pos + 1))),
            0 => {
                let n = usize::from(len);
                let label = msg.get(pos + 1..pos + 1 + n).ok_or(DnsError::Truncated {
                    what: "label",
                    offset: pos,
                })?;
                labels += 1;
                wire += 1 + n;
                if labels > MAX_LABELS || wire > MAX_NAME_WIRE {
                    return Err(DnsError::NameTooLong { offset: start });
                }
                if !out.is_empty() {
                    out.push('.');
                }
                for &b in label {
                    push_escaped(&mut out, b);
                }
                pos += 1 + n;
            }
            3 => {
                let lo = *msg.get(pos + 1).ok_or(DnsError::Truncated {
                    what: "compression pointer",
                    offset: pos,
                })?;
                let target = usize::from(len & 0x3f) << 8 | usize::from(lo);
                if target >= pos {
                    return Err(DnsError::ForwardPointer {
                        offset: pos,
                        target,
                    });
                }
                end.get_or_insert(pos + 2);
                pos = target;
            }
            _ => {
                return Err(DnsError::BadLabelType {
                    offset: pos,
                    byte: len,
                });
            }
        }
    }
}

/// Lower-case a label byte; escape anything that is not a visible ASCII character as `\DDD`,
/// and also `.` and `\`, so a label like "evil.zoom" cannot pass for two labels and no two
/// different names print the same.
fn push_escaped(out: &mut String, b: u8) {
    let b = b.to_ascii_lowercase();
    if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
        out.push(char::from(b));
    } else {
        out.push('\\');
        for digit in [b / 100, b / 10 % 10, b % 10] {
            out.push(char::from(b'0' + digit));
        }
    }
}

/// A response to `name` (A for an IPv4 address, AAAA for IPv6) with one answer: `addr`, for
/// `ttl` seconds. What `explain --dns-name` lets cross the gateway before its probe.
///
/// # Panics
/// Never for a name of at most 253 bytes whose labels hold at most 63 (what
/// `syntax::domain` accepts); longer labels are cut.
#[must_use]
pub fn answer(name: &str, addr: IpAddr, ttl: u32) -> Vec<u8> {
    let (kind, data) = match addr {
        IpAddr::V4(a) => (TYPE_A, a.octets().to_vec()),
        IpAddr::V6(a) => (TYPE_AAAA, a.octets().to_vec()),
    };
    // Identifier, flags (a response, recursion desired and available), one question, one answer.
    let mut m = vec![0x76, 0x67, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        let label = &label.as_bytes()[..label.len().min(63)];
        m.push(label.len() as u8);
        m.extend_from_slice(label);
    }
    m.push(0);
    m.extend_from_slice(&kind.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    // The answer's owner points back at the question's name.
    m.extend_from_slice(&[0xc0, 0x0c]);
    m.extend_from_slice(&kind.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    m.extend_from_slice(&ttl.to_be_bytes());
    m.extend_from_slice(&(data.len() as u16).to_be_bytes());
    m.extend_from_slice(&data);
    m
}

#[cfg(test)]
mod tests;
