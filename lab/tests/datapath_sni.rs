//! TLS server names through `BPF_PROG_TEST_RUN`: crafted ClientHellos, in one segment or cut
//! across several with the name in a later one, matched against the catalog's domains; and
//! hellos that lie (lengths that run past the data, names too long, a split header), which
//! must be counted as unreadable and never misread.

#[path = "datapath_support.rs"]
mod support;

use support::*;
use vigie::hello::ClientHello;
use vigie::sandbox::{Hook, Outcome, Sandbox};
use vigie_common::{
    action::{self, evidence},
    counters::stat,
    flow::flags,
};
use vigie_lab::packet::{Frame, tcp_flags};

const ISN: u32 = 0x0100_0000;
const PORT: u16 = 40000;

/// A TCP segment from the finance host to the unknown host's port 443 (no address evidence)
/// starting at stream offset `offset` (0: the first payload byte).
fn segment(offset: usize, payload: &[u8]) -> Vec<u8> {
    let frame = Frame::tcp4(FINANCE_HOST, PORT, UNKNOWN_HOST, 443)
        .tcp_flags(tcp_flags::ACK | tcp_flags::PSH)
        .payload(payload);
    let at = frame.offsets().transport;
    let seq = ISN.wrapping_add(1).wrapping_add(offset as u32);
    frame.patch(at + 4, &seq.to_be_bytes()).build()
}

fn syn() -> Vec<u8> {
    let frame = Frame::tcp4(FINANCE_HOST, PORT, UNKNOWN_HOST, 443);
    let at = frame.offsets().transport;
    frame.patch(at + 4, &ISN.to_be_bytes()).build()
}

/// Runs the SYN, then the record cut at `cuts` (stream offsets), on `hook`; returns the
/// outcome of each segment.
fn send(sandbox: &mut Sandbox, hook: Hook, record: &[u8], cuts: &[usize]) -> Vec<Outcome> {
    assert_eq!(run(sandbox, hook, &syn()), Outcome::Pass, "{hook:?}: SYN");
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(record.len());
    bounds
        .windows(2)
        .map(|w| run(sandbox, hook, &segment(w[0], &record[w[0]..w[1]])))
        .collect()
}

/// A hello naming zoom.us, with `before` and `after` bytes of other extensions around the name.
fn zoom_hello(before: usize, after: usize) -> ClientHello {
    ClientHello {
        server_name: Some("zoom.us".into()),
        before,
        after,
        ech: false,
    }
}

fn the_flow(sandbox: &Sandbox) -> vigie_common::flow::FlowEntry {
    only_flow(sandbox).1
}

#[test]
fn a_blocked_name_drops_the_segment_that_carries_it() {
    if !vigie_lab::privilege::privileged("a_blocked_name_drops_the_segment_that_carries_it") {
        return;
    }
    for name in ["zoom.us", "EU01WEB.Zoom.US", "a.b.c.d.e.f.g.h.i.zoom.us"] {
        let record = ClientHello::named(name).record();
        for hook in OUTBOUND_HOOKS {
            let mut sandbox = sandbox(&block_zoom());
            assert_eq!(
                send(&mut sandbox, hook, &record, &[]),
                [Outcome::Drop],
                "{hook:?} {name}"
            );
            let entry = the_flow(&sandbox);
            assert_eq!(
                (entry.service, entry.evidence, entry.action),
                (ZOOM, evidence::SNI, action::DROP),
                "{hook:?} {name}: {entry:?}"
            );
            assert_eq!(entry.flags & flags::SNI_PENDING, 0, "{hook:?}");
            assert_eq!(stat(&sandbox, stat::SNI_READ), 1, "{hook:?}");
            // The SYN's event (no service), then the one that names the flow.
            let events = sandbox.drain_events();
            let named = events.iter().find(|e| e.flags & flags::NAMED != 0);
            assert!(
                named.is_some_and(|e| e.service == ZOOM && e.evidence == evidence::SNI),
                "{hook:?}: {events:?}"
            );
            // Retransmissions of the hello get the verdict too.
            assert_eq!(
                run(&mut sandbox, hook, &segment(0, &record)),
                Outcome::Drop,
                "{hook:?}"
            );
        }
    }
}

#[test]
fn a_name_in_a_later_segment_is_found() {
    if !vigie_lab::privilege::privileged("a_name_in_a_later_segment_is_found") {
        return;
    }
    // A post-quantum-sized key share before the name: the hello spans three segments.
    let hello = zoom_hello(1800, 300);
    let record = hello.record();
    let name_at = hello.name_offset().unwrap();
    assert!((1500..1940).contains(&name_at), "{name_at}");
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(&block_zoom());
        let got = send(&mut sandbox, hook, &record, &[1000, 1500, 1950]);
        // The segments before the name pass (the second holds no extension header at all);
        // the one with the name is dropped, and so is what follows.
        let expected = [Outcome::Pass, Outcome::Pass, Outcome::Drop, Outcome::Drop];
        assert_eq!(got, expected, "{hook:?}");
        assert_eq!(the_flow(&sandbox).evidence, evidence::SNI, "{hook:?}");
    }
}

#[test]
fn allowed_and_unknown_names_pass() {
    if !vigie_lab::privilege::privileged("allowed_and_unknown_names_pass") {
        return;
    }
    let cases = [
        ("visio.numerique.gouv.fr", VISIO, evidence::SNI),
        ("notzoom.us", 0, evidence::NONE),
        ("zoom.us.example.org", 0, evidence::NONE),
        ("us", 0, evidence::NONE),
    ];
    for (name, service, how) in cases {
        let record = ClientHello::named(name).record();
        for hook in OUTBOUND_HOOKS {
            let mut sandbox = sandbox(&block_zoom());
            assert_eq!(
                send(&mut sandbox, hook, &record, &[]),
                [Outcome::Pass],
                "{hook:?} {name}"
            );
            let entry = the_flow(&sandbox);
            assert_eq!(
                (entry.service, entry.evidence),
                (service, how),
                "{hook:?} {name}"
            );
            assert_eq!(stat(&sandbox, stat::SNI_READ), 1, "{hook:?} {name}");
        }
    }
}

#[test]
fn an_encrypted_client_hello_is_a_blind_spot() {
    if !vigie_lab::privilege::privileged("an_encrypted_client_hello_is_a_blind_spot") {
        return;
    }
    // The outer hello names the public name; the real one is encrypted.
    let hello = ClientHello {
        server_name: Some("public.example.net".into()),
        ech: true,
        ..ClientHello::default()
    };
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(&block_zoom());
        assert_eq!(
            send(&mut sandbox, hook, &hello.record(), &[]),
            [Outcome::Pass]
        );
        assert_eq!(stat(&sandbox, stat::SNI_ENCRYPTED), 1, "{hook:?}");
        assert_eq!(stat(&sandbox, stat::SNI_READ), 1, "{hook:?}");
    }
    let mut plain = sandbox(&block_zoom());
    send(
        &mut plain,
        Hook::XdpOutbound,
        &ClientHello::named("public.example.net").record(),
        &[],
    );
    assert_eq!(stat(&plain, stat::SNI_ENCRYPTED), 0);
}

#[test]
fn hellos_without_a_name_and_other_protocols() {
    if !vigie_lab::privilege::privileged("hellos_without_a_name_and_other_protocols") {
        return;
    }
    let nameless = ClientHello::default().record();
    let http = b"GET / HTTP/1.1\r\nHost: zoom.us\r\n\r\n".to_vec();
    for hook in OUTBOUND_HOOKS {
        let mut first = sandbox(&block_zoom());
        assert_eq!(send(&mut first, hook, &nameless, &[]), [Outcome::Pass]);
        assert_eq!(stat(&first, stat::SNI_ABSENT), 1, "{hook:?}");
        assert_eq!(the_flow(&first).flags & flags::SNI_PENDING, 0);

        let mut second = sandbox(&block_zoom());
        assert_eq!(send(&mut second, hook, &http, &[]), [Outcome::Pass]);
        let counted =
            [stat::SNI_READ, stat::SNI_ABSENT, stat::SNI_UNREADABLE].map(|s| stat(&second, s));
        assert_eq!(counted, [0, 0, 0], "{hook:?}: not TLS is no blind spot");
        assert_eq!(the_flow(&second).flags & flags::SNI_PENDING, 0);
    }
}

#[test]
fn lying_hellos_are_unreadable_never_misread() {
    if !vigie_lab::privilege::privileged("lying_hellos_are_unreadable_never_misread") {
        return;
    }
    let good = ClientHello::named("zoom.us");
    let record = good.record();
    let name_at = good.name_offset().unwrap();
    let ext_at = name_at - 9; // the server_name extension's header
    let patched = |at: usize, bytes: &[u8]| {
        let mut r = record.clone();
        r[at..at + bytes.len()].copy_from_slice(bytes);
        r
    };
    let cases: Vec<(&str, Vec<u8>, Vec<usize>)> = vec![
        // The name's length runs past the segment.
        (
            "name too long for the data",
            patched(name_at - 2, &[0x07, 0xd0]),
            vec![],
        ),
        (
            "name longer than a host name",
            patched(name_at - 2, &[0x01, 0x00]),
            vec![],
        ),
        ("not a host name", patched(name_at - 3, &[1]), vec![]),
        // The extension header cut in two by a segment boundary.
        (
            "header split across segments",
            record.clone(),
            vec![ext_at + 2],
        ),
        // The name cut in two.
        (
            "name split across segments",
            record.clone(),
            vec![name_at + 3],
        ),
        // The session id claims more than 32 bytes.
        ("session id too long", patched(43, &[200]), vec![]),
        // Cut before the extensions.
        ("hello cut short", record[..60].to_vec(), vec![]),
    ];
    for (what, bytes, cuts) in cases {
        for hook in OUTBOUND_HOOKS {
            let mut sandbox = sandbox(&block_zoom());
            let got = send(&mut sandbox, hook, &bytes, &cuts);
            assert!(
                got.iter().all(|o| *o == Outcome::Pass),
                "{hook:?} {what}: {got:?}"
            );
            let entry = the_flow(&sandbox);
            assert_eq!(
                (entry.service, entry.evidence),
                (0, evidence::NONE),
                "{hook:?} {what}"
            );
            assert_eq!(stat(&sandbox, stat::SNI_UNREADABLE), 1, "{hook:?} {what}");
            assert_eq!(entry.flags & flags::SNI_PENDING, 0, "{hook:?} {what}");
        }
    }
}

#[test]
fn only_flows_from_the_lan_are_read() {
    if !vigie_lab::privilege::privileged("only_flows_from_the_lan_are_read") {
        return;
    }
    // A ClientHello from the remote side (a flow opened from outside): not read.
    let record = ClientHello::named("zoom.us").record();
    let mut sandbox = sandbox(&block_zoom());
    let reply = Frame::tcp4(FINANCE_HOST, PORT, UNKNOWN_HOST, 443)
        .tcp_flags(tcp_flags::ACK)
        .payload(&record)
        .reversed()
        .build();
    assert_eq!(run(&mut sandbox, Hook::TcReply, &reply), Outcome::Pass);
    assert_eq!(stat(&sandbox, stat::SNI_READ), 0);
}

#[test]
fn server_data_before_the_hello_does_not_end_the_walk() {
    if !vigie_lab::privilege::privileged("server_data_before_the_hello_does_not_end_the_walk") {
        return;
    }
    // A server that speaks first (a banner) on a flow the LAN opened: its data is not the
    // client's stream, and the ClientHello that follows is still read. Walked, the banner
    // ended the walk ("not TLS") and the hello went unread, whatever name it carried.
    let record = ClientHello::named("zoom.us").record();
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(&block_zoom());
        assert_eq!(
            run(&mut sandbox, hook, &syn()),
            Outcome::Pass,
            "{hook:?}: SYN"
        );
        let banner = Frame::tcp4(FINANCE_HOST, PORT, UNKNOWN_HOST, 443)
            .tcp_flags(tcp_flags::ACK | tcp_flags::PSH)
            .payload(b"SSH-2.0-banner\r\n")
            .reversed()
            .build();
        assert_eq!(
            run(&mut sandbox, Hook::TcReply, &banner),
            Outcome::Pass,
            "{hook:?}: banner"
        );
        assert_ne!(the_flow(&sandbox).flags & flags::SNI_PENDING, 0, "{hook:?}");
        assert_eq!(
            run(&mut sandbox, hook, &segment(0, &record)),
            Outcome::Drop,
            "{hook:?}: the hello"
        );
        assert_eq!(the_flow(&sandbox).evidence, evidence::SNI, "{hook:?}");
    }
}

#[test]
fn a_hello_right_after_a_swap_is_read() {
    if !vigie_lab::privilege::privileged("a_hello_right_after_a_swap_is_read") {
        return;
    }
    // The flow's verdict is stale when its hello comes (a policy was applied since its SYN):
    // the segment is decided again and read. Unread, the walk missed the hello for good and
    // the flow kept its address verdict.
    let record = ClientHello::named("zoom.us").record();
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(&block_zoom());
        assert_eq!(run(&mut sandbox, hook, &syn()), Outcome::Pass, "{hook:?}");
        sandbox
            .apply(&block_zoom().compile())
            .unwrap_or_else(|e| panic!("applying: {e}"));
        assert_eq!(
            run(&mut sandbox, hook, &segment(0, &record)),
            Outcome::Drop,
            "{hook:?}: the hello after the swap"
        );
        let entry = the_flow(&sandbox);
        assert_eq!(
            (entry.service, entry.evidence, entry.generation),
            (ZOOM, evidence::SNI, 2),
            "{hook:?}: {entry:?}"
        );
    }
}

#[test]
fn a_walk_waits_for_the_segment_that_holds_the_name() {
    if !vigie_lab::privilege::privileged("a_walk_waits_for_the_segment_that_holds_the_name") {
        return;
    }
    let hello = zoom_hello(1800, 300);
    let record = hello.record();
    // The walk's next header after the first segment is the name's extension; the segment
    // after the name starts past it, within the hello.
    let past_name = hello.name_offset().unwrap() + 20;
    for hook in OUTBOUND_HOOKS {
        // Reordered: the segment after the name overtakes the one with the name. The walk
        // waits (the missing bytes are within the hello) and reads the name when it comes.
        let mut sandbox = sandbox(&block_zoom());
        assert_eq!(run(&mut sandbox, hook, &syn()), Outcome::Pass, "{hook:?}");
        for (from, to, expected) in [
            (0, 1000, Outcome::Pass),
            (past_name, record.len(), Outcome::Pass),
            (1000, past_name, Outcome::Drop),
            (past_name, record.len(), Outcome::Drop),
        ] {
            let got = run(&mut sandbox, hook, &segment(from, &record[from..to]));
            assert_eq!(got, expected, "{hook:?}: bytes {from}..{to}");
        }
        assert_eq!(the_flow(&sandbox).evidence, evidence::SNI, "{hook:?}");

        // Sent out of order on purpose, data past the hello's end first: the walk does not end
        // there (a client would hide its name behind it), and reads the name when it comes.
        let mut sandbox = support::sandbox(&block_zoom());
        assert_eq!(run(&mut sandbox, hook, &syn()), Outcome::Pass, "{hook:?}");
        for (from, to, expected) in [
            (0, 1000, Outcome::Pass),
            (record.len(), record.len() + 100, Outcome::Pass),
            (1000, record.len(), Outcome::Drop),
        ] {
            let bytes = if from < record.len() {
                record[from..to].to_vec()
            } else {
                vec![0x17; to - from]
            };
            let got = run(&mut sandbox, hook, &segment(from, &bytes));
            assert_eq!(got, expected, "{hook:?}: bytes {from}..{to}");
        }
        assert_eq!(the_flow(&sandbox).evidence, evidence::SNI, "{hook:?}");
    }
}

#[test]
fn a_segment_longer_than_the_copy_ends_the_walk() {
    if !vigie_lab::privilege::privileged("a_segment_longer_than_the_copy_ends_the_walk") {
        return;
    }
    // One segment of some 2,500 bytes (TSO on a host, jumbo frames) whose name lies past the
    // 2,048 bytes the walk copies: counted unreadable, not waited for in a later segment
    // (none will hold it).
    let hello = zoom_hello(2100, 100);
    let record = hello.record();
    assert!(hello.name_offset().unwrap() > 2048);
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(&block_zoom());
        assert_eq!(
            send(&mut sandbox, hook, &record, &[]),
            [Outcome::Pass],
            "{hook:?}"
        );
        let entry = the_flow(&sandbox);
        assert_eq!(entry.flags & flags::SNI_PENDING, 0, "{hook:?}: {entry:?}");
        assert_eq!(stat(&sandbox, stat::SNI_UNREADABLE), 1, "{hook:?}");
    }
}

#[test]
fn a_hello_sent_out_of_order_is_still_read() {
    if !vigie_lab::privilege::privileged("a_hello_sent_out_of_order_is_still_read") {
        return;
    }
    // The rest of the hello first, then its start: the walk knows where the stream starts
    // (from the SYN) and waits for it. Walked, the first segment ended it as "not TLS", and
    // the start, with the name, passed unread.
    let hello = zoom_hello(300, 300);
    let record = hello.record();
    let past_name = hello.name_offset().unwrap() + 20;
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(&block_zoom());
        assert_eq!(run(&mut sandbox, hook, &syn()), Outcome::Pass, "{hook:?}");
        let rest = run(
            &mut sandbox,
            hook,
            &segment(past_name, &record[past_name..]),
        );
        assert_eq!(rest, Outcome::Pass, "{hook:?}: the rest first");
        assert_ne!(the_flow(&sandbox).flags & flags::SNI_PENDING, 0, "{hook:?}");
        let start = run(&mut sandbox, hook, &segment(0, &record[..past_name]));
        assert_eq!(start, Outcome::Drop, "{hook:?}: the start, with the name");
        assert_eq!(the_flow(&sandbox).evidence, evidence::SNI, "{hook:?}");
    }
}

#[test]
fn a_hello_in_the_syn_is_read() {
    if !vigie_lab::privilege::privileged("a_hello_in_the_syn_is_read") {
        return;
    }
    // TCP Fast Open: the hello rides in the SYN, its first byte one number after the SYN's,
    // and the rest follows in the next segment.
    let hello = zoom_hello(1800, 300);
    let record = hello.record();
    let cut = 1000;
    let syn_with_data = {
        let frame = Frame::tcp4(FINANCE_HOST, PORT, UNKNOWN_HOST, 443)
            .tcp_flags(tcp_flags::SYN)
            .payload(&record[..cut]);
        let at = frame.offsets().transport;
        frame.patch(at + 4, &ISN.to_be_bytes()).build()
    };
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(&block_zoom());
        assert_eq!(
            run(&mut sandbox, hook, &syn_with_data),
            Outcome::Pass,
            "{hook:?}"
        );
        assert_eq!(
            run(&mut sandbox, hook, &segment(cut, &record[cut..])),
            Outcome::Drop,
            "{hook:?}: the rest, with the name"
        );
        assert_eq!(the_flow(&sandbox).evidence, evidence::SNI, "{hook:?}");
    }
}
