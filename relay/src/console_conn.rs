//! A technician's console connection: token authentication, then requests,
//! each checked against the token's role before anything is done and
//! dispatched to its group's handler in [`crate::console`].

use std::sync::Arc;
use std::time::Duration;

use deskside_net::tunnel::INNER_IDLE_TIMEOUT;
use deskside_net::{FramedRecv, FramedSend, NetError};
use deskside_protocol::console::{ConsoleRequest, ConsoleResponse, ConsoleToRelay, RelayToConsole};
use deskside_protocol::message::Nested;
use deskside_protocol::session::EndedBy;
use deskside_protocol::{Refusal, SessionId};
use tracing::Instrument as _;

use crate::clock::now_secs;
use crate::conn::{finish_and_wait, first_message, internal_error, require, End};
use crate::console::{
    audit, devices, diag, enroll, policy, session, session_admin, timeline, tokens, Caller,
    ConsoleLink,
};
use crate::secrets::hash_secret;
use crate::sessions::{spawn_forwarding, ConnectionId, Party};
use crate::shared::Shared;
use crate::store::{AccessEnd, EndOutcome, SessionParty, StoreError, Technician, SYSTEM_ACTOR};

/// Requests of one console handled at the same time.
const MAX_IN_FLIGHT: usize = 256;

/// Serves a console connection after the hello exchange.
pub async fn serve(
    shared: &Arc<Shared>,
    connection: &quinn::Connection,
    mut send: FramedSend,
    mut recv: FramedRecv,
) -> End {
    let token = match first_message::<ConsoleToRelay>(&mut recv).await {
        Ok(ConsoleToRelay::Authenticate { token }) => token,
        Ok(other) => {
            return End::Violation(format!(
                "expected Authenticate first, got {}",
                crate::secrets::message_kind(&other)
            ))
        }
        Err(end) => return end,
    };
    let hash = hash_secret(&token);
    let now = now_secs();
    let technician = match shared
        .store_as(crate::metrics::StoreOp::TechnicianAuth, move |store| {
            let tech = store.authenticate_technician(&hash, now)?;
            tech.map(|t| store.organisation_name(t.org).map(|org| (t, org)))
                .transpose()
        })
        .await
    {
        Ok(Ok(Some(found))) => Ok(found),
        Ok(Ok(None)) => Err(Refusal::BadTechnicianToken),
        Ok(Err(e)) => Err(internal_error(&e)),
        Err(refusal) => Err(refusal),
    };
    let (technician, organisation) = match technician {
        Ok(found) => found,
        Err(refusal) => {
            if let Err(e) = send
                .send(&RelayToConsole::Refused(Nested(refusal.clone())))
                .await
            {
                return e.into();
            }
            finish_and_wait(&mut send).await;
            return End::Refused(refusal);
        }
    };
    let _open =
        crate::conn::authenticated_as(shared, connection, crate::metrics::ConnKind::Console);
    tracing::Span::current().record("technician", tracing::field::display(&technician.name));
    tracing::debug!(role = %technician.role, "technician authenticated");
    // A technician's laptop changing networks moves this connection (QUIC
    // migration), as an agent's does; logged like theirs.
    let _path_watch = crate::roaming::watch(connection);
    // From here on a revocation closes this connection at once, and its
    // expiry is watched below.
    shared.consoles.register(technician.id, connection);
    let expires_at = match crate::access::expiry(shared, technician.id).await {
        Ok(expires_at) => expires_at,
        Err(cause) => {
            // Revoked or expired between the login and now.
            crate::access::end_access(shared, technician.id, cause, SYSTEM_ACTOR).await;
            return End::Closed;
        }
    };
    let expired = crate::access::until(expires_at);
    tokio::pin!(expired);
    // Session packets of the sessions this connection opens travel on it.
    let (packets, forwarding) = spawn_forwarding(
        Arc::clone(&shared.router),
        Party::Console(connection.stable_id()),
        connection,
    );
    let link = Arc::new(ConsoleLink {
        connection: connection.stable_id(),
        packets,
        organisation: organisation.clone(),
        session_certificate: std::sync::Mutex::new(None),
        access: crate::access::Access::new(technician.id, connection, expires_at, now_secs()),
    });
    // Requests run concurrently (a fleet diagnostic sends hundreds), up to a
    // bound; answers go out as they finish, matched by id.
    let mut in_flight = tokio::task::JoinSet::new();
    let result = async {
        send.send(&RelayToConsole::Authenticated {
            technician: technician.name.clone(),
            role: technician.role,
            organisation,
        })
        .await?;
        loop {
            tokio::select! {
                () = &mut expired => {
                    crate::access::end_access(shared, technician.id, AccessEnd::Expired, SYSTEM_ACTOR).await;
                    return Ok(End::Closed);
                }
                message = recv.recv::<ConsoleToRelay>(), if in_flight.len() < MAX_IN_FLIGHT => {
                    match message? {
                        None => return Ok(End::Closed),
                        Some(ConsoleToRelay::Request {
                            id,
                            request: Nested(request),
                        }) => {
                            let shared = Arc::clone(shared);
                            let technician = technician.clone();
                            let link = Arc::clone(&link);
                            in_flight.spawn(async move {
                                let result = handle(&shared, &technician, &link, request).await;
                                (id, result)
                            });
                        }
                        Some(ConsoleToRelay::Unknown { tag }) => {
                            tracing::debug!(tag, "ignoring a message from a newer console");
                        }
                        Some(ConsoleToRelay::Authenticate { .. }) => {
                            return Ok(End::Violation("authenticated twice".to_owned()));
                        }
                    }
                }
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    let Ok((id, result)) = done else {
                        // A handler panicked: its id is lost with it, so the
                        // console would wait forever; end the connection.
                        return Ok(End::Violation("a request handler failed; see the log".to_owned()));
                    };
                    let result = result.map(Nested).map_err(Nested);
                    send.send(&RelayToConsole::Response { id, result }).await?;
                }
            }
        }
    }
    .await;
    // No handler may open a route after the cleanup below.
    in_flight.shutdown().await;
    shared.consoles.unregister(technician.id, connection);
    drop(forwarding);
    watch_orphaned_sessions(shared, &technician, connection.stable_id());
    result.unwrap_or_else(|e: NetError| e.into())
}

/// How long a session whose console is away waits for the technician's
/// next connection to resume it before the relay records its end as
/// `connection_lost`. Longer than the end-to-end connection's idle timeout:
/// past that the session inside is dead anyway, and its agent has reported
/// the end (which says who ended it, and wins if it comes first).
pub const RESUME_GRACE: Duration = Duration::from_secs(INNER_IDLE_TIMEOUT.as_secs() + 5);

/// Ends, after [`RESUME_GRACE`], each of `sessions` whose console has not
/// come back, on behalf of `party`, with `extra` in the audit row. Used
/// when a console connection goes away, and at start for the sessions the
/// relay's last stop cut.
pub async fn end_unresumed(
    shared: Arc<Shared>,
    sessions: Vec<SessionId>,
    party: SessionParty,
    actor: String,
    extra: serde_json::Map<String, serde_json::Value>,
) {
    if sessions.is_empty() {
        return;
    }
    tokio::select! {
        _ = tokio::time::sleep(RESUME_GRACE) => {}
        // The relay stops: the sessions stay open in the store, and its
        // next start sorts them (`Store::sort_interrupted_sessions`).
        _ = shared.tasks.stopping() => return,
    }
    let stale: Vec<SessionId> = sessions
        .into_iter()
        .filter(|session| shared.router.console_present(*session) == Some(false))
        .collect();
    if stale.is_empty() {
        return;
    }
    let now = now_secs();
    let result = shared
        .store(move |store| {
            let mut ended = Vec::new();
            for session in stale {
                if let EndOutcome::Ended(record) = store.end_session(
                    session,
                    party,
                    EndedBy::ConnectionLost,
                    &actor,
                    extra.clone(),
                    now,
                )? {
                    ended.push(record);
                }
            }
            Ok::<_, StoreError>(ended)
        })
        .await;
    match result {
        Ok(Ok(ended)) => {
            for record in ended {
                crate::session_follow_up::session_ended(
                    &shared,
                    &record,
                    "its console did not come back",
                );
            }
        }
        Ok(Err(e)) => {
            internal_error(&e);
        }
        Err(_) => {}
    }
}

/// Detaches a console connection that ended from its sessions' routes and
/// leaves them [`RESUME_GRACE`] to be resumed by a new connection.
fn watch_orphaned_sessions(
    shared: &Arc<Shared>,
    technician: &Technician,
    connection: ConnectionId,
) {
    let orphaned = shared.router.console_closed(connection);
    if orphaned.is_empty() {
        return;
    }
    let mut extra = serde_json::Map::new();
    extra.insert(
        "console_disconnected".to_owned(),
        serde_json::Value::Bool(true),
    );
    let shared = Arc::clone(shared);
    let party = SessionParty::Technician(technician.id);
    let actor = technician.audit_actor();
    let stopping = shared.tasks.stopping();
    let owner = Arc::clone(&shared);
    owner.tasks.spawn(
        async move {
            // Requests still waiting for the employee are withdrawn: no
            // dialog may stay open for a technician who is gone. Not at
            // once: an agent that could not ask anyone (no helper, an
            // uncertified key) closes the end-to-end connection before it
            // sends its answer, so a console that exits on that close
            // leaves a moment before the answer lands, and the audit must
            // record what happened, not a withdrawal.
            tokio::select! {
                _ = tokio::time::sleep(crate::withdraw::ANSWER_IN_FLIGHT_GRACE) => {}
                // The next start ends what is still waiting.
                _ = stopping => return,
            }
            let consented = crate::withdraw::withdraw_pending(
                &shared,
                orphaned,
                party,
                actor.clone(),
                crate::withdraw::CONSOLE_DISCONNECTED,
            )
            .await;
            for session in &consented {
                tracing::info!(session = %session, "the session's console went away; waiting for it to resume");
            }
            end_unresumed(shared, consented, party, actor, extra).await;
        }
        .in_current_span(),
    );
}

/// Runs one request for `technician`, role checked first, in the handler
/// of its group (`crate::console`).
async fn handle(
    shared: &Shared,
    technician: &Technician,
    link: &ConsoleLink,
    request: ConsoleRequest,
) -> Result<ConsoleResponse, Refusal> {
    require(technician.role, request.required_role())?;
    // The token may have been revoked or expired since the login.
    link.access.check(shared).await?;
    let org = technician.org;
    let caller = Caller {
        shared,
        technician,
        link,
        org,
        actor: technician.audit_actor(),
        now: now_secs(),
    };
    match request {
        ConsoleRequest::ListDevices => devices::list(caller).await,
        ConsoleRequest::ShowDevice { device } => devices::show(caller, device).await,
        ConsoleRequest::RevokeDevice { device } => devices::revoke(caller, device).await,
        ConsoleRequest::CreateEnrollToken {
            uses,
            expires_in_secs,
            group,
        } => enroll::create(caller, uses, expires_in_secs, group).await,
        ConsoleRequest::CreateTechnicianToken {
            name,
            role,
            expires_in_secs,
        } => tokens::create(caller, name, role, expires_in_secs).await,
        ConsoleRequest::ListTechnicianTokens => tokens::list(caller).await,
        ConsoleRequest::RevokeTechnicianToken { id } => tokens::revoke(caller, id).await,
        ConsoleRequest::ListEnrollTokens => enroll::list(caller).await,
        ConsoleRequest::RevokeEnrollToken { id } => enroll::revoke(caller, id).await,
        ConsoleRequest::ListSessions => session_admin::list(caller).await,
        ConsoleRequest::EndAnySession { session_id } => {
            session_admin::end(caller, session_id).await
        }
        ConsoleRequest::Diagnose { device, throughput } => {
            diag::collect(caller, device, throughput).await
        }
        ConsoleRequest::DiagnosticsHistory { device, limit } => {
            diag::history(caller, device, limit).await
        }
        ConsoleRequest::Timeline {
            device,
            since_ms,
            until_ms,
        } => timeline::device(caller, device, since_ms, until_ms).await,
        ConsoleRequest::TimelineFleet {
            group,
            since_ms,
            until_ms,
        } => timeline::fleet(caller, group, since_ms, until_ms).await,
        ConsoleRequest::ListRequests {
            status,
            mine,
            group,
        } => crate::requests::list(shared, technician, status, mine, group).await,
        ConsoleRequest::ShowRequest { number } => crate::requests::show(shared, org, number).await,
        ConsoleRequest::ActOnRequest { number, action } => {
            crate::requests::act(shared, technician, number, action).await
        }
        ConsoleRequest::RequestStats { since, group } => {
            crate::requests::stats(shared, org, since, group).await
        }
        ConsoleRequest::ShowPolicy => policy::show(caller).await,
        ConsoleRequest::SetPolicy { key, value } => policy::set(caller, key, value).await,
        ConsoleRequest::RegisterSessionKey { key } => session::register_key(caller, key).await,
        ConsoleRequest::PresentSessionCertificate { certificate } => {
            session::present_certificate(caller, certificate).await
        }
        ConsoleRequest::OpenSession {
            device,
            capabilities,
            reason,
        } => session::open(caller, device, capabilities, reason, None, None).await,
        ConsoleRequest::OpenSessionOnMonitor {
            device,
            capabilities,
            reason,
            monitor,
        } => session::open(caller, device, capabilities, reason, Some(monitor), None).await,
        ConsoleRequest::OpenLinkedSession {
            device,
            capabilities,
            reason,
            monitor,
            request,
        } => session::open(caller, device, capabilities, reason, monitor, Some(request)).await,
        ConsoleRequest::EndSession { session_id } => session::end(caller, session_id).await,
        ConsoleRequest::ResumeSession { session_id } => session::resume(caller, session_id).await,
        ConsoleRequest::AuditList { device, limit } => audit::list(caller, device, limit).await,
        ConsoleRequest::VerifyAudit { anchor_id } => {
            crate::audit_anchor::verify_for_console(shared, anchor_id).await
        }
        ConsoleRequest::Unknown { tag } => Err(Refusal::Invalid(format!(
            "this relay does not know request type {tag}; upgrade the relay"
        ))),
    }
}
