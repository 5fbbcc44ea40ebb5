//! Ticketing connectors: every help-request event reaches the ticketing
//! tools the helpdesk already runs (GLPI, Zammad, a signed webhook),
//! through the store's outbox (`store/tickets.rs`).
//!
//! One task per configured connector turns new request events into
//! deliveries, attempts the oldest due one, records the external ticket as
//! soon as it exists (so a later event updates it instead of making
//! another), and on failure schedules the next attempt with exponential
//! backoff. Deliveries live in the database, so a restart loses none; a
//! delivery that keeps failing stays pending (never dropped), is logged at
//! each attempt and shows in `deskside requests show`.
//!
//! What this module must never do: log or store a connector's secret
//! (they travel only in HTTP headers, see `http.rs`), or send screen
//! content (requests hold none).

pub mod config;
pub mod glpi;
pub mod http;
pub mod privacy;
pub mod rt;
pub mod webhook;
pub mod zammad;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::{now_millis, now_secs};
use crate::shared::Shared;
use crate::store::{DueDelivery, OutboxEvent, RequestRow, RequestTickets, Store, TicketRef};
pub use config::{ConnectorConfig, ConnectorKind, Secret, TicketsConfig, TicketsFile};
use deskside_protocol::request::RequestEvent;
pub use http::ConnectorError;

/// The longest an idle connector waits before looking again. It does not
/// poll for work: a commit that may have written request events wakes it
/// at once (`Store::watch_request_events`), and it sleeps only until its
/// next retry falls due; this bounds the wait for anything that writes
/// events without signalling.
const SAFETY_POLL: Duration = Duration::from_secs(5);

/// The shortest idle wait, so that a clock step cannot make a busy loop.
const MIN_WAIT: Duration = Duration::from_millis(10);

/// A ticketing system the relay delivers request events to.
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// The name it has in the configuration and in the store.
    fn name(&self) -> &str;

    /// Delivers one event of a request. A connector that makes a ticket
    /// calls `on_ticket` as soon as the ticket exists, before anything
    /// else can fail, so that a retry updates it instead of making another.
    fn deliver(
        &self,
        delivery: &DueDelivery,
        on_ticket: &mut dyn FnMut(&TicketRef) -> Result<(), ConnectorError>,
    ) -> Result<(), ConnectorError>;
}

/// Builds the connectors of `config`.
pub fn connectors(config: &TicketsConfig) -> Vec<Arc<dyn Connector>> {
    let http = http::Http::new(config.timeout, &config.ca_certs);
    config
        .connectors
        .iter()
        .map(|c| -> Arc<dyn Connector> {
            match &c.kind {
                ConnectorKind::Webhook { url, secret } => Arc::new(webhook::Webhook::new(
                    &c.name,
                    url,
                    secret.clone(),
                    http.clone(),
                )),
                ConnectorKind::Zammad {
                    url,
                    token,
                    group,
                    customer,
                } => Arc::new(zammad::Zammad::new(
                    &c.name,
                    url,
                    token.clone(),
                    group,
                    customer,
                    http.clone(),
                )),
                ConnectorKind::Glpi {
                    url,
                    user_token,
                    app_token,
                    request_source,
                } => Arc::new(glpi::Glpi::new(
                    &c.name,
                    url,
                    user_token.clone(),
                    app_token.clone(),
                    *request_source,
                    http.clone(),
                )),
                ConnectorKind::Rt {
                    url,
                    auth,
                    queue,
                    default_requestor,
                } => Arc::new(rt::Rt::new(
                    &c.name,
                    url,
                    auth.clone(),
                    queue,
                    default_requestor.as_deref(),
                    http.clone(),
                )),
            }
        })
        .collect()
}

/// Exponential backoff between attempts of one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// After the first failure.
    pub initial: Duration,
    /// At most.
    pub max: Duration,
}

impl Backoff {
    /// The wait after failed attempt number `attempt` (1 for the first):
    /// `initial`, doubling, capped at `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        self.initial.saturating_mul(1u32 << doublings).min(self.max)
    }
}

/// Starts one delivery task per connector; each ends when `shutdown`
/// turns true (after the attempt in progress, bounded by the timeout).
pub fn spawn(
    shared: &Arc<Shared>,
    config: &TicketsConfig,
    shutdown: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let backoff = Backoff {
        initial: config.retry_initial,
        max: config.retry_max,
    };
    connectors(config)
        .into_iter()
        .map(|connector| {
            // Before the relay accepts anyone: a connector seen for the
            // first time starts at this start's newest event, so every
            // request event from now on reaches it.
            if let Err(e) = shared
                .store
                .enqueue_ticket_deliveries(connector.name(), now_millis())
            {
                tracing::error!(
                    connector = connector.name(),
                    "the ticket outbox cannot be read: {e}"
                );
            }
            tracing::info!(
                connector = connector.name(),
                "delivering help requests to a ticketing system"
            );
            tokio::spawn(run(
                Arc::clone(shared),
                connector,
                backoff,
                shutdown.clone(),
            ))
        })
        .collect()
}

async fn run(
    shared: Arc<Shared>,
    connector: Arc<dyn Connector>,
    backoff: Backoff,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut events = shared.store.watch_request_events();
    loop {
        if *shutdown.borrow() {
            return;
        }
        // Marked seen before the step reads the outbox: an event written
        // from now on wakes the wait below.
        events.borrow_and_update();
        let (step_shared, step_connector) = (Arc::clone(&shared), Arc::clone(&connector));
        let worked = tokio::task::spawn_blocking(move || {
            let worked = step(&step_shared, &*step_connector, backoff);
            if let Ok(backlog) = step_shared.store.ticket_backlog() {
                step_shared.metrics.outbox_backlog(backlog);
            }
            worked
        })
        .await;
        let idle = match worked {
            Ok(Ok(worked)) => !worked,
            Ok(Err(e)) => {
                tracing::error!(
                    connector = connector.name(),
                    "the ticket outbox cannot be read: {e}"
                );
                true
            }
            Err(e) => {
                tracing::error!(
                    connector = connector.name(),
                    "a ticket delivery stopped: {e}"
                );
                true
            }
        };
        if idle {
            let wait = idle_wait(&shared.store, connector.name()).await;
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = events.changed() => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// How long an idle connector sleeps unless woken: until its next retry
/// falls due, at most [`SAFETY_POLL`].
async fn idle_wait(store: &Arc<Store>, connector: &str) -> Duration {
    let (store, name) = (Arc::clone(store), connector.to_owned());
    let next = tokio::task::spawn_blocking(move || store.next_ticket_attempt_ms(&name)).await;
    match next {
        Ok(Ok(Some(at))) => {
            let ms = u64::try_from(at.saturating_sub(now_millis())).unwrap_or(0);
            Duration::from_millis(ms).clamp(MIN_WAIT, SAFETY_POLL)
        }
        _ => SAFETY_POLL,
    }
}

/// Enqueues new events and attempts the oldest due delivery. Returns
/// whether there was one.
fn step(
    shared: &Shared,
    connector: &dyn Connector,
    backoff: Backoff,
) -> Result<bool, crate::store::StoreError> {
    let store = &*shared.store;
    let name = connector.name();
    // With several relays on one store, only the outbox's leader delivers;
    // the others check again at the next safety poll.
    if !store.hold_outbox_lead()? {
        return Ok(false);
    }
    store.enqueue_ticket_deliveries(name, now_millis())?;
    let Some((id, attempts)) = store.due_ticket_delivery(name, now_millis())? else {
        return Ok(false);
    };
    // What leaves follows the organisation's policy as it is now: the one
    // filter before any connector (see `privacy`).
    let filtered = store.ticket_delivery(id).and_then(|mut delivery| {
        let settings = store.organisation_settings(delivery.org)?;
        let policy = deskside_diag::policy::Policy::from_json(settings.as_bytes());
        let key = shared.identifier_key.for_org(delivery.org);
        privacy::Outbound::new(&policy, Some(&key)).apply(&mut delivery);
        Ok(delivery)
    });
    let delivery = match filtered {
        Ok(delivery) => delivery,
        Err(e) => {
            // One unreadable delivery must not hold up the others: it waits
            // like a failed one.
            let error = format!("cannot read the request from the relay's store: {e}");
            retry_later(store, id, attempts, &error, backoff)?;
            tracing::error!(connector = name, delivery = id, "{error}");
            return Ok(true);
        }
    };
    let number = delivery.request.number;
    let mut record = |ticket: &TicketRef| {
        store
            .record_ticket(number, name, ticket, now_secs())
            .map_err(|e| ConnectorError::Store(e.to_string()))?;
        tracing::info!(connector = name, request = number, ticket = %ticket.label, "ticket made");
        Ok(())
    };
    match connector.deliver(&delivery, &mut record) {
        Ok(()) => {
            store.finish_ticket_delivery(delivery.id, now_millis())?;
            tracing::info!(
                connector = name,
                request = number,
                event = %delivery.event.kind,
                attempts = delivery.attempts + 1,
                "request event delivered"
            );
        }
        Err(error) => {
            let attempt = delivery.attempts.saturating_add(1);
            let wait = retry_later(
                store,
                delivery.id,
                delivery.attempts,
                &error.to_string(),
                backoff,
            )?;
            tracing::warn!(
                connector = name,
                request = number,
                event = %delivery.event.kind,
                attempt,
                "ticket delivery failed: {error}; next attempt in {}",
                humantime::format_duration(wait)
            );
        }
    }
    Ok(true)
}

/// Records a failed attempt of delivery `id` (which had failed
/// `attempts` times before) and schedules the next; returns the wait.
fn retry_later(
    store: &Store,
    id: i64,
    attempts: u32,
    error: &str,
    backoff: Backoff,
) -> Result<Duration, crate::store::StoreError> {
    let wait = backoff.delay(attempts.saturating_add(1));
    let now = now_millis();
    let next = now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
    store.fail_ticket_delivery(id, error, now, next)?;
    Ok(wait)
}

/// What the outbox knows about a request, as events of `deskside requests
/// show`: `ticket` (author: the connector) for each ticket made, and
/// `delivery_failing` for each connector whose delivery failed and is
/// still pending, with the failed attempts counted and the last error.
pub fn request_events(state: &RequestTickets) -> Vec<RequestEvent> {
    let tickets = state.tickets.iter().map(|t| RequestEvent {
        at: t.created_at,
        author: t.connector.clone(),
        kind: "ticket".into(),
        text: match &t.ticket.url {
            Some(url) => format!("{} {url}", t.ticket.label),
            None => t.ticket.label.clone(),
        },
    });
    let failing = state.failing.iter().map(|f| {
        let wait = Duration::from_millis(
            u64::try_from(f.next_attempt_ms.saturating_sub(f.last_attempt_ms)).unwrap_or(0),
        );
        RequestEvent {
            at: f.last_attempt_ms / 1000,
            author: f.connector.clone(),
            kind: "delivery_failing".into(),
            text: format!(
                "{} event(s) not delivered yet; {} failed attempt(s), the last: {}; next attempt {} later",
                f.pending,
                f.attempts,
                f.last_error,
                humantime::format_duration(wait)
            ),
        }
    });
    tickets.chain(failing).collect()
}

/// A ticket's title: the request's number and the start of the
/// employee's summary.
pub fn title(request: &RequestRow) -> String {
    let summary: String = request
        .answers
        .summary
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut short: String = summary.trim().chars().take(80).collect();
    if summary.trim().chars().count() > 80 {
        short.push('…');
    }
    format!("deskside request {}: {short}", request.number)
}

/// The human summary of a request: the employee's answers, the priority
/// and the verdict's line (plain text).
pub fn summary_text(request: &RequestRow, hostname: &str) -> String {
    let a = &request.answers;
    let mut text = format!(
        "Help request {} from {hostname} (priority P{}, {}).\n\nProblem: {}\n",
        request.number, request.priority, request.status, a.summary
    );
    let mut line = |label: &str, value: &str| {
        if !value.trim().is_empty() {
            text.push_str(&format!("{label}: {value}\n"));
        }
    };
    line("Since", &a.since);
    line("Pattern", &a.pattern);
    line("Applications", &a.apps.join(", "));
    line("Urgency", &a.urgency);
    line("Impact", &a.impact);
    line("Contact", &a.contact);
    line(
        "Verdict",
        request
            .verdict_line
            .as_deref()
            .unwrap_or("no diagnostics attached"),
    );
    text
}

/// A later event as a follow-up's text.
pub fn event_text(event: &OutboxEvent) -> String {
    let who = &event.author;
    let with_text = |what: &str| {
        if event.text.trim().is_empty() {
            format!("{who} {what}.")
        } else {
            format!("{who} {what}: {}", event.text)
        }
    };
    match event.kind.as_str() {
        "created" => with_text("asked for help"),
        "claimed" => with_text("took the request"),
        "reply" => with_text("replied to the employee"),
        "resolved" => with_text("resolved the request"),
        "reopened" => with_text("reopened the request"),
        "session_linked" => with_text("linked a remote session"),
        "session" => with_text("ran a remote session"),
        "session_not_held" => with_text("asked for a remote session that did not take place"),
        other => with_text(other),
    }
}

/// What an event does to the external ticket beyond its note.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusChange {
    /// Resolved in deskside: the ticket is solved or closed.
    Resolved,
    /// Reopened in deskside: the ticket is open again.
    Reopened,
}

/// The status change `event` makes. The contract for every connector: an
/// event with a change leaves the external ticket in the matching state
/// (Zammad `closed`/`open`, GLPI solved/processing, RT `resolved`/`open`)
/// as well as recording its text, and does so idempotently, since a
/// delivery can be repeated after a failure. A connector whose system has
/// no states (the webhook) only says the status in its document.
pub fn status_change(event: &OutboxEvent) -> Option<StatusChange> {
    match event.kind.as_str() {
        "resolved" => Some(StatusChange::Resolved),
        "reopened" => Some(StatusChange::Reopened),
        _ => None,
    }
}

/// The numeric id a system's API uses for a ticket this relay stored
/// (Zammad, GLPI and RT number their tickets); `url` names the system in
/// the error.
pub fn numeric_ticket_id(ticket: &TicketRef, url: &str) -> Result<u64, ConnectorError> {
    ticket.id.parse().map_err(|_| ConnectorError::Answer {
        url: url.to_owned(),
        reason: format!("the stored ticket id {:?} is not a number", ticket.id),
    })
}

/// The request status an event of `kind` set, for the events that set one.
pub fn status_set_by(kind: &str) -> Option<&'static str> {
    match kind {
        "created" => Some("new"),
        "claimed" => Some("claimed"),
        "resolved" => Some("resolved"),
        "reopened" => Some("reopened"),
        "closed" => Some("closed"),
        _ => None,
    }
}

/// A delivery to build payloads from, in unit tests.
#[cfg(test)]
pub(crate) fn sample_delivery(kind: &str) -> DueDelivery {
    use deskside_protocol::request::Answers;
    DueDelivery {
        id: 1,
        attempts: 0,
        org: crate::store::OrgId(1),
        request: RequestRow {
            number: 12,
            device: deskside_protocol::DeviceId(7),
            client_id: "abc".into(),
            answers: Answers {
                summary: "calls freeze".into(),
                since: "this morning".into(),
                pattern: "intermittent".into(),
                apps: vec!["video".into()],
                urgency: "blocked".into(),
                impact: "team".into(),
                contact: "chat".into(),
                lang: "en".into(),
            },
            snapshot: Some("{\"version\":1}".into()),
            verdict: None,
            verdict_line: Some("home_network: weak Wi-Fi".into()),
            failures: vec![],
            priority: 2,
            status: "new".into(),
            assignee_id: None,
            assignee: None,
            created_at: 100,
            first_response_at: None,
            resolved_at: None,
        },
        hostname: "laptop".into(),
        event: OutboxEvent {
            id: 3,
            at: 100,
            author: "alice".into(),
            kind: kind.into(),
            text: "restart the router".into(),
        },
        ticket: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(60),
        };
        let waits: Vec<u64> = (1..=7).map(|a| b.delay(a).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(60));
        assert_eq!(b.delay(0), Duration::from_secs(2));
    }

    #[test]
    fn events_read_as_sentences() {
        let event = |kind: &str, text: &str| OutboxEvent {
            id: 1,
            at: 0,
            author: "alice".into(),
            kind: kind.into(),
            text: text.into(),
        };
        assert_eq!(
            event_text(&event("reply", "restart the router")),
            "alice replied to the employee: restart the router"
        );
        assert_eq!(event_text(&event("claimed", "")), "alice took the request.");
        assert_eq!(
            event_text(&event(
                "session",
                "session 00000000000000ab started 2026-11-30T00:53:20Z: the employee granted view; \
                 lasted 183 s; ended by technician; verdict before: isp: packet loss (attached to \
                 the request); after: no problem found (measured when the session ended)"
            )),
            "alice ran a remote session: session 00000000000000ab started 2026-11-30T00:53:20Z: \
             the employee granted view; lasted 183 s; ended by technician; verdict before: isp: \
             packet loss (attached to the request); after: no problem found (measured when the \
             session ended)"
        );
    }
}
