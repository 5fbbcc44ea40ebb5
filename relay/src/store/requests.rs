//! Help requests in the store: one row per request (unique per device and
//! the agent's `client_id`, so a resend never duplicates), its events, and
//! the sessions linked to it. Every change writes its audit row in the same
//! transaction. Nothing here reads the clock: times (Unix seconds) are
//! passed in.
//!
//! Statuses: `new` → `claimed` (a technician took it) → `waiting` (a reply
//! went to the employee) → `resolved`; `reopen` brings a resolved or closed
//! request back as `reopened`. `closed` is reserved for an automatic close
//! after resolution (not done yet). First response is the first claim or
//! reply; resolution time is that of the last `resolve`.

use super::sql::{params, OptionalExtension as _, TransactionBehavior};
use deskside_protocol::request::{
    Answers, DeliveryFailure, EmployeeRequest, RequestAction, RequestEvent,
};
use deskside_protocol::{DeviceId, Refusal, TechnicianId};

use super::{
    device_id_from_sql, device_id_to_sql, device_target, insert_audit, NewAudit, OrgId, Store,
    StoreError, Technician,
};

/// Schema: help requests, their events and linked sessions.
pub(super) const MIGRATION_REQUESTS: &str = r#"
CREATE TABLE requests (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id            INTEGER NOT NULL REFERENCES organisations(id),
    device_id         INTEGER NOT NULL REFERENCES devices(id),
    client_id         TEXT NOT NULL,
    answers           TEXT NOT NULL CHECK (json_valid(answers)),
    snapshot          TEXT,
    verdict           TEXT,
    verdict_line      TEXT,
    failures          TEXT NOT NULL CHECK (json_valid(failures)),
    priority          INTEGER NOT NULL,
    status            TEXT NOT NULL,
    assignee_id       INTEGER REFERENCES technician_tokens(id),
    assignee_name     TEXT,
    created_at        INTEGER NOT NULL,
    first_response_at INTEGER,
    resolved_at       INTEGER,
    UNIQUE (device_id, client_id)
) STRICT;
CREATE INDEX requests_org ON requests(org_id, status);
CREATE TABLE request_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id  INTEGER NOT NULL REFERENCES requests(id),
    at          INTEGER NOT NULL,
    author      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    text        TEXT NOT NULL,
    to_employee INTEGER NOT NULL
) STRICT;
CREATE INDEX request_events_request ON request_events(request_id);
CREATE TABLE request_sessions (
    request_id INTEGER NOT NULL REFERENCES requests(id),
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    PRIMARY KEY (request_id, session_id)
) STRICT;
"#;

/// New requests one device may send in an hour.
pub const MAX_REQUESTS_PER_HOUR: i64 = 30;

/// A request as it arrives, judged.
#[derive(Clone, Debug)]
pub struct NewRequest {
    /// The agent's id.
    pub client_id: String,
    /// The answers.
    pub answers: Answers,
    /// The snapshot (JSON text).
    pub snapshot: Option<String>,
    /// Its verdict (JSON text).
    pub verdict: Option<String>,
    /// The verdict's one-line summary.
    pub verdict_line: Option<String>,
    /// Failed deliveries.
    pub failures: Vec<DeliveryFailure>,
    /// ITIL priority.
    pub priority: u8,
}

/// A stored request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRow {
    /// Its number.
    pub number: u64,
    /// The device.
    pub device: DeviceId,
    /// The agent's id.
    pub client_id: String,
    /// The answers.
    pub answers: Answers,
    /// The snapshot (JSON).
    pub snapshot: Option<String>,
    /// The verdict (JSON).
    pub verdict: Option<String>,
    /// One line.
    pub verdict_line: Option<String>,
    /// Failed deliveries.
    pub failures: Vec<DeliveryFailure>,
    /// 1..5.
    pub priority: u8,
    /// Status.
    pub status: String,
    /// Assignee token.
    pub assignee_id: Option<TechnicianId>,
    /// Assignee's name.
    pub assignee: Option<String>,
    /// Times.
    pub created_at: i64,
    /// First response.
    pub first_response_at: Option<i64>,
    /// Last resolution.
    pub resolved_at: Option<i64>,
}

/// A session linked to a request, as the sessions table holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkedSession {
    /// The session.
    pub session_id: deskside_protocol::SessionId,
    /// The technician's name.
    pub technician: String,
    /// When it was asked for.
    pub requested_at: i64,
    /// The employee's answer.
    pub consent_outcome: Option<String>,
    /// What was granted (JSON of `Capabilities`).
    pub granted: Option<String>,
    /// When it ended.
    pub ended_at: Option<i64>,
    /// Who ended it.
    pub ended_by: Option<String>,
}

/// A help request a session is linked to ([`Store::requests_of_session`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkedRequest {
    /// The request's organisation.
    pub org: OrgId,
    /// Its number.
    pub number: u64,
    /// The verdict line attached to it, if any.
    pub verdict_line: Option<String>,
    /// The name of the session's technician.
    pub technician: String,
}

/// Filters of `deskside requests list`.
#[derive(Clone, Debug, Default)]
pub struct RequestFilter {
    /// Only this status.
    pub status: Option<String>,
    /// Only those assigned to this token.
    pub assignee: Option<TechnicianId>,
    /// Only devices of this group.
    pub group: Option<String>,
}

const COLUMNS: &str =
    "id, device_id, client_id, answers, snapshot, verdict, verdict_line, failures, \
     priority, status, assignee_id, assignee_name, created_at, first_response_at, resolved_at";

fn row_to_request(row: &super::sql::Row<'_>) -> super::sql::Result<(RequestRow, String, String)> {
    let answers: String = row.get(3)?;
    let failures: String = row.get(7)?;
    let priority: i64 = row.get(8)?;
    let assignee_id: Option<i64> = row.get(10)?;
    Ok((
        RequestRow {
            number: row.get::<_, i64>(0)? as u64,
            device: device_id_from_sql(row.get(1)?),
            client_id: row.get(2)?,
            answers: Answers::default(),
            snapshot: row.get(4)?,
            verdict: row.get(5)?,
            verdict_line: row.get(6)?,
            failures: Vec::new(),
            priority: priority.clamp(1, 5) as u8,
            status: row.get(9)?,
            assignee_id: assignee_id.map(|id| TechnicianId(id as u64)),
            assignee: row.get(11)?,
            created_at: row.get(12)?,
            first_response_at: row.get(13)?,
            resolved_at: row.get(14)?,
        },
        answers,
        failures,
    ))
}

fn parse(
    (mut row, answers, failures): (RequestRow, String, String),
) -> Result<RequestRow, StoreError> {
    row.answers = serde_json::from_str(&answers)
        .map_err(|e| StoreError::Corrupt(format!("request {} answers: {e}", row.number)))?;
    row.failures = serde_json::from_str(&failures)
        .map_err(|e| StoreError::Corrupt(format!("request {} failures: {e}", row.number)))?;
    Ok(row)
}

/// Request `number` of `org`, if there is one.
pub(super) fn request_of(
    conn: &super::sql::Connection,
    org: OrgId,
    number: u64,
) -> Result<Option<RequestRow>, StoreError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM requests WHERE id = ?1 AND org_id = ?2"),
        params![number as i64, org.0],
        row_to_request,
    )
    .optional()?
    .map(parse)
    .transpose()
}

fn request_target(number: u64) -> String {
    format!("request:{number}")
}

/// Why a session linked to help requests never ran, in words for the
/// request's follow-up; `None` for a session that ran (or still may).
pub(super) fn why_not_held(session: &super::SessionRecord) -> Option<String> {
    if session.consented() || !session.is_closed() {
        return None;
    }
    Some(match (session.consent_outcome.as_deref(), session.ended_by.as_deref()) {
        (Some("refused"), _) => "the employee refused it".to_owned(),
        (Some("timed_out"), _) => {
            "the employee did not answer before the consent dialog timed out".to_owned()
        }
        (Some(super::WITHDRAWN), _) => {
            "it was withdrawn before the employee answered (the technician gave up or their console went away)".to_owned()
        }
        (Some(other), _) => format!("nobody could be asked on the device: {other}"),
        (None, Some("connection_lost")) => {
            "it never started: the device or the relay went away before the employee was asked or answered".to_owned()
        }
        (None, Some("technician")) => {
            "the technician ended it before the employee answered".to_owned()
        }
        (None, Some("token_revoked")) => {
            "the technician's token was revoked before the employee answered".to_owned()
        }
        (None, Some("token_expired")) => {
            "the technician's token expired before the employee answered".to_owned()
        }
        (None, Some(super::access::ENDED_BY_ADMINISTRATOR)) => {
            "an administrator ended it before the employee answered".to_owned()
        }
        (None, by) => format!(
            "it never started (ended: {})",
            by.unwrap_or("unknown")
        ),
    })
}

/// Adds, inside `tx`, the follow-up of `session`, which never ran, to each
/// help request it is linked to (or only to request `only`): who asked
/// (the event's author, the session's technician), when, for what, and
/// why nothing happened. An event of kind `session_not_held` for
/// technicians, so the ticketing outbox delivers it, audited as
/// `request.session_follow_up` like the follow-up of a session that ran.
pub(super) fn add_not_held_follow_ups(
    tx: &super::sql::Transaction<'_>,
    session: &super::SessionRecord,
    only: Option<u64>,
    now: i64,
) -> Result<(), StoreError> {
    let Some(why) = why_not_held(session) else {
        return Ok(());
    };
    let linked: Vec<(i64, String)> = {
        let mut statement = tx.prepare_cached(
            "SELECT l.request_id, t.name FROM request_sessions l
             JOIN sessions s ON s.id = l.session_id
             JOIN technician_tokens t ON t.id = s.technician_id
             WHERE l.session_id = ?1 AND (CAST(?2 AS BIGINT) IS NULL OR l.request_id = ?2)
             ORDER BY l.request_id",
        )?;
        statement
            .query_map(params![session.id.0 as i64, only.map(|n| n as i64)], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<super::sql::Result<Vec<_>>>()?
    };
    let asked = std::time::UNIX_EPOCH
        + std::time::Duration::from_secs(u64::try_from(session.requested_at).unwrap_or(0));
    let text = format!(
        "session {} asked {} for {}: {why}",
        super::session_text(session.id.0),
        humantime::format_rfc3339_seconds(asked),
        session.capabilities.label(),
    );
    for (number, technician) in linked {
        let number = number as u64;
        add_event(
            tx,
            number,
            now,
            &technician,
            "session_not_held",
            &text,
            false,
        )?;
        insert_audit(
            tx,
            &NewAudit {
                at: now,
                org: Some(session.org),
                actor: super::SYSTEM_ACTOR,
                action: "request.session_follow_up",
                target: &request_target(number),
                detail: &serde_json::json!({
                    "session": super::session_text(session.id.0),
                    "held": false,
                }),
            },
        )?;
    }
    Ok(())
}

impl Store {
    /// Records on help request `number` that `technician` asked for a
    /// session with `device` while it was offline, so no session existed:
    /// a `session_not_held` event (author the technician) audited as
    /// `request.session_follow_up`, in one transaction. Nothing is written
    /// (and `false` returned) when the request is not the organisation's
    /// or is about another device.
    pub fn record_offline_session_request(
        &self,
        org: OrgId,
        number: u64,
        technician: &Technician,
        device: DeviceId,
        capabilities: deskside_protocol::session::Capabilities,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        match request_of(&tx, org, number)? {
            Some(row) if row.device == device => {}
            _ => return Ok(false),
        }
        let asked =
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(now).unwrap_or(0));
        let text = format!(
            "a session asked {} for {}: the device was offline, so it was never asked",
            humantime::format_rfc3339_seconds(asked),
            capabilities.label(),
        );
        add_event(
            &tx,
            number,
            now,
            &technician.name,
            "session_not_held",
            &text,
            false,
        )?;
        insert_audit(
            &tx,
            &NewAudit {
                at: now,
                org: Some(org),
                actor: super::SYSTEM_ACTOR,
                action: "request.session_follow_up",
                target: &request_target(number),
                detail: &serde_json::json!({
                    "session": serde_json::Value::Null,
                    "held": false,
                    "why": "device_offline",
                }),
            },
        )?;
        tx.commit()?;
        self.request_events_written();
        Ok(true)
    }
}

fn add_event(
    conn: &super::sql::Connection,
    number: u64,
    at: i64,
    author: &str,
    kind: &str,
    text: &str,
    to_employee: bool,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO request_events (request_id, at, author, kind, text, to_employee)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![number as i64, at, author, kind, text, to_employee],
    )?;
    Ok(())
}

impl Store {
    /// Stores a request of `device` unless one with the same `client_id`
    /// is stored already (a resend). Returns its number and whether it is
    /// new; a new one is audited as `request.create`. A device that sent
    /// [`MAX_REQUESTS_PER_HOUR`] new requests in the hour before `now` is
    /// refused (a resend of a stored one is still acknowledged).
    pub fn insert_request(
        &self,
        org: OrgId,
        device: DeviceId,
        request: &NewRequest,
        now: i64,
    ) -> Result<Result<(u64, bool), Refusal>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: Option<i64> = tx
            .query_row(
                "SELECT id FROM requests WHERE device_id = ?1 AND client_id = ?2",
                params![device_id_to_sql(device), request.client_id],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(id) = existing {
            return Ok(Ok((id as u64, false)));
        }
        let recent: i64 = tx.query_row(
            "SELECT COUNT(*) FROM requests WHERE device_id = ?1 AND created_at > ?2",
            params![device_id_to_sql(device), now - 3600],
            |row| row.get(0),
        )?;
        if recent >= MAX_REQUESTS_PER_HOUR {
            return Ok(Err(Refusal::Invalid(format!(
                "this computer already sent {recent} help requests in the last hour; call IT, or add to an open request when they reply"
            ))));
        }
        let answers = serde_json::to_string(&request.answers)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let failures = serde_json::to_string(&request.failures)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.execute(
            "INSERT INTO requests (org_id, device_id, client_id, answers, snapshot, verdict,
                 verdict_line, failures, priority, status, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'new', ?10)",
            params![
                org.0,
                device_id_to_sql(device),
                request.client_id,
                answers,
                request.snapshot,
                request.verdict,
                request.verdict_line,
                failures,
                i64::from(request.priority),
                now
            ],
        )?;
        let number = tx.last_insert_rowid()? as u64;
        super::request_stats::record_facts(&tx, number)?;
        add_event(
            &tx,
            number,
            now,
            "employee",
            "created",
            &request.answers.summary,
            false,
        )?;
        insert_audit(
            &tx,
            &NewAudit {
                at: now,
                org: Some(org),
                actor: &super::device_actor(device),
                action: "request.create",
                target: &request_target(number),
                detail: &serde_json::json!({
                    "device": device_target(device),
                    "priority": request.priority,
                    "urgency": request.answers.urgency,
                    "impact": request.answers.impact,
                    "snapshot": request.snapshot.is_some(),
                    "failed_deliveries": request.failures.len(),
                }),
            },
        )?;
        tx.commit()?;
        // The ticket outbox wakes for the events it may have written.
        self.request_events_written();
        Ok(Ok((number, true)))
    }

    /// Requests of `org` matching `filter`, by priority then age.
    pub fn list_requests(
        &self,
        org: OrgId,
        filter: &RequestFilter,
    ) -> Result<Vec<RequestRow>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM requests
             WHERE org_id = ?1
               AND (CAST(?2 AS TEXT) IS NULL OR status = ?2)
               AND (CAST(?3 AS BIGINT) IS NULL OR assignee_id = ?3)
               AND (CAST(?4 AS TEXT) IS NULL OR device_id IN
                     (SELECT id FROM devices WHERE device_group = ?4))
             ORDER BY priority, created_at, id"
        ))?;
        let rows = statement
            .query_map(
                params![
                    org.0,
                    filter.status,
                    filter.assignee.map(|t| t.0 as i64),
                    filter.group
                ],
                row_to_request,
            )?
            .collect::<super::sql::Result<Vec<_>>>()?;
        rows.into_iter().map(parse).collect()
    }

    /// One request of `org`, with its events and linked sessions.
    #[allow(clippy::type_complexity)]
    pub fn request(
        &self,
        org: OrgId,
        number: u64,
    ) -> Result<Option<(RequestRow, Vec<RequestEvent>, Vec<LinkedSession>)>, StoreError> {
        let conn = self.lock();
        let Some(row) = request_of(&conn, org, number)? else {
            return Ok(None);
        };
        let events = events_of(&conn, number, false)?;
        let mut statement = conn.prepare_cached(
            "SELECT s.id, t.name, s.requested_at, s.consent_outcome, s.granted, s.ended_at, s.ended_by
             FROM request_sessions l
             JOIN sessions s ON s.id = l.session_id
             JOIN technician_tokens t ON t.id = s.technician_id
             WHERE l.request_id = ?1 ORDER BY s.requested_at",
        )?;
        let sessions = statement
            .query_map(params![number as i64], |r| {
                Ok(LinkedSession {
                    session_id: deskside_protocol::SessionId(r.get::<_, i64>(0)? as u64),
                    technician: r.get(1)?,
                    requested_at: r.get(2)?,
                    consent_outcome: r.get(3)?,
                    granted: r.get(4)?,
                    ended_at: r.get(5)?,
                    ended_by: r.get(6)?,
                })
            })?
            .collect::<super::sql::Result<Vec<_>>>()?;
        Ok(Some((row, events, sessions)))
    }

    /// What a technician does to a request, audited as `request.<action>`
    /// in the same transaction. `Ok(Err)` is a refusal the technician
    /// sees (no such request, a status that does not allow it).
    pub fn act_on_request(
        &self,
        org: OrgId,
        number: u64,
        technician: &Technician,
        action: &RequestAction,
        now: i64,
    ) -> Result<Result<RequestRow, Refusal>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(row) = request_of(&tx, org, number)? else {
            return Ok(Err(Refusal::NotFound(format!("help request {number}"))));
        };
        let open = !matches!(row.status.as_str(), "resolved" | "closed");
        let me = technician.id.0 as i64;
        let name = technician.name.as_str();
        let (verb, detail) = match action {
            RequestAction::Claim => {
                if !open {
                    return Ok(Err(Refusal::Invalid(format!(
                        "help request {number} is {}: reopen it first (`deskside requests reopen {number}`)",
                        row.status
                    ))));
                }
                tx.execute(
                    "UPDATE requests SET status = 'claimed', assignee_id = ?2, assignee_name = ?3,
                         first_response_at = COALESCE(first_response_at, ?4) WHERE id = ?1",
                    params![number as i64, me, name, now],
                )?;
                add_event(&tx, number, now, name, "claimed", "", true)?;
                (
                    "request.claim",
                    serde_json::json!({ "previous": row.assignee }),
                )
            }
            RequestAction::Reply { text } => {
                if row.status == "closed" {
                    return Ok(Err(Refusal::Invalid(format!(
                        "help request {number} is closed: reopen it first (`deskside requests reopen {number}`)"
                    ))));
                }
                let status = if open { "waiting" } else { row.status.as_str() };
                tx.execute(
                    "UPDATE requests SET status = ?2,
                         assignee_id = COALESCE(assignee_id, ?3),
                         assignee_name = COALESCE(assignee_name, ?4),
                         first_response_at = COALESCE(first_response_at, ?5) WHERE id = ?1",
                    params![number as i64, status, me, name, now],
                )?;
                add_event(&tx, number, now, name, "reply", text, true)?;
                ("request.reply", serde_json::json!({ "length": text.len() }))
            }
            RequestAction::Resolve { note } => {
                if !open {
                    return Ok(Err(Refusal::Invalid(format!(
                        "help request {number} is already {}",
                        row.status
                    ))));
                }
                tx.execute(
                    "UPDATE requests SET status = 'resolved', resolved_at = ?2,
                         assignee_id = COALESCE(assignee_id, ?3),
                         assignee_name = COALESCE(assignee_name, ?4),
                         first_response_at = COALESCE(first_response_at, ?2) WHERE id = ?1",
                    params![number as i64, now, me, name],
                )?;
                add_event(&tx, number, now, name, "resolved", note, true)?;
                ("request.resolve", serde_json::json!({ "note": note }))
            }
            RequestAction::Reopen => {
                if open {
                    return Ok(Err(Refusal::Invalid(format!(
                        "help request {number} is {}, not resolved or closed: nothing to reopen",
                        row.status
                    ))));
                }
                tx.execute(
                    "UPDATE requests SET status = 'reopened', resolved_at = NULL WHERE id = ?1",
                    params![number as i64],
                )?;
                add_event(&tx, number, now, name, "reopened", "", true)?;
                ("request.reopen", serde_json::json!({}))
            }
            RequestAction::LinkSession { session_id } => {
                let session_id_sql = session_id.0 as i64;
                let owner: Option<(i64, i64)> = tx
                    .query_row(
                        "SELECT device_id, technician_id FROM sessions WHERE id = ?1 AND org_id = ?2",
                        params![session_id_sql, org.0],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                match owner {
                    Some((device, tech))
                        if device == device_id_to_sql(row.device) && tech == me => {}
                    Some(_) => {
                        return Ok(Err(Refusal::Invalid(format!(
                            "session {session_id:016x} is not one of yours with the device of help request {number}"
                        ))))
                    }
                    None => {
                        return Ok(Err(Refusal::NotFound(format!("session {session_id:016x}"))))
                    }
                }
                let linked = tx.execute(
                    "INSERT INTO request_sessions (request_id, session_id) VALUES (?1, ?2)
                     ON CONFLICT DO NOTHING",
                    params![number as i64, session_id_sql],
                )?;
                tx.execute(
                    "UPDATE requests SET first_response_at = COALESCE(first_response_at, ?2) WHERE id = ?1",
                    params![number as i64, now],
                )?;
                add_event(
                    &tx,
                    number,
                    now,
                    name,
                    "session_linked",
                    &format!("{session_id:016x}"),
                    false,
                )?;
                // Refused (or otherwise over) before the link was made: its
                // follow-up comes now.
                if linked == 1 {
                    if let Some(session) = super::sessions::load_session(&tx, session_id.0)? {
                        add_not_held_follow_ups(&tx, &session, Some(number), now)?;
                    }
                }
                (
                    "request.link_session",
                    serde_json::json!({ "session": format!("{session_id:016x}") }),
                )
            }
        };
        insert_audit(
            &tx,
            &NewAudit {
                at: now,
                org: Some(org),
                actor: &technician.audit_actor(),
                action: verb,
                target: &request_target(number),
                detail: &detail,
            },
        )?;
        let updated = request_of(&tx, org, number)?
            .ok_or_else(|| StoreError::Corrupt(format!("help request {number} vanished")))?;
        tx.commit()?;
        // The ticket outbox wakes for the events it may have written.
        self.request_events_written();
        Ok(Ok(updated))
    }

    /// The device's requests as its employee sees them (the newest 50),
    /// with the events meant for them.
    pub fn employee_requests(&self, device: DeviceId) -> Result<Vec<EmployeeRequest>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare_cached(
            "SELECT id, client_id, status, assignee_name FROM requests
             WHERE device_id = ?1 ORDER BY id DESC LIMIT 50",
        )?;
        let rows = statement
            .query_map(params![device_id_to_sql(device)], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })?
            .collect::<super::sql::Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(rows.len());
        for (number, client_id, status, assignee) in rows.into_iter().rev() {
            out.push(EmployeeRequest {
                client_id,
                number,
                status,
                assignee,
                events: events_of(&conn, number, true)?,
            });
        }
        Ok(out)
    }

    /// The help requests session `session_id` is linked to: their
    /// organisation, number and attached verdict line, and the session's
    /// technician.
    pub fn requests_of_session(
        &self,
        session: deskside_protocol::SessionId,
    ) -> Result<Vec<LinkedRequest>, StoreError> {
        let session_id = session.0;
        let conn = self.lock();
        let mut statement = conn.prepare_cached(
            "SELECT r.org_id, r.id, r.verdict_line, t.name
             FROM request_sessions l
             JOIN requests r ON r.id = l.request_id
             JOIN sessions s ON s.id = l.session_id
             JOIN technician_tokens t ON t.id = s.technician_id
             WHERE l.session_id = ?1 ORDER BY r.id",
        )?;
        let linked = statement
            .query_map(params![session_id as i64], |r| {
                Ok(LinkedRequest {
                    org: OrgId(r.get(0)?),
                    number: r.get::<_, i64>(1)? as u64,
                    verdict_line: r.get(2)?,
                    technician: r.get(3)?,
                })
            })?
            .collect::<super::sql::Result<Vec<_>>>()?;
        Ok(linked)
    }

    /// The device's newest stored diagnostics received at or before `at`:
    /// when it was received and its verdict (JSON).
    pub fn diagnostics_before(
        &self,
        org: OrgId,
        device: DeviceId,
        at: i64,
    ) -> Result<Option<(i64, String)>, StoreError> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT received_at, verdict FROM diagnostics
                 WHERE org_id = ?1 AND device_id = ?2 AND received_at <= ?3
                 ORDER BY received_at DESC, id DESC LIMIT 1",
                params![org.0, device_id_to_sql(device), at],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Adds the follow-up of a linked session that ended to request
    /// `number` (an event of kind `session`, for technicians only, so the
    /// ticketing outbox delivers it), audited as `request.session_follow_up`
    /// in the same transaction.
    pub fn add_session_follow_up(
        &self,
        org: OrgId,
        number: u64,
        author: &str,
        session: deskside_protocol::SessionId,
        text: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let session_id = session.0;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        add_event(&tx, number, now, author, "session", text, false)?;
        insert_audit(
            &tx,
            &NewAudit {
                at: now,
                org: Some(org),
                actor: super::SYSTEM_ACTOR,
                action: "request.session_follow_up",
                target: &request_target(number),
                detail: &serde_json::json!({ "session": format!("{session_id:016x}") }),
            },
        )?;
        tx.commit()?;
        // The ticket outbox wakes for the events it may have written.
        self.request_events_written();
        Ok(())
    }
}

fn events_of(
    conn: &super::sql::Connection,
    number: u64,
    employee_only: bool,
) -> Result<Vec<RequestEvent>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT at, author, kind, text FROM request_events
         WHERE request_id = ?1 AND (?2 = 0 OR to_employee = 1) ORDER BY id",
    )?;
    let events = statement
        .query_map(params![number as i64, employee_only], |r| {
            Ok(RequestEvent {
                at: r.get(0)?,
                author: r.get(1)?,
                kind: r.get(2)?,
                text: r.get(3)?,
            })
        })?
        .collect::<super::sql::Result<Vec<_>>>()?;
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{bootstrapped, enroll, enroll_token};
    use super::*;
    use deskside_protocol::Role;

    fn new_request(client_id: &str, priority: u8) -> NewRequest {
        NewRequest {
            client_id: client_id.into(),
            answers: Answers {
                summary: "video calls freeze".into(),
                urgency: "blocked".into(),
                impact: "me".into(),
                ..Answers::default()
            },
            snapshot: Some("{}".into()),
            verdict: None,
            verdict_line: Some("home_network: weak Wi-Fi".into()),
            failures: vec![DeliveryFailure {
                at_ms: 1,
                error: "timed out".into(),
            }],
            priority,
        }
    }

    #[test]
    fn a_device_that_only_asked_for_help_is_not_an_orphan() {
        // `deskside-agent help` works without `run`: such a device is
        // enrolled but never attached. Its request keeps it, and the hourly
        // orphan cleanup still removes the other orphans (it failed on the
        // request's foreign key and removed none).
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "secret", 2);
        let asked = enroll(&store, "secret", "key-1", "asked", 7, 50)
            .unwrap()
            .id;
        let orphan = enroll(&store, "secret", "key-2", "orphan", 8, 50)
            .unwrap()
            .id;
        store
            .insert_request(org, asked, &new_request("r0", 3), 60)
            .unwrap()
            .unwrap();
        assert_eq!(store.remove_orphan_devices(50, 86_450).unwrap(), [orphan]);
        let left: Vec<_> = store
            .list_devices(org)
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(left, [asked]);
    }

    #[test]
    fn a_device_that_floods_requests_is_refused_but_resends_are_acknowledged() {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "secret", 1);
        let device = enroll(&store, "secret", "key", "laptop", 7, 50).unwrap().id;
        for i in 0..MAX_REQUESTS_PER_HOUR {
            store
                .insert_request(org, device, &new_request(&format!("r{i}"), 3), 1000 + i)
                .unwrap()
                .unwrap();
        }
        let refused = store
            .insert_request(org, device, &new_request("one-more", 3), 1100)
            .unwrap();
        assert!(refused.unwrap_err().to_string().contains("last hour"));
        let (_, new) = store
            .insert_request(org, device, &new_request("r0", 3), 1100)
            .unwrap()
            .unwrap();
        assert!(!new, "a resend is still acknowledged");
        // An hour later the device may ask again.
        assert!(store
            .insert_request(
                org,
                device,
                &new_request("one-more", 3),
                1000 + 3601 + MAX_REQUESTS_PER_HOUR
            )
            .unwrap()
            .is_ok());
    }

    /// The linked-session tests' set-up: a device with one help request
    /// (`client_id`) and ana, a technician who may open sessions.
    struct Linked {
        store: Store,
        org: OrgId,
        device: DeviceId,
        ana: TechnicianId,
        number: u64,
    }

    fn linked(client_id: &str) -> Linked {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "secret", 1);
        let device = enroll(&store, "secret", "key", "laptop", 7, 50).unwrap().id;
        let ana = store
            .create_technician_token(
                org,
                "ana",
                Role::Technician,
                &super::super::tests::hash("t"),
                None,
                "system",
                50,
            )
            .unwrap()
            .id;
        let (number, _) = store
            .insert_request(org, device, &new_request(client_id, 3), 55)
            .unwrap()
            .unwrap();
        Linked {
            store,
            org,
            device,
            ana,
            number,
        }
    }

    /// Ana asks `device` for a view-only session `id` "for the printer".
    fn open_printer_session(
        store: &Store,
        org: OrgId,
        device: DeviceId,
        ana: TechnicianId,
        id: u64,
        at: i64,
    ) {
        store
            .open_session(
                &super::super::NewSession {
                    id: deskside_protocol::SessionId(id),
                    org,
                    device,
                    technician: ana,
                    capabilities: deskside_protocol::session::Capabilities::VIEW,
                    reason: "printer",
                },
                "technician:ana",
                at,
            )
            .unwrap();
    }

    #[test]
    fn a_linked_session_s_follow_up_is_an_audited_event_the_outbox_delivers() {
        let Linked {
            store,
            org,
            device,
            ana,
            number,
        } = linked("a1");
        // Stored diagnostics before and after the session was asked for.
        for at in [40, 70] {
            store
                .insert_diagnostics(org, device, "system", "{}", "{}", None, 10, at)
                .unwrap();
        }
        open_printer_session(&store, org, device, ana, 0xab, 60);
        assert_eq!(
            store
                .requests_of_session(deskside_protocol::SessionId(0xab))
                .unwrap(),
            []
        );
        store
            .act_on_request(
                org,
                number,
                &technician(org, ana.0, "ana"),
                &RequestAction::LinkSession {
                    session_id: deskside_protocol::SessionId(0xab),
                },
                61,
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            store
                .requests_of_session(deskside_protocol::SessionId(0xab))
                .unwrap(),
            [LinkedRequest {
                org,
                number,
                verdict_line: Some("home_network: weak Wi-Fi".into()),
                technician: "ana".into(),
            }]
        );
        assert_eq!(
            store
                .requests_of_session(deskside_protocol::SessionId(0xcd))
                .unwrap(),
            []
        );
        assert_eq!(
            store.diagnostics_before(org, device, 60).unwrap(),
            Some((40, "{}".to_owned()))
        );
        assert_eq!(store.diagnostics_before(org, device, 39).unwrap(), None);

        // The outbox's cursor starts here: the follow-up is delivered.
        store.enqueue_ticket_deliveries("webhook", 0).unwrap();
        let text = "session 00000000000000ab started …; verdict before: x; after: y";
        store
            .add_session_follow_up(
                org,
                number,
                "ana",
                deskside_protocol::SessionId(0xab),
                text,
                90,
            )
            .unwrap();
        let (_, events, _) = store.request(org, number).unwrap().unwrap();
        let last = events.last().unwrap();
        assert_eq!(
            (
                last.at,
                last.author.as_str(),
                last.kind.as_str(),
                last.text.as_str()
            ),
            (90, "ana", "session", text)
        );
        let employee = store.employee_requests(device).unwrap();
        assert!(
            employee[0].events.iter().all(|e| e.kind != "session"),
            "the follow-up is for technicians"
        );
        let audit = store.audit_entries(Some(org), 1).unwrap();
        assert_eq!(audit[0].action, "request.session_follow_up");
        assert_eq!(audit[0].detail["session"], "00000000000000ab");
        assert_eq!(store.enqueue_ticket_deliveries("webhook", 0).unwrap(), 1);
    }

    #[test]
    fn a_linked_session_that_never_ran_says_who_asked_when_and_why() {
        use super::super::{EndOutcome, SessionParty};
        use deskside_protocol::session::{Capabilities, EndedBy};
        let Linked {
            store,
            org,
            device,
            ana,
            number,
        } = linked("a1");
        let open = |id: u64, at: i64| {
            open_printer_session(&store, org, device, ana, id, at);
        };
        let link = |id: u64, at: i64| {
            store
                .act_on_request(
                    org,
                    number,
                    &technician(org, ana.0, "ana"),
                    &RequestAction::LinkSession {
                        session_id: deskside_protocol::SessionId(id),
                    },
                    at,
                )
                .unwrap()
                .unwrap();
        };
        let not_held = || -> Vec<(String, String)> {
            let (_, events, _) = store.request(org, number).unwrap().unwrap();
            events
                .into_iter()
                .filter(|e| e.kind == "session_not_held")
                .map(|e| (e.author, e.text))
                .collect()
        };
        store.enqueue_ticket_deliveries("webhook", 0).unwrap();
        // Linked, then refused.
        open(0xa1, 60);
        link(0xa1, 61);
        store
            .record_consent(
                deskside_protocol::SessionId(0xa1),
                device,
                None,
                "refused",
                62,
            )
            .unwrap();
        // Timed out before the link was made: the follow-up comes with it.
        open(0xa2, 70);
        store
            .record_consent(
                deskside_protocol::SessionId(0xa2),
                device,
                None,
                "timed_out",
                75,
            )
            .unwrap();
        link(0xa2, 76);
        link(0xa2, 77);
        // Never answered: the device went away.
        open(0xa3, 80);
        link(0xa3, 81);
        let ended = store
            .end_session(
                deskside_protocol::SessionId(0xa3),
                SessionParty::System,
                EndedBy::ConnectionLost,
                "system",
                serde_json::Map::new(),
                90,
            )
            .unwrap();
        assert!(matches!(ended, EndOutcome::Ended(_)));
        // Withdrawn by the technician's side.
        open(0xa4, 100);
        link(0xa4, 101);
        store
            .withdraw_session(
                deskside_protocol::SessionId(0xa4),
                SessionParty::System,
                "system",
                "console_disconnected",
                102,
            )
            .unwrap();
        // Accepted: no such follow-up (the session's own comes when it ends).
        open(0xa5, 110);
        link(0xa5, 111);
        store
            .record_consent(
                deskside_protocol::SessionId(0xa5),
                device,
                Some(Capabilities::VIEW),
                "accepted",
                112,
            )
            .unwrap();
        let events = not_held();
        assert_eq!(events.len(), 4, "{events:?}");
        assert!(events.iter().all(|(author, _)| author == "ana"));
        let expected = [
            (
                "00000000000000a1",
                "1970-01-01T00:01:00Z",
                "the employee refused it",
            ),
            (
                "00000000000000a2",
                "1970-01-01T00:01:10Z",
                "did not answer before the consent dialog timed out",
            ),
            (
                "00000000000000a3",
                "1970-01-01T00:01:20Z",
                "it never started: the device or the relay went away",
            ),
            (
                "00000000000000a4",
                "1970-01-01T00:01:40Z",
                "withdrawn before the employee answered",
            ),
        ];
        for ((_, text), (session, asked, why)) in events.iter().zip(expected) {
            assert!(
                text.starts_with(&format!("session {session} asked {asked} for view: ")),
                "{text}"
            );
            assert!(text.contains(why), "{text}");
        }
        // Each one is audited and reaches the outbox.
        let audit = store.audit_entries(Some(org), 100).unwrap();
        assert_eq!(
            audit
                .iter()
                .filter(|a| a.action == "request.session_follow_up" && a.detail["held"] == false)
                .count(),
            4
        );
        let delivered = store.enqueue_ticket_deliveries("webhook", 0).unwrap();
        assert_eq!(
            delivered,
            6 + 4,
            "six links (0xa2's twice, its follow-up once) and four follow-ups"
        );
    }

    #[test]
    fn a_linked_session_ended_by_a_revoked_token_or_an_administrator_says_so() {
        use super::super::AccessEnd;
        let Linked {
            store,
            org,
            device,
            ana,
            number,
        } = linked("b1");
        let open_and_link = |id: u64, at: i64| {
            open_printer_session(&store, org, device, ana, id, at);
            store
                .act_on_request(
                    org,
                    number,
                    &technician(org, ana.0, "ana"),
                    &RequestAction::LinkSession {
                        session_id: deskside_protocol::SessionId(id),
                    },
                    at + 1,
                )
                .unwrap()
                .unwrap();
        };
        open_and_link(0xb1, 60);
        let ended = store
            .end_session_as_admin(
                org,
                deskside_protocol::SessionId(0xb1),
                "technician:root",
                65,
            )
            .unwrap()
            .unwrap();
        assert_eq!(ended.record.ended_by.as_deref(), Some("administrator"));
        open_and_link(0xb2, 70);
        let ended = store
            .end_technician_sessions(ana, AccessEnd::Revoked, "technician:root", 75)
            .unwrap();
        assert_eq!(ended.len(), 1);
        assert!(!ended[0].consented);
        assert_eq!(ended[0].record.ended_at, Some(75));
        let (_, events, _) = store.request(org, number).unwrap().unwrap();
        let not_held: Vec<_> = events
            .iter()
            .filter(|e| e.kind == "session_not_held")
            .map(|e| e.text.as_str())
            .collect();
        assert_eq!(not_held.len(), 2, "{events:?}");
        assert!(
            not_held[0].starts_with("session 00000000000000b1 asked 1970-01-01T00:01:00Z")
                && not_held[0].contains("an administrator ended it"),
            "{not_held:?}"
        );
        assert!(
            not_held[1].starts_with("session 00000000000000b2 asked 1970-01-01T00:01:10Z")
                && not_held[1].contains("token was revoked"),
            "{not_held:?}"
        );
    }

    #[test]
    fn a_session_asked_while_the_device_was_offline_is_recorded_on_its_request_only() {
        use deskside_protocol::session::Capabilities;
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "secret", 2);
        let device = enroll(&store, "secret", "key", "laptop", 7, 50).unwrap().id;
        let other = enroll(&store, "secret", "key2", "desk", 8, 51).unwrap().id;
        let (number, _) = store
            .insert_request(org, device, &new_request("o1", 3), 55)
            .unwrap()
            .unwrap();
        let ana = technician(org, 9, "ana");
        // Another device's request, or no such request: nothing written.
        assert!(!store
            .record_offline_session_request(org, number, &ana, other, Capabilities::VIEW, 60)
            .unwrap());
        assert!(!store
            .record_offline_session_request(org, number + 100, &ana, device, Capabilities::VIEW, 60)
            .unwrap());
        assert!(store
            .record_offline_session_request(org, number, &ana, device, Capabilities::CONTROL, 70)
            .unwrap());
        let (_, events, _) = store.request(org, number).unwrap().unwrap();
        let not_held: Vec<_> = events
            .iter()
            .filter(|e| e.kind == "session_not_held")
            .map(|e| (e.at, e.author.as_str(), e.text.as_str()))
            .collect();
        assert_eq!(not_held.len(), 1, "{not_held:?}");
        assert_eq!(not_held[0].0, 70);
        assert_eq!(not_held[0].1, "ana");
        assert!(
            not_held[0].2.contains("1970-01-01T00:01:10Z") && not_held[0].2.contains("offline"),
            "{not_held:?}"
        );
        let audit = store.audit_entries(Some(org), 1).unwrap();
        assert_eq!(audit[0].action, "request.session_follow_up");
        assert_eq!(audit[0].detail["why"], "device_offline");
        assert!(
            store.employee_requests(device).unwrap()[0]
                .events
                .iter()
                .all(|e| e.kind != "session_not_held"),
            "the event is for technicians"
        );
    }

    fn technician(org: OrgId, id: u64, name: &str) -> Technician {
        Technician {
            id: TechnicianId(id),
            org,
            name: name.into(),
            role: Role::Technician,
        }
    }

    #[test]
    fn a_resend_is_the_same_request_and_every_change_is_audited() {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "secret", 1);
        let device = enroll(&store, "secret", "key", "laptop", 7, 50).unwrap().id;
        let (first, new) = store
            .insert_request(org, device, &new_request("a1", 3), 100)
            .unwrap()
            .unwrap();
        assert!(new);
        let (again, new) = store
            .insert_request(org, device, &new_request("a1", 3), 101)
            .unwrap()
            .unwrap();
        assert_eq!((again, new), (first, false));
        let (second, _) = store
            .insert_request(org, device, &new_request("b2", 1), 102)
            .unwrap()
            .unwrap();
        let list = store.list_requests(org, &RequestFilter::default()).unwrap();
        assert_eq!(
            list.iter().map(|r| r.number).collect::<Vec<_>>(),
            vec![second, first],
            "priority first"
        );
        assert_eq!(list[1].failures.len(), 1);

        let alice = technician(org, 1, "alice");
        let audit_before = store.audit_entries(Some(org), 1000).unwrap().len();
        let claimed = store
            .act_on_request(org, first, &alice, &RequestAction::Claim, 110)
            .unwrap()
            .unwrap();
        assert_eq!(claimed.status, "claimed");
        assert_eq!(claimed.first_response_at, Some(110));
        let replied = store
            .act_on_request(
                org,
                first,
                &alice,
                &RequestAction::Reply {
                    text: "on it".into(),
                },
                120,
            )
            .unwrap()
            .unwrap();
        assert_eq!(replied.status, "waiting");
        assert_eq!(replied.first_response_at, Some(110));
        let resolved = store
            .act_on_request(
                org,
                first,
                &alice,
                &RequestAction::Resolve {
                    note: "router".into(),
                },
                130,
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            (resolved.status.as_str(), resolved.resolved_at),
            ("resolved", Some(130))
        );
        assert!(store
            .act_on_request(org, first, &alice, &RequestAction::Claim, 131)
            .unwrap()
            .is_err());
        let reopened = store
            .act_on_request(org, first, &alice, &RequestAction::Reopen, 140)
            .unwrap()
            .unwrap();
        assert_eq!(
            (reopened.status.as_str(), reopened.resolved_at),
            ("reopened", None)
        );
        let audit = store.audit_entries(Some(org), 1000).unwrap();
        assert_eq!(audit.len() - audit_before, 4, "one audit row per change");
        assert!(audit.iter().any(|a| a.action == "request.resolve"));

        let mine = store
            .list_requests(
                org,
                &RequestFilter {
                    assignee: Some(alice.id),
                    ..RequestFilter::default()
                },
            )
            .unwrap();
        assert_eq!(mine.len(), 1);
        let in_group = |group: &str| {
            store
                .list_requests(
                    org,
                    &RequestFilter {
                        group: Some(group.into()),
                        ..RequestFilter::default()
                    },
                )
                .unwrap()
                .len()
        };
        assert_eq!(in_group("paris"), 0, "the device has no group");
        store
            .create_enroll_token_in_group(
                org,
                &super::super::tests::hash("paris"),
                1,
                super::super::tests::T0 + 3600,
                None,
                Some("paris"),
                "system",
                super::super::tests::T0,
            )
            .unwrap();
        let in_paris = enroll(&store, "paris", "key2", "desk", 8, 60).unwrap().id;
        store
            .insert_request(org, in_paris, &new_request("c3", 3), 160)
            .unwrap()
            .unwrap();
        assert_eq!(in_group("paris"), 1, "only the device of the group");
        let employee = store.employee_requests(device).unwrap();
        let seen = employee.iter().find(|r| r.number == first).unwrap();
        assert_eq!(
            seen.events
                .iter()
                .map(|e| e.kind.as_str())
                .collect::<Vec<_>>(),
            vec!["claimed", "reply", "resolved", "reopened"]
        );
        assert!(store
            .act_on_request(org, 999, &alice, &RequestAction::Claim, 150)
            .unwrap()
            .is_err());
    }
}
