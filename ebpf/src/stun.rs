//! Vendor STUN attributes in the first datagrams of a UDP flow (see `vigie_common::stun`). The
//! datagram is copied into the server-name reader's work area (`sni::copy_payload`), which
//! both readers share.

use vigie_common::{
    sni::PAYLOAD_BYTES,
    stun::{MAX_STUN_ATTRIBUTES, NOT_STUN, StunKey},
};

use crate::{
    maps::{SNI_WORK, STUN_ATTRS},
    sni::{MASK, be16, byte},
};

/// The service whose vendor STUN attribute the datagram in the work area carries: 0 for a
/// STUN message without one, `NOT_STUN` for anything else (RFC 8489: two zero bits, a length
/// that is a multiple of four and fits, the magic cookie).
///
/// A global BPF function, verified once.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn vigie_stun_service() -> u64 {
    let Some(work) = SNI_WORK.get_ptr(0) else {
        return NOT_STUN;
    };
    // SAFETY: this CPU's work area, valid for the program run.
    let w = unsafe { &*work };
    let len = (w.len as usize).min(PAYLOAD_BYTES);
    if len < 20 || byte(w, 0) & 0xc0 != 0 {
        return NOT_STUN;
    }
    let cookie = (be16(w, 4) << 16) | be16(w, 6);
    let body = be16(w, 2);
    if cookie != STUN_MAGIC_COOKIE || !body.is_multiple_of(4) || 20 + body > len {
        return NOT_STUN;
    }
    let end = 20 + body;
    let mut key = StunKey {
        slot: w.slot & 1,
        attribute: 0,
    };
    let mut at = 20usize;
    for _ in 0..MAX_STUN_ATTRIBUTES {
        if at + 4 > end {
            break;
        }
        key.attribute = be16(w, at) as u32;
        if let Some(service) = STUN_ATTRS.get_ptr(&key) {
            // SAFETY: a map value pointer, valid for this program run.
            return u64::from(unsafe { *service });
        }
        // Values are padded to four bytes.
        at = (at + 4 + ((be16(w, at + 2) + 3) & !3)) & MASK;
    }
    0
}

const STUN_MAGIC_COOKIE: usize = 0x2112_a442;
