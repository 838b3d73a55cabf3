//! Hand-built responses checked against exact expected values.

use super::{DnsError, Learned, parse, parse_tcp, under};
use std::net::IpAddr;

/// Wire form of a dotted name, uncompressed.
fn name(dotted: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in dotted.split('.').filter(|l| !l.is_empty()) {
        out.push(u8::try_from(label.len()).unwrap());
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// Header with QR and RD/RA set, opcode QUERY, the given rcode and counts.
fn header(id: u16, rcode: u8, counts: [u16; 4]) -> Vec<u8> {
    let mut out = id.to_be_bytes().to_vec();
    out.extend_from_slice(&[0x81, 0x80 | rcode]);
    for c in counts {
        out.extend_from_slice(&c.to_be_bytes());
    }
    out
}

fn question(msg: &mut Vec<u8>, qname: &[u8], qtype: u16) {
    msg.extend_from_slice(qname);
    msg.extend_from_slice(&qtype.to_be_bytes());
    msg.extend_from_slice(&1u16.to_be_bytes());
}

fn rr(msg: &mut Vec<u8>, owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) {
    msg.extend_from_slice(owner);
    msg.extend_from_slice(&rtype.to_be_bytes());
    msg.extend_from_slice(&1u16.to_be_bytes());
    msg.extend_from_slice(&ttl.to_be_bytes());
    msg.extend_from_slice(&u16::try_from(rdata.len()).unwrap().to_be_bytes());
    msg.extend_from_slice(rdata);
}

/// Pointer to the question name, which always sits right after the header.
const AT_QNAME: [u8; 2] = [0xc0, 0x0c];

/// zoom.us A 3.7.35.1 (ttl 300) and 3.7.35.2 (ttl 60), owners compressed.
fn zoom() -> Vec<u8> {
    let mut m = header(0x1234, 0, [1, 2, 0, 0]);
    question(&mut m, &name("Zoom.US"), 1);
    rr(&mut m, &AT_QNAME, 1, 300, &[3, 7, 35, 1]);
    rr(&mut m, &AT_QNAME, 1, 60, &[3, 7, 35, 2]);
    m
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn zoom_two_a_records() {
    let msg = zoom();
    let r = parse(&msg).unwrap();
    assert_eq!(r.id(), 0x1234);
    assert_eq!(r.rcode(), 0);
    assert_eq!(r.question(), Some("zoom.us"));
    let zoom = vec!["zoom.us".to_owned()];
    assert_eq!(
        r.addresses(),
        vec![
            Learned {
                address: ip("3.7.35.1"),
                ttl: 300,
                names: zoom.clone()
            },
            Learned {
                address: ip("3.7.35.2"),
                ttl: 60,
                names: zoom
            },
        ]
    );
}

/// teams.microsoft.com CNAME teams.office.com CNAME s-0005.s-msedge.net, which has A and AAAA.
/// Uses compression both in owners and inside CNAME rdata (suffix "com" shared).
fn teams() -> Vec<u8> {
    let mut m = header(7, 0, [1, 4, 0, 1]);
    question(&mut m, &name("teams.microsoft.com"), 1); // at 12; "com" label at 12+16=28
    rr(
        &mut m,
        &AT_QNAME,
        5,
        3600,
        &[b"\x05teams\x06office".as_slice(), &[0xc0, 28]].concat(),
    );
    // Second record's owner: the CNAME target just written, at 12+25 (qname+qtype/class) +12.
    let office_at = 12 + 21 + 4 + 12;
    rr(
        &mut m,
        &[0xc0, office_at],
        5,
        120,
        &name("s-0005.s-msedge.net"),
    );
    let edge_at = u8::try_from(m.len() - 21).unwrap();
    rr(&mut m, &[0xc0, edge_at], 1, 240, &[13, 107, 6, 158]);
    let v6: std::net::Ipv6Addr = "2620:1ec:42::132".parse().unwrap();
    rr(&mut m, &[0xc0, edge_at], 28, 30, &v6.octets());
    rr(&mut m, &[0], 41, 0, &[]); // OPT in additional: skipped, length validated
    m
}

#[test]
fn teams_cname_chain() {
    let msg = teams();
    let r = parse(&msg).unwrap();
    assert_eq!(r.question(), Some("teams.microsoft.com"));
    let chain: Vec<String> = [
        "teams.microsoft.com",
        "teams.office.com",
        "s-0005.s-msedge.net",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(
        r.addresses(),
        vec![
            Learned {
                address: ip("13.107.6.158"),
                ttl: 120,
                names: chain.clone()
            },
            Learned {
                address: ip("2620:1ec:42::132"),
                ttl: 30,
                names: chain
            },
        ]
    );
}

#[test]
fn unreachable_owner_is_returned_alone() {
    let mut m = header(1, 0, [1, 1, 0, 0]);
    question(&mut m, &name("zoom.us"), 1);
    rr(&mut m, &name("Glue.Example.NET"), 1, 99, &[192, 0, 2, 1]);
    let r = parse(&m).unwrap();
    assert_eq!(
        r.addresses(),
        vec![Learned {
            address: ip("192.0.2.1"),
            ttl: 99,
            names: vec!["glue.example.net".into()]
        }]
    );
}

#[test]
fn cname_loop_terminates() {
    // a.test CNAME b.test, b.test CNAME a.test, and an A for b.test.
    let mut m = header(1, 0, [1, 3, 0, 0]);
    question(&mut m, &name("a.test"), 1);
    rr(&mut m, &name("a.test"), 5, 50, &name("b.test"));
    rr(&mut m, &name("b.test"), 5, 40, &name("a.test"));
    rr(&mut m, &name("b.test"), 1, 60, &[192, 0, 2, 9]);
    let got = parse(&m).unwrap().addresses();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].names, ["a.test", "b.test"]);
    assert_eq!(got[0].ttl, 50);
}

#[test]
fn cname_chain_is_capped_at_16_hops() {
    // c0 -> c1 -> ... -> c20 with an A on `owner`.
    let names_for = |owner: &str| {
        let mut m = header(1, 0, [1, 21, 0, 0]);
        question(&mut m, &name("c0.test"), 1);
        for i in 0..20 {
            rr(
                &mut m,
                &name(&format!("c{i}.test")),
                5,
                10,
                &name(&format!("c{}.test", i + 1)),
            );
        }
        rr(&mut m, &name(owner), 1, 10, &[192, 0, 2, 1]);
        parse(&m).unwrap().addresses().remove(0).names
    };
    // Exactly 16 hops: the whole chain.
    let chain = names_for("c16.test");
    assert_eq!(
        (chain.len(), chain[0].as_str(), chain[16].as_str()),
        (17, "c0.test", "c16.test")
    );
    // 17 hops: beyond the cap, so the owner comes back alone.
    assert_eq!(names_for("c17.test"), ["c17.test"]);
}

#[test]
fn odd_label_bytes_are_escaped() {
    let mut m = header(1, 0, [1, 0, 0, 0]);
    question(&mut m, b"\x06a.b c\xff\x02US\x00", 1);
    assert_eq!(parse(&m).unwrap().question(), Some("a\\046b\\032c\\255.us"));
}

#[test]
fn pointer_loop_is_refused() {
    // Name at 12 is a pointer to itself.
    let mut m = header(1, 0, [1, 0, 0, 0]);
    question(&mut m, &AT_QNAME, 1);
    assert_eq!(
        parse(&m).unwrap_err(),
        DnsError::ForwardPointer {
            offset: 12,
            target: 12
        }
    );
    // Answer owner at 24 is label "x" then a pointer back to 24: every jump is backwards, yet
    // it repeats forever; the 255-byte budget ends it.
    let mut m = header(1, 0, [1, 1, 0, 0]);
    question(&mut m, &name("a.test"), 1); // 12..24
    rr(&mut m, &[1, b'x', 0xc0, 24], 1, 1, &[1, 2, 3, 4]);
    assert_eq!(parse(&m).unwrap_err(), DnsError::NameTooLong { offset: 24 });
}

#[test]
fn forward_pointer_is_refused() {
    let mut m = header(1, 0, [1, 0, 0, 0]);
    question(&mut m, &[0xc0, 18], 1);
    m.extend_from_slice(&name("later.test"));
    let err = parse(&m).unwrap_err();
    assert_eq!(
        err,
        DnsError::ForwardPointer {
            offset: 12,
            target: 18
        }
    );
    assert!(err.to_string().contains("byte 12"), "{err}");
}

#[test]
fn long_names_and_bad_labels_are_refused() {
    let mut m = header(1, 0, [1, 0, 0, 0]);
    question(&mut m, &name(&"a.".repeat(130)), 1);
    assert_eq!(parse(&m).unwrap_err(), DnsError::NameTooLong { offset: 12 });
    let mut m = header(1, 0, [1, 0, 0, 0]);
    question(&mut m, &[0x41, 0], 1);
    assert_eq!(
        parse(&m).unwrap_err(),
        DnsError::BadLabelType {
            offset: 12,
            byte: 0x41
        }
    );
}

#[test]
fn every_truncation_is_an_error() {
    for msg in [zoom(), teams()] {
        for len in 0..msg.len() {
            assert!(parse(&msg[..len]).is_err(), "prefix of {len} bytes parsed");
        }
        assert!(parse(&msg).is_ok());
    }
}

#[test]
fn lying_counts() {
    // Claims 65535 answers: refused from the header alone.
    let mut msg = zoom();
    msg[6..8].copy_from_slice(&[0xff, 0xff]);
    assert_eq!(
        parse(&msg).unwrap_err(),
        DnsError::TooManyRecords {
            offset: 4,
            needed: 5 + 65535 * 11,
            have: msg.len() - 12
        }
    );
    // Claims 3 answers where 2 exist: within the bound, but the third starts at the end.
    let mut msg = zoom();
    msg[7] = 3;
    assert_eq!(
        parse(&msg).unwrap_err(),
        DnsError::Truncated {
            what: "name",
            offset: msg.len()
        }
    );
    // A record whose rdlength runs past the end.
    let mut msg = zoom();
    let at = msg.len() - 6;
    msg[at..at + 2].copy_from_slice(&[0, 40]);
    assert_eq!(
        parse(&msg).unwrap_err(),
        DnsError::Truncated {
            what: "resource record",
            offset: msg.len() - 16
        }
    );
    // An A record with 5 bytes of data.
    let mut m = header(1, 0, [1, 1, 0, 0]);
    question(&mut m, &name("x.test"), 1);
    rr(&mut m, &AT_QNAME, 1, 1, &[1, 2, 3, 4, 5]);
    assert_eq!(
        parse(&m).unwrap_err(),
        DnsError::BadRdata {
            offset: 36,
            rtype: 1,
            len: 5
        }
    );
}

#[test]
fn queries_and_other_opcodes_are_refused() {
    let mut msg = zoom();
    msg[2] = 0x01;
    assert_eq!(
        parse(&msg).unwrap_err(),
        DnsError::NotResponse { offset: 2 }
    );
    msg[2] = 0x80 | (4 << 3); // NOTIFY
    assert_eq!(
        parse(&msg).unwrap_err(),
        DnsError::BadOpcode {
            offset: 2,
            opcode: 4
        }
    );
}

fn tcp(messages: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        out.extend_from_slice(&u16::try_from(m.len()).unwrap().to_be_bytes());
        out.extend_from_slice(m);
    }
    out
}

#[test]
fn tcp_two_messages_and_a_partial_one() {
    let (z, t) = (zoom(), teams());
    let stream = tcp(&[&z, &t]);
    let got = parse_tcp(&stream).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].question(), Some("zoom.us"));
    assert_eq!(got[1].question(), Some("teams.microsoft.com"));
    assert_eq!(got[1].addresses().len(), 2);

    let whole = stream.len();
    assert_eq!(
        parse_tcp(&stream[..whole - 3]).unwrap_err(),
        DnsError::TruncatedTcp {
            offset: z.len() + 2,
            needed: t.len() + 2,
            have: t.len() - 1
        }
    );
    // Only one byte of the second length prefix.
    assert_eq!(
        parse_tcp(&stream[..z.len() + 3]).unwrap_err(),
        DnsError::TruncatedTcp {
            offset: z.len() + 2,
            needed: 2,
            have: 1
        }
    );
    assert!(parse_tcp(&[]).unwrap().is_empty());
    // An error inside the second message is reported at its offset in the stream.
    let mut bad = stream.clone();
    bad[z.len() + 2 + 2 + 2] = 0x01; // second message's flags byte: QR cleared
    assert_eq!(
        parse_tcp(&bad).unwrap_err(),
        DnsError::NotResponse {
            offset: z.len() + 6
        }
    );
}

#[test]
fn nxdomain_without_answers() {
    let mut m = header(0xbeef, 3, [1, 0, 1, 0]);
    question(&mut m, &name("nope.zoom.us"), 1);
    // SOA in authority: contents not decoded, only its length checked.
    rr(&mut m, &[0xc0, 17], 6, 900, &[0; 22]);
    let r = parse(&m).unwrap();
    assert_eq!((r.id(), r.rcode()), (0xbeef, 3));
    assert_eq!(r.question(), Some("nope.zoom.us"));
    assert!(r.addresses().is_empty());
}

#[test]
fn high_bit_ttl_is_zero() {
    let mut m = header(1, 0, [1, 1, 0, 0]);
    question(&mut m, &name("x.test"), 1);
    rr(&mut m, &AT_QNAME, 1, 0x8000_0001, &[1, 2, 3, 4]);
    assert_eq!(parse(&m).unwrap().addresses()[0].ttl, 0);
}

#[test]
fn under_cases() {
    assert!(under("zoom.us", "zoom.us"));
    assert!(under("us04web.zoom.us", "zoom.us"));
    assert!(under("a.b.teams.microsoft.com", "teams.microsoft.com"));
    assert!(!under("notzoom.us", "zoom.us"));
    assert!(!under("zoom.us", "us04web.zoom.us"));
    assert!(!under("zoom.usa", "zoom.us"));
    assert!(under("WWW.Zoom.US", "zoom.us"));
    assert!(under("www.zoom.us", "ZOOM.us"));
    // One trailing dot is ignored on either side.
    assert!(under("www.zoom.us.", "zoom.us"));
    assert!(under("www.zoom.us", "zoom.us."));
    // The root as a domain matches nothing.
    assert!(!under("zoom.us", ""));
    assert!(!under("zoom.us", "."));
    // An escaped dot inside a label (as `parse` prints it) is not a label boundary.
    assert!(!under("evil\\046zoom.us", "zoom.us"));
}

#[test]
fn mutated_messages_never_panic() {
    // Deterministic xorshift: flip bytes in valid messages; any Ok/Err is fine, a panic is not.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (z, t) = (zoom(), teams());
    for round in 0..20_000 {
        let mut msg = if round % 2 == 0 { z.clone() } else { t.clone() };
        for _ in 0..=next() % 4 {
            let i = usize::try_from(next() % msg.len() as u64).unwrap();
            msg[i] = u8::try_from(next() & 0xff).unwrap();
        }
        if let Ok(r) = parse(&msg) {
            let _ = (r.id(), r.rcode(), r.question(), r.addresses());
        }
        let _ = parse_tcp(&msg);
    }
}

#[test]
fn built_answers_read_back() {
    for addr in ["203.0.113.9", "2001:db8::9"] {
        let addr: IpAddr = addr.parse().unwrap();
        let message = super::answer("Meet.Zoom.us.", addr, 120);
        let response = parse(&message).unwrap();
        assert_eq!(response.question(), Some("meet.zoom.us"));
        let learned = response.addresses();
        assert_eq!(learned.len(), 1);
        assert_eq!((learned[0].address, learned[0].ttl), (addr, 120));
        assert_eq!(learned[0].names, ["meet.zoom.us"]);
    }
}

#[test]
fn a_dnsmasq_cname_answer_chains_to_its_target() {
    // dnsmasq's answer for `video.corp.test`, a `--cname` of a `--host-record`.
    let hex = "12348580000100020000000005766964656f04636f727004746573740000010001c00c0005000100\
               0000020018026777057465616d73096d6963726f736f667403636f6d00c02d00010001000000020004\
               cb007152";
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let response = parse(&bytes).unwrap();
    let learned = response.addresses();
    assert_eq!(learned.len(), 1);
    assert_eq!(
        learned[0].address,
        "203.0.113.82".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        learned[0].names,
        ["video.corp.test", "gw.teams.microsoft.com"]
    );
    assert_eq!(learned[0].ttl, 2);
}
