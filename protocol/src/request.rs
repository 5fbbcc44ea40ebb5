//! Help requests (`deskside-agent help`, `deskside requests`): what an
//! employee asks, what the relay keeps, and what a technician sees.
//!
//! The employee's answers travel as plain strings checked by the relay
//! (unknown words are refused there, not here), the snapshot as the JSON of
//! `deskside-diag`, as for diagnostics. The priority is computed here, pure:
//! [`priority`] is the usual ITIL matrix of urgency and impact.

use serde::{Deserialize, Serialize};

use crate::console::DeviceSummary;

/// What the employee answered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answers {
    /// What is wrong, in the employee's words.
    pub summary: String,
    /// Since when, in the employee's words (`this morning`, `2 days`).
    pub since: String,
    /// `ongoing`, `intermittent` or `over`.
    pub pattern: String,
    /// Applications hit: `video`, `vpn`, `mail`, `browser`, `printer`,
    /// `other`.
    pub apps: Vec<String>,
    /// `can_work`, `slowed` or `blocked`.
    pub urgency: String,
    /// `me`, `team` or `many`.
    pub impact: String,
    /// How and when to reach the employee.
    pub contact: String,
    /// The employee's language (`en`, `fr`).
    pub lang: String,
}

/// A failed attempt to send the request: evidence of the connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryFailure {
    /// When, Unix milliseconds (device clock).
    pub at_ms: i64,
    /// What went wrong.
    pub error: String,
}

/// A request as the agent sends it (`AgentToRelay::HelpRequest`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelpRequest {
    /// Chosen by the agent (32 hex digits): a resend with the same id is
    /// the same request.
    pub client_id: String,
    /// When the employee sent it, Unix milliseconds (device clock).
    pub created_ms: i64,
    /// The answers.
    pub answers: Answers,
    /// The quick check's snapshot (JSON), unless the employee dropped it.
    pub snapshot_json: Option<Vec<u8>>,
    /// Earlier attempts that could not reach the relay.
    pub failures: Vec<DeliveryFailure>,
}

/// One event of a request's life, as shown to technicians (and, for the
/// ones meant for the employee, to them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestEvent {
    /// When, Unix seconds.
    pub at: i64,
    /// Who (`employee`, a technician's name, `relay`).
    pub author: String,
    /// `created`, `claimed`, `reply`, `resolved`, `reopened`,
    /// `session_linked`, `session`.
    pub kind: String,
    /// The text (a reply, a note, a session's summary).
    pub text: String,
}

/// One request as the employee's agent sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmployeeRequest {
    /// The agent's id for it.
    pub client_id: String,
    /// The relay's number for it.
    pub number: u64,
    /// Its status.
    pub status: String,
    /// The technician handling it.
    pub assignee: Option<String>,
    /// Replies and status changes meant for the employee, oldest first.
    pub events: Vec<RequestEvent>,
}

/// One request in `deskside requests list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestSummary {
    /// The relay's number.
    pub number: u64,
    /// The device.
    pub device: DeviceSummary,
    /// `new`, `claimed`, `waiting`, `resolved`, `closed`, `reopened`.
    pub status: String,
    /// 1 (critical) to 5 (planning).
    pub priority: u8,
    /// The employee's summary.
    pub summary: String,
    /// The verdict's one-line summary, when a snapshot came.
    pub verdict_line: Option<String>,
    /// The technician handling it.
    pub assignee: Option<String>,
    /// Times, Unix seconds.
    pub created_at: i64,
    /// First technician action.
    pub first_response_at: Option<i64>,
    /// Last resolution.
    pub resolved_at: Option<i64>,
}

/// `deskside requests show`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestDetail {
    /// As listed.
    pub summary: RequestSummary,
    /// The answers.
    pub answers: Answers,
    /// The attached snapshot (JSON), if any.
    pub snapshot_json: Option<Vec<u8>>,
    /// Its verdict (JSON), judged by the relay with the organisation's
    /// thresholds when the request arrived.
    pub verdict_json: Option<Vec<u8>>,
    /// Attempts that could not reach the relay before it arrived.
    pub failures: Vec<DeliveryFailure>,
    /// Everything that happened, oldest first.
    pub events: Vec<RequestEvent>,
}

/// What a technician does to a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestAction {
    /// Takes it.
    Claim,
    /// Answers the employee (their agent shows it).
    Reply {
        /// The text.
        text: String,
    },
    /// Resolves it.
    Resolve {
        /// What was done.
        note: String,
    },
    /// Opens it again.
    Reopen,
    /// Links a session this technician opened; its end becomes a
    /// follow-up.
    LinkSession {
        /// The session.
        session_id: crate::SessionId,
    },
}

/// Urgency rank for the ITIL matrix: 1 high, 2 medium, 3 low.
pub fn urgency_rank(urgency: &str) -> Option<u8> {
    match urgency {
        "blocked" => Some(1),
        "slowed" => Some(2),
        "can_work" => Some(3),
        _ => None,
    }
}

/// Impact rank for the ITIL matrix: 1 high, 2 medium, 3 low.
pub fn impact_rank(impact: &str) -> Option<u8> {
    match impact {
        "many" => Some(1),
        "team" => Some(2),
        "me" => Some(3),
        _ => None,
    }
}

/// The ITIL priority, 1 (critical) to 5 (planning): urgency and impact
/// ranks (1 high … 3 low) added, minus one, then moved by `shift` (an
/// organisation's adjustment, clamped to the scale).
pub fn priority(urgency: u8, impact: u8, shift: i8) -> u8 {
    let base = i16::from(urgency.clamp(1, 3)) + i16::from(impact.clamp(1, 3)) - 1;
    (base + i16::from(shift)).clamp(1, 5) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_itil_matrix() {
        let p = |u: &str, i: &str| priority(urgency_rank(u).unwrap(), impact_rank(i).unwrap(), 0);
        assert_eq!(p("blocked", "many"), 1);
        assert_eq!(p("blocked", "me"), 3);
        assert_eq!(p("slowed", "team"), 3);
        assert_eq!(p("can_work", "me"), 5);
        assert_eq!(p("slowed", "me"), 4);
        assert_eq!(priority(1, 1, -3), 1);
        assert_eq!(priority(3, 3, 2), 5);
        assert_eq!(priority(1, 3, 1), 4);
        assert_eq!(urgency_rank("urgent"), None);
        assert_eq!(impact_rank(""), None);
    }
}
