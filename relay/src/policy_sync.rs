//! Policy changes made through another relay reach this relay's agents.
//!
//! The relay a console changes the policy on pushes it to its own connected
//! agents at once (`console/policy.rs`). Relays sharing a PostgreSQL store
//! never talk to each other, so each one also watches the store: a task the
//! relay owns reads every organisation's settings every third of the
//! directory lease (the heartbeat's period) and, when the diagnostics policy
//! of an organisation differs from the one it saw last, pushes it to its
//! connected agents of that organisation. An agent of another relay so
//! applies a change within about a third of the lease plus its
//! confirmation; agents that connect later get the policy with `Attached`
//! anyway.
//!
//! Only with a shared store: with SQLite every change goes through this
//! relay, and the task is not started. The relay that made a change sees
//! it here too and pushes it once more; applying the same policy again
//! changes nothing on an agent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use deskside_diag::policy::Policy;

use crate::shared::Shared;
use crate::store::OrgId;

/// What an organisation's agents are told, from its stored settings: the
/// diagnostics policy alone (relay-only keys such as the session grant are
/// not theirs, and their changes push nothing).
fn agent_policy(settings: &str) -> Policy {
    Policy::from_json(settings.as_bytes())
}

/// The organisations whose agent policy changed since `seen`, which is
/// updated. An organisation seen for the first time is not a change: its
/// agents got the policy in force when they attached.
fn changed(seen: &mut HashMap<OrgId, Policy>, now: Vec<(OrgId, String)>) -> Vec<OrgId> {
    let mut changed = Vec::new();
    for (org, settings) in now {
        let policy = agent_policy(&settings);
        if let Some(before) = seen.insert(org, policy.clone()) {
            if before != policy {
                changed.push(org);
            }
        }
    }
    changed
}

/// Watches the shared store for policy changes until the relay stops (see
/// the module docs). Owned by the relay's tasks.
pub async fn run(shared: Arc<Shared>) {
    let period = Duration::from_secs(
        u64::try_from(shared.directory.lease_secs() / 3)
            .unwrap_or(1)
            .max(1),
    );
    let mut seen = HashMap::new();
    loop {
        match shared
            .store(|store| store.all_organisation_settings())
            .await
        {
            Ok(Ok(now)) => {
                for org in changed(&mut seen, now) {
                    push(&shared, org).await;
                }
            }
            Ok(Err(e)) => tracing::warn!("cannot read the organisations' policies: {e}"),
            Err(_) => {}
        }
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = shared.tasks.stopping() => return,
        }
    }
}

/// Pushes `org`'s policy to this relay's connected agents of it.
async fn push(shared: &Shared, org: OrgId) {
    let result = async {
        let policy = crate::policy::load(shared, org).await?;
        crate::policy::push_to_connected(shared, org, &policy).await
    }
    .await;
    match result {
        Ok(reach) => tracing::info!(
            org = org.0,
            applied = reach.applied,
            connected = reach.connected,
            "the policy changed through another relay: pushed to this relay's agents"
        ),
        Err(refusal) => tracing::warn!(
            org = org.0,
            "the policy changed through another relay and could not be pushed: {refusal}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_change_of_the_agents_policy_after_the_first_look_is_pushed() {
        let mut seen = HashMap::new();
        let first = vec![
            (OrgId(1), "{}".to_owned()),
            (OrgId(2), r#"{"diagnostics_consent":"employee"}"#.to_owned()),
        ];
        assert!(
            changed(&mut seen, first).is_empty(),
            "a first look pushes nothing"
        );
        let same_but_grant = vec![
            (OrgId(1), r#"{"session_grant":"30m"}"#.to_owned()),
            (OrgId(2), r#"{"diagnostics_consent":"employee"}"#.to_owned()),
        ];
        assert!(
            changed(&mut seen, same_but_grant).is_empty(),
            "relay-only keys are not the agents'"
        );
        let consent_changed = vec![
            (OrgId(1), r#"{"session_grant":"30m"}"#.to_owned()),
            (
                OrgId(2),
                r#"{"diagnostics_consent":"not_required"}"#.to_owned(),
            ),
            (OrgId(3), "{}".to_owned()),
        ];
        assert_eq!(changed(&mut seen, consent_changed), vec![OrgId(2)]);
    }
}
