//! Device requests (`deskside devices`): list, show, revoke.
//!
//! Each handler runs after the dispatch in `console_conn` checked the
//! caller's role and token; it never reads the connection itself.

use deskside_protocol::console::ConsoleResponse;
use deskside_protocol::Refusal;

use super::{run, Caller};
use crate::conn::{check_text, CLOSE_REVOKED};

/// The organisation's devices, each marked online or not.
pub async fn list(caller: Caller<'_>) -> Result<ConsoleResponse, Refusal> {
    let Caller { shared, org, .. } = caller;
    let devices = run(shared, move |s| s.list_devices(org)).await?;
    let online = shared.online_in(org).await;
    Ok(ConsoleResponse::Devices(
        devices
            .iter()
            .map(|d| d.summary(online.contains(&d.id)))
            .collect(),
    ))
}

/// One device, found by id or hostname.
pub async fn show(caller: Caller<'_>, device: String) -> Result<ConsoleResponse, Refusal> {
    let Caller { shared, org, .. } = caller;
    check_text("device", &device, 256)?;
    let record = run(shared, move |s| s.find_device(org, &device)).await??;
    let online = shared.is_online_anywhere(record.id).await;
    Ok(ConsoleResponse::Device(record.summary(online)))
}

/// Revokes a device and closes its connection at once.
pub async fn revoke(caller: Caller<'_>, device: String) -> Result<ConsoleResponse, Refusal> {
    let Caller {
        shared,
        org,
        actor,
        now,
        ..
    } = caller;
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
