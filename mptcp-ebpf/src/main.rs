//! mptcp-ebpf kernel programs. Thin by design: parse, look up, call the pure
//! functions of mptcp-common, act.
//!
//! - `bond_egress` (egress.rs): tc egress on the bond device — classify,
//!   schedule, number the packet, then tail-call
//! - `bond_encap` (encap.rs): encapsulate and tag, redirect to the chosen
//!   uplink.
//! - `uplink_ingress` (ingress.rs): XDP on every Ethernet uplink — validate,
//!   account, decapsulate.
//! - `uplink_ingress_l3` (ingress_l3.rs): the same as tc ingress, on uplinks
//!   without an Ethernet header (raw-IP, PPP, TUN).
//! - rx.rs: what both ingress hooks do once they have parsed a packet.
//! - mss.rs: the MSS clamp all three apply to TCP SYNs crossing the bond.
//! - debug.rs: every drop counted, and reported with the packet's head
//!   while the controller logs at debug level.
//! - `noop_tc`, `noop_xdp` (noop.rs): empty programs, the benchmark's baseline.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Inline BPF assembly for the atomic fetch-add `core` does not offer on this target.
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

#[cfg(target_arch = "bpf")]
mod debug;
#[cfg(target_arch = "bpf")]
mod egress;
#[cfg(target_arch = "bpf")]
mod encap;
#[cfg(target_arch = "bpf")]
mod ingress;
#[cfg(target_arch = "bpf")]
mod ingress_l3;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod mss;
#[cfg(target_arch = "bpf")]
mod noop;
#[cfg(target_arch = "bpf")]
mod parse;
#[cfg(target_arch = "bpf")]
mod rx;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(target_arch = "bpf")]
#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {}
