//! `mptcp-user config check`: every example config under scripts/ passes
//! (with its key files made for the test), and a broken one fails naming
//! the cause; and the shell completions. No root needed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};

const BIN: &str = env!("CARGO_BIN_EXE_mptcp-user");

/// A directory of the test's own, removed on Drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("mptcp-config-check-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn check(file: &Path) -> Result<(bool, String)> {
    let out = Command::new(BIN).args(["config", "check"]).arg(file).output()?;
    Ok((
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    ))
}

/// `example` with each `key_file = "…"` pointing at a key made in `dir`.
fn with_test_keys(example: &Path, dir: &Path) -> Result<PathBuf> {
    let text = std::fs::read_to_string(example)?;
    let mut out = String::new();
    for (n, line) in text.lines().enumerate() {
        match line.trim_start().strip_prefix("key_file") {
            Some(rest) if rest.trim_start().starts_with('=') => {
                let key = dir.join(format!("key-{n}"));
                let made = Command::new(BIN).arg("genkey").arg(&key).status()?;
                ensure!(made.success(), "genkey {}", key.display());
                out += &format!("key_file = {:?}\n", key.to_string_lossy());
            }
            _ => {
                out += line;
                out.push('\n');
            }
        }
    }
    let file = dir.join(example.file_name().context("no file name")?);
    std::fs::write(&file, out)?;
    Ok(file)
}

#[test]
fn every_example_config_passes_the_check() -> Result<()> {
    let dir = TempDir::new("examples")?;
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts");
    let mut checked = 0;
    for entry in std::fs::read_dir(&scripts)? {
        let example = entry?.path();
        if example.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let (ok, out) = check(&with_test_keys(&example, &dir.0)?)?;
        ensure!(ok && out.contains(": ok ("), "{} fails the check: {out}", example.display());
        eprintln!("{out}");
        checked += 1;
    }
    ensure!(checked >= 3, "only {checked} example configs found in {}", scripts.display());
    Ok(())
}

#[test]
fn a_broken_config_fails_naming_the_cause() -> Result<()> {
    let dir = TempDir::new("broken")?;
    let cases = [
        ("role = \"client\"\npolicy = \"fastest\"\n", "unknown policy"),
        ("role = \"client\"\nmode = \"mptcp\"\n[[path]]\ninterface = \"eth1\"\nremote = \"192.0.2.1\"\n", "remote"),
        ("role = \"client\"\nkey_file = \"/nonexistent/key\"\n", "/nonexistent/key"),
        ("role = \"client\"\nmode = \"mptcp\"\npolicy = \"weighted\"\n[[path]]\ninterface = \"eth1\"\n", "rate_mbit"),
        ("role = \"client\"\n[[path]\n", "invalid config file"),
        ("role = \"client\"\ncolour = \"blue\"\n", "colour"),
    ];
    for (i, (text, cause)) in cases.iter().enumerate() {
        let file = dir.0.join(format!("broken-{i}.toml"));
        std::fs::write(&file, text)?;
        let (ok, out) = check(&file)?;
        ensure!(!ok && out.contains(cause), "config {text:?} was not refused naming {cause:?}: {out}");
    }
    let (ok, out) = check(&dir.0.join("missing.toml"))?;
    ensure!(!ok && out.contains("cannot read config file"), "a missing file: {out}");
    Ok(())
}

#[test]
fn completions_cover_every_command_and_bash_parses_them() -> Result<()> {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN).args(["completions", shell]).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(out.status.success(), "completions {shell}: {}", String::from_utf8_lossy(&out.stderr));
        // Options without their dashes: fish writes `-l watch`.
        for word in ["up", "status", "mptcpify", "config", "watch", "instance"] {
            ensure!(text.contains(word), "the {shell} completions lack {word}");
        }
        if shell == "bash" {
            let dir = TempDir::new("completions")?;
            let file = dir.0.join("mptcp-user.bash");
            std::fs::write(&file, text.as_bytes())?;
            let syntax = Command::new("bash").arg("-n").arg(&file).output()?;
            ensure!(syntax.status.success(), "bash -n: {}", String::from_utf8_lossy(&syntax.stderr));
        }
    }
    let help = Command::new(BIN).arg("--help").output()?;
    ensure!(String::from_utf8_lossy(&help.stdout).contains("Examples:"), "--help has no examples");
    Ok(())
}

/// The systemd unit in scripts/ is one systemd takes (`systemd-analyze
/// verify`, with ExecStart pointing at this build), and it restarts the
/// controller on failure and stops it with SIGTERM, which leaves the data
/// path forwarding (the crash and restart themselves: tests/controller.rs).
#[test]
fn the_systemd_unit_verifies_and_restarts_on_failure() -> Result<()> {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/mptcp-ebpf@.service"))?;
    for line in ["Restart=on-failure", "KillSignal=SIGTERM", "StateDirectory=mptcp-ebpf"] {
        ensure!(unit.lines().any(|l| l.trim() == line), "the unit lacks {line}");
    }
    let dir = TempDir::new("unit")?;
    let file = dir.0.join("mptcp-ebpf@client.service");
    std::fs::write(&file, unit.replace("/usr/local/bin/mptcp-user", BIN))?;
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&file)
        .output()
        .context("systemd-analyze (Debian's systemd) is needed to check the unit")?;
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    ensure!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
    Ok(())
}
