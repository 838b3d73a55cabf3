//! vigie's kernel programs: XDP and TC entry points over one classifier core.
//! Outbound programs see packets from internal hosts; the reply program sees the opposite
//! direction on the same interface, so replies and flows opened from outside are judged too.
#![no_std]
#![no_main]

mod classify;
mod cursor;
mod decide;
mod headers;
mod maps;
mod parse;
mod report;

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC, xdp_action},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use classify::{Direction, Outcome};

/// Bytes the TC programs want in the linear part of the skb: enough for every header parsed.
const TC_HEADER_BYTES: u32 = 256;

#[xdp]
pub fn vigie_xdp_outbound(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u32;
    match classify::packet(ctx.data(), ctx.data_end(), len, Direction::Outbound) {
        Outcome::Pass => xdp_action::XDP_PASS,
        Outcome::Drop => xdp_action::XDP_DROP,
    }
}

#[classifier]
pub fn vigie_tc_outbound(ctx: TcContext) -> i32 {
    tc(&ctx, Direction::Outbound)
}

#[classifier]
pub fn vigie_tc_reply(ctx: TcContext) -> i32 {
    tc(&ctx, Direction::Reply)
}

/// TC verdicts: a passing packet goes on to the next program (TC_ACT_UNSPEC, TCX_NEXT), so
/// vigie composes with other classifiers on the interface.
#[inline(always)]
fn tc(ctx: &TcContext, direction: Direction) -> i32 {
    let len = ctx.len();
    if ((ctx.data_end() - ctx.data()) as u32) < TC_HEADER_BYTES.min(len) {
        // Headers may sit in paged data: bring them into the linear part (failure leaves the
        // packet as it is; the parser then reports it truncated).
        let _ = ctx.pull_data(TC_HEADER_BYTES.min(len));
    }
    match classify::packet(ctx.data(), ctx.data_end(), len, direction) {
        Outcome::Pass => TC_ACT_UNSPEC,
        Outcome::Drop => TC_ACT_SHOT as i32,
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
