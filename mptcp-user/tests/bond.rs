//! End-to-end tests of bond mode in network namespaces: the real verifier,
//! real veth uplinks, the real controller binary on both ends. Run as root.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mptcp_testbed::{ping, tcp_bulk, udp_stream, Netns, Proc, Testbed};
use nix::sys::signal::Signal;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_mptcp-user");
const PSK: &str = "test-pre-shared-key";

/// A controller instance; on Drop its pins are removed even if the test failed.
struct Instance {
    name: String,
    proc: Option<Proc>,
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

fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{name}.log"))
}

impl Instance {
    fn proc(&mut self) -> &mut Proc {
        self.proc.as_mut().expect("running")
    }

    fn status(&self, ns: &Netns) -> Result<Value> {
        let out = ns.command(BIN).args(["status", "--json", "--instance", &self.name]).output()?;
        if !out.status.success() {
            bail!("status failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    fn output(&self) -> String {
        self.proc.as_ref().map(|p| p.output()).unwrap_or_default()
    }
}

fn start(ns: &Netns, name: &str, args: &[String], ready: &str) -> Result<Instance> {
    let mut cmd = ns.command(BIN);
    cmd.args(["--log", "info,netlink_packet_route=error", "up", "--instance", name]).args(args);
    let proc = Proc::spawn(cmd, log_path(name))?;
    let mut inst = Instance { name: name.to_string(), proc: Some(proc) };
    inst.proc().wait_for(ready, Duration::from_secs(20))?;
    Ok(inst)
}

fn conc_args(bed: &Testbed, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["--role", "concentrator", "--psk", PSK, "--bond-name", "mpb", "--probe-interval-ms", "100"].iter().map(|s| s.to_string()).collect();
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

fn start_conc(bed: &Testbed, extra: &[&str]) -> Result<Instance> {
    start(&bed.conc, &format!("{}co", bed.prefix), &conc_args(bed, extra), "mptcp-user: serving")
}

/// Client `c` by flags, one path per uplink.
fn client_args(bed: &Testbed, c: usize, psk: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["--role", "client", "--psk", psk, "--bond-name", "mpb", "--probe-interval-ms", "100", "--connect-timeout", "5"].iter().map(|s| s.to_string()).collect();
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

fn start_client(bed: &Testbed, c: usize, extra: &[&str]) -> Result<Instance> {
    let inst = start(&bed.clients[c], &format!("{}c{c}", bed.prefix), &client_args(bed, c, PSK, extra), "mptcp-user: connected")?;
    wait_subflows(&inst, &bed.clients[c], bed.uplinks)?;
    Ok(inst)
}

/// Client by config file (for per-path options).
fn start_client_config(bed: &Testbed, c: usize, toml: &str) -> Result<Instance> {
    let name = format!("{}c{c}", bed.prefix);
    let f = std::env::temp_dir().join(format!("{name}.toml"));
    std::fs::write(&f, toml)?;
    let inst = start(&bed.clients[c], &name, &["--config".into(), f.display().to_string()], "mptcp-user: connected")?;
    wait_subflows(&inst, &bed.clients[c], bed.uplinks)?;
    Ok(inst)
}

fn wait_subflows(inst: &Instance, ns: &Netns, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = inst.status(ns)?;
        let up = s["connections"][0]["subflows"].as_array().map(|v| v.iter().filter(|f| f["state"] == "up").count()).unwrap_or(0);
        if up >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {up} of {n} subflows up: {s}\n{}", inst.output());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn subflow_counter(status: &Value, id: usize, field: &str) -> u64 {
    status["connections"][0]["subflows"].as_array().and_then(|v| v.iter().find(|f| f["id"] == id)).map(|f| f[field].as_u64().unwrap_or(0)).unwrap_or(0)
}

fn drop_count(status: &Value, reason: &str) -> u64 {
    status["drops"][reason].as_u64().unwrap_or(0)
}

fn server(port: u16) -> SocketAddr {
    SocketAddr::new(Testbed::SERVER_V4.parse().unwrap(), port)
}

fn pins_exist(name: &str) -> bool {
    Path::new(&mptcp_user::lifecycle::pin_dir(name)).exists()
}

#[test]
fn icmp_tcp_and_udp_cross_the_bond_over_both_subflows() -> Result<()> {
    let bed = Testbed::new(1, 2)?;
    let conc = start_conc(&bed, &[])?;
    let client = start_client(&bed, 0, &[])?;
    let cl = &bed.clients[0];
    assert!(ping(cl, Testbed::SERVER_V4, 3), "IPv4 ping over the bond failed\nclient {}\nconcentrator {}", client.status(cl)?, conc.status(&bed.conc)?);
    assert!(ping(cl, Testbed::SERVER_V6, 3), "IPv6 ping over the bond failed\n{}", client.output());
    // A full-size bulk transfer proves the MTU: no fragmentation, no silent drops.
    let t = tcp_bulk(&bed.server, cl, server(5001), 20 << 20, Duration::from_secs(60))?;
    eprintln!("20 MiB over the bond in {:?}", t.duration);
    let t6 = tcp_bulk(&bed.server, cl, SocketAddr::new(Testbed::SERVER_V6.parse()?, 5002), 4 << 20, Duration::from_secs(60))?;
    eprintln!("4 MiB (IPv6 inner) in {:?}", t6.duration);
    let (got, dup) = udp_stream(&bed.server, cl, server(5003), 500, Duration::from_micros(500))?;
    assert_eq!((got, dup), (500, 0), "UDP over the bond lost or duplicated datagrams");
    let cs = client.status(cl)?;
    let ks = conc.status(&bed.conc)?;
    for d in ["too-big", "encap-failed", "redirect-failed", "decap-failed", "unknown-subflow", "bad-token"] {
        assert_eq!(drop_count(&cs, d), 0, "client drops {d}: {cs}");
        assert_eq!(drop_count(&ks, d), 0, "concentrator drops {d}: {ks}");
    }
    // Data reached the concentrator: its received bytes match the client's sent bytes.
    let sent: u64 = (0..2).map(|i| subflow_counter(&cs, i, "tx_bytes")).sum();
    let recv: u64 = (0..2).map(|i| subflow_counter(&ks, i, "rx_bytes")).sum();
    assert!(sent > 24 << 20 && recv > 24 << 20, "sent {sent} received {recv}");
    Ok(())
}
