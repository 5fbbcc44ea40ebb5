//! `deskside audit list`: the organisation's audit log (admin only), newest
//! first: enrollments, tokens, policy changes, and every step of remote
//! sessions (request, consent, end).
//!
//! The relay keeps the log hash-chained and append-only; this command only
//! reads it. Outside text (actors, reasons in details) is made printable
//! before it reaches the terminal.

use clap::{Args, Subcommand};
use deskside_protocol::console::{AuditEntry, ConsoleRequest, ConsoleResponse};
use serde::Serialize;

use super::{printed, unexpected, Context};
use crate::output::{printable, rfc3339, Column, Printer, Table};

/// Most rows one listing may ask for (the relay's limit too).
const MAX_LIMIT: u32 = 10_000;

/// `deskside audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit rows, newest first (admin)
    List(ListArgs),
    /// Check the audit log's hash chain and that it still extends the last
    /// signed head this console kept (admin); exit code 1 and where it
    /// breaks if not
    Verify,
}

/// Arguments of `deskside audit list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only rows about this device (id, id prefix or hostname)
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<String>,

    /// Show at most this many rows (1 to 10000)
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_LIMIT)))]
    pub limit: u32,
}

/// Runs an `audit` subcommand.
pub async fn run(command: AuditCommand, ctx: &mut Context<'_>) -> anyhow::Result<()> {
    let args = match command {
        AuditCommand::List(args) => args,
        AuditCommand::Verify => return super::audit_verify::run(ctx).await,
    };
    let request = ConsoleRequest::AuditList {
        device: args.device.clone(),
        limit: args.limit,
    };
    match super::request(ctx, request).await? {
        ConsoleResponse::Audit(entries) => {
            printed(print_list(&mut ctx.out, &entries, args.device.as_deref()))
        }
        other => Err(unexpected(&other)),
    }
}

/// The JSON record of one audit row.
#[derive(Debug, Serialize)]
pub struct AuditRecord {
    /// Always `"audit"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Row number (increasing with time).
    pub id: i64,
    /// When, RFC 3339.
    pub at: String,
    /// Who: `technician:ID (NAME)`, `device:dev_…` or `system`.
    pub actor: String,
    /// What, e.g. `session.consent`.
    pub action: String,
    /// On what, e.g. `device:dev_…`.
    pub target: String,
    /// The row's details as a JSON object (a string if the relay sent
    /// something that is not JSON).
    pub detail: serde_json::Value,
}

impl AuditRecord {
    /// The record of `entry`.
    pub fn new(entry: &AuditEntry) -> Self {
        Self {
            kind: "audit",
            id: entry.id,
            at: rfc3339(entry.at),
            actor: entry.actor.clone(),
            action: entry.action.clone(),
            target: entry.target.clone(),
            detail: serde_json::from_str(&entry.detail)
                .unwrap_or_else(|_| serde_json::Value::String(entry.detail.clone())),
        }
    }
}

/// The details as one line: `key=value` pairs, strings unquoted.
pub fn detail_text(detail: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(detail) {
        Ok(serde_json::Value::Object(fields)) => fields
            .iter()
            .map(|(key, value)| match value {
                serde_json::Value::String(text) => format!("{key}={text}"),
                other => format!("{key}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => detail.to_owned(),
    }
}

/// The human table of audit rows.
pub fn list_table(entries: &[AuditEntry]) -> Table {
    let mut table = Table::new(&[
        Column::new("TIME"),
        Column::capped("ACTOR", 40),
        Column::new("ACTION"),
        Column::capped("TARGET", 40),
        Column::capped("DETAIL", 100),
    ]);
    for entry in entries {
        table.row([
            rfc3339(entry.at),
            entry.actor.clone(),
            entry.action.clone(),
            entry.target.clone(),
            detail_text(&entry.detail),
        ]);
    }
    table
}

fn print_list(
    out: &mut Printer<'_>,
    entries: &[AuditEntry],
    device: Option<&str>,
) -> std::io::Result<()> {
    if out.is_json() {
        return entries
            .iter()
            .try_for_each(|entry| out.json(&AuditRecord::new(entry)));
    }
    if entries.is_empty() {
        return out.text(&match device {
            Some(device) => format!("No audit rows about {}.", printable(device)),
            None => "No audit rows yet.".to_owned(),
        });
    }
    out.text(&list_table(entries).render())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A test should panic on an unexpected error.
mod tests {
    use super::*;
    use crate::output::Format;

    fn entry(id: i64, action: &str, detail: &str) -> AuditEntry {
        AuditEntry {
            id,
            at: 1_700_000_000,
            actor: "technician:2 (ana)".into(),
            action: action.into(),
            target: "device:dev_0000000000000001".into(),
            detail: detail.into(),
        }
    }

    fn output(format: Format, entries: &[AuditEntry]) -> String {
        let mut buffer = Vec::new();
        print_list(&mut Printer::new(&mut buffer, format), entries, None).unwrap();
        String::from_utf8(buffer).unwrap()
    }

    #[test]
    fn json_lines_have_the_documented_keys() {
        let text = output(
            Format::Json,
            &[
                entry(
                    2,
                    "session.request",
                    r#"{"session_id":"00ff","capabilities":"view"}"#,
                ),
                entry(1, "odd", "not json"),
            ],
        );
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(
            lines[0],
            serde_json::json!({
                "type": "audit",
                "id": 2,
                "at": "2023-11-14T22:13:20Z",
                "actor": "technician:2 (ana)",
                "action": "session.request",
                "target": "device:dev_0000000000000001",
                "detail": {"session_id": "00ff", "capabilities": "view"},
            })
        );
        assert_eq!(lines[1]["detail"], "not json");
    }

    #[test]
    fn the_table_shows_time_actor_action_target_and_detail() {
        let text = output(
            Format::Human,
            &[entry(
                1,
                "session.consent",
                r#"{"granted":null,"outcome":"refused\u001b[31m"}"#,
            )],
        );
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        assert!(header.starts_with("TIME"), "{header}");
        for column in ["ACTOR", "ACTION", "TARGET", "DETAIL"] {
            assert!(header.contains(column), "{header}");
        }
        let row = lines.next().unwrap();
        assert!(row.starts_with("2023-11-14T22:13:20Z"), "{row}");
        assert!(row.contains("session.consent"), "{row}");
        assert!(row.contains("granted=null outcome=refused"), "{row}");
        assert!(
            !row.contains('\u{1b}'),
            "terminal escapes are neutralised: {row:?}"
        );
    }

    #[test]
    fn an_empty_log_says_so() {
        assert_eq!(output(Format::Human, &[]).trim(), "No audit rows yet.");
        assert_eq!(output(Format::Json, &[]), "");
    }
}
