//! Confidentiality by composition: WireGuard inside the bond. The bond
//! authenticates its headers but carries inner packets as they are; a user
//! who needs them private runs WireGuard between the two sites over the
//! bond (here `wireguard-go`, the userspace implementation, as this kernel
//! has no WireGuard module; the kernel's own where it has one). What an
//! attacker on a path then sees is WireGuard's ciphertext inside our
//! authenticated headers. Run as root.

mod support;

use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mptcp_testbed::{ping, tcp_bulk, Netns, Proc, Testbed};
use support::*;

/// WireGuard's port at both ends (each in its own namespace).
const WG_PORT: u16 = 51820;
/// The WireGuard interfaces' MTU: below the bond's less WireGuard's 60
/// bytes over IPv4.
const WG_MTU: u32 = 1280;

/// A WireGuard interface that `wireguard-go` runs in a namespace, with its
/// private key in a file of its own. Drop stops it and removes its key and
/// its control socket (a path shared by all namespaces, hence the unique
/// interface names).
struct WgEnd {
    _proc: Proc,
    name: String,
    key: PathBuf,
    public: String,
}

impl Drop for WgEnd {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.key);
        // wireguard-go removes it when it ends by a signal it handles; a
        // killed one leaves it behind.
        let _ = std::fs::remove_file(format!("/var/run/wireguard/{}.sock", self.name));
    }
}

/// Run `wg` with `args`, `input` on its standard input: its output.
fn wg(args: &[&str], input: &str) -> Result<String> {
    use std::io::Write;
    let mut child = std::process::Command::new("wg")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run wg (wireguard-tools; cargo xtask setup installs it)")?;
    child.stdin.take().context("stdin")?.write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("wg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// A WireGuard interface `name` in `ns` with address `addr`, listening on
/// [`WG_PORT`], no peer yet.
fn wg_end(ns: &Netns, name: &str, addr: &str) -> Result<WgEnd> {
    let private = wg(&["genkey"], "")?;
    let public = wg(&["pubkey"], &private)?;
    let key = std::env::temp_dir().join(format!("{name}.wgkey"));
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&key)?;
    std::fs::write(&key, &private)?;
    let mut cmd = ns.command("wireguard-go");
    cmd.args(["-f", name]);
    let proc = Proc::spawn(cmd, log_path(name))?;
    let end = WgEnd { _proc: proc, name: name.to_string(), key, public };
    let deadline = Instant::now() + Duration::from_secs(5);
    while ns.sh(&format!("ip link show {name}")).is_err() {
        if Instant::now() > deadline {
            bail!("wireguard-go made no interface {name}: {}", end._proc.output());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ns.sh(&format!(
        "wg set {name} private-key {} listen-port {WG_PORT} && ip addr add {addr} dev {name} && \
         ip link set {name} mtu {WG_MTU} up",
        end.key.display()
    ))?;
    Ok(end)
}

/// Frames read on a packet socket start with the Ethernet header.
const ETH: usize = 14;

/// Every frame that crosses `ns`'s interfaces for `span` while `sender`
/// sends `marker` to `to` every 20 ms: what an attacker on a path sees.
fn capture(
    ns: &Netns,
    span: Duration,
    sender: &Netns,
    marker: &'static [u8],
    to: &'static str,
) -> Result<Vec<Vec<u8>>> {
    let tap = ns.spawn_thread(move || {
        use socket2::{Domain, Protocol, Socket, Type};
        let ethertype_all = (libc::ETH_P_ALL as u16).to_be() as i32;
        let tap = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(ethertype_all)))?;
        tap.set_read_timeout(Some(Duration::from_millis(50)))?;
        let mut frame = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
        let mut frames: Vec<Vec<u8>> = vec![];
        let end = Instant::now() + span;
        while Instant::now() < end {
            if let Ok(n) = tap.recv(&mut frame) {
                // SAFETY: recv initialised the first n bytes.
                frames.push(frame[..n].iter().map(|b| unsafe { b.assume_init() }).collect());
            }
        }
        Ok(frames)
    });
    sender.run(move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        let end = Instant::now() + span;
        while Instant::now() < end {
            s.send_to(marker, to)?;
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    })?;
    tap.join().map_err(|_| anyhow::anyhow!("capture thread panicked"))?
}

fn contains(frame: &[u8], needle: &[u8]) -> bool {
    frame.windows(needle.len()).any(|w| w == needle)
}

/// A bond data packet leaving the client on an uplink (IPv4, UDP to the
/// concentrator's port).
fn bond_packet(f: &[u8]) -> bool {
    f.len() > ETH + 28
        && f[12..14] == [0x08, 0x00]
        && f[ETH + 9] == 17
        && f[ETH + 22..ETH + 24] == 7495u16.to_be_bytes()
}

/// A host on the client's LAN, behind the client box, which masquerades
/// it into the bond (a home box's usual setup). Its namespace goes with it.
fn lan_host(bed: &Testbed) -> Result<Netns> {
    let lan = Netns::new(&format!("{}lan", bed.prefix))?;
    let cl = &bed.clients[0];
    let ok = std::process::Command::new("ip")
        .args(["link", "add", "lanc", "netns", &cl.name, "type", "veth", "peer", "name", "lanh", "netns", &lan.name])
        .status()?;
    anyhow::ensure!(ok.success(), "cannot make the LAN's veth pair");
    cl.sh("ip addr add 192.168.77.1/24 dev lanc && ip link set lanc up && sysctl -qw net.ipv4.ip_forward=1 && \
         nft add table ip lan && nft add chain ip lan post '{ type nat hook postrouting priority 100; }' && \
         nft add rule ip lan post oifname mpb masquerade")?;
    lan.sh("ip addr add 192.168.77.2/24 dev lanh && ip link set lanh up && ip route add default via 192.168.77.1")?;
    Ok(lan)
}

/// WireGuard between a host on the client's LAN and the server, over the
/// bond: a ping and a TCP transfer (content checked by SHA-256) cross it;
/// what crosses the client's uplinks meanwhile is bond packets, and a
/// marker sent through WireGuard is never seen in them, where the same
/// marker sent through the bond unencrypted is. The transfer's rate is
/// printed beside one through the bond alone.
///
/// The WireGuard end is a LAN host, not the client box itself: inner
/// packets arrive on the uplink the XDP program took them from, and
/// wireguard-go pins its replies to the interface a peer's packet came in
/// on, so on the box it would answer around the bond.
#[test]
fn wireguard_inside_the_bond_hides_what_it_carries() -> Result<()> {
    let bed = Testbed::new(1, 2)?;
    let conc = start_conc(&bed, &[])?;
    let client = start_client(&bed, 0, &[])?;
    let cl = &bed.clients[0];
    let lan = lan_host(&bed)?;
    assert!(ping(&lan, Testbed::SERVER_V4, 2), "the LAN host does not reach the server through the bond");
    let (c_name, s_name) = (format!("{}wc", bed.prefix), format!("{}ws", bed.prefix));
    let c_end = wg_end(&lan, &c_name, "10.77.0.1/24")?;
    let s_end = wg_end(&bed.server, &s_name, "10.77.0.2/24")?;
    // The server knows the client before the client's first handshake
    // (one that arrives earlier is dropped and retried only 5 s later).
    bed.server.sh(&format!("wg set {s_name} peer {} allowed-ips 10.77.0.1/32", c_end.public))?;
    let server = format!("{}:{WG_PORT}", Testbed::SERVER_V4);
    lan.sh(&format!(
        "wg set {c_name} peer {} endpoint {server} allowed-ips 10.77.0.2/32 persistent-keepalive 1",
        s_end.public
    ))?;
    let before = client.status(cl)?;
    if !ping(&lan, "10.77.0.2", 3) {
        bail!(
            "no ping through WireGuard over the bond:\n{}\n{}\n{}\n{}",
            lan.sh(&format!("wg show {c_name}"))?,
            bed.server.sh(&format!("wg show {s_name}"))?,
            conc.status(&bed.conc)?,
            client.status(cl)?
        );
    }

    // The same 16 MB through WireGuard and through the bond alone.
    let len = 16 << 20;
    let wg_dst: SocketAddr = "10.77.0.2:5311".parse()?;
    let t = tcp_bulk(&bed.server, &lan, wg_dst, len, Duration::from_secs(60))?;
    let plain_dst = SocketAddr::new(Testbed::SERVER_V4.parse()?, 5312);
    let p = tcp_bulk(&bed.server, &lan, plain_dst, len, Duration::from_secs(60))?;
    let mbit = |t: &mptcp_testbed::Transfer| t.bytes as f64 * 8.0 / t.duration.as_secs_f64() / 1e6;
    eprintln!("16 MB through WireGuard over the bond: {:.0} Mbit/s; through the bond alone: {:.0}", mbit(&t), mbit(&p));
    let after = client.status(cl)?;
    let carried = |s: &mptcp_user::status::Status| (0..2).map(|i| s.subflow(i).map_or(0, |f| f.tx_bytes)).sum::<u64>();
    assert!(carried(&after) >= carried(&before) + 2 * len as u64, "the bond did not carry the transfers: {after}");

    // What a path sees: WireGuard's ciphertext in bond packets, never the
    // marker; the marker itself when sent through the bond unencrypted.
    const MARKER: &[u8] = b"a secret the path must not read";
    let hidden = capture(cl, Duration::from_secs(2), &lan, MARKER, "10.77.0.2:9")?;
    let on_uplinks: Vec<_> = hidden.iter().filter(|f| bond_packet(f)).collect();
    assert!(
        on_uplinks.len() >= 20,
        "the marker's datagrams crossed no uplink in bond packets ({} frames)",
        hidden.len()
    );
    assert!(
        !on_uplinks.iter().any(|f| contains(f, MARKER)),
        "a bond packet carried the marker in clear through WireGuard"
    );
    let clear = capture(cl, Duration::from_secs(1), &lan, MARKER, "10.200.0.2:9")?;
    assert!(
        clear.iter().any(|f| bond_packet(f) && contains(f, MARKER)),
        "the capture never saw the marker sent through the bond unencrypted ({} frames)",
        clear.len()
    );
    Ok(())
}
