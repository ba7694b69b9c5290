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
use mptcp_testbed::{ping, Proc, Testbed};
use mptcp_user::control::{Body, Message, PathHint};
use nix::sys::signal::Signal;
use support::*;

/// One first-subflow handshake from `s` (its own port) announcing `prefixes`,
/// done as a client that knows the key would: HELLO, CHALLENGE, PROOF, and
/// the concentrator's last word (ACCEPT or REJECT).
fn handshake(s: &UdpSocket, to: SocketAddr, nonce_c: u64, prefixes: Vec<IpNet>) -> Result<Body> {
    let psk = PSK.as_bytes();
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
        client.proc().signal(signal)?;
        let st = client.proc().wait_timeout(Duration::from_secs(5))?.context("controller did not exit")?;
        assert!(st.success(), "{}", client.output());
        let mut cmd = cl.command(BIN);
        cmd.args(["up", "--instance", &client.name]).args(client_args(&bed, 0, PSK, &[]));
        client.proc = Some(Proc::spawn(cmd, log_path(&format!("{}-{tag}", client.name)))?);
        client.proc().wait_for("mptcp-user: connected", Duration::from_secs(10))
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
