//! Zammad (REST API v1, token authentication `Authorization: Token
//! token=…`): the request becomes a ticket (`POST /api/v1/tickets`) whose
//! first article is an internal note with the human summary, the snapshot
//! attached (base64); every later event is an internal note on the same
//! ticket (`POST /api/v1/ticket_articles`).

use base64::Engine as _;
use serde_json::json;

use super::http::{ConnectorError, Http};
use super::Secret;
use crate::store::{DueDelivery, TicketRef};

/// A Zammad connector.
#[derive(Debug)]
pub struct Zammad {
    name: String,
    url: String,
    token: Secret,
    group: String,
    customer: String,
    http: Http,
}

impl Zammad {
    /// A connector to Zammad at `url` (no trailing slash).
    pub fn new(
        name: &str,
        url: &str,
        token: Secret,
        group: &str,
        customer: &str,
        http: Http,
    ) -> Self {
        Self {
            name: name.to_owned(),
            url: url.to_owned(),
            token,
            group: group.to_owned(),
            customer: customer.to_owned(),
            http,
        }
    }

    fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ConnectorError> {
        let authorization = format!("Token token={}", self.token.expose());
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.http
            .post_json(
                &format!("{}{path}", self.url),
                &[("Authorization", authorization.as_str())],
                &bytes,
            )?
            .json(&[200, 201])
    }

    fn put(&self, path: &str, body: &serde_json::Value) -> Result<(), ConnectorError> {
        let authorization = format!("Token token={}", self.token.expose());
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.http
            .put_json(
                &format!("{}{path}", self.url),
                &[("Authorization", authorization.as_str())],
                &bytes,
            )?
            .json(&[200])
            .map(drop)
    }
}

/// Zammad's default priorities from the ITIL priority (1 critical … 5
/// planning).
fn priority(itil: u8) -> &'static str {
    match itil {
        1 | 2 => "3 high",
        3 => "2 normal",
        _ => "1 low",
    }
}

/// The ticket `POST /api/v1/tickets` makes for `delivery`'s request.
pub fn ticket_body(delivery: &DueDelivery, group: &str, customer: &str) -> serde_json::Value {
    let r = &delivery.request;
    let summary = super::summary_text(r, &delivery.hostname);
    let mut attachments = vec![json!({
        "filename": format!("request-{}.txt", r.number),
        "data": base64::engine::general_purpose::STANDARD.encode(summary.as_bytes()),
        "mime-type": "text/plain",
    })];
    if let Some(snapshot) = &r.snapshot {
        attachments.push(json!({
            "filename": format!("snapshot-{}.json", r.number),
            "data": base64::engine::general_purpose::STANDARD.encode(snapshot.as_bytes()),
            "mime-type": "application/json",
        }));
    }
    json!({
        "title": super::title(r),
        "group": group,
        "customer": customer,
        "priority": priority(r.priority),
        "article": {
            "subject": super::title(r),
            "body": summary,
            "content_type": "text/plain",
            "type": "note",
            "internal": true,
            "attachments": attachments,
        },
    })
}

impl super::Connector for Zammad {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver(
        &self,
        delivery: &DueDelivery,
        on_ticket: &mut dyn FnMut(&TicketRef) -> Result<(), ConnectorError>,
    ) -> Result<(), ConnectorError> {
        let ticket = match &delivery.ticket {
            Some(ticket) => ticket.clone(),
            None => {
                let made = self.post(
                    "/api/v1/tickets",
                    &ticket_body(delivery, &self.group, &self.customer),
                )?;
                let id = made["id"].as_u64().ok_or_else(|| ConnectorError::Answer {
                    url: format!("{}/api/v1/tickets", self.url),
                    reason: "the new ticket has no numeric id".into(),
                })?;
                let number = made["number"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| id.to_string());
                let ticket = TicketRef {
                    id: id.to_string(),
                    label: format!("Zammad #{number}"),
                    url: Some(format!("{}/#ticket/zoom/{id}", self.url)),
                };
                on_ticket(&ticket)?;
                if delivery.event.kind == "created" {
                    return Ok(());
                }
                ticket
            }
        };
        let ticket_id = super::numeric_ticket_id(&ticket, &self.url)?;
        let note = json!({
            "subject": super::title(&delivery.request),
            "body": super::event_text(&delivery.event),
            "content_type": "text/plain",
            "type": "note",
            "internal": true,
        });
        match update(&delivery.event, &note) {
            // The state and its note in one update: a retry repeats both
            // or neither.
            Some(update) => self.put(&format!("/api/v1/tickets/{ticket_id}"), &update),
            None => {
                let mut article = note;
                article["ticket_id"] = json!(ticket_id);
                self.post("/api/v1/ticket_articles", &article).map(drop)
            }
        }
    }
}

/// The `PUT /api/v1/tickets/{id}` body of an event that changes the
/// ticket's state (resolved: `closed`; reopened: `open`), with the event's
/// note as its article; `None` for an event that only adds a note.
pub fn update(
    event: &crate::store::OutboxEvent,
    note: &serde_json::Value,
) -> Option<serde_json::Value> {
    let state = match super::status_change(event)? {
        super::StatusChange::Resolved => "closed",
        super::StatusChange::Reopened => "open",
    };
    Some(json!({ "state": state, "article": note }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ticket_is_an_internal_note_with_the_summary_and_snapshot_attached() {
        let body = ticket_body(
            &crate::tickets::sample_delivery("created"),
            "Users",
            "c@example.org",
        );
        assert_eq!(body["title"], "deskside request 12: calls freeze");
        assert_eq!(
            (body["group"].as_str(), body["customer"].as_str()),
            (Some("Users"), Some("c@example.org"))
        );
        // P2 is Zammad's "3 high".
        assert_eq!(body["priority"], "3 high");
        let article = &body["article"];
        assert_eq!(
            (article["type"].as_str(), article["internal"].as_bool()),
            (Some("note"), Some(true))
        );
        assert!(article["body"]
            .as_str()
            .unwrap()
            .contains("Verdict: home_network: weak Wi-Fi"));
        let snapshot = &article["attachments"][1];
        assert_eq!(snapshot["filename"], "snapshot-12.json");
        assert_eq!(snapshot["data"], "eyJ2ZXJzaW9uIjoxfQ==");
        assert_eq!(priority(5), "1 low");
    }

    #[test]
    fn resolving_closes_and_reopening_opens_the_ticket_with_the_note() {
        let note = json!({ "body": "x" });
        let state = |kind: &str| {
            update(&crate::tickets::sample_delivery(kind).event, &note)
                .map(|u| (u["state"].clone(), u["article"] == note))
        };
        assert_eq!(state("resolved"), Some((json!("closed"), true)));
        assert_eq!(state("reopened"), Some((json!("open"), true)));
        assert_eq!(state("reply"), None);
        assert_eq!(state("claimed"), None);
    }
}
