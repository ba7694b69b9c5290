//! mptcpify: the TCP sockets that processes in chosen cgroups open become
//! MPTCP sockets, with no change to the application and no LD_PRELOAD.
//! The kernel asks `update_socket_protocol(family, type, protocol)` at every
//! socket(2) (6.6 and later); a BPF_MODIFY_RETURN program attached to it
//! answers with [`decide`]. `mptcpize run` (mptcpd) does the same for one
//! program by wrapping socket(2) in the C library, which a statically linked
//! or Go program never calls; the kernel's selftests (`mptcpify.c`) do it
//! for one process id.
//!
//! The chosen cgroups are a set of cgroup v2 ids: a process is in it when
//! its cgroup or any ancestor is listed, so listing a service's slice covers
//! what it starts, and listing the root cgroup covers the whole host.

/// `AF_INET`.
pub const AF_INET: i32 = 2;
/// `AF_INET6`.
pub const AF_INET6: i32 = 10;
/// `SOCK_STREAM`.
pub const SOCK_STREAM: i32 = 1;
/// The type's bits below socket(2)'s flags (SOCK_NONBLOCK, SOCK_CLOEXEC).
/// The kernel masks them off before it asks; masked here too, so the answer
/// does not depend on it.
const SOCK_TYPE_MASK: i32 = 0xf;
/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: i32 = 6;
/// `IPPROTO_MPTCP`.
pub const IPPROTO_MPTCP: i32 = 262;

/// How many cgroups can be listed at once.
pub const MAX_CGROUPS: u32 = 256;
/// How deep below the root a listed ancestor is looked for (the cgroup
/// levels a task's own cgroup can be at; systemd's go 4 or 5 deep).
pub const MAX_CGROUP_DEPTH: i32 = 32;

/// The protocol a socket(`family`, `sock_type`, `protocol`) call gets
/// instead, as BPF_MODIFY_RETURN answers: [`IPPROTO_MPTCP`] for a TCP socket
/// over IPv4 or IPv6 (protocol 0 or `IPPROTO_TCP`), 0 for anything else. 0
/// means "no change": the kernel then calls the function, which keeps the
/// caller's protocol, and other programs attached to it still run. (Any
/// other value stops the chain, so a socket this program leaves alone is
/// never answered with its own protocol.)
#[inline(always)]
pub fn rewrite(family: i32, sock_type: i32, protocol: i32) -> i32 {
    let tcp = (family == AF_INET || family == AF_INET6)
        && sock_type & SOCK_TYPE_MASK == SOCK_STREAM
        && (protocol == 0 || protocol == IPPROTO_TCP);
    if tcp {
        IPPROTO_MPTCP
    } else {
        0
    }
}

/// Whether the calling task is in a listed cgroup: `ancestor(level)` is the
/// id of its cgroup's ancestor at `level` (0 is the root; 0 past its own
/// cgroup's level, as `bpf_get_current_ancestor_cgroup_id` answers), and
/// `listed(id)` says whether a cgroup id is in the set.
#[inline(always)]
pub fn in_listed_cgroup(ancestor: impl Fn(i32) -> u64, listed: impl Fn(u64) -> bool) -> bool {
    let mut level = 0;
    while level < MAX_CGROUP_DEPTH {
        let id = ancestor(level);
        if id == 0 {
            return false;
        }
        if listed(id) {
            return true;
        }
        level += 1;
    }
    false
}

/// The answer for one socket(2) call: [`rewrite`]'s, for a task in a listed
/// cgroup (asked only for TCP sockets: the cgroup walk costs a helper call
/// and a lookup per level), else 0.
#[inline(always)]
pub fn decide(family: i32, sock_type: i32, protocol: i32, in_listed: impl FnOnce() -> bool) -> i32 {
    let answer = rewrite(family, sock_type, protocol);
    if answer != 0 && in_listed() {
        answer
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOCK_DGRAM: i32 = 2;
    const SOCK_NONBLOCK: i32 = 0o4000;
    const AF_UNIX: i32 = 1;
    const IPPROTO_UDP: i32 = 17;

    #[test]
    fn tcp_over_ipv4_and_ipv6_becomes_mptcp_and_nothing_else_changes() {
        for family in [AF_INET, AF_INET6] {
            assert_eq!(rewrite(family, SOCK_STREAM, 0), IPPROTO_MPTCP);
            assert_eq!(rewrite(family, SOCK_STREAM, IPPROTO_TCP), IPPROTO_MPTCP);
            assert_eq!(rewrite(family, SOCK_STREAM | SOCK_NONBLOCK, 0), IPPROTO_MPTCP);
            // Already MPTCP, or another stream protocol (SCTP): left alone.
            assert_eq!(rewrite(family, SOCK_STREAM, IPPROTO_MPTCP), 0);
            assert_eq!(rewrite(family, SOCK_STREAM, 132), 0);
            assert_eq!(rewrite(family, SOCK_DGRAM, 0), 0);
            assert_eq!(rewrite(family, SOCK_DGRAM, IPPROTO_UDP), 0);
        }
        assert_eq!(rewrite(AF_UNIX, SOCK_STREAM, 0), 0);
    }

    /// A task at `path` (ids from the root down) in a set of listed ids.
    fn member(path: &[u64], listed: &[u64]) -> bool {
        in_listed_cgroup(|level| path.get(level as usize).copied().unwrap_or(0), |id| listed.contains(&id))
    }

    #[test]
    fn a_listed_cgroup_covers_its_descendants_and_the_root_covers_every_task() {
        let (root, slice, service, other) = (1, 40, 41, 50);
        assert!(member(&[root, slice, service], &[slice]));
        assert!(member(&[root, slice], &[slice]));
        assert!(!member(&[root, other], &[slice]));
        assert!(!member(&[root], &[slice]));
        assert!(member(&[root, other], &[root]));
        assert!(!member(&[root, slice, service], &[]));
        // Deeper than the walk: not found (and the walk stays bounded).
        let deep: std::vec::Vec<u64> = (1..=MAX_CGROUP_DEPTH as u64 + 1).collect();
        assert!(!member(&deep, &[MAX_CGROUP_DEPTH as u64 + 1]));
        assert!(member(&deep, &[MAX_CGROUP_DEPTH as u64]));
    }

    #[test]
    fn the_cgroups_are_walked_only_for_tcp_sockets() {
        let walked = core::cell::Cell::new(false);
        let ask = || {
            walked.set(true);
            true
        };
        assert_eq!(decide(AF_INET, SOCK_DGRAM, 0, ask), 0);
        assert!(!walked.get());
        assert_eq!(decide(AF_INET6, SOCK_STREAM, 0, ask), IPPROTO_MPTCP);
        assert!(walked.get());
        assert_eq!(decide(AF_INET, SOCK_STREAM, 0, || false), 0);
    }
}
