//! Explicit state machines of the control plane: pure transitions, no I/O.

pub mod subflow;
