//! The follow-up a help request gets when a session linked to it ends
//! (`deskside session DEVICE --request ID`): who ran it (the event's
//! author), when it started, how long it lasted, what the employee
//! consented to, how it ended, and the verdict before and after.
//!
//! *Before* is the verdict line attached to the request, or else the
//! device's newest stored diagnostics from before the session was asked
//! for. *After* is a fresh quick diagnosis the relay asks the agent for
//! when the session ends (stored in the device's history like one of
//! `deskside diag`), so the follow-up is written even when the console
//! that ran the session is gone. The relay does it, not the console.
//!
//! The follow-up is a stored request event (kind `session`), so the
//! ticketing outbox delivers it like every other event. It never holds
//! screen content: only the session's record and the verdicts' lines.

use std::sync::Arc;
use std::time::Duration;

use deskside_diag::policy::Policy;
use deskside_protocol::session::Capabilities;
use deskside_protocol::SessionId;
use tokio::sync::oneshot;

use crate::clock::now_secs;
use crate::presence::AgentCommand;
use crate::shared::Shared;
use crate::store::{LinkedRequest, SessionRecord, Store, StoreError};

/// How long the relay waits for the agent's diagnosis after a session.
const DIAGNOSE_TIMEOUT: Duration = Duration::from_secs(45);

/// The verdict before the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Before {
    /// The line attached to the request.
    Attached(String),
    /// The device's newest stored diagnostics, received at this time.
    Stored {
        /// The verdict's line.
        line: String,
        /// When the relay received it (Unix seconds).
        at: i64,
    },
    /// Neither exists.
    None,
}

/// The verdict after the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum After {
    /// The line of the fresh diagnosis.
    Measured(String),
    /// Why there is none (for example "device offline").
    NotMeasured(String),
}

/// Everything a follow-up says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowUp {
    /// The session.
    pub session_id: SessionId,
    /// What the employee granted.
    pub granted: Capabilities,
    /// When the employee accepted (Unix seconds).
    pub started_at: i64,
    /// When it ended.
    pub ended_at: i64,
    /// Who or what ended it (`technician`, `employee`, `connection_lost`…).
    pub ended_by: String,
    /// The verdict before.
    pub before: Before,
    /// The verdict after.
    pub after: After,
}

impl FollowUp {
    /// The event's text (its author, the technician, is the "who").
    pub fn text(&self) -> String {
        let before = match &self.before {
            Before::Attached(line) => format!("{line} (attached to the request)"),
            Before::Stored { line, at } => format!("{line} (stored diagnostics of {})", time(*at)),
            Before::None => "not measured (no diagnostics attached or stored)".to_owned(),
        };
        let after = match &self.after {
            After::Measured(line) => format!("{line} (measured when the session ended)"),
            After::NotMeasured(why) => format!("not measured ({why})"),
        };
        format!(
            "session {} started {}: the employee granted {}; lasted {} s; ended by {}; verdict before: {before}; after: {after}",
            self.session_id,
            time(self.started_at),
            self.granted.label(),
            (self.ended_at - self.started_at).max(0),
            self.ended_by,
        )
    }
}

fn time(secs: i64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// The one step every way a session ends goes through once the store has
/// ended it (the technician's end, the agent's end, the console that never
/// came back, an administrator or a token that stopped granting access):
/// the relay forwards nothing more for it, the end is logged with `why`,
/// and a linked session that ran gets its follow-up ([`spawn`]). The
/// follow-up of one that never ran was written by the store in the same
/// transaction as the end.
pub fn session_ended(shared: &Shared, ended: &SessionRecord, why: &str) {
    let session = ended.id;
    shared.router.end(session);
    tracing::info!(
        session = %session,
        by = ended.ended_by.as_deref().unwrap_or("unknown"),
        "session ended: {why}"
    );
    spawn(shared, ended);
}

/// Called when the store ended `ended`: a session the employee accepted
/// that is linked to help requests gets its follow-up on each, in the
/// background (the diagnosis takes seconds). Anything else returns at once.
pub fn spawn(shared: &Shared, ended: &SessionRecord) {
    let (Some(granted), Some(started_at), Some(ended_at)) =
        (ended.granted, ended.consent_at, ended.ended_at)
    else {
        return;
    };
    let store = Arc::clone(&shared.store);
    let commands = shared.presence.commands(ended.device);
    let stopping = shared.tasks.stopping();
    let session = ended.clone();
    let ended_by = ended.ended_by.clone().unwrap_or_else(|| "unknown".into());
    shared.tasks.spawn(async move {
        let session_id = session.id;
        let linked = match blocking(&store, move |s| s.requests_of_session(session_id)).await {
            Some(linked) if !linked.is_empty() => linked,
            _ => return,
        };
        let technician = linked[0].technician.clone();
        let after = tokio::select! {
            after = diagnose(&store, &session, commands, technician) => after,
            () = stopping => After::NotMeasured("the relay stopped".into()),
        };
        for request in linked {
            let before = before(&store, &session, &request).await;
            let follow_up = FollowUp {
                session_id,
                granted,
                started_at,
                ended_at,
                ended_by: ended_by.clone(),
                before,
                after: after.clone(),
            };
            let text = follow_up.text();
            let LinkedRequest {
                org,
                number,
                technician,
                ..
            } = request;
            let now = now_secs();
            if blocking(&store, move |s| {
                s.add_session_follow_up(org, number, &technician, session_id, &text, now)
            })
            .await
            .is_some()
            {
                tracing::info!(request = number, session = %session_id, "session follow-up added to the help request");
            }
        }
    });
}

async fn before(store: &Arc<Store>, session: &SessionRecord, request: &LinkedRequest) -> Before {
    if let Some(line) = &request.verdict_line {
        return Before::Attached(line.clone());
    }
    let (org, device, at) = (session.org, session.device, session.requested_at);
    match blocking(store, move |s| s.diagnostics_before(org, device, at)).await {
        Some(Some((at, verdict))) => {
            match serde_json::from_str::<deskside_diag::verdict::Verdict>(&verdict) {
                Ok(verdict) => Before::Stored {
                    line: crate::diagnostics::line_of(&verdict),
                    at,
                },
                Err(e) => {
                    tracing::warn!("a stored verdict is unreadable: {e}");
                    Before::None
                }
            }
        }
        _ => Before::None,
    }
}

/// Asks the agent for a quick diagnosis, judges it with the organisation's
/// policy and stores it like `deskside diag` does.
async fn diagnose(
    store: &Arc<Store>,
    session: &SessionRecord,
    commands: Option<crate::presence::CommandSender>,
    technician: String,
) -> After {
    let offline = || After::NotMeasured("device offline".into());
    let Some(commands) = commands else {
        return offline();
    };
    let (reply, answer) = oneshot::channel();
    let command = AgentCommand::CollectDiagnostics {
        throughput: false,
        technician,
        reply,
    };
    if commands.send(command).await.is_err() {
        return offline();
    }
    let snapshot = match tokio::time::timeout(DIAGNOSE_TIMEOUT, answer).await {
        Ok(Ok(Ok(snapshot))) => snapshot,
        Ok(Ok(Err(reason))) => {
            return After::NotMeasured(format!("the agent did not collect diagnostics: {reason}"))
        }
        Ok(Err(_)) => return offline(),
        Err(_) => {
            return After::NotMeasured(format!(
                "the agent did not answer within {} s",
                DIAGNOSE_TIMEOUT.as_secs()
            ))
        }
    };
    let org = session.org;
    let Some(settings) = blocking(store, move |s| s.organisation_settings(org)).await else {
        return After::NotMeasured("the relay could not read the policy".into());
    };
    let policy = Policy::from_json(settings.as_bytes());
    let snapshot = if policy.store_full_ip_addresses {
        snapshot
    } else {
        crate::ip_privacy::truncate_snapshot(snapshot)
    };
    let judged = match crate::diagnostics::judge(snapshot, &policy.thresholds()) {
        Ok(judged) => judged,
        Err(e) => return After::NotMeasured(format!("the agent sent an unreadable snapshot: {e}")),
    };
    let (device, retention, now) = (session.device, policy.diagnostics_retention, now_secs());
    let line = judged.line.clone();
    // Kept in the device's history, like a diagnosis a technician asked for.
    let _ = blocking(store, move |s| {
        s.insert_diagnostics(
            org,
            device,
            crate::store::SYSTEM_ACTOR,
            &judged.snapshot,
            &judged.verdict,
            judged.primary.as_deref(),
            retention,
            now,
        )
    })
    .await;
    After::Measured(line)
}

/// Runs `op` on the store off the async threads; `None` (logged) when it
/// failed.
async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    op: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Option<T> {
    let store = Arc::clone(store);
    match tokio::task::spawn_blocking(move || op(&store)).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(e)) => {
            crate::conn::internal_error(&e);
            None
        }
        Err(e) => {
            tracing::warn!("a store task for a session follow-up failed: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follow_up(before: Before, after: After) -> FollowUp {
        FollowUp {
            session_id: SessionId(0xab),
            granted: Capabilities::VIEW,
            started_at: 1_796_000_000,
            ended_at: 1_796_000_183,
            ended_by: "technician".into(),
            before,
            after,
        }
    }

    #[test]
    fn the_text_says_when_how_long_what_was_granted_and_the_verdict_before_and_after() {
        let text = follow_up(
            Before::Attached("home_network: weak Wi-Fi".into()),
            After::Measured("no problem found".into()),
        )
        .text();
        assert_eq!(
            text,
            "session 00000000000000ab started 2026-11-30T00:53:20Z: the employee granted view; \
             lasted 183 s; ended by technician; verdict before: home_network: weak Wi-Fi \
             (attached to the request); after: no problem found (measured when the session ended)"
        );
    }

    #[test]
    fn a_missing_verdict_says_why_on_either_side() {
        let text = follow_up(
            Before::Stored {
                line: "isp: packet loss".into(),
                at: 1_795_999_000,
            },
            After::NotMeasured("device offline".into()),
        )
        .text();
        assert!(
            text.ends_with(
                "verdict before: isp: packet loss (stored diagnostics of 2026-11-30T00:36:40Z); \
                 after: not measured (device offline)"
            ),
            "{text}"
        );
        let text = follow_up(Before::None, After::NotMeasured("device offline".into())).text();
        assert!(
            text.contains("verdict before: not measured (no diagnostics attached or stored)"),
            "{text}"
        );
    }
}
