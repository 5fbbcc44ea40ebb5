//! `deskside-relay admin-token --new`: a new admin token when the first one
//! was lost (the first start failed after creating it, or the file was
//! deleted), written straight into the data directory's database.
//!
//! Works with the relay stopped or running (SQLite serialises the write).
//! Whoever can run it can already read and replace the relay's keys, so it
//! opens no new door; the audit log records it. Never creates a database,
//! an organisation or a certificate: with nothing to recover it says so.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use deskside_net::files::write_private;
use deskside_protocol::token::LoginString;

use crate::config::RelayConfig;
use crate::secrets::{hash_secret, new_technician_token};
use crate::tls_files::stored_identity;

/// Name of the file in the data directory holding the admin token the
/// first start created (and each recovery replaces).
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// What a recovery issued.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// The new admin token (shown once).
    pub token: String,
    /// Its name in `deskside tokens list`.
    pub name: String,
    /// Where it was also written (mode 0600).
    pub token_file: PathBuf,
    /// A ready-made login string, when the relay's certificate is known.
    pub login: Option<LoginString>,
}

/// Issues a new admin token in the relay's database at `now` (Unix seconds).
pub fn recover(config: &RelayConfig, now: i64) -> anyhow::Result<Recovery> {
    let db_path = config.data_dir.join("relay.db");
    if config.store_url.is_none() && !db_path.exists() {
        bail!(
            "no relay database in {}: nothing to recover. Start the relay (`deskside-relay serve`): its first start prints the admin login, or point --data-dir/--config at the relay's data directory",
            config.data_dir.display()
        );
    }
    let store = crate::store_admin::open_store(config)?;
    let db_path = crate::store_admin::describe(config);
    let token =
        new_technician_token().map_err(|_| anyhow::anyhow!("the OS random generator failed"))?;
    let recovered = store
        .recover_admin_token(&hash_secret(&token), now)
        .context("cannot write the new admin token")?
        .with_context(|| {
            format!(
                "the database {} has no organisation yet: start the relay (`deskside-relay serve`), whose first start creates it and prints the admin login",
                db_path
            )
        })?;
    let token_file = config.data_dir.join(ADMIN_TOKEN_FILE);
    write_private(&token_file, format!("{token}\n").as_bytes())?;
    let login = stored_identity(&config.data_dir, &config.cert)?.map(|identity| LoginString {
        relay: config
            .public_addr
            .clone()
            .unwrap_or_else(|| config.listen.to_string()),
        fingerprint: identity.fingerprint(),
        token: token.clone(),
        // Offline recovery reads no directory: the console learns the other
        // relays from the next login string it is given.
        other_relays: Vec::new(),
    });
    Ok(Recovery {
        token,
        name: recovered.name,
        token_file,
        login,
    })
}
