//! Copying a whole store into an empty one: how a relay moves from its
//! embedded SQLite file to a PostgreSQL server (`deskside-relay
//! copy-store`), or back.
//!
//! Every row of every table is copied as it is, ids and audit hashes
//! included, so the audit chain verifies on the target exactly as on the
//! source. The source is read in one transaction (a consistent snapshot)
//! and the target written in one: a copy that fails leaves the target
//! empty.

// The store's shared types, imports and helpers (`store.rs`).
use super::*;

use super::sql::Value;

/// The tables, parents before children (foreign keys point backwards in
/// this list). `every_table_is_copied_in_an_order_its_foreign_keys_allow`
/// fails when a migration adds a table that is not here.
pub(super) const TABLES: &[&str] = &[
    "organisations",
    "technician_tokens",
    "enroll_tokens",
    "devices",
    "diagnostics",
    "audit",
    "sessions",
    "timeline",
    "requests",
    "request_events",
    "request_findings",
    "request_sessions",
    "request_tickets",
    "ticket_cursors",
    "ticket_deliveries",
    "relays",
    "presence",
];

/// What a copy moved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CopyReport {
    /// Rows copied, per table, in copy order.
    pub tables: Vec<(String, u64)>,
}

impl CopyReport {
    /// All rows copied.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, rows)| rows).sum()
    }
}

/// The columns of `table`, in order.
fn columns(conn: &Connection, table: &str) -> Result<Vec<String>, StoreError> {
    let sql = if conn.is_postgres() {
        "SELECT column_name::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = ?1
         ORDER BY ordinal_position"
    } else {
        "SELECT name FROM pragma_table_info(?1) ORDER BY cid"
    };
    let names = conn
        .prepare(sql)?
        .query_map([table], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(names)
}

impl Store {
    /// Copies every row of this store into `target`, which must be empty
    /// (freshly created: no organisation). Both must be at the same schema
    /// version, which opening them ensures.
    pub fn copy_into(&self, target: &Store) -> Result<Result<CopyReport, String>, StoreError> {
        let mut source = self.lock();
        let mut dest = target.lock();
        let read = source.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let write = dest.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: i64 =
            write.query_row("SELECT count(*) FROM organisations", [], |row| row.get(0))?;
        if existing > 0 {
            return Ok(Err(format!(
                "the target store {} is not empty ({existing} organisation(s)): copy into a new, empty database",
                target.location
            )));
        }
        let mut report = CopyReport::default();
        for &table in TABLES {
            let from = columns(&read, table)?;
            let to = columns(&write, table)?;
            if from != to {
                return Ok(Err(format!(
                    "table {table} has columns {from:?} in {} but {to:?} in {}: both stores must be at the same schema version",
                    self.location, target.location
                )));
            }
            let list = from.join(", ");
            let placeholders = (1..=from.len())
                .map(|n| format!("?{n}"))
                .collect::<Vec<_>>()
                .join(", ");
            let insert = format!("INSERT INTO {table} ({list}) VALUES ({placeholders})");
            let rows = read
                .prepare(&format!("SELECT {list} FROM {table}"))?
                .query_map([], |row| {
                    (0..from.len())
                        .map(|i| row.get::<_, Value>(i))
                        .collect::<Result<Vec<_>, _>>()
                })?;
            let mut copied = 0;
            for row in rows {
                write.execute(&insert, row?)?;
                copied += 1;
            }
            report.tables.push((table.to_owned(), copied));
        }
        if write.is_postgres() {
            reset_identities(&write)?;
        }
        write.commit()?;
        read.rollback()?;
        Ok(Ok(report))
    }
}

/// After rows were inserted with their ids, each identity column's
/// sequence continues after the largest id (SQLite does this by itself).
fn reset_identities(conn: &Connection) -> Result<(), StoreError> {
    let identities = conn
        .prepare(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND is_identity = 'YES'",
        )?
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    conn.execute(
        "UPDATE audit_sequence SET last_id = (SELECT COALESCE(max(id), 0) FROM audit)",
        [],
    )?;
    for (table, column) in identities {
        conn.execute_batch(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'),
                           COALESCE((SELECT max({column}) FROM {table}), 0) + 1, false)"
        ))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A test should panic on an unexpected error.
mod tests {
    use super::super::tests::*;
    use super::*;

    #[test]
    fn every_table_is_copied_in_an_order_its_foreign_keys_allow() {
        let store = Store::open_in_memory().unwrap();
        let conn = store.lock();
        let mut tables: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_schema WHERE type = 'table'
                 AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut listed: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
        listed.sort();
        tables.sort();
        assert_eq!(listed, tables, "copy.rs TABLES must list every table");
        for (position, table) in TABLES.iter().enumerate() {
            let parents: Vec<String> = conn
                .prepare("SELECT \"table\" FROM pragma_foreign_key_list(?1)")
                .unwrap()
                .query_map([*table], |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            for parent in parents {
                let at = TABLES.iter().position(|t| *t == parent).unwrap();
                assert!(
                    at < position,
                    "{table} is copied before its parent {parent}"
                );
            }
        }
    }

    #[test]
    fn a_copy_keeps_every_row_and_the_audit_chain_and_refuses_a_used_target() {
        let (store, acme, _globex) = two_orgs();
        store
            .append_audit(
                Some(acme),
                "system",
                "test",
                "x",
                &serde_json::json!({}),
                T0,
            )
            .unwrap();
        let target = fresh_store();
        let report = store.copy_into(&target).unwrap().unwrap();
        assert_eq!(report.tables.len(), TABLES.len());
        assert!(report.rows() > 10, "{report:?}");
        assert_eq!(target.verify_audit_chain().unwrap(), Ok(()));
        assert_eq!(
            target.list_devices(acme).unwrap(),
            store.list_devices(acme).unwrap()
        );
        assert_eq!(
            target.audit_entries(None, 100).unwrap(),
            store.audit_entries(None, 100).unwrap()
        );
        // New rows continue after the copied ids.
        let next = target
            .append_audit(
                Some(acme),
                "system",
                "after",
                "x",
                &serde_json::json!({}),
                T0,
            )
            .unwrap();
        let last = store.audit_entries(None, 1).unwrap()[0].id;
        assert_eq!(next, last + 1);
        assert_eq!(target.verify_audit_chain().unwrap(), Ok(()));
        let refused = store.copy_into(&target).unwrap().unwrap_err();
        assert!(refused.contains("not empty"), "{refused}");
    }
}
