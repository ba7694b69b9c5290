//! The kernel's MPTCP subflows as sock_diag reports them (the TCP sockets
//! whose upper layer is MPTCP): which connection each belongs to, its round
//! trip, bytes and retransmissions, and how long since it last heard from
//! its peer. Native mode's status shows them, and a path whose probes went
//! silent is not given up while one of its subflows still hears its peer (a
//! queue filling behind a bulk transfer delays the probes' answers, not
//! the flow of ACKs).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use anyhow::{bail, Context, Result};
use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::nlas::Nla;
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_utils::nla::{Nla as _, NlasIterator};
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket};

/// `INET_DIAG_ULP_INFO`, and in it `INET_ULP_INFO_NAME`, `INET_ULP_INFO_MPTCP`.
const INET_DIAG_ULP_INFO: u16 = 19;
const ULP_NAME: u16 = 1;
const ULP_MPTCP: u16 = 3;
/// `MPTCP_SUBFLOW_ATTR_TOKEN_LOC`, `..._FLAGS` and the backup flags in it.
const SUBFLOW_TOKEN_LOC: u16 = 2;
const SUBFLOW_FLAGS: u16 = 8;
const FLAG_BKUP_REM: u32 = 1 << 4;
const FLAG_BKUP_LOC: u32 = 1 << 5;

/// One MPTCP subflow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subflow {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Its connection's token (ours).
    pub token: u32,
    /// A backup, by our flag or the peer's.
    pub backup: bool,
    pub srtt_us: u32,
    pub bytes_acked: u64,
    pub bytes_received: u64,
    pub total_retrans: u32,
    /// Since it last received an ACK or data from its peer, ms.
    pub heard_ms: u32,
}

/// Every established MPTCP subflow of this network namespace.
pub fn subflows() -> Result<Vec<Subflow>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).context("cannot open a sock_diag socket")?;
    socket.bind_auto().context("cannot bind a sock_diag socket")?;
    socket.connect(&netlink_sys::SocketAddr::new(0, 0)).context("cannot reach sock_diag")?;
    let mut all = Vec::new();
    for (family, id) in [(AF_INET, SocketId::new_v4()), (AF_INET6, SocketId::new_v6())] {
        dump(&mut socket, family, id, &mut all)?;
    }
    Ok(all)
}

fn dump(socket: &mut Socket, family: u8, socket_id: SocketId, out: &mut Vec<Subflow>) -> Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let request = SockDiagMessage::InetRequest(InetRequest {
        family,
        protocol: IPPROTO_TCP,
        extensions: ExtensionFlags::INFO,
        states: StateFlags::ESTABLISHED,
        socket_id,
    });
    let mut packet = NetlinkMessage::new(header, request.into());
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0).context("cannot ask sock_diag")?;
    let mut answers = Vec::with_capacity(1 << 16);
    loop {
        answers.clear();
        let size = socket.recv(&mut answers, 0).context("no answer from sock_diag")?;
        let mut at = 0;
        while at < size {
            let m = <NetlinkMessage<SockDiagMessage>>::deserialize(&answers[at..size])
                .context("unreadable answer from sock_diag")?;
            let len = m.header.length as usize;
            match m.payload {
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(e) => bail!("sock_diag refused the dump: {e}"),
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                    let id = &r.header.socket_id;
                    let local = SocketAddr::new(id.source_address, id.source_port);
                    let remote = SocketAddr::new(id.destination_address, id.destination_port);
                    if let Some(s) = subflow(local, remote, &r.nlas) {
                        out.push(s);
                    }
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            at += len;
        }
    }
}

/// The subflow a TCP socket's attributes describe, if it is one.
fn subflow(local: SocketAddr, remote: SocketAddr, nlas: &[Nla]) -> Option<Subflow> {
    let mut info = None;
    let (mut token, mut flags) = (None, 0u32);
    for nla in nlas {
        match nla {
            Nla::TcpInfo(i) => info = Some(i),
            Nla::Other(a) if a.kind() & 0x3fff == INET_DIAG_ULP_INFO => {
                let mut value = vec![0; a.value_len()];
                a.emit_value(&mut value);
                let mut mptcp = false;
                for ulp in NlasIterator::new(&value[..]).flatten() {
                    match ulp.kind() {
                        ULP_NAME => mptcp = ulp.value().starts_with(b"mptcp"),
                        ULP_MPTCP => {
                            for attr in NlasIterator::new(ulp.value()).flatten() {
                                let v = attr.value();
                                match attr.kind() & 0x3fff {
                                    SUBFLOW_TOKEN_LOC if v.len() >= 4 => {
                                        token = Some(u32::from_ne_bytes(v[..4].try_into().ok()?))
                                    }
                                    SUBFLOW_FLAGS if v.len() >= 4 => {
                                        flags = u32::from_ne_bytes(v[..4].try_into().ok()?)
                                    }
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                }
                if !mptcp {
                    return None;
                }
            }
            _ => {}
        }
    }
    let (info, token) = (info?, token?);
    Some(Subflow {
        local,
        remote,
        token,
        backup: flags & (FLAG_BKUP_LOC | FLAG_BKUP_REM) != 0,
        srtt_us: info.rtt,
        bytes_acked: info.bytes_acked,
        bytes_received: info.bytes_received,
        total_retrans: info.total_retrans,
        heard_ms: info.last_ack_recv.min(info.last_data_recv),
    })
}

/// Since any subflow from `addr` last heard its peer, ms (None: none has
/// a subflow there).
pub fn heard_from(subflows: &[Subflow], addr: IpAddr) -> Option<u32> {
    subflows.iter().filter(|s| s.local.ip() == addr).map(|s| s.heard_ms).min()
}

/// What a path's subflows did since the last look: `joined`, the
/// connections (tokens) that had a subflow from `addr` then, is brought up
/// to date (connections that ended are forgotten, new ones added), and the
/// connections that are still open but have lost their subflow from
/// `addr` are returned. The kernel's path manager does not open a closed
/// subflow again while its endpoint stays (a middlebox's reset, a peer
/// that closed it), so these need the endpoint put back.
pub fn lost_subflows(joined: &mut BTreeSet<u32>, subflows: &[Subflow], addr: IpAddr) -> BTreeSet<u32> {
    let open: BTreeSet<u32> = subflows.iter().map(|s| s.token).collect();
    let from: BTreeSet<u32> = subflows.iter().filter(|s| s.local.ip() == addr).map(|s| s.token).collect();
    let lost = joined.iter().filter(|t| open.contains(t) && !from.contains(t)).copied().collect();
    joined.retain(|t| open.contains(t));
    joined.extend(from);
    lost
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subflow(local: &str, token: u32) -> Subflow {
        Subflow {
            local: local.parse().unwrap(),
            remote: "10.200.0.1:80".parse().unwrap(),
            token,
            backup: false,
            srtt_us: 0,
            bytes_acked: 0,
            bytes_received: 0,
            total_retrans: 0,
            heard_ms: 0,
        }
    }

    #[test]
    fn a_connection_that_lost_its_subflow_from_a_path_is_found_once() {
        let addr: IpAddr = "10.0.1.2".parse().unwrap();
        let mut joined = BTreeSet::new();
        // Connection 7 joins over the path; 8 never does (not counted as lost).
        let now = [subflow("10.0.0.2:1000", 7), subflow("10.0.1.2:1001", 7), subflow("10.0.0.2:1002", 8)];
        assert!(lost_subflows(&mut joined, &now, addr).is_empty());
        assert_eq!(joined, BTreeSet::from([7]));
        // 7's subflow from the path closes; 7 stays open over the other path.
        let now = [subflow("10.0.0.2:1000", 7), subflow("10.0.0.2:1002", 8)];
        assert_eq!(lost_subflows(&mut joined, &now, addr), BTreeSet::from([7]));
        // 7 ends altogether: forgotten, not lost.
        let now = [subflow("10.0.0.2:1002", 8)];
        assert!(lost_subflows(&mut joined, &now, addr).is_empty());
        assert!(joined.is_empty());
    }
}
