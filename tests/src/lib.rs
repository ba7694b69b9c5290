//! Network-namespace testbed for mptcp-ebpf.
//!
//! Topology built by [`Testbed::new`] (every name unique per test run):
//! ```text
//!  client c (ns "<p>c<c>")           concentrator (ns "<p>co")          server (ns "<p>sv")
//!   u<k>  10.<c*16+k+1>.0.2/24  ── veth ──  c<c>u<k> 10.<c*16+k+1>.0.1/24
//!         fd00:<c>:<k>::2/64                         fd00:<c>:<k>::1/64
//!                                            sv0 10.200.0.1/24 ── veth ── eth0 10.200.0.2/24
//!                                                fd00:200::1/64            fd00:200::2/64
//! ```
//! Client c's bond address is 10.99.0.<c+2>/32 and fd99::<c+2>/128; the
//! concentrator's is 10.99.0.1/24 and fd99::1/64. Everything is removed on Drop,
//! also when a test panics. Nothing touches the host's interfaces.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub mod rawip;
pub mod rng;
pub mod traffic;
pub mod wan;

use wan::Wan;

pub use nix::sys::signal::Signal;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A prefix unique to this process and call, short enough for device names.
pub fn unique_prefix() -> String {
    format!("mp{}x{}", std::process::id() % 100_000, COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn check(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

/// Run a shell command inside the named namespace; error (with stderr) on failure.
pub fn sh_in(ns: &str, script: &str) -> Result<String> {
    let out = check(Command::new("ip").args(["netns", "exec", ns, "sh", "-c", script]))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A network namespace, deleted on Drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Result<Netns> {
        check(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Netns { name: name.to_string() };
        ns.sh("ip link set lo up")?;
        Ok(ns)
    }

    /// Run a shell command inside the namespace; error (with stderr) on failure.
    pub fn sh(&self, script: &str) -> Result<String> {
        sh_in(&self.name, script)
    }

    /// A command that will run in this namespace (network namespace only: the
    /// mount namespace, and so the host's /sys/fs/bpf, stays shared).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        let path = format!("/run/netns/{}", self.name);
        // SAFETY: pre_exec runs in the forked child before exec; it only opens a
        // file and calls setns, both async-signal-safe system calls.
        unsafe {
            c.pre_exec(move || {
                let f = std::fs::File::open(&path)?;
                nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
            });
        }
        c
    }

    /// Run `f` on a thread inside this network namespace.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
        self.spawn_thread(f).join().map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
    }

    pub fn spawn_thread<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> std::thread::JoinHandle<Result<T>> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path)?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "pids", &self.name]).output().map(|o| {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        });
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// A child process killed (and reaped) on Drop; its output goes to files.
pub struct Proc {
    pub child: Child,
    pub log: std::path::PathBuf,
}

impl Proc {
    pub fn spawn(mut cmd: Command, log: std::path::PathBuf) -> Result<Proc> {
        let f = std::fs::File::create(&log)?;
        cmd.stdout(f.try_clone()?).stderr(f).stdin(Stdio::null());
        let child = cmd.spawn().with_context(|| format!("cannot start {cmd:?}"))?;
        Ok(Proc { child, log })
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) -> Result<()> {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig)?;
        Ok(())
    }

    /// Wait for exit; None on timeout.
    pub fn wait_timeout(&mut self, t: Duration) -> Result<Option<std::process::ExitStatus>> {
        let deadline = Instant::now() + t;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(Some(s));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until the output contains `needle`, or fail with the output.
    pub fn wait_for(&mut self, needle: &str, t: Duration) -> Result<()> {
        let deadline = Instant::now() + t;
        loop {
            let out = self.output();
            if out.contains(needle) {
                return Ok(());
            }
            if let Some(s) = self.child.try_wait()? {
                bail!("process exited ({s}) before printing {needle:?}:\n{out}");
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {needle:?}:\n{out}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Testbed {
    /// The WAN emulator, when built with [`Testbed::with_wan`]. First field, so
    /// its threads stop before the namespaces go.
    pub wan: Option<Wan>,
    pub prefix: String,
    pub clients: Vec<Netns>,
    pub conc: Netns,
    pub server: Netns,
    pub uplinks: usize,
    pub wan_ns: Option<Netns>,
    /// One NAT router per client, when built with [`Testbed::with_nat`].
    pub routers: Vec<Netns>,
    /// (client, uplink) pairs whose router forwards without masquerading
    /// (their private addresses are routed: a public address, in effect).
    public: std::sync::Mutex<Vec<(usize, usize)>>,
}

/// How the clients reach the concentrator.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wiring {
    /// veth pairs straight to the concentrator.
    Direct,
    /// Through the WAN emulator.
    Emulated,
    /// Through a NAT router per client (the kernel's masquerade).
    Nat,
    /// Through a NAT router per client, then the WAN emulator.
    EmulatedNat,
}

/// What router `r` gets on its LAN side `l<k>` leaves by its public side
/// `p<k>` (subnet 10.<n>.0.0/24) to the concentrator, whatever the
/// destination: the uplink a packet came in on is the one it goes out on,
/// as each uplink has its own line (the kernel's MPTCP reaches the server
/// through it).
fn route_beyond(r: &Netns, k: usize, n: usize) -> Result<()> {
    r.sh(&format!(
        "ip rule add iif l{k} table {t} && ip route add default via 10.{n}.0.1 dev p{k} table {t}",
        t = 100 + k
    ))
    .map(drop)
}

impl Testbed {
    /// Clients wired straight to the concentrator by veth pairs.
    pub fn new(clients: usize, uplinks: usize) -> Result<Testbed> {
        Self::build(clients, uplinks, Wiring::Direct)
    }

    /// Every uplink of client c crosses its NAT router (namespace "<p>r<c>"),
    /// as a home router or a carrier-grade NAT would: the client's side is
    /// private (192.168.<n>.2/24, the router at .1), the router's public side
    /// 10.<n>.0.2/24 faces the concentrator (10.<n>.0.1, as without NAT), and
    /// the router masquerades (nftables) whatever leaves its public side.
    /// IPv4 only.
    pub fn with_nat(clients: usize, uplinks: usize) -> Result<Testbed> {
        Self::build(clients, uplinks, Wiring::Nat)
    }

    /// Every uplink runs through the WAN emulator (namespace "<p>wn"), unshaped
    /// until [`Wan::set`] is called. Link index = client * uplinks + uplink.
    pub fn with_wan(clients: usize, uplinks: usize) -> Result<Testbed> {
        Self::build(clients, uplinks, Wiring::Emulated)
    }

    /// Every uplink crosses client c's NAT router (as in [`Testbed::with_nat`])
    /// and then the WAN emulator (as in [`Testbed::with_wan`]).
    pub fn with_wan_nat(clients: usize, uplinks: usize) -> Result<Testbed> {
        Self::build(clients, uplinks, Wiring::EmulatedNat)
    }

    fn build(clients: usize, uplinks: usize, wiring: Wiring) -> Result<Testbed> {
        let emulated = matches!(wiring, Wiring::Emulated | Wiring::EmulatedNat);
        let nat = matches!(wiring, Wiring::Nat | Wiring::EmulatedNat);
        let prefix = unique_prefix();
        let conc = Netns::new(&format!("{prefix}co"))?;
        let server = Netns::new(&format!("{prefix}sv"))?;
        let mut cl = Vec::new();
        for c in 0..clients {
            cl.push(Netns::new(&format!("{prefix}c{c}"))?);
        }
        let wan_ns = if emulated { Some(Netns::new(&format!("{prefix}wn"))?) } else { None };
        let mut routers = Vec::new();
        if nat {
            for c in 0..clients {
                routers.push(Netns::new(&format!("{prefix}r{c}"))?);
            }
        }
        let mut bed = Testbed {
            wan: None,
            prefix,
            clients: cl,
            conc,
            server,
            uplinks,
            wan_ns,
            routers,
            public: std::sync::Mutex::new(Vec::new()),
        };
        if let Some(w) = &bed.wan_ns {
            // A wire, not a host: no addresses, so it sends nothing of its own.
            w.sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")?;
        }
        let mut wan_links = Vec::new();
        bed.conc.sh("sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0")?;
        for (c, ns) in bed.clients.iter().enumerate() {
            ns.sh("sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0")?;
            for k in 0..uplinks {
                let (cdev, kdev) = (Self::client_dev(k), Self::conc_dev(c, k));
                if let Some(w) = &bed.wan_ns {
                    let (a, b) = (format!("w{c}a{k}"), format!("w{c}b{k}"));
                    // What faces the emulator on the client's side: the
                    // client's uplink, or its router's public side.
                    let (near_ns, near_dev) = match bed.routers.get(c) {
                        Some(r) => (&r.name, format!("p{k}")),
                        None => (&ns.name, cdev.clone()),
                    };
                    veth(&near_dev, near_ns, &a, &w.name)?;
                    veth(&b, &w.name, &kdev, &bed.conc.name)?;
                    w.sh(&format!("ip link set {a} up && ip link set {b} up"))?;
                    // Frames cross userspace here, so they must be complete on
                    // the wire: checksums filled in, no GSO/GRO super-packets.
                    for (n, dev) in [(near_ns, &near_dev), (&w.name, &a), (&w.name, &b), (&bed.conc.name, &kdev)] {
                        sh_in(n, &format!("ethtool -K {dev} tx off tso off gso off gro off >/dev/null"))?;
                    }
                    wan_links.push((a, b));
                    if let Some(r) = bed.routers.get(c) {
                        let n = c * 16 + k + 1;
                        let lan = format!("l{k}");
                        veth(&cdev, &ns.name, &lan, &r.name)?;
                        r.sh(&format!("ip addr add 192.168.{n}.1/24 dev {lan} && ip link set {lan} up && ip addr add 10.{n}.0.2/24 dev p{k} && ip link set p{k} up"))?;
                        route_beyond(r, k, n)?;
                        ns.sh(&format!("ip addr add 192.168.{n}.2/24 dev {cdev} && ip link set {cdev} up && ip route add 10.{n}.0.0/24 via 192.168.{n}.1 dev {cdev}"))?;
                        bed.conc.sh(&format!("ip addr add 10.{n}.0.1/24 dev {kdev} && ip link set {kdev} up"))?;
                        continue;
                    }
                } else if let Some(r) = bed.routers.get(c) {
                    let n = c * 16 + k + 1;
                    let (lan, wan) = (format!("l{k}"), format!("p{k}"));
                    veth(&cdev, &ns.name, &lan, &r.name)?;
                    veth(&wan, &r.name, &kdev, &bed.conc.name)?;
                    r.sh(&format!("ip addr add 192.168.{n}.1/24 dev {lan} && ip link set {lan} up && ip addr add 10.{n}.0.2/24 dev {wan} && ip link set {wan} up"))?;
                    route_beyond(r, k, n)?;
                    ns.sh(&format!("ip addr add 192.168.{n}.2/24 dev {cdev} && ip link set {cdev} up && ip route add 10.{n}.0.0/24 via 192.168.{n}.1 dev {cdev}"))?;
                    bed.conc.sh(&format!("ip addr add 10.{n}.0.1/24 dev {kdev} && ip link set {kdev} up"))?;
                    continue;
                } else {
                    veth(&cdev, &ns.name, &kdev, &bed.conc.name)?;
                }
                let n = c * 16 + k + 1;
                ns.sh(&format!("ip addr add 10.{n}.0.2/24 dev {cdev} && ip addr add fd00:{c}:{k}::2/64 dev {cdev} nodad && ip link set {cdev} up"))?;
                bed.conc.sh(&format!("ip addr add 10.{n}.0.1/24 dev {kdev} && ip addr add fd00:{c}:{k}::1/64 dev {kdev} nodad && ip link set {kdev} up"))?;
            }
        }
        check(Command::new("ip").args([
            "link",
            "add",
            "sv0",
            "netns",
            &bed.conc.name,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &bed.server.name,
        ]))?;
        bed.conc.sh(
            "ip addr add 10.200.0.1/24 dev sv0 && ip addr add fd00:200::1/64 dev sv0 nodad && ip link set sv0 up",
        )?;
        if let Some(w) = &bed.wan_ns {
            bed.wan = Some(Wan::start(w, &wan_links)?);
        }
        for c in 0..bed.routers.len() {
            bed.routers[c].sh(
                "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0",
            )?;
            bed.routers[c].sh(
                "nft add table ip nat && nft add chain ip nat post '{ type nat hook postrouting priority 100; }'",
            )?;
            bed.set_nat(c, None)?;
        }
        bed.server.sh("ip addr add 10.200.0.2/24 dev eth0 && ip addr add fd00:200::2/64 dev eth0 nodad && ip link set eth0 up && ip route add default via 10.200.0.1 && ip -6 route add default via fd00:200::1")?;
        Ok(bed)
    }

    /// Client c's router masquerades every uplink; uplink `k` of
    /// `rebind = Some((k, lo..=hi))` to a public port in that range instead
    /// (UDP and TCP), and that uplink's mappings are forgotten: its next
    /// packet gets a new public port, as when a NAT reboots, times a mapping
    /// out or a CGNAT rebinds.
    pub fn set_nat(&self, c: usize, rebind: Option<(usize, std::ops::RangeInclusive<u16>)>) -> Result<()> {
        let r = &self.routers[c];
        let mut script = String::from("nft flush chain ip nat post");
        let public = self.public.lock().unwrap().clone();
        for k in (0..self.uplinks).filter(|k| !public.contains(&(c, *k))) {
            if let Some((j, ports)) = &rebind {
                if *j == k {
                    let (lo, hi) = (ports.start(), ports.end());
                    script += &format!(
                        " && nft add rule ip nat post oifname p{k} meta l4proto '{{ tcp, udp }}' masquerade to :{lo}-{hi}"
                    );
                }
            }
            script += &format!(" && nft add rule ip nat post oifname p{k} masquerade");
        }
        r.sh(&script)?;
        if let Some((k, _)) = rebind {
            // conntrack exits 1 when it deleted nothing.
            r.sh(&format!("conntrack -D -s 192.168.{}.2 >/dev/null 2>&1 || true", c * 16 + k + 1))?;
        }
        Ok(())
    }

    /// The hop between client c's router and the concentrator on uplink k
    /// carries at most `mtu` bytes (both ends of that link), as a PPPoE line,
    /// a DS-Lite tunnel or an LTE network does: the client's own uplink
    /// still says 1500. Packets larger than that are dropped there (the
    /// router sends ICMP "fragmentation needed", which the bond takes as a
    /// hint but must not need).
    pub fn set_hop_mtu(&self, c: usize, k: usize, mtu: u32) -> Result<()> {
        self.routers[c].sh(&format!("ip link set p{k} mtu {mtu}"))?;
        self.conc.sh(&format!("ip link set {} mtu {mtu}", Self::conc_dev(c, k)))?;
        Ok(())
    }

    /// Client c's router forwards uplink k without NAT from now on: the
    /// concentrator routes the client's address there back through the
    /// router, as if the client's address were public.
    pub fn set_public(&self, c: usize, k: usize) -> Result<()> {
        anyhow::ensure!(c < self.routers.len(), "client {c} has no router (build the testbed with NAT)");
        let n = c * 16 + k + 1;
        self.conc.sh(&format!("ip route replace 192.168.{n}.0/24 via 10.{n}.0.2 dev {}", Self::conc_dev(c, k)))?;
        self.public.lock().unwrap().push((c, k));
        self.set_nat(c, None)
    }

    /// Client c's router drops, without ICMP, what it would forward to the
    /// client on `uplinks` above `mtu` bytes; the other way, all passes: a
    /// path smaller towards the client only (a PMTU black hole one way).
    pub fn set_mtu_towards_client(&self, c: usize, uplinks: &[usize], mtu: u32) -> Result<()> {
        let devs: Vec<String> = uplinks.iter().map(|k| format!("l{k}")).collect();
        self.routers[c]
            .sh(&format!(
                "nft add table ip filter && nft add chain ip filter toclient '{{ type filter hook forward priority 0; }}' \
                 && nft add rule ip filter toclient oifname '{{ {} }}' ip length gt {mtu} drop",
                devs.join(", ")
            ))
            .map(drop)
    }

    /// Client c's address on uplink k (private behind a NAT router).
    pub fn client_addr(&self, c: usize, k: usize) -> IpAddr {
        let n = c * 16 + k + 1;
        if self.routers.is_empty() { format!("10.{n}.0.2") } else { format!("192.168.{n}.2") }.parse().unwrap()
    }

    /// Client c's next hop on uplink k: its NAT router, or the concentrator.
    pub fn client_gateway(&self, c: usize, k: usize) -> IpAddr {
        let n = c * 16 + k + 1;
        if self.routers.is_empty() {
            Self::conc_addr(c, k)
        } else {
            format!("192.168.{n}.1").parse().unwrap()
        }
    }

    pub fn wan(&self) -> &Wan {
        self.wan.as_ref().expect("testbed built without the WAN emulator")
    }

    pub fn client_dev(k: usize) -> String {
        format!("u{k}")
    }
    pub fn conc_dev(c: usize, k: usize) -> String {
        format!("c{c}u{k}")
    }
    /// Concentrator address of client c's uplink k.
    pub fn conc_addr(c: usize, k: usize) -> IpAddr {
        format!("10.{}.0.1", c * 16 + k + 1).parse().unwrap()
    }
    pub fn conc_addr6(c: usize, k: usize) -> IpAddr {
        format!("fd00:{c}:{k}::1").parse().unwrap()
    }
    pub fn client_bond_addrs(c: usize) -> [String; 2] {
        [format!("10.99.0.{}/32", c + 2), format!("fd99::{}/128", c + 2)]
    }
    pub const CONC_BOND_ADDRS: [&'static str; 2] = ["10.99.0.1/24", "fd99::1/64"];
    pub const SERVER_V4: &'static str = "10.200.0.2";
    pub const SERVER_V6: &'static str = "fd00:200::2";
    pub const SERVER_ROUTES: [&'static str; 2] = ["10.200.0.0/24", "fd00:200::/64"];

    /// tbf on the egress of `dev` in `ns`.
    pub fn shape(ns: &Netns, dev: &str, mbit: u32) -> Result<()> {
        ns.sh(&format!("tc qdisc replace dev {dev} root tbf rate {mbit}mbit burst 64kb latency 100ms"))?;
        Ok(())
    }

    /// tbf at `mbit` on the egress of every uplink of client c.
    pub fn shape_uplinks(&self, c: usize, mbit: u32) -> Result<()> {
        for k in 0..self.uplinks {
            Self::shape(&self.clients[c], &Self::client_dev(k), mbit)?;
        }
        Ok(())
    }

    pub fn set_link(ns: &Netns, dev: &str, up: bool) -> Result<()> {
        ns.sh(&format!("ip link set {dev} {}", if up { "up" } else { "down" }))?;
        Ok(())
    }
}

/// A veth pair with one end in each namespace.
fn veth(a: &str, a_ns: &str, b: &str, b_ns: &str) -> Result<()> {
    check(
        Command::new("ip").args(["link", "add", a, "netns", a_ns, "type", "veth", "peer", "name", b, "netns", b_ns]),
    )?;
    Ok(())
}

/// Deterministic pseudo-random payload.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A running TCP sink: joins to (bytes received, SHA-256 of them).
pub type Sink = std::thread::JoinHandle<Result<(usize, [u8; 32])>>;

pub struct Transfer {
    pub bytes: usize,
    pub duration: Duration,
}

/// The end hosts' TCP in the tests' transfers: Linux's default congestion
/// control, set per socket so the host's own default does not matter.
pub fn test_stream() -> traffic::Stream {
    traffic::Stream::new(traffic::Transport::Tcp, traffic::DEFAULT_CONGESTION)
}

/// Send `len` bytes from `client` to `dst` over TCP and verify the server
/// got them byte-exact: the traffic module's bulk sink and sender, the
/// content compared by SHA-256.
pub fn tcp_bulk(server: &Netns, client: &Netns, dst: SocketAddr, len: usize, timeout: Duration) -> Result<Transfer> {
    let bind: SocketAddr =
        if dst.is_ipv4() { format!("0.0.0.0:{}", dst.port()) } else { format!("[::]:{}", dst.port()) }.parse()?;
    let start = Instant::now();
    let sink = traffic::BulkSink::start(server, bind, test_stream(), 1, start, Duration::from_secs(1), timeout)?;
    traffic::bulk_send(client, dst, test_stream(), 1, traffic::Amount::Bytes(len as u64), timeout)?;
    let r = sink.join()?;
    let intact = r.digests.first() == Some(&traffic::sent_digest(0, len as u64));
    if !r.complete || r.bytes != len as u64 || !intact {
        bail!(
            "transfer corrupted or cut short: sent {len} bytes, received {} ({}), content {}",
            r.bytes,
            if r.complete { "closed by the sender" } else { "never closed" },
            if intact { "intact" } else { "differs" }
        );
    }
    Ok(Transfer { bytes: len, duration: start.elapsed() })
}

/// What a numbered UDP stream's receiver saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpStreamResult {
    pub received: u32,
    pub duplicates: u32,
    /// Datagrams that arrived after a higher-numbered one.
    pub reordered: u32,
    /// How far out of order those were: the 99th percentile and the largest
    /// of (highest number seen before it − its number). 0 when none was.
    pub displacement_p99: u32,
    pub displacement_max: u32,
}

/// Send `count` numbered datagrams (paced) from `client` to `dst`, where a
/// receiver in `server` counts them. Returns (received, duplicates).
pub fn udp_stream(server: &Netns, client: &Netns, dst: SocketAddr, count: u32, gap: Duration) -> Result<(u32, u32)> {
    let r = udp_stream_ordered(server, client, dst, count, gap)?;
    Ok((r.received, r.duplicates))
}

/// The paced UDP sender's real-time priority, below the delay lines'.
const SENDER_PRIORITY: i32 = 5;

/// [`udp_stream`], also counting datagrams that arrive out of order.
pub fn udp_stream_ordered(
    server: &Netns,
    client: &Netns,
    dst: SocketAddr,
    count: u32,
    gap: Duration,
) -> Result<UdpStreamResult> {
    let bind: SocketAddr =
        if dst.is_ipv4() { format!("0.0.0.0:{}", dst.port()) } else { format!("[::]:{}", dst.port()) }.parse()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let recv = server.spawn_thread(move || {
        let s = UdpSocket::bind(bind)?;
        s.set_read_timeout(Some(Duration::from_millis(1500)))?;
        tx.send(()).ok();
        let mut seen = vec![false; count as usize];
        let mut r = UdpStreamResult::default();
        let mut highest = None;
        let mut displacements = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(n) = s.recv(&mut buf) {
            if n < 4 {
                continue;
            }
            let i = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
            if i < seen.len() {
                if seen[i] {
                    r.duplicates += 1;
                } else {
                    seen[i] = true;
                    r.received += 1;
                    if let Some(h) = highest.filter(|&h| i < h) {
                        r.reordered += 1;
                        displacements.push((h - i) as u32);
                    }
                    highest = highest.max(Some(i));
                }
            }
        }
        displacements.sort_unstable();
        r.displacement_max = displacements.last().copied().unwrap_or(0);
        r.displacement_p99 = displacements.get(displacements.len() * 99 / 100).copied().unwrap_or(0);
        Ok(r)
    });
    rx.recv_timeout(Duration::from_secs(5)).context("UDP receiver did not start")?;
    client.run(move || {
        let s = UdpSocket::bind(if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
        let mut buf = vec![0u8; 512];
        // Paced against the clock, not by a sleep per datagram: a sleep's
        // overshoot (tens of µs, more on a busy host) must not lower the
        // offered rate. After a real stall the schedule restarts rather than
        // catching up in one burst. At real-time priority (below the WAN
        // emulator's delay lines): at normal priority the sender of a
        // 12 Mbit/s stream on an otherwise idle 2-core machine was woken
        // more than 2 ms late a hundred times in some runs and took 3.7 s
        // for 3.2 s of datagrams, and the test measured that, not the
        // scheduler.
        wan::realtime_priority(SENDER_PRIORITY);
        let mut start = Instant::now();
        for i in 0..count {
            let due = start + gap * i;
            let now = Instant::now();
            match due.checked_duration_since(now) {
                Some(wait) => std::thread::sleep(wait),
                None if now - due > Duration::from_millis(2) => start = now - gap * i,
                None => {}
            }
            buf[..4].copy_from_slice(&i.to_be_bytes());
            s.send_to(&buf, dst)?;
        }
        Ok(())
    })?;
    recv.join().map_err(|_| anyhow::anyhow!("receiver panicked"))?
}

/// `ping -c count` from `ns`; true when every reply came back.
pub fn ping(ns: &Netns, addr: &str, count: u32) -> bool {
    ns.sh(&format!("ping -q -c {count} -i 0.2 -W 2 {addr}")).is_ok()
}
