//! Reading pcap and pcapng files into Ethernet frames, in capture order.
//!
//! The kernel programs parse Ethernet, so packets of other link types are given an Ethernet
//! header: raw IP, Linux cooked captures (SLL and SLL2) and BSD loopback. A packet of a link
//! type vigie cannot turn into Ethernet is skipped and counted; a file that is not a capture,
//! or that ends in the middle of a block, is an error naming the byte offset.

use std::path::{Path, PathBuf};

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;

const LINKTYPE_NULL: u32 = 0;
const LINKTYPE_ETHERNET: u32 = 1;
const LINKTYPE_RAW: u32 = 101;
const LINKTYPE_RAW_ALT: u32 = 12;
const LINKTYPE_IPV4: u32 = 228;
const LINKTYPE_IPV6: u32 = 229;
const LINKTYPE_LINUX_SLL: u32 = 113;
const LINKTYPE_LINUX_SLL2: u32 = 276;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a pcap or pcapng file (first bytes {magic:02x?})")]
    NotACapture { path: PathBuf, magic: Vec<u8> },
    #[error("{path}: byte {offset}: {what}")]
    Malformed {
        path: PathBuf,
        offset: usize,
        what: String,
    },
}

/// The packets of a capture, as Ethernet frames, and what could not be used.
#[derive(Debug, Default)]
pub struct Capture {
    pub frames: Vec<Vec<u8>>,
    /// Packets of a link type vigie does not read, by link type.
    pub skipped: Vec<(u32, usize)>,
}

impl Capture {
    fn push(&mut self, linktype: u32, data: &[u8]) {
        match ethernet(linktype, data) {
            Some(frame) => self.frames.push(frame),
            None => match self.skipped.iter_mut().find(|(l, _)| *l == linktype) {
                Some((_, n)) => *n += 1,
                None => self.skipped.push((linktype, 1)),
            },
        }
    }
}

pub fn read(path: &Path) -> Result<Capture, CaptureError> {
    let bytes = std::fs::read(path).map_err(|source| CaptureError::Read {
        path: path.to_owned(),
        source,
    })?;
    let reader = Reader {
        path,
        bytes: &bytes,
    };
    match bytes.get(..4) {
        Some([0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1]) => reader.pcap(true),
        Some([0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d]) => reader.pcap(false),
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => reader.pcapng(),
        _ => Err(CaptureError::NotACapture {
            path: path.to_owned(),
            magic: bytes.iter().take(4).copied().collect(),
        }),
    }
}

struct Reader<'a> {
    path: &'a Path,
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn malformed(&self, offset: usize, what: impl Into<String>) -> CaptureError {
        CaptureError::Malformed {
            path: self.path.to_owned(),
            offset,
            what: what.into(),
        }
    }

    fn slice(&self, offset: usize, len: usize, what: &str) -> Result<&[u8], CaptureError> {
        offset
            .checked_add(len)
            .and_then(|end| self.bytes.get(offset..end))
            .ok_or_else(|| {
                self.malformed(
                    offset,
                    format!("{what} needs {len} bytes, the file ends before"),
                )
            })
    }

    fn u32_at(&self, offset: usize, little: bool, what: &str) -> Result<u32, CaptureError> {
        let b: [u8; 4] = self.slice(offset, 4, what)?.try_into().expect("four bytes");
        Ok(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    fn pcap(&self, little: bool) -> Result<Capture, CaptureError> {
        let linktype = self.u32_at(20, little, "the file header")? & 0x0fff_ffff;
        let mut capture = Capture::default();
        let mut at = 24;
        while at < self.bytes.len() {
            let included = self.u32_at(at + 8, little, "a record header")? as usize;
            let data = self.slice(at + 16, included, "a packet record")?;
            capture.push(linktype, data);
            at += 16 + included;
        }
        Ok(capture)
    }

    fn pcapng(&self) -> Result<Capture, CaptureError> {
        let mut capture = Capture::default();
        let mut little = true;
        // Link types of the interfaces of the current section, by interface id.
        let mut interfaces: Vec<u32> = Vec::new();
        let mut at = 0;
        while at < self.bytes.len() {
            let kind_bytes = self.slice(at, 4, "a block header")?;
            if kind_bytes == [0x0a, 0x0d, 0x0d, 0x0a] {
                // Section header: its byte-order magic sets the order of what follows.
                let magic = self.slice(at + 8, 4, "a section header")?;
                little = match magic {
                    [0x4d, 0x3c, 0x2b, 0x1a] => true,
                    [0x1a, 0x2b, 0x3c, 0x4d] => false,
                    _ => return Err(self.malformed(at + 8, "unknown byte-order magic")),
                };
                interfaces.clear();
            }
            let kind = self.u32_at(at, little, "a block header")?;
            let len = self.u32_at(at + 4, little, "a block header")? as usize;
            if len < 12 || !len.is_multiple_of(4) {
                return Err(self.malformed(at + 4, format!("block length {len}")));
            }
            let block = self.slice(at, len, "a block")?;
            match kind {
                // Interface description: link type in the first two bytes of the body.
                1 => {
                    let b = [block[8], block[9]];
                    let linktype = if little {
                        u16::from_le_bytes(b)
                    } else {
                        u16::from_be_bytes(b)
                    };
                    interfaces.push(u32::from(linktype));
                }
                // Enhanced packet: interface, timestamp, captured length, original length.
                6 => {
                    let interface = self.u32_at(at + 8, little, "a packet block")? as usize;
                    let captured = self.u32_at(at + 20, little, "a packet block")? as usize;
                    if 28 + captured > len {
                        return Err(self.malformed(at, "packet longer than its block"));
                    }
                    let linktype = *interfaces.get(interface).ok_or_else(|| {
                        self.malformed(
                            at + 8,
                            format!("packet of undeclared interface {interface}"),
                        )
                    })?;
                    capture.push(linktype, &block[28..28 + captured]);
                }
                // Simple packet: interface 0, the packet fills the block.
                3 => {
                    let original = self.u32_at(at + 8, little, "a packet block")? as usize;
                    let captured = original.min(len - 16);
                    let linktype = *interfaces
                        .first()
                        .ok_or_else(|| self.malformed(at, "packet before any interface"))?;
                    capture.push(linktype, &block[12..12 + captured]);
                }
                _ => {}
            }
            at += len;
        }
        Ok(capture)
    }
}

/// The packet as an Ethernet frame, or None for a link type vigie cannot convert.
fn ethernet(linktype: u32, data: &[u8]) -> Option<Vec<u8>> {
    let with_header = |ether_type: u16, payload: &[u8]| {
        let mut frame = Vec::with_capacity(14 + payload.len());
        frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01]);
        frame.extend_from_slice(&ether_type.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    };
    let by_version = |payload: &[u8]| match payload.first().map(|b| b >> 4) {
        Some(4) => Some(with_header(ETHERTYPE_IPV4, payload)),
        Some(6) => Some(with_header(ETHERTYPE_IPV6, payload)),
        _ => None,
    };
    match linktype {
        LINKTYPE_ETHERNET => Some(data.to_vec()),
        LINKTYPE_RAW | LINKTYPE_RAW_ALT | LINKTYPE_IPV4 | LINKTYPE_IPV6 => by_version(data),
        LINKTYPE_LINUX_SLL => {
            let protocol = u16::from_be_bytes([*data.get(14)?, *data.get(15)?]);
            Some(with_header(protocol, data.get(16..)?))
        }
        LINKTYPE_LINUX_SLL2 => {
            let protocol = u16::from_be_bytes([*data.first()?, *data.get(1)?]);
            Some(with_header(protocol, data.get(20..)?))
        }
        // A 4-byte address family in the capturing host's order; the IP version says the rest.
        LINKTYPE_NULL => by_version(data.get(4..)?),
        _ => None,
    }
}
