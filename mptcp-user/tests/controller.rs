//! The controller's event loop under inputs that used to stop or stall it:
//! a handler error never ends the daemon, and a local control client that
//! sends nothing does not delay probes. Real controllers in namespaces; run
//! as root.

mod support;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ipnet::IpNet;
use mptcp_common::maps::{ControlCounter, MAX_PREFIXES};
use mptcp_testbed::{ping, tcp_bulk, Proc, Testbed};
use mptcp_user::control::{Body, Message, PathHint};
use nix::sys::signal::Signal;
use support::*;

/// One first-subflow handshake from `s` (its own port) announcing `prefixes`,
/// done as a client that knows the key would: HELLO, CHALLENGE, PROOF, and
/// the concentrator's last word (ACCEPT or REJECT).
fn handshake(s: &UdpSocket, to: SocketAddr, nonce_c: u64, prefixes: Vec<IpNet>) -> Result<Body> {
    let key = key();
    let psk = &key[..];
    let hello = Body::Hello { join: false, nonce_c, key_c: nonce_c ^ 0x5555, path: PathHint::default(), prefixes };
    s.send_to(&Message { token: 0, subflow_id: 0, body: hello }.encode(psk), to)?;
    let mut buf = [0u8; 2048];
    let n = s.recv(&mut buf).context("no CHALLENGE")?;
    let m = Message::decode(&buf[..n], psk)?;
    let Body::Challenge { nonce_s, .. } = m.body else { bail!("expected a CHALLENGE, got {:?}", m.body) };
    let proof = Message { token: m.token, subflow_id: 0, body: Body::Proof { nonce_c, nonce_s } };
    s.send_to(&proof.encode(psk), to)?;
    let n = s.recv(&mut buf).context("no answer to the PROOF")?;
    Ok(Message::decode(&buf[..n], psk)?.body)
}

/// A peer with the key opens connections from new ports until the
/// concentrator's prefix table is full. Installing the next one fails: before
/// the event loop, that error ended the concentrator (and tore its data path
/// down). Now it is refused, logged and counted, nothing of it stays, and the
/// concentrator goes on serving its real client.
#[test]
fn a_full_prefix_table_refuses_the_connection_and_the_concentrator_serves_on() -> Result<()> {
    let bed = Testbed::new(1, 2)?;
    let mut conc = start_conc(&bed, &[])?;
    let _client = start_client(&bed, 0, &[])?;
    let cl = &bed.clients[0];
    let to = SocketAddr::new(Testbed::conc_addr(0, 0), mptcp_common::wire::DEFAULT_PORT);
    let per_conn = mptcp_user::control::MAX_PREFIXES;
    let conns = MAX_PREFIXES as usize / per_conn + 2;
    let answers = cl.run(move || {
        let (mut answers, mut sockets) = (Vec::new(), Vec::new());
        for c in 0..conns {
            // Every socket stays open, so no port (no 4-tuple) is used twice:
            // a known 4-tuple counts as that client reconnecting.
            let s = UdpSocket::bind("10.1.0.2:0")?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            let prefixes = (0..per_conn)
                .map(|k| {
                    let a = Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 0)) + (c * per_conn + k) as u32);
                    IpNet::new(a.into(), 32).unwrap()
                })
                .collect();
            answers.push(handshake(&s, to, 1000 + c as u64, prefixes)?);
            sockets.push(s);
        }
        Ok(answers)
    })?;
    let refused = answers.iter().filter(|b| matches!(b, Body::Reject { .. })).count();
    assert!(matches!(answers[0], Body::Accept { .. }), "{:?}", answers[0]);
    assert!(refused >= 1, "the table never filled: {} connections accepted", answers.len() - refused);

    assert!(
        conc.proc().wait_timeout(Duration::from_millis(500))?.is_none(),
        "the concentrator stopped:\n{}",
        conc.output()
    );
    let s = conc.status(&bed.conc)?;
    assert!(s.control(ControlCounter::EventErrors) >= 1, "{s}");
    let accepted = answers.len() - refused;
    assert_eq!(s.connections.len(), accepted + 1, "a refused connection left something behind");
    assert!(conc.output().contains("could not handle an input"), "the error is logged:\n{}", conc.output());
    assert!(ping(cl, Testbed::SERVER_V4, 3), "the real client still reaches the server through the bond");
    Ok(())
}

/// Local control clients that connect and send nothing: each is served by a
/// task of its own, so probes go on at their interval. (The loop used to read
/// each request itself, for up to a second, while no probe went out.)
#[test]
fn silent_local_control_clients_do_not_delay_probes() -> Result<()> {
    let bed = Testbed::new(1, 2)?;
    let conc = start_conc(&bed, &[])?;
    let client = start_client(&bed, 0, &[])?;
    let cl = &bed.clients[0];
    let probes = || -> Result<u64> { Ok(client.status(cl)?.control(ControlCounter::ProbesSent)) };
    let path = mptcp_user::ctl::socket_path(&client.name);
    let silent: Vec<_> =
        (0..5).map(|_| std::os::unix::net::UnixStream::connect(&path)).collect::<std::io::Result<_>>()?;
    let (before, start) = (probes()?, Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let sent = probes()? - before;
    // Two subflows, a probe each per 100 ms tick.
    let expected = (start.elapsed().as_millis() / 100 * 2) as u64;
    assert!(sent * 2 >= expected, "{sent} probes sent while local clients were silent, {expected} expected");
    wait_subflows(&client, cl, 2)?;
    assert!(!conc.output().contains("probes stopped"), "a subflow went down:\n{}", conc.output());
    // Each silent client gets an answer naming why, once its time is up.
    for s in silent {
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line)?;
        assert!(line.contains("no request within"), "{line}");
    }
    // And the socket still takes real requests.
    let (ok, out) = cli(&client, cl, &["path", "set", "u0", "--weight", "2"])?;
    assert!(ok, "{out}");
    Ok(())
}

/// `systemctl restart` is SIGTERM then `up`: the new controller adopts the
/// data path and keeps what the operator changed at runtime (a policy, path
/// hints) instead of falling back to the config. A fresh start (after
/// Ctrl-C removed everything) begins from the config again.
#[test]
fn runtime_changes_survive_a_restart_that_adopts_the_data_path() -> Result<()> {
    let bed = Testbed::new(1, 2)?;
    let _conc = start_conc(&bed, &[])?;
    let cl = &bed.clients[0];
    let mut client = start_client(&bed, 0, &[])?;
    let (ok, out) = cli(&client, cl, &["policy", "set", "weighted"])?;
    assert!(ok, "{out}");
    let (ok, out) = cli(&client, cl, &["path", "set", "u1", "--weight", "3"])?;
    assert!(ok, "{out}");
    let (ok, out) = cli(&client, cl, &["path", "set", "u1", "--backup"])?;
    assert!(ok, "{out}");

    let restart = |client: &mut Instance, signal: Signal, tag: &str| -> Result<()> {
        client.stop(signal)?;
        client.respawn(cl, &client_args(&bed, 0, &key_file(), &[]), tag, "mptcp-user: connected")
    };
    restart(&mut client, Signal::SIGTERM, "adopting")?;
    assert!(client.output().contains("adopting"), "{}", client.output());
    let (ok, out) = cli(&client, cl, &["policy", "show"])?;
    assert!(ok && out.contains("default: weighted"), "the runtime policy was kept: {out}");
    wait_status(&client, cl, "the runtime hints were kept", |s| {
        s.subflow(1).is_some_and(|f| f.weight == 3 && f.backup)
    })?;

    // Ctrl-C removes the data path: the next start is fresh, from the config.
    restart(&mut client, Signal::SIGINT, "fresh")?;
    assert!(!client.output().contains("adopting"), "{}", client.output());
    let (ok, out) = cli(&client, cl, &["policy", "show"])?;
    assert!(ok && out.contains("default: auto"), "a fresh start uses the config's policy (none: auto): {out}");
    wait_subflows(&client, cl, 2)?;
    let s = client.status(cl)?;
    let f = sub(&s, 1);
    assert!(f.weight == 0 && !f.backup, "a fresh start uses the config's hints: {s}");
    Ok(())
}

/// A controller that crashes (SIGKILL: no handler runs, nothing is torn
/// down) leaves the data path forwarding, which is what the systemd unit's
/// `Restart=on-failure` counts on: TCP crosses the bond with no controller
/// at all, and the controller started next adopts the same connection.
#[test]
fn a_crashed_controller_leaves_the_data_path_forwarding_for_the_next_to_adopt() -> Result<()> {
    let bed = Testbed::new(1, 2)?;
    let _conc = start_conc(&bed, &[])?;
    let cl = &bed.clients[0];
    let mut client = start_client(&bed, 0, &[])?;
    let token = client.status(cl)?.connections[0].token.clone();
    client.proc().signal(Signal::SIGKILL)?;
    client.proc().wait_timeout(Duration::from_secs(5))?.context("the controller did not die")?;

    let t = tcp_bulk(&bed.server, cl, server(5001), 4 << 20, Duration::from_secs(30))?;
    let s = client.status(cl)?;
    assert!(s.controller_pid.is_none(), "no controller runs: {s}");
    let carried: u64 = s.connections[0].subflows.iter().map(|f| f.tx_bytes).sum();
    assert!(carried > 4 << 20, "the 4 MiB crossed the pinned data path alone ({carried} bytes counted): {s}");
    eprintln!("4 MiB across the bond with no controller in {:?}", t.duration);

    client.respawn(cl, &client_args(&bed, 0, &key_file(), &[]), "after-crash", "mptcp-user: connected")?;
    assert!(client.output().contains("adopting"), "{}", client.output());
    wait_subflows(&client, cl, 2)?;
    let s = client.status(cl)?;
    assert_eq!(s.connections[0].token, token, "the same connection, adopted: {s}");
    assert!(s.controller_pid.is_some());
    tcp_bulk(&bed.server, cl, server(5002), 1 << 20, Duration::from_secs(30))?;
    Ok(())
}

/// With the data path's log at debug level the controller logs every drop
/// with the packet it was; at the default level the programs only count it.
#[test]
fn data_path_drops_are_logged_with_the_packet_at_debug_level_only() -> Result<()> {
    use mptcp_common::wire::MpHeader;
    let bed = Testbed::new(1, 1)?;
    let to = SocketAddr::new(Testbed::conc_addr(0, 0), mptcp_common::wire::DEFAULT_PORT);
    // A data packet from a 4-tuple no subflow has: dropped as unknown-subflow.
    let stray = move || -> Result<u16> {
        let s = UdpSocket::bind("10.1.0.2:0")?;
        let mut p = bytemuck::bytes_of(&MpHeader::data(1, 0, 0, 0, 0)).to_vec();
        p.extend_from_slice(&[0x45; 40]);
        for _ in 0..3 {
            s.send_to(&p, to)?;
        }
        Ok(s.local_addr()?.port())
    };
    let unknown = |s: &mptcp_common::status::Status| s.drops.get("unknown-subflow").copied().unwrap_or(0);

    let quiet = start_conc(&bed, &[])?;
    bed.clients[0].run(stray)?;
    wait_status(&quiet, &bed.conc, "the stray packets counted", |s| unknown(s) >= 3)?;
    std::thread::sleep(Duration::from_millis(300));
    assert!(!quiet.output().contains("dropped"), "no drop log at the default level: {}", quiet.output());
    drop(quiet);

    // At debug level, and as JSON lines: the event's fields are keys.
    let name = format!("{}co", bed.prefix);
    let mut cmd = bed.conc.command(BIN);
    cmd.args(["--log", "info,mptcp_user::datapath=debug", "--log-format", "json", "up", "--instance", &name])
        .args(conc_args(&bed, &[]));
    let mut debug = Instance { name: name.clone(), proc: Some(Proc::spawn(cmd, log_path(&format!("{name}-debug")))?) };
    debug.proc().wait_for("mptcp-user: serving", Duration::from_secs(20))?;
    let port = bed.clients[0].run(stray)?;
    let want = format!("udp 10.1.0.2:{port} > 10.1.0.1:7495");
    debug.proc().wait_for(&want, Duration::from_secs(5))?;
    let out = debug.output();
    let event: serde_json::Value = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["packet"] == want.as_str())
        .with_context(|| format!("no JSON log line for the drop: {out}"))?;
    assert_eq!(event["level"], "DEBUG", "{event}");
    assert_eq!(event["target"], "mptcp_user::datapath", "{event}");
    assert_eq!(event["fields"]["message"], "dropped", "{event}");
    assert_eq!(event["fields"]["reason"], "unknown-subflow", "{event}");
    assert_eq!(event["fields"]["hook"], "uplink ingress (XDP)", "{event}");

    // A handover leaves the data path forwarding, but no one reading its
    // reports: it stops making them.
    let settings = || -> Result<u16> {
        let maps = mptcp_user::bpfmaps::DataPathMaps::open(&mptcp_user::lifecycle::pin_dir(&name))?;
        Ok(maps.settings.get(&0, 0)?.debug)
    };
    assert_eq!(settings()?, 1, "reporting while the debug log reads");
    debug.proc().signal(Signal::SIGTERM)?;
    debug.proc().wait_timeout(Duration::from_secs(5))?.context("the controller did not stop")?;
    assert_eq!(settings()?, 0, "no reports after the handover");
    Ok(())
}

/// What an unprivileged local user tries to bind the concentrator's control
/// port with: plain, with SO_REUSEADDR, with SO_REUSEPORT, each also bound to
/// the uplink (allowed to unprivileged users since Linux 5.7).
const HIJACKS: [(&str, bool, bool, bool); 6] = [
    ("plain", false, false, false),
    ("reuseaddr", true, false, false),
    ("reuseport", false, true, false),
    ("plain+device", false, false, true),
    ("reuseaddr+device", true, false, true),
    ("reuseport+device", false, true, true),
];

/// Run by [`an_unprivileged_local_user_cannot_take_the_control_port`] in the
/// concentrator's namespace: drops to nobody, tries each of [`HIJACKS`] on
/// `MPTCP_HIJACK_ADDR` and prints one line per try. Does nothing when run
/// by hand.
#[test]
#[ignore = "a helper that the hijack test runs as another user"]
fn hijack_helper() {
    use socket2::{Domain, Socket, Type};
    let (Ok(addr), Ok(iface)) = (std::env::var("MPTCP_HIJACK_ADDR"), std::env::var("MPTCP_HIJACK_IFACE")) else {
        return;
    };
    let addr: SocketAddr = addr.parse().unwrap();
    let nobody = nix::unistd::Uid::from_raw(65534);
    nix::unistd::setgroups(&[]).unwrap();
    nix::unistd::setgid(nix::unistd::Gid::from_raw(65534)).unwrap();
    nix::unistd::setuid(nobody).unwrap();
    assert_eq!(nix::unistd::geteuid(), nobody);
    for (what, reuse_addr, reuse_port, device) in HIJACKS {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
        s.set_reuse_address(reuse_addr).unwrap();
        s.set_reuse_port(reuse_port).unwrap();
        if device {
            s.bind_device(Some(iface.as_bytes())).unwrap();
        }
        match s.bind(&addr.into()) {
            Ok(()) => println!("hijack {what}: bound"),
            Err(e) => println!("hijack {what}: refused ({e})"),
        }
    }
}

#[test]
fn an_unprivileged_local_user_cannot_take_the_control_port() -> Result<()> {
    let bed = Testbed::new(1, 1)?;
    let _conc = start_conc(&bed, &[])?;
    let tries = |port: u16| -> Result<Vec<String>> {
        let out = bed
            .conc
            .command(std::env::current_exe()?.to_str().context("test binary path")?)
            .args(["--exact", "hijack_helper", "--ignored", "--nocapture", "--test-threads", "1"])
            .env("MPTCP_HIJACK_ADDR", format!("{}:{port}", Testbed::conc_addr(0, 0)))
            .env("MPTCP_HIJACK_IFACE", Testbed::conc_dev(0, 0))
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        // (The first line follows the harness's "test hijack_helper ... ".)
        let lines: Vec<String> = text.lines().filter_map(|l| l.find("hijack ").map(|at| l[at..].to_string())).collect();
        if !out.status.success() || lines.len() != HIJACKS.len() {
            bail!("the helper failed: {text}{}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(lines)
    };
    // Where nothing listens, nobody binds every way: the helper can bind.
    let free = tries(mptcp_common::wire::DEFAULT_PORT + 1)?;
    assert!(free.iter().all(|l| l.ends_with(": bound")), "{free:?}");
    // The controller's port refuses every way.
    let taken = tries(mptcp_common::wire::DEFAULT_PORT)?;
    assert!(taken.iter().all(|l| l.contains("refused")), "an unprivileged socket shares the control port: {taken:?}");
    Ok(())
}

/// A flood of junk on the control port from senders that are no subflow
/// costs at most the budget of HMAC checks a second; the rest is shed
/// unread and counted, and a client with the key still connects.
#[test]
fn a_flood_of_junk_costs_a_bounded_number_of_hmac_checks() -> Result<()> {
    use mptcp_user::concentrator::UNVERIFIED_PER_SECOND;
    let bed = Testbed::new(1, 1)?;
    let conc = start_conc(&bed, &[])?;
    let to = SocketAddr::new(Testbed::conc_addr(0, 0), mptcp_common::wire::DEFAULT_PORT);
    let elapsed = bed.clients[0].run(move || {
        let s = UdpSocket::bind("10.1.0.2:0")?;
        let junk = Message { token: 1, subflow_id: 0, body: Body::Proof { nonce_c: 1, nonce_s: 2 } }
            .encode(b"not the key, not the key");
        let start = Instant::now();
        // Bursts the socket's buffer holds, faster than the budget.
        for _ in 0..60 {
            for _ in 0..150 {
                let _ = s.send_to(&junk, to);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(start.elapsed())
    })?;
    wait_status(&conc, &bed.conc, "junk shed", |s| s.control(ControlCounter::Shed) > 0)?;
    let s = conc.status(&bed.conc)?;
    let checked = s.control(ControlCounter::AuthFailed);
    let allowed = UNVERIFIED_PER_SECOND as f64 * (1.0 + elapsed.as_secs_f64() + 0.5);
    assert!(
        (checked as f64) <= allowed,
        "{checked} HMAC checks in {elapsed:?} (shed {}), at most {allowed}",
        s.control(ControlCounter::Shed)
    );
    std::thread::sleep(Duration::from_secs(1));
    let client = start_client(&bed, 0, &[])?;
    assert!(ping(&bed.clients[0], Testbed::SERVER_V4, 2), "{}", client.output());
    Ok(())
}
