//! The controller's one event loop, for every role (the bond's client and
//! concentrator, and native MPTCP mode). Every input — a peer's
//! control message, the probe timer, a link or address event, a local
//! control request, a signal — becomes one [`Input`] and is handled by its
//! own function of the role ([`Role`]). An error while handling one input is
//! logged (rate-limited) and counted (`event-errors`), and the loop goes on;
//! only an explicit [`EventError::Fatal`] ends it: the data path is gone, or a
//! start can never succeed (no path reaches the concentrator, the keys
//! differ).

pub mod local;
pub(crate) mod requests;

use std::time::{Duration, Instant};

use anyhow::Result;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::ctl::{Request, Response};
use crate::netdev::{self, NetEvent};
use crate::peer::Inbound;

/// How the controller loop ended.
pub enum Exit {
    /// SIGINT: remove the data path, pins and bond device.
    Teardown,
    /// SIGTERM: leave the data path forwarding for a restarted controller.
    Handover,
}

/// One input to the loop.
pub enum Input {
    /// A datagram on one of the role's control sockets.
    Peer(Inbound),
    /// The probe timer.
    Tick,
    /// A link or address changed (rtnetlink).
    Net(NetEvent),
    /// A request on the local control socket, with where its answer goes.
    Local(local::LocalRequest),
}

impl Input {
    fn kind(&self) -> &'static str {
        match self {
            Input::Peer(_) => "peer message",
            Input::Tick => "timer",
            Input::Net(_) => "link event",
            Input::Local(_) => "local request",
        }
    }
}

/// Why handling one input failed.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The controller cannot go on: stop it.
    #[error("{0:#}")]
    Fatal(anyhow::Error),
    /// This input could not be handled; the next one may be.
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
}

pub type Handled<T = ()> = std::result::Result<T, EventError>;

/// A role's handlers: one per kind of input. The role owns its state (and,
/// in bond mode, is the only writer of the maps).
pub(crate) trait Role {
    async fn on_peer(&mut self, m: Inbound) -> Handled;
    async fn on_tick(&mut self) -> Handled;
    async fn on_net(&mut self, ev: NetEvent) -> Handled;
    /// A user's mistake is an `Ok(Response::Error)`; `Err` is the controller's.
    async fn on_local(&mut self, req: Request) -> Handled<Response>;
    /// Count an input whose handling failed (`event-errors` in `status`).
    fn count_error(&mut self);
    /// Work that follows from any input, run after each one.
    fn after_input(&mut self) -> Result<()> {
        Ok(())
    }
}

/// What the loop needs besides the role.
pub struct LoopConfig {
    pub instance: String,
    pub tick: Duration,
    /// The device whose removal ends the loop (the bond: the data path is
    /// gone with it).
    pub vital_link: Option<u32>,
    /// Printed once the loop takes inputs (local requests included).
    pub ready: Option<&'static str>,
}

/// Run `role` until a signal or a fatal error.
pub(crate) async fn run<R: Role>(
    mut role: R,
    mut inbound: mpsc::Receiver<Inbound>,
    cfg: LoopConfig,
) -> Result<(Exit, R)> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut events = Box::pin(netdev::watch()?);
    let mut tick = tokio::time::interval(cfg.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (_server, mut local) = local::serve(&cfg.instance)?;
    let mut errors = ErrorLog::default();
    if let Some(line) = cfg.ready {
        println!("{line}");
    }
    loop {
        let input = tokio::select! {
            _ = tick.tick() => Input::Tick,
            Some(m) = inbound.recv() => Input::Peer(m),
            Some(ev) = events.next() => Input::Net(ev),
            Some(r) = local.recv() => Input::Local(r),
            _ = sigint.recv() => return Ok((Exit::Teardown, role)),
            _ = sigterm.recv() => return Ok((Exit::Handover, role)),
        };
        if let Input::Net(NetEvent::LinkGone { index }) = input {
            if Some(index) == cfg.vital_link {
                anyhow::bail!("the bond device was removed: the data path is gone");
            }
        }
        let kind = input.kind();
        let result = match input {
            Input::Peer(m) => role.on_peer(m).await,
            Input::Tick => {
                // Messages that arrived before the tick are heard first: the
                // tick judges silence, and a probe answer waiting in the
                // queue is not silence. Bounded, so a flood cannot hold
                // the tick off.
                for _ in 0..PEERS_BEFORE_TICK {
                    let Ok(m) = inbound.try_recv() else { break };
                    if let Err(e) = role.on_peer(m).await {
                        match e {
                            EventError::Fatal(e) => return Err(e),
                            EventError::Failed(e) => {
                                role.count_error();
                                errors.report("peer message", &e);
                            }
                        }
                    }
                }
                role.on_tick().await
            }
            Input::Net(ev) => role.on_net(ev).await,
            Input::Local(local::LocalRequest { request, reply }) => {
                let r = role.on_local(request).await;
                let answer = match &r {
                    Ok(resp) => resp.clone(),
                    Err(e) => Response::Error(format!("{e}")),
                };
                // The requester may have given up; nothing to do then.
                let _ = reply.send(answer);
                r.map(|_| ())
            }
        };
        match result {
            Ok(()) => {}
            Err(EventError::Fatal(e)) => return Err(e),
            Err(EventError::Failed(e)) => {
                role.count_error();
                errors.report(kind, &e);
            }
        }
        if let Err(e) = role.after_input() {
            role.count_error();
            errors.report("follow-up", &e);
        }
    }
}

/// Peer messages handled ahead of a tick, at most.
const PEERS_BEFORE_TICK: usize = 256;

/// Logs handler errors, at most `BURST` lines per `WINDOW`, and says how many
/// it left out: a flood of bad input must not become a flood of log lines.
struct ErrorLog {
    window_start: Instant,
    logged: u32,
    suppressed: u64,
}

impl Default for ErrorLog {
    fn default() -> Self {
        ErrorLog { window_start: Instant::now(), logged: 0, suppressed: 0 }
    }
}

impl ErrorLog {
    const WINDOW: Duration = Duration::from_secs(10);
    const BURST: u32 = 10;

    fn report(&mut self, kind: &str, e: &anyhow::Error) {
        if self.window_start.elapsed() > Self::WINDOW {
            if self.suppressed > 0 {
                tracing::warn!(suppressed = self.suppressed, "more event errors were not logged");
            }
            *self = ErrorLog::default();
        }
        if self.logged < Self::BURST {
            self.logged += 1;
            tracing::error!(input = kind, error = format!("{e:#}"), "could not handle an input; carrying on");
        } else {
            self.suppressed += 1;
        }
    }
}
