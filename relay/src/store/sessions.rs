//! Remote sessions in the store: technicians' session keys, one row per
//! session, and the audit rows of every step (`session.key_registered`,
//! `session.request`, `session.consent`, `session.end`).
//!
//! Like the rest of [`Store`], every method that changes a session writes
//! its audit row in the same transaction, and nothing here reads the clock.
//! A session is *open* while `ended_at` is NULL. A refusal closes it at once
//! (it never ran, so it gets no `session.end` row: its `session.consent`
//! row says what happened); every session that ran or was still waiting for
//! the employee gets exactly one `session.end` row, if need be from
//! [`Store::sort_interrupted_sessions`] when the relay restarts (and, for a
//! consented session its parties did not resume, from the relay's grace
//! watchdog).

use super::sql::{params, OptionalExtension, Row, Transaction, TransactionBehavior};
use deskside_protocol::session::{Capabilities, EndedBy};
use deskside_protocol::{DeviceId, Fingerprint, TechnicianId};

use super::{
    device_id_from_sql, device_id_to_sql, device_target, insert_audit, technician_id_from_sql,
    technician_id_to_sql, token_target, NewAudit, OrgId, Store, StoreError, SYSTEM_ACTOR,
};

/// A session as the relay first records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSession<'a> {
    /// The random, non-zero id that tags the session's packets.
    pub id: deskside_protocol::SessionId,
    /// The organisation of the technician and the device.
    pub org: OrgId,
    /// The device asked.
    pub device: DeviceId,
    /// The technician token that asked.
    pub technician: TechnicianId,
    /// What was asked for.
    pub capabilities: Capabilities,
    /// Why, as shown to the employee.
    pub reason: &'a str,
}

/// A stored session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session id.
    pub id: deskside_protocol::SessionId,
    /// Its organisation.
    pub org: OrgId,
    /// The device.
    pub device: DeviceId,
    /// The technician token that opened it.
    pub technician: TechnicianId,
    /// What was asked for.
    pub capabilities: Capabilities,
    /// Why.
    pub reason: String,
    /// When it was asked for, Unix seconds.
    pub requested_at: i64,
    /// The employee's answer (`accepted`, `refused`, `timed_out`, …), once
    /// the agent sent it.
    pub consent_outcome: Option<String>,
    /// When the answer was recorded.
    pub consent_at: Option<i64>,
    /// What was granted; `None` before the answer and after a refusal.
    pub granted: Option<Capabilities>,
    /// When it ended (or was refused).
    pub ended_at: Option<i64>,
    /// Who ended it ([`EndedBy::as_str`]); `None` while open and after a
    /// refusal.
    pub ended_by: Option<String>,
}

impl SessionRecord {
    /// Whether the employee granted the session (and it may carry data).
    pub fn consented(&self) -> bool {
        self.granted.is_some()
    }

    /// Whether the session is over (ended or refused).
    pub fn is_closed(&self) -> bool {
        self.ended_at.is_some()
    }
}

/// Who asks to change a session; the store checks that it is a party.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionParty {
    /// The agent of this device.
    Device(DeviceId),
    /// The technician token that opened the session.
    Technician(TechnicianId),
    /// The relay itself.
    System,
}

/// What [`Store::record_consent`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsentOutcome {
    /// No such session, or it belongs to another device. Nothing changed.
    NotThisDevice,
    /// The answer was recorded and audited (the record is after the change).
    Recorded(SessionRecord),
    /// An answer was already recorded (for example resent after an agent
    /// reconnect); nothing changed.
    AlreadyRecorded(SessionRecord),
}

/// The consent outcome and end of a session request withdrawn before the
/// employee answered.
pub const WITHDRAWN: &str = "withdrawn";

/// What [`Store::withdraw_session`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WithdrawOutcome {
    /// No such session, or the caller is not a party to it. Nothing changed.
    NotFound,
    /// The request was withdrawn and audited (the record after the change).
    Withdrawn(SessionRecord),
    /// The employee had answered (or it had ended) already; nothing changed.
    AlreadyDecided(SessionRecord),
}

/// What [`Store::end_session`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndOutcome {
    /// No such session, or the caller is not a party to it. Nothing changed.
    NotFound,
    /// The end was recorded and audited.
    Ended(SessionRecord),
    /// It had already ended or been refused; nothing changed.
    AlreadyClosed(SessionRecord),
}

const SESSION_COLUMNS: &str = "id, org_id, device_id, technician_id, capabilities, reason, \
     requested_at, consent_outcome, consent_at, granted, ended_at, ended_by";

/// A session row whose JSON columns are not parsed yet.
struct SessionRow {
    id: i64,
    org: i64,
    device: i64,
    technician: i64,
    capabilities: String,
    reason: String,
    requested_at: i64,
    consent_outcome: Option<String>,
    consent_at: Option<i64>,
    granted: Option<String>,
    ended_at: Option<i64>,
    ended_by: Option<String>,
}

impl SessionRow {
    fn from_row(row: &Row<'_>) -> super::sql::Result<SessionRow> {
        Ok(SessionRow {
            id: row.get(0)?,
            org: row.get(1)?,
            device: row.get(2)?,
            technician: row.get(3)?,
            capabilities: row.get(4)?,
            reason: row.get(5)?,
            requested_at: row.get(6)?,
            consent_outcome: row.get(7)?,
            consent_at: row.get(8)?,
            granted: row.get(9)?,
            ended_at: row.get(10)?,
            ended_by: row.get(11)?,
        })
    }

    fn decode(self) -> Result<SessionRecord, StoreError> {
        let id = session_id_from_sql(self.id);
        let parse = |text: &str| {
            serde_json::from_str::<Capabilities>(text).map_err(|error| {
                StoreError::Corrupt(format!(
                    "session {id:016x} has unreadable capabilities {text:?}: {error}"
                ))
            })
        };
        Ok(SessionRecord {
            id: deskside_protocol::SessionId(id),
            org: OrgId(self.org),
            device: device_id_from_sql(self.device),
            technician: technician_id_from_sql(self.technician),
            capabilities: parse(&self.capabilities)?,
            reason: self.reason,
            requested_at: self.requested_at,
            consent_outcome: self.consent_outcome,
            consent_at: self.consent_at,
            granted: self.granted.as_deref().map(parse).transpose()?,
            ended_at: self.ended_at,
            ended_by: self.ended_by,
        })
    }
}

/// Session ids are random `u64`s stored as their bits in a signed integer.
fn session_id_to_sql(id: u64) -> i64 {
    id as i64
}

fn session_id_from_sql(id: i64) -> u64 {
    id as u64
}

fn capabilities_json(capabilities: Capabilities) -> Result<String, StoreError> {
    serde_json::to_string(&capabilities)
        .map_err(|error| StoreError::Corrupt(format!("cannot encode capabilities: {error}")))
}

pub(super) fn load_session(
    tx: &Transaction<'_>,
    id: u64,
) -> Result<Option<SessionRecord>, StoreError> {
    tx.query_row(
        &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"),
        [session_id_to_sql(id)],
        SessionRow::from_row,
    )
    .optional()?
    .map(SessionRow::decode)
    .transpose()
}

/// Ends an open session inside `tx` and writes its `session.end` row;
/// `extra` adds facts to the row's detail.
fn end_in_tx(
    tx: &Transaction<'_>,
    record: &SessionRecord,
    by: EndedBy,
    actor: &str,
    extra: serde_json::Map<String, serde_json::Value>,
    now: i64,
) -> Result<SessionRecord, StoreError> {
    write_session_end(
        tx,
        &SessionEnd {
            id: record.id.0,
            org: record.org,
            device: record.device,
            granted: record.granted,
            consent_at: record.consent_at,
            by: by.as_str(),
        },
        actor,
        extra,
        now,
    )?;
    let ended = SessionRecord {
        ended_at: Some(now),
        ended_by: Some(by.as_str().to_owned()),
        ..record.clone()
    };
    // Ended before the employee accepted (the device or relay went away):
    // the linked help requests say it never started.
    super::requests::add_not_held_follow_ups(tx, &ended, None, now)?;
    Ok(ended)
}

/// What a `session.end` row says about the session it ends.
pub(super) struct SessionEnd<'a> {
    pub(super) id: u64,
    pub(super) org: OrgId,
    pub(super) device: DeviceId,
    /// What the employee granted, `None` if the session never started.
    pub(super) granted: Option<Capabilities>,
    pub(super) consent_at: Option<i64>,
    /// The `ended_by` column and the row's `by`.
    pub(super) by: &'a str,
}

/// Closes an open session inside `tx` and writes its `session.end` row:
/// the one place that row is built, whoever ends the session. `extra` adds
/// facts to the row's detail.
pub(super) fn write_session_end(
    tx: &Transaction<'_>,
    session: &SessionEnd<'_>,
    actor: &str,
    extra: serde_json::Map<String, serde_json::Value>,
    now: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE sessions SET ended_at = ?1, ended_by = ?2 WHERE id = ?3 AND ended_at IS NULL",
        params![now, session.by, session_id_to_sql(session.id)],
    )?;
    // How long the session ran: from the employee's Accept, or nothing if it
    // never started.
    let duration_secs = match (session.granted, session.consent_at) {
        (Some(_), Some(consent_at)) => now.saturating_sub(consent_at).max(0),
        _ => 0,
    };
    let mut detail = serde_json::json!({
        "session_id": session_text(session.id),
        "by": session.by,
        "duration_secs": duration_secs,
        "capabilities": session.granted.map_or("none", Capabilities::label),
    });
    if let Some(object) = detail.as_object_mut() {
        object.extend(extra);
    }
    insert_audit(
        tx,
        &NewAudit {
            at: now,
            org: Some(session.org),
            actor,
            action: "session.end",
            target: &device_target(session.device),
            detail: &detail,
        },
    )?;
    Ok(())
}

/// How a session id appears in audit rows and logs: 16 hex digits (JSON
/// numbers above 2^53 lose precision in many readers).
pub fn session_text(id: u64) -> String {
    deskside_protocol::session::session_id_text(id)
}

impl Store {
    /// Registers `key` as the session key of technician token `technician`
    /// (audited as `session.key_registered`). Registering the key already
    /// registered changes nothing and writes no row. `false` if `org` has
    /// no such token.
    pub fn register_session_key(
        &self,
        org: OrgId,
        technician: TechnicianId,
        key: &Fingerprint,
        actor: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: Option<Option<Vec<u8>>> = tx
            .query_row(
                "SELECT session_key FROM technician_tokens WHERE id = ?1 AND org_id = ?2",
                params![technician_id_to_sql(technician), org.0],
                |row| row.get(0),
            )
            .optional()?;
        let Some(current) = current else {
            return Ok(false);
        };
        if current.as_deref() == Some(&key.0[..]) {
            return Ok(true);
        }
        tx.execute(
            "UPDATE technician_tokens SET session_key = ?1 WHERE id = ?2",
            params![&key.0[..], technician_id_to_sql(technician)],
        )?;
        insert_audit(
            &tx,
            &NewAudit {
                at: now,
                org: Some(org),
                actor,
                action: "session.key_registered",
                target: &token_target(technician_id_to_sql(technician)),
                detail: &serde_json::json!({
                    "key": key.to_string(),
                    "replaced": current.is_some(),
                }),
            },
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// The session key registered for technician token `technician`, if any.
    pub fn technician_session_key(
        &self,
        technician: TechnicianId,
    ) -> Result<Option<Fingerprint>, StoreError> {
        let conn = self.lock();
        let stored: Option<Option<Vec<u8>>> = conn
            .query_row(
                "SELECT session_key FROM technician_tokens WHERE id = ?1",
                [technician_id_to_sql(technician)],
                |row| row.get(0),
            )
            .optional()?;
        match stored.flatten() {
            None => Ok(None),
            Some(bytes) => {
                let key: [u8; 32] = bytes.try_into().map_err(|_| {
                    StoreError::Corrupt(format!(
                        "technician token {technician} has a session key that is not 32 bytes"
                    ))
                })?;
                Ok(Some(Fingerprint(key)))
            }
        }
    }

    /// Records a new session and audits `session.request` (actor `actor`,
    /// target the device). An id that is already taken is a
    /// `StoreError::Sqlite` (constraint); the caller picks the id at random,
    /// so that does not happen in practice.
    pub fn open_session(
        &self,
        session: &NewSession<'_>,
        actor: &str,
        now: i64,
    ) -> Result<SessionRecord, StoreError> {
        let capabilities = capabilities_json(session.capabilities)?;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO sessions (id, org_id, device_id, technician_id, capabilities, reason,
                                   requested_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                session_id_to_sql(session.id.0),
                session.org.0,
                device_id_to_sql(session.device),
                technician_id_to_sql(session.technician),
                capabilities,
                session.reason,
                now
            ],
        )?;
        insert_audit(
            &tx,
            &NewAudit {
                at: now,
                org: Some(session.org),
                actor,
                action: "session.request",
                target: &device_target(session.device),
                detail: &serde_json::json!({
                    "session_id": session_text(session.id.0),
                    "capabilities": session.capabilities.label(),
                    "reason": session.reason,
                }),
            },
        )?;
        tx.commit()?;
        Ok(SessionRecord {
            id: session.id,
            org: session.org,
            device: session.device,
            technician: session.technician,
            capabilities: session.capabilities,
            reason: session.reason.to_owned(),
            requested_at: now,
            consent_outcome: None,
            consent_at: None,
            granted: None,
            ended_at: None,
            ended_by: None,
        })
    }

    /// A session by id.
    pub fn session(
        &self,
        session: deskside_protocol::SessionId,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let id = session.0;
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        load_session(&tx, id)
    }

    /// Records the employee's answer for session `id`, sent by the agent of
    /// `device`, and audits `session.consent` (actor and target the device).
    ///
    /// What is granted is cut down to what was asked: an agent cannot widen
    /// a session. A refusal (`granted` is `None`) also closes the session.
    /// The first answer counts; later ones change nothing.
    pub fn record_consent(
        &self,
        session: deskside_protocol::SessionId,
        device: DeviceId,
        granted: Option<Capabilities>,
        outcome: &str,
        now: i64,
    ) -> Result<ConsentOutcome, StoreError> {
        let id = session.0;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(record) = load_session(&tx, id)? else {
            return Ok(ConsentOutcome::NotThisDevice);
        };
        if record.device != device {
            return Ok(ConsentOutcome::NotThisDevice);
        }
        if record.consent_outcome.is_some() {
            return Ok(ConsentOutcome::AlreadyRecorded(record));
        }
        let granted = granted.map(|given| Capabilities {
            view: given.view && record.capabilities.view,
            control: given.control && record.capabilities.control,
        });
        let granted_json = granted.map(capabilities_json).transpose()?;
        tx.execute(
            "UPDATE sessions SET consent_outcome = ?1, consent_at = ?2, granted = ?3
             WHERE id = ?4",
            params![outcome, now, granted_json, session_id_to_sql(id)],
        )?;
        let refused_open = granted.is_none() && record.ended_at.is_none();
        if refused_open {
            tx.execute(
                "UPDATE sessions SET ended_at = ?1 WHERE id = ?2",
                params![now, session_id_to_sql(id)],
            )?;
        }
        let target = device_target(device);
        insert_audit(
            &tx,
            &NewAudit {
                at: now,
                org: Some(record.org),
                actor: &target,
                action: "session.consent",
                target: &target,
                detail: &serde_json::json!({
                    "session_id": session_text(id),
                    "outcome": outcome,
                    "granted": granted.map(Capabilities::label),
                }),
            },
        )?;
        let recorded = SessionRecord {
            consent_outcome: Some(outcome.to_owned()),
            consent_at: Some(now),
            granted,
            ended_at: if refused_open {
                Some(now)
            } else {
                record.ended_at
            },
            ..record
        };
        // Refused or unanswered: the linked help requests say so.
        super::requests::add_not_held_follow_ups(&tx, &recorded, None, now)?;
        tx.commit()?;
        // The ticket outbox wakes for the events it may have written.
        self.request_events_written();
        Ok(ConsentOutcome::Recorded(recorded))
    }

    /// Ends session `id` on behalf of `party` and audits `session.end`
    /// (actor `actor`, target the device). `extra` adds facts to the audit
    /// detail. A session that is already over changes nothing.
    pub fn end_session(
        &self,
        session: deskside_protocol::SessionId,
        party: SessionParty,
        by: EndedBy,
        actor: &str,
        extra: serde_json::Map<String, serde_json::Value>,
        now: i64,
    ) -> Result<EndOutcome, StoreError> {
        let id = session.0;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(record) = load_session_of(&tx, id, party)? else {
            return Ok(EndOutcome::NotFound);
        };
        if record.is_closed() {
            return Ok(EndOutcome::AlreadyClosed(record));
        }
        let ended = end_in_tx(&tx, &record, by, actor, extra, now)?;
        tx.commit()?;
        // The ticket outbox wakes for the events it may have written.
        self.request_events_written();
        Ok(EndOutcome::Ended(ended))
    }

    /// Withdraws session `id` on behalf of `party` while it still waits for
    /// the employee's answer: the row is closed with consent outcome and
    /// end `withdrawn`, audited as `session.withdrawn` (never as a session
    /// that ran), and an answer arriving later finds it already decided.
    /// `reason` (for example `console_disconnected`) goes into the detail.
    pub fn withdraw_session(
        &self,
        session: deskside_protocol::SessionId,
        party: SessionParty,
        actor: &str,
        reason: &str,
        now: i64,
    ) -> Result<WithdrawOutcome, StoreError> {
        let id = session.0;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(record) = load_session_of(&tx, id, party)? else {
            return Ok(WithdrawOutcome::NotFound);
        };
        if record.consent_outcome.is_some() || record.is_closed() {
            return Ok(WithdrawOutcome::AlreadyDecided(record));
        }
        tx.execute(
            "UPDATE sessions SET consent_outcome = ?1, consent_at = ?2, ended_at = ?2, ended_by = ?1
             WHERE id = ?3",
            params![WITHDRAWN, now, session_id_to_sql(id)],
        )?;
        insert_audit(
            &tx,
            &NewAudit {
                at: now,
                org: Some(record.org),
                actor,
                action: "session.withdrawn",
                target: &device_target(record.device),
                detail: &serde_json::json!({
                    "session_id": session_text(id),
                    "reason": reason,
                }),
            },
        )?;
        let withdrawn = SessionRecord {
            consent_outcome: Some(WITHDRAWN.to_owned()),
            consent_at: Some(now),
            ended_at: Some(now),
            ended_by: Some(WITHDRAWN.to_owned()),
            ..record
        };
        super::requests::add_not_held_follow_ups(&tx, &withdrawn, None, now)?;
        tx.commit()?;
        // The ticket outbox wakes for the events it may have written.
        self.request_events_written();
        Ok(WithdrawOutcome::Withdrawn(withdrawn))
    }

    /// Sorts the sessions the relay's last stop left open, at start. One
    /// still waiting for the employee's answer is ended as
    /// `connection_lost` (with `relay_restarted: true` in its audit row):
    /// its request died with the relay. A consented one is returned to be
    /// resumed: its parties run their end-to-end connection on and come
    /// back to the relay; whoever restores it must end it if they do not.
    /// No session is left without its `session.end` row either way.
    pub fn sort_interrupted_sessions(&self, now: i64) -> Result<Interrupted, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let open = {
            let mut statement = tx.prepare(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE ended_at IS NULL ORDER BY requested_at, id"
            ))?;
            let rows = statement.query_map([], SessionRow::from_row)?;
            let mut open = Vec::new();
            for row in rows {
                open.push(row?.decode()?);
            }
            open
        };
        let mut extra = serde_json::Map::new();
        extra.insert("relay_restarted".to_owned(), serde_json::Value::Bool(true));
        let mut interrupted = Interrupted::default();
        for record in open {
            if record.consented() {
                interrupted.resumable.push(record);
            } else {
                end_in_tx(
                    &tx,
                    &record,
                    EndedBy::ConnectionLost,
                    SYSTEM_ACTOR,
                    extra.clone(),
                    now,
                )?;
                interrupted.ended.push(record.id.0);
            }
        }
        tx.commit()?;
        // The ticket outbox wakes for the events it may have written.
        self.request_events_written();
        Ok(interrupted)
    }
}

/// What [`Store::sort_interrupted_sessions`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interrupted {
    /// Sessions that were waiting for consent: ended now.
    pub ended: Vec<u64>,
    /// Consented sessions, still open, for their parties to resume.
    pub resumable: Vec<SessionRecord>,
}

/// Session `id` if `party` is one of its parties (`None` otherwise, as if
/// it did not exist: nobody learns of another party's sessions).
fn load_session_of(
    tx: &Transaction<'_>,
    id: u64,
    party: SessionParty,
) -> Result<Option<SessionRecord>, StoreError> {
    Ok(load_session(tx, id)?.filter(|record| match party {
        SessionParty::Device(device) => record.device == device,
        SessionParty::Technician(technician) => record.technician == technician,
        SessionParty::System => true,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A test should panic on an unexpected error.
mod tests {
    use super::super::tests::{bootstrapped, enroll, enroll_token, hash, T0};
    use super::*;
    use deskside_protocol::Role;

    struct World {
        store: Store,
        org: OrgId,
        device: DeviceId,
        technician: TechnicianId,
    }

    fn world() -> World {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "enroll", 2);
        let device = enroll(&store, "enroll", "key-a", "laptop", 1, T0)
            .unwrap()
            .id;
        let technician = store
            .create_technician_token(org, "ana", Role::Technician, &hash("t"), None, "system", T0)
            .unwrap()
            .id;
        World {
            store,
            org,
            device,
            technician,
        }
    }

    fn open(world: &World, id: u64, now: i64) -> SessionRecord {
        world
            .store
            .open_session(
                &NewSession {
                    id: deskside_protocol::SessionId(id),
                    org: world.org,
                    device: world.device,
                    technician: world.technician,
                    capabilities: Capabilities::CONTROL,
                    reason: "printer",
                },
                "technician:2 (ana)",
                now,
            )
            .unwrap()
    }

    /// Session audit rows, oldest first, as (action, actor, detail).
    fn session_rows(store: &Store) -> Vec<(String, String, serde_json::Value)> {
        let mut rows: Vec<_> = store
            .audit_entries(None, 1000)
            .unwrap()
            .into_iter()
            .filter(|entry| entry.action.starts_with("session."))
            .map(|entry| (entry.action, entry.actor, entry.detail))
            .collect();
        rows.reverse();
        rows
    }

    #[test]
    fn a_version_3_database_gains_sessions_and_keeps_its_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        {
            let mut conn =
                super::super::sql::Connection::sqlite(rusqlite::Connection::open(&path).unwrap());
            super::super::migrate(&mut conn, &super::super::MIGRATIONS[..3], "v3").unwrap();
            conn.execute_batch(
                "INSERT INTO organisations (name, created_at) VALUES ('Acme', 1);
                 INSERT INTO technician_tokens (org_id, name, role, token_hash, created_at)
                 VALUES (1, 'ana', 'technician', zeroblob(32), 1);",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        // Version 4 and every later migration ran.
        assert_eq!(
            store.schema_version(),
            super::super::MIGRATIONS.len() as u32
        );
        assert!(store.schema_version() >= 4);
        assert_eq!(store.technician_session_key(TechnicianId(1)).unwrap(), None);
        let key = Fingerprint([1; 32]);
        assert!(store
            .register_session_key(OrgId(1), TechnicianId(1), &key, "t", T0)
            .unwrap());
        assert_eq!(
            store.technician_session_key(TechnicianId(1)).unwrap(),
            Some(key)
        );
        // The column only takes 32-byte keys.
        let conn = store.lock();
        assert!(conn
            .execute(
                "UPDATE technician_tokens SET session_key = x'00' WHERE id = 1",
                []
            )
            .is_err());
    }

    #[test]
    fn session_keys_are_registered_once_and_audited() {
        let world = world();
        let store = &world.store;
        assert_eq!(
            store.technician_session_key(world.technician).unwrap(),
            None
        );
        let key = Fingerprint([7; 32]);
        assert!(store
            .register_session_key(world.org, world.technician, &key, "technician:2 (ana)", T0)
            .unwrap());
        assert!(store
            .register_session_key(world.org, world.technician, &key, "technician:2 (ana)", T0)
            .unwrap());
        assert_eq!(
            store.technician_session_key(world.technician).unwrap(),
            Some(key)
        );
        let rows = session_rows(store);
        assert_eq!(rows.len(), 1, "the same key twice is one change: {rows:?}");
        assert_eq!(rows[0].0, "session.key_registered");
        assert_eq!(rows[0].2["key"], key.to_string());
        assert_eq!(rows[0].2["replaced"], false);
        // Another organisation's token is not found.
        assert!(!store
            .register_session_key(OrgId(999), world.technician, &key, "x", T0)
            .unwrap());
    }

    #[test]
    fn a_session_writes_request_consent_and_end_in_order() {
        let world = world();
        let store = &world.store;
        open(&world, 0xfeed_0000_0000_0001, T0);
        let consent = store
            .record_consent(
                deskside_protocol::SessionId(0xfeed_0000_0000_0001),
                world.device,
                Some(Capabilities::VIEW),
                "accepted",
                T0 + 5,
            )
            .unwrap();
        let ConsentOutcome::Recorded(record) = consent else {
            panic!("{consent:?}");
        };
        assert!(record.consented());
        assert_eq!(record.granted, Some(Capabilities::VIEW));
        let end = store
            .end_session(
                deskside_protocol::SessionId(0xfeed_0000_0000_0001),
                SessionParty::Technician(world.technician),
                EndedBy::Technician,
                "technician:2 (ana)",
                serde_json::Map::new(),
                T0 + 65,
            )
            .unwrap();
        assert!(matches!(end, EndOutcome::Ended(_)), "{end:?}");

        let rows = session_rows(store);
        let actions: Vec<&str> = rows.iter().map(|row| row.0.as_str()).collect();
        assert_eq!(
            actions,
            ["session.request", "session.consent", "session.end"]
        );
        assert_eq!(rows[0].1, "technician:2 (ana)");
        assert_eq!(
            rows[0].2,
            serde_json::json!({"session_id": "feed000000000001", "capabilities": "view+control", "reason": "printer"})
        );
        assert_eq!(rows[1].1, "device:dev_0000000000000001");
        assert_eq!(
            rows[1].2,
            serde_json::json!({"session_id": "feed000000000001", "outcome": "accepted", "granted": "view"})
        );
        assert_eq!(
            rows[2].2,
            serde_json::json!({"session_id": "feed000000000001", "by": "technician", "duration_secs": 60, "capabilities": "view"})
        );
        assert_eq!(store.verify_audit_chain().unwrap(), Ok(()));

        // Ending twice, or answering twice, writes nothing more.
        let again = store
            .end_session(
                deskside_protocol::SessionId(0xfeed_0000_0000_0001),
                SessionParty::Device(world.device),
                EndedBy::Employee,
                "device:dev_0000000000000001",
                serde_json::Map::new(),
                T0 + 70,
            )
            .unwrap();
        assert!(matches!(again, EndOutcome::AlreadyClosed(_)), "{again:?}");
        let twice = store
            .record_consent(
                deskside_protocol::SessionId(0xfeed_0000_0000_0001),
                world.device,
                None,
                "refused",
                T0 + 70,
            )
            .unwrap();
        assert!(
            matches!(twice, ConsentOutcome::AlreadyRecorded(_)),
            "{twice:?}"
        );
        assert_eq!(session_rows(store).len(), 3);
    }

    #[test]
    fn consent_is_only_taken_from_the_sessions_device_and_never_widens() {
        let world = world();
        let store = &world.store;
        let view_only = store
            .open_session(
                &NewSession {
                    id: deskside_protocol::SessionId(5),
                    org: world.org,
                    device: world.device,
                    technician: world.technician,
                    capabilities: Capabilities::VIEW,
                    reason: "",
                },
                "t",
                T0,
            )
            .unwrap();
        assert_eq!(view_only.capabilities, Capabilities::VIEW);
        let other_device = DeviceId(2);
        assert_eq!(
            store
                .record_consent(
                    deskside_protocol::SessionId(5),
                    other_device,
                    Some(Capabilities::VIEW),
                    "accepted",
                    T0
                )
                .unwrap(),
            ConsentOutcome::NotThisDevice
        );
        assert_eq!(
            store
                .record_consent(
                    deskside_protocol::SessionId(6),
                    world.device,
                    Some(Capabilities::VIEW),
                    "accepted",
                    T0
                )
                .unwrap(),
            ConsentOutcome::NotThisDevice
        );
        let ConsentOutcome::Recorded(record) = store
            .record_consent(
                deskside_protocol::SessionId(5),
                world.device,
                Some(Capabilities::CONTROL),
                "accepted",
                T0,
            )
            .unwrap()
        else {
            panic!("not recorded");
        };
        assert_eq!(record.granted, Some(Capabilities::VIEW));
        // Nothing but the request and the one consent was written.
        assert_eq!(session_rows(store).len(), 2);
        // Only the technician who opened it (or the device) can end it.
        assert_eq!(
            store
                .end_session(
                    deskside_protocol::SessionId(5),
                    SessionParty::Technician(TechnicianId(1)),
                    EndedBy::Technician,
                    "technician:1 (root)",
                    serde_json::Map::new(),
                    T0
                )
                .unwrap(),
            EndOutcome::NotFound
        );
    }

    #[test]
    fn a_refusal_closes_the_session_without_an_end_row() {
        let world = world();
        let store = &world.store;
        open(&world, 9, T0);
        let ConsentOutcome::Recorded(record) = store
            .record_consent(
                deskside_protocol::SessionId(9),
                world.device,
                None,
                "refused",
                T0 + 3,
            )
            .unwrap()
        else {
            panic!("not recorded");
        };
        assert!(!record.consented());
        assert_eq!(record.ended_at, Some(T0 + 3));
        assert_eq!(
            store.session(deskside_protocol::SessionId(9)).unwrap(),
            Some(record)
        );
        let end = store
            .end_session(
                deskside_protocol::SessionId(9),
                SessionParty::Technician(world.technician),
                EndedBy::Technician,
                "t",
                serde_json::Map::new(),
                T0 + 4,
            )
            .unwrap();
        assert!(matches!(end, EndOutcome::AlreadyClosed(_)), "{end:?}");
        assert_eq!(
            store.sort_interrupted_sessions(T0 + 10).unwrap(),
            Interrupted::default()
        );
        let actions: Vec<String> = session_rows(store).into_iter().map(|row| row.0).collect();
        assert_eq!(actions, ["session.request", "session.consent"]);
        assert_eq!(session_rows(store)[1].2["granted"], serde_json::Value::Null);
    }

    #[test]
    fn a_restart_ends_waiting_sessions_and_hands_back_running_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        {
            let store = Store::open(&path).unwrap();
            let org = store
                .bootstrap("Acme", "root", &hash("admin"), T0)
                .unwrap()
                .unwrap();
            enroll_token(&store, org, "enroll", 1);
            let device = enroll(&store, "enroll", "key-a", "laptop", 1, T0)
                .unwrap()
                .id;
            let world = World {
                store,
                org,
                device,
                technician: TechnicianId(1),
            };
            open(&world, 1, T0); // Running.
            open(&world, 2, T0); // Waiting for the employee.
            open(&world, 3, T0); // Over.
            world
                .store
                .record_consent(
                    deskside_protocol::SessionId(1),
                    device,
                    Some(Capabilities::CONTROL),
                    "accepted",
                    T0 + 10,
                )
                .unwrap();
            world
                .store
                .end_session(
                    deskside_protocol::SessionId(3),
                    SessionParty::System,
                    EndedBy::Expired,
                    "system",
                    serde_json::Map::new(),
                    T0 + 20,
                )
                .unwrap();
            // The relay is killed here: sessions 1 and 2 have no end.
        }
        let store = Store::open(&path).unwrap();
        let sorted = store.sort_interrupted_sessions(T0 + 100).unwrap();
        assert_eq!(sorted.ended, [2]);
        let resumable: Vec<u64> = sorted.resumable.iter().map(|r| r.id.0).collect();
        assert_eq!(resumable, [1]);
        assert!(sorted.resumable[0].consented());
        assert!(!sorted.resumable[0].is_closed());
        // A second start finds the running one again, and nothing to end.
        let again = store.sort_interrupted_sessions(T0 + 200).unwrap();
        assert!(again.ended.is_empty());
        assert_eq!(again.resumable.len(), 1);
        let ends: Vec<_> = session_rows(&store)
            .into_iter()
            .filter(|row| row.0 == "session.end")
            .collect();
        assert_eq!(ends.len(), 2, "{ends:?}");
        assert_eq!(ends[1].1, "system");
        assert_eq!(
            ends[1].2,
            serde_json::json!({"session_id": "0000000000000002", "by": "connection_lost", "duration_secs": 0, "capabilities": "none", "relay_restarted": true})
        );
        assert_eq!(
            store
                .session(deskside_protocol::SessionId(2))
                .unwrap()
                .unwrap()
                .ended_by
                .as_deref(),
            Some("connection_lost")
        );
        // The watchdog ends the running one when nobody resumes it.
        let mut extra = serde_json::Map::new();
        extra.insert("relay_restarted".to_owned(), serde_json::Value::Bool(true));
        let end = store
            .end_session(
                deskside_protocol::SessionId(1),
                SessionParty::System,
                EndedBy::ConnectionLost,
                SYSTEM_ACTOR,
                extra,
                T0 + 130,
            )
            .unwrap();
        let EndOutcome::Ended(record) = end else {
            panic!("{end:?}");
        };
        assert_eq!(record.ended_by.as_deref(), Some("connection_lost"));
        assert!(store
            .sort_interrupted_sessions(T0 + 300)
            .unwrap()
            .resumable
            .is_empty());
        assert_eq!(store.verify_audit_chain().unwrap(), Ok(()));
    }

    #[test]
    fn audit_rows_are_listed_per_device_newest_first() {
        let world = world();
        let store = &world.store;
        open(&world, 1, T0);
        store
            .record_consent(
                deskside_protocol::SessionId(1),
                world.device,
                None,
                "timed_out",
                T0 + 30,
            )
            .unwrap();
        let about = store
            .audit_entries_about(world.org, Some("device:dev_0000000000000001"), 10)
            .unwrap();
        let actions: Vec<&str> = about.iter().map(|entry| entry.action.as_str()).collect();
        assert_eq!(
            actions,
            ["session.consent", "session.request", "device.enroll"]
        );
        let limited = store.audit_entries_about(world.org, None, 2).unwrap();
        assert_eq!(limited.len(), 2);
        assert_eq!(limited[0].action, "session.consent");
        assert!(store
            .audit_entries_about(OrgId(999), None, 10)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_withdrawn_request_is_closed_audited_once_and_cannot_be_accepted() {
        let world = world();
        open(&world, 7, T0);
        let party = SessionParty::Technician(world.technician);
        let withdrawn = world
            .store
            .withdraw_session(
                deskside_protocol::SessionId(7),
                party,
                "technician:2 (ana)",
                "console_disconnected",
                T0 + 3,
            )
            .unwrap();
        let WithdrawOutcome::Withdrawn(record) = withdrawn else {
            panic!("not withdrawn: {withdrawn:?}");
        };
        assert!(record.is_closed() && !record.consented());
        assert_eq!(record.consent_outcome.as_deref(), Some(WITHDRAWN));
        // Twice, or by the device after the technician: nothing more.
        for party in [party, SessionParty::Device(world.device)] {
            assert!(matches!(
                world
                    .store
                    .withdraw_session(deskside_protocol::SessionId(7), party, "x", "again", T0 + 4)
                    .unwrap(),
                WithdrawOutcome::AlreadyDecided(_)
            ));
        }
        // The employee's late Accept finds it decided: no grant.
        let late = world
            .store
            .record_consent(
                deskside_protocol::SessionId(7),
                world.device,
                Some(Capabilities::CONTROL),
                "accepted",
                T0 + 5,
            )
            .unwrap();
        let ConsentOutcome::AlreadyRecorded(record) = late else {
            panic!("a late answer was recorded: {late:?}");
        };
        assert!(!record.consented());
        let rows = session_rows(&world.store);
        let actions: Vec<&str> = rows.iter().map(|(action, _, _)| action.as_str()).collect();
        assert_eq!(actions, ["session.request", "session.withdrawn"]);
        assert_eq!(rows[1].2["session_id"], session_text(7));
        assert_eq!(rows[1].2["reason"], "console_disconnected");
        // Another technician cannot withdraw someone else's request.
        open(&world, 8, T0);
        assert_eq!(
            world
                .store
                .withdraw_session(
                    deskside_protocol::SessionId(8),
                    SessionParty::Technician(TechnicianId(999)),
                    "x",
                    "y",
                    T0
                )
                .unwrap(),
            WithdrawOutcome::NotFound
        );
    }
}
