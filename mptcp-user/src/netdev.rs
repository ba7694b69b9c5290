//! Network devices, addresses and routes over rtnetlink: the bond device, the
//! uplinks' state, and the link/address event stream that drives subflows.

use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use futures::{Stream, StreamExt, TryStreamExt};
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressFlag, AddressMessage};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlag, LinkInfo, LinkLayerType, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteScope};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::Handle;

/// What the controller needs to know of an interface.
#[derive(Clone, Debug)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    /// Administratively up with carrier.
    pub running: bool,
    /// Carries IP without an Ethernet header (raw-IP LTE modem, PPP, TUN).
    pub raw_ip: bool,
}

fn link_from_msg(m: &LinkMessage) -> Link {
    let mut name = String::new();
    let mut mtu = 0;
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => name = n.clone(),
            LinkAttribute::Mtu(v) => mtu = *v,
            _ => {}
        }
    }
    let running = m.header.flags.contains(&LinkFlag::Up) && m.header.flags.contains(&LinkFlag::LowerUp);
    // Loopback aside, anything that is not Ethernet frames IP some other way.
    let raw_ip = !matches!(m.header.link_layer_type, LinkLayerType::Ether | LinkLayerType::Loopback);
    Link { index: m.header.index, name, mtu, running, raw_ip }
}

pub struct Net {
    handle: Handle,
}

impl Net {
    /// Opens an rtnetlink socket in the current network namespace.
    pub fn new() -> Result<Net> {
        let (conn, handle, _) = rtnetlink::new_connection().context("cannot open an rtnetlink socket")?;
        tokio::spawn(conn);
        Ok(Net { handle })
    }

    pub async fn link(&self, name: &str) -> Result<Option<Link>> {
        let mut s = self.handle.link().get().match_name(name.to_string()).execute();
        match s.try_next().await {
            Ok(Some(m)) => Ok(Some(link_from_msg(&m))),
            Ok(None) => Ok(None),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot look up interface {name}")),
        }
    }

    pub async fn link_by_index(&self, index: u32) -> Result<Option<Link>> {
        let mut s = self.handle.link().get().match_index(index).execute();
        match s.try_next().await {
            Ok(m) => Ok(m.map(|m| link_from_msg(&m))),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot look up interface #{index}")),
        }
    }

    /// Addresses of an interface (global scope and link scope alike).
    pub async fn addresses(&self, index: u32) -> Result<Vec<IpAddr>> {
        let mut s = self.handle.address().get().set_link_index_filter(index).execute();
        let mut out = Vec::new();
        while let Some(m) = s.try_next().await.context("cannot list addresses")? {
            if let Some(a) = address_of(&m) {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// `ip link add NAME type ifb mtu MTU`; ifb needs no peer and has carrier.
    pub async fn create_ifb(&self, name: &str, mtu: u32) -> Result<u32> {
        let mut req = self.handle.link().add();
        let msg = req.message_mut();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Ifb)]));
        req.execute().await.with_context(|| format!("cannot create bond device {name} (type ifb)"))?;
        let link = self.link(name).await?.with_context(|| format!("bond device {name} vanished after creation"))?;
        Ok(link.index)
    }

    pub async fn set_up(&self, index: u32) -> Result<()> {
        self.handle.link().set(index).up().execute().await.context("cannot set the bond device up")
    }

    pub async fn set_mtu(&self, index: u32, mtu: u32) -> Result<()> {
        self.handle
            .link()
            .set(index)
            .mtu(mtu)
            .execute()
            .await
            .with_context(|| format!("cannot set the MTU of device #{index} to {mtu}"))
    }

    pub async fn delete_link(&self, index: u32) -> Result<()> {
        self.handle.link().del(index).execute().await.context("cannot delete device")
    }

    pub async fn add_address(&self, index: u32, net: IpNet) -> Result<()> {
        let mut req = self.handle.address().add(index, net.addr(), net.prefix_len());
        if net.addr().is_ipv6() {
            // Usable at once: no duplicate address detection on a point-to-point bond.
            req.message_mut().attributes.push(AddressAttribute::Flags(vec![AddressFlag::Nodad]));
        }
        req.execute().await.with_context(|| format!("cannot add address {net} to the bond device"))
    }

    pub async fn add_route(&self, net: IpNet, index: u32) -> Result<()> {
        let r = match net {
            IpNet::V4(n) => {
                self.handle
                    .route()
                    .add()
                    .v4()
                    .destination_prefix(n.network(), n.prefix_len())
                    .output_interface(index)
                    .execute()
                    .await
            }
            IpNet::V6(n) => {
                self.handle
                    .route()
                    .add()
                    .v6()
                    .destination_prefix(n.network(), n.prefix_len())
                    .output_interface(index)
                    .execute()
                    .await
            }
        };
        r.with_context(|| format!("cannot add route {net} via the bond device"))
    }

    /// Route `net` through device `index` with at most `mtu`-byte packets
    /// (added, or replacing the route there): what the kernel forwards there
    /// is fragmented, or answered "fragmentation needed", to fit.
    pub async fn set_route_mtu(&self, net: IpNet, index: u32, mtu: u32) -> Result<()> {
        let metrics = RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]);
        let r = match net {
            IpNet::V4(n) => {
                let mut req = self.handle.route().add().v4().destination_prefix(n.network(), n.prefix_len());
                req = req.output_interface(index).replace();
                req.message_mut().attributes.push(metrics);
                req.execute().await
            }
            IpNet::V6(n) => {
                let mut req = self.handle.route().add().v6().destination_prefix(n.network(), n.prefix_len());
                req = req.output_interface(index).replace();
                req.message_mut().attributes.push(metrics);
                req.execute().await
            }
        };
        r.with_context(|| format!("cannot route {net} with MTU {mtu}"))
    }

    /// Source routing for one path: packets from `addr` look up table
    /// `table`, whose default route leaves by device `index` via `gateway`
    /// (none: on-link, as on a point-to-point uplink).
    /// (The messages [`Net::del_source_route`] removes again.)
    fn source_route_messages(
        &self,
        addr: IpAddr,
        gateway: Option<IpAddr>,
        index: u32,
        table: u32,
    ) -> Result<(netlink_packet_route::rule::RuleMessage, RouteMessage)> {
        // Without an action the kernel keeps the rule and fails every lookup
        // through it (EINVAL).
        let rule = self.handle.rule().add().table_id(table).action(netlink_packet_route::rule::RuleAction::ToTable);
        let route = self.handle.route().add().table_id(table).output_interface(index);
        if let Some(g) = gateway.filter(|g| g.is_ipv4() != addr.is_ipv4()) {
            bail!("address {addr} and gateway {g} are of different families");
        }
        let (rule, mut route) = match addr {
            IpAddr::V4(a) => {
                let (mut rule, mut route) = (rule.v4().source_prefix(a, 32), route.v4());
                (rule.message_mut().clone(), route.message_mut().clone())
            }
            IpAddr::V6(a) => {
                let (mut rule, mut route) = (rule.v6().source_prefix(a, 128), route.v6());
                (rule.message_mut().clone(), route.message_mut().clone())
            }
        };
        match gateway {
            Some(IpAddr::V4(g)) => route.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(g))),
            Some(IpAddr::V6(g)) => route.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet6(g))),
            None => route.header.scope = RouteScope::Link,
        }
        Ok((rule, route))
    }

    /// Add [`Net::source_route_messages`]' rule and route.
    pub async fn add_source_route(&self, addr: IpAddr, gateway: Option<IpAddr>, index: u32, table: u32) -> Result<()> {
        let (rule, route) = self.source_route_messages(addr, gateway, index, table)?;
        let mut add_route = self.handle.route().add();
        *add_route.message_mut() = route;
        let via = gateway.map_or_else(|| "on-link".to_string(), |g| format!("via {g}"));
        add_route.execute().await.with_context(|| format!("cannot route table {table} {via} (device {index})"))?;
        let mut add_rule = self.handle.rule().add();
        *add_rule.message_mut() = rule;
        if let Err(e) = add_rule.execute().await {
            let _ = self.del_source_route(addr, gateway, index, table).await;
            return Err(e).with_context(|| format!("cannot route packets from {addr} by table {table}"));
        }
        Ok(())
    }

    /// Remove what [`Net::add_source_route`] added (each part that is there).
    pub async fn del_source_route(&self, addr: IpAddr, gateway: Option<IpAddr>, index: u32, table: u32) -> Result<()> {
        let (rule, route) = self.source_route_messages(addr, gateway, index, table)?;
        let rule_gone = self.handle.rule().del(rule).execute().await;
        let route_gone = self.handle.route().del(route).execute().await;
        rule_gone.with_context(|| format!("cannot remove the rule for packets from {addr}"))?;
        route_gone.with_context(|| format!("cannot remove table {table}'s route"))
    }

    /// The gateway of the main table's default route through device
    /// `index`, of the family of `v4`, if there is one.
    pub async fn default_gateway(&self, index: u32, v4: bool) -> Result<Option<IpAddr>> {
        let ip = if v4 { rtnetlink::IpVersion::V4 } else { rtnetlink::IpVersion::V6 };
        let mut routes = self.handle.route().get(ip).execute();
        while let Some(r) = routes.try_next().await.context("cannot list routes")? {
            if r.header.table != RouteHeader::RT_TABLE_MAIN || r.header.destination_prefix_length != 0 {
                continue;
            }
            let oif = r.attributes.iter().any(|a| matches!(a, RouteAttribute::Oif(i) if *i == index));
            let gateway = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => Some(IpAddr::V4(*g)),
                RouteAttribute::Gateway(RouteAddress::Inet6(g)) => Some(IpAddr::V6(*g)),
                _ => None,
            });
            if oif && gateway.is_some() {
                return Ok(gateway);
            }
        }
        Ok(None)
    }

    /// Remove the route to `net` through device `index`, if there is one.
    pub async fn del_route(&self, net: IpNet, index: u32) -> Result<()> {
        let mut m = RouteMessage::default();
        let (family, addr, len) = match net {
            IpNet::V4(n) => (AddressFamily::Inet, RouteAddress::Inet(n.network()), n.prefix_len()),
            IpNet::V6(n) => (AddressFamily::Inet6, RouteAddress::Inet6(n.network()), n.prefix_len()),
        };
        m.header.address_family = family;
        m.header.destination_prefix_length = len;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.scope = RouteScope::NoWhere;
        m.attributes.push(RouteAttribute::Destination(addr));
        m.attributes.push(RouteAttribute::Oif(index));
        match self.handle.route().del(m).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ESRCH => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove the route to {net}")),
        }
    }
}

fn address_of(m: &AddressMessage) -> Option<IpAddr> {
    // IFA_LOCAL is the local address on point-to-point links, IFA_ADDRESS otherwise.
    let mut addr = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(a) => return Some(*a),
            AddressAttribute::Address(a) => addr = Some(*a),
            _ => {}
        }
    }
    addr
}

/// A link or address change on some interface.
#[derive(Clone, Debug)]
pub enum NetEvent {
    Link { index: u32, running: bool },
    LinkGone { index: u32 },
    Address { index: u32, added: bool, addr: IpAddr },
}

/// Subscribe to link and address events (RTNLGRP_LINK, IPV4_IFADDR, IPV6_IFADDR).
pub fn watch() -> Result<impl Stream<Item = NetEvent>> {
    use netlink_sys::{AsyncSocket, SocketAddr};
    const RTMGRP_LINK: u32 = 1;
    const RTMGRP_IPV4_IFADDR: u32 = 0x10;
    const RTMGRP_IPV6_IFADDR: u32 = 0x100;
    let (mut conn, _handle, messages) =
        rtnetlink::new_connection().context("cannot open an rtnetlink socket for events")?;
    conn.socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        .context("cannot subscribe to link and address events")?;
    tokio::spawn(conn);
    Ok(messages.filter_map(|(msg, _)| async move {
        use netlink_packet_core::NetlinkPayload;
        match msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => {
                Some(NetEvent::Link { index: m.header.index, running: link_from_msg(&m).running })
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m)) => {
                Some(NetEvent::LinkGone { index: m.header.index })
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(m)) => {
                address_of(&m).map(|addr| NetEvent::Address { index: m.header.index, added: true, addr })
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(m)) => {
                address_of(&m).map(|addr| NetEvent::Address { index: m.header.index, added: false, addr })
            }
            _ => None,
        }
    }))
}

/// The address a path uses on `iface`: the configured one (which must exist)
/// or the first usable one of the wanted family.
pub fn pick_local(addrs: &[IpAddr], configured: Option<IpAddr>, want_v4: bool, iface: &str) -> Result<IpAddr> {
    if let Some(c) = configured {
        if addrs.contains(&c) {
            return Ok(c);
        }
        bail!("interface {iface} does not have the configured local address {c}");
    }
    let usable = |a: &&IpAddr| match a {
        IpAddr::V4(v) => want_v4 && !v.is_loopback(),
        IpAddr::V6(v) => !want_v4 && !v.is_loopback() && (v.segments()[0] & 0xffc0) != 0xfe80,
    };
    addrs.iter().find(usable).copied().with_context(|| {
        format!("interface {iface} has no {} address to use", if want_v4 { "IPv4" } else { "global IPv6" })
    })
}
