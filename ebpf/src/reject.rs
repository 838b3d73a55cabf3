//! Sending the answer to a rejected packet (built by `vigie_common::answer`) back to its
//! sender, on each hook:
//!
//! - XDP on the LAN-facing interface: the frame is rewritten in place and redirected to the
//!   interface it came in by. `XDP_TX` would do the same on a physical NIC, but a veth (a
//!   container's or a VM's link) delivers `XDP_TX` frames only if its peer runs an XDP program
//!   of its own, whereas a redirect needs only NAPI on the peer (GRO on, or an XDP program);
//! - TC ingress on the LAN-facing interface: rewritten and redirected to the same interface's
//!   egress;
//! - TC egress on a WAN-facing interface (or a host's own): rewritten and redirected to the same
//!   interface's ingress, so the gateway's stack routes it to the LAN host (undoing its NAT on
//!   the way) or delivers it to the local socket.
//!
//! On TC the answer carries `answer::MARK`, by which vigie's program in the other direction
//! recognises it and lets it through (a reply of a rejected flow is otherwise dropped).
//!
//! Checksums are written in full. A TC packet whose checksum the kernel was to complete later
//! (`CHECKSUM_PARTIAL`, from a local socket or a veth peer) returns to that same origin, which
//! accepts such a packet without checking it: the answer is accepted either way.

use core::cmp::Ordering;

use aya_ebpf::{
    EbpfContext as _,
    bindings::{__sk_buff, TC_ACT_SHOT, xdp_action},
    cty::c_void,
    helpers::generated::{
        bpf_redirect, bpf_skb_load_bytes, bpf_skb_store_bytes, bpf_xdp_adjust_head,
        bpf_xdp_adjust_tail, bpf_xdp_load_bytes, bpf_xdp_store_bytes,
    },
    programs::{TcContext, XdpContext},
};
use vigie_common::{
    answer::{self, FRAME_BYTES, Frame, Layout},
    counters::stat,
};

use crate::maps::{FRAMES, STATS, bump, frame};

const BPF_F_INGRESS: u64 = 1;

/// Where the TC answer goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Back {
    /// Out of the interface the packet came in by.
    OutOfIngress,
    /// In through the interface the packet was leaving by.
    IntoEgress,
}

#[inline(always)]
pub fn xdp(ctx: &XdpContext, layout: Layout) -> u32 {
    if answer_xdp(ctx, layout).is_some() {
        bump(&STATS, stat::REJECTS_ANSWERED);
        // SAFETY: a helper call with scalar arguments; it returns XDP_REDIRECT (or XDP_ABORTED
        // for flags it does not know, which 0 is not).
        let verdict = unsafe { bpf_redirect(ctx.ingress_ifindex() as u32, 0) };
        u32::try_from(verdict).unwrap_or(xdp_action::XDP_DROP)
    } else {
        bump(&STATS, stat::REJECTS_DROPPED);
        xdp_action::XDP_DROP
    }
}

#[inline(always)]
pub fn tc(ctx: &TcContext, layout: Layout, back: Back) -> i32 {
    if answer_tc(ctx, layout).is_none() {
        bump(&STATS, stat::REJECTS_DROPPED);
        return TC_ACT_SHOT;
    }
    // SAFETY: the program's own context.
    let ifindex = unsafe { (*skb(ctx)).ifindex };
    let flags = if back == Back::IntoEgress {
        BPF_F_INGRESS
    } else {
        0
    };
    ctx.set_mark(answer::MARK);
    bump(&STATS, stat::REJECTS_ANSWERED);
    // SAFETY: a helper call with scalar arguments; it returns TC_ACT_REDIRECT or TC_ACT_SHOT.
    let verdict = unsafe { bpf_redirect(ifindex, flags) };
    i32::try_from(verdict).unwrap_or(TC_ACT_SHOT)
}

/// Whether a TC packet is one of vigie's own answers (and clears the mark if so).
#[inline(always)]
pub fn is_own_answer(ctx: &TcContext) -> bool {
    // SAFETY: the program's own context.
    let mark = unsafe { (*skb(ctx)).mark };
    if mark == answer::MARK {
        ctx.set_mark(0);
        true
    } else {
        false
    }
}

#[inline(always)]
fn skb(ctx: &TcContext) -> *mut __sk_buff {
    ctx.as_ptr().cast::<__sk_buff>()
}

/// The two frame buffers of this CPU.
#[inline(always)]
fn buffers() -> Option<(*mut Frame, *mut Frame)> {
    let original = FRAMES.get_ptr_mut(frame::ORIGINAL)?;
    let answer = FRAMES.get_ptr_mut(frame::ANSWER)?;
    Some((original, answer))
}

/// A length for a helper's size argument: at least 1, at most a buffer.
#[inline(always)]
fn bounded(len: usize) -> Option<u32> {
    let len = len.min(FRAME_BYTES);
    if len == 0 { None } else { Some(len as u32) }
}

/// Writes the answer to the `copied` bytes in `original` into `answer`; returns its length,
/// bounded for the helpers that write it into the packet.
///
/// # Safety
/// `original` and `answer` are this CPU's frame buffers (see `buffers`).
#[inline(always)]
unsafe fn build(
    original: *mut Frame,
    answer: *mut Frame,
    copied: u32,
    layout: Layout,
) -> Option<u32> {
    // SAFETY: per the contract, two distinct map values of this CPU, valid for the program run.
    let written = unsafe {
        answer::build(
            &(*original).bytes,
            copied as usize,
            layout,
            &mut (*answer).bytes,
        )?
    };
    bounded(written)
}

#[inline(always)]
fn answer_xdp(ctx: &XdpContext, layout: Layout) -> Option<()> {
    let (original, answer) = buffers()?;
    let len = ctx.data_end() - ctx.data();
    let copied = bounded(len)?;
    // SAFETY: helpers writing into and reading from this CPU's map values, within their size.
    unsafe {
        if bpf_xdp_load_bytes(ctx.ctx, 0, original.cast::<c_void>(), copied) != 0 {
            return None;
        }
        let written = build(original, answer, copied, layout)?;
        let delta = written.cast_signed() - i32::try_from(len).ok()?;
        let resized = match delta.cmp(&0) {
            // Grow at the head: XDP guarantees headroom, not tailroom.
            Ordering::Greater => bpf_xdp_adjust_head(ctx.ctx, -delta),
            Ordering::Less => bpf_xdp_adjust_tail(ctx.ctx, delta),
            Ordering::Equal => 0,
        };
        if resized != 0 {
            return None;
        }
        if bpf_xdp_store_bytes(ctx.ctx, 0, answer.cast::<c_void>(), written) != 0 {
            return None;
        }
    }
    Some(())
}

#[inline(always)]
fn answer_tc(ctx: &TcContext, layout: Layout) -> Option<()> {
    let (original, answer) = buffers()?;
    let copied = bounded(ctx.len() as usize)?;
    let skb = skb(ctx);
    // SAFETY: helpers writing into and reading from this CPU's map values, within their size.
    unsafe {
        if bpf_skb_load_bytes(skb.cast::<c_void>(), 0, original.cast::<c_void>(), copied) != 0 {
            return None;
        }
        let written = build(original, answer, copied, layout)?;
        if ctx.change_tail(written, 0).is_err() {
            return None;
        }
        if bpf_skb_store_bytes(skb, 0, answer.cast::<c_void>(), written, 0) != 0 {
            return None;
        }
    }
    Some(())
}
