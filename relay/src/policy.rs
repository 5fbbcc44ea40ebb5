//! The organisation's diagnostics policy as the relay keeps it: loaded from
//! the organisation's settings; agents receive it with the organisation's
//! Wi‑Fi identifier key, which is derived from a key file and never stored
//! in the database (see `identifier_key`).
//!
//! The settings also hold relay-only keys that the diagnostics [`Policy`]
//! does not know, such as [`SESSION_GRANT_KEY`]; saving the policy keeps
//! them.

use std::time::Duration;

use deskside_diag::policy::Policy;
use deskside_protocol::Refusal;

use crate::clock::now_secs;
use crate::conn::internal_error;
use crate::shared::Shared;
use crate::store::OrgId;

/// Settings key of how long a session grant lasts (humantime, e.g. `30m`).
pub const SESSION_GRANT_KEY: &str = "session_grant";

/// How long a session grant lasts when the organisation set nothing.
pub const DEFAULT_SESSION_GRANT: Duration = Duration::from_secs(3600);

/// Shortest grant an organisation may set: less is not enough to help.
const MIN_SESSION_GRANT: Duration = Duration::from_secs(60);

/// Longest grant an organisation may set: one working day.
const MAX_SESSION_GRANT: Duration = Duration::from_secs(12 * 3600);

/// Parses a session grant as an administrator types it.
pub fn parse_session_grant(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value.trim())
        .ok()
        .filter(|grant| (MIN_SESSION_GRANT..=MAX_SESSION_GRANT).contains(grant))
        .ok_or_else(|| {
            format!("{SESSION_GRANT_KEY} takes a duration from 1m to 12h, such as 30m or 2h, not {value:?}")
        })
}

/// The stored settings as a JSON object (empty if unreadable).
pub(crate) async fn settings_object(
    shared: &Shared,
    org: OrgId,
) -> Result<serde_json::Map<String, serde_json::Value>, Refusal> {
    let stored = shared
        .store(move |s| s.organisation_settings(org))
        .await?
        .map_err(|e| internal_error(&e))?;
    Ok(match serde_json::from_str(&stored) {
        Ok(serde_json::Value::Object(object)) => object,
        _ => serde_json::Map::new(),
    })
}

/// How long the organisation's session grants last.
pub async fn session_grant(shared: &Shared, org: OrgId) -> Result<Duration, Refusal> {
    let settings = settings_object(shared, org).await?;
    Ok(match settings.get(SESSION_GRANT_KEY) {
        None => DEFAULT_SESSION_GRANT,
        Some(value) => match value.as_str().map(parse_session_grant) {
            Some(Ok(grant)) => grant,
            _ => {
                tracing::warn!(%org, stored = %value, "ignoring an unreadable session_grant setting; using the default");
                DEFAULT_SESSION_GRANT
            }
        },
    })
}

/// Sets the session grant (validated) and audits it as `policy.set`.
pub async fn set_session_grant(
    shared: &Shared,
    org: OrgId,
    value: &str,
    actor: &str,
) -> Result<Duration, Refusal> {
    let grant = parse_session_grant(value).map_err(Refusal::Invalid)?;
    let text = humantime::format_duration(grant).to_string();
    let mut settings = settings_object(shared, org).await?;
    settings.insert(
        SESSION_GRANT_KEY.to_owned(),
        serde_json::Value::String(text.clone()),
    );
    save_setting(shared, org, settings, SESSION_GRANT_KEY, text, actor).await?;
    Ok(grant)
}

/// Stores `settings`, in which `key` was just set to `text`, and audits the
/// change as `policy.set`: the one place an organisation setting is saved.
pub(crate) async fn save_setting(
    shared: &Shared,
    org: OrgId,
    settings: serde_json::Map<String, serde_json::Value>,
    key: &str,
    text: String,
    actor: &str,
) -> Result<(), Refusal> {
    let stored = serde_json::Value::Object(settings).to_string();
    let change = serde_json::json!({ "key": key, "value": text });
    let actor = actor.to_owned();
    let now = now_secs();
    shared
        .store(move |s| {
            s.set_organisation_settings(org, &stored, "policy.set", &change, &actor, now)
        })
        .await?
        .map_err(|e| internal_error(&e))?;
    Ok(())
}

/// Loads the policy with the organisation's identifier key (derived from
/// the key file, see `identifier_key`; never stored).
///
/// Migration: a salt that older relays stored in the database is removed
/// (audited as `policy.identifier_salt_removed`); agents then hash with the
/// key, and the old salted hashes in stored snapshots can no longer be
/// tested against candidate names by someone holding the database.
pub async fn load(shared: &Shared, org: OrgId) -> Result<Policy, Refusal> {
    let stored = shared
        .store(move |s| s.organisation_settings(org))
        .await?
        .map_err(|e| internal_error(&e))?;
    let mut policy = Policy::from_json(stored.as_bytes());
    if policy.identifier_salt.is_some() {
        policy.identifier_salt = None;
        save(
            shared,
            org,
            &policy,
            "policy.identifier_salt_removed",
            serde_json::json!({ "reason": "Wi-Fi identifiers are now hashed with a key kept outside the database" }),
            "system",
        )
        .await?;
    }
    policy.identifier_key = Some(shared.identifier_key.for_org(org));
    Ok(policy)
}

/// Stores the policy and audits the change.
pub async fn save(
    shared: &Shared,
    org: OrgId,
    policy: &Policy,
    action: &'static str,
    change: serde_json::Value,
    actor: &str,
) -> Result<(), Refusal> {
    // Keep the keys the diagnostics policy does not know (session_grant).
    let mut settings = settings_object(shared, org).await?;
    // The identifier key never reaches the database, and no salt either.
    let mut stored = policy.clone();
    stored.identifier_key = None;
    stored.identifier_salt = None;
    match serde_json::to_value(&stored).map_err(|e| internal_error(&e))? {
        serde_json::Value::Object(fields) => settings.extend(fields),
        other => {
            return Err(internal_error(&format!(
                "the policy is not an object: {other}"
            )))
        }
    }
    let text = serde_json::Value::Object(settings).to_string();
    let actor = actor.to_owned();
    let now = now_secs();
    shared
        .store(move |s| s.set_organisation_settings(org, &text, action, &change, &actor, now))
        .await?
        .map_err(|e| internal_error(&e))
}

/// How long `policy set` waits for connected agents to confirm a change:
/// an attached agent answers within a round trip; one that does not within
/// this is reported as not (yet) applying it.
const POLICY_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// How far a policy change reached: `applied` of `connected` agents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reach {
    /// Agents that confirmed they apply the new policy.
    pub applied: u32,
    /// Agents of the organisation connected when it changed.
    pub connected: u32,
}

/// Sends `policy` (with its salt: agents hash with it) to every connected
/// agent of `org` and waits up to [`POLICY_ACK_TIMEOUT`] for each to
/// confirm. Agents that connect later get it with `Attached`; parked ones
/// are asked to attach within their reconnect window (and are not counted).
pub async fn push_to_connected(
    shared: &Shared,
    org: OrgId,
    policy: &Policy,
) -> Result<Reach, Refusal> {
    let json = serde_json::to_vec(policy).map_err(|e| internal_error(&e))?;
    let online: std::collections::HashSet<_> = shared.presence.online().into_iter().collect();
    let devices = shared
        .store(move |s| s.list_devices(org))
        .await?
        .map_err(|e| internal_error(&e))?;
    let deadline = tokio::time::Instant::now() + POLICY_ACK_TIMEOUT;
    let mut waiting = Vec::new();
    let mut parked = 0u32;
    for device in devices
        .iter()
        .filter(|d| d.revoked_at.is_none() && online.contains(&d.id))
    {
        // A parked agent gets the policy when it attaches, which its next
        // heartbeat's answer asks for within its reconnect window: calling
        // a whole parked fleet at once would be a reconnect storm.
        if shared.presence.refresh_parked(device.id) {
            parked += 1;
            continue;
        }
        let Some(commands) = shared.presence.commands(device.id) else {
            continue;
        };
        let (applied, confirmed) = tokio::sync::oneshot::channel();
        let command = crate::presence::AgentCommand::ApplyPolicy {
            json: json.clone(),
            applied,
        };
        match tokio::time::timeout_at(deadline, commands.send(command)).await {
            Ok(Ok(())) => waiting.push((device.id, confirmed)),
            // Gone or stuck: counted as connected, not applied.
            _ => waiting.push((device.id, tokio::sync::oneshot::channel().1)),
        }
    }
    if parked > 0 {
        tracing::info!(
            parked,
            "parked agents apply the new policy when they attach, within their reconnect window"
        );
    }
    let mut reach = Reach {
        applied: 0,
        connected: u32::try_from(waiting.len()).unwrap_or(u32::MAX),
    };
    for (device, confirmed) in waiting {
        match tokio::time::timeout_at(deadline, confirmed).await {
            Ok(Ok(())) => reach.applied += 1,
            _ => tracing::warn!(%device, "the agent did not confirm the new policy"),
        }
    }
    Ok(reach)
}

/// The policy as shown to technicians: without the salt, with the session
/// grant.
pub fn public_json(policy: &Policy, session_grant: Duration) -> Vec<u8> {
    let mut shown = policy.clone();
    shown.identifier_salt = None;
    shown.identifier_key = None;
    let mut value = serde_json::to_value(&shown).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert(
            SESSION_GRANT_KEY.to_owned(),
            serde_json::Value::String(humantime::format_duration(session_grant).to_string()),
        );
    }
    serde_json::to_vec(&value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_grants_are_bounded_durations() {
        assert_eq!(parse_session_grant("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_session_grant(" 2h "), Ok(Duration::from_secs(7200)));
        for bad in ["10s", "13h", "soon", ""] {
            let error = parse_session_grant(bad).unwrap_err();
            assert!(error.contains("from 1m to 12h"), "{error}");
        }
    }

    #[test]
    fn the_public_policy_hides_the_salt_and_shows_the_grant() {
        let policy = Policy {
            identifier_salt: Some("secret-salt".to_owned()),
            identifier_key: Some("secret-key".to_owned()),
            ..Policy::default()
        };
        let shown: serde_json::Value =
            serde_json::from_slice(&public_json(&policy, DEFAULT_SESSION_GRANT))
                .unwrap_or_default();
        assert_eq!(shown["identifier_salt"], serde_json::Value::Null);
        assert_eq!(shown["identifier_key"], serde_json::Value::Null);
        assert_eq!(shown[SESSION_GRANT_KEY], "1h");
        // Old consoles still read it as a policy.
        assert_eq!(
            Policy::from_json(&public_json(&policy, DEFAULT_SESSION_GRANT)).diagnostics_retention,
            policy.diagnostics_retention
        );
    }
}
