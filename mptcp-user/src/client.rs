//! The client role: opens the connection over the first path that answers,
//! JOINs every other path, probes each subflow, and follows link and address
//! events. One task owns all state and is the only writer of the maps.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use ipnet::IpNet;
use mptcp_common::maps::{ControlCounter, PathState, MAX_SUBFLOWS, PATH_BACKUP, PATH_ESTABLISHED, PATH_UP};
use mptcp_common::wire::{FAMILY_V4, FAMILY_V6};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::bpfmaps::DataPathMaps;
use crate::config::{Config, PathConfig};
use crate::control::{derive_token, Body, DecodeError, Message, PathHint, RejectReason};
use crate::ctl::{PathChange, Request, Response};
use crate::daemon::{EventError, Handled, Role};
use crate::estimate::{
    counters, effective_rate, rx_report, tx_wire_bytes, Capacity, Feedback, MinRtt, SubflowEstimate,
};
use crate::netdev::{self, Net, NetEvent};
use crate::peer::{self, now_us, Inbound, RttEstimator};
use crate::runtime::RuntimeChanges;
use crate::subflows::{self, Endpoints};

/// A handshake in flight on one path.
#[derive(Clone, Copy, Debug)]
struct Pending {
    join: bool,
    nonce_c: u64,
    key_c: u64,
    sent_us: u64,
    /// Set once the CHALLENGE verified: (nonce_s, token).
    challenged: Option<(u64, u32)>,
}

struct Path {
    cfg: PathConfig,
    id: u8,
    remote: SocketAddr,
    ifindex: Option<u32>,
    running: bool,
    local: Option<SocketAddr>,
    socket: Option<Arc<UdpSocket>>,
    reader: Option<JoinHandle<()>>,
    established: bool,
    up: bool,
    rtt: RttEstimator,
    min_rtt: MinRtt,
    /// The concentrator's reports of what it received on this subflow.
    feedback: Feedback,
    /// The rate estimate used when `cfg` sets none.
    capacity: Capacity,
    probe_seq: u32,
    /// A probe was sent since the last tick's check.
    probing: bool,
    /// An answer to any recent probe arrived since the last tick: a path whose
    /// RTT exceeds the probe interval is slow, not dead.
    acked: bool,
    misses: u32,
    pending: Option<Pending>,
}

impl Path {
    fn name(&self) -> &str {
        self.cfg.display_name()
    }

    fn endpoints(&self) -> Option<Endpoints> {
        Some(Endpoints { local: self.local?, remote: self.remote, ifindex: self.ifindex? })
    }

    fn hint(&self) -> PathHint {
        PathHint {
            priority: self.cfg.priority,
            backup: self.cfg.backup,
            rate_bytes_per_sec: self.cfg.rate_bytes_per_sec(),
            weight: self.cfg.weight,
        }
    }

    fn path_state(&self, up: bool) -> PathState {
        let mut flags = PATH_ESTABLISHED;
        if up {
            flags |= PATH_UP;
        }
        if self.cfg.backup {
            flags |= PATH_BACKUP;
        }
        PathState {
            flags,
            priority: self.cfg.priority,
            srtt_us: self.rtt.srtt_us,
            rttvar_us: self.rtt.rttvar_us,
            rate_bytes_per_sec: self.cfg.rate_bytes_per_sec(),
            weight: self.cfg.weight,
            owd_us: 0,
        }
    }

    fn close_socket(&mut self) {
        if let Some(r) = self.reader.take() {
            r.abort();
        }
        self.socket = None;
    }
}

pub struct Client {
    cfg: Config,
    psk: Vec<u8>,
    maps: DataPathMaps,
    net: Net,
    paths: Vec<Path>,
    token: Option<u32>,
    inbound_tx: mpsc::Sender<Inbound>,
    /// Next path to try the first handshake on.
    next_init: usize,
    /// A start fails if no path reaches the concentrator by then.
    connect_timeout: Duration,
    connect_deadline: tokio::time::Instant,
    /// "connected" was printed (once, for whoever waits for it).
    announced: bool,
}

fn random_u64() -> u64 {
    rand::random()
}

impl Client {
    pub async fn new(
        cfg: Config,
        maps: DataPathMaps,
        net: Net,
        inbound_tx: mpsc::Sender<Inbound>,
        connect_timeout: Duration,
    ) -> Result<Client> {
        let psk = cfg.psk_bytes()?;
        let paths = cfg
            .paths
            .iter()
            .enumerate()
            .map(|(i, p)| Path {
                cfg: p.clone(),
                id: i as u8,
                remote: SocketAddr::new(p.remote.expect("validated: client paths have a remote"), cfg.port),
                ifindex: None,
                running: false,
                local: None,
                socket: None,
                reader: None,
                established: false,
                up: false,
                rtt: RttEstimator::default(),
                min_rtt: MinRtt::default(),
                feedback: Feedback::default(),
                capacity: Capacity::default(),
                probe_seq: 0,
                probing: false,
                acked: false,
                misses: 0,
                pending: None,
            })
            .collect();
        let mut c = Client {
            cfg,
            psk,
            maps,
            net,
            paths,
            token: None,
            inbound_tx,
            next_init: 0,
            connect_timeout,
            connect_deadline: tokio::time::Instant::now() + connect_timeout,
            announced: false,
        };
        // Hints set at runtime before a restart (only kept when adopting).
        for change in RuntimeChanges::load(&c.cfg.instance)?.paths.values() {
            if let Some(p) = c.paths.iter_mut().find(|p| p.name() == change.path) {
                change.apply_to(&mut p.cfg);
                tracing::info!(path = %change.path, "keeping the hints set at runtime");
            }
        }
        for i in 0..c.paths.len() {
            c.refresh_path(i).await;
        }
        c.adopt()?;
        Ok(c)
    }

    /// Take over the connection a previous controller left in the maps.
    fn adopt(&mut self) -> Result<()> {
        let conns = self.maps.connections();
        let Some(conn) = conns.first() else { return Ok(()) };
        if conns.len() > 1 {
            bail!("the pinned maps hold {} connections; a client has one (run `mptcp-user down` first)", conns.len());
        }
        self.token = Some(conn.token);
        for (id, s) in conn.subflows.iter().enumerate().take(MAX_SUBFLOWS) {
            if !s.path.established() {
                continue;
            }
            let ep = Endpoints::from_subflow(s);
            match self.paths.get_mut(id) {
                Some(p) if p.remote == ep.remote && p.local == Some(ep.local) => {
                    p.established = true;
                    p.up = s.path.up();
                    p.rtt = RttEstimator { srtt_us: s.path.srtt_us, rttvar_us: s.path.rttvar_us };
                    // Apply the current configuration's hints to the adopted subflow.
                    let st = p.path_state(p.up);
                    subflows::update_path(&mut self.maps, conn.token, id as u8, |ps| *ps = st)?;
                }
                _ => {
                    tracing::info!(subflow = id, "adopted subflow no longer matches the configuration; removing it");
                    subflows::remove(&mut self.maps, conn.token, id as u8)?;
                }
            }
        }
        tracing::info!(token = format_args!("{:08x}", conn.token), "adopted the running connection");
        Ok(())
    }

    /// Re-read the interface and address of path `i`; (re)open its socket.
    async fn refresh_path(&mut self, i: usize) {
        let iface = self.paths[i].cfg.interface.clone();
        let link = match self.net.link(&iface).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(path = self.paths[i].name(), error = %e, "cannot read interface");
                return;
            }
        };
        let Some(link) = link else {
            self.lose_path(i, "interface is gone");
            self.paths[i].ifindex = None;
            return;
        };
        let addrs = self.net.addresses(link.index).await.unwrap_or_default();
        let p = &mut self.paths[i];
        p.ifindex = Some(link.index);
        p.running = link.running;
        let local = netdev::pick_local(&addrs, p.cfg.local, p.remote.is_ipv4(), &iface)
            .ok()
            .map(|a| SocketAddr::new(a, self.cfg.port));
        if local != p.local {
            if p.local.is_some() {
                self.lose_path(i, "its local address went away");
            }
            let p = &mut self.paths[i];
            p.close_socket();
            p.local = local;
        }
        let p = &mut self.paths[i];
        if p.socket.is_none() {
            if let Some(l) = p.local {
                match peer::bind_control_socket(&iface, l) {
                    Ok(s) => {
                        p.reader = Some(peer::spawn_reader(i, s.clone(), self.inbound_tx.clone()));
                        p.socket = Some(s);
                    }
                    Err(e) => tracing::warn!(
                        path = p.cfg.display_name(),
                        error = format!("{e:#}"),
                        "cannot open control socket"
                    ),
                }
            }
        }
    }

    /// The path can no longer carry its subflow: remove it from the data path.
    fn lose_path(&mut self, i: usize, why: &str) {
        let p = &mut self.paths[i];
        p.pending = None;
        if !p.established {
            return;
        }
        tracing::warn!(path = p.cfg.display_name(), "subflow removed: {why}");
        p.established = false;
        p.up = false;
        p.probing = false;
        if let Some(t) = self.token {
            if let Err(e) = subflows::remove(&mut self.maps, t, p.id) {
                tracing::warn!(error = %e, "cannot remove subflow from the maps");
            }
        }
    }

    fn ready(&self, i: usize) -> bool {
        let p = &self.paths[i];
        p.running && p.socket.is_some() && p.ifindex.is_some()
    }

    async fn send(&self, i: usize, msg: &Message) {
        let p = &self.paths[i];
        if let Some(s) = &p.socket {
            if let Err(e) = s.send_to(&msg.encode(&self.psk), p.remote).await {
                tracing::debug!(path = p.name(), error = %e, "control send failed");
            }
        }
    }

    async fn send_hello(&mut self, i: usize, join: bool) {
        let pending = Pending {
            join,
            nonce_c: random_u64(),
            key_c: if join { 0 } else { random_u64() },
            sent_us: now_us(),
            challenged: None,
        };
        self.paths[i].pending = Some(pending);
        let prefixes: Vec<IpNet> =
            if join { Vec::new() } else { self.cfg.bond.addresses.iter().map(|a| host_prefix(*a)).collect() };
        let msg = Message {
            token: if join { self.token.unwrap_or(0) } else { 0 },
            subflow_id: self.paths[i].id,
            body: Body::Hello {
                join,
                nonce_c: pending.nonce_c,
                key_c: pending.key_c,
                path: self.paths[i].hint(),
                prefixes,
            },
        };
        tracing::debug!(path = self.paths[i].name(), join, "sending HELLO");
        self.send(i, &msg).await;
    }

    /// Connected: say so once; not connected in time: the start failed.
    fn check_connected(&mut self) -> Handled {
        if self.announced {
            return Ok(());
        }
        if self.token.is_some() {
            self.announced = true;
            println!("mptcp-user: connected");
        } else if tokio::time::Instant::now() > self.connect_deadline {
            let tried: Vec<String> = self
                .paths
                .iter()
                .map(|p| match p.local {
                    Some(l) => format!("{} ({} -> {})", p.name(), l.ip(), p.remote),
                    None => format!("{} (no usable local address)", p.name()),
                })
                .collect();
            return Err(EventError::Fatal(anyhow!(
                "the concentrator is unreachable: no answer within {:?} on any path (tried {})",
                self.connect_timeout,
                tried.join(", ")
            )));
        }
        Ok(())
    }

    /// Periodic work: handshakes, probes, liveness.
    async fn tick(&mut self) -> Handled {
        self.check_connected()?;
        let now = now_us();
        // Per handshake step (a CHALLENGE restarts the clock): long enough for a
        // satellite path's round trip, short enough to rotate off a dead path.
        let retry_us = 2_000_000;
        for i in 0..self.paths.len() {
            if self.paths[i].socket.is_none() || !self.paths[i].running {
                self.refresh_path(i).await;
            }
        }
        match self.token {
            None => {
                // One first-subflow handshake at a time, rotating over ready paths.
                let busy =
                    self.paths.iter().any(|p| matches!(p.pending, Some(h) if !h.join && now - h.sent_us < retry_us));
                if !busy {
                    for p in &mut self.paths {
                        p.pending = None;
                    }
                    let n = self.paths.len();
                    for k in 0..n {
                        let i = (self.next_init + k) % n;
                        if self.ready(i) {
                            self.next_init = i + 1;
                            self.send_hello(i, false).await;
                            break;
                        }
                    }
                }
            }
            Some(token) => {
                for i in 0..self.paths.len() {
                    let p = &self.paths[i];
                    if p.established || !self.ready(i) {
                        continue;
                    }
                    if matches!(p.pending, Some(h) if now - h.sent_us < retry_us) {
                        continue;
                    }
                    self.send_hello(i, true).await;
                }
                for i in 0..self.paths.len() {
                    if !self.paths[i].established {
                        continue;
                    }
                    if self.paths[i].probing && !self.paths[i].acked {
                        self.paths[i].misses += 1;
                        let p = &self.paths[i];
                        if p.up && p.misses >= self.cfg.probe.down_after {
                            tracing::warn!(path = p.name(), misses = p.misses, "path down: probes unanswered");
                            self.paths[i].up = false;
                            subflows::set_up(&mut self.maps, token, self.paths[i].id, false)?;
                        }
                    }
                    let rx = rx_report(&counters(&self.maps, token, self.paths[i].id));
                    let p = &mut self.paths[i];
                    p.probe_seq = p.probe_seq.wrapping_add(1);
                    p.probing = true;
                    p.acked = false;
                    let msg = Message {
                        token,
                        subflow_id: p.id,
                        body: Body::Probe {
                            seq: p.probe_seq,
                            sent_us: now,
                            srtt_us: p.rtt.srtt_us,
                            min_rtt_us: p.min_rtt.get(),
                            rx,
                        },
                    };
                    self.send(i, &msg).await;
                    self.maps.bump(ControlCounter::ProbesSent);
                }
            }
        }
        Ok(())
    }

    async fn on_inbound(&mut self, m: Inbound) -> Handled {
        let i = m.socket;
        if i >= self.paths.len() || m.from != self.paths[i].remote {
            return Ok(()); // not from our concentrator on this path
        }
        let msg = match Message::decode(&m.data, &self.psk) {
            Ok(msg) => msg,
            Err(DecodeError::BadTag) => {
                self.maps.bump(ControlCounter::AuthFailed);
                tracing::warn!(path = self.paths[i].name(), from = %m.from, "control message failed authentication: the pre-shared keys differ");
                return Ok(());
            }
            Err(e) => {
                self.maps.bump(ControlCounter::Malformed);
                tracing::debug!(error = %e, "dropping control message");
                return Ok(());
            }
        };
        let now = now_us();
        match msg.body {
            Body::Challenge { nonce_c, nonce_s, key_s } => {
                let Some(mut h) = self.paths[i].pending else { return Ok(()) };
                if h.nonce_c != nonce_c || h.challenged.is_some() {
                    return Ok(());
                }
                let token = if h.join {
                    match self.token {
                        Some(t) if t == msg.token => t,
                        _ => return Ok(()),
                    }
                } else {
                    let t = derive_token(h.key_c, key_s);
                    if t != msg.token {
                        tracing::warn!("concentrator's token does not match the keys; ignoring its CHALLENGE");
                        return Ok(());
                    }
                    t
                };
                // The path's address or interface went away while the
                // CHALLENGE was queued: this handshake is void, the next tick
                // starts another once the path is usable again.
                let Some(ep) = self.paths[i].endpoints() else {
                    tracing::debug!(path = self.paths[i].name(), "CHALLENGE for a path that lost its endpoints");
                    self.paths[i].pending = None;
                    return Ok(());
                };
                self.paths[i].rtt.sample(now.saturating_sub(h.sent_us));
                // Accept the concentrator's data on this subflow before it may send any.
                subflows::install_rx(&mut self.maps, token, self.paths[i].id, &ep)?;
                h.challenged = Some((nonce_s, token));
                h.sent_us = now;
                self.paths[i].pending = Some(h);
                let proof = Message { token, subflow_id: self.paths[i].id, body: Body::Proof { nonce_c, nonce_s } };
                self.send(i, &proof).await;
            }
            Body::Accept { nonce_c, nonce_s } => {
                let Some(h) = self.paths[i].pending else { return Ok(()) };
                let Some((ns, token)) = h.challenged else { return Ok(()) };
                if h.nonce_c != nonce_c || ns != nonce_s || msg.token != token {
                    return Ok(());
                }
                let Some(ep) = self.paths[i].endpoints() else {
                    tracing::debug!(path = self.paths[i].name(), "ACCEPT for a path that lost its endpoints");
                    self.paths[i].pending = None;
                    return Ok(());
                };
                if !h.join {
                    self.token = Some(token);
                    subflows::install_rx(&mut self.maps, token, self.paths[i].id, &ep)?;
                    // Everything routed into the bond belongs to our one connection.
                    self.maps.add_prefix(&"0.0.0.0/0".parse().unwrap(), token)?;
                    self.maps.add_prefix(&"::/0".parse().unwrap(), token)?;
                    self.maps.bump(ControlCounter::Connections);
                    tracing::info!(
                        token = format_args!("{token:08x}"),
                        path = self.paths[i].name(),
                        rtt_us = self.paths[i].rtt.srtt_us,
                        "connection established"
                    );
                } else {
                    tracing::info!(
                        path = self.paths[i].name(),
                        subflow = self.paths[i].id,
                        rtt_us = self.paths[i].rtt.srtt_us,
                        "subflow joined"
                    );
                }
                let p = &mut self.paths[i];
                p.pending = None;
                p.established = true;
                p.up = true;
                p.misses = 0;
                p.probing = false;
                // A (re)joined subflow may take another route: measure its
                // propagation delay and capacity afresh.
                p.min_rtt = MinRtt::default();
                p.capacity = Capacity::default();
                let st = p.path_state(true);
                subflows::install_tx(&mut self.maps, token, p.id, &ep, st)?;
                self.maps.bump(ControlCounter::SubflowsJoined);
            }
            Body::Reject { reason, nonce_c } => {
                let Some(h) = self.paths[i].pending else { return Ok(()) };
                if h.nonce_c != nonce_c {
                    return Ok(());
                }
                self.paths[i].pending = None;
                match (reason, self.token) {
                    (RejectReason::AuthFailed, None) => {
                        self.maps.bump(ControlCounter::AuthFailed);
                        return Err(EventError::Fatal(anyhow!(
                            "the concentrator at {} refused the connection: {}",
                            self.paths[i].remote,
                            reason.explain()
                        )));
                    }
                    (RejectReason::UnknownToken, Some(_)) => {
                        tracing::warn!("the concentrator no longer knows our connection (restarted?); reconnecting");
                        self.reset_connection()?;
                    }
                    _ => tracing::warn!(path = self.paths[i].name(), "handshake refused: {}", reason.explain()),
                }
            }
            Body::ProbeAck { seq, sent_us, rx } => {
                let Some(token) = self.token else { return Ok(()) };
                let p = &mut self.paths[i];
                // Any of the last 64 probes counts (answers may trail the interval).
                if !p.established || msg.token != token || p.probe_seq.wrapping_sub(seq) >= 64 {
                    return Ok(());
                }
                p.acked = true;
                p.misses = 0;
                let rtt = now.saturating_sub(sent_us);
                p.rtt.sample(rtt);
                p.min_rtt.sample(now, rtt.min(u32::MAX as u64) as u32);
                let family = if p.remote.is_ipv6() { FAMILY_V6 } else { FAMILY_V4 };
                p.feedback.on_report(now, rx, family);
                let sent = tx_wire_bytes(&counters(&self.maps, token, p.id));
                let max = p.cfg.max_rate_bytes_per_sec();
                let estimate = p.capacity.on_report(now, (sent, rx.bytes), rx.owd_us, max);
                let rate = effective_rate(p.cfg.rate_bytes_per_sec(), estimate);
                let (srtt, rttvar, owd) = (p.rtt.srtt_us, p.rtt.rttvar_us, p.min_rtt.get() / 2);
                let came_up = !p.up;
                p.up = true;
                if came_up {
                    tracing::info!(path = p.cfg.display_name(), "path up: probes answered");
                }
                self.maps.bump(ControlCounter::ProbesAnswered);
                subflows::update_path(&mut self.maps, token, self.paths[i].id, |ps| {
                    ps.srtt_us = srtt;
                    ps.rttvar_us = rttvar;
                    ps.owd_us = owd;
                    ps.rate_bytes_per_sec = rate;
                    ps.flags |= PATH_UP;
                })?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Forget the connection (the concentrator lost it) and start over.
    fn reset_connection(&mut self) -> Result<()> {
        if let Some(t) = self.token.take() {
            subflows::remove_connection(&mut self.maps, t)?;
        }
        for p in &mut self.paths {
            p.established = false;
            p.up = false;
            p.pending = None;
            p.probing = false;
        }
        Ok(())
    }

    async fn on_net_event(&mut self, ev: NetEvent) -> Handled {
        let index = match ev {
            NetEvent::Link { index, .. } | NetEvent::LinkGone { index } | NetEvent::Address { index, .. } => index,
        };
        for i in 0..self.paths.len() {
            let matches = self.paths[i].ifindex == Some(index) || self.paths[i].ifindex.is_none();
            if !matches {
                continue;
            }
            if let NetEvent::Link { running: false, .. } = ev {
                let p = &mut self.paths[i];
                p.running = false;
                if p.established && p.up {
                    tracing::warn!(path = p.cfg.display_name(), "path down: link lost carrier");
                    p.up = false;
                    if let Some(t) = self.token {
                        subflows::set_up(&mut self.maps, t, p.id, false)?;
                    }
                }
                continue;
            }
            self.refresh_path(i).await;
        }
        Ok(())
    }

    /// `path set`: new hints for a path, written to its subflow and sent to
    /// the concentrator (which schedules the return direction by them).
    async fn path_set(&mut self, c: PathChange) -> Result<String> {
        c.validate()?;
        let hits: Vec<usize> = (0..self.paths.len())
            .filter(|&i| self.paths[i].name() == c.path || self.paths[i].cfg.interface == c.path)
            .collect();
        if hits.is_empty() {
            let names: Vec<&str> = self.paths.iter().map(|p| p.name()).collect();
            bail!("no path {:?}; the paths are {}", c.path, names.join(", "));
        }
        let mut runtime = RuntimeChanges::load(&self.cfg.instance)?;
        for &i in &hits {
            c.apply_to(&mut self.paths[i].cfg);
            runtime.record_path(self.paths[i].name(), &c);
            let hint = self.paths[i].hint();
            let estimate = self.paths[i].capacity.get();
            if let (Some(token), true) = (self.token, self.paths[i].established) {
                subflows::update_path(&mut self.maps, token, self.paths[i].id, |p| {
                    hint.apply(p);
                    p.rate_bytes_per_sec = effective_rate(hint.rate_bytes_per_sec, estimate);
                })?;
                let m = Message { token, subflow_id: self.paths[i].id, body: Body::Hint { path: hint } };
                self.send(i, &m).await;
            }
            tracing::info!(path = self.paths[i].name(), ?hint, "path hints changed");
        }
        runtime.store(&self.cfg.instance)?;
        let p = &self.paths[hits[0]].cfg;
        Ok(format!(
            "path {}: priority {}, weight {}, rate {}, backup {}",
            c.path,
            p.priority,
            p.weight,
            p.rate_mbit.map(|r| format!("{r} Mbit/s")).unwrap_or_else(|| "estimated".into()),
            p.backup
        ))
    }
}

impl Role for Client {
    async fn on_peer(&mut self, m: Inbound) -> Handled {
        self.on_inbound(m).await?;
        self.check_connected()
    }

    async fn on_tick(&mut self) -> Handled {
        self.tick().await
    }

    async fn on_net(&mut self, ev: NetEvent) -> Handled {
        self.on_net_event(ev).await
    }

    async fn on_local(&mut self, req: Request) -> Handled<Response> {
        Ok(match req {
            Request::PathSet(c) => match self.path_set(c).await {
                Ok(m) => Response::Ok(m),
                Err(e) => Response::Error(format!("{e:#}")),
            },
            other => Response::Error(format!("{other:?} is answered by the event loop, not the client")),
        })
    }

    fn maps(&mut self) -> &mut DataPathMaps {
        &mut self.maps
    }

    fn estimates(&self) -> Vec<SubflowEstimate> {
        let Some(token) = self.token else { return Vec::new() };
        self.paths
            .iter()
            .filter_map(|p| p.feedback.last.map(|estimate| SubflowEstimate { token, subflow: p.id, estimate }))
            .collect()
    }

    fn into_maps(self) -> DataPathMaps {
        self.maps
    }
}

/// The announced form of a bond address: the host itself.
fn host_prefix(a: IpNet) -> IpNet {
    IpNet::new(a.addr(), a.max_prefix_len()).expect("max prefix length is valid")
}
