//! A host's paths for the kernel's MPTCP, on either side. A client gets a
//! `subflow` endpoint per uplink, so the in-kernel path manager opens a
//! subflow from each on every connection; a server a `signal` endpoint per
//! address, which it announces (ADD_ADDR) so the client joins to each. Both
//! get source routing, so each subflow leaves by its own uplink (its
//! packets carry the endpoint's address as source and find that uplink's
//! routing table by it).
//!
//! [`add`] and [`remove`] do that for one path (the controller follows
//! its uplinks with them); [`setup`] puts all of a host's paths in place
//! or, on any failure, nothing; [`teardown`] removes them again.

use std::net::IpAddr;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::pm::{Endpoint, EndpointFlags, Limits, PathManager, MAX_LIMIT};
use crate::netdev::Net;

/// The first of the routing tables the paths use (one each, in path order).
pub const TABLE_BASE: u32 = 7600;

/// Which end of the connections the host is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Opens connections: a subflow from every path.
    Client,
    /// Accepts them: every path's address announced to the client.
    Server,
}

/// One uplink as native mode uses it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativePath {
    /// The uplink device's index.
    pub ifindex: u32,
    /// The uplink's address: subflows from it leave by it.
    pub addr: IpAddr,
    /// The next hop on that uplink (none: on-link).
    pub gateway: Option<IpAddr>,
    /// Its subflows are backups (used only when no other is left).
    pub backup: bool,
}

/// What [`setup`] put in place.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// (slot, path), in the order they were added.
    pub paths: Vec<(usize, NativePath)>,
    /// The limits before, put back on teardown.
    pub limits_before: Option<Limits>,
}

/// The endpoint id and routing table of path `i`.
pub fn slot(i: usize) -> (u8, u32) {
    (i as u8 + 1, TABLE_BASE + i as u32)
}

/// Put path `i` in place: its source routing and its endpoint (`subflow`
/// on a client, `signal` on a server). On a client the kernel opens a
/// subflow from it on every connection at once, live ones included; on a
/// server it announces it to each. Both, or (after an error) neither.
pub async fn add(pm: &mut PathManager, net: &Net, side: Side, i: usize, p: &NativePath) -> Result<()> {
    let (id, table) = slot(i);
    net.add_source_route(p.addr, p.gateway, p.ifindex, table).await?;
    let (subflow, signal) = (side == Side::Client, side == Side::Server);
    let flags = EndpointFlags { subflow, signal, backup: p.backup, ..Default::default() };
    let ep = Endpoint { id, addr: p.addr, ifindex: Some(p.ifindex), flags };
    if let Err(e) = pm.add_endpoint(&ep).await {
        let _ = net.del_source_route(p.addr, p.gateway, p.ifindex, table).await;
        return Err(e);
    }
    Ok(())
}

/// Take path `i` out: its endpoint (the kernel closes the subflows from
/// it and tells the peers, REMOVE_ADDR) and its source routing. Both are
/// tried; the first error is returned.
pub async fn remove(pm: &mut PathManager, net: &Net, i: usize, p: &NativePath) -> Result<()> {
    let (id, table) = slot(i);
    let endpoint = pm.remove_endpoint(id).await;
    let route = net.del_source_route(p.addr, p.gateway, p.ifindex, table).await;
    endpoint.and(route)
}

/// Make every new MPTCP connection use one subflow per path: source
/// routing and an endpoint for each (`subflow` on a client, `signal` on a
/// server), and limits that let them all join. All of it, or (after an
/// error, which names the path) none.
pub async fn setup(pm: &mut PathManager, net: &Net, side: Side, paths: &[NativePath]) -> Result<Applied> {
    let mut applied = Applied { paths: vec![], limits_before: Some(open_limits(pm, paths.len()).await?) };
    for (i, p) in paths.iter().enumerate() {
        if let Err(e) = add(pm, net, side, i, p).await {
            let _ = teardown(pm, net, &applied).await;
            return Err(e.context(format!("path {} ({}) not set up; nothing left in place", i, p.addr)));
        }
        applied.paths.push((i, p.clone()));
    }
    Ok(applied)
}

/// Let `n` paths join every connection: the limits before.
pub async fn open_limits(pm: &mut PathManager, n: usize) -> Result<Limits> {
    if n == 0 || n > MAX_LIMIT as usize {
        bail!("native mode takes 1 to {MAX_LIMIT} paths, not {n}");
    }
    let before = pm.limits().await?;
    let n = n as u32;
    pm.set_limits(Limits { subflows: n, add_addr_accepted: n }).await?;
    Ok(before)
}

/// Remove what [`setup`] put in place, all of it even after an error (the
/// first error is returned).
pub async fn teardown(pm: &mut PathManager, net: &Net, applied: &Applied) -> Result<()> {
    let mut first = None;
    for (i, p) in applied.paths.iter().rev() {
        if let Err(e) = remove(pm, net, *i, p).await {
            first.get_or_insert(e);
        }
    }
    if let Some(l) = applied.limits_before {
        if let Err(e) = pm.set_limits(l).await {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}
