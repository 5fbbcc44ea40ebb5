//! `deskside org-key init|show`: the organisation signing key.
//!
//! `init` makes the key in this administrator's profile directory (0600)
//! and certifies this console's own session key with it. From then on
//! `deskside tokens create` hands out `dsl2_` login strings whose session
//! key is certified, and `deskside enroll-token create` makes `dse2_` tokens
//! that teach new devices the organisation's public key; those devices
//! refuse session keys it did not certify. Nothing here talks to the relay:
//! the private key never leaves this computer.

use clap::Subcommand;
use deskside_net::files::write_private;
use deskside_net::orgkey::OrgSigningKey;
use serde::Serialize;

use super::{printed, Context};
use crate::org_key::{certify_own_session_key, known_org_key, signing_key_path};

/// `deskside org-key …`.
#[derive(Debug, Subcommand)]
pub enum OrgKeyCommand {
    /// Create the organisation signing key in this profile (admin; back it up)
    Init,
    /// Show the organisation's public key as this console knows it
    Show,
}

/// The JSON record of `org-key init` and `org-key show`.
#[derive(Debug, Serialize)]
pub struct OrgKeyRecord {
    /// Always `"org_key"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The public key, `ed25519:…`, or `null` when this console knows none.
    pub public_key: Option<String>,
    /// Whether this profile holds the private key (can certify).
    pub can_certify: bool,
    /// The private key's file (only when this profile holds it).
    pub file: Option<String>,
}

/// Runs an `org-key` subcommand.
pub async fn run(command: OrgKeyCommand, ctx: &mut Context<'_>) -> anyhow::Result<()> {
    let path = signing_key_path(&ctx.profile_path);
    match command {
        OrgKeyCommand::Init => {
            if path.exists() {
                anyhow::bail!(
                    "{} already holds an organisation key; `deskside org-key show` prints it (a new key would lock out every device enrolled with the old one)",
                    path.display()
                );
            }
            let key = OrgSigningKey::generate()?;
            write_private(&path, key.pkcs8())?;
            certify_own_session_key(&ctx.profile_path, &key, "administrator", ctx.now)?;
            let record = OrgKeyRecord {
                kind: "org_key",
                public_key: Some(key.public().to_string()),
                can_certify: true,
                file: Some(path.display().to_string()),
            };
            if ctx.out.is_json() {
                printed(ctx.out.json(&record))
            } else {
                printed(ctx.out.text(&format!(
                    "Organisation key created: {}\nPrivate key: {} (mode 0600). Back it up offline: losing it means re-issuing every login string and re-enrolling every device.\nNew login strings (deskside tokens create) now carry certified session keys, and new enrollment tokens teach devices this key.",
                    key.public(),
                    path.display()
                )))
            }
        }
        OrgKeyCommand::Show => {
            let public = known_org_key(&ctx.profile_path)?;
            let can_certify = path.exists();
            let record = OrgKeyRecord {
                kind: "org_key",
                public_key: public.map(|k| k.to_string()),
                can_certify,
                file: can_certify.then(|| path.display().to_string()),
            };
            if ctx.out.is_json() {
                printed(ctx.out.json(&record))
            } else {
                let text = match (public, can_certify) {
                    (Some(key), true) => format!("Organisation key: {key} (this profile can certify)"),
                    (Some(key), false) => format!("Organisation key: {key} (from your session key certificate)"),
                    (None, _) => "This console knows no organisation key: devices trust the relay for session keys. An administrator creates one with `deskside org-key init`.".to_owned(),
                };
                printed(ctx.out.text(&text))
            }
        }
    }
}
