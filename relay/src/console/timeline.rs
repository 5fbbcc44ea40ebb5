//! Timeline requests (`deskside timeline`): one device, or the fleet.
//!
//! Each handler runs after the dispatch in `console_conn` checked the
//! caller's role and token; it never reads the connection itself.

use deskside_protocol::console::ConsoleResponse;
use deskside_protocol::Refusal;

use super::Caller;
use crate::conn::check_text;

/// One device's timeline episodes.
pub async fn device(
    caller: Caller<'_>,
    device: String,
    since_ms: i64,
    until_ms: i64,
) -> Result<ConsoleResponse, Refusal> {
    let Caller { shared, org, .. } = caller;
    check_text("device", &device, 256)?;
    crate::timeline::device_timeline(shared, org, device, since_ms, until_ms).await
}

/// The fleet's timeline episodes, optionally for one group.
pub async fn fleet(
    caller: Caller<'_>,
    group: Option<String>,
    since_ms: i64,
    until_ms: i64,
) -> Result<ConsoleResponse, Refusal> {
    let Caller { shared, org, .. } = caller;
    if let Some(group) = &group {
        check_text("group", group, 64)?;
    }
    crate::timeline::fleet_timeline(shared, org, group, since_ms, until_ms).await
}
