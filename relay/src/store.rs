//! The relay's SQLite store: organisations, technician tokens, enrollment
//! tokens, devices, remote sessions (`sessions.rs`) and the append-only
//! audit log.
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
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use serde::{Deserialize, Serialize};
use thiserror::Error;

mod access;
mod audit_chain;
mod recovery;
mod request_stats;
mod requests;
mod sessions;
mod tickets;
mod timeline;

pub use audit_chain::{ChainBreak, ChainCheck, ChainHead};

pub use access::{AccessEnd, EndedSession, ENDED_BY_ADMINISTRATOR};
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

/// How long a statement waits for another connection's lock before failing.
/// Five seconds covers a WAL checkpoint or a backup tool holding the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The `prev_hash` of the first audit row.
const GENESIS_HASH: [u8; 32] = [0; 32];

/// The actor recorded for what the relay does on its own (bootstrap).
pub const SYSTEM_ACTOR: &str = "system";

/// How many candidates an ambiguous device query names before "and N more".
const MAX_CANDIDATES_SHOWN: usize = 10;

/// Schema migrations, in order. Migration `i` (0-based) takes the database
/// from `PRAGMA user_version` `i` to `i + 1`, in one transaction. Append
/// only: never edit a script that has been released.
const MIGRATIONS: &[&str] = &[
    MIGRATION_1,
    MIGRATION_2,
    MIGRATION_3,
    MIGRATION_4,
    timeline::MIGRATION_5,
    requests::MIGRATION_REQUESTS,
    tickets::MIGRATION_TICKETS,
    request_stats::MIGRATION_REQUEST_FACTS,
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Schema version 4: remote sessions.
///
/// A technician token may carry the fingerprint of the key its console uses
/// in end-to-end sessions (agents pin it). A session row follows one request
/// from `requested_at` to the employee's answer (`consent_*`, `granted`) and
/// its end; `ended_at IS NULL` means the relay still considers it open.
/// Session ids are the random `u64` the relay hands out, bit-cast to `i64`;
/// capabilities are the JSON of `deskside_protocol::session::Capabilities`.
const MIGRATION_4: &str = r#"
ALTER TABLE technician_tokens ADD COLUMN session_key BLOB
    CHECK (session_key IS NULL OR length(session_key) = 32);

CREATE TABLE sessions (
    id              INTEGER PRIMARY KEY,
    org_id          INTEGER NOT NULL REFERENCES organisations(id),
    device_id       INTEGER NOT NULL REFERENCES devices(id),
    technician_id   INTEGER NOT NULL REFERENCES technician_tokens(id),
    capabilities    TEXT NOT NULL CHECK (json_valid(capabilities)),
    reason          TEXT NOT NULL,
    requested_at    INTEGER NOT NULL,
    consent_outcome TEXT,
    consent_at      INTEGER,
    granted         TEXT CHECK (granted IS NULL OR json_valid(granted)),
    ended_at        INTEGER,
    ended_by        TEXT
) STRICT;
CREATE INDEX sessions_open ON sessions(id) WHERE ended_at IS NULL;
"#;

/// Schema version 3: device groups, given by the enrollment token.
const MIGRATION_3: &str = r#"
ALTER TABLE enroll_tokens ADD COLUMN device_group TEXT;
ALTER TABLE devices ADD COLUMN device_group TEXT;
"#;

/// Schema version 2: diagnostic snapshots with their verdicts, per device.
/// Snapshots are data, not audit: they may be pruned by retention.
const MIGRATION_2: &str = r#"
CREATE TABLE diagnostics (
    id              INTEGER PRIMARY KEY,
    device_id       INTEGER NOT NULL REFERENCES devices(id),
    org_id          INTEGER NOT NULL REFERENCES organisations(id),
    received_at     INTEGER NOT NULL,
    requested_by    TEXT NOT NULL,
    snapshot        TEXT NOT NULL CHECK (json_valid(snapshot)),
    verdict         TEXT NOT NULL CHECK (json_valid(verdict)),
    primary_segment TEXT
) STRICT;
CREATE INDEX diagnostics_by_device ON diagnostics(device_id, id);
"#;

/// Schema version 1: the first schema.
///
/// Tables are STRICT so that a value of the wrong type is an error rather
/// than silently stored. Device ids are the `u64` of [`DeviceId`] bit-cast to
/// `i64` (SQLite integers are signed).
const MIGRATION_1: &str = r#"
CREATE TABLE organisations (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    settings    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(settings))
) STRICT;

CREATE TABLE technician_tokens (
    id           INTEGER PRIMARY KEY,
    org_id       INTEGER NOT NULL REFERENCES organisations(id),
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('viewer', 'technician', 'admin')),
    token_hash   BLOB NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER
) STRICT;
CREATE INDEX technician_tokens_by_org ON technician_tokens(org_id, id);

CREATE TABLE enroll_tokens (
    id          INTEGER PRIMARY KEY,
    org_id      INTEGER NOT NULL REFERENCES organisations(id),
    token_hash  BLOB NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    uses_left   INTEGER NOT NULL CHECK (uses_left >= 0),
    uses_total  INTEGER NOT NULL CHECK (uses_total >= 0),
    expires_at  INTEGER NOT NULL,
    created_by  INTEGER REFERENCES technician_tokens(id),
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;
CREATE INDEX enroll_tokens_by_org ON enroll_tokens(org_id, id);

CREATE TABLE devices (
    id              INTEGER PRIMARY KEY,
    org_id          INTEGER NOT NULL REFERENCES organisations(id),
    public_key      BLOB NOT NULL UNIQUE CHECK (length(public_key) > 0),
    hostname        TEXT NOT NULL,
    os              TEXT NOT NULL,
    agent_version   TEXT NOT NULL,
    first_seen      INTEGER NOT NULL,
    last_seen       INTEGER NOT NULL,
    last_address    TEXT,
    revoked_at      INTEGER,
    enroll_token_id INTEGER REFERENCES enroll_tokens(id)
) STRICT;
CREATE INDEX devices_by_org_hostname ON devices(org_id, hostname COLLATE NOCASE);

CREATE TABLE audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    org_id    INTEGER REFERENCES organisations(id),
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    detail    TEXT NOT NULL CHECK (json_valid(detail)),
    prev_hash BLOB NOT NULL CHECK (length(prev_hash) = 32),
    hash      BLOB NOT NULL CHECK (length(hash) = 32)
) STRICT;
CREATE INDEX audit_by_org ON audit(org_id, id);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: its rows cannot be changed');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: its rows cannot be deleted');
END;
"#;

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
    /// A schema migration failed; its transaction was rolled back.
    #[error("cannot upgrade the relay database {location} to schema version {version}: {source}; the database was left at the previous version: free disk space if it is full, otherwise report this as a bug")]
    Migration {
        /// The database file, or `:memory:`.
        location: String,
        /// The schema version the failed migration would have reached.
        version: u32,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// A statement failed after the database was opened.
    #[error("the relay database failed: {0}; check free disk space and the database file's permissions, then retry")]
    Sqlite(#[from] rusqlite::Error),
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

/// One row of the audit log (without its hashes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Row id; ids are consecutive from 1.
    pub id: i64,
    /// When it happened, Unix seconds.
    pub at: i64,
    /// The organisation concerned, if any.
    pub org: Option<OrgId>,
    /// Who did it: `technician:3 (alice)`, `device:dev_…`, `system`.
    pub actor: String,
    /// What was done, e.g. `device.enroll`.
    pub action: String,
    /// What it was done to, e.g. `device:dev_…`, `token:3`.
    pub target: String,
    /// Facts about the event; never a secret.
    pub detail: serde_json::Value,
}

/// A stored diagnostic snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDiagnosticsRow {
    /// Row id.
    pub id: i64,
    /// When the relay received it, Unix seconds.
    pub received_at: i64,
    /// The snapshot, JSON.
    pub snapshot_json: String,
    /// The verdict, JSON.
    pub verdict_json: String,
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
        let conn = Connection::open(path).map_err(open_error)?;
        configure(&conn).map_err(open_error)?;
        Store::from_connection(conn, path.display().to_string())
    }

    /// Opens a fresh database in memory, for tests.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let conn = Connection::open_in_memory()?;
        configure(&conn)?;
        Store::from_connection(conn, ":memory:".to_owned())
    }

    fn from_connection(mut conn: Connection, location: String) -> Result<Store, StoreError> {
        migrate(&mut conn, MIGRATIONS, &location)?;
        Ok(Store {
            conn: Mutex::new(conn),
            location,
            request_events: tokio::sync::watch::channel(0).0,
        })
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
        let org = OrgId(tx.last_insert_rowid());
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

    /// Issues a technician token (audited as `token.create`).
    #[allow(clippy::too_many_arguments)] // Each is a distinct column or audit field.
    pub fn create_technician_token(
        &self,
        org: OrgId,
        name: &str,
        role: Role,
        token_hash: &[u8; 32],
        expires_at: Option<i64>,
        actor: &str,
        now: i64,
    ) -> Result<TechnicianTokenInfo, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let id = insert_technician_token(&tx, org, name, role, token_hash, expires_at, now)?;
        insert_audit(
            &tx,
            &NewAudit {
                at: now,
                org: Some(org),
                actor,
                action: "token.create",
                target: &token_target(id),
                detail: &serde_json::json!({
                    "name": name,
                    "role": role.as_str(),
                    "expires_at": expires_at,
                }),
            },
        )?;
        tx.commit()?;
        Ok(TechnicianTokenInfo {
            id: technician_id_from_sql(id),
            name: name.to_owned(),
            role,
            created_at: now,
            expires_at,
            revoked_at: None,
            last_used_at: None,
        })
    }

    /// Finds the technician whose token hashes to `token_hash`, and records
    /// the use in `last_used_at`. `None` if the token is unknown, revoked, or
    /// expired (`expires_at <= now`). Not audited: it happens at every login.
    pub fn authenticate_technician(
        &self,
        token_hash: &[u8; 32],
        now: i64,
    ) -> Result<Option<Technician>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = tx
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM technician_tokens WHERE token_hash = ?1"),
                [&token_hash[..]],
                TokenRow::from_row,
            )
            .optional()?;
        let Some(row) = found else {
            return Ok(None);
        };
        let (org, info) = row.decode()?;
        let expired = info.expires_at.is_some_and(|expires_at| expires_at <= now);
        if info.revoked_at.is_some() || expired {
            return Ok(None);
        }
        tx.execute(
            "UPDATE technician_tokens SET last_used_at = ?1 WHERE id = ?2",
            params![now, technician_id_to_sql(info.id)],
        )?;
        tx.commit()?;
        Ok(Some(Technician {
            id: info.id,
            org,
            name: info.name,
            role: info.role,
        }))
    }

    /// The organisation's technician tokens, oldest first, including revoked
    /// and expired ones.
    pub fn list_technician_tokens(
        &self,
        org: OrgId,
    ) -> Result<Vec<TechnicianTokenInfo>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare(&format!(
            "SELECT {TOKEN_COLUMNS} FROM technician_tokens WHERE org_id = ?1 ORDER BY id"
        ))?;
        let rows = statement.query_map([org.0], TokenRow::from_row)?;
        let mut tokens = Vec::new();
        for row in rows {
            tokens.push(row?.decode()?.1);
        }
        Ok(tokens)
    }

    /// Issues an enrollment token for `uses` enrollments until `expires_at`
    /// (audited as `enroll_token.create`; the audit row never holds the
    /// secret or its hash).
    #[allow(clippy::too_many_arguments)] // Each is a distinct column or audit field.
    pub fn create_enroll_token(
        &self,
        org: OrgId,
        token_hash: &[u8; 32],
        uses: u32,
        expires_at: i64,
        created_by: Option<TechnicianId>,
        actor: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.create_enroll_token_in_group(
            org, token_hash, uses, expires_at, created_by, None, actor, now,
        )
    }

    /// Like [`Store::create_enroll_token`]; devices enrolled with the token
    /// join `group`.
    #[allow(clippy::too_many_arguments)]
    pub fn create_enroll_token_in_group(
        &self,
        org: OrgId,
        token_hash: &[u8; 32],
        uses: u32,
        expires_at: i64,
        created_by: Option<TechnicianId>,
        group: Option<&str>,
        actor: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO enroll_tokens
                 (org_id, token_hash, uses_left, uses_total, expires_at, created_by, created_at, device_group)
             VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7)",
            params![
                org.0,
                &token_hash[..],
                uses,
                expires_at,
                created_by.map(technician_id_to_sql),
                now,
                group
            ],
        )?;
        let id = tx.last_insert_rowid();
        insert_audit(
            &tx,
            &NewAudit {
                at: now,
                org: Some(org),
                actor,
                action: "enroll_token.create",
                target: &format!("enroll_token:{id}"),
                detail: &serde_json::json!({
                    "uses": uses,
                    "expires_at": expires_at,
                    "created_by": created_by.map(|technician| technician.0),
                    "group": group,
                }),
            },
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Enrolls a device with an enrollment token, in one transaction.
    ///
    /// Refusals, checked in this order: unknown or revoked token →
    /// `EnrollTokenInvalid`; no uses left → `EnrollTokenUsedUp`;
    /// `expires_at <= now` → `EnrollTokenExpired`; `public_key` already
    /// belongs to a device (even a revoked one) → `AlreadyEnrolled`. A
    /// refusal changes nothing and writes no audit row.
    ///
    /// On success the token loses one use, the device is stored with
    /// `first_seen = last_seen = now`, `device.enroll` is audited, and the
    /// record is returned with its organisation's name. `new_id` is chosen
    /// at random by the caller; the astronomically unlikely collision with
    /// an existing id is a `StoreError::Sqlite` (constraint), after which the
    /// caller may retry with another id.
    pub fn enroll_device(
        &self,
        token_hash: &[u8; 32],
        public_key: &[u8],
        info: &DeviceInfo,
        address: &str,
        new_id: DeviceId,
        now: i64,
    ) -> Result<Result<(DeviceRecord, String), Refusal>, StoreError> {
        let mut conn = self.lock();
        // IMMEDIATE takes the write lock first, so two agents racing for a
        // token's last use cannot both read `uses_left = 1`.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let token = tx
            .query_row(
                "SELECT id, org_id, uses_left, expires_at, revoked_at
                 FROM enroll_tokens WHERE token_hash = ?1",
                [&token_hash[..]],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        OrgId(row.get(1)?),
                        row.get::<_, i64>(2)?,
                        row.get::<_, i64>(3)?,
                        row.get::<_, Option<i64>>(4)?,
                    ))
                },
            )
            .optional()?;
        let Some((token_id, org, uses_left, expires_at, revoked_at)) = token else {
            return Ok(Err(Refusal::EnrollTokenInvalid));
        };
        if revoked_at.is_some() {
            return Ok(Err(Refusal::EnrollTokenInvalid));
        }
        // The same key retrying the same token (its agent lost the answer,
        // or crashed before keeping its files) gets the same device and
        // spends no second use: checked before the uses and the expiry.
        let retried = tx
            .query_row(
                &format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices
                     WHERE public_key = ?1 AND enroll_token_id = ?2 AND revoked_at IS NULL"
                ),
                params![public_key, token_id],
                device_from_row,
            )
            .optional()?;
        if let Some(device) = retried {
            let org_name: String = tx.query_row(
                "SELECT name FROM organisations WHERE id = ?1",
                [device.org.0],
                |row| row.get(0),
            )?;
            return Ok(Ok((device, org_name)));
        }
        if uses_left <= 0 {
            return Ok(Err(Refusal::EnrollTokenUsedUp));
        }
        if expires_at <= now {
            return Ok(Err(Refusal::EnrollTokenExpired));
        }
        let key_taken: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM devices WHERE public_key = ?1)",
            [public_key],
            |row| row.get(0),
        )?;
        if key_taken {
            return Ok(Err(Refusal::AlreadyEnrolled));
        }
        let address = &address_to_store(&tx, org, address)?;
        tx.execute(
            "UPDATE enroll_tokens SET uses_left = uses_left - 1 WHERE id = ?1",
            [token_id],
        )?;
        tx.execute(
            "INSERT INTO devices (id, org_id, public_key, hostname, os, agent_version,
                                  first_seen, last_seen, last_address, enroll_token_id, device_group)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9,
                     (SELECT device_group FROM enroll_tokens WHERE id = ?9))",
            params![
                device_id_to_sql(new_id),
                org.0,
                public_key,
                info.hostname,
                info.os,
                info.agent_version,
                now,
                address,
                token_id
            ],
        )?;
        let org_name: String = tx.query_row(
            "SELECT name FROM organisations WHERE id = ?1",
            [org.0],
            |row| row.get(0),
        )?;
        let target = device_target(new_id);
        insert_audit(
            &tx,
            &NewAudit {
                at: now,
                org: Some(org),
                actor: &target,
                action: "device.enroll",
                target: &target,
                detail: &serde_json::json!({
                    "hostname": info.hostname,
                    "os": info.os,
                    "agent_version": info.agent_version,
                    "address": address,
                    "enroll_token_id": token_id,
                }),
            },
        )?;
        let group: Option<String> = tx.query_row(
            "SELECT device_group FROM devices WHERE id = ?1",
            [device_id_to_sql(new_id)],
            |row| row.get(0),
        )?;
        tx.commit()?;
        let record = DeviceRecord {
            group,
            id: new_id,
            org,
            public_key: public_key.to_vec(),
            hostname: info.hostname.clone(),
            os: info.os.clone(),
            agent_version: info.agent_version.clone(),
            first_seen: now,
            last_seen: now,
            last_address: Some(address.to_owned()),
            revoked_at: None,
        };
        Ok(Ok((record, org_name)))
    }

    /// Attaches a connection to the device enrolled with `public_key`:
    /// refreshes what the agent reports, `last_seen` and `last_address`, and
    /// returns the updated record. Unknown key → `DeviceUnknown`; revoked
    /// device → `DeviceRevoked` (nothing is updated). Not audited: presence
    /// is too frequent.
    pub fn attach_device(
        &self,
        public_key: &[u8],
        info: &DeviceInfo,
        address: &str,
        now: i64,
    ) -> Result<Result<DeviceRecord, Refusal>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = tx
            .query_row(
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE public_key = ?1"),
                [public_key],
                device_from_row,
            )
            .optional()?;
        let Some(mut device) = found else {
            return Ok(Err(Refusal::DeviceUnknown));
        };
        if device.revoked_at.is_some() {
            return Ok(Err(Refusal::DeviceRevoked));
        }
        let address = &address_to_store(&tx, device.org, address)?;
        tx.execute(
            // At least a second after enrollment: `last_seen = first_seen`
            // marks a device that never attached (an orphan, see
            // `remove_orphan_devices`), even when it attaches in the second
            // it enrolled.
            "UPDATE devices SET hostname = ?1, os = ?2, agent_version = ?3,
                                last_seen = max(?4, first_seen + 1), last_address = ?5
             WHERE id = ?6",
            params![
                info.hostname,
                info.os,
                info.agent_version,
                now,
                address,
                device_id_to_sql(device.id)
            ],
        )?;
        tx.commit()?;
        device.hostname.clone_from(&info.hostname);
        device.os.clone_from(&info.os);
        device.agent_version.clone_from(&info.agent_version);
        device.last_seen = now.max(device.first_seen + 1);
        device.last_address = Some(address.to_owned());
        Ok(Ok(device))
    }

    /// Enrolled devices not revoked, in every organisation: the fleet a
    /// restarted relay expects back.
    pub fn active_device_count(&self) -> Result<usize, StoreError> {
        let count: i64 = self.lock().query_row(
            "SELECT count(*) FROM devices WHERE revoked_at IS NULL",
            [],
            |row| row.get(0),
        )?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    /// Stores a diagnostic snapshot and its verdict (both JSON text) and
    /// audits the collection as `diagnostics.collect` (actor
    /// `requested_by`, what was measured), then keeps only the newest
    /// `keep` snapshots of that device. Returns the new row's id.
    #[allow(clippy::too_many_arguments)]
    pub fn insert_diagnostics(
        &self,
        org: OrgId,
        device: DeviceId,
        requested_by: &str,
        snapshot_json: &str,
        verdict_json: &str,
        primary_segment: Option<&str>,
        keep: u32,
        now: i64,
    ) -> Result<i64, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO diagnostics (device_id, org_id, received_at, requested_by, snapshot, verdict, primary_segment)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                device_id_to_sql(device),
                org.0,
                now,
                requested_by,
                snapshot_json,
                verdict_json,
                primary_segment
            ],
        )?;
        let id = tx.last_insert_rowid();
        insert_audit(
            &tx,
            &NewAudit {
                at: now,
                org: Some(org),
                actor: requested_by,
                action: "diagnostics.collect",
                target: &device_target(device),
                detail: &collected_detail(id, snapshot_json),
            },
        )?;
        tx.execute(
            "DELETE FROM diagnostics WHERE device_id = ?1 AND id NOT IN
               (SELECT id FROM diagnostics WHERE device_id = ?1 ORDER BY id DESC LIMIT ?2)",
            params![device_id_to_sql(device), i64::from(keep.max(1))],
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// The newest `limit` stored snapshots of `device`, newest first.
    pub fn diagnostics_history(
        &self,
        org: OrgId,
        device: DeviceId,
        limit: u32,
    ) -> Result<Vec<StoredDiagnosticsRow>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare(
            "SELECT id, received_at, snapshot, verdict FROM diagnostics
             WHERE org_id = ?1 AND device_id = ?2 ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = statement.query_map(
            params![org.0, device_id_to_sql(device), i64::from(limit)],
            |row| {
                Ok(StoredDiagnosticsRow {
                    id: row.get(0)?,
                    received_at: row.get(1)?,
                    snapshot_json: row.get(2)?,
                    verdict_json: row.get(3)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The enrolled, unrevoked device owning `public_key`, without changing
    /// anything (measurement connections authenticate this way).
    pub fn device_by_key(
        &self,
        public_key: &[u8],
    ) -> Result<Result<DeviceRecord, Refusal>, StoreError> {
        let conn = self.lock();
        let found = conn
            .query_row(
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE public_key = ?1"),
                [public_key],
                device_from_row,
            )
            .optional()?;
        Ok(match found {
            None => Err(Refusal::DeviceUnknown),
            Some(device) if device.revoked_at.is_some() => Err(Refusal::DeviceRevoked),
            Some(device) => Ok(device),
        })
    }

    /// Sets `last_seen = now` for the given devices, in one transaction.
    /// Unknown ids are ignored, and `last_seen` never moves backwards.
    pub fn mark_seen(&self, ids: &[DeviceId], now: i64) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut statement =
                tx.prepare("UPDATE devices SET last_seen = max(last_seen, ?1) WHERE id = ?2")?;
            for id in ids {
                statement.execute(params![now, device_id_to_sql(*id)])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The organisation's devices, revoked ones included, ordered by host
    /// name (case-insensitively) then id.
    pub fn list_devices(&self, org: OrgId) -> Result<Vec<DeviceRecord>, StoreError> {
        let conn = self.lock();
        let mut devices = query_devices(&conn, "org_id = ?1", params![org.0])?;
        // Sorted here rather than in SQL so that ids sort as the unsigned
        // numbers they are, not as their bit-cast signed storage.
        devices.sort_by(|a, b| {
            (a.hostname.to_lowercase(), a.id).cmp(&(b.hostname.to_lowercase(), b.id))
        });
        Ok(devices)
    }

    /// Finds one device of `org` from what a technician typed.
    ///
    /// Tried in order: an exact id (`dev_` and 16 hex digits); a unique id
    /// prefix of at least `dev_` and 4 hex digits; a unique host name,
    /// compared case-insensitively (ASCII, as host names are). When a prefix
    /// or host name matches several devices and exactly one of them is not
    /// revoked, that one is chosen: a re-enrolled machine keeps its name.
    /// Otherwise several matches → `Refusal::Invalid` naming them, none →
    /// `Refusal::NotFound`. Devices of other organisations never match.
    pub fn find_device(
        &self,
        org: OrgId,
        query: &str,
    ) -> Result<Result<DeviceRecord, Refusal>, StoreError> {
        let query = query.trim();
        let conn = self.lock();
        let lower = query.to_ascii_lowercase();
        if let Ok(id) = lower.parse::<DeviceId>() {
            let mut found = query_devices(
                &conn,
                "org_id = ?1 AND id = ?2",
                params![org.0, device_id_to_sql(id)],
            )?;
            if let Some(device) = found.pop() {
                return Ok(Ok(device));
            }
        }
        if let Some((low, high)) = id_prefix_range(&lower) {
            let candidates = query_devices(
                &conn,
                "org_id = ?1 AND id BETWEEN ?2 AND ?3",
                params![org.0, device_id_to_sql(low), device_id_to_sql(high)],
            )?;
            if let Some(choice) = choose_device(query, candidates) {
                return Ok(choice);
            }
        }
        let candidates = query_devices(
            &conn,
            "org_id = ?1 AND hostname = ?2 COLLATE NOCASE",
            params![org.0, query],
        )?;
        if let Some(choice) = choose_device(query, candidates) {
            return Ok(choice);
        }
        Ok(Err(Refusal::NotFound(format!(
            "no device matches \"{query}\": list devices with `deskside devices list`"
        ))))
    }

    /// Revokes a device of `org` (audited as `device.revoke`); it can no
    /// longer attach. `None` if the organisation has no such device.
    /// Revoking a revoked device keeps the first `revoked_at` and writes no
    /// second audit row.
    pub fn revoke_device(
        &self,
        org: OrgId,
        id: DeviceId,
        actor: &str,
        now: i64,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE devices SET revoked_at = ?1
             WHERE id = ?2 AND org_id = ?3 AND revoked_at IS NULL",
            params![now, device_id_to_sql(id), org.0],
        )?;
        let mut found = query_devices(
            &tx,
            "org_id = ?1 AND id = ?2",
            params![org.0, device_id_to_sql(id)],
        )?;
        let Some(device) = found.pop() else {
            return Ok(None);
        };
        if changed > 0 {
            insert_audit(
                &tx,
                &NewAudit {
                    at: now,
                    org: Some(org),
                    actor,
                    action: "device.revoke",
                    target: &device_target(id),
                    detail: &serde_json::json!({ "hostname": device.hostname }),
                },
            )?;
        }
        tx.commit()?;
        Ok(Some(device))
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

    /// Appends an event the relay records itself (for example a session's
    /// consent) and returns its row id.
    pub fn append_audit(
        &self,
        org: Option<OrgId>,
        actor: &str,
        action: &str,
        target: &str,
        detail: &serde_json::Value,
        now: i64,
    ) -> Result<i64, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let id = insert_audit(
            &tx,
            &NewAudit {
                at: now,
                org,
                actor,
                action,
                target,
                detail,
            },
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// The newest `limit` audit rows, newest first: those of `org` when it
    /// is `Some`, the whole log (every organisation and the relay's own
    /// events) when it is `None`.
    pub fn audit_entries(
        &self,
        org: Option<OrgId>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare(
            "SELECT id, at, org_id, actor, action, target, detail FROM audit
             WHERE ?1 IS NULL OR org_id = ?1
             ORDER BY id DESC LIMIT ?2",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = statement.query_map(params![org.map(|org| org.0), limit], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, Option<i64>>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, String>(5)?,
                row.get::<_, String>(6)?,
            ))
        })?;
        let mut entries = Vec::new();
        for row in rows {
            let (id, at, org, actor, action, target, detail) = row?;
            let detail = serde_json::from_str(&detail).map_err(|error| {
                StoreError::Corrupt(format!(
                    "audit row {id} has a detail that is not JSON: {error}"
                ))
            })?;
            entries.push(AuditRecord {
                id,
                at,
                org: org.map(OrgId),
                actor,
                action,
                target,
                detail,
            });
        }
        Ok(entries)
    }

    /// The newest `limit` audit rows of `org`, newest first; with `target`,
    /// only rows whose target is exactly that (e.g. a device's
    /// [`DeviceRecord::audit_actor`]).
    pub fn audit_entries_about(
        &self,
        org: OrgId,
        target: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare(
            "SELECT id, at, org_id, actor, action, target, detail FROM audit
             WHERE org_id = ?1 AND (?2 IS NULL OR target = ?2)
             ORDER BY id DESC LIMIT ?3",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = statement.query_map(params![org.0, target, limit], audit_from_row)?;
        let mut entries = Vec::new();
        for row in rows {
            entries.push(row?.decode()?);
        }
        Ok(entries)
    }

    /// Recomputes the audit chain from the first row. `Ok(Err(id))` names
    /// the first row that does not verify: its contents or hashes were
    /// changed, a row before it was removed (ids must be consecutive from 1),
    /// or a row before it was changed and its hash recomputed.
    ///
    /// Removing the newest rows cannot be detected by the chain alone until
    /// a new row is appended (its id then leaves a gap); keep the newest
    /// hash elsewhere (e.g. in logs) to detect that too.
    pub fn verify_audit_chain(&self) -> Result<Result<(), i64>, StoreError> {
        Ok(match self.check_audit_chain()?.broken {
            Some(ChainBreak { id, .. }) => Err(id),
            None => Ok(()),
        })
    }
}

/// Applies the connection settings every database gets.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
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

/// Brings the schema to `migrations.len()`, one transaction per migration.
///
/// The version is read inside each IMMEDIATE transaction, so two relays
/// opening the same new file cannot both apply the same migration.
fn migrate(conn: &mut Connection, migrations: &[&str], location: &str) -> Result<(), StoreError> {
    let known = u32::try_from(migrations.len()).unwrap_or(u32::MAX);
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let found = u32::try_from(found).map_err(|_| {
            StoreError::Corrupt(format!("the schema version (user_version) is {found}"))
        })?;
        if found > known {
            return Err(StoreError::TooNew { found, known });
        }
        let Some(script) = migrations.get(found as usize) else {
            return Ok(());
        };
        let version = found + 1;
        let migration_error = |source| StoreError::Migration {
            location: location.to_owned(),
            version,
            source,
        };
        tx.execute_batch(script).map_err(migration_error)?;
        tx.pragma_update(None, "user_version", i64::from(version))
            .map_err(migration_error)?;
        tx.commit().map_err(migration_error)?;
        tracing::info!(database = location, version, "migrated the relay database");
    }
}

/// `address` as `org`'s policy allows it to be stored: public addresses
/// truncated unless `store_full_ip_addresses` (see `ip_privacy`).
fn address_to_store(conn: &Connection, org: OrgId, address: &str) -> Result<String, StoreError> {
    let settings: String = conn
        .query_row(
            "SELECT settings FROM organisations WHERE id = ?1",
            [org.0],
            |row| row.get(0),
        )
        .optional()?
        .unwrap_or_default();
    Ok(crate::ip_privacy::address_to_store(&settings, address))
}

/// A new audit row, before its id and hashes are known.
struct NewAudit<'a> {
    at: i64,
    org: Option<OrgId>,
    actor: &'a str,
    action: &'a str,
    target: &'a str,
    detail: &'a serde_json::Value,
}

/// Inserts a technician token row and returns its id: the one statement
/// every way of issuing a token (first start, `tokens create`, recovery)
/// goes through.
fn insert_technician_token(
    conn: &Connection,
    org: OrgId,
    name: &str,
    role: Role,
    token_hash: &[u8; 32],
    expires_at: Option<i64>,
    now: i64,
) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO technician_tokens (org_id, name, role, token_hash, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![org.0, name, role.as_str(), &token_hash[..], now, expires_at],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Appends an audit row inside the caller's transaction, chaining it to the
/// newest row, and returns its id.
///
/// The id is chosen here (rather than left to SQLite) because the hash covers
/// it. It is one more than the largest id ever used (`sqlite_sequence`, kept
/// by AUTOINCREMENT), so ids are never reused even if rows were removed by
/// someone bypassing the triggers; the gap then shows in verification.
fn insert_audit(conn: &Connection, entry: &NewAudit<'_>) -> Result<i64, StoreError> {
    let last_used: Option<i64> = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'audit'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    let id = last_used.unwrap_or(0) + 1;
    let prev_hash: Vec<u8> = conn
        .query_row(
            "SELECT hash FROM audit ORDER BY id DESC LIMIT 1",
            [],
            |row| row.get(0),
        )
        .optional()?
        .unwrap_or_else(|| GENESIS_HASH.to_vec());
    let detail = entry.detail.to_string();
    let fields = AuditFields {
        id,
        at: entry.at,
        org: entry.org.map(|org| org.0),
        actor: entry.actor,
        action: entry.action,
        target: entry.target,
        detail: &detail,
    };
    let hash = fields.hash(&prev_hash);
    conn.execute(
        "INSERT INTO audit (id, at, org_id, actor, action, target, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            id,
            fields.at,
            fields.org,
            fields.actor,
            fields.action,
            fields.target,
            fields.detail,
            prev_hash,
            hash
        ],
    )?;
    Ok(id)
}

/// An audit row as read, before its detail is parsed (parsing can fail with
/// [`StoreError::Corrupt`], which a row-mapping closure cannot return).
struct AuditRow {
    id: i64,
    at: i64,
    org: Option<i64>,
    actor: String,
    action: String,
    target: String,
    detail: String,
}

/// Reads `id, at, org_id, actor, action, target, detail`.
fn audit_from_row(row: &Row<'_>) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        id: row.get(0)?,
        at: row.get(1)?,
        org: row.get(2)?,
        actor: row.get(3)?,
        action: row.get(4)?,
        target: row.get(5)?,
        detail: row.get(6)?,
    })
}

impl AuditRow {
    fn decode(self) -> Result<AuditRecord, StoreError> {
        let detail = serde_json::from_str(&self.detail).map_err(|error| {
            StoreError::Corrupt(format!(
                "audit row {} has a detail that is not JSON: {error}",
                self.id
            ))
        })?;
        Ok(AuditRecord {
            id: self.id,
            at: self.at,
            org: self.org.map(OrgId),
            actor: self.actor,
            action: self.action,
            target: self.target,
            detail,
        })
    }
}

/// The columns of an audit row that its hash covers, as stored.
struct AuditFields<'a> {
    id: i64,
    at: i64,
    org: Option<i64>,
    actor: &'a str,
    action: &'a str,
    target: &'a str,
    /// The JSON text exactly as stored, so verification never re-serialises.
    detail: &'a str,
}

impl AuditFields<'_> {
    /// The row's hash, chained to `prev_hash`.
    ///
    /// Exact encoding (changing it invalidates every existing chain):
    ///
    /// ```text
    /// hash = SHA-256( prev_hash                      -- 32 raw bytes
    ///               || F(id) || F(at) || F(org_id)
    ///               || F(actor) || F(action) || F(target) || F(detail) )
    /// F(value) = len || bytes, where len is the byte count as a u64, big-endian
    ///   integer: bytes = 8-byte big-endian two's complement (len = 8)
    ///   text:    bytes = its UTF-8, exactly as stored
    ///   NULL:    len = u64::MAX and no bytes (only org_id can be NULL)
    /// ```
    ///
    /// The length prefixes make the encoding unambiguous: no two different
    /// rows encode to the same bytes.
    fn hash(&self, prev_hash: &[u8]) -> Vec<u8> {
        fn field(context: &mut digest::Context, bytes: &[u8]) {
            // usize → u64 is lossless on every platform Rust supports.
            context.update(&(bytes.len() as u64).to_be_bytes());
            context.update(bytes);
        }
        let mut context = digest::Context::new(&digest::SHA256);
        context.update(prev_hash);
        field(&mut context, &self.id.to_be_bytes());
        field(&mut context, &self.at.to_be_bytes());
        match self.org {
            Some(org) => field(&mut context, &org.to_be_bytes()),
            None => context.update(&u64::MAX.to_be_bytes()),
        }
        field(&mut context, self.actor.as_bytes());
        field(&mut context, self.action.as_bytes());
        field(&mut context, self.target.as_bytes());
        field(&mut context, self.detail.as_bytes());
        context.finish().as_ref().to_vec()
    }
}

/// Columns read by [`TokenRow::from_row`].
const TOKEN_COLUMNS: &str =
    "id, org_id, name, role, created_at, expires_at, revoked_at, last_used_at";

/// A technician token row whose role is not decoded yet (decoding can fail
/// with [`StoreError::Corrupt`], which a row-mapping closure cannot return).
struct TokenRow {
    id: i64,
    org: OrgId,
    name: String,
    role: String,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
}

impl TokenRow {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<TokenRow> {
        Ok(TokenRow {
            id: row.get(0)?,
            org: OrgId(row.get(1)?),
            name: row.get(2)?,
            role: row.get(3)?,
            created_at: row.get(4)?,
            expires_at: row.get(5)?,
            revoked_at: row.get(6)?,
            last_used_at: row.get(7)?,
        })
    }

    fn decode(self) -> Result<(OrgId, TechnicianTokenInfo), StoreError> {
        let role = self.role.parse::<Role>().map_err(|error| {
            StoreError::Corrupt(format!("technician token {}: {error}", self.id))
        })?;
        let info = TechnicianTokenInfo {
            id: technician_id_from_sql(self.id),
            name: self.name,
            role,
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            last_used_at: self.last_used_at,
        };
        Ok((self.org, info))
    }
}

/// Columns read by [`device_from_row`].
const DEVICE_COLUMNS: &str = "id, org_id, public_key, hostname, os, agent_version, \
     first_seen, last_seen, last_address, revoked_at, device_group";

fn device_from_row(row: &Row<'_>) -> rusqlite::Result<DeviceRecord> {
    Ok(DeviceRecord {
        id: device_id_from_sql(row.get(0)?),
        org: OrgId(row.get(1)?),
        public_key: row.get(2)?,
        hostname: row.get(3)?,
        os: row.get(4)?,
        agent_version: row.get(5)?,
        first_seen: row.get(6)?,
        last_seen: row.get(7)?,
        last_address: row.get(8)?,
        revoked_at: row.get(9)?,
        group: row.get(10)?,
    })
}

/// Devices matching a `WHERE` clause written in this module (never user
/// text: user values go in `params`).
fn query_devices(
    conn: &Connection,
    condition: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<DeviceRecord>, StoreError> {
    let mut statement = conn.prepare(&format!(
        "SELECT {DEVICE_COLUMNS} FROM devices WHERE {condition}"
    ))?;
    let rows = statement.query_map(params, device_from_row)?;
    let mut devices = Vec::new();
    for row in rows {
        devices.push(row?);
    }
    Ok(devices)
}

/// The inclusive id range covered by a lower-case prefix such as `dev_1a2b`,
/// or `None` if `text` is not `dev_` followed by 4 to 15 hex digits.
///
/// The range never straddles the sign bit (the first hex digit fixes it), so
/// it stays one contiguous range after the bit-cast to `i64`.
fn id_prefix_range(text: &str) -> Option<(DeviceId, DeviceId)> {
    let digits = text.strip_prefix("dev_")?;
    if !(4..16).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let prefix = u64::from_str_radix(digits, 16).ok()?;
    let free_bits = 4 * (16 - digits.len() as u32);
    let low = prefix << free_bits;
    let high = low | ((1_u64 << free_bits) - 1);
    Some((DeviceId(low), DeviceId(high)))
}

/// Picks the device a query means among its matches; `None` if there are
/// none. See [`Store::find_device`] for the rules.
fn choose_device(
    query: &str,
    mut candidates: Vec<DeviceRecord>,
) -> Option<Result<DeviceRecord, Refusal>> {
    if candidates.len() <= 1 {
        return candidates.pop().map(Ok);
    }
    let active: Vec<&DeviceRecord> = candidates
        .iter()
        .filter(|device| device.revoked_at.is_none())
        .collect();
    if let [only] = active.as_slice() {
        return Some(Ok((*only).clone()));
    }
    let mut shown: Vec<&DeviceRecord> = if active.is_empty() {
        candidates.iter().collect()
    } else {
        active
    };
    shown.sort_by_key(|device| device.id);
    let count = shown.len();
    let mut names: Vec<String> = shown
        .iter()
        .take(MAX_CANDIDATES_SHOWN)
        .map(|device| format!("{} ({})", device.id, device.hostname))
        .collect();
    if count > MAX_CANDIDATES_SHOWN {
        names.push(format!("and {} more", count - MAX_CANDIDATES_SHOWN));
    }
    Some(Err(Refusal::Invalid(format!(
        "\"{query}\" matches {count} devices: {}; name one by its id",
        names.join(", ")
    ))))
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

/// What a stored snapshot holds, for its `diagnostics.collect` audit row:
/// the measured sections and whether the speed test ran.
fn collected_detail(snapshot_id: i64, snapshot_json: &str) -> serde_json::Value {
    const SECTIONS: [&str; 7] = [
        "device", "network", "wifi", "gateway", "dns", "clock", "path",
    ];
    let snapshot: serde_json::Value =
        serde_json::from_str(snapshot_json).unwrap_or(serde_json::Value::Null);
    let measured: Vec<&str> = SECTIONS
        .into_iter()
        .filter(|section| snapshot[section].get("measured").is_some())
        .collect();
    let throughput = snapshot["path"]["measured"]["download"]
        .get("measured")
        .is_some()
        || snapshot["path"]["measured"]["upload"]
            .get("measured")
            .is_some();
    serde_json::json!({
        "snapshot_id": snapshot_id,
        "collected": measured,
        "throughput": throughput,
    })
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
    const DAY: i64 = 86_400;

    pub(super) fn hash(secret: &str) -> [u8; 32] {
        let mut out = [0; 32];
        out.copy_from_slice(digest::digest(&digest::SHA256, secret.as_bytes()).as_ref());
        out
    }

    fn info(hostname: &str) -> DeviceInfo {
        DeviceInfo {
            hostname: hostname.to_owned(),
            os: "Debian GNU/Linux 12".to_owned(),
            agent_version: "0.1.0".to_owned(),
        }
    }

    /// A store with one organisation ("Acme") whose admin token is "admin".
    pub(super) fn bootstrapped() -> (Store, OrgId) {
        let store = Store::open_in_memory().unwrap();
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
    fn snapshot(store: &Store) -> (Vec<(i64, i64)>, i64, i64) {
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

    fn actions(store: &Store) -> Vec<String> {
        let entries = store.audit_entries(None, 100).unwrap();
        entries
            .into_iter()
            .rev()
            .map(|entry| entry.action)
            .collect()
    }

    #[test]
    fn diagnostics_are_stored_listed_newest_first_and_pruned_per_device() {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "enroll", 2);
        let device = enroll(&store, "enroll", "key-a", "laptop", 1, T0).unwrap();
        let other = enroll(&store, "enroll", "key-b", "desktop", 2, T0).unwrap();
        for n in 0..5 {
            let snapshot = format!("{{\"n\":{n}}}");
            store
                .insert_diagnostics(org, device.id, "t", &snapshot, "{}", Some("isp"), 3, T0 + n)
                .unwrap();
        }
        store
            .insert_diagnostics(org, other.id, "t", "{}", "{}", None, 3, T0)
            .unwrap();
        let history = store.diagnostics_history(org, device.id, 10).unwrap();
        let kept: Vec<&str> = history.iter().map(|r| r.snapshot_json.as_str()).collect();
        assert_eq!(
            kept,
            ["{\"n\":4}", "{\"n\":3}", "{\"n\":2}"],
            "newest 3 kept"
        );
        assert_eq!(
            store.diagnostics_history(org, other.id, 10).unwrap().len(),
            1
        );
        assert_eq!(
            store.diagnostics_history(org, device.id, 1).unwrap().len(),
            1
        );
        assert!(store
            .insert_diagnostics(org, device.id, "t", "not json", "{}", None, 3, T0)
            .is_err());
    }

    #[test]
    fn every_stored_collection_is_audited_with_who_and_what() {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "enroll", 1);
        let device = enroll(&store, "enroll", "key-a", "laptop", 1, T0).unwrap();
        let snapshot = r#"{"device":{"measured":{}},"wifi":{"unknown":"no radio"},
            "path":{"measured":{"download":{"measured":{"mbit_per_s":50.0}},"upload":{"unknown":"x"}}}}"#;
        let id = store
            .insert_diagnostics(
                org,
                device.id,
                "technician:2 (ana)",
                snapshot,
                "{}",
                None,
                3,
                T0,
            )
            .unwrap();
        let row = store.audit_entries(Some(org), 1).unwrap().remove(0);
        assert_eq!(row.action, "diagnostics.collect");
        assert_eq!(row.actor, "technician:2 (ana)");
        assert_eq!(row.target, format!("device:{}", device.id));
        assert_eq!(
            row.detail,
            serde_json::json!({"snapshot_id": id, "collected": ["device", "path"], "throughput": true})
        );
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

    #[test]
    fn devices_join_the_group_of_their_enrollment_token() {
        let (store, org) = bootstrapped();
        store
            .create_enroll_token_in_group(
                org,
                &hash("paris"),
                1,
                T0 + DAY,
                None,
                Some("paris"),
                "t",
                T0,
            )
            .unwrap();
        enroll_token(&store, org, "plain", 1);
        let grouped = enroll(&store, "paris", "k1", "a", 1, T0).unwrap();
        let plain = enroll(&store, "plain", "k2", "b", 2, T0).unwrap();
        assert_eq!(grouped.group.as_deref(), Some("paris"));
        assert_eq!(plain.group, None);
        let listed = store.list_devices(org).unwrap();
        let groups: Vec<_> = listed.iter().map(|d| d.group.clone()).collect();
        assert_eq!(
            groups,
            [Some("paris".to_owned()), None],
            "listed by hostname"
        );
        assert_eq!(grouped.summary(true).group.as_deref(), Some("paris"));
    }

    #[test]
    fn store_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Store>();
    }

    #[test]
    fn migrations_create_the_schema_from_empty() {
        let store = Store::open_in_memory().unwrap();
        assert_eq!(store.schema_version(), 8);
        assert_eq!(SCHEMA_VERSION, 8);
        let conn = store.lock();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, 8);
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            tables,
            [
                "audit",
                "devices",
                "diagnostics",
                "enroll_tokens",
                "organisations",
                "request_events",
                "request_findings",
                "request_sessions",
                "request_tickets",
                "requests",
                "sessions",
                "sqlite_sequence",
                "technician_tokens",
                "ticket_cursors",
                "ticket_deliveries",
                "timeline"
            ]
        );
        let foreign_keys: i64 = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert_eq!(foreign_keys, 1);
    }

    #[test]
    fn a_failed_migration_leaves_the_previous_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        let broken = [
            "CREATE TABLE first (id INTEGER);",
            "CREATE TABLE second (id INTEGER); THIS IS NOT SQL;",
        ];
        let error = migrate(&mut conn, &broken, ":memory:").unwrap_err();
        assert!(
            matches!(error, StoreError::Migration { version: 2, .. }),
            "{error}"
        );
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, 1);
        let second: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'second'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(second, 0, "the failed migration's table was rolled back");
        // Fixing the script and migrating again continues from version 1.
        let fixed = [
            "CREATE TABLE first (id INTEGER);",
            "CREATE TABLE second (id INTEGER);",
        ];
        migrate(&mut conn, &fixed, ":memory:").unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, 2);
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
    fn a_database_from_a_newer_relay_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        drop(Store::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let error = Store::open(&path).unwrap_err();
        assert!(
            matches!(
                error,
                StoreError::TooNew {
                    found: 99,
                    known: SCHEMA_VERSION
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("upgrade the relay"), "{error}");
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
    fn enrollment_stores_the_device_and_spends_a_use() {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "e1", 1);
        let (device, org_name) = store
            .enroll_device(
                &hash("e1"),
                b"key-1",
                &info("laptop-1"),
                "192.0.2.7:50000",
                DeviceId(0xabc),
                T0 + 10,
            )
            .unwrap()
            .unwrap();
        assert_eq!(org_name, "Acme");
        let expected = DeviceRecord {
            id: DeviceId(0xabc),
            org,
            public_key: b"key-1".to_vec(),
            hostname: "laptop-1".to_owned(),
            os: "Debian GNU/Linux 12".to_owned(),
            agent_version: "0.1.0".to_owned(),
            first_seen: T0 + 10,
            last_seen: T0 + 10,
            last_address: Some("192.0.2.0/24:50000".to_owned()), /* public: truncated to its /24 */
            revoked_at: None,
            group: None,
        };
        assert_eq!(device, expected);
        assert_eq!(
            store.list_devices(org).unwrap(),
            std::slice::from_ref(&expected)
        );
        assert_eq!(snapshot(&store).0, [(1, 0)]);
        let summary = expected.summary(true);
        assert_eq!((summary.id, summary.online), (DeviceId(0xabc), true));
        assert_eq!(summary.last_address.as_deref(), Some("192.0.2.0/24:50000"));
    }

    #[test]
    fn enrollment_token_uses_are_counted() {
        // (uses, enrollments attempted, outcomes)
        let cases: &[(u32, &[Result<(), Refusal>])] = &[
            (1, &[Ok(()), Err(Refusal::EnrollTokenUsedUp)]),
            (2, &[Ok(()), Ok(()), Err(Refusal::EnrollTokenUsedUp)]),
            (0, &[Err(Refusal::EnrollTokenUsedUp)]),
        ];
        for (uses, outcomes) in cases {
            let (store, org) = bootstrapped();
            enroll_token(&store, org, "e", *uses);
            for (n, expected) in outcomes.iter().enumerate() {
                let key = format!("key-{n}");
                let got = enroll(&store, "e", &key, "pc", n as u64 + 1, T0).map(|_| ());
                assert_eq!(&got, expected, "uses={uses}, enrollment #{n}");
            }
        }
    }

    #[test]
    fn enrollment_refusals_for_bad_tokens() {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "good", 5);
        enroll_token(&store, org, "revoked", 5);
        store
            .lock()
            .execute(
                "UPDATE enroll_tokens SET revoked_at = ?1 WHERE id = 2",
                [T0],
            )
            .unwrap();
        let expires = T0 + DAY;
        let cases = [
            ("unknown", expires - 1, Err(Refusal::EnrollTokenInvalid)),
            ("revoked", expires - 1, Err(Refusal::EnrollTokenInvalid)),
            ("good", expires, Err(Refusal::EnrollTokenExpired)),
            ("good", expires + 1, Err(Refusal::EnrollTokenExpired)),
            ("good", expires - 1, Ok(())),
        ];
        for (n, (secret, now, expected)) in cases.into_iter().enumerate() {
            let got = enroll(&store, secret, &format!("key-{n}"), "pc", n as u64 + 1, now);
            assert_eq!(got.map(|_| ()), expected, "token {secret:?} at {now}");
        }
    }

    #[test]
    fn a_key_enrolls_only_once_even_after_revocation() {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "e1", 5);
        enroll_token(&store, org, "e2", 5);
        let device = enroll(&store, "e1", "key-1", "pc", 1, T0).unwrap();
        assert_eq!(
            enroll(&store, "e2", "key-1", "pc", 2, T0),
            Err(Refusal::AlreadyEnrolled)
        );
        store
            .revoke_device(org, device.id, "system", T0)
            .unwrap()
            .unwrap();
        assert_eq!(
            enroll(&store, "e2", "key-1", "pc", 2, T0),
            Err(Refusal::AlreadyEnrolled)
        );
        assert_eq!(snapshot(&store).0, [(1, 4), (2, 5)]);
    }

    #[test]
    fn refusals_change_nothing() {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "used-up", 1);
        enroll_token(&store, org, "expired", 3);
        enroll_token(&store, org, "good", 3);
        store
            .lock()
            .execute(
                "UPDATE enroll_tokens SET expires_at = ?1 WHERE id = 2",
                [T0],
            )
            .unwrap();
        enroll(&store, "used-up", "key-1", "pc", 1, T0).unwrap();
        let before = snapshot(&store);
        let refused = [
            ("unknown", "key-2", Refusal::EnrollTokenInvalid),
            ("used-up", "key-2", Refusal::EnrollTokenUsedUp),
            ("expired", "key-2", Refusal::EnrollTokenExpired),
            ("good", "key-1", Refusal::AlreadyEnrolled),
        ];
        for (secret, key, refusal) in refused {
            assert_eq!(enroll(&store, secret, key, "pc", 2, T0), Err(refusal));
            assert_eq!(snapshot(&store), before, "after refusing {secret:?}");
        }
        let unknown = store
            .attach_device(b"key-9", &info("pc"), "198.51.100.1:1", T0)
            .unwrap();
        assert_eq!(unknown, Err(Refusal::DeviceUnknown));
        assert_eq!(snapshot(&store), before);
    }

    #[test]
    fn attach_refreshes_a_device_and_refuses_revoked_ones() {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "e", 2);
        let device = enroll(&store, "e", "key-1", "old-name", 1, T0).unwrap();
        let audit_rows = snapshot(&store).2;

        let new_info = DeviceInfo {
            hostname: "new-name".to_owned(),
            os: "Fedora 40".to_owned(),
            agent_version: "0.2.0".to_owned(),
        };
        let attached = store
            .attach_device(b"key-1", &new_info, "198.51.100.1:4433", T0 + 60)
            .unwrap()
            .unwrap();
        let expected = DeviceRecord {
            hostname: "new-name".to_owned(),
            os: "Fedora 40".to_owned(),
            agent_version: "0.2.0".to_owned(),
            last_seen: T0 + 60,
            last_address: Some("198.51.100.0/24:4433".to_owned()), /* truncated */
            ..device.clone()
        };
        assert_eq!(attached, expected);
        assert_eq!(store.list_devices(org).unwrap(), [expected]);
        assert_eq!(snapshot(&store).2, audit_rows, "attaching is not audited");

        store
            .revoke_device(org, device.id, "system", T0 + 70)
            .unwrap()
            .unwrap();
        let refused = store
            .attach_device(b"key-1", &new_info, "198.51.100.1:1", T0 + 80)
            .unwrap();
        assert_eq!(refused, Err(Refusal::DeviceRevoked));
        assert_eq!(store.list_devices(org).unwrap()[0].last_seen, T0 + 60);
    }

    #[test]
    fn mark_seen_moves_last_seen_forward_only() {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "e", 2);
        enroll(&store, "e", "key-1", "a", 1, T0).unwrap();
        enroll(&store, "e", "key-2", "b", 2, T0).unwrap();
        store
            .mark_seen(&[DeviceId(1), DeviceId(99)], T0 + 100)
            .unwrap();
        store.mark_seen(&[DeviceId(1)], T0 + 50).unwrap();
        store.mark_seen(&[], T0 + 200).unwrap();
        let last_seen: Vec<i64> = store
            .list_devices(org)
            .unwrap()
            .iter()
            .map(|d| d.last_seen)
            .collect();
        assert_eq!(last_seen, [T0 + 100, T0]);
    }

    #[test]
    fn devices_are_listed_by_hostname_then_id() {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "e", 4);
        let high_bit = 0xf000_0000_0000_0000;
        enroll(&store, "e", "key-1", "beta", 2, T0).unwrap();
        enroll(&store, "e", "key-2", "Alpha", 9, T0).unwrap();
        enroll(&store, "e", "key-3", "beta", high_bit, T0).unwrap();
        enroll(&store, "e", "key-4", "beta", 1, T0).unwrap();
        let order: Vec<u64> = store
            .list_devices(org)
            .unwrap()
            .iter()
            .map(|d| d.id.0)
            .collect();
        assert_eq!(order, [9, 1, 2, high_bit]);
    }

    #[test]
    fn technician_authentication() {
        let (store, org) = bootstrapped();
        let tokens = [
            ("valid", None),
            ("expires-later", Some(T0 + 101)),
            ("expires-now", Some(T0 + 100)),
            ("revoked", None),
        ];
        for (name, expires_at) in tokens {
            store
                .create_technician_token(
                    org,
                    name,
                    Role::Technician,
                    &hash(name),
                    expires_at,
                    "technician:1 (root)",
                    T0,
                )
                .unwrap();
        }
        store
            .revoke_technician_token(org, TechnicianId(5), "system", T0 + 1)
            .unwrap()
            .unwrap();
        let now = T0 + 100;
        let cases = [
            ("valid", Some(2)),
            ("expires-later", Some(3)),
            ("expires-now", None),
            ("revoked", None),
            ("unknown", None),
        ];
        for (secret, expected_id) in cases {
            let got = store.authenticate_technician(&hash(secret), now).unwrap();
            assert_eq!(
                got.as_ref().map(|t| t.id.0),
                expected_id,
                "token {secret:?}"
            );
            if let Some(technician) = got {
                assert_eq!(technician.org, org);
                assert_eq!(technician.role, Role::Technician);
                assert_eq!(technician.name, secret);
            }
        }
        let last_used: Vec<(&str, Option<i64>)> = store
            .list_technician_tokens(org)
            .unwrap()
            .iter()
            .map(|t| (if t.id.0 == 1 { "root" } else { "other" }, t.last_used_at))
            .collect();
        assert_eq!(
            last_used,
            [
                ("root", None),
                ("other", Some(now)),
                ("other", Some(now)),
                ("other", None),
                ("other", None)
            ]
        );
    }

    #[test]
    fn technician_tokens_are_listed_and_revoked_within_their_org() {
        let (store, org) = bootstrapped();
        let created = store
            .create_technician_token(
                org,
                "alice",
                Role::Viewer,
                &hash("alice"),
                Some(T0 + DAY),
                "system",
                T0,
            )
            .unwrap();
        let expected = TechnicianTokenInfo {
            id: TechnicianId(2),
            name: "alice".to_owned(),
            role: Role::Viewer,
            created_at: T0,
            expires_at: Some(T0 + DAY),
            revoked_at: None,
            last_used_at: None,
        };
        assert_eq!(created, expected);
        assert_eq!(store.list_technician_tokens(org).unwrap()[1], expected);
        assert_eq!(store.list_technician_tokens(OrgId(2)).unwrap(), []);

        let other_org = OrgId(org.0 + 1);
        assert_eq!(
            store
                .revoke_technician_token(other_org, created.id, "x", T0)
                .unwrap()
                .expect("not refused"),
            None
        );
        assert_eq!(
            store
                .revoke_technician_token(org, TechnicianId(77), "x", T0)
                .unwrap()
                .expect("not refused"),
            None
        );
        let first = store
            .revoke_technician_token(org, created.id, "x", T0 + 5)
            .unwrap()
            .expect("not refused")
            .unwrap();
        let again = store
            .revoke_technician_token(org, created.id, "x", T0 + 9)
            .unwrap()
            .expect("not refused")
            .unwrap();
        assert_eq!(first.revoked_at, Some(T0 + 5));
        assert_eq!(again.revoked_at, Some(T0 + 5));
        assert_eq!(
            actions(&store),
            ["org.bootstrap", "token.create", "token.revoke"]
        );
    }

    #[test]
    fn an_unknown_role_in_the_database_is_reported_as_corrupt() {
        let (store, org) = bootstrapped();
        {
            let conn = store.lock();
            conn.pragma_update(None, "ignore_check_constraints", "ON")
                .unwrap();
            conn.execute(
                "UPDATE technician_tokens SET role = 'root' WHERE id = 1",
                [],
            )
            .unwrap();
        }
        let error = store.list_technician_tokens(org).unwrap_err();
        assert!(matches!(error, StoreError::Corrupt(_)), "{error}");
        assert!(error.to_string().contains("technician token 1"), "{error}");
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
    fn two_orgs() -> (Store, OrgId, OrgId) {
        let (store, acme) = bootstrapped();
        let globex = {
            let conn = store.lock();
            conn.execute(
                "INSERT INTO organisations (name, created_at) VALUES ('Globex', 0)",
                [],
            )
            .unwrap();
            OrgId(conn.last_insert_rowid())
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
    fn find_device_by_id_prefix_and_hostname() {
        let (store, acme, globex) = two_orgs();
        let not_found = |query: &str| {
            Err(format!(
                "not found: no device matches \"{query}\": list devices with `deskside devices list`"
            ))
        };
        let cases: Vec<(OrgId, &str, Result<u64, String>)> = vec![
            (acme, "dev_1234567800000001", Ok(0x1234_5678_0000_0001)),
            (acme, "  DEV_1234567800000001 ", Ok(0x1234_5678_0000_0001)),
            (acme, "dev_12345", Ok(0x1234_5678_0000_0001)),
            (acme, "dev_abcd", Ok(0xabcd_0000_0000_0003)),
            (acme, "dev_ffff", Ok(0xffff_0000_0000_0004)),
            (acme, "dev_ffff000000000004", Ok(0xffff_0000_0000_0004)),
            (acme, "Laptop-1", Ok(0x1234_5678_0000_0001)),
            (globex, "laptop-1", Ok(0x5555_0000_0000_0005)),
            (
                acme,
                "dev_1234",
                Err("invalid request: \"dev_1234\" matches 2 devices: \
                     dev_1234567800000001 (laptop-1), dev_1234999900000002 (shared); \
                     name one by its id"
                    .to_owned()),
            ),
            (
                acme,
                "shared",
                Err("invalid request: \"shared\" matches 2 devices: \
                     dev_1234999900000002 (shared), dev_abcd000000000003 (SHARED); \
                     name one by its id"
                    .to_owned()),
            ),
            (acme, "dev_123", not_found("dev_123")),
            (
                acme,
                "dev_5555000000000005",
                not_found("dev_5555000000000005"),
            ),
            (acme, "dev_5555", not_found("dev_5555")),
            (acme, "globex-only", not_found("globex-only")),
            (acme, "laptop", not_found("laptop")),
            (acme, "", not_found("")),
        ];
        for (org, query, expected) in cases {
            let got = store
                .find_device(org, query)
                .unwrap()
                .map(|device| device.id.0)
                .map_err(|refusal| refusal.to_string());
            assert_eq!(got, expected, "query {query:?} in org {org}");
        }
    }

    #[test]
    fn find_device_prefers_the_one_device_not_revoked() {
        let (store, acme, _) = two_orgs();
        store
            .revoke_device(acme, DeviceId(0x1234_9999_0000_0002), "system", T0)
            .unwrap();
        let found = store.find_device(acme, "shared").unwrap().unwrap();
        assert_eq!(found.id, DeviceId(0xabcd_0000_0000_0003));
        let found = store.find_device(acme, "dev_1234").unwrap().unwrap();
        assert_eq!(found.id, DeviceId(0x1234_5678_0000_0001));
        // A revoked device is still found when it is the only match.
        let found = store.find_device(acme, "dev_12349").unwrap().unwrap();
        assert_eq!(found.revoked_at, Some(T0));
    }

    #[test]
    fn revoke_device_within_its_org_only() {
        let (store, acme, globex) = two_orgs();
        let id = DeviceId(0x1234_5678_0000_0001);
        assert_eq!(store.revoke_device(globex, id, "x", T0).unwrap(), None);
        let first = store
            .revoke_device(acme, id, "technician:1 (root)", T0 + 5)
            .unwrap()
            .unwrap();
        let again = store
            .revoke_device(acme, id, "technician:1 (root)", T0 + 9)
            .unwrap()
            .unwrap();
        assert_eq!(
            (first.revoked_at, again.revoked_at),
            (Some(T0 + 5), Some(T0 + 5))
        );
        let revokes: Vec<AuditRecord> = store
            .audit_entries(Some(acme), 100)
            .unwrap()
            .into_iter()
            .filter(|entry| entry.action == "device.revoke")
            .collect();
        assert_eq!(revokes.len(), 1);
        assert_eq!(revokes[0].target, "device:dev_1234567800000001");
        assert_eq!(revokes[0].actor, "technician:1 (root)");
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

    #[test]
    fn audit_entries_filter_by_org_and_limit() {
        let (store, org) = bootstrapped();
        let detail = serde_json::json!({});
        store
            .append_audit(None, "system", "relay.start", "relay", &detail, T0)
            .unwrap();
        store
            .append_audit(Some(org), "system", "a", "x", &detail, T0)
            .unwrap();
        store
            .append_audit(Some(org), "system", "b", "x", &detail, T0)
            .unwrap();
        let ids = |org: Option<OrgId>, limit: usize| -> Vec<i64> {
            store
                .audit_entries(org, limit)
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect()
        };
        assert_eq!(ids(None, 100), [4, 3, 2, 1]);
        assert_eq!(ids(None, 2), [4, 3]);
        assert_eq!(ids(Some(org), 100), [4, 3, 1]);
        assert_eq!(ids(Some(OrgId(99)), 100), Vec::<i64>::new());
        assert_eq!(ids(None, 0), Vec::<i64>::new());
        assert_eq!(store.audit_entries(None, 100).unwrap()[2].org, None);
    }

    #[test]
    fn the_audit_log_is_append_only() {
        let (store, _) = bootstrapped();
        let conn = store.lock();
        let statements = [
            ("UPDATE audit SET actor = 'mallory'", "cannot be changed"),
            ("DELETE FROM audit", "cannot be deleted"),
        ];
        for (sql, message) in statements {
            let error = conn.execute(sql, []).unwrap_err();
            assert!(error.to_string().contains(message), "{sql}: {error}");
        }
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1);
    }

    /// A store with audit rows 1 (bootstrap) to 4, and its triggers dropped
    /// so that a test can tamper with the log.
    fn tamperable() -> Store {
        let (store, org) = bootstrapped();
        for n in 2..=4 {
            let detail = serde_json::json!({ "n": n });
            store
                .append_audit(Some(org), "system", "test", "x", &detail, T0 + n)
                .unwrap();
        }
        assert_eq!(store.verify_audit_chain().unwrap(), Ok(()));
        store
            .lock()
            .execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
            .unwrap();
        store
    }

    #[test]
    fn the_audit_chain_detects_tampering() {
        let cases: &[(&str, &str, Result<(), i64>)] = &[
            ("nothing", "SELECT 1", Ok(())),
            (
                "a changed detail",
                "UPDATE audit SET detail = '{\"n\":9}' WHERE id = 2",
                Err(2),
            ),
            (
                "a changed actor",
                "UPDATE audit SET actor = 'mallory' WHERE id = 3",
                Err(3),
            ),
            (
                "a changed org",
                "UPDATE audit SET org_id = NULL WHERE id = 4",
                Err(4),
            ),
            (
                "a changed time",
                "UPDATE audit SET at = at + 1 WHERE id = 1",
                Err(1),
            ),
            ("a deleted row", "DELETE FROM audit WHERE id = 2", Err(3)),
            (
                "a renumbered row",
                "UPDATE audit SET id = 10 WHERE id = 4",
                Err(10),
            ),
            (
                "a changed prev_hash",
                "UPDATE audit SET prev_hash = zeroblob(32) WHERE id = 2",
                Err(2),
            ),
        ];
        for (what, sql, expected) in cases {
            let store = tamperable();
            store.lock().execute_batch(sql).unwrap();
            assert_eq!(store.verify_audit_chain().unwrap(), *expected, "{what}");
        }
    }

    #[test]
    fn the_audit_chain_detects_a_rehashed_row() {
        let store = tamperable();
        {
            // Rewrite row 2 and recompute its own hash correctly: row 3,
            // which chains to the old hash, is then the first bad row.
            let conn = store.lock();
            let prev: Vec<u8> = conn
                .query_row("SELECT prev_hash FROM audit WHERE id = 2", [], |r| r.get(0))
                .unwrap();
            let forged = AuditFields {
                id: 2,
                at: T0 + 2,
                org: Some(1),
                actor: "system",
                action: "test",
                target: "x",
                detail: "{\"n\":99}",
            };
            let detail = forged.detail;
            let hash = forged.hash(&prev);
            conn.execute(
                "UPDATE audit SET detail = ?1, hash = ?2 WHERE id = 2",
                params![detail, hash],
            )
            .unwrap();
        }
        assert_eq!(store.verify_audit_chain().unwrap(), Err(3));
    }

    #[test]
    fn removing_the_newest_rows_shows_as_a_gap_once_a_row_is_appended() {
        let store = tamperable();
        store
            .lock()
            .execute("DELETE FROM audit WHERE id >= 3", [])
            .unwrap();
        assert_eq!(store.verify_audit_chain().unwrap(), Ok(()));
        let detail = serde_json::json!({});
        let id = store
            .append_audit(None, "system", "test", "x", &detail, T0 + 9)
            .unwrap();
        assert_eq!(id, 5, "ids are never reused");
        assert_eq!(store.verify_audit_chain().unwrap(), Err(5));
    }

    #[test]
    fn audit_hash_encoding_is_unambiguous() {
        let base = AuditFields {
            id: 1,
            at: 2,
            org: None,
            actor: "ab",
            action: "c",
            target: "",
            detail: "{}",
        };
        let shifted = AuditFields {
            actor: "a",
            action: "bc",
            ..base
        };
        let org_zero = AuditFields {
            org: Some(0),
            ..base
        };
        let genesis = GENESIS_HASH;
        assert_ne!(base.hash(&genesis), shifted.hash(&genesis));
        assert_ne!(base.hash(&genesis), org_zero.hash(&genesis));
        assert_ne!(base.hash(&genesis), base.hash(&[1; 32]));
        assert_eq!(base.hash(&genesis).len(), 32);
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
        assert!(matches!(error, StoreError::Sqlite(_)), "{error}");
        let error = store
            .create_enroll_token(OrgId(42), &hash("e"), 1, T0 + DAY, None, "system", T0)
            .unwrap_err();
        assert!(matches!(error, StoreError::Sqlite(_)), "{error}");
        assert_eq!(snapshot(&store), before);
        assert_eq!(store.list_technician_tokens(org).unwrap().len(), 1);
        assert_eq!(store.verify_audit_chain().unwrap(), Ok(()));
    }
}
