//! AF_PACKET sockets bound to one device: the delay line's only raw-packet code.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use std::io::IoSliceMut;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{recvmsg, send, setsockopt, sockopt, ControlMessageOwned, LinkAddr, MsgFlags};

/// Socket buffers big enough for a 300 ms delay at a few hundred Mbit/s queued
/// behind tbf, so the line drops only where a real link would.
const BUFFER_BYTES: usize = 32 << 20;

/// Whether a received frame was sent by this host (a tap of our own transmit).
pub const PACKET_OUTGOING: u8 = libc::PACKET_OUTGOING;

/// A raw socket on `ifindex`. `receive` selects every protocol (ETH_P_ALL);
/// otherwise protocol 0, so the socket only sends.
pub fn open(ifindex: u32, receive: bool) -> io::Result<OwnedFd> {
    let protocol = if receive { (libc::ETH_P_ALL as u16).to_be() } else { 0 };
    // SAFETY: plain socket(2) call; the returned descriptor is checked and owned below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    setsockopt(&fd, sockopt::SndBufForce, &BUFFER_BYTES)?;
    if receive {
        setsockopt(&fd, sockopt::RcvBufForce, &BUFFER_BYTES)?;
        // The kernel stamps each frame as it arrives, so a frame's delay
        // runs from then, not from when this thread got round to it.
        setsockopt(&fd, sockopt::ReceiveTimestampns, &true)?;
    }
    // Binding with the protocol set starts delivery only from this device.
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol;
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: addr is a properly initialised sockaddr_ll and the length matches it.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// A received frame: its length, the kernel's packet type (PACKET_HOST,
/// _OUTGOING, ...) and when it arrived.
pub struct Received {
    pub len: usize,
    pub pkttype: u8,
    pub arrived: Instant,
}

/// One frame, without blocking: `Ok(None)` when nothing is waiting.
pub fn receive(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<Received>> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    match recvmsg::<LinkAddr>(fd.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty()) {
        Ok(m) => {
            let mut arrived = Instant::now();
            if let Ok(mut cmsgs) = m.cmsgs() {
                if let Some(ControlMessageOwned::ScmTimestampns(ts)) = cmsgs.next() {
                    arrived = instant_of_realtime(Duration::from(ts));
                }
            }
            let pkttype = m.address.map(|a| a.pkttype()).unwrap_or(0);
            Ok(Some(Received { len: m.bytes, pkttype, arrived }))
        }
        Err(nix::errno::Errno::EAGAIN) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The monotonic instant of a kernel timestamp (CLOCK_REALTIME since the
/// epoch), by its age now: exact unless the wall clock steps in between.
pub fn instant_of_realtime(stamp: Duration) -> Instant {
    let (now, wall) = (Instant::now(), SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default());
    now.checked_sub(wall.saturating_sub(stamp)).unwrap_or(now)
}

/// Transmit one whole frame through the device's qdisc.
pub fn transmit(fd: &OwnedFd, frame: &[u8]) -> io::Result<()> {
    send(fd.as_raw_fd(), frame, MsgFlags::MSG_DONTWAIT)?;
    Ok(())
}
