//! `--where` for fleet diagnostics (`deskside diag --all|--group`): the
//! vocabulary of the shared expression language ([`crate::filter`]) —
//! device fields (hostname, group, verdict, …) and snapshot fields
//! (`wifi.signal_dbm`, …) — and how one diagnosed device answers them.
//!
//! Pure: the snapshot fields are read from the snapshot types themselves,
//! so the list follows the format. Nothing here does I/O.

use deskside_diag::snapshot::{
    Battery, Clock, DefaultRoute, Device, Dns, Gateway, NetworkConfig, OsConnectivity, Path,
    Pressure, RttStats, Throughput, Wifi,
};
use deskside_diag::verdict::Segment;
use deskside_diag::{Probe, Snapshot};
use serde_json::Value;
use std::sync::LazyLock;

use crate::filter::Vocabulary;
pub use crate::filter::{FieldInfo, FieldValue, Filter, Kind};

/// The verdict values: `ok`, the segments, and `error` for a device that
/// could not be diagnosed.
pub static VERDICTS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let segments = Segment::ALL.map(Segment::as_str);
    [&["ok"][..], &segments, &["error"]].concat()
});

/// Fields about the device rather than its snapshot.
const DEVICE_FIELDS: [(&str, Kind, &str); 5] = [
    ("hostname", Kind::Text, "the device's host name"),
    (
        "group",
        Kind::Text,
        "the device's group, from its enrollment token (empty when none)",
    ),
    ("id", Kind::Text, "the device id (dev_…)"),
    (
        "verdict",
        Kind::Text,
        "where the problem is: ok, device, home_network, configuration, isp, service, unknown; error when the device could not be diagnosed (offline, refused)",
    ),
    (
        "finding",
        Kind::Text,
        "a finding of the verdict, e.g. wifi.signal_weak: == matches when any finding has that id, != when none has",
    ),
];

/// A snapshot with every probe measured and every optional group present,
/// so that its JSON shows every field the format has.
fn skeleton() -> Snapshot {
    let device = Device {
        pressure: Probe::Measured(Pressure::default()),
        battery: Probe::Measured(Battery::default()),
        ..Device::default()
    };
    let network = NetworkConfig {
        default_route: Some(DefaultRoute::default()),
        ..NetworkConfig::default()
    };
    let gateway = Gateway {
        rtt: Some(RttStats::default()),
        ..Gateway::default()
    };
    let throughput = || {
        Probe::Measured(Throughput {
            loaded_rtt: Some(RttStats::default()),
            ..Throughput::default()
        })
    };
    let path = Path {
        idle_rtt: Some(RttStats::default()),
        download: throughput(),
        upload: throughput(),
        ..Path::default()
    };
    Snapshot {
        device: Probe::Measured(device),
        network: Probe::Measured(network),
        wifi: Probe::Measured(Wifi::default()),
        gateway: Probe::Measured(gateway),
        dns: Probe::Measured(Dns::default()),
        clock: Probe::Measured(Clock::default()),
        path: Probe::Measured(path),
        // Windows snapshots only: Windows' own connectivity verdict.
        os_connectivity: Some(Probe::Measured(OsConnectivity::default())),
        ..Snapshot::default()
    }
}

/// Every field a `--where` expression may name: the device fields, then the
/// snapshot's single values (lists such as disks are not filterable).
pub fn fields() -> Vec<FieldInfo> {
    let mut out: Vec<FieldInfo> = DEVICE_FIELDS
        .iter()
        .map(|(name, kind, about)| {
            let field = FieldInfo::new(name, *kind, about);
            if *name == "verdict" {
                field.one_of(VERDICTS.as_slice())
            } else {
                field
            }
        })
        .collect();
    let json = serde_json::to_value(skeleton()).unwrap_or(Value::Null);
    let mut snapshot_fields = Vec::new();
    leaves(&json, String::new(), &mut snapshot_fields);
    snapshot_fields.sort_by(|a, b| a.name.cmp(&b.name));
    out.extend(snapshot_fields);
    out
}

fn leaves(value: &Value, prefix: String, out: &mut Vec<FieldInfo>) {
    let value = value.get("measured").unwrap_or(value);
    let Some(object) = value.as_object() else {
        return;
    };
    for (key, child) in object {
        // A probe the skeleton leaves unmeasured has only a reason.
        if key == "unknown" || key == "not_applicable" {
            continue;
        }
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let kind = match child {
            Value::Object(_) => {
                leaves(child, name, out);
                continue;
            }
            // Lists (disks, interfaces, lookups) have no single value.
            Value::Array(_) => continue,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::Text,
            Value::Bool(_) => Kind::Bool,
            // An optional value left empty: its unit says it is a number.
            Value::Null if has_unit(key) => Kind::Number,
            Value::Null => Kind::Any,
        };
        out.push(FieldInfo::new(&name, kind, ""));
    }
}

/// Whether a field name ends with a unit (`signal_dbm`, `median_ms`…): the
/// format names every measured quantity with its unit.
fn has_unit(key: &str) -> bool {
    const UNITS: [&str; 12] = [
        "_ms", "_dbm", "_db", "_percent", "_mbps", "_mhz", "_bytes", "_secs", "_s", "_cores",
        "_celsius", "_count",
    ];
    UNITS.iter().any(|unit| key.ends_with(unit))
        || matches!(
            key,
            "channel" | "mtu" | "tx_failed" | "rx_errors" | "tx_errors"
        )
}

/// A diagnosed (or failed) device of a fleet run, as `--where` reads it.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// Device id.
    pub id: &'a str,
    /// Host name.
    pub hostname: &'a str,
    /// Group, if any.
    pub group: Option<&'a str>,
    /// `ok`, a segment name, or `error`.
    pub verdict: &'a str,
    /// The verdict's finding ids.
    pub findings: &'a [String],
    /// The snapshot's JSON, when the device was diagnosed.
    pub snapshot: Option<&'a Value>,
}

impl crate::filter::Record for Record<'_> {
    fn field(&self, field: &str) -> FieldValue<'_> {
        match field {
            "hostname" => FieldValue::text(self.hostname),
            // No group reads as empty, so `group != paris` matches it.
            "group" => FieldValue::text(self.group.unwrap_or("")),
            "id" => FieldValue::text(self.id),
            "verdict" => FieldValue::text(self.verdict),
            "finding" => {
                FieldValue::Each(self.findings.iter().map(|f| FieldValue::text(f)).collect())
            }
            // A snapshot field that was not measured never matches.
            path => match self.snapshot.and_then(|s| super::field(s, path.split('.'))) {
                Some(Value::Number(n)) => {
                    n.as_f64().map_or(FieldValue::Missing, FieldValue::Number)
                }
                Some(Value::String(text)) => FieldValue::text(text),
                Some(Value::Bool(b)) => FieldValue::Bool(*b),
                _ => FieldValue::Missing,
            },
        }
    }
}

/// Parses a `diag --where` expression, checking every field name.
pub fn parse(text: &str) -> Result<Filter, String> {
    let fields = fields();
    Filter::parse(
        text,
        &Vocabulary {
            fields: &fields,
            listing: "`deskside diag fields`",
            example: "wifi.signal_dbm < -70 and group == paris",
        },
    )
}

/// Whether `filter` reads only what the device list already says
/// (hostname, group, id), so devices can be chosen before any is
/// diagnosed.
pub fn needs_diagnosis(filter: &Filter) -> bool {
    filter
        .fields()
        .iter()
        .any(|f| !matches!(*f, "hostname" | "group" | "id"))
}

/// The `deskside diag fields` text.
pub fn render_fields(fields: &[FieldInfo]) -> String {
    let width = fields.iter().map(|f| f.name.len()).max().unwrap_or(0);
    let mut text = String::from(
        "Fields for `deskside diag --all|--group G --where EXPR`.\n\
         EXPR: FIELD OP VALUE, OP one of < <= > >= == != ~ (contains, ignoring case),\n\
         joined with `and`/`or` (also && ||) and parentheses; `and` binds first.\n\
         A snapshot field that was not measured never matches.\n\nDevice:\n",
    );
    let mut heading_done = false;
    for field in fields {
        if field.about.is_empty() && !heading_done {
            text += "\nSnapshot (what the agent measured):\n";
            heading_done = true;
        }
        let about = if field.about.is_empty() {
            String::new()
        } else {
            format!("  {}", field.about)
        };
        text += &format!("  {:<width$}  {}{about}\n", field.name, field.kind.name());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(snapshot: &'a Value, findings: &'a [String]) -> Record<'a> {
        Record {
            id: "dev_01",
            hostname: "laptop-paris-7",
            group: Some("paris"),
            verdict: "home_network",
            findings,
            snapshot: Some(snapshot),
        }
    }

    fn sample() -> Value {
        serde_json::json!({
            "wifi": {"measured": {"signal_dbm": -72.0, "source": "iw", "band": null}},
            "path": {"measured": {"idle_rtt": {"median_ms": 120.0}, "udp_ok": true}},
            "dns": {"measured": {"relay_reachable": true}},
            "gateway": {"unknown": {"reason": "no answer"}},
        })
    }

    #[test]
    fn comparisons_read_measured_fields() {
        let snapshot = sample();
        let findings = vec!["wifi.signal_weak".to_owned()];
        let cases = [
            ("wifi.signal_dbm < -70", true),
            ("wifi.signal_dbm<-75", false),
            ("wifi.signal_dbm >= -72", true),
            ("path.idle_rtt.median_ms > 100", true),
            ("wifi.source == iw", true),
            ("wifi.source != 'iw'", false),
            ("wifi.source ~ I", true),
            ("path.udp_ok == true", true),
            ("path.udp_ok != true", false),
            ("dns.relay_reachable == true", true),
            ("dns.relay_reachable == false", false),
            ("gateway.address == x", false),
            ("gateway.address != x", false),
            ("wifi.band == 5GHz", false),
            ("device.cpu.usage_percent > 0", false),
        ];
        for (text, expected) in cases {
            let filter = parse(text).unwrap();
            assert_eq!(
                filter.matches(&record(&snapshot, &findings)),
                expected,
                "{text}"
            );
        }
    }

    #[test]
    fn device_fields_and_boolean_logic() {
        let snapshot = sample();
        let findings = vec!["wifi.signal_weak".to_owned(), "path.loss".to_owned()];
        let cases = [
            ("hostname == laptop-paris-7", true),
            ("hostname ~ PARIS", true),
            ("group == paris and wifi.signal_dbm < -70", true),
            ("group == lyon and wifi.signal_dbm < -70", false),
            ("group == lyon or wifi.signal_dbm < -70", true),
            ("group == lyon || verdict == home_network", true),
            (
                "group == lyon OR verdict == isp AND hostname ~ paris",
                false,
            ),
            (
                "(group == lyon or verdict == home_network) && id == dev_01",
                true,
            ),
            ("finding == path.loss", true),
            ("finding == device.disk_full", false),
            ("finding != device.disk_full", true),
            ("finding != path.loss", false),
            ("verdict != ok", true),
        ];
        for (text, expected) in cases {
            let filter = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                filter.matches(&record(&snapshot, &findings)),
                expected,
                "{text}"
            );
        }
        let no_group = Record {
            group: None,
            verdict: "error",
            snapshot: None,
            ..record(&snapshot, &findings)
        };
        assert!(parse("group != paris").unwrap().matches(&no_group));
        assert!(parse("verdict == error").unwrap().matches(&no_group));
        assert!(!parse("wifi.signal_dbm < 0").unwrap().matches(&no_group));
    }

    #[test]
    fn unknown_fields_are_refused_with_the_valid_ones() {
        let error = parse("wifi.signal < -70").unwrap_err();
        assert!(error.contains("unknown field \"wifi.signal\""), "{error}");
        assert!(error.contains("wifi.signal_dbm"), "{error}");
        assert!(error.contains("hostname"), "{error}");
        assert!(error.contains("deskside diag fields"), "{error}");
        let error = parse("hostname == a or wifi.rssi < 3").unwrap_err();
        assert!(error.contains("\"wifi.rssi\""), "{error}");
    }

    #[test]
    fn malformed_expressions_are_refused() {
        for text in [
            "",
            "wifi.signal_dbm",
            "wifi.signal_dbm < ",
            "< 3",
            "wifi.source < iw",
            "wifi.signal_dbm == strong",
            "path.udp_ok == maybe",
            "hostname == a b",
            "(hostname == a",
            "hostname == 'a",
            "verdict == wifi",
            "hostname == a and",
        ] {
            assert!(parse(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn fields_follow_the_snapshot_format() {
        let fields = fields();
        let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        for name in [
            "hostname",
            "group",
            "verdict",
            "wifi.signal_dbm",
            "path.idle_rtt.median_ms",
            "device.memory.available_bytes",
            "network.default_route.gateway",
            "clock.offset_ms",
            "os_connectivity.level",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        assert!(names.contains(&"path.download.mbps"), "{names:?}");
        assert!(!names.iter().any(|n| n.contains("disks")), "{names:?}");
        assert!(
            !names
                .iter()
                .any(|n| n.contains("unknown") || n.contains("reason")),
            "{names:?}"
        );
        assert!(
            names.contains(&"device.battery.charge_percent"),
            "{names:?}"
        );
        let kind = |name: &str| fields.iter().find(|f| f.name == name).map(|f| f.kind);
        assert_eq!(kind("wifi.signal_dbm"), Some(Kind::Number));
        assert_eq!(kind("wifi.channel"), Some(Kind::Number));
        assert_eq!(kind("wifi.band"), Some(Kind::Any));
        assert_eq!(kind("path.probes_sent"), Some(Kind::Number));
        assert_eq!(kind("path.udp_ok"), Some(Kind::Bool));
        assert_eq!(kind("wifi.source"), Some(Kind::Text));
        // Every listed field parses.
        for field in &fields {
            let value = match field.kind {
                Kind::Bool => "true",
                Kind::Text => "x",
                Kind::Number | Kind::Any => "1",
            };
            let value = if field.name == "verdict" { "ok" } else { value };
            parse(&format!("{} == {value}", field.name))
                .unwrap_or_else(|e| panic!("{}: {e}", field.name));
        }
        let text = render_fields(&fields);
        assert!(text.contains("wifi.signal_dbm"), "{text}");
    }
}
