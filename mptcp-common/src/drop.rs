//! Why a packet was dropped — one enum for the kernel programs and userspace,
//! so that every drop is counted and named.

/// Index into the per-CPU `DROPS` counter array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Egress: the packet in the bond is not IPv4/IPv6 or is truncated.
    NotIp = 0,
    /// Egress: no connection covers the inner destination.
    NoConnection = 1,
    /// Egress: the connection has no established subflow.
    NoSubflow = 2,
    /// Egress: growing the packet for the outer headers failed.
    EncapFailed = 3,
    /// Egress: an encapsulated non-GSO packet would exceed the uplink MTU.
    TooBig = 4,
    /// Egress: `bpf_redirect_neigh` refused the packet.
    RedirectFailed = 5,
    /// Ingress: a packet to the bond port too short for its headers.
    Truncated = 6,
    /// Ingress: the multipath header has an unknown version or kind.
    BadHeader = 7,
    /// Ingress: no subflow has this outer 4-tuple.
    UnknownSubflow = 8,
    /// Ingress: the 4-tuple is known but the token or subflow id is not its own.
    BadToken = 9,
    /// Ingress: removing the outer headers failed, or the inner packet is not IP.
    DecapFailed = 10,
    /// Ingress: another copy of this redundant packet was delivered first.
    Duplicate = 11,
    /// Ingress: a redundant copy older than the duplicate-suppression window.
    StaleCopy = 12,
    /// Ingress (concentrator): the inner packet's source lies in no prefix
    /// of the connection that sent it: a client may send only from its own.
    ForeignSource = 13,
    /// Ingress: the multipath header's tag is not the connection's (made
    /// without its key: an off-path or forged packet), or the connection
    /// has no key.
    Forged = 14,
    /// Ingress: a data packet taken before (captured and sent again), or
    /// older than the replay window.
    Replayed = 15,
}

impl DropReason {
    pub const COUNT: u32 = 16;
    pub const ALL: [DropReason; Self::COUNT as usize] = [
        Self::NotIp,
        Self::NoConnection,
        Self::NoSubflow,
        Self::EncapFailed,
        Self::TooBig,
        Self::RedirectFailed,
        Self::Truncated,
        Self::BadHeader,
        Self::UnknownSubflow,
        Self::BadToken,
        Self::DecapFailed,
        Self::Duplicate,
        Self::StaleCopy,
        Self::ForeignSource,
        Self::Forged,
        Self::Replayed,
    ];

    /// Stable name used in `status` output and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Self::NotIp => "not-ip",
            Self::NoConnection => "no-connection",
            Self::NoSubflow => "no-subflow",
            Self::EncapFailed => "encap-failed",
            Self::TooBig => "too-big",
            Self::RedirectFailed => "redirect-failed",
            Self::Truncated => "truncated",
            Self::BadHeader => "bad-header",
            Self::UnknownSubflow => "unknown-subflow",
            Self::BadToken => "bad-token",
            Self::DecapFailed => "decap-failed",
            Self::Duplicate => "duplicate",
            Self::StaleCopy => "stale-copy",
            Self::ForeignSource => "foreign-source",
            Self::Forged => "forged",
            Self::Replayed => "replayed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_at_its_index() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }
}
