//! Entering a named network namespace (`ip netns add NAME`) — the network
//! namespace only: the mount namespace, and so the host's bpffs with our
//! pins, stays as it is (unlike `ip netns exec`, which remounts /sys).

use anyhow::{Context, Result};
use nix::sched::{setns, CloneFlags};

/// Move the calling thread into `/run/netns/<name>`. Threads created
/// afterwards inherit it, so call this before starting the runtime.
pub fn enter(name: &str) -> Result<()> {
    let path = if name.contains('/') { name.to_string() } else { format!("/run/netns/{name}") };
    let f = std::fs::File::open(&path).with_context(|| format!("network namespace {name} not found ({path})"))?;
    setns(&f, CloneFlags::CLONE_NEWNET).with_context(|| format!("cannot enter network namespace {name}"))?;
    Ok(())
}

/// Run `work` on a thread of its own inside the named network namespace
/// (or this one, with `None`), on a runtime of its own: this process stays
/// where it is. For `down`, which removes what a controller left in its
/// namespace.
pub fn run_in<T: Send + 'static, F: std::future::Future<Output = Result<T>>>(
    netns: Option<String>,
    what: &str,
    work: impl FnOnce() -> F + Send + 'static,
) -> Result<T> {
    std::thread::spawn(move || -> Result<T> {
        if let Some(ns) = netns {
            enter(&ns)?;
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(work())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the thread for {what} panicked"))?
}
