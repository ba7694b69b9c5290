//! The compiled kernel programs, embedded at build time (see build.rs).

/// The eBPF object with `bond_egress` (tc) and `uplink_ingress` (XDP).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mptcp-ebpf"));

/// The eBPF object with `mptcpify` (BPF_MODIFY_RETURN) and its cgroup map.
pub static MPTCPIFY_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mptcpify"));

/// The eBPF object with `subflow_pacing` (sockops) and its cap maps.
pub static SUBFLOW_PACING_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/subflow-pacing"));
