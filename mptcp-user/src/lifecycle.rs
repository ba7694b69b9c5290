//! Loading, attaching and pinning the data path, adopting it after a restart,
//! and removing every trace of it.
//!
//! Pins: `/sys/fs/bpf/mptcp-ebpf/<instance>/` holds every map (by name) and
//! one link per attachment (`link-egress`, `link-xdp-<uplink>`). bpffs holds
//! only BPF objects, so the instance's description (role, bond device,
//! uplinks, controller pid) lives in `/run/mptcp-ebpf/<instance>.json`.
//! Unpinning a link whose fd nobody holds detaches its program, so removing
//! the pin directory is what tears the data path down.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use aya::maps::ProgramArray;
use aya::programs::{links::FdLink, tc::TcAttachOptions, LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use mptcp_common::maps::{names, programs};
use serde::{Deserialize, Serialize};

use crate::config::Role;
use crate::object::EBPF_OBJECT;

pub const PIN_ROOT: &str = "/sys/fs/bpf/mptcp-ebpf";
pub const RUN_ROOT: &str = "/run/mptcp-ebpf";
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

pub fn pin_dir(instance: &str) -> PathBuf {
    Path::new(PIN_ROOT).join(instance)
}

pub fn state_file(instance: &str) -> PathBuf {
    Path::new(RUN_ROOT).join(format!("{instance}.json"))
}

/// What `down` and `status` need to know about a running instance.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InstanceState {
    pub role: Role,
    #[serde(default)]
    pub mode: crate::config::Mode,
    /// The bond device (empty in native mode).
    pub bond: String,
    pub uplinks: Vec<String>,
    /// Interface index of each uplink (names resolve only in the controller's netns).
    #[serde(default)]
    pub uplink_indexes: Vec<u32>,
    /// Path names, in subflow-id order (client) or listen order (concentrator).
    pub path_names: Vec<String>,
    /// Class names by class id (0 = default).
    #[serde(default)]
    pub classes: Vec<String>,
    pub pid: u32,
    /// Named network namespace the controller entered (`--netns`), if any.
    #[serde(default)]
    pub netns: Option<String>,
    /// What was changed at runtime, for a controller that adopts the data path.
    #[serde(default)]
    pub runtime: crate::runtime::RuntimeChanges,
    /// Native mode: the paths in place in the kernel, for the controller
    /// that adopts them or for `down` after a controller that died.
    #[serde(default)]
    pub native: Option<crate::native::paths::Applied>,
}

impl InstanceState {
    pub fn load(instance: &str) -> Result<Option<InstanceState>> {
        let f = state_file(instance);
        match std::fs::read_to_string(&f) {
            Ok(s) => Ok(Some(serde_json::from_str(&s).with_context(|| format!("corrupt state file {}", f.display()))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", f.display())),
        }
    }

    pub fn store(&self, instance: &str) -> Result<()> {
        std::fs::create_dir_all(RUN_ROOT).with_context(|| format!("cannot create {RUN_ROOT}"))?;
        let f = state_file(instance);
        let tmp = f.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &f).with_context(|| format!("cannot write {}", f.display()))?;
        Ok(())
    }

    /// The controller process that owns the instance, if it still runs.
    pub fn live_pid(&self) -> Option<u32> {
        (pid_alive(self.pid) && self.pid != std::process::id()).then_some(self.pid)
    }
}

/// Whether `pid` runs (an exited process its parent has not reaped yet — a
/// zombie — does not).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')).unwrap_or(false),
        Err(_) => false,
    }
}

/// The capabilities the controller needs, and why: it creates maps and
/// loads programs (CAP_BPF); the verifier accepts its packet-pointer
/// arithmetic only from a holder of CAP_PERFMON; it attaches to devices,
/// creates the bond and routes (CAP_NET_ADMIN). (`--netns` needs
/// CAP_SYS_ADMIN besides, to enter the namespace.)
pub const CAPABILITIES: [(u32, &str); 3] = [(39, "CAP_BPF"), (12, "CAP_NET_ADMIN"), (38, "CAP_PERFMON")];

/// Of [`CAPABILITIES`], those missing from an effective set (`CapEff` of
/// /proc/PID/status, hex).
pub fn missing_capabilities(cap_eff_hex: &str) -> Vec<&'static str> {
    let eff = u64::from_str_radix(cap_eff_hex.trim(), 16).unwrap_or(0);
    CAPABILITIES.iter().filter(|(bit, _)| eff & (1 << bit) == 0).map(|(_, name)| *name).collect()
}

/// Root, the capabilities it needs, BTF and a bpffs at /sys/fs/bpf, each
/// with an error that says what to do.
pub fn preflight() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("mptcp-user must run as root: it loads eBPF programs, creates the bond device and pins state under {PIN_ROOT} (root-owned); CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON are all the capabilities it needs");
    }
    let status = std::fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).context("/proc/self/status has no CapEff")?;
    let missing = missing_capabilities(eff);
    if !missing.is_empty() {
        bail!(
            "mptcp-user lacks {}: it needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (and no other)",
            missing.join(" and ")
        );
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!("this kernel exposes no BTF (/sys/kernel/btf/vmlinux is missing); mptcp-ebpf needs a kernel built with CONFIG_DEBUG_INFO_BTF=y");
    }
    let fs = nix::sys::statfs::statfs("/sys/fs/bpf").context("/sys/fs/bpf does not exist: is sysfs mounted?")?;
    if fs.filesystem_type().0 as i64 != BPF_FS_MAGIC {
        nix::mount::mount(Some("bpf"), "/sys/fs/bpf", Some("bpf"), nix::mount::MsFlags::empty(), None::<&str>)
            .context("/sys/fs/bpf is not a bpf filesystem and mounting one there failed")?;
    }
    Ok(())
}

/// An uplink, and how its frames look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uplink {
    pub name: String,
    /// No Ethernet header (raw-IP, PPP, TUN): tc ingress instead of XDP.
    pub raw_ip: bool,
}

impl Uplink {
    /// The pin of its ingress program's link.
    fn pin_name(&self) -> String {
        if self.raw_ip {
            format!("link-tc-{}", self.name)
        } else {
            format!("link-xdp-{}", self.name)
        }
    }
}

/// Load the programs with their maps pinned under `dir`, attach tc egress to
/// the bond and the ingress program that fits to every uplink (XDP on
/// Ethernet, tc on raw IP), and pin each link. On error the caller runs
/// [`remove_pins`]; links created before the error are pinned already or
/// dropped (and so detached) here.
pub fn install(dir: &Path, bond: &str, uplinks: &[Uplink]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create pin directory {}", dir.display()))?;
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(dir)
        .load(EBPF_OBJECT)
        .context("cannot load the eBPF object (see the verifier log above, if any)")?;

    set_encap(&mut ebpf)?;
    let egress: &mut SchedClassifier =
        ebpf.program_mut(programs::BOND_EGRESS).context("the eBPF object lacks the bond egress program")?.try_into()?;
    egress.load().context("the kernel refused the bond egress program")?;
    let id = egress
        .attach_with_options(bond, TcAttachType::Egress, TcAttachOptions::TcxOrder(LinkOrder::default()))
        .with_context(|| format!("cannot attach the egress program to {bond} (tcx)"))?;
    let link: FdLink = egress.take_link(id)?.try_into().context("the egress attachment is not a bpf_link")?;
    link.pin(dir.join("link-egress")).context("cannot pin the egress link")?;

    let xdp: &mut Xdp = ebpf
        .program_mut(programs::UPLINK_INGRESS)
        .context("the eBPF object lacks the uplink ingress program")?
        .try_into()?;
    xdp.load().context("the kernel refused the uplink ingress program")?;
    for up in uplinks.iter().filter(|u| !u.raw_ip) {
        let name = &up.name;
        let id = match xdp.attach(name, XdpMode::Driver) {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(uplink = %name, error = %e, "native XDP unavailable, using generic (skb) mode");
                xdp.attach(name, XdpMode::Skb)
                    .with_context(|| format!("cannot attach XDP to uplink {name} (is another XDP program attached?)"))?
            }
        };
        let link: FdLink = xdp.take_link(id)?.try_into().context("the XDP attachment is not a bpf_link")?;
        link.pin(dir.join(up.pin_name())).with_context(|| format!("cannot pin the XDP link of {name}"))?;
    }

    let raw: Vec<&Uplink> = uplinks.iter().filter(|u| u.raw_ip).collect();
    if !raw.is_empty() {
        let tc: &mut SchedClassifier = ebpf
            .program_mut(programs::UPLINK_INGRESS_L3)
            .context("the eBPF object lacks the raw-IP uplink ingress program")?
            .try_into()?;
        tc.load().context("the kernel refused the raw-IP uplink ingress program")?;
        for up in raw {
            let name = &up.name;
            let id = tc
                .attach_with_options(name, TcAttachType::Ingress, TcAttachOptions::TcxOrder(LinkOrder::default()))
                .with_context(|| format!("cannot attach the raw-IP ingress program to uplink {name} (tcx)"))?;
            let link: FdLink = tc.take_link(id)?.try_into().context("the tc attachment is not a bpf_link")?;
            link.pin(dir.join(up.pin_name())).with_context(|| format!("cannot pin the tc link of {name}"))?;
            tracing::info!(uplink = %name, "uplink has no Ethernet header (raw IP): tc ingress instead of XDP");
        }
    }
    Ok(())
}

/// Load the encapsulation program and put it where the egress program's
/// tail call finds it (`ENCAP_PROGS[0]`, a pinned map: it keeps the program
/// while no controller runs).
pub fn set_encap(ebpf: &mut Ebpf) -> Result<()> {
    let encap: &mut SchedClassifier = ebpf
        .program_mut(programs::BOND_ENCAP)
        .context("the eBPF object lacks the encapsulation program")?
        .try_into()?;
    encap.load().context("the kernel refused the encapsulation program")?;
    let fd = encap.fd()?.try_clone()?;
    let mut progs: ProgramArray<_> =
        ebpf.map_mut(names::ENCAP_PROGS).context("the eBPF object lacks the ENCAP_PROGS map")?.try_into()?;
    progs.set(0, &fd, 0).context("cannot put the encapsulation program in ENCAP_PROGS")?;
    Ok(())
}

/// Whether `dir` holds a complete data path for this bond and these uplinks.
pub fn adoptable(dir: &Path, uplinks: &[Uplink]) -> Result<()> {
    let mut missing = Vec::new();
    if !dir.join("link-egress").exists() {
        missing.push("link-egress".to_string());
    }
    for up in uplinks {
        let n = up.pin_name();
        if !dir.join(&n).exists() {
            missing.push(n);
        }
    }
    for m in mptcp_common::maps::names::ALL {
        if !dir.join(m).exists() {
            missing.push(m.to_string());
        }
    }
    if !missing.is_empty() {
        bail!(
            "the pinned state in {} is incomplete (missing {}); run `mptcp-user down --instance <name>` first",
            dir.display(),
            missing.join(", ")
        );
    }
    Ok(())
}

/// Remove every pin of the instance (detaching its programs) and the
/// directory. Missing pins are not an error.
pub fn remove_pins(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    for e in entries {
        let p = e?.path();
        std::fs::remove_file(&p).with_context(|| format!("cannot unpin {}", p.display()))?;
    }
    std::fs::remove_dir(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    // Leave the shared root in place only while other instances use it.
    let _ = std::fs::remove_dir(PIN_ROOT);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_missing_capabilities_are_named() {
        assert!(missing_capabilities("000001ffffffffff").is_empty(), "all of them");
        let only_three = (1u64 << 39) | (1 << 38) | (1 << 12);
        assert!(missing_capabilities(&format!("{only_three:016x}")).is_empty(), "just these three");
        assert_eq!(missing_capabilities(&format!("{:016x}", only_three & !(1 << 38))), ["CAP_PERFMON"]);
        assert_eq!(missing_capabilities("0000000000000000"), ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"]);
    }
}
