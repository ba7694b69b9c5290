//! mptcpify (`mptcp_common::mptcpify` decides): attach the program, list and
//! unlist cgroups, detach. The state is two pins under
//! `/sys/fs/bpf/mptcpify/<instance>/`: `link` keeps the program attached
//! with no process running, `cgroups` is the map of listed cgroup ids.
//! Switching is one map write, seen by the next socket(2); sockets already
//! open keep their protocol.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use aya::maps::{HashMap, Map, MapData};
use aya_obj::btf::BtfKind;
use mptcp_common::mptcpify::MAX_CGROUPS;

use super::fmod_ret;
use crate::object::MPTCPIFY_OBJECT;

/// Where each instance's pins live.
pub const PIN_ROOT: &str = "/sys/fs/bpf/mptcpify";
const LINK_PIN: &str = "link";
const MAP_PIN: &str = "cgroups";
const PROGRAM: &str = "mptcpify";
const MAP: &str = "MPTCPIFY_CGROUPS";
/// The kernel function the program modifies the return of (Linux 6.6+).
const TARGET: &str = "update_socket_protocol";
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// The root of the cgroup v2 hierarchy: every task is below it, so listing
/// it covers the whole host.
pub const ROOT_CGROUP_ID: u64 = 1;

pub fn pin_dir(instance: &str) -> PathBuf {
    Path::new(PIN_ROOT).join(instance)
}

/// A cgroup v2 directory and its id (its inode number on cgroupfs, which
/// `bpf_get_current_ancestor_cgroup_id` returns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    pub id: u64,
    pub path: PathBuf,
}

impl Cgroup {
    /// The cgroup at `path`, which must be a directory on a cgroup v2
    /// filesystem.
    pub fn at(path: &Path) -> Result<Self> {
        let fs = nix::sys::statfs::statfs(path).with_context(|| format!("no cgroup at {}", path.display()))?;
        if fs.filesystem_type().0 as i64 != CGROUP2_SUPER_MAGIC {
            bail!(
                "{} is not a cgroup v2 directory (mptcpify lists cgroups of the unified hierarchy: a directory under the cgroup2 mount, {})",
                path.display(),
                cgroup2_mount().map_or("which this host has not mounted".into(), |m| m.display().to_string())
            );
        }
        let meta = std::fs::metadata(path).with_context(|| format!("no cgroup at {}", path.display()))?;
        if !meta.is_dir() {
            bail!("{} is a file in a cgroup, not a cgroup", path.display());
        }
        Ok(Self { id: meta.ino(), path: path.canonicalize()? })
    }
}

/// Where the cgroup v2 hierarchy is mounted, if it is.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, dir, fstype) = (f.next()?, f.next()?, f.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(dir))
    })
}

/// The directory of cgroup `id` under the cgroup2 mount, if it still exists.
pub fn cgroup_path(id: u64) -> Option<PathBuf> {
    fn walk(dir: &Path, id: u64, depth: usize) -> Option<PathBuf> {
        if std::fs::metadata(dir).ok()?.ino() == id {
            return Some(dir.to_path_buf());
        }
        if depth == 0 {
            return None;
        }
        std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .find_map(|e| walk(&e.path(), id, depth - 1))
    }
    walk(&cgroup2_mount()?, id, mptcp_common::mptcpify::MAX_CGROUP_DEPTH as usize)
}

/// An instance's attached program and its cgroup map.
pub struct Mptcpify {
    cgroups: HashMap<MapData, u64, u8>,
}

impl Mptcpify {
    /// The instance's attached mptcpify, if there is one.
    pub fn open(instance: &str) -> Result<Option<Self>> {
        let dir = pin_dir(instance);
        if !dir.exists() {
            return Ok(None);
        }
        if !dir.join(LINK_PIN).exists() {
            bail!("{} holds no link: left by a failed start; `mptcp-user mptcpify off` removes it", dir.display());
        }
        let map = MapData::from_pin(dir.join(MAP_PIN))
            .with_context(|| format!("cannot open the cgroup map pinned in {}", dir.display()))?;
        Ok(Some(Self { cgroups: HashMap::try_from(Map::HashMap(map))? }))
    }

    /// The instance's attached mptcpify, attached now if there is none:
    /// loaded, attached and pinned, or (on any error) nothing left behind.
    pub fn open_or_attach(instance: &str) -> Result<Self> {
        if let Some(m) = Self::open(instance)? {
            return Ok(m);
        }
        let dir = pin_dir(instance);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        attach(&dir)
            .inspect_err(|_| {
                std::fs::remove_dir_all(&dir).ok();
                // The root too, if no other instance's pins are in it.
                std::fs::remove_dir(PIN_ROOT).ok();
            })
            .map_err(|e| match e.downcast_ref::<fmod_ret::TracingRefused>() {
                Some(_) => e.context(
                    "mptcpify cannot run on this kernel; `mptcpize run APP` (mptcpd) makes one application MPTCP without BPF",
                ),
                None => e,
            })
    }

    /// List a cgroup: its processes' and its descendants' TCP sockets are
    /// MPTCP from their next socket(2).
    pub fn add(&mut self, cgroup: &Cgroup) -> Result<()> {
        self.cgroups
            .insert(cgroup.id, 1, 0)
            .with_context(|| format!("cannot list {} (at most {MAX_CGROUPS} cgroups)", cgroup.path.display()))?;
        Ok(())
    }

    /// Unlist a cgroup id; false if it was not listed.
    pub fn remove(&mut self, id: u64) -> Result<bool> {
        match self.cgroups.remove(&id) {
            Ok(()) => Ok(true),
            Err(aya::maps::MapError::KeyNotFound) => Ok(false),
            Err(e) => Err(e).context("cannot unlist the cgroup"),
        }
    }

    /// The listed cgroup ids, in order.
    pub fn listed(&self) -> Result<Vec<u64>> {
        let mut ids = self.cgroups.keys().collect::<Result<Vec<_>, _>>()?;
        ids.sort_unstable();
        Ok(ids)
    }

    /// Detach the instance's program (its pins go, and with the last the
    /// link); false if none was attached.
    pub fn detach(instance: &str) -> Result<bool> {
        let dir = pin_dir(instance);
        if !dir.exists() {
            return Ok(false);
        }
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        std::fs::remove_dir(PIN_ROOT).ok();
        Ok(true)
    }
}

/// Load the program with its map, attach it and pin both in `dir`.
fn attach(dir: &Path) -> Result<Mptcpify> {
    let btf = aya::Btf::from_sys_fs().context("mptcpify needs the kernel's BTF (/sys/kernel/btf/vmlinux)")?;
    let target = btf.id_by_type_name_kind(TARGET, BtfKind::Func).with_context(|| {
        format!("this kernel has no {TARGET}(): mptcpify needs Linux 6.6 or later built with MPTCP")
    })?;
    let mut obj = aya_obj::Object::parse(MPTCPIFY_OBJECT).context("cannot parse the mptcpify object")?;
    let map_obj = obj.maps.remove(MAP).context("the mptcpify object lacks its cgroup map")?;
    if let Some(other) = obj.maps.keys().next() {
        // Global data would need aya's loader to fill it; the program has none.
        bail!("the mptcpify object has a map this loader does not create: {other}");
    }
    let map = MapData::create(map_obj.clone(), MAP, None).context("cannot create the mptcpify cgroup map")?;
    let text_sections = obj.functions.keys().map(|(section, _)| *section).collect();
    obj.relocate_maps(std::iter::once((MAP, map.fd().as_fd().as_raw_fd(), &map_obj)), &text_sections)
        .context("cannot relocate the mptcpify object's map")?;
    obj.relocate_calls(&text_sections).context("cannot relocate the mptcpify object's calls")?;
    let program = obj.programs.get(PROGRAM).context("the mptcpify object lacks its program")?;
    let function = &obj.functions[&program.function_key()];
    let prog = fmod_ret::load(PROGRAM, &function.instructions, &obj.license, target)?;
    let link = fmod_ret::attach(prog.as_fd())?;
    map.pin(dir.join(MAP_PIN)).context("cannot pin the mptcpify cgroup map")?;
    fmod_ret::pin(link.as_fd(), &dir.join(LINK_PIN))?;
    Ok(Mptcpify { cgroups: HashMap::try_from(Map::HashMap(map))? })
}
