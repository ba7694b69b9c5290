//! The traffic generators choose the end hosts' TCP congestion control per
//! socket, for plain TCP and for every MPTCP subflow (the join included),
//! without any sysctl: on a fresh machine a namespace may not make `cubic`
//! its default at all. Run as root.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use mptcp_testbed::traffic::{self, Amount, BulkSink, Stream, Transport};
use mptcp_testbed::{Netns, Testbed};

/// One established TCP socket (an MPTCP subflow is one too) as `ss` shows it.
#[derive(Debug, PartialEq)]
struct Seen {
    local: String,
    peer: String,
    congestion: String,
}

/// The established TCP sockets on `port` in `ns`, with their congestion control.
fn sockets_on(ns: &Netns, port: u16) -> Result<Vec<Seen>> {
    let out = ns.sh(&format!("ss -tinH state established '( sport = :{port} or dport = :{port} )'"))?;
    Ok(parse_ss(&out))
}

/// `ss -tinH` prints a socket line, then an indented line of TCP info whose
/// first word is the congestion control.
fn parse_ss(out: &str) -> Vec<Seen> {
    let mut seen = Vec::new();
    let mut socket: Option<(String, String)> = None;
    for line in out.lines() {
        if line.starts_with(char::is_whitespace) {
            if let (Some((local, peer)), Some(cc)) = (socket.take(), line.split_whitespace().next()) {
                seen.push(Seen { local, peer, congestion: cc.to_string() });
            }
        } else {
            // Without a state column (`state established` filters): recv-q send-q local peer.
            let f: Vec<&str> = line.split_whitespace().collect();
            socket = (f.len() >= 4).then(|| (f[2].to_string(), f[3].to_string()));
        }
    }
    seen
}

/// Run a bulk flow of `stream` from `client` to `dst` and watch the sockets of
/// both ends while it runs: every distinct socket, with its congestion control.
fn watch_flow(client: &Netns, server: &Netns, dst: SocketAddr, stream: &Stream) -> Result<(Vec<Seen>, Vec<Seen>)> {
    let epoch = Instant::now();
    let bind: SocketAddr = format!("0.0.0.0:{}", dst.port()).parse()?;
    // The sink waits well past the 2 s of sending: once in a full suite run a
    // flow's end (an MPTCP DATA_FIN) took longer than the 10 s it had.
    let sink =
        BulkSink::start(server, bind, stream.clone(), 1, epoch, Duration::from_millis(100), Duration::from_secs(30))?;
    let (mut at_client, mut at_server) = (Vec::new(), Vec::new());
    std::thread::scope(|scope| -> Result<()> {
        let sender = scope.spawn(|| {
            traffic::bulk_send(
                client,
                dst,
                stream.clone(),
                1,
                Amount::For(Duration::from_secs(2)),
                Duration::from_secs(15),
            )
        });
        while !sender.is_finished() {
            for (ns, seen) in [(client, &mut at_client), (server, &mut at_server)] {
                for s in sockets_on(ns, dst.port())? {
                    match seen.iter_mut().find(|o: &&mut Seen| o.local == s.local && o.peer == s.peer) {
                        Some(old) => *old = s,
                        None => seen.push(s),
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        sender.join().map_err(|_| anyhow::anyhow!("sender panicked"))?
    })?;
    let report = sink.join()?;
    ensure!(
        report.bytes > 0 && report.complete,
        "the flow delivered {} bytes, complete: {}",
        report.bytes,
        report.complete
    );
    Ok((at_client, at_server))
}

#[test]
fn streams_use_the_congestion_control_asked_for_on_every_socket_and_subflow() -> Result<()> {
    let bed = Testbed::new(1, 2)?;
    // The congestion control is what is tested, not the rate: unshaped, a
    // flow pushed some 300 MB through the veths in its 2 s, and twice in
    // full-suite runs an MPTCP flow's end (its DATA_FIN) then did not arrive
    // within the sink's 30 s. At 50 Mbit/s a flow is some 25 MB.
    bed.shape_uplinks(0, 50)?;
    let (client, conc) = (&bed.clients[0], &bed.conc);
    // MPTCP: the listener's side announces its second address, so the
    // client's path manager opens a second subflow (a join) to it.
    for ns in [client, conc] {
        ns.sh("sysctl -qw net.mptcp.enabled=1 && ip mptcp limits set subflow 2 add_addr_accepted 2")?;
    }
    let second = Testbed::conc_addr(0, 1);
    conc.sh(&format!("ip mptcp endpoint add {second} dev {} signal", Testbed::conc_dev(0, 1)))?;
    let defaults = |ns: &Netns| ns.sh("sysctl -n net.ipv4.tcp_congestion_control");
    let before = (defaults(client)?, defaults(conc)?);

    let dst = SocketAddr::new(Testbed::conc_addr(0, 0), 5301);
    // Two, so at least one differs from whatever the namespaces' default is.
    for cc in ["reno", "cubic"] {
        for transport in [Transport::Tcp, Transport::Mptcp] {
            let stream = Stream::new(transport, cc);
            let (at_client, at_server) = watch_flow(client, conc, dst, &stream)?;
            let subflows = if transport == Transport::Mptcp { 2 } else { 1 };
            for (end, seen) in [("client", &at_client), ("server", &at_server)] {
                assert!(
                    seen.len() >= subflows,
                    "{transport:?}/{cc}: {end} had {seen:?}, expected {subflows} socket(s)"
                );
                assert!(seen.iter().all(|s| s.congestion == cc), "{transport:?}/{cc}: {end} had {seen:?}");
            }
            if transport == Transport::Mptcp {
                assert!(
                    at_client.iter().any(|s| s.peer.starts_with(&second.to_string())),
                    "no subflow joined {second}: {at_client:?}"
                );
            }
        }
    }
    // Nothing outside the sockets changed.
    assert_eq!((defaults(client)?, defaults(conc)?), before);
    Ok(())
}

#[test]
fn a_congestion_control_the_kernel_lacks_is_refused_naming_it() -> Result<()> {
    let ns = Netns::new(&format!("{}cc", mptcp_testbed::unique_prefix()))?;
    let stream = Stream::new(Transport::Tcp, "no_such_cc");
    let err = ns.run(move || stream.socket("127.0.0.1:1".parse()?).map(|_| ())).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("\"no_such_cc\"") && msg.contains("offers"), "{msg}");
    Ok(())
}

#[test]
fn ss_output_is_read_per_socket() {
    let out = "0 0 10.1.0.2:40000 10.1.0.1:5301\n\t cubic wscale:7,7 rto:204\n0 0 10.2.0.2:40001 10.2.0.1:5301 \n\t reno wscale:7,7\n";
    let seen = parse_ss(out);
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0],
        Seen { local: "10.1.0.2:40000".into(), peer: "10.1.0.1:5301".into(), congestion: "cubic".into() }
    );
    assert_eq!(seen[1].congestion, "reno");
}
