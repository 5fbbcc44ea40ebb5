//! `deskside tokens create|list|revoke`: technician tokens (admin only).
//!
//! A token's secret is printed once, by `create`; `list` and `revoke` never
//! see it (the relay stores only its hash). Status (active, revoked,
//! expired) is computed here against `now`, not stored.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use deskside_protocol::console::{
    ConsoleRequest, ConsoleResponse, IssuedTechnicianToken, TechnicianTokenInfo,
};
use deskside_protocol::{Role, TechnicianId};
use serde::Serialize;

use super::{printed, unexpected, Context};
use crate::cli::parse_lifetime;
use crate::output::{printable, relative, rfc3339, rfc3339_opt, Column, Printer, Table};

/// `deskside tokens …`.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Issue a technician token; its secret is shown only once
    Create(CreateArgs),
    /// List technician tokens (never their secrets)
    List,
    /// Revoke a technician token: it can no longer log in
    Revoke(RevokeArgs),
}

/// Arguments of `deskside tokens create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The technician's name, shown to employees when a session is requested
    #[arg(long, value_name = "NAME", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub name: String,

    /// What the token allows
    #[arg(long, value_enum, value_name = "ROLE")]
    pub role: RoleArg,

    /// How long the token stays valid, e.g. 30m, 24h, 90d [default: never expires]
    #[arg(long, value_name = "DURATION", value_parser = parse_lifetime)]
    pub expires: Option<Duration>,
}

/// Roles as written on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Reads the device list and diagnostics
    Viewer,
    /// Viewer, plus enrollment tokens and remote sessions
    Technician,
    /// Technician, plus technician tokens, device revocation and the audit log
    Admin,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Viewer => Role::Viewer,
            RoleArg::Technician => Role::Technician,
            RoleArg::Admin => Role::Admin,
        }
    }
}

/// Arguments of `deskside tokens revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The token's id or the technician's name, as printed by `deskside tokens list`
    #[arg(value_name = "ID|NAME", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub token: String,
}

/// Which token of `tokens` a `tokens revoke` argument names: an id, else
/// the one active token with that name (names are unique among active
/// tokens; a name that only revoked or expired tokens carry is refused,
/// since there is nothing left to revoke).
pub fn resolve(
    tokens: &[TechnicianTokenInfo],
    wanted: &str,
    now: i64,
) -> Result<TechnicianId, String> {
    if let Ok(id) = wanted.trim().parse::<TechnicianId>() {
        if tokens.iter().any(|info| info.id == id) {
            return Ok(id);
        }
    }
    let key = wanted.trim().to_lowercase();
    let named: Vec<&TechnicianTokenInfo> = tokens
        .iter()
        .filter(|info| info.name.trim().to_lowercase() == key)
        .collect();
    let active: Vec<&&TechnicianTokenInfo> = named
        .iter()
        .filter(|info| status(info, now) == "active")
        .collect();
    match (active.as_slice(), named.as_slice()) {
        ([one], _) => Ok(one.id),
        ([], []) => Err(format!(
            "no technician token has the id or name \"{wanted}\": list them with `deskside tokens list`"
        )),
        ([], _) => Err(format!(
            "the technician token named \"{wanted}\" is already revoked or expired: list them with `deskside tokens list`"
        )),
        (several, _) => Err(format!(
            "several active technician tokens are named \"{wanted}\" (ids {}): revoke one by its id",
            several.iter().map(|info| info.id.to_string()).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Runs a `tokens` subcommand.
pub async fn run(command: TokensCommand, ctx: &mut Context<'_>) -> anyhow::Result<()> {
    let request = match &command {
        TokensCommand::Create(args) => ConsoleRequest::CreateTechnicianToken {
            name: args.name.clone(),
            role: args.role.into(),
            expires_in_secs: args.expires.map(|d| d.as_secs()),
        },
        TokensCommand::List => ConsoleRequest::ListTechnicianTokens,
        TokensCommand::Revoke(args) => {
            // A name is looked up in the list, on the same connection.
            let (_, mut client) = super::connect(ctx).await?;
            let listed = client.request(ConsoleRequest::ListTechnicianTokens).await;
            let id = match listed {
                Ok(ConsoleResponse::TechnicianTokens(tokens)) => {
                    resolve(&tokens, &args.token, ctx.now).map_err(anyhow::Error::msg)
                }
                Ok(other) => Err(unexpected(&other)),
                Err(e) => Err(e.into()),
            };
            let id = match id {
                Ok(id) => id,
                Err(e) => {
                    client.close().await;
                    return Err(e);
                }
            };
            let answer = client
                .request(ConsoleRequest::RevokeTechnicianToken { id })
                .await;
            client.close().await;
            return match answer? {
                ConsoleResponse::TechnicianTokenRevoked(info) => {
                    printed(print_revoked(&mut ctx.out, &info, ctx.now))
                }
                other => Err(unexpected(&other)),
            };
        }
    };
    let response = super::request(ctx, request).await?;
    let now = ctx.now;
    let out = &mut ctx.out;
    match (command, response) {
        (TokensCommand::Create(_), ConsoleResponse::TechnicianToken(mut issued)) => {
            // With the organisation key here, the login string carries a
            // session key made and certified on this computer.
            crate::org_key::certify_issued_token(&ctx.profile_path, &mut issued, now)?;
            printed(print_created(out, &issued, now))
        }
        (TokensCommand::List, ConsoleResponse::TechnicianTokens(tokens)) => {
            printed(print_list(out, &tokens, now))
        }
        (_, other) => Err(unexpected(&other)),
    }
}

/// `active`, `revoked` or `expired` at `now`.
pub fn status(info: &TechnicianTokenInfo, now: i64) -> &'static str {
    if info.revoked_at.is_some() {
        "revoked"
    } else if info.expires_at.is_some_and(|expires| expires <= now) {
        "expired"
    } else {
        "active"
    }
}

/// The JSON record of a newly issued token (the only one with the secret).
#[derive(Debug, Serialize)]
pub struct IssuedTokenRecord {
    /// Always `"technician_token"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The token's id.
    pub id: u64,
    /// Technician's name.
    pub name: String,
    /// Role granted.
    pub role: &'static str,
    /// The secret token.
    pub token: String,
    /// The login string for `deskside login`.
    pub login: String,
    /// Expiry, RFC 3339, or `null` for never.
    pub expires_at: Option<String>,
}

impl IssuedTokenRecord {
    /// The record of `issued`.
    pub fn new(issued: &IssuedTechnicianToken) -> Self {
        Self {
            kind: "technician_token",
            id: issued.info.id.0,
            name: issued.info.name.clone(),
            role: issued.info.role.as_str(),
            token: issued.token.clone(),
            login: issued.login.clone(),
            expires_at: rfc3339_opt(issued.info.expires_at),
        }
    }
}

/// The JSON record of a listed or revoked token (never the secret).
#[derive(Debug, Serialize)]
pub struct TokenRecord {
    /// `"technician_token"` or `"technician_token_revoked"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The token's id.
    pub id: u64,
    /// Technician's name.
    pub name: String,
    /// Role granted.
    pub role: &'static str,
    /// Issue time, RFC 3339.
    pub created_at: String,
    /// Expiry, RFC 3339, or `null` for never.
    pub expires_at: Option<String>,
    /// Revocation time, RFC 3339, or `null`.
    pub revoked_at: Option<String>,
    /// Last successful login, RFC 3339, or `null`.
    pub last_used_at: Option<String>,
    /// `active`, `revoked` or `expired`.
    pub status: &'static str,
}

impl TokenRecord {
    /// The record of `info` at `now` with this `type`.
    pub fn new(kind: &'static str, info: &TechnicianTokenInfo, now: i64) -> Self {
        Self {
            kind,
            id: info.id.0,
            name: info.name.clone(),
            role: info.role.as_str(),
            created_at: rfc3339(info.created_at),
            expires_at: rfc3339_opt(info.expires_at),
            revoked_at: rfc3339_opt(info.revoked_at),
            last_used_at: rfc3339_opt(info.last_used_at),
            status: status(info, now),
        }
    }
}

/// The human text for a newly issued token.
pub fn created_text(issued: &IssuedTechnicianToken, now: i64) -> String {
    let info = &issued.info;
    let expiry = match info.expires_at {
        Some(at) => format!("valid until {} ({})", rfc3339(at), relative(now, at)),
        None => "never expires".to_owned(),
    };
    format!(
        "Created technician token {id} for {name} ({role}), {expiry}.\n\n\
         Token:\n\n  {token}\n\n\
         {name} logs in with:\n\n  deskside login {login}\n\n\
         This is the only time the token is shown: hand it over privately now. \
         If it is lost, revoke it with `deskside tokens revoke {id}` and create another.\n",
        id = info.id,
        name = printable(&info.name),
        role = info.role,
        token = issued.token,
        login = issued.login,
    )
}

fn print_created(
    out: &mut Printer<'_>,
    issued: &IssuedTechnicianToken,
    now: i64,
) -> std::io::Result<()> {
    if out.is_json() {
        out.json(&IssuedTokenRecord::new(issued))
    } else {
        out.text(&created_text(issued, now))
    }
}

/// The human table of tokens.
pub fn list_table(tokens: &[TechnicianTokenInfo], now: i64) -> Table {
    let mut table = Table::new(&[
        Column::new("ID"),
        Column::capped("NAME", 32),
        Column::new("ROLE"),
        Column::new("CREATED"),
        Column::new("EXPIRES"),
        Column::new("STATUS"),
        Column::new("LAST USED"),
    ]);
    let relative_or =
        |at: Option<i64>, none: &str| at.map_or_else(|| none.to_owned(), |at| relative(now, at));
    for info in tokens {
        table.row([
            info.id.to_string(),
            info.name.clone(),
            info.role.to_string(),
            relative(now, info.created_at),
            relative_or(info.expires_at, "never"),
            status(info, now).to_owned(),
            relative_or(info.last_used_at, "never"),
        ]);
    }
    table
}

/// Shown instead of an empty table.
pub const NO_TOKENS: &str =
    "No technician tokens yet. Create one with `deskside tokens create --name NAME --role technician`.";

fn print_list(
    out: &mut Printer<'_>,
    tokens: &[TechnicianTokenInfo],
    now: i64,
) -> std::io::Result<()> {
    if out.is_json() {
        return tokens
            .iter()
            .try_for_each(|info| out.json(&TokenRecord::new("technician_token", info, now)));
    }
    if tokens.is_empty() {
        return out.text(NO_TOKENS);
    }
    out.text(&list_table(tokens, now).render())
}

/// The human line after a revocation.
pub fn revoked_text(info: &TechnicianTokenInfo) -> String {
    format!(
        "Revoked technician token {} ({}, {}): it can no longer log in.",
        info.id,
        printable(&info.name),
        info.role
    )
}

fn print_revoked(
    out: &mut Printer<'_>,
    info: &TechnicianTokenInfo,
    now: i64,
) -> std::io::Result<()> {
    if out.is_json() {
        out.json(&TokenRecord::new("technician_token_revoked", info, now))
    } else {
        out.text(&revoked_text(info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Format;
    use clap::Parser as _;

    const NOW: i64 = 1_700_000_000;

    fn info(id: u64, name: &str) -> TechnicianTokenInfo {
        TechnicianTokenInfo {
            id: TechnicianId(id),
            name: name.into(),
            role: Role::Technician,
            created_at: NOW - 3 * 86_400,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        }
    }

    fn issued() -> IssuedTechnicianToken {
        let mut info = info(7, "Ana");
        info.expires_at = Some(NOW + 7 * 86_400);
        IssuedTechnicianToken {
            info,
            token: "dst_secret".into(),
            login: "dsl1_login".into(),
        }
    }

    fn output(
        format: Format,
        print: impl FnOnce(&mut Printer<'_>) -> std::io::Result<()>,
    ) -> String {
        let mut buffer = Vec::new();
        print(&mut Printer::new(&mut buffer, format)).unwrap();
        String::from_utf8(buffer).unwrap()
    }

    fn keys(value: &serde_json::Value) -> Vec<&str> {
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn status_is_computed_against_now() {
        let mut token = info(1, "a");
        assert_eq!(status(&token, NOW), "active");
        token.expires_at = Some(NOW + 1);
        assert_eq!(status(&token, NOW), "active");
        token.expires_at = Some(NOW);
        assert_eq!(status(&token, NOW), "expired");
        token.revoked_at = Some(NOW - 10);
        assert_eq!(status(&token, NOW), "revoked");
    }

    #[test]
    fn issued_json_has_the_documented_keys() {
        let value = serde_json::to_value(IssuedTokenRecord::new(&issued())).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "type": "technician_token",
                "id": 7,
                "name": "Ana",
                "role": "technician",
                "token": "dst_secret",
                "login": "dsl1_login",
                "expires_at": "2023-11-21T22:13:20Z",
            })
        );
        let mut never = issued();
        never.info.expires_at = None;
        assert_eq!(
            serde_json::to_value(IssuedTokenRecord::new(&never)).unwrap()["expires_at"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn listed_json_has_the_documented_keys_and_no_secret() {
        let mut token = info(2, "Bob");
        token.last_used_at = Some(NOW - 60);
        let value =
            serde_json::to_value(TokenRecord::new("technician_token", &token, NOW)).unwrap();
        assert_eq!(
            keys(&value),
            [
                "created_at",
                "expires_at",
                "id",
                "last_used_at",
                "name",
                "revoked_at",
                "role",
                "status",
                "type"
            ]
        );
        assert_eq!(value["created_at"], "2023-11-11T22:13:20Z");
        assert_eq!(value["last_used_at"], "2023-11-14T22:12:20Z");
        assert_eq!(value["expires_at"], serde_json::Value::Null);
        assert_eq!(value["status"], "active");
        let revoked =
            serde_json::to_value(TokenRecord::new("technician_token_revoked", &token, NOW))
                .unwrap();
        assert_eq!(keys(&revoked), keys(&value));
        let line = output(Format::Json, |out| print_revoked(out, &token, NOW));
        assert!(
            line.starts_with(r#"{"type":"technician_token_revoked","id":2,"#),
            "{line}"
        );
    }

    #[test]
    fn list_table_shows_relative_times() {
        let mut expired = info(2, "Bob");
        expired.expires_at = Some(NOW - 3_600);
        expired.last_used_at = Some(NOW - 7_200);
        let mut revoked = info(3, "Chloé");
        revoked.role = Role::Admin;
        revoked.expires_at = Some(NOW + 30 * 86_400);
        revoked.revoked_at = Some(NOW);
        assert_eq!(
            list_table(&[info(1, "Ana"), expired, revoked], NOW).render(),
            "ID  NAME   ROLE        CREATED  EXPIRES  STATUS   LAST USED\n\
             1   Ana    technician  3d ago   never    active   never\n\
             2   Bob    technician  3d ago   1h ago   expired  2h ago\n\
             3   Chloé  admin       3d ago   in 30d   revoked  never\n"
        );
    }

    #[test]
    fn empty_list_says_how_to_create_one() {
        assert!(output(Format::Human, |out| print_list(out, &[], NOW))
            .contains("deskside tokens create"));
        assert_eq!(output(Format::Json, |out| print_list(out, &[], NOW)), "");
    }

    #[test]
    fn created_text_shows_token_login_command_and_warning() {
        let text = created_text(&issued(), NOW);
        assert!(text.starts_with("Created technician token 7 for Ana (technician), valid until 2023-11-21T22:13:20Z (in 7d)."), "{text}");
        assert!(text.contains("\n  dst_secret\n"), "{text}");
        assert!(text.contains("\n  deskside login dsl1_login\n"), "{text}");
        assert!(text.contains("only time the token is shown"), "{text}");
        let mut never = issued();
        never.info.expires_at = None;
        assert!(created_text(&never, NOW).contains("(technician), never expires."));
    }

    #[test]
    fn revoked_line() {
        assert_eq!(
            revoked_text(&info(4, "Dan")),
            "Revoked technician token 4 (Dan, technician): it can no longer log in."
        );
    }

    #[test]
    fn create_arguments_are_checked_by_clap() {
        let parse = |extra: &[&str]| {
            crate::cli::Cli::try_parse_from(["deskside", "tokens", "create"].iter().chain(extra))
        };
        let cli = parse(&["--name", "Ana", "--role", "viewer"]).unwrap();
        let crate::cmd::Command::Tokens(TokensCommand::Create(args)) = cli.command else {
            panic!("not tokens create")
        };
        assert_eq!((args.role, args.expires), (RoleArg::Viewer, None));
        assert_eq!(Role::from(RoleArg::Admin), Role::Admin);
        for bad in [
            &["--name", "Ana", "--role", "root"][..],
            &["--name", "", "--role", "admin"],
            &["--role", "admin"],
            &["--name", "Ana"],
            &["--name", "Ana", "--role", "admin", "--expires", "later"],
        ] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
        let revoke = crate::cli::Cli::try_parse_from(["deskside", "tokens", "revoke", ""]);
        assert_eq!(revoke.unwrap_err().exit_code(), 2);
    }

    #[test]
    fn revoke_takes_an_id_or_the_name_of_an_active_token() {
        let mut old_ana = info(1, "Ana");
        old_ana.revoked_at = Some(NOW - 10);
        let tokens = [old_ana, info(2, "Ana"), info(3, "Bob"), info(4, "Carl")];
        assert_eq!(resolve(&tokens, "3", NOW), Ok(TechnicianId(3)));
        assert_eq!(resolve(&tokens, "ana", NOW), Ok(TechnicianId(2)));
        assert_eq!(resolve(&tokens, " Bob ", NOW), Ok(TechnicianId(3)));
        let unknown = resolve(&tokens, "Zoe", NOW).unwrap_err();
        assert!(unknown.contains("deskside tokens list"), "{unknown}");
        let mut gone = info(5, "Dan");
        gone.expires_at = Some(NOW - 1);
        let error = resolve(&[gone], "Dan", NOW).unwrap_err();
        assert!(error.contains("already revoked or expired"), "{error}");
        let error = resolve(&[info(6, "Eve"), info(7, "eve")], "Eve", NOW).unwrap_err();
        assert!(error.contains("ids 6, 7"), "{error}");
    }
}
