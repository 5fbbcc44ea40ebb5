//! Who may still do what: the store side of ending access at once.
//!
//! - whether a technician token still grants access (checked by the relay
//!   on every console request) and when it expires (the relay arms a timer);
//! - ending a token's open sessions when it is revoked or expires, and an
//!   administrator ending any session, each with its `session.end` row;
//! - the organisation's open sessions, for `deskside session list`;
//! - enrollment tokens as administrators list and revoke them;
//! - technician token names kept unique, and the last active administrator
//!   token kept from being revoked;
//! - devices enrolled but never attached ("orphans": an enrollment whose
//!   agent crashed before it kept its files), removed after a while.
//!
//! Like the rest of [`Store`], nothing here reads the clock, and every
//! change writes its audit row in the same transaction.

use super::sql::{params, OptionalExtension, Transaction, TransactionBehavior};
use deskside_protocol::console::{EnrollTokenInfo, SessionInfo, TechnicianTokenInfo};
use deskside_protocol::session::Capabilities;
use deskside_protocol::{DeviceId, Refusal, Role, TechnicianId};

use super::sessions::{load_session, write_session_end, SessionEnd};
use super::{
    device_id_from_sql, device_id_to_sql, device_target, insert_audit, technician_id_from_sql,
    technician_id_to_sql, token_target, NewAudit, OrgId, SessionRecord, Store, StoreError,
    TokenRow, SYSTEM_ACTOR, TOKEN_COLUMNS,
};
use crate::store::session_text;

/// Why a technician token stopped granting access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessEnd {
    /// An administrator revoked it (or it no longer exists).
    Revoked,
    /// Its expiry time passed.
    Expired,
}

impl AccessEnd {
    /// `revoked` or `expired`, as written in audit rows and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessEnd::Revoked => "revoked",
            AccessEnd::Expired => "expired",
        }
    }

    /// The `by` of the `session.end` rows of the token's sessions.
    pub fn ended_by(self) -> &'static str {
        match self {
            AccessEnd::Revoked => "token_revoked",
            AccessEnd::Expired => "token_expired",
        }
    }
}

/// A session [`Store::end_technician_sessions`] or
/// [`Store::end_session_as_admin`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndedSession {
    /// The session id.
    pub id: deskside_protocol::SessionId,
    /// Its device (whose agent may still show the consent dialog).
    pub device: DeviceId,
    /// Whether the employee had granted it (it was running), or it was
    /// still waiting for the answer.
    pub consented: bool,
    /// Its row as the ending left it (for the linked requests' follow-up).
    pub record: SessionRecord,
}

/// The `by` of a session ended by an administrator's `session end`.
pub const ENDED_BY_ADMINISTRATOR: &str = "administrator";

/// The open sessions (not ended) a query found, with what their end row
/// needs.
struct OpenSession {
    id: u64,
    org: OrgId,
    device: DeviceId,
    granted: Option<String>,
    consent_at: Option<i64>,
}

fn open_sessions(
    tx: &Transaction<'_>,
    condition: &str,
    values: impl super::sql::Params,
) -> Result<Vec<OpenSession>, StoreError> {
    let mut statement = tx.prepare(&format!(
        "SELECT id, org_id, device_id, granted, consent_at FROM sessions
         WHERE ended_at IS NULL AND {condition} ORDER BY requested_at, id"
    ))?;
    let rows = statement.query_map(values, |row| {
        Ok(OpenSession {
            id: row.get::<_, i64>(0)? as u64,
            org: OrgId(row.get(1)?),
            device: device_id_from_sql(row.get(2)?),
            granted: row.get(3)?,
            consent_at: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Ends `session` inside `tx` with `by`, writing its `session.end` row,
/// and, if it never started, the `session_not_held` follow-up of its
/// linked help requests (like every other way a session ends).
fn end_open(
    tx: &Transaction<'_>,
    session: &OpenSession,
    by: &str,
    actor: &str,
    now: i64,
) -> Result<EndedSession, StoreError> {
    let granted = match &session.granted {
        Some(text) => Some(serde_json::from_str::<Capabilities>(text).map_err(|error| {
            StoreError::Corrupt(format!(
                "session {} has unreadable capabilities {text:?}: {error}",
                session_text(session.id)
            ))
        })?),
        None => None,
    };
    write_session_end(
        tx,
        &SessionEnd {
            id: session.id,
            org: session.org,
            device: session.device,
            granted,
            consent_at: session.consent_at,
            by,
        },
        actor,
        serde_json::Map::new(),
        now,
    )?;
    let record = load_session(tx, session.id)?.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "session {} vanished while it was ended",
            session_text(session.id)
        ))
    })?;
    super::requests::add_not_held_follow_ups(tx, &record, None, now)?;
    Ok(EndedSession {
        id: deskside_protocol::SessionId(session.id),
        device: session.device,
        consented: session.granted.is_some(),
        record,
    })
}

/// Whether a token row is usable at `now`.
fn is_active(revoked_at: Option<i64>, expires_at: Option<i64>, now: i64) -> bool {
    revoked_at.is_none() && expires_at.is_none_or(|expires_at| expires_at > now)
}

impl Store {
    /// Whether technician token `id` still grants access at `now`: its
    /// expiry (`None`: never) if so, else why not. A token that no longer
    /// exists counts as revoked. One primary-key read: it runs before
    /// every console request.
    pub fn technician_access(
        &self,
        id: TechnicianId,
        now: i64,
    ) -> Result<Result<Option<i64>, AccessEnd>, StoreError> {
        let conn = self.lock();
        let found: Option<(Option<i64>, Option<i64>)> = conn
            .prepare_cached("SELECT revoked_at, expires_at FROM technician_tokens WHERE id = ?1")?
            .query_row([technician_id_to_sql(id)], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?;
        Ok(match found {
            None | Some((Some(_), _)) => Err(AccessEnd::Revoked),
            Some((None, Some(expires_at))) if expires_at <= now => Err(AccessEnd::Expired),
            Some((None, expires_at)) => Ok(expires_at),
        })
    }

    /// Ends every open session of technician token `technician` because
    /// the token stopped granting access (`session.end` with `by`
    /// `token_revoked` or `token_expired`). Returns the sessions ended.
    pub fn end_technician_sessions(
        &self,
        technician: TechnicianId,
        cause: AccessEnd,
        actor: &str,
        now: i64,
    ) -> Result<Vec<EndedSession>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let open = open_sessions(
            &tx,
            "technician_id = ?1",
            [technician_id_to_sql(technician)],
        )?;
        let ended = open
            .iter()
            .map(|session| end_open(&tx, session, cause.ended_by(), actor, now))
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit()?;
        // The ticket outbox wakes for the events it may have written.
        self.request_events_written();
        Ok(ended)
    }

    /// Ends open session `id` of `org` on an administrator's decision
    /// (`session.end` with `by` `administrator`, actor the administrator).
    /// `None` if `org` has no such open session.
    pub fn end_session_as_admin(
        &self,
        org: OrgId,
        session: deskside_protocol::SessionId,
        actor: &str,
        now: i64,
    ) -> Result<Option<EndedSession>, StoreError> {
        let id = session.0;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let open = open_sessions(&tx, "id = ?1 AND org_id = ?2", params![id as i64, org.0])?;
        let Some(session) = open.first() else {
            return Ok(None);
        };
        let ended = end_open(&tx, session, ENDED_BY_ADMINISTRATOR, actor, now)?;
        tx.commit()?;
        // The ticket outbox wakes for the events it may have written.
        self.request_events_written();
        Ok(Some(ended))
    }

    /// The organisation's open sessions, oldest first.
    pub fn list_open_sessions(&self, org: OrgId) -> Result<Vec<SessionInfo>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare(
            "SELECT s.id, s.device_id, d.hostname, s.technician_id, t.name, s.capabilities,
                    s.granted, s.requested_at, s.consent_at
             FROM sessions s
             JOIN devices d ON d.id = s.device_id
             JOIN technician_tokens t ON t.id = s.technician_id
             WHERE s.org_id = ?1 AND s.ended_at IS NULL
             ORDER BY s.requested_at, s.id",
        )?;
        let rows = statement.query_map([org.0], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, String>(5)?,
                row.get::<_, Option<String>>(6)?,
                row.get::<_, i64>(7)?,
                row.get::<_, Option<i64>>(8)?,
            ))
        })?;
        let label = |text: &str| {
            serde_json::from_str::<Capabilities>(text)
                .map(|capabilities| capabilities.label().to_owned())
                .map_err(|error| {
                    StoreError::Corrupt(format!(
                        "unreadable session capabilities {text:?}: {error}"
                    ))
                })
        };
        let mut sessions = Vec::new();
        for row in rows {
            let (id, device, hostname, technician, name, asked, granted, requested_at, consent_at) =
                row?;
            sessions.push(SessionInfo {
                session_id: deskside_protocol::SessionId(id as u64),
                device: device_id_from_sql(device),
                hostname,
                technician: technician_id_from_sql(technician),
                technician_name: name,
                capabilities: label(&asked)?,
                granted: granted.as_deref().map(label).transpose()?,
                requested_at,
                consent_at,
            });
        }
        Ok(sessions)
    }

    /// The organisation's enrollment tokens, oldest first, including spent,
    /// expired and revoked ones (never their hashes).
    pub fn list_enroll_tokens(&self, org: OrgId) -> Result<Vec<EnrollTokenInfo>, StoreError> {
        let conn = self.lock();
        query_enroll_tokens(&conn, "e.org_id = ?1", params![org.0])
    }

    /// Revokes enrollment token `id` of `org` (audited as
    /// `enroll_token.revoke`): no device can enroll with it any more.
    /// `None` if `org` has no such token; revoking a revoked token keeps
    /// the first time and writes no second row.
    pub fn revoke_enroll_token(
        &self,
        org: OrgId,
        id: u64,
        actor: &str,
        now: i64,
    ) -> Result<Option<EnrollTokenInfo>, StoreError> {
        let id = i64::try_from(id).unwrap_or(i64::MAX);
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE enroll_tokens SET revoked_at = ?1
             WHERE id = ?2 AND org_id = ?3 AND revoked_at IS NULL",
            params![now, id, org.0],
        )?;
        let Some(info) =
            query_enroll_tokens(&tx, "e.id = ?1 AND e.org_id = ?2", params![id, org.0])?.pop()
        else {
            return Ok(None);
        };
        if changed > 0 {
            insert_audit(
                &tx,
                &NewAudit {
                    at: now,
                    org: Some(org),
                    actor,
                    action: "enroll_token.revoke",
                    target: &format!("enroll_token:{id}"),
                    detail: &serde_json::json!({
                        "uses_left": info.uses_left,
                        "uses_total": info.uses_total,
                        "group": info.group,
                    }),
                },
            )?;
        }
        tx.commit()?;
        Ok(Some(info))
    }

    /// The active (neither revoked nor expired) technician token of `org`
    /// named `name` (compared without case and surrounding spaces), if any.
    /// Names are what employees see in the consent dialog, so two active
    /// tokens never share one.
    pub fn active_technician_named(
        &self,
        org: OrgId,
        name: &str,
        now: i64,
    ) -> Result<Option<TechnicianTokenInfo>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare(&format!(
            "SELECT {TOKEN_COLUMNS} FROM technician_tokens
             WHERE org_id = ?1 AND lower(trim(name)) = lower(trim(?2)) AND revoked_at IS NULL
               AND (expires_at IS NULL OR expires_at > ?3)
             ORDER BY id LIMIT 1"
        ))?;
        let found = statement
            .query_row(params![org.0, name, now], TokenRow::from_row)
            .optional()?;
        Ok(match found {
            Some(row) => Some(row.decode()?.1),
            None => None,
        })
    }

    /// Revokes a technician token of `org` (audited as `token.revoke`).
    /// `Ok(None)` if the organisation has no such token. Revoking a revoked
    /// or expired token changes nothing and writes no audit row. Refuses,
    /// in the same transaction, to revoke the organisation's last active
    /// administrator token (nobody could manage the organisation any more).
    pub fn revoke_technician_token(
        &self,
        org: OrgId,
        id: TechnicianId,
        actor: &str,
        now: i64,
    ) -> Result<Result<Option<TechnicianTokenInfo>, Refusal>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(info) = token_in_org(&tx, org, id)? else {
            return Ok(Ok(None));
        };
        if !is_active(info.revoked_at, info.expires_at, now) {
            // Already revoked or expired: nothing changes.
            return Ok(Ok(Some(info)));
        }
        if info.role == Role::Admin {
            let other_admins: i64 = tx.query_row(
                "SELECT count(*) FROM technician_tokens
                 WHERE org_id = ?1 AND id != ?2 AND role = 'admin' AND revoked_at IS NULL
                   AND (expires_at IS NULL OR expires_at > ?3)",
                params![org.0, technician_id_to_sql(id), now],
                |row| row.get(0),
            )?;
            if other_admins == 0 {
                return Ok(Err(Refusal::Invalid(format!(
                    "token {id} ({}) is the organisation's last active admin token: revoking it would leave nobody able to manage the organisation; create another admin token first (`deskside tokens create --role admin`)",
                    info.name
                ))));
            }
        }
        tx.execute(
            "UPDATE technician_tokens SET revoked_at = ?1 WHERE id = ?2",
            params![now, technician_id_to_sql(id)],
        )?;
        audit_token_revoke(&tx, org, &info, actor, now)?;
        tx.commit()?;
        Ok(Ok(Some(TechnicianTokenInfo {
            revoked_at: Some(now),
            ..info
        })))
    }

    /// Removes devices enrolled at or before `enrolled_before` that never
    /// attached (their `last_seen` is still their enrollment time, and they
    /// have no diagnostics and no sessions): an enrollment whose agent never
    /// kept its identity. Each removal gives its enrollment token's use
    /// back and is audited as `device.orphan_removed` (actor `system`).
    pub fn remove_orphan_devices(
        &self,
        enrolled_before: i64,
        now: i64,
    ) -> Result<Vec<DeviceId>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let orphans = {
            let mut statement = tx.prepare(
                "SELECT d.id, d.org_id, d.hostname, d.enroll_token_id, d.first_seen FROM devices d
                 WHERE d.revoked_at IS NULL AND d.last_seen = d.first_seen AND d.first_seen <= ?1
                   AND NOT EXISTS (SELECT 1 FROM diagnostics g WHERE g.device_id = d.id)
                   AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.device_id = d.id)
                   AND NOT EXISTS (SELECT 1 FROM requests q WHERE q.device_id = d.id)",
            )?;
            let rows = statement.query_map([enrolled_before], |row| {
                Ok((
                    device_id_from_sql(row.get(0)?),
                    OrgId(row.get(1)?),
                    row.get::<_, String>(2)?,
                    row.get::<_, Option<i64>>(3)?,
                    row.get::<_, i64>(4)?,
                ))
            })?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        for (id, org, hostname, token, enrolled_at) in &orphans {
            tx.execute("DELETE FROM devices WHERE id = ?1", [device_id_to_sql(*id)])?;
            if let Some(token) = token {
                tx.execute(
                    "UPDATE enroll_tokens SET uses_left = CASE WHEN uses_left + 1 < uses_total
                                                THEN uses_left + 1 ELSE uses_total END
                     WHERE id = ?1",
                    [token],
                )?;
            }
            insert_audit(
                &tx,
                &NewAudit {
                    at: now,
                    org: Some(*org),
                    actor: SYSTEM_ACTOR,
                    action: "device.orphan_removed",
                    target: &device_target(*id),
                    detail: &serde_json::json!({
                        "hostname": hostname,
                        "enrolled_at": enrolled_at,
                        "enroll_token_id": token,
                        "why": "enrolled but never attached",
                    }),
                },
            )?;
        }
        tx.commit()?;
        Ok(orphans.into_iter().map(|(id, ..)| id).collect())
    }
}

/// Technician token `id` of `org`, if the organisation has one.
fn token_in_org(
    tx: &Transaction<'_>,
    org: OrgId,
    id: TechnicianId,
) -> Result<Option<TechnicianTokenInfo>, StoreError> {
    let found = tx
        .query_row(
            &format!("SELECT {TOKEN_COLUMNS} FROM technician_tokens WHERE id = ?1 AND org_id = ?2"),
            params![technician_id_to_sql(id), org.0],
            TokenRow::from_row,
        )
        .optional()?;
    found.map(|row| Ok(row.decode()?.1)).transpose()
}

/// Writes the `token.revoke` row of token `info`: the one place it is
/// built, whichever revoke path revoked the token.
fn audit_token_revoke(
    tx: &Transaction<'_>,
    org: OrgId,
    info: &TechnicianTokenInfo,
    actor: &str,
    now: i64,
) -> Result<(), StoreError> {
    insert_audit(
        tx,
        &NewAudit {
            at: now,
            org: Some(org),
            actor,
            action: "token.revoke",
            target: &token_target(technician_id_to_sql(info.id)),
            detail: &serde_json::json!({ "name": info.name, "role": info.role.as_str() }),
        },
    )?;
    Ok(())
}

fn query_enroll_tokens(
    conn: &super::sql::Connection,
    condition: &str,
    values: impl super::sql::Params,
) -> Result<Vec<EnrollTokenInfo>, StoreError> {
    let mut statement = conn.prepare(&format!(
        "SELECT e.id, e.uses_total, e.uses_left, e.created_at, e.expires_at, e.revoked_at,
                e.device_group, t.name
         FROM enroll_tokens e LEFT JOIN technician_tokens t ON t.id = e.created_by
         WHERE {condition} ORDER BY e.id"
    ))?;
    let rows = statement.query_map(values, |row| {
        Ok(EnrollTokenInfo {
            id: row.get::<_, i64>(0)? as u64,
            uses_total: u32::try_from(row.get::<_, i64>(1)?).unwrap_or(u32::MAX),
            uses_left: u32::try_from(row.get::<_, i64>(2)?).unwrap_or(u32::MAX),
            created_at: row.get(3)?,
            expires_at: row.get(4)?,
            revoked_at: row.get(5)?,
            group: row.get(6)?,
            created_by: row.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A test should panic on an unexpected error.
mod tests {
    use super::*;
    use crate::store::tests::{bootstrapped, enroll, enroll_token, hash, T0};

    fn actions(store: &Store) -> Vec<String> {
        store
            .audit_entries(None, 1000)
            .unwrap()
            .into_iter()
            .map(|row| row.action)
            .collect()
    }

    /// How many audit rows have `action`.
    fn count_actions(store: &Store, action: &str) -> usize {
        actions(store).iter().filter(|a| *a == action).count()
    }

    fn technician(
        store: &Store,
        org: OrgId,
        name: &str,
        role: Role,
        expires: Option<i64>,
    ) -> TechnicianId {
        store
            .create_technician_token(org, name, role, &hash(name), expires, "system", T0)
            .unwrap()
            .id
    }

    #[test]
    fn access_is_checked_against_revocation_and_expiry() {
        let (store, org) = bootstrapped();
        let forever = technician(&store, org, "ana", Role::Technician, None);
        let hour = technician(&store, org, "bob", Role::Technician, Some(T0 + 3600));
        assert_eq!(store.technician_access(forever, T0).unwrap(), Ok(None));
        assert_eq!(
            store.technician_access(hour, T0).unwrap(),
            Ok(Some(T0 + 3600))
        );
        assert_eq!(
            store.technician_access(hour, T0 + 3600).unwrap(),
            Err(AccessEnd::Expired)
        );
        store
            .revoke_technician_token(org, forever, "system", T0)
            .unwrap()
            .expect("not refused");
        assert_eq!(
            store.technician_access(forever, T0).unwrap(),
            Err(AccessEnd::Revoked)
        );
        assert_eq!(
            store.technician_access(TechnicianId(999), T0).unwrap(),
            Err(AccessEnd::Revoked)
        );
    }

    #[test]
    fn the_last_active_admin_token_cannot_be_revoked() {
        let (store, org) = bootstrapped();
        let first_admin = TechnicianId(1);
        let error = store
            .revoke_technician_token(org, first_admin, "system", T0)
            .unwrap()
            .unwrap_err();
        assert!(
            error.to_string().contains("last active admin token"),
            "{error}"
        );
        // An expired admin does not count as another administrator.
        technician(&store, org, "old-admin", Role::Admin, Some(T0));
        assert!(store
            .revoke_technician_token(org, first_admin, "system", T0)
            .unwrap()
            .is_err());
        let second = technician(&store, org, "second-admin", Role::Admin, None);
        let revoked = store
            .revoke_technician_token(org, first_admin, "system", T0)
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(revoked.revoked_at, Some(T0));
        assert!(store
            .revoke_technician_token(org, second, "system", T0)
            .unwrap()
            .is_err());
        assert_eq!(count_actions(&store, "token.revoke"), 1);
    }

    #[test]
    fn names_are_unique_among_active_tokens_only() {
        let (store, org) = bootstrapped();
        let ana = technician(&store, org, "Ana", Role::Technician, None);
        let found = store
            .active_technician_named(org, " ana ", T0)
            .unwrap()
            .unwrap();
        assert_eq!(found.id, ana);
        store
            .revoke_technician_token(org, ana, "system", T0)
            .unwrap()
            .expect("not refused");
        assert_eq!(store.active_technician_named(org, "Ana", T0).unwrap(), None);
    }

    #[test]
    fn enrollment_tokens_are_listed_and_revoked_with_an_audit_row() {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "e1", 2);
        enroll(&store, "e1", "key-1", "pc-1", 1, T0).unwrap();
        let listed = store.list_enroll_tokens(org).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].uses_total, listed[0].uses_left), (2, 1));
        let revoked = store
            .revoke_enroll_token(org, listed[0].id, "technician:1 (admin)", T0 + 5)
            .unwrap()
            .unwrap();
        assert_eq!(revoked.revoked_at, Some(T0 + 5));
        assert_eq!(store.revoke_enroll_token(org, 99, "x", T0).unwrap(), None);
        // Revoking again writes no second row, and the token no longer enrolls.
        store
            .revoke_enroll_token(org, listed[0].id, "x", T0 + 9)
            .unwrap();
        assert_eq!(count_actions(&store, "enroll_token.revoke"), 1);
        assert_eq!(
            enroll(&store, "e1", "key-2", "pc-2", 2, T0 + 10),
            Err(Refusal::EnrollTokenInvalid)
        );
    }

    #[test]
    fn the_same_key_retrying_the_same_token_gets_the_same_device() {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "single", 1);
        let first = enroll(&store, "single", "key-1", "pc", 1, T0).unwrap();
        // The answer was lost: the agent retries with the same key.
        let again = enroll(&store, "single", "key-1", "pc", 2, T0 + 30).unwrap();
        assert_eq!(again.id, first.id);
        assert_eq!(store.list_devices(org).unwrap().len(), 1);
        assert_eq!(store.list_enroll_tokens(org).unwrap()[0].uses_left, 0);
        // Another key still finds the single use spent.
        assert_eq!(
            enroll(&store, "single", "key-2", "pc", 3, T0 + 30),
            Err(Refusal::EnrollTokenUsedUp)
        );
        assert_eq!(count_actions(&store, "device.enroll"), 1);
    }

    #[test]
    fn orphan_devices_are_removed_with_their_use_given_back() {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "e", 2);
        let orphan = enroll(&store, "e", "key-1", "never-attached", 1, T0).unwrap();
        let attached = enroll(&store, "e", "key-2", "attached", 2, T0).unwrap();
        store
            .attach_device(
                b"key-2",
                &deskside_protocol::agent::DeviceInfo {
                    hostname: "attached".to_owned(),
                    os: "Debian GNU/Linux 12".to_owned(),
                    agent_version: "0.1.0".to_owned(),
                },
                "192.0.2.1:1",
                // Attached in the second it enrolled: not an orphan.
                T0,
            )
            .unwrap()
            .unwrap();
        let day = 86_400;
        // Enrolled after the cut-off: kept.
        assert_eq!(store.remove_orphan_devices(T0 - 1, T0 + 10).unwrap(), []);
        assert_eq!(
            store.remove_orphan_devices(T0, T0 + day).unwrap(),
            [orphan.id]
        );
        let left: Vec<DeviceId> = store
            .list_devices(org)
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(left, [attached.id]);
        assert_eq!(store.list_enroll_tokens(org).unwrap()[0].uses_left, 1);
        assert!(actions(&store).contains(&"device.orphan_removed".to_owned()));
        assert_eq!(store.verify_audit_chain().unwrap(), Ok(()));
    }
}
