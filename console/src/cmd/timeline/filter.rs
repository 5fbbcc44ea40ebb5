//! `--where` for `deskside timeline --all`: the fields of one device's
//! timeline over the window (its episodes, their segments, metrics,
//! severity, recurrences and length) in the shared expression language of
//! [`crate::filter`], the one `deskside diag --all --where` uses.
//!
//! Pure: a [`Device`] is built from the relay's answer and the time the
//! command started; nothing here does I/O or reads a clock.

use std::sync::LazyLock;

use deskside_diag::timeline::{FleetEpisode, Metric, METRICS};
use deskside_diag::verdict::{Segment, Severity};

use crate::filter::{FieldInfo, FieldValue, Filter, Kind, Record, Vocabulary};

/// The segments an episode can be attributed to.
pub static SEGMENTS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| Segment::ALL.map(Segment::as_str).to_vec());

/// The metrics' identifiers, in path order.
pub static METRIC_IDS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| METRICS.map(Metric::id).to_vec());

/// The severities, least first.
pub const SEVERITIES: [&str; 3] = ["info", "warning", "critical"];

/// Where the fields are listed for a person (the `--where` help).
pub const LISTING: &str = "`deskside timeline --help`";

/// Every field a `timeline --all --where` expression may name.
pub fn fields() -> Vec<FieldInfo> {
    vec![
        FieldInfo::new("hostname", Kind::Text, "the device's host name"),
        FieldInfo::new(
            "group",
            Kind::Text,
            "the device's group, from its enrollment token (empty when none)",
        ),
        FieldInfo::new("id", Kind::Text, "the device id (dev_…)"),
        FieldInfo::new("online", Kind::Bool, "whether its agent is connected now"),
        FieldInfo::new("samples", Kind::Number, "samples the relay holds for it in the window"),
        FieldInfo::new("episodes", Kind::Number, "how many episodes in the window"),
        FieldInfo::new(
            "segment",
            Kind::Text,
            "where an episode is attributed: == matches when any episode is on that segment, != when none is",
        )
        .one_of(SEGMENTS.as_slice()),
        FieldInfo::new(
            "metric",
            Kind::Text,
            "what an episode is about, e.g. relay.loss: == matches when any episode is, != when none is",
        )
        .one_of(METRIC_IDS.as_slice()),
        FieldInfo::new(
            "severity",
            Kind::Text,
            "the worst severity of its episodes",
        )
        .one_of(&SEVERITIES),
        FieldInfo::new(
            "recurring",
            Kind::Number,
            "episodes that belong to a recurrence (same time every day, a regular period, one access point)",
        ),
        FieldInfo::new(
            "minutes",
            Kind::Number,
            "total length of its episodes in minutes (an ongoing one counts until now)",
        ),
    ]
}

/// Parses a `timeline --all --where` expression, checking every field.
pub fn parse(text: &str) -> Result<Filter, String> {
    let fields = fields();
    Filter::parse(
        text,
        &Vocabulary {
            fields: &fields,
            listing: LISTING,
            example: "segment == home_network and recurring > 0",
        },
    )
}

/// One device of `timeline --all`, as `--where` reads it.
#[derive(Clone, Copy, Debug)]
pub struct Device<'a> {
    /// Device id.
    pub id: &'a str,
    /// Host name.
    pub hostname: &'a str,
    /// Group, if any.
    pub group: Option<&'a str>,
    /// Whether its agent is connected.
    pub online: bool,
    /// Samples in the window.
    pub samples: u32,
    /// Its episodes in the window, as the relay judged them.
    pub episodes: &'a [FleetEpisode],
    /// When the command started, ms since the Unix epoch: where an
    /// ongoing episode is counted to.
    pub now_ms: i64,
}

impl Device<'_> {
    /// Total length of the episodes, minutes.
    pub fn minutes(&self) -> f64 {
        self.episodes
            .iter()
            .map(|e| (e.episode.end_or(self.now_ms) - e.episode.start_ms).max(0) as f64 / 60_000.0)
            .sum()
    }

    fn worst_severity(&self) -> Option<Severity> {
        self.episodes.iter().map(|e| e.episode.severity).max()
    }
}

fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => SEVERITIES[0],
        Severity::Warning => SEVERITIES[1],
        Severity::Critical => SEVERITIES[2],
    }
}

impl Record for Device<'_> {
    fn field(&self, field: &str) -> FieldValue<'_> {
        match field {
            "hostname" => FieldValue::text(self.hostname),
            // No group reads as empty, so `group != paris` matches it.
            "group" => FieldValue::text(self.group.unwrap_or("")),
            "id" => FieldValue::text(self.id),
            "online" => FieldValue::Bool(self.online),
            "samples" => FieldValue::Number(f64::from(self.samples)),
            "episodes" => FieldValue::Number(self.episodes.len() as f64),
            "segment" => FieldValue::Each(
                self.episodes
                    .iter()
                    .map(|e| FieldValue::text(e.episode.segment.as_str()))
                    .collect(),
            ),
            "metric" => FieldValue::Each(
                self.episodes
                    .iter()
                    .map(|e| FieldValue::text(e.episode.metric.id()))
                    .collect(),
            ),
            "severity" => self
                .worst_severity()
                .map_or(FieldValue::Missing, |s| FieldValue::text(severity_name(s))),
            "recurring" => {
                FieldValue::Number(self.episodes.iter().filter(|e| e.recurring).count() as f64)
            }
            "minutes" => FieldValue::Number(self.minutes()),
            _ => FieldValue::Missing,
        }
    }
}

/// `--where`'s long help: the syntax, then every field on its own line.
pub fn help() -> String {
    let mut text = String::from(
        "With --all: list only the devices whose timeline matches, e.g. \
         'segment == home_network and recurring > 0' or 'metric == relay.loss and minutes > 30'. \
         OP one of < <= > >= == != ~ (contains, ignoring case); join with and/or (also && ||) \
         and parentheses, `and` binding first. An unknown field is an error (exit code 2); \
         when no device matches, exit code 3.\n\nFields:",
    );
    for field in fields() {
        text += &format!(
            "\n  {} ({}): {}",
            field.name,
            field.kind.name(),
            field.about
        );
        if !field.values.is_empty() {
            text += &format!("; one of {}", field.values.join(", "));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use deskside_diag::timeline::Episode;
    use deskside_diag::verdict::{Confidence, Stage, Text};

    const MINUTE: i64 = 60_000;
    const NOW: i64 = 1_796_547_600_000;

    fn episode(
        metric: Metric,
        segment: Segment,
        severity: Severity,
        minutes: Option<i64>,
    ) -> Episode {
        let start_ms = NOW - 120 * MINUTE;
        Episode {
            id: metric.id().to_owned(),
            metric,
            stage: Stage::Isp,
            segment,
            severity,
            confidence: Confidence::High,
            title: Text {
                en: String::new(),
                fr: String::new(),
            },
            start_ms,
            end_ms: minutes.map(|m| start_ms + m * MINUTE),
            bad_samples: 2,
            evidence: Vec::new(),
            access_point: None,
            explained_by: Vec::new(),
        }
    }

    fn fleet(episode: Episode, recurring: bool) -> FleetEpisode {
        FleetEpisode { episode, recurring }
    }

    fn device(episodes: &[FleetEpisode]) -> Device<'_> {
        Device {
            id: "dev_01",
            hostname: "laptop-paris-7",
            group: Some("paris"),
            online: true,
            samples: 240,
            episodes,
            now_ms: NOW,
        }
    }

    #[test]
    fn timeline_fields_read_the_devices_episodes() {
        // A 5-minute warning on the home network (recurring), a critical
        // ISP loss still going (120 minutes until now).
        let episodes = [
            fleet(
                episode(
                    Metric::WifiSignal,
                    Segment::HomeNetwork,
                    Severity::Warning,
                    Some(5),
                ),
                true,
            ),
            fleet(
                episode(Metric::RelayLoss, Segment::Isp, Severity::Critical, None),
                false,
            ),
        ];
        let row = device(&episodes);
        // (expression, matches)
        for (text, expected) in [
            ("episodes == 2", true),
            ("episodes > 2", false),
            ("segment == isp", true),
            ("segment == home_network", true),
            ("segment == device", false),
            ("segment != device", true),
            ("segment != isp", false),
            ("metric == relay.loss", true),
            ("metric == relay.rtt", false),
            ("metric ~ wifi", true),
            ("severity == critical", true),
            ("severity == warning", false),
            ("recurring > 0", true),
            ("recurring >= 2", false),
            ("minutes == 125", true),
            ("minutes < 60", false),
            ("samples >= 240 and online == true", true),
            ("group == paris and hostname ~ PARIS and id == dev_01", true),
            (
                "group == lyon or (segment == isp and recurring == 0)",
                false,
            ),
        ] {
            let filter = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(filter.matches(&row), expected, "{text}");
        }
        // One warning only: the worst is a warning; nothing recurs.
        let episodes = [fleet(
            episode(
                Metric::GatewayLoss,
                Segment::HomeNetwork,
                Severity::Warning,
                Some(30),
            ),
            false,
        )];
        let row = device(&episodes);
        for (text, expected) in [
            ("severity == warning", true),
            ("severity != critical", true),
            ("recurring > 0", false),
            ("minutes == 30", true),
        ] {
            assert_eq!(parse(text).unwrap().matches(&row), expected, "{text}");
        }
    }

    #[test]
    fn unknown_fields_and_values_are_refused() {
        let error = parse("wifi.signal_dbm < -70").unwrap_err();
        assert!(
            error.contains("unknown field \"wifi.signal_dbm\""),
            "{error}"
        );
        assert!(error.contains("segment"), "{error}");
        assert!(error.contains(LISTING), "{error}");
        let error = parse("segment == wifi").unwrap_err();
        assert!(error.contains("home_network"), "{error}");
        let error = parse("metric == relay.lost").unwrap_err();
        assert!(error.contains("relay.loss"), "{error}");
        assert!(parse("severity == bad").is_err());
        assert!(parse("recurring == true").is_err());
        assert!(parse("minutes ~ 3").is_err());
    }

    #[test]
    fn the_closed_value_lists_follow_the_format() {
        for &segment in SEGMENTS.iter() {
            let parsed: Segment = serde_json::from_value(segment.into()).unwrap();
            assert_eq!(parsed.as_str(), segment);
        }
        for severity in SEVERITIES {
            let parsed: Severity = serde_json::from_value(severity.into()).unwrap();
            assert_eq!(severity_name(parsed), severity);
        }
        let help = help();
        for field in fields() {
            assert!(help.contains(&format!("\n  {} (", field.name)), "{help}");
        }
    }
}
