//! Checking the audit chain and reading its head, for `audit verify` and
//! the audit anchor.
//!
//! [`Store::check_audit_chain`] walks every row from the first and names
//! the first one that does not verify, with what differs (a missing id, a
//! `prev_hash` that is not the previous row's hash, or contents that do not
//! give the stored hash). A chain rewritten and rehashed from some row on
//! passes this check; only a hash kept outside the database (the signed
//! heads of `audit_anchor`) can catch that, with [`Store::audit_hash_at`].
//! Read-only: nothing here writes.

use super::sql::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

#[cfg(feature = "test-utils")]
use super::{audit_from_row, AuditRow};
use super::{AuditFields, Store, StoreError, GENESIS_HASH};

/// The newest row of the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// Its id (ids run from 1 without gaps).
    pub id: i64,
    /// Its hash.
    pub hash: [u8; 32],
}

/// Where and why the chain breaks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainBreak {
    /// The first row that does not verify.
    pub id: i64,
    /// What differs, in words.
    pub problem: String,
}

/// The result of walking the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainCheck {
    /// Rows read (up to and including the break, if any).
    pub rows: u64,
    /// The newest row that verified (the head when the chain is intact).
    pub head: Option<ChainHead>,
    /// The first break, if any.
    pub broken: Option<ChainBreak>,
}

fn short(hash: &[u8]) -> String {
    hex::encode(&hash[..hash.len().min(8)])
}

fn to_hash(bytes: &[u8]) -> Option<[u8; 32]> {
    bytes.try_into().ok()
}

impl Store {
    /// Walks the whole chain; see the module documentation.
    pub fn check_audit_chain(&self) -> Result<ChainCheck, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare(
            "SELECT id, at, org_id, actor, action, target, detail, prev_hash, hash
             FROM audit ORDER BY id",
        )?;
        let mut rows = statement.query([])?;
        let mut check = ChainCheck {
            rows: 0,
            head: None,
            broken: None,
        };
        let mut expected_prev = GENESIS_HASH.to_vec();
        while let Some(row) = rows.next()? {
            check.rows += 1;
            let id: i64 = row.get(0)?;
            let (actor, action, target, detail): (String, String, String, String) =
                (row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?);
            let fields = AuditFields {
                id,
                at: row.get(1)?,
                org: row.get(2)?,
                actor: &actor,
                action: &action,
                target: &target,
                detail: &detail,
            };
            let prev_hash: Vec<u8> = row.get(7)?;
            let hash: Vec<u8> = row.get(8)?;
            let expected_id = check.head.as_ref().map_or(1, |head| head.id + 1);
            let problem = if id != expected_id {
                Some(if id > expected_id {
                    format!(
                        "expected row {expected_id} next, found row {id}: rows {expected_id} to {} were removed",
                        id - 1
                    )
                } else {
                    format!("expected row {expected_id} next, found row {id}: ids are out of order")
                })
            } else if prev_hash != expected_prev {
                Some(format!(
                    "its prev_hash {}… is not the hash of row {} ({}…): a row before it was changed or replaced",
                    short(&prev_hash),
                    id - 1,
                    short(&expected_prev)
                ))
            } else {
                let recomputed = fields.hash(&prev_hash);
                (recomputed != hash).then(|| {
                    format!(
                        "its contents do not give its stored hash (stored {}…, recomputed {}…): its time, organisation, actor, action, target or detail was changed after it was written",
                        short(&hash),
                        short(&recomputed)
                    )
                })
            };
            if let Some(problem) = problem {
                check.broken = Some(ChainBreak { id, problem });
                return Ok(check);
            }
            let Some(hash_array) = to_hash(&hash) else {
                return Err(StoreError::Corrupt(format!(
                    "audit row {id} has a hash of {} bytes",
                    hash.len()
                )));
            };
            check.head = Some(ChainHead {
                id,
                hash: hash_array,
            });
            expected_prev = hash;
        }
        Ok(check)
    }

    /// The hash stored in audit row `id`, if the row exists.
    pub fn audit_hash_at(&self, id: i64) -> Result<Option<[u8; 32]>, StoreError> {
        let conn = self.lock();
        let hash: Option<Vec<u8>> = conn
            .query_row("SELECT hash FROM audit WHERE id = ?1", params![id], |row| {
                row.get(0)
            })
            .optional()?;
        Ok(hash.as_deref().and_then(to_hash))
    }

    /// The newest row's id and hash, as stored (not verified).
    pub fn audit_head(&self) -> Result<Option<ChainHead>, StoreError> {
        let conn = self.lock();
        let head: Option<(i64, Vec<u8>)> = conn
            .query_row(
                "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        Ok(head.and_then(|(id, hash)| to_hash(&hash).map(|hash| ChainHead { id, hash })))
    }
}

#[cfg(feature = "test-utils")]
impl Store {
    /// Plays someone with write access to the database file: replaces the
    /// detail of audit row `id` (bypassing the append-only triggers) and,
    /// with `rehash`, recomputes that row's hash and every later row's
    /// `prev_hash` and hash, so that [`Store::check_audit_chain`] passes.
    /// Tests only (feature `test-utils`).
    pub fn forge_audit_row(&self, id: i64, detail: &str, rehash: bool) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute_batch("DROP TRIGGER audit_no_update;")?;
        tx.execute(
            "UPDATE audit SET detail = ?1 WHERE id = ?2",
            params![detail, id],
        )?;
        if rehash {
            let rows: Vec<(AuditRow, Vec<u8>)> = {
                let mut statement = tx.prepare(
                    "SELECT id, at, org_id, actor, action, target, detail, prev_hash
                     FROM audit WHERE id >= ?1 ORDER BY id",
                )?;
                let mapped = statement
                    .query_map(params![id], |row| Ok((audit_from_row(row)?, row.get(7)?)))?;
                mapped.collect::<Result<_, _>>()?
            };
            let mut prev: Option<Vec<u8>> = None;
            for (row, stored_prev) in rows {
                let prev_hash = prev.take().unwrap_or(stored_prev);
                let row_id = row.id;
                let hash = AuditFields {
                    id: row.id,
                    at: row.at,
                    org: row.org,
                    actor: &row.actor,
                    action: &row.action,
                    target: &row.target,
                    detail: &row.detail,
                }
                .hash(&prev_hash);
                tx.execute(
                    "UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE id = ?3",
                    params![prev_hash, hash, row_id],
                )?;
                prev = Some(hash);
            }
        }
        tx.execute_batch(
            "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
             BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: its rows cannot be changed'); END;",
        )?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A test should panic on an unexpected error.
mod tests {
    use super::*;

    fn store_with_rows(n: usize) -> Store {
        let store = super::super::tests::fresh_store();
        for i in 0..n {
            store
                .append_audit(
                    None,
                    "system",
                    "test.event",
                    "thing",
                    &serde_json::json!({ "n": i }),
                    1_000 + i as i64,
                )
                .unwrap();
        }
        store
    }

    fn break_of(store: &Store) -> Option<ChainBreak> {
        store.check_audit_chain().unwrap().broken
    }

    fn tamper(store: &Store, sql: &str) {
        let conn = store.lock();
        super::super::tests::drop_audit_triggers(&conn);
        super::super::tests::tamper_sql(&conn, sql);
    }

    #[test]
    fn an_intact_chain_reports_its_head() {
        let store = store_with_rows(5);
        let check = store.check_audit_chain().unwrap();
        assert_eq!(check.rows, 5);
        assert_eq!(check.broken, None);
        let head = check.head.unwrap();
        assert_eq!(head.id, 5);
        assert_eq!(store.audit_head().unwrap(), Some(head.clone()));
        assert_eq!(store.audit_hash_at(5).unwrap(), Some(head.hash));
        assert_eq!(store.audit_hash_at(6).unwrap(), None);
    }

    #[test]
    fn a_changed_row_is_named_with_what_differs() {
        let store = store_with_rows(5);
        tamper(&store, "UPDATE audit SET actor = 'mallory' WHERE id = 3;");
        let broken = break_of(&store).unwrap();
        assert_eq!(broken.id, 3);
        assert!(
            broken
                .problem
                .contains("contents do not give its stored hash"),
            "{}",
            broken.problem
        );
    }

    #[test]
    fn a_removed_row_and_a_relinked_row_are_named() {
        let store = store_with_rows(5);
        tamper(&store, "DELETE FROM audit WHERE id = 2;");
        let broken = break_of(&store).unwrap();
        assert_eq!(broken.id, 3);
        assert!(
            broken.problem.contains("rows 2 to 2 were removed"),
            "{}",
            broken.problem
        );

        let store = store_with_rows(5);
        tamper(
            &store,
            "UPDATE audit SET prev_hash = zeroblob(32) WHERE id = 4;",
        );
        let broken = break_of(&store).unwrap();
        assert_eq!(broken.id, 4);
        assert!(
            broken.problem.contains("is not the hash of row 3"),
            "{}",
            broken.problem
        );
    }
}
