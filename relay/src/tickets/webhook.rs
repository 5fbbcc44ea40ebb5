//! The generic webhook: one JSON document per request event, POSTed with
//!
//! - `X-Deskside-Signature: sha256=<hex>`: HMAC-SHA256 of the exact body
//!   with the shared secret (the receiver recomputes it and compares in
//!   constant time);
//! - `X-Deskside-Delivery: <request>-<event>`: the same for every attempt
//!   of one event, so the receiver drops a repeat (delivery is at least
//!   once);
//! - `X-Deskside-Event: <kind>`.
//!
//! Any 2xx is success. A receiver that makes a ticket may answer
//! `{"ticket_id": "…", "ticket_url": "…"}`; the relay then shows it with the
//! request.

use ring::hmac;
use serde_json::json;

use super::http::{ConnectorError, Http};
use super::Secret;
use crate::store::{DueDelivery, TicketRef};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Deskside-Signature";
/// The idempotency header.
pub const DELIVERY_HEADER: &str = "X-Deskside-Delivery";
/// The event kind header.
pub const EVENT_HEADER: &str = "X-Deskside-Event";

/// A webhook connector.
#[derive(Debug)]
pub struct Webhook {
    name: String,
    url: String,
    secret: Secret,
    http: Http,
}

impl Webhook {
    /// A connector POSTing to `url`, signing with `secret`.
    pub fn new(name: &str, url: &str, secret: Secret, http: Http) -> Self {
        Self {
            name: name.to_owned(),
            url: url.to_owned(),
            secret,
            http,
        }
    }
}

/// `sha256=` and the hex HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    format!("sha256={}", hex::encode(hmac::sign(&key, body).as_ref()))
}

/// The document sent for `delivery`: the event, the request as it is now
/// and, with the `created` event, the snapshot.
pub fn document(delivery: &DueDelivery) -> serde_json::Value {
    let r = &delivery.request;
    let e = &delivery.event;
    let snapshot = (e.kind == "created")
        .then(|| {
            r.snapshot
                .as_deref()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        })
        .flatten();
    json!({
        "delivery_id": delivery_id(delivery),
        "event": {
            "id": e.id,
            "kind": e.kind,
            "at": e.at,
            "author": e.author,
            "text": e.text,
            // The request's status after this event (null for an event
            // that does not set one): `resolved` closes the ticket.
            "status": super::status_set_by(&e.kind),
        },
        "request": {
            "number": r.number,
            "device": { "id": r.device.to_string(), "hostname": delivery.hostname },
            "status": r.status,
            "priority": r.priority,
            "assignee": r.assignee,
            "answers": r.answers,
            "verdict": r.verdict_line,
            "created_at": r.created_at,
            "first_response_at": r.first_response_at,
            "resolved_at": r.resolved_at,
            "summary": super::summary_text(r, &delivery.hostname),
        },
        "snapshot": snapshot,
    })
}

fn delivery_id(delivery: &DueDelivery) -> String {
    format!("{}-{}", delivery.request.number, delivery.event.id)
}

impl super::Connector for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver(
        &self,
        delivery: &DueDelivery,
        on_ticket: &mut dyn FnMut(&TicketRef) -> Result<(), ConnectorError>,
    ) -> Result<(), ConnectorError> {
        let body = serde_json::to_vec(&document(delivery)).map_err(|e| ConnectorError::Answer {
            url: super::http::without_query(&self.url),
            reason: format!("cannot encode the event: {e}"),
        })?;
        let signature = signature(self.secret.expose(), &body);
        let id = delivery_id(delivery);
        let answer = self.http.post_json(
            &self.url,
            &[
                (SIGNATURE_HEADER, signature.as_str()),
                (DELIVERY_HEADER, id.as_str()),
                (EVENT_HEADER, delivery.event.kind.as_str()),
            ],
            &body,
        )?;
        if !(200..300).contains(&answer.status) {
            return answer.expect(&[200]);
        }
        if delivery.ticket.is_none() {
            let told: Option<serde_json::Value> = serde_json::from_str(&answer.body).ok();
            let ticket_id = told.as_ref().and_then(|v| match &v["ticket_id"] {
                serde_json::Value::String(s) if !s.is_empty() && s.len() <= 200 => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
            if let Some(ticket_id) = ticket_id {
                let url = told
                    .as_ref()
                    .and_then(|v| v["ticket_url"].as_str())
                    .filter(|u| u.len() <= 500)
                    .map(str::to_owned);
                on_ticket(&TicketRef {
                    label: format!("{} {ticket_id}", self.name),
                    id: ticket_id,
                    url,
                })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
