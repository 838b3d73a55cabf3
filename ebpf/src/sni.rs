//! The TLS server name of a flow from the LAN, read from its ClientHello as the segments pass.
//!
//! A ClientHello is often longer than one segment (post-quantum key shares), and browsers
//! shuffle its extensions, so the `server_name` extension may come in any segment. The walk
//! keeps, in the flow entry, the sequence number of the next extension header and of the end
//! of the extensions; each segment advances it over the extensions it holds. Segments before
//! the name pass; the one that carries it gets the verdict of the service the name belongs
//! to, so a blocked handshake never completes (the server never has the whole ClientHello).
//!
//! What the walk cannot read is counted, not guessed: an extension header or a name split
//! across two segments, lengths that do not add up, a ClientHello without a name (or with an
//! encrypted one).

use aya_ebpf::{
    EbpfContext as _,
    cty::c_void,
    helpers::generated::{bpf_skb_load_bytes, bpf_xdp_load_bytes},
    programs::{TcContext, XdpContext},
};
use vigie_common::sni::{
    DomainKey, MAX_EXTENSIONS_PER_SEGMENT, MAX_NAME, MAX_SUFFIXES, PAYLOAD_BYTES, SniWork, extend,
    next_power, status,
};

use crate::{
    maps::{DOMAINS, SNI_WORK},
    payload,
};

pub const MASK: usize = PAYLOAD_BYTES - 1;
const TLS_HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const SERVER_NAME: u16 = 0;
/// The Encrypted Client Hello extension (draft-ietf-tls-esni).
const ENCRYPTED_CLIENT_HELLO: usize = 0xfe0d;
/// Record header (5), handshake header (4), version (2), random (32).
const SESSION_ID_AT: usize = 43;

/// Reads packet bytes into memory, as each hook's helper does (`bpf_xdp_load_bytes`,
/// `bpf_skb_load_bytes`): one helper call, which the verifier checks once, instead of a copy
/// loop it would walk on every path of the classifier.
pub trait LoadBytes {
    /// Copies `len` bytes at `offset` of the packet to `to`; false if the packet is shorter.
    fn load(&self, offset: u32, to: *mut u8, len: u32) -> bool;
    /// Hands `len` payload bytes at `offset` to the daemon (see `payload`); returns a
    /// `payload::handed` code.
    fn hand_over(&self, offset: u32, len: u32, what: u32) -> u32;
}

impl LoadBytes for XdpContext {
    #[inline(always)]
    fn load(&self, offset: u32, to: *mut u8, len: u32) -> bool {
        // SAFETY: the helper writes at most `len` bytes at `to`, which the caller provides.
        unsafe { bpf_xdp_load_bytes(self.ctx, offset, to.cast::<c_void>(), len) == 0 }
    }

    #[inline(always)]
    fn hand_over(&self, offset: u32, len: u32, what: u32) -> u32 {
        payload::vigie_xdp_hand_over(self.ctx, u64::from(offset), u64::from(len), u64::from(what))
            as u32
    }
}

impl LoadBytes for TcContext {
    #[inline(always)]
    fn load(&self, offset: u32, to: *mut u8, len: u32) -> bool {
        // SAFETY: as above.
        unsafe { bpf_skb_load_bytes(self.as_ptr(), offset, to.cast::<c_void>(), len) == 0 }
    }

    #[inline(always)]
    fn hand_over(&self, offset: u32, len: u32, what: u32) -> u32 {
        payload::vigie_tc_hand_over(
            self.as_ptr().cast(),
            u64::from(offset),
            u64::from(len),
            u64::from(what),
        ) as u32
    }
}

/// Copies the segment's payload (at most `PAYLOAD_BYTES`) into this CPU's work area; returns
/// it, or None when the map is missing or the packet is shorter than it says.
#[inline(always)]
pub fn copy_payload(packet: &impl LoadBytes, offset: u32, len: u32) -> Option<*mut SniWork> {
    let work = SNI_WORK.get_ptr_mut(0)?;
    // SAFETY: this CPU's work area. The length goes through it and is read back, so that the
    // bounds the helper's size argument needs are checked on the very register it gets (the
    // compiler would otherwise check a copy).
    unsafe {
        (*work).segment_len = len;
        (*work).len = len.min(PAYLOAD_BYTES as u32);
        let len = core::ptr::read_volatile(&raw const (*work).len);
        if len == 0 || len > PAYLOAD_BYTES as u32 {
            return None;
        }
        if !packet.load(offset, (*work).payload.as_mut_ptr(), len) {
            return None;
        }
    }
    Some(work)
}

#[inline(always)]
pub fn byte(w: &SniWork, at: usize) -> u8 {
    w.payload[at & MASK]
}

#[inline(always)]
pub fn be16(w: &SniWork, at: usize) -> usize {
    (usize::from(byte(w, at)) << 8) | usize::from(byte(w, at + 1))
}

/// One step of the walk over the segment in the work area: reads `next_seq`, `end_seq`,
/// `started`, `segment_seq`, `len` and `slot`, writes `next_seq`, `end_seq`, `status` and
/// `service`; returns the status.
///
/// A global BPF function, verified once on its own (its loops would otherwise be walked again
/// on every path of the classifier that reaches it).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn vigie_sni_step() -> u64 {
    let Some(work) = SNI_WORK.get_ptr_mut(0) else {
        return u64::from(status::UNREADABLE);
    };
    // SAFETY: this CPU's work area, valid for the program run.
    let w = unsafe { &mut *work };
    let verdict = walk(w);
    w.status = verdict;
    u64::from(verdict)
}

#[inline(always)]
fn walk(w: &mut SniWork) -> u32 {
    let len = (w.len as usize).min(PAYLOAD_BYTES);
    w.service = 0;
    w.ech = 0;
    if w.started & 1 == 0 {
        // Where the stream starts is known (from the SYN): another segment came first.
        if w.started & 2 != 0 && w.segment_seq != w.next_seq {
            return status::WAIT_START;
        }
        // The segment must start the stream: a handshake record holding a ClientHello.
        if byte(w, 0) != TLS_HANDSHAKE || byte(w, 1) != 3 || byte(w, 5) != CLIENT_HELLO {
            return status::NOT_TLS;
        }
        if len < SESSION_ID_AT + 1 {
            return status::UNREADABLE;
        }
        let session_id = usize::from(byte(w, SESSION_ID_AT));
        if session_id > 32 {
            return status::UNREADABLE;
        }
        let suites_at = SESSION_ID_AT + 1 + session_id;
        if suites_at + 2 > len {
            return status::UNREADABLE;
        }
        let compression_at = suites_at + 2 + be16(w, suites_at);
        if compression_at + 1 > len {
            return status::UNREADABLE;
        }
        let extensions_at = compression_at + 1 + usize::from(byte(w, compression_at));
        if extensions_at + 2 > len {
            return status::UNREADABLE;
        }
        let extensions_len = be16(w, extensions_at);
        w.next_seq = w.segment_seq.wrapping_add((extensions_at + 2) as u32);
        w.end_seq = w.next_seq.wrapping_add(extensions_len as u32);
    }
    for _ in 0..MAX_EXTENSIONS_PER_SEGMENT {
        if w.next_seq == w.end_seq {
            return status::NO_NAME;
        }
        let at = w.next_seq.wrapping_sub(w.segment_seq);
        if at >= w.segment_len {
            // In a later segment (this one is a retransmission, or the next one is still to
            // come), or this one starts past it (reordered, or sent out of order on purpose):
            // the walk waits for the segment that holds it. Ending the walk there would let a
            // client hide its name behind a segment sent ahead.
            return status::NEED_MORE;
        }
        // In this segment, but past the part copied (a segment longer than the copy: TSO on
        // a host, jumbo frames), or a header split with the next segment: not read.
        let at = at as usize;
        if at + 4 > len {
            return status::UNREADABLE;
        }
        let kind = be16(w, at);
        let ext_len = be16(w, at + 4 - 2);
        if kind == ENCRYPTED_CLIENT_HELLO {
            w.ech = 1;
        }
        if kind == usize::from(SERVER_NAME) {
            return server_name(w, at + 4, ext_len, len);
        }
        let next = w.next_seq.wrapping_add(4 + ext_len as u32);
        // An extension that runs past the extensions' end: lengths that do not add up.
        if next.wrapping_sub(w.next_seq) > w.end_seq.wrapping_sub(w.next_seq) {
            return status::UNREADABLE;
        }
        w.next_seq = next;
    }
    status::NEED_MORE
}

/// 1 if `x` is zero, else 0, without a branch.
#[inline(always)]
const fn is_zero(x: u64) -> u64 {
    ((x | x.wrapping_neg()) >> 63) ^ 1
}

/// Reads the host name of a `server_name` extension whose body starts at `at`, and finds its
/// service.
#[inline(always)]
fn server_name(w: &mut SniWork, at: usize, ext_len: usize, len: usize) -> u32 {
    // Server name list length (2), name type (1), name length (2), name.
    if ext_len < 5 || at + 5 > len || byte(w, at + 2) != 0 {
        return status::UNREADABLE;
    }
    let name_len = be16(w, at + 3);
    let name_at = at + 5;
    if name_len == 0 || name_len > MAX_NAME || name_at + name_len > len {
        return status::UNREADABLE;
    }
    w.service = vigie_sni_service(name_at as u64, name_len as u64) as u32;
    status::NAME
}

/// The service of the longest catalog domain that the name at `at` (`len` bytes of the
/// payload copy) equals or ends with ("." + domain); 0 for none.
///
/// A global BPF function of its own: verified once, whichever way the extension walk reached
/// it.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn vigie_sni_service(at: u64, len: u64) -> u64 {
    let Some(work) = SNI_WORK.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's work area, valid for the program run.
    let w = unsafe { &mut *work };
    let at = (at as usize) & MASK;
    let len = (len as usize).min(MAX_NAME);
    // One pass from the last byte: the hash of each suffix that starts a label is kept, the
    // shortest first.
    let mut hash = 0u64;
    let mut power = 1u64;
    w.suffixes = [0; MAX_SUFFIXES];
    w.kept = 0;
    // The loop body has no branch: the verifier walks it once per byte. Each byte's suffix
    // hash is written to the ring's next slot, which only a label start keeps (by moving on).
    for i in 0..MAX_NAME {
        if i >= len {
            break;
        }
        let position = at + len - 1 - i;
        hash = extend(hash, power, byte(w, position));
        power = next_power(power);
        let before = u64::from(byte(w, position.wrapping_sub(1)) ^ b'.');
        let first = ((i + 1) ^ len) as u64;
        let starts_label = (is_zero(before) | is_zero(first)) as usize;
        // The count lives in the map (volatile): in a register the verifier would track its
        // exact value and walk each byte once per count of labels so far.
        // SAFETY: this CPU's work area.
        unsafe {
            let kept = core::ptr::read_volatile(&raw const w.kept) as usize;
            w.suffixes[kept.min(MAX_SUFFIXES - 1)] = hash;
            core::ptr::write_volatile(&raw mut w.kept, (kept + starts_label) as u32);
        }
    }
    // SAFETY: as above.
    let kept = unsafe { core::ptr::read_volatile(&raw const w.kept) } as usize;
    // The longest suffix first. Slot `kept` is scratch (the suffix being hashed), and the last
    // slot takes every suffix beyond the first MAX_SUFFIXES - 1: domains of up to that many
    // labels match, however many labels the name has.
    let mut key = DomainKey {
        slot: w.slot & 1,
        pad: 0,
        hash: 0,
    };
    for back in 1..MAX_SUFFIXES {
        if back > kept.min(MAX_SUFFIXES - 1) {
            break;
        }
        key.hash = w.suffixes[kept.min(MAX_SUFFIXES - 1).wrapping_sub(back) % MAX_SUFFIXES];
        if let Some(service) = DOMAINS.get_ptr(&key) {
            // SAFETY: a map value pointer, valid for this program run.
            return u64::from(unsafe { *service });
        }
    }
    0
}
