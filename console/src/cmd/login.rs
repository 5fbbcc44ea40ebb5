//! `deskside login` and `deskside whoami`: who the technician is, and the
//! profile that remembers it.
//!
//! Login authenticates before it saves anything, so a mistyped or revoked
//! token never replaces a working profile. The token is never printed.

use anyhow::Context as _;
use clap::Args;
use deskside_protocol::certificate::{
    decode_login_string, CertifiedLoginString, CERTIFIED_LOGIN_LIST_PREFIX, CERTIFIED_LOGIN_PREFIX,
};
use deskside_protocol::token::LoginString;
use deskside_protocol::Fingerprint;
use serde::Serialize;

use super::{printed, Context};
use crate::client::Session;
use crate::exit::UsageError;
use crate::profile::{self, Profile};

const HELP: &str = "deskside login --help";
/// `type` of the record printed by `login`.
const LOGIN: &str = "login";
/// `type` of the record printed by `whoami`.
const WHOAMI: &str = "whoami";

/// The long help of `deskside login`.
pub const LONG_ABOUT: &str = "Log in to a relay and save the profile.\n\n\
    Give either the login string your administrator sent you (it starts with dsl1_ and \
    holds the relay address, its certificate fingerprint and your token; dsl2_ when your \
    organisation has an organisation key: it also holds your certified session key, saved \
    next to the profile), or all three of \
    --relay, --fingerprint and --token. The token is checked with the relay before the \
    profile is saved, readable only by you (mode 0600).";

/// Arguments of `deskside login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The login string from your administrator (starts with dsl1_ or dsl2_)
    #[arg(value_name = "LOGIN_STRING")]
    pub login_string: Option<String>,

    /// Relay address as host:port (instead of a login string)
    #[arg(long, value_name = "ADDR")]
    pub relay: Option<String>,

    /// Relay certificate fingerprint, sha256:<64 hex digits> (instead of a login string)
    #[arg(long, value_name = "FP")]
    pub fingerprint: Option<Fingerprint>,

    /// Technician token (instead of a login string; or set DESKSIDE_TOKEN)
    #[arg(long, value_name = "T")]
    pub token: Option<String>,
}

/// What `deskside login` tries: the profile, and the certified session key
/// of a `dsl2_` login string (saved next to the profile once the login is
/// accepted).
#[derive(Debug)]
pub struct LoginTarget {
    /// The profile to try.
    pub profile: Profile,
    /// The session key and certificate, from a `dsl2_` string.
    pub certified: Option<CertifiedLoginString>,
}

/// Like [`validate`], also accepting `dsl2_` login strings (a session key
/// certified by the organisation key, made by an administrator's console).
pub fn validate_target(
    args: LoginArgs,
    env_token: Option<String>,
) -> Result<LoginTarget, UsageError> {
    let certified_text = args
        .login_string
        .as_deref()
        .filter(|text| {
            let text = text.trim();
            text.starts_with(CERTIFIED_LOGIN_PREFIX)
                || text.starts_with(CERTIFIED_LOGIN_LIST_PREFIX)
        })
        .map(str::to_owned);
    let Some(text) = certified_text else {
        return validate(args, env_token).map(|profile| LoginTarget {
            profile,
            certified: None,
        });
    };
    if args.relay.is_some() || args.fingerprint.is_some() || args.token.is_some() {
        return Err(UsageError::new(
            "give either a login string or --relay, --fingerprint and --token, not both",
            HELP,
        ));
    }
    let (login, certified) =
        decode_login_string(&text).map_err(|e| UsageError::new(e.to_string(), HELP))?;
    Ok(LoginTarget {
        profile: Profile::from(login),
        certified,
    })
}

/// Turns the arguments into the profile to try: either the login string
/// alone, or all three of relay, fingerprint and token (the token may come
/// from `DESKSIDE_TOKEN`, passed as `env_token`).
pub fn validate(args: LoginArgs, env_token: Option<String>) -> Result<Profile, UsageError> {
    let nonempty = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
    let relay = nonempty(args.relay);
    let flag_token = nonempty(args.token);
    if let Some(text) = args.login_string {
        if relay.is_some() || args.fingerprint.is_some() || flag_token.is_some() {
            return Err(UsageError::new(
                "give either a login string or --relay, --fingerprint and --token, not both",
                HELP,
            ));
        }
        let login = LoginString::decode(&text).map_err(|e| UsageError::new(e.to_string(), HELP))?;
        return Ok(Profile::from(login));
    }
    let token = flag_token.or_else(|| nonempty(env_token));
    match (relay, args.fingerprint, token) {
        (Some(relay), Some(fingerprint), Some(token)) => Ok(Profile {
            relay,
            fingerprint,
            token,
            other_relays: Vec::new(),
        }),
        (None, None, None) => Err(UsageError::new(
            "missing the login string: run `deskside login LOGIN_STRING` with the string from \
             your administrator, or give --relay, --fingerprint and --token",
            HELP,
        )),
        (relay, fingerprint, token) => {
            let missing: Vec<&str> = [
                relay.is_none().then_some("--relay"),
                fingerprint.is_none().then_some("--fingerprint"),
                token.is_none().then_some("--token (or DESKSIDE_TOKEN)"),
            ]
            .into_iter()
            .flatten()
            .collect();
            Err(UsageError::new(
                format!(
                    "missing {}: without a login string, give all of --relay, --fingerprint and --token",
                    missing.join(" and ")
                ),
                HELP,
            ))
        }
    }
}

/// The JSON record of `login` and `whoami`.
#[derive(Debug, Serialize)]
pub struct IdentityRecord {
    /// `"login"` or `"whoami"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Relay address.
    pub relay: String,
    /// Technician's name.
    pub technician: String,
    /// Role of the token.
    pub role: &'static str,
    /// Organisation's name.
    pub organisation: String,
    /// Path of the profile file.
    pub profile: String,
}

impl IdentityRecord {
    fn new(kind: &'static str, relay: &str, session: &Session, profile: &std::path::Path) -> Self {
        Self {
            kind,
            relay: relay.to_owned(),
            technician: session.technician.clone(),
            role: session.role.as_str(),
            organisation: session.organisation.clone(),
            profile: profile.display().to_string(),
        }
    }

    /// `RELAY as NAME (ROLE, ORG)`.
    fn describe(&self) -> String {
        crate::output::printable(&format!(
            "{} as {} ({}, {})",
            self.relay, self.technician, self.role, self.organisation
        ))
        .into_owned()
    }

    /// The human line for this record.
    pub fn human(&self) -> String {
        match self.kind {
            LOGIN => format!(
                "Logged in to {}. Profile saved to {}.",
                self.describe(),
                self.profile
            ),
            _ => format!(
                "Logged in to {}, using the profile at {}",
                self.describe(),
                self.profile
            ),
        }
    }
}

/// `deskside login`: authenticate, then save the profile.
pub async fn login(target: LoginTarget, ctx: &mut Context<'_>) -> anyhow::Result<()> {
    let LoginTarget {
        profile: target,
        certified,
    } = target;
    tracing::info!(relay = %target.relay, "logging in");
    let client = crate::failover::connect_any(&target)
        .await
        .context("login failed, the profile was not saved")?;
    let session = client.session().clone();
    client.close().await;
    profile::save(&ctx.profile_path, &target)?;
    if let Some(certified) = &certified {
        crate::org_key::save_certified_login(&ctx.profile_path, certified)?;
    }
    print(
        IdentityRecord::new(LOGIN, &target.relay, &session, &ctx.profile_path),
        ctx,
    )
}

/// `deskside whoami`: connect with the profile and say who we are.
pub async fn whoami(ctx: &mut Context<'_>) -> anyhow::Result<()> {
    let (profile, client) = super::connect(ctx).await?;
    let session = client.session().clone();
    client.close().await;
    print(
        IdentityRecord::new(WHOAMI, &profile.relay, &session, &ctx.profile_path),
        ctx,
    )
}

fn print(record: IdentityRecord, ctx: &mut Context<'_>) -> anyhow::Result<()> {
    printed(if ctx.out.is_json() {
        ctx.out.json(&record)
    } else {
        ctx.out.text(&record.human())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use deskside_protocol::Role;

    const FINGERPRINT: Fingerprint = Fingerprint([7; 32]);

    fn login_string() -> String {
        LoginString {
            relay: "relay.example.org:4433".into(),
            fingerprint: FINGERPRINT,
            token: "dst_from_string".into(),
            other_relays: Vec::new(),
        }
        .encode()
    }

    fn args(
        login_string: Option<String>,
        relay: Option<&str>,
        fingerprint: bool,
        token: Option<&str>,
    ) -> LoginArgs {
        LoginArgs {
            login_string,
            relay: relay.map(str::to_owned),
            fingerprint: fingerprint.then_some(FINGERPRINT),
            token: token.map(str::to_owned),
        }
    }

    #[test]
    fn login_string_alone_is_enough() {
        let profile = validate(args(Some(login_string()), None, false, None), None).unwrap();
        assert_eq!(profile.relay, "relay.example.org:4433");
        assert_eq!(profile.fingerprint, FINGERPRINT);
        assert_eq!(profile.token, "dst_from_string");
        // A token in the environment does not conflict with a login string.
        let profile = validate(
            args(Some(login_string()), None, false, None),
            Some("env".into()),
        )
        .unwrap();
        assert_eq!(profile.token, "dst_from_string");
    }

    #[test]
    fn three_flags_are_enough_with_the_token_from_flag_or_environment() {
        let profile = validate(
            args(None, Some("r:1"), true, Some("flag")),
            Some("env".into()),
        )
        .unwrap();
        assert_eq!(
            (profile.relay.as_str(), profile.token.as_str()),
            ("r:1", "flag")
        );
        let profile = validate(args(None, Some("r:1"), true, None), Some("env".into())).unwrap();
        assert_eq!(profile.token, "env");
    }

    #[test]
    fn login_string_and_flags_together_are_refused() {
        for bad in [
            args(Some(login_string()), Some("r:1"), false, None),
            args(Some(login_string()), None, true, None),
            args(Some(login_string()), None, false, Some("t")),
        ] {
            let error = validate(bad, None).unwrap_err();
            assert!(error.message.contains("not both"), "{error}");
            assert_eq!(error.help, "deskside login --help");
        }
    }

    #[test]
    fn missing_pieces_are_named() {
        let cases = [
            (args(None, None, false, None), "missing the login string"),
            (
                args(None, Some("r:1"), false, None),
                "missing --fingerprint and --token (or DESKSIDE_TOKEN)",
            ),
            (args(None, Some("r:1"), true, None), "missing --token"),
            (args(None, None, true, Some("t")), "missing --relay:"),
            (args(None, Some(" "), true, Some("t")), "missing --relay:"),
        ];
        for (bad, expected) in cases {
            let error = validate(bad, None).unwrap_err();
            assert!(error.message.starts_with(expected), "{error}");
        }
    }

    #[test]
    fn damaged_login_string_is_a_usage_error_with_advice() {
        let mut text = login_string();
        text.truncate(text.len() - 4);
        let error = validate(args(Some(text), None, false, None), None).unwrap_err();
        assert!(
            error.message.contains("copy the whole string again"),
            "{error}"
        );
        let error = validate(args(Some("dse1_abc".into()), None, false, None), None).unwrap_err();
        assert!(error.message.contains("dsl1_"), "{error}");
    }

    #[test]
    fn clap_parses_login_forms() {
        use clap::Parser as _;
        let cli = crate::cli::Cli::try_parse_from([
            "deskside",
            "login",
            "--relay",
            "r:1",
            "--fingerprint",
            "sha256:00",
        ]);
        assert_eq!(
            cli.unwrap_err().exit_code(),
            2,
            "a bad fingerprint is a usage error"
        );
        let fingerprint = FINGERPRINT.to_string();
        let cli = crate::cli::Cli::try_parse_from([
            "deskside",
            "login",
            "--relay",
            "r:1",
            "--fingerprint",
            &fingerprint,
            "--token",
            "t",
        ])
        .unwrap();
        let crate::cmd::Command::Login(parsed) = cli.command else {
            panic!("not a login command")
        };
        assert_eq!(validate(parsed, None).unwrap().fingerprint, FINGERPRINT);
    }

    fn session() -> Session {
        Session {
            technician: "Ana".into(),
            role: Role::Admin,
            organisation: "Acme".into(),
        }
    }

    #[test]
    fn identity_records_have_the_documented_keys() {
        let path = std::path::Path::new("/home/ana/.config/deskside/profile.json");
        for kind in ["login", "whoami"] {
            let record = IdentityRecord::new(kind, "r:1", &session(), path);
            let value = serde_json::to_value(&record).unwrap();
            assert_eq!(
                value,
                serde_json::json!({
                    "type": kind,
                    "relay": "r:1",
                    "technician": "Ana",
                    "role": "admin",
                    "organisation": "Acme",
                    "profile": "/home/ana/.config/deskside/profile.json",
                })
            );
            let line = crate::output::json_line(&record).unwrap();
            assert!(
                line.starts_with(&format!(r#"{{"type":"{kind}","#)),
                "{line}"
            );
        }
    }

    #[test]
    fn identity_human_lines() {
        let path = std::path::Path::new("/p.json");
        assert_eq!(
            IdentityRecord::new("login", "r:1", &session(), path).human(),
            "Logged in to r:1 as Ana (admin, Acme). Profile saved to /p.json."
        );
        assert_eq!(
            IdentityRecord::new("whoami", "r:1", &session(), path).human(),
            "Logged in to r:1 as Ana (admin, Acme), using the profile at /p.json"
        );
    }
}
