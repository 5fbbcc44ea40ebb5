//! A technician's console connection: token authentication, then requests,
//! each checked against the token's role before anything is done.

use std::sync::Arc;
use std::time::Duration;

use deskside_net::tunnel::{PacketSender, INNER_IDLE_TIMEOUT};
use deskside_net::{key_fingerprint, FramedRecv, FramedSend, NetError};
use deskside_protocol::agent::SessionRequest;
use deskside_protocol::certificate::MAX_CERTIFICATE_LEN;
use deskside_protocol::console::{
    AuditEntry, ConsoleRequest, ConsoleResponse, ConsoleToRelay, IssuedEnrollToken,
    IssuedTechnicianToken, PolicySetOutcome, RelayToConsole, SessionOpened, StoredDiagnostics,
};
use deskside_protocol::message::Nested;
use deskside_protocol::session::{Capabilities, EndedBy};
use deskside_protocol::token::{EnrollToken, LoginString};
use deskside_protocol::Refusal;
use tracing::Instrument as _;

use crate::clock::now_secs;
use crate::conn::{
    check_text, finish_and_wait, first_message, internal_error, require, End, CLOSE_REVOKED,
};
use crate::presence::AgentCommand;
use crate::secrets::{hash_secret, new_enroll_secret, new_technician_token, random_bytes};
use crate::sessions::{spawn_forwarding, ConnectionId, Party};
use crate::shared::Shared;
use crate::store::{
    session_text, AccessEnd, EndOutcome, NewSession, SessionParty, Store, StoreError, Technician,
    SYSTEM_ACTOR,
};

/// Requests of one console handled at the same time.
const MAX_IN_FLIGHT: usize = 256;

/// Longest wait for an agent's snapshot: collection plus a throughput test
/// take about 4 s; slow links and busy machines get ample slack.
const DIAGNOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(45);
/// Longest session reason, in characters: it is shown in the consent dialog.
const MAX_REASON_CHARS: usize = 500;
/// Most audit rows one `AuditList` returns.
const MAX_AUDIT_ROWS: usize = 10_000;

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

/// What request handlers know about their console connection.
#[derive(Debug)]
struct ConsoleLink {
    /// The connection's id in the router.
    connection: ConnectionId,
    /// Where the router sends this console's session packets.
    packets: PacketSender,
    /// The technician's organisation, as shown to employees.
    organisation: String,
    /// The session key certificate this console presented
    /// (`PresentSessionCertificate`), forwarded with its session requests.
    /// The relay cannot check or make one: it has no organisation key.
    session_certificate: std::sync::Mutex<Option<Vec<u8>>>,
    /// The token's state, checked before every request.
    access: crate::access::Access,
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
    sessions: Vec<u64>,
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
    let stale: Vec<u64> = sessions
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
                shared.router.end(record.id);
                tracing::info!(session = %session_text(record.id), "session ended: its console did not come back");
                crate::session_follow_up::spawn(&shared, &record);
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
                tracing::info!(session = %session_text(*session), "the session's console went away; waiting for it to resume");
            }
            end_unresumed(shared, consented, party, actor, extra).await;
        }
        .in_current_span(),
    );
}

/// Runs one request for `technician`, role checked first.
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
    let actor = technician.audit_actor();
    let now = now_secs();
    match request {
        ConsoleRequest::ListDevices => {
            let devices = run(shared, move |s| s.list_devices(org)).await?;
            Ok(ConsoleResponse::Devices(
                devices
                    .iter()
                    .map(|d| d.summary(shared.presence.is_online(d.id)))
                    .collect(),
            ))
        }
        ConsoleRequest::ShowDevice { device } => {
            check_text("device", &device, 256)?;
            let record = run(shared, move |s| s.find_device(org, &device)).await??;
            Ok(ConsoleResponse::Device(
                record.summary(shared.presence.is_online(record.id)),
            ))
        }
        ConsoleRequest::RevokeDevice { device } => {
            check_text("device", &device, 256)?;
            let record = run(shared, move |s| s.find_device(org, &device)).await??;
            let id = record.id;
            let revoked = run(shared, move |s| s.revoke_device(org, id, &actor, now))
                .await?
                .ok_or_else(|| Refusal::NotFound(format!("device {id}")))?;
            shared.presence.kick(id, CLOSE_REVOKED, "device revoked");
            tracing::info!(device = %id, "device revoked");
            Ok(ConsoleResponse::DeviceRevoked(revoked.summary(false)))
        }
        ConsoleRequest::CreateEnrollToken {
            uses,
            expires_in_secs,
            group,
        } => {
            if let Some(group) = &group {
                if group.trim().is_empty() {
                    return Err(Refusal::Invalid("the group name is empty".to_owned()));
                }
                check_text("group", group, 64)?;
            }
            let limits = crate::enroll_limits::load(shared, org).await?;
            limits.check(uses, expires_in_secs)?;
            let secret =
                new_enroll_secret().map_err(|_| internal_error(&"random generator failed"))?;
            let hash = hash_secret(&secret);
            let expires_at = now.saturating_add(expires_in_secs as i64);
            let created_by = Some(technician.id);
            run(shared, move |s| {
                s.create_enroll_token_in_group(
                    org,
                    &hash,
                    uses,
                    expires_at,
                    created_by,
                    group.as_deref(),
                    &actor,
                    now,
                )
            })
            .await?;
            let token = EnrollToken {
                relay: shared.public_addr.clone(),
                fingerprint: shared.fingerprint,
                secret,
            };
            Ok(ConsoleResponse::EnrollToken(IssuedEnrollToken {
                token: token.encode(),
                uses,
                expires_at,
            }))
        }
        ConsoleRequest::CreateTechnicianToken {
            name,
            role,
            expires_in_secs,
        } => {
            if name.trim().is_empty() {
                return Err(Refusal::Invalid(
                    "the technician's name is empty".to_owned(),
                ));
            }
            check_text("name", &name, 100)?;
            let wanted = name.clone();
            if let Some(existing) = run(shared, move |s| {
                s.active_technician_named(org, &wanted, now)
            })
            .await?
            {
                return Err(Refusal::Invalid(format!(
                    "an active technician token is already named \"{}\" (token {}): employees see this name when a session is requested, so each name is used once; choose another name, or revoke token {} first",
                    existing.name, existing.id, existing.id
                )));
            }
            let token =
                new_technician_token().map_err(|_| internal_error(&"random generator failed"))?;
            let hash = hash_secret(&token);
            let expires_at =
                expires_in_secs.map(|secs| now.saturating_add(secs.min(i64::MAX as u64) as i64));
            let info = run(shared, move |s| {
                s.create_technician_token(org, &name, role, &hash, expires_at, &actor, now)
            })
            .await?;
            let login = LoginString {
                relay: shared.public_addr.clone(),
                fingerprint: shared.fingerprint,
                token: token.clone(),
            };
            Ok(ConsoleResponse::TechnicianToken(IssuedTechnicianToken {
                info,
                token,
                login: login.encode(),
            }))
        }
        ConsoleRequest::ListTechnicianTokens => Ok(ConsoleResponse::TechnicianTokens(
            run(shared, move |s| s.list_technician_tokens(org)).await?,
        )),
        ConsoleRequest::RevokeTechnicianToken { id } => {
            let audit_actor = actor.clone();
            let revoked = run(shared, move |s| {
                s.revoke_technician_token(org, id, &audit_actor, now)
            })
            .await??
            .ok_or_else(|| {
                Refusal::NotFound(format!(
                    "no technician token {id}: list them with `deskside tokens list`"
                ))
            })?;
            // Its open connections close and its sessions end now, not at
            // its next login; an administrator revoking their own token
            // gets this answer first, and this connection closes at its
            // next request.
            let own = (id == technician.id).then(|| {
                link.access.mark_revoked();
                link.connection
            });
            crate::access::end_access_but(shared, id, AccessEnd::Revoked, &actor, own).await;
            Ok(ConsoleResponse::TechnicianTokenRevoked(revoked))
        }
        ConsoleRequest::ListEnrollTokens => Ok(ConsoleResponse::EnrollTokens(
            run(shared, move |s| s.list_enroll_tokens(org)).await?,
        )),
        ConsoleRequest::RevokeEnrollToken { id } => {
            let revoked = run(shared, move |s| s.revoke_enroll_token(org, id, &actor, now))
                .await?
                .ok_or_else(|| {
                    Refusal::NotFound(format!(
                        "no enrollment token {id}: list them with `deskside enroll-token list`"
                    ))
                })?;
            Ok(ConsoleResponse::EnrollTokenRevoked(revoked))
        }
        ConsoleRequest::ListSessions => Ok(ConsoleResponse::Sessions(
            run(shared, move |s| s.list_open_sessions(org)).await?,
        )),
        ConsoleRequest::EndAnySession { session_id } => {
            let ended = run(shared, move |s| {
                s.end_session_as_admin(org, session_id, &actor, now)
            })
            .await?
            .ok_or_else(|| {
                Refusal::NotFound(format!(
                    "no open session {}: list them with `deskside session list`",
                    session_text(session_id)
                ))
            })?;
            crate::access::stop(shared, &ended).await;
            tracing::info!(session = %session_text(ended.id), "session ended by an administrator");
            Ok(ConsoleResponse::Done)
        }
        ConsoleRequest::Diagnose { device, throughput } => {
            check_text("device", &device, 256)?;
            let record = run(shared, move |s| s.find_device(org, &device)).await??;
            let commands = shared.presence.commands(record.id).ok_or_else(|| {
                Refusal::Invalid(format!(
                    "{} ({}) is offline: its last stored snapshot is in `deskside diag history {}`",
                    record.id, record.hostname, record.id
                ))
            })?;
            let (reply, answer) = tokio::sync::oneshot::channel();
            commands
                .send(AgentCommand::CollectDiagnostics {
                    throughput,
                    technician: technician.name.clone(),
                    reply,
                })
                .await
                .map_err(|_| Refusal::Invalid(format!("{} went offline", record.id)))?;
            let snapshot = match tokio::time::timeout(DIAGNOSE_TIMEOUT, answer).await {
                Ok(Ok(Ok(snapshot))) => snapshot,
                Ok(Ok(Err(reason))) => {
                    return Err(Refusal::Invalid(format!(
                        "the agent on {} did not collect diagnostics: {reason}",
                        record.hostname
                    )))
                }
                Ok(Err(_)) => return Err(Refusal::Invalid(format!("{} went offline", record.id))),
                Err(_) => {
                    return Err(Refusal::Invalid(format!(
                        "the agent on {} did not answer within {} s",
                        record.hostname,
                        DIAGNOSE_TIMEOUT.as_secs()
                    )))
                }
            };
            let policy = crate::policy::load(shared, org).await?;
            // Public addresses are stored truncated unless the policy asks.
            let snapshot = if policy.store_full_ip_addresses {
                snapshot
            } else {
                crate::ip_privacy::truncate_snapshot(snapshot)
            };
            let judged =
                crate::diagnostics::judge(snapshot, &policy.thresholds()).map_err(|e| {
                    Refusal::Invalid(format!("the agent sent an unreadable snapshot: {e}"))
                })?;
            let id = record.id;
            let retention = policy.diagnostics_retention;
            let (row, judged) = run(shared, move |s| {
                s.insert_diagnostics(
                    org,
                    id,
                    &actor,
                    &judged.snapshot,
                    &judged.verdict,
                    judged.primary.as_deref(),
                    retention,
                    now,
                )
                .map(|row| (row, judged))
            })
            .await?;
            let online = shared.presence.is_online(record.id);
            Ok(ConsoleResponse::Diagnostics(StoredDiagnostics {
                id: row as u64,
                device: record.summary(online),
                received_at: now,
                snapshot_json: judged.snapshot.into_bytes(),
                verdict_json: judged.verdict.into_bytes(),
            }))
        }
        ConsoleRequest::DiagnosticsHistory { device, limit } => {
            check_text("device", &device, 256)?;
            let record = run(shared, move |s| s.find_device(org, &device)).await??;
            let id = record.id;
            let rows = run(shared, move |s| {
                s.diagnostics_history(org, id, limit.min(1000))
            })
            .await?;
            let summary = record.summary(shared.presence.is_online(id));
            Ok(ConsoleResponse::DiagnosticsHistory(
                rows.into_iter()
                    .map(|row| StoredDiagnostics {
                        id: row.id as u64,
                        device: summary.clone(),
                        received_at: row.received_at,
                        snapshot_json: row.snapshot_json.into_bytes(),
                        verdict_json: row.verdict_json.into_bytes(),
                    })
                    .collect(),
            ))
        }
        ConsoleRequest::Timeline {
            device,
            since_ms,
            until_ms,
        } => {
            check_text("device", &device, 256)?;
            crate::timeline::device_timeline(shared, org, device, since_ms, until_ms).await
        }
        ConsoleRequest::TimelineFleet {
            group,
            since_ms,
            until_ms,
        } => {
            if let Some(group) = &group {
                check_text("group", group, 64)?;
            }
            crate::timeline::fleet_timeline(shared, org, group, since_ms, until_ms).await
        }
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
        ConsoleRequest::ShowPolicy => {
            let policy = crate::policy::load(shared, org).await?;
            let grant = crate::policy::session_grant(shared, org).await?;
            let limits = crate::enroll_limits::load(shared, org).await?;
            Ok(ConsoleResponse::Policy(
                limits.add_to_public(crate::policy::public_json(&policy, grant)),
            ))
        }
        ConsoleRequest::SetPolicy { key, value } => {
            check_text("key", &key, 100)?;
            check_text("value", &value, 100)?;
            let mut policy = crate::policy::load(shared, org).await?;
            if key == crate::policy::SESSION_GRANT_KEY {
                crate::policy::set_session_grant(shared, org, &value, &actor).await?;
            } else if crate::enroll_limits::is_key(&key) {
                crate::enroll_limits::set(shared, org, &key, &value, &actor).await?;
            } else {
                policy.set(&key, &value).map_err(Refusal::Invalid)?;
                let change = serde_json::json!({ "key": key, "value": value });
                crate::policy::save(shared, org, &policy, "policy.set", change, &actor).await?;
            }
            // Connected agents apply it now, not at their next connection.
            let reach = crate::policy::push_to_connected(shared, org, &policy).await?;
            tracing::info!(%key, applied = reach.applied, connected = reach.connected, "policy changed");
            let grant = crate::policy::session_grant(shared, org).await?;
            let limits = crate::enroll_limits::load(shared, org).await?;
            Ok(ConsoleResponse::PolicySet(PolicySetOutcome {
                policy_json: limits.add_to_public(crate::policy::public_json(&policy, grant)),
                applied: reach.applied,
                connected: reach.connected,
            }))
        }
        ConsoleRequest::RegisterSessionKey { key } => {
            let technician_id = technician.id;
            let found = run(shared, move |s| {
                s.register_session_key(org, technician_id, &key, &actor, now)
            })
            .await?;
            if !found {
                return Err(Refusal::NotFound(
                    "your technician token no longer exists: ask an administrator for a new one and run `deskside login` again".to_owned(),
                ));
            }
            tracing::debug!(%key, "session key registered");
            Ok(ConsoleResponse::Done)
        }
        ConsoleRequest::PresentSessionCertificate { certificate } => {
            if certificate.len() > MAX_CERTIFICATE_LEN {
                return Err(Refusal::Invalid(format!(
                    "the session key certificate is {} bytes, more than the {MAX_CERTIFICATE_LEN} a certificate takes: log in again with a fresh login string",
                    certificate.len()
                )));
            }
            *link
                .session_certificate
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(certificate);
            Ok(ConsoleResponse::Done)
        }
        ConsoleRequest::OpenSession {
            device,
            capabilities,
            reason,
        } => open_session(shared, technician, link, device, capabilities, reason, None).await,
        ConsoleRequest::OpenSessionOnMonitor {
            device,
            capabilities,
            reason,
            monitor,
        } => {
            open_session(
                shared,
                technician,
                link,
                device,
                capabilities,
                reason,
                Some(monitor),
            )
            .await
        }
        ConsoleRequest::EndSession { session_id } => {
            let technician_id = technician.id;
            let outcome = run(shared, move |s| {
                s.end_session(
                    session_id,
                    SessionParty::Technician(technician_id),
                    EndedBy::Technician,
                    &actor,
                    serde_json::Map::new(),
                    now,
                )
            })
            .await?;
            match outcome {
                EndOutcome::NotFound => Err(Refusal::NotFound(format!(
                    "no session {} of yours: you can only end sessions you opened",
                    session_text(session_id)
                ))),
                EndOutcome::Ended(_) | EndOutcome::AlreadyClosed(_) => {
                    if let EndOutcome::Ended(ended) = &outcome {
                        tracing::info!(session = %session_text(session_id), "session ended by the technician");
                        crate::session_follow_up::spawn(shared, ended);
                    }
                    shared.router.end(session_id);
                    Ok(ConsoleResponse::Done)
                }
            }
        }
        ConsoleRequest::ResumeSession { session_id } => {
            let record = run(shared, move |s| s.session(session_id)).await?;
            let not_yours = || {
                Refusal::NotFound(format!(
                    "no open session {} of yours: it ended, or another technician opened it",
                    session_text(session_id)
                ))
            };
            let Some(record) = record.filter(|r| r.technician == technician.id && r.org == org)
            else {
                return Err(not_yours());
            };
            if record.is_closed()
                || !shared
                    .router
                    .resume(session_id, link.connection, link.packets.clone())
            {
                return Err(not_yours());
            }
            tracing::info!(session = %session_text(session_id), "session resumed on a new console connection");
            Ok(ConsoleResponse::Done)
        }
        ConsoleRequest::AuditList { device, limit } => {
            let target = match device {
                Some(device) => {
                    check_text("device", &device, 256)?;
                    let record = run(shared, move |s| s.find_device(org, &device)).await??;
                    Some(record.audit_actor())
                }
                None => None,
            };
            let limit = usize::try_from(limit)
                .unwrap_or(MAX_AUDIT_ROWS)
                .min(MAX_AUDIT_ROWS);
            let rows = run(shared, move |s| {
                s.audit_entries_about(org, target.as_deref(), limit)
            })
            .await?;
            Ok(ConsoleResponse::Audit(
                rows.into_iter()
                    .map(|row| AuditEntry {
                        id: row.id,
                        at: row.at,
                        actor: row.actor,
                        action: row.action,
                        target: row.target,
                        detail: row.detail.to_string(),
                    })
                    .collect(),
            ))
        }
        ConsoleRequest::VerifyAudit { anchor_id } => {
            crate::audit_anchor::verify_for_console(shared, anchor_id).await
        }
        ConsoleRequest::Unknown { tag } => Err(Refusal::Invalid(format!(
            "this relay does not know request type {tag}; upgrade the relay"
        ))),
    }
}

/// Asks an online device for a session: checks, commits the request to the
/// audit log, opens the route, then hands the request to the agent.
async fn open_session(
    shared: &Shared,
    technician: &Technician,
    link: &ConsoleLink,
    device: String,
    capabilities: Capabilities,
    reason: String,
    monitor: Option<u8>,
) -> Result<ConsoleResponse, Refusal> {
    check_text("device", &device, 256)?;
    let reason_chars = reason.chars().count();
    if reason_chars > MAX_REASON_CHARS {
        return Err(Refusal::Invalid(format!(
            "the reason is {reason_chars} characters long; the employee reads it in a dialog, so keep it to {MAX_REASON_CHARS}"
        )));
    }
    check_text("reason", &reason, 4 * MAX_REASON_CHARS)?;
    if !capabilities.view {
        return Err(Refusal::Invalid(
            "a session always includes seeing the screen: ask for view (with or without control)"
                .to_owned(),
        ));
    }
    let org = technician.org;
    let record = run(shared, move |s| s.find_device(org, &device)).await??;
    if record.revoked_at.is_some() {
        return Err(Refusal::Invalid(format!(
            "{} ({}) is revoked: enroll the computer again before opening a session",
            record.id, record.hostname
        )));
    }
    let commands = shared.presence.commands(record.id).ok_or_else(|| {
        Refusal::Invalid(format!(
            "{} ({}) is offline: a session needs its agent running; ask the employee to start the computer and connect it to the network, then try again",
            record.id, record.hostname
        ))
    })?;
    // A monitor the device does not have is refused before anyone is
    // asked. Unknown counts (no session helper yet, older agents) pass:
    // the console checks again when the session starts.
    if let (Some(index), Some(count)) = (monitor, shared.presence.monitor_count(record.id)) {
        if usize::from(index) >= count {
            return Err(Refusal::Invalid(format!(
                "{} ({}) has {count} monitor(s): --monitor takes 0 to {}; the employee was not asked",
                record.id,
                record.hostname,
                count - 1
            )));
        }
    }
    let technician_id = technician.id;
    let technician_key = run(shared, move |s| s.technician_session_key(technician_id))
        .await?
        .ok_or_else(|| {
            Refusal::Invalid(
                "this console has no session key registered: run `deskside login` again".to_owned(),
            )
        })?;
    let grant = crate::policy::session_grant(shared, org).await?;
    let session_id = new_session_id()?;
    let device_id = record.id;
    let actor = technician.audit_actor();
    let now = now_secs();
    let stored_reason = reason.clone();
    run(shared, move |s| {
        s.open_session(
            &NewSession {
                id: session_id,
                org,
                device: device_id,
                technician: technician_id,
                capabilities,
                reason: &stored_reason,
            },
            &actor,
            now,
        )
    })
    .await?;
    // Routed before the agent hears of it, so that its first handshake
    // packets find their way.
    shared
        .router
        .open(session_id, device_id, link.connection, link.packets.clone());
    let (device_key, technician_key) = (key_fingerprint(&record.public_key), technician_key);
    #[cfg(feature = "test-utils")]
    let (device_key, technician_key) = shared
        .hooks
        .substitute_keys
        .unwrap_or((device_key, technician_key));
    let request = SessionRequest {
        session_id,
        technician: technician.name.clone(),
        organisation: link.organisation.clone(),
        capabilities,
        reason,
        technician_key,
        grant_secs: grant.as_secs(),
    };
    let certificate = link
        .session_certificate
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    if commands
        .send(AgentCommand::OpenSession {
            request,
            certificate,
        })
        .await
        .is_err()
    {
        // The agent left between the check and now: close the session so
        // that the audit log does not show it open.
        shared.router.end(session_id);
        let mut extra = serde_json::Map::new();
        extra.insert(
            "device_went_offline".to_owned(),
            serde_json::Value::Bool(true),
        );
        run(shared, move |s| {
            s.end_session(
                session_id,
                SessionParty::System,
                EndedBy::ConnectionLost,
                SYSTEM_ACTOR,
                extra,
                now,
            )
        })
        .await?;
        return Err(Refusal::Invalid(format!(
            "{} ({}) went offline before the request reached it; try again once it is back online",
            record.id, record.hostname
        )));
    }
    tracing::info!(
        session = %session_text(session_id),
        device = %device_id,
        capabilities = capabilities.label(),
        "session requested"
    );
    Ok(ConsoleResponse::SessionOpened(SessionOpened {
        session_id,
        device: record.summary(true),
        device_key,
    }))
}

/// A random, non-zero session id.
fn new_session_id() -> Result<u64, Refusal> {
    loop {
        let id = u64::from_be_bytes(
            random_bytes::<8>().map_err(|_| internal_error(&"random generator failed"))?,
        );
        if id != 0 {
            return Ok(id);
        }
    }
}

/// Runs a store operation and maps store failures to an internal refusal.
async fn run<T: Send + 'static>(
    shared: &Shared,
    op: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Refusal> {
    shared
        .store_as(crate::metrics::StoreOp::ConsoleRequest, op)
        .await?
        .map_err(|e| internal_error(&e))
}
