//! Programs that do nothing, for the benchmark: the per-packet cost of our
//! programs is quoted next to the cost of an empty program of the same type
//! run the same way, which is the floor BPF_PROG_TEST_RUN itself adds.

use aya_ebpf::bindings::{xdp_action, TC_ACT_OK};
use aya_ebpf::macros::{classifier, xdp};
use aya_ebpf::programs::{TcContext, XdpContext};

#[classifier]
pub fn noop_tc(_ctx: TcContext) -> i32 {
    TC_ACT_OK
}

#[xdp]
pub fn noop_xdp(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}
