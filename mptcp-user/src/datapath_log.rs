//! The data path's debug log. While the controller logs the target
//! `mptcp_user::datapath` at debug level (`--log info,mptcp_user::datapath=debug`,
//! or `--log debug`), the kernel programs report every drop with the
//! packet's first bytes (`Settings::debug`, the `DROP_EVENTS` ring buffer)
//! and this task logs each one, saying which packet it was. Off, the
//! programs only count drops, as always.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::{Context, Result};
use aya::maps::{Map, MapData, RingBuf};
use mptcp_common::maps::{names, DropEvent, HOOK_BOND_ENCAP, HOOK_UPLINK_L3, HOOK_UPLINK_XDP};
use mptcp_common::DropReason;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Drops logged a second at most (the rest are counted in one line).
const LINES_PER_SECOND: u64 = 100;

/// The log target of the data path's events.
pub const TARGET: &str = "mptcp_user::datapath";

/// Whether the log wants the data path's events.
pub fn wanted() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::DEBUG)
}

/// Read the pinned `DROP_EVENTS` of the data path in `pin_dir` and log each
/// event, for as long as the process runs.
pub fn spawn(pin_dir: &Path) -> Result<()> {
    let path = pin_dir.join(names::DROP_EVENTS);
    let data = MapData::from_pin(&path)
        .with_context(|| format!("cannot open {} (a data path pinned by an older build has none)", path.display()))?;
    let ring = RingBuf::try_from(Map::RingBuf(data)).context("DROP_EVENTS is not a ring buffer")?;
    // SAFETY: the ring buffer owns its map's file descriptor for as long as
    // the AsyncFd owns the ring buffer, and always answers that one.
    let mut ready = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
        .context("cannot poll DROP_EVENTS")?;
    tokio::spawn(async move {
        // A flood of bad packets must not become a flood of log lines.
        let mut budget = crate::throttle::Budget::new(LINES_PER_SECOND);
        let mut left_out = 0u64;
        loop {
            let mut guard = match ready.readable_mut().await {
                Ok(g) => g,
                Err(e) => {
                    tracing::warn!(error = %e, "the data path's debug events stopped");
                    return;
                }
            };
            let ring = guard.get_inner_mut();
            while let Some(item) = ring.next() {
                let now = crate::peer::now_us();
                if !budget.take(now) {
                    left_out += 1;
                    continue;
                }
                if left_out > 0 {
                    tracing::debug!(target: TARGET, left_out, "more drops than the log takes: these were not logged");
                    left_out = 0;
                }
                if let Some(bytes) = item.get(..std::mem::size_of::<DropEvent>()) {
                    log(&bytemuck::pod_read_unaligned(bytes));
                }
            }
            guard.clear_ready();
        }
    });
    Ok(())
}

/// The controller stops while the data path goes on (a handover): no more
/// drop reports, which nobody would read.
pub fn stop_reports(pin_dir: &Path) -> Result<()> {
    let mut maps = crate::bpfmaps::DataPathMaps::open(pin_dir)?;
    let mut s = maps.settings.get(&0, 0)?;
    if s.debug != 0 {
        s.debug = 0;
        maps.settings.set(0, s, 0)?;
    }
    Ok(())
}

fn log(e: &DropEvent) {
    let reason = DropReason::ALL.iter().find(|r| **r as u8 == e.reason).map_or("?", |r| r.name());
    tracing::debug!(
        target: TARGET,
        reason,
        hook = hook_name(e.hook),
        ifindex = e.ifindex,
        len = e.len,
        packet = %describe(e),
        "dropped"
    );
}

fn hook_name(hook: u8) -> &'static str {
    match hook {
        HOOK_UPLINK_XDP => "uplink ingress (XDP)",
        HOOK_UPLINK_L3 => "uplink ingress (tc, raw IP)",
        HOOK_BOND_ENCAP => "bond egress (encapsulation)",
        _ => "bond egress",
    }
}

/// The dropped packet in a few words, from its first bytes: "udp
/// 192.0.2.7:40000 > 10.1.0.1:7495", "tcp [fd00::1]:443 > …", "ethertype
/// 0x0806", or "?" when too little of it is there.
pub fn describe(e: &DropEvent) -> String {
    let head = &e.head[..(e.head_len as usize).min(e.head.len())];
    let ip = if e.hook == HOOK_UPLINK_L3 {
        head
    } else {
        // An Ethernet header first (the bond device is an Ethernet-type device too).
        let Some(t) = head.get(12..14) else { return "?".into() };
        match u16::from_be_bytes([t[0], t[1]]) {
            0x0800 | 0x86dd => &head[14..],
            other => return format!("ethertype {other:#06x}"),
        }
    };
    let parsed = match ip.first().map(|b| b >> 4) {
        Some(4) if ip.len() >= 20 => {
            let ihl = ((ip[0] & 0x0f) as usize) * 4;
            let src = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
            let dst = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
            Some((ip[9], src, dst, ip.get(ihl..)))
        }
        Some(6) if ip.len() >= 40 => {
            let addr = |o: usize| IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&ip[o..o + 16]).expect("16 bytes")));
            Some((ip[6], addr(8), addr(24), ip.get(40..)))
        }
        _ => None,
    };
    let Some((proto, src, dst, l4)) = parsed else { return "?".into() };
    let ports =
        l4.filter(|l| l.len() >= 4).map(|l| (u16::from_be_bytes([l[0], l[1]]), u16::from_be_bytes([l[2], l[3]])));
    let at = |a: IpAddr, p: u16| if a.is_ipv6() { format!("[{a}]:{p}") } else { format!("{a}:{p}") };
    match (proto, ports) {
        (6, Some((sp, dp))) => format!("tcp {} > {}", at(src, sp), at(dst, dp)),
        (17, Some((sp, dp))) => format!("udp {} > {}", at(src, sp), at(dst, dp)),
        (1, _) | (58, _) => format!("icmp {src} > {dst}"),
        (p, _) => format!("ip proto {p} {src} > {dst}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mptcp_common::maps::{DROP_EVENT_HEAD, HOOK_BOND_EGRESS};

    fn event(hook: u8, bytes: &[u8]) -> DropEvent {
        let mut head = [0; DROP_EVENT_HEAD];
        let n = bytes.len().min(DROP_EVENT_HEAD);
        head[..n].copy_from_slice(&bytes[..n]);
        DropEvent { reason: 0, hook, _pad: 0, ifindex: 3, len: bytes.len() as u32, head_len: n as u32, head }
    }

    fn udp4() -> Vec<u8> {
        let mut ip = vec![0x45, 0, 0, 40, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 7, 10, 1, 0, 1];
        ip.extend_from_slice(&[0x9c, 0x40, 0x1d, 0x47, 0, 20, 0, 0]);
        ip
    }

    #[test]
    fn a_dropped_packet_is_named_by_its_addresses_and_ports() {
        let mut frame = vec![0; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&udp4());
        assert_eq!(describe(&event(HOOK_UPLINK_XDP, &frame)), "udp 192.0.2.7:40000 > 10.1.0.1:7495");
        assert_eq!(describe(&event(HOOK_UPLINK_L3, &udp4())), "udp 192.0.2.7:40000 > 10.1.0.1:7495");
        let mut arp = vec![0; 12];
        arp.extend_from_slice(&[0x08, 0x06, 0, 1]);
        assert_eq!(describe(&event(HOOK_BOND_EGRESS, &arp)), "ethertype 0x0806");
        assert_eq!(describe(&event(HOOK_BOND_EGRESS, &[0; 5])), "?");
        let mut v6 = vec![0x60, 0, 0, 0, 0, 8, 58, 64];
        v6.extend_from_slice(&[0xfd; 16]);
        v6.extend_from_slice(&[0xfe; 16]);
        let named = describe(&event(HOOK_UPLINK_L3, &v6));
        assert!(named.starts_with("icmp fdfd:") && named.contains(" > fefe:"), "{named}");
    }
}
