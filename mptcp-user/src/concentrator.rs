//! The concentrator role: answers handshakes from any number of clients,
//! installs their subflows and prefixes, answers probes and marks a subflow
//! down when its probes stop. One task owns all state and writes the maps.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::{bail, Result};
use ipnet::IpNet;
use mptcp_common::maps::{ControlCounter, MAX_SUBFLOWS, PATH_UP};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::bpfmaps::DataPathMaps;
use crate::config::{Config, Identity};
use crate::control::{
    data_keys, derive_token, mtu_pad, rate_probe_pad, Body, DecodeError, End, Freshness, Message, PathHint,
    RejectReason, RxReport, Stamps,
};
use crate::ctl::{Request, Response};
use crate::daemon::requests::AutoFollow;
use crate::daemon::{Handled, Role};
use crate::estimate::{counters, rx_report, tx_wire_bytes, SubflowEstimate};
use crate::monitor::PathMonitor;
use crate::netdev::{self, Net, NetEvent};
use crate::peer::{self, now_us, Inbound, RttEstimator};
use crate::session::handshake::{self, Offer, Reply};
use crate::session::subflow::UP_AFTER;
use crate::subflows::{self, Endpoints};
use crate::throttle::{Budget, Throttle};
use crate::train::{TrainMeter, TrainProbe, TrainTiming, TRAIN_LEN, TRAIN_PACKET_BYTES};

struct Listener {
    iface: String,
    ifindex: u32,
    socket: Arc<UdpSocket>,
}

struct Sub {
    ep: Endpoints,
    last_seen_us: u64,
    up: bool,
    /// The client's next probe is due within this (as its last one said).
    probe_interval_us: u64,
    /// Down: probes heard since; it is used again after `UP_AFTER` of them.
    back: u32,
    /// Feedback and estimates; the hints are the client's.
    monitor: PathMonitor,
    /// The client's latest packet train on this subflow, as it arrives.
    train_in: TrainMeter,
    /// Ours, which times the return direction once the subflow is up.
    train_out: TrainProbe,
    /// The client's stamps on this subflow: a replayed message is refused.
    fresh: Freshness,
}

struct Conn {
    subflows: [Option<Sub>; MAX_SUBFLOWS],
    /// When it was set up (or adopted): a connection is collected after a
    /// silence on every subflow, counted from here if none ever spoke.
    since_us: u64,
    /// The MTU its prefixes are routed with (the client's bond MTU); 0 = none.
    route_mtu: u32,
    /// The client it belongs to (an index into `Concentrator::clients`):
    /// only that client's key reaches it.
    owner: usize,
}

impl Conn {
    fn new(now_us: u64, owner: usize) -> Conn {
        Conn { subflows: Default::default(), since_us: now_us, route_mtu: 0, owner }
    }

    /// When the client was last heard on any subflow.
    fn last_heard_us(&self) -> u64 {
        self.subflows.iter().flatten().map(|s| s.last_seen_us).fold(self.since_us, u64::max)
    }

    fn is_empty(&self) -> bool {
        self.subflows.iter().all(Option::is_none)
    }
}

/// At most this many handshakes in progress (or just accepted) at once...
pub const MAX_PENDING: usize = 4096;
/// ...and this many waiting for their PROOF from one client address, so a
/// flood from one address cannot hold the table.
pub const MAX_PENDING_PER_ADDRESS: usize = 16;
/// Control messages from senders that are no known subflow (handshakes,
/// junk) checked per second, at most: a few milliseconds of HMAC work.
pub const UNVERIFIED_PER_SECOND: u64 = 2_000;
/// Probes for unknown connections or subflows answered per tick, at most.
const REFUSALS_PER_TICK: u32 = 64;

/// A handshake in progress or just accepted (its state machine's offer),
/// with what the HELLO brought.
struct Pending {
    offer: Offer,
    hint: PathHint,
    prefixes: Vec<IpNet>,
    /// The client's key (first subflow): with the offer's, the connection's
    /// data keys follow.
    key_c: u64,
    /// Whose key signed the HELLO: only that client's PROOF completes it.
    client: usize,
}

pub struct Concentrator {
    cfg: Config,
    /// The clients served, each with its key ([`Config::identities`]).
    clients: Vec<Identity>,
    /// The client whose message is being handled: answers are signed with
    /// its key.
    peer: usize,
    maps: DataPathMaps,
    listeners: Vec<Listener>,
    conns: HashMap<u32, Conn>,
    pending: HashMap<(SocketAddr, u64), Pending>,
    /// Refusals of unknown probes left in this tick.
    refusals_left: u32,
    /// Log lines for refused handshakes and probes: a flood must not
    /// become a flood of lines.
    full_log: Throttle,
    /// Our stamps on what we send.
    stamps: Stamps,
    /// The classes set to auto follow the paths.
    auto: AutoFollow,
    /// Control messages that failed authentication: their log lines, and
    /// the REJECTs that tell a client with the wrong key (both unverified
    /// work anyone can ask for).
    auth_log: Throttle,
    auth_rejects: Throttle,
    /// Log lines of replayed control messages.
    replay_log: Throttle,
    /// HMAC checks for messages not from a known subflow's 4-tuple.
    unverified_budget: Budget,
    refusal_log: Throttle,
    moved_log: Throttle,
    /// Routes with an MTU for the clients' prefixes through the bond device.
    routes: Net,
    bond_index: u32,
    /// Our own bond device's MTU: no client is routed with more.
    own_bond_mtu: u32,
    /// Prefixes of removed connections whose routes are still to go.
    unrouted: Vec<IpNet>,
}

impl Concentrator {
    pub async fn new(cfg: Config, maps: DataPathMaps, net: &Net, tx: mpsc::Sender<Inbound>) -> Result<Concentrator> {
        let clients = cfg.identities()?;
        let mut listeners = Vec::new();
        for p in &cfg.paths {
            let link = net
                .link(&p.interface)
                .await?
                .ok_or_else(|| anyhow::anyhow!("interface {} does not exist", p.interface))?;
            let addrs: Vec<IpAddr> = match p.local {
                Some(a) => {
                    vec![netdev::pick_local(&net.addresses(link.index).await?, Some(a), a.is_ipv4(), &p.interface)?]
                }
                None => {
                    let all = net.addresses(link.index).await?;
                    [true, false]
                        .iter()
                        .filter_map(|v4| netdev::pick_local(&all, None, *v4, &p.interface).ok())
                        .collect()
                }
            };
            if addrs.is_empty() {
                bail!("interface {} has no address to listen on", p.interface);
            }
            for a in addrs {
                // No ICMP hints: the concentrator searches no path MTU.
                let socket = peer::bind_control_socket(&p.interface, SocketAddr::new(a, cfg.port), false)?;
                let n = listeners.len();
                peer::spawn_reader(n, socket.clone(), tx.clone());
                tracing::info!(interface = %p.interface, address = %a, port = cfg.port, "listening");
                listeners.push(Listener { iface: p.interface.clone(), ifindex: link.index, socket });
            }
        }
        let bond = net
            .link(&cfg.bond.name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the bond device {} is gone", cfg.bond.name))?;
        let mut c = Concentrator {
            routes: Net::new()?,
            bond_index: bond.index,
            own_bond_mtu: bond.mtu,
            unrouted: Vec::new(),
            cfg,
            clients,
            peer: 0,
            maps,
            listeners,
            conns: HashMap::new(),
            pending: HashMap::new(),
            refusals_left: REFUSALS_PER_TICK,
            full_log: Throttle::default(),
            stamps: Stamps::default(),
            auto: AutoFollow::default(),
            auth_log: Throttle::default(),
            auth_rejects: Throttle::default(),
            replay_log: Throttle::default(),
            unverified_budget: Budget::new(UNVERIFIED_PER_SECOND),
            refusal_log: Throttle::default(),
            moved_log: Throttle::default(),
        };
        c.adopt();
        Ok(c)
    }

    /// Take over the connections a previous controller left in the maps.
    fn adopt(&mut self) {
        let now = now_us();
        for conn in self.maps.connections() {
            // Whose it is, the maps do not say: the client whose prefixes
            // hold the connection's (with one shared key, that one).
            let prefixes = self.maps.prefixes_of(conn.token);
            let owner = self.clients.iter().position(|c| prefixes.iter().all(|p| c.owns(p)));
            let Some(owner) = owner.filter(|_| !prefixes.is_empty() || self.clients.len() == 1) else {
                tracing::warn!(token = format_args!("{:08x}", conn.token), prefixes = ?prefixes, "a connection left by the previous controller belongs to no configured client; removing it");
                self.unroute(conn.token);
                if let Err(e) = subflows::remove_connection(&mut self.maps, conn.token) {
                    tracing::warn!(error = format!("{e:#}"), "cannot remove it");
                }
                continue;
            };
            // Collected like any other if its client stays silent.
            let mut c = Conn::new(now, owner);
            for (id, s) in conn.subflows.iter().enumerate() {
                if s.path.established() {
                    // Whether the rate was the client's hint is not in the
                    // maps: keep it as one until the client says otherwise.
                    let hint = PathHint {
                        priority: s.path.priority,
                        backup: s.path.backup(),
                        unused: s.path.unused(),
                        rate_bytes_per_sec: s.path.rate_bytes_per_sec,
                        weight: s.path.weight,
                    };
                    let mut monitor = PathMonitor::new(hint, 0);
                    monitor.rtt = RttEstimator { srtt_us: s.path.srtt_us, rttvar_us: s.path.rttvar_us };
                    let sub = Sub {
                        ep: Endpoints::from_subflow(s),
                        last_seen_us: now,
                        up: s.path.up(),
                        probe_interval_us: self.cfg.probe.interval_ms * 1000,
                        back: 0,
                        monitor,
                        train_in: TrainMeter::default(),
                        train_out: TrainProbe::default(),
                        // What was acted on before the restart is not
                        // known: the first stamp heard sets the floor.
                        fresh: Freshness::default(),
                    };
                    c.subflows[id] = Some(sub);
                }
            }
            tracing::info!(token = format_args!("{:08x}", conn.token), "adopted connection");
            self.conns.insert(conn.token, c);
        }
    }

    /// Send `msg` from listener `listener` to `to`; its encoded length.
    async fn send(&self, listener: usize, to: SocketAddr, msg: &Message) -> usize {
        let key = self.clients[self.peer].key.bytes();
        let bytes = msg.encode_stamped(key, self.stamps.next(now_us()));
        if let Err(e) = peer::send_to(&self.listeners[listener].socket, &bytes, to).await {
            tracing::debug!(%to, error = %e, "control send failed");
        }
        bytes.len()
    }

    async fn on_inbound(&mut self, m: Inbound) -> Handled {
        if m.too_big.is_some() {
            return Ok(()); // the concentrator searches no path MTU of its own
        }
        // An HMAC for anyone: a known subflow's 4-tuple always, everyone else
        // (handshakes, junk) within a budget a second, so a flood costs at
        // most that many checks a second.
        let named = crate::control::unverified_ids(&m.data);
        let known = named.is_some_and(|(token, id)| self.sub_from(token, id, &m).is_some());
        if !known && !self.unverified_budget.take(now_us()) {
            self.maps.bump(ControlCounter::Shed);
            return Ok(());
        }
        // Whose key the header names; a name we do not know is a wrong key.
        let who =
            crate::control::unverified_key_id(&m.data).and_then(|id| self.clients.iter().position(|c| c.key_id == id));
        self.peer = who.unwrap_or(0);
        let decoded = match who {
            Some(who) => Message::decode_stamped(&m.data, self.clients[who].key.bytes()),
            None => Err(DecodeError::BadTag),
        };
        let (msg, stamp) = match decoded {
            Ok(decoded) => decoded,
            Err(DecodeError::BadTag) => {
                self.maps.bump(ControlCounter::AuthFailed);
                let now = now_us();
                if let Some(left_out) = self.auth_log.allow(now) {
                    tracing::warn!(from = %m.from, interface = %self.listeners[m.socket].iface, left_out, "refused a control message: authentication failed (wrong pre-shared key)");
                }
                // Tell a client with the wrong key, so it fails fast; nothing
                // is installed. At most one a second: a flood of forged
                // HELLOs must not become a flood of answers.
                let nonce = crate::control::unverified_hello_nonce(&m.data);
                if let Some(nonce_c) = nonce.filter(|_| self.auth_rejects.allow(now).is_some()) {
                    let r = Message {
                        token: 0,
                        subflow_id: 0,
                        body: Body::Reject { reason: RejectReason::AuthFailed, nonce_c },
                    };
                    self.send(m.socket, m.from, &r).await;
                }
                return Ok(());
            }
            Err(e) => {
                self.maps.bump(ControlCounter::Malformed);
                tracing::debug!(from = %m.from, error = %e, "dropping control message");
                return Ok(());
            }
        };
        // Another client's connection is answered as one nobody has: a key
        // reaches its own connections only, and cannot learn of others.
        let who = self.peer;
        let token_visible = self.conns.get(&msg.token).is_some_and(|c| c.owner == who);
        let foreign = self.conns.contains_key(&msg.token) && !token_visible;
        // A subflow's messages are acted on only while their stamps grow:
        // a captured probe, hint or train replayed later changes nothing.
        // (Handshakes are fresh by their nonces; a message for a subflow we
        // do not know from this 4-tuple is answered as before.)
        if foreign && !matches!(msg.body, Body::Hello { .. } | Body::Proof { .. } | Body::Probe { .. }) {
            return Ok(()); // as for a token nobody has
        }
        if !matches!(msg.body, Body::Hello { .. } | Body::Proof { .. }) && !foreign {
            if let Some(sub) = self.sub_from(msg.token, msg.subflow_id, &m) {
                if !sub.fresh.accept(stamp) {
                    self.maps.bump(ControlCounter::Replayed);
                    if let Some(left_out) = self.replay_log.allow(now_us()) {
                        tracing::warn!(from = %m.from, token = format_args!("{:08x}", msg.token), subflow = msg.subflow_id, left_out, "refused a replayed control message");
                    }
                    return Ok(());
                }
            }
        }
        let now = now_us();
        match msg.body {
            Body::Hello { join, nonce_c, key_c, path, prefixes } => {
                if msg.subflow_id as usize >= MAX_SUBFLOWS {
                    self.maps.bump(ControlCounter::Malformed);
                    return Ok(());
                }
                // A client announces only its own prefixes.
                if let Some(p) = prefixes.iter().find(|p| !join && !self.clients[who].owns(p)) {
                    self.maps.bump(ControlCounter::ForeignPrefix);
                    if let Some(left_out) = self.refusal_log.allow(now) {
                        tracing::warn!(from = %m.from, client = %self.clients[who].name, prefix = %p, left_out, "handshake refused: the client announced a prefix that is not its own");
                    }
                    let reply = Reply::Reject(RejectReason::ForeignPrefix);
                    self.reply(m.socket, m.from, msg.token, msg.subflow_id, nonce_c, reply).await;
                    return Ok(());
                }
                let key = (m.from, nonce_c);
                // A key and token only for a new first-subflow offer (a JOIN
                // has its token, a retransmitted HELLO its offer).
                let (fresh_token, fresh_key_s) = if join || self.pending.contains_key(&key) {
                    (0, 0)
                } else {
                    loop {
                        let key_s: u64 = rand::random();
                        let t = derive_token(key_c, key_s);
                        if !self.conns.contains_key(&t) {
                            break (t, key_s);
                        }
                    }
                };
                let h = handshake::Hello {
                    join,
                    token: msg.token,
                    subflow_id: msg.subflow_id,
                    listener: m.socket,
                    now_us: now,
                    token_known: token_visible,
                    full: self.conns.len() >= mptcp_common::maps::MAX_CONNECTIONS as usize,
                    busy: self.pending_full(m.from.ip()),
                    fresh_token,
                    fresh_key_s,
                    fresh_nonce_s: rand::random(),
                };
                let (offer, reply) = handshake::on_hello(self.pending.get(&key).map(|p| p.offer), h);
                if let Some(offer) = offer {
                    let hint = path;
                    self.pending.entry(key).or_insert(Pending { offer, hint, prefixes, key_c, client: who });
                }
                match reply {
                    Reply::Reject(RejectReason::UnknownToken) => {
                        self.maps.bump(ControlCounter::UnknownToken);
                        tracing::warn!(from = %m.from, token = format_args!("{:08x}", msg.token), "JOIN for an unknown connection refused");
                    }
                    Reply::Reject(RejectReason::Full) => {
                        self.maps.bump(ControlCounter::RefusedFull);
                        if let Some(left_out) = self.full_log.allow(now) {
                            tracing::warn!(from = %m.from, left_out, "handshake refused: no room (connections or handshakes in progress at their cap)");
                        }
                    }
                    _ => {}
                }
                self.reply(m.socket, m.from, msg.token, msg.subflow_id, nonce_c, reply).await;
            }
            Body::Proof { nonce_c, nonce_s } => {
                let key = (m.from, nonce_c);
                let offer = self.pending.get(&key).filter(|p| p.client == who).map(|p| p.offer);
                let mut reply = handshake::on_proof(offer, msg.token, msg.subflow_id, nonce_s, m.socket);
                let mut failed = None;
                if let (Reply::Install, Some(offer)) = (reply, offer) {
                    let installed = self.accept(m.from, nonce_c, m.local, now);
                    let (kept, r) = handshake::on_installed(offer, installed.is_ok());
                    match kept {
                        Some(o) => self.pending.get_mut(&key).expect("offer checked").offer = o,
                        None => self.undo_accept(m.from, nonce_c),
                    }
                    reply = r;
                    failed = installed.err();
                    if failed.is_some() {
                        self.maps.bump(ControlCounter::RefusedFull);
                    }
                }
                let accepted = matches!(reply, Reply::Accept { .. });
                self.reply(m.socket, m.from, msg.token, msg.subflow_id, nonce_c, reply).await;
                if let Some(e) = failed {
                    return Err(e.context("cannot install the subflow; refused it").into());
                }
                if accepted {
                    // Right behind the ACCEPT: the client times the return
                    // direction as the subflow comes up.
                    self.send_train(m.socket, m.from, msg.token, msg.subflow_id, now).await;
                }
            }
            Body::Probe { seq, sent_us, srtt_us, min_rtt_us, interval_ms, bond_mtu, rx } => {
                let known = self.conns.get(&msg.token).filter(|_| !foreign).map(|c| {
                    matches!(c.subflows.get(msg.subflow_id as usize),
                        Some(Some(sub)) if sub.ep.remote == m.from && sub.ep.local == m.local)
                });
                let refusal = match known {
                    None => Some(RejectReason::UnknownToken),
                    Some(false) => Some(RejectReason::UnknownSubflow),
                    Some(true) => None,
                };
                if let Some(reason) = refusal {
                    self.refuse_probe(&m, &msg, sent_us, reason).await;
                    return Ok(());
                }
                let sub = self.conns.get_mut(&msg.token).and_then(|c| c.subflows[msg.subflow_id as usize].as_mut());
                let sub = sub.expect("checked above");
                sub.last_seen_us = now;
                // A client that announces nothing sensible is held to our own interval.
                sub.probe_interval_us = match interval_ms as u64 {
                    10..=60_000 => interval_ms as u64 * 1000,
                    _ => self.cfg.probe.interval_ms * 1000,
                };
                // Back in use only after a few probes in a row: a path that
                // flickers does not take the return traffic on every flicker.
                let came_up = !sub.up && {
                    sub.back += 1;
                    sub.back >= UP_AFTER
                };
                if came_up {
                    sub.up = true;
                }
                let up = sub.up;
                // A train the client sent before this probe is over.
                let train_end = sub.train_in.on_later_message();
                let own = counters(&self.maps, msg.token, msg.subflow_id);
                sub.monitor.on_peer_rtt(now, srtt_us, min_rtt_us);
                let bucket = self.maps.bucket(msg.token, msg.subflow_id);
                // The estimator's trace lines name the subflow they judge.
                let span = tracing::debug_span!("subflow", token = msg.token, id = msg.subflow_id).entered();
                sub.monitor.on_report(now, rx, tx_wire_bytes(&own), bucket.as_ref(), sub.ep.remote.is_ipv6());
                drop(span);
                let measured = sub.monitor.measurements();
                // The probe's own one-way delay: the client learns the
                // path's jitter from it before any data crosses.
                let mine = RxReport { probe_owd_us: peer::owd_sample(m.rx_mono_us(), sent_us), ..rx_report(&own) };
                let ack = Message {
                    token: msg.token,
                    subflow_id: msg.subflow_id,
                    body: Body::ProbeAck { seq, sent_us, acked_us: now_us(), rx: mine },
                };
                let wire = self.send(m.socket, m.from, &ack).await + peer::wire_overhead(m.from.is_ipv6());
                if let Some(sub) =
                    self.conns.get_mut(&msg.token).and_then(|c| c.subflows[msg.subflow_id as usize].as_mut())
                {
                    sub.monitor.set_control_load(wire as u64, sub.probe_interval_us / 1000);
                }
                self.maps.bump(ControlCounter::ProbesAnswered);
                if let Some(t) = train_end {
                    self.answer_train(&m, &msg, t).await;
                }
                self.route_with_mtu(msg.token, bond_mtu).await;
                if came_up {
                    tracing::info!(
                        token = format_args!("{:08x}", msg.token),
                        subflow = msg.subflow_id,
                        "subflow up: probes resumed"
                    );
                }
                subflows::update_path(&mut self.maps, msg.token, msg.subflow_id, |ps| {
                    if up {
                        ps.flags |= PATH_UP;
                    }
                    measured.write(ps);
                })?;
                // The train behind the ACCEPT went unanswered (lost, or spaced
                // unevenly by the way): another, ever less often (`TrainProbe::due`).
                if up && measured.rate_bytes_per_sec == 0 {
                    self.send_train(m.socket, m.from, msg.token, msg.subflow_id, now).await;
                }
            }
            Body::MtuProbe { round, size, .. } => {
                if self.sub_from(msg.token, msg.subflow_id, &m).is_none() {
                    return Ok(());
                }
                // As large as the probe: an answered size crossed both ways.
                let body = Body::MtuAck { round, size, pad: mtu_pad(size, m.from.is_ipv6()) };
                let ack = Message { token: msg.token, subflow_id: msg.subflow_id, body };
                self.send(m.socket, m.from, &ack).await;
            }
            Body::RateProbe { train, index, count, sent_ns, .. } => {
                let Some(sub) = self.sub_from(msg.token, msg.subflow_id, &m) else { return Ok(()) };
                let wire = (m.data.len() + peer::wire_overhead(m.from.is_ipv6())) as u64;
                if let Some(t) = sub.train_in.on_probe(train, index, count, sent_ns, wire, m.rx_ns) {
                    self.answer_train(&m, &msg, t).await;
                }
            }
            Body::RateAck { train, bytes, span_us } => {
                let Some(sub) = self.sub_from(msg.token, msg.subflow_id, &m) else { return Ok(()) };
                let Some(rate) = sub.train_out.on_ack(train, bytes, span_us) else { return Ok(()) };
                sub.monitor.seed_capacity(now, rate);
                tracing::info!(
                    token = format_args!("{:08x}", msg.token),
                    subflow = msg.subflow_id,
                    mbit = rate as f64 * 8e-6,
                    "return capacity timed by a packet train"
                );
                let measured = sub.monitor.measurements();
                subflows::update_path(&mut self.maps, msg.token, msg.subflow_id, |ps| measured.write(ps))?;
            }
            Body::Hint { path } => {
                let Some(conn) = self.conns.get_mut(&msg.token) else { return Ok(()) };
                let Some(Some(sub)) = conn.subflows.get_mut(msg.subflow_id as usize) else { return Ok(()) };
                if sub.ep.remote != m.from || sub.ep.local != m.local {
                    return Ok(());
                }
                sub.monitor.hint = path;
                tracing::info!(
                    token = format_args!("{:08x}", msg.token),
                    subflow = msg.subflow_id,
                    ?path,
                    "client changed path hints"
                );
                let hinted = sub.monitor.hints();
                subflows::update_path(&mut self.maps, msg.token, msg.subflow_id, |p| hinted.write(p))?;
            }
            _ => {}
        }
        Ok(())
    }

    /// An authenticated probe for a connection we do not know (we restarted
    /// without our state, or collected it) or a subflow we do not know from
    /// this address and port (the client's NAT mapping changed): say so, so
    /// the client sets it up again instead of probing forever. The answer
    /// echoes the probe's send time, which the client checks is recent.
    /// Rate-limited per tick; the probe itself was authenticated, so only a
    /// holder of the key draws answers.
    async fn refuse_probe(&mut self, m: &Inbound, msg: &Message, sent_us: u64, reason: RejectReason) {
        self.maps.bump(ControlCounter::ProbesRefused);
        if self.refusals_left == 0 {
            return;
        }
        self.refusals_left -= 1;
        if let Some(left_out) = self.refusal_log.allow(now_us()) {
            tracing::info!(
                from = %m.from,
                token = format_args!("{:08x}", msg.token),
                subflow = msg.subflow_id,
                left_out,
                "probe refused: {}",
                reason.explain()
            );
        }
        let r =
            Message { token: msg.token, subflow_id: msg.subflow_id, body: Body::Reject { reason, nonce_c: sent_us } };
        self.send(m.socket, m.from, &r).await;
    }

    /// No room for another handshake from `from` (or from anyone).
    fn pending_full(&self, from: IpAddr) -> bool {
        use handshake::Phase;
        let waiting = || self.pending.iter().filter(|((a, _), p)| a.ip() == from && p.offer.phase == Phase::Challenged);
        self.pending.len() >= MAX_PENDING || waiting().count() >= MAX_PENDING_PER_ADDRESS
    }

    /// Subflow `id` of connection `token`, if `m` came from its 4-tuple.
    fn sub_from(&mut self, token: u32, id: u8, m: &Inbound) -> Option<&mut Sub> {
        let sub = self.conns.get_mut(&token)?.subflows.get_mut(id as usize)?.as_mut()?;
        (sub.ep.remote == m.from && sub.ep.local == m.local).then_some(sub)
    }

    /// Answer the client's train that `m` (on its subflow) ended.
    async fn answer_train(&mut self, m: &Inbound, msg: &Message, t: TrainTiming) {
        let body = Body::RateAck { train: t.train, bytes: t.bytes, span_us: t.span_us };
        let ack = Message { token: msg.token, subflow_id: msg.subflow_id, body };
        self.send(m.socket, m.from, &ack).await;
    }

    /// A packet train to the client on a subflow, if one is due (the first,
    /// or a retry after the PROOF came again and no answer did).
    async fn send_train(&mut self, listener: usize, to: SocketAddr, token: u32, subflow_id: u8, now: u64) {
        let Some(Some(sub)) = self.conns.get_mut(&token).map(|c| c.subflows.get_mut(subflow_id as usize)) else {
            return;
        };
        let Some(train) = sub.as_mut().and_then(|s| s.train_out.due(now)) else { return };
        tracing::debug!(token = format_args!("{token:08x}"), subflow = subflow_id, train, "packet train");
        let pad = rate_probe_pad(TRAIN_PACKET_BYTES, to.is_ipv6());
        let start = std::time::Instant::now();
        for index in 0..TRAIN_LEN {
            let sent_ns = start.elapsed().as_nanos().min(u32::MAX as u128) as u32;
            let body = Body::RateProbe { train, index, count: TRAIN_LEN, sent_ns, pad };
            self.send(listener, to, &Message { token, subflow_id, body }).await;
        }
    }

    /// Send what a handshake step answers (`token` and `subflow_id` as the
    /// client's message named them, for a REJECT).
    async fn reply(&self, listener: usize, to: SocketAddr, token: u32, subflow_id: u8, nonce_c: u64, r: Reply) {
        let (token, subflow_id, body) = match r {
            Reply::Challenge { token, subflow_id, nonce_s, key_s } => {
                (token, subflow_id, Body::Challenge { nonce_c, nonce_s, key_s })
            }
            Reply::Accept { token, subflow_id, nonce_s } => (token, subflow_id, Body::Accept { nonce_c, nonce_s }),
            Reply::Reject(reason) => (token, subflow_id, Body::Reject { reason, nonce_c }),
            Reply::Install | Reply::None => return,
        };
        self.send(listener, to, &Message { token, subflow_id, body }).await;
    }

    /// A verified PROOF: install the connection (first subflow) or the subflow.
    fn accept(&mut self, from: SocketAddr, nonce_c: u64, local: SocketAddr, now: u64) -> Result<()> {
        let p = self.pending.get(&(from, nonce_c)).expect("caller checked");
        let o = p.offer;
        let (join, token, id, hint, prefixes, listener, sent) =
            (o.join, o.token, o.subflow_id, p.hint, p.prefixes.clone(), o.listener, o.challenged_us);
        let owner = p.client;
        let keys = data_keys(self.clients[owner].key.bytes(), token, p.key_c, o.key_s, End::Concentrator);
        let ep = Endpoints { local, remote: from, ifindex: self.listeners[listener].ifindex };
        // A JOIN of a subflow we know from another 4-tuple: the client's NAT
        // mapping (or address) changed. The subflow moves, and its old tuple
        // no longer carries data.
        if join {
            if let Some(c) = self.conns.get_mut(&token) {
                if matches!(&c.subflows[id as usize], Some(old) if old.ep != ep) {
                    // A NAT rebinding moves one subflow now and then; a
                    // burst of moves (a JOIN flood) logs a line a second.
                    if let Some(left_out) = self.moved_log.allow(now_us()) {
                        tracing::info!(token = format_args!("{token:08x}"), subflow = id, client = %from, left_out, "subflow moved to a new address and port");
                    }
                    subflows::remove(&mut self.maps, token, id)?;
                    c.subflows[id as usize] = None;
                }
            }
        }
        // This 4-tuple may still belong to another connection's subflow: the
        // same client restarted, or a NAT gave the mapping to another
        // subscriber. That subflow ends; its connection only when nothing of
        // it is left (a connection still heard on other subflows is live).
        let stale: Vec<(u32, usize)> = self
            .conns
            .iter()
            .flat_map(|(t, c)| {
                c.subflows
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| matches!(s, Some(s) if s.ep.remote == from && s.ep.local == local))
                    .map(move |(i, _)| (*t, i))
            })
            .filter(|&(t, i)| !(t == token && i == id as usize))
            .collect();
        for (t, i) in stale {
            let Some(c) = self.conns.get_mut(&t) else { continue };
            subflows::remove(&mut self.maps, t, i as u8)?;
            c.subflows[i] = None;
            if c.is_empty() {
                tracing::info!(old = format_args!("{t:08x}"), client = %from, "a previous connection from this address has no subflow left; removing it");
                self.unroute(t);
                subflows::remove_connection(&mut self.maps, t)?;
                self.conns.remove(&t);
            }
        }
        if !join {
            subflows::install_keys(&mut self.maps, token, keys)?;
            for pfx in &prefixes {
                self.maps.add_prefix(pfx, token)?;
            }
            self.conns.insert(token, Conn::new(now, owner));
            self.maps.bump(ControlCounter::Connections);
            tracing::info!(token = format_args!("{token:08x}"), client = %from, prefixes = ?prefixes, "connection established");
        } else {
            tracing::info!(token = format_args!("{token:08x}"), subflow = id, client = %from, "subflow joined");
        }
        let mut monitor = PathMonitor::new(hint, 0);
        monitor.rtt.sample(now.saturating_sub(sent));
        let st = monitor.path_state(true);
        subflows::install_rx(&mut self.maps, token, id, &ep)?;
        subflows::install_tx(&mut self.maps, token, id, &ep, st)?;
        self.maps.bump(ControlCounter::SubflowsJoined);
        if let Some(c) = self.conns.get_mut(&token) {
            let probe_interval_us = self.cfg.probe.interval_ms * 1000;
            c.subflows[id as usize] = Some(Sub {
                ep,
                last_seen_us: now,
                up: true,
                probe_interval_us,
                back: 0,
                monitor,
                train_in: TrainMeter::default(),
                train_out: TrainProbe::default(),
                fresh: Freshness::default(),
            });
        }
        Ok(())
    }

    /// Remove what a failed [`Concentrator::accept`] may have installed, and
    /// its handshake.
    fn undo_accept(&mut self, from: SocketAddr, nonce_c: u64) {
        let Some(Pending { offer: o, .. }) = self.pending.remove(&(from, nonce_c)) else { return };
        let result = if o.join {
            if let Some(c) = self.conns.get_mut(&o.token) {
                c.subflows[o.subflow_id as usize] = None;
            }
            subflows::remove(&mut self.maps, o.token, o.subflow_id)
        } else {
            self.conns.remove(&o.token);
            subflows::remove_connection(&mut self.maps, o.token)
        };
        if let Err(e) = result {
            tracing::warn!(error = format!("{e:#}"), "cannot remove a half-installed subflow");
        }
    }

    /// Route the client's prefixes through the bond with its bond MTU, when
    /// that changed: what the kernel forwards to the client is then
    /// fragmented, or answered "fragmentation needed", to fit the client's
    /// smallest path, instead of vanishing on it.
    async fn route_with_mtu(&mut self, token: u32, mtu: u32) {
        // Nothing below IPv4's minimum, nothing above what our own bond takes.
        if mtu < 576 {
            return;
        }
        let mtu = mtu.min(self.own_bond_mtu);
        let Some(c) = self.conns.get_mut(&token) else { return };
        if c.route_mtu == mtu {
            return;
        }
        // Recorded once every prefix is routed, so a failure is tried again
        // at the next probe.
        let mut routed = true;
        for pfx in self.maps.prefixes_of(token) {
            // An IPv6 route takes no MTU under 1280: IPv6 traffic then relies
            // on the client's own MTU and the MSS clamp.
            if pfx.addr().is_ipv6() && mtu < 1280 {
                continue;
            }
            match self.routes.set_route_mtu(pfx, self.bond_index, mtu).await {
                Ok(()) => {
                    tracing::info!(token = format_args!("{token:08x}"), prefix = %pfx, mtu, "client routed with its bond MTU")
                }
                Err(e) => {
                    routed = false;
                    tracing::warn!(error = format!("{e:#}"), "cannot route the client's prefix with its MTU");
                }
            }
        }
        if let (true, Some(c)) = (routed, self.conns.get_mut(&token)) {
            c.route_mtu = mtu;
        }
    }

    /// Before a connection goes: its routes are to be removed (at the next
    /// tick; the callers are not async). Whether or not this controller
    /// routed them: an adopted connection's routes are a previous one's.
    fn unroute(&mut self, token: u32) {
        let prefixes = self.maps.prefixes_of(token);
        self.unrouted.extend(prefixes);
    }

    async fn remove_unrouted(&mut self) {
        for pfx in std::mem::take(&mut self.unrouted) {
            // Another connection may hold the prefix by now: its route stays.
            if self.maps.prefix_owner(&pfx).is_some() {
                continue;
            }
            if let Err(e) = self.routes.del_route(pfx, self.bond_index).await {
                tracing::warn!(error = format!("{e:#}"), "cannot remove a gone client's route");
            }
        }
    }

    fn tick(&mut self) -> Handled {
        let now = now_us();
        self.refusals_left = REFUSALS_PER_TICK;
        self.pending.retain(|_, p| !p.offer.expired(now));
        self.collect(now)?;
        // Down after `down_after` of the client's announced probe intervals
        // and one more in silence: a subflow carrying traffic is probed often,
        // so its failure is seen soon.
        let down_after = self.cfg.probe.down_after as u64 + 1;
        let mut downs = Vec::new();
        for (t, c) in &mut self.conns {
            for (i, s) in c.subflows.iter_mut().enumerate() {
                if let Some(s) = s {
                    let silent = now.saturating_sub(s.last_seen_us) > s.probe_interval_us * down_after;
                    if silent {
                        s.back = 0;
                    }
                    if s.up && silent {
                        s.up = false;
                        downs.push((*t, i as u8));
                    }
                }
            }
        }
        for (t, i) in downs {
            tracing::warn!(token = format_args!("{t:08x}"), subflow = i, "subflow down: probes stopped");
            subflows::set_up(&mut self.maps, t, i, false)?;
        }
        Ok(())
    }
}

impl Concentrator {
    /// Remove connections whose client has not been heard on any subflow
    /// for `collect_after_s`: it vanished (or is cut off, and will reconnect
    /// when its probes get an "unknown connection" answer).
    fn collect(&mut self, now: u64) -> Result<()> {
        let after_us = self.cfg.probe.collect_after_s * 1_000_000;
        let silent: Vec<u32> = self
            .conns
            .iter()
            .filter(|(_, c)| now.saturating_sub(c.last_heard_us()) > after_us)
            .map(|(t, _)| *t)
            .collect();
        for t in silent {
            tracing::info!(
                token = format_args!("{t:08x}"),
                after_s = self.cfg.probe.collect_after_s,
                "connection collected: its client was silent on every subflow"
            );
            self.unroute(t);
            subflows::remove_connection(&mut self.maps, t)?;
            self.conns.remove(&t);
            self.maps.bump(ControlCounter::Collected);
        }
        Ok(())
    }
}

impl Concentrator {
    /// The latest estimates from feedback, per subflow (for `status`).
    fn estimates(&self) -> Vec<SubflowEstimate> {
        let mut all = Vec::new();
        for (&token, c) in &self.conns {
            for (id, s) in c.subflows.iter().enumerate() {
                if let Some(estimate) = s.as_ref().and_then(|s| s.monitor.feedback.last) {
                    all.push(SubflowEstimate { token, subflow: id as u8, estimate });
                }
            }
        }
        all
    }
}

impl Role for Concentrator {
    async fn on_peer(&mut self, m: Inbound) -> Handled {
        self.on_inbound(m).await
    }

    async fn on_tick(&mut self) -> Handled {
        let r = self.tick();
        self.remove_unrouted().await;
        r
    }

    async fn on_net(&mut self, _ev: NetEvent) -> Handled {
        // Listeners stay bound to their interfaces; clients re-join.
        Ok(())
    }

    async fn on_local(&mut self, req: Request) -> Handled<Response> {
        Ok(match req {
            Request::PathSet(_) => Response::Error(
                "path set applies on the client: the concentrator follows the hints each client sends".into(),
            ),
            other => {
                let view = crate::daemon::requests::RoleView { estimates: self.estimates(), ..Default::default() };
                return crate::daemon::requests::answer(
                    &mut self.maps,
                    &self.cfg.instance,
                    &view,
                    other,
                    "concentrator",
                );
            }
        })
    }

    fn count_error(&mut self) {
        self.maps.bump(mptcp_common::maps::ControlCounter::EventErrors);
    }

    fn after_input(&mut self) -> anyhow::Result<()> {
        self.auto.follow(&mut self.maps)
    }
}

#[cfg(test)]
mod tests {
    use super::Throttle;

    #[test]
    fn a_throttle_lets_one_line_a_second_through_and_counts_the_rest() {
        let mut t = Throttle::default();
        assert_eq!(t.allow(5_000_000), Some(0));
        assert_eq!((t.allow(5_100_000), t.allow(5_900_000)), (None, None));
        assert_eq!(t.allow(6_000_000), Some(2));
        assert_eq!(t.allow(9_000_000), Some(0));
    }
}
