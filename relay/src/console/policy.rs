//! Policy requests (`deskside policy`): show, set (pushed to connected agents).
//!
//! Each handler runs after the dispatch in `console_conn` checked the
//! caller's role and token; it never reads the connection itself.

use deskside_protocol::console::{ConsoleResponse, PolicySetOutcome};
use deskside_protocol::Refusal;

use super::Caller;
use crate::conn::check_text;

/// The organisation's policy, as the console shows it.
pub async fn show(caller: Caller<'_>) -> Result<ConsoleResponse, Refusal> {
    let Caller { shared, org, .. } = caller;
    let policy = crate::policy::load(shared, org).await?;
    let grant = crate::policy::session_grant(shared, org).await?;
    let limits = crate::enroll_limits::load(shared, org).await?;
    Ok(ConsoleResponse::Policy(
        limits.add_to_public(crate::policy::public_json(&policy, grant)),
    ))
}

/// Changes one policy key and pushes the policy to connected agents.
pub async fn set(
    caller: Caller<'_>,
    key: String,
    value: String,
) -> Result<ConsoleResponse, Refusal> {
    let Caller {
        shared, org, actor, ..
    } = caller;
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
