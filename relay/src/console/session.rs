//! A technician's own session requests (`deskside view`, `deskside session`):
//! the session key and certificate, open, end, resume.
//!
//! Each handler runs after the dispatch in `console_conn` checked the
//! caller's role and token; it never reads the connection itself.

use deskside_net::key_fingerprint;
use deskside_protocol::agent::SessionRequest;
use deskside_protocol::certificate::MAX_CERTIFICATE_LEN;
use deskside_protocol::console::{ConsoleResponse, SessionOpened};
use deskside_protocol::session::{Capabilities, EndedBy};
use deskside_protocol::{Fingerprint, Refusal, SessionId};

use super::{held_elsewhere, run, Caller};
use crate::clock::now_secs;
use crate::conn::{check_text, internal_error};
use crate::presence::AgentCommand;
use crate::secrets::random_bytes;
use crate::store::{EndOutcome, NewSession, SessionParty, SYSTEM_ACTOR};

/// Longest session reason, in characters: it is shown in the consent dialog.
const MAX_REASON_CHARS: usize = 500;

/// Registers the console's session key for the technician.
pub async fn register_key(
    caller: Caller<'_>,
    key: Fingerprint,
) -> Result<ConsoleResponse, Refusal> {
    let Caller {
        shared,
        technician,
        org,
        actor,
        now,
        ..
    } = caller;
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

/// Keeps the console's session key certificate for its session requests.
pub async fn present_certificate(
    caller: Caller<'_>,
    certificate: Vec<u8>,
) -> Result<ConsoleResponse, Refusal> {
    let Caller { link, .. } = caller;
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

/// Ends a session the technician opened.
pub async fn end(caller: Caller<'_>, session_id: SessionId) -> Result<ConsoleResponse, Refusal> {
    let Caller {
        shared,
        technician,
        actor,
        now,
        ..
    } = caller;
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
            "no session {session_id} of yours: you can only end sessions you opened"
        ))),
        EndOutcome::Ended(_) | EndOutcome::AlreadyClosed(_) => {
            match &outcome {
                EndOutcome::Ended(ended) => crate::session_follow_up::session_ended(
                    shared,
                    ended,
                    "the technician ended it",
                ),
                _ => {
                    shared.router.end(session_id);
                }
            }
            Ok(ConsoleResponse::Done)
        }
    }
}

/// Moves a session of the technician onto this (new) console connection.
pub async fn resume(caller: Caller<'_>, session_id: SessionId) -> Result<ConsoleResponse, Refusal> {
    let Caller {
        shared,
        technician,
        link,
        org,
        ..
    } = caller;
    let record = run(shared, move |s| s.session(session_id)).await?;
    let not_yours = || {
        Refusal::NotFound(format!(
            "no open session {session_id} of yours: it ended, or another technician opened it"
        ))
    };
    let Some(record) = record.filter(|r| r.technician == technician.id && r.org == org) else {
        return Err(not_yours());
    };
    if record.is_closed()
        || !shared
            .router
            .resume(session_id, link.connection, link.packets.clone())
    {
        return Err(not_yours());
    }
    tracing::info!(session = %session_id, "session resumed on a new console connection");
    Ok(ConsoleResponse::Done)
}

/// Asks an online device for a session: checks, commits the request to the
/// audit log, opens the route, then hands the request to the agent.
pub async fn open(
    caller: Caller<'_>,
    device: String,
    capabilities: Capabilities,
    reason: String,
    monitor: Option<u8>,
    request: Option<u64>,
) -> Result<ConsoleResponse, Refusal> {
    let Caller {
        shared,
        technician,
        link,
        ..
    } = caller;
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
    let named = device.clone();
    let record = run(shared, move |s| s.find_device(org, &device)).await??;
    if record.revoked_at.is_some() {
        return Err(Refusal::Invalid(format!(
            "{} ({}) is revoked: enroll the computer again before opening a session",
            record.id, record.hostname
        )));
    }
    let Some(commands) = shared.presence.commands(record.id) else {
        // Another relay holds it: the console asks that one, which audits
        // the session (and links it); nothing is written here.
        if let Some(elsewhere) = held_elsewhere::refusal(shared, record.id, &named).await? {
            return Err(elsewhere);
        }
        // No session exists to link: the help request it was asked for
        // gets its `session_not_held` event here.
        if let Some(number) = request {
            let who = technician.clone();
            let device_id = record.id;
            let now = now_secs();
            let recorded = run(shared, move |s| {
                s.record_offline_session_request(org, number, &who, device_id, capabilities, now)
            })
            .await?;
            if !recorded {
                tracing::info!(
                    request = number,
                    "offline session request not recorded: no such help request for this device"
                );
            }
        }
        return Err(Refusal::Invalid(format!(
            "{} ({}) is offline: a session needs its agent running; ask the employee to start the computer and connect it to the network, then try again",
            record.id, record.hostname
        )));
    };
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
        session = %session_id,
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
fn new_session_id() -> Result<SessionId, Refusal> {
    loop {
        let id = u64::from_be_bytes(
            random_bytes::<8>().map_err(|_| internal_error(&"random generator failed"))?,
        );
        if id != 0 {
            return Ok(SessionId(id));
        }
    }
}
