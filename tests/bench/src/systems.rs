//! Bringing up each compared system on a fresh testbed, and taking it down.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mptcp_testbed::{Netns, Proc, Signal, Testbed};

use crate::scenario::{Scenario, System};

/// A started system; controllers are stopped and their pins removed on Drop.
pub struct Running {
    controller: PathBuf,
    log_dir: PathBuf,
    /// (instance name, its process); the concentrator first.
    instances: Mutex<Vec<(String, Proc)>>,
    /// The concentrator's namespace, for a restart.
    conc_ns: String,
    /// The client controller's (namespace, instance) of a bond system, whose
    /// status the run polls for its paths' rates.
    client: Option<(String, String)>,
}

/// CPU time (clock ticks) and peak resident set (KiB) of one process.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub cpu_ticks: u64,
    pub peak_rss_kib: u64,
}

impl Running {
    /// Usage of every controller process of this system (none for the kernel's).
    pub fn usage(&self) -> Vec<Usage> {
        let instances = self.instances.lock().unwrap();
        instances.iter().map(|(_, p)| usage(p.child.id()).unwrap_or_default()).collect()
    }

    /// Stop the concentrator as a reboot would (Ctrl-C: its data path goes,
    /// nothing of its state is kept), wait `away`, and start it afresh from
    /// the same config (its log goes on in `<name>-restarted.log`). Returns
    /// how long it was gone: until the new one serves.
    pub fn restart_concentrator(&self, away: Duration) -> Result<Duration> {
        let start = Instant::now();
        let mut instances = self.instances.lock().unwrap();
        let (name, p) = instances.first_mut().context("no concentrator to restart")?;
        stop(&self.controller, name, p);
        std::thread::sleep(away);
        // A handle on the testbed's namespace, which the testbed deletes:
        // not dropped here.
        let ns = std::mem::ManuallyDrop::new(Netns { name: self.conc_ns.clone() });
        let cfg = self.log_dir.join(format!("{name}.toml"));
        let log = self.log_dir.join(format!("{name}-restarted.log"));
        *p = spawn(&ns, &self.controller, &cfg, log, "mptcp-user: serving")
            .with_context(|| format!("restarting {name}"))?;
        Ok(start.elapsed())
    }

    /// The client controller's status, `None` for systems without one
    /// (kernel MPTCP, single path) and when the query fails: a caller that
    /// samples it over a run skips the sample rather than fail the run.
    pub fn client_status(&self) -> Option<mptcp_user::status::Status> {
        let (ns, instance) = self.client.as_ref()?;
        // A handle on the testbed's namespace, which the testbed deletes.
        let ns = std::mem::ManuallyDrop::new(Netns { name: ns.clone() });
        let out = ns.command(self.controller.to_str()?).args(["status", "--json", "--instance", instance]).output();
        serde_json::from_slice(&out.ok()?.stdout).ok()
    }
}

/// Stop a controller and remove whatever it left.
fn stop(controller: &Path, name: &str, p: &mut Proc) {
    let _ = p.signal(Signal::SIGINT);
    let _ = p.wait_timeout(Duration::from_secs(5));
    let _ = Command::new(controller).args(["down", "--instance", name]).output();
    let _ = mptcp_user::lifecycle::remove_pins(&mptcp_user::lifecycle::pin_dir(name));
}

impl Drop for Running {
    fn drop(&mut self) {
        for (name, p) in self.instances.get_mut().unwrap().iter_mut() {
            stop(&self.controller, name, p);
        }
    }
}

fn usage(pid: u32) -> Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let cpu_ticks = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let peak_rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(Usage { cpu_ticks, peak_rss_kib })
}

pub fn start(system: System, bed: &Testbed, scn: &Scenario, controller: &Path, log_dir: &Path) -> Result<Running> {
    let mut running = Running {
        controller: controller.to_path_buf(),
        log_dir: log_dir.to_path_buf(),
        instances: Mutex::new(Vec::new()),
        conc_ns: bed.conc.name.clone(),
        client: None,
    };
    let client = &bed.clients[0];
    let best = scn.best_link();
    match system {
        System::SinglePath => {
            route_server_over(bed, best)?;
        }
        System::Native(policy) => {
            // The kernel's MPTCP on both ends, the client's paths managed by
            // the controller, each probing the server (as an MPTCP proxy's
            // address would be); the first subflow takes the best link.
            route_server_over(bed, best)?;
            client.sh("sysctl -qw net.mptcp.enabled=1")?;
            bed.server.sh("sysctl -qw net.mptcp.enabled=1 && ip mptcp limits set subflow 8 add_addr_accepted 8")?;
            let name = format!("{}c0", bed.prefix);
            let mut cl = format!(
                "role = \"client\"\nmode = \"mptcp\"\ninstance = \"{name}\"\npolicy = \"{}\"\n{}targets = [\"{}\"]\n",
                policy.name(),
                probe_section(scn),
                Testbed::SERVER_V4
            );
            for (k, l) in scn.links.iter().enumerate() {
                // Scenario order is preference order (active-backup's primary first).
                cl += &format!(
                    "[[path]]\nname = \"{}\"\ninterface = \"{}\"\ngateway = \"{}\"\npriority = {k}\n",
                    l.name,
                    Testbed::client_dev(k),
                    bed.client_gateway(0, k)
                );
            }
            let p = launch(client, controller, log_dir, &name, &cl, "mptcp-user: native paths up")?;
            running.instances.get_mut().unwrap().push((name, p));
        }
        System::KernelMptcp => {
            // The first subflow takes the best link; the in-kernel path manager
            // opens one more per endpoint. Source routing sends each subflow out
            // of the link its address belongs to.
            route_server_over(bed, best)?;
            client.sh("sysctl -qw net.mptcp.enabled=1 && ip mptcp limits set subflow 8 add_addr_accepted 8")?;
            for k in 0..scn.links.len() {
                let (dev, addr) = (Testbed::client_dev(k), bed.client_addr(0, k));
                client.sh(&format!(
                    "ip rule add from {addr} table {t} && ip route add default via {gw} dev {dev} table {t} && ip mptcp endpoint add {addr} dev {dev} subflow",
                    t = 100 + k,
                    gw = bed.client_gateway(0, k)
                ))?;
            }
            bed.server.sh("sysctl -qw net.mptcp.enabled=1 && ip mptcp limits set subflow 8 add_addr_accepted 8")?;
        }
        System::Bond(policy) => {
            let probe = probe_section(scn);
            let conc_name = format!("{}co", bed.prefix);
            // A fresh key per run, as `mptcp-user genkey` makes one.
            let key_file = log_dir.join(format!("{}.key", bed.prefix));
            let _ = std::fs::remove_file(&key_file);
            mptcp_user::key::Key::generate().write_new_file(&key_file)?;
            let key_file = key_file.display();
            let mut conc = format!(
                "role = \"concentrator\"\ninstance = \"{conc_name}\"\nkey_file = \"{key_file}\"\npolicy = \"{}\"\n[bond]\nname = \"mpb\"\naddresses = [\"{}\", \"{}\"]\n{probe}",
                policy.name(),
                Testbed::CONC_BOND_ADDRS[0],
                Testbed::CONC_BOND_ADDRS[1]
            );
            for (k, l) in scn.links.iter().enumerate() {
                conc += &format!(
                    "[[path]]\nname = \"{}\"\ninterface = \"{}\"\n{}",
                    l.name,
                    Testbed::conc_dev(0, k),
                    hint(scn, l.downlink().rate_mbit)
                );
            }
            let client_name = format!("{}c0", bed.prefix);
            let [a4, a6] = Testbed::client_bond_addrs(0);
            let mut cl = format!(
                "role = \"client\"\ninstance = \"{client_name}\"\nkey_file = \"{key_file}\"\npolicy = \"{}\"\n[bond]\nname = \"mpb\"\naddresses = [\"{a4}\", \"{a6}\"]\nroutes = [\"{}\", \"{}\"]\n{probe}",
                policy.name(),
                Testbed::SERVER_ROUTES[0],
                Testbed::SERVER_ROUTES[1]
            );
            for (k, l) in scn.links.iter().enumerate() {
                // Scenario order is preference order (active-backup's primary first).
                cl += &format!(
                    "[[path]]\nname = \"{}\"\ninterface = \"{}\"\nremote = \"{}\"\npriority = {k}\n{}",
                    l.name,
                    Testbed::client_dev(k),
                    Testbed::conc_addr(0, k),
                    hint(scn, l.rate_mbit)
                );
            }
            let p = launch(&bed.conc, controller, log_dir, &conc_name, &conc, "mptcp-user: serving")?;
            running.instances.get_mut().unwrap().push((conc_name, p));
            let p = launch(client, controller, log_dir, &client_name, &cl, "mptcp-user: connected")?;
            running.instances.get_mut().unwrap().push((client_name.clone(), p));
            wait_subflows(client, controller, &client_name, scn.links.len())?;
            running.client = Some((client.name.clone(), client_name));
        }
    }
    Ok(running)
}

/// The client reaches the server's network over link `link` (its main
/// table): the single path, and the first subflow of kernel MPTCP.
fn route_server_over(bed: &Testbed, link: usize) -> Result<()> {
    bed.clients[0].sh(&format!(
        "ip route add 10.200.0.0/24 via {} dev {}",
        bed.client_gateway(0, link),
        Testbed::client_dev(link)
    ))?;
    Ok(())
}

fn probe_section(scn: &Scenario) -> String {
    let mut s = String::from("[probe]\n");
    if let Some(i) = scn.bond.probe_interval_ms {
        s += &format!("interval_ms = {i}\n");
    }
    if let Some(d) = scn.bond.down_after {
        s += &format!("down_after = {d}\n");
    }
    s
}

fn hint(scn: &Scenario, rate_mbit: f64) -> String {
    scn.bond.hint_mbit(rate_mbit).map_or_else(String::new, |r| format!("rate_mbit = {r:.3}\n"))
}

fn launch(ns: &Netns, controller: &Path, log_dir: &Path, name: &str, config: &str, ready: &str) -> Result<Proc> {
    let cfg = log_dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, config)?;
    spawn(ns, controller, &cfg, log_dir.join(format!("{name}.log")), ready)
        .with_context(|| format!("controller {name} did not start"))
}

/// Start a controller from `cfg` in `ns` and wait until it says `ready`.
fn spawn(ns: &Netns, controller: &Path, cfg: &Path, log: PathBuf, ready: &str) -> Result<Proc> {
    let mut cmd = ns.command(controller.to_str().context("controller path is not UTF-8")?);
    // The controllers' logs land in the report's logs/; they read MPTCP_LOG
    // (e.g. `info,mptcp_user=debug`) from the environment they inherit.
    cmd.args(["up", "--config"]).arg(cfg);
    let mut p = Proc::spawn(cmd, log)?;
    p.wait_for(ready, Duration::from_secs(20))?;
    Ok(p)
}

fn wait_subflows(ns: &Netns, controller: &Path, instance: &str, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out =
            ns.command(controller.to_str().unwrap()).args(["status", "--json", "--instance", instance]).output()?;
        let up = serde_json::from_slice::<mptcp_user::status::Status>(&out.stdout).map_or(0, |s| s.subflows_up());
        if up >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {up} of {n} subflows came up: {}", String::from_utf8_lossy(&out.stdout));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
