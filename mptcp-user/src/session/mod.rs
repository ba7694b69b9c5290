//! Explicit state machines of the control plane: pure transitions, no I/O.
//! `subflow`: a client subflow from handshake to loss; `handshake`: the
//! concentrator's side of each handshake.

pub mod handshake;
pub mod subflow;
