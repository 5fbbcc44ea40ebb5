//! The ticketing outbox in the store: which request events each configured
//! ticketing connector (GLPI, Zammad, a webhook) still has to deliver, and
//! the external ticket each request became.
//!
//! The outbox is fed from `request_events`, which every request change
//! writes in its own transaction: a connector keeps a cursor (the last
//! event id it turned into deliveries), so an event can never be committed
//! without eventually becoming one delivery per connector, even across a
//! crash. A connector seen for the first time starts at the newest event
//! (it does not replay the whole history). Deliveries of one request to one
//! connector go out in event order: only the oldest undelivered one is ever
//! due, so a follow-up never overtakes the ticket's creation.
//!
//! Nothing here reads the clock: times are passed in (Unix milliseconds for
//! delivery attempts, seconds for tickets, like the rest of the store).

use super::sql::{params, OptionalExtension as _, TransactionBehavior};

use super::requests::{request_of, RequestRow};
use super::{insert_audit, NewAudit, OrgId, Store, StoreError, SYSTEM_ACTOR};

/// Schema: the connectors' cursors, their deliveries and the tickets made.
pub(super) const MIGRATION_TICKETS: &str = r#"
CREATE TABLE ticket_cursors (
    connector     TEXT PRIMARY KEY,
    last_event_id INTEGER NOT NULL
) STRICT;
CREATE TABLE ticket_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    connector       TEXT NOT NULL,
    request_id      INTEGER NOT NULL REFERENCES requests(id),
    event_id        INTEGER NOT NULL REFERENCES request_events(id),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_attempt_ms INTEGER,
    last_error      TEXT,
    delivered_ms    INTEGER,
    UNIQUE (connector, event_id)
) STRICT;
CREATE INDEX ticket_deliveries_pending
    ON ticket_deliveries(connector, delivered_ms, request_id, id);
CREATE TABLE request_tickets (
    request_id INTEGER NOT NULL REFERENCES requests(id),
    connector  TEXT NOT NULL,
    ticket_id  TEXT NOT NULL,
    label      TEXT NOT NULL,
    url        TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (request_id, connector)
) STRICT;
"#;

/// A ticket in an external system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketRef {
    /// The id the system's API uses (`19`).
    pub id: String,
    /// What a person reads (`Zammad #22019`).
    pub label: String,
    /// Where a person opens it, when the connector knows.
    pub url: Option<String>,
}

/// One event of a request, as the outbox delivers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Its id in `request_events` (unique: the delivery's idempotency key).
    pub id: i64,
    /// When, Unix seconds.
    pub at: i64,
    /// Who.
    pub author: String,
    /// `created`, `claimed`, `reply`, `resolved`, `reopened`, `session_linked`.
    pub kind: String,
    /// Its text.
    pub text: String,
}

/// The delivery a connector should attempt now.
#[derive(Clone, Debug)]
pub struct DueDelivery {
    /// Its row.
    pub id: i64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The request's organisation (whose policy says what may leave).
    pub org: OrgId,
    /// The request as it is now.
    pub request: RequestRow,
    /// The device's host name.
    pub hostname: String,
    /// The event to deliver.
    pub event: OutboxEvent,
    /// The request's ticket in this connector's system, once made.
    pub ticket: Option<TicketRef>,
}

/// A request's ticket as `deskside requests show` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTicket {
    /// The connector's name.
    pub connector: String,
    /// The ticket.
    pub ticket: TicketRef,
    /// When it was made, Unix seconds.
    pub created_at: i64,
}

/// Deliveries of a request that a connector could not make yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailingDelivery {
    /// The connector's name.
    pub connector: String,
    /// Events of the request still waiting for this connector.
    pub pending: u32,
    /// Failed attempts of the oldest one.
    pub attempts: u32,
    /// Its last error.
    pub last_error: String,
    /// When it was last tried, Unix milliseconds.
    pub last_attempt_ms: i64,
    /// When it is tried next, Unix milliseconds.
    pub next_attempt_ms: i64,
}

/// What the outbox knows about one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestTickets {
    /// Tickets made, one per connector at most.
    pub tickets: Vec<StoredTicket>,
    /// Connectors with a failed attempt still pending.
    pub failing: Vec<FailingDelivery>,
}

impl Store {
    /// Deliveries not yet made, all connectors (the outbox's backlog).
    pub fn ticket_backlog(&self) -> Result<u64, StoreError> {
        let count: i64 = self.lock().query_row(
            "SELECT count(*) FROM ticket_deliveries WHERE delivered_ms IS NULL",
            [],
            |row| row.get(0),
        )?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// A receiver that sees a change after every commit that may have
    /// written help-request events (a request, a technician's action, a
    /// session follow-up), so a connector waits for work instead of
    /// polling. A change can be spurious; a missed one cannot happen once
    /// subscribed.
    pub fn watch_request_events(&self) -> tokio::sync::watch::Receiver<u64> {
        self.request_events.subscribe()
    }

    /// Wakes whoever watches request events (see
    /// [`Store::watch_request_events`]); called after the commit.
    pub(super) fn request_events_written(&self) {
        self.request_events.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Turns the request events `connector` has not seen into deliveries
    /// due at `now_ms`, and moves its cursor past them, in one
    /// transaction. A connector seen for the first time starts after the
    /// newest event. Returns how many deliveries were added.
    pub fn enqueue_ticket_deliveries(
        &self,
        connector: &str,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let newest: i64 =
            tx.query_row("SELECT COALESCE(MAX(id), 0) FROM request_events", [], |r| {
                r.get(0)
            })?;
        let cursor: Option<i64> = tx
            .query_row(
                "SELECT last_event_id FROM ticket_cursors WHERE connector = ?1",
                params![connector],
                |r| r.get(0),
            )
            .optional()?;
        let added = match cursor {
            None => {
                tx.execute(
                    "INSERT INTO ticket_cursors (connector, last_event_id) VALUES (?1, ?2)",
                    params![connector, newest],
                )?;
                0
            }
            Some(cursor) if cursor >= newest => 0,
            Some(cursor) => {
                let added = tx.execute(
                    "INSERT INTO ticket_deliveries
                         (connector, request_id, event_id, next_attempt_ms)
                     SELECT CAST(?1 AS TEXT), request_id, id, CAST(?2 AS BIGINT) FROM request_events
                     WHERE id > ?3 AND id <= ?4 ORDER BY id
                     ON CONFLICT DO NOTHING",
                    params![connector, now_ms, cursor, newest],
                )?;
                tx.execute(
                    "UPDATE ticket_cursors SET last_event_id = ?2 WHERE connector = ?1",
                    params![connector, newest],
                )?;
                added
            }
        };
        tx.commit()?;
        Ok(added)
    }

    /// The oldest delivery of `connector` due at `now_ms` whose request has
    /// no older undelivered event for it: its id and failed attempts.
    pub fn due_ticket_delivery(
        &self,
        connector: &str,
        now_ms: i64,
    ) -> Result<Option<(i64, u32)>, StoreError> {
        let conn = self.lock();
        let head: Option<(i64, i64)> = conn
            .query_row(
                "SELECT d.id, d.attempts FROM ticket_deliveries d
                 WHERE d.connector = ?1 AND d.delivered_ms IS NULL AND d.next_attempt_ms <= ?2
                   AND NOT EXISTS (SELECT 1 FROM ticket_deliveries e
                                   WHERE e.connector = d.connector AND e.request_id = d.request_id
                                     AND e.delivered_ms IS NULL AND e.id < d.id)
                 ORDER BY d.id LIMIT 1",
                params![connector, now_ms],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(head.map(|(id, attempts)| (id, u32::try_from(attempts).unwrap_or(u32::MAX))))
    }

    /// When the next delivery of `connector` falls due (Unix
    /// milliseconds): the earliest attempt among each request's oldest
    /// undelivered event, the ones [`Store::due_ticket_delivery`] can
    /// return; `None` when nothing waits.
    pub fn next_ticket_attempt_ms(&self, connector: &str) -> Result<Option<i64>, StoreError> {
        let conn = self.lock();
        Ok(conn.query_row(
            "SELECT MIN(d.next_attempt_ms) FROM ticket_deliveries d
             WHERE d.connector = ?1 AND d.delivered_ms IS NULL
               AND NOT EXISTS (SELECT 1 FROM ticket_deliveries e
                               WHERE e.connector = d.connector AND e.request_id = d.request_id
                                 AND e.delivered_ms IS NULL AND e.id < d.id)",
            params![connector],
            |r| r.get(0),
        )?)
    }

    /// Delivery `id` with what it carries: the request as it is now, the
    /// event, and the ticket already made for the request, if any.
    pub fn ticket_delivery(&self, id: i64) -> Result<DueDelivery, StoreError> {
        let conn = self.lock();
        let (connector, request_id, event_id, attempts): (String, i64, i64, i64) = conn.query_row(
            "SELECT connector, request_id, event_id, attempts FROM ticket_deliveries
                 WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        let (org, hostname): (i64, String) = conn.query_row(
            "SELECT r.org_id, COALESCE(d.hostname, '(removed device)') FROM requests r
             LEFT JOIN devices d ON d.id = r.device_id WHERE r.id = ?1",
            params![request_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let request = request_of(&conn, OrgId(org), request_id as u64)?
            .ok_or_else(|| StoreError::Corrupt(format!("help request {request_id} vanished")))?;
        let event = conn.query_row(
            "SELECT id, at, author, kind, text FROM request_events WHERE id = ?1",
            params![event_id],
            |r| {
                Ok(OutboxEvent {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    author: r.get(2)?,
                    kind: r.get(3)?,
                    text: r.get(4)?,
                })
            },
        )?;
        let ticket = conn
            .query_row(
                "SELECT ticket_id, label, url FROM request_tickets
                 WHERE request_id = ?1 AND connector = ?2",
                params![request_id, &connector],
                |r| {
                    Ok(TicketRef {
                        id: r.get(0)?,
                        label: r.get(1)?,
                        url: r.get(2)?,
                    })
                },
            )
            .optional()?;
        Ok(DueDelivery {
            id,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            org: OrgId(org),
            request,
            hostname,
            event,
            ticket,
        })
    }

    /// Keeps the ticket `connector` made for request `number` (the first
    /// one wins), audited as `request.ticket` in the same transaction.
    pub fn record_ticket(
        &self,
        number: u64,
        connector: &str,
        ticket: &TicketRef,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let org: i64 = tx.query_row(
            "SELECT org_id FROM requests WHERE id = ?1",
            params![number as i64],
            |r| r.get(0),
        )?;
        let added = tx.execute(
            "INSERT INTO request_tickets
                 (request_id, connector, ticket_id, label, url, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT DO NOTHING",
            params![
                number as i64,
                connector,
                ticket.id,
                ticket.label,
                ticket.url,
                now
            ],
        )?;
        if added == 1 {
            insert_audit(
                &tx,
                &NewAudit {
                    at: now,
                    org: Some(OrgId(org)),
                    actor: SYSTEM_ACTOR,
                    action: "request.ticket",
                    target: &format!("request:{number}"),
                    detail: &serde_json::json!({
                        "connector": connector,
                        "ticket": ticket.label,
                        "url": ticket.url,
                    }),
                },
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Marks delivery `id` as made.
    pub fn finish_ticket_delivery(&self, id: i64, now_ms: i64) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE ticket_deliveries SET delivered_ms = ?2, last_attempt_ms = ?2,
                 last_error = NULL WHERE id = ?1",
            params![id, now_ms],
        )?;
        Ok(())
    }

    /// Records a failed attempt of delivery `id`, to be tried again at
    /// `next_ms`.
    pub fn fail_ticket_delivery(
        &self,
        id: i64,
        error: &str,
        now_ms: i64,
        next_ms: i64,
    ) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE ticket_deliveries SET attempts = attempts + 1, last_error = ?2,
                 last_attempt_ms = ?3, next_attempt_ms = ?4 WHERE id = ?1",
            params![id, error, now_ms, next_ms],
        )?;
        Ok(())
    }

    /// The tickets of request `number` and the connectors failing to
    /// deliver its events.
    pub fn request_tickets(&self, number: u64) -> Result<RequestTickets, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare_cached(
            "SELECT connector, ticket_id, label, url, created_at FROM request_tickets
             WHERE request_id = ?1 ORDER BY created_at, connector",
        )?;
        let tickets = statement
            .query_map(params![number as i64], |r| {
                Ok(StoredTicket {
                    connector: r.get(0)?,
                    ticket: TicketRef {
                        id: r.get(1)?,
                        label: r.get(2)?,
                        url: r.get(3)?,
                    },
                    created_at: r.get(4)?,
                })
            })?
            .collect::<super::sql::Result<Vec<_>>>()?;
        let mut statement = conn.prepare_cached(
            "SELECT d.connector,
                    (SELECT COUNT(*) FROM ticket_deliveries p
                     WHERE p.connector = d.connector AND p.request_id = d.request_id
                       AND p.delivered_ms IS NULL),
                    d.attempts, COALESCE(d.last_error, ''), COALESCE(d.last_attempt_ms, 0),
                    d.next_attempt_ms
             FROM ticket_deliveries d
             WHERE d.request_id = ?1 AND d.delivered_ms IS NULL AND d.attempts > 0
               AND NOT EXISTS (SELECT 1 FROM ticket_deliveries e
                               WHERE e.connector = d.connector AND e.request_id = d.request_id
                                 AND e.delivered_ms IS NULL AND e.id < d.id)
             ORDER BY d.connector",
        )?;
        let failing = statement
            .query_map(params![number as i64], |r| {
                Ok(FailingDelivery {
                    connector: r.get(0)?,
                    pending: u32::try_from(r.get::<_, i64>(1)?).unwrap_or(u32::MAX),
                    attempts: u32::try_from(r.get::<_, i64>(2)?).unwrap_or(u32::MAX),
                    last_error: r.get(3)?,
                    last_attempt_ms: r.get(4)?,
                    next_attempt_ms: r.get(5)?,
                })
            })?
            .collect::<super::sql::Result<Vec<_>>>()?;
        Ok(RequestTickets { tickets, failing })
    }
}

#[cfg(test)]
mod tests {
    use super::super::requests::NewRequest;
    use super::super::tests::{bootstrapped, enroll, enroll_token};
    use super::*;
    use deskside_protocol::request::{Answers, RequestAction};
    use deskside_protocol::{Role, TechnicianId};

    fn request(client_id: &str) -> NewRequest {
        NewRequest {
            client_id: client_id.into(),
            answers: Answers {
                summary: "calls freeze".into(),
                urgency: "blocked".into(),
                impact: "me".into(),
                ..Answers::default()
            },
            snapshot: None,
            verdict: None,
            verdict_line: None,
            failures: vec![],
            priority: 3,
        }
    }

    fn technician(org: OrgId) -> super::super::Technician {
        super::super::Technician {
            id: TechnicianId(1),
            org,
            name: "alice".into(),
            role: Role::Technician,
        }
    }

    #[test]
    fn writers_of_request_events_wake_the_outbox_and_it_knows_its_next_retry() {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "secret", 1);
        let device = enroll(&store, "secret", "key", "laptop", 7, 50).unwrap().id;
        let mut events = store.watch_request_events();
        assert!(!events.has_changed().unwrap());
        assert_eq!(store.enqueue_ticket_deliveries("hook", 0).unwrap(), 0);
        let (number, _) = store
            .insert_request(org, device, &request("a"), 100)
            .unwrap()
            .unwrap();
        assert!(events.has_changed().unwrap(), "a new request wakes it");
        events.borrow_and_update();
        store
            .act_on_request(org, number, &technician(org), &RequestAction::Claim, 110)
            .unwrap()
            .unwrap();
        assert!(
            events.has_changed().unwrap(),
            "a technician's action wakes it"
        );
        events.borrow_and_update();
        store
            .add_session_follow_up(
                org,
                number,
                "alice",
                deskside_protocol::SessionId(7),
                "ran",
                120,
            )
            .unwrap();
        assert!(events.has_changed().unwrap(), "a follow-up wakes it");

        assert_eq!(store.next_ticket_attempt_ms("hook").unwrap(), None);
        assert_eq!(store.enqueue_ticket_deliveries("hook", 1_000).unwrap(), 3);
        assert_eq!(store.next_ticket_attempt_ms("hook").unwrap(), Some(1_000));
        let (first, _) = store.due_ticket_delivery("hook", 1_000).unwrap().unwrap();
        store
            .fail_ticket_delivery(first, "HTTP 500", 1_000, 4_000)
            .unwrap();
        // The events behind the failed one wait for it: the next attempt is
        // its retry, not theirs.
        assert_eq!(store.next_ticket_attempt_ms("hook").unwrap(), Some(4_000));
        store.finish_ticket_delivery(first, 4_000).unwrap();
        assert_eq!(store.next_ticket_attempt_ms("hook").unwrap(), Some(1_000));
    }

    #[test]
    fn events_become_ordered_deliveries_that_survive_failures_and_tickets_are_kept_once() {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "secret", 1);
        let device = enroll(&store, "secret", "key", "laptop", 7, 50).unwrap().id;
        let (old, _) = store
            .insert_request(org, device, &request("old"), 100)
            .unwrap()
            .unwrap();
        // First sight: the connector starts after the newest event.
        assert_eq!(store.enqueue_ticket_deliveries("zammad", 1_000).unwrap(), 0);
        let due = |at: i64| {
            store
                .due_ticket_delivery("zammad", at)
                .unwrap()
                .map(|(id, _)| store.ticket_delivery(id).unwrap())
        };
        assert!(due(1_000).is_none());
        let (number, _) = store
            .insert_request(org, device, &request("new"), 200)
            .unwrap()
            .unwrap();
        assert_ne!(number, old);
        store
            .act_on_request(org, number, &technician(org), &RequestAction::Claim, 210)
            .unwrap()
            .unwrap();
        assert_eq!(store.enqueue_ticket_deliveries("zammad", 2_000).unwrap(), 2);
        // Enqueuing again adds nothing: the cursor moved in the same transaction.
        assert_eq!(store.enqueue_ticket_deliveries("zammad", 2_000).unwrap(), 0);
        // Another connector seen now starts after these events.
        assert_eq!(store.enqueue_ticket_deliveries("hook", 2_000).unwrap(), 0);

        let first = due(2_000).unwrap();
        assert_eq!(first.event.kind, "created");
        assert_eq!(first.request.number, number);
        assert_eq!(first.hostname, "laptop");
        assert!(first.ticket.is_none());
        store
            .fail_ticket_delivery(first.id, "HTTP 500", 2_000, 3_000)
            .unwrap();
        // Not due before its next attempt, and the claim waits behind it.
        assert!(store
            .due_ticket_delivery("zammad", 2_500)
            .unwrap()
            .is_none());
        let failing = store.request_tickets(number).unwrap().failing;
        assert_eq!(failing.len(), 1);
        assert_eq!(
            (
                failing[0].attempts,
                failing[0].pending,
                failing[0].last_error.as_str()
            ),
            (1, 2, "HTTP 500")
        );

        let again = due(3_000).unwrap();
        assert_eq!((again.id, again.attempts), (first.id, 1));
        let ticket = TicketRef {
            id: "19".into(),
            label: "Zammad #22019".into(),
            url: None,
        };
        let audit_before = store.audit_entries(Some(org), 1000).unwrap().len();
        store.record_ticket(number, "zammad", &ticket, 3).unwrap();
        store.record_ticket(number, "zammad", &ticket, 4).unwrap();
        let audit = store.audit_entries(Some(org), 1000).unwrap();
        assert_eq!(audit.len() - audit_before, 1, "audited once");
        store.finish_ticket_delivery(again.id, 3_000).unwrap();

        let claim = due(3_000).unwrap();
        assert_eq!(claim.event.kind, "claimed");
        assert_eq!(claim.ticket.as_ref(), Some(&ticket));
        store.finish_ticket_delivery(claim.id, 3_100).unwrap();
        assert!(store
            .due_ticket_delivery("zammad", 9_000)
            .unwrap()
            .is_none());
        let state = store.request_tickets(number).unwrap();
        assert!(state.failing.is_empty());
        assert_eq!(state.tickets.len(), 1);
        assert_eq!(state.tickets[0].ticket, ticket);
    }
}
