//! Measuring traffic: UDP constant bit rate with one-way delay and gaps, TCP
//! (or MPTCP) bulk flows with throughput over time, fixed transfers, and
//! request/response. Senders and receivers run on threads inside namespaces;
//! timestamps use CLOCK_MONOTONIC, which every namespace on the host shares.

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};
use socket2::{Domain, Protocol, Socket, Type};

use crate::Netns;

/// Microseconds on the host-wide monotonic clock (the one clock of every crate).
pub use mptcp_common::clock::mono_us;

fn any_addr(dst: SocketAddr) -> SocketAddr {
    if dst.is_ipv4() { format!("0.0.0.0:{}", dst.port()) } else { format!("[::]:{}", dst.port()) }.parse().unwrap()
}

/// What a UDP receiver saw of a numbered, timestamped stream.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UdpReport {
    pub sent: u64,
    pub received: u64,
    pub duplicates: u64,
    /// Bytes on the wire per datagram (payload + UDP + IP + Ethernet).
    pub wire_bytes_per_packet: u64,
    /// Microseconds from the first send to the last send.
    pub send_span_us: u64,
    /// One-way delay of each first copy, in microseconds, in arrival order.
    pub owd_us: Vec<u64>,
    /// Arrival time of each first copy, microseconds after the first send.
    pub arrivals_us: Vec<u64>,
    /// Sequence number of each first copy, in arrival order.
    pub seqs: Vec<u64>,
}

impl UdpReport {
    pub fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        1.0 - self.received as f64 / self.sent as f64
    }

    /// Percentile (0..=100) of the one-way delay, in milliseconds.
    pub fn owd_percentile_ms(&self, p: f64) -> Option<f64> {
        percentile(&self.owd_us, p).map(|us| us / 1000.0)
    }

    /// Percent of the datagrams received that arrived after
    /// [`QUIC_PACKET_THRESHOLD`] or more higher-numbered ones: those QUIC's
    /// loss detection declares lost (RFC 9002, 6.1.1) and sends again, with
    /// its congestion window cut, though they were only late. 0 of nothing.
    pub fn quic_late_pct(&self) -> f64 {
        let mut highest: Option<u64> = None;
        let mut late = 0u64;
        for &seq in &self.seqs {
            if highest.is_some_and(|h| h >= seq + QUIC_PACKET_THRESHOLD) {
                late += 1;
            }
            highest = highest.max(Some(seq));
        }
        if self.seqs.is_empty() {
            0.0
        } else {
            100.0 * late as f64 / self.seqs.len() as f64
        }
    }

    /// Longest silence between arrivals (or from the last arrival to the end
    /// of sending) within the sending span, in milliseconds.
    pub fn longest_gap_ms(&self) -> f64 {
        let mut last = 0;
        let mut gap = 0;
        for &a in self.arrivals_us.iter().chain(std::iter::once(&self.send_span_us)) {
            gap = gap.max(a.saturating_sub(last));
            last = last.max(a);
        }
        gap as f64 / 1000.0
    }
}

/// QUIC declares a packet lost once a packet this many numbers later is
/// acknowledged (RFC 9002's kPacketThreshold).
pub const QUIC_PACKET_THRESHOLD: u64 = 3;

/// One datagram and the monotonic time (µs) the kernel received it.
fn recv_stamped(s: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, u64)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
    use std::os::fd::AsRawFd;
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let m = recvmsg::<SockaddrStorage>(s.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())
        .map_err(std::io::Error::from)?;
    let mut at = mono_us();
    if let Ok(mut cmsgs) = m.cmsgs() {
        if let Some(ControlMessageOwned::ScmTimestampns(ts)) = cmsgs.next() {
            let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            at = at.saturating_sub(wall.saturating_sub(Duration::from(ts)).as_micros() as u64);
        }
    }
    Ok((m.bytes, at))
}

/// The median (the mean of the middle two of an even count); `None` of
/// nothing. The one median of the tests and the benchmark.
pub fn median(samples: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = samples.into_iter().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// Percentile by nearest rank over unsorted samples.
pub fn percentile(samples: &[u64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_unstable();
    let rank = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    Some(v[rank.min(v.len() - 1)] as f64)
}

/// Send `pps` datagrams of `size` bytes per second for `duration` from `client`
/// to `dst`, received by a socket in `server`. Each carries its sequence number
/// and send time, so the receiver measures loss, duplicates, one-way delay and gaps.
pub fn udp_cbr(
    client: &Netns,
    server: &Netns,
    dst: SocketAddr,
    pps: u32,
    size: usize,
    duration: Duration,
) -> Result<UdpReport> {
    anyhow::ensure!(size >= 16, "UDP datagrams need at least 16 bytes for sequence and timestamp");
    anyhow::ensure!(pps > 0, "packets per second must be positive");
    let done = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let recv = server.spawn_thread({
        let done = done.clone();
        move || {
            let s = UdpSocket::bind(any_addr(dst)).with_context(|| format!("bind UDP receiver on {dst}"))?;
            s.set_read_timeout(Some(Duration::from_millis(50)))?;
            // Forced (as root): the host's net.core.rmem_max would cap a plain request.
            let _ = nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBufForce, &(8 << 20));
            // Arrival times from the kernel: this thread may be scheduled late.
            nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::ReceiveTimestampns, &true)?;
            ready_tx.send(()).ok();
            let mut seen = std::collections::HashSet::new();
            let mut r = UdpReport::default();
            let mut buf = [0u8; 65536];
            let mut quiet_since: Option<Instant> = None;
            loop {
                match recv_stamped(&s, &mut buf) {
                    Ok((n, now)) if n >= 16 => {
                        let seq = u64::from_be_bytes(buf[..8].try_into().unwrap());
                        let sent = u64::from_be_bytes(buf[8..16].try_into().unwrap());
                        if !seen.insert(seq) {
                            r.duplicates += 1;
                            continue;
                        }
                        r.received += 1;
                        r.owd_us.push(now.saturating_sub(sent));
                        r.arrivals_us.push(now); // made relative by the caller below
                        r.seqs.push(seq);
                    }
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                    Err(e) => return Err(e).context("UDP receive"),
                }
                if done.load(Relaxed) {
                    // Drain stragglers still in flight on slow paths.
                    let q = *quiet_since.get_or_insert_with(Instant::now);
                    if q.elapsed() > Duration::from_millis(1500) {
                        break;
                    }
                }
            }
            Ok(r)
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).context("UDP receiver did not start")?;
    let sender = client.run(move || {
        let s = UdpSocket::bind(if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
        let mut buf = vec![0u8; size];
        let start = Instant::now();
        let start_us = mono_us();
        let total = (pps as f64 * duration.as_secs_f64()).round() as u64;
        let mut seq = 0u64;
        while seq < total {
            // Send everything due by now, then sleep to the next due time.
            let due = (start.elapsed().as_secs_f64() * pps as f64) as u64 + 1;
            while seq < due.min(total) {
                buf[..8].copy_from_slice(&seq.to_be_bytes());
                buf[8..16].copy_from_slice(&mono_us().to_be_bytes());
                // A full local queue or an unreachable route is loss, as seen by the receiver.
                let _ = s.send_to(&buf, dst);
                seq += 1;
            }
            let next = Duration::from_secs_f64((seq as f64) / pps as f64);
            if let Some(wait) = next.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        Ok((total, start_us, mono_us() - start_us))
    });
    done.store(true, Relaxed);
    let mut r = recv.join().map_err(|_| anyhow::anyhow!("UDP receiver panicked"))??;
    let (sent, start_us, span) = sender?;
    r.sent = sent;
    r.send_span_us = span;
    for a in &mut r.arrivals_us {
        *a = a.saturating_sub(start_us);
    }
    let ip = if dst.is_ipv4() { 20 } else { 40 };
    r.wire_bytes_per_packet = (size + 8 + ip + 14) as u64;
    Ok(r)
}

/// The end hosts' congestion control unless a test or scenario says
/// otherwise: Linux's own default (the host's may be anything, often BBR).
pub const DEFAULT_CONGESTION: &str = "cubic";

/// Which stream protocol the end hosts speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    /// IPPROTO_MPTCP: the kernel's own Multipath TCP.
    Mptcp,
}

/// How the end hosts' stream sockets are made: the protocol, and the TCP
/// congestion control set on every socket (`TCP_CONGESTION`; on an MPTCP
/// socket the kernel applies it to every subflow, joins included). Per socket,
/// so no namespace or host sysctl is touched: a namespace may make a
/// congestion control its default only when the host's
/// `tcp_allowed_congestion_control` lists it, and a fresh machine lists only
/// `reno bbr`. `None` keeps the namespace's default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    pub transport: Transport,
    pub congestion: Option<String>,
}

impl Stream {
    pub fn new(transport: Transport, congestion: &str) -> Stream {
        Stream { transport, congestion: Some(congestion.to_string()) }
    }

    /// A stream socket of this flavour for `peer`'s address family, its
    /// congestion control set.
    pub fn socket(&self, peer: SocketAddr) -> Result<Socket> {
        let protocol = match self.transport {
            Transport::Tcp => Protocol::TCP,
            Transport::Mptcp => Protocol::MPTCP,
        };
        let s = Socket::new(Domain::for_address(peer), Type::STREAM, Some(protocol))
            .with_context(|| format!("create a {:?} socket (is MPTCP enabled?)", self.transport))?;
        self.set_congestion(&s)?;
        Ok(s)
    }

    /// Set the congestion control on a socket this flavour made or accepted
    /// (an accepted MPTCP socket passes it on to its subflows).
    pub fn set_congestion<'s>(&self, s: impl Into<socket2::SockRef<'s>>) -> Result<()> {
        if let Some(cc) = &self.congestion {
            s.into().set_tcp_congestion(cc.as_bytes()).with_context(|| {
                format!(
                    "cannot set TCP congestion control {cc:?} on a socket (the kernel offers {})",
                    available_congestion()
                )
            })?;
        }
        Ok(())
    }
}

/// The congestion controls this kernel has built in or loaded.
pub fn available_congestion() -> String {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("? ({e})"))
}

/// A bulk receiver's view: bytes per `bucket` since `epoch`, and the time the
/// last byte arrived.
#[derive(Clone, Debug, Default)]
pub struct BulkReport {
    pub bytes: u64,
    pub series: Vec<u64>,
    pub finished_after: Option<Duration>,
    /// Longest time without a byte arriving, after the first one.
    pub longest_gap: Duration,
    /// Every flow connected and was closed by its sender (a transfer completed).
    pub complete: bool,
    /// SHA-256 of each flow's bytes, in the order the flows connected (see
    /// [`sent_digest`] for what a sender's should be).
    pub digests: Vec<[u8; 32]>,
}

/// A listening bulk sink for `flows` connections, started before the senders.
pub struct BulkSink {
    handle: std::thread::JoinHandle<Result<BulkReport>>,
}

impl BulkSink {
    /// Receive until every flow closes, or until `stop_at` after `epoch`,
    /// whichever comes first (a flow stuck on a dead path is a measurement,
    /// not an error).
    pub fn start(
        server: &Netns,
        bind: SocketAddr,
        stream: Stream,
        flows: usize,
        epoch: Instant,
        bucket: Duration,
        stop_at: Duration,
    ) -> Result<BulkSink> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handle = server.spawn_thread(move || {
            let l = stream.socket(bind)?;
            l.set_reuse_address(true)?;
            l.bind(&bind.into()).with_context(|| format!("bind {bind}"))?;
            l.listen(16)?;
            let l: std::net::TcpListener = l.into();
            l.set_nonblocking(true)?;
            ready_tx.send(()).ok();
            let mut conns = Vec::new();
            let mut open = Vec::new();
            let mut hashes: Vec<Sha256> = Vec::new();
            let mut r = BulkReport::default();
            let mut buf = vec![0u8; 1 << 18];
            while epoch.elapsed() < stop_at && (conns.len() < flows || open.iter().any(|&o| o)) {
                let mut progressed = false;
                if conns.len() < flows {
                    match l.accept() {
                        Ok((s, _)) => {
                            stream.set_congestion(&s)?;
                            s.set_nonblocking(true)?;
                            conns.push(s);
                            open.push(true);
                            hashes.push(Sha256::new());
                            progressed = true;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e).context("accepting a bulk flow"),
                    }
                }
                for (i, s) in conns.iter_mut().enumerate() {
                    if !open[i] {
                        continue;
                    }
                    match s.read(&mut buf) {
                        Ok(0) => open[i] = false,
                        Ok(n) => {
                            progressed = true;
                            r.bytes += n as u64;
                            hashes[i].update(&buf[..n]);
                            let at = epoch.elapsed();
                            let b = (at.as_micros() / bucket.as_micros()) as usize;
                            if r.series.len() <= b {
                                r.series.resize(b + 1, 0);
                            }
                            r.series[b] += n as u64;
                            if let Some(last) = r.finished_after {
                                r.longest_gap = r.longest_gap.max(at.saturating_sub(last));
                            }
                            r.finished_after = Some(at);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        // A reset flow is over; what it delivered counts.
                        Err(_) => open[i] = false,
                    }
                }
                if !progressed {
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
            r.complete = conns.len() == flows && open.iter().all(|&o| !o);
            r.digests = hashes.into_iter().map(|h| h.finalize().into()).collect();
            if let Some(last) = r.finished_after {
                // Silence until the sink stopped counts too (a flow that never recovered).
                if !r.complete {
                    r.longest_gap = r.longest_gap.max(epoch.elapsed().min(stop_at).saturating_sub(last));
                }
            }
            Ok(r)
        });
        ready_rx.recv_timeout(Duration::from_secs(5)).context("bulk sink did not start")?;
        Ok(BulkSink { handle })
    }

    pub fn join(self) -> Result<BulkReport> {
        self.handle.join().map_err(|_| anyhow::anyhow!("bulk sink panicked"))?
    }
}

/// How a bulk sender stops: after a time, or after a byte count.
#[derive(Clone, Copy, Debug)]
pub enum Amount {
    For(Duration),
    Bytes(u64),
}

/// What sender `flow` of [`bulk_send`] sends: a 64 KiB pattern, repeated.
fn flow_chunk(flow: usize) -> Vec<u8> {
    crate::payload(1 << 16, flow as u64 + 7)
}

/// The SHA-256 of the first `len` bytes sender `flow` of [`bulk_send`] sends,
/// to compare with what a [`BulkSink`] received.
pub fn sent_digest(flow: usize, len: u64) -> [u8; 32] {
    let chunk = flow_chunk(flow);
    let mut h = Sha256::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        h.update(&chunk[..n]);
        left -= n as u64;
    }
    h.finalize().into()
}

/// `flows` concurrent senders from `client` to `dst`, each stopping per
/// `amount`, or giving up after `give_up` (a path that died under a
/// single-path flow). Only failing to connect is an error.
pub fn bulk_send(
    client: &Netns,
    dst: SocketAddr,
    stream: Stream,
    flows: usize,
    amount: Amount,
    give_up: Duration,
) -> Result<()> {
    let mut senders = Vec::new();
    for f in 0..flows {
        let stream = stream.clone();
        senders.push(client.spawn_thread(move || {
            let s = stream.socket(dst)?;
            s.connect_timeout(&dst.into(), Duration::from_secs(5)).with_context(|| format!("connect to {dst}"))?;
            let mut s: std::net::TcpStream = s.into();
            // Short timeouts, so the loop notices its deadline even when blocked.
            s.set_write_timeout(Some(Duration::from_millis(100)))?;
            let chunk = flow_chunk(f);
            let start = Instant::now();
            let mut sent = 0u64;
            while start.elapsed() < give_up {
                let n = match amount {
                    Amount::For(d) if start.elapsed() >= d => break,
                    Amount::For(_) => chunk.len(),
                    Amount::Bytes(b) if sent >= b => break,
                    Amount::Bytes(b) => (b - sent).min(chunk.len() as u64) as usize,
                };
                let at = (sent % chunk.len() as u64) as usize;
                let len = n.min(chunk.len() - at);
                match s.write(&chunk[at..at + len]) {
                    Ok(w) => sent += w as u64,
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                    Err(_) => break, // reset: the flow is over
                }
            }
            let _ = s.shutdown(std::net::Shutdown::Write);
            Ok(())
        }));
    }
    for s in senders {
        s.join().map_err(|_| anyhow::anyhow!("bulk sender panicked"))??;
    }
    Ok(())
}

/// Request/response latency: `count` round trips of a `request`-byte query
/// answered with `response` bytes, over one connection. Returns each round
/// trip in microseconds.
pub fn request_response(
    client: &Netns,
    server: &Netns,
    dst: SocketAddr,
    stream: Stream,
    request: usize,
    response: usize,
    count: usize,
) -> Result<Vec<u64>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server_stream = stream.clone();
    let srv = server.spawn_thread(move || {
        let stream = server_stream;
        let l = stream.socket(dst)?;
        l.set_reuse_address(true)?;
        l.bind(&any_addr(dst).into())?;
        l.listen(4)?;
        let l: std::net::TcpListener = l.into();
        ready_tx.send(()).ok();
        let (mut s, _) = l.accept()?;
        stream.set_congestion(&s)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut q = vec![0u8; request];
        let a = vec![7u8; response];
        for _ in 0..count {
            s.read_exact(&mut q).context("reading a request")?;
            s.write_all(&a)?;
        }
        Ok(())
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).context("request/response server did not start")?;
    let rtts = client.run(move || {
        let s = stream.socket(dst)?;
        s.connect_timeout(&dst.into(), Duration::from_secs(5)).with_context(|| format!("connect to {dst}"))?;
        let mut s: std::net::TcpStream = s.into();
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let q = vec![1u8; request];
        let mut a = vec![0u8; response];
        let mut rtts = Vec::with_capacity(count);
        for _ in 0..count {
            let t = Instant::now();
            s.write_all(&q)?;
            s.read_exact(&mut a).context("reading a response")?;
            rtts.push(t.elapsed().as_micros() as u64);
        }
        Ok(rtts)
    })?;
    srv.join().map_err(|_| anyhow::anyhow!("request/response server panicked"))??;
    Ok(rtts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quic_calls_lost_what_three_later_datagrams_overtook() {
        let r = |seqs: &[u64]| UdpReport { seqs: seqs.to_vec(), ..Default::default() };
        assert_eq!(r(&[]).quic_late_pct(), 0.0);
        assert_eq!(r(&[0, 1, 2, 3]).quic_late_pct(), 0.0);
        // 0 overtaken by 1 and 2 only: within QUIC's threshold.
        assert_eq!(r(&[1, 2, 0, 3]).quic_late_pct(), 0.0);
        // 0 overtaken by 1, 2 and 3: declared lost; so is 4 behind 5..=8.
        assert_eq!(r(&[1, 2, 3, 0, 5, 6, 7, 8, 4, 9]).quic_late_pct(), 20.0);
    }
}
