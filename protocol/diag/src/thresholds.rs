//! The classifier's thresholds: documented defaults, overridable per
//! organisation.
//!
//! Every default cites where it comes from (vendor guidance, a standard, or
//! deskside's own reasoning when no published figure exists, which the
//! comment then says plainly). An organisation overrides any subset with a
//! partial JSON or TOML object such as `{"wifi_signal_weak_dbm": -72}`;
//! [`Thresholds::with_overrides`] refuses unknown keys and values that make
//! no sense, with a message saying what to fix.
//!
//! This module never reads files or the environment: callers pass the text.

use serde::{Deserialize, Serialize};

use crate::snapshot::Grade;

/// Thresholds the classifier compares measurements with.
///
/// Units are in the field names. Comparisons are strict: a measurement equal
/// to a threshold passes (e.g. a signal of exactly −75 dBm is not "weak").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    // ----- Device -------------------------------------------------------
    /// Linux PSI `cpu some avg60` above which tasks wait too long for a
    /// processor. Default 25 %. Source: the deskside diagnostics reference,
    /// "Device pressure (proposed defaults)".
    pub cpu_pressure_some_avg60_percent: f64,
    /// Whole-machine CPU usage above which the processor is saturated (used
    /// when PSI is not available, e.g. on Windows and macOS). Default 90 %.
    /// Source: the diagnostics reference ("CPU > 90 % for ≥ 60 s"); the
    /// snapshot holds one shorter sample, so such findings get medium
    /// confidence.
    pub cpu_usage_percent: f64,
    /// Linux PSI `memory full avg10` above which every task is stalled on
    /// memory too often. Default 5 %. Source: the diagnostics reference.
    pub memory_pressure_full_avg10_percent: f64,
    /// Available memory, as a share of installed memory, below which the
    /// machine is short of memory when swap is also in use. Default 10 %.
    /// Source: the diagnostics reference.
    pub memory_available_percent: f64,
    /// Linux PSI `io full avg60` above which the disk holds everything up.
    /// Default 10 %. Source: the diagnostics reference.
    pub io_pressure_full_avg60_percent: f64,
    /// Free space on the system volume, as a share of its size, below which
    /// it is low (together with [`Thresholds::disk_free_gib`]). Default 10 %.
    /// Source: the diagnostics reference.
    pub disk_free_percent: f64,
    /// Free space on the system volume below which it is low (together with
    /// [`Thresholds::disk_free_percent`], so a huge disk at 8 % with 80 GiB
    /// free is fine). Default 5 GiB. Source: the diagnostics reference.
    pub disk_free_gib: f64,
    /// Free space on the system volume below which the disk counts as full
    /// (critical). Default 1 GiB. deskside's choice: below about a gigabyte,
    /// system updates, browser caches and video-call recordings start
    /// failing to write.
    pub disk_full_gib: f64,
    /// How close to a sensor's own critical temperature a reading must come
    /// to be reported. Default 5 °C. Source: the deskside brief; firmware
    /// throttles the processor hard near the critical point.
    pub temperature_margin_celsius: f64,
    /// Temperature reported whatever the sensor's critical point (many
    /// sensors report none). Default 95 °C. Source: the deskside brief;
    /// laptop processors throttle around 95–100 °C.
    pub temperature_max_celsius: f64,
    /// Battery health (full-charge ÷ design capacity) below which the
    /// battery is worn (information only). Default 80 %. Source: the
    /// diagnostics reference; 80 % is the usual end-of-life mark in battery
    /// warranties.
    pub battery_health_percent: f64,

    // ----- Link (Wi‑Fi or Ethernet) ---------------------------------------
    /// Signal below which Wi‑Fi is only "fair": under the −67 dBm design
    /// target for voice and video. Default −67 dBm. Source: Cisco wireless
    /// voice deployment guides (cell-edge design target).
    pub wifi_signal_fair_dbm: f64,
    /// Signal below which Wi‑Fi is "weak" (a warning). Default −75 dBm.
    /// Source: Cisco guidance and common Wi‑Fi survey practice
    /// (−75…−85 dBm weak).
    pub wifi_signal_weak_dbm: f64,
    /// Signal below which Wi‑Fi is unusable (critical). Default −85 dBm.
    /// Source: common Wi‑Fi survey practice.
    pub wifi_signal_unusable_dbm: f64,
    /// Signal-to-noise ratio below which voice and video suffer. Default
    /// 25 dB. Source: Cisco (≥ 25 dB for voice).
    pub wifi_snr_db: f64,
    /// Share of frames needing retries above which the radio link is
    /// struggling. Default 20 %. Source: Cisco (retries below 20 %).
    pub wifi_retries_percent: f64,
    /// Share of time the channel is busy above which it is congested.
    /// Default 50 %. Source: Cisco (channel utilisation below 40–50 %).
    pub wifi_channel_busy_percent: f64,
    /// Negotiated Ethernet speed below which the link is reported
    /// (information only: 100 Mbit/s is enough for a session, but on
    /// gigabit hardware it usually means a damaged cable or a bad port).
    /// Default 1000 Mbit/s. Source: the diagnostics reference.
    pub ethernet_min_mbps: u32,
    /// Receive plus transmit errors on the active interface above which
    /// they are reported (information only: the counters are totals since
    /// boot, so the snapshot cannot tell whether they still rise). Default
    /// 0. Source: the diagnostics reference ("error counters rising").
    pub interface_errors: u64,

    // ----- Home gateway (router) --------------------------------------
    /// Probe loss to the home router above which the home network is
    /// losing packets. Default 1 %. Source: Microsoft Teams network
    /// requirements (< 1 % loss end to end); the local network should lose
    /// none of that budget.
    pub gateway_loss_percent: f64,
    /// Probe loss to the home router above which the loss is critical.
    /// Default 5 %. deskside's choice, matching [`Thresholds::path_loss_critical_percent`].
    pub gateway_loss_critical_percent: f64,
    /// Median round trip to the home router above which the local network
    /// is slow. Default 20 ms. No standard sets this; it is deskside's
    /// budget: a wired LAN answers in under 1 ms and a healthy Wi‑Fi link in
    /// 1–5 ms, so a median above 20 ms means the link or the router is
    /// struggling, and a fifth of Microsoft Teams' 100 ms round-trip budget
    /// is gone before the traffic leaves the house.
    pub gateway_rtt_ms: f64,

    // ----- Configuration -------------------------------------------------
    /// Median DNS lookup time above which name resolution is slow. Default
    /// 200 ms. deskside's choice: ISP and public resolvers answer uncached
    /// names in tens of milliseconds; 200 ms is felt on every new connection.
    pub dns_slow_ms: f64,
    /// Clock offset against the relay above which time synchronisation is
    /// not working. Default 5 s. deskside's choice: a synchronised clock is
    /// within milliseconds; several seconds means NTP is off, and one-time
    /// codes (30 s steps, RFC 6238) and token checks are close to failing.
    pub clock_offset_s: f64,
    /// Clock offset above which TLS and single sign-on fail outright
    /// (critical). Default 60 s. Source: the deskside brief; token libraries
    /// commonly allow at most about a minute of clock leeway.
    pub clock_offset_critical_s: f64,

    // ----- ISP (the path to the relay) ----------------------------------
    /// Datagram probe loss to the relay above which the path loses packets.
    /// Default 1 %. Source: Microsoft Teams network requirements (< 1 % over
    /// any 15 s).
    pub path_loss_percent: f64,
    /// Loss above which it is critical. Default 5 %. deskside's choice:
    /// five times the Teams limit; calls drop words and remote screens
    /// freeze.
    pub path_loss_critical_percent: f64,
    /// Jitter (mean absolute difference between consecutive round trips, the
    /// definition Cloudflare's speed test uses) above which real-time media
    /// suffers. Default 30 ms. Source: Microsoft Teams (< 30 ms over any
    /// 15 s).
    pub path_jitter_ms: f64,
    /// Idle median round trip to the relay above which calls and remote
    /// sessions feel laggy. Default 100 ms. Source: Microsoft Teams (RTT
    /// < 100 ms to the Microsoft edge).
    pub path_rtt_ms: f64,
    /// Idle median round trip above which it is critical. Default 150 ms.
    /// Source: ITU-T G.114 (one-way delay below 150 ms is acceptable),
    /// applied to the round trip so that the technician's side keeps the
    /// rest of the budget.
    pub path_rtt_critical_ms: f64,
    /// Bufferbloat grade from which latency under load is a warning.
    /// Default `C` (60–200 ms added). Source: the grading used by the common
    /// public bufferbloat tests (A+ < 5 ms, A < 30, B < 60, C < 200,
    /// D < 400, F ≥ 400).
    pub bufferbloat_grade: Grade,
    /// Bufferbloat grade from which it is critical. Default `D` (≥ 200 ms
    /// added). Source: the same grading.
    pub bufferbloat_critical_grade: Grade,
    /// Download speed below which a remote session or HD call cannot run
    /// well. Default 1.5 Mbit/s. Source: the diagnostics reference (HD 720p
    /// call ≈ 1.2 Mbit/s, 1080p ≈ 1.5–3 Mbit/s each way).
    pub download_min_mbps: f64,
    /// Upload speed below which a remote session or HD call cannot run
    /// well. Default 1.5 Mbit/s. Source: as [`Thresholds::download_min_mbps`].
    pub upload_min_mbps: f64,

    // ----- Service (the relay) -------------------------------------------
    /// Time to connect to and authenticate with the relay above which the
    /// relay is slow, when the path itself is clean. Default 2000 ms.
    /// deskside's choice: the QUIC handshake with mutual TLS and the
    /// measurement request take three or four round trips, under half a
    /// second even on a 100 ms path; two seconds means the relay answers
    /// slowly.
    pub relay_connect_slow_ms: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            cpu_pressure_some_avg60_percent: 25.0,
            cpu_usage_percent: 90.0,
            memory_pressure_full_avg10_percent: 5.0,
            memory_available_percent: 10.0,
            io_pressure_full_avg60_percent: 10.0,
            disk_free_percent: 10.0,
            disk_free_gib: 5.0,
            disk_full_gib: 1.0,
            temperature_margin_celsius: 5.0,
            temperature_max_celsius: 95.0,
            battery_health_percent: 80.0,
            wifi_signal_fair_dbm: -67.0,
            wifi_signal_weak_dbm: -75.0,
            wifi_signal_unusable_dbm: -85.0,
            wifi_snr_db: 25.0,
            wifi_retries_percent: 20.0,
            wifi_channel_busy_percent: 50.0,
            ethernet_min_mbps: 1000,
            interface_errors: 0,
            gateway_loss_percent: 1.0,
            gateway_loss_critical_percent: 5.0,
            gateway_rtt_ms: 20.0,
            dns_slow_ms: 200.0,
            clock_offset_s: 5.0,
            clock_offset_critical_s: 60.0,
            path_loss_percent: 1.0,
            path_loss_critical_percent: 5.0,
            path_jitter_ms: 30.0,
            path_rtt_ms: 100.0,
            path_rtt_critical_ms: 150.0,
            bufferbloat_grade: Grade::C,
            bufferbloat_critical_grade: Grade::D,
            download_min_mbps: 1.5,
            upload_min_mbps: 1.5,
            relay_connect_slow_ms: 2000.0,
        }
    }
}

/// Why an organisation's threshold overrides were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    /// The overrides are not a JSON or TOML object (table).
    #[error("threshold overrides must be an object of `name = value` pairs, e.g. {{\"wifi_signal_weak_dbm\": -72}}; got {0}")]
    NotAnObject(String),
    /// A key names no threshold (often a typo).
    #[error("unknown threshold `{key}`{}; remove it or fix its name (known thresholds: {known})", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownKey {
        /// The key as written.
        key: String,
        /// The closest known name, if one is close.
        suggestion: Option<String>,
        /// Every known name, comma-separated.
        known: String,
    },
    /// A value has the wrong type (text where a number is needed…).
    #[error("threshold `{key}` has the wrong type: {message}")]
    WrongType {
        /// The threshold.
        key: String,
        /// What the parser said, and what is expected.
        message: String,
    },
    /// A value, or a combination of values, makes no sense.
    #[error("threshold `{key}` is not usable: {message}")]
    Invalid {
        /// The threshold to fix.
        key: String,
        /// What is wrong and what would be right.
        message: String,
    },
    /// The TOML text does not parse.
    #[error("threshold overrides are not valid TOML: {0}")]
    Toml(String),
}

impl Thresholds {
    /// The defaults with `overrides` applied: a partial object such as
    /// `{"wifi_signal_weak_dbm": -72}`. Unknown keys, wrong types and
    /// nonsensical values (a "fair" signal level below the "weak" one, a
    /// percentage over 100…) are refused.
    pub fn with_overrides(overrides: &serde_json::Value) -> Result<Thresholds, ThresholdError> {
        let serde_json::Value::Object(overrides) = overrides else {
            return Err(ThresholdError::NotAnObject(kind_of(overrides).to_owned()));
        };
        let defaults = serde_json::to_value(Thresholds::default())
            .map_err(|e| ThresholdError::NotAnObject(e.to_string()))?;
        let serde_json::Value::Object(defaults) = defaults else {
            return Err(ThresholdError::NotAnObject("defaults".to_owned()));
        };
        let known: Vec<&str> = defaults.keys().map(String::as_str).collect();
        let mut merged = defaults.clone();
        for (key, value) in overrides {
            if !defaults.contains_key(key) {
                return Err(ThresholdError::UnknownKey {
                    key: key.clone(),
                    suggestion: closest(key, &known).map(str::to_owned),
                    known: known.join(", "),
                });
            }
            // Check each value on its own, so the error names the key.
            let mut single = defaults.clone();
            single.insert(key.clone(), value.clone());
            if let Err(e) = serde_json::from_value::<Thresholds>(serde_json::Value::Object(single))
            {
                return Err(ThresholdError::WrongType {
                    key: key.clone(),
                    message: format!("{e} (got {value})"),
                });
            }
            merged.insert(key.clone(), value.clone());
        }
        let thresholds: Thresholds = serde_json::from_value(serde_json::Value::Object(merged))
            .map_err(|e| ThresholdError::WrongType {
                key: "?".to_owned(),
                message: e.to_string(),
            })?;
        thresholds.validate()?;
        Ok(thresholds)
    }

    /// The defaults with overrides read from TOML text (one `name = value`
    /// per line, e.g. `wifi_signal_weak_dbm = -72`). Same checks as
    /// [`Thresholds::with_overrides`].
    pub fn with_toml_overrides(text: &str) -> Result<Thresholds, ThresholdError> {
        let value: serde_json::Value =
            toml::from_str(text).map_err(|e| ThresholdError::Toml(e.message().to_owned()))?;
        Thresholds::with_overrides(&value)
    }

    /// Checks that every value is usable and that related values are in a
    /// sensible order.
    pub fn validate(&self) -> Result<(), ThresholdError> {
        let percents = [
            (
                "cpu_pressure_some_avg60_percent",
                self.cpu_pressure_some_avg60_percent,
            ),
            ("cpu_usage_percent", self.cpu_usage_percent),
            (
                "memory_pressure_full_avg10_percent",
                self.memory_pressure_full_avg10_percent,
            ),
            ("memory_available_percent", self.memory_available_percent),
            (
                "io_pressure_full_avg60_percent",
                self.io_pressure_full_avg60_percent,
            ),
            ("disk_free_percent", self.disk_free_percent),
            ("battery_health_percent", self.battery_health_percent),
            ("wifi_retries_percent", self.wifi_retries_percent),
            ("wifi_channel_busy_percent", self.wifi_channel_busy_percent),
            ("gateway_loss_percent", self.gateway_loss_percent),
            (
                "gateway_loss_critical_percent",
                self.gateway_loss_critical_percent,
            ),
            ("path_loss_percent", self.path_loss_percent),
            (
                "path_loss_critical_percent",
                self.path_loss_critical_percent,
            ),
        ];
        for (key, value) in percents {
            if !(0.0..=100.0).contains(&value) {
                return invalid(
                    key,
                    format!("{value} is not a percentage; use a number from 0 to 100"),
                );
            }
        }
        let non_negative = [
            ("disk_free_gib", self.disk_free_gib),
            ("disk_full_gib", self.disk_full_gib),
            (
                "temperature_margin_celsius",
                self.temperature_margin_celsius,
            ),
            ("wifi_snr_db", self.wifi_snr_db),
            ("gateway_rtt_ms", self.gateway_rtt_ms),
            ("dns_slow_ms", self.dns_slow_ms),
            ("clock_offset_s", self.clock_offset_s),
            ("clock_offset_critical_s", self.clock_offset_critical_s),
            ("path_jitter_ms", self.path_jitter_ms),
            ("path_rtt_ms", self.path_rtt_ms),
            ("path_rtt_critical_ms", self.path_rtt_critical_ms),
            ("download_min_mbps", self.download_min_mbps),
            ("upload_min_mbps", self.upload_min_mbps),
            ("relay_connect_slow_ms", self.relay_connect_slow_ms),
        ];
        for (key, value) in non_negative {
            if !value.is_finite() || value < 0.0 {
                return invalid(key, format!("{value} must be a finite number ≥ 0"));
            }
        }
        if !self.temperature_max_celsius.is_finite() || self.temperature_max_celsius <= 0.0 {
            return invalid(
                "temperature_max_celsius",
                format!(
                    "{} must be a temperature above 0 °C, e.g. 95",
                    self.temperature_max_celsius
                ),
            );
        }
        for (key, value) in [
            ("wifi_signal_fair_dbm", self.wifi_signal_fair_dbm),
            ("wifi_signal_weak_dbm", self.wifi_signal_weak_dbm),
            ("wifi_signal_unusable_dbm", self.wifi_signal_unusable_dbm),
        ] {
            if !value.is_finite() || !(-120.0..=0.0).contains(&value) {
                return invalid(
                    key,
                    format!(
                        "{value} is not a Wi‑Fi signal level; use dBm between -120 and 0, e.g. -75"
                    ),
                );
            }
        }
        if self.wifi_signal_fair_dbm <= self.wifi_signal_weak_dbm {
            return invalid(
                "wifi_signal_fair_dbm",
                format!(
                    "fair ({}) must be above weak ({}): the levels go fair > weak > unusable, e.g. -67 > -75 > -85",
                    self.wifi_signal_fair_dbm, self.wifi_signal_weak_dbm
                ),
            );
        }
        if self.wifi_signal_weak_dbm <= self.wifi_signal_unusable_dbm {
            return invalid(
                "wifi_signal_weak_dbm",
                format!(
                    "weak ({}) must be above unusable ({}): the levels go fair > weak > unusable, e.g. -67 > -75 > -85",
                    self.wifi_signal_weak_dbm, self.wifi_signal_unusable_dbm
                ),
            );
        }
        let ordered = [
            (
                "gateway_loss_critical_percent",
                "gateway_loss_percent",
                self.gateway_loss_percent,
                self.gateway_loss_critical_percent,
            ),
            (
                "path_loss_critical_percent",
                "path_loss_percent",
                self.path_loss_percent,
                self.path_loss_critical_percent,
            ),
            (
                "path_rtt_critical_ms",
                "path_rtt_ms",
                self.path_rtt_ms,
                self.path_rtt_critical_ms,
            ),
            (
                "clock_offset_critical_s",
                "clock_offset_s",
                self.clock_offset_s,
                self.clock_offset_critical_s,
            ),
        ];
        for (upper_key, lower_key, lower, upper) in ordered {
            if lower > upper {
                return invalid(
                    upper_key,
                    format!("{upper} must not be below {lower_key} ({lower}); raise it or lower {lower_key}"),
                );
            }
        }
        if self.disk_full_gib > self.disk_free_gib {
            return invalid(
                "disk_full_gib",
                format!(
                    "{} must not be above disk_free_gib ({}): a full disk is also a low one; lower it",
                    self.disk_full_gib, self.disk_free_gib
                ),
            );
        }
        if self.bufferbloat_critical_grade < self.bufferbloat_grade {
            return invalid(
                "bufferbloat_critical_grade",
                format!(
                    "{:?} is a better grade than bufferbloat_grade ({:?}); the critical grade must be the same or worse, e.g. warning C, critical D",
                    self.bufferbloat_critical_grade, self.bufferbloat_grade
                ),
            );
        }
        Ok(())
    }
}

fn invalid(key: &str, message: String) -> Result<(), ThresholdError> {
    Err(ThresholdError::Invalid {
        key: key.to_owned(),
        message,
    })
}

fn kind_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The known name closest to `key` by edit distance, if it is close enough
/// to be a typo.
fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|candidate| (edit_distance(key, candidate), *candidate))
        .filter(|(distance, _)| *distance <= 3.max(key.len() / 4))
        .min()
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let defaults = Thresholds::default();
        defaults.validate().unwrap();
        let text = serde_json::to_string(&defaults).unwrap();
        assert_eq!(serde_json::from_str::<Thresholds>(&text).unwrap(), defaults);
        assert_eq!(Thresholds::with_overrides(&json!({})).unwrap(), defaults);
    }

    #[test]
    fn a_partial_object_overrides_only_what_it_names() {
        let thresholds = Thresholds::with_overrides(&json!({"wifi_signal_weak_dbm": -72})).unwrap();
        assert_eq!(thresholds.wifi_signal_weak_dbm, -72.0);
        assert_eq!(thresholds.wifi_signal_fair_dbm, -67.0);
        assert_eq!(thresholds.path_rtt_ms, 100.0);
    }

    #[test]
    fn toml_overrides_work_like_json() {
        let thresholds = Thresholds::with_toml_overrides(
            "wifi_signal_weak_dbm = -72\nbufferbloat_grade = \"B\"\n",
        )
        .unwrap();
        assert_eq!(thresholds.wifi_signal_weak_dbm, -72.0);
        assert_eq!(thresholds.bufferbloat_grade, Grade::B);
        let err = Thresholds::with_toml_overrides("wifi_signal_weak_dbm = ").unwrap_err();
        assert!(matches!(err, ThresholdError::Toml(_)), "{err}");
    }

    #[test]
    fn refusals_say_what_to_fix() {
        // (overrides, text the message must contain)
        let cases = [
            (
                json!({"wifi_signal_weak": -72}),
                "did you mean `wifi_signal_weak_dbm`",
            ),
            (json!({"colour": "blue"}), "unknown threshold `colour`"),
            (
                json!({"path_rtt_ms": "fast"}),
                "threshold `path_rtt_ms` has the wrong type",
            ),
            (
                json!({"bufferbloat_grade": "E"}),
                "threshold `bufferbloat_grade` has the wrong type",
            ),
            (
                json!({"wifi_signal_fair_dbm": -80}),
                "fair (-80) must be above weak (-75)",
            ),
            (
                json!({"wifi_signal_weak_dbm": -90}),
                "weak (-90) must be above unusable (-85)",
            ),
            (
                json!({"wifi_signal_weak_dbm": 10}),
                "use dBm between -120 and 0",
            ),
            (json!({"path_loss_percent": 150}), "not a percentage"),
            (
                json!({"path_loss_percent": 8}),
                "must not be below path_loss_percent (8)",
            ),
            (
                json!({"path_rtt_critical_ms": 50}),
                "must not be below path_rtt_ms (100)",
            ),
            (json!({"dns_slow_ms": -1}), "must be a finite number ≥ 0"),
            (
                json!({"bufferbloat_critical_grade": "B"}),
                "critical grade must be the same or worse",
            ),
            (json!([1, 2]), "must be an object"),
        ];
        for (overrides, expected) in cases {
            let err = Thresholds::with_overrides(&overrides)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{overrides}: {err}");
        }
    }

    #[test]
    fn typos_get_a_suggestion_and_strangers_do_not() {
        let known = ["wifi_signal_weak_dbm", "path_rtt_ms"];
        assert_eq!(
            closest("wifi_signal_weak", &known),
            Some("wifi_signal_weak_dbm")
        );
        assert_eq!(closest("path_rtt", &known), Some("path_rtt_ms"));
        assert_eq!(closest("colour", &known), None);
    }
}
