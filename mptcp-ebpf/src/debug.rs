//! Every drop is counted by reason; while the controller logs the data path
//! at debug level (`Settings::debug`), it is also reported to `DROP_EVENTS`
//! with the packet's first bytes, so the log says which packet it was.
//! Settings are read here, on the drop path only: a forwarded packet pays
//! nothing for it.

use aya_ebpf::bindings::{__sk_buff, xdp_md};
use aya_ebpf::helpers::{bpf_skb_load_bytes, bpf_xdp_load_bytes};
use aya_ebpf::programs::{TcContext, XdpContext};
use mptcp_common::maps::{DropEvent, DROP_EVENT_HEAD};
use mptcp_common::DropReason;

use crate::maps::{count_drop, opaque, settings, DROP_EVENTS};

/// A program's context as a drop report needs it.
pub trait Dropped {
    fn ifindex(&self) -> u32;
    fn len(&self) -> u32;
    /// Copy the packet's first `n` bytes (1..=DROP_EVENT_HEAD) to `dst`: 0 on success.
    fn load_head(&self, dst: *mut u8, n: u32) -> i64;
}

impl Dropped for TcContext {
    fn ifindex(&self) -> u32 {
        // SAFETY: the context's own sk_buff, valid for the program's run.
        unsafe { (*self.skb.skb).ifindex }
    }
    fn len(&self) -> u32 {
        // SAFETY: as above.
        unsafe { (*self.skb.skb).len }
    }
    fn load_head(&self, dst: *mut u8, n: u32) -> i64 {
        // SAFETY: the helper copies `n` bytes (bounded by the caller) into `dst`, which holds them.
        unsafe { bpf_skb_load_bytes(self.skb.skb as *const __sk_buff as *const _, 0, dst.cast(), n) }
    }
}

impl Dropped for XdpContext {
    fn ifindex(&self) -> u32 {
        // SAFETY: the context's own xdp_md, valid for the program's run.
        unsafe { (*self.ctx).ingress_ifindex }
    }
    fn len(&self) -> u32 {
        (self.data_end() - self.data()) as u32
    }
    fn load_head(&self, dst: *mut u8, n: u32) -> i64 {
        // SAFETY: as for tc.
        unsafe { bpf_xdp_load_bytes(self.ctx as *mut xdp_md, 0, dst.cast(), n) }
    }
}

/// Count a drop under its reason, and report it while debugging.
#[inline(always)]
pub fn dropped(ctx: &impl Dropped, reason: DropReason, hook: u8) {
    count_drop(reason);
    if settings().debug == 0 {
        return;
    }
    // A full ring (no reader, or one that fell behind) loses the report, not the packet's verdict.
    let Some(mut entry) = DROP_EVENTS.reserve::<DropEvent>(0) else { return };
    let ev = entry.as_mut_ptr();
    let len = ctx.len();
    // Bounded for the verifier by arithmetic alone (kernels before 6.8 learn
    // nothing from a `!= 0` test): 64 bytes, or 1 + (len - 1) & 63 = all of
    // a shorter packet, the mask on an opaque copy the compiler cannot drop.
    let n = match len {
        0 => 0,
        l if l >= DROP_EVENT_HEAD as u32 => DROP_EVENT_HEAD as u32,
        l => 1 + (opaque(l - 1) & (DROP_EVENT_HEAD as u32 - 1)),
    };
    // SAFETY: the reservation is a whole DropEvent, ours until submitted.
    unsafe {
        (*ev).reason = reason as u8;
        (*ev).hook = hook;
        (*ev)._pad = 0;
        (*ev).ifindex = ctx.ifindex();
        (*ev).len = len;
        (*ev).head_len = 0;
        if n != 0 && ctx.load_head((*ev).head.as_mut_ptr(), n) == 0 {
            (*ev).head_len = n;
        }
    }
    entry.submit(0);
}
