//! The relay's SQLite store: organisations, technician tokens, enrollment
//! tokens, devices, remote sessions (`sessions.rs`) and the append-only
//! audit log.
//!
//! This file holds [`Store`] itself (open, configure, lock, bootstrap,
//! organisation settings), [`StoreError`] and the types and helpers every
//! concern shares; each concern has its own file below it: `migrations`,
//! `tokens`, `devices`, `diagnostics`, `audit` (and `audit_chain`),
//! `access`, `sessions`, `requests`, `request_stats`, `tickets`,
//! `timeline`, `recovery`. Their unit tests sit beside them and share the
//! fixtures of this file's `tests`.
//!
//! [`Store`] is the only place in the relay that writes SQL (an architecture
//! invariant): the rest of the relay calls its methods, usually through
//! `tokio::task::spawn_blocking`, because every method is synchronous.
//!
//! What this module must never do:
//! - read the clock: every time is an `i64` of Unix seconds passed in as
//!   `now`, so that tests are deterministic;
//! - see a secret: tokens arrive as the SHA-256 of their secret
//!   (`token_hash`), and neither the hash nor the secret is written to the
//!   audit log;
//! - change state without an audit row: every state-changing method writes
//!   its audit row in the same transaction as the change (device presence,
//!   `attach_device`/`mark_seen`, and a technician's `last_used_at` are the
//!   deliberate exceptions: they are too frequent to audit);
//! - update or delete an audit row: triggers abort any attempt, and each
//!   row's hash chains to the previous one so that tampering is detected by
//!   [`Store::verify_audit_chain`].
//!
//! Refusals ([`Refusal`]) are returned as the inner `Err` of
//! `Result<Result<T, Refusal>, StoreError>`: the outer error is a fault of
//! the relay (disk, corruption), the inner one is an answer for the caller.
//! A refused enrollment or attachment changes nothing and writes no audit
//! row; the relay logs it, and may record it with [`Store::append_audit`]
//! if it wants to.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use deskside_protocol::agent::DeviceInfo;
use deskside_protocol::console::{DeviceSummary, TechnicianTokenInfo};
use deskside_protocol::{DeviceId, Refusal, Role, TechnicianId};
use ring::digest;
use serde::{Deserialize, Serialize};
use sql::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use thiserror::Error;

mod access;
mod audit;
mod audit_chain;
mod cluster;
mod copy;
mod devices;
mod diagnostics;
mod migrations;
mod recovery;
mod request_stats;
mod requests;
mod sessions;
pub(crate) mod sql;
mod tickets;
mod timeline;
mod tokens;

pub use audit_chain::{ChainBreak, ChainCheck, ChainHead};
pub use cluster::RelayRecord;
pub use copy::CopyReport;

pub use access::{AccessEnd, EndedSession, ENDED_BY_ADMINISTRATOR};
pub use audit::AuditRecord;
#[cfg(feature = "test-utils")]
use audit::{audit_from_row, AuditRow};
use audit::{insert_audit, AuditFields, NewAudit, GENESIS_HASH};
pub use diagnostics::StoredDiagnosticsRow;
pub use migrations::SCHEMA_VERSION;
use migrations::{migrate, MIGRATIONS};
pub use recovery::RecoveredAdmin;
pub use requests::{LinkedRequest, LinkedSession, NewRequest, RequestFilter, RequestRow};
pub use sessions::{
    session_text, ConsentOutcome, EndOutcome, Interrupted, NewSession, SessionParty, SessionRecord,
    WithdrawOutcome, WITHDRAWN,
};
pub use tickets::{
    DueDelivery, FailingDelivery, OutboxEvent, RequestTickets, StoredTicket, TicketRef,
};
pub use timeline::TimelineRow;
use tokens::{insert_technician_token, TokenRow, TOKEN_COLUMNS};

/// How long a statement waits for another connection's lock before failing.
/// Five seconds covers a WAL checkpoint or a backup tool holding the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The actor recorded for what the relay does on its own (bootstrap).
pub const SYSTEM_ACTOR: &str = "system";

/// A fault of the store. Refusals meant for the caller are not errors: they
/// are the inner `Err(Refusal)` of the methods that can refuse.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database file could not be opened or configured.
    #[error("cannot open the relay database {}: {source}; check that its directory exists and that the relay's user can read and write it", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The PostgreSQL server could not be reached or refused the login.
    #[error("cannot connect to the PostgreSQL store {url}: {source}; check `[store] url` in relay.toml (or --store), that the server runs and accepts this relay's user")]
    OpenPostgres {
        /// The URL, without its password.
        url: String,
        /// What the client said.
        source: sql::Error,
    },
    /// A schema migration failed; its transaction was rolled back.
    #[error("cannot upgrade the relay database {location} to schema version {version}: {source}; the database was left at the previous version: free disk space if it is full, otherwise report this as a bug")]
    Migration {
        /// The database file, or `:memory:`.
        location: String,
        /// The schema version the failed migration would have reached.
        version: u32,
        /// What the database said.
        source: sql::Error,
    },
    /// A statement failed after the database was opened.
    #[error("the relay database failed: {0}; check free disk space and the database's permissions (or the PostgreSQL server), then retry")]
    Database(#[from] sql::Error),
    /// The database was written by a newer relay.
    #[error("the relay database has schema version {found}, but this relay only knows versions up to {known}: upgrade the relay to the version that last used this database (or newer)")]
    TooNew {
        /// The database's schema version.
        found: u32,
        /// The newest schema version this build knows.
        known: u32,
    },
    /// A row holds a value this build cannot decode.
    #[error("the relay database holds a value this relay cannot read ({0}): restore a backup, or upgrade the relay if a newer one wrote it")]
    Corrupt(String),
    /// The organisation does not exist.
    #[error("organisation {0} does not exist in the relay database: check the relay's configuration, or bootstrap a fresh database")]
    UnknownOrganisation(OrgId),
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Database(sql::Error::Sqlite(error))
    }
}

/// An organisation's row id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OrgId(pub i64);

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An authenticated technician: who is asking, in which organisation, with
/// which role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Technician {
    /// The technician token's id.
    pub id: TechnicianId,
    /// The organisation the token belongs to.
    pub org: OrgId,
    /// The technician's name, as given when the token was issued.
    pub name: String,
    /// The role the token grants.
    pub role: Role,
}

impl Technician {
    /// How this technician appears in the audit log: `technician:3 (alice)`.
    pub fn audit_actor(&self) -> String {
        format!("technician:{} ({})", self.id, self.name)
    }
}

/// A device as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRecord {
    /// The id the relay gave it at enrollment.
    pub id: DeviceId,
    /// The organisation it enrolled into.
    pub org: OrgId,
    /// Its public key, a DER SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
    /// Host name reported at its last connection.
    pub hostname: String,
    /// OS reported at its last connection.
    pub os: String,
    /// Agent version reported at its last connection.
    pub agent_version: String,
    /// Enrollment time, Unix seconds.
    pub first_seen: i64,
    /// Last time it was known connected, Unix seconds.
    pub last_seen: i64,
    /// Address of its last connection, as the relay saw it.
    pub last_address: Option<String>,
    /// Revocation time, Unix seconds, if revoked.
    pub revoked_at: Option<i64>,
    /// Device group, from the enrollment token.
    pub group: Option<String>,
}

impl DeviceRecord {
    /// The device as the console shows it; `online` comes from the relay's
    /// live connections, which the store does not know.
    pub fn summary(&self, online: bool) -> DeviceSummary {
        DeviceSummary {
            id: self.id,
            hostname: self.hostname.clone(),
            os: self.os.clone(),
            agent_version: self.agent_version.clone(),
            online,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            last_address: self.last_address.clone(),
            revoked_at: self.revoked_at,
            group: self.group.clone(),
        }
    }

    /// How this device appears in the audit log: `device:dev_…`.
    pub fn audit_actor(&self) -> String {
        device_target(self.id)
    }
}

/// The relay's database. See the module documentation.
///
/// One connection behind a mutex: SQLite serialises writers anyway, and the
/// relay's load (enrollments, logins, presence) is far below what one
/// connection handles. `Store` is `Send + Sync`; every method takes `&self`.
pub struct Store {
    conn: Mutex<Connection>,
    /// The database file, or `:memory:`; used in messages.
    location: String,
    /// Bumped after each commit that may have written help-request events
    /// (see `tickets.rs`): the ticket outbox waits on it.
    request_events: tokio::sync::watch::Sender<u64>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if missing) the database at `path`, configures it
    /// (WAL, foreign keys, busy timeout, `synchronous=NORMAL`) and brings its
    /// schema up to [`SCHEMA_VERSION`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_error = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let conn = rusqlite::Connection::open(path).map_err(open_error)?;
        configure(&conn).map_err(open_error)?;
        let mut conn = Connection::sqlite(conn);
        let location = path.display().to_string();
        migrate(&mut conn, MIGRATIONS, &location)?;
        Ok(Store::from_connection(conn, location))
    }

    /// Opens a fresh database in memory, for tests.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let conn = rusqlite::Connection::open_in_memory()?;
        configure(&conn)?;
        let mut conn = Connection::sqlite(conn);
        migrate(&mut conn, MIGRATIONS, ":memory:")?;
        Ok(Store::from_connection(conn, ":memory:".to_owned()))
    }

    /// Connects to the PostgreSQL database at `url`
    /// (`postgres://user[:password]@host[:port]/database`) and brings its
    /// schema up to [`SCHEMA_VERSION`]. Several relays may share it: every
    /// change they make is serialised by one advisory lock (see `sql.rs`).
    pub fn open_postgres(url: &str) -> Result<Store, StoreError> {
        let shown = redact_url(url);
        let mut conn = Connection::postgres(url).map_err(|source| StoreError::OpenPostgres {
            url: shown.clone(),
            source,
        })?;
        migrations::migrate_postgres(&mut conn, &shown)?;
        Ok(Store::from_connection(conn, shown))
    }

    /// Opens the store a `[store] url` names: `postgres://…` or
    /// `postgresql://…` is a PostgreSQL server, `sqlite://PATH` or a plain
    /// path a SQLite file.
    pub fn open_url(url: &str) -> Result<Store, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Store::open_postgres(url)
        } else {
            Store::open(Path::new(url.strip_prefix("sqlite://").unwrap_or(url)))
        }
    }

    /// Whether this store is a PostgreSQL server (shared by several relays).
    pub fn is_postgres(&self) -> bool {
        self.lock().is_postgres()
    }

    fn from_connection(conn: Connection, location: String) -> Store {
        Store {
            conn: Mutex::new(conn),
            location,
            request_events: tokio::sync::watch::channel(0).0,
        }
    }

    /// The schema version of the open database. Opening succeeds only once
    /// the database is exactly at [`SCHEMA_VERSION`], so this is that.
    pub fn schema_version(&self) -> u32 {
        SCHEMA_VERSION
    }

    /// The health check's trivial query: takes the write lock (as every
    /// change must), reads one row and rolls back, changing nothing. Fails
    /// or blocks (up to the busy timeout) when the database cannot take a
    /// write, which is what a load balancer must hear about.
    pub fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.query_row("SELECT count(*) FROM organisations", [], |row| {
            row.get::<_, i64>(0)
        })?;
        tx.rollback()?;
        Ok(())
    }

    /// Locks the connection.
    ///
    /// A poisoned mutex is recovered rather than reported: the panic that
    /// poisoned it unwound through rusqlite's `Transaction`, whose drop rolls
    /// back, so the connection holds no half-done change and is safe to use.
    /// Failing every later request would turn one bug into an outage.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates the first organisation and its administrator token if the
    /// database has no organisation yet. Returns `None` when it already has
    /// one, so calling it at every start is safe.
    pub fn bootstrap(
        &self,
        org_name: &str,
        admin_name: &str,
        admin_token_hash: &[u8; 32],
        now: i64,
    ) -> Result<Option<OrgId>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists: bool =
            tx.query_row("SELECT EXISTS (SELECT 1 FROM organisations)", [], |row| {
                row.get(0)
            })?;
        if exists {
            return Ok(None);
        }
        tx.execute(
            "INSERT INTO organisations (name, created_at) VALUES (?1, ?2)",
            params![org_name, now],
        )?;
        let org = OrgId(tx.last_insert_rowid()?);
        let admin_id = insert_technician_token(
            &tx,
            org,
            admin_name,
            Role::Admin,
            admin_token_hash,
            None,
            now,
        )?;
        insert_audit(
            &tx,
            &NewAudit {
                at: now,
                org: Some(org),
                actor: SYSTEM_ACTOR,
                action: "org.bootstrap",
                target: &org_target(org),
                detail: &serde_json::json!({
                    "org_name": org_name,
                    "admin_token_id": admin_id,
                    "admin_name": admin_name,
                }),
            },
        )?;
        tx.commit()?;
        Ok(Some(org))
    }

    /// The organisation's name.
    pub fn organisation_name(&self, org: OrgId) -> Result<String, StoreError> {
        let conn = self.lock();
        conn.query_row(
            "SELECT name FROM organisations WHERE id = ?1",
            [org.0],
            |row| row.get(0),
        )
        .optional()?
        .ok_or(StoreError::UnknownOrganisation(org))
    }

    /// The organisation's settings (JSON text; `{}` when never set).
    pub fn organisation_settings(&self, org: OrgId) -> Result<String, StoreError> {
        let conn = self.lock();
        conn.query_row(
            "SELECT settings FROM organisations WHERE id = ?1",
            [org.0],
            |row| row.get(0),
        )
        .optional()?
        .ok_or(StoreError::UnknownOrganisation(org))
    }

    /// Every organisation's settings (JSON text), for relays that follow
    /// changes made through other relays (`policy_sync`).
    pub fn all_organisation_settings(&self) -> Result<Vec<(OrgId, String)>, StoreError> {
        let conn = self.lock();
        let rows = conn
            .prepare("SELECT id, settings FROM organisations ORDER BY id")?
            .query_map([], |row| Ok((OrgId(row.get(0)?), row.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Replaces the organisation's settings (JSON text) and audits `change`
    /// (what was set; never a secret) as `action`.
    pub fn set_organisation_settings(
        &self,
        org: OrgId,
        settings: &str,
        action: &str,
        change: &serde_json::Value,
        actor: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE organisations SET settings = ?1 WHERE id = ?2",
            params![settings, org.0],
        )?;
        if changed == 0 {
            return Err(StoreError::UnknownOrganisation(org));
        }
        insert_audit(
            &tx,
            &NewAudit {
                at: now,
                org: Some(org),
                actor,
                action,
                target: &format!("org:{}", org.0),
                detail: change,
            },
        )?;
        tx.commit()?;
        Ok(())
    }
}

/// `url` without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(name, _)| name);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

/// Applies the connection settings every SQLite database gets.
fn configure(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    // WAL lets readers (backups, `sqlite3` for support) work while the relay
    // writes; an in-memory database answers "memory", which is fine.
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
        tracing::warn!(%mode, "the relay database could not switch to WAL journaling");
    }
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // NORMAL is durable across application crashes in WAL mode; a power cut
    // may lose the last transactions, which a relay can afford.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

/// A [`DeviceId`] as stored: its bits as a signed SQLite integer.
fn device_id_to_sql(id: DeviceId) -> i64 {
    id.0 as i64
}

fn device_id_from_sql(id: i64) -> DeviceId {
    DeviceId(id as u64)
}

/// Technician token ids are positive row ids, so the casts are lossless in
/// practice; an out-of-range id from a client simply matches no row.
fn technician_id_to_sql(id: TechnicianId) -> i64 {
    id.0 as i64
}

fn technician_id_from_sql(id: i64) -> TechnicianId {
    TechnicianId(id as u64)
}

fn org_target(org: OrgId) -> String {
    format!("org:{org}")
}

fn token_target(id: i64) -> String {
    format!("token:{id}")
}

/// How a device appears in the audit log, as actor or target:
/// `device:dev_…`.
pub fn device_actor(id: DeviceId) -> String {
    device_target(id)
}

fn device_target(id: DeviceId) -> String {
    format!("device:{id}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A test should panic on an unexpected error.
mod tests {
    use super::*;

    pub(super) const T0: i64 = 1_700_000_000;
    pub(super) const DAY: i64 = 86_400;

    pub(super) fn hash(secret: &str) -> [u8; 32] {
        let mut out = [0; 32];
        out.copy_from_slice(digest::digest(&digest::SHA256, secret.as_bytes()).as_ref());
        out
    }

    pub(super) fn info(hostname: &str) -> DeviceInfo {
        DeviceInfo {
            hostname: hostname.to_owned(),
            os: "Debian GNU/Linux 12".to_owned(),
            agent_version: "0.1.0".to_owned(),
        }
    }

    /// Whether the store's unit tests run on PostgreSQL
    /// (`DESKSIDE_TEST_STORE=postgres`, which `./run-tests` sets for a
    /// second run of them) rather than on SQLite in memory.
    pub(super) fn on_postgres() -> bool {
        std::env::var("DESKSIDE_TEST_STORE").is_ok_and(|v| v == "postgres")
    }

    /// A fresh, empty store of the backend under test: SQLite in memory, or
    /// a new database on the test process's PostgreSQL server.
    pub(super) fn fresh_store() -> Store {
        if on_postgres() {
            let server = crate::pg_server::PgServer::shared()
                .unwrap_or_else(|error| panic!("DESKSIDE_TEST_STORE=postgres: {error}"));
            Store::open_postgres(&server.create_database().unwrap()).unwrap()
        } else {
            Store::open_in_memory().unwrap()
        }
    }

    /// A store with one organisation ("Acme") whose admin token is "admin".
    pub(super) fn bootstrapped() -> (Store, OrgId) {
        let store = fresh_store();
        let org = store
            .bootstrap("Acme", "root", &hash("admin"), T0)
            .unwrap()
            .unwrap();
        (store, org)
    }

    /// Issues enrollment token `secret` with `uses` uses, valid for a day.
    pub(super) fn enroll_token(store: &Store, org: OrgId, secret: &str, uses: u32) {
        store
            .create_enroll_token(org, &hash(secret), uses, T0 + DAY, None, "system", T0)
            .unwrap();
    }

    pub(super) fn enroll(
        store: &Store,
        secret: &str,
        key: &str,
        hostname: &str,
        id: u64,
        now: i64,
    ) -> Result<DeviceRecord, Refusal> {
        store
            .enroll_device(
                &hash(secret),
                key.as_bytes(),
                &info(hostname),
                "192.0.2.7:50000",
                DeviceId(id),
                now,
            )
            .unwrap()
            .map(|(device, _org_name)| device)
    }

    /// Everything a refused request must leave unchanged.
    pub(super) fn snapshot(store: &Store) -> (Vec<(i64, i64)>, i64, i64) {
        let conn = store.lock();
        let uses = conn
            .prepare("SELECT id, uses_left FROM enroll_tokens ORDER BY id")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let devices = conn
            .query_row("SELECT count(*) FROM devices", [], |r| r.get(0))
            .unwrap();
        let audit = conn
            .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
            .unwrap();
        (uses, devices, audit)
    }

    pub(super) fn actions(store: &Store) -> Vec<String> {
        let entries = store.audit_entries(None, 100).unwrap();
        entries
            .into_iter()
            .rev()
            .map(|entry| entry.action)
            .collect()
    }

    #[test]
    fn organisation_settings_are_replaced_and_audited() {
        let (store, org) = bootstrapped();
        assert_eq!(store.organisation_settings(org).unwrap(), "{}");
        let before = actions(&store).len();
        let change = serde_json::json!({"a": 1});
        store
            .set_organisation_settings(org, r#"{"a":1}"#, "policy.set", &change, "t", T0)
            .unwrap();
        assert_eq!(store.organisation_settings(org).unwrap(), r#"{"a":1}"#);
        let after = actions(&store);
        assert_eq!(after.len(), before + 1);
        assert_eq!(after.last().map(String::as_str), Some("policy.set"));
        assert!(store
            .set_organisation_settings(org, "not json", "policy.set", &change, "t", T0)
            .is_err());
        assert!(store.organisation_settings(OrgId(99)).is_err());
    }

    /// The relay outlives a restart of its PostgreSQL server: the call that
    /// finds the connection gone fails, the next one connects again; a
    /// transaction cut by the restart fails as a whole and changes nothing.
    #[test]
    fn a_postgresql_store_reconnects_after_the_server_restarts() {
        let test = "store::tests::a_postgresql_store_reconnects_after_the_server_restarts";
        // Its own server: stopping the shared one would break other tests.
        let server = match crate::pg_server::PgServer::start() {
            Ok(server) => server,
            Err(error @ crate::pg_server::PgServerError::NotInstalled { .. }) => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "{test}: {error} (CI=true: the PostgreSQL tests must run)"
                );
                eprintln!("SKIPPED {test}: {error}");
                return;
            }
            Err(error) => panic!("{test}: {error}"),
        };
        let store = Store::open_postgres(&server.create_database().unwrap()).unwrap();
        let org = store
            .bootstrap("Acme", "root", &hash("admin"), T0)
            .unwrap()
            .unwrap();
        server.stop_immediately();
        assert!(store.organisation_name(org).is_err());
        server.start_again().unwrap();
        // The first call after the restart may still meet the dead socket.
        let name = (0..20)
            .find_map(|_| {
                let name = store.organisation_name(org).ok();
                if name.is_none() {
                    std::thread::sleep(Duration::from_millis(100));
                }
                name
            })
            .expect("the store connects again once PostgreSQL is back");
        assert_eq!(name, "Acme");
        // A transaction cut in the middle: nothing of it remains.
        {
            let mut conn = store.lock();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .unwrap();
            tx.execute(
                "UPDATE organisations SET name = 'Half' WHERE id = ?1",
                [org.0],
            )
            .unwrap();
            server.stop_immediately();
            server.start_again().unwrap();
            assert!(tx
                .execute(
                    "UPDATE organisations SET settings = '{}' WHERE id = ?1",
                    [org.0]
                )
                .is_err());
            assert!(matches!(tx.commit(), Err(sql::Error::TransactionLost)));
        }
        assert_eq!(store.organisation_name(org).unwrap(), "Acme");
        store
            .set_organisation_settings(
                org,
                r#"{"a":1}"#,
                "policy.set",
                &serde_json::json!({}),
                "t",
                T0,
            )
            .unwrap();
        assert_eq!(store.verify_audit_chain().unwrap(), Ok(()));
    }

    #[test]
    fn store_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Store>();
    }

    #[test]
    fn reopening_a_file_is_idempotent_and_bootstraps_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        {
            let store = Store::open(&path).unwrap();
            assert_eq!(
                store.bootstrap("Acme", "root", &hash("admin"), T0).unwrap(),
                Some(OrgId(1))
            );
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version(), SCHEMA_VERSION);
        assert_eq!(
            store
                .bootstrap("Other", "eve", &hash("other"), T0 + 1)
                .unwrap(),
            None
        );
        assert_eq!(store.organisation_name(OrgId(1)).unwrap(), "Acme");
        assert_eq!(actions(&store), ["org.bootstrap"]);
        let admin = store
            .authenticate_technician(&hash("admin"), T0 + 2)
            .unwrap()
            .unwrap();
        assert_eq!((admin.name.as_str(), admin.role), ("root", Role::Admin));
        assert_eq!(
            store
                .authenticate_technician(&hash("other"), T0 + 2)
                .unwrap(),
            None
        );
    }

    #[test]
    fn a_file_backed_store_uses_wal_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        {
            let store = Store::open(&path).unwrap();
            let org = store
                .bootstrap("Acme", "root", &hash("admin"), T0)
                .unwrap()
                .unwrap();
            enroll_token(&store, org, "e1", 1);
            enroll(&store, "e1", "key-1", "laptop-1", 1, T0).unwrap();
            let mode: String = store
                .lock()
                .as_sqlite()
                .unwrap()
                .pragma_query_value(None, "journal_mode", |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
            assert!(dir.path().join("relay.db-wal").exists());
        }
        let store = Store::open(&path).unwrap();
        let devices = store.list_devices(OrgId(1)).unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].hostname, "laptop-1");
        assert_eq!(store.verify_audit_chain().unwrap(), Ok(()));
    }

    #[test]
    fn an_unknown_organisation_is_an_error() {
        let (store, _) = bootstrapped();
        let error = store.organisation_name(OrgId(42)).unwrap_err();
        assert!(
            matches!(error, StoreError::UnknownOrganisation(OrgId(42))),
            "{error}"
        );
    }

    /// Acme has laptop-1, two "shared" machines and a machine whose id has
    /// the high bit set; Globex (org 2) has its own laptop-1.
    pub(super) fn two_orgs() -> (Store, OrgId, OrgId) {
        let (store, acme) = bootstrapped();
        let globex = {
            let conn = store.lock();
            conn.execute(
                "INSERT INTO organisations (name, created_at) VALUES ('Globex', 0)",
                [],
            )
            .unwrap();
            OrgId(conn.last_insert_rowid().unwrap())
        };
        enroll_token(&store, acme, "acme", 10);
        enroll_token(&store, globex, "globex", 10);
        enroll(&store, "acme", "k1", "laptop-1", 0x1234_5678_0000_0001, T0).unwrap();
        enroll(&store, "acme", "k2", "shared", 0x1234_9999_0000_0002, T0).unwrap();
        enroll(&store, "acme", "k3", "SHARED", 0xabcd_0000_0000_0003, T0).unwrap();
        enroll(&store, "acme", "k4", "big", 0xffff_0000_0000_0004, T0).unwrap();
        enroll(
            &store,
            "globex",
            "k5",
            "laptop-1",
            0x5555_0000_0000_0005,
            T0,
        )
        .unwrap();
        enroll(
            &store,
            "globex",
            "k6",
            "globex-only",
            0x6666_0000_0000_0006,
            T0,
        )
        .unwrap();
        (store, acme, globex)
    }

    #[test]
    fn every_mutation_is_audited_without_secrets() {
        let (store, org) = bootstrapped();
        let admin = store
            .authenticate_technician(&hash("admin"), T0)
            .unwrap()
            .unwrap();
        let actor = admin.audit_actor();
        assert_eq!(actor, "technician:1 (root)");
        let token = store
            .create_technician_token(org, "bob", Role::Viewer, &hash("bob"), None, &actor, T0 + 1)
            .unwrap();
        store
            .create_enroll_token(org, &hash("e"), 1, T0 + DAY, Some(admin.id), &actor, T0 + 2)
            .unwrap();
        let device = enroll(&store, "e", "key-1", "pc", 7, T0 + 3).unwrap();
        store
            .attach_device(b"key-1", &info("pc"), "192.0.2.1:1", T0 + 4)
            .unwrap()
            .unwrap();
        store.mark_seen(&[device.id], T0 + 5).unwrap();
        store
            .revoke_technician_token(org, token.id, &actor, T0 + 6)
            .unwrap()
            .expect("not refused");
        store.revoke_device(org, device.id, &actor, T0 + 7).unwrap();
        let consent = serde_json::json!({ "session": "s1", "granted": true });
        let device_actor = device.audit_actor();
        let id = store
            .append_audit(
                Some(org),
                &device_actor,
                "session.consent",
                "session:s1",
                &consent,
                T0 + 8,
            )
            .unwrap();
        assert_eq!(id, 7);

        let entries = store.audit_entries(Some(org), 100).unwrap();
        let got: Vec<(i64, i64, &str, &str, &str)> = entries
            .iter()
            .map(|e| {
                (
                    e.id,
                    e.at,
                    e.actor.as_str(),
                    e.action.as_str(),
                    e.target.as_str(),
                )
            })
            .collect();
        let dev = "device:dev_0000000000000007";
        let admin = "technician:1 (root)";
        let expected = [
            (7, T0 + 8, dev, "session.consent", "session:s1"),
            (6, T0 + 7, admin, "device.revoke", dev),
            (5, T0 + 6, admin, "token.revoke", "token:2"),
            (4, T0 + 3, dev, "device.enroll", dev),
            (3, T0 + 2, admin, "enroll_token.create", "enroll_token:1"),
            (2, T0 + 1, admin, "token.create", "token:2"),
            (1, T0, "system", "org.bootstrap", "org:1"),
        ];
        assert_eq!(got, expected);
        assert_eq!(entries[0].detail, consent);
        assert_eq!(entries[0].org, Some(org));
        let secrets = [hash("admin"), hash("bob"), hash("e")].map(hex::encode);
        for entry in &entries {
            let text = entry.detail.to_string();
            for secret in &secrets {
                assert!(
                    !text.contains(secret.as_str()),
                    "{} leaks a hash",
                    entry.action
                );
            }
        }
        assert_eq!(store.verify_audit_chain().unwrap(), Ok(()));
    }

    /// A store with audit rows 1 (bootstrap) to 4, and its triggers dropped
    /// so that a test can tamper with the log.
    pub(super) fn tamperable() -> Store {
        let (store, org) = bootstrapped();
        for n in 2..=4 {
            let detail = serde_json::json!({ "n": n });
            store
                .append_audit(Some(org), "system", "test", "x", &detail, T0 + n)
                .unwrap();
        }
        assert_eq!(store.verify_audit_chain().unwrap(), Ok(()));
        drop_audit_triggers(&store.lock());
        store
    }

    /// Drops the triggers that keep the audit log append-only, so that a
    /// test can tamper with it.
    pub(super) fn drop_audit_triggers(conn: &Connection) {
        conn.execute_batch(if conn.is_postgres() {
            "DROP TRIGGER audit_no_update ON audit; DROP TRIGGER audit_no_delete ON audit;"
        } else {
            "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;"
        })
        .unwrap();
    }

    /// Runs a test's tampering SQL, written for SQLite, on either backend.
    pub(super) fn tamper_sql(conn: &Connection, sql: &str) {
        let sql = if conn.is_postgres() {
            sql.replace("zeroblob(32)", "decode(repeat('00', 32), 'hex')")
        } else {
            sql.to_owned()
        };
        conn.execute_batch(&sql).unwrap();
    }

    #[test]
    fn a_failed_change_writes_no_audit_row() {
        let (store, org) = bootstrapped();
        let before = snapshot(&store);
        // The admin's token hash is already taken: the insert fails, and the
        // audit row written in the same transaction is rolled back with it.
        let error = store
            .create_technician_token(org, "dup", Role::Viewer, &hash("admin"), None, "system", T0)
            .unwrap_err();
        assert!(matches!(error, StoreError::Database(_)), "{error}");
        let error = store
            .create_enroll_token(OrgId(42), &hash("e"), 1, T0 + DAY, None, "system", T0)
            .unwrap_err();
        assert!(matches!(error, StoreError::Database(_)), "{error}");
        assert_eq!(snapshot(&store), before);
        assert_eq!(store.list_technician_tokens(org).unwrap().len(), 1);
        assert_eq!(store.verify_audit_chain().unwrap(), Ok(()));
    }
}
