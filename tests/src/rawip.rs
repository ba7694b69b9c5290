//! A raw-IP uplink, as an LTE modem presents one (`wwan0`): a TUN device that
//! carries bare IP packets, no Ethernet header. A relay thread carries them
//! between the TUN (in the client's namespace) and the veth that leads to the
//! concentrator (in a "modem" namespace of its own, so the client's stack
//! never sees its frames), adding and removing the Ethernet header there, as
//! a modem does between its host interface and the radio.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::wan::socket;
use crate::{Netns, Testbed};

const ETH_HLEN: usize = 14;

nix::ioctl_write_ptr_bad!(tunsetiff, 0x400454ca, IfReq);

/// `struct ifreq` with the name and the flags TUNSETIFF reads.
#[repr(C)]
pub struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Open a TUN device named `name` in the calling thread's namespace: bare IP
/// packets, no packet-information header.
fn open_tun(name: &str) -> Result<OwnedFd> {
    // SAFETY: plain open(2) of a character device; the descriptor is owned below.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("cannot open /dev/net/tun");
    }
    // SAFETY: fd is a fresh, valid descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = IfReq { name: [0; 16], flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short, _pad: [0; 22] };
    if name.len() >= req.name.len() {
        bail!("TUN name {name} is too long");
    }
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads an ifreq, which `req` is, on a TUN descriptor.
    unsafe { tunsetiff(fd.as_raw_fd(), &req) }.with_context(|| format!("TUNSETIFF {name}"))?;
    Ok(fd)
}

fn mac(ns: &Netns, dev: &str) -> Result<[u8; 6]> {
    let text = ns.sh(&format!("cat /sys/class/net/{dev}/address"))?;
    let mut m = [0u8; 6];
    for (i, part) in text.trim().split(':').enumerate().take(6) {
        m[i] = u8::from_str_radix(part, 16).with_context(|| format!("MAC of {dev}: {text}"))?;
    }
    Ok(m)
}

/// Client c's uplink k turned into a raw-IP device; the relay stops on Drop,
/// then the modem's namespace goes.
pub struct RawIpUplink {
    stop: Arc<AtomicBool>,
    relay: Option<JoinHandle<Result<()>>>,
    _modem: Netns,
}

impl Drop for RawIpUplink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.relay.take() {
            let _ = r.join();
        }
    }
}

impl RawIpUplink {
    /// Replace client c's uplink k (`u<k>`, a veth) by a TUN of the same name
    /// and address: the veth end moves to the modem's namespace, and the
    /// relay carries packets between the two. The concentrator's side gets a
    /// permanent neighbour entry for the client's address, as a modem's
    /// network side needs no ARP from it.
    pub fn replace(bed: &Testbed, c: usize, k: usize) -> Result<RawIpUplink> {
        let ns = &bed.clients[c];
        let modem = Netns::new(&format!("{}m{c}{k}", bed.prefix))?;
        let (dev, wire, conc_dev) = (Testbed::client_dev(k), format!("x{k}"), Testbed::conc_dev(c, k));
        let addr = bed.client_addr(c, k);
        ns.sh(&format!(
            "ip link set {dev} down && ip link set {dev} name {wire} && ip link set {wire} netns {}",
            modem.name
        ))?;
        // Frames cross userspace here, so they must be complete on the wire:
        // checksums filled in, no GSO/GRO super-packets.
        modem.sh(&format!("ip link set {wire} up && ethtool -K {wire} tx off tso off gso off gro off >/dev/null"))?;
        bed.conc.sh(&format!("ethtool -K {conc_dev} tx off tso off gso off gro off >/dev/null"))?;
        let (wire_mac, conc_mac) = (mac(&modem, &wire)?, mac(&bed.conc, &conc_dev)?);
        let lladdr = wire_mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        bed.conc.sh(&format!("ip neigh replace {addr} lladdr {lladdr} dev {conc_dev} nud permanent"))?;
        let wire_index: u32 = modem.sh(&format!("cat /sys/class/net/{wire}/ifindex"))?.trim().parse()?;
        // The raw socket belongs to the modem's namespace, the TUN to the client's.
        let raw = modem.run(move || Ok(socket::open(wire_index, true)?))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let relay = {
            let (stop, dev) = (stop.clone(), dev.clone());
            ns.spawn_thread(move || {
                let tun = open_tun(&dev)?;
                ready_tx.send(()).ok();
                let r = relay(&tun, &raw, wire_mac, conc_mac, &stop);
                if let Err(e) = &r {
                    eprintln!("raw-IP relay stopped: {e:#}");
                }
                r
            })
        };
        ready_rx.recv_timeout(std::time::Duration::from_secs(5)).context("the raw-IP relay did not start")?;
        ns.sh(&format!("ip addr add {addr}/24 dev {dev} && ip link set {dev} up"))?;
        Ok(RawIpUplink { stop, relay: Some(relay), _modem: modem })
    }
}

/// TUN → wire: add an Ethernet header to the concentrator's port; wire →
/// TUN: frames of IP for us, without their Ethernet header.
fn relay(tun: &OwnedFd, raw: &OwnedFd, own: [u8; 6], peer: [u8; 6], stop: &AtomicBool) -> Result<()> {
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(tun.as_fd(), PollFlags::POLLIN), PollFd::new(raw.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::from(50u16))?;
        // From the host: bare IP.
        loop {
            let n = match nix::unistd::read(tun.as_raw_fd(), &mut buf[ETH_HLEN..]) {
                Ok(n) => n,
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(e) => return Err(e).context("reading the TUN"),
            };
            let proto: u16 = if buf[ETH_HLEN] >> 4 == 6 { 0x86dd } else { 0x0800 };
            buf[..6].copy_from_slice(&peer);
            buf[6..12].copy_from_slice(&own);
            buf[12..14].copy_from_slice(&proto.to_be_bytes());
            let _ = socket::transmit(raw, &buf[..ETH_HLEN + n]);
        }
        // From the network: Ethernet frames.
        while let Some(r) = socket::receive(raw, &mut buf)? {
            let ours = r.pkttype != socket::PACKET_OUTGOING && r.len > ETH_HLEN && buf[..6] == own;
            let ip = matches!(u16::from_be_bytes([buf[12], buf[13]]), 0x0800 | 0x86dd);
            if ours && ip {
                let _ = nix::unistd::write(tun, &buf[ETH_HLEN..r.len]);
            }
        }
    }
    Ok(())
}
