//! `subflow_pacing`: sockops on the root cgroup, for native mode's weighted
//! policy. The kernel's MPTCP scheduler sends on the subflow whose queue
//! drains first at its pacing rate, and TCP paces a socket with a
//! `SO_MAX_PACING_RATE` itself, so a cap per subflow is a split. Each MPTCP
//! subflow from a path's address (in the controller's network namespace)
//! gets its path's cap (`PACING_CAPS`, written by the controller from
//! `mptcp_common::policy::native::pacing_caps`) when it is established, and
//! again at its next RTT sample after the controller changed the caps
//! (`PACING_GENERATION`): a policy switch reaches live connections. Only
//! subflows established while the program is attached are seen (sockops
//! has no event for a socket that already exists), so the controller
//! attaches it when it starts. Plain
//! TCP sockets from the same address are left alone. Its own object: native
//! mode loads none of the bond's maps.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod program {
    use core::ffi::c_void;

    use aya_ebpf::bindings::{
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB, BPF_SOCK_OPS_RTT_CB,
        BPF_SOCK_OPS_RTT_CB_FLAG, SOL_SOCKET, SO_MAX_PACING_RATE,
    };
    use aya_ebpf::helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_setsockopt, bpf_skc_to_mptcp_sock};
    use aya_ebpf::macros::{map, sock_ops};
    use aya_ebpf::maps::{Array, HashMap, LruHashMap};
    use aya_ebpf::programs::SockOpsContext;
    use mptcp_common::maps::{so_max_pacing_rate, PacingKey, MAX_PACED_PATHS, MAX_PACED_SUBFLOWS};
    use mptcp_common::policy::native::NO_CAP;

    const AF_INET: u32 = 2;
    const AF_INET6: u32 = 10;

    /// A path's cap in bytes/s, by its address.
    #[map(name = "PACING_CAPS")]
    static PACING_CAPS: HashMap<PacingKey, u64> = HashMap::with_max_entries(MAX_PACED_PATHS, 0);

    /// Bumped by the controller at each change of `PACING_CAPS`.
    #[map(name = "PACING_GENERATION")]
    static PACING_GENERATION: Array<u32> = Array::with_max_entries(1, 0);

    /// The generation each subflow (by socket cookie) was capped at.
    #[map(name = "PACED")]
    static PACED: LruHashMap<u64, u32> = LruHashMap::with_max_entries(MAX_PACED_SUBFLOWS, 0);

    /// The local IPv6 address, one 4-byte load per word straight off the
    /// context (the verifier's rule; `SockOpsContext::local_ip6` copies
    /// the array with 8-byte loads through a moved pointer, refused).
    #[inline(always)]
    fn local_ip6(ctx: &SockOpsContext) -> [u32; 4] {
        // SAFETY: reads of the sockops context the kernel passed, in bounds.
        unsafe {
            let words = &(*ctx.ops).local_ip6;
            [
                core::ptr::read_volatile(&words[0]),
                core::ptr::read_volatile(&words[1]),
                core::ptr::read_volatile(&words[2]),
                core::ptr::read_volatile(&words[3]),
            ]
        }
    }

    #[sock_ops]
    pub fn subflow_pacing(ctx: SockOpsContext) -> u32 {
        let _ = try_subflow_pacing(&ctx);
        // Whatever happened here, the socket goes on.
        1
    }

    fn try_subflow_pacing(ctx: &SockOpsContext) -> Result<(), i64> {
        let op = ctx.op();
        let established = op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB || op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB;
        if !established && op != BPF_SOCK_OPS_RTT_CB {
            return Ok(());
        }
        let ops = ctx.ops as *mut c_void;
        // SAFETY: `sk` of the sockops context the kernel passed; checked for null below.
        let sk = unsafe { (*ctx.ops).__bindgen_anon_2.sk };
        // SAFETY: a helper on a non-null socket pointer from the context.
        if sk.is_null() || unsafe { bpf_skc_to_mptcp_sock(sk as *mut c_void) }.is_null() {
            return Ok(());
        }
        // SAFETY: helpers on the sockops context.
        let netns = unsafe { bpf_get_netns_cookie(ops) };
        let key = match ctx.family() {
            AF_INET => PacingKey::v4(netns, ctx.local_ip4().to_ne_bytes()),
            AF_INET6 => PacingKey::v6(netns, bytemuck::cast(local_ip6(ctx))),
            _ => return Ok(()),
        };
        // SAFETY: read once, copied; the controller replaces values whole.
        let Some(&cap) = (unsafe { PACING_CAPS.get(&key) }) else { return Ok(()) };
        let generation = PACING_GENERATION.get(0).copied().unwrap_or(0);
        // SAFETY: a helper on the sockops context.
        let cookie = unsafe { bpf_get_socket_cookie(ops) };
        if established {
            // Called at every RTT sample from now on, to follow changes.
            ctx.set_cb_flags((ctx.cb_flags() | BPF_SOCK_OPS_RTT_CB_FLAG) as i32)?;
        }
        // SAFETY: read once, copied.
        let paced = unsafe { PACED.get(&cookie) }.copied();
        if paced == Some(generation) || (paced.is_none() && cap == NO_CAP) {
            // Up to date, or never capped: nothing to lift (setting even
            // "unlimited" would turn TCP's own pacing on).
            return Ok(());
        }
        let mut rate = so_max_pacing_rate(cap);
        // SAFETY: the helper reads 4 bytes at `rate`, a live local.
        let r = unsafe {
            bpf_setsockopt(
                ops,
                SOL_SOCKET as i32,
                SO_MAX_PACING_RATE as i32,
                &mut rate as *mut u32 as *mut c_void,
                core::mem::size_of::<u32>() as i32,
            )
        };
        if r != 0 {
            return Err(r);
        }
        PACED.insert(&cookie, &generation, 0).map_err(i64::from)
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
