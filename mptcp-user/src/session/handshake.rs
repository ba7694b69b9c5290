//! The concentrator's side of a handshake (first subflow or JOIN), one per
//! (client address, client nonce), as a state machine:
//!
//! ```text
//!   HELLO ─▶ Challenged ── valid PROOF, installed ──▶ Accepted ── expiry ──▶ (forgotten)
//!              │  ▲ HELLO again: same CHALLENGE          │ ▲ PROOF again: same ACCEPT
//!              └──┴── install failed: REJECT, forgotten  └─┘
//! ```
//! An offer stays a while after its ACCEPT so a retransmitted PROOF gets the
//! same answer instead of a second installation. [`on_hello`], [`on_proof`]
//! and [`on_installed`] are pure: the concentrator looks up what they need
//! (is the token known, is there room), and sends and installs what they say.

use crate::control::RejectReason;

/// How long an offer is kept after its CHALLENGE.
pub const OFFER_LIFETIME_US: u64 = 10_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// CHALLENGE sent; waiting for the PROOF.
    Challenged,
    /// Installed and ACCEPT sent.
    Accepted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offer {
    pub join: bool,
    pub token: u32,
    pub subflow_id: u8,
    pub nonce_s: u64,
    /// Our key (first subflow only).
    pub key_s: u64,
    /// The socket the HELLO came in on: the PROOF must come on it too.
    pub listener: usize,
    pub challenged_us: u64,
    pub phase: Phase,
}

impl Offer {
    pub fn expired(&self, now_us: u64) -> bool {
        now_us.saturating_sub(self.challenged_us) >= OFFER_LIFETIME_US
    }
}

/// What a HELLO asks for, and what the concentrator knows of it.
#[derive(Clone, Copy, Debug)]
pub struct Hello {
    pub join: bool,
    pub token: u32,
    pub subflow_id: u8,
    pub listener: usize,
    pub now_us: u64,
    /// JOIN: a connection with this token exists.
    pub token_known: bool,
    /// First subflow: no room for another connection.
    pub full: bool,
    /// No room for another handshake (in progress at their cap, overall or
    /// from this client address).
    pub busy: bool,
    /// First subflow: the token and key drawn for it (JOIN: its own token, 0).
    pub fresh_token: u32,
    pub fresh_key_s: u64,
    pub fresh_nonce_s: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    Challenge {
        token: u32,
        subflow_id: u8,
        nonce_s: u64,
        key_s: u64,
    },
    Accept {
        token: u32,
        subflow_id: u8,
        nonce_s: u64,
    },
    Reject(RejectReason),
    /// Install the subflow (and the connection, first subflow), then call
    /// [`on_installed`].
    Install,
    None,
}

/// A HELLO, with the offer already made for its (address, nonce), if any.
pub fn on_hello(offer: Option<Offer>, h: Hello) -> (Option<Offer>, Reply) {
    if let Some(o) = offer {
        // A retransmitted HELLO: the same CHALLENGE again.
        return (
            Some(o),
            Reply::Challenge { token: o.token, subflow_id: o.subflow_id, nonce_s: o.nonce_s, key_s: o.key_s },
        );
    }
    if h.join && !h.token_known {
        return (None, Reply::Reject(RejectReason::UnknownToken));
    }
    if (!h.join && h.full) || h.busy {
        return (None, Reply::Reject(RejectReason::Full));
    }
    let (token, key_s) = if h.join { (h.token, 0) } else { (h.fresh_token, h.fresh_key_s) };
    let o = Offer {
        join: h.join,
        token,
        subflow_id: h.subflow_id,
        nonce_s: h.fresh_nonce_s,
        key_s,
        listener: h.listener,
        challenged_us: h.now_us,
        phase: Phase::Challenged,
    };
    (Some(o), Reply::Challenge { token, subflow_id: h.subflow_id, nonce_s: o.nonce_s, key_s })
}

/// A PROOF (already authenticated) naming `token`, `subflow_id` and
/// `nonce_s`, on socket `listener`.
pub fn on_proof(offer: Option<Offer>, token: u32, subflow_id: u8, nonce_s: u64, listener: usize) -> Reply {
    let Some(o) = offer else { return Reply::None };
    if o.nonce_s != nonce_s || o.token != token || o.subflow_id != subflow_id || o.listener != listener {
        return Reply::None;
    }
    match o.phase {
        Phase::Challenged => Reply::Install,
        Phase::Accepted => Reply::Accept { token, subflow_id, nonce_s },
    }
}

/// The installation [`on_proof`] asked for succeeded or not.
pub fn on_installed(offer: Offer, ok: bool) -> (Option<Offer>, Reply) {
    if ok {
        let accepted = Offer { phase: Phase::Accepted, ..offer };
        (Some(accepted), Reply::Accept { token: offer.token, subflow_id: offer.subflow_id, nonce_s: offer.nonce_s })
    } else {
        // Nothing half-installed stays (the caller undoes it): the client
        // is told there is no room and tries again later.
        (None, Reply::Reject(RejectReason::Full))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(join: bool) -> Hello {
        Hello {
            join,
            token: 0x77,
            subflow_id: 1,
            listener: 0,
            now_us: 1_000,
            token_known: true,
            full: false,
            busy: false,
            fresh_token: 0x55,
            fresh_key_s: 9,
            fresh_nonce_s: 4,
        }
    }

    #[test]
    fn hellos_get_a_challenge_or_the_reason_they_cannot() {
        // (what, hello, offer made?, reply)
        let table = [
            (
                "first subflow",
                hello(false),
                true,
                Reply::Challenge { token: 0x55, subflow_id: 1, nonce_s: 4, key_s: 9 },
            ),
            ("join", hello(true), true, Reply::Challenge { token: 0x77, subflow_id: 1, nonce_s: 4, key_s: 0 }),
            (
                "join, unknown token",
                Hello { token_known: false, ..hello(true) },
                false,
                Reply::Reject(RejectReason::UnknownToken),
            ),
            ("first, no room", Hello { full: true, ..hello(false) }, false, Reply::Reject(RejectReason::Full)),
            (
                "join ignores the connection count",
                Hello { full: true, ..hello(true) },
                true,
                Reply::Challenge { token: 0x77, subflow_id: 1, nonce_s: 4, key_s: 0 },
            ),
            (
                "first, handshakes at their cap",
                Hello { busy: true, ..hello(false) },
                false,
                Reply::Reject(RejectReason::Full),
            ),
            (
                "join, handshakes at their cap",
                Hello { busy: true, ..hello(true) },
                false,
                Reply::Reject(RejectReason::Full),
            ),
        ];
        for (what, h, offered, reply) in table {
            let (o, r) = on_hello(None, h);
            assert_eq!((o.is_some(), r), (offered, reply), "{what}");
        }
    }

    #[test]
    fn a_retransmitted_hello_gets_the_same_challenge() {
        let (o, first) = on_hello(None, hello(false));
        let again = Hello { fresh_token: 1, fresh_key_s: 2, fresh_nonce_s: 3, now_us: 5_000, ..hello(false) };
        let (o2, second) = on_hello(o, again);
        assert_eq!((o2, second), (o, first));
    }

    #[test]
    fn only_the_matching_proof_installs_and_a_repeated_one_gets_the_same_accept() {
        let (o, _) = on_hello(None, hello(false));
        let o = o.unwrap();
        let table = [
            ("no offer", None, 0x55, 1, 4, 0, Reply::None),
            ("another server nonce", Some(o), 0x55, 1, 5, 0, Reply::None),
            ("another token", Some(o), 0x56, 1, 4, 0, Reply::None),
            ("another subflow id", Some(o), 0x55, 2, 4, 0, Reply::None),
            ("another socket", Some(o), 0x55, 1, 4, 1, Reply::None),
            ("the one", Some(o), 0x55, 1, 4, 0, Reply::Install),
        ];
        for (what, offer, token, id, nonce_s, listener, want) in table {
            assert_eq!(on_proof(offer, token, id, nonce_s, listener), want, "{what}");
        }
        let (accepted, reply) = on_installed(o, true);
        assert_eq!(reply, Reply::Accept { token: 0x55, subflow_id: 1, nonce_s: 4 });
        assert_eq!(on_proof(accepted, 0x55, 1, 4, 0), reply, "a retransmitted PROOF is answered, not installed twice");
    }

    #[test]
    fn a_failed_installation_is_refused_and_forgotten_and_offers_expire() {
        let (o, _) = on_hello(None, hello(false));
        assert_eq!(on_installed(o.unwrap(), false), (None, Reply::Reject(RejectReason::Full)));
        let o = o.unwrap();
        assert!(!o.expired(1_000 + OFFER_LIFETIME_US - 1));
        assert!(o.expired(1_000 + OFFER_LIFETIME_US));
    }
}
