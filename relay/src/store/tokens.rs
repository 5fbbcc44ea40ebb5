//! Technician tokens and enrollment tokens: issued, authenticated, listed.
//! Only the SHA-256 of a token's secret is stored, and never audited.
//! (Revocation and expiry live in `access.rs`.)

// The store's shared types, imports and helpers (`store.rs`).
use super::*;

/// Inserts a technician token row and returns its id: the one statement
/// every way of issuing a token (first start, `tokens create`, recovery)
/// goes through.
pub(super) fn insert_technician_token(
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
    Ok(conn.last_insert_rowid()?)
}

/// Columns read by [`TokenRow::from_row`].
pub(super) const TOKEN_COLUMNS: &str =
    "id, org_id, name, role, created_at, expires_at, revoked_at, last_used_at";

/// A technician token row whose role is not decoded yet (decoding can fail
/// with [`StoreError::Corrupt`], which a row-mapping closure cannot return).
pub(super) struct TokenRow {
    pub(super) id: i64,
    pub(super) org: OrgId,
    pub(super) name: String,
    pub(super) role: String,
    pub(super) created_at: i64,
    pub(super) expires_at: Option<i64>,
    pub(super) revoked_at: Option<i64>,
    pub(super) last_used_at: Option<i64>,
}

impl TokenRow {
    pub(super) fn from_row(row: &Row<'_>) -> super::sql::Result<TokenRow> {
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

    pub(super) fn decode(self) -> Result<(OrgId, TechnicianTokenInfo), StoreError> {
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

impl Store {
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
        let id = tx.last_insert_rowid()?;
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
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A test should panic on an unexpected error.
mod tests {
    use super::*;
    use crate::store::tests::*;

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
            conn.execute_batch(if conn.is_postgres() {
                "ALTER TABLE technician_tokens DROP CONSTRAINT technician_tokens_role_check"
            } else {
                "PRAGMA ignore_check_constraints = ON"
            })
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
}
