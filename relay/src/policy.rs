//! The organisation's diagnostics policy as the relay keeps it: loaded from
//! the organisation's settings, with a per-organisation salt created on
//! first use (agents hash Wi‑Fi identifiers with it).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use deskside_diag::policy::Policy;
use deskside_protocol::Refusal;

use crate::secrets::random_bytes;
use crate::server::{internal_error, now_secs, Shared};
use crate::store::OrgId;

/// Loads the policy, creating the identifier salt if there is none yet.
pub async fn load(shared: &Shared, org: OrgId) -> Result<Policy, Refusal> {
    let stored = shared
        .store(move |s| s.organisation_settings(org))
        .await?
        .map_err(|e| internal_error(&e))?;
    let mut policy = Policy::from_json(stored.as_bytes());
    if policy.identifier_salt.is_none() {
        let salt = random_bytes::<16>().map_err(|_| internal_error(&"random generator failed"))?;
        policy.identifier_salt = Some(URL_SAFE_NO_PAD.encode(salt));
        save(
            shared,
            org,
            &policy,
            "policy.salt_created",
            serde_json::json!({}),
            "system",
        )
        .await?;
    }
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
    let text = serde_json::to_string(policy).map_err(|e| internal_error(&e))?;
    let actor = actor.to_owned();
    let now = now_secs();
    shared
        .store(move |s| s.set_organisation_settings(org, &text, action, &change, &actor, now))
        .await?
        .map_err(|e| internal_error(&e))
}

/// The policy as shown to technicians: without the salt.
pub fn public_json(policy: &Policy) -> Vec<u8> {
    let mut shown = policy.clone();
    shown.identifier_salt = None;
    serde_json::to_vec(&shown).unwrap_or_default()
}
