pub fn demo(_d: u64, _j: bool) -> anyhow::Result<()> {
    anyhow::bail!("demo: not yet")
}
