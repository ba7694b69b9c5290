//! The client role: opens the connection over the first path that answers,
//! JOINs every other path, probes each subflow, and follows link and address
//! events. One task owns all state and is the only writer of the maps.

mod caps;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ipnet::IpNet;
use mptcp_common::maps::{ControlCounter, PathState, MAX_SUBFLOWS, PATH_UP};
use mptcp_common::mtu::bond_mtu;
use mptcp_common::wire::{FAMILY_V4, FAMILY_V6};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::bpfmaps::DataPathMaps;
use crate::config::{Config, PathConfig};
use crate::control::{
    data_keys, mtu_pad, rate_probe_pad, Body, DecodeError, End, Freshness, Message, PathHint, RejectReason, RxReport,
    Stamps,
};
use crate::ctl::{PathChange, Request, Response};
use crate::daemon::requests::AutoFollow;
use crate::daemon::{EventError, Handled, Role};
use crate::datacap::{Ledger, PathCap};
use crate::estimate::{counters, rx_report, tx_wire_bytes, SubflowEstimate};
use crate::monitor::PathMonitor;
use crate::netdev::{self, Net, NetEvent};
use crate::peer::{self, now_us, Inbound, RttEstimator};
use crate::run::MtuPlan;
use crate::runtime::RuntimeChanges;
use crate::session::pmtu::Pmtu;
use crate::session::subflow::{self, Action, Event, Silence, State};
use crate::subflows::{self, Endpoints};
use crate::throttle::Throttle;
use crate::train::{TrainMeter, TrainProbe, TrainTiming, TRAIN_LEN, TRAIN_PACKET_BYTES};

struct Path {
    cfg: PathConfig,
    id: u8,
    remote: SocketAddr,
    ifindex: Option<u32>,
    running: bool,
    /// The control socket's address: the interface's address and the port
    /// the socket is bound to.
    local: Option<SocketAddr>,
    /// This path's source port: drawn by the kernel when its socket is
    /// first bound (0 until then), kept across address changes, and taken
    /// from the pinned subflow when adopting one. A port per path that an
    /// off-path attacker must guess, not the well-known 7495.
    port: u16,
    socket: Option<Arc<UdpSocket>>,
    reader: Option<JoinHandle<()>>,
    /// Handshake and liveness: the subflow's state machine.
    state: State,
    /// RTT, delays, feedback and capacity; the hints mirror `cfg`.
    monitor: PathMonitor,
    probe_seq: u32,
    /// When the last probe went out, and the subflow's packet count (sent and
    /// received) then: a subflow whose count moved carries traffic and is
    /// probed at the active interval.
    probed_us: u64,
    probed_packets: u64,
    /// The one-way delay of the newest probe answer since the last probe
    /// (0: none): the next probe reports it, so the concentrator learns
    /// the return direction's jitter.
    answer_owd_us: u32,
    /// The interval to the next probe, as announced with the last one.
    probe_interval_ms: u64,
    /// The uplink's own MTU, and the path's as the search finds it (while established).
    link_mtu: u32,
    pmtu: Option<Pmtu>,
    /// The packet train that times the path once it is up ([`crate::train`]).
    train_out: TrainProbe,
    /// The concentrator's, which times the return direction, as it arrives.
    train_in: TrainMeter,
    /// Probed at the active interval until then, from when it joined.
    warm_until_us: u64,
    /// The concentrator's stamps on this subflow: a replayed answer, train
    /// or MTU answer is refused.
    fresh: Freshness,
    /// The path's data cap and what it used ([`crate::datacap`]).
    cap: Option<PathCap>,
    /// The concentrator may have missed the last hint (a lost datagram):
    /// sent again with this many more probes.
    hint_resends: u8,
}

impl Path {
    fn name(&self) -> &str {
        self.cfg.display_name()
    }

    fn endpoints(&self) -> Option<Endpoints> {
        Some(Endpoints { local: self.local?, remote: self.remote, ifindex: self.ifindex? })
    }

    /// The hints as configured, and as a spent data cap leaves them.
    fn hint(&self) -> PathHint {
        let configured = PathHint {
            priority: self.cfg.priority,
            backup: self.cfg.backup,
            unused: false,
            rate_bytes_per_sec: self.cfg.rate_bytes_per_sec(),
            weight: self.cfg.weight,
        };
        match &self.cap {
            Some(cap) => cap.apply(configured),
            None => configured,
        }
    }

    fn path_state(&self, up: bool) -> PathState {
        self.monitor.path_state(up)
    }

    /// `cfg`'s hints changed: the monitor follows.
    fn sync_hint(&mut self) {
        self.monitor.hint = self.hint();
        self.monitor.max_rate = self.cfg.max_rate_bytes_per_sec();
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
    key: crate::key::Key,
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
    /// The MTUs the local uplinks allow, and the bond's MTU now (it follows
    /// the smallest path MTU found).
    mtu_plan: MtuPlan,
    bond_mtu: u32,
    /// Log lines of control messages that failed authentication, and of
    /// replayed ones.
    auth_log: Throttle,
    replay_log: Throttle,
    /// Our stamps on what we send.
    stamps: Stamps,
    /// The classes set to auto follow the paths.
    auto: AutoFollow,
    /// The data caps' usage file (None: no path has a cap).
    ledger: Option<Ledger>,
}

/// A changed hint goes out again with this many probes.
const HINT_RESENDS: u8 = 3;
/// Answers to any of this many latest probes count (they may trail the interval).
const PROBE_ANSWER_WINDOW: u64 = 64;
/// A subflow is probed at the active interval for this long after it joins,
/// so its round-trip floor and one-way jitter are learnt from ~40 samples
/// before traffic comes.
const WARM_UP_US: u64 = 2_000_000;

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
        mtu_plan: MtuPlan,
    ) -> Result<Client> {
        let key = cfg.key()?;
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
                port: 0,
                socket: None,
                reader: None,
                state: State::Idle,
                monitor: PathMonitor::default(),
                probe_seq: 0,
                probed_us: 0,
                probed_packets: 0,
                answer_owd_us: 0,
                probe_interval_ms: 0,
                link_mtu: 0,
                pmtu: None,
                train_out: TrainProbe::default(),
                train_in: TrainMeter::default(),
                warm_until_us: 0,
                fresh: Freshness::default(),
                cap: None,
                hint_resends: 0,
            })
            .collect();
        let mut c = Client {
            cfg,
            key,
            maps,
            net,
            paths,
            token: None,
            inbound_tx,
            next_init: 0,
            connect_timeout,
            connect_deadline: tokio::time::Instant::now() + connect_timeout,
            announced: false,
            mtu_plan,
            bond_mtu: mtu_plan.bond,
            auth_log: Throttle::default(),
            replay_log: Throttle::default(),
            stamps: Stamps::default(),
            auto: AutoFollow::default(),
            ledger: None,
        };
        c.open_caps()?;
        // Hints set at runtime before a restart (only kept when adopting).
        for change in RuntimeChanges::load(&c.cfg.instance)?.paths.values() {
            if let Some(p) = c.paths.iter_mut().find(|p| p.name() == change.path) {
                change.apply_to(&mut p.cfg);
                tracing::info!(path = %change.path, "keeping the hints set at runtime");
            }
        }
        // An adopted subflow keeps its source port: its socket binds it again.
        if let Some(conn) = c.maps.connections().first() {
            for (p, s) in c.paths.iter_mut().zip(conn.subflows.iter()) {
                if !s.path.established() {
                    continue;
                }
                let ep = Endpoints::from_subflow(s);
                if p.remote == ep.remote {
                    p.port = ep.local.port();
                }
            }
        }
        for i in 0..c.paths.len() {
            c.paths[i].sync_hint();
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
                    p.state = State::adopted(s.path.up());
                    // The concentrator hears the hints as they are now (a
                    // data cap may have been spent or renewed meanwhile).
                    p.hint_resends = HINT_RESENDS;
                    p.monitor.rtt = RttEstimator { srtt_us: s.path.srtt_us, rttvar_us: s.path.rttvar_us };
                    // Apply the current configuration's hints to the adopted subflow.
                    let st = p.path_state(p.state.up());
                    subflows::update_path(&mut self.maps, conn.token, id as u8, |ps| *ps = st)?;
                }
                _ => {
                    tracing::info!(subflow = id, "adopted subflow no longer matches the configuration; removing it");
                    subflows::remove(&mut self.maps, conn.token, id as u8)?;
                }
            }
        }
        self.adopt_caps(conn.token);
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
            self.lose_path(i, "interface is gone").await;
            self.paths[i].ifindex = None;
            return;
        };
        let addrs = self.net.addresses(link.index).await.unwrap_or_default();
        let p = &mut self.paths[i];
        p.ifindex = Some(link.index);
        p.running = link.running;
        p.link_mtu = link.mtu;
        let local = netdev::pick_local(&addrs, p.cfg.local, p.remote.is_ipv4(), &iface)
            .ok()
            .map(|a| SocketAddr::new(a, p.port));
        if local.map(|l| l.ip()) != p.local.map(|l| l.ip()) {
            if p.local.is_some() {
                self.lose_path(i, "its local address went away").await;
            }
            let p = &mut self.paths[i];
            p.close_socket();
            p.local = local;
        }
        let p = &mut self.paths[i];
        if p.socket.is_none() {
            if let Some(l) = p.local {
                let bound = peer::bind_control_socket(&iface, l, true)
                    .and_then(|s| Ok((s.local_addr().context("cannot read the control socket's port")?, s)));
                match bound {
                    Ok((at, s)) => {
                        p.port = at.port();
                        p.local = Some(at);
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
    async fn lose_path(&mut self, i: usize, why: &str) {
        if self.paths[i].state.established() {
            tracing::warn!(path = self.paths[i].name(), "subflow removed: {why}");
        }
        if let Err(e) = self.event(i, Event::Lost).await {
            tracing::warn!(error = %e, "cannot remove subflow from the maps");
        }
    }

    fn ready(&self, i: usize) -> bool {
        let p = &self.paths[i];
        p.running && p.socket.is_some() && p.ifindex.is_some()
    }

    /// Send `msg` on path `i`; its encoded length.
    async fn send(&self, i: usize, msg: &Message) -> usize {
        let p = &self.paths[i];
        let bytes = msg.encode_stamped(self.key.bytes(), self.stamps.next(now_us()));
        if let Some(s) = &p.socket {
            match peer::send_to(s, &bytes, p.remote).await {
                Ok(_) => {
                    if let Some(cap) = &p.cap {
                        cap.count_control(bytes.len(), p.remote.is_ipv6());
                    }
                }
                Err(e) => tracing::debug!(path = p.name(), error = %e, "control send failed"),
            }
        }
        bytes.len()
    }

    /// Feed path `i`'s state machine one event and carry out its actions.
    async fn event(&mut self, i: usize, e: Event) -> Handled {
        let (next, actions) = subflow::step(self.paths[i].state, e);
        self.paths[i].state = next;
        for a in actions {
            self.act(i, a).await?;
        }
        Ok(())
    }

    async fn act(&mut self, i: usize, action: Action) -> Handled {
        let id = self.paths[i].id;
        match action {
            Action::SendHello { join, nonce_c, key_c } => {
                let prefixes: Vec<IpNet> =
                    if join { Vec::new() } else { self.cfg.bond.addresses.iter().map(|a| host_prefix(*a)).collect() };
                let token = if join { self.token.unwrap_or(0) } else { 0 };
                let path = self.paths[i].hint();
                let msg = Message { token, subflow_id: id, body: Body::Hello { join, nonce_c, key_c, path, prefixes } };
                tracing::debug!(path = self.paths[i].name(), join, "sending HELLO");
                self.send(i, &msg).await;
            }
            Action::RttSample { rtt_us } => self.paths[i].monitor.rtt.sample(rtt_us),
            Action::InstallRx { token, keys } => {
                // A new subflow: the concentrator's stamps start over.
                self.paths[i].fresh = Freshness::default();
                let ep = self.paths[i].endpoints().ok_or_else(|| anyhow!("path without endpoints in a handshake"))?;
                if let Some((key_c, key_s)) = keys {
                    let keys = data_keys(self.key.bytes(), token, key_c, key_s, End::Client);
                    subflows::install_keys(&mut self.maps, token, keys)?;
                }
                subflows::install_rx(&mut self.maps, token, id, &ep)?;
            }
            Action::SendProof { token, nonce_c, nonce_s } => {
                let proof = Message { token, subflow_id: id, body: Body::Proof { nonce_c, nonce_s } };
                self.send(i, &proof).await;
                // The concentrator installs the subflow on the PROOF: a train
                // right behind it is timed by the time the ACCEPT is back, so
                // the path's size is known about when it may carry traffic.
                self.paths[i].train_out = TrainProbe::default();
                self.send_train(i, token, now_us()).await;
            }
            Action::Established { token, join } => self.established(i, token, join)?,
            Action::SendProbe => {
                let Some(token) = self.token else { return Ok(()) };
                let own = counters(&self.maps, token, id);
                let p = &mut self.paths[i];
                let rx = RxReport { probe_owd_us: std::mem::take(&mut p.answer_owd_us), ..rx_report(&own) };
                p.probe_seq = p.probe_seq.wrapping_add(1);
                p.probed_us = now_us();
                p.probed_packets = own.tx_packets + own.rx_packets;
                let (seq, srtt_us, min_rtt_us) = (p.probe_seq, p.monitor.rtt.srtt_us, p.monitor.min_rtt.get());
                let interval_ms = p.probe_interval_ms as u32;
                let bond_mtu = self.bond_mtu;
                let body = Body::Probe { seq, sent_us: p.probed_us, srtt_us, min_rtt_us, interval_ms, bond_mtu, rx };
                let len = self.send(i, &Message { token, subflow_id: id, body }).await;
                let p = &mut self.paths[i];
                let wire = len + peer::wire_overhead(p.remote.is_ipv6());
                p.monitor.set_control_load(wire as u64, p.probe_interval_ms);
                self.maps.bump(ControlCounter::ProbesSent);
            }
            Action::WentDown { why } => {
                tracing::warn!(path = self.paths[i].name(), "path down: {why}");
                if let Some(token) = self.token {
                    subflows::set_up(&mut self.maps, token, id, false)?;
                }
            }
            Action::CameUp => tracing::info!(path = self.paths[i].name(), "path up: probes answered"),
            Action::Remove => {
                if let Some(token) = self.token {
                    subflows::remove(&mut self.maps, token, id)?;
                }
            }
            Action::Refused { reason, join } => match (reason, self.token) {
                (RejectReason::AuthFailed | RejectReason::ForeignPrefix, None) => {
                    self.maps.bump(ControlCounter::AuthFailed);
                    return Err(EventError::Fatal(anyhow!(
                        "the concentrator at {} refused the connection: {}",
                        self.paths[i].remote,
                        reason.explain()
                    )));
                }
                (RejectReason::UnknownToken, Some(_)) if join => {
                    tracing::warn!("the concentrator no longer knows our connection (restarted?); reconnecting");
                    self.reset_connection().await?;
                }
                _ => tracing::warn!(path = self.paths[i].name(), "handshake refused: {}", reason.explain()),
            },
            Action::PeerForgot { connection } => {
                self.maps.bump(ControlCounter::Rejoins);
                if connection {
                    tracing::warn!(
                        path = self.paths[i].name(),
                        "the concentrator no longer knows our connection (restarted without its state?); reconnecting"
                    );
                    self.reset_connection().await?;
                } else {
                    tracing::warn!(
                        path = self.paths[i].name(),
                        "the concentrator no longer knows this subflow from our address and port (NAT mapping changed?); joining again"
                    );
                }
            }
            Action::BadToken => {
                tracing::warn!("concentrator's token does not match the keys; ignoring its CHALLENGE")
            }
        }
        Ok(())
    }

    /// Path `i`'s handshake completed: the subflow carries traffic from now
    /// on (the first one also sets up the connection).
    fn established(&mut self, i: usize, token: u32, join: bool) -> Result<()> {
        let ep = self.paths[i].endpoints().ok_or_else(|| anyhow!("path without endpoints in a handshake"))?;
        if !join {
            self.token = Some(token);
            // Everything routed into the bond belongs to our one connection.
            self.maps.add_prefix(&"0.0.0.0/0".parse().unwrap(), token)?;
            self.maps.add_prefix(&"::/0".parse().unwrap(), token)?;
            self.maps.bump(ControlCounter::Connections);
            tracing::info!(
                token = format_args!("{token:08x}"),
                path = self.paths[i].name(),
                rtt_us = self.paths[i].monitor.rtt.srtt_us,
                "connection established"
            );
        } else {
            tracing::info!(
                path = self.paths[i].name(),
                subflow = self.paths[i].id,
                rtt_us = self.paths[i].monitor.rtt.srtt_us,
                "subflow joined"
            );
        }
        let p = &mut self.paths[i];
        // A (re)joined subflow may take another route: measure its
        // propagation delay, capacity and MTU afresh.
        p.monitor.restart();
        p.warm_until_us = now_us() + WARM_UP_US;
        p.pmtu = Some(Pmtu::new(p.link_mtu));
        let st = p.path_state(true);
        subflows::install_tx(&mut self.maps, token, p.id, &ep, st)?;
        self.maps.bump(ControlCounter::SubflowsJoined);
        Ok(())
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
            self.event(i, Event::Expire { now_us: now, retry_us }).await?;
        }
        if self.token.is_none() {
            // One first-subflow handshake at a time, rotating over ready paths.
            if self.paths.iter().any(|p| p.state.handshaking() == Some(false)) {
                return Ok(());
            }
            let n = self.paths.len();
            if let Some(i) = (0..n).map(|k| (self.next_init + k) % n).find(|&i| self.ready(i)) {
                self.next_init = i + 1;
                self.event(i, Event::Start { join: false, nonce_c: random_u64(), key_c: random_u64(), now_us: now })
                    .await?;
            }
            return Ok(());
        }
        for i in 0..self.paths.len() {
            if self.paths[i].state == State::Idle && self.ready(i) {
                self.event(i, Event::Start { join: true, nonce_c: random_u64(), key_c: 0, now_us: now }).await?;
            }
        }
        let Some(token) = self.token else { return Ok(()) };
        for i in 0..self.paths.len() {
            if !self.paths[i].state.established() {
                continue;
            }
            let own = counters(&self.maps, token, self.paths[i].id);
            let p = &mut self.paths[i];
            // Probe often what carries traffic (a failure there costs), is
            // down (to see it come back) or just joined (its round-trip floor
            // is learnt before traffic needs it); an idle path at the idle
            // interval.
            let busy = own.tx_packets + own.rx_packets != p.probed_packets || !p.state.up() || now < p.warm_until_us;
            let probe = &self.cfg.probe;
            let active = probe.active_interval_ms();
            // The next probe is due when the last one said it would come
            // (the concentrator counts on that), or sooner when busy.
            let announced = if busy { active } else { p.probe_interval_ms.max(active) };
            // Ticks come at the active interval; half a tick of slack keeps
            // their jitter from skipping a due probe.
            let send = now.saturating_sub(p.probed_us) >= (announced * 1000).saturating_sub(active * 500);
            // This probe announces the interval to the one after it.
            if send {
                p.probe_interval_ms = if busy { active } else { probe.interval_ms };
            }
            // Given up after `down_after` intervals (and one for the answer's
            // way back) without an answer, or the path's RTO if that is
            // longer: a long round trip is not a loss.
            let rtt = p.monitor.rtt;
            let rto_us = rtt.srtt_us as u64 + 4 * rtt.rttvar_us as u64;
            let intervals_us = (probe.down_after as u64 + 1) * p.probe_interval_ms * 1000;
            let silence = Silence { limit_us: intervals_us.max(rto_us) };
            self.event(i, Event::ProbeTick { now_us: now, send, silence }).await?;
            if send && self.paths[i].hint_resends > 0 {
                self.paths[i].hint_resends -= 1;
                let hint = self.paths[i].hint();
                self.send(i, &Message { token, subflow_id: self.paths[i].id, body: Body::Hint { path: hint } }).await;
            }
        }
        self.train_tick(token, now).await;
        self.path_mtu_tick(now).await
    }

    /// Packet trains due again on up subflows whose rate is still not
    /// known (no hint, no estimate): the one sent with the PROOF was lost.
    async fn train_tick(&mut self, token: u32, now: u64) {
        for i in 0..self.paths.len() {
            let p = &self.paths[i];
            if p.state.up() && p.monitor.measurements().rate_bytes_per_sec == 0 {
                self.send_train(i, token, now).await;
            }
        }
    }

    /// Answer the concentrator's train on path `i`.
    async fn answer_train(&mut self, i: usize, token: u32, t: TrainTiming) {
        let body = Body::RateAck { train: t.train, bytes: t.bytes, span_us: t.span_us };
        self.send(i, &Message { token, subflow_id: self.paths[i].id, body }).await;
    }

    /// A packet train on path `i`, if one is due: sent back to back, the
    /// concentrator times them.
    async fn send_train(&mut self, i: usize, token: u32, now: u64) {
        let p = &mut self.paths[i];
        let Some(train) = p.train_out.due(now) else { return };
        let id = p.id;
        let pad = rate_probe_pad(TRAIN_PACKET_BYTES, p.remote.is_ipv6());
        tracing::debug!(path = p.name(), train, "packet train");
        let start = std::time::Instant::now();
        for index in 0..TRAIN_LEN {
            let sent_ns = start.elapsed().as_nanos().min(u32::MAX as u128) as u32;
            let body = Body::RateProbe { train, index, count: TRAIN_LEN, sent_ns, pad };
            self.send(i, &Message { token, subflow_id: id, body }).await;
        }
    }

    /// The path MTU searches: probes due on up subflows, rounds concluded,
    /// and the bond's MTU following the smallest path MTU found.
    async fn path_mtu_tick(&mut self, now: u64) -> Handled {
        let Some(token) = self.token else { return Ok(()) };
        let mut changed = false;
        for i in 0..self.paths.len() {
            let p = &mut self.paths[i];
            if !p.state.established() {
                changed |= p.pmtu.take().and_then(|m| m.mtu()).is_some();
                continue;
            }
            let Some(pmtu) = &mut p.pmtu else { continue };
            // Answers have two round trips and a little more to come.
            let wait_us = 2 * p.monitor.rtt.srtt_us as u64 + 200_000;
            if let Some(mtu) = pmtu.on_tick(now, wait_us) {
                tracing::info!(path = p.cfg.display_name(), mtu, "path MTU");
                changed = true;
            }
            if !p.state.up() {
                continue;
            }
            // A path probed at the active interval carries traffic.
            let busy = p.probe_interval_ms <= self.cfg.probe.active_interval_ms();
            let Some((round, sizes)) = pmtu.due(now, busy) else { continue };
            tracing::debug!(path = p.cfg.display_name(), round, ?sizes, busy, "path MTU probes");
            let v6 = p.remote.is_ipv6();
            for size in sizes {
                let body = Body::MtuProbe { round, size: size as u16, pad: mtu_pad(size as u16, v6) };
                self.send(i, &Message { token, subflow_id: self.paths[i].id, body }).await;
            }
        }
        if changed {
            self.follow_path_mtus().await?;
        }
        Ok(())
    }

    /// Set the bond's MTU (and the data path's largest packet) to what the
    /// smallest known path MTU allows, never above what the local uplinks
    /// and the config allow.
    async fn follow_path_mtus(&mut self) -> Handled {
        let known: Vec<(u32, bool)> =
            self.paths.iter().filter_map(|p| Some((p.pmtu.as_ref()?.mtu()?, p.remote.is_ipv6()))).collect();
        let family = |v6: bool| if v6 { FAMILY_V6 } else { FAMILY_V4 };
        let bond =
            known.iter().map(|&(m, v6)| bond_mtu(m, family(v6))).min().unwrap_or(u32::MAX).min(self.mtu_plan.bond);
        let uplink = known.iter().map(|&(m, _)| m).min().unwrap_or(u32::MAX).min(self.mtu_plan.uplink);
        let mut settings = self.maps.settings.get(&0, 0).map_err(anyhow::Error::from)?;
        if (settings.uplink_mtu, settings.bond_mtu) != (uplink, bond) {
            (settings.uplink_mtu, settings.bond_mtu) = (uplink, bond);
            self.maps.settings.set(0, settings, 0).map_err(anyhow::Error::from)?;
        }
        if bond != self.bond_mtu {
            let link = self.net.link(&self.cfg.bond.name).await?;
            let index =
                link.ok_or_else(|| EventError::Fatal(anyhow!("the bond device {} is gone", self.cfg.bond.name)))?.index;
            self.net.set_mtu(index, bond).await?;
            tracing::info!(bond = %self.cfg.bond.name, mtu = bond, was = self.bond_mtu, "bond MTU follows the smallest path MTU");
            self.bond_mtu = bond;
        }
        Ok(())
    }

    async fn on_inbound(&mut self, m: Inbound) -> Handled {
        let i = m.socket;
        if i >= self.paths.len() || m.from != self.paths[i].remote {
            return Ok(()); // not from our concentrator on this path
        }
        if let Some(cap) = &self.paths[i].cap {
            cap.count_control(m.data.len(), m.from.is_ipv6());
        }
        if let Some(mtu) = m.too_big {
            // Only a hint: the search's own probes decide.
            let p = &mut self.paths[i];
            if let Some(pmtu) = &mut p.pmtu {
                if pmtu.on_too_big(now_us(), mtu) {
                    tracing::info!(path = p.cfg.display_name(), mtu, "ICMP says the path is smaller: probing it now");
                }
            }
            return Ok(());
        }
        let (msg, stamp) = match Message::decode_stamped(&m.data, self.key.bytes()) {
            Ok(decoded) => decoded,
            Err(DecodeError::BadTag) => {
                self.maps.bump(ControlCounter::AuthFailed);
                if let Some(left_out) = self.auth_log.allow(now_us()) {
                    tracing::warn!(path = self.paths[i].name(), from = %m.from, left_out, "control message failed authentication: the pre-shared keys differ");
                }
                return Ok(());
            }
            Err(e) => {
                self.maps.bump(ControlCounter::Malformed);
                tracing::debug!(error = %e, "dropping control message");
                return Ok(());
            }
        };
        let now = now_us();
        // A handshake reply for a path whose address or interface went away
        // while it was queued: that handshake is void (the next tick starts
        // another once the path is usable again).
        let handshake_reply = matches!(msg.body, Body::Challenge { .. } | Body::Accept { .. });
        if handshake_reply && self.paths[i].endpoints().is_none() {
            tracing::debug!(path = self.paths[i].name(), "handshake reply for a path that lost its endpoints");
            return self.event(i, Event::Lost).await;
        }
        // The connection's answers, trains and MTU answers are acted on only
        // while their stamps grow: one replayed later changes nothing.
        // (Handshake replies are fresh by their nonces; a refusal of a probe
        // by the probe it answers.)
        let stamped = matches!(
            msg.body,
            Body::ProbeAck { .. } | Body::MtuAck { .. } | Body::RateProbe { .. } | Body::RateAck { .. }
        );
        if stamped && Some(msg.token) == self.token && !self.paths[i].fresh.accept(stamp) {
            self.maps.bump(ControlCounter::Replayed);
            if let Some(left_out) = self.replay_log.allow(now) {
                tracing::warn!(path = self.paths[i].name(), from = %m.from, left_out, "refused a replayed control message");
            }
            return Ok(());
        }
        match msg.body {
            Body::Challenge { nonce_c, nonce_s, key_s } => {
                let connection = self.token;
                let e = Event::Challenge { token: msg.token, nonce_c, nonce_s, key_s, connection, now_us: now };
                self.event(i, e).await?;
            }
            Body::Accept { nonce_c, nonce_s } => {
                self.event(i, Event::Accept { token: msg.token, nonce_c, nonce_s }).await?;
            }
            Body::Reject { reason: reason @ (RejectReason::UnknownToken | RejectReason::UnknownSubflow), nonce_c }
                if self.paths[i].state.established() && Some(msg.token) == self.token =>
            {
                // An answer to one of our probes: `nonce_c` is its send time.
                let window_us = self.cfg.probe.interval_ms * 1000 * PROBE_ANSWER_WINDOW;
                let connection = reason == RejectReason::UnknownToken;
                self.event(i, Event::Forgotten { connection, probe_sent_us: nonce_c, now_us: now, window_us }).await?
            }
            Body::Reject { reason, nonce_c } => self.event(i, Event::Reject { reason, nonce_c }).await?,
            Body::MtuAck { round, size, .. } => {
                if let (Some(pmtu), true) = (&mut self.paths[i].pmtu, Some(msg.token) == self.token) {
                    pmtu.on_answer(round, size as u32);
                }
            }
            Body::RateProbe { train, index, count, sent_ns, .. } => {
                let Some(token) = self.token.filter(|&t| t == msg.token) else { return Ok(()) };
                let p = &mut self.paths[i];
                let wire = (m.data.len() + peer::wire_overhead(m.from.is_ipv6())) as u64;
                if let Some(t) = p.train_in.on_probe(train, index, count, sent_ns, wire, m.rx_ns) {
                    self.answer_train(i, token, t).await;
                }
            }
            Body::RateAck { train, bytes, span_us } => {
                let Some(token) = self.token.filter(|&t| t == msg.token) else { return Ok(()) };
                let p = &mut self.paths[i];
                let Some(rate) = p.train_out.on_ack(train, bytes, span_us) else { return Ok(()) };
                p.monitor.seed_capacity(now, rate);
                tracing::info!(path = p.name(), mbit = rate as f64 * 8e-6, "capacity timed by a packet train");
                let measured = p.monitor.measurements();
                subflows::update_path(&mut self.maps, token, p.id, |ps| measured.write(ps))?;
            }
            Body::ProbeAck { seq, sent_us, acked_us, rx } => {
                let Some(token) = self.token else { return Ok(()) };
                let p = &mut self.paths[i];
                // Any recent probe counts (answers may trail the interval).
                if !p.state.established()
                    || msg.token != token
                    || p.probe_seq.wrapping_sub(seq) >= PROBE_ANSWER_WINDOW as u32
                {
                    return Ok(());
                }
                p.monitor.on_rtt(now, now.saturating_sub(sent_us));
                p.answer_owd_us = peer::owd_sample(m.rx_mono_us(), acked_us);
                // A train the concentrator sent before this answer is over.
                if let Some(t) = p.train_in.on_later_message() {
                    self.answer_train(i, token, t).await;
                }
                let p = &mut self.paths[i];
                let sent = tx_wire_bytes(&counters(&self.maps, token, p.id));
                let before = (p.monitor.capacity.get(), p.monitor.buffer.get(), p.monitor.random_loss.ppm());
                let bucket = self.maps.bucket(token, p.id);
                // The estimator's trace lines name the path they judge.
                let span = tracing::debug_span!("path", name = p.name()).entered();
                p.monitor.on_report(now, rx, sent, bucket.as_ref(), p.remote.is_ipv6());
                drop(span);
                let after = (p.monitor.capacity.get(), p.monitor.buffer.get(), p.monitor.random_loss.ppm());
                if after.0 != before.0 {
                    tracing::debug!(path = p.name(), mbit = after.0 as f64 * 8e-6, "capacity estimate");
                }
                if after.1 != before.1 {
                    tracing::debug!(path = p.name(), ms = after.1 as f64 / 1e3, "buffer estimate");
                }
                if after.2.abs_diff(before.2) >= 1_000 || (after.2 == 0) != (before.2 == 0) {
                    tracing::debug!(path = p.name(), pct = after.2 as f64 / 1e4, "random loss estimate");
                }
                let measured = p.monitor.measurements();
                self.event(i, Event::ProbeAnswered { now_us: now, probe_sent_us: sent_us }).await?;
                self.maps.bump(ControlCounter::ProbesAnswered);
                // A down subflow is used again only once the state machine
                // says it is back (a few answers in a row).
                let up = self.paths[i].state.up();
                subflows::update_path(&mut self.maps, token, self.paths[i].id, |ps| {
                    measured.write(ps);
                    if up {
                        ps.flags |= PATH_UP;
                    }
                })?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Forget the connection (the concentrator lost it) and start over.
    async fn reset_connection(&mut self) -> Result<()> {
        for i in 0..self.paths.len() {
            // No subflow removal: the whole connection goes below.
            self.paths[i].state = subflow::step(self.paths[i].state, Event::Lost).0;
        }
        if let Some(t) = self.token.take() {
            subflows::remove_connection(&mut self.maps, t)?;
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
                self.paths[i].running = false;
                self.event(i, Event::CarrierLost).await?;
                continue;
            }
            self.refresh_path(i).await;
        }
        Ok(())
    }

    /// Path `i`'s hints changed (`path set`, a data cap): its subflow and
    /// the concentrator (which schedules the return direction by them)
    /// follow. The hint is sent again with the next probes, in case one is lost.
    async fn push_hint(&mut self, i: usize) -> Result<PathHint> {
        self.paths[i].sync_hint();
        let (hint, monitor) = (self.paths[i].hint(), &self.paths[i].monitor);
        if let (Some(token), true) = (self.token, self.paths[i].state.established()) {
            subflows::update_path(&mut self.maps, token, self.paths[i].id, |p| monitor.hinted(p))?;
            let m = Message { token, subflow_id: self.paths[i].id, body: Body::Hint { path: hint } };
            self.send(i, &m).await;
            self.paths[i].hint_resends = HINT_RESENDS;
        }
        Ok(hint)
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
            let hint = self.push_hint(i).await?;
            tracing::info!(path = self.paths[i].name(), ?hint, "path hints changed");
        }
        runtime.store(&self.cfg.instance)?;
        let path = &self.paths[hits[0]];
        let p = &path.cfg;
        // What the path is now, a spent data cap included.
        let spent = match &path.cap {
            Some(cap) if cap.spent => format!(" (data cap spent: {} until it renews)", cap.cfg.when_spent.name()),
            _ => String::new(),
        };
        Ok(format!(
            "path {}: priority {}, weight {}, rate {}, backup {}{spent}",
            c.path,
            p.priority,
            p.weight,
            p.rate_mbit.map(|r| format!("{r} Mbit/s")).unwrap_or_else(|| "estimated".into()),
            p.backup
        ))
    }
}

impl Client {
    /// The latest estimates from feedback, per subflow (for `status`).
    fn estimates(&self) -> Vec<SubflowEstimate> {
        let Some(token) = self.token else { return Vec::new() };
        self.paths
            .iter()
            .filter_map(|p| p.monitor.feedback.last.map(|estimate| SubflowEstimate { token, subflow: p.id, estimate }))
            .collect()
    }
}

impl Role for Client {
    async fn on_peer(&mut self, m: Inbound) -> Handled {
        self.on_inbound(m).await?;
        self.check_connected()
    }

    async fn on_tick(&mut self) -> Handled {
        // A usage file that cannot be written must not stop the probes.
        let caps = self.caps_tick().await;
        self.tick().await?;
        caps
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
            other => {
                let view = crate::daemon::requests::RoleView { estimates: self.estimates(), caps: self.caps_status() };
                return crate::daemon::requests::answer(&mut self.maps, &self.cfg.instance, &view, other, "client");
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

/// The announced form of a bond address: the host itself.
fn host_prefix(a: IpNet) -> IpNet {
    IpNet::new(a.addr(), a.max_prefix_len()).expect("max prefix length is valid")
}
