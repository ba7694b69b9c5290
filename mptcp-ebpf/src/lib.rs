//! Host-side stub: the kernel programs live in the `mptcp-ebpf` binary built
//! for bpfel-unknown-none (see main.rs). Nothing here.
#![no_std]
