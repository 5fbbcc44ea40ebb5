//! The verdict as a short plain-text report for the employee and the
//! technician, in English or French.
//!
//! Layout: the verdict in one sentence first, then the findings in path
//! order with their evidence and advice, then the key numbers measured,
//! then what could not be measured and why. ANSI colours only when asked.
//!
//! Pure: the caller passes the language (see [`lang_from_locale`]) and the
//! style; this module never reads the environment or the terminal.

use std::fmt::Write as _;

use crate::snapshot::{Grade, InterfaceKind, Probe, Snapshot, SpeedTestRefusal};
use crate::verdict::{
    Confidence, EvidenceValue, Finding, Segment, Severity, Stage, Text, Verdict, RULES,
};

/// Languages the reports speak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lang {
    /// English.
    #[default]
    En,
    /// French.
    Fr,
}

/// How to print.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Style {
    /// Use ANSI colours (only for terminals, and not with `NO_COLOR`).
    pub color: bool,
}

/// The report language from the locale variables, by POSIX precedence:
/// `LC_ALL`, then `LC_MESSAGES`, then `LANG` (the first one set and not
/// empty). French for `fr…` (`fr_FR.UTF-8`, `fr_CA`, `fr`), English
/// otherwise (including `C` and `POSIX`).
pub fn lang_from_locale(
    lc_all: Option<&str>,
    lc_messages: Option<&str>,
    lang: Option<&str>,
) -> Lang {
    let chosen = [lc_all, lc_messages, lang]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|value| !value.is_empty());
    match chosen {
        Some(value) if value.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("fr")) => Lang::Fr,
        _ => Lang::En,
    }
}

/// The language of a report: `flag` (`--lang en|fr`) when given, otherwise
/// the locale read through `env` (pass `|name| std::env::var(name).ok()`).
pub fn lang_for(flag: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Lang {
    match flag {
        Some(flag) => lang_from_locale(Some(flag), None, None),
        None => lang_from_locale(
            env("LC_ALL").as_deref(),
            env("LC_MESSAGES").as_deref(),
            env("LANG").as_deref(),
        ),
    }
}

/// Renders `verdict` (judged from `snapshot`) as text ending with a newline:
/// the full report (findings with their evidence, rule ids and technician
/// notes, the numbers measured, what could not be measured). For the
/// technician's `diag` and the employee's `check --details`.
pub fn render(verdict: &Verdict, snapshot: &Snapshot, lang: Lang, style: Style) -> String {
    let r = Renderer { lang, style };
    let mut out = String::new();
    r.verdict_line(&mut out, verdict, snapshot, true);
    r.findings(&mut out, verdict);
    r.measured(&mut out, snapshot);
    r.unknowns(&mut out, verdict);
    r.typography(out)
}

/// Most actions the employee's short report lists.
pub const MAX_ACTIONS: usize = 3;

/// The employee's short report: the verdict, what was not checked when that
/// matters (the speed test), and at most [`MAX_ACTIONS`] de-duplicated
/// actions in plain words. No rule ids, metric names, thresholds or
/// technician notes: those are in [`render`].
pub fn render_summary(verdict: &Verdict, snapshot: &Snapshot, lang: Lang, style: Style) -> String {
    let r = Renderer { lang, style };
    let mut out = String::new();
    r.verdict_line(&mut out, verdict, snapshot, false);
    let actions = actions(verdict, lang);
    if !actions.is_empty() {
        r.heading(&mut out, "What you can do", "Ce que vous pouvez faire");
        for (n, action) in actions.iter().enumerate() {
            let _ = writeln!(out, "  {}. {action}", n + 1);
        }
    }
    r.typography(out)
}

/// The advice of the problems worth acting on, in path order: findings
/// that something upstream may explain give none (fix that first), and
/// the same advice is given once. At most [`MAX_ACTIONS`].
pub fn actions(verdict: &Verdict, lang: Lang) -> Vec<String> {
    let r = Renderer {
        lang,
        style: Style::default(),
    };
    let mut actions: Vec<String> = Vec::new();
    for finding in verdict.problems() {
        if !finding.may_be_explained_by.is_empty() {
            continue;
        }
        let advice = r.text(&finding.advice).trim().to_owned();
        if advice.is_empty() || actions.contains(&advice) {
            continue;
        }
        actions.push(advice);
        if actions.len() == MAX_ACTIONS {
            break;
        }
    }
    actions
}

/// Whether the verdict leaves out something a reader would assume was
/// checked: the path to the support service or a key check.
fn incomplete(verdict: &Verdict) -> bool {
    verdict.unknowns.iter().any(|u| {
        matches!(
            u.what.as_str(),
            "path" | "gateway" | "dns" | "network" | "wifi" | "device"
        ) || RULES.iter().any(|rule| rule.key && rule.id == u.what)
    })
}

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const CYAN: &str = "\x1b[36m";

struct Renderer {
    lang: Lang,
    style: Style,
}

impl Renderer {
    fn t<'s>(&self, en: &'s str, fr: &'s str) -> &'s str {
        match self.lang {
            Lang::En => en,
            Lang::Fr => fr,
        }
    }

    fn text<'s>(&self, text: &'s Text) -> &'s str {
        let chosen = self.t(&text.en, &text.fr);
        if chosen.is_empty() {
            &text.en
        } else {
            chosen
        }
    }

    fn paint(&self, codes: &str, text: &str) -> String {
        if self.style.color {
            format!("{codes}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }

    /// French typography: a no-break space before `:` and a narrow
    /// no-break space before `;`, `?` and `!`, where the text has a plain
    /// space (so `host:port`, times and URLs are left alone).
    fn typography(&self, text: String) -> String {
        if self.lang != Lang::Fr {
            return text;
        }
        french_typography(&text)
    }

    fn heading(&self, out: &mut String, en: &str, fr: &str) {
        let _ = writeln!(out, "\n{}", self.paint(BOLD, self.t(en, fr)));
    }

    /// A number for people: at most two decimals, fewer for large values,
    /// with a decimal comma in French.
    fn num(&self, value: f64) -> String {
        if !value.is_finite() {
            return "?".to_owned();
        }
        let decimals = if value.abs() >= 100.0 {
            0
        } else if value.abs() >= 10.0 {
            1
        } else {
            2
        };
        let mut text = format!("{value:.decimals$}");
        if text.contains('.') {
            text = text.trim_end_matches('0').trim_end_matches('.').to_owned();
        }
        if text == "-0" {
            text = "0".to_owned();
        }
        self.localise(&text)
    }

    /// Decimal points between digits become commas in French.
    fn localise(&self, text: &str) -> String {
        if self.lang == Lang::En {
            return text.to_owned();
        }
        let chars: Vec<char> = text.chars().collect();
        chars
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let between_digits = i > 0
                    && chars.get(i + 1).is_some_and(char::is_ascii_digit)
                    && chars[i - 1].is_ascii_digit();
                if *c == '.' && between_digits {
                    ','
                } else {
                    *c
                }
            })
            .collect()
    }

    fn gib(&self) -> &'static str {
        self.t("GiB", "Gio")
    }

    fn unit(&self, metric: &str) -> String {
        let unit = if metric.ends_with("_dbm") {
            "dBm"
        } else if metric.ends_with("_db") {
            "dB"
        } else if metric.ends_with("_ms") {
            "ms"
        } else if metric.ends_with("_percent") {
            "%"
        } else if metric.ends_with("_mbps") || metric.ends_with(".mbps") {
            "Mbit/s"
        } else if metric.ends_with("_gib") {
            self.gib()
        } else if metric.ends_with("celsius") {
            "°C"
        } else {
            ""
        };
        if unit.is_empty() {
            String::new()
        } else {
            format!(" {unit}")
        }
    }

    // ----- The verdict ---------------------------------------------------

    /// Why the speed test was asked for but not run, in plain words.
    fn speed_test_line(&self, snapshot: &Snapshot) -> Option<String> {
        let path = snapshot.path.value()?;
        let minutes = |seconds: u64| seconds.div_ceil(60).max(1);
        Some(match (path.speed_test_refused?, self.lang) {
            (SpeedTestRefusal::Busy { retry_after_s }, Lang::En) => format!(
                "The speed test was not run: another test of this computer was running. Run the check again in {retry_after_s} seconds."
            ),
            (SpeedTestRefusal::Busy { retry_after_s }, Lang::Fr) => format!(
                "Le test de débit n'a pas été fait : un autre test de cet ordinateur était en cours. Relancez la vérification dans {retry_after_s} secondes."
            ),
            (SpeedTestRefusal::BudgetSpent { retry_after_s }, Lang::En) => format!(
                "The speed test was not run: this computer has used up its speed tests for this hour. It can run again in {} minutes.",
                minutes(retry_after_s)
            ),
            (SpeedTestRefusal::BudgetSpent { retry_after_s }, Lang::Fr) => format!(
                "Le test de débit n'a pas été fait : cet ordinateur a épuisé ses tests de débit pour cette heure. Il sera de nouveau possible dans {} minutes.",
                minutes(retry_after_s)
            ),
        })
    }

    fn verdict_line(&self, out: &mut String, verdict: &Verdict, snapshot: &Snapshot, full: bool) {
        let speed_test = self.speed_test_line(snapshot);
        let Some(primary) = verdict.primary_finding() else {
            let partial = incomplete(verdict) || speed_test.is_some();
            let line = if partial {
                self.t(
                    "No problem found in what could be checked.",
                    "Aucun problème détecté dans ce qui a pu être vérifié.",
                )
            } else {
                self.t("No problem found.", "Aucun problème détecté.")
            };
            let colour = if partial { YELLOW } else { GREEN };
            let _ = writeln!(out, "{}", self.paint(&format!("{BOLD}{colour}"), line));
            if let Some(line) = &speed_test {
                let _ = writeln!(out, "{line}");
            }
            if !verdict.unknowns.is_empty() {
                let _ = writeln!(
                    out,
                    "{}",
                    if full {
                        self.t(
                            "Some checks could not be run; see the end of this report.",
                            "Certaines vérifications n'ont pas pu être faites ; voir la fin de ce rapport.",
                        )
                    } else {
                        self.t(
                            "Some checks could not be run; the details say which.",
                            "Certaines vérifications n'ont pas pu être faites ; le détail dit lesquelles.",
                        )
                    }
                );
            }
            return;
        };
        let sure = primary.confidence == Confidence::High;
        let line = self.verdict_sentence(primary, sure);
        let colour = if primary.severity == Severity::Critical {
            RED
        } else {
            YELLOW
        };
        let _ = writeln!(out, "{}", self.paint(&format!("{BOLD}{colour}"), &line));
        if let Some(line) = &speed_test {
            let _ = writeln!(out, "{line}");
        }
        if !full {
            return;
        }
        let problems = verdict.problems().count();
        let notes = verdict.findings.len() - problems;
        let summary = match self.lang {
            Lang::En => format!(
                "{problems} problem{} found{}.",
                plural(problems),
                if notes > 0 {
                    format!(", {notes} note{}", plural(notes))
                } else {
                    String::new()
                }
            ),
            Lang::Fr => format!(
                "{problems} problème{} détecté{}{}.",
                plural(problems),
                plural(problems),
                if notes > 0 {
                    format!(", {notes} remarque{}", plural(notes))
                } else {
                    String::new()
                }
            ),
        };
        let _ = writeln!(out, "{summary}");
    }

    fn verdict_sentence(&self, finding: &Finding, sure: bool) -> String {
        let connection = self.t("Your connection problem", "Votre problème de connexion");
        let problem = self.t("The problem", "Le problème");
        let (subject, place) = match (finding.segment, finding.stage) {
            (Segment::Device, _) => (
                problem,
                self.t("this computer itself", "de l'ordinateur lui-même"),
            ),
            (Segment::HomeNetwork, Stage::Link) if finding.id.starts_with("wifi.") => (
                connection,
                self.t("your Wi‑Fi link", "de votre liaison Wi‑Fi"),
            ),
            (Segment::HomeNetwork, Stage::Link) => (
                connection,
                self.t(
                    "your network cable or port",
                    "de votre câble ou prise réseau",
                ),
            ),
            (Segment::HomeNetwork, _) => (
                connection,
                self.t(
                    "your home network (your internet box or router)",
                    "de votre réseau domestique (votre box internet ou routeur)",
                ),
            ),
            (Segment::Configuration, _) => (
                problem,
                self.t(
                    "this computer's network settings",
                    "des réglages réseau de l'ordinateur",
                ),
            ),
            (Segment::Isp, _) => (
                connection,
                self.t(
                    "your internet provider",
                    "de votre fournisseur d'accès à internet",
                ),
            ),
            (Segment::Service, _) => (
                problem,
                self.t(
                    "our support service, not from your side",
                    "de notre service d'assistance, pas de chez vous",
                ),
            ),
            (Segment::Unknown, _) => {
                return self
                    .t(
                        "We found a problem but could not tell where it comes from.",
                        "Nous avons trouvé un problème, sans pouvoir dire d'où il vient.",
                    )
                    .to_owned();
            }
        };
        match (self.lang, sure) {
            (Lang::En, true) => format!("{subject} comes from {place}."),
            (Lang::En, false) => format!("{subject} probably comes from {place}."),
            (Lang::Fr, true) => format!("{subject} vient {place}."),
            (Lang::Fr, false) => format!("{subject} vient probablement {place}."),
        }
    }

    // ----- Findings -------------------------------------------------------

    fn findings(&self, out: &mut String, verdict: &Verdict) {
        if verdict.findings.is_empty() {
            return;
        }
        self.heading(out, "What we found", "Ce que nous avons trouvé");
        for finding in &verdict.findings {
            self.finding(out, finding, verdict);
        }
    }

    fn finding(&self, out: &mut String, finding: &Finding, verdict: &Verdict) {
        let (tag, colour) = match finding.severity {
            Severity::Critical => (self.t("critical", "critique"), RED),
            Severity::Warning => (self.t("warning", "attention"), YELLOW),
            Severity::Info => (self.t("note", "à savoir"), CYAN),
        };
        let segment = match finding.segment {
            Segment::Device => self.t("this computer", "l'ordinateur"),
            Segment::HomeNetwork => self.t("home network", "réseau domestique"),
            Segment::Configuration => self.t("settings", "réglages"),
            Segment::Isp => self.t("internet provider", "fournisseur d'accès"),
            Segment::Service => self.t("support service", "service d'assistance"),
            Segment::Unknown => self.t("origin unknown", "origine inconnue"),
        };
        let confidence = match finding.confidence {
            Confidence::High => self.t("high confidence", "certitude élevée"),
            Confidence::Medium => self.t("medium confidence", "certitude moyenne"),
            Confidence::Low => self.t("low confidence", "certitude faible"),
        };
        // Information is not an attribution, so its confidence says nothing.
        let context = if finding.is_problem() {
            format!("{segment}, {confidence}")
        } else {
            segment.to_owned()
        };
        let _ = writeln!(
            out,
            "- {} {} ({context}) [{}]",
            self.paint(&format!("{BOLD}{colour}"), &format!("[{tag}]")),
            self.text(&finding.title),
            finding.id
        );
        for evidence in &finding.evidence {
            let value = match &evidence.value {
                EvidenceValue::Number(n) => {
                    format!("{}{}", self.num(*n), self.unit(&evidence.metric))
                }
                EvidenceValue::Flag(true) => self.t("yes", "oui").to_owned(),
                EvidenceValue::Flag(false) => self.t("no", "non").to_owned(),
                EvidenceValue::Text(text) => text.clone(),
            };
            let limit = if evidence.threshold.is_empty() {
                String::new()
            } else {
                format!(
                    "  ({} {})",
                    self.t("limit", "seuil"),
                    self.localise(&evidence.threshold)
                )
            };
            let _ = writeln!(out, "    {} = {value}{limit}", evidence.metric);
        }
        if !finding.may_be_explained_by.is_empty() {
            let causes: Vec<&str> = finding
                .may_be_explained_by
                .iter()
                .map(|id| {
                    verdict
                        .finding(id)
                        .map(|f| self.text(&f.title))
                        .unwrap_or(id)
                })
                .collect();
            let _ = writeln!(
                out,
                "    {} {}",
                self.t("May be caused by:", "Peut venir de :"),
                causes.join(self.t("; ", " ; "))
            );
        }
        let _ = writeln!(
            out,
            "    {} {}",
            self.t("What to do:", "Que faire :"),
            self.text(&finding.advice)
        );
        let note = self.text(&finding.technician_note);
        if !note.is_empty() {
            // Verdicts stored before notes were translated have no French.
            let untranslated = finding.technician_note.fr.is_empty();
            let line = format!(
                "    {} {note}",
                match (self.lang, untranslated) {
                    (Lang::Fr, true) => "Pour le technicien (note en anglais) :",
                    _ => self.t("For the technician:", "Pour le technicien :"),
                }
            );
            let _ = writeln!(out, "{}", self.paint(DIM, &line));
        }
    }

    // ----- What we measured ----------------------------------------------

    fn measured(&self, out: &mut String, snapshot: &Snapshot) {
        self.heading(out, "What we measured", "Ce que nous avons mesuré");
        let lines = [
            self.link_line(snapshot),
            self.gateway_line(snapshot),
            self.relay_line(snapshot),
            self.os_verdict_line(snapshot),
            self.speed_line(snapshot),
            self.load_line(snapshot),
            self.dns_line(snapshot),
            self.clock_line(snapshot),
            self.disk_line(snapshot),
            self.cpu_line(snapshot),
            self.memory_line(snapshot),
        ];
        let width = lines
            .iter()
            .flatten()
            .map(|(label, _)| label.chars().count())
            .max()
            .unwrap_or(0);
        for (label, value) in lines.into_iter().flatten() {
            let padding = " ".repeat(width - label.chars().count());
            let _ = writeln!(out, "  {label}{padding}  {value}");
        }
    }

    fn not_measured(&self) -> String {
        self.t("not measured", "non mesuré").to_owned()
    }

    fn link_line(&self, s: &Snapshot) -> Option<(String, String)> {
        match &s.wifi {
            Probe::Measured(wifi) => {
                let mut parts = Vec::new();
                if let Some(signal) = wifi.signal_dbm.filter(|v| v.is_finite()) {
                    parts.push(format!("{} dBm", self.num(signal)));
                }
                if let Some(band) = wifi.band {
                    parts.push(match band {
                        crate::snapshot::Band::Ghz2_4 => self.localise("2.4 GHz"),
                        crate::snapshot::Band::Ghz5 => "5 GHz".to_owned(),
                        crate::snapshot::Band::Ghz6 => "6 GHz".to_owned(),
                    });
                }
                if let Some(channel) = wifi.channel {
                    parts.push(format!("{} {channel}", self.t("channel", "canal")));
                }
                let snr = wifi
                    .snr_db
                    .or_else(|| Some(wifi.signal_dbm? - wifi.noise_dbm?));
                if let Some(snr) = snr.filter(|v| v.is_finite()) {
                    parts.push(format!(
                        "{} {} dB",
                        self.t("SNR", "signal/bruit"),
                        self.num(snr)
                    ));
                }
                if let Some(retries) = wifi.tx_retries_percent.filter(|v| v.is_finite()) {
                    parts.push(format!(
                        "{} {} %",
                        self.t("retries", "retransmissions"),
                        self.num(retries)
                    ));
                }
                let value = if parts.is_empty() {
                    self.not_measured()
                } else {
                    parts.join(", ")
                };
                Some(("Wi‑Fi".to_owned(), value))
            }
            Probe::Unknown { .. } => Some(("Wi‑Fi".to_owned(), self.not_measured())),
            Probe::NotApplicable { .. } => {
                let network = s.network.value()?;
                let route = network.default_route.as_ref()?;
                let interface = network
                    .interfaces
                    .iter()
                    .find(|i| i.name == route.interface)?;
                let value = match (interface.kind, interface.speed_mbps) {
                    (InterfaceKind::Ethernet, Some(speed)) => format!("Ethernet, {speed} Mbit/s"),
                    (InterfaceKind::Ethernet, None) => "Ethernet".to_owned(),
                    (InterfaceKind::Vpn, _) => "VPN".to_owned(),
                    _ => interface.name.clone(),
                };
                Some((self.t("Link", "Liaison").to_owned(), value))
            }
        }
    }

    fn gateway_line(&self, s: &Snapshot) -> Option<(String, String)> {
        let label = self.t("Home router", "Box (routeur)").to_owned();
        let value = match &s.gateway {
            Probe::Measured(g) if g.sent > 0 && g.received == 0 => {
                self.t("no answer", "aucune réponse").to_owned()
            }
            Probe::Measured(g) if g.sent > 0 => {
                let loss = 100.0 * f64::from(g.sent.saturating_sub(g.received)) / f64::from(g.sent);
                match &g.rtt {
                    Some(rtt) => format!(
                        "{} ms, {} % {}",
                        self.num(rtt.median_ms),
                        self.num(loss),
                        self.t("loss", "de pertes")
                    ),
                    None => format!("{} % {}", self.num(loss), self.t("loss", "de pertes")),
                }
            }
            Probe::NotApplicable { .. } => return None,
            _ => self.not_measured(),
        };
        Some((label, value))
    }

    fn relay_line(&self, s: &Snapshot) -> Option<(String, String)> {
        let label = self.t("Support service", "Service d'assistance").to_owned();
        let value = match &s.path {
            Probe::Measured(path) if !path.udp_ok => {
                self.t("not reachable", "injoignable").to_owned()
            }
            Probe::Measured(path) => {
                let mut parts = Vec::new();
                if let Some(rtt) = &path.idle_rtt {
                    parts.push(format!("{} ms", self.num(rtt.median_ms)));
                    // The jitter a call meets (RFC 3550, probes 20 ms
                    // apart) when the agent measured it.
                    parts.push(format!(
                        "{} {} ms",
                        self.t("jitter", "gigue"),
                        self.num(path.media_jitter_ms.unwrap_or(rtt.jitter_ms))
                    ));
                }
                if let Some(loss) = path.loss_percent() {
                    parts.push(format!(
                        "{} % {}",
                        self.num(loss),
                        self.t("loss", "de pertes")
                    ));
                }
                if parts.is_empty() {
                    self.not_measured()
                } else {
                    parts.join(", ")
                }
            }
            Probe::NotApplicable { .. } => return None,
            Probe::Unknown { .. } => self.not_measured(),
        };
        Some((label, value))
    }

    /// Windows' own verdict (NCSI), beside ours, when the snapshot has it.
    fn os_verdict_line(&self, s: &Snapshot) -> Option<(String, String)> {
        use crate::snapshot::ConnectivityLevel as Level;
        let os = s.os_connectivity.as_ref()?.value()?;
        let level = match os.level {
            Level::InternetAccess => self.t("internet", "Internet"),
            Level::LocalAccess => self.t(
                "no internet (local network only)",
                "pas d'Internet (réseau local seulement)",
            ),
            Level::None => self.t("no network", "aucun réseau"),
            Level::ConstrainedInternetAccess => {
                self.t("limited (sign-in page)", "limité (page de connexion)")
            }
            Level::Hidden | Level::Unknown => self.t("no verdict", "pas d'avis"),
        };
        let mut value = level.to_owned();
        if os.metered() {
            value.push_str(self.t(", metered connection", ", connexion facturée à l'usage"));
        }
        Some((self.t("Windows says", "Selon Windows").to_owned(), value))
    }

    fn speed_line(&self, s: &Snapshot) -> Option<(String, String)> {
        let path = s.path.value().filter(|p| p.udp_ok)?;
        let direction = |probe: &Probe<crate::snapshot::Throughput>, en: &str, fr: &str| match probe
        {
            Probe::Measured(t) => Some(format!("{} Mbit/s {}", self.num(t.mbps), self.t(en, fr))),
            _ => None,
        };
        let parts: Vec<String> = [
            direction(&path.download, "down", "en réception"),
            direction(&path.upload, "up", "en envoi"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let value = if !parts.is_empty() {
            parts.join(", ")
        } else if matches!(path.download, Probe::NotApplicable { .. }) {
            self.t("not tested", "non testé").to_owned()
        } else {
            self.not_measured()
        };
        Some((self.t("Speed", "Débit").to_owned(), value))
    }

    fn load_line(&self, s: &Snapshot) -> Option<(String, String)> {
        let path = s.path.value()?;
        let added = path.added_latency_under_load_ms().filter(|a| a.is_finite());
        let grade = path
            .bufferbloat
            .or_else(|| added.map(Grade::from_added_latency))?;
        let name = match grade {
            Grade::APlus => "A+",
            Grade::A => "A",
            Grade::B => "B",
            Grade::C => "C",
            Grade::D => "D",
            Grade::F => "F",
        };
        let mut details = Vec::new();
        if let Some(a) = added {
            details.push(format!("+{} ms", self.num(a)));
        }
        let load = path.loaded.as_ref();
        if let Some((direction, worse)) = load.and_then(|l| l.worse()) {
            details.push(
                match direction {
                    "upload" => self.t("while sending", "en envoi"),
                    _ => self.t("while receiving", "en réception"),
                }
                .to_owned(),
            );
            if let Some(loss) = worse.loss_percent().filter(|l| *l > 0.0) {
                details.push(format!(
                    "{} % {}",
                    self.num(loss),
                    self.t("probe loss", "de sondes perdues")
                ));
            }
        }
        let extra = if details.is_empty() {
            String::new()
        } else {
            format!(" ({})", details.join(", "))
        };
        let rpm = load
            .and_then(|l| l.rpm)
            .filter(|r| r.is_finite())
            .map(|r| {
                format!(
                    ", {} {}",
                    r.round(),
                    self.t(
                        "round trips per minute (RPM)",
                        "allers-retours par minute (RPM)"
                    )
                )
            })
            .unwrap_or_default();
        Some((
            self.t("Delay under load", "Délai en charge").to_owned(),
            format!("{} {name}{extra}{rpm}", self.t("grade", "note")),
        ))
    }

    fn dns_line(&self, s: &Snapshot) -> Option<(String, String)> {
        let dns = s.dns.value()?;
        if dns.lookups.is_empty() {
            return None;
        }
        let mut durations: Vec<f64> = dns
            .lookups
            .iter()
            .filter(|l| l.error.is_none())
            .filter_map(|l| l.duration_ms)
            .filter(|d| d.is_finite())
            .collect();
        let failed = dns.lookups.len() - durations.len();
        let mut parts = Vec::new();
        if let Some(median) = crate::verdict::median(&mut durations) {
            parts.push(format!("{} ms", self.num(median)));
        }
        if failed > 0 {
            parts.push(match self.lang {
                Lang::En => format!("{failed} of {} lookups failed", dns.lookups.len()),
                Lang::Fr => format!(
                    "{failed} recherche{} sur {} en échec",
                    plural(failed),
                    dns.lookups.len()
                ),
            });
        }
        Some(("DNS".to_owned(), parts.join(", ")))
    }

    fn clock_line(&self, s: &Snapshot) -> Option<(String, String)> {
        let clock = s.clock.value()?;
        let seconds = clock.offset_ms as f64 / 1000.0;
        Some((
            self.t("Clock", "Horloge").to_owned(),
            match self.lang {
                Lang::En => format!("{} s off", self.num(seconds)),
                Lang::Fr => format!("décalage de {} s", self.num(seconds)),
            },
        ))
    }

    fn disk_line(&self, s: &Snapshot) -> Option<(String, String)> {
        let device = s.device.value()?;
        let disk = device
            .disks
            .iter()
            .find(|d| d.is_system && d.total_bytes > 0)?;
        const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
        let free = disk.available_bytes as f64 / GIB;
        let percent = 100.0 * disk.available_bytes as f64 / disk.total_bytes as f64;
        Some((
            format!("{} {}", self.t("Disk", "Disque"), disk.mount_point),
            format!(
                "{} {} {} ({} %)",
                self.num(free),
                self.gib(),
                self.t("free", "libres"),
                self.num(percent)
            ),
        ))
    }

    fn cpu_line(&self, s: &Snapshot) -> Option<(String, String)> {
        let device = s.device.value()?;
        let mut parts = Vec::new();
        if let Some(usage) = device.cpu.usage_percent.filter(|v| v.is_finite()) {
            parts.push(match self.lang {
                Lang::En => format!("{} % busy", self.num(usage)),
                Lang::Fr => format!("occupé à {} %", self.num(usage)),
            });
        }
        if let Some(psi) = device
            .pressure
            .value()
            .and_then(|p| p.cpu_some_avg60)
            .filter(|v| v.is_finite())
        {
            parts.push(format!(
                "{} {} %",
                self.t("pressure", "pression"),
                self.num(psi)
            ));
        }
        if parts.is_empty() {
            return None;
        }
        Some((
            self.t("Processor", "Processeur").to_owned(),
            parts.join(", "),
        ))
    }

    fn memory_line(&self, s: &Snapshot) -> Option<(String, String)> {
        let memory = &s.device.value()?.memory;
        if memory.total_bytes == 0 {
            return None;
        }
        const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
        let available = memory.available_bytes as f64 / GIB;
        let total = memory.total_bytes as f64 / GIB;
        Some((
            self.t("Memory", "Mémoire").to_owned(),
            match self.lang {
                Lang::En => format!(
                    "{} GiB available of {} GiB",
                    self.num(available),
                    self.num(total)
                ),
                Lang::Fr => format!(
                    "{} Gio disponibles sur {} Gio",
                    self.num(available),
                    self.num(total)
                ),
            },
        ))
    }

    // ----- Could not measure ---------------------------------------------

    fn unknowns(&self, out: &mut String, verdict: &Verdict) {
        if verdict.unknowns.is_empty() {
            return;
        }
        self.heading(out, "Could not measure", "Impossible à mesurer");
        let mut untranslated = false;
        for unknown in &verdict.unknowns {
            let reason = match self.lang {
                Lang::En => unknown.reason.clone(),
                Lang::Fr => crate::reason::french(&unknown.reason).unwrap_or_else(|| {
                    untranslated = true;
                    format!("{} (*)", unknown.reason)
                }),
            };
            let _ = writeln!(
                out,
                "- {} [{}]{} {reason}",
                self.label(&unknown.what),
                unknown.what,
                self.t(":", " :"),
            );
        }
        if untranslated {
            let _ = writeln!(
                out,
                "(*) raison laissée en anglais, telle que la mesure l'a donnée."
            );
        }
    }

    /// What an unknown entry's `what` means, in words.
    fn label(&self, what: &str) -> String {
        if let Some(rule) = RULES.iter().find(|r| r.id == what) {
            return self.t(rule.label_en, rule.label_fr).to_owned();
        }
        let (en, fr) = match what {
            "device" => ("the computer's state", "l'état de l'ordinateur"),
            "device.pressure" => ("system pressure (PSI)", "pression du système (PSI)"),
            "device.temperatures" => ("temperatures", "températures"),
            "device.battery" => ("battery", "batterie"),
            "network" => ("network settings", "réglages réseau"),
            "wifi" => ("Wi‑Fi link", "liaison Wi‑Fi"),
            "gateway" => ("home router", "box (routeur)"),
            "dns" => ("name resolution (DNS)", "résolution de noms (DNS)"),
            "clock" => ("clock", "horloge"),
            "path" => (
                "connection to the support service",
                "connexion au service d'assistance",
            ),
            "path.download" => ("download speed", "débit descendant"),
            "path.upload" => ("upload speed", "débit montant"),
            "os_connectivity" => (
                "Windows' connectivity indicator",
                "indicateur de connectivité de Windows",
            ),
            other => (other, other),
        };
        self.t(en, fr).to_owned()
    }
}

/// French typography for any text: a plain space before `:` becomes a
/// no-break space (U+00A0), before `;`, `?` and `!` a narrow no-break space
/// (U+202F). Text without a space before the sign (`host:port`, `12:30`,
/// URLs) is left alone.
pub fn french_typography(text: &str) -> String {
    text.replace(" :", "\u{a0}:")
        .replace(" ;", "\u{202f};")
        .replace(" ?", "\u{202f}?")
        .replace(" !", "\u{202f}!")
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests;
