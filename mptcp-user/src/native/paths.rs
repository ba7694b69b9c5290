//! A host's paths for the kernel's MPTCP, on either side. A client gets a
//! `subflow` endpoint per uplink, so the in-kernel path manager opens a
//! subflow from each on every connection; a server a `signal` endpoint per
//! address, which it announces (ADD_ADDR) so the client joins to each. Both
//! get source routing, so each subflow leaves by its own uplink (its
//! packets carry the endpoint's address as source and find that uplink's
//! routing table by it).
//!
//! The controller follows its uplinks with the per-path steps (routing and
//! endpoint apart: a path whose probes go unanswered loses its endpoint but
//! keeps its routing, which its probes take); [`setup`] puts all of a
//! host's paths in place or, on any failure, nothing; [`teardown`] removes
//! them again.

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

/// What [`setup`] (or the controller) put in place.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// (slot, path) of the routed paths, in the order they were added.
    pub paths: Vec<(usize, NativePath)>,
    /// The slots among them whose endpoint is out (their probes went
    /// unanswered); the others have theirs.
    #[serde(default)]
    pub withdrawn: Vec<usize>,
    /// The limits before, put back on teardown.
    pub limits_before: Option<Limits>,
}

/// The endpoint id and routing table of path `i`.
pub fn slot(i: usize) -> (u8, u32) {
    (i as u8 + 1, TABLE_BASE + i as u32)
}

/// Route path `i`: packets from its address look up a table of their own
/// whose default route leaves by its uplink.
pub async fn add_route(net: &Net, i: usize, p: &NativePath) -> Result<()> {
    net.add_source_route(p.addr, p.gateway, p.ifindex, slot(i).1).await
}

pub async fn del_route(net: &Net, i: usize, p: &NativePath) -> Result<()> {
    net.del_source_route(p.addr, p.gateway, p.ifindex, slot(i).1).await
}

/// Path `i`'s endpoint (`subflow` on a client, `signal` on a server): on a
/// client the kernel opens a subflow from it on every connection at once,
/// live ones included; on a server it announces it to each.
pub async fn add_endpoint(pm: &mut PathManager, side: Side, i: usize, p: &NativePath) -> Result<()> {
    let (subflow, signal) = (side == Side::Client, side == Side::Server);
    let flags = EndpointFlags { subflow, signal, backup: p.backup, ..Default::default() };
    pm.add_endpoint(&Endpoint { id: slot(i).0, addr: p.addr, ifindex: Some(p.ifindex), flags }).await
}

/// Remove path `i`'s endpoint: the kernel closes the subflows from it
/// (their unacknowledged data goes again on the others) and tells the
/// peers (REMOVE_ADDR).
pub async fn del_endpoint(pm: &mut PathManager, i: usize) -> Result<()> {
    pm.remove_endpoint(slot(i).0).await
}

/// Put path `i` in place: its routing and its endpoint, or (after an
/// error) neither.
pub async fn add(pm: &mut PathManager, net: &Net, side: Side, i: usize, p: &NativePath) -> Result<()> {
    add_route(net, i, p).await?;
    if let Err(e) = add_endpoint(pm, side, i, p).await {
        let _ = del_route(net, i, p).await;
        return Err(e);
    }
    Ok(())
}

/// Make every new MPTCP connection use one subflow per path: source
/// routing and an endpoint for each (`subflow` on a client, `signal` on a
/// server), and limits that let them all join. All of it, or (after an
/// error, which names the path) none.
pub async fn setup(pm: &mut PathManager, net: &Net, side: Side, paths: &[NativePath]) -> Result<Applied> {
    let mut applied = Applied { limits_before: Some(open_limits(pm, paths.len()).await?), ..Default::default() };
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
        if !applied.withdrawn.contains(i) {
            if let Err(e) = del_endpoint(pm, *i).await {
                first.get_or_insert(e);
            }
        }
        if let Err(e) = del_route(net, *i, p).await {
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
