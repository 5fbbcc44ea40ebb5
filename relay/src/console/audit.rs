//! Audit requests (`deskside audit list`).
//!
//! Each handler runs after the dispatch in `console_conn` checked the
//! caller's role and token; it never reads the connection itself.

use deskside_protocol::console::{AuditEntry, ConsoleResponse};
use deskside_protocol::Refusal;

use super::{run, Caller};
use crate::conn::check_text;

/// Most audit rows one `AuditList` returns.
const MAX_AUDIT_ROWS: usize = 10_000;

/// Audit rows, optionally about one device, newest first.
pub async fn list(
    caller: Caller<'_>,
    device: Option<String>,
    limit: u32,
) -> Result<ConsoleResponse, Refusal> {
    let Caller { shared, org, .. } = caller;
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
