//! Native MPTCP mode (RFC 8684 end to end, no tunnel): the controller drives
//! the kernel's own Multipath TCP for hosts that talk to MPTCP peers: the
//! kernel's path manager ([`pm`]), a host's paths for it ([`paths`]), the
//! policies it can express ([`policy`]), the paths' probes ([`probe`]),
//! the role on the event loop
//! ([`controller`]) and its start and stop ([`up`]); and [`mptcpify`],
//! which makes unmodified applications' TCP sockets MPTCP by cgroup.

pub mod controller;
pub mod diag;
mod fmod_ret;
pub mod mptcpify;
pub mod pacing;
pub mod paths;
pub mod pm;
pub mod policy;
pub mod probe;
pub mod up;
