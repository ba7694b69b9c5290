//! The docs stay true to the code where the code can say so: every drop
//! reason the data path counts is explained in the README's troubleshooting
//! table, and CONFIG.md is the config types' reference as generated.

use mptcp_common::DropReason;

/// The README's section that starts at `heading`, up to the next heading of
/// the same or a higher level.
fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    let start = readme.find(heading).unwrap_or_else(|| panic!("README has no {heading:?}"));
    let rest = &readme[start + heading.len()..];
    let end = rest.find("\n## ").into_iter().chain(rest.find("\n### ")).min().unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn every_drop_reason_is_in_the_troubleshooting_table() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let table = section(&readme, "### Troubleshooting: drop reasons");
    for r in DropReason::ALL {
        let row = format!("| `{}` |", r.name());
        assert!(table.contains(&row), "the troubleshooting table has no row for {}", r.name());
    }
    let rows = table.lines().filter(|l| l.starts_with("| `")).count();
    assert_eq!(rows, DropReason::ALL.len(), "a row for a reason the code does not have");
}

/// CONFIG.md is what `mptcp-user config reference` prints: generated from
/// the config types, it cannot drift from what `up` reads.
#[test]
fn the_config_reference_is_generated_from_the_config_types() {
    let file = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../CONFIG.md")).unwrap();
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_mptcp-user")).args(["config", "reference"]).output().unwrap();
    assert!(out.status.success());
    assert!(
        file == String::from_utf8_lossy(&out.stdout),
        "CONFIG.md is stale: run `mptcp-user config reference > CONFIG.md`"
    );
}
