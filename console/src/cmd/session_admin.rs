//! `deskside session list|end`: the organisation's open sessions, for
//! administrators. `end` stops the relay forwarding a session's packets and
//! writes its `session.end` row naming the administrator.
//!
//! Opening a session (`deskside session DEVICE`) lives in `session.rs`;
//! this module only asks the relay and prints.

use clap::{Args, Subcommand};
use deskside_protocol::console::{ConsoleRequest, ConsoleResponse, SessionInfo};
use deskside_protocol::SessionId;
use serde::Serialize;

use super::{printed, unexpected, Context};
use crate::exit::UsageError;
use crate::output::{printable, relative, rfc3339, rfc3339_opt, Column, Printer, Table};

/// `deskside session list|end` (admin).
#[derive(Debug, Subcommand)]
pub enum SessionAdminCommand {
    /// List the organisation's open sessions (admin)
    List,
    /// End an open session of any technician (admin); audited with your name
    End(EndArgs),
}

/// Arguments of `deskside session end`.
#[derive(Debug, Args)]
pub struct EndArgs {
    /// The session id (16 hex digits), as printed by `deskside session list`
    #[arg(value_name = "ID")]
    pub id: String,
}

/// Parses a session id as printed: 16 hex digits (a leading `0x` allowed).
pub fn parse_session_id(text: &str) -> Result<SessionId, String> {
    text.parse::<SessionId>().map_err(|_| {
            format!(
                "\"{text}\" is not a session id: write the 16 hex digits `deskside session list` prints"
            )
        })
}

/// Runs a `session list|end` subcommand.
pub async fn run(command: SessionAdminCommand, ctx: &mut Context<'_>) -> anyhow::Result<()> {
    match command {
        SessionAdminCommand::List => {
            match super::request(ctx, ConsoleRequest::ListSessions).await? {
                ConsoleResponse::Sessions(sessions) => {
                    printed(print_list(&mut ctx.out, &sessions, ctx.now))
                }
                other => Err(unexpected(&other)),
            }
        }
        SessionAdminCommand::End(args) => {
            let session_id = parse_session_id(&args.id)
                .map_err(|message| UsageError::new(message, "deskside session end --help"))?;
            match super::request(ctx, ConsoleRequest::EndAnySession { session_id }).await? {
                ConsoleResponse::Done => printed(print_ended(&mut ctx.out, session_id)),
                other => Err(unexpected(&other)),
            }
        }
    }
}

/// The JSON record of an open session.
#[derive(Debug, Serialize)]
pub struct SessionRecord {
    /// Always `"session"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// 16 hex digits.
    pub session_id: String,
    /// `dev_…`.
    pub device: String,
    /// The device's host name.
    pub hostname: String,
    /// The technician token's id.
    pub technician_id: u64,
    /// The technician's name.
    pub technician: String,
    /// What was asked for.
    pub capabilities: String,
    /// What the employee granted, or `null` while waiting.
    pub granted: Option<String>,
    /// `waiting for consent` or `running`.
    pub state: &'static str,
    /// When it was asked for, RFC 3339.
    pub requested_at: String,
    /// When the employee answered, RFC 3339, or `null`.
    pub consent_at: Option<String>,
}

fn state(session: &SessionInfo) -> &'static str {
    if session.granted.is_some() {
        "running"
    } else {
        "waiting for consent"
    }
}

impl SessionRecord {
    /// The record of `session`.
    pub fn new(session: &SessionInfo) -> Self {
        Self {
            kind: "session",
            session_id: session.session_id.to_string(),
            device: session.device.to_string(),
            hostname: session.hostname.clone(),
            technician_id: session.technician.0,
            technician: session.technician_name.clone(),
            capabilities: session.capabilities.clone(),
            granted: session.granted.clone(),
            state: state(session),
            requested_at: rfc3339(session.requested_at),
            consent_at: rfc3339_opt(session.consent_at),
        }
    }
}

/// The human table of open sessions.
pub fn list_table(sessions: &[SessionInfo], now: i64) -> Table {
    let mut table = Table::new(&[
        Column::new("SESSION"),
        Column::capped("DEVICE", 32),
        Column::capped("TECHNICIAN", 32),
        Column::new("GRANTED"),
        Column::new("STATE"),
        Column::new("STARTED"),
    ]);
    for session in sessions {
        table.row([
            session.session_id.to_string(),
            session.hostname.clone(),
            session.technician_name.clone(),
            session.granted.clone().unwrap_or_else(|| "-".to_owned()),
            state(session).to_owned(),
            relative(now, session.consent_at.unwrap_or(session.requested_at)),
        ]);
    }
    table
}

fn print_list(out: &mut Printer<'_>, sessions: &[SessionInfo], now: i64) -> std::io::Result<()> {
    if out.is_json() {
        return sessions
            .iter()
            .try_for_each(|session| out.json(&SessionRecord::new(session)));
    }
    if sessions.is_empty() {
        return out.text("No open sessions.");
    }
    out.text(&list_table(sessions, now).render())
}

fn print_ended(out: &mut Printer<'_>, session_id: SessionId) -> std::io::Result<()> {
    let id = session_id.to_string();
    if out.is_json() {
        out.json(&serde_json::json!({ "type": "session_ended", "session_id": id }))
    } else {
        out.text(&format!(
            "Ended session {}: the relay no longer carries it, and the audit log names you.",
            printable(&id)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deskside_protocol::{DeviceId, TechnicianId};

    const NOW: i64 = 1_700_000_000;

    fn session(id: u64, granted: Option<&str>) -> SessionInfo {
        SessionInfo {
            session_id: deskside_protocol::SessionId(id),
            device: DeviceId(1),
            hostname: "ana-laptop".to_owned(),
            technician: TechnicianId(2),
            technician_name: "Bob".to_owned(),
            capabilities: "view+control".to_owned(),
            granted: granted.map(str::to_owned),
            requested_at: NOW - 120,
            consent_at: granted.map(|_| NOW - 60),
        }
    }

    #[test]
    fn list_and_end_are_subcommands_and_a_device_still_opens_a_session() {
        use crate::cli::Cli;
        use crate::cmd::Command;
        use clap::Parser as _;
        let parse = |args: &[&str]| {
            Cli::try_parse_from(["deskside", "session"].iter().chain(args)).map(|cli| cli.command)
        };
        let Ok(Command::Session(args)) = parse(&["list", "--json"]) else {
            panic!("session list does not parse")
        };
        assert!(matches!(args.admin, Some(SessionAdminCommand::List)));
        let Ok(Command::Session(args)) = parse(&["end", "00000000000000ab"]) else {
            panic!("session end does not parse")
        };
        assert!(
            matches!(args.admin, Some(SessionAdminCommand::End(ref end)) if end.id == "00000000000000ab")
        );
        let Ok(Command::Session(args)) = parse(&["laptop-42", "--view-only"]) else {
            panic!("session DEVICE does not parse")
        };
        assert_eq!(
            (args.admin.is_none(), args.device.as_deref()),
            (true, Some("laptop-42"))
        );
        assert_eq!(parse(&[]).unwrap_err().exit_code(), 2);
        assert_eq!(parse(&["end"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn session_ids_parse_as_printed() {
        assert_eq!(parse_session_id("00000000000000ff"), Ok(SessionId(255)));
        assert_eq!(parse_session_id("0xff"), Ok(SessionId(255)));
        for bad in ["", "xyz", "00000000000000000001", "-1"] {
            assert!(
                parse_session_id(bad).unwrap_err().contains("16 hex digits"),
                "{bad}"
            );
        }
    }

    #[test]
    fn list_shows_who_and_what() {
        let sessions = [session(0xab, Some("view")), session(0xcd, None)];
        assert_eq!(
            list_table(&sessions, NOW).render(),
            "SESSION           DEVICE      TECHNICIAN  GRANTED  STATE                STARTED\n\
             00000000000000ab  ana-laptop  Bob         view     running              1m ago\n\
             00000000000000cd  ana-laptop  Bob         -        waiting for consent  2m ago\n"
        );
        let value = serde_json::to_value(SessionRecord::new(&sessions[0])).unwrap();
        assert_eq!(value["type"], "session");
        assert_eq!(value["session_id"], "00000000000000ab");
        assert_eq!(value["technician"], "Bob");
        assert_eq!(value["state"], "running");
    }
}
