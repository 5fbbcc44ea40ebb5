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
        /// The new value (negative numbers are values, not flags: -72)
        #[arg(allow_negative_numbers = true)]
        value: String,
    },
}

/// Runs a `policy` subcommand.
pub async fn run(command: PolicyCommand, ctx: &mut Context<'_>) -> anyhow::Result<()> {
    let request = match command {
        PolicyCommand::Show => ConsoleRequest::ShowPolicy,
        PolicyCommand::Set { key, value } => ConsoleRequest::SetPolicy { key, value },
    };
    let (json, reach) = match super::request(ctx, request).await? {
        ConsoleResponse::Policy(json) => (json, None),
        ConsoleResponse::PolicySet(outcome) => (
            outcome.policy_json,
            Some((outcome.applied, outcome.connected)),
        ),
        other => return Err(unexpected(&other)),
    };
    let policy = Policy::from_json(&json);
    let mut value = serde_json::to_value(&policy)?;
    // Keys the relay keeps beside the diagnostics policy (session_grant,
    // enroll_token_max_uses, enroll_token_max_lifetime) are shown as sent.
    if let (Some(object), Ok(serde_json::Value::Object(sent))) = (
        value.as_object_mut(),
        serde_json::from_slice::<serde_json::Value>(&json),
    ) {
        for (key, field) in sent {
            object.entry(key).or_insert(field);
        }
    }
    if let Some(object) = value.as_object_mut() {
        object.remove("identifier_salt");
    }
    if ctx.out.is_json() {
        let mut record = serde_json::json!({ "type": "policy" });
        if let (Some(record), Some(fields)) = (record.as_object_mut(), value.as_object()) {
            record.extend(fields.clone());
            if let Some((applied, connected)) = reach {
                record.insert("applied".to_owned(), applied.into());
                record.insert("connected".to_owned(), connected.into());
            }
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
    if let Some((applied, connected)) = reach {
        text += &format!("\nApplied on {applied} of {connected} connected agents.");
        if applied < connected {
            text += " The others apply it when they next connect.";
        }
        text += "\n";
    }
    printed(ctx.out.text(&text))
}

#[cfg(test)]
mod tests {
    use crate::cli::Cli;
    use crate::cmd::Command;
    use clap::Parser as _;

    #[test]
    fn negative_values_are_values_not_flags() {
        // As the README shows it: a negative threshold.
        let cli = Cli::try_parse_from([
            "deskside",
            "policy",
            "set",
            "thresholds.wifi_signal_weak_dbm",
            "-72",
        ])
        .unwrap();
        match cli.command {
            Command::Policy(super::PolicyCommand::Set { key, value }) => {
                assert_eq!(key, "thresholds.wifi_signal_weak_dbm");
                assert_eq!(value, "-72");
            }
            other => panic!("parsed as {other:?}"),
        }
        // A real flag after the value still works, and an unknown one is
        // still refused.
        let cli =
            Cli::try_parse_from(["deskside", "policy", "set", "k", "-7.5", "--json"]).unwrap();
        assert!(cli.json);
        assert!(Cli::try_parse_from(["deskside", "policy", "set", "k", "-x"]).is_err());
    }
}
