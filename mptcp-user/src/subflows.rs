//! Installing and updating subflows in the data path's maps. Both roles use
//! these; the controller loop is the only writer, so no locking is needed.

use std::net::{IpAddr, SocketAddr};

use anyhow::Result;
use mptcp_common::auth::ConnKeys;
use mptcp_common::maps::{
    Connection, FlowKey, PathState, Subflow, SubflowKey, MAX_SUBFLOWS, PATH_UNBRIDGEABLE, PATH_UP,
};
use mptcp_common::policy::{auto_policy, mark_unbridgeable};
use mptcp_common::template;
use mptcp_common::wire::{FAMILY_V4, FAMILY_V6};

use crate::bpfmaps::DataPathMaps;

/// One subflow's endpoints as this host sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub ifindex: u32,
}

fn octets16(a: IpAddr) -> [u8; 16] {
    let mut o = [0u8; 16];
    match a {
        IpAddr::V4(v) => o[..4].copy_from_slice(&v.octets()),
        IpAddr::V6(v) => o = v.octets(),
    }
    o
}

fn from_octets(family: u8, o: [u8; 16]) -> IpAddr {
    if family == FAMILY_V6 {
        IpAddr::from(o)
    } else {
        IpAddr::from([o[0], o[1], o[2], o[3]])
    }
}

impl Endpoints {
    /// The 4-tuple key under which the receiving XDP program finds this subflow.
    pub fn flow_key(&self) -> FlowKey {
        FlowKey {
            remote: octets16(self.remote.ip()),
            local: octets16(self.local.ip()),
            remote_port: self.remote.port(),
            local_port: self.local.port(),
            family: if self.local.is_ipv4() { FAMILY_V4 } else { FAMILY_V6 },
            _pad: [0; 3],
        }
    }

    pub fn template(&self) -> mptcp_common::maps::OuterTemplate {
        match (self.local.ip(), self.remote.ip()) {
            (IpAddr::V4(l), IpAddr::V4(r)) => {
                template::ipv4(l.octets(), r.octets(), self.local.port(), self.remote.port(), self.ifindex)
            }
            _ => template::ipv6(
                octets16(self.local.ip()),
                octets16(self.remote.ip()),
                self.local.port(),
                self.remote.port(),
                self.ifindex,
            ),
        }
    }

    /// Read back what [`Endpoints::template`] wrote (used when adopting).
    pub fn from_subflow(s: &Subflow) -> Endpoints {
        let (family, src, dst, sport, dport) = template::endpoints(&s.outer);
        Endpoints {
            local: SocketAddr::new(from_octets(family, src), sport),
            remote: SocketAddr::new(from_octets(family, dst), dport),
            ifindex: s.outer.ifindex,
        }
    }
}

/// A new connection's data keys: what tags its packets both ways. Written
/// before its first subflow is installed, so no packet of it goes untagged
/// or unchecked.
pub fn install_keys(maps: &mut DataPathMaps, token: u32, keys: ConnKeys) -> Result<()> {
    maps.data_keys.insert(token, keys, 0)?;
    Ok(())
}

/// Accept data packets of this subflow from now on (the receive side only).
pub fn install_rx(maps: &mut DataPathMaps, token: u32, id: u8, ep: &Endpoints) -> Result<()> {
    let key = SubflowKey { token, subflow_id: id as u32 };
    maps.ensure_subflow_counters(key)?;
    maps.ensure_dedup_window(token)?;
    maps.subflow_by_tuple.insert(ep.flow_key(), key, 0)?;
    Ok(())
}

/// Make the subflow eligible for sending (after [`install_rx`]).
pub fn install_tx(maps: &mut DataPathMaps, token: u32, id: u8, ep: &Endpoints, path: PathState) -> Result<()> {
    assert!((id as usize) < MAX_SUBFLOWS);
    maps.ensure_tx_state(token)?;
    let before = maps.connections.get(&token, 0).unwrap_or(Connection { token, ..Default::default() });
    let mut conn = before;
    conn.subflows[id as usize] = Subflow { outer: ep.template(), path };
    conn.n_subflows = conn.n_subflows.max(id as u32 + 1);
    mark_paths(&mut conn);
    write(maps, &before, conn)
}

/// Write a connection's new state, noting when it changes what auto stands
/// for over its paths ([`DataPathMaps::auto_stale`]).
fn write(maps: &mut DataPathMaps, before: &Connection, conn: Connection) -> Result<()> {
    if changes_auto(before, &conn) {
        maps.auto_stale = true;
    }
    maps.connections.insert(conn.token, conn, 0)?;
    Ok(())
}

/// The flags that depend on all of a connection's paths at once
/// ([`mark_unbridgeable`]), brought up to date before each write.
fn mark_paths(conn: &mut Connection) {
    let mut states = conn.subflows.map(|s| s.path);
    mark_unbridgeable(&mut states);
    for (s, p) in conn.subflows.iter_mut().zip(states) {
        s.path.flags = p.flags;
    }
}

/// Change a subflow's path state in place. Returns false if it does not exist.
pub fn update_path(maps: &mut DataPathMaps, token: u32, id: u8, f: impl FnOnce(&mut PathState)) -> Result<bool> {
    let Ok(mut conn) = maps.connections.get(&token, 0) else { return Ok(false) };
    let before = conn;
    let Some(slot) = conn.subflows.get_mut(id as usize) else { return Ok(false) };
    if !slot.path.established() {
        return Ok(false);
    }
    f(&mut slot.path);
    mark_paths(&mut conn);
    for (i, (was, now)) in before.subflows.iter().zip(&conn.subflows).enumerate() {
        let out = now.path.flags & PATH_UNBRIDGEABLE != 0;
        if out != (was.path.flags & PATH_UNBRIDGEABLE != 0) {
            tracing::debug!(token, subflow = i, left_out = out, "earliest-arrival: path beside the biggest");
        }
    }
    if conn != before {
        write(maps, &before, conn)?;
    }
    Ok(true)
}

pub fn set_up(maps: &mut DataPathMaps, token: u32, id: u8, up: bool) -> Result<bool> {
    update_path(maps, token, id, |p| if up { p.flags |= PATH_UP } else { p.flags &= !PATH_UP })
}

/// Whether auto stands for another policy over `after`'s paths than over
/// `before`'s.
fn changes_auto(before: &Connection, after: &Connection) -> bool {
    let auto = |c: &Connection| auto_policy(&c.subflows.map(|s| s.path));
    auto(before) != auto(after)
}

/// Stop using a subflow and forget its 4-tuple.
pub fn remove(maps: &mut DataPathMaps, token: u32, id: u8) -> Result<()> {
    if let Ok(before) = maps.connections.get(&token, 0) {
        let mut conn = before;
        if let Some(slot) = conn.subflows.get_mut(id as usize) {
            if slot.path.established() {
                let ep = Endpoints::from_subflow(slot);
                let _ = maps.subflow_by_tuple.remove(&ep.flow_key());
            }
            *slot = Subflow::default();
            mark_paths(&mut conn);
            write(maps, &before, conn)?;
        }
    }
    Ok(())
}

/// Remove a connection with all its subflows, prefixes and state.
pub fn remove_connection(maps: &mut DataPathMaps, token: u32) -> Result<()> {
    if let Ok(conn) = maps.connections.get(&token, 0) {
        for (id, s) in conn.subflows.iter().enumerate() {
            if s.path.established() {
                let _ = maps.subflow_by_tuple.remove(&Endpoints::from_subflow(s).flow_key());
            }
            let key = SubflowKey { token, subflow_id: id as u32 };
            let _ = maps.subflow_stats.remove(&key);
            let _ = maps.rx_seq.remove(&key);
        }
    }
    maps.remove_prefixes_of(token);
    if maps.connections.remove(&token).is_ok() {
        maps.auto_stale = true;
    }
    let _ = maps.tx_state.remove(&token);
    let _ = maps.dedup.remove(&token);
    let _ = maps.data_keys.remove(&token);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_survive_the_template() {
        for (l, r) in [("10.1.0.2:7495", "10.1.0.1:7495"), ("[fd00::2]:7495", "[fd00::1]:7000")] {
            let ep = Endpoints { local: l.parse().unwrap(), remote: r.parse().unwrap(), ifindex: 4 };
            let s = Subflow { outer: ep.template(), path: PathState::default() };
            assert_eq!(Endpoints::from_subflow(&s), ep);
        }
    }

    #[test]
    fn a_far_path_joining_changes_what_auto_stands_for() {
        use mptcp_common::maps::{PATH_ESTABLISHED, PATH_UP};
        let path =
            |owd_us| PathState { flags: PATH_ESTABLISHED | PATH_UP, owd_us, srtt_us: 2 * owd_us, ..Default::default() };
        let mut near = Connection { token: 1, n_subflows: 1, ..Default::default() };
        near.subflows[0].path = path(20_000);
        let mut both = near;
        both.n_subflows = 2;
        both.subflows[1].path = path(300_000);
        assert!(changes_auto(&near, &both), "a satellite beside a near link: earliest-arrival at once");
        assert!(changes_auto(&both, &near), "and back when it goes");
        let mut slower = both;
        slower.subflows[1].path.rate_bytes_per_sec = 1_000_000;
        assert!(!changes_auto(&both, &slower), "a new rate alone changes nothing here");
    }
}
