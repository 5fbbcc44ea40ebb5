//! An agent's connection: enrollment, or attachment and presence.
//!
//! The agent's identity is the public key of the client certificate it used
//! in the TLS handshake, never something it claims in a message: the key is
//! what the relay records at enrollment and looks up at every connection.

use std::collections::HashMap;
use std::sync::Arc;

use deskside_net::{FramedRecv, FramedSend, NetError};
use deskside_protocol::agent::{AgentToRelay, DeviceInfo, RelayToAgent};
use deskside_protocol::message::Nested;
use deskside_protocol::session::{Capabilities, EndedBy};
use deskside_protocol::{DeviceId, Refusal, SessionId};

use crate::agent_packets::AgentPackets;
use crate::clock::{now_millis, now_secs};
use crate::conn::{check_text, finish_and_wait, first_message, End};
use crate::metrics::StoreOp;
use crate::presence::AgentCommand;
use crate::secrets::{hash_secret, random_bytes};
use crate::shared::Shared;
use crate::store::{ConsentOutcome, DeviceRecord, EndOutcome, SessionParty, WITHDRAWN};

fn check_info(info: &DeviceInfo) -> Result<(), Refusal> {
    check_text("hostname", &info.hostname, 253)?;
    check_text("os", &info.os, 200)?;
    check_text("agent_version", &info.agent_version, 64)
}

/// Serves an agent connection after the hello exchange.
pub async fn serve(
    shared: &Shared,
    connection: &quinn::Connection,
    public_key: Vec<u8>,
    mut send: FramedSend,
    mut recv: FramedRecv,
) -> End {
    let address = connection.remote_address().to_string();
    let first = match first_message::<AgentToRelay>(&mut recv).await {
        Ok(message) => message,
        Err(end) => return end,
    };
    match first {
        AgentToRelay::Enroll { secret, info } => {
            let outcome = Box::pin(enroll(shared, public_key, secret, info, address)).await;
            // Counted as open until the answer is delivered.
            let _open = outcome.is_ok().then(|| {
                crate::conn::authenticated_as(
                    shared,
                    connection,
                    crate::metrics::ConnKind::Enrollment,
                )
            });
            let reply = match &outcome {
                Ok((id, organisation)) => {
                    tracing::Span::current().record("device", tracing::field::display(id));
                    tracing::info!("device enrolled");
                    shared.admission.enrolled();
                    RelayToAgent::Enrolled {
                        device_id: *id,
                        organisation: organisation.clone(),
                    }
                }
                Err(refusal) => RelayToAgent::Refused(Nested(refusal.clone())),
            };
            if let Err(e) = send.send(&reply).await {
                return e.into();
            }
            finish_and_wait(&mut send).await;
            match outcome {
                Ok(_) => End::Closed,
                Err(refusal) => End::Refused(refusal),
            }
        }
        AgentToRelay::Measure => {
            let device = match device_of(shared, public_key).await {
                Ok(device) => device,
                Err(refusal) => return refuse(send, refusal).await,
            };
            let _open = crate::conn::authenticated_as(
                shared,
                connection,
                crate::metrics::ConnKind::Measurement,
            );
            tracing::Span::current().record("device", tracing::field::display(device.id));
            Box::pin(crate::measure::serve(
                &shared.measure_limits,
                connection,
                device.id,
                send,
                recv,
            ))
            .await
        }
        AgentToRelay::Attach { info } => {
            attached(shared, connection, public_key, info, address, send, recv).await
        }
        AgentToRelay::HelpRequest(request) => {
            let device = match device_of(shared, public_key).await {
                Ok(device) => device,
                Err(refusal) => return refuse(send, refusal).await,
            };
            crate::conn::authenticated(shared, connection);
            tracing::Span::current().record("device", tracing::field::display(device.id));
            let client_id = request.client_id.clone();
            match Box::pin(crate::requests::receive(
                shared, device.id, device.org, request,
            ))
            .await
            {
                Ok(number) => {
                    if let Err(e) = send
                        .send(&RelayToAgent::HelpRequestStored { client_id, number })
                        .await
                    {
                        return e.into();
                    }
                    finish_and_wait(&mut send).await;
                    // The running agent, if any, learns of it too.
                    Box::pin(crate::requests::notify_device(shared, device.id)).await;
                    End::Closed
                }
                Err(refusal) => refuse(send, refusal).await,
            }
        }
        other => End::Violation(format!(
            "expected Enroll, Attach, Measure or HelpRequest first, got {}",
            crate::secrets::message_kind(&other)
        )),
    }
}

/// The enrolled device whose key the connection proved, for the one-shot
/// connections (`Measure`, `HelpRequest`); the refusal says why not.
async fn device_of(shared: &Shared, public_key: Vec<u8>) -> Result<DeviceRecord, Refusal> {
    shared
        .store_as(StoreOp::AgentAuth, move |store| {
            store.device_by_key(&public_key)
        })
        .await?
        .map_err(|e| crate::conn::internal_error(&e))?
}

async fn enroll(
    shared: &Shared,
    public_key: Vec<u8>,
    secret: String,
    info: DeviceInfo,
    address: String,
) -> Result<(DeviceId, String), Refusal> {
    check_info(&info)?;
    if secret.len() > 256 {
        return Err(Refusal::EnrollTokenInvalid);
    }
    let hash = hash_secret(&secret);
    let new_id = DeviceId(u64::from_be_bytes(
        random_bytes::<8>().map_err(|_| Refusal::Internal("random".into()))?,
    ));
    let now = now_secs();
    let result = shared
        .store_as(StoreOp::Enrollment, move |store| {
            store.enroll_device(&hash, &public_key, &info, &address, new_id, now)
        })
        .await?;
    match result {
        Ok(Ok((record, organisation))) => Ok((record.id, organisation)),
        Ok(Err(refusal)) => Err(refusal),
        Err(e) => Err(crate::conn::internal_error(&e)),
    }
}

async fn attached(
    shared: &Shared,
    connection: &quinn::Connection,
    public_key: Vec<u8>,
    info: DeviceInfo,
    address: String,
    mut send: FramedSend,
    mut recv: FramedRecv,
) -> End {
    if let Err(refusal) = check_info(&info) {
        return refuse(send, refusal).await;
    }
    let now = now_secs();
    let record = match shared
        .store_as(StoreOp::AgentAuth, move |store| {
            store.attach_device(&public_key, &info, &address, now)
        })
        .await
    {
        Ok(Ok(Ok(record))) => record,
        Ok(Ok(Err(refusal))) | Err(refusal) => return refuse(send, refusal).await,
        Ok(Err(e)) => return refuse(send, crate::conn::internal_error(&e)).await,
    };
    let organisation = {
        let org = record.org;
        match shared
            .store(move |store| store.organisation_name(org))
            .await
        {
            Ok(Ok(name)) => name,
            Ok(Err(e)) => return refuse(send, crate::conn::internal_error(&e)).await,
            Err(refusal) => return refuse(send, refusal).await,
        }
    };
    let id = record.id;
    let _open = crate::conn::authenticated_as(shared, connection, crate::metrics::ConnKind::Agent);
    tracing::Span::current().record("device", tracing::field::display(id));
    // A parked device's waiting commands come with its queue.
    let (mut generation, mut commands) = shared.presence.attach(id, connection.clone());
    shared.directory.held(id);
    shared.admission.observe_fleet(shared.presence.count());
    // Session packets of this device come and go on this connection until
    // a newer one of the same device replaces it; the session path starts
    // only when a session needs it (crate::agent_packets).
    let mut packets = AgentPackets::new(Arc::clone(&shared.router), id, connection);
    tracing::info!(hostname = %record.hostname, "device online");
    let mut pending: HashMap<u64, tokio::sync::oneshot::Sender<Result<Vec<u8>, String>>> =
        HashMap::new();
    let mut next_request = 1u64;
    // Policy updates waiting for the agent's confirmation, by revision.
    let mut policy_acks: HashMap<u64, tokio::sync::oneshot::Sender<()>> = HashMap::new();
    let mut next_revision = 1u64;
    let mut timeline_budget = crate::timeline::UploadBudget::default();
    let end = async {
        send.send(&RelayToAgent::Attached {
            device_id: id,
            organisation,
            relay_time_ms: now_millis(),
        })
        .await?;
        match Box::pin(crate::policy::load(shared, record.org)).await {
            Ok(policy) => {
                let json = serde_json::to_vec(&policy).unwrap_or_default();
                send.send(&RelayToAgent::Policy { json }).await?;
            }
            Err(refusal) => tracing::warn!("cannot send the policy: {refusal}"),
        }
        match Box::pin(crate::requests::employee_state(shared, id)).await {
            Ok(requests) if !requests.is_empty() => {
                send.send(&RelayToAgent::HelpRequests(requests)).await?;
            }
            Ok(_) => {}
            Err(refusal) => tracing::warn!("cannot send the device's help requests: {refusal}"),
        }
        // When this relay goes, come back within a window sized to its fleet.
        let spread = shared.admission.reconnect_spread();
        send.send(&RelayToAgent::ReconnectAdvice {
            spread_ms: deskside_protocol::reconnect::spread_ms(spread),
        })
        .await?;
        // With several relays, where to go when this one dies.
        if shared.directory.is_shared() {
            let relays = crate::relay_list::all_relays(shared).await;
            send.send(&RelayToAgent::RelayList { relays }).await?;
        }
        loop {
            tokio::select! {
                message = recv.recv::<AgentToRelay>() => match message? {
                    None => return Ok(End::Closed),
                    Some(AgentToRelay::Pong { .. }) => {}
                    Some(AgentToRelay::Diagnostics { request_id, result }) => {
                        match pending.remove(&request_id) {
                            Some(reply) => {
                                let _ = reply.send(result);
                            }
                            None => tracing::debug!(request_id, "diagnostics nobody waits for any more"),
                        }
                    }
                    Some(AgentToRelay::SessionConsent { session_id, granted, outcome }) => {
                        if Box::pin(record_consent(shared, id, session_id, granted, outcome)).await? {
                            send.send(&RelayToAgent::ConsentRecorded { session_id }).await?;
                        }
                    }
                    Some(AgentToRelay::SessionEnded { session_id, by }) => {
                        Box::pin(record_end(shared, id, session_id, by)).await?;
                    }
                    Some(AgentToRelay::Monitors { monitors }) => {
                        tracing::debug!(count = monitors.len(), "the device's monitors");
                        shared.presence.set_monitors(id, generation, monitors.len());
                    }
                    Some(AgentToRelay::PolicyApplied { revision }) => {
                        match policy_acks.remove(&revision) {
                            Some(applied) => {
                                let _ = applied.send(());
                            }
                            None => tracing::debug!(revision, "policy confirmation nobody waits for any more"),
                        }
                    }
                    Some(AgentToRelay::TimelineSamples { first_seq, batch }) => {
                        match Box::pin(crate::timeline::store_batch(shared, id, first_seq, &batch, &mut timeline_budget)).await {
                            Ok(crate::timeline::Stored::Through(through_seq)) => {
                                send.send(&RelayToAgent::TimelineStored { through_seq }).await?;
                            }
                            Ok(crate::timeline::Stored::Later(reason)) => {
                                tracing::warn!(first_seq, "timeline samples not stored now: {reason}");
                            }
                            Err(reason) => {
                                return Ok(End::Violation(format!("bad timeline samples: {reason}")));
                            }
                        }
                    }
                    Some(AgentToRelay::HelpRequest(request)) => {
                        let client_id = request.client_id.clone();
                        match Box::pin(crate::requests::receive(shared, id, record.org, request)).await {
                            Ok(number) => {
                                send.send(&RelayToAgent::HelpRequestStored { client_id, number }).await?;
                                if let Ok(requests) = Box::pin(crate::requests::employee_state(shared, id)).await {
                                    send.send(&RelayToAgent::HelpRequests(requests)).await?;
                                }
                            }
                            // Not acknowledged: the agent keeps it. A request
                            // this relay refuses must not cost the device its
                            // presence, so the connection stays up.
                            Err(refusal) => tracing::warn!(client_id, "help request not stored: {refusal}"),
                        }
                    }
                    Some(AgentToRelay::Park) => {
                        // Not while the agent has work in hand: it asks
                        // again later.
                        let busy = packets.is_started()
                            || !pending.is_empty()
                            || !policy_acks.is_empty()
                            || shared.router.has_routes_for(id);
                        let Some(waker) = shared.presence.waker().filter(|_| !busy) else {
                            tracing::debug!(busy, "not parking the agent now");
                            continue;
                        };
                        let (ticket, key) = match waker.secret.issue(id, now_secs()) {
                            Ok(issued) => issued,
                            Err(e) => {
                                tracing::warn!("cannot park the agent: {e}");
                                continue;
                            }
                        };
                        if !shared.presence.park(id, generation, ticket, std::time::Instant::now()) {
                            return Ok(End::Closed);
                        }
                        // The connection's end must not take the parked
                        // device offline.
                        generation = 0;
                        // Commands this task took no longer reach the agent
                        // here: they wait for it to attach again.
                        commands.close();
                        while let Some(command) = commands.try_recv() {
                            shared.presence.requeue(id, command);
                        }
                        tracing::debug!("agent parked");
                        let idle_ms = u32::try_from(shared.directory.idle_timeout().as_millis()).unwrap_or(u32::MAX);
                        send.send(&RelayToAgent::Parked { ticket, key, idle_ms }).await?;
                        finish_and_wait(&mut send).await;
                        return Ok(End::Closed);
                    }
                    Some(AgentToRelay::Unknown { tag }) => {
                        tracing::debug!(tag, "ignoring a message from a newer agent");
                    }
                    Some(other) => {
                        return Ok(End::Violation(format!(
                            "unexpected {} on an attached connection",
                            crate::secrets::message_kind(&other)
                        )));
                    }
                },
                datagram = connection.read_datagram(), if !packets.is_started() => {
                    if let Err(reason) = packets.handle_datagram(datagram.map_err(NetError::from)?) {
                        return Ok(End::Violation(reason));
                    }
                }
                Some(command) = commands.recv() => match command {
                    AgentCommand::CollectDiagnostics { throughput, technician, reply } => {
                        let request_id = next_request;
                        next_request += 1;
                        // Forget requests whose requester gave up.
                        pending.retain(|_, waiting| !waiting.is_closed());
                        pending.insert(request_id, reply);
                        send.send(&RelayToAgent::CollectDiagnosticsFor { request_id, throughput, technician }).await?;
                    }
                    AgentCommand::OpenSession { request, certificate } => {
                        // The session's packets may come as soon as the
                        // agent reads the request.
                        packets.start();
                        // Without a certificate the old message, which every
                        // agent understands.
                        let message = match certificate {
                            Some(certificate) => {
                                RelayToAgent::CertifiedSessionRequest { request, certificate }
                            }
                            None => RelayToAgent::SessionRequest(request),
                        };
                        send.send(&message).await?;
                    }
                    AgentCommand::ApplyPolicy { json, applied } => {
                        let revision = next_revision;
                        next_revision += 1;
                        policy_acks.retain(|_, waiting| !waiting.is_closed());
                        policy_acks.insert(revision, applied);
                        send.send(&RelayToAgent::PolicyUpdate { revision, json }).await?;
                    }
                    AgentCommand::WithdrawSession { session_id } => {
                        send.send(&RelayToAgent::SessionWithdrawn { session_id }).await?;
                    }
                    AgentCommand::HelpRequests { requests } => {
                        send.send(&RelayToAgent::HelpRequests(requests)).await?;
                    }
                },
            }
        }
    }
    .await
    .unwrap_or_else(|e: Step| e.into());
    shared.router.detach_agent(id, connection.stable_id());
    drop(packets);
    if shared.presence.detach(id, generation) {
        shared.directory.released(id);
        tracing::info!("device offline");
    }
    let now = now_secs();
    if let Ok(Err(e)) = shared
        .store_as(StoreOp::LastSeen, move |store| store.mark_seen(&[id], now))
        .await
    {
        tracing::warn!("cannot record last-seen time: {e}");
    }
    end
}

async fn refuse(mut send: FramedSend, refusal: Refusal) -> End {
    if let Err(e) = send
        .send(&RelayToAgent::Refused(Nested(refusal.clone())))
        .await
    {
        return e.into();
    }
    finish_and_wait(&mut send).await;
    End::Refused(refusal)
}

/// Why the attached loop stopped early: the connection broke, or the agent
/// broke the protocol.
enum Step {
    Net(NetError),
    End(End),
}

impl From<NetError> for Step {
    fn from(error: NetError) -> Self {
        Step::Net(error)
    }
}

impl From<Step> for End {
    fn from(step: Step) -> Self {
        match step {
            Step::Net(error) => error.into(),
            Step::End(end) => end,
        }
    }
}

/// Longest consent outcome text accepted (`accepted`, `refused`,
/// `timed_out`, or a short reason why no one could be asked).
const MAX_OUTCOME_LEN: usize = 200;

/// Commits the employee's answer to the audit log and, only then, tells the
/// router (a grant lifts the pre-consent limit, a refusal forgets the
/// route). `Ok(true)` when the answer is committed and the agent may be told
/// so; `Ok(false)` when the store failed (the agent then never hears
/// `ConsentRecorded` and sends nothing). A session of another device closes
/// the connection.
async fn record_consent(
    shared: &Shared,
    device: DeviceId,
    session_id: SessionId,
    granted: Option<Capabilities>,
    outcome: String,
) -> Result<bool, Step> {
    if let Err(refusal) = check_text("outcome", &outcome, MAX_OUTCOME_LEN) {
        return Err(Step::End(End::Violation(format!(
            "consent for session {session_id}: {refusal}"
        ))));
    }
    let now = now_secs();
    if granted.is_none() && outcome == WITHDRAWN {
        // The technician's end closed before the employee answered.
        let actor = crate::store::device_actor(device);
        let remaining = crate::withdraw::withdraw_pending(
            shared,
            vec![session_id],
            SessionParty::Device(device),
            actor,
            "technician_connection_closed",
        )
        .await;
        if !remaining.is_empty() {
            tracing::debug!(session = %session_id, "withdrawal for a session already decided");
        }
        return Ok(false);
    }
    let result = shared
        .store_as(StoreOp::Session, move |store| {
            store.record_consent(session_id, device, granted, &outcome, now)
        })
        .await;
    let record = match result {
        Ok(Ok(ConsentOutcome::Recorded(record))) => {
            tracing::info!(
                session = %session_id,
                outcome = record.consent_outcome.as_deref().unwrap_or_default(),
                granted = record.granted.map_or("none", Capabilities::label),
                "session consent recorded"
            );
            record
        }
        Ok(Ok(ConsentOutcome::AlreadyRecorded(record))) => {
            tracing::debug!(session = %session_id, "consent sent again; the first answer stands");
            // A grant for a request that was withdrawn (or refused) first
            // is not confirmed: the agent then starts nothing.
            if !record.consented() || record.is_closed() {
                return Ok(false);
            }
            record
        }
        Ok(Ok(ConsentOutcome::NotThisDevice)) => {
            return Err(Step::End(End::Violation(format!(
                "consent for session {session_id}, which is not a session of this device"
            ))))
        }
        Ok(Err(e)) => {
            crate::conn::internal_error(&e);
            return Ok(false);
        }
        Err(_) => return Ok(false),
    };
    let routed = record.consented() && !record.is_closed();
    if !shared.router.consent(session_id, routed) && routed {
        tracing::debug!(session = %session_id, "consent for a session whose console is gone");
    }
    Ok(true)
}

/// Records that the agent ended a session. A session of another device
/// closes the connection.
async fn record_end(
    shared: &Shared,
    device: DeviceId,
    session_id: SessionId,
    by: EndedBy,
) -> Result<(), Step> {
    let now = now_secs();
    let actor = crate::store::device_actor(device);
    let result = shared
        .store(move |store| {
            store.end_session(
                session_id,
                SessionParty::Device(device),
                by,
                &actor,
                serde_json::Map::new(),
                now,
            )
        })
        .await;
    match result {
        Ok(Ok(EndOutcome::Ended(ended))) => {
            crate::session_follow_up::session_ended(shared, &ended, "the device ended it");
        }
        Ok(Ok(EndOutcome::AlreadyClosed(_))) => {}
        Ok(Ok(EndOutcome::NotFound)) => {
            return Err(Step::End(End::Violation(format!(
                "end of session {session_id}, which is not a session of this device"
            ))))
        }
        Ok(Err(e)) => {
            crate::conn::internal_error(&e);
        }
        Err(_) => {}
    }
    // Whatever the store said, nothing more of this session is forwarded.
    shared.router.end(session_id);
    Ok(())
}
