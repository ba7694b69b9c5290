//! Pieces both roles share: control sockets bound to one uplink, the clock
//! probes use, and the RTT estimator.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Microseconds on the monotonic clock (the one clock of every crate).
pub use mptcp_common::clock::mono_us as now_us;

/// A UDP socket on `local:port` bound to `iface`, so control traffic leaves
/// over the uplink it describes. With `icmp_hints`, ICMP errors about what
/// its 4-tuple sends are kept for the reader (the client's path MTU hints).
pub fn bind_control_socket(iface: &str, local: SocketAddr, icmp_hints: bool) -> Result<Arc<UdpSocket>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if local.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).context("cannot create a UDP socket")?;
    if local.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // No SO_REUSEADDR (nor SO_REUSEPORT): with it, an unprivileged local
    // user could bind the same address and port beside ours and, by
    // connecting to a peer, receive that peer's control messages. Sockets
    // on distinct interfaces share the port without it.
    s.bind_device(Some(iface.as_bytes()))
        .with_context(|| format!("cannot bind a control socket to interface {iface}"))?;
    s.bind(&local.into()).with_context(|| format!("cannot bind a control socket to {local} on {iface}"))?;
    set_mtu_probe(&s, local.is_ipv6())?;
    // Packet trains are timed by when each packet arrived, not by when the
    // controller got to it.
    nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::ReceiveTimestampns, &true)
        .context("cannot ask for receive timestamps on the control socket")?;
    // ICMP errors about what this socket's 4-tuple sent (the data path's
    // packets share it) are queued for us: "too big" is a path MTU hint.
    if icmp_hints {
        if local.is_ipv6() {
            nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::Ipv6RecvErr, &true)
        } else {
            nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::Ipv4RecvErr, &true)
        }
        .context("cannot ask for ICMP errors on the control socket")?;
    }
    s.set_nonblocking(true)?;
    let s = UdpSocket::from_std(s.into()).context("cannot register the control socket")?;
    Ok(Arc::new(s))
}

/// Send `bytes` to `to` on a control socket. An ICMP error about an earlier
/// packet (kept for us by IP_RECVERR) fails the next send once, with that
/// error, before this packet was even tried: such a failure is retried (a
/// few times, as several may be pending).
pub async fn send_to(sock: &UdpSocket, bytes: &[u8], to: SocketAddr) -> std::io::Result<usize> {
    let mut tries = 0;
    loop {
        match sock.send_to(bytes, to).await {
            Err(e) if tries < 3 && is_icmp_error(&e) => tries += 1,
            r => return r,
        }
    }
}

/// The errors an ICMP message about an earlier packet leaves on a socket.
fn is_icmp_error(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMSGSIZE | libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EPROTO)
    )
}

/// What a control message of n bytes costs on the wire beyond n: UDP, IP
/// and Ethernet headers.
pub fn wire_overhead(ipv6: bool) -> usize {
    use mptcp_common::wire::{ETH_HLEN, IPV4_HLEN, IPV6_HLEN, UDP_HLEN};
    UDP_HLEN + ETH_HLEN + if ipv6 { IPV6_HLEN } else { IPV4_HLEN }
}

/// Send with don't-fragment and never fragment locally, whatever path MTU
/// the kernel has cached: the path MTU search probes sizes itself
/// (IP_PMTUDISC_PROBE), and a control message must not be split on the way.
fn set_mtu_probe(s: &socket2::Socket, ipv6: bool) -> Result<()> {
    use std::os::fd::AsRawFd;
    let (level, name, value) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, libc::IPV6_PMTUDISC_PROBE)
    } else {
        (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_PROBE)
    };
    // SAFETY: setsockopt with an int option value on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot set IP_MTU_DISCOVER on the control socket");
    }
    Ok(())
}

/// A datagram received on one of the controller's sockets, or an ICMP
/// "too big" about what it sent.
pub struct Inbound {
    /// Which socket (the caller's numbering).
    pub socket: usize,
    pub local: SocketAddr,
    /// The sender; for an ICMP error, where the packet it is about went.
    pub from: SocketAddr,
    pub data: Vec<u8>,
    /// An ICMP message said a packet from this socket's 4-tuple to `from`
    /// was too big for a hop: that hop's MTU (`data` is empty).
    pub too_big: Option<u32>,
    /// When the kernel received it, ns of the real-time clock (what the
    /// socket's receive timestamp says; else when it was read). Only
    /// differences count: a packet train is timed by it.
    pub rx_ns: u64,
}

impl Inbound {
    /// When it arrived, µs of CLOCK_MONOTONIC (the clock the peer stamps
    /// its probes and the data path its packets with): the receive
    /// timestamp moved back from now by its age on the real-time clock.
    pub fn rx_mono_us(&self) -> u64 {
        let real_now_ns =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        now_us().saturating_sub(real_now_ns.saturating_sub(self.rx_ns) / 1_000)
    }
}

/// The one-way delay of a message stamped `sent_us` by the peer (its clock)
/// that arrived at `rx_mono_us` (ours), as the data path samples it: the
/// difference of the clocks' low 32 bits, wrapping; 0 stands for none, so
/// a difference of exactly 0 is moved to 1 µs.
pub fn owd_sample(rx_mono_us: u64, sent_us: u64) -> u32 {
    (rx_mono_us as u32).wrapping_sub(sent_us as u32).max(1)
}

/// Read one datagram with its kernel receive timestamp (SO_TIMESTAMPNS):
/// (length, sender, ns of the real-time clock). The timestamp is taken as
/// the packet arrives, not when this task gets to it.
fn recv_stamped(sock: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr, u64)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
    use std::os::fd::AsRawFd;
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let msg = recvmsg::<SockaddrStorage>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT)
        .map_err(std::io::Error::from)?;
    let from = msg
        .address
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|a| SocketAddr::from(std::net::SocketAddrV4::from(*a)))
                .or_else(|| a.as_sockaddr_in6().map(|a| SocketAddr::from(std::net::SocketAddrV6::from(*a))))
        })
        .ok_or_else(|| std::io::Error::other("a datagram without a sender address"))?;
    let stamp = msg.cmsgs().ok().and_then(|mut c| {
        c.find_map(|c| match c {
            ControlMessageOwned::ScmTimestampns(t) => Some(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64),
            _ => None,
        })
    });
    let read_ns =
        || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    Ok((msg.bytes, from, stamp.unwrap_or_else(read_ns)))
}

const SO_EE_ORIGIN_ICMP: u8 = 2;
const SO_EE_ORIGIN_ICMP6: u8 = 3;

/// The MTU an ICMP error queued on a socket reports, if it is "fragmentation
/// needed" (ICMP type 3 code 4) or "packet too big" (ICMPv6 type 2).
pub fn icmp_too_big(origin: u8, icmp_type: u8, code: u8, info: u32) -> Option<u32> {
    let too_big = match origin {
        SO_EE_ORIGIN_ICMP => icmp_type == 3 && code == 4,
        SO_EE_ORIGIN_ICMP6 => icmp_type == 2,
        _ => false,
    };
    (too_big && info > 0).then_some(info)
}

/// Everything on the socket's error queue: (where the packet went, the hop
/// MTU) for each "too big"; other errors are dropped.
fn drain_errors(sock: &UdpSocket) -> Vec<(SocketAddr, u32)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
    use std::os::fd::AsRawFd;
    let mut out = Vec::new();
    // Bounded: the queue is capped by the socket's buffer anyway.
    for _ in 0..64 {
        let mut buf = [0u8; 256];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in6);
        let flags = MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT;
        let Ok(msg) = recvmsg::<SockaddrStorage>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), flags) else {
            break; // empty (EAGAIN)
        };
        let to = msg.address.and_then(|a| {
            a.as_sockaddr_in()
                .map(|a| SocketAddr::from(std::net::SocketAddrV4::from(*a)))
                .or_else(|| a.as_sockaddr_in6().map(|a| SocketAddr::from(std::net::SocketAddrV6::from(*a))))
        });
        let Ok(cmsgs) = msg.cmsgs() else { continue };
        for c in cmsgs {
            let e = match c {
                ControlMessageOwned::Ipv4RecvErr(e, _) | ControlMessageOwned::Ipv6RecvErr(e, _) => e,
                _ => continue,
            };
            if let (Some(to), Some(mtu)) = (to, icmp_too_big(e.ee_origin, e.ee_type, e.ee_code, e.ee_info)) {
                out.push((to, mtu));
            }
        }
    }
    out
}

/// Forward every datagram of `sock` into `tx`, and every ICMP "too big" its
/// error queue holds, until the receiver is gone. Abort the returned task to
/// stop it.
pub fn spawn_reader(socket: usize, sock: Arc<UdpSocket>, tx: mpsc::Sender<Inbound>) -> tokio::task::JoinHandle<()> {
    use tokio::io::Interest;
    tokio::spawn(async move {
        let local = match sock.local_addr() {
            Ok(a) => a,
            Err(_) => return,
        };
        let mut buf = vec![0u8; 2048];
        loop {
            let Ok(ready) = sock.ready(Interest::READABLE | Interest::ERROR).await else { return };
            let mut got = Vec::new();
            if ready.is_error() {
                // Drained whenever the queue has something, whichever call
                // (a send, a receive) took the error it also set.
                let _ = sock.try_io(Interest::ERROR, || {
                    got.extend(drain_errors(&sock).into_iter().map(|(to, mtu)| Inbound {
                        socket,
                        local,
                        from: to,
                        data: Vec::new(),
                        too_big: Some(mtu),
                        rx_ns: 0,
                    }));
                    Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
                });
            }
            if ready.is_readable() {
                match sock.try_io(Interest::READABLE, || recv_stamped(&sock, &mut buf)) {
                    Ok((n, from, rx_ns)) => {
                        got.push(Inbound { socket, local, from, data: buf[..n].to_vec(), too_big: None, rx_ns })
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    // An ICMP error about an earlier packet (its details are
                    // on the error queue); keep reading.
                    Err(e) => tracing::debug!(%local, error = %e, "control socket receive error"),
                }
            }
            for m in got {
                if tx.send(m).await.is_err() {
                    return;
                }
            }
        }
    })
}

/// RFC 6298 smoothed RTT and variance, in microseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct RttEstimator {
    pub srtt_us: u32,
    pub rttvar_us: u32,
}

impl RttEstimator {
    pub fn sample(&mut self, rtt_us: u64) {
        let r = rtt_us.clamp(1, u32::MAX as u64) as u32;
        if self.srtt_us == 0 {
            self.srtt_us = r;
            self.rttvar_us = r / 2;
        } else {
            let err = self.srtt_us.abs_diff(r);
            self.rttvar_us = ((3 * self.rttvar_us as u64 + err as u64) / 4) as u32;
            self.srtt_us = ((7 * self.srtt_us as u64 + r as u64) / 8) as u32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fragmentation_needed_and_packet_too_big_are_hints() {
        assert_eq!(icmp_too_big(SO_EE_ORIGIN_ICMP, 3, 4, 1380), Some(1380));
        assert_eq!(icmp_too_big(SO_EE_ORIGIN_ICMP6, 2, 0, 1280), Some(1280));
        assert_eq!(icmp_too_big(SO_EE_ORIGIN_ICMP, 3, 3, 1380), None, "port unreachable");
        assert_eq!(icmp_too_big(SO_EE_ORIGIN_ICMP6, 1, 4, 1280), None, "unreachable");
        assert_eq!(icmp_too_big(1, 3, 4, 1380), None, "a local error");
        assert_eq!(icmp_too_big(SO_EE_ORIGIN_ICMP, 3, 4, 0), None, "no MTU given");
    }

    #[test]
    fn rtt_estimator_converges() {
        let mut e = RttEstimator::default();
        e.sample(10_000);
        assert_eq!(e.srtt_us, 10_000);
        for _ in 0..50 {
            e.sample(20_000);
        }
        assert!((19_000..=20_000).contains(&e.srtt_us), "{}", e.srtt_us);
    }
}
