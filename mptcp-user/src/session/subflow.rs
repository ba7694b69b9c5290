//! One client subflow's life as a state machine: the handshake that makes
//! it (the connection's first subflow, or a JOIN), then up and down as its
//! probes are answered or not, until the path is lost.
//!
//! ```text
//!            Start              CHALLENGE ok             ACCEPT ok
//!   Idle ───────────▶ Hello ───────────────▶ Proof ───────────────▶ Up ◀──┐
//!    ▲  ◀── REJECT / expired ──┘     ◀── REJECT / expired ──┘       │     │ probe answered
//!    │       no answer for down_after intervals (or the RTO, if longer) ┐
//!    │                          or carrier lost;  UP_AFTER answers back ┘
//!    └──────────────────── Lost (from any state) ◀────────────────── Down ┘
//!    ▲                                                              │
//!    └─── Forgotten: the concentrator answers a recent probe ◀──────┘
//!         "unknown connection / subflow" (Up or Down)
//! ```
//! [`step`] is a pure function of (state, event) → (state, actions): no
//! sockets, maps or clocks inside. The client feeds it events and carries out
//! the actions; the tests below drive it through tables of events.

use crate::control::{derive_token, RejectReason};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not established and no handshake in flight.
    Idle,
    /// HELLO sent; waiting for the CHALLENGE.
    Hello(Hello),
    /// The CHALLENGE verified, PROOF sent; waiting for the ACCEPT.
    Proof(Proof),
    /// Established, carrying traffic.
    Up(Liveness),
    /// Established, but its probes go unanswered or its carrier is gone: the
    /// scheduler leaves it alone until probes are answered again.
    Down(Liveness),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// A JOIN (the connection exists) or the connection's first subflow.
    pub join: bool,
    pub nonce_c: u64,
    /// Our key (first subflow only; 0 for a JOIN).
    pub key_c: u64,
    pub sent_us: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proof {
    pub join: bool,
    pub nonce_c: u64,
    pub nonce_s: u64,
    pub token: u32,
    pub sent_us: u64,
}

/// Probe bookkeeping of an established subflow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Liveness {
    /// When a probe was last answered (0: not yet; the first tick starts
    /// the clock).
    pub heard_us: u64,
    /// Down: answers since it went down (or last fell silent again). It comes
    /// back up after [`UP_AFTER`] of them, so a path that flickers does not
    /// take traffic on every flicker.
    pub answers: u32,
    /// When the newest probe answered was sent: the concentrator knew the
    /// subflow then, so a refusal of an older probe is stale (a replay).
    pub answered_sent_us: u64,
}

/// Answers in a row that bring a down subflow back up.
pub const UP_AFTER: u32 = 3;

/// How long a subflow may go without an answer before it is given up: the
/// client makes it `down_after` probe intervals, or the path's
/// retransmission timeout if longer, so a long round trip is not taken for a
/// loss. Counted from the last answer, not from a probe sent: answers that
/// trail a growing queue keep coming, only later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Silence {
    pub limit_us: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Begin a handshake on this path (the client chose it).
    Start {
        join: bool,
        nonce_c: u64,
        key_c: u64,
        now_us: u64,
    },
    /// A CHALLENGE arrived for this path. `connection`: the client's token, if
    /// it has a connection.
    Challenge {
        token: u32,
        nonce_c: u64,
        nonce_s: u64,
        key_s: u64,
        connection: Option<u32>,
        now_us: u64,
    },
    Accept {
        token: u32,
        nonce_c: u64,
        nonce_s: u64,
    },
    Reject {
        reason: RejectReason,
        nonce_c: u64,
    },
    /// Periodic: a handshake step older than `retry_us` is given up (the
    /// client may start another, perhaps on another path).
    Expire {
        now_us: u64,
        retry_us: u64,
    },
    /// Periodic, on established subflows: give the subflow up if its probes
    /// went unanswered too long, and send the next probe if one is due
    /// (`send`: the client probes a subflow carrying traffic, or down, more
    /// often than an idle one).
    ProbeTick {
        now_us: u64,
        send: bool,
        silence: Silence,
    },
    ProbeAnswered {
        now_us: u64,
        /// When the answered probe was sent.
        probe_sent_us: u64,
    },
    /// The concentrator answered one of our probes: it does not know the
    /// connection (it restarted without its state; `connection`) or this
    /// subflow from our address and port (our NAT mapping changed). The
    /// answer echoes the probe's send time, which must be one of ours from
    /// the last `window_us` and no older than the newest probe answered: an
    /// old answer replayed changes nothing.
    Forgotten {
        connection: bool,
        probe_sent_us: u64,
        now_us: u64,
        window_us: u64,
    },
    CarrierLost,
    /// The path lost its interface or local address, or the connection is
    /// gone: whatever it was doing ends.
    Lost,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    SendHello {
        join: bool,
        nonce_c: u64,
        key_c: u64,
    },
    /// The handshake's round trip, a first RTT sample.
    RttSample {
        rtt_us: u64,
    },
    /// Accept the peer's data on this subflow (before it may send any).
    InstallRx {
        token: u32,
        /// First subflow: both sides' keys, from which the connection's
        /// data keys follow (a JOIN's connection has its keys).
        keys: Option<(u64, u64)>,
    },
    SendProof {
        token: u32,
        nonce_c: u64,
        nonce_s: u64,
    },
    /// The subflow is established: make it eligible for sending (the first
    /// one also sets the connection up).
    Established {
        token: u32,
        join: bool,
    },
    SendProbe,
    WentDown {
        why: &'static str,
    },
    CameUp,
    /// Take the subflow out of the data path.
    Remove,
    /// The concentrator refused the handshake.
    Refused {
        reason: RejectReason,
        join: bool,
    },
    /// A CHALLENGE whose token does not follow from the keys.
    BadToken,
    /// The concentrator no longer knows this subflow (`connection`: nor the
    /// connection): it is set up again from the start.
    PeerForgot {
        connection: bool,
    },
}

impl State {
    pub fn established(&self) -> bool {
        matches!(self, State::Up(_) | State::Down(_))
    }

    pub fn up(&self) -> bool {
        matches!(self, State::Up(_))
    }

    /// A handshake is in flight (`Some(join)`).
    pub fn handshaking(&self) -> Option<bool> {
        match self {
            State::Hello(h) => Some(h.join),
            State::Proof(p) => Some(p.join),
            _ => None,
        }
    }

    /// A subflow a previous controller left established.
    pub fn adopted(up: bool) -> State {
        if up {
            State::Up(Liveness::default())
        } else {
            State::Down(Liveness::default())
        }
    }
}

/// The next state and what to do, for one event.
pub fn step(state: State, event: Event) -> (State, Vec<Action>) {
    use Action as A;
    use Event as E;
    use State as S;
    match (state, event) {
        (_, E::Lost) => (S::Idle, if state.established() { vec![A::Remove] } else { vec![] }),

        (S::Idle | S::Hello(_) | S::Proof(_), E::Start { join, nonce_c, key_c, now_us }) => {
            let key_c = if join { 0 } else { key_c };
            (S::Hello(Hello { join, nonce_c, key_c, sent_us: now_us }), vec![A::SendHello { join, nonce_c, key_c }])
        }

        (S::Hello(h), E::Challenge { token, nonce_c, nonce_s, key_s, connection, now_us }) if nonce_c == h.nonce_c => {
            let valid = match (h.join, connection) {
                (true, Some(t)) => t == token,
                (true, None) => false,
                (false, _) => derive_token(h.key_c, key_s) == token,
            };
            if !valid {
                return (state, if h.join { vec![] } else { vec![A::BadToken] });
            }
            let proof = Proof { join: h.join, nonce_c, nonce_s, token, sent_us: now_us };
            let actions = vec![
                A::RttSample { rtt_us: now_us.saturating_sub(h.sent_us) },
                A::InstallRx { token, keys: (!h.join).then_some((h.key_c, key_s)) },
                A::SendProof { token, nonce_c, nonce_s },
            ];
            (S::Proof(proof), actions)
        }

        (S::Proof(p), E::Accept { token, nonce_c, nonce_s })
            if token == p.token && nonce_c == p.nonce_c && nonce_s == p.nonce_s =>
        {
            (S::Up(Liveness::default()), vec![A::Established { token, join: p.join }])
        }

        (
            S::Hello(Hello { join, nonce_c: n, .. }) | S::Proof(Proof { join, nonce_c: n, .. }),
            E::Reject { reason, nonce_c },
        ) if nonce_c == n => (S::Idle, vec![A::Refused { reason, join }]),

        (S::Hello(Hello { sent_us, .. }) | S::Proof(Proof { sent_us, .. }), E::Expire { now_us, retry_us })
            if now_us.saturating_sub(sent_us) >= retry_us =>
        {
            (S::Idle, vec![])
        }

        (S::Up(l) | S::Down(l), E::ProbeTick { now_us, send, silence }) => {
            let heard_us = if l.heard_us == 0 { now_us } else { l.heard_us };
            let silent = now_us.saturating_sub(heard_us) > silence.limit_us;
            let next = Liveness { heard_us, ..l };
            let mut actions = if send { vec![A::SendProbe] } else { vec![] };
            match state {
                S::Up(_) if silent => {
                    actions.insert(0, A::WentDown { why: "probes unanswered" });
                    (S::Down(Liveness { answers: 0, ..next }), actions)
                }
                S::Up(_) => (S::Up(next), actions),
                // Silent again while coming back: the count starts over.
                _ => (S::Down(Liveness { answers: if silent { 0 } else { next.answers }, ..next }), actions),
            }
        }

        (S::Up(l) | S::Down(l), E::ProbeAnswered { now_us, probe_sent_us }) => {
            let answered_sent_us = l.answered_sent_us.max(probe_sent_us);
            let heard = Liveness { heard_us: now_us, answers: l.answers + 1, answered_sent_us };
            match state {
                S::Up(_) => (S::Up(Liveness { answers: 0, ..heard }), vec![]),
                _ if heard.answers >= UP_AFTER => (S::Up(Liveness { answers: 0, ..heard }), vec![A::CameUp]),
                _ => (S::Down(heard), vec![]),
            }
        }

        (S::Up(l) | S::Down(l), E::Forgotten { connection, probe_sent_us, now_us, window_us })
            if probe_sent_us <= now_us
                && now_us - probe_sent_us <= window_us
                && probe_sent_us >= l.answered_sent_us =>
        {
            // A lost connection is removed whole by the client; a lost
            // subflow alone, and the next tick JOINs it again.
            let actions = if connection { vec![] } else { vec![A::Remove] };
            (S::Idle, [actions, vec![A::PeerForgot { connection }]].concat())
        }

        (S::Up(l), E::CarrierLost) => (S::Down(l), vec![A::WentDown { why: "link lost carrier" }]),

        // Late, duplicated or foreign replies, and events that do not apply
        // in this state, change nothing.
        (s, _) => (s, vec![]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action as A;
    use Event as E;

    const NONCE: u64 = 11;
    const KEY_C: u64 = 22;
    const KEY_S: u64 = 33;
    const NONCE_S: u64 = 44;

    fn token() -> u32 {
        derive_token(KEY_C, KEY_S)
    }

    fn start(join: bool, at: u64) -> Event {
        E::Start { join, nonce_c: NONCE, key_c: KEY_C, now_us: at }
    }

    fn challenge(token: u32, connection: Option<u32>, at: u64) -> Event {
        E::Challenge { token, nonce_c: NONCE, nonce_s: NONCE_S, key_s: KEY_S, connection, now_us: at }
    }

    fn accept(token: u32) -> Event {
        E::Accept { token, nonce_c: NONCE, nonce_s: NONCE_S }
    }

    /// Run `events` from `from`; the final state and every action, in order.
    fn run(from: State, events: &[Event]) -> (State, Vec<Action>) {
        events.iter().fold((from, Vec::new()), |(s, mut all), e| {
            let (next, actions) = step(s, *e);
            all.extend(actions);
            (next, all)
        })
    }

    fn up() -> State {
        State::Up(Liveness::default())
    }

    #[test]
    fn the_first_subflow_handshake_establishes_it() {
        let (s, actions) = run(State::Idle, &[start(false, 100), challenge(token(), None, 600), accept(token())]);
        assert_eq!(s, up());
        assert_eq!(
            actions,
            vec![
                A::SendHello { join: false, nonce_c: NONCE, key_c: KEY_C },
                A::RttSample { rtt_us: 500 },
                A::InstallRx { token: token(), keys: Some((KEY_C, KEY_S)) },
                A::SendProof { token: token(), nonce_c: NONCE, nonce_s: NONCE_S },
                A::Established { token: token(), join: false },
            ]
        );
    }

    #[test]
    fn a_join_takes_the_connections_token_and_sends_no_key() {
        let t = 0xabcd;
        let (s, actions) = run(State::Idle, &[start(true, 0), challenge(t, Some(t), 10), accept(t)]);
        assert_eq!(s, up());
        assert_eq!(actions[0], A::SendHello { join: true, nonce_c: NONCE, key_c: 0 });
        assert_eq!(actions.last(), Some(&A::Established { token: t, join: true }));
    }

    /// (what happens, events from Idle, final state, the actions after the HELLO)
    #[test]
    fn handshakes_ignore_what_does_not_belong_to_them() {
        let t = token();
        let other_nonce = E::Challenge { token: t, nonce_c: 99, nonce_s: 1, key_s: KEY_S, connection: None, now_us: 5 };
        let hello = State::Hello(Hello { join: false, nonce_c: NONCE, key_c: KEY_C, sent_us: 0 });
        let proof = State::Proof(Proof { join: false, nonce_c: NONCE, nonce_s: NONCE_S, token: t, sent_us: 5 });
        // What a valid CHALLENGE 5 µs after the HELLO sets off.
        let challenged = vec![
            A::RttSample { rtt_us: 5 },
            A::InstallRx { token: t, keys: Some((KEY_C, KEY_S)) },
            A::SendProof { token: t, nonce_c: NONCE, nonce_s: NONCE_S },
        ];
        let table: Vec<(&str, Vec<Event>, State, Vec<Action>)> = vec![
            ("a CHALLENGE for another HELLO", vec![start(false, 0), other_nonce], hello, vec![]),
            (
                "a token that does not follow from the keys",
                vec![start(false, 0), challenge(t ^ 1, None, 5)],
                hello,
                vec![A::BadToken],
            ),
            (
                "a JOIN's CHALLENGE naming another connection",
                vec![start(true, 0), challenge(7, Some(8), 5)],
                State::Hello(Hello { join: true, nonce_c: NONCE, key_c: 0, sent_us: 0 }),
                vec![],
            ),
            ("an ACCEPT before any CHALLENGE", vec![start(false, 0), accept(t)], hello, vec![]),
            (
                "an ACCEPT with another server nonce",
                vec![start(false, 0), challenge(t, None, 5), E::Accept { token: t, nonce_c: NONCE, nonce_s: 1 }],
                proof,
                challenged.clone(),
            ),
            (
                "a duplicated CHALLENGE once challenged",
                vec![start(false, 0), challenge(t, None, 5), challenge(t, None, 9)],
                proof,
                challenged.clone(),
            ),
            (
                "a REJECT for another HELLO",
                vec![start(false, 0), E::Reject { reason: RejectReason::Full, nonce_c: 99 }],
                hello,
                vec![],
            ),
            ("probe answers before it is established", vec![start(false, 0), answer(1), tick(2, true)], hello, vec![]),
        ];
        for (what, events, want_state, want_actions) in table {
            let (s, actions) = run(State::Idle, &events);
            assert_eq!(s, want_state, "{what}");
            assert_eq!(actions[1..], want_actions[..], "{what}");
        }
    }

    #[test]
    fn a_reject_or_a_timeout_ends_the_handshake() {
        let (s, a) =
            run(State::Idle, &[start(false, 0), E::Reject { reason: RejectReason::AuthFailed, nonce_c: NONCE }]);
        assert_eq!((s, a[1]), (State::Idle, A::Refused { reason: RejectReason::AuthFailed, join: false }));
        let (s, a) = run(
            State::Idle,
            &[
                start(true, 0),
                challenge(5, Some(5), 1),
                E::Reject { reason: RejectReason::UnknownToken, nonce_c: NONCE },
            ],
        );
        assert_eq!(
            (s, *a.last().unwrap()),
            (State::Idle, A::Refused { reason: RejectReason::UnknownToken, join: true })
        );
        // Each step has its own clock: a CHALLENGE restarts it.
        let table = [(1_999, false), (2_000, true)];
        for (now, expired) in table {
            let (s, _) = run(State::Idle, &[start(false, 0), E::Expire { now_us: now, retry_us: 2_000 }]);
            assert_eq!(s == State::Idle, expired, "HELLO at 0, now {now}");
            let (s, _) = run(
                State::Idle,
                &[start(false, 0), challenge(token(), None, 1_000), E::Expire { now_us: now + 1_000, retry_us: 2_000 }],
            );
            assert_eq!(s == State::Idle, expired, "PROOF at 1000, now {}", now + 1_000);
        }
        // A retry replaces the handshake in flight with a fresh one.
        let (s, _) = run(State::Idle, &[start(false, 0), E::Start { join: false, nonce_c: 5, key_c: 6, now_us: 9 }]);
        assert_eq!(s, State::Hello(Hello { join: false, nonce_c: 5, key_c: 6, sent_us: 9 }));
    }

    /// The monotonic clock in µs at `at_ms` into a test (never 0, as in life).
    fn at(at_ms: u64) -> u64 {
        (1_000 + at_ms) * 1000
    }

    /// A probe tick at `at_ms`, a probe sent if `send`, down after 150 ms without an answer.
    fn tick(at_ms: u64, send: bool) -> Event {
        E::ProbeTick { now_us: at(at_ms), send, silence: Silence { limit_us: 150_000 } }
    }

    /// An answer at `at_ms` to a probe sent 10 ms before.
    fn answer(at_ms: u64) -> Event {
        E::ProbeAnswered { now_us: at(at_ms), probe_sent_us: at(at_ms) - 10_000 }
    }

    fn went_down(a: &[Action]) -> bool {
        a.contains(&A::WentDown { why: "probes unanswered" })
    }

    #[test]
    fn a_silence_past_the_limit_takes_it_down() {
        // Probes every 50 ms; the last answer at 10 ms. 140 ms later it is
        // still up, 190 ms later it is down.
        let (s, a) = run(up(), &[tick(0, true), answer(10), tick(50, true), tick(100, true), tick(150, true)]);
        assert!(s.up() && !went_down(&a), "{s:?} {a:?}");
        let (s, a) = run(s, &[tick(200, true)]);
        assert!(!s.up() && went_down(&a), "{s:?} {a:?}");
        // The clock starts at the first tick, not at 0.
        let (s, _) = run(up(), &[tick(5_000, true), tick(5_100, true)]);
        assert!(s.up(), "{s:?}");
        // Answers that trail a growing queue keep it up: late, not missing.
        // Probe k goes out at 50k ms and its round trip grows by 5 ms a probe.
        let mut timeline: Vec<(u64, Event)> = Vec::new();
        for k in 0..40 {
            timeline.push((50 * k, tick(50 * k, true)));
            timeline.push((50 * k + 100 + 5 * k, answer(50 * k + 100 + 5 * k)));
        }
        timeline.sort_by_key(|(t, _)| *t);
        let events: Vec<Event> = timeline.into_iter().map(|(_, e)| e).collect();
        let (s, a) = run(up(), &events);
        assert!(s.up() && !went_down(&a), "{s:?}");
        // A long round trip: the first answer comes after 300 ms. Its limit
        // (its RTO, 400 ms) lets it; 150 ms would not.
        let slow = |at_ms: u64| E::ProbeTick { now_us: at(at_ms), send: true, silence: Silence { limit_us: 400_000 } };
        let (s, a) =
            run(up(), &[slow(0), slow(50), slow(100), slow(150), slow(200), slow(250), slow(300), answer(300)]);
        assert!(s.up() && !went_down(&a), "{s:?}");
        let (_, a) = run(up(), &[tick(0, true), tick(100, true), tick(200, true), answer(300)]);
        assert!(went_down(&a));
    }

    #[test]
    fn it_comes_back_after_answers_in_a_row_not_on_one_flicker() {
        let dead = [tick(0, true), tick(50, true), tick(100, true), tick(150, true), tick(200, true)];
        let (down, a) = run(up(), &dead);
        assert!(!down.up() && went_down(&a));
        assert_eq!(a.iter().filter(|a| **a == A::SendProbe).count(), 5, "probes go on while down");
        // Two answers are not enough; the third brings it back.
        let (s, a) = run(down, &[answer(210), tick(250, true), answer(260)]);
        assert!(!s.up() && !a.contains(&A::CameUp), "{s:?}");
        let (s, a) = run(s, &[tick(300, true), answer(310)]);
        assert_eq!((s.up(), a.last()), (true, Some(&A::CameUp)));
        // Silent again while coming back: the answers so far do not count.
        let (s, _) = run(down, &[answer(210), answer(220), tick(250, true), tick(300, true), tick(400, true)]);
        assert!(matches!(s, State::Down(Liveness { answers: 0, .. })), "{s:?}");
        let (s, _) = run(s, &[answer(410)]);
        assert!(!s.up(), "one answer after a new silence: {s:?}");
    }

    #[test]
    fn carrier_loss_takes_it_down_and_losing_the_path_removes_it() {
        let (s, a) = step(up(), E::CarrierLost);
        assert_eq!((s.established(), s.up(), a), (true, false, vec![A::WentDown { why: "link lost carrier" }]));
        assert_eq!(step(s, E::CarrierLost).1, vec![], "already down");
        assert_eq!(step(s, E::Lost), (State::Idle, vec![A::Remove]));
        assert_eq!(step(up(), E::Lost), (State::Idle, vec![A::Remove]));
        // Mid-handshake (the address went away while a CHALLENGE was queued):
        // the handshake is void, nothing was installed to remove.
        let (s, _) = run(State::Idle, &[start(false, 0), E::Lost, challenge(token(), None, 5)]);
        assert_eq!(s, State::Idle);
    }

    #[test]
    fn an_adopted_subflow_is_established_as_it_was() {
        assert!(State::adopted(true).up());
        assert!(State::adopted(false).established() && !State::adopted(false).up());
        let (s, a) = run(State::adopted(false), &[answer(1), answer(2), answer(3)]);
        assert_eq!((s.up(), a), (true, vec![A::CameUp]));
    }

    #[test]
    fn a_concentrator_that_forgot_us_makes_us_start_again() {
        let forgot =
            |connection, probe_sent_us| E::Forgotten { connection, probe_sent_us, now_us: 10_000, window_us: 5_000 };
        let down = State::Down(Liveness::default());
        let answered = |sent_us| State::Up(Liveness { answered_sent_us: sent_us, ..Liveness::default() });
        let hello = step(State::Idle, start(true, 0)).0;
        let table: Vec<(&str, State, Event, State, Vec<Action>)> = vec![
            // The connection is gone (restart without state): the client drops it whole.
            ("connection, up", up(), forgot(true, 9_000), State::Idle, vec![A::PeerForgot { connection: true }]),
            ("connection, down", down, forgot(true, 9_000), State::Idle, vec![A::PeerForgot { connection: true }]),
            // The subflow from this address is gone (NAT rebinding): it alone goes, and JOINs again.
            ("subflow", up(), forgot(false, 5_000), State::Idle, vec![A::Remove, A::PeerForgot { connection: false }]),
            // Answers to probes we did not send lately (replayed) change nothing.
            ("older than the window", up(), forgot(true, 4_999), up(), vec![]),
            ("from the future", up(), forgot(false, 10_001), up(), vec![]),
            // Nor does a refusal of a probe older than one answered since:
            // the concentrator knew the subflow after it (a replay).
            ("older than an answer", answered(8_000), forgot(true, 7_999), answered(8_000), vec![]),
            (
                "newer than the answer",
                answered(8_000),
                forgot(true, 8_000),
                State::Idle,
                vec![A::PeerForgot { connection: true }],
            ),
            // Nothing established: a handshake in flight has its own REJECTs.
            ("mid-handshake", hello, forgot(true, 9_000), hello, vec![]),
            ("idle", State::Idle, forgot(true, 9_000), State::Idle, vec![]),
        ];
        for (what, from, event, to, actions) in table {
            assert_eq!(step(from, event), (to, actions), "{what}");
        }
    }
}
