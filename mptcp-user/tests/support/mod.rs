//! What the end-to-end tests share: controller instances that clean up
//! after themselves, their arguments, and waiting on their status.
// Each test crate uses a different part of this.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use mptcp_testbed::{Netns, Proc, Testbed};
use mptcp_user::classes::ClassConfig;
use mptcp_user::config::{Config, PathConfig, Role};
use mptcp_user::status::{Status, SubflowStatus};
use nix::sys::signal::Signal;

pub const BIN: &str = env!("CARGO_BIN_EXE_mptcp-user");
/// The key every test's controllers share (hex, as a key file holds it).
pub const KEY: &str = "6d707463702d656270662074657374206b6579202d2074657374206b65792121";

/// [`KEY`]'s bytes, to key the control messages a test writes itself.
pub fn key() -> Vec<u8> {
    mptcp_user::key::Key::from_hex(KEY).unwrap().bytes().to_vec()
}

/// A file holding [`KEY`], readable by its owner only (made once per test
/// process, removed by the OS's temporary-file cleanup as every test's logs).
pub fn key_file() -> String {
    static MADE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    MADE.get_or_init(|| key_file_holding(KEY, "shared")).clone()
}

/// A new key file holding `hex`, named by `what` (per test process).
pub fn key_file_holding(hex: &str, what: &str) -> String {
    let p = std::env::temp_dir().join(format!("mptcp-test-{}-{what}.key", std::process::id()));
    let _ = std::fs::remove_file(&p);
    mptcp_user::key::Key::from_hex(hex).unwrap().write_new_file(&p).unwrap();
    p.to_string_lossy().into_owned()
}

/// A controller instance; on Drop its pins are removed even if the test failed.
pub struct Instance {
    pub name: String,
    pub proc: Option<Proc>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(p) = &mut self.proc {
            let _ = p.signal(Signal::SIGINT);
            let _ = p.wait_timeout(Duration::from_secs(5));
        }
        self.proc = None;
        let _ = Command::new(BIN).args(["down", "--instance", &self.name]).output();
        let _ = mptcp_user::lifecycle::remove_pins(&mptcp_user::lifecycle::pin_dir(&self.name));
    }
}

pub fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{name}.log"))
}

impl Instance {
    pub fn proc(&mut self) -> &mut Proc {
        self.proc.as_mut().expect("running")
    }

    /// `status --json`, read into the controller's own status type: a field
    /// that is not there is an error, not a 0.
    pub fn status(&self, ns: &Netns) -> Result<Status> {
        let out = ns.command(BIN).args(["status", "--json", "--instance", &self.name]).output()?;
        if !out.status.success() {
            bail!("status failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    pub fn output(&self) -> String {
        self.proc.as_ref().map(|p| p.output()).unwrap_or_default()
    }

    /// Stop the controller with `signal`; it must exit, and cleanly.
    pub fn stop(&mut self, signal: Signal) -> Result<()> {
        self.proc().signal(signal)?;
        let st = self.proc().wait_timeout(Duration::from_secs(5))?.context("controller did not exit")?;
        ensure!(st.success(), "controller failed: {}", self.output());
        Ok(())
    }

    /// Start the instance's controller again in `ns` (`up --instance NAME
    /// args`, logged to `<name>-<tag>.log`) and wait for `ready`.
    pub fn respawn(&mut self, ns: &Netns, args: &[String], tag: &str, ready: &str) -> Result<()> {
        let level = std::env::var("MPTCP_TEST_LOG").unwrap_or_else(|_| "info".into());
        let mut cmd = ns.command(BIN);
        cmd.args(["--log", &level, "up", "--instance", &self.name]).args(args);
        self.proc = Some(Proc::spawn(cmd, log_path(&format!("{}-{tag}", self.name)))?);
        self.proc().wait_for(ready, Duration::from_secs(20))
    }
}

pub fn start(ns: &Netns, name: &str, args: &[String], ready: &str) -> Result<Instance> {
    start_with_capabilities(ns, name, args, ready, None)
}

/// [`start`], with only the capabilities `bounding` leaves (`setpriv
/// --bounding-set` syntax, e.g. `-all,+bpf`), if given.
pub fn start_with_capabilities(
    ns: &Netns,
    name: &str,
    args: &[String],
    ready: &str,
    bounding: Option<&str>,
) -> Result<Instance> {
    let mut cmd = match bounding {
        Some(set) => {
            let mut c = ns.command("setpriv");
            c.arg(format!("--bounding-set={set}")).arg(BIN);
            c
        }
        None => ns.command(BIN),
    };
    // MPTCP_TEST_LOG=debug (or another level) for a closer look at a failure.
    let level = std::env::var("MPTCP_TEST_LOG").unwrap_or_else(|_| "info".into());
    cmd.args(["--log", &level, "up", "--instance", name]).args(args);
    let proc = Proc::spawn(cmd, log_path(name))?;
    let mut inst = Instance { name: name.to_string(), proc: Some(proc) };
    inst.proc().wait_for(ready, Duration::from_secs(20))?;
    Ok(inst)
}

pub fn conc_args(bed: &Testbed, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> =
        ["--role", "concentrator", "--key-file", &key_file(), "--bond-name", "mpb", "--probe-interval-ms", "100"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    for s in Testbed::CONC_BOND_ADDRS {
        a.extend(["--bond-address".into(), s.into()]);
    }
    for c in 0..bed.clients.len() {
        for k in 0..bed.uplinks {
            a.extend(["--path".into(), Testbed::conc_dev(c, k)]);
        }
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

pub fn start_conc(bed: &Testbed, extra: &[&str]) -> Result<Instance> {
    start(&bed.conc, &format!("{}co", bed.prefix), &conc_args(bed, extra), "mptcp-user: serving")
}

/// Client `c` by flags, one path per uplink.
/// `key_file`: the file holding the key ([`key_file`] unless a test wants another).
pub fn client_args(bed: &Testbed, c: usize, key_file: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "--role",
        "client",
        "--key-file",
        key_file,
        "--bond-name",
        "mpb",
        "--probe-interval-ms",
        "100",
        "--connect-timeout",
        "5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for s in Testbed::client_bond_addrs(c) {
        a.extend(["--bond-address".into(), s]);
    }
    for r in Testbed::SERVER_ROUTES {
        a.extend(["--route".into(), r.into()]);
    }
    for k in 0..bed.uplinks {
        a.extend(["--path".into(), format!("{}={}", Testbed::client_dev(k), Testbed::conc_addr(c, k))]);
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

pub fn start_client(bed: &Testbed, c: usize, extra: &[&str]) -> Result<Instance> {
    let inst = start(
        &bed.clients[c],
        &format!("{}c{c}", bed.prefix),
        &client_args(bed, c, &key_file(), extra),
        "mptcp-user: connected",
    )?;
    wait_subflows(&inst, &bed.clients[c], bed.uplinks)?;
    Ok(inst)
}

/// Client by config file (for per-path options), written from the config types.
pub fn start_client_config(bed: &Testbed, c: usize, config: &mptcp_user::config::Config) -> Result<Instance> {
    let name = format!("{}c{c}", bed.prefix);
    let f = std::env::temp_dir().join(format!("{name}.toml"));
    std::fs::write(&f, toml::to_string(config)?)?;
    let inst = start(&bed.clients[c], &name, &["--config".into(), f.display().to_string()], "mptcp-user: connected")?;
    wait_subflows(&inst, &bed.clients[c], bed.uplinks)?;
    Ok(inst)
}

/// Poll the instance's status until `ok` holds (10 s), else fail with `what`.
pub fn wait_status(inst: &Instance, ns: &Netns, what: &str, ok: impl Fn(&Status) -> bool) -> Result<()> {
    wait_status_within(inst, ns, Duration::from_secs(10), what, ok)
}

/// [`wait_status`] for up to `within`.
pub fn wait_status_within(
    inst: &Instance,
    ns: &Netns,
    within: Duration,
    what: &str,
    ok: impl Fn(&Status) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let s = inst.status(ns)?;
        if ok(&s) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: {s}\n{}", inst.output());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn wait_subflows(inst: &Instance, ns: &Netns, n: usize) -> Result<()> {
    wait_status(inst, ns, &format!("{n} subflows up"), |s| s.subflows_up() >= n)
}

/// Subflow `id` of the first connection; a test that needs it fails without it.
pub fn sub(status: &Status, id: u32) -> &SubflowStatus {
    status.subflow(id).unwrap_or_else(|| panic!("no subflow {id}: {status}"))
}

pub fn server(port: u16) -> SocketAddr {
    SocketAddr::new(Testbed::SERVER_V4.parse().unwrap(), port)
}

pub fn pins_exist(name: &str) -> bool {
    Path::new(&mptcp_user::lifecycle::pin_dir(name)).exists()
}

/// Run `mptcp-user <args> --instance NAME` in `ns`; (success, stdout + stderr).
pub fn cli(inst: &Instance, ns: &Netns, args: &[&str]) -> Result<(bool, String)> {
    let out = ns.command(BIN).args(args).args(["--instance", &inst.name]).output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// A TCP transfer of `len` bytes from `client` to the server's `port`
/// (content checked, `timeout`), with `event` run `after` into it: what the
/// event returned, and the transfer. The transfer is waited for even when the
/// event fails.
pub fn transfer_across<T: Send>(
    bed: &Testbed,
    client: &Netns,
    port: u16,
    len: usize,
    (after, timeout): (Duration, Duration),
    event: impl FnOnce() -> Result<T>,
) -> Result<(T, mptcp_testbed::Transfer)> {
    std::thread::scope(|sc| {
        let h = sc.spawn(|| mptcp_testbed::tcp_bulk(&bed.server, client, server(port), len, timeout));
        std::thread::sleep(after);
        let happened = event();
        let t = h.join().map_err(|_| anyhow::anyhow!("transfer thread panicked"))?;
        Ok((happened?, t?))
    })
}

/// Datagrams written whole on a raw IPv4 socket bound to `device` and
/// `from`: what a test sends from a port a controller holds (no second UDP
/// socket may share it), or as it captured them. Made inside the namespace.
pub struct RawUdp(socket2::Socket);

impl RawUdp {
    pub fn new(device: &str, from: std::net::IpAddr) -> Result<RawUdp> {
        use socket2::{Domain, Protocol, Socket, Type};
        let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP))?;
        raw.bind_device(Some(device.as_bytes()))?;
        raw.bind(&SocketAddr::new(from, 0).into())?;
        Ok(RawUdp(raw))
    }

    /// `payload` behind a UDP header from port `sport` (no checksum), `times` times.
    pub fn send(&self, sport: u16, to: SocketAddr, payload: &[u8], times: usize) -> Result<()> {
        let len = ((8 + payload.len()) as u16).to_be_bytes();
        let datagram = [&sport.to_be_bytes()[..], &to.port().to_be_bytes()[..], &len[..], &[0, 0], payload].concat();
        self.send_datagram(&datagram, to, times)
    }

    /// A whole UDP datagram, its header included, `times` times.
    pub fn send_datagram(&self, datagram: &[u8], to: SocketAddr, times: usize) -> Result<()> {
        for _ in 0..times {
            self.0.send_to(datagram, &to.into())?;
        }
        Ok(())
    }
}

/// A client with paths u0 and u1 to the concentrator, built from the config
/// types under `policy`, each path then set by `path(k, &mut path)`.
pub fn two_path_config(policy: &str, path: impl Fn(usize, &mut PathConfig)) -> Config {
    let mut c = Config::new(Role::Client);
    c.key_file = Some(key_file().into());
    c.policy = policy.parse().unwrap();
    c.bond.name = "mpb".into();
    c.bond.addresses = Testbed::client_bond_addrs(0).iter().map(|a| a.parse().unwrap()).collect();
    c.bond.routes = Testbed::SERVER_ROUTES.iter().map(|r| r.parse().unwrap()).collect();
    c.probe.interval_ms = 100;
    c.paths = (0..2)
        .map(|k| {
            let mut p = PathConfig {
                interface: Testbed::client_dev(k),
                remote: Some(Testbed::conc_addr(0, k)),
                ..Default::default()
            };
            path(k, &mut p);
            p
        })
        .collect();
    c
}

/// A client with paths u0 and u1 (u1 at priority 1), built from the config
/// types: rate hints `rates` (Mbit/s), u1 a backup if `backup1`.
pub fn shaped_config(policy: &str, rates: [u32; 2], backup1: bool) -> Config {
    two_path_config(policy, |k, p| {
        p.rate_mbit = Some(rates[k] as f64);
        p.priority = k as u32;
        p.backup = k == 1 && backup1;
    })
}

/// `shaped_config` with weights on the two paths and these classes.
pub fn weighted_config(policy: &str, weights: [u32; 2], classes: Vec<ClassConfig>) -> Config {
    let mut c = shaped_config(policy, [100, 100], false);
    for (p, w) in c.paths.iter_mut().zip(weights) {
        p.weight = w;
    }
    c.classes = classes;
    c
}

pub fn tx_packets(inst: &Instance, ns: &Netns) -> Result<[u64; 2]> {
    let s = inst.status(ns)?;
    Ok([sub(&s, 0).tx_packets, sub(&s, 1).tx_packets])
}
