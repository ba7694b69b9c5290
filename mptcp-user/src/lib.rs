//! mptcp-ebpf controller: loads and pins the kernel programs, sets up the
//! connection and its subflows, probes every path and keeps path state in the
//! BPF maps the scheduler reads.

pub mod bpfmaps;
pub mod classes;
pub mod client;
pub mod concentrator;
pub mod config;
pub mod config_reference;
pub mod control;
pub mod ctl;
pub mod daemon;
pub mod datacap;
pub mod datapath_log;
pub mod estimate;
pub mod history;
pub mod http;
pub mod key;
pub mod lifecycle;
pub mod metrics;
pub mod monitor;
pub mod native;
pub mod netdev;
pub mod netns;
pub mod object;
pub mod peer;
pub mod run;
pub mod runtime;
pub mod session;
pub mod status;
pub mod subflows;
pub mod throttle;
pub mod train;
pub mod watch;
