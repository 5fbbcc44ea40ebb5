//! A technician's console connection: token authentication, then requests,
//! each checked against the token's role before anything is done.

use std::sync::Arc;

use deskside_net::{FramedRecv, FramedSend, NetError};
use deskside_protocol::console::{
    ConsoleRequest, ConsoleResponse, ConsoleToRelay, IssuedEnrollToken, IssuedTechnicianToken,
    RelayToConsole, StoredDiagnostics,
};
use deskside_protocol::message::Nested;
use deskside_protocol::token::{EnrollToken, LoginString};
use deskside_protocol::Refusal;

use crate::presence::AgentCommand;
use crate::secrets::{hash_secret, new_enroll_secret, new_technician_token};
use crate::server::{
    check_text, finish_and_wait, first_message, internal_error, now_secs, require, End, Shared,
    CLOSE_REVOKED,
};
use crate::store::{Store, StoreError, Technician};

/// Requests of one console handled at the same time.
const MAX_IN_FLIGHT: usize = 256;

/// Longest enrollment-token lifetime: one year.
const MAX_ENROLL_LIFETIME_SECS: u64 = 365 * 24 * 3600;
/// Longest wait for an agent's snapshot: collection plus a throughput test
/// take about 4 s; slow links and busy machines get ample slack.
const DIAGNOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(45);
/// Most devices one enrollment token may enroll.
const MAX_ENROLL_USES: u32 = 100_000;

/// Serves a console connection after the hello exchange.
pub async fn serve(
    shared: &Arc<Shared>,
    _connection: &quinn::Connection,
    mut send: FramedSend,
    mut recv: FramedRecv,
) -> End {
    let token = match first_message::<ConsoleToRelay>(&mut recv).await {
        Ok(ConsoleToRelay::Authenticate { token }) => token,
        Ok(other) => return End::Violation(format!("expected Authenticate first, got {other:?}")),
        Err(end) => return end,
    };
    let hash = hash_secret(&token);
    let now = now_secs();
    let technician = match shared
        .store(move |store| {
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
    tracing::Span::current().record("technician", tracing::field::display(&technician.name));
    tracing::debug!(role = %technician.role, "technician authenticated");
    let result = async {
        send.send(&RelayToConsole::Authenticated {
            technician: technician.name.clone(),
            role: technician.role,
            organisation,
        })
        .await?;
        // Requests run concurrently (a fleet diagnostic sends hundreds), up
        // to a bound; answers go out as they finish, matched by id.
        let mut in_flight = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                message = recv.recv::<ConsoleToRelay>(), if in_flight.len() < MAX_IN_FLIGHT => {
                    match message? {
                        None => return Ok(End::Closed),
                        Some(ConsoleToRelay::Request {
                            id,
                            request: Nested(request),
                        }) => {
                            let shared = Arc::clone(shared);
                            let technician = technician.clone();
                            in_flight.spawn(async move {
                                let result = handle(&shared, &technician, request).await;
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
    result.unwrap_or_else(|e: NetError| e.into())
}

fn actor(technician: &Technician) -> String {
    format!("technician:{} ({})", technician.id, technician.name)
}

/// Runs one request for `technician`, role checked first.
async fn handle(
    shared: &Shared,
    technician: &Technician,
    request: ConsoleRequest,
) -> Result<ConsoleResponse, Refusal> {
    require(technician.role, request.required_role())?;
    let org = technician.org;
    let actor = actor(technician);
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
            if uses == 0 || uses > MAX_ENROLL_USES {
                return Err(Refusal::Invalid(format!(
                    "uses must be between 1 and {MAX_ENROLL_USES}"
                )));
            }
            if expires_in_secs == 0 || expires_in_secs > MAX_ENROLL_LIFETIME_SECS {
                return Err(Refusal::Invalid(
                    "an enrollment token must live between 1 second and 1 year".to_owned(),
                ));
            }
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
            let revoked = run(shared, move |s| {
                s.revoke_technician_token(org, id, &actor, now)
            })
            .await?
            .ok_or_else(|| {
                Refusal::NotFound(format!(
                    "no technician token {id}: list them with `deskside tokens list`"
                ))
            })?;
            Ok(ConsoleResponse::TechnicianTokenRevoked(revoked))
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
                .send(AgentCommand::CollectDiagnostics { throughput, reply })
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
        ConsoleRequest::ShowPolicy => {
            let policy = crate::policy::load(shared, org).await?;
            Ok(ConsoleResponse::Policy(crate::policy::public_json(&policy)))
        }
        ConsoleRequest::SetPolicy { key, value } => {
            check_text("key", &key, 100)?;
            check_text("value", &value, 100)?;
            let mut policy = crate::policy::load(shared, org).await?;
            policy.set(&key, &value).map_err(Refusal::Invalid)?;
            let change = serde_json::json!({ "key": key, "value": value });
            crate::policy::save(shared, org, &policy, "policy.set", change, &actor).await?;
            Ok(ConsoleResponse::Policy(crate::policy::public_json(&policy)))
        }
        ConsoleRequest::Unknown { tag } => Err(Refusal::Invalid(format!(
            "this relay does not know request type {tag}; upgrade the relay"
        ))),
    }
}

/// Runs a store operation and maps store failures to an internal refusal.
async fn run<T: Send + 'static>(
    shared: &Shared,
    op: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Refusal> {
    shared.store(op).await?.map_err(|e| internal_error(&e))
}
