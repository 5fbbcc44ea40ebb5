//! Opening the store a configuration names, and the store commands of
//! `deskside-relay`: `migrate` and `copy-store`.
//!
//! A relay keeps its state in `relay.db`, an embedded SQLite file in its
//! data directory, unless `[store] url` (or `--store`) names a PostgreSQL
//! database that several relays share. Moving from one to the other:
//!
//! ```text
//! deskside-relay migrate --store postgres://deskside@db.example/deskside
//! deskside-relay copy-store --to postgres://deskside@db.example/deskside   # relay stopped
//! ```
//! then set `[store] url` in `relay.toml` and start the relay again.

use anyhow::{bail, Context as _};
use serde::Serialize;

use crate::config::RelayConfig;
use crate::store::{redact_url, CopyReport, Store, SCHEMA_VERSION};

/// The file name of the embedded store in the data directory.
pub const SQLITE_FILE: &str = "relay.db";

/// Where a configuration keeps its store, as shown to people.
pub fn describe(config: &RelayConfig) -> String {
    match &config.store_url {
        Some(url) => redact_url(url),
        None => config.data_dir.join(SQLITE_FILE).display().to_string(),
    }
}

/// Opens the configuration's store (creating and migrating it if needed):
/// the PostgreSQL database of `store_url`, else `relay.db` in the data
/// directory (created owner-only).
pub fn open_store(config: &RelayConfig) -> anyhow::Result<Store> {
    match &config.store_url {
        Some(url) => Store::open_postgres(url)
            .with_context(|| format!("cannot open the PostgreSQL store {}", redact_url(url))),
        None => {
            let path = config.data_dir.join(SQLITE_FILE);
            crate::data_dir::precreate_private(&path)?;
            Store::open(&path)
                .with_context(|| format!("cannot open the database {}", path.display()))
        }
    }
}

/// What `migrate` did.
#[derive(Debug, Serialize)]
pub struct Migrated {
    /// The store, without any password.
    pub store: String,
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// The schema version it is at now.
    pub schema_version: u32,
}

/// Creates the configuration's store if missing and brings its schema to
/// this relay's version (what `serve` does at its start), then stops.
pub fn migrate(config: &RelayConfig) -> anyhow::Result<Migrated> {
    let store = open_store(config)?;
    Ok(Migrated {
        store: describe(config),
        backend: if store.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        },
        schema_version: SCHEMA_VERSION,
    })
}

/// What `copy-store` did.
#[derive(Debug, Serialize)]
pub struct Copied {
    /// The source store.
    pub from: String,
    /// The target store.
    pub to: String,
    /// Rows per table.
    pub tables: Vec<(String, u64)>,
    /// All rows.
    pub rows: u64,
}

/// Copies the configuration's store into the empty store at `to` (a
/// PostgreSQL URL, or a path for a new SQLite file). The relay must be
/// stopped: what it writes during the copy would be missing from the target.
pub fn copy_store(config: &RelayConfig, to: &str) -> anyhow::Result<Copied> {
    let from = describe(config);
    if config.store_url.is_none() && !config.data_dir.join(SQLITE_FILE).exists() {
        bail!(
            "no relay database at {from}: point --data-dir or --config at the relay whose store you want to copy"
        );
    }
    let source = open_store(config)?;
    let target = Store::open_url(to)
        .with_context(|| format!("cannot open the target store {}", redact_url(to)))?;
    let report: CopyReport = source
        .copy_into(&target)
        .context("the copy failed; the target was left empty")?
        .map_err(anyhow::Error::msg)?;
    Ok(Copied {
        from,
        to: redact_url(to),
        rows: report.rows(),
        tables: report.tables,
    })
}
