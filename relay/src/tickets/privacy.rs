//! What leaves the relay follows the organisation's policy: before any
//! connector sees a delivery, its snapshot, verdict line and event text
//! pass through [`Outbound::apply`], the one filter for everything sent to
//! a ticketing system or a webhook.
//!
//! - Public addresses are truncated (`ip_privacy`, the same rule stored
//!   diagnostics follow) unless `store_full_ip_addresses`.
//! - Wi‑Fi identifiers (`ssid`, `bssid`) are hashed unless
//!   `wifi_identifiers_in_clear`: agents hash them already, but a request
//!   may carry a snapshot taken under an older policy (typed while the
//!   relay was unreachable, or filed while the organisation allowed clear
//!   names), or come from an agent that ignored the policy. A value in
//!   clear is hashed here exactly as agents hash (`hmac-sha256:` + the hex
//!   HMAC-SHA256 under the organisation's identifier key), so the same
//!   network reads the same in every ticket and in the relay's history.
//!
//! The policy read is the one in force when the event leaves, not when the
//! request was stored: a stricter policy applies to what is still waiting
//! in the outbox. Pure.

use base64::Engine as _;
use deskside_diag::policy::Policy;

use crate::store::DueDelivery;

/// The snapshot keys that hold Wi‑Fi identifiers.
const IDENTIFIER_KEYS: [&str; 2] = ["ssid", "bssid"];

/// Prefixes of identifiers an agent already hashed.
const HASHED: [&str; 2] = ["hmac-sha256:", "sha256:"];

/// The organisation's rules for what leaves the relay.
pub struct Outbound {
    full_addresses: bool,
    wifi_in_clear: bool,
    /// The organisation's identifier key; without one, identifiers in
    /// clear are removed instead of hashed.
    key: Option<ring::hmac::Key>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("full_addresses", &self.full_addresses)
            .field("wifi_in_clear", &self.wifi_in_clear)
            .finish_non_exhaustive()
    }
}

impl Outbound {
    /// The rules of `policy`, hashing with `identifier_key` (base64url, as
    /// agents receive it).
    pub fn new(policy: &Policy, identifier_key: Option<&str>) -> Self {
        let key = identifier_key
            .and_then(|k| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(k)
                    .ok()
            })
            .filter(|k| k.len() >= 16)
            .map(|k| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &k));
        Self {
            full_addresses: policy.store_full_ip_addresses,
            wifi_in_clear: policy.wifi_identifiers_in_clear,
            key,
        }
    }

    /// Applies the rules to what `delivery` will send: the request's
    /// snapshot, its verdict line (in the summary) and the event's text.
    /// The employee's own answers are sent as they wrote them.
    pub fn apply(&self, delivery: &mut DueDelivery) {
        if let Some(snapshot) = delivery.request.snapshot.as_mut() {
            if let Some(filtered) = self.snapshot(snapshot) {
                *snapshot = filtered;
            }
        }
        if let Some(line) = delivery.request.verdict_line.as_mut() {
            *line = self.text(line);
        }
        delivery.event.text = self.text(&delivery.event.text);
    }

    /// The snapshot JSON filtered; `None` when it needs no change or is
    /// not JSON (the relay stores only snapshots that parsed).
    fn snapshot(&self, json: &str) -> Option<String> {
        let mut value: serde_json::Value = serde_json::from_str(json).ok()?;
        let before = value.clone();
        if !self.full_addresses {
            crate::ip_privacy::truncate_in_json(&mut value);
        }
        if !self.wifi_in_clear {
            self.hash_identifiers(&mut value);
        }
        (value != before).then(|| value.to_string())
    }

    fn hash_identifiers(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(fields) => {
                for (name, field) in fields.iter_mut() {
                    if IDENTIFIER_KEYS.contains(&name.as_str()) {
                        if let serde_json::Value::String(text) = field {
                            if !HASHED.iter().any(|p| text.starts_with(p)) {
                                *field = match self.hash(text) {
                                    Some(hashed) => serde_json::Value::String(hashed),
                                    None => serde_json::Value::Null,
                                };
                            }
                        }
                    } else {
                        self.hash_identifiers(field);
                    }
                }
            }
            serde_json::Value::Array(items) => {
                items.iter_mut().for_each(|i| self.hash_identifiers(i))
            }
            _ => {}
        }
    }

    /// `value` hashed as agents hash it.
    fn hash(&self, value: &str) -> Option<String> {
        let tag = ring::hmac::sign(self.key.as_ref()?, value.as_bytes());
        Some(format!("hmac-sha256:{}", hex::encode(tag.as_ref())))
    }

    /// `text` with the public addresses among its words truncated, unless
    /// the policy keeps them.
    fn text(&self, text: &str) -> String {
        if self.full_addresses {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len());
        let mut word = String::new();
        let flush = |word: &mut String, out: &mut String| {
            // Sentence punctuation around an address is not part of it.
            let core = word.trim_matches(|c: char| matches!(c, ',' | ';' | '(' | ')' | '"'));
            let core = core.strip_suffix('.').unwrap_or(core);
            match crate::ip_privacy::truncate_text(core) {
                Some(short) => out.push_str(&word.replacen(core, &short, 1)),
                None => out.push_str(word),
            }
            word.clear();
        };
        for c in text.chars() {
            if c.is_whitespace() {
                flush(&mut word, &mut out);
                out.push(c);
            } else {
                word.push(c);
            }
        }
        flush(&mut word, &mut out);
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A test should panic on an unexpected error.
mod tests {
    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    fn delivery() -> DueDelivery {
        let mut d = crate::tickets::sample_delivery("session");
        d.request.snapshot = Some(
            serde_json::json!({
                "wifi": { "measured": { "ssid": "HomeNet", "bssid": "sha256:ab01", "signal_dbm": -70.0 } },
                "network": { "measured": { "dns_servers": ["81.2.69.160", "192.168.1.1"] } },
            })
            .to_string(),
        );
        d.request.verdict_line = Some("isp: packet loss towards 81.2.69.160.".into());
        d.event.text = "measured 2001:db8:1234:5678::1, gateway 192.168.1.1".into();
        d
    }

    fn policy(clear: bool) -> Policy {
        Policy {
            wifi_identifiers_in_clear: clear,
            store_full_ip_addresses: clear,
            ..Policy::default()
        }
    }

    #[test]
    fn by_default_identifiers_are_hashed_like_agents_do_and_addresses_truncated() {
        let mut d = delivery();
        Outbound::new(&policy(false), Some(KEY)).apply(&mut d);
        let snapshot: serde_json::Value =
            serde_json::from_str(d.request.snapshot.as_deref().unwrap()).unwrap();
        let wifi = &snapshot["wifi"]["measured"];
        // The agent's formula: HMAC-SHA256 under the decoded key, in hex.
        let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(KEY)
            .unwrap();
        let expected = hex::encode(
            ring::hmac::sign(
                &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
                b"HomeNet",
            )
            .as_ref(),
        );
        assert_eq!(wifi["ssid"], format!("hmac-sha256:{expected}"));
        assert_eq!(wifi["bssid"], "sha256:ab01", "already hashed: kept");
        assert_eq!(wifi["signal_dbm"], -70.0);
        assert_eq!(
            snapshot["network"]["measured"]["dns_servers"],
            serde_json::json!(["81.2.69.0/24", "192.168.1.1"])
        );
        assert_eq!(
            d.request.verdict_line.as_deref(),
            Some("isp: packet loss towards 81.2.69.0/24.")
        );
        assert_eq!(
            d.event.text,
            "measured 2001:db8:1234::/48, gateway 192.168.1.1"
        );
        // Without a key a name in clear cannot be hashed: it is left out.
        let mut d = delivery();
        Outbound::new(&policy(false), None).apply(&mut d);
        assert!(!d.request.snapshot.unwrap().contains("HomeNet"));
    }

    #[test]
    fn a_policy_that_allows_clear_values_sends_them_unchanged() {
        let mut d = delivery();
        let original = d.clone();
        Outbound::new(&policy(true), Some(KEY)).apply(&mut d);
        assert_eq!(d.request.snapshot, original.request.snapshot);
        assert_eq!(d.request.verdict_line, original.request.verdict_line);
        assert_eq!(d.event.text, original.event.text);
    }
}
