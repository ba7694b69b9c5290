//! The kernel's MPTCP path manager, over generic netlink (family
//! `mptcp_pm`): its endpoints (`ip mptcp endpoint`) and limits (`ip mptcp
//! limits`), as native mode drives them.
//!
//! Reading goes through the `mptcp-pm` crate. It has no writing requests,
//! so those are our own `GenlFamily` payload ([`PmRequest`]) sent on the
//! same `genetlink` connection; the address attributes are the crate's.

use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use mptcp_pm::{
    MptcpPathManagerAddressAttr as AddrAttr, MptcpPathManagerAddressAttrFlag as AddrFlag, MptcpPathManagerAttr,
    MptcpPathManagerHandle, MptcpPathManagerLimitsAttr,
};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};
use netlink_packet_utils::nla::{Nla, NLA_F_NESTED};
use netlink_packet_utils::{DecodeError, Emitable, ParseableParametrized};

/// `MPTCP_PM_CMD_*` that write.
const CMD_ADD_ADDR: u8 = 1;
const CMD_DEL_ADDR: u8 = 2;
const CMD_FLUSH_ADDRS: u8 = 4;
const CMD_SET_LIMITS: u8 = 5;
const CMD_SET_FLAGS: u8 = 7;
/// `MPTCP_PM_ATTR_*`.
const ATTR_ADDR: u16 = 1;
const ATTR_RCV_ADD_ADDRS: u16 = 2;
const ATTR_SUBFLOWS: u16 = 3;
/// Most subflows and accepted addresses the kernel allows per connection.
pub const MAX_LIMIT: u32 = 8;

/// What an endpoint is for (`ip mptcp endpoint add ... FLAGS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointFlags {
    /// Announced to the peer (ADD_ADDR): a server's extra addresses.
    pub signal: bool,
    /// Used to open subflows from: a client's extra paths.
    pub subflow: bool,
    /// Subflows from it are backups (MP_PRIO).
    pub backup: bool,
    /// A subflow to every address the peer announced.
    pub fullmesh: bool,
}

impl EndpointFlags {
    fn attr(&self) -> AddrAttr {
        let mut f = vec![];
        for (on, flag) in [
            (self.signal, AddrFlag::Signal),
            (self.subflow, AddrFlag::Subflow),
            (self.backup, AddrFlag::Backup),
            (self.fullmesh, AddrFlag::Fullmesh),
        ] {
            if on {
                f.push(flag);
            }
        }
        AddrAttr::Flags(f)
    }

    fn from_attr(flags: &[AddrFlag]) -> Self {
        let has = |x: AddrFlag| flags.contains(&x);
        EndpointFlags {
            signal: has(AddrFlag::Signal),
            subflow: has(AddrFlag::Subflow),
            backup: has(AddrFlag::Backup),
            fullmesh: has(AddrFlag::Fullmesh),
        }
    }
}

/// One endpoint of the in-kernel path manager.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// 1..=255, unique on the host (0 is the kernel's for the first subflow).
    pub id: u8,
    pub addr: IpAddr,
    /// The device its subflows leave by, if bound to one.
    pub ifindex: Option<u32>,
    pub flags: EndpointFlags,
}

/// Per-connection limits (`ip mptcp limits`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Subflows beyond the first.
    pub subflows: u32,
    /// Addresses the peer announces that are used.
    pub add_addr_accepted: u32,
}

/// A top-level attribute of a writing request.
#[derive(Clone, Debug, PartialEq, Eq)]
enum PmAttr {
    Addr(Vec<AddrAttr>),
    RcvAddAddrs(u32),
    Subflows(u32),
}

impl Nla for PmAttr {
    fn value_len(&self) -> usize {
        match self {
            PmAttr::Addr(a) => a.as_slice().buffer_len(),
            PmAttr::RcvAddAddrs(_) | PmAttr::Subflows(_) => 4,
        }
    }
    fn kind(&self) -> u16 {
        match self {
            PmAttr::Addr(_) => ATTR_ADDR | NLA_F_NESTED,
            PmAttr::RcvAddAddrs(_) => ATTR_RCV_ADD_ADDRS,
            PmAttr::Subflows(_) => ATTR_SUBFLOWS,
        }
    }
    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            PmAttr::Addr(a) => a.as_slice().emit(buffer),
            PmAttr::RcvAddAddrs(v) | PmAttr::Subflows(v) => buffer[..4].copy_from_slice(&v.to_ne_bytes()),
        }
    }
}

/// A writing request of the `mptcp_pm` family; the kernel answers with an
/// acknowledgement only.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PmRequest {
    cmd: u8,
    nlas: Vec<PmAttr>,
}

impl GenlFamily for PmRequest {
    fn family_name() -> &'static str {
        "mptcp_pm"
    }
    fn version(&self) -> u8 {
        1
    }
    fn command(&self) -> u8 {
        self.cmd
    }
}

impl Emitable for PmRequest {
    fn buffer_len(&self) -> usize {
        self.nlas.as_slice().buffer_len()
    }
    fn emit(&self, buffer: &mut [u8]) {
        self.nlas.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for PmRequest {
    fn parse_with_param(_buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        Ok(PmRequest { cmd: header.cmd, nlas: vec![] })
    }
}

/// The path manager of the network namespace it was opened in.
pub struct PathManager {
    handle: MptcpPathManagerHandle,
}

impl PathManager {
    /// Open a generic netlink connection (needs a tokio runtime; the
    /// connection task runs on it).
    pub fn open() -> Result<PathManager> {
        let (conn, handle, _) = mptcp_pm::new_connection().context("cannot open a generic netlink socket")?;
        tokio::spawn(conn);
        Ok(PathManager { handle })
    }

    /// Send a writing request and wait for the kernel's acknowledgement.
    async fn write(&mut self, what: &str, req: PmRequest) -> Result<()> {
        let mut msg = NetlinkMessage::from(GenlMessage::from_payload(req));
        msg.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        let mut answers = self
            .handle
            .handle
            .request(msg)
            .await
            .with_context(|| format!("{what}: the kernel has no MPTCP path manager (is MPTCP built in?)"))?;
        while let Some(answer) = answers.next().await {
            if let NetlinkPayload::Error(e) = answer.with_context(|| format!("{what}: unreadable answer"))?.payload {
                if let Some(code) = e.code {
                    bail!("{what}: {}", std::io::Error::from_raw_os_error(-code.get()));
                }
            }
        }
        Ok(())
    }

    /// Add an endpoint (`ip mptcp endpoint add`).
    pub async fn add_endpoint(&mut self, ep: &Endpoint) -> Result<()> {
        let mut addr = vec![AddrAttr::Id(ep.id)];
        match ep.addr {
            IpAddr::V4(a) => addr.extend([AddrAttr::Family(libc::AF_INET as u16), AddrAttr::Addr4(a)]),
            IpAddr::V6(a) => addr.extend([AddrAttr::Family(libc::AF_INET6 as u16), AddrAttr::Addr6(a)]),
        }
        if let Some(i) = ep.ifindex {
            addr.push(AddrAttr::IfIndex(i as i32));
        }
        addr.push(ep.flags.attr());
        let what = format!("cannot add MPTCP endpoint {} ({})", ep.id, ep.addr);
        self.write(&what, PmRequest { cmd: CMD_ADD_ADDR, nlas: vec![PmAttr::Addr(addr)] }).await
    }

    /// Remove the endpoint with this id (`ip mptcp endpoint delete id`).
    pub async fn remove_endpoint(&mut self, id: u8) -> Result<()> {
        let req = PmRequest { cmd: CMD_DEL_ADDR, nlas: vec![PmAttr::Addr(vec![AddrAttr::Id(id)])] };
        self.write(&format!("cannot remove MPTCP endpoint {id}"), req).await
    }

    /// Remove every endpoint (`ip mptcp endpoint flush`).
    pub async fn flush(&mut self) -> Result<()> {
        self.write("cannot flush the MPTCP endpoints", PmRequest { cmd: CMD_FLUSH_ADDRS, nlas: vec![] }).await
    }

    /// Mark an endpoint's subflows backup or not (MP_PRIO to the peer on
    /// live connections).
    pub async fn set_backup(&mut self, id: u8, backup: bool) -> Result<()> {
        let flags = EndpointFlags { backup, ..Default::default() };
        let req = PmRequest { cmd: CMD_SET_FLAGS, nlas: vec![PmAttr::Addr(vec![AddrAttr::Id(id), flags.attr()])] };
        self.write(&format!("cannot set MPTCP endpoint {id}'s backup flag"), req).await
    }

    /// Set the per-connection limits (at most [`MAX_LIMIT`] each).
    pub async fn set_limits(&mut self, l: Limits) -> Result<()> {
        if l.subflows > MAX_LIMIT || l.add_addr_accepted > MAX_LIMIT {
            bail!("MPTCP limits of at most {MAX_LIMIT} subflows and accepted addresses, not {l:?}");
        }
        let nlas = vec![PmAttr::RcvAddAddrs(l.add_addr_accepted), PmAttr::Subflows(l.subflows)];
        self.write("cannot set the MPTCP limits", PmRequest { cmd: CMD_SET_LIMITS, nlas }).await
    }

    /// Every endpoint (`ip mptcp endpoint show`).
    pub async fn endpoints(&mut self) -> Result<Vec<Endpoint>> {
        let msgs: Vec<_> = self.handle.address().get().execute().await.try_collect().await?;
        let mut out = vec![];
        for m in msgs {
            let (mut id, mut addr, mut ifindex, mut flags) = (None, None, None, EndpointFlags::default());
            for nla in &m.payload.nlas {
                match nla {
                    MptcpPathManagerAttr::Address(AddrAttr::Id(i)) => id = Some(*i),
                    MptcpPathManagerAttr::Address(AddrAttr::Addr4(a)) => addr = Some(IpAddr::V4(*a)),
                    MptcpPathManagerAttr::Address(AddrAttr::Addr6(a)) => addr = Some(IpAddr::V6(*a)),
                    MptcpPathManagerAttr::Address(AddrAttr::IfIndex(i)) if *i > 0 => ifindex = Some(*i as u32),
                    MptcpPathManagerAttr::Address(AddrAttr::Flags(f)) => flags = EndpointFlags::from_attr(f),
                    _ => {}
                }
            }
            if let (Some(id), Some(addr)) = (id, addr) {
                out.push(Endpoint { id, addr, ifindex, flags });
            }
        }
        out.sort_by_key(|e| e.id);
        Ok(out)
    }

    /// The per-connection limits.
    pub async fn limits(&mut self) -> Result<Limits> {
        let msgs: Vec<_> = self.handle.limits().get().execute().await.try_collect().await?;
        let mut l = Limits::default();
        for nla in msgs.iter().flat_map(|m| &m.payload.nlas) {
            match nla {
                MptcpPathManagerAttr::Limits(MptcpPathManagerLimitsAttr::Subflows(v)) => l.subflows = *v,
                MptcpPathManagerAttr::Limits(MptcpPathManagerLimitsAttr::RcvAddAddrs(v)) => l.add_addr_accepted = *v,
                _ => {}
            }
        }
        Ok(l)
    }
}
