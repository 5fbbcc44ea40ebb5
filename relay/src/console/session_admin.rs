//! Administrators' session requests (`deskside session list|end`): every
//! open session of the organisation.
//!
//! Each handler runs after the dispatch in `console_conn` checked the
//! caller's role and token; it never reads the connection itself.

use deskside_protocol::console::ConsoleResponse;
use deskside_protocol::{Refusal, SessionId};

use super::{held_elsewhere, run, Caller};

/// The organisation's open sessions.
pub async fn list(caller: Caller<'_>) -> Result<ConsoleResponse, Refusal> {
    let Caller { shared, org, .. } = caller;
    Ok(ConsoleResponse::Sessions(
        run(shared, move |s| s.list_open_sessions(org)).await?,
    ))
}

/// Ends any open session of the organisation (an administrator's stop).
pub async fn end(caller: Caller<'_>, session_id: SessionId) -> Result<ConsoleResponse, Refusal> {
    let Caller {
        shared,
        org,
        actor,
        now,
        ..
    } = caller;
    // The relay holding the device stops the session on the employee's
    // screen: when that is another relay, the console asks it instead
    // (before anything is ended here).
    if shared.directory.is_shared() {
        let record = run(shared, move |s| s.session(session_id)).await?;
        if let Some(record) = record.filter(|r| r.org == org && r.ended_at.is_none()) {
            let named = format!("the device of session {session_id}");
            if let Some(elsewhere) = held_elsewhere::refusal(shared, record.device, &named).await? {
                return Err(elsewhere);
            }
        }
    }
    let ended = run(shared, move |s| {
        s.end_session_as_admin(org, session_id, &actor, now)
    })
    .await?
    .ok_or_else(|| {
        Refusal::NotFound(format!(
            "no open session {session_id}: list them with `deskside session list`"
        ))
    })?;
    crate::access::stop(shared, &ended, "an administrator ended it").await;
    Ok(ConsoleResponse::Done)
}
