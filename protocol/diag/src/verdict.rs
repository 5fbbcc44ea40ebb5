//! The classifier: turns a [`Snapshot`] into a [`Verdict`] saying which
//! segment of the path a problem comes from, with evidence.
//!
//! Pure and deterministic: no I/O, no clock, no randomness; the same
//! snapshot and thresholds always give the same verdict. It must never
//! panic and never turn missing, refused or unreadable data (a `None`, a
//! `Probe::Unknown`, a NaN) into a fault: such data gives an [`Unknown`]
//! entry instead.
//!
//! # Path order and precedence
//!
//! Rules run in path order, [`Stage`] by stage: device → link (Wi‑Fi or
//! Ethernet) → home gateway → configuration → ISP → service (the relay).
//! A downstream finding is only as sure as the segments before it:
//! - if an upstream segment has a problem (a warning or worse) that could
//!   explain it, the downstream finding is kept with [`Confidence::Low`]
//!   and names the upstream findings in `may_be_explained_by`;
//! - if an upstream segment could not be measured, the finding keeps at
//!   most [`Confidence::Medium`] and its note says what was not ruled out;
//! - service findings (the relay itself) are only made when nothing
//!   upstream could explain them; otherwise they become an unknown.
//!
//! [`Verdict::primary`] is the segment of the first problem in path order,
//! so "weak Wi‑Fi plus loss to the relay" is a home-network verdict.
//! Information findings (severity [`Severity::Info`]) are reported but are
//! never the primary cause and never explain anything downstream.
//!
//! No QUIC connection to the relay is a configuration finding (UDP
//! blocked) when the gateway and DNS work; when neither could be confirmed
//! it is a finding with [`Segment::Unknown`] (something is wrong, but where
//! cannot be told); when an upstream problem already explains it, it is
//! only an unknown entry.

mod configuration;
mod device;
mod gateway;
mod link;
mod os;
mod path;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::snapshot::{Probe, Snapshot};
use crate::thresholds::Thresholds;

/// The parts of the path a problem can come from, in path order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Segment {
    /// The machine itself: processor, memory, disk, heat, battery.
    Device,
    /// The home network: the Wi‑Fi or Ethernet link and the home router.
    HomeNetwork,
    /// The machine's network configuration: routes, DNS, clock, proxy,
    /// VPN, firewall.
    Configuration,
    /// The internet provider: the path from the home to the relay.
    Isp,
    /// deskside's own service: the relay.
    Service,
    /// A problem was seen but could not be attributed.
    Unknown,
}

impl Segment {
    /// Every segment, in path order.
    pub const ALL: [Segment; 6] = [
        Segment::Device,
        Segment::HomeNetwork,
        Segment::Configuration,
        Segment::Isp,
        Segment::Service,
        Segment::Unknown,
    ];

    /// Stable lowercase name, as serialised (`home_network`…).
    pub fn as_str(self) -> &'static str {
        match self {
            Segment::Device => "device",
            Segment::HomeNetwork => "home_network",
            Segment::Configuration => "configuration",
            Segment::Isp => "isp",
            Segment::Service => "service",
            Segment::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Finer positions along the path; each belongs to one [`Segment`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The machine.
    Device,
    /// The Wi‑Fi or Ethernet link to the home router.
    Link,
    /// The home router (gateway).
    Gateway,
    /// The machine's network configuration.
    Configuration,
    /// The path through the internet provider to the relay.
    Isp,
    /// The relay.
    Service,
}

impl Stage {
    /// The segment this stage belongs to.
    pub fn segment(self) -> Segment {
        match self {
            Stage::Device => Segment::Device,
            Stage::Link | Stage::Gateway => Segment::HomeNetwork,
            Stage::Configuration => Segment::Configuration,
            Stage::Isp => Segment::Isp,
            Stage::Service => Segment::Service,
        }
    }

    /// French name, for technician notes.
    pub fn name_fr(self) -> &'static str {
        match self {
            Stage::Device => "l'ordinateur",
            Stage::Link => "la liaison Wi‑Fi/Ethernet",
            Stage::Gateway => "la box ou le routeur",
            Stage::Configuration => "la configuration réseau",
            Stage::Isp => "le chemin vers le relais",
            Stage::Service => "le relais",
        }
    }

    /// English name, for technician notes.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Device => "the device",
            Stage::Link => "the Wi‑Fi/Ethernet link",
            Stage::Gateway => "the home router",
            Stage::Configuration => "the network configuration",
            Stage::Isp => "the path to the relay",
            Stage::Service => "the relay",
        }
    }
}

/// How much a finding matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing; not a problem by itself.
    Info,
    /// Degrades calls and remote sessions.
    Warning,
    /// Breaks them.
    Critical,
}

/// How sure the classifier is that the finding's segment is the cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// Something upstream may explain it.
    Low,
    /// Upstream could not be fully checked, or the measurement is weak.
    Medium,
    /// Measured directly with everything upstream clean.
    High,
}

/// A text in every language the reports speak.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Text {
    /// English.
    pub en: String,
    /// French.
    pub fr: String,
}

impl Text {
    /// A text from its English and French versions.
    pub fn new(en: impl Into<String>, fr: impl Into<String>) -> Self {
        Text {
            en: en.into(),
            fr: fr.into(),
        }
    }
}

/// Reads a [`Text`], or a plain string as its English version (the form
/// technician notes had before they were translated).
fn text_or_english<'de, D>(deserializer: D) -> Result<Text, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Both(Text),
        English(String),
    }
    Ok(match Stored::deserialize(deserializer)? {
        Stored::Both(text) => text,
        Stored::English(en) => Text {
            en,
            fr: String::new(),
        },
    })
}

/// A measured value quoted as evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EvidenceValue {
    /// A yes/no fact (e.g. `path.udp_ok`).
    Flag(bool),
    /// A number, in the unit the metric's name ends with. Always finite.
    Number(f64),
    /// Text (an error message, a grade, a proxy address).
    Text(String),
}

/// One measurement behind a finding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Where in the snapshot it comes from, e.g. `wifi.signal_dbm`. The
    /// unit is the name's suffix (`_dbm`, `_ms`, `_percent`, `_mbps`,
    /// `_gib`, `celsius`).
    pub metric: String,
    /// The value.
    pub value: EvidenceValue,
    /// The condition it met, e.g. `< -75 dBm`; empty when the fact itself
    /// is the finding (an error message, a proxy setting).
    pub threshold: String,
}

/// One problem (or notable fact) with its evidence and advice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable identifier, e.g. `wifi.signal_weak`, `path.loss`.
    pub id: String,
    /// The segment it blames.
    pub segment: Segment,
    /// Where along the path it sits.
    pub stage: Stage,
    /// How much it matters.
    pub severity: Severity,
    /// How sure the attribution is.
    pub confidence: Confidence,
    /// One-line title.
    pub title: Text,
    /// The measurements behind it.
    pub evidence: Vec<Evidence>,
    /// What the employee can do, in plain words.
    pub advice: Text,
    /// Precise details for the technician. Verdicts stored before notes
    /// were translated hold a plain English string, still accepted.
    #[serde(deserialize_with = "text_or_english")]
    pub technician_note: Text,
    /// Upstream findings that may explain this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub may_be_explained_by: Vec<String>,
}

impl Finding {
    /// A finding at `stage` (and its segment) with high confidence.
    pub(crate) fn new(id: &str, stage: Stage, severity: Severity) -> Self {
        Finding {
            id: id.to_owned(),
            segment: stage.segment(),
            stage,
            severity,
            confidence: Confidence::High,
            title: Text::default(),
            evidence: Vec::new(),
            advice: Text::default(),
            technician_note: Text::default(),
            may_be_explained_by: Vec::new(),
        }
    }

    pub(crate) fn title(mut self, en: &str, fr: &str) -> Self {
        self.title = Text::new(en, fr);
        self
    }

    pub(crate) fn advice(mut self, en: &str, fr: &str) -> Self {
        self.advice = Text::new(en, fr);
        self
    }

    pub(crate) fn note(mut self, en: impl Into<String>, fr: impl Into<String>) -> Self {
        self.technician_note = Text::new(en, fr);
        self
    }

    pub(crate) fn confidence(mut self, confidence: Confidence) -> Self {
        self.confidence = confidence;
        self
    }

    pub(crate) fn segment(mut self, segment: Segment) -> Self {
        self.segment = segment;
        self
    }

    pub(crate) fn number(
        mut self,
        metric: impl Into<String>,
        value: f64,
        threshold: impl Into<String>,
    ) -> Self {
        self.evidence.push(Evidence {
            metric: metric.into(),
            value: EvidenceValue::Number(value),
            threshold: threshold.into(),
        });
        self
    }

    pub(crate) fn text(
        mut self,
        metric: impl Into<String>,
        value: impl Into<String>,
        threshold: impl Into<String>,
    ) -> Self {
        self.evidence.push(Evidence {
            metric: metric.into(),
            value: EvidenceValue::Text(value.into()),
            threshold: threshold.into(),
        });
        self
    }

    pub(crate) fn flag(
        mut self,
        metric: impl Into<String>,
        value: bool,
        threshold: impl Into<String>,
    ) -> Self {
        self.evidence.push(Evidence {
            metric: metric.into(),
            value: EvidenceValue::Flag(value),
            threshold: threshold.into(),
        });
        self
    }

    /// Appends a sentence, in English and French, to the technician note.
    pub(crate) fn add_note(&mut self, en: &str, fr: &str) {
        for (note, sentence) in [
            (&mut self.technician_note.en, en),
            (&mut self.technician_note.fr, fr),
        ] {
            if !note.is_empty() {
                note.push(' ');
            }
            note.push_str(sentence);
        }
    }

    /// Whether it counts as a problem (rather than information).
    pub fn is_problem(&self) -> bool {
        self.severity >= Severity::Warning
    }
}

/// Something that could not be judged, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unknown {
    /// A whole probe (`wifi`, `gateway`, `path`…) or one check (`wifi.snr`).
    pub what: String,
    /// Why, from the snapshot when it says, else from the classifier.
    pub reason: String,
}

/// The classifier's answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Verdict {
    /// Findings, in path order (then most severe first).
    pub findings: Vec<Finding>,
    /// The segment of the first problem (warning or worse) in path order;
    /// `None` when no problem was found.
    pub primary: Option<Segment>,
    /// What could not be judged.
    pub unknowns: Vec<Unknown>,
    /// Checks that ran and passed (ids from [`RULES`]).
    pub ok_checks: Vec<String>,
}

impl Verdict {
    /// The finding with `id`, if any.
    pub fn finding(&self, id: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.id == id)
    }

    /// The finding that decided [`Verdict::primary`].
    pub fn primary_finding(&self) -> Option<&Finding> {
        self.findings.iter().find(|f| f.is_problem())
    }

    /// Findings that are problems (warning or worse), in path order.
    pub fn problems(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.is_problem())
    }
}

/// One check the classifier runs.
#[derive(Clone, Copy)]
pub struct Rule {
    /// Stable identifier, listed in [`Verdict::ok_checks`] when it passes.
    pub id: &'static str,
    /// Where along the path it looks.
    pub stage: Stage,
    /// Whether the stage counts as unmeasured when this check is unknown.
    /// Key checks (Wi‑Fi signal, gateway reachability, path loss…) decide
    /// whether downstream findings keep full confidence; secondary ones
    /// (noise, channel load…) do not.
    pub key: bool,
    /// The finding ids it can produce.
    pub findings: &'static [&'static str],
    /// What it checks, for reports.
    pub label_en: &'static str,
    /// What it checks, in French.
    pub label_fr: &'static str,
    check: fn(&mut Judge<'_>) -> Result<Vec<Finding>, Skip>,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("id", &self.id)
            .field("stage", &self.stage)
            .field("key", &self.key)
            .field("findings", &self.findings)
            .finish_non_exhaustive()
    }
}

/// Marks a check whose unknown leaves its stage unmeasured.
const KEY: bool = true;
/// Marks a check whose unknown does not.
const SECONDARY: bool = false;

const fn rule(
    id: &'static str,
    stage: Stage,
    key: bool,
    findings: &'static [&'static str],
    (label_en, label_fr): (&'static str, &'static str),
    check: fn(&mut Judge<'_>) -> Result<Vec<Finding>, Skip>,
) -> Rule {
    Rule {
        id,
        stage,
        key,
        findings,
        label_en,
        label_fr,
        check,
    }
}

/// Every check, in the order it runs (path order): id, stage, weight,
/// findings it can give, label (English, French), and the check itself.
#[rustfmt::skip]
pub static RULES: &[Rule] = &[
    rule("device.cpu", Stage::Device, SECONDARY, &["device.cpu_busy"], ("processor load", "charge du processeur"), device::cpu),
    rule("device.memory", Stage::Device, SECONDARY, &["device.memory_pressure"], ("memory", "mémoire"), device::memory),
    rule("device.io", Stage::Device, SECONDARY, &["device.io_pressure"], ("disk activity", "activité du disque"), device::io),
    rule("device.disk", Stage::Device, SECONDARY, &["device.disk_low", "device.disk_full"], ("free disk space", "espace disque libre"), device::disk),
    rule("device.temperature", Stage::Device, SECONDARY, &["device.temperature_high"], ("temperature", "température"), device::temperature),
    rule("device.battery", Stage::Device, SECONDARY, &["device.battery_worn"], ("battery health", "état de la batterie"), device::battery),
    rule("wifi.signal", Stage::Link, KEY, &["wifi.signal_fair", "wifi.signal_weak", "wifi.signal_unusable"], ("Wi‑Fi signal", "signal Wi‑Fi"), link::signal_level),
    rule("wifi.snr", Stage::Link, SECONDARY, &["wifi.snr_low"], ("Wi‑Fi signal-to-noise ratio", "rapport signal/bruit du Wi‑Fi"), link::snr),
    rule("wifi.retries", Stage::Link, SECONDARY, &["wifi.retries_high"], ("Wi‑Fi retransmissions", "retransmissions Wi‑Fi"), link::retries),
    rule("wifi.channel_load", Stage::Link, SECONDARY, &["wifi.channel_busy"], ("Wi‑Fi channel load", "encombrement du canal Wi‑Fi"), link::channel_load),
    rule("wifi.band", Stage::Link, SECONDARY, &["wifi.band_2_4ghz"], ("Wi‑Fi band", "bande Wi‑Fi"), link::band_choice),
    rule("link.ethernet_speed", Stage::Link, SECONDARY, &["ethernet.slow_link"], ("Ethernet speed", "vitesse Ethernet"), link::ethernet_speed),
    rule("link.errors", Stage::Link, SECONDARY, &["link.interface_errors"], ("network interface errors", "erreurs de la carte réseau"), link::errors),
    rule("gateway.reachable", Stage::Gateway, KEY, &["gateway.unreachable"], ("home router reachability", "accès à la box (routeur)"), gateway::reachable),
    rule("gateway.loss", Stage::Gateway, KEY, &["gateway.loss"], ("loss to the home router", "pertes vers la box (routeur)"), gateway::loss),
    rule("gateway.rtt", Stage::Gateway, SECONDARY, &["gateway.rtt_high"], ("delay to the home router", "délai vers la box (routeur)"), gateway::rtt),
    rule("network.default_route", Stage::Configuration, KEY, &["config.no_default_route"], ("default route", "route par défaut"), configuration::default_route),
    rule("dns.resolution", Stage::Configuration, KEY, &["dns.failing", "dns.partial_failure"], ("name resolution (DNS)", "résolution de noms (DNS)"), configuration::dns_resolution),
    rule("dns.latency", Stage::Configuration, SECONDARY, &["dns.slow"], ("DNS speed", "rapidité du DNS"), configuration::dns_latency),
    rule("clock.offset", Stage::Configuration, SECONDARY, &["clock.offset"], ("clock", "horloge"), configuration::clock),
    rule("network.proxy", Stage::Configuration, SECONDARY, &["config.proxy"], ("proxy settings", "réglages de proxy"), configuration::proxy),
    rule("network.vpn", Stage::Configuration, SECONDARY, &["config.vpn"], ("VPN", "VPN"), configuration::vpn),
    rule("path.udp", Stage::Configuration, KEY, &["path.udp_blocked", "path.relay_not_answering", "path.relay_unreachable", "path.relay_name_unresolved"], ("UDP (QUIC) to the relay", "UDP (QUIC) vers le relais"), path::udp),
    rule("os.connectivity", Stage::Configuration, SECONDARY, &["config.os_no_internet_false"], ("Windows' connectivity indicator", "indicateur de connectivité de Windows"), os::indicator),
    rule("path.loss", Stage::Isp, KEY, &["path.loss"], ("loss to the relay", "pertes vers le relais"), path::loss),
    rule("path.rtt", Stage::Isp, KEY, &["path.rtt_high", "vpn.rtt_high"], ("delay to the relay", "délai vers le relais"), path::rtt),
    rule("path.jitter", Stage::Isp, KEY, &["path.jitter_high"], ("jitter to the relay", "gigue vers le relais"), path::jitter),
    rule("path.bufferbloat", Stage::Isp, SECONDARY, &["path.bufferbloat"], ("delay under load", "délai en charge"), path::bufferbloat),
    rule("path.download", Stage::Isp, SECONDARY, &["path.download_slow"], ("download speed", "débit descendant"), path::download),
    rule("path.upload", Stage::Isp, SECONDARY, &["path.upload_slow"], ("upload speed", "débit montant"), path::upload),
    rule("service.connect", Stage::Service, KEY, &["service.relay_slow"], ("relay connection time", "temps de connexion au relais"), path::relay_connect),
    rule("service.datagrams", Stage::Service, KEY, &["service.relay_unresponsive"], ("relay answers", "réponses du relais"), path::relay_answers),
];

/// Judges `snapshot` against `thresholds`. Pure and deterministic.
pub fn judge(snapshot: &Snapshot, thresholds: &Thresholds) -> Verdict {
    let mut judge = Judge {
        snapshot,
        thresholds,
        records: Vec::with_capacity(RULES.len()),
        findings: Vec::new(),
        unknowns: Vec::new(),
    };
    for rule in RULES {
        let outcome = (rule.check)(&mut judge);
        judge.record(rule, outcome);
    }
    judge.finish()
}

/// Why a check did not give a pass or a finding.
#[derive(Debug)]
pub(crate) enum Skip {
    /// The data is missing or unreadable; the reason becomes an unknown
    /// entry under the check's id.
    Unknown(String),
    /// The data is missing and an unknown entry already says why (the whole
    /// probe is unknown, or another check reports it).
    Covered(String),
    /// The check does not apply (no Wi‑Fi on Ethernet, no battery…).
    NotApplicable,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Passed,
    Found,
    /// Unknown, with the `what` of the unknown entry that explains it.
    Unknown(String),
    NotApplicable,
}

#[derive(Debug)]
struct Record {
    rule: &'static str,
    stage: Stage,
    key: bool,
    state: State,
}

/// The upstream a downstream finding depends on.
#[derive(Debug)]
pub(crate) struct Upstream {
    /// Stages whose problems may explain the finding.
    pub stages: &'static [Stage],
    /// Individual findings elsewhere that may explain it too.
    pub also: &'static [&'static str],
}

/// The classifier's working state while the rules run.
#[derive(Debug)]
pub(crate) struct Judge<'a> {
    pub snapshot: &'a Snapshot,
    pub thresholds: &'a Thresholds,
    records: Vec<Record>,
    findings: Vec<Finding>,
    unknowns: Vec<Unknown>,
}

impl<'a> Judge<'a> {
    /// The value of a probe. An unknown probe adds one unknown entry named
    /// `what` (once, however many checks ask).
    pub fn probe<T>(&mut self, what: &str, probe: &'a Probe<T>) -> Result<&'a T, Skip> {
        match probe {
            Probe::Measured(value) => Ok(value),
            Probe::NotApplicable { .. } => Err(Skip::NotApplicable),
            Probe::Unknown { reason } => {
                self.add_unknown(what, reason);
                Err(Skip::Covered(what.to_owned()))
            }
        }
    }

    /// Adds an unknown entry unless one with the same `what` exists.
    pub fn add_unknown(&mut self, what: &str, reason: &str) {
        if !self.unknowns.iter().any(|u| u.what == what) {
            self.unknowns.push(Unknown {
                what: what.to_owned(),
                reason: reason.to_owned(),
            });
        }
    }

    /// Ids of problems (warning or worse) found so far that may explain a
    /// finding with this `upstream`.
    pub fn upstream_problems(&self, upstream: &Upstream) -> Vec<String> {
        self.findings
            .iter()
            .filter(|f| f.is_problem())
            .filter(|f| {
                upstream.stages.contains(&f.stage) || upstream.also.contains(&f.id.as_str())
            })
            .map(|f| f.id.clone())
            .collect()
    }

    /// Key checks in `stages` that could not be judged: the stage and the
    /// unknown entry explaining it (deduplicated).
    pub fn upstream_unknowns(&self, stages: &[Stage]) -> Vec<(Stage, String)> {
        let mut unknowns: Vec<(Stage, String)> = Vec::new();
        for record in &self.records {
            if let (true, true, State::Unknown(what)) =
                (record.key, stages.contains(&record.stage), &record.state)
            {
                if !unknowns.iter().any(|(_, known)| known == what) {
                    unknowns.push((record.stage, what.clone()));
                }
            }
        }
        unknowns
    }

    /// Whether the check `rule` has run and passed.
    pub fn passed(&self, rule: &str) -> bool {
        self.records
            .iter()
            .any(|r| r.rule == rule && r.state == State::Passed)
    }

    /// Lowers `finding`'s confidence according to what is known upstream,
    /// and says why in its note.
    pub fn qualify(&self, mut finding: Finding, upstream: &Upstream) -> Finding {
        let problems = self.upstream_problems(upstream);
        if !problems.is_empty() {
            finding.confidence = Confidence::Low;
            finding.add_note(
                &format!(
                    "May be explained by {} upstream: fix that first, then measure again.",
                    problems.join(", ")
                ),
                &format!(
                    "Peut s'expliquer par {} en amont : corrigez d'abord cela, puis mesurez à nouveau.",
                    problems.join(", ")
                ),
            );
            finding.may_be_explained_by = problems;
            return finding;
        }
        let unknowns = self.upstream_unknowns(upstream.stages);
        if !unknowns.is_empty() {
            finding.confidence = finding.confidence.min(Confidence::Medium);
            let mut stages: Vec<Stage> = unknowns.iter().map(|(stage, _)| *stage).collect();
            stages.dedup();
            let names_en: Vec<&str> = stages.iter().map(|stage| stage.name()).collect();
            let names_fr: Vec<&str> = stages.iter().map(|stage| stage.name_fr()).collect();
            let described_en: Vec<String> = unknowns
                .iter()
                .map(|(_, what)| self.describe_unknown(what, false))
                .collect();
            let described_fr: Vec<String> = unknowns
                .iter()
                .map(|(_, what)| self.describe_unknown(what, true))
                .collect();
            finding.add_note(
                &format!(
                    "Not confirmed: {} could not be checked ({}), so {} not ruled out.",
                    names_en.join(" and "),
                    described_en.join("; "),
                    if stages.len() == 1 {
                        "it is"
                    } else {
                        "they are"
                    }
                ),
                &format!(
                    "Non confirmé : impossible de vérifier {} ({}), {}.",
                    names_fr.join(" ni "),
                    described_fr.join(" ; "),
                    if stages.len() == 1 {
                        "cette cause n'est donc pas écartée"
                    } else {
                        "ces causes ne sont donc pas écartées"
                    }
                ),
            );
        }
        finding
    }

    fn describe_unknown(&self, what: &str, french: bool) -> String {
        match self.unknowns.iter().find(|u| u.what == what) {
            Some(unknown) if french => {
                let reason = crate::reason::french(&unknown.reason)
                    .unwrap_or_else(|| unknown.reason.clone());
                format!("{what} : {reason}")
            }
            Some(unknown) => format!("{what}: {}", unknown.reason),
            None => what.to_owned(),
        }
    }

    fn record(&mut self, rule: &Rule, outcome: Result<Vec<Finding>, Skip>) {
        let state = match outcome {
            Ok(findings) if findings.is_empty() => State::Passed,
            Ok(findings) => {
                self.findings.extend(findings);
                State::Found
            }
            Err(Skip::Unknown(reason)) => {
                self.add_unknown(rule.id, &reason);
                State::Unknown(rule.id.to_owned())
            }
            Err(Skip::Covered(what)) => State::Unknown(what),
            Err(Skip::NotApplicable) => State::NotApplicable,
        };
        self.records.push(Record {
            rule: rule.id,
            stage: rule.stage,
            key: rule.key,
            state,
        });
    }

    fn finish(mut self) -> Verdict {
        // Stable sort: within a stage and severity, rule order is kept.
        self.findings
            .sort_by(|a, b| a.stage.cmp(&b.stage).then(b.severity.cmp(&a.severity)));
        let primary = self
            .findings
            .iter()
            .find(|f| f.is_problem())
            .map(|f| f.segment);
        let ok_checks = self
            .records
            .iter()
            .filter(|r| r.state == State::Passed)
            .map(|r| r.rule.to_owned())
            .collect();
        Verdict {
            findings: self.findings,
            primary,
            unknowns: self.unknowns,
            ok_checks,
        }
    }
}

// ----- Reading values safely ------------------------------------------------

/// A reported number, or why it cannot be used: missing, NaN or infinite.
pub(crate) fn number(value: Option<f64>, field: &str) -> Result<f64, Skip> {
    match value {
        None => Err(Skip::Unknown(format!("{field} was not reported"))),
        Some(v) if !v.is_finite() => Err(Skip::Unknown(format!(
            "{field} is not a usable number ({v})"
        ))),
        Some(v) => Ok(v),
    }
}

/// A reported number that must lie in `range`.
pub(crate) fn number_in(
    value: Option<f64>,
    field: &str,
    range: std::ops::RangeInclusive<f64>,
) -> Result<f64, Skip> {
    let v = number(value, field)?;
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(Skip::Unknown(format!(
            "{field} is out of range ({v}, expected {} to {})",
            range.start(),
            range.end()
        )))
    }
}

/// A percentage, 0–100.
pub(crate) fn percent(value: Option<f64>, field: &str) -> Result<f64, Skip> {
    number_in(value, field, 0.0..=100.0)
}

/// Formats a threshold or value for evidence: no trailing `.0`, at most
/// two decimals.
pub(crate) fn fmt(value: f64) -> String {
    let rounded = (value * 100.0).round() / 100.0;
    let text = format!("{rounded}");
    if text == "-0" {
        "0".to_owned()
    } else {
        text
    }
}

/// The median of `values` (which must be finite), if any.
pub(crate) fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    })
}
