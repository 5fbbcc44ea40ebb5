//! `deskside policy show|set`: the organisation's diagnostics policy (what
//! agents may report, whether collection needs the employee's approval, how
//! long snapshots are kept, threshold overrides).

use clap::Subcommand;
use deskside_diag::policy::{Policy, SETTABLE_KEYS};
use deskside_protocol::console::{ConsoleRequest, ConsoleResponse};

use super::{printed, unexpected, Context};

/// `deskside policy …`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show the policy (technician)
    Show,
    /// Change one key (admin)
    #[command(after_help = SETTABLE_KEYS)]
    Set {
        /// The key, e.g. diagnostics_consent or thresholds.wifi_signal_weak_dbm
        key: String,
        /// The new value
        value: String,
    },
}

/// Runs a `policy` subcommand.
pub async fn run(command: PolicyCommand, ctx: &mut Context<'_>) -> anyhow::Result<()> {
    let request = match command {
        PolicyCommand::Show => ConsoleRequest::ShowPolicy,
        PolicyCommand::Set { key, value } => ConsoleRequest::SetPolicy { key, value },
    };
    match super::request(ctx, request).await? {
        ConsoleResponse::Policy(json) => {
            let policy = Policy::from_json(&json);
            let mut value = serde_json::to_value(&policy)?;
            if let Some(object) = value.as_object_mut() {
                object.remove("identifier_salt");
            }
            if ctx.out.is_json() {
                let mut record = serde_json::json!({ "type": "policy" });
                if let (Some(record), Some(fields)) = (record.as_object_mut(), value.as_object()) {
                    record.extend(fields.clone());
                }
                return printed(ctx.out.json(&record));
            }
            let mut text = String::new();
            for (key, value) in value.as_object().into_iter().flatten() {
                if key == "thresholds" {
                    continue;
                }
                text += &format!(
                    "{key:<27} {}\n",
                    value
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| value.to_string())
                );
            }
            if policy.thresholds.is_empty() {
                text += "thresholds                  (defaults)\n";
            }
            for (name, value) in &policy.thresholds {
                text += &format!("thresholds.{name:<16} {value}\n");
            }
            printed(ctx.out.text(&text))
        }
        other => Err(unexpected(&other)),
    }
}
