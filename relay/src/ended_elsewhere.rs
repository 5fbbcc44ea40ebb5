//! Sessions this relay routes that another relay ended in the shared store.
//!
//! A session runs through the relay holding its device (consoles are sent
//! there, see `console/held_elsewhere.rs`), but the store it is recorded in
//! is shared: another relay may end it there — the technician's token
//! revoked or expired through that relay, or a session ended by a path
//! that does not redirect. That relay cannot reach this relay's route or
//! agent, so each relay watches: a task it owns looks up the sessions it
//! routes every third of the directory lease and, for each one the store
//! says has ended, closes the route (nothing more is forwarded) and tells
//! the agent (`SessionWithdrawn`: the dialog closes, or the running session
//! stops on the employee's screen). The relay that ended it wrote the end
//! row and its follow-up; nothing is written here.
//!
//! Only with a shared store: with SQLite every end goes through this relay.

use std::sync::Arc;
use std::time::Duration;

use deskside_protocol::SessionId;

use crate::presence::AgentCommand;
use crate::shared::Shared;
use crate::store::SessionRecord;

/// Watches until the relay stops (see the module docs). Owned by the
/// relay's tasks.
pub async fn run(shared: Arc<Shared>) {
    let period = Duration::from_secs(
        u64::try_from(shared.directory.lease_secs() / 3)
            .unwrap_or(1)
            .max(1),
    );
    loop {
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = shared.tasks.stopping() => return,
        }
        let routed = shared.router.routed_sessions();
        if routed.is_empty() {
            continue;
        }
        let ended = shared
            .store(move |store| {
                let mut ended = Vec::new();
                for id in routed {
                    if let Some(record) = store.session(id)? {
                        if record.ended_at.is_some() {
                            ended.push(record);
                        }
                    }
                }
                Ok::<_, crate::store::StoreError>(ended)
            })
            .await;
        match ended {
            Ok(Ok(ended)) => {
                for record in ended {
                    stop(&shared, &record).await;
                }
            }
            Ok(Err(e)) => tracing::warn!("cannot read the sessions this relay routes: {e}"),
            Err(_) => {}
        }
    }
}

/// Closes the route of `record` (ended in the store) if it is still open
/// here, and tells its agent.
async fn stop(shared: &Shared, record: &SessionRecord) {
    let session: SessionId = record.id;
    // This relay's own ends close the route right after the store write:
    // only a route still open means another relay ended it.
    if !shared.router.end(session) {
        return;
    }
    tracing::info!(
        session = %session,
        by = record.ended_by.as_deref().unwrap_or("unknown"),
        "session ended through another relay: route closed"
    );
    if let Some(commands) = shared.presence.commands(record.device) {
        let command = AgentCommand::WithdrawSession {
            session_id: session,
        };
        if commands.send(command).await.is_err() {
            tracing::debug!(device = %record.device, "the device went offline; the session ends with its connection");
        }
    }
}
