//! Native MPTCP mode (RFC 8684 end to end, no tunnel): the controller drives
//! the kernel's own Multipath TCP for hosts that talk to MPTCP peers. So far:
//! the kernel's path manager ([`pm`]) and a client's paths for it ([`paths`]).

pub mod paths;
pub mod pm;
