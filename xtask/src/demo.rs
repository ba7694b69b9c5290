//! `cargo xtask demo`: the main job on an embedded testbed. A client with
//! three shaped uplinks (DSL 20, LTE 10, 3G 5 Mbit/s) bonds towards a
//! concentrator with the config a newcomer writes (default policy, no link
//! rates); a TCP stream runs to a server behind it for `duration` seconds
//! while per-subflow rates are printed every second.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mptcp_common::status::{Status, SubflowStatus};
use mptcp_testbed::traffic::{self, Amount, BulkSink, Stream, Transport, DEFAULT_CONGESTION};
use mptcp_testbed::{Netns, Proc, Testbed};
use serde_json::{json, Value};

const RATES: [u32; 3] = [20, 10, 5];
const NAMES: [&str; 3] = ["dsl", "lte", "3g"];

/// A file removed when the demo ends, however it ends.
struct RemovedOnDrop(PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/mptcp-user")
}

/// `status --json`, read into the controller's status type.
fn status(ns: &Netns, instance: &str) -> Result<Status> {
    let out = ns.command(bin().to_str().unwrap()).args(["status", "--json", "--instance", instance]).output()?;
    if !out.status.success() {
        bail!("status: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn subflows(s: &Status) -> &[SubflowStatus] {
    s.connections.first().map_or(&[], |c| &c.subflows)
}

pub fn demo(duration: u64, json_out: bool) -> Result<()> {
    let bed = Testbed::new(1, 3)?;
    let cl = &bed.clients[0];
    for (k, rate) in RATES.iter().enumerate() {
        Testbed::shape(cl, &Testbed::client_dev(k), *rate)?;
        Testbed::shape(&bed.conc, &Testbed::conc_dev(0, k), *rate)?;
    }
    let (ci, ki) = (format!("{}c0", bed.prefix), format!("{}co", bed.prefix));
    let log = std::env::temp_dir();
    // Both ends share a key, made as an operator makes one.
    let key_file = log.join(format!("{}.key", bed.prefix));
    let _ = std::fs::remove_file(&key_file);
    let key_file = key_file.to_str().context("temporary directory path is not UTF-8")?.to_string();
    let made = Command::new(bin()).args(["genkey", &key_file]).output()?;
    if !made.status.success() {
        bail!("mptcp-user genkey failed: {}", String::from_utf8_lossy(&made.stderr));
    }
    let _key = RemovedOnDrop(PathBuf::from(&key_file));
    let mut conc_cmd = bed.conc.command(bin().to_str().unwrap());
    conc_cmd.args(["up", "--instance", &ki, "--role", "concentrator", "--key-file", &key_file, "--bond-name", "mpb"]);
    conc_cmd.args(["--bond-address", Testbed::CONC_BOND_ADDRS[0], "--bond-address", Testbed::CONC_BOND_ADDRS[1]]);
    for k in 0..3 {
        conc_cmd.args(["--path", &Testbed::conc_dev(0, k)]);
    }
    let mut conc = Proc::spawn(conc_cmd, log.join(format!("{ki}.log")))?;
    conc.wait_for("mptcp-user: serving", Duration::from_secs(20))?;

    let [a4, a6] = Testbed::client_bond_addrs(0);
    let mut cfg = format!(
        "role = \"client\"\nkey_file = \"{key_file}\"\n[bond]\nname = \"mpb\"\naddresses = [\"{a4}\", \"{a6}\"]\nroutes = [\"{}\", \"{}\"]\n",
        Testbed::SERVER_ROUTES[0],
        Testbed::SERVER_ROUTES[1]
    );
    // What a newcomer writes: no policy (the default) and no link rates
    // (the controller estimates them).
    for (k, name) in NAMES.iter().enumerate() {
        cfg += &format!(
            "[[path]]\nname = \"{name}\"\ninterface = \"{}\"\nremote = \"{}\"\n",
            Testbed::client_dev(k),
            Testbed::conc_addr(0, k),
        );
    }
    let cfg_path = log.join(format!("{ci}.toml"));
    std::fs::write(&cfg_path, cfg)?;
    let mut client_cmd = cl.command(bin().to_str().unwrap());
    client_cmd.args(["up", "--instance", &ci, "--config", cfg_path.to_str().unwrap()]);
    let mut client = Proc::spawn(client_cmd, log.join(format!("{ci}.log")))?;
    client.wait_for("mptcp-user: connected", Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_millis(500));
    println!(
        "demo: client bonds {} over 3 uplinks (20 + 10 + 5 Mbit/s, rates not configured), policy {} (the default); TCP stream to {} for {duration} s",
        a4,
        status(cl, &ci)?.policy,
        Testbed::SERVER_V4
    );

    // The stream: the testbed's bulk sink in the server namespace and its
    // sender in the client's, on Linux's default congestion control
    // whatever the host's is.
    let stream = Stream::new(Transport::Tcp, DEFAULT_CONGESTION);
    let run_for = Duration::from_secs(duration);
    let sink = BulkSink::start(
        &bed.server,
        "0.0.0.0:5201".parse()?,
        stream.clone(),
        1,
        Instant::now(),
        Duration::from_secs(1),
        run_for + Duration::from_secs(10),
    )?;
    let dst: SocketAddr = format!("{}:5201", Testbed::SERVER_V4).parse()?;
    let until = Instant::now() + run_for;
    let start = Instant::now();
    std::thread::scope(|sc| -> Result<()> {
        let sender =
            sc.spawn(|| traffic::bulk_send(cl, dst, stream, 1, Amount::For(run_for), run_for + Duration::from_secs(5)));
        let mut last: Vec<u64> = vec![0; 3];
        println!(
            "{:>5}  {}",
            "t(s)",
            NAMES.iter().map(|n| format!("{n:>12}")).collect::<String>() + "       total (Mbit/s)"
        );
        while Instant::now() < until {
            std::thread::sleep(Duration::from_secs(1));
            let s = status(cl, &ci)?;
            let mut line = format!("{:>5.0}  ", start.elapsed().as_secs_f64());
            let mut total = 0.0;
            for (k, f) in subflows(&s).iter().enumerate().take(3) {
                let b = f.tx_bytes;
                let mbit = (b - last[k]) as f64 * 8.0 / 1e6;
                last[k] = b;
                total += mbit;
                line += &format!("{mbit:>12.2}");
            }
            println!("{line}  {total:>12.2}");
        }
        sender.join().map_err(|_| anyhow::anyhow!("sender panicked"))?
    })?;
    let received = sink.join()?.bytes;
    let elapsed = start.elapsed().as_secs_f64();
    let final_client = status(cl, &ci)?;
    let final_conc = status(&bed.conc, &ki)?;

    for p in [&mut client, &mut conc] {
        p.signal(nix_sigint())?;
        p.wait_timeout(Duration::from_secs(10))?;
    }
    let _ = Command::new(bin()).args(["down", "--instance", &ci]).output();
    let _ = Command::new(bin()).args(["down", "--instance", &ki]).output();

    let goodput = received as f64 * 8.0 / elapsed / 1e6;
    let capacity: u32 = RATES.iter().sum();
    println!(
        "demo: {:.1} MB delivered in {elapsed:.1} s: {goodput:.2} Mbit/s goodput = {:.0} % of the summed link capacity ({capacity} Mbit/s)",
        received as f64 / 1e6,
        goodput * 100.0 / capacity as f64
    );
    let per: Vec<Value> = subflows(&final_client)
        .iter()
        .map(|f| {
            json!({"id": f.id, "path": f.path, "tx_bytes": f.tx_bytes, "rx_bytes": f.rx_bytes,
                   "tx_packets": f.tx_packets, "rx_packets": f.rx_packets, "srtt_us": f.srtt_us})
        })
        .collect();
    for f in subflows(&final_client) {
        println!("demo: subflow {} ({}): tx {} bytes, rx {} bytes", f.id, f.path, f.tx_bytes, f.rx_bytes);
    }
    if json_out {
        let summary = json!({
            "duration_s": elapsed,
            "delivered_bytes": received,
            "goodput_mbit": goodput,
            "capacity_mbit": capacity,
            "policy": final_client.policy,
            "subflows": per,
            "concentrator_drops": final_conc.drops,
            "client_drops": final_client.drops,
        });
        println!("{summary}");
    }
    Ok(())
}

fn nix_sigint() -> mptcp_testbed::Signal {
    mptcp_testbed::Signal::SIGINT
}
