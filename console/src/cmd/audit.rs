//! `deskside audit`: the audit log (being written).

use clap::Subcommand;

use super::Context;

/// `deskside audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit rows, newest first.
    List,
}

/// Runs an `audit` subcommand.
pub async fn run(_command: AuditCommand, _ctx: &mut Context<'_>) -> anyhow::Result<()> {
    anyhow::bail!("audit list is not written yet")
}
