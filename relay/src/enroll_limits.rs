//! The organisation's limits on enrollment tokens: how many devices one
//! token may enroll and how long it may live. Administrators set them with
//! `deskside policy set enroll_token_max_uses 20` and
//! `deskside policy set enroll_token_max_lifetime 7d`; every
//! `enroll-token create` (technicians and administrators alike) is checked
//! against them.
//!
//! They live in the organisation's settings beside the diagnostics policy,
//! like the session grant (`policy.rs`), which keeps keys it does not know.

use std::time::Duration;

use deskside_protocol::Refusal;

use crate::policy::{save_setting, settings_object};
use crate::shared::Shared;
use crate::store::OrgId;

/// Settings key: most devices one enrollment token may enroll.
pub const MAX_USES_KEY: &str = "enroll_token_max_uses";
/// Settings key: longest lifetime of an enrollment token (humantime).
pub const MAX_LIFETIME_KEY: &str = "enroll_token_max_lifetime";

/// Default most uses: a floor of a small office in one token.
pub const DEFAULT_MAX_USES: u32 = 100;
/// Default longest lifetime: 30 days, long enough for a rollout wave.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(30 * 86_400);

/// Highest limit an organisation may set on uses.
const CEILING_USES: u32 = 100_000;
/// Longest lifetime an organisation may allow: one year.
const CEILING_LIFETIME: Duration = Duration::from_secs(365 * 86_400);
/// Shortest lifetime limit an organisation may set: less cannot be used.
const FLOOR_LIFETIME: Duration = Duration::from_secs(60);

/// The limits in force for one organisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnrollLimits {
    /// Most devices per token.
    pub max_uses: u32,
    /// Longest lifetime.
    pub max_lifetime: Duration,
}

impl Default for EnrollLimits {
    fn default() -> Self {
        Self {
            max_uses: DEFAULT_MAX_USES,
            max_lifetime: DEFAULT_MAX_LIFETIME,
        }
    }
}

impl EnrollLimits {
    /// Reads the limits from the settings object; unreadable or missing
    /// values fall back to the defaults.
    pub fn from_settings(settings: &serde_json::Map<String, serde_json::Value>) -> Self {
        let mut limits = Self::default();
        if let Some(value) = settings.get(MAX_USES_KEY) {
            match value.as_str().map(parse_max_uses) {
                Some(Ok(uses)) => limits.max_uses = uses,
                _ => tracing::warn!(stored = %value, "ignoring an unreadable {MAX_USES_KEY}"),
            }
        }
        if let Some(value) = settings.get(MAX_LIFETIME_KEY) {
            match value.as_str().map(parse_max_lifetime) {
                Some(Ok(lifetime)) => limits.max_lifetime = lifetime,
                _ => tracing::warn!(stored = %value, "ignoring an unreadable {MAX_LIFETIME_KEY}"),
            }
        }
        limits
    }

    /// Checks a token request against the limits, with a refusal that
    /// says what is allowed and who can change it.
    pub fn check(&self, uses: u32, expires_in_secs: u64) -> Result<(), Refusal> {
        if uses == 0 || uses > self.max_uses {
            return Err(Refusal::Invalid(format!(
                "an enrollment token may enroll from 1 to {} devices in this organisation (policy {MAX_USES_KEY}), not {uses}: ask for fewer uses, or ask an administrator to raise the limit",
                self.max_uses
            )));
        }
        if expires_in_secs == 0 || expires_in_secs > self.max_lifetime.as_secs() {
            return Err(Refusal::Invalid(format!(
                "an enrollment token may live at most {} in this organisation (policy {MAX_LIFETIME_KEY}), not {}: ask for a shorter --expires, or ask an administrator to raise the limit",
                humantime::format_duration(self.max_lifetime),
                humantime::format_duration(Duration::from_secs(expires_in_secs))
            )));
        }
        Ok(())
    }

    /// Adds the limits to the policy JSON shown to technicians.
    pub fn add_to_public(&self, policy_json: Vec<u8>) -> Vec<u8> {
        let Ok(serde_json::Value::Object(mut object)) =
            serde_json::from_slice::<serde_json::Value>(&policy_json)
        else {
            return policy_json;
        };
        object.insert(MAX_USES_KEY.to_owned(), self.max_uses.into());
        object.insert(
            MAX_LIFETIME_KEY.to_owned(),
            humantime::format_duration(self.max_lifetime)
                .to_string()
                .into(),
        );
        serde_json::to_vec(&object).unwrap_or(policy_json)
    }
}

/// Parses `enroll_token_max_uses` as an administrator types it.
pub fn parse_max_uses(value: &str) -> Result<u32, String> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|uses| (1..=CEILING_USES).contains(uses))
        .ok_or_else(|| {
            format!("{MAX_USES_KEY} takes a whole number from 1 to {CEILING_USES}, not {value:?}")
        })
}

/// Parses `enroll_token_max_lifetime` as an administrator types it.
pub fn parse_max_lifetime(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value.trim())
        .ok()
        .filter(|lifetime| (FLOOR_LIFETIME..=CEILING_LIFETIME).contains(lifetime))
        .ok_or_else(|| {
            format!("{MAX_LIFETIME_KEY} takes a duration from 1m to 365d, such as 7d or 30d, not {value:?}")
        })
}

/// Whether `key` is one of this module's settings.
pub fn is_key(key: &str) -> bool {
    key == MAX_USES_KEY || key == MAX_LIFETIME_KEY
}

/// The organisation's limits.
pub async fn load(shared: &Shared, org: OrgId) -> Result<EnrollLimits, Refusal> {
    Ok(EnrollLimits::from_settings(
        &settings_object(shared, org).await?,
    ))
}

/// Sets one of the limits (validated) and audits it as `policy.set`.
pub async fn set(
    shared: &Shared,
    org: OrgId,
    key: &str,
    value: &str,
    actor: &str,
) -> Result<EnrollLimits, Refusal> {
    let text = match key {
        MAX_USES_KEY => parse_max_uses(value).map_err(Refusal::Invalid)?.to_string(),
        _ => humantime::format_duration(parse_max_lifetime(value).map_err(Refusal::Invalid)?)
            .to_string(),
    };
    let mut object = settings_object(shared, org).await?;
    object.insert(key.to_owned(), serde_json::Value::String(text.clone()));
    let limits = EnrollLimits::from_settings(&object);
    save_setting(shared, org, object, key, text, actor).await?;
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> serde_json::Map<String, serde_json::Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String((*v).to_owned())))
            .collect()
    }

    #[test]
    fn defaults_are_a_hundred_uses_and_thirty_days() {
        let limits = EnrollLimits::from_settings(&serde_json::Map::new());
        assert_eq!(limits.max_uses, 100);
        assert_eq!(limits.max_lifetime, Duration::from_secs(30 * 86_400));
        assert!(limits.check(100, 30 * 86_400).is_ok());
        // What a technician could ask before: 100,000 uses for a year.
        let error = limits.check(100_000, 3600).unwrap_err().to_string();
        assert!(error.contains("from 1 to 100 devices"), "{error}");
        assert!(error.contains(MAX_USES_KEY), "{error}");
        let error = limits.check(1, 365 * 86_400).unwrap_err().to_string();
        assert!(error.contains("at most 30days"), "{error}");
        assert!(error.contains("administrator"), "{error}");
        assert!(limits.check(0, 60).is_err());
        assert!(limits.check(1, 0).is_err());
    }

    #[test]
    fn stored_limits_apply_and_bad_ones_fall_back() {
        let limits = EnrollLimits::from_settings(&settings(&[
            (MAX_USES_KEY, "5"),
            (MAX_LIFETIME_KEY, "2d"),
        ]));
        assert_eq!(
            limits,
            EnrollLimits {
                max_uses: 5,
                max_lifetime: Duration::from_secs(2 * 86_400)
            }
        );
        assert!(limits.check(6, 60).is_err());
        assert!(limits.check(5, 2 * 86_400 + 1).is_err());
        let fallback = EnrollLimits::from_settings(&settings(&[
            (MAX_USES_KEY, "lots"),
            (MAX_LIFETIME_KEY, "forever"),
        ]));
        assert_eq!(fallback, EnrollLimits::default());
    }

    #[test]
    fn values_are_bounded() {
        assert_eq!(parse_max_uses(" 20 "), Ok(20));
        for bad in ["0", "100001", "-1", "ten", ""] {
            assert!(parse_max_uses(bad)
                .unwrap_err()
                .contains("from 1 to 100000"));
        }
        assert_eq!(
            parse_max_lifetime("7d"),
            Ok(Duration::from_secs(7 * 86_400))
        );
        for bad in ["30s", "366d", "soon"] {
            assert!(parse_max_lifetime(bad)
                .unwrap_err()
                .contains("from 1m to 365d"));
        }
    }

    #[test]
    fn the_public_policy_shows_the_limits() {
        let shown =
            EnrollLimits::default().add_to_public(br#"{"diagnostics_retention":10}"#.to_vec());
        let value: serde_json::Value = serde_json::from_slice(&shown).unwrap_or_default();
        assert_eq!(value[MAX_USES_KEY], 100);
        assert_eq!(value[MAX_LIFETIME_KEY], "30days");
        assert_eq!(value["diagnostics_retention"], 10);
    }
}
