//! A host's paths for the kernel's MPTCP, on either side. A client gets a
//! `subflow` endpoint per uplink, so the in-kernel path manager opens a
//! subflow from each on every connection; a server a `signal` endpoint per
//! address, which it announces (ADD_ADDR) so the client joins to each. Both
//! get source routing, so each subflow leaves by its own uplink (its
//! packets carry the endpoint's address as source and find that uplink's
//! routing table by it).
//!
//! [`setup`] puts all of it in place or, on any failure, nothing;
//! [`teardown`] removes it again.

use std::net::IpAddr;

use anyhow::{bail, Result};

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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NativePath {
    /// The uplink device's index.
    pub ifindex: u32,
    /// The uplink's address: subflows from it leave by it.
    pub addr: IpAddr,
    /// The next hop on that uplink.
    pub gateway: IpAddr,
    /// Its subflows are backups (used only when no other is left).
    pub backup: bool,
}

/// What [`setup`] put in place.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// (endpoint id, path), in the order they were added.
    pub paths: Vec<(u8, NativePath)>,
    /// The limits before, put back on teardown.
    pub limits_before: Option<Limits>,
}

/// The endpoint id and routing table of path `i`.
fn slot(i: usize) -> (u8, u32) {
    (i as u8 + 1, TABLE_BASE + i as u32)
}

/// Make every new MPTCP connection use one subflow per path: source
/// routing and an endpoint for each (`subflow` on a client, `signal` on a
/// server), and limits that let them all join. All of it, or (after an
/// error, which names the path) none.
pub async fn setup(pm: &mut PathManager, net: &Net, side: Side, paths: &[NativePath]) -> Result<Applied> {
    if paths.is_empty() || paths.len() > MAX_LIMIT as usize {
        bail!("native mode takes 1 to {MAX_LIMIT} paths, not {}", paths.len());
    }
    let mut applied = Applied { paths: vec![], limits_before: Some(pm.limits().await?) };
    let n = paths.len() as u32;
    if let Err(e) = pm.set_limits(Limits { subflows: n, add_addr_accepted: n }).await {
        applied.limits_before = None;
        return Err(e);
    }
    for (i, p) in paths.iter().enumerate() {
        let (id, table) = slot(i);
        let added = async {
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
        .await;
        if let Err(e) = added {
            let _ = teardown(pm, net, &applied).await;
            return Err(e.context(format!("path {} ({}) not set up; nothing left in place", i, p.addr)));
        }
        applied.paths.push((id, p.clone()));
    }
    Ok(applied)
}

/// Remove what [`setup`] put in place, all of it even after an error (the
/// first error is returned).
pub async fn teardown(pm: &mut PathManager, net: &Net, applied: &Applied) -> Result<()> {
    let mut first = None;
    for (i, (id, p)) in applied.paths.iter().enumerate().rev() {
        let (_, table) = slot(i);
        if let Err(e) = pm.remove_endpoint(*id).await {
            first.get_or_insert(e);
        }
        if let Err(e) = net.del_source_route(p.addr, p.gateway, p.ifindex, table).await {
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
