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
use crate::config::Config;
use crate::control::{derive_token, Body, DecodeError, Message, PathHint, RejectReason};
use crate::ctl::{Request, Response};
use crate::daemon::{Handled, Role};
use crate::estimate::{counters, rx_report, tx_wire_bytes, SubflowEstimate};
use crate::monitor::PathMonitor;
use crate::netdev::{self, Net, NetEvent};
use crate::peer::{self, now_us, Inbound, RttEstimator};
use crate::session::handshake::{self, Offer, Reply};
use crate::subflows::{self, Endpoints};

struct Listener {
    iface: String,
    ifindex: u32,
    socket: Arc<UdpSocket>,
}

struct Sub {
    ep: Endpoints,
    last_seen_us: u64,
    up: bool,
    /// Feedback and estimates; the hints are the client's.
    monitor: PathMonitor,
}

struct Conn {
    subflows: [Option<Sub>; MAX_SUBFLOWS],
}

/// A handshake in progress or just accepted (its state machine's offer),
/// with what the HELLO brought.
struct Pending {
    offer: Offer,
    hint: PathHint,
    prefixes: Vec<IpNet>,
}

pub struct Concentrator {
    cfg: Config,
    psk: Vec<u8>,
    maps: DataPathMaps,
    listeners: Vec<Listener>,
    conns: HashMap<u32, Conn>,
    pending: HashMap<(SocketAddr, u64), Pending>,
}

impl Concentrator {
    pub async fn new(cfg: Config, maps: DataPathMaps, net: &Net, tx: mpsc::Sender<Inbound>) -> Result<Concentrator> {
        let psk = cfg.psk_bytes()?;
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
                let socket = peer::bind_control_socket(&p.interface, SocketAddr::new(a, cfg.port))?;
                let n = listeners.len();
                peer::spawn_reader(n, socket.clone(), tx.clone());
                tracing::info!(interface = %p.interface, address = %a, port = cfg.port, "listening");
                listeners.push(Listener { iface: p.interface.clone(), ifindex: link.index, socket });
            }
        }
        let mut c = Concentrator { cfg, psk, maps, listeners, conns: HashMap::new(), pending: HashMap::new() };
        c.adopt();
        Ok(c)
    }

    /// Take over the connections a previous controller left in the maps.
    fn adopt(&mut self) {
        let now = now_us();
        for conn in self.maps.connections() {
            let mut c = Conn { subflows: Default::default() };
            for (id, s) in conn.subflows.iter().enumerate() {
                if s.path.established() {
                    // Whether the rate was the client's hint is not in the
                    // maps: keep it as one until the client says otherwise.
                    let hint = PathHint {
                        priority: s.path.priority,
                        backup: s.path.backup(),
                        rate_bytes_per_sec: s.path.rate_bytes_per_sec,
                        weight: s.path.weight,
                    };
                    let mut monitor = PathMonitor::new(hint, 0);
                    monitor.rtt = RttEstimator { srtt_us: s.path.srtt_us, rttvar_us: s.path.rttvar_us };
                    let sub = Sub { ep: Endpoints::from_subflow(s), last_seen_us: now, up: s.path.up(), monitor };
                    c.subflows[id] = Some(sub);
                }
            }
            tracing::info!(token = format_args!("{:08x}", conn.token), "adopted connection");
            self.conns.insert(conn.token, c);
        }
    }

    async fn send(&self, listener: usize, to: SocketAddr, msg: &Message) {
        if let Err(e) = self.listeners[listener].socket.send_to(&msg.encode(&self.psk), to).await {
            tracing::debug!(%to, error = %e, "control send failed");
        }
    }

    async fn on_inbound(&mut self, m: Inbound) -> Handled {
        let msg = match Message::decode(&m.data, &self.psk) {
            Ok(msg) => msg,
            Err(DecodeError::BadTag) => {
                self.maps.bump(ControlCounter::AuthFailed);
                tracing::warn!(from = %m.from, interface = %self.listeners[m.socket].iface, "refused a control message: authentication failed (wrong pre-shared key)");
                // Tell a client with the wrong key, so it fails fast; nothing is installed.
                if let Some(nonce_c) = crate::control::unverified_hello_nonce(&m.data) {
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
        let now = now_us();
        match msg.body {
            Body::Hello { join, nonce_c, key_c, path, prefixes } => {
                if msg.subflow_id as usize >= MAX_SUBFLOWS {
                    self.maps.bump(ControlCounter::Malformed);
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
                    token_known: self.conns.contains_key(&msg.token),
                    full: self.conns.len() >= mptcp_common::maps::MAX_CONNECTIONS as usize,
                    fresh_token,
                    fresh_key_s,
                    fresh_nonce_s: rand::random(),
                };
                let (offer, reply) = handshake::on_hello(self.pending.get(&key).map(|p| p.offer), h);
                if let Some(offer) = offer {
                    let hint = path;
                    self.pending.entry(key).or_insert(Pending { offer, hint, prefixes });
                }
                if reply == Reply::Reject(RejectReason::UnknownToken) {
                    self.maps.bump(ControlCounter::UnknownToken);
                    tracing::warn!(from = %m.from, token = format_args!("{:08x}", msg.token), "JOIN for an unknown connection refused");
                }
                self.reply(m.socket, m.from, msg.token, msg.subflow_id, nonce_c, reply).await;
            }
            Body::Proof { nonce_c, nonce_s } => {
                let key = (m.from, nonce_c);
                let offer = self.pending.get(&key).map(|p| p.offer);
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
                }
                self.reply(m.socket, m.from, msg.token, msg.subflow_id, nonce_c, reply).await;
                if let Some(e) = failed {
                    return Err(e.context("cannot install the subflow; refused it").into());
                }
            }
            Body::Probe { seq, sent_us, srtt_us, min_rtt_us, rx } => {
                let Some(conn) = self.conns.get_mut(&msg.token) else { return Ok(()) };
                let Some(Some(sub)) = conn.subflows.get_mut(msg.subflow_id as usize) else { return Ok(()) };
                if sub.ep.remote != m.from || sub.ep.local != m.local {
                    return Ok(());
                }
                sub.last_seen_us = now;
                let came_up = !sub.up;
                sub.up = true;
                let own = counters(&self.maps, msg.token, msg.subflow_id);
                sub.monitor.on_peer_rtt(now, srtt_us, min_rtt_us);
                sub.monitor.on_report(now, rx, tx_wire_bytes(&own), sub.ep.remote.is_ipv6());
                let measured = sub.monitor.measurements();
                let mine = rx_report(&own);
                let ack = Message {
                    token: msg.token,
                    subflow_id: msg.subflow_id,
                    body: Body::ProbeAck { seq, sent_us, rx: mine },
                };
                self.send(m.socket, m.from, &ack).await;
                self.maps.bump(ControlCounter::ProbesAnswered);
                if came_up {
                    tracing::info!(
                        token = format_args!("{:08x}", msg.token),
                        subflow = msg.subflow_id,
                        "subflow up: probes resumed"
                    );
                }
                subflows::update_path(&mut self.maps, msg.token, msg.subflow_id, |ps| {
                    ps.flags |= PATH_UP;
                    measured.write(ps);
                })?;
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
        let ep = Endpoints { local, remote: from, ifindex: self.listeners[listener].ifindex };
        // This 4-tuple may still belong to an older connection of the same
        // client (it restarted) or another subflow: that one is gone now.
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
            .collect();
        for (t, i) in stale {
            if !join && t != token {
                tracing::info!(old = format_args!("{t:08x}"), "client reconnected; removing its previous connection");
                subflows::remove_connection(&mut self.maps, t)?;
                self.conns.remove(&t);
            } else if let Some(c) = self.conns.get_mut(&t) {
                subflows::remove(&mut self.maps, t, i as u8)?;
                c.subflows[i] = None;
            }
        }
        if !join {
            for pfx in &prefixes {
                self.maps.add_prefix(pfx, token)?;
            }
            self.conns.insert(token, Conn { subflows: Default::default() });
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
            c.subflows[id as usize] = Some(Sub { ep, last_seen_us: now, up: true, monitor });
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

    fn tick(&mut self) -> Handled {
        let now = now_us();
        self.pending.retain(|_, p| !p.offer.expired(now));
        let silence_us = self.cfg.probe.interval_ms * 1000 * (self.cfg.probe.down_after as u64 + 1);
        let mut downs = Vec::new();
        for (t, c) in &mut self.conns {
            for (i, s) in c.subflows.iter_mut().enumerate() {
                if let Some(s) = s {
                    if s.up && now.saturating_sub(s.last_seen_us) > silence_us {
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

impl Role for Concentrator {
    async fn on_peer(&mut self, m: Inbound) -> Handled {
        self.on_inbound(m).await
    }

    async fn on_tick(&mut self) -> Handled {
        self.tick()
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
            other => Response::Error(format!("{other:?} is answered by the event loop, not the concentrator")),
        })
    }

    fn maps(&mut self) -> &mut DataPathMaps {
        &mut self.maps
    }

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

    fn into_maps(self) -> DataPathMaps {
        self.maps
    }
}
