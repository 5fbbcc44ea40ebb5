//! Session requests the technician gave up on before the employee answered.
//!
//! A console that goes away (Ctrl-C, crash, lost network) while the consent
//! dialog is open withdraws its pending requests at once: the store closes
//! them as `session.withdrawn` (never as a session that ran), the router
//! forgets their routes, and each agent is told to close its dialog. An
//! answer the employee gives afterwards finds the request already decided,
//! so accepting it starts nothing. Consented sessions are not touched here:
//! they wait for their console to resume.

use crate::clock::now_secs;
use crate::conn::internal_error;
use crate::presence::AgentCommand;
use crate::shared::Shared;
use deskside_protocol::SessionId;

use crate::store::{SessionParty, StoreError, WithdrawOutcome};

/// How long the relay waits, after a console went away, for an answer the
/// agent already sent; a request still undecided then is withdrawn. Short,
/// because the employee's dialog stays open meanwhile.
pub const ANSWER_IN_FLIGHT_GRACE: std::time::Duration = std::time::Duration::from_millis(750);

/// Why a request was withdrawn, as written in its audit row.
pub const CONSOLE_DISCONNECTED: &str = "console_disconnected";

/// Withdraws those of `sessions` still waiting for the employee's answer,
/// on behalf of `party` (audit actor `actor`), and returns the others
/// (consented sessions, which may be resumed).
pub async fn withdraw_pending(
    shared: &Shared,
    sessions: Vec<SessionId>,
    party: SessionParty,
    actor: String,
    reason: &'static str,
) -> Vec<SessionId> {
    if sessions.is_empty() {
        return sessions;
    }
    let now = now_secs();
    let asked = sessions.clone();
    let result = shared
        .store(move |store| {
            let mut withdrawn = Vec::new();
            for session in asked {
                if let WithdrawOutcome::Withdrawn(record) =
                    store.withdraw_session(session, party, &actor, reason, now)?
                {
                    withdrawn.push((session, record.device));
                }
            }
            Ok::<_, StoreError>(withdrawn)
        })
        .await;
    let withdrawn = match result {
        Ok(Ok(withdrawn)) => withdrawn,
        Ok(Err(e)) => {
            internal_error(&e);
            return sessions;
        }
        Err(_) => return sessions,
    };
    for (session, device) in &withdrawn {
        shared.router.end(*session);
        tracing::info!(session = %session, %device, reason, "session request withdrawn before the employee answered");
        if let Some(commands) = shared.presence.commands(*device) {
            let command = AgentCommand::WithdrawSession {
                session_id: *session,
            };
            if commands.send(command).await.is_err() {
                tracing::debug!(%device, "the device went offline; its dialog closes with its connection");
            }
        }
    }
    sessions
        .into_iter()
        .filter(|session| !withdrawn.iter().any(|(s, _)| s == session))
        .collect()
}
