//! The organisation's diagnostics policy: what agents may report and how
//! snapshots are judged and kept.
//!
//! Stored by the relay in the organisation's settings (JSON), changed by an
//! administrator with `deskside policy set KEY VALUE`, and sent to agents
//! when they connect. Unknown keys in stored JSON are ignored (newer relays
//! may add some); keys set through [`Policy::set`] are validated.

use serde::{Deserialize, Serialize};

use crate::thresholds::Thresholds;

/// Whether collecting diagnostics needs the employee's approval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consent {
    /// Technicians may collect diagnostics without asking.
    #[default]
    NotRequired,
    /// The employee approves each collection requested by a technician.
    Employee,
}

/// Default number of snapshots the relay keeps per device.
pub const DEFAULT_RETENTION: u32 = 200;

/// The policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Policy {
    /// Report Wi‑Fi network names and access points in clear (otherwise as
    /// salted hashes).
    pub wifi_identifiers_in_clear: bool,
    /// The organisation's salt for hashing identifiers, from relays before
    /// the identifier key; agents use it only when no key is given. Relays
    /// now remove it from their database.
    pub identifier_salt: Option<String>,
    /// The organisation's key (base64url, 32 bytes) for hashing Wi‑Fi
    /// identifiers with HMAC-SHA256. The relay derives it from a key file
    /// outside its database and adds it only to the policy it sends to
    /// agents; it is never stored in the database nor shown to consoles.
    pub identifier_key: Option<String>,
    /// Whether technician-requested diagnostics need the employee's approval.
    pub diagnostics_consent: Consent,
    /// Snapshots kept per device.
    pub diagnostics_retention: u32,
    /// Store public IP addresses in full in snapshots and audit rows
    /// (otherwise the relay keeps IPv4 to its /24 and IPv6 to its /48).
    pub store_full_ip_addresses: bool,
    /// Threshold overrides (a partial [`Thresholds`] object).
    pub thresholds: serde_json::Map<String, serde_json::Value>,
    /// Whether connected agents record the timeline of link and path
    /// quality (one small sample per [`Policy::monitoring_interval`]).
    pub monitoring: bool,
    /// Seconds between timeline samples. Default 60.
    pub monitoring_interval: u32,
    /// Days the relay keeps timeline samples (full resolution for the last
    /// 48 hours, 10-minute summaries before). Default 30.
    pub timeline_retention_days: u32,
    /// Added to the ITIL priority of help requests (1 critical … 5
    /// planning, from urgency and impact), clamped to 1–5: −1 makes every
    /// request one step more urgent. Default 0.
    pub request_priority_shift: i8,
}

/// Default seconds between timeline samples: one a minute keeps the
/// agent's upload under 1 KB a minute and still dates an episode to the
/// minute a call froze.
pub const DEFAULT_MONITORING_INTERVAL: u32 = 60;

/// Default days of timeline kept by the relay.
pub const DEFAULT_TIMELINE_RETENTION_DAYS: u32 = 30;

impl Default for Policy {
    fn default() -> Self {
        Self {
            wifi_identifiers_in_clear: false,
            identifier_salt: None,
            identifier_key: None,
            diagnostics_consent: Consent::NotRequired,
            diagnostics_retention: DEFAULT_RETENTION,
            store_full_ip_addresses: false,
            thresholds: serde_json::Map::new(),
            monitoring: true,
            monitoring_interval: DEFAULT_MONITORING_INTERVAL,
            timeline_retention_days: DEFAULT_TIMELINE_RETENTION_DAYS,
            request_priority_shift: 0,
        }
    }
}

/// Keys an administrator may set, for help texts.
pub const SETTABLE_KEYS: &str = "wifi_identifiers_in_clear (true|false), store_full_ip_addresses (true|false), diagnostics_consent (not_required|employee), diagnostics_retention (1–100000), monitoring (on|off), monitoring_interval (seconds, 1–3600), timeline_retention_days (1–400), request_priority_shift (−4–4, added to help requests' priority 1–5), thresholds.NAME (a number; see `deskside policy show`)";

impl Policy {
    /// Parses stored JSON; anything unreadable gives the defaults.
    pub fn from_json(bytes: &[u8]) -> Policy {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    /// The thresholds with this policy's overrides applied. Overrides that
    /// no longer validate (for example after an upgrade renamed a key) are
    /// ignored rather than breaking every verdict.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds::with_overrides(&serde_json::Value::Object(self.thresholds.clone()))
            .unwrap_or_default()
    }

    /// Sets one key from text, validating it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let value = value.trim();
        match key {
            "store_full_ip_addresses" => {
                self.store_full_ip_addresses = match value {
                    "true" | "yes" | "on" => true,
                    "false" | "no" | "off" => false,
                    _ => return Err(format!("{key} takes true or false, not {value:?}")),
                }
            }
            "wifi_identifiers_in_clear" => {
                self.wifi_identifiers_in_clear = match value {
                    "true" | "yes" | "on" => true,
                    "false" | "no" | "off" => false,
                    _ => return Err(format!("{key} takes true or false, not {value:?}")),
                }
            }
            "diagnostics_consent" => {
                self.diagnostics_consent = match value {
                    "not_required" => Consent::NotRequired,
                    "employee" => Consent::Employee,
                    _ => {
                        return Err(format!(
                            "{key} takes not_required or employee, not {value:?}"
                        ))
                    }
                }
            }
            "diagnostics_retention" => {
                self.diagnostics_retention = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=100_000).contains(n))
                    .ok_or_else(|| {
                        format!("{key} takes a number of snapshots from 1 to 100000, not {value:?}")
                    })?;
            }
            "monitoring" => {
                self.monitoring = match value {
                    "true" | "yes" | "on" => true,
                    "false" | "no" | "off" => false,
                    _ => return Err(format!("{key} takes on or off, not {value:?}")),
                }
            }
            "monitoring_interval" => {
                self.monitoring_interval = value
                    .trim_end_matches('s')
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=3600).contains(n))
                    .ok_or_else(|| {
                        format!("{key} takes a number of seconds from 1 to 3600 (60 is the default), not {value:?}")
                    })?;
            }
            "timeline_retention_days" => {
                self.timeline_retention_days = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=400).contains(n))
                    .ok_or_else(|| {
                        format!("{key} takes a number of days from 1 to 400, not {value:?}")
                    })?;
            }
            "request_priority_shift" => {
                self.request_priority_shift = value
                    .parse::<i8>()
                    .ok()
                    .filter(|n| (-4..=4).contains(n))
                    .ok_or_else(|| {
                        format!(
                            "{key} takes a number from -4 to 4 (0 is the default), not {value:?}"
                        )
                    })?;
            }
            _ => {
                let Some(name) = key.strip_prefix("thresholds.") else {
                    return Err(format!(
                        "unknown policy key {key:?}; the keys are: {SETTABLE_KEYS}"
                    ));
                };
                let number: f64 = value
                    .parse()
                    .map_err(|_| format!("{key} takes a number, not {value:?}"))?;
                let mut overrides = self.thresholds.clone();
                overrides.insert(name.to_owned(), serde_json::json!(number));
                Thresholds::with_overrides(&serde_json::Value::Object(overrides.clone()))
                    .map_err(|e| e.to_string())?;
                self.thresholds = overrides;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated_and_change_the_policy() {
        let mut policy = Policy::default();
        policy.set("wifi_identifiers_in_clear", "true").unwrap();
        assert!(policy.wifi_identifiers_in_clear);
        policy.set("diagnostics_consent", "employee").unwrap();
        assert_eq!(policy.diagnostics_consent, Consent::Employee);
        policy.set("diagnostics_retention", "30").unwrap();
        assert_eq!(policy.diagnostics_retention, 30);
        assert!(policy.set("diagnostics_retention", "0").is_err());
        assert!(policy.monitoring);
        policy.set("monitoring", "off").unwrap();
        assert!(!policy.monitoring);
        policy.set("monitoring_interval", "5s").unwrap();
        assert_eq!(policy.monitoring_interval, 5);
        assert!(policy.set("monitoring_interval", "0").is_err());
        assert!(policy.set("monitoring_interval", "2h").is_err());
        policy.set("timeline_retention_days", "7").unwrap();
        assert_eq!(policy.timeline_retention_days, 7);
        assert!(policy.set("timeline_retention_days", "0").is_err());
        assert!(policy.set("wifi_identifiers_in_clear", "maybe").is_err());
        assert!(policy
            .set("colour", "blue")
            .unwrap_err()
            .contains("unknown policy key"));
        assert!(policy.set("thresholds.no_such_threshold", "1").is_err());
        assert!(policy
            .set("thresholds.wifi_signal_weak_dbm", "loud")
            .is_err());
    }

    #[test]
    fn threshold_overrides_reach_the_classifier() {
        let defaults = Thresholds::default();
        let name = serde_json::to_value(&defaults)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .find(|k| k.contains("path_loss"))
            .cloned()
            .expect("a path loss threshold exists");
        let mut policy = Policy::default();
        policy.set(&format!("thresholds.{name}"), "3.5").unwrap();
        let applied = serde_json::to_value(policy.thresholds()).unwrap();
        assert_eq!(applied[&name], serde_json::json!(3.5));
        let round_trip = Policy::from_json(&serde_json::to_vec(&policy).unwrap());
        assert_eq!(round_trip, policy);
        assert_eq!(Policy::from_json(b"not json"), Policy::default());
    }
}
