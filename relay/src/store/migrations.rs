//! The schema and its migrations: one script per version, applied in
//! order in one transaction each, append-only once released. A database
//! from a newer relay is refused, never downgraded.

// The store's shared types, imports and helpers (`store.rs`).
use super::*;

/// Schema migrations, in order. Migration `i` (0-based) takes the database
/// from `PRAGMA user_version` `i` to `i + 1`, in one transaction. Append
/// only: never edit a script that has been released.
pub(super) const MIGRATIONS: &[&str] = &[
    MIGRATION_1,
    MIGRATION_2,
    MIGRATION_3,
    MIGRATION_4,
    timeline::MIGRATION_5,
    requests::MIGRATION_REQUESTS,
    tickets::MIGRATION_TICKETS,
    request_stats::MIGRATION_REQUEST_FACTS,
    cluster::MIGRATION_CLUSTER,
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
pub(super) const MIGRATION_4: &str = r#"
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
pub(super) const MIGRATION_3: &str = r#"
ALTER TABLE enroll_tokens ADD COLUMN device_group TEXT;
ALTER TABLE devices ADD COLUMN device_group TEXT;
"#;

/// Schema version 2: diagnostic snapshots with their verdicts, per device.
/// Snapshots are data, not audit: they may be pruned by retention.
pub(super) const MIGRATION_2: &str = r#"
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
pub(super) const MIGRATION_1: &str = r#"
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

/// Brings the schema to `migrations.len()`, one transaction per migration.
///
/// The version is read inside each IMMEDIATE transaction, so two relays
/// opening the same new file cannot both apply the same migration.
pub(super) fn migrate(
    conn: &mut Connection,
    migrations: &[&str],
    location: &str,
) -> Result<(), StoreError> {
    let known = u32::try_from(migrations.len()).unwrap_or(u32::MAX);
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
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
        tx.execute_batch(&format!("PRAGMA user_version = {version}"))
            .map_err(migration_error)?;
        tx.commit().map_err(migration_error)?;
        tracing::info!(database = location, version, "migrated the relay database");
    }
}

/// The PostgreSQL schema at [`SCHEMA_VERSION`]: what the SQLite migrations
/// above end at, in PostgreSQL's types (see `sql.rs`).
const PG_SCHEMA: &str = include_str!("pg_schema.sql");

/// PostgreSQL migrations after the version `PG_SCHEMA` creates, in order:
/// entry `i` takes the database from `PG_SCHEMA_BASE + i` to the next.
/// Append one here with each SQLite migration appended above.
const PG_MIGRATIONS: &[&str] = &[cluster::PG_MIGRATION_CLUSTER];

/// The schema version `PG_SCHEMA` creates.
const PG_SCHEMA_BASE: u32 = 8;

/// Brings a PostgreSQL database to [`SCHEMA_VERSION`]: `PG_SCHEMA` on an
/// empty database, then `PG_MIGRATIONS`, each in one transaction under the
/// store's write lock, so relays starting together migrate once. The
/// version lives in the table `deskside_schema`.
pub(super) fn migrate_postgres(conn: &mut Connection, location: &str) -> Result<(), StoreError> {
    const _: () = assert!(PG_SCHEMA_BASE as usize + PG_MIGRATIONS.len() == MIGRATIONS.len());
    let known = SCHEMA_VERSION;
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Looked up rather than `CREATE TABLE IF NOT EXISTS`, whose notice
        // would be logged at every start.
        let has_version: bool = tx.query_row(
            "SELECT to_regclass('deskside_schema') IS NOT NULL",
            [],
            |row| row.get(0),
        )?;
        if !has_version {
            tx.execute_batch("CREATE TABLE deskside_schema (version BIGINT NOT NULL)")?;
        }
        let found: Option<i64> = tx
            .query_row("SELECT version FROM deskside_schema", [], |row| row.get(0))
            .optional()?;
        let found = u32::try_from(found.unwrap_or(0)).map_err(|_| {
            StoreError::Corrupt(format!("the schema version (deskside_schema) is {found:?}"))
        })?;
        if found > known {
            return Err(StoreError::TooNew { found, known });
        }
        if found == known {
            return Ok(());
        }
        let (script, version) = if found == 0 {
            (PG_SCHEMA, PG_SCHEMA_BASE)
        } else if found < PG_SCHEMA_BASE {
            return Err(StoreError::Corrupt(format!(
                "the PostgreSQL schema version is {found}, older than any this relay created"
            )));
        } else {
            (PG_MIGRATIONS[(found - PG_SCHEMA_BASE) as usize], found + 1)
        };
        let migration_error = |source| StoreError::Migration {
            location: location.to_owned(),
            version,
            source,
        };
        tx.execute_batch(script).map_err(migration_error)?;
        tx.execute("DELETE FROM deskside_schema", [])
            .map_err(migration_error)?;
        tx.execute(
            "INSERT INTO deskside_schema (version) VALUES (?1)",
            [i64::from(version)],
        )
        .map_err(migration_error)?;
        tx.commit().map_err(migration_error)?;
        tracing::info!(
            database = location,
            version,
            "migrated the relay's PostgreSQL database"
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A test should panic on an unexpected error.
mod tests {
    use super::*;

    #[test]
    fn migrations_create_the_schema_from_empty() {
        let store = Store::open_in_memory().unwrap();
        assert_eq!(store.schema_version(), 9);
        assert_eq!(SCHEMA_VERSION, 9);
        let conn = store.lock();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 9);
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
                "presence",
                "relays",
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
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(foreign_keys, 1);
    }

    #[test]
    fn a_failed_migration_leaves_the_previous_version() {
        let mut conn = Connection::sqlite(rusqlite::Connection::open_in_memory().unwrap());
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
            .query_row("PRAGMA user_version", [], |r| r.get(0))
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
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 2);
    }

    #[test]
    fn a_database_from_a_newer_relay_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        drop(Store::open(&path).unwrap());
        rusqlite::Connection::open(&path)
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
}
