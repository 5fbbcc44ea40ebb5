//! Request Tracker 5 (REST 2.0 under `<url>/REST/2.0`, authentication
//! `Authorization: token …` or HTTP basic): the request becomes a ticket
//! (`POST /ticket`: queue, subject, the human summary as its content, the
//! employee as requestor when their contact is an email address, else the
//! configured default requestor), with the human summary and the snapshot
//! attached (base64 `Attachments`) to the ticket's creation, so they are
//! there exactly once, in the same RT transaction as the ticket. Every
//! later event is a comment on the same ticket (`POST /ticket/{id}/comment`);
//! resolving the request also sets the ticket's status to `resolved`, and
//! reopening it sets it back to `open` (`PUT /ticket/{id}`).
//!
//! Exactly once despite crashes (the outbox delivers at least once):
//! - every ticket's subject starts with the request's marker
//!   `[deskside #N]`; before making a ticket the connector searches the
//!   queue for one carrying it (TicketSQL `Subject LIKE`), so a relay killed
//!   between RT's answer and the ticket being recorded finds the ticket it
//!   made instead of making another. Hence one relay (one store) per queue,
//!   and the marker must stay in the subject if someone edits it in RT.
//! - every comment's subject carries its event's id (`[deskside #N] event
//!   E: …`, the event being the delivery's idempotency key). Before posting
//!   a comment the connector reads the ticket's history (the `Data` of a
//!   comment transaction is its subject) and skips a comment already there,
//!   but only when the post may have happened before: on a retry (a failed
//!   attempt), or for a ticket this relay process has not commented on or
//!   checked yet (the process that was killed may have posted it). In a
//!   running relay the other comments cost one request each.
//! - the status changes are idempotent (`PUT Status`).

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use serde_json::json;

use super::http::{ConnectorError, Http};
use super::{Secret, StatusChange};
use crate::store::{DueDelivery, OutboxEvent, RequestRow, TicketRef};

/// How RT knows the relay.
#[derive(Clone, Debug)]
pub enum RtAuth {
    /// An authentication token (RT: Settings → Auth Tokens).
    Token(Secret),
    /// A user's name and password (HTTP basic).
    Basic {
        /// RT user name.
        user: String,
        /// Its password.
        password: Secret,
    },
}

/// Tickets remembered as checked, beyond which the memory starts over
/// (costing one history read per ticket again).
const MAX_REMEMBERED: usize = 10_000;

/// A Request Tracker connector.
#[derive(Debug)]
pub struct Rt {
    name: String,
    url: String,
    auth: RtAuth,
    queue: String,
    default_requestor: Option<String>,
    http: Http,
    /// Per ticket id: the newest event this process commented or found in
    /// the ticket's history. A ticket absent here is checked before a post.
    known: Mutex<HashMap<u64, i64>>,
}

impl Rt {
    /// A connector to RT at `url` (its web address, no trailing slash,
    /// e.g. `https://rt.example.org/rt`).
    pub fn new(
        name: &str,
        url: &str,
        auth: RtAuth,
        queue: &str,
        default_requestor: Option<&str>,
        http: Http,
    ) -> Self {
        Self {
            name: name.to_owned(),
            url: url.to_owned(),
            auth,
            queue: queue.to_owned(),
            default_requestor: default_requestor.map(str::to_owned),
            http,
            known: Mutex::new(HashMap::new()),
        }
    }

    fn authorization(&self) -> String {
        match &self.auth {
            RtAuth::Token(token) => format!("token {}", token.expose()),
            RtAuth::Basic { user, password } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{user}:{}", password.expose()))
            ),
        }
    }

    fn api(&self, path: &str) -> String {
        format!("{}/REST/2.0{path}", self.url)
    }

    fn send(
        &self,
        put: bool,
        path: &str,
        body: &serde_json::Value,
        expected: &[u16],
    ) -> Result<serde_json::Value, ConnectorError> {
        let authorization = self.authorization();
        let headers = [("Authorization", authorization.as_str())];
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let url = self.api(path);
        let answer = if put {
            self.http.put_json(&url, &headers, &bytes)?
        } else {
            self.http.post_json(&url, &headers, &bytes)?
        };
        answer.json(expected)
    }

    fn get(&self, path_and_query: &str) -> Result<serde_json::Value, ConnectorError> {
        let authorization = self.authorization();
        self.http
            .get(
                &self.api(path_and_query),
                &[("Authorization", authorization.as_str())],
            )?
            .json(&[200])
    }

    fn ticket_ref(&self, id: u64) -> TicketRef {
        TicketRef {
            id: id.to_string(),
            label: format!("RT #{id}"),
            url: Some(format!("{}/Ticket/Display.html?id={id}", self.url)),
        }
    }

    /// The ticket of request `number` already in the queue, if any (the
    /// oldest, should there be several).
    fn find_ticket(&self, number: u64) -> Result<Option<u64>, ConnectorError> {
        let query = format!(
            "Queue = '{}' AND Subject LIKE '{}'",
            self.queue.replace('\'', "\\'"),
            marker(number)
        );
        let found = self.get(&format!(
            "/tickets?query={}&orderby=id&order=ASC&per_page=1",
            url_encode(&query)
        ))?;
        match found["items"].as_array().and_then(|items| items.first()) {
            None => Ok(None),
            Some(item) => number_of(&item["id"])
                .map(Some)
                .ok_or_else(|| ConnectorError::Answer {
                    url: self.api("/tickets"),
                    reason: format!("a found ticket has no numeric id: {item}"),
                }),
        }
    }

    fn create_ticket(&self, delivery: &DueDelivery) -> Result<u64, ConnectorError> {
        let body = ticket_body(delivery, &self.queue, self.default_requestor.as_deref());
        let made = self.send(false, "/ticket", &body, &[201])?;
        number_of(&made["id"]).ok_or_else(|| ConnectorError::Answer {
            url: self.api("/ticket"),
            reason: format!("the new ticket has no numeric id: {made}"),
        })
    }

    /// Whether the comment of `delivery` is already in ticket `id`'s
    /// history.
    fn commented(&self, id: u64, delivery: &DueDelivery) -> Result<bool, ConnectorError> {
        let wanted = comment_marker(delivery.request.number, delivery.event.id);
        let mut page = 1u64;
        loop {
            let history = self.get(&format!(
                "/ticket/{id}/history?fields=Type,Data&per_page=100&page={page}"
            ))?;
            let items = history["items"].as_array().cloned().unwrap_or_default();
            // RT keeps a comment's subject as its mail header, folded over
            // lines when long: compare it unfolded.
            if items.iter().any(|t| {
                t["Type"] == "Comment"
                    && t["Data"].as_str().is_some_and(|subject| {
                        subject
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ")
                            .starts_with(&wanted)
                    })
            }) {
                return Ok(true);
            }
            let pages = history["pages"].as_u64().unwrap_or(1);
            if page >= pages || items.is_empty() {
                return Ok(false);
            }
            page += 1;
        }
    }

    fn remember(&self, id: u64, event: i64) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= MAX_REMEMBERED && !known.contains_key(&id) {
            known.clear();
        }
        let newest = known.entry(id).or_insert(event);
        *newest = (*newest).max(event);
    }

    /// Posts the comment of `delivery` on ticket `id` unless it may be
    /// there already and is.
    fn comment(&self, id: u64, delivery: &DueDelivery) -> Result<(), ConnectorError> {
        let event = delivery.event.id;
        let newest = self
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .copied();
        let maybe_posted = match newest {
            // Events of a request go out in order: an event at or before
            // the newest one this process posted is done.
            Some(newest) if event <= newest => return Ok(()),
            Some(_) => delivery.attempts > 0,
            None => true,
        };
        if !(maybe_posted && self.commented(id, delivery)?) {
            self.send(
                false,
                &format!("/ticket/{id}/comment"),
                &comment_body(delivery),
                &[200, 201],
            )?;
        }
        self.remember(id, event);
        Ok(())
    }
}

/// The subject marker of request `number`'s ticket.
fn marker(number: u64) -> String {
    format!("[deskside #{number}]")
}

/// The subject start of event `event`'s comment.
fn comment_marker(number: u64, event: i64) -> String {
    format!("{} event {event}:", marker(number))
}

/// A JSON id RT gives as a string or a number.
fn number_of(value: &serde_json::Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `text` on one line, at most `max` characters (an ellipsis when cut).
fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    let mut short: String = flat.chars().take(max).collect();
    if flat.chars().count() > max {
        short.push('…');
    }
    short
}

/// The ticket's subject: the marker and the start of the summary.
pub fn subject(request: &RequestRow) -> String {
    format!(
        "{} {}",
        marker(request.number),
        one_line(&request.answers.summary, 80)
    )
}

/// The first email address in the employee's contact, if any.
pub fn contact_email(contact: &str) -> Option<String> {
    contact
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';'))
        .map(|word| {
            word.trim_matches(|c: char| matches!(c, '<' | '>' | '(' | ')' | '"' | '\'' | '.' | ':'))
        })
        .find(|word| {
            let Some((local, domain)) = word.split_once('@') else {
                return false;
            };
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && word.chars().all(|c| c.is_ascii_graphic())
        })
        .map(str::to_owned)
}

/// The body of `POST /REST/2.0/ticket` for `delivery`'s request.
pub fn ticket_body(
    delivery: &DueDelivery,
    queue: &str,
    default_requestor: Option<&str>,
) -> serde_json::Value {
    let r = &delivery.request;
    let summary = super::summary_text(r, &delivery.hostname);
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut attachments = vec![json!({
        "FileName": format!("request-{}.txt", r.number),
        "FileType": "text/plain",
        "FileContent": b64(summary.as_bytes()),
    })];
    if let Some(snapshot) = r.snapshot.as_deref().filter(|s| !s.is_empty()) {
        attachments.push(json!({
            "FileName": format!("snapshot-{}.json", r.number),
            "FileType": "application/json",
            "FileContent": b64(snapshot.as_bytes()),
        }));
    }
    let mut body = json!({
        "Queue": queue,
        "Subject": subject(r),
        "Content": summary,
        "ContentType": "text/plain",
        "Attachments": attachments,
    });
    let requestor = contact_email(&r.answers.contact).or(default_requestor.map(str::to_owned));
    if let Some(requestor) = requestor {
        body["Requestor"] = json!(requestor);
    }
    body
}

/// The body of `POST /REST/2.0/ticket/{id}/comment` for `delivery`'s event.
pub fn comment_body(delivery: &DueDelivery) -> serde_json::Value {
    let text = super::event_text(&delivery.event);
    json!({
        "Subject": format!(
            "{} {}",
            comment_marker(delivery.request.number, delivery.event.id),
            one_line(&text, 80)
        ),
        "Content": text,
        "ContentType": "text/plain",
    })
}

/// The RT status an event sets, if any.
fn status_after(event: &OutboxEvent) -> Option<&'static str> {
    super::status_change(event).map(|change| match change {
        StatusChange::Resolved => "resolved",
        StatusChange::Reopened => "open",
    })
}

impl super::Connector for Rt {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver(
        &self,
        delivery: &DueDelivery,
        on_ticket: &mut dyn FnMut(&TicketRef) -> Result<(), ConnectorError>,
    ) -> Result<(), ConnectorError> {
        let id = match &delivery.ticket {
            Some(ticket) => super::numeric_ticket_id(ticket, &self.url)?,
            None => {
                let number = delivery.request.number;
                let (id, made) = match self.find_ticket(number)? {
                    Some(id) => (id, false),
                    None => (self.create_ticket(delivery)?, true),
                };
                if made {
                    // Nothing commented yet on a ticket made just now.
                    self.remember(id, 0);
                }
                on_ticket(&self.ticket_ref(id))?;
                if delivery.event.kind == "created" {
                    return Ok(());
                }
                id
            }
        };
        if delivery.event.kind == "created" {
            // The creation carried the request: nothing to add.
            return Ok(());
        }
        self.comment(id, delivery)?;
        if let Some(status) = status_after(&delivery.event) {
            self.send(
                true,
                &format!("/ticket/{id}"),
                &json!({ "Status": status }),
                &[200],
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ticket_carries_the_marker_the_requestor_and_the_evidence() {
        let mut delivery = crate::tickets::sample_delivery("created");
        let body = ticket_body(&delivery, "Helpdesk", Some("helpdesk@example.org"));
        assert_eq!(body["Subject"], "[deskside #12] calls freeze");
        assert_eq!(body["Queue"], "Helpdesk");
        assert_eq!(body["ContentType"], "text/plain");
        // The contact is "chat": the default requestor.
        assert_eq!(body["Requestor"], "helpdesk@example.org");
        assert!(body["Content"]
            .as_str()
            .unwrap()
            .contains("Verdict: home_network: weak Wi-Fi"));
        let attachments = body["Attachments"].as_array().unwrap();
        assert_eq!(attachments.len(), 2);
        assert_eq!(attachments[1]["FileName"], "snapshot-12.json");
        assert_eq!(attachments[1]["FileType"], "application/json");
        assert_eq!(attachments[1]["FileContent"], "eyJ2ZXJzaW9uIjoxfQ==");

        delivery.request.answers.contact = "mail <bob.m@corp.example.org>, afternoons".into();
        delivery.request.snapshot = None;
        let body = ticket_body(&delivery, "Helpdesk", None);
        assert_eq!(body["Requestor"], "bob.m@corp.example.org");
        assert_eq!(body["Attachments"].as_array().unwrap().len(), 1);
        delivery.request.answers.contact = "+33 6 12 34 56 78".into();
        assert!(ticket_body(&delivery, "Helpdesk", None)
            .get("Requestor")
            .is_none());
    }

    #[test]
    fn contacts_give_an_email_only_when_they_hold_one() {
        assert_eq!(contact_email("a@b.org").as_deref(), Some("a@b.org"));
        assert_eq!(
            contact_email("email: (jo@x.fr).").as_deref(),
            Some("jo@x.fr")
        );
        for none in ["chat", "@b.org", "a@b", "a@.org", "call me @ 5", "", "a@b."] {
            assert_eq!(contact_email(none), None, "{none:?}");
        }
    }

    #[test]
    fn comments_carry_their_event_and_statuses_follow_resolution() {
        let delivery = crate::tickets::sample_delivery("reply");
        let body = comment_body(&delivery);
        assert_eq!(
            body["Subject"],
            "[deskside #12] event 3: alice replied to the employee: restart the router"
        );
        assert_eq!(
            body["Content"],
            "alice replied to the employee: restart the router"
        );
        assert!(body["Subject"]
            .as_str()
            .unwrap()
            .starts_with(&comment_marker(12, 3)));
        assert!(!comment_marker(1, 30).starts_with(&comment_marker(1, 3)));
        assert!(!"[deskside #12] calls".contains(&marker(1)));
        let status = |kind: &str| status_after(&crate::tickets::sample_delivery(kind).event);
        assert_eq!(status("resolved"), Some("resolved"));
        assert_eq!(status("reopened"), Some("open"));
        assert_eq!(status("reply"), None);
    }

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            url_encode("Queue = 'a b' AND Subject LIKE '[deskside #1]'"),
            "Queue%20%3D%20%27a%20b%27%20AND%20Subject%20LIKE%20%27%5Bdeskside%20%231%5D%27"
        );
    }
}
