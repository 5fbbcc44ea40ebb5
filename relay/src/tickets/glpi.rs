//! GLPI's REST API (`apirest.php`): each delivery opens a session
//! (`GET initSession` with `Authorization: user_token …` and the optional
//! `App-Token`), makes the ticket (`POST Ticket`: name, content, urgency
//! and impact 1–5, request source) and uploads the human summary and the
//! snapshot as `Document`s linked to it (`multipart/form-data` with an
//! `uploadManifest`), or adds an `ITILFollowup` for a later event, and
//! closes the session (`GET killSession`) whatever happened.

use serde_json::json;

use super::http::{ConnectorError, Http, Part};
use super::Secret;
use crate::store::{DueDelivery, TicketRef};

/// A GLPI connector.
#[derive(Debug)]
pub struct Glpi {
    name: String,
    url: String,
    user_token: Secret,
    app_token: Option<Secret>,
    request_source: Option<u32>,
    http: Http,
}

/// GLPI's scale (1 very low … 5 very high) from our three answers.
fn glpi_level(rank: u8) -> u8 {
    match rank {
        1 => 4,
        2 => 3,
        _ => 2,
    }
}

impl Glpi {
    /// A connector to the API at `url` (`…/apirest.php`).
    pub fn new(
        name: &str,
        url: &str,
        user_token: Secret,
        app_token: Option<Secret>,
        request_source: Option<u32>,
        http: Http,
    ) -> Self {
        Self {
            name: name.to_owned(),
            url: url.to_owned(),
            user_token,
            app_token,
            request_source,
            http,
        }
    }

    fn with_app_token<'a>(
        &'a self,
        mut headers: Vec<(&'a str, &'a str)>,
    ) -> Vec<(&'a str, &'a str)> {
        if let Some(app) = &self.app_token {
            headers.push(("App-Token", app.expose()));
        }
        headers
    }

    fn open_session(&self) -> Result<String, ConnectorError> {
        let authorization = format!("user_token {}", self.user_token.expose());
        let headers = self.with_app_token(vec![
            ("Content-Type", "application/json"),
            ("Authorization", authorization.as_str()),
        ]);
        let url = format!("{}/initSession", self.url);
        let answer = self.http.get(&url, &headers)?.json(&[200])?;
        answer["session_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| ConnectorError::Answer {
                url,
                reason: "initSession gave no session_token".into(),
            })
    }

    fn close_session(&self, session: &str) {
        let headers = self.with_app_token(vec![
            ("Content-Type", "application/json"),
            ("Session-Token", session),
        ]);
        let closed = self
            .http
            .get(&format!("{}/killSession", self.url), &headers)
            .and_then(|a| a.expect(&[200]));
        if let Err(e) = closed {
            tracing::debug!(connector = %self.name, "GLPI session not closed: {e}");
        }
    }

    fn add(
        &self,
        session: &str,
        itemtype: &str,
        input: serde_json::Value,
    ) -> Result<u64, ConnectorError> {
        let headers = self.with_app_token(vec![("Session-Token", session)]);
        let url = format!("{}/{itemtype}", self.url);
        let body = serde_json::to_vec(&json!({ "input": input })).unwrap_or_default();
        let answer = self.http.post_json(&url, &headers, &body)?.json(&[201])?;
        answer["id"].as_u64().ok_or_else(|| ConnectorError::Answer {
            url,
            reason: format!("the new {itemtype} has no numeric id"),
        })
    }

    /// Uploads `data` as a `Document` named `name`, linked to the ticket.
    fn upload(
        &self,
        session: &str,
        ticket_id: u64,
        file: (&str, &str, &str, &[u8]),
    ) -> Result<u64, ConnectorError> {
        let (name, filename, content_type, data) = file;
        let headers = self.with_app_token(vec![("Session-Token", session)]);
        let url = format!("{}/Document", self.url);
        let manifest = json!({
            "input": {
                "name": name,
                "_filename": [filename],
                "itemtype": "Ticket",
                "items_id": ticket_id,
            }
        })
        .to_string();
        let answer = self
            .http
            .post_multipart(
                &url,
                &headers,
                &[
                    Part {
                        name: "uploadManifest",
                        filename: None,
                        content_type: "application/json",
                        data: manifest.as_bytes(),
                    },
                    Part {
                        name: "filename[0]",
                        filename: Some(filename),
                        content_type,
                        data,
                    },
                ],
            )?
            .json(&[201])?;
        answer["id"].as_u64().ok_or_else(|| ConnectorError::Answer {
            url,
            reason: "the new Document has no numeric id".into(),
        })
    }

    /// The request's summary and snapshot as documents of the ticket.
    fn attach_evidence(
        &self,
        session: &str,
        ticket_id: u64,
        delivery: &DueDelivery,
    ) -> Result<(), ConnectorError> {
        let r = &delivery.request;
        let summary = super::summary_text(r, &delivery.hostname);
        self.upload(
            session,
            ticket_id,
            (
                &format!("deskside request {}: summary", r.number),
                &format!("request-{}.txt", r.number),
                "text/plain",
                summary.as_bytes(),
            ),
        )?;
        if let Some(snapshot) = &r.snapshot {
            self.upload(
                session,
                ticket_id,
                (
                    &format!("deskside request {}: diagnostics snapshot", r.number),
                    &format!("snapshot-{}.json", r.number),
                    "application/json",
                    snapshot.as_bytes(),
                ),
            )?;
        }
        Ok(())
    }

    fn in_session(
        &self,
        delivery: &DueDelivery,
        session: &str,
        on_ticket: &mut dyn FnMut(&TicketRef) -> Result<(), ConnectorError>,
    ) -> Result<(), ConnectorError> {
        let ticket_id = match &delivery.ticket {
            Some(ticket) => super::numeric_ticket_id(ticket, &self.url)?,
            None => {
                let id = self.add(
                    session,
                    "Ticket",
                    ticket_input(delivery, self.request_source),
                )?;
                let base = self.url.trim_end_matches("/apirest.php");
                on_ticket(&TicketRef {
                    id: id.to_string(),
                    label: format!("GLPI #{id}"),
                    url: Some(format!("{base}/front/ticket.form.php?id={id}")),
                })?;
                id
            }
        };
        // The request's own event carries its evidence (again on a retry
        // after the ticket was made: an upload failed).
        if delivery.event.kind == "created" {
            return self.attach_evidence(session, ticket_id, delivery);
        }
        let content = super::event_text(&delivery.event);
        let note = json!({
            "itemtype": "Ticket",
            "items_id": ticket_id,
            "content": content,
        });
        match super::status_change(&delivery.event) {
            // A solution sets the ticket's status to solved (5). GLPI
            // refuses a second one on a solved ticket, so a retry whose
            // first attempt added it (its answer lost) finds the ticket
            // solved and stops there instead of failing for ever.
            Some(super::StatusChange::Resolved) => {
                if !matches!(self.status(session, ticket_id)?, SOLVED | CLOSED) {
                    self.add(session, "ITILSolution", note)?;
                }
            }
            // Back to processing (assigned, 2) first: setting a status is
            // idempotent, so a retry after a failed follow-up repeats it
            // harmlessly.
            Some(super::StatusChange::Reopened) => {
                self.update(session, "Ticket", ticket_id, json!({ "status": REOPENED }))?;
                self.add(session, "ITILFollowup", note)?;
            }
            None => {
                self.add(session, "ITILFollowup", note)?;
            }
        }
        Ok(())
    }

    /// The ticket's status (`GET Ticket/{id}`).
    fn status(&self, session: &str, id: u64) -> Result<u64, ConnectorError> {
        let headers = self.with_app_token(vec![
            ("Content-Type", "application/json"),
            ("Session-Token", session),
        ]);
        let url = format!("{}/Ticket/{id}", self.url);
        let answer = self.http.get(&url, &headers)?.json(&[200])?;
        answer["status"]
            .as_u64()
            .ok_or_else(|| ConnectorError::Answer {
                url,
                reason: "the ticket has no numeric status".into(),
            })
    }

    fn update(
        &self,
        session: &str,
        itemtype: &str,
        id: u64,
        input: serde_json::Value,
    ) -> Result<(), ConnectorError> {
        let headers = self.with_app_token(vec![("Session-Token", session)]);
        let url = format!("{}/{itemtype}/{id}", self.url);
        let body = serde_json::to_vec(&json!({ "input": input })).unwrap_or_default();
        self.http.put_json(&url, &headers, &body)?.expect(&[200])
    }
}

/// GLPI's ticket status "processing (assigned)", which a reopened request
/// returns to.
pub const REOPENED: u8 = 2;
/// GLPI's ticket status "solved".
const SOLVED: u64 = 5;
/// GLPI's ticket status "closed".
const CLOSED: u64 = 6;

/// The `input` of `POST Ticket` for `delivery`'s request.
pub fn ticket_input(delivery: &DueDelivery, request_source: Option<u32>) -> serde_json::Value {
    let r = &delivery.request;
    let a = &r.answers;
    let urgency = deskside_protocol::request::urgency_rank(&a.urgency).unwrap_or(3);
    let impact = deskside_protocol::request::impact_rank(&a.impact).unwrap_or(3);
    let mut input = json!({
        "name": super::title(r),
        "content": super::summary_text(r, &delivery.hostname),
        "urgency": glpi_level(urgency),
        "impact": glpi_level(impact),
        "type": 1,
    });
    if let Some(source) = request_source {
        input["requesttypes_id"] = json!(source);
    }
    input
}

impl super::Connector for Glpi {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver(
        &self,
        delivery: &DueDelivery,
        on_ticket: &mut dyn FnMut(&TicketRef) -> Result<(), ConnectorError>,
    ) -> Result<(), ConnectorError> {
        let session = self.open_session()?;
        let result = self.in_session(delivery, &session, on_ticket);
        self.close_session(&session);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgency_and_impact_use_glpi_scale() {
        let input = ticket_input(&crate::tickets::sample_delivery("created"), Some(7));
        assert_eq!(input["name"], "deskside request 12: calls freeze");
        // Blocked: high (4); my team: medium (3), on GLPI's 1-5 scale.
        assert_eq!(
            (input["urgency"].as_u64(), input["impact"].as_u64()),
            (Some(4), Some(3))
        );
        assert_eq!(input["requesttypes_id"], 7);
        assert_eq!(input["type"], 1, "an incident");
        assert!(
            ticket_input(&crate::tickets::sample_delivery("created"), None)
                .get("requesttypes_id")
                .is_none()
        );
    }
}
