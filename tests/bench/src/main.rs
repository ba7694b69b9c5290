//! `mptcp-bench --scenario FILE`: every compared system through one scenario
//! on emulated WAN links, side by side. Normally run as `cargo xtask bench`.
//!
//! Each system gets a fresh testbed (namespaces, emulator, shaped links), so no
//! state (TCP metrics, routes, pins) leaks from one system into the next.

mod cost;
mod plot;
mod report;
mod run;
mod scenario;
mod sim;
mod systems;

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;

use scenario::Scenario;

#[derive(Parser)]
#[command(name = "mptcp-bench", about = "Benchmark mptcp-ebpf against single-path TCP and kernel MPTCP")]
struct Cli {
    /// Scenario file (TOML): links, traffic, events, duration. Any path works.
    #[arg(long)]
    scenario: PathBuf,
    /// Print the results as one JSON object on the last line of output.
    #[arg(long)]
    json: bool,
    /// Repeat every system this many times and report medians.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50))]
    runs: u32,
    /// Only these systems (overrides the scenario's list), e.g. `kernel-mptcp,bond:min-rtt`.
    #[arg(long, value_delimiter = ',')]
    systems: Option<Vec<String>>,
    /// The controller binary (default: mptcp-user next to this program).
    #[arg(long)]
    controller: Option<PathBuf>,
    /// Report directory (default: target/bench/<scenario name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Timed BPF_PROG_TEST_RUN runs per program for the per-packet cost (0 skips it).
    #[arg(long, default_value_t = 50_000)]
    cost_samples: usize,
    /// Simulate the bond's policies over model paths instead (deterministic,
    /// no root, no namespaces); the other systems are not simulated.
    #[arg(long)]
    sim: bool,
}

fn main() {
    if let Err(e) = main_inner() {
        eprintln!("mptcp-bench: error: {e:#}");
        std::process::exit(1);
    }
}

fn main_inner() -> Result<()> {
    let cli = Cli::parse();
    let mut scn = Scenario::load(&cli.scenario)?;
    if let Some(s) = &cli.systems {
        scn.systems = Some(s.clone());
        scn.validate().context("--systems")?;
    }
    if cli.sim {
        return simulate(&cli, &scn);
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("the benchmark must run as root: it creates network namespaces and loads eBPF programs");
    }
    let controller = match &cli.controller {
        Some(c) => c.clone(),
        None => std::env::current_exe()?.with_file_name("mptcp-user"),
    };
    if !controller.exists() {
        bail!("controller {} not found (build mptcp-user, or pass --controller)", controller.display());
    }
    // Default: <workspace>/target/bench/<name>, next to target/release/ where this binary lives.
    let out = match &cli.out {
        Some(o) => o.clone(),
        None => {
            let exe = std::env::current_exe()?;
            let target = exe.parent().and_then(|p| p.parent()).context("cannot locate the target directory")?;
            target.join("bench").join(scn.name())
        }
    };
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let logs = out.join("logs");
    std::fs::create_dir_all(&logs)?;

    let systems = scn.systems()?;
    let total = systems.len() * cli.runs as usize;
    eprintln!(
        "bench: {} — {} system(s) × {} run(s), {} s each; report in {}",
        scn.name(),
        systems.len(),
        cli.runs,
        scn.duration_s,
        out.display()
    );
    let mut runs = Vec::new();
    let mut step = 0;
    for r in 0..cli.runs {
        let mut this_run = Vec::new();
        for system in &systems {
            step += 1;
            let label = format!("[{step}/{total}] {}", system.label());
            eprintln!("bench: {label}: starting");
            let progress = |msg: &str| eprintln!("bench: {label}: {msg}");
            let result = run::run_system(&scn, *system, &controller, &logs, &progress)
                .with_context(|| format!("{} (run {}) failed; logs in {}", system.label(), r + 1, logs.display()))?;
            let m = &result.metrics;
            eprintln!(
                "bench: {label}: done — goodput {} Mbit/s",
                m.goodput_mbit.map_or("–".into(), |g| format!("{g:.2}"))
            );
            this_run.push(result);
        }
        runs.push(this_run);
    }
    let cost = if cli.cost_samples > 0 {
        eprintln!("bench: per-packet cost of the eBPF programs ({} timed runs each)", cli.cost_samples);
        Some(cost::measure(cli.cost_samples).context("measuring the per-packet cost")?)
    } else {
        None
    };

    let summary = report::summarize(&scn, &runs, cost);
    let command = format!(
        "cargo xtask bench --scenario {}{}",
        cli.scenario.display(),
        if cli.runs > 1 { format!(" --runs {}", cli.runs) } else { String::new() }
    );
    let table = report::markdown(&summary, &command);
    std::fs::write(out.join("report.md"), &table)?;
    std::fs::write(out.join("results.json"), serde_json::to_string_pretty(&runs)?)?;
    let plots = plot::draw(&scn, runs.last().expect("at least one run"), &out)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{table}")?;
    for p in plots {
        writeln!(stdout, "plot: {}", p.display())?;
    }
    if cli.json {
        writeln!(stdout, "{}", serde_json::to_string(&summary)?)?;
    }
    Ok(())
}

/// `--sim`: every bond policy of the scenario's systems through the simulator.
fn simulate(cli: &Cli, scn: &Scenario) -> Result<()> {
    if let Some(what) = sim::unmodelled(scn) {
        anyhow::bail!("the simulator does not model {what}; run scenario {} without --sim", scn.name());
    }
    let mut results = Vec::new();
    for system in scn.systems()? {
        match system {
            scenario::System::Bond(p) => results.push(sim::simulate(scn, p)),
            other => eprintln!("bench: {} is not simulated (only the bond's policies are)", other.label()),
        }
    }
    if results.is_empty() {
        bail!("the scenario's systems include no bond policy to simulate");
    }
    let command = format!("cargo xtask bench --sim --scenario {}", cli.scenario.display());
    let table = sim::markdown(scn, &results, &command);
    if let Some(out) = &cli.out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        std::fs::write(out.join("sim-report.md"), &table)?;
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{table}")?;
    if cli.json {
        writeln!(stdout, "{}", serde_json::json!({ "scenario": scn.name(), "simulated": true, "systems": results }))?;
    }
    Ok(())
}
