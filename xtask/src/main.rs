//! `cargo xtask setup | build | test | fuzz | demo | bench` — the project's one entry point.
//! `setup` installs what a fresh machine lacks; the others run it first.

mod demo;
mod setup;

use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "mptcp-ebpf developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what a fresh machine lacks: rust-src for nightly, bpf-linker, Debian packages.
    Setup,
    /// Build everything (the eBPF object is built by mptcp-user's build script).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Run the whole test suite (needs root: network namespaces and eBPF).
    Test {
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// The full fuzz run (the test suite runs a bounded one): generated and
    /// mutated packets through the kernel programs on BPF_PROG_TEST_RUN, each
    /// verdict compared with the host reference; the control-message
    /// decoders' property targets with many more cases. Needs root.
    Fuzz {
        /// Packets through each program (the XDP ingress, the tc egress).
        #[arg(long, default_value_t = 1_000_000)]
        packets: u64,
        /// Cases per control-message property target.
        #[arg(long, default_value_t = 100_000)]
        cases: u32,
        /// The packet generator's seed (the run prints it; the same seed
        /// makes the same packets).
        #[arg(long, default_value_t = 0x6d70_7463)]
        seed: u64,
    },
    /// Bring up a testbed in network namespaces and push traffic through the bond.
    Demo {
        /// Seconds of traffic.
        #[arg(long, default_value_t = 20)]
        duration: u64,
        /// Print a machine-readable summary as the last line.
        #[arg(long)]
        json: bool,
    },
    /// Run a benchmark scenario: every system side by side on emulated links.
    /// Report and plots go to target/bench/<scenario>/.
    Bench {
        /// Scenario file (TOML), e.g. tests/scenarios/two-unequal.toml.
        #[arg(long)]
        scenario: String,
        /// Print the results as JSON on the last line.
        #[arg(long)]
        json: bool,
        /// Repeat each system N times and report medians.
        #[arg(long, default_value_t = 1)]
        runs: u32,
        /// Simulate the bond's policies over model paths instead (no root needed).
        #[arg(long)]
        sim: bool,
        /// More mptcp-bench options (after `--`), e.g. `--systems kernel-mptcp,bond:min-rtt`.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn require_root(what: &str) -> Result<()> {
    if !nix_is_root() {
        bail!("`cargo xtask {what}` must run as root: it loads eBPF programs and creates network namespaces");
    }
    Ok(())
}

fn nix_is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Setup => setup::setup(),
        Cmd::Build { release } => {
            setup::ensure()?;
            let mut c = cargo();
            c.args(["build", "--workspace"]);
            if release {
                c.arg("--release");
            }
            run(&mut c)
        }
        Cmd::Test { args } => {
            require_root("test")?;
            setup::ensure()?;
            println!("test: building");
            run(cargo().args(["build", "--workspace", "--all-targets"]))?;
            println!("test: running the suite (unit, eBPF fixtures, namespace end-to-end)");
            // Namespace tests push real traffic; two at a time suits small
            // machines. Every test binary runs even after a failure, so one
            // run names every failing test.
            let mut c = cargo();
            c.args(["test", "--workspace", "--no-fail-fast", "--", "--test-threads=2"]).args(&args);
            run(&mut c)
        }
        Cmd::Fuzz { packets, cases, seed } => {
            require_root("fuzz")?;
            setup::ensure()?;
            println!("fuzz: {packets} packets through each kernel program (seed {seed:#x})");
            let mut c = cargo();
            c.args(["test", "--release", "-p", "mptcp-user", "--test", "packet_fuzz", "--", "--nocapture"]);
            c.env("MPTCP_FUZZ_PACKETS", packets.to_string()).env("MPTCP_FUZZ_SEED", seed.to_string());
            run(&mut c)?;
            println!("fuzz: {cases} cases per control-message decoder target");
            let mut c = cargo();
            c.args(["test", "--release", "-p", "mptcp-user", "--lib", "control::tests::fuzz"]);
            c.env("MPTCP_FUZZ_CASES", cases.to_string());
            run(&mut c)
        }
        Cmd::Bench { scenario, json, runs, sim, args } if sim => {
            run(cargo().args(["build", "--release", "-p", "mptcp-bench"]))?;
            let bench = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/mptcp-bench");
            let mut c = Command::new(bench);
            c.args(["--sim", "--scenario", &scenario]).args(&args);
            if runs > 1 {
                eprintln!("xtask: --runs does not apply to --sim: the simulation is deterministic");
            }
            if json {
                c.arg("--json");
            }
            run(&mut c)
        }
        Cmd::Bench { scenario, json, runs, args, .. } => {
            require_root("bench")?;
            setup::ensure()?;
            // Release builds: the emulator and the controller must not be the bottleneck.
            run(cargo().args(["build", "--release", "-p", "mptcp-user", "-p", "mptcp-bench"]))?;
            let bench = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/mptcp-bench");
            let mut c = Command::new(bench);
            c.args(["--scenario", &scenario, "--runs", &runs.to_string()]).args(&args);
            if json {
                c.arg("--json");
            }
            run(&mut c)
        }
        Cmd::Demo { duration, json } => {
            require_root("demo")?;
            setup::ensure()?;
            run(cargo().args(["build", "-p", "mptcp-user"]))?;
            demo::demo(duration, json)
        }
    }
}
