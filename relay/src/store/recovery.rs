//! Recovering administrator access without a running relay:
//! `deskside-relay admin-token --new` issues a new admin token straight in
//! the database, audited like every other change.
//!
//! For the operator of the machine only: whoever can write the relay's data
//! directory already owns the relay, so this grants nothing new.

use super::sql::{params, OptionalExtension as _, TransactionBehavior};
use deskside_protocol::Role;

use super::{
    insert_audit, insert_technician_token, token_target, NewAudit, OrgId, Store, StoreError,
    SYSTEM_ACTOR,
};

/// How the audit row says the token was made.
const VIA: &str = "deskside-relay admin-token --new";

/// A token issued by [`Store::recover_admin_token`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredAdmin {
    /// The organisation it belongs to.
    pub org: OrgId,
    /// The token's name (unique: `admin-recovered-<unix time>`).
    pub name: String,
}

impl Store {
    /// Issues a new admin token for the organisation (the first one, the
    /// relay serves one), audited as `token.create` with `"recovery": true`.
    /// `None` if the database has no organisation yet: the relay's first
    /// start creates it along with the first admin token.
    pub fn recover_admin_token(
        &self,
        token_hash: &[u8; 32],
        now: i64,
    ) -> Result<Option<RecoveredAdmin>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let org: Option<i64> = tx
            .query_row("SELECT MIN(id) FROM organisations", [], |row| row.get(0))
            .optional()?
            .flatten();
        let Some(org) = org.map(OrgId) else {
            return Ok(None);
        };
        // Unique even if run twice in one second.
        let mut name = format!("admin-recovered-{now}");
        let mut suffix = 1;
        while tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM technician_tokens WHERE org_id = ?1 AND name = ?2)",
            params![org.0, name],
            |row| row.get::<_, bool>(0),
        )? {
            suffix += 1;
            name = format!("admin-recovered-{now}-{suffix}");
        }
        let id = insert_technician_token(&tx, org, &name, Role::Admin, token_hash, None, now)?;
        insert_audit(
            &tx,
            &NewAudit {
                at: now,
                org: Some(org),
                actor: SYSTEM_ACTOR,
                action: "token.create",
                target: &token_target(id),
                detail: &serde_json::json!({
                    "name": name,
                    "role": Role::Admin.as_str(),
                    "expires_at": null,
                    "recovery": true,
                    "via": VIA,
                }),
            },
        )?;
        tx.commit()?;
        Ok(Some(RecoveredAdmin { org, name }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recovered_admin_token_logs_in_and_is_audited() {
        let store = super::super::tests::fresh_store();
        assert_eq!(store.recover_admin_token(&[1; 32], 100).unwrap(), None);
        let org = store
            .bootstrap("Example", "admin", &[2; 32], 100)
            .unwrap()
            .unwrap();
        let first = store.recover_admin_token(&[3; 32], 200).unwrap().unwrap();
        let second = store.recover_admin_token(&[4; 32], 200).unwrap().unwrap();
        assert_eq!(first.org, org);
        assert_ne!(first.name, second.name);
        let technician = store
            .authenticate_technician(&[3; 32], 300)
            .unwrap()
            .unwrap();
        assert_eq!(technician.role, Role::Admin);
        let audit = store.audit_entries(Some(org), 100).unwrap();
        let rows: Vec<_> = audit
            .iter()
            .filter(|e| e.action == "token.create" && e.detail["recovery"] == true)
            .collect();
        assert_eq!(rows.len(), 2, "{audit:?}");
        assert_eq!(rows[0].actor, SYSTEM_ACTOR);
        assert_eq!(rows[0].detail["via"], VIA);
    }
}
