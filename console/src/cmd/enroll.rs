//! `deskside enroll-token create|list|revoke`: tokens that let new devices
//! join.
//!
//! The relay issues the token (relay address, fingerprint and secret in one
//! string); this module asks for it and prints it with the exact command the
//! employee or installer runs. The token is shown only here: the relay keeps
//! only its hash.

use std::time::Duration;

use clap::{Args, Subcommand};
use deskside_protocol::console::{
    ConsoleRequest, ConsoleResponse, EnrollTokenInfo, IssuedEnrollToken,
};
use serde::Serialize;

use super::{printed, unexpected, Context};
use crate::cli::parse_lifetime;
use crate::output::{printable, relative, rfc3339, rfc3339_opt, Column, Printer, Table};

/// `deskside enroll-token …`.
#[derive(Debug, Subcommand)]
pub enum EnrollTokenCommand {
    /// Create an enrollment token for new devices (technician)
    Create(CreateArgs),
    /// List enrollment tokens: uses left, expiry, group (never the secrets)
    List,
    /// Revoke an enrollment token: no device can enroll with it any more (admin)
    Revoke(RevokeArgs),
}

/// Arguments of `deskside enroll-token revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The token's id, as printed by `deskside enroll-token list`
    #[arg(value_name = "ID")]
    pub id: u64,
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
    let args = match command {
        EnrollTokenCommand::Create(args) => args,
        EnrollTokenCommand::List => {
            return match super::request(ctx, ConsoleRequest::ListEnrollTokens).await? {
                ConsoleResponse::EnrollTokens(tokens) => {
                    printed(print_list(&mut ctx.out, &tokens, ctx.now))
                }
                other => Err(unexpected(&other)),
            }
        }
        EnrollTokenCommand::Revoke(args) => {
            let request = ConsoleRequest::RevokeEnrollToken { id: args.id };
            return match super::request(ctx, request).await? {
                ConsoleResponse::EnrollTokenRevoked(info) => {
                    printed(print_revoked(&mut ctx.out, &info, ctx.now))
                }
                other => Err(unexpected(&other)),
            };
        }
    };
    let group = args.group.clone();
    let request = ConsoleRequest::CreateEnrollToken {
        uses: args.uses,
        expires_in_secs: args.expires.as_secs(),
        group: args.group,
    };
    match super::request(ctx, request).await? {
        ConsoleResponse::EnrollToken(mut issued) => {
            // Devices enrolled with it trust only session keys certified by
            // the organisation key this console knows (`dse2_`).
            crate::org_key::add_to_enroll_token(&ctx.profile_path, &mut issued, ctx.now)?;
            printed(print_created(
                &mut ctx.out,
                &issued,
                group.as_deref(),
                ctx.now,
            ))
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
    /// The group enrolled devices join, or `null`.
    pub group: Option<String>,
}

impl EnrollTokenRecord {
    /// The record of `issued`, whose devices join `group`.
    pub fn new(issued: &IssuedEnrollToken, group: Option<&str>) -> Self {
        Self {
            kind: "enroll_token",
            token: issued.token.clone(),
            uses: issued.uses,
            expires_at: rfc3339(issued.expires_at),
            group: group.map(str::to_owned),
        }
    }
}

/// The human text for a new enrollment token whose devices join `group`.
pub fn created_text(issued: &IssuedEnrollToken, group: Option<&str>, now: i64) -> String {
    let devices = if issued.uses == 1 {
        "1 device".to_owned()
    } else {
        format!("{} devices", issued.uses)
    };
    let group = group.map_or_else(String::new, |group| {
        format!(" joining group \"{}\"", printable(group))
    });
    format!(
        "Enrollment token for {devices}{group}, valid until {} ({}):\n\n  {token}\n\n\
         On the employee's device, run:\n\n  sudo deskside-agent enroll {token}\n",
        rfc3339(issued.expires_at),
        relative(now, issued.expires_at),
        token = issued.token,
    )
}

fn print_created(
    out: &mut Printer<'_>,
    issued: &IssuedEnrollToken,
    group: Option<&str>,
    now: i64,
) -> std::io::Result<()> {
    if out.is_json() {
        out.json(&EnrollTokenRecord::new(issued, group))
    } else {
        out.text(&created_text(issued, group, now))
    }
}

/// `active`, `used up`, `expired` or `revoked` at `now`.
pub fn token_status(info: &EnrollTokenInfo, now: i64) -> &'static str {
    if info.revoked_at.is_some() {
        "revoked"
    } else if info.expires_at <= now {
        "expired"
    } else if info.uses_left == 0 {
        "used up"
    } else {
        "active"
    }
}

/// The JSON record of a listed or revoked enrollment token (never the
/// secret).
#[derive(Debug, Serialize)]
pub struct ListedTokenRecord {
    /// `"enroll_token_info"` or `"enroll_token_revoked"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The token's id.
    pub id: u64,
    /// Enrollments allowed when issued.
    pub uses_total: u32,
    /// Enrollments left.
    pub uses_left: u32,
    /// Issue time, RFC 3339.
    pub created_at: String,
    /// Expiry, RFC 3339.
    pub expires_at: String,
    /// Revocation time, RFC 3339, or `null`.
    pub revoked_at: Option<String>,
    /// The group its devices join, or `null`.
    pub group: Option<String>,
    /// Who issued it, or `null`.
    pub created_by: Option<String>,
    /// `active`, `used up`, `expired` or `revoked`.
    pub status: &'static str,
}

impl ListedTokenRecord {
    /// The record of `info` at `now` with this `type`.
    pub fn new(kind: &'static str, info: &EnrollTokenInfo, now: i64) -> Self {
        Self {
            kind,
            id: info.id,
            uses_total: info.uses_total,
            uses_left: info.uses_left,
            created_at: rfc3339(info.created_at),
            expires_at: rfc3339(info.expires_at),
            revoked_at: rfc3339_opt(info.revoked_at),
            group: info.group.clone(),
            created_by: info.created_by.clone(),
            status: token_status(info, now),
        }
    }
}

/// The human table of enrollment tokens.
pub fn list_table(tokens: &[EnrollTokenInfo], now: i64) -> Table {
    let mut table = Table::new(&[
        Column::new("ID"),
        Column::new("USES LEFT"),
        Column::new("CREATED"),
        Column::new("EXPIRES"),
        Column::new("STATUS"),
        Column::capped("GROUP", 24),
        Column::capped("CREATED BY", 24),
    ]);
    for info in tokens {
        table.row([
            info.id.to_string(),
            format!("{}/{}", info.uses_left, info.uses_total),
            relative(now, info.created_at),
            relative(now, info.expires_at),
            token_status(info, now).to_owned(),
            info.group.clone().unwrap_or_else(|| "-".to_owned()),
            info.created_by.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    table
}

fn print_list(out: &mut Printer<'_>, tokens: &[EnrollTokenInfo], now: i64) -> std::io::Result<()> {
    if out.is_json() {
        return tokens.iter().try_for_each(|info| {
            out.json(&ListedTokenRecord::new("enroll_token_info", info, now))
        });
    }
    if tokens.is_empty() {
        return out
            .text("No enrollment tokens yet. Create one with `deskside enroll-token create`.");
    }
    out.text(&list_table(tokens, now).render())
}

fn print_revoked(out: &mut Printer<'_>, info: &EnrollTokenInfo, now: i64) -> std::io::Result<()> {
    if out.is_json() {
        out.json(&ListedTokenRecord::new("enroll_token_revoked", info, now))
    } else {
        out.text(&format!(
            "Revoked enrollment token {} ({} of {} uses left): no device can enroll with it any more.",
            info.id, info.uses_left, info.uses_total
        ))
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
        let value =
            serde_json::to_value(EnrollTokenRecord::new(&issued(3), Some("paris"))).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "type": "enroll_token",
                "token": "dse1_abc",
                "uses": 3,
                "expires_at": "2023-11-15T22:13:20Z",
                "group": "paris",
            })
        );
    }

    #[test]
    fn human_text_gives_the_command_to_run() {
        let text = created_text(&issued(1), None, NOW);
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
        assert!(created_text(&issued(4), None, NOW).contains("for 4 devices"));
        assert!(created_text(&issued(4), Some("paris"), NOW)
            .starts_with("Enrollment token for 4 devices joining group \"paris\", valid until"));
    }

    fn listed(id: u64, uses_left: u32, revoked: bool) -> EnrollTokenInfo {
        EnrollTokenInfo {
            id,
            uses_total: 5,
            uses_left,
            created_at: NOW - 3_600,
            expires_at: NOW + 86_400,
            revoked_at: revoked.then_some(NOW - 60),
            group: (id == 1).then(|| "paris".to_owned()),
            created_by: Some("Ana".to_owned()),
        }
    }

    #[test]
    fn listed_tokens_show_uses_status_and_group() {
        let tokens = [listed(1, 5, false), listed(2, 0, false), listed(3, 2, true)];
        assert_eq!(
            list_table(&tokens, NOW).render(),
            "ID  USES LEFT  CREATED  EXPIRES  STATUS   GROUP  CREATED BY\n\
             1   5/5        1h ago   in 1d    active   paris  Ana\n\
             2   0/5        1h ago   in 1d    used up  -      Ana\n\
             3   2/5        1h ago   in 1d    revoked  -      Ana\n"
        );
        let value =
            serde_json::to_value(ListedTokenRecord::new("enroll_token_info", &tokens[0], NOW))
                .unwrap();
        assert_eq!(value["status"], "active");
        assert_eq!(value["group"], "paris");
        assert_eq!(value["uses_left"], 5);
        assert!(value.get("token").is_none());
        let mut expired = listed(4, 1, false);
        expired.expires_at = NOW;
        assert_eq!(token_status(&expired, NOW), "expired");
    }

    #[test]
    fn list_and_revoke_parse() {
        let cli =
            Cli::try_parse_from(["deskside", "enroll-token", "revoke", "7", "--json"]).unwrap();
        let Command::EnrollToken(EnrollTokenCommand::Revoke(args)) = cli.command else {
            panic!("not enroll-token revoke")
        };
        assert_eq!(args.id, 7);
        assert!(Cli::try_parse_from(["deskside", "enroll-token", "revoke", "x"]).is_err());
        assert!(matches!(
            Cli::try_parse_from(["deskside", "enroll-token", "list"])
                .unwrap()
                .command,
            Command::EnrollToken(EnrollTokenCommand::List)
        ));
    }
}
