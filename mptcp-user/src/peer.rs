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
/// over the uplink it describes.
pub fn bind_control_socket(iface: &str, local: SocketAddr) -> Result<Arc<UdpSocket>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if local.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).context("cannot create a UDP socket")?;
    if local.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.bind_device(Some(iface.as_bytes()))
        .with_context(|| format!("cannot bind a control socket to interface {iface}"))?;
    s.bind(&local.into()).with_context(|| format!("cannot bind a control socket to {local} on {iface}"))?;
    set_mtu_probe(&s, local.is_ipv6())?;
    s.set_nonblocking(true)?;
    let s = UdpSocket::from_std(s.into()).context("cannot register the control socket")?;
    Ok(Arc::new(s))
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

/// A datagram received on one of the controller's sockets.
pub struct Inbound {
    /// Which socket (the caller's numbering).
    pub socket: usize,
    pub local: SocketAddr,
    pub from: SocketAddr,
    pub data: Vec<u8>,
}

/// Forward every datagram of `sock` into `tx` until the socket fails or the
/// receiver is gone. Abort the returned task to stop it.
pub fn spawn_reader(socket: usize, sock: Arc<UdpSocket>, tx: mpsc::Sender<Inbound>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let local = match sock.local_addr() {
            Ok(a) => a,
            Err(_) => return,
        };
        let mut buf = vec![0u8; 2048];
        loop {
            match sock.recv_from(&mut buf).await {
                Ok((n, from)) => {
                    if tx.send(Inbound { socket, local, from, data: buf[..n].to_vec() }).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(%local, error = %e, "control socket receive error");
                    // ICMP errors (e.g. port unreachable) surface here; keep reading.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
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
