//! Diagnostics requests (`deskside diag`): a fresh snapshot from an online
//! device, and the stored history.
//!
//! Each handler runs after the dispatch in `console_conn` checked the
//! caller's role and token; it never reads the connection itself.

use deskside_protocol::console::{ConsoleResponse, StoredDiagnostics};
use deskside_protocol::Refusal;

use super::{held_elsewhere, run, Caller};
use crate::conn::check_text;
use crate::presence::AgentCommand;

/// Longest wait for an agent's snapshot: collection plus a throughput test
/// take about 4 s; slow links and busy machines get ample slack.
const DIAGNOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(45);

/// Asks an online device for a fresh snapshot, judges it and stores it.
pub async fn collect(
    caller: Caller<'_>,
    device: String,
    throughput: bool,
) -> Result<ConsoleResponse, Refusal> {
    let Caller {
        shared,
        technician,
        org,
        actor,
        now,
        ..
    } = caller;
    check_text("device", &device, 256)?;
    let named = device.clone();
    let record = run(shared, move |s| s.find_device(org, &device)).await??;
    let Some(commands) = shared.presence.commands(record.id) else {
        // Another relay may hold it: the console asks that one.
        if let Some(elsewhere) = held_elsewhere::refusal(shared, record.id, &named).await? {
            return Err(elsewhere);
        }
        return Err(Refusal::Invalid(format!(
            "{} ({}) is offline: its last stored snapshot is in `deskside diag history {}`",
            record.id, record.hostname, record.id
        )));
    };
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
    let judged = crate::diagnostics::judge(snapshot, &policy.thresholds())
        .map_err(|e| Refusal::Invalid(format!("the agent sent an unreadable snapshot: {e}")))?;
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

/// A device's stored snapshots, newest first.
pub async fn history(
    caller: Caller<'_>,
    device: String,
    limit: u32,
) -> Result<ConsoleResponse, Refusal> {
    let Caller { shared, org, .. } = caller;
    check_text("device", &device, 256)?;
    let record = run(shared, move |s| s.find_device(org, &device)).await??;
    let id = record.id;
    let rows = run(shared, move |s| {
        s.diagnostics_history(org, id, limit.min(1000))
    })
    .await?;
    let summary = record.summary(shared.is_online_anywhere(id).await);
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
