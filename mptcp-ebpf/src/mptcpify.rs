//! `mptcpify`: BPF_MODIFY_RETURN on `update_socket_protocol`, which makes
//! the TCP sockets of processes in the listed cgroups MPTCP sockets
//! (`mptcp_common::mptcpify`). Its own object, apart from the data path's:
//! aya does not load this program type, the controller loads it with its
//! own few lines (mptcp-user's `native::fmod_ret`), and they relocate this
//! object's one map, not the data path's thirty.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod program {
    use core::ffi::c_void;

    use aya_ebpf::helpers::bpf_get_current_ancestor_cgroup_id;
    use aya_ebpf::macros::map;
    use aya_ebpf::maps::HashMap;
    use aya_ebpf::programs::FExitContext;
    use mptcp_common::mptcpify::{decide, in_listed_cgroup, MAX_CGROUPS};

    /// The listed cgroup v2 ids (the value is unused).
    #[map(name = "MPTCPIFY_CGROUPS")]
    static MPTCPIFY_CGROUPS: HashMap<u64, u8> = HashMap::with_max_entries(MAX_CGROUPS, 0);

    /// `int update_socket_protocol(int family, int type, int protocol)`:
    /// the protocol the socket gets instead, or 0 for no change.
    // The section says fexit because aya-obj parses no fmod_ret section; it
    // only labels the program (the same context: the function's arguments
    // as u64s). The controller loads it as BPF_MODIFY_RETURN. Written
    // without aya's fexit macro, which returns 0 whatever the body says.
    #[no_mangle]
    #[link_section = "fexit/update_socket_protocol"]
    pub fn mptcpify(ctx: *mut c_void) -> i32 {
        let ctx = FExitContext::new(ctx);
        let (family, sock_type, protocol): (i32, i32, i32) = (ctx.arg(0), ctx.arg(1), ctx.arg(2));
        decide(family, sock_type, protocol, || {
            in_listed_cgroup(
                // SAFETY: a helper that takes no pointer; it reads the current task's cgroup.
                |level| unsafe { bpf_get_current_ancestor_cgroup_id(level) },
                |id| MPTCPIFY_CGROUPS.get_ptr(id).is_some(),
            )
        })
    }
}

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
