//! Everything the kernel programs and the controller must agree on, and every
//! scheduling decision as a pure function.
//!
//! `#![no_std]` so the very same code runs in the eBPF programs, in host tests
//! and in the simulator. The `user` feature adds `aya::Pod` impls for the map
//! types and std-only helpers.
#![no_std]

#[cfg(any(feature = "std", test))]
extern crate std;

pub mod auth;
pub mod checksum;
pub mod classify;
#[cfg(feature = "std")]
pub mod clock;
pub mod dedup;
pub mod drop;
pub mod headers;
pub mod inner;
pub mod maps;
pub mod mptcpify;
pub mod mtu;
pub mod packet;
pub mod policy;
pub mod seq;
#[cfg(feature = "serde")]
pub mod status;
pub mod template;
pub mod uplink;
pub mod wire;

pub use drop::DropReason;
pub use policy::{ClassPolicy, Policy};
