//! TEMP
use super::cli::BenchArgs;
/// TEMP
pub async fn run(_args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("TEMP")
}
