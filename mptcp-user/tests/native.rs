//! Native MPTCP mode on the kernel's own Multipath TCP, in namespaces. So
//! far: the path manager's endpoints and limits written and read back over
//! generic netlink, as `ip mptcp` shows them. Run as root.

use anyhow::Result;
use mptcp_testbed::{unique_prefix, Netns};
use mptcp_user::native::pm::{Endpoint, EndpointFlags, Limits, PathManager};

/// Run `f` with a path manager opened in `ns`, on a runtime of its own.
fn in_ns<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce(PathManager) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>>>> + Send + 'static,
) -> Result<T> {
    ns.run(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async move { f(PathManager::open()?).await })
    })
}

#[test]
fn endpoints_and_limits_are_written_and_read_back() -> Result<()> {
    let ns = Netns::new(&format!("{}pm", unique_prefix()))?;
    ns.sh("sysctl -qw net.mptcp.enabled=1 && ip link add pmv0 type veth peer name pmv1 && ip link set pmv0 up")?;
    let ifindex: u32 = ns.sh("cat /sys/class/net/pmv0/ifindex")?.trim().parse()?;
    let client_path = Endpoint {
        id: 1,
        addr: "10.9.0.1".parse()?,
        ifindex: Some(ifindex),
        flags: EndpointFlags { subflow: true, ..Default::default() },
    };
    let announced = Endpoint {
        id: 2,
        addr: "fd09::1".parse()?,
        ifindex: None,
        flags: EndpointFlags { signal: true, backup: true, ..Default::default() },
    };
    let (a, b) = (client_path.clone(), announced.clone());
    let (seen, limits) = in_ns(&ns, move |mut pm| {
        Box::pin(async move {
            pm.flush().await?;
            pm.set_limits(Limits { subflows: 2, add_addr_accepted: 3 }).await?;
            pm.add_endpoint(&a).await?;
            pm.add_endpoint(&b).await?;
            Ok((pm.endpoints().await?, pm.limits().await?))
        })
    })?;
    assert_eq!(seen, vec![client_path.clone(), announced.clone()]);
    assert_eq!(limits, Limits { subflows: 2, add_addr_accepted: 3 });
    let shown = ns.sh("ip mptcp endpoint show; ip mptcp limits show")?;
    for line in ["10.9.0.1 id 1 subflow dev pmv0", "fd09::1 id 2 signal backup", "add_addr_accepted 3 subflows 2"] {
        assert!(shown.contains(line), "`ip mptcp` does not show {line:?}:\n{shown}");
    }

    // Backup on and off; refusals name what was refused; removal and flush.
    let errors = in_ns(&ns, move |mut pm| {
        Box::pin(async move {
            pm.set_backup(1, true).await?;
            let backed = pm.endpoints().await?[0].flags.backup;
            pm.set_backup(1, false).await?;
            let unbacked = !pm.endpoints().await?[0].flags.backup;
            let again = pm.add_endpoint(&client_path).await.map_err(|e| format!("{e:#}"));
            let over = pm.set_limits(Limits { subflows: 9, add_addr_accepted: 0 }).await.map_err(|e| format!("{e:#}"));
            pm.remove_endpoint(2).await?;
            let gone = pm.endpoints().await?.iter().all(|e| e.id != 2);
            let twice = pm.remove_endpoint(2).await.map_err(|e| format!("{e:#}"));
            pm.flush().await?;
            let none = pm.endpoints().await?.is_empty();
            Ok((backed && unbacked && gone && none, again, over, twice))
        })
    })?;
    let (changed, again, over, twice) = errors;
    assert!(changed, "backup flag, removal or flush did not take");
    assert!(again.as_ref().is_err_and(|e| e.contains("endpoint 1")), "adding id 1 twice: {again:?}");
    assert!(over.as_ref().is_err_and(|e| e.contains("at most 8")), "limits above the kernel's: {over:?}");
    assert!(twice.as_ref().is_err_and(|e| e.contains("endpoint 2")), "removing id 2 twice: {twice:?}");
    assert_eq!(ns.sh("ip mptcp endpoint show")?.trim(), "", "flushed");
    Ok(())
}
