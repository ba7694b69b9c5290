//! Native MPTCP mode on the kernel's own Multipath TCP, in namespaces. So
//! far: the path manager's endpoints and limits written and read back over
//! generic netlink, as `ip mptcp` shows them; a client's paths set up so an
//! unmodified MPTCP peer gets one subflow per path, and removed again. Run
//! as root.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use anyhow::{ensure, Context, Result};
use mptcp_testbed::{payload, unique_prefix, Netns, Testbed};
use mptcp_user::native::paths::{self, Applied, NativePath, Side};
use mptcp_user::native::pm::{Endpoint, EndpointFlags, Limits, PathManager};
use mptcp_user::netdev::Net;
use sha2::{Digest, Sha256};

/// Run `f` with a path manager opened in `ns`, on a runtime of its own.
fn in_ns<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce(PathManager) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>>>> + Send + 'static,
) -> Result<T> {
    ns.run(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async move { f(PathManager::open()?).await })
    })
}

#[test]
fn endpoints_and_limits_are_written_and_read_back() -> Result<()> {
    let ns = Netns::new(&format!("{}pm", unique_prefix()))?;
    ns.sh("sysctl -qw net.mptcp.enabled=1 && ip link add pmv0 type veth peer name pmv1 && ip link set pmv0 up")?;
    let ifindex: u32 = ns.sh("cat /sys/class/net/pmv0/ifindex")?.trim().parse()?;
    let client_path = Endpoint {
        id: 1,
        addr: "10.9.0.1".parse()?,
        ifindex: Some(ifindex),
        flags: EndpointFlags { subflow: true, ..Default::default() },
    };
    let announced = Endpoint {
        id: 2,
        addr: "fd09::1".parse()?,
        ifindex: None,
        flags: EndpointFlags { signal: true, backup: true, ..Default::default() },
    };
    let (a, b) = (client_path.clone(), announced.clone());
    let (seen, limits) = in_ns(&ns, move |mut pm| {
        Box::pin(async move {
            pm.flush().await?;
            pm.set_limits(Limits { subflows: 2, add_addr_accepted: 3 }).await?;
            pm.add_endpoint(&a).await?;
            pm.add_endpoint(&b).await?;
            Ok((pm.endpoints().await?, pm.limits().await?))
        })
    })?;
    assert_eq!(seen, vec![client_path.clone(), announced.clone()]);
    assert_eq!(limits, Limits { subflows: 2, add_addr_accepted: 3 });
    let shown = ns.sh("ip mptcp endpoint show; ip mptcp limits show")?;
    for line in ["10.9.0.1 id 1 subflow dev pmv0", "fd09::1 id 2 signal backup", "add_addr_accepted 3 subflows 2"] {
        assert!(shown.contains(line), "`ip mptcp` does not show {line:?}:\n{shown}");
    }

    // Backup on and off; refusals name what was refused; removal and flush.
    let errors = in_ns(&ns, move |mut pm| {
        Box::pin(async move {
            pm.set_backup(1, true).await?;
            let backed = pm.endpoints().await?[0].flags.backup;
            pm.set_backup(1, false).await?;
            let unbacked = !pm.endpoints().await?[0].flags.backup;
            let again = pm.add_endpoint(&client_path).await.map_err(|e| format!("{e:#}"));
            let over = pm.set_limits(Limits { subflows: 9, add_addr_accepted: 0 }).await.map_err(|e| format!("{e:#}"));
            pm.remove_endpoint(2).await?;
            let gone = pm.endpoints().await?.iter().all(|e| e.id != 2);
            let twice = pm.remove_endpoint(2).await.map_err(|e| format!("{e:#}"));
            pm.flush().await?;
            let none = pm.endpoints().await?.is_empty();
            Ok((backed && unbacked && gone && none, again, over, twice))
        })
    })?;
    let (changed, again, over, twice) = errors;
    assert!(changed, "backup flag, removal or flush did not take");
    assert!(again.as_ref().is_err_and(|e| e.contains("endpoint 1")), "adding id 1 twice: {again:?}");
    assert!(over.as_ref().is_err_and(|e| e.contains("at most 8")), "limits above the kernel's: {over:?}");
    assert!(twice.as_ref().is_err_and(|e| e.contains("endpoint 2")), "removing id 2 twice: {twice:?}");
    assert_eq!(ns.sh("ip mptcp endpoint show")?.trim(), "", "flushed");
    Ok(())
}

/// `IPPROTO_MPTCP`: a socket of the kernel's Multipath TCP.
const IPPROTO_MPTCP: i32 = 262;

fn mptcp_socket() -> Result<socket2::Socket> {
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::from(IPPROTO_MPTCP)),
    )?;
    Ok(s)
}

/// An MPTCP counter of `ns` (absolute, its history untouched).
fn mptcp_counter(ns: &Netns, name: &str) -> Result<u64> {
    let out = ns.sh(&format!("nstat -asz {name}"))?;
    let line = out.lines().find(|l| l.starts_with(name)).with_context(|| format!("no {name} in {out}"))?;
    Ok(line.split_whitespace().nth(1).context("no value")?.parse()?)
}

/// 4 MB over MPTCP from `client` to a listener in `server` at `to`,
/// checked by SHA-256; all but the first 64 kB written once the client saw
/// `joins` subflows join (within 5 s: a join comes once the connection is
/// fully established, and one that ended first gets none). The listener is
/// the kernel's MPTCP, unmodified.
fn mptcp_transfer(server: &Netns, client: &Netns, to: SocketAddr, joins: u64) -> Result<()> {
    let data = payload(4 << 20, 7);
    let want: [u8; 32] = Sha256::digest(&data).into();
    let listen = SocketAddr::new("0.0.0.0".parse()?, to.port());
    let server = server.spawn_thread(move || {
        let l = {
            let s = mptcp_socket()?;
            s.set_reuse_address(true).context("SO_REUSEADDR")?;
            s.bind(&listen.into()).context("bind")?;
            s.listen(1).context("listen")?;
            TcpListener::from(s)
        };
        let (mut c, _) = l.accept().context("accept")?;
        let mut got = vec![];
        c.read_to_end(&mut got).context("read")?;
        Ok(<[u8; 32]>::from(Sha256::digest(&got)))
    });
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let writer = client.spawn_thread(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut c = loop {
            let s = mptcp_socket()?;
            match s.connect(&to.into()) {
                Ok(()) => break TcpStream::from(s),
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                Err(e) => return Err(anyhow::Error::from(e).context("connect")),
            }
        };
        // The first data makes the connection fully established, which the
        // joins wait for; the rest is written once they came.
        let (head, rest) = data.split_at(64 << 10);
        c.write_all(head).context("write")?;
        wait.recv_timeout(std::time::Duration::from_secs(10)).context("never told to write")?;
        for chunk in rest.chunks(64 << 10) {
            c.write_all(chunk).context("write")?;
        }
        Ok(())
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while mptcp_counter(client, "MPTcpExtMPJoinSynAckRx")? < joins && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = go.send(());
    writer.join().map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    let got = server.join().map_err(|_| anyhow::anyhow!("server thread panicked"))??;
    ensure!(got == want, "the data arrived changed");
    Ok(())
}

/// Client 0's uplinks as native paths.
fn client_paths(bed: &Testbed) -> Result<Vec<NativePath>> {
    let cl = &bed.clients[0];
    (0..bed.uplinks)
        .map(|k| {
            let ifindex = cl.sh(&format!("cat /sys/class/net/{}/ifindex", Testbed::client_dev(k)))?.trim().parse()?;
            Ok(NativePath { ifindex, addr: bed.client_addr(0, k), gateway: bed.client_gateway(0, k), backup: false })
        })
        .collect()
}

/// Set up (or, with `Some(applied)`, tear down) native paths in `ns`.
fn native_paths(ns: &Netns, side: Side, paths: Vec<NativePath>, undo: Option<Applied>) -> Result<Applied> {
    ns.run(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async move {
            let (mut pm, net) = (PathManager::open()?, Net::new()?);
            match undo {
                Some(a) => paths::teardown(&mut pm, &net, &a).await.map(|_| a),
                None => paths::setup(&mut pm, &net, side, &paths).await,
            }
        })
    })
}

/// Nothing of native mode's left in `ns`: no endpoint, rule or table route.
fn nothing_left(ns: &Netns) -> Result<()> {
    let shown = ns.sh("ip mptcp endpoint show; ip rule show; ip route show table 7600; ip route show table 7601")?;
    ensure!(!shown.contains(" id ") && !shown.contains("lookup 76"), "left behind:\n{shown}");
    Ok(())
}

/// The client's uplinks set up as native paths: a connection to an
/// unmodified MPTCP server (the kernel's, in its own namespace) starts with
/// MP_CAPABLE on the first uplink and gets one MP_JOIN for the second, and 4
/// MB cross intact. Torn down, nothing is left and the limits are as
/// before; a setup that fails on its second path leaves nothing either.
#[test]
fn an_mptcp_peer_gets_a_subflow_per_path_and_nothing_is_left() -> Result<()> {
    let bed = Testbed::new(1, 2)?;
    let cl = &bed.clients[0];
    // The first subflow's route is the host's own; the server is the
    // kernel's MPTCP with room for joins.
    cl.sh(&format!("ip route add 10.200.0.0/24 via {} dev {}", bed.client_gateway(0, 0), Testbed::client_dev(0)))?;
    cl.sh("sysctl -qw net.mptcp.enabled=1")?;
    bed.server.sh("sysctl -qw net.mptcp.enabled=1 && ip mptcp limits set subflow 8 add_addr_accepted 8")?;
    let limits_before = cl.sh("ip mptcp limits show")?;
    let applied = native_paths(cl, Side::Client, client_paths(&bed)?, None).context("setup")?;
    assert_eq!(applied.paths.len(), 2);

    mptcp_transfer(&bed.server, cl, format!("{}:5400", Testbed::SERVER_V4).parse()?, 1)?;
    assert_eq!(mptcp_counter(cl, "MPTcpExtMPCapableSYNACKRX")?, 1, "not an MPTCP connection");
    assert_eq!(mptcp_counter(cl, "MPTcpExtMPJoinSynAckRx")?, 1, "not one join for the second path");

    native_paths(cl, Side::Client, vec![], Some(applied)).context("teardown")?;
    nothing_left(cl)?;
    assert_eq!(cl.sh("ip mptcp limits show")?, limits_before, "limits not put back");

    // A second path that cannot be set up (no such device): nothing left.
    let mut bad = client_paths(&bed)?;
    bad[1].ifindex = 9999;
    let e = native_paths(cl, Side::Client, bad, None).expect_err("a path with no device was set up");
    assert!(format!("{e:#}").contains("path 1"), "the error does not name the path: {e:#}");
    nothing_left(cl)?;
    assert_eq!(cl.sh("ip mptcp limits show")?, limits_before, "limits not put back after the failure");
    Ok(())
}

/// The concentrator's namespace as a plain MPTCP server with two uplinks,
/// its paths set up on the server side: the client (the kernel's MPTCP
/// with room for announced addresses, no endpoints of its own) connects to
/// the first address, hears the second announced and joins to it; 4 MB
/// cross intact. Torn down, nothing is left.
#[test]
fn a_server_announces_its_paths_and_the_client_joins_each() -> Result<()> {
    let bed = Testbed::new(1, 2)?;
    let (cl, srv) = (&bed.clients[0], &bed.conc);
    cl.sh("sysctl -qw net.mptcp.enabled=1 && ip mptcp limits set subflow 2 add_addr_accepted 2")?;
    srv.sh("sysctl -qw net.mptcp.enabled=1")?;
    let paths = (0..bed.uplinks)
        .map(|k| {
            let ifindex = srv.sh(&format!("cat /sys/class/net/{}/ifindex", Testbed::conc_dev(0, k)))?.trim().parse()?;
            Ok(NativePath { ifindex, addr: Testbed::conc_addr(0, k), gateway: bed.client_addr(0, k), backup: false })
        })
        .collect::<Result<Vec<_>>>()?;
    let applied = native_paths(srv, Side::Server, paths, None).context("setup")?;
    let shown = srv.sh("ip mptcp endpoint show")?;
    assert!(shown.lines().filter(|l| l.contains("signal")).count() == 2, "not two announced endpoints:\n{shown}");
    mptcp_transfer(srv, cl, SocketAddr::new(Testbed::conc_addr(0, 0), 5401), 1)?;
    assert_eq!(mptcp_counter(cl, "MPTcpExtAddAddr")?, 1, "the second address was not announced");
    assert_eq!(mptcp_counter(cl, "MPTcpExtMPJoinSynAckRx")?, 1, "no join to the announced address");
    native_paths(srv, Side::Server, vec![], Some(applied)).context("teardown")?;
    nothing_left(srv)
}
