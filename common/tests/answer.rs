//! The answer builder on inputs the kernel's parser would never hand it, and on truncated
//! copies: it must decline rather than write a broken answer. (Well-formed answers are checked
//! byte for byte through the kernel program in `lab/tests/datapath_reject.rs`.)

use vigie_common::answer::{FRAME_BYTES, Frame, Layout, MAX_LINK_BYTES, build};

/// An Ethernet + IPv4 + UDP frame (8 bytes of payload), as the kernel would copy it.
fn udp4() -> (Frame, usize) {
    let mut f = Frame::default();
    let b = &mut f.bytes;
    b[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    b[14] = 0x45;
    b[16..18].copy_from_slice(&36u16.to_be_bytes());
    b[22] = 64;
    b[23] = 17;
    b[26..30].copy_from_slice(&[10, 1, 0, 5]);
    b[30..34].copy_from_slice(&[3, 7, 35, 10]);
    b[34..36].copy_from_slice(&5000u16.to_be_bytes());
    b[36..38].copy_from_slice(&8801u16.to_be_bytes());
    b[38..40].copy_from_slice(&16u16.to_be_bytes());
    (f, 14 + 36)
}

const PLAIN: Layout = Layout {
    l3: 14,
    pppoe: false,
};

#[test]
fn a_well_formed_datagram_is_answered() {
    let (original, len) = udp4();
    let mut out = Frame::default();
    assert_eq!(
        build(&original.bytes, len, PLAIN, &mut out.bytes),
        Some(14 + 56)
    );
    assert_eq!((out.bytes[14 + 20], out.bytes[14 + 21]), (3, 3));
}

#[test]
fn a_copy_that_ends_inside_the_headers_gets_no_answer() {
    let (original, _) = udp4();
    let mut out = Frame::default();
    for copied in 0..14 + 20 + 8 {
        assert_eq!(
            build(&original.bytes, copied, PLAIN, &mut out.bytes),
            None,
            "copied {copied}"
        );
    }
    assert!(build(&original.bytes, 14 + 28, PLAIN, &mut out.bytes).is_some());
}

#[test]
fn impossible_layouts_and_versions_get_no_answer() {
    let (original, len) = udp4();
    let mut out = Frame::default();
    for l3 in [0, 13, MAX_LINK_BYTES + 1, FRAME_BYTES, usize::MAX] {
        let layout = Layout { l3, pppoe: false };
        assert_eq!(
            build(&original.bytes, len, layout, &mut out.bytes),
            None,
            "l3 {l3}"
        );
    }
    assert_eq!(
        build(&original.bytes, FRAME_BYTES + 1, PLAIN, &mut out.bytes),
        None
    );
    let mut bad = original;
    bad.bytes[14] = 0x55; // version 5
    assert_eq!(build(&bad.bytes, len, PLAIN, &mut out.bytes), None);
    let mut options = original;
    options.bytes[14] = 0x46; // IHL 6: options
    assert_eq!(build(&options.bytes, len, PLAIN, &mut out.bytes), None);
    let mut icmp = original;
    icmp.bytes[23] = 1;
    assert_eq!(build(&icmp.bytes, len, PLAIN, &mut out.bytes), None);
}

#[test]
fn a_reset_is_never_answered() {
    let (mut original, _) = udp4();
    original.bytes[23] = 6;
    original.bytes[14 + 20 + 12] = 5 << 4;
    let mut out = Frame::default();
    assert!(build(&original.bytes, 14 + 40, PLAIN, &mut out.bytes).is_some());
    original.bytes[14 + 20 + 13] = 0x04 | 0x10;
    assert_eq!(build(&original.bytes, 14 + 40, PLAIN, &mut out.bytes), None);
}
