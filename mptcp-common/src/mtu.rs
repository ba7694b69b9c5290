//! The bond device's MTU: no encapsulated packet may exceed an uplink's MTU,
//! because nothing fragments on the redirect path (veth drops silently).

use crate::wire::encap_overhead;

/// Largest inner packet that still fits every uplink after encapsulation.
/// `outer_family` is the worst (largest) outer family in use.
pub const fn bond_mtu(min_uplink_mtu: u32, outer_family: u8) -> u32 {
    min_uplink_mtu.saturating_sub(encap_overhead(outer_family) as u32)
}

/// IPv6 needs an MTU of at least 1280 on every link.
pub const IPV6_MIN_MTU: u32 = 1280;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{FAMILY_V4, FAMILY_V6};

    #[test]
    fn overhead_is_subtracted() {
        assert_eq!(bond_mtu(1500, FAMILY_V4), 1452);
        assert_eq!(bond_mtu(1500, FAMILY_V6), 1432);
        assert_eq!(bond_mtu(10, FAMILY_V4), 0);
    }
}
