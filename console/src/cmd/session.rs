//! `deskside session DEVICE` (alias `view`): a remote session (being written).

use super::Context;

/// Arguments of `deskside session`.
#[derive(Debug, clap::Args)]
pub struct SessionArgs {
    /// Device id, id prefix or hostname.
    pub device: String,
}

/// Runs `deskside session`.
pub async fn run(_args: SessionArgs, _ctx: &mut Context<'_>) -> anyhow::Result<()> {
    anyhow::bail!("sessions are not written yet")
}
