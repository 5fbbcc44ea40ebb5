//! The append-only audit log: rows written in the caller's transaction
//! (`insert_audit`), each hash-chained to the previous one, read back per
//! organisation or target, and verified. (The signed chain head is in
//! `audit_chain.rs`.)

// The store's shared types, imports and helpers (`store.rs`).
use super::*;

/// The `prev_hash` of the first audit row.
pub(super) const GENESIS_HASH: [u8; 32] = [0; 32];

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

/// A new audit row, before its id and hashes are known.
pub(super) struct NewAudit<'a> {
    pub(super) at: i64,
    pub(super) org: Option<OrgId>,
    pub(super) actor: &'a str,
    pub(super) action: &'a str,
    pub(super) target: &'a str,
    pub(super) detail: &'a serde_json::Value,
}

/// Appends an audit row inside the caller's transaction, chaining it to the
/// newest row, and returns its id.
///
/// The id is chosen here (rather than left to SQLite) because the hash covers
/// it. It is one more than the largest id ever used (`sqlite_sequence`, kept
/// by AUTOINCREMENT), so ids are never reused even if rows were removed by
/// someone bypassing the triggers; the gap then shows in verification.
pub(super) fn insert_audit(conn: &Connection, entry: &NewAudit<'_>) -> Result<i64, StoreError> {
    let id = if conn.is_postgres() {
        // `audit_sequence` is the PostgreSQL counterpart of
        // `sqlite_sequence`: one row, moved in this transaction (a
        // PostgreSQL sequence would not roll back, and leave a gap).
        let id: i64 = conn.query_row(
            "UPDATE audit_sequence SET last_id = last_id + 1 RETURNING last_id",
            [],
            |row| row.get(0),
        )?;
        id
    } else {
        let last_used: Option<i64> = conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'audit'",
                [],
                |row| row.get(0),
            )
            .optional()?;
        last_used.unwrap_or(0) + 1
    };
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
pub(super) struct AuditRow {
    pub(super) id: i64,
    pub(super) at: i64,
    pub(super) org: Option<i64>,
    pub(super) actor: String,
    pub(super) action: String,
    pub(super) target: String,
    pub(super) detail: String,
}

impl AuditRow {
    pub(super) fn decode(self) -> Result<AuditRecord, StoreError> {
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

/// Reads `id, at, org_id, actor, action, target, detail`.
pub(super) fn audit_from_row(row: &Row<'_>) -> super::sql::Result<AuditRow> {
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

/// The columns of an audit row that its hash covers, as stored.
pub(super) struct AuditFields<'a> {
    pub(super) id: i64,
    pub(super) at: i64,
    pub(super) org: Option<i64>,
    pub(super) actor: &'a str,
    pub(super) action: &'a str,
    pub(super) target: &'a str,
    /// The JSON text exactly as stored, so verification never re-serialises.
    pub(super) detail: &'a str,
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
    pub(super) fn hash(&self, prev_hash: &[u8]) -> Vec<u8> {
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

impl Store {
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
             WHERE CAST(?1 AS BIGINT) IS NULL OR org_id = ?1
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
             WHERE org_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR target = ?2)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A test should panic on an unexpected error.
mod tests {
    use super::*;
    use crate::store::tests::*;

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
            tamper_sql(&store.lock(), sql);
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
}
