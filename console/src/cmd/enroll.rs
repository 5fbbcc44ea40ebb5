//! `deskside enroll-token create`: tokens that let new devices join.
//!
//! The relay issues the token (relay address, fingerprint and secret in one
//! string); this module asks for it and prints it with the exact command the
//! employee or installer runs. The token is shown only here: the relay keeps
//! only its hash.

use std::time::Duration;

use clap::{Args, Subcommand};
use deskside_protocol::console::{ConsoleRequest, ConsoleResponse, IssuedEnrollToken};
use serde::Serialize;

use super::{printed, unexpected, Context};
use crate::cli::parse_lifetime;
use crate::output::{relative, rfc3339, Printer};

/// `deskside enroll-token …`.
#[derive(Debug, Subcommand)]
pub enum EnrollTokenCommand {
    /// Create an enrollment token for new devices (technician)
    Create(CreateArgs),
}

/// Arguments of `deskside enroll-token create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// How many devices may enroll with this token (at least 1)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub uses: u32,

    /// How long the token stays valid, e.g. 30m, 24h, 7d
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_lifetime)]
    pub expires: Duration,

    /// Device group the enrolled devices join (used by `deskside diag --group`)
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
}

/// Runs an `enroll-token` subcommand.
pub async fn run(command: EnrollTokenCommand, ctx: &mut Context<'_>) -> anyhow::Result<()> {
    let EnrollTokenCommand::Create(args) = command;
    let request = ConsoleRequest::CreateEnrollToken {
        uses: args.uses,
        expires_in_secs: args.expires.as_secs(),
        group: args.group,
    };
    match super::request(ctx, request).await? {
        ConsoleResponse::EnrollToken(issued) => {
            printed(print_created(&mut ctx.out, &issued, ctx.now))
        }
        other => Err(unexpected(&other)),
    }
}

/// The JSON record of a new enrollment token.
#[derive(Debug, Serialize)]
pub struct EnrollTokenRecord {
    /// Always `"enroll_token"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The token text for `deskside-agent enroll`.
    pub token: String,
    /// How many devices may enroll with it.
    pub uses: u32,
    /// Expiry, RFC 3339.
    pub expires_at: String,
}

impl EnrollTokenRecord {
    /// The record of `issued`.
    pub fn new(issued: &IssuedEnrollToken) -> Self {
        Self {
            kind: "enroll_token",
            token: issued.token.clone(),
            uses: issued.uses,
            expires_at: rfc3339(issued.expires_at),
        }
    }
}

/// The human text for a new enrollment token.
pub fn created_text(issued: &IssuedEnrollToken, now: i64) -> String {
    let devices = if issued.uses == 1 {
        "1 device".to_owned()
    } else {
        format!("{} devices", issued.uses)
    };
    format!(
        "Enrollment token for {devices}, valid until {} ({}):\n\n  {token}\n\n\
         On the employee's device, run:\n\n  sudo deskside-agent enroll {token}\n",
        rfc3339(issued.expires_at),
        relative(now, issued.expires_at),
        token = issued.token,
    )
}

fn print_created(
    out: &mut Printer<'_>,
    issued: &IssuedEnrollToken,
    now: i64,
) -> std::io::Result<()> {
    if out.is_json() {
        out.json(&EnrollTokenRecord::new(issued))
    } else {
        out.text(&created_text(issued, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    use crate::cli::Cli;
    use crate::cmd::Command;

    const NOW: i64 = 1_700_000_000;

    fn issued(uses: u32) -> IssuedEnrollToken {
        IssuedEnrollToken {
            token: "dse1_abc".into(),
            uses,
            expires_at: NOW + 86_400,
        }
    }

    fn create_args(extra: &[&str]) -> Result<CreateArgs, clap::Error> {
        let args = ["deskside", "enroll-token", "create"].iter().chain(extra);
        let cli = Cli::try_parse_from(args)?;
        let Command::EnrollToken(EnrollTokenCommand::Create(args)) = cli.command else {
            panic!("not enroll-token create")
        };
        Ok(args)
    }

    #[test]
    fn defaults_are_one_use_for_a_day() {
        let args = create_args(&[]).unwrap();
        assert_eq!((args.uses, args.expires), (1, Duration::from_secs(86_400)));
        let args = create_args(&["--uses", "5", "--expires", "7d"]).unwrap();
        assert_eq!(
            (args.uses, args.expires),
            (5, Duration::from_secs(7 * 86_400))
        );
    }

    #[test]
    fn zero_uses_and_bad_durations_are_usage_errors() {
        for extra in [
            &["--uses", "0"][..],
            &["--uses", "-1"],
            &["--uses", "many"],
            &["--expires", "1 fortnight"],
        ] {
            let error = create_args(extra).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{extra:?}");
        }
    }

    #[test]
    fn json_record_has_the_documented_keys() {
        let value = serde_json::to_value(EnrollTokenRecord::new(&issued(3))).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "type": "enroll_token",
                "token": "dse1_abc",
                "uses": 3,
                "expires_at": "2023-11-15T22:13:20Z",
            })
        );
    }

    #[test]
    fn human_text_gives_the_command_to_run() {
        let text = created_text(&issued(1), NOW);
        assert!(
            text.starts_with(
                "Enrollment token for 1 device, valid until 2023-11-15T22:13:20Z (in 1d):"
            ),
            "{text}"
        );
        assert!(text.contains("\n  dse1_abc\n"), "{text}");
        assert!(
            text.contains("\n  sudo deskside-agent enroll dse1_abc\n"),
            "{text}"
        );
        assert!(created_text(&issued(4), NOW).contains("for 4 devices"));
    }
}
