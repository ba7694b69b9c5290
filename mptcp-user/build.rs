//! Builds the kernel programs (mptcp-ebpf) with the nightly toolchain and
//! bpf-linker; the object lands in OUT_DIR/mptcp-ebpf and is embedded by
//! `src/object.rs`. `cargo xtask setup` installs what this needs.
fn main() -> anyhow::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../mptcp-ebpf");
    println!("cargo:rerun-if-changed=../mptcp-common/src");
    // aya-build relays every line the nested cargo prints on stderr as a
    // `cargo:warning`, so its progress ("Compiling core ...") would look like
    // problems. Quiet, it prints only real diagnostics, which still show.
    std::env::set_var("CARGO_TERM_QUIET", "true");
    aya_build::build_ebpf(
        [aya_build::Package { name: "mptcp-ebpf", root_dir: root, ..Default::default() }],
        aya_build::Toolchain::default(),
    )
}
