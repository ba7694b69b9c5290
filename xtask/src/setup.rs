//! Idempotent bootstrap: every step checks first and says what it does.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::run;

/// Debian packages the tests and the demo use.
// fonts-dejavu-core: the one font the benchmark plots are drawn with.
// nftables, conntrack: the NAT routers of the field tests (the kernel's masquerade).
// wireguard-go, wireguard-tools: WireGuard inside the bond (tests/encrypted.rs).
// chromium: the status page loaded in a real headless browser (tests/status_watch.rs).
// systemd: systemd-analyze checks the unit in scripts/ (tests/config_check.rs).
const PACKAGES: &[&str] = &[
    "iproute2",
    "iputils-ping",
    "iperf3",
    "ethtool",
    "tcpdump",
    "bpftool",
    "procps",
    "fonts-dejavu-core",
    "nftables",
    "conntrack",
    "wireguard-go",
    "wireguard-tools",
    "chromium",
    "systemd",
];

fn ok(cmd: &mut Command) -> bool {
    cmd.output().map(|o| o.status.success()).unwrap_or(false)
}

fn stdout(cmd: &mut Command) -> String {
    cmd.output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
}

fn cargo_bin(name: &str) -> PathBuf {
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cargo"));
    home.join("bin").join(name)
}

fn have_nightly() -> bool {
    stdout(Command::new("rustup").args(["toolchain", "list"])).lines().any(|l| l.starts_with("nightly"))
}

fn have_rust_src() -> bool {
    stdout(Command::new("rustup").args(["component", "list", "--toolchain", "nightly", "--installed"]))
        .lines()
        .any(|l| l.starts_with("rust-src"))
}

fn have_bpf_linker() -> bool {
    ok(Command::new(cargo_bin("bpf-linker")).arg("--version")) || ok(Command::new("bpf-linker").arg("--version"))
}

fn missing_packages() -> Vec<&'static str> {
    PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !stdout(Command::new("dpkg-query").args(["-W", "-f=${Status}", p])).contains("install ok installed")
        })
        .collect()
}

/// Run setup only if something is missing (fast path for build/test/demo).
pub fn ensure() -> Result<()> {
    if have_nightly() && have_rust_src() && have_bpf_linker() && missing_packages().is_empty() {
        return Ok(());
    }
    setup()
}

pub fn setup() -> Result<()> {
    if have_nightly() {
        println!("setup: nightly toolchain … present");
    } else {
        println!("setup: nightly toolchain … installing");
        run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))
            .context("could not install the nightly toolchain (rustup toolchain install nightly)")?;
    }
    if have_rust_src() {
        println!("setup: rust-src for nightly … present");
    } else {
        println!("setup: rust-src for nightly … installing");
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
            .context("could not install rust-src (rustup component add rust-src --toolchain nightly)")?;
    }
    if have_bpf_linker() {
        println!("setup: bpf-linker … present");
    } else {
        install_bpf_linker()?;
    }
    let missing = missing_packages();
    if missing.is_empty() {
        println!("setup: Debian packages … present");
    } else {
        println!("setup: Debian packages {} … installing", missing.join(" "));
        run(Command::new("apt-get").args(["update", "-q"])).context("apt-get update failed")?;
        run(Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            // Without recommends: wireguard-tools' would bring a kernel image.
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing))
        .with_context(|| {
            format!("could not install Debian packages: {} (apt-get install {})", missing.join(" "), missing.join(" "))
        })?;
    }
    check_kernel()?;
    println!("setup: done");
    Ok(())
}

/// bpf-linker 0.13 linked against the nightly toolchain's own libLLVM (the
/// Debian LLVM is too old): see ../shared/TOOLCHAIN.md.
fn install_bpf_linker() -> Result<()> {
    println!("setup: bpf-linker … building against the nightly toolchain's LLVM (about a minute)");
    let sysroot =
        stdout(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"])).trim().to_string();
    if sysroot.is_empty() {
        bail!("cannot find the nightly sysroot (rustup run nightly rustc --print sysroot)");
    }
    let lib = PathBuf::from(&sysroot).join("lib");
    let llvm = std::fs::read_dir(&lib)
        .with_context(|| format!("cannot read {}", lib.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so."))
        .with_context(|| format!("no libLLVM.so.* in {}: is the nightly toolchain complete?", lib.display()))?;
    // libLLVM.so.22.1-rust-... -> feature llvm-22
    let major: String = llvm.trim_start_matches("libLLVM.so.").chars().take_while(|c| c.is_ascii_digit()).collect();
    let link = lib.join("libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&llvm, &link).with_context(|| format!("cannot create {}", link.display()))?;
    run(crate::cargo().env("LLVM_PREFIX", &sysroot).args([
        "install",
        "bpf-linker",
        "--version",
        "0.13.0",
        "--locked",
        "--no-default-features",
        "--features",
        &format!("llvm-{major}"),
    ]))
    .context("could not build bpf-linker; by hand: see ../shared/TOOLCHAIN.md, step 2")?;
    Ok(())
}

fn check_kernel() -> Result<()> {
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!("this kernel has no BTF (/sys/kernel/btf/vmlinux); mptcp-ebpf needs CONFIG_DEBUG_INFO_BTF=y");
    }
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if !mounts.lines().any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf")) {
        println!("setup: mounting bpffs at /sys/fs/bpf");
        run(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))
            .context("cannot mount bpffs at /sys/fs/bpf")?;
    }
    println!("setup: kernel BTF and bpffs … present");
    Ok(())
}
