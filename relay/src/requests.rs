//! Help requests: checked and judged when an agent sends one, listed and
//! acted on by technicians, and pushed back to the employee's agent when a
//! technician acts (replies reach the employee that way).
//!
//! A request never carries screen content: it holds the employee's
//! answers, the quick check's snapshot (public addresses truncated unless
//! the policy asks otherwise, like stored diagnostics) and the verdict the
//! relay computed from it.

use deskside_protocol::console::ConsoleResponse;
use deskside_protocol::request::{
    impact_rank, priority, urgency_rank, EmployeeRequest, HelpRequest, RequestAction,
    RequestDetail, RequestEvent, RequestSummary,
};
use deskside_protocol::{DeviceId, Refusal};

use crate::clock::now_secs;
use crate::conn::check_text;
use crate::presence::AgentCommand;
use crate::shared::Shared;
use crate::store::{
    DeviceRecord, LinkedSession, NewRequest, OrgId, RequestFilter, RequestRow, StoreError,
    Technician,
};

/// Longest free text (summary, reply, note), bytes.
pub const MAX_TEXT: usize = 4000;
/// Most failed deliveries kept with a request.
const MAX_FAILURES: usize = 20;
/// The statuses a request can have.
pub const STATUSES: [&str; 6] = [
    "new", "claimed", "waiting", "resolved", "closed", "reopened",
];
/// Applications the form offers.
const APPS: [&str; 6] = ["video", "vpn", "mail", "browser", "printer", "other"];

/// Checks what an agent sent; the refusal says which field is wrong.
pub fn check(request: &HelpRequest) -> Result<(), Refusal> {
    let id = &request.client_id;
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Refusal::Invalid(
            "the help request's id must be 1 to 64 letters or digits".into(),
        ));
    }
    let a = &request.answers;
    check_text("summary", &a.summary, MAX_TEXT)?;
    if a.summary.trim().is_empty() {
        return Err(Refusal::Invalid("the help request has no summary".into()));
    }
    check_text("since", &a.since, 200)?;
    check_text("contact", &a.contact, 500)?;
    check_text("lang", &a.lang, 8)?;
    if !["ongoing", "intermittent", "over", ""].contains(&a.pattern.as_str()) {
        return Err(Refusal::Invalid(format!(
            "unknown pattern {:?}: ongoing, intermittent or over",
            a.pattern
        )));
    }
    if a.apps.len() > APPS.len() || a.apps.iter().any(|app| !APPS.contains(&app.as_str())) {
        return Err(Refusal::Invalid(format!(
            "unknown application in {:?}: {}",
            a.apps,
            APPS.join(", ")
        )));
    }
    if urgency_rank(&a.urgency).is_none() {
        return Err(Refusal::Invalid(format!(
            "unknown urgency {:?}: can_work, slowed or blocked",
            a.urgency
        )));
    }
    if impact_rank(&a.impact).is_none() {
        return Err(Refusal::Invalid(format!(
            "unknown impact {:?}: me, team or many",
            a.impact
        )));
    }
    if request.failures.len() > MAX_FAILURES * 5 {
        return Err(Refusal::Invalid("too many failed deliveries listed".into()));
    }
    for failure in &request.failures {
        check_text("failure", &failure.error, 500)?;
    }
    Ok(())
}

/// Stores a request of `device` (checked, judged) and returns its number.
/// A resend of a stored request returns the stored number.
pub async fn receive(
    shared: &Shared,
    device: DeviceId,
    org: OrgId,
    request: HelpRequest,
) -> Result<u64, Refusal> {
    check(&request)?;
    let policy = crate::policy::load(shared, org).await?;
    let (snapshot, verdict, line) = match request.snapshot_json {
        Some(json) => {
            let json = if policy.store_full_ip_addresses {
                json
            } else {
                crate::ip_privacy::truncate_snapshot(json)
            };
            let judged = crate::diagnostics::judge(json, &policy.thresholds()).map_err(|e| {
                Refusal::Invalid(format!("the help request's snapshot is unreadable: {e}"))
            })?;
            (
                Some(judged.snapshot),
                Some(judged.verdict),
                Some(judged.line),
            )
        }
        None => (None, None, None),
    };
    let a = &request.answers;
    let urgency = urgency_rank(&a.urgency).unwrap_or(3);
    let impact = impact_rank(&a.impact).unwrap_or(3);
    let mut failures = request.failures;
    // The newest attempts tell the most.
    if failures.len() > MAX_FAILURES {
        failures.drain(..failures.len() - MAX_FAILURES);
    }
    let new = NewRequest {
        client_id: request.client_id,
        answers: request.answers,
        snapshot,
        verdict,
        verdict_line: line,
        failures,
        priority: priority(urgency, impact, policy.request_priority_shift),
    };
    let now = now_secs();
    let (number, fresh) = shared
        .store(move |s| s.insert_request(org, device, &new, now))
        .await?
        .map_err(|e| crate::conn::internal_error(&e))??;
    if fresh {
        tracing::info!(request = number, "help request received");
    } else {
        tracing::debug!(request = number, "help request sent again; already stored");
    }
    Ok(number)
}

/// The device's requests as its employee sees them.
pub async fn employee_state(
    shared: &Shared,
    device: DeviceId,
) -> Result<Vec<EmployeeRequest>, Refusal> {
    run(shared, move |s| s.employee_requests(device)).await
}

/// `ListRequests`.
pub async fn list(
    shared: &Shared,
    technician: &Technician,
    status: Option<String>,
    mine: bool,
    group: Option<String>,
) -> Result<ConsoleResponse, Refusal> {
    if let Some(status) = &status {
        if !STATUSES.contains(&status.as_str()) {
            return Err(Refusal::Invalid(format!(
                "unknown status {status:?}: {}",
                STATUSES.join(", ")
            )));
        }
    }
    if let Some(group) = &group {
        check_text("group", group, 64)?;
    }
    let org = technician.org;
    let filter = RequestFilter {
        status,
        assignee: mine.then_some(technician.id),
        group,
    };
    // One trip to the store for the requests and their devices.
    let listed = run(shared, move |s| {
        s.list_requests(org, &filter)?
            .into_iter()
            .map(|row| {
                Ok(s.find_device(org, &row.device.to_string())?
                    .map(|d| (row, d)))
            })
            .collect::<Result<Result<Vec<_>, Refusal>, StoreError>>()
    })
    .await??;
    Ok(ConsoleResponse::Requests(
        listed
            .iter()
            .map(|(row, device)| summary(shared, row, device))
            .collect(),
    ))
}

/// `ShowRequest`.
pub async fn show(shared: &Shared, org: OrgId, number: u64) -> Result<ConsoleResponse, Refusal> {
    let found = run(shared, move |s| {
        let Some((row, events, sessions)) = s.request(org, number)? else {
            return Ok(Err(Refusal::NotFound(format!("help request {number}"))));
        };
        let tickets = s.request_tickets(number)?;
        Ok(s.find_device(org, &row.device.to_string())?
            .map(|device| (row, device, events, sessions, tickets)))
    })
    .await??;
    let (row, device, mut events, sessions, tickets) = found;
    // A session whose follow-up is stored shows that one only: `session`
    // (it ran; with the verdicts) or `session_not_held` (it never ran; who
    // asked, when, why). The others (still open, or from before those
    // events existed) are told from the session's record.
    let stored: Vec<String> = events
        .iter()
        .filter(|e| e.kind == "session" || e.kind == "session_not_held")
        .map(|e| e.text.clone())
        .collect();
    events.extend(
        sessions
            .iter()
            .filter(|s| {
                let id = s.session_id;
                !stored
                    .iter()
                    .any(|text| text.starts_with(&format!("session {id} ")))
            })
            .map(session_follow_up),
    );
    // Tickets made and deliveries failing, from the ticketing outbox.
    events.extend(crate::tickets::request_events(&tickets));
    events.sort_by_key(|e| e.at);
    let summary = summary(shared, &row, &device);
    Ok(ConsoleResponse::Request(Box::new(RequestDetail {
        summary,
        answers: row.answers,
        snapshot_json: row.snapshot.map(String::into_bytes),
        verdict_json: row.verdict.map(String::into_bytes),
        failures: row.failures,
        events,
    })))
}

/// `ActOnRequest`: changes the request, then tells the device's agent.
pub async fn act(
    shared: &Shared,
    technician: &Technician,
    number: u64,
    action: RequestAction,
) -> Result<ConsoleResponse, Refusal> {
    if let RequestAction::Reply { text } | RequestAction::Resolve { note: text } = &action {
        check_text("text", text, MAX_TEXT)?;
    }
    if let RequestAction::Reply { text } = &action {
        if text.trim().is_empty() {
            return Err(Refusal::Invalid("the reply is empty".into()));
        }
    }
    let org = technician.org;
    // The employee's agent hears of the change from the relay holding it:
    // when that is another relay, the console asks it instead (before
    // anything changes here, so the action is done once).
    let device = if shared.directory.is_shared() {
        run(shared, move |s| s.request(org, number))
            .await?
            .map(|(row, _, _)| row.device)
    } else {
        None
    };
    if let Some(device) = device {
        let named = format!("the device of help request {number}");
        if let Some(elsewhere) =
            crate::console::held_elsewhere::refusal(shared, device, &named).await?
        {
            return Err(elsewhere);
        }
    }
    let who = technician.clone();
    let now = now_secs();
    let row = run(shared, move |s| {
        s.act_on_request(org, number, &who, &action, now)
    })
    .await??;
    notify_device(shared, row.device).await;
    show(shared, org, number).await
}

/// Sends the device's requests to its agent, if it is connected.
pub async fn notify_device(shared: &Shared, device: DeviceId) {
    let Some(commands) = shared.presence.commands(device) else {
        return;
    };
    match employee_state(shared, device).await {
        Ok(requests) => {
            if commands
                .send(AgentCommand::HelpRequests { requests })
                .await
                .is_err()
            {
                tracing::debug!(device = %device, "the device went offline before its requests were sent");
            }
        }
        Err(refusal) => {
            tracing::warn!(device = %device, "cannot read the device's requests: {refusal}")
        }
    }
}

/// A linked session as an event: who, when, what the employee consented
/// to, how long. Only the session's record: never its content.
fn session_follow_up(session: &LinkedSession) -> RequestEvent {
    let granted = session
        .granted
        .as_deref()
        .and_then(|g| serde_json::from_str::<deskside_protocol::session::Capabilities>(g).ok())
        .map(|c| c.label().to_owned());
    // The store keeps the bare number; the text spells it as everywhere.
    let session_id = session.session_id;
    let text = match (&session.consent_outcome, &granted, session.ended_at) {
        (_, Some(granted), Some(end)) => format!(
            "session {session_id} by {}: the employee granted {granted}; lasted {} s; ended by {}",
            session.technician,
            (end - session.requested_at).max(0),
            session.ended_by.as_deref().unwrap_or("unknown")
        ),
        (_, Some(granted), None) => format!(
            "session {session_id} by {}: the employee granted {granted}; still running",
            session.technician
        ),
        (Some(outcome), None, _) => format!(
            "session {session_id} by {}: not granted ({outcome})",
            session.technician
        ),
        (None, None, _) => format!(
            "session {session_id} by {}: waiting for the employee's answer",
            session.technician
        ),
    };
    RequestEvent {
        at: session.ended_at.unwrap_or(session.requested_at),
        author: session.technician.clone(),
        kind: "session".into(),
        text,
    }
}

fn summary(shared: &Shared, row: &RequestRow, device: &DeviceRecord) -> RequestSummary {
    RequestSummary {
        number: row.number,
        device: device.summary(shared.presence.is_online(row.device)),
        status: row.status.clone(),
        priority: row.priority,
        summary: row.answers.summary.clone(),
        verdict_line: row.verdict_line.clone(),
        assignee: row.assignee.clone(),
        created_at: row.created_at,
        first_response_at: row.first_response_at,
        resolved_at: row.resolved_at,
    }
}

/// `RequestStats`: statistics of the requests created since `since`.
pub async fn stats(
    shared: &Shared,
    org: OrgId,
    since: i64,
    group: Option<String>,
) -> Result<ConsoleResponse, Refusal> {
    if let Some(group) = &group {
        check_text("group", group, 64)?;
    }
    let stats = run(shared, move |s| {
        s.request_stats(org, since, group.as_deref())
    })
    .await?;
    Ok(ConsoleResponse::RequestStats(Box::new(stats)))
}

async fn run<T: Send + 'static>(
    shared: &Shared,
    op: impl FnOnce(&crate::store::Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Refusal> {
    shared
        .store(op)
        .await?
        .map_err(|e| crate::conn::internal_error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use deskside_protocol::request::Answers;

    fn request() -> HelpRequest {
        HelpRequest {
            client_id: "0123abcd".into(),
            created_ms: 0,
            answers: Answers {
                summary: "calls freeze".into(),
                since: "this morning".into(),
                pattern: "intermittent".into(),
                apps: vec!["video".into()],
                urgency: "blocked".into(),
                impact: "me".into(),
                contact: "chat".into(),
                lang: "en".into(),
            },
            snapshot_json: None,
            failures: vec![],
        }
    }

    #[test]
    fn bad_answers_are_refused_with_the_field() {
        assert!(check(&request()).is_ok());
        let mut r = request();
        r.answers.urgency = "asap".into();
        assert!(check(&r).unwrap_err().to_string().contains("urgency"));
        let mut r = request();
        r.answers.apps = vec!["games".into()];
        assert!(check(&r).is_err());
        let mut r = request();
        r.client_id = "../x".into();
        assert!(check(&r).is_err());
        let mut r = request();
        r.answers.summary = "  ".into();
        assert!(check(&r).is_err());
    }
}
