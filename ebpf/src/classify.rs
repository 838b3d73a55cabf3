//! The classifier core shared by every hook: parse, find the flow, decide if its verdict is
//! missing or stale, count, report, and say whether the packet passes.

use core::ptr::read_volatile;

use vigie_common::{
    action::{self, evidence, rule as rule_no, rule_mode},
    answer::Layout,
    counters::{CounterKey, stat},
    flow::{FlowEntry, FlowKey, flags},
    limits,
    matching::Subject,
    payload::DNS_PORT,
    policy::ActivePolicy,
    quic,
    sni::status as sni_status,
    stun::{NOT_STUN, STUN_DATAGRAMS},
};

use crate::{
    decide, flow_cache,
    headers::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP},
    icmp,
    maps::{
        ACTIVE_POLICY, DECIDING, FAILURE_ACTION, FLOWS, PARSE_FAILURES, SCRATCH, SETTINGS, STATS,
        bump,
    },
    parse::{self, Packet, Parsed},
    payload::{self, handed},
    report,
    sni::{self, LoadBytes},
    stun,
};

/// Which way the packet travels relative to the internal hosts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From an internal host towards a service: the destination is the remote side.
    Outbound,
    /// From the remote side back towards an internal host: the source is the remote side.
    Reply,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Drop,
    /// Blocked, and the sender should be told (see `vigie_common::answer`): the hook answers
    /// if it can, and drops otherwise.
    Reject(Layout),
}

const BPF_ANY: u64 = 0;

#[inline(always)]
pub fn packet(
    ctx: &impl LoadBytes,
    data: usize,
    end: usize,
    len: u32,
    direction: Direction,
) -> Outcome {
    bump(&STATS, stat::PACKETS);
    match parse::frame(data, end) {
        Ok(Parsed::Ip(mut packet)) => {
            packet.reach(len);
            ip_packet(ctx, &packet, len, direction)
        }
        Ok(Parsed::NotIp) => {
            bump(&STATS, stat::NOT_IP);
            Outcome::Pass
        }
        Err(reason) => unparsed(reason),
    }
}

/// An unparsable packet gets the active policy's `unparsed` action (the failure action before
/// any policy), and is counted by reason.
#[inline(always)]
fn unparsed(reason: u32) -> Outcome {
    bump(&PARSE_FAILURES, reason);
    let active = active_policy();
    let verdict = if active.generation == 0 {
        FAILURE_ACTION.load()
    } else {
        SETTINGS
            .get(active.slot)
            .map_or(action::ALLOW, |s| s.unparsed_action)
    };
    if action::blocks(verdict) {
        bump(&STATS, stat::UNPARSED_BLOCKED);
        Outcome::Drop
    } else {
        Outcome::Pass
    }
}

#[inline(always)]
fn active_policy() -> ActivePolicy {
    match ACTIVE_POLICY.get_ptr(0) {
        // SAFETY: a map value pointer; volatile so that the compiler reads it where written,
        // around the decision (see `decide_flow`).
        Some(p) => unsafe {
            ActivePolicy {
                slot: read_volatile(&raw const (*p).slot) & 1,
                generation: read_volatile(&raw const (*p).generation),
            }
        },
        None => ActivePolicy::default(),
    }
}

#[inline(always)]
fn flow_key(packet: &Packet, direction: Direction) -> FlowKey {
    let (local, remote, local_port, remote_port) = match direction {
        Direction::Outbound => (packet.src, packet.dst, packet.src_port, packet.dst_port),
        Direction::Reply => (packet.dst, packet.src, packet.dst_port, packet.src_port),
    };
    FlowKey {
        local,
        remote,
        local_port,
        remote_port,
        proto: packet.proto,
        family: packet.family,
        pad: [0; 2],
    }
}

#[inline(always)]
fn ip_packet(ctx: &impl LoadBytes, packet: &Packet, len: u32, direction: Direction) -> Outcome {
    if packet.later_fragment {
        bump(&STATS, stat::FRAGMENTS);
    }
    let active = active_policy();
    if active.generation == 0 {
        bump(&STATS, stat::NO_POLICY);
        let verdict = FAILURE_ACTION.load();
        return if action::blocks(verdict) {
            Outcome::Drop
        } else {
            Outcome::Pass
        };
    }
    // Before the packet's own key goes to `SCRATCH`: the quoted flow's key is built there.
    if let Some(verdict) = icmp_error(ctx, packet, (len, direction), active.generation) {
        return verdict;
    }
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return Outcome::Pass;
    };
    // SAFETY: per-CPU scratch entry, used only during this program run.
    let key = unsafe {
        *scratch = flow_key(packet, direction);
        &*scratch
    };
    if let Some(cached) = flow_cache::lookup(key, active.generation) {
        // SAFETY: a row of this CPU's flow cache, valid for this program run.
        let cached = unsafe { &*cached };
        count(cached, len, false);
        return outcome(cached, packet, direction);
    }
    if let Some(entry) = FLOWS.get_ptr_mut(key) {
        // SAFETY: a value of the flow map; a concurrent update of the same flow can at worst
        // make this packet count under the previous verdict.
        let mut cached = unsafe { *entry };
        // A DNS server's answer to a question an internal host asked (its flow exists, opened
        // from the LAN, and is not blocked): the daemon learns the addresses of catalog names
        // from it. An answer nobody asked for teaches nothing. The packet is judged as usual.
        if direction == Direction::Reply
            && key.remote_port == DNS_PORT
            && packet.payload_len > 0
            && cached.flags & flags::FROM_REMOTE == 0
            && !action::blocks(effective_action(&cached))
            && (packet.proto == IPPROTO_UDP || packet.proto == IPPROTO_TCP)
        {
            payload::dns(ctx, packet, packet.proto == IPPROTO_TCP);
        }
        if cached.flags & flags::QUIC_PENDING != 0 {
            if quic_held(ctx, packet, direction, entry) {
                return Outcome::Drop;
            }
            // Read again: the hold changed fields in place, which a copy taken before would
            // write back (undoing a count, a released hold, or the daemon's answer).
            // SAFETY: as above.
            cached = unsafe { *entry };
        }
        let current = if cached.generation == active.generation {
            cached
        } else {
            stale(key, entry, &cached, len)
        };
        // Only the client's segments: the server's data (a banner, before any hello) is not
        // the stream the walk follows, and would end it before the hello. A segment right
        // after a swap is read too: the walk must not miss the one that holds the name.
        if direction == Direction::Outbound && reads_name(&current, packet) {
            return name_segment(ctx, key, packet, len, entry, current, false);
        }
        if reads_stun(&current, packet) {
            return stun_datagram(ctx, key, packet, (len, direction), entry, current, false);
        }
        flow_cache::fill(key, &current);
        count(&current, len, false);
        return outcome(&current, packet, direction);
    }
    let mut first = FlowEntry::default();
    if direction == Direction::Reply {
        first.flags |= flags::FROM_REMOTE;
    }
    if packet.later_fragment {
        first.flags |= flags::FRAGMENT;
    } else if packet.proto == IPPROTO_TCP && direction == Direction::Outbound {
        first.flags |= flags::SNI_PENDING;
        if packet.syn {
            // The stream's first byte follows the SYN's number: the hello must start there.
            first.flags |= flags::SNI_FROM_SYN;
            first.sni_seq = packet.seq.wrapping_add(1);
        }
    }
    let mut fresh = decide_flow(first, false);
    // STUN is weaker evidence than an address: only a flow the address table does not know is
    // looked at.
    if packet.proto == IPPROTO_UDP && !packet.later_fragment && fresh.service == 0 {
        fresh.flags |= flags::STUN_PENDING;
    }
    port_evidence(&mut fresh, active.slot);
    let quic = direction == Direction::Outbound
        && !packet.later_fragment
        && first_outbound(packet, &fresh, active.slot);
    remember(ctx, key, packet, &mut fresh, quic);
    if fresh.flags & flags::MATCHED != 0 {
        report::event(key, &fresh, 0, len);
    }
    // A first packet with payload (Fast Open, or a flow older than the program) may carry
    // the ClientHello itself.
    if reads_name(&fresh, packet)
        && let Some(entry) = FLOWS.get_ptr_mut(key)
    {
        return name_segment(ctx, key, packet, len, entry, fresh, true);
    }
    if reads_stun(&fresh, packet)
        && let Some(entry) = FLOWS.get_ptr_mut(key)
    {
        return stun_datagram(ctx, key, packet, (len, direction), entry, fresh, true);
    }
    count(&fresh, len, true);
    outcome(&fresh, packet, direction)
}

/// An ICMP error about a flow the table knows gets that flow's verdict (see `icmp`), counted
/// under it; None for any other packet.
#[inline(always)]
fn icmp_error(
    ctx: &impl LoadBytes,
    packet: &Packet,
    (len, direction): (u32, Direction),
    generation: u32,
) -> Option<Outcome> {
    if (packet.proto != IPPROTO_ICMP && packet.proto != IPPROTO_ICMPV6)
        || packet.payload_len < icmp::MIN_ERROR_LEN
    {
        return None;
    }
    sni::copy_payload(ctx, packet.payload_offset, packet.payload_len)?;
    let message = u64::from(packet.proto)
        | (u64::from(direction == Direction::Reply) << 8)
        | (u64::from(generation) << 32);
    let (to_a, to_b) = (icmp::half(&packet.dst, 0), icmp::half(&packet.dst, 8));
    let found = icmp::vigie_icmp_error(message, to_a, to_b);
    if found == 0 {
        return None;
    }
    let mut entry = icmp::found_entry()?;
    if found == icmp::STALE {
        // Decided under an earlier policy, and no packet of the flow since the swap: the
        // verdict the policy in force gives the flow (its key is in `SCRATCH`). Its entry is
        // left for its own next packet, which reports a changed verdict.
        entry = redecided(&entry);
    }
    count(&entry, len, false);
    // Never answered: an error about an error is not sent.
    Some(if action::blocks(effective_action(&entry)) {
        Outcome::Drop
    } else {
        Outcome::Pass
    })
}

/// A flow decided under an earlier policy: decided again under the policy in force (its
/// entry rewritten), and reported when a rule now decides it otherwise.
#[inline(always)]
fn stale(key: &FlowKey, entry: *mut FlowEntry, cached: &FlowEntry, len: u32) -> FlowEntry {
    let fresh = redecided(cached);
    // SAFETY: a value of the flow map (see `ip_packet`).
    unsafe { *entry = fresh };
    // Generation 0 is the daemon's mark on a flow whose QUIC server name it has just told:
    // reported as named (like a TLS name), whether the verdict changed or not.
    let named = cached.generation == 0 && cached.evidence == evidence::QUIC_SNI;
    if fresh.flags & flags::MATCHED != 0 && (named || fresh.action != cached.action) {
        let why = if named {
            flags::NAMED
        } else {
            flags::REDECIDED
        };
        report::event(key, &fresh, why, len);
    }
    fresh
}

/// Inserts a new flow. A possible QUIC flow is inserted pending, then its Initial is handed to
/// the daemon: once the flow is in the table, so that the daemon's answer always finds it.
/// Not a QUIC Initial the daemon reads after all: an ordinary UDP flow.
#[inline(always)]
fn remember(
    ctx: &impl LoadBytes,
    key: &FlowKey,
    packet: &Packet,
    fresh: &mut FlowEntry,
    quic: bool,
) {
    let stun_pending = fresh.flags & flags::STUN_PENDING;
    if quic {
        fresh.flags = (fresh.flags & !flags::STUN_PENDING) | flags::QUIC_PENDING;
        fresh.sni_seq = 1;
        fresh.sni_end = payload::now_units().wrapping_add(quic::HOLD_UNITS);
    }
    if FLOWS.insert(key, fresh, BPF_ANY).is_err() {
        bump(&STATS, stat::FLOW_INSERT_FAILED);
    }
    if quic && payload::quic(ctx, packet) != handed::HANDED {
        fresh.flags = (fresh.flags & !flags::QUIC_PENDING) | stun_pending;
        fresh.sni_seq = 0;
        fresh.sni_end = 0;
        if let Some(entry) = FLOWS.get_ptr_mut(key) {
            // SAFETY: a value of the flow map (see `ip_packet`).
            unsafe { *entry = *fresh };
        }
    }
}

/// The port-signal evidence of a flow that nothing else explained (see
/// `vigie_common::signal`): never over a rule that explicitly allowed the flow.
#[inline(always)]
fn port_evidence(fresh: &mut FlowEntry, slot: u32) {
    if fresh.service != 0 || fresh.flags & flags::FRAGMENT != 0 || explicitly_allowed(fresh) {
        return;
    }
    let service = decide::vigie_port_service(u64::from(slot)) as u32;
    if service != 0 {
        let (kept, walk) = (fresh.flags, fresh.sni_seq);
        *fresh = learned(fresh, kept, service, evidence::PORT);
        // The payload readers go on: a name or a STUN attribute is stronger evidence.
        fresh.flags |= kept & (flags::STUN_PENDING | flags::SNI_PENDING | flags::SNI_FROM_SYN);
        fresh.sni_seq = walk;
    }
}

/// The first packet of a flow from the LAN: counts a flow to a well-known encrypted DNS
/// resolver (a blind spot), and says whether the flow may be QUIC whose name the daemon
/// should read: a UDP datagram of a client Initial's size, in a policy that enforces some
/// block (monitor mode holds nothing back), unless the flow is already blocked or a rule
/// explicitly allows it (an allowed flow is not held back; an allow that only a signal port
/// brought does not count).
#[inline(always)]
fn first_outbound(packet: &Packet, fresh: &FlowEntry, slot: u32) -> bool {
    // The resolver lookup only for the ports encrypted DNS uses: most new flows skip the call.
    let port = packet.dst_port;
    if (port == 443 || port == 853) && decide::vigie_encrypted_dns() != 0 {
        bump(&STATS, stat::ENCRYPTED_DNS);
    }
    let explicit_allow = explicitly_allowed(fresh) && fresh.evidence != evidence::PORT;
    packet.proto == IPPROTO_UDP
        && packet.payload_len >= quic::MIN_CLIENT_DATAGRAM
        && !explicit_allow
        && !action::blocks(effective_action(fresh))
        && SETTINGS.get(slot).is_some_and(|s| s.holds_quic != 0)
}

/// Whether a rule (not the default) allowed the flow: weaker evidence never overrides that.
#[inline(always)]
const fn explicitly_allowed(entry: &FlowEntry) -> bool {
    entry.flags & flags::MATCHED != 0 && entry.action == action::ALLOW
}

/// A packet of a QUIC flow whose name the daemon is reading: whether it is held back. The
/// client's Initials pass (the first eight go to the daemon too: a ClientHello may span
/// several), its early data (0-RTT) does not; the server's datagrams are held back until the
/// daemon tells the name (it then clears the flag and the flow is decided again), so that a
/// blocked connection never completes its handshake nor delivers early data. Past the deadline the flag is cleared and the flow goes on as its address
/// decided. The entry is changed field by field: the daemon replaces the whole entry when it
/// has read the name, and that write must not be undone by a copy taken before it.
#[inline(always)]
fn quic_held(
    ctx: &impl LoadBytes,
    packet: &Packet,
    direction: Direction,
    entry: *mut FlowEntry,
) -> bool {
    // SAFETY: a value of the flow map (see `ip_packet`).
    let (handed_over, deadline) = unsafe { ((*entry).sni_seq, (*entry).sni_end) };
    if direction == Direction::Outbound {
        if handed_over < quic::CLIENT_DATAGRAMS && packet.payload_len > 0 {
            match payload::quic(ctx, packet) {
                // SAFETY: as above.
                handed::HANDED => unsafe { (*entry).sni_seq = handed_over + 1 },
                // Early data (0-RTT) or a short header before the name is known: it would
                // reach a server that may turn out blocked. Held back like the server's; the
                // client sends it again once the handshake is done.
                handed::NOT_INITIAL | handed::NOT_QUIC => {
                    bump(&STATS, stat::QUIC_HELD);
                    return true;
                }
                _ => {}
            }
        }
        return false;
    }
    if payload::now_units().wrapping_sub(deadline).cast_signed() < 0 {
        bump(&STATS, stat::QUIC_HELD);
        return true;
    }
    bump(&STATS, stat::QUIC_TIMED_OUT);
    // SAFETY: as above.
    unsafe { (*entry).flags &= !flags::QUIC_PENDING };
    false
}

/// Whether the packet is a segment of a flow whose ClientHello is still to be read.
#[inline(always)]
const fn reads_name(entry: &FlowEntry, packet: &Packet) -> bool {
    entry.flags & flags::SNI_PENDING != 0 && packet.payload_len > 0
}

/// Whether the packet is a datagram of a UDP flow still looked at for STUN attributes (a STUN
/// message is at least its 20-byte header).
#[inline(always)]
const fn reads_stun(entry: &FlowEntry, packet: &Packet) -> bool {
    entry.flags & flags::STUN_PENDING != 0 && packet.payload_len >= 20
}

/// One of the first datagrams of a UDP flow (either direction): a STUN message with a
/// vendor's attribute tells the service. Weaker evidence: it never replaces a service the
/// address or a server name told, nor overrides a rule that explicitly allowed the flow.
#[allow(
    clippy::too_many_arguments,
    reason = "the packet's pieces, kept apart for the verifier"
)]
#[inline(always)]
fn stun_datagram(
    ctx: &impl LoadBytes,
    key: &FlowKey,
    packet: &Packet,
    (len, direction): (u32, Direction),
    entry: *mut FlowEntry,
    cached: FlowEntry,
    new_flow: bool,
) -> Outcome {
    let mut fresh = cached;
    // `sni_seq` counts the datagrams looked at (no TLS walk on UDP).
    fresh.sni_seq = cached.sni_seq.wrapping_add(1);
    if fresh.sni_seq >= STUN_DATAGRAMS {
        fresh.flags &= !flags::STUN_PENDING;
    }
    let mut service = 0;
    if let Some(work) = sni::copy_payload(ctx, packet.payload_offset, packet.payload_len) {
        // SAFETY: this CPU's work area, used only during this program run.
        unsafe { (*work).slot = active_policy().slot };
        let found = stun::vigie_stun_service();
        // A signal port's service is weaker than a STUN attribute: the attribute replaces it,
        // even where the port's service was explicitly allowed.
        let weaker = cached.service == 0 || cached.evidence == evidence::PORT;
        let allowed = explicitly_allowed(&cached) && cached.evidence != evidence::PORT;
        if found != NOT_STUN && found != 0 && weaker && !allowed {
            bump(&STATS, stat::STUN_RECOGNISED);
            service = found as u32;
            fresh = learned(&cached, cached.flags, service, evidence::STUN);
        }
    }
    // SAFETY: a value of the flow map (see `ip_packet`).
    unsafe { *entry = fresh };
    count(&fresh, len, new_flow);
    if service != 0 && fresh.flags & flags::MATCHED != 0 {
        report::event(key, &fresh, flags::NAMED, len);
    }
    outcome(&fresh, packet, direction)
}

/// A segment of a flow whose ClientHello is being read (see `sni`): advances the walk, and
/// once the server name is known, decides the flow again with it as evidence. This very
/// segment gets the new verdict.
#[allow(
    clippy::too_many_arguments,
    reason = "the packet's pieces, kept apart for the verifier"
)]
#[inline(always)]
fn name_segment(
    ctx: &impl LoadBytes,
    key: &FlowKey,
    packet: &Packet,
    len: u32,
    entry: *mut FlowEntry,
    cached: FlowEntry,
    new_flow: bool,
) -> Outcome {
    let Some(work) = sni::copy_payload(ctx, packet.payload_offset, packet.payload_len) else {
        count(&cached, len, new_flow);
        return outcome(&cached, packet, Direction::Outbound);
    };
    // SAFETY: this CPU's work area, used only during this program run.
    unsafe {
        // Data a SYN carries (TCP Fast Open) starts one number after it.
        (*work).segment_seq = packet.seq.wrapping_add(u32::from(packet.syn));
        (*work).next_seq = cached.sni_seq;
        (*work).end_seq = cached.sni_end;
        (*work).started = u32::from(cached.flags & flags::SNI_STARTED != 0)
            | (u32::from(cached.flags & flags::SNI_FROM_SYN != 0) << 1);
        (*work).slot = active_policy().slot;
    }
    let step = sni::vigie_sni_step() as u32;
    // SAFETY: this CPU's work area.
    if unsafe { (*work).ech } != 0 {
        bump(&STATS, stat::SNI_ENCRYPTED);
    }
    // SAFETY: as above.
    let (next_seq, end_seq, service) =
        unsafe { ((*work).next_seq, (*work).end_seq, (*work).service) };
    let mut fresh = cached;
    fresh.sni_seq = next_seq;
    fresh.sni_end = end_seq;
    let done = cached.flags & !(flags::SNI_PENDING | flags::SNI_STARTED);
    match step {
        sni_status::NEED_MORE => fresh.flags |= flags::SNI_STARTED,
        sni_status::WAIT_START => {}
        sni_status::NAME => {
            bump(&STATS, stat::SNI_READ);
            fresh.flags = done;
            if service != 0 {
                fresh = learned(&cached, done, service, evidence::SNI);
            }
        }
        sni_status::NO_NAME => {
            bump(&STATS, stat::SNI_ABSENT);
            fresh.flags = done;
        }
        sni_status::UNREADABLE => {
            bump(&STATS, stat::SNI_UNREADABLE);
            fresh.flags = done;
        }
        _ => fresh.flags = done,
    }
    // SAFETY: a value of the flow map (see `ip_packet`).
    unsafe { *entry = fresh };
    count(&fresh, len, new_flow);
    if service != 0 && fresh.flags & flags::MATCHED != 0 {
        report::event(key, &fresh, flags::NAMED, len);
    }
    outcome(&fresh, packet, Direction::Outbound)
}

/// The flow in `SCRATCH`, decided under an earlier policy, decided again under the policy in
/// force; a signal port's service is looked up again, as for a new flow.
#[inline(always)]
fn redecided(cached: &FlowEntry) -> FlowEntry {
    let mut fresh = redecide(cached);
    if cached.evidence == evidence::PORT {
        port_evidence(&mut fresh, active_policy().slot);
    }
    fresh
}

/// A stale verdict: decide again under the policy in force, keeping learned evidence.
#[inline(always)]
fn redecide(cached: &FlowEntry) -> FlowEntry {
    let kept = evidence::is_learned(cached.evidence);
    let mut start = FlowEntry {
        flags: cached.flags
            & (flags::FROM_REMOTE
                | flags::FRAGMENT
                | flags::SNI_PENDING
                | flags::SNI_STARTED
                | flags::SNI_FROM_SYN
                | flags::QUIC_PENDING),
        sni_seq: cached.sni_seq,
        sni_end: cached.sni_end,
        ..FlowEntry::default()
    };
    if kept {
        start.service = cached.service;
        start.evidence = cached.evidence;
        start.classes = cached.classes;
    }
    decide_flow(start, kept)
}

/// The flow decided again now that its packets told its `service` (`how`: a server name, a
/// STUN attribute): the address's classes stay, the flags keep only what the packets said.
#[inline(always)]
fn learned(cached: &FlowEntry, flags_now: u32, service: u32, how: u32) -> FlowEntry {
    let start = FlowEntry {
        service,
        evidence: how,
        classes: cached.classes,
        flags: flags_now & (flags::FROM_REMOTE | flags::FRAGMENT),
        ..FlowEntry::default()
    };
    decide_flow(start, true)
}

/// Decides the flow whose key is in `SCRATCH`, from `start`, under one whole policy (see
/// `vigie_decide`).
#[inline(always)]
fn decide_flow(start: FlowEntry, keep_evidence: bool) -> FlowEntry {
    let Some(slot) = DECIDING.get_ptr_mut(0) else {
        return failure_entry(start);
    };
    // SAFETY: this CPU's entry, used only during this program run.
    unsafe {
        *slot = start;
        vigie_decide(u64::from(keep_evidence));
        *slot
    }
}

/// Decides the flow whose key is in `SCRATCH` from the entry in `DECIDING` (evidence kept if
/// `keep_evidence`), and writes the verdict back there, under one whole policy: if a swap
/// happened while deciding (the generation moved), it decides again, so that no verdict mixes
/// two policies.
///
/// A global BPF function, verified once: the classifier reaches a decision from many places
/// (a new flow, a stale verdict, a server name, a STUN message), and the verifier would
/// otherwise walk the decision again from each of them.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn vigie_decide(keep_evidence: u64) -> u64 {
    let (Some(scratch), Some(slot)) = (SCRATCH.get_ptr(0), DECIDING.get_ptr_mut(0)) else {
        return 0;
    };
    // SAFETY: this CPU's entries, valid for the program run. The entry is worked on in place:
    // this function's stack adds to the classifier's and the rule walk's, under the kernel's
    // 512 bytes for a chain of calls.
    let (key, entry) = unsafe { (&*scratch, &mut *slot) };
    let (service, evidence_kind, classes, start_flags) =
        (entry.service, entry.evidence, entry.classes, entry.flags);
    for _ in 0..limits::MAX_DECIDE_ATTEMPTS {
        let active = active_policy();
        let Some(settings) = SETTINGS.get(active.slot) else {
            break;
        };
        entry.flags = start_flags;
        if keep_evidence == 0 {
            let found = decide::destination(active.slot, key);
            entry.service = found.service;
            entry.classes = found.classes;
            entry.evidence = found.evidence;
            if found.service == 0 {
                decide::vigie_learned(u64::from(active.slot));
            }
        } else {
            entry.service = service;
            entry.classes = classes;
            entry.evidence = evidence_kind;
        }
        entry.group = decide::source_group(active.slot, key);
        let subject = Subject {
            service: entry.service,
            classes: entry.classes,
            group: entry.group,
            proto: key.proto,
            remote_port: key.remote_port,
        };
        let decision = decide::first_match(active.slot, settings, &subject);
        entry.rule = decision as u32;
        let returned = ((decision >> 32) & 0xff) as u32;
        entry.action = returned & rule_mode::ACTION_MASK;
        if decision & decide::MATCHED_BIT != 0 {
            entry.flags |= flags::MATCHED;
        }
        entry.generation = active.generation;
        if rule_mode::monitors(returned, settings.mode) {
            entry.flags |= flags::MONITOR_MODE;
        }
        // Slot and generation both: they are two words, read apart, and the daemon's write
        // of the pair is a copy the kernel does not promise to make in one store. A read
        // during a swap may pair the old slot with the new generation; the read after the
        // decision then differs in its slot, and the flow is decided again.
        let again = active_policy();
        if again.generation == active.generation && again.slot == active.slot {
            return 1;
        }
        bump(&STATS, stat::DECISION_RETRIED);
    }
    // Swaps kept overtaking the decision (the daemon spaces them out, so this is not expected):
    // the failure behaviour decides, and the next packet decides again.
    entry.flags = start_flags;
    entry.rule = rule_no::NO_POLICY;
    entry.action = FAILURE_ACTION.load();
    1
}

#[inline(always)]
fn failure_entry(start: FlowEntry) -> FlowEntry {
    let mut entry = start;
    entry.rule = rule_no::NO_POLICY;
    entry.action = FAILURE_ACTION.load();
    entry
}

/// What actually happens to the packet, for counting.
#[inline(always)]
const fn effective_action(entry: &FlowEntry) -> u32 {
    if action::blocks(entry.action) && entry.flags & flags::MONITOR_MODE != 0 {
        action::MONITOR
    } else {
        entry.action
    }
}

/// Only a packet from the internal host is answered: a rejected flow opened from outside, or
/// a reply of a rejected flow, is dropped silently.
#[inline(always)]
fn outcome(entry: &FlowEntry, packet: &Packet, direction: Direction) -> Outcome {
    let effective = effective_action(entry);
    if effective == action::REJECT && direction == Direction::Outbound && !packet.later_fragment {
        Outcome::Reject(packet.layout)
    } else if action::blocks(effective) {
        Outcome::Drop
    } else {
        Outcome::Pass
    }
}

#[inline(always)]
fn count(entry: &FlowEntry, len: u32, new_flow: bool) {
    let key = CounterKey {
        rule: entry.rule as u16,
        service: entry.service as u16,
        group: entry.group as u16,
        action: effective_action(entry) as u8,
        pad: 0,
    };
    report::count(&key, len, new_flow);
}
