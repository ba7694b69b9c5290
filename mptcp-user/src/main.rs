//! `mptcp-user`: the mptcp-ebpf controller and CLI.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ipnet::IpNet;
use mptcp_user::config::{self, Config, Mode, PolicyName, Role};
use mptcp_user::ctl::{self, Request, Response};
use mptcp_user::{run, status};

#[derive(Parser)]
#[command(
    name = "mptcp-user",
    version,
    about = "Multipath bonding with an eBPF per-packet scheduler (mptcp-ebpf)",
    after_help = EXAMPLES
)]
struct Cli {
    /// Run inside this named network namespace (/run/netns/NAME); only the
    /// network namespace is entered, so pins stay on the host's bpffs.
    #[arg(long, global = true)]
    netns: Option<String>,
    /// Log filter (tracing env-filter syntax), e.g. `debug` or
    /// `info,mptcp_user=debug`. The netlink libraries speak only of errors
    /// unless the filter names them (they warn of every message they drop
    /// as the controller stops).
    #[arg(long, global = true, default_value = "info", env = "MPTCP_LOG")]
    log: String,
    /// Log lines as text (coloured on a terminal only) or as one JSON
    /// object per line, its fields as keys (for a log shipper).
    #[arg(long, global = true, value_enum, default_value = "text", env = "MPTCP_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Create the bond, attach the data path and run the controller in the
    /// foreground (or, with --mode mptcp, manage the kernel's MPTCP paths).
    /// Ctrl-C (SIGINT) removes everything; SIGTERM leaves the data path
    /// forwarding (the paths in place) for a restarted controller to adopt.
    #[command(
        after_help = "Examples:\n  mptcp-user up --config /etc/mptcp-ebpf/client.toml\n  mptcp-user up --config client.toml --http 127.0.0.1:9477   status page and metrics\n  mptcp-user up --role client --key-file /etc/mptcp-ebpf/key --bond-address 10.99.0.2/32 \\\n      --route 0.0.0.0/0 --path eth1=203.0.113.10 --path wwan0=203.0.113.10\n  mptcp-user up --mode mptcp --role client --path eth1=192.168.1.1 --path wwan0"
    )]
    Up(UpArgs),
    /// Stop the instance's controller and remove its data path, pins and bond.
    #[command(after_help = "Examples:\n  mptcp-user down\n  mptcp-user down --instance van")]
    Down {
        #[arg(long, default_value = "default")]
        instance: String,
    },
    /// Make a random 256-bit key for `key_file`: written to FILE (created
    /// readable by its owner only, never over an existing file), or printed
    /// when FILE is not given.
    #[command(
        after_help = "Examples:\n  mptcp-user genkey /etc/mptcp-ebpf/key      then copy it to the other end (scp)\n  mptcp-user genkey                          print one"
    )]
    Genkey {
        /// The key file to create.
        file: Option<PathBuf>,
    },
    /// Per-subflow state and counters.
    ///
    /// `status --watch` redraws it every second with each subflow's current
    /// rates and share (one line per subflow when not on a terminal, one
    /// JSON object per refresh with --json).
    #[command(
        after_help = "Examples:\n  mptcp-user status\n  mptcp-user status --json | jq '.connections[0].subflows[] | {path, state, srtt_us}'\n  mptcp-user status --watch --interval 0.5\n  mptcp-user status --watch --json > status.jsonl"
    )]
    Status {
        #[arg(long, default_value = "default")]
        instance: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Refresh until interrupted, with the subflows' current rates.
        #[arg(long)]
        watch: bool,
        /// Seconds between refreshes (with --watch).
        #[arg(long, default_value_t = 1.0, value_parser = parse_interval)]
        interval: f64,
    },
    /// Show or switch the scheduling policy at runtime (one map write).
    #[command(
        after_help = "Examples:\n  mptcp-user policy show\n  mptcp-user policy set active-backup\n  mptcp-user policy set earliest-arrival --class video\n  mptcp-user policy set flowlet --base weighted"
    )]
    Policy {
        #[command(subcommand)]
        action: PolicyAction,
    },
    /// Change a path's hints at runtime (client): they apply to the next
    /// packet and are sent to the concentrator for the return direction.
    #[command(
        after_help = "Examples:\n  mptcp-user path set lte --backup\n  mptcp-user path set dsl --weight 3 --rate 18\n  mptcp-user path set lte --no-backup --priority 0"
    )]
    Path {
        #[command(subcommand)]
        action: PathAction,
    },
    /// Make the TCP sockets unmodified applications open MPTCP sockets, by
    /// cgroup or for the whole host (a BPF program on the kernel's
    /// update_socket_protocol, Linux 6.6+; unlike `mptcpize run`, no
    /// LD_PRELOAD, so static and Go programs too). It stays attached with
    /// no process running, until `mptcpify off`.
    #[command(
        after_help = "Examples:\n  mptcp-user mptcpify on --cgroup /sys/fs/cgroup/system.slice/nginx.service\n  mptcp-user mptcpify on                     the whole host\n  mptcp-user mptcpify show\n  mptcp-user mptcpify off"
    )]
    Mptcpify {
        #[command(subcommand)]
        action: MptcpifyAction,
    },
    /// Work with config files.
    #[command(
        after_help = "Examples:\n  mptcp-user config check /etc/mptcp-ebpf/client.toml\n  mptcp-user config reference > CONFIG.md"
    )]
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish,
    /// powershell), e.g. `mptcp-user completions bash >
    /// /etc/bash_completion.d/mptcp-user`.
    #[command(
        after_help = "Examples:\n  mptcp-user completions bash > /etc/bash_completion.d/mptcp-user\n  mptcp-user completions zsh > \"${fpath[1]}/_mptcp-user\"\n  mptcp-user completions fish > ~/.config/fish/completions/mptcp-user.fish"
    )]
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Check a config file as `up` would (its key files read too), without
    /// starting anything: prints what it configures, or the first problem.
    #[command(
        after_help = "Examples:\n  mptcp-user config check /etc/mptcp-ebpf/client.toml\n  for f in /etc/mptcp-ebpf/*.toml; do mptcp-user config check \"$f\"; done"
    )]
    Check {
        /// The TOML config file.
        file: PathBuf,
    },
    /// Print the config file reference (every table and field, its type,
    /// default and meaning) in Markdown: what CONFIG.md holds.
    #[command(after_help = "Examples:\n  mptcp-user config reference | less")]
    Reference,
}

/// `mptcp-user --help`'s examples: the commands as an operator meets them.
const EXAMPLES: &str = "\
Examples:
  mptcp-user genkey /etc/mptcp-ebpf/key              a key for both ends (copy it over)
  mptcp-user config check /etc/mptcp-ebpf/client.toml
  mptcp-user config reference                        every config field, its default and unit
  mptcp-user up --config /etc/mptcp-ebpf/client.toml
  mptcp-user up --mode mptcp --role client --path eth1=192.168.1.1 --path wwan0
  mptcp-user status --watch                          live view (Ctrl-C to stop)
  mptcp-user policy set active-backup                switch at runtime
  mptcp-user path set lte --backup                   a path used only when no other is up
  mptcp-user mptcpify on --cgroup /sys/fs/cgroup/system.slice/app.service
  mptcp-user down                                    remove everything
  mptcp-user completions bash > /etc/bash_completion.d/mptcp-user";

#[derive(Subcommand)]
enum MptcpifyAction {
    /// List cgroups: the processes in them and below them get MPTCP from
    /// their next socket(2). Without --cgroup, the whole host. Attaches the
    /// program if it is not.
    #[command(
        after_help = "Examples:\n  mptcp-user mptcpify on --cgroup /sys/fs/cgroup/system.slice/nginx.service\n  mptcp-user mptcpify on"
    )]
    On {
        /// A cgroup v2 directory, e.g.
        /// /sys/fs/cgroup/system.slice/nginx.service (repeatable).
        #[arg(long = "cgroup", value_name = "DIR")]
        cgroups: Vec<PathBuf>,
        #[arg(long, default_value = "default")]
        instance: String,
    },
    /// Unlist cgroups. Without --cgroup, detach the program: no socket is
    /// changed any more.
    #[command(
        after_help = "Examples:\n  mptcp-user mptcpify off --cgroup /sys/fs/cgroup/system.slice/nginx.service\n  mptcp-user mptcpify off                    detach: no socket is changed any more"
    )]
    Off {
        /// A listed cgroup v2 directory (repeatable).
        #[arg(long = "cgroup", value_name = "DIR")]
        cgroups: Vec<PathBuf>,
        #[arg(long, default_value = "default")]
        instance: String,
    },
    /// The listed cgroups.
    #[command(after_help = "Examples:\n  mptcp-user mptcpify show")]
    Show {
        #[arg(long, default_value = "default")]
        instance: String,
    },
}

#[derive(Subcommand)]
enum PathAction {
    /// Set a path's priority, weight, rate or backup flag.
    #[command(
        after_help = "Examples:\n  mptcp-user path set lte --backup\n  mptcp-user path set dsl --weight 3 --rate 18\n  mptcp-user path set wwan0 --rate 0          estimate its rate again"
    )]
    Set {
        /// The path's name or interface.
        path: String,
        /// Lower is preferred (0 = primary).
        #[arg(long)]
        priority: Option<u32>,
        /// Share under the weighted policy (0 = by rate).
        #[arg(long)]
        weight: Option<u32>,
        /// Capacity hint in Mbit/s, the line rate (0: estimate it from the
        /// peer's feedback, as without `rate_mbit` in the config).
        #[arg(long)]
        rate: Option<f64>,
        /// Use the path only when no regular path is up.
        #[arg(long, conflicts_with = "no_backup")]
        backup: bool,
        /// Make the path a regular one again.
        #[arg(long)]
        no_backup: bool,
        #[arg(long, default_value = "default")]
        instance: String,
    },
}

#[derive(Subcommand)]
enum PolicyAction {
    /// Each class and its policy.
    #[command(after_help = "Examples:\n  mptcp-user policy show\n  mptcp-user policy show --instance van")]
    Show {
        #[arg(long, default_value = "default")]
        instance: String,
    },
    /// Switch a class's policy; the next packet follows it.
    #[command(
        after_help = "Examples:\n  mptcp-user policy set active-backup\n  mptcp-user policy set earliest-arrival --class video\n  mptcp-user policy set flowlet --base weighted"
    )]
    Set {
        /// The scheduling policy.
        #[arg(value_parser = policy_names())]
        policy: PolicyName,
        /// The class to switch (its name in the config; default: the default class).
        #[arg(long, default_value = mptcp_user::classes::DEFAULT_CLASS_NAME)]
        class: String,
        /// flowlet only: the policy that places flows when they may move.
        #[arg(long, value_parser = policy_names())]
        base: Option<PolicyName>,
        #[arg(long, default_value = "default")]
        instance: String,
    },
}

#[derive(clap::Args)]
struct UpArgs {
    /// TOML configuration file; flags below override its values.
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[arg(long, value_enum)]
    role: Option<Role>,
    /// bond: our tunnel, scheduled per packet (default); mptcp: the
    /// kernel's own Multipath TCP with any MPTCP peer, its subflows managed.
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    #[arg(long)]
    instance: Option<String>,
    /// Serve Prometheus metrics on http://ADDR/metrics, e.g. 127.0.0.1:9477.
    #[arg(long, value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
    /// The file holding the key both ends share (`mptcp-user genkey FILE`
    /// makes one; it must be readable by its owner only).
    #[arg(long)]
    key_file: Option<PathBuf>,
    #[arg(long)]
    port: Option<u16>,
    /// The default class's policy (auto when unset).
    #[arg(long, value_parser = policy_names())]
    policy: Option<PolicyName>,
    #[arg(long)]
    bond_name: Option<String>,
    /// Address of the bond device (repeatable), e.g. 10.99.0.2/32.
    #[arg(long = "bond-address")]
    bond_addresses: Vec<IpNet>,
    /// Prefix routed into the bond (repeatable).
    #[arg(long = "route")]
    routes: Vec<IpNet>,
    /// An uplink (repeatable): IFACE=REMOTE on a bond client, IFACE on a
    /// concentrator; IFACE[=GATEWAY] in mode mptcp.
    #[arg(long = "path")]
    paths: Vec<String>,
    /// Probe interval in milliseconds.
    #[arg(long)]
    probe_interval_ms: Option<u64>,
    /// Concentrator: remove a connection whose client is silent on every subflow this long (seconds).
    #[arg(long)]
    collect_after_s: Option<u64>,
    /// A client gives up if no path reaches the concentrator within this many seconds.
    #[arg(long, default_value_t = 10)]
    connect_timeout: u64,
}

fn build_config(a: &UpArgs) -> Result<Config> {
    let mut cfg = match (&a.config, a.role) {
        (Some(f), _) => Config::from_file(f)?,
        (None, Some(r)) => Config::new(r),
        (None, None) => anyhow::bail!("give --config FILE or at least --role (client|concentrator)"),
    };
    if let Some(r) = a.role {
        cfg.role = r;
    }
    if let Some(m) = a.mode {
        cfg.mode = m;
    }
    if let Some(v) = &a.instance {
        cfg.instance = v.clone();
    }
    if let Some(v) = a.http {
        cfg.http = Some(v);
    }
    if let Some(v) = &a.key_file {
        cfg.key_file = Some(v.clone());
    }
    if let Some(v) = a.port {
        cfg.port = v;
    }
    if let Some(v) = a.policy {
        cfg.policy = v;
    }
    if let Some(v) = &a.bond_name {
        cfg.bond.name = v.clone();
    }
    cfg.bond.addresses.extend(a.bond_addresses.iter().copied());
    cfg.bond.routes.extend(a.routes.iter().copied());
    for p in &a.paths {
        let mut path = config::parse_path_flag(p)?;
        if cfg.mode == Mode::Mptcp {
            // A native path's one address is its next hop.
            path.gateway = path.remote.take();
        }
        cfg.paths.push(path);
    }
    if let Some(v) = a.probe_interval_ms {
        cfg.probe.interval_ms = v;
    }
    if let Some(v) = a.collect_after_s {
        cfg.probe.collect_after_s = v;
    }
    Ok(cfg)
}

/// A policy's name, checked and listed (in `--help`) from `Policy::ALL`.
#[derive(Clone)]
struct PolicyArg;

impl clap::builder::TypedValueParser for PolicyArg {
    type Value = PolicyName;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<PolicyName, clap::Error> {
        let s = value.to_string_lossy();
        match mptcp_common::Policy::from_name(&s) {
            Some(p) => Ok(PolicyName(p)),
            None => {
                let all: Vec<&str> = mptcp_common::Policy::ALL.iter().map(|p| p.name()).collect();
                let msg = format!("unknown policy {s:?}; the policies are {}\n", all.join(", "));
                Err(clap::Error::raw(clap::error::ErrorKind::InvalidValue, msg))
            }
        }
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(mptcp_common::Policy::ALL.iter().map(|p| clap::builder::PossibleValue::new(p.name()))))
    }
}

fn policy_names() -> PolicyArg {
    PolicyArg
}

/// Send a request to the instance's controller; print what it said.
fn ask(instance: &str, req: Request) -> Result<Response> {
    Ok(ctl::call(instance, &req)?)
}

/// The operator's filter, the netlink libraries held to errors unless it names them.
fn log_filter(filter: &str) -> String {
    if filter.contains("netlink") {
        filter.to_string()
    } else {
        format!("{filter},netlink_packet_route=error,netlink_proto=error")
    }
}

fn main() {
    let cli = Cli::parse();
    let filter = match tracing_subscriber::EnvFilter::try_new(log_filter(&cli.log)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("mptcp-user: error: --log {:?}: {e}", cli.log);
            std::process::exit(2);
        }
    };
    let log = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        // Colours only where someone reads them: not in the journal or a file.
        LogFormat::Text => log.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => log.json().init(),
    }
    if let Err(e) = real_main(cli) {
        eprintln!("mptcp-user: error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main(cli: Cli) -> Result<()> {
    // Enter the namespace before any thread exists, so the runtime's threads inherit it.
    if let Some(ns) = &cli.netns {
        mptcp_user::netns::enter(ns)?;
    }
    match cli.command {
        Command::Up(a) => {
            let cfg = build_config(&a)?;
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            rt.block_on(run::up(
                cfg,
                run::UpOptions { connect_timeout: Duration::from_secs(a.connect_timeout), netns: cli.netns.clone() },
            ))
        }
        Command::Down { instance } => run::down(&instance),
        Command::Genkey { file } => {
            let key = mptcp_user::key::Key::generate();
            match file {
                Some(f) => key.write_new_file(&f),
                None => {
                    println!("{}", &*key.to_hex());
                    Ok(())
                }
            }
        }
        Command::Status { instance, json, watch: true, interval } => {
            mptcp_user::watch::run(&instance, Duration::from_secs_f64(interval), json)
        }
        Command::Status { instance, json, watch: false, .. } => {
            let s = status::query(&instance)?;
            if json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                status::print_table(&s);
            }
            Ok(())
        }
        Command::Path { action: PathAction::Set { path, priority, weight, rate, backup, no_backup, instance } } => {
            let change = ctl::PathChange {
                path,
                priority,
                weight,
                rate_mbit: rate,
                backup: if backup {
                    Some(true)
                } else if no_backup {
                    Some(false)
                } else {
                    None
                },
            };
            change.validate()?;
            print_answer(ask(&instance, Request::PathSet(change))?);
            Ok(())
        }
        Command::Mptcpify { action } => mptcpify(action),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "mptcp-user", &mut std::io::stdout());
            Ok(())
        }
        Command::Config { action: ConfigAction::Check { file } } => {
            let cfg = Config::from_file(&file)?;
            cfg.validate().with_context(|| format!("config file {}", file.display()))?;
            println!("{}: ok ({})", file.display(), cfg.summary());
            Ok(())
        }
        Command::Config { action: ConfigAction::Reference } => {
            print!("{}", mptcp_user::config_reference::markdown());
            Ok(())
        }
        Command::Policy { action } => match action {
            PolicyAction::Show { instance } => {
                print_answer(ask(&instance, Request::PolicyShow)?);
                Ok(())
            }
            PolicyAction::Set { policy, class, base, instance } => {
                // Refuse a bad name here, before asking anyone.
                mptcp_user::classes::class_policy(policy.0, base.map(|b| b.0))?;
                print_answer(ask(&instance, Request::PolicySet(ctl::PolicyChoice { class, policy, base, now: None }))?);
                Ok(())
            }
        },
    }
}

fn mptcpify(action: MptcpifyAction) -> Result<()> {
    use mptcp_user::native::mptcpify::{cgroup2_mount, cgroup_path, Cgroup, Mptcpify, ROOT_CGROUP_ID};
    let describe = |id: u64, path: Option<PathBuf>| match (id, path) {
        (ROOT_CGROUP_ID, _) => "the whole host".to_string(),
        (_, Some(p)) => p.display().to_string(),
        (_, None) => format!("cgroup {id} (removed since)"),
    };
    match action {
        MptcpifyAction::On { cgroups, instance } => {
            // Every cgroup checked before anything is attached.
            let cgroups = if cgroups.is_empty() {
                vec![Cgroup { id: ROOT_CGROUP_ID, path: cgroup2_mount().unwrap_or_else(|| "/".into()) }]
            } else {
                cgroups.iter().map(|p| Cgroup::at(p)).collect::<Result<Vec<_>>>()?
            };
            mptcp_user::lifecycle::preflight()?;
            let mut m = Mptcpify::open_or_attach(&instance)?;
            for c in &cgroups {
                m.add(c)?;
                println!(
                    "mptcpify: {}: TCP sockets opened from now on are MPTCP",
                    describe(c.id, Some(c.path.clone()))
                );
            }
            Ok(())
        }
        MptcpifyAction::Off { cgroups, instance } if cgroups.is_empty() => {
            if Mptcpify::detach(&instance)? {
                println!("mptcpify: detached");
            } else {
                println!("mptcpify: was not attached (instance {instance})");
            }
            Ok(())
        }
        MptcpifyAction::Off { cgroups, instance } => {
            let cgroups = cgroups.iter().map(|p| Cgroup::at(p)).collect::<Result<Vec<_>>>()?;
            let mut m = Mptcpify::open(&instance)?
                .ok_or_else(|| anyhow::anyhow!("mptcpify is not attached (instance {instance})"))?;
            for c in &cgroups {
                if m.remove(c.id)? {
                    println!("mptcpify: {}: TCP sockets opened from now on are TCP", c.path.display());
                } else {
                    println!("mptcpify: {} was not listed", c.path.display());
                }
            }
            Ok(())
        }
        MptcpifyAction::Show { instance } => {
            match Mptcpify::open(&instance)? {
                None => println!("mptcpify: not attached (instance {instance})"),
                Some(m) => {
                    let ids = m.listed()?;
                    if ids.is_empty() {
                        println!("mptcpify: attached, no cgroup listed");
                    }
                    for id in ids {
                        println!("mptcpify: {}", describe(id, cgroup_path(id)));
                    }
                }
            }
            Ok(())
        }
    }
}

/// A refresh interval in seconds: 0.1 to 3600.
fn parse_interval(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if (0.1..=3600.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} s: the interval must be between 0.1 and 3600 seconds"))
    }
}

fn print_answer(r: Response) {
    match r {
        Response::Ok(line) => println!("{line}"),
        Response::Policies(all) => {
            for c in all {
                match (c.base, c.now) {
                    (Some(b), _) => println!("{}: {} (base {b})", c.class, c.policy),
                    (None, Some(now)) => println!("{}: {} (now {now})", c.class, c.policy),
                    (None, None) => println!("{}: {}", c.class, c.policy),
                }
            }
        }
        Response::Status(s) => status::print_table(&s),
        Response::Error(e) => eprintln!("mptcp-user: error: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command's `--help` ends with examples (the top level too).
    #[test]
    fn every_command_has_examples() {
        fn walk(c: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let name = format!("{path} {}", c.get_name());
            if c.get_subcommands().all(|s| s.get_name() == "help") || !path.is_empty() {
                let help = c.get_after_help().map(|h| h.to_string()).unwrap_or_default();
                if !help.contains("Examples:\n  mptcp-user ") {
                    missing.push(name.clone());
                }
            }
            for sub in c.get_subcommands().filter(|s| s.get_name() != "help") {
                walk(sub, &name, missing);
            }
        }
        let mut missing = Vec::new();
        let top = Cli::command();
        assert!(top.get_after_help().is_some_and(|h| h.to_string().contains("Examples:")));
        for sub in top.get_subcommands().filter(|s| s.get_name() != "help") {
            walk(sub, "mptcp-user", &mut missing);
        }
        assert!(missing.is_empty(), "commands without examples: {missing:?}");
    }
}
