//! Subflow pacing caps (native mode's weighted): the `subflow_pacing`
//! sockops program on the root cgroup, and the caps it applies. Attached
//! when the controller starts (it sees subflows established from then on)
//! and for as long as it runs (its maps go with it);
//! caps a switch away from weighted lifts are lifted on live subflows too
//! ([`NO_CAP`]), and a subflow keeps the cap it has when the controller
//! stops.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{Context, Result};
use aya::maps::{Array, HashMap, MapData};
use aya::programs::{links::CgroupAttachMode, SockOps};
use mptcp_common::maps::PacingKey;
pub use mptcp_common::policy::native::NO_CAP;

use super::mptcpify::cgroup2_mount;
use crate::object::SUBFLOW_PACING_OBJECT;

pub struct Pacing {
    /// Holds the program and its cgroup link (dropped: detached).
    _ebpf: aya::Ebpf,
    caps: HashMap<MapData, PacingKey, u64>,
    generation: Array<MapData, u32>,
    /// This controller's network namespace.
    netns: u64,
    /// What `caps` holds of ours.
    written: BTreeMap<IpAddr, u64>,
    next_generation: u32,
}

impl Pacing {
    /// Load the program and attach it to the root of the cgroup v2
    /// hierarchy, where it sees every MPTCP subflow of every process.
    pub fn attach() -> Result<Self> {
        let root = cgroup2_mount().context(
            "pacing caps need the cgroup v2 hierarchy mounted: their sockops program sees the subflows through its root",
        )?;
        let mut ebpf = aya::Ebpf::load(SUBFLOW_PACING_OBJECT).context("cannot load the subflow pacing object")?;
        let prog: &mut SockOps =
            ebpf.program_mut("subflow_pacing").context("the subflow pacing object lacks its program")?.try_into()?;
        prog.load().context("the kernel refused the subflow pacing program")?;
        let dir = std::fs::File::open(&root).with_context(|| format!("cannot open {}", root.display()))?;
        // A cgroup link (aya makes one on this kernel) always runs beside the
        // root's other programs; the kernel takes no mode flag with it.
        prog.attach(dir, CgroupAttachMode::Single)
            .with_context(|| format!("cannot attach the subflow pacing program to {}", root.display()))?;
        let caps = HashMap::try_from(ebpf.take_map("PACING_CAPS").context("no PACING_CAPS map")?)?;
        let generation = Array::try_from(ebpf.take_map("PACING_GENERATION").context("no PACING_GENERATION map")?)?;
        Ok(Self { _ebpf: ebpf, caps, generation, netns: netns_cookie()?, written: BTreeMap::new(), next_generation: 1 })
    }

    fn key(&self, addr: IpAddr) -> PacingKey {
        match addr {
            IpAddr::V4(a) => PacingKey::v4(self.netns, a.octets()),
            IpAddr::V6(a) => PacingKey::v6(self.netns, a.octets()),
        }
    }

    /// The cap on the subflows from `addr` (bytes/s), if any.
    pub fn cap(&self, addr: IpAddr) -> Option<u64> {
        self.written.get(&addr).copied().filter(|&c| c != NO_CAP)
    }

    /// Cap the subflows from each address at its cap (bytes/s; [`NO_CAP`]:
    /// none); addresses not given any more are uncapped. Live subflows
    /// follow at their next RTT sample. Nothing is written if nothing
    /// changed.
    pub fn set(&mut self, caps: &[(IpAddr, u64)]) -> Result<()> {
        let mut want: BTreeMap<IpAddr, u64> = caps.iter().copied().collect();
        // Addresses that had a cap and no longer do: lifted, then forgotten.
        for (addr, cap) in &self.written {
            if *cap != NO_CAP && !want.contains_key(addr) {
                want.insert(*addr, NO_CAP);
            }
        }
        if want == self.written {
            return Ok(());
        }
        for (addr, cap) in &want {
            self.caps.insert(self.key(*addr), cap, 0).with_context(|| format!("cannot write the cap of {addr}"))?;
        }
        self.generation.set(0, self.next_generation, 0).context("cannot bump the pacing generation")?;
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        tracing::info!(caps = ?want, "subflow pacing caps (bytes/s)");
        self.written = want;
        Ok(())
    }
}

/// This network namespace's cookie, as `bpf_get_netns_cookie` gives it.
fn netns_cookie() -> Result<u64> {
    let s = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::DGRAM, None)?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` (8) bytes into `cookie`, a
    // live local, on a socket this function owns.
    let r = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&s),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            &mut cookie as *mut u64 as *mut libc::c_void,
            &mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error())
            .context("cannot read the network namespace's cookie (Linux 5.14+)");
    }
    Ok(cookie)
}
