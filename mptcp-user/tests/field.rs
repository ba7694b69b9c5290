//! What the real Internet does to a bond, on real controllers in
//! namespaces: a concentrator that restarts without its state, clients that
//! vanish, floods of handshakes, a subflow whose 4-tuple changes (as behind
//! a NAT that rebinds). Run as root.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use mptcp_common::headers::Ipv4Hdr;
use mptcp_common::maps::{ControlCounter, MAX_SUBFLOWS};
use mptcp_common::mtu::bond_mtu;
use mptcp_common::wire::{MpHeader, FAMILY_V4};
use mptcp_common::DropReason;
use mptcp_testbed::{ping, tcp_bulk, Netns, Testbed};
use mptcp_user::concentrator::MAX_PENDING_PER_ADDRESS;
use mptcp_user::config::{ClientConfig, Config, PathConfig, Role};
use mptcp_user::control::{Body, Message, PathHint, RejectReason, RxReport};
use mptcp_user::status::Status;
use nix::sys::signal::Signal;
use support::*;

const PORT: u16 = mptcp_common::wire::DEFAULT_PORT;

/// The concentrator is stopped with Ctrl-C (everything removed) and started
/// afresh mid-transfer: it knows nothing of the client. The client's next
/// probe is answered "unknown connection", it reconnects by itself, and the
/// inner TCP transfer completes intact.
#[test]
fn a_concentrator_restart_without_state_is_survived_by_a_transfer() -> Result<()> {
    let bed = Testbed::new(1, 2)?;
    bed.shape_uplinks(0, 30)?;
    let mut conc = start_conc(&bed, &[])?;
    let cl = &bed.clients[0];
    let client = start_client(&bed, 0, &[])?;
    let token = client.status(cl)?.token().context("no connection")?;
    let times = (Duration::from_millis(1000), Duration::from_secs(90));
    let (reconnected, t) = transfer_across(&bed, cl, 5001, 16 << 20, times, || {
        conc.proc().signal(Signal::SIGINT)?;
        let st = conc.proc().wait_timeout(Duration::from_secs(5))?.context("concentrator did not exit")?;
        assert!(st.success(), "{}", conc.output());
        assert!(!pins_exist(&conc.name), "Ctrl-C removed the concentrator's state");
        conc.respawn(&bed.conc, &conc_args(&bed, &[]), "2", "mptcp-user: serving")?;
        let serving = Instant::now();
        wait_status(&client, cl, "the client reconnected", |s| s.token().is_some_and(|t| t != token))?;
        wait_subflows(&client, cl, 2)?;
        Ok(serving.elapsed())
    })?;
    eprintln!("reconnected {reconnected:?} after the new concentrator served");
    eprintln!("16 MiB across a concentrator restart without state: {:?}", t.duration);
    let s = client.status(cl)?;
    assert!(s.control(ControlCounter::Rejoins) >= 1, "{s}");
    assert!(client.output().contains("no longer knows our connection"), "{}", client.output());
    let c = conc.status(&bed.conc)?;
    assert!(c.control(ControlCounter::ProbesRefused) >= 1, "{c}");
    assert_eq!(c.connections.len(), 1, "one connection, the new one: {c}");
    Ok(())
}

/// A client cut off from the concentrator (both uplinks down) is collected
/// after `collect_after_s` with everything it had in the maps; when its
/// links return, its probes are answered "unknown connection" and it
/// reconnects by itself.
#[test]
fn a_silent_client_is_collected_and_reconnects_when_heard_again() -> Result<()> {
    let bed = Testbed::new(1, 2)?;
    let conc = start_conc(&bed, &["--collect-after-s", "2"])?;
    let cl = &bed.clients[0];
    let client = start_client(&bed, 0, &[])?;
    let token = client.status(cl)?.token().context("no connection")?;
    // The client's prefix is routed with its bond MTU (never above the
    // concentrator's own) while it is there...
    let mtu = device_mtu(cl, "mpb")?.min(device_mtu(&bed.conc, "mpb")?);
    let route = || bed.conc.sh("ip route show 10.99.0.2");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !route()?.contains(&format!("mtu {mtu}")) {
        assert!(Instant::now() < deadline, "no route with the client's MTU: {}", route()?);
        std::thread::sleep(Duration::from_millis(100));
    }
    for k in 0..2 {
        cl.sh(&format!("ip link set {} down", Testbed::client_dev(k)))?;
    }
    wait_status(&conc, &bed.conc, "the silent connection was collected", |s| {
        s.connections.is_empty() && s.control(ControlCounter::Collected) == 1
    })?;
    assert!(conc.output().contains("connection collected"), "{}", conc.output());
    // ...and not once it is collected.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(route()?.trim(), "", "the collected client's route stays");
    for k in 0..2 {
        cl.sh(&format!("ip link set {} up", Testbed::client_dev(k)))?;
    }
    wait_status(&client, cl, "the client reconnected", |s| s.token().is_some_and(|t| t != token))?;
    wait_subflows(&client, cl, 2)?;
    assert!(ping(cl, Testbed::SERVER_V4, 3), "the bond carries traffic again");
    let c = conc.status(&bed.conc)?;
    assert_eq!(c.connections.len(), 1, "{c}");
    Ok(())
}

/// HELLOs from one address that never PROOF hold at most
/// `MAX_PENDING_PER_ADDRESS` offers; the rest are refused (Full) and counted,
/// the concentrator runs on, its real client is unaffected, and a handshake
/// from another address still succeeds.
#[test]
fn a_flood_of_hellos_is_capped_and_the_concentrator_serves_on() -> Result<()> {
    let bed = Testbed::new(1, 2)?;
    let mut conc = start_conc(&bed, &[])?;
    let cl = &bed.clients[0];
    let _client = start_client(&bed, 0, &[])?;
    let to = SocketAddr::new(Testbed::conc_addr(0, 0), PORT);
    let flood = 200u64;
    let (challenged, full) = cl.run(move || {
        let s = UdpSocket::bind("10.1.0.2:0")?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let (mut challenged, mut full) = (0, 0);
        for n in 0..flood {
            let hello = Body::Hello { join: false, nonce_c: n, key_c: n, path: PathHint::default(), prefixes: vec![] };
            s.send_to(&Message { token: 0, subflow_id: 0, body: hello }.encode(&key()), to)?;
            let mut buf = [0u8; 2048];
            let len = s.recv(&mut buf).context("no answer to a HELLO")?;
            match Message::decode(&buf[..len], &key())?.body {
                Body::Challenge { .. } => challenged += 1,
                Body::Reject { reason: RejectReason::Full, .. } => full += 1,
                other => bail!("unexpected answer {other:?}"),
            }
        }
        Ok((challenged, full))
    })?;
    assert_eq!((challenged, full), (MAX_PENDING_PER_ADDRESS, flood as usize - MAX_PENDING_PER_ADDRESS));
    assert!(conc.proc().wait_timeout(Duration::from_millis(200))?.is_none(), "the concentrator stopped");
    let s = conc.status(&bed.conc)?;
    assert_eq!(s.control(ControlCounter::RefusedFull), full as u64, "{s}");
    assert_eq!(s.connections.len(), 1, "nothing of the flood was installed: {s}");
    assert!(ping(cl, Testbed::SERVER_V4, 3), "the real client still reaches the server");
    let other = cl.run(move || {
        let s = UdpSocket::bind("10.2.0.2:0")?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let to = SocketAddr::new(Testbed::conc_addr(0, 1), PORT);
        first_subflow(&s, to, 7)
    })?;
    assert!(matches!(other.1, Body::Accept { .. }), "another address is not held up: {:?}", other.1);
    Ok(())
}

/// A first-subflow handshake from `s` as a client with the key would do it:
/// (token, the concentrator's last word).
fn first_subflow(s: &UdpSocket, to: SocketAddr, nonce_c: u64) -> Result<(u32, Body)> {
    handshake(s, to, 0, 0, false, nonce_c)
}

/// HELLO, CHALLENGE, PROOF and the answer, for the first subflow or a JOIN
/// of `subflow_id` to `token`.
fn handshake(
    s: &UdpSocket,
    to: SocketAddr,
    token: u32,
    subflow_id: u8,
    join: bool,
    nonce_c: u64,
) -> Result<(u32, Body)> {
    let key = key();
    let psk = &key[..];
    let key_c = if join { 0 } else { nonce_c ^ 0x5555 };
    let hello = Body::Hello { join, nonce_c, key_c, path: PathHint::default(), prefixes: vec![] };
    s.send_to(&Message { token, subflow_id, body: hello }.encode(psk), to)?;
    let mut buf = [0u8; 2048];
    let n = s.recv(&mut buf).context("no CHALLENGE")?;
    let m = Message::decode(&buf[..n], psk)?;
    let Body::Challenge { nonce_s, .. } = m.body else { bail!("expected a CHALLENGE, got {:?}", m.body) };
    let proof = Message { token: m.token, subflow_id, body: Body::Proof { nonce_c, nonce_s } };
    s.send_to(&proof.encode(psk), to)?;
    Ok((m.token, recv_body(s, "no answer to the PROOF")?))
}

/// The next message on `s` that is not part of a packet train: the
/// concentrator sends one behind each ACCEPT, which a real client times and
/// answers, and these raw ones pass over.
fn recv_body(s: &UdpSocket, what: &'static str) -> Result<Body> {
    let mut buf = [0u8; 2048];
    loop {
        let n = s.recv(&mut buf).context(what)?;
        match Message::decode(&buf[..n], &key())?.body {
            Body::RateProbe { .. } => continue,
            body => return Ok(body),
        }
    }
}

/// One probe of `subflow_id` from `s` sent at `sent_us`: the answer's body.
fn probe(s: &UdpSocket, to: SocketAddr, token: u32, subflow_id: u8, sent_us: u64) -> Result<Body> {
    let key = key();
    let psk = &key[..];
    let body = Body::Probe {
        seq: 1,
        sent_us,
        srtt_us: 0,
        min_rtt_us: 0,
        interval_ms: 200,
        bond_mtu: 0,
        rx: RxReport::default(),
    };
    s.send_to(&Message { token, subflow_id, body }.encode_stamped(psk, next_stamp()), to)?;
    recv_body(s, "no answer to a probe")
}

/// Stamps that only grow, as a controller's do.
fn next_stamp() -> u64 {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    LAST.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

/// REJECTs forged by someone without the key, sent to a client's path from
/// the concentrator's own address and port: "unknown connection" (which
/// would make the client drop its connection) fails authentication and is
/// counted; "authentication failed" (read unverified, by design) belongs to
/// no handshake in progress. Neither changes anything: same connection,
/// both subflows up, traffic through the bond.
#[test]
fn forged_rejects_change_nothing() -> Result<()> {
    let bed = Testbed::new(1, 2)?;
    let _conc = start_conc(&bed, &[])?;
    let client = start_client(&bed, 0, &[])?;
    let cl = &bed.clients[0];
    let before = client.status(cl)?;
    let token = before.token().context("no connection")?;
    let path: SocketAddr = before.subflow(0).context("no subflow 0")?.local.parse()?;
    let reject = |reason, nonce_c| {
        Message { token, subflow_id: 0, body: Body::Reject { reason, nonce_c } }.encode(b"not the concentrator's key")
    };
    let forged = [reject(RejectReason::UnknownToken, 7), reject(RejectReason::AuthFailed, 7)];
    bed.conc.run(move || {
        // The concentrator holds its port: the datagrams are written whole
        // on a raw socket (UDP header, no checksum).
        let raw = RawUdp::new(&Testbed::conc_dev(0, 0), Testbed::conc_addr(0, 0))?;
        for m in &forged {
            raw.send(PORT, path, m, 5)?;
        }
        Ok(())
    })?;
    wait_status(&client, cl, "the forged \"unknown connection\" REJECTs were not counted", |s| {
        s.control(ControlCounter::AuthFailed) >= before.control(ControlCounter::AuthFailed) + 5
    })?;
    std::thread::sleep(Duration::from_millis(500));
    let after = client.status(cl)?;
    assert_eq!(after.token(), Some(token), "the same connection: {after}");
    assert_eq!(after.subflows_up(), 2, "{after}");
    assert_eq!(after.control(ControlCounter::Rejoins), before.control(ControlCounter::Rejoins), "{after}");
    assert!(!client.output().contains("reconnecting"), "{}", client.output());
    assert!(ping(cl, Testbed::SERVER_V4, 2), "the bond carries on");
    Ok(())
}

/// A probe or hint captured and sent again is refused and counted, however
/// its stamp is dressed up; the next fresh one is acted on. (A captured hint
/// replayed would otherwise undo `path set`; a captured probe keep a dead
/// subflow up.)
#[test]
fn replayed_probes_and_hints_are_refused_and_counted() -> Result<()> {
    let bed = Testbed::new(1, 1)?;
    let conc = start_conc(&bed, &[])?;
    let to = SocketAddr::new(Testbed::conc_addr(0, 0), PORT);
    let answers = bed.clients[0].run(move || {
        let s = UdpSocket::bind("10.1.0.2:0")?;
        s.set_read_timeout(Some(Duration::from_secs(1)))?;
        let (token, accepted) = first_subflow(&s, to, 9)?;
        ensure!(matches!(accepted, Body::Accept { .. }), "{accepted:?}");
        let key = key();
        let stamped = |body, stamp| Message { token, subflow_id: 0, body }.encode_stamped(&key, stamp);
        let probe = |sent_us, stamp| {
            let rx = RxReport::default();
            let body = Body::Probe { seq: 1, sent_us, srtt_us: 0, min_rtt_us: 0, interval_ms: 200, bond_mtu: 0, rx };
            stamped(body, stamp)
        };
        let mut answers = Vec::new();
        let first = probe(1111, 10);
        for bytes in [first.clone(), first, probe(2222, 9), probe(3333, 11)] {
            s.send_to(&bytes, to)?;
            answers.push(recv_body(&s, "no answer").ok());
        }
        let hint = |mbit: u64, stamp| {
            let path = PathHint { rate_bytes_per_sec: mbit * 125_000, ..PathHint::default() };
            stamped(Body::Hint { path }, stamp)
        };
        let ten = hint(10, 20);
        for bytes in [ten.clone(), hint(20, 21), ten] {
            s.send_to(&bytes, to)?;
        }
        Ok(answers)
    })?;
    assert!(matches!(answers[0], Some(Body::ProbeAck { sent_us: 1111, .. })), "fresh: {:?}", answers[0]);
    assert_eq!(answers[1], None, "the same probe again is not answered");
    assert_eq!(answers[2], None, "nor another under an older stamp");
    assert!(matches!(answers[3], Some(Body::ProbeAck { sent_us: 3333, .. })), "a newer one is: {:?}", answers[3]);
    wait_status(&conc, &bed.conc, "the replayed hint refused", |s| {
        // 20 Mbit/s as the later hint said (the status rounds through the
        // wire's units), not the replayed 10.
        s.control(ControlCounter::Replayed) == 3 && s.subflow(0).is_some_and(|f| (f.rate_mbit - 20.0).abs() < 0.5)
    })?;
    assert!(conc.output().contains("refused a replayed control message"), "{}", conc.output());
    Ok(())
}

/// A subflow whose 4-tuple changes, as when a NAT rebinds: its probes from
/// the new port are answered "unknown subflow" (authenticated, echoing the
/// probe's send time); a JOIN from the new port moves the subflow, and the
/// old port is refused from then on, for probes and data alike. Probes for a
/// connection the concentrator does not know are answered "unknown
/// connection".
#[test]
fn a_subflow_moves_to_a_new_port_by_a_join_and_its_old_port_is_refused() -> Result<()> {
    let bed = Testbed::new(1, 2)?;
    let conc = start_conc(&bed, &[])?;
    let to = SocketAddr::new(Testbed::conc_addr(0, 0), PORT);
    let unknown_before = conc.status(&bed.conc)?.drops(DropReason::UnknownSubflow);
    let bodies = bed.clients[0].run(move || {
        let (old, new) = (UdpSocket::bind("10.1.0.2:0")?, UdpSocket::bind("10.1.0.2:0")?);
        for s in [&old, &new] {
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
        }
        let (token, accepted) = first_subflow(&old, to, 1)?;
        let mut bodies = vec![accepted];
        bodies.push(probe(&old, to, token, 0, 1111)?); // known: answered
        bodies.push(probe(&new, to, token, 0, 2222)?); // the new port: unknown subflow
        bodies.push(handshake(&new, to, token, 0, true, 2)?.1); // JOIN from the new port
        bodies.push(probe(&new, to, token, 0, 3333)?); // now known there
        bodies.push(probe(&old, to, token, 0, 4444)?); // and no longer on the old port
        bodies.push(probe(&new, to, token ^ 1, 0, 5555)?); // a connection nobody has
                                                           // Data from the old port: its tuple is gone from the data path too.
        let inner = Ipv4Hdr::new([10, 99, 0, 2], [10, 200, 0, 2], 17, 64, 20, 0);
        let mut data = bytemuck::bytes_of(&MpHeader::data(token, 0, 0, 0, 0)).to_vec();
        data.extend_from_slice(bytemuck::bytes_of(&inner));
        for _ in 0..5 {
            old.send_to(&data, to)?;
        }
        Ok(bodies)
    })?;
    let reject = |reason, nonce_c| Body::Reject { reason, nonce_c };
    assert!(matches!(bodies[0], Body::Accept { .. }), "{:?}", bodies[0]);
    assert!(matches!(bodies[1], Body::ProbeAck { sent_us: 1111, .. }), "{:?}", bodies[1]);
    assert_eq!(bodies[2], reject(RejectReason::UnknownSubflow, 2222));
    assert!(matches!(bodies[3], Body::Accept { .. }), "{:?}", bodies[3]);
    assert!(matches!(bodies[4], Body::ProbeAck { sent_us: 3333, .. }), "{:?}", bodies[4]);
    assert_eq!(bodies[5], reject(RejectReason::UnknownSubflow, 4444));
    assert_eq!(bodies[6], reject(RejectReason::UnknownToken, 5555));
    let s = conc.status(&bed.conc)?;
    assert_eq!(s.control(ControlCounter::ProbesRefused), 3, "{s}");
    wait_status(&conc, &bed.conc, "data from the old port dropped as an unknown subflow", |s| {
        s.drops(DropReason::UnknownSubflow) == unknown_before + 5
    })?;
    assert!(conc.output().contains("subflow moved to a new address and port"), "{}", conc.output());
    Ok(())
}

/// A flood of completed JOINs, each from a new port, for every subflow id
/// (a client whose NAT rebinds without pause, or a key holder bent on
/// filling the tables): each JOIN moves its subflow, so the connection keeps
/// at most `MAX_SUBFLOWS` subflows and the data path one 4-tuple for each,
/// only the last port of each id is answered, JOINs naming an id past the
/// cap are dropped unanswered (counted malformed), and the concentrator
/// serves on.
#[test]
fn a_flood_of_joins_from_new_ports_leaves_one_tuple_per_subflow() -> Result<()> {
    let bed = Testbed::new(1, 2)?;
    let mut conc = start_conc(&bed, &[])?;
    let to = SocketAddr::new(Testbed::conc_addr(0, 0), PORT);
    let joins = 200usize;
    let past_cap = [MAX_SUBFLOWS as u8, MAX_SUBFLOWS as u8 + 1, 100, 255];
    let flood = bed.clients[0].run(move || {
        let bind = || -> Result<UdpSocket> {
            let s = UdpSocket::bind("10.1.0.2:0")?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            Ok(s)
        };
        let first = bind()?;
        let (token, accepted) = first_subflow(&first, to, 1)?;
        ensure!(matches!(accepted, Body::Accept { .. }), "the first subflow: {accepted:?}");
        // Every socket each subflow id was joined from, in order; all kept
        // open, so every JOIN comes from a port not used before.
        let mut joined: Vec<Vec<UdpSocket>> = (0..MAX_SUBFLOWS).map(|_| Vec::new()).collect();
        joined[0].push(first);
        for n in 0..joins {
            let (s, id) = (bind()?, n % MAX_SUBFLOWS);
            let answer = handshake(&s, to, token, id as u8, true, 1000 + n as u64)?.1;
            ensure!(matches!(answer, Body::Accept { .. }), "JOIN {n} of subflow {id}: {answer:?}");
            joined[id].push(s);
        }
        // HELLOs past the cap, each from a new port, sent ahead of the probes
        // on the same listener: handled by the time the probes are answered.
        let mut unheard = Vec::new();
        for id in past_cap {
            let s = bind()?;
            let hello = Body::Hello {
                join: true,
                nonce_c: 5000 + id as u64,
                key_c: 0,
                path: PathHint::default(),
                prefixes: vec![],
            };
            s.send_to(&Message { token, subflow_id: id, body: hello }.encode(&key()), to)?;
            unheard.push(s);
        }
        let (mut live, mut replaced, mut last) = (Vec::new(), Vec::new(), Vec::new());
        for (id, socks) in joined.iter().enumerate() {
            let sent = 100 + id as u64;
            let newest = socks.last().context("joined")?;
            last.push(newest.local_addr()?);
            live.push(probe(newest, to, token, id as u8, sent)?);
            // The port it had before its last JOIN, and the first it had.
            for s in [&socks[socks.len() - 2], &socks[0]] {
                replaced.push(probe(s, to, token, id as u8, sent)?);
            }
        }
        let past_probe = probe(joined[0].last().context("joined")?, to, token, MAX_SUBFLOWS as u8, 999)?;
        std::thread::sleep(Duration::from_millis(100));
        let mut answered = 0;
        for s in &unheard {
            s.set_nonblocking(true)?;
            let mut buf = [0u8; 2048];
            match s.recv(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
                Ok(_) => answered += 1,
            }
        }
        Ok((token, last, live, replaced, past_probe, answered))
    })?;
    let (token, last, live, replaced, past_probe, answered) = flood;
    let reject = |reason, nonce_c| Body::Reject { reason, nonce_c };
    for (id, answer) in live.iter().enumerate() {
        let sent = 100 + id as u64;
        assert!(matches!(answer, Body::ProbeAck { sent_us, .. } if *sent_us == sent), "subflow {id}: {answer:?}");
        for old in &replaced[2 * id..2 * id + 2] {
            assert_eq!(*old, reject(RejectReason::UnknownSubflow, sent), "a replaced port of subflow {id}");
        }
    }
    assert_eq!(past_probe, reject(RejectReason::UnknownSubflow, 999), "a probe for an id past the cap");
    assert_eq!(answered, 0, "HELLOs for ids past the cap are not answered");
    assert!(conc.proc().wait_timeout(Duration::from_millis(200))?.is_none(), "the concentrator stopped");
    // The moves are logged a line a second, not a line each.
    let moved = conc.output().matches("subflow moved to a new address and port").count();
    assert!((1..10).contains(&moved), "{moved} lines for {joins} moves");

    let s = conc.status(&bed.conc)?;
    assert_eq!(s.connections.len(), 1, "{s}");
    assert_eq!(s.token(), Some(token), "{s}");
    let remotes: Vec<(u32, String)> = s.connections[0].subflows.iter().map(|f| (f.id, f.remote.clone())).collect();
    let want: Vec<(u32, String)> = last.iter().enumerate().map(|(id, a)| (id as u32, a.to_string())).collect();
    assert_eq!(remotes, want, "one subflow per id, from the last port it joined from: {s}");
    let counters = [
        (ControlCounter::Connections, 1),
        (ControlCounter::SubflowsJoined, 1 + joins as u64),
        (ControlCounter::Malformed, past_cap.len() as u64),
        (ControlCounter::ProbesAnswered, MAX_SUBFLOWS as u64),
        (ControlCounter::ProbesRefused, 2 * MAX_SUBFLOWS as u64 + 1),
        (ControlCounter::UnknownToken, 0),
        (ControlCounter::RefusedFull, 0),
        (ControlCounter::EventErrors, 0),
    ];
    for (c, n) in counters {
        assert_eq!(s.control(c), n, "{}: {s}", c.name());
    }

    // The data path holds the live tuples only: every replaced one was removed.
    let maps = mptcp_user::bpfmaps::DataPathMaps::open(&mptcp_user::lifecycle::pin_dir(&conc.name))?;
    let mut tuples: Vec<(u32, u32, u16)> = Vec::new();
    for entry in maps.subflow_by_tuple.iter() {
        let (k, v) = entry?;
        tuples.push((v.token, v.subflow_id, k.remote_port));
    }
    tuples.sort();
    let want: Vec<(u32, u32, u16)> = last.iter().enumerate().map(|(id, a)| (token, id as u32, a.port())).collect();
    assert_eq!(tuples, want, "the data path's tuples: (token, subflow, client port)");

    let other = bed.clients[0].run(move || {
        let s = UdpSocket::bind("10.2.0.2:0")?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        first_subflow(&s, SocketAddr::new(Testbed::conc_addr(0, 1), PORT), 7)
    })?;
    assert!(matches!(other.1, Body::Accept { .. }), "a new connection after the flood: {:?}", other.1);
    assert_eq!(conc.status(&bed.conc)?.connections.len(), 2);
    Ok(())
}

/// A client whose two paths share its traffic 1:1 (weighted), so each
/// carries part of any transfer.
fn both_paths_config() -> Config {
    two_path_config("weighted", |_, p| p.weight = 1)
}

/// A concentrator serving the testbed's clients each under a key of its
/// own (`keys[c]`, a key file) and its own bond addresses as prefixes.
fn start_conc_with_clients(bed: &Testbed, keys: &[String]) -> Result<Instance> {
    let mut c = Config::new(Role::Concentrator);
    c.bond.name = "mpb".into();
    c.bond.addresses = Testbed::CONC_BOND_ADDRS.iter().map(|a| a.parse().unwrap()).collect();
    c.probe.interval_ms = 100;
    c.paths = (0..bed.clients.len())
        .flat_map(|i| (0..bed.uplinks).map(move |k| Testbed::conc_dev(i, k)))
        .map(|interface| PathConfig { interface, ..Default::default() })
        .collect();
    c.clients = keys
        .iter()
        .enumerate()
        .map(|(i, k)| ClientConfig {
            name: format!("client-{i}"),
            key_file: k.into(),
            prefixes: Testbed::client_bond_addrs(i).iter().map(|a| a.parse().unwrap()).collect(),
        })
        .collect();
    let name = format!("{}co", bed.prefix);
    let f = std::env::temp_dir().join(format!("{name}.toml"));
    std::fs::write(&f, toml::to_string(&c)?)?;
    start(&bed.conc, &name, &["--config".into(), f.display().to_string()], "mptcp-user: serving")
}

/// One HELLO (a JOIN of `token`, subflow 1) from `s` under `psk`: the answer.
fn join_with_key(s: &UdpSocket, to: SocketAddr, psk: &[u8], token: u32, nonce_c: u64) -> Result<Body> {
    let hello = Body::Hello { join: true, nonce_c, key_c: 0, path: PathHint::default(), prefixes: vec![] };
    s.send_to(&Message { token, subflow_id: 1, body: hello }.encode(psk), to)?;
    let mut buf = [0u8; 2048];
    let n = s.recv(&mut buf).context("no answer to the JOIN")?;
    Ok(Message::decode(&buf[..n], psk)?.body)
}

/// A concentrator with a `[[client]]` entry per client: each client
/// connects under its own key; one that announces another's address is
/// refused with a clear error and counted, and creates nothing; a JOIN (or
/// a probe) under one client's key for another client's connection is
/// answered exactly as one for a connection nobody has; and the data keys
/// differ, so each bond carries its own client's traffic only.
#[test]
fn each_client_has_its_own_key_prefixes_and_connections() -> Result<()> {
    let bed = Testbed::new(2, 1)?;
    let key_b_hex = "00112233445566778899aabbccddeeff";
    let keys = [key_file(), key_file_holding(key_b_hex, "client-1")];
    let conc = start_conc_with_clients(&bed, &keys)?;
    let start_as = |c: usize, key: &str, extra: &[&str]| {
        start(
            &bed.clients[c],
            &format!("{}c{c}", bed.prefix),
            &client_args(&bed, c, key, extra),
            "mptcp-user: connected",
        )
    };
    let a = start_as(0, &keys[0], &[])?;
    let b = start_as(1, &keys[1], &[])?;
    assert!(ping(&bed.clients[0], Testbed::SERVER_V4, 2) && ping(&bed.clients[1], Testbed::SERVER_V4, 2));
    let s = conc.status(&bed.conc)?;
    assert_eq!(s.connections.len(), 2, "{s}");
    let token_a = a.status(&bed.clients[0])?.token().context("client 0 has no connection")?;
    drop(b); // its connection stays on the concentrator until collected
    let subflows = |s: &Status| s.connections.iter().map(|c| c.subflows.len()).sum::<usize>();
    let before = subflows(&conc.status(&bed.conc)?);

    // Client 1, with its own key, also announcing client 0's address.
    let name = format!("{}c1x", bed.prefix);
    let out = bed.clients[1]
        .command(BIN)
        .args(["up", "--instance", &name])
        .args(client_args(&bed, 1, &keys[1], &["--bond-address", "10.99.0.2/32"]))
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("not among the prefixes"), "{err}");
    assert!(!pins_exist(&name), "a refused start leaves no pins");
    let s = conc.status(&bed.conc)?;
    assert_eq!(s.control(ControlCounter::ForeignPrefix), 1, "{s}");
    assert_eq!(subflows(&s), before, "the refused client created nothing: {s}");
    assert_eq!(a.status(&bed.clients[0])?.token(), Some(token_a), "client 0 keeps its connection");
    assert!(ping(&bed.clients[0], Testbed::SERVER_V4, 2), "and its traffic");

    // Client 1's key, client 0's connection: answered as a token nobody has.
    let to = SocketAddr::new(Testbed::conc_addr(1, 0), PORT);
    let psk_b = mptcp_user::key::Key::from_hex(key_b_hex)?.bytes().to_vec();
    let (foreign, unknown) = bed.clients[1].run(move || {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok((join_with_key(&s, to, &psk_b, token_a, 41)?, join_with_key(&s, to, &psk_b, token_a ^ 0x5a5a, 42)?))
    })?;
    assert_eq!(foreign, Body::Reject { reason: RejectReason::UnknownToken, nonce_c: 41 });
    assert_eq!(unknown, Body::Reject { reason: RejectReason::UnknownToken, nonce_c: 42 });
    let s = conc.status(&bed.conc)?;
    assert_eq!(subflows(&s), before, "nothing joined: {s}");
    Ok(())
}

/// Where the concentrator sees subflow `id` come from.
fn seen_from(conc: &Instance, ns: &Netns, id: u32) -> Result<SocketAddr> {
    Ok(sub(&conc.status(ns)?, id).remote.parse()?)
}

/// Both uplinks cross a NAT router (the kernel's masquerade): handshakes,
/// probes and data all cross it, the concentrator sees the router's public
/// address, and a transfer is spread over both paths intact.
#[test]
fn both_paths_behind_nat_carry_a_transfer() -> Result<()> {
    let bed = Testbed::with_nat(1, 2)?;
    let conc = start_conc(&bed, &[])?;
    let cl = &bed.clients[0];
    let client = start_client_config(&bed, 0, &both_paths_config())?;
    for k in 0..2 {
        let from = seen_from(&conc, &bed.conc, k as u32)?;
        assert_eq!(from.ip(), format!("10.{}.0.2", k + 1).parse::<std::net::IpAddr>()?, "the router's public address");
        // Behind the NAT, from the path's own port (the kernel's draw, not 7495).
        let local: SocketAddr = sub(&client.status(cl)?, k as u32).local.parse()?;
        assert_eq!(local.ip(), bed.client_addr(0, k), "the path's private address");
        assert_ne!(local.port(), PORT);
    }
    assert!(ping(cl, Testbed::SERVER_V4, 3), "ping across the NAT");
    let t = tcp_bulk(&bed.server, cl, server(5001), 8 << 20, Duration::from_secs(60))?;
    eprintln!("8 MiB over two NATed paths in {:?}", t.duration);
    let s = client.status(cl)?;
    let (b0, b1) = (sub(&s, 0).tx_bytes, sub(&s, 1).tx_bytes);
    assert!(b0 > 1 << 20 && b1 > 1 << 20, "both paths carried the transfer: {b0} / {b1}");
    Ok(())
}

/// One path's NAT mapping changes mid-transfer (the router forgets it and
/// maps the path to a new public port). The concentrator answers the
/// client's next probe from the new port "unknown subflow", the client
/// JOINs again, the subflow moves to the new port, and the transfer
/// completes intact. The other path is untouched.
#[test]
fn a_transfer_survives_a_nat_rebinding_of_one_path() -> Result<()> {
    let bed = Testbed::with_nat(1, 2)?;
    bed.shape_uplinks(0, 30)?;
    let conc = start_conc(&bed, &[])?;
    let cl = &bed.clients[0];
    let client = start_client_config(&bed, 0, &both_paths_config())?;
    let (old0, old1) = (seen_from(&conc, &bed.conc, 0)?, seen_from(&conc, &bed.conc, 1)?);
    let new_ports = 20000..=29999u16;
    assert!(!new_ports.contains(&old0.port()), "masquerade kept the port: {old0}");
    let times = (Duration::from_millis(1000), Duration::from_secs(90));
    let (moved, t) = transfer_across(&bed, cl, 5001, 16 << 20, times, || {
        let rebound = Instant::now();
        bed.set_nat(0, Some((0, new_ports.clone())))?;
        wait_status(&conc, &bed.conc, "subflow 0 moved to its new public port", |s| {
            s.subflow(0).is_some_and(|f| {
                f.remote.parse::<SocketAddr>().is_ok_and(|a| new_ports.contains(&a.port()))
                    && f.state == mptcp_user::status::SubflowState::Up
            })
        })?;
        Ok(rebound.elapsed())
    })?;
    eprintln!("subflow 0 carried by its new NAT mapping {moved:?} after the rebinding");
    eprintln!("16 MiB across a NAT rebinding: {:?}", t.duration);
    assert!(conc.output().contains("subflow moved to a new address and port"), "{}", conc.output());
    assert_eq!(seen_from(&conc, &bed.conc, 1)?, old1, "the other path kept its mapping");
    let s = client.status(cl)?;
    assert!(s.control(ControlCounter::Rejoins) >= 1, "{s}");
    assert_eq!(s.subflows_up(), 2, "{s}");
    Ok(())
}

/// `args` without the tests' usual `--probe-interval-ms`: the controller's defaults.
fn with_default_probing(args: Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == "--probe-interval-ms" {
            it.next();
        } else {
            out.push(a);
        }
    }
    out
}

/// The path a TCP flow uses dies silently (the emulated link drops
/// everything; both ends keep their carrier) under the default probe
/// settings: the subflow is given up, the flow moves to the survivor and
/// completes. The flow's longest stall is printed; it is a benchmark figure
/// (`failover-defaults`), not asserted here.
#[test]
fn a_path_dying_under_load_with_the_default_configuration_hands_over_to_the_survivor() -> Result<()> {
    use mptcp_testbed::traffic::{bulk_send, Amount, BulkSink};
    use mptcp_testbed::wan::{Direction, Shape};
    let bed = Testbed::with_wan(1, 2)?;
    for (link, delay_ms) in [(0, 5.0), (1, 15.0)] {
        let shape = Shape { rate_mbit: 20.0, delay_ms, ..Shape::default() };
        for dir in [Direction::Up, Direction::Down] {
            bed.wan().set(link, dir, &shape)?;
        }
    }
    let name = |tag: &str| format!("{}{tag}", bed.prefix);
    let conc = start(&bed.conc, &name("co"), &with_default_probing(conc_args(&bed, &[])), "mptcp-user: serving")?;
    let cl = &bed.clients[0];
    let client_args = with_default_probing(client_args(&bed, 0, &key_file(), &[]));
    let client = start(cl, &name("c0"), &client_args, "mptcp-user: connected")?;
    wait_subflows(&client, cl, 2)?;
    let epoch = Instant::now();
    let sink = BulkSink::start(
        &bed.server,
        "0.0.0.0:5001".parse()?,
        mptcp_testbed::test_stream(),
        1,
        epoch,
        Duration::from_millis(100),
        Duration::from_secs(30),
    )?;
    std::thread::scope(|sc| -> Result<()> {
        let sender = sc.spawn(|| {
            let send = Amount::For(Duration::from_secs(6));
            bulk_send(cl, server(5001), mptcp_testbed::test_stream(), 1, send, Duration::from_secs(20))
        });
        std::thread::sleep(Duration::from_secs(2));
        let before = sub(&client.status(cl)?, 0).tx_bytes;
        assert!(before > 1 << 20, "the flow runs on the near path: {}", client.status(cl)?);
        bed.wan().set_up(0, false);
        sender.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
        Ok(())
    })?;
    let r = sink.join()?;
    eprintln!("TCP flow's longest stall across the failure, default probing: {:?}", r.longest_gap);
    assert!(r.complete, "the flow completed: {} bytes", r.bytes);
    let s = client.status(cl)?;
    assert_eq!(sub(&s, 0).state, mptcp_user::status::SubflowState::Down, "{s}");
    assert!(sub(&s, 1).tx_bytes > 1 << 20, "the survivor carried the rest: {s}");
    let c = conc.status(&bed.conc)?;
    assert_eq!(sub(&c, 0).state, mptcp_user::status::SubflowState::Down, "the concentrator gave it up too: {c}");
    Ok(())
}

/// An uplink without an Ethernet header (a TUN, as an LTE modem's raw-IP
/// `wwan0`): `up` sees it and attaches the tc ingress program there instead
/// of XDP, and ICMP, TCP and UDP, IPv4 and IPv6 inside, cross the bond over it
/// both ways.
#[test]
fn a_raw_ip_uplink_carries_tcp_udp_and_icmp() -> Result<()> {
    let bed = Testbed::new(1, 1)?;
    let _raw = mptcp_testbed::rawip::RawIpUplink::replace(&bed, 0, 0)?;
    let conc = start_conc(&bed, &[])?;
    let cl = &bed.clients[0];
    let client = start_client(&bed, 0, &[])?;
    assert!(client.output().contains("no Ethernet header (raw IP)"), "{}", client.output());
    assert!(ping(cl, Testbed::SERVER_V4, 3), "IPv4 ping over the raw-IP uplink\n{}", client.status(cl)?);
    assert!(ping(cl, Testbed::SERVER_V6, 3), "IPv6 ping over the raw-IP uplink\n{}", client.status(cl)?);
    let t = tcp_bulk(&bed.server, cl, server(5001), 8 << 20, Duration::from_secs(60))?;
    eprintln!(
        "8 MiB over a raw-IP uplink in {:?}: {:.0} Mbit/s",
        t.duration,
        (8u64 << 23) as f64 / t.duration.as_secs_f64() / 1e6
    );
    let (got, dup) = mptcp_testbed::udp_stream(&bed.server, cl, server(5003), 500, Duration::from_micros(500))?;
    assert_eq!((got, dup), (500, 0), "UDP over the raw-IP uplink");
    let (s, c) = (client.status(cl)?, conc.status(&bed.conc)?);
    for d in [DropReason::DecapFailed, DropReason::UnknownSubflow, DropReason::BadToken, DropReason::TooBig] {
        assert_eq!(s.drops(d), 0, "client drops {}: {s}", d.name());
        assert_eq!(c.drops(d), 0, "concentrator drops {}: {c}", d.name());
    }
    assert!(sub(&s, 0).rx_packets > 100, "the return traffic (echo replies, ACKs) came in on the raw-IP uplink: {s}");
    Ok(())
}

/// The bond device's MTU in `ns`.
fn device_mtu(ns: &Netns, dev: &str) -> Result<u32> {
    Ok(ns.sh(&format!("cat /sys/class/net/{dev}/mtu"))?.trim().parse()?)
}

/// Wait (20 s) until the client's bond MTU is `want`.
fn wait_bond_mtu(ns: &Netns, want: u32) -> Result<Duration> {
    let start = Instant::now();
    loop {
        let mtu = device_mtu(ns, "mpb")?;
        if mtu == want {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(20) {
            bail!("the bond MTU stayed {mtu}, {want} expected");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One path crosses a 1400-byte hop its endpoints cannot see (their own
/// links say 1500). The client finds the path's MTU with padded probes
/// before any data could draw an ICMP, the bond's MTU follows it, and
/// full-size TCP crosses without stalling. When the other path's MTU then
/// drops mid-transfer, the router's ICMP about a data packet starts a search
/// at once, its probes confirm the new size, and the transfer completes.
#[test]
fn path_mtu_is_found_with_padded_probes_and_the_bond_follows_it() -> Result<()> {
    let bed = Testbed::with_nat(1, 2)?;
    bed.set_hop_mtu(0, 0, 1400)?;
    let conc = start_conc(&bed, &[])?;
    let cl = &bed.clients[0];
    let client = start_client_config(&bed, 0, &both_paths_config())?;
    // 1400 less the IPv4 encapsulation (60 bytes): 1340.
    let found = wait_bond_mtu(cl, bond_mtu(1400, FAMILY_V4))?;
    eprintln!("bond MTU {} {found:?} after the subflows were up", bond_mtu(1400, FAMILY_V4));
    assert!(client.output().contains("path MTU"), "{}", client.output());
    let t = tcp_bulk(&bed.server, cl, server(5001), 8 << 20, Duration::from_secs(30))?;
    eprintln!("8 MiB with a 1400-byte hop in {:?}", t.duration);

    // The other path's MTU drops under a transfer: the router's ICMP
    // "fragmentation needed" (about a data packet) starts a search at once,
    // its probes confirm the new size, the bond follows.
    let times = (Duration::from_millis(500), Duration::from_secs(60));
    let (found, t) = transfer_across(&bed, cl, 5002, 16 << 20, times, || {
        bed.set_hop_mtu(0, 1, 1380)?;
        wait_bond_mtu(cl, bond_mtu(1380, FAMILY_V4))
    })?;
    eprintln!("a drop to 1380 found after {found:?}; 16 MiB across it in {:?}", t.duration);
    assert!(client.output().contains("ICMP says the path is smaller"), "{}", client.output());
    let s = client.status(cl)?;
    assert_eq!(s.subflows_up(), 2, "{s}");
    let _ = conc;
    Ok(())
}

/// A path that carries less towards the client than from it (the router
/// drops, without ICMP, what it would forward to the client above 1380 bytes;
/// the other way 1500 pass): the concentrator's answers to the MTU probes are
/// as large as the probes, so the search finds the smaller direction and the
/// bond follows it.
#[test]
fn a_smaller_mtu_towards_the_client_only_is_found() -> Result<()> {
    let bed = Testbed::with_nat(1, 2)?;
    bed.set_mtu_towards_client(0, &[0], 1380)?;
    let _conc = start_conc(&bed, &[])?;
    let cl = &bed.clients[0];
    let _client = start_client_config(&bed, 0, &both_paths_config())?;
    // 1380 less the IPv4 encapsulation (60 bytes): 1320; with answers
    // smaller than the probes, 1500 would have been taken (1440).
    let found = wait_bond_mtu(cl, bond_mtu(1380, FAMILY_V4))?;
    eprintln!("bond MTU {} {found:?} after the subflows were up", bond_mtu(1380, FAMILY_V4));
    let t = tcp_bulk(&bed.server, cl, server(5001), 8 << 20, Duration::from_secs(30))?;
    eprintln!("8 MiB with a 1380-byte limit towards the client in {:?}", t.duration);
    Ok(())
}

/// Both paths carry less towards the client than the concentrator's own
/// links (1380 bytes, dropped without ICMP above that): the client's probes
/// report its bond MTU, and the concentrator routes the client's prefix with
/// it, so a large datagram from the server (don't-fragment clear) is
/// fragmented at the concentrator to fit, and arrives; before, it was
/// encapsulated whole and vanished on the path.
#[test]
fn the_concentrator_routes_a_client_with_its_bond_mtu() -> Result<()> {
    let bed = Testbed::with_nat(1, 2)?;
    bed.set_mtu_towards_client(0, &[0, 1], 1380)?;
    let conc = start_conc(&bed, &[])?;
    let cl = &bed.clients[0];
    let _client = start_client_config(&bed, 0, &both_paths_config())?;
    let mtu = bond_mtu(1380, FAMILY_V4);
    wait_bond_mtu(cl, mtu)?;
    let route = |ns: &Netns| ns.sh("ip route show 10.99.0.2");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !route(&bed.conc)?.contains(&format!("mtu {mtu}")) {
        assert!(Instant::now() < deadline, "no route with the client's MTU: {}", route(&bed.conc)?);
        std::thread::sleep(Duration::from_millis(100));
    }
    // 1400-byte datagrams (1428 with headers, over the client's 1320).
    let receiver = cl.run(|| Ok(UdpSocket::bind("10.99.0.2:5004")?))?;
    receiver.set_read_timeout(Some(Duration::from_secs(2)))?;
    bed.server.run(|| {
        use std::os::fd::AsRawFd;
        let s = UdpSocket::bind("0.0.0.0:0")?;
        let dont: libc::c_int = libc::IP_PMTUDISC_DONT;
        // SAFETY: setsockopt with an int value on a socket we own.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                (&dont as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        anyhow::ensure!(rc == 0, "IP_MTU_DISCOVER: {}", std::io::Error::last_os_error());
        for n in 0..10u8 {
            s.send_to(&[n; 1400], "10.99.0.2:5004")?;
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    })?;
    let mut got = 0;
    let mut buf = [0u8; 2000];
    while let Ok(n) = receiver.recv(&mut buf) {
        assert_eq!(n, 1400);
        got += 1;
    }
    assert!(got >= 9, "{got} of 10 large datagrams arrived");
    drop(conc);
    Ok(())
}

/// TCP SYNs crossing the bond get their MSS clamped, both ways: with routes
/// on both TCP ends that claim 1500-byte packets fit (so each stack announces
/// MSS 1460 and would send segments that size, which no path carries once
/// encapsulated), the connection's send MSS on both ends is at most what the
/// bond MTU allows, and full-size transfers both ways complete. Without the
/// clamp the 1500-byte segments are dropped at the bond and the transfer
/// stalls.
#[test]
fn syns_crossing_the_bond_get_their_mss_clamped_both_ways() -> Result<()> {
    use mptcp_common::mtu::mss_limit;
    use mptcp_common::wire::FAMILY_V4;
    use nix::sys::socket::{getsockopt, sockopt::TcpMaxSeg};
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    let bed = Testbed::new(1, 2)?;
    let _conc = start_conc(&bed, &[])?;
    let cl = &bed.clients[0];
    let _client = start_client(&bed, 0, &[])?;
    let bond_mtu = device_mtu(cl, "mpb")?;
    let limit = mss_limit(bond_mtu, FAMILY_V4) as u32;
    cl.sh("ip route replace 10.200.0.0/24 dev mpb mtu lock 1500 advmss 1460")?;
    let client_net = Testbed::client_bond_addrs(0)[0].split('/').next().unwrap_or_default().to_string();
    bed.server.sh(&format!("ip route replace {client_net}/32 $(ip route get {client_net} | head -1 | sed -e 's/^[^ ]* //' -e 's/ src .*//') mtu lock 1500 advmss 1460"))?;
    const LEN: usize = 4 << 20;
    let listener = bed.server.run(|| Ok(TcpListener::bind("0.0.0.0:5003")?))?;
    let server = bed.server.spawn_thread(move || -> Result<(u32, usize)> {
        let (mut s, _) = listener.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        s.set_write_timeout(Some(Duration::from_secs(20)))?;
        let mss = getsockopt(&s, TcpMaxSeg)?;
        let mut got = vec![0u8; LEN];
        s.read_exact(&mut got)?;
        s.write_all(&got)?;
        Ok((mss, got.len()))
    });
    let (client_mss, echoed) = cl.run(|| -> Result<(u32, bool)> {
        let mut s = TcpStream::connect(support::server(5003))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        s.set_write_timeout(Some(Duration::from_secs(20)))?;
        let mss = getsockopt(&s, TcpMaxSeg)?;
        let sent = mptcp_testbed::payload(LEN, 3);
        s.write_all(&sent).context("the transfer stalled")?;
        let mut back = vec![0u8; LEN];
        s.read_exact(&mut back).context("the echo stalled")?;
        Ok((mss, back == sent))
    })?;
    let (server_mss, received) = server.join().map_err(|_| anyhow::anyhow!("server thread panicked"))??;
    assert!(echoed && received == LEN, "both directions carried {LEN} bytes intact");
    assert!(client_mss <= limit, "client's send MSS {client_mss} > {limit} (bond MTU {bond_mtu})");
    assert!(server_mss <= limit, "server's send MSS {server_mss} > {limit} (bond MTU {bond_mtu})");
    Ok(())
}
