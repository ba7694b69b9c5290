//! Explicit state machines of the control plane: pure transitions, no I/O.
//! `subflow`: a client subflow from handshake to loss; `handshake`: the
//! concentrator's side of each handshake; `pmtu`: a path's MTU, searched and
//! kept with padded probes.

pub mod handshake;
pub mod pmtu;
pub mod subflow;
