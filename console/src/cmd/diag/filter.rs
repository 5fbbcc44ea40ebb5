//! `--where` expressions for fleet runs (`deskside diag --all|--group`):
//! comparisons on device fields (hostname, group, verdict, …) and snapshot
//! fields (`wifi.signal_dbm`, …), joined with `and`/`or` and parentheses.
//!
//! Pure: parsing checks every field name against [`fields`] (the snapshot
//! fields are read from the snapshot types themselves, so the list follows
//! the format) and refuses unknown ones with the valid names, so a typo
//! never silently matches nothing. Nothing here does I/O.

use deskside_diag::snapshot::{
    Battery, Clock, DefaultRoute, Device, Dns, Gateway, NetworkConfig, OsConnectivity, Path,
    Pressure, RttStats, Throughput, Wifi,
};
use deskside_diag::{Probe, Snapshot};
use serde_json::Value;

/// What values a field holds, which decides the comparisons it accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A number: every comparison.
    Number,
    /// Text: `==`, `!=` and `~` (contains, ignoring case).
    Text,
    /// `true` or `false`: `==` and `!=`.
    Bool,
    /// A number or a text, depending on the device (an optional value the
    /// format leaves empty until measured).
    Any,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Number => "number",
            Kind::Text => "text",
            Kind::Bool => "true/false",
            Kind::Any => "number or text",
        }
    }
}

/// One field a `--where` expression may name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldInfo {
    /// The name as written in the expression.
    pub name: String,
    /// Its values.
    pub kind: Kind,
    /// What it is, for the device fields; snapshot fields are described by
    /// their name.
    pub about: &'static str,
}

/// The verdict values: `ok`, the segments, and `error` for a device that
/// could not be diagnosed.
pub const VERDICTS: [&str; 8] = [
    "ok",
    "device",
    "home_network",
    "configuration",
    "isp",
    "service",
    "unknown",
    "error",
];

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
        .map(|(name, kind, about)| FieldInfo {
            name: (*name).to_owned(),
            kind: *kind,
            about,
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
        out.push(FieldInfo {
            name,
            kind,
            about: "",
        });
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

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    Contains,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Contains => "~",
        }
    }
}

/// The value compared with.
#[derive(Clone, Debug, PartialEq)]
enum Literal {
    Number(f64, String),
    Text(String),
    Bool(bool),
}

/// Where a compared value comes from.
#[derive(Clone, Debug, PartialEq)]
enum Source {
    Hostname,
    Group,
    Id,
    Verdict,
    Finding,
    Snapshot(Vec<String>),
}

#[derive(Clone, Debug, PartialEq)]
struct Comparison {
    source: Source,
    op: Op,
    value: Literal,
}

/// A parsed `--where` expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter(Expr);

#[derive(Clone, Debug, PartialEq)]
enum Expr {
    /// Every part matches.
    All(Vec<Expr>),
    /// At least one part matches.
    Any(Vec<Expr>),
    /// One comparison.
    Compare(Comparison),
}

/// What a filter is evaluated against: one device of a fleet run.
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

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Op(Op),
    And,
    Or,
    Open,
    Close,
}

const SYNTAX: &str = "write FIELD OP VALUE (OP one of < <= > >= == != ~), joined with and/or and parentheses, e.g. 'wifi.signal_dbm < -70 and group == paris'";

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            '&' if next == Some('&') => {
                tokens.push(Token::And);
                i += 2;
            }
            '|' if next == Some('|') => {
                tokens.push(Token::Or);
                i += 2;
            }
            '<' | '>' | '=' | '!' | '~' => {
                let (op, len) = match (c, next) {
                    ('<', Some('=')) => (Op::Le, 2),
                    ('>', Some('=')) => (Op::Ge, 2),
                    ('=', Some('=')) => (Op::Eq, 2),
                    ('!', Some('=')) => (Op::Ne, 2),
                    ('<', _) => (Op::Lt, 1),
                    ('>', _) => (Op::Gt, 1),
                    ('=', _) => (Op::Eq, 1),
                    ('~', _) => (Op::Contains, 1),
                    _ => return Err(format!("unexpected '!' in {text:?}: {SYNTAX}")),
                };
                tokens.push(Token::Op(op));
                i += len;
            }
            '\'' | '"' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&d| d == c)
                    .ok_or_else(|| format!("unclosed quote in {text:?}"))?;
                tokens.push(Token::Quoted(chars[i + 1..i + 1 + end].iter().collect()));
                i += end + 2;
            }
            '&' | '|' => return Err(format!("unexpected '{c}' in {text:?}: {SYNTAX}")),
            _ => {
                let start = i;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !"()<>=!~'\"&|".contains(chars[i])
                {
                    i += 1;
                }
                tokens.push(Token::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    known: &'a [FieldInfo],
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn connective(&self, which: &Token) -> bool {
        match (self.peek(), which) {
            (Some(Token::And), Token::And) | (Some(Token::Or), Token::Or) => true,
            (Some(Token::Word(word)), Token::And) => word.eq_ignore_ascii_case("and"),
            (Some(Token::Word(word)), Token::Or) => word.eq_ignore_ascii_case("or"),
            _ => false,
        }
    }

    fn any(&mut self) -> Result<Expr, String> {
        let mut parts = vec![self.all()?];
        while self.connective(&Token::Or) {
            self.at += 1;
            parts.push(self.all()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Any(parts)
        })
    }

    fn all(&mut self) -> Result<Expr, String> {
        let mut parts = vec![self.primary()?];
        while self.connective(&Token::And) {
            self.at += 1;
            parts.push(self.primary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::All(parts)
        })
    }

    fn primary(&mut self) -> Result<Expr, String> {
        match self.tokens.get(self.at).cloned() {
            Some(Token::Open) => {
                self.at += 1;
                let inner = self.any()?;
                if self.peek() != Some(&Token::Close) {
                    return Err(format!("missing ')': {SYNTAX}"));
                }
                self.at += 1;
                Ok(inner)
            }
            Some(Token::Word(field)) => {
                self.at += 1;
                let info = self
                    .known
                    .iter()
                    .find(|f| f.name == field)
                    .ok_or_else(|| unknown_field(&field, self.known))?;
                let op = match self.tokens.get(self.at) {
                    Some(Token::Op(op)) => *op,
                    _ => return Err(format!("expected a comparison after {field:?}: {SYNTAX}")),
                };
                self.at += 1;
                let raw = match self.tokens.get(self.at) {
                    Some(Token::Word(word)) => word.clone(),
                    Some(Token::Quoted(text)) => text.clone(),
                    _ => {
                        return Err(format!(
                            "expected a value after {field} {}: {SYNTAX}",
                            op.text()
                        ))
                    }
                };
                let quoted = matches!(self.tokens.get(self.at), Some(Token::Quoted(_)));
                self.at += 1;
                comparison(info, op, raw, quoted).map(Expr::Compare)
            }
            Some(_) => Err(format!("expected a field name: {SYNTAX}")),
            None => Err(format!("the expression ends too early: {SYNTAX}")),
        }
    }
}

fn unknown_field(field: &str, known: &[FieldInfo]) -> String {
    let last = field.rsplit('.').next().unwrap_or(field);
    let close: Vec<&str> = known
        .iter()
        .map(|f| f.name.as_str())
        .filter(|name| name.rsplit('.').next() == Some(last) || name.starts_with(field))
        .take(5)
        .collect();
    let hint = if close.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", close.join(", "))
    };
    let all: Vec<&str> = known.iter().map(|f| f.name.as_str()).collect();
    format!(
        "unknown field {field:?} in --where{hint}; valid fields (see `deskside diag fields`): {}",
        all.join(", ")
    )
}

fn comparison(info: &FieldInfo, op: Op, raw: String, quoted: bool) -> Result<Comparison, String> {
    let name = &info.name;
    let number = if quoted {
        None
    } else {
        raw.parse::<f64>().ok()
    };
    let text_op = matches!(op, Op::Eq | Op::Ne | Op::Contains);
    let value = match info.kind {
        Kind::Number => match number {
            Some(n) if op != Op::Contains => Literal::Number(n, raw),
            Some(_) => {
                return Err(format!(
                    "{name} is a number: compare it with < <= > >= == !="
                ))
            }
            None => return Err(format!("{name} is a number, and {raw:?} is not one")),
        },
        Kind::Bool => match (raw.as_str(), op) {
            ("true", Op::Eq | Op::Ne) => Literal::Bool(true),
            ("false", Op::Eq | Op::Ne) => Literal::Bool(false),
            _ => {
                return Err(format!(
                    "{name} is true or false: write {name} == true or {name} == false"
                ))
            }
        },
        Kind::Text if !text_op => {
            return Err(format!(
                "{name} is text: compare it with ==, != or ~ (contains)"
            ))
        }
        Kind::Text => Literal::Text(raw),
        Kind::Any => match number {
            Some(n) if op != Op::Contains => Literal::Number(n, raw),
            // An optional yes/no (`dns.relay_reachable`).
            _ if !quoted && matches!(op, Op::Eq | Op::Ne) && (raw == "true" || raw == "false") => {
                Literal::Bool(raw == "true")
            }
            _ if text_op => Literal::Text(raw),
            _ => {
                return Err(format!(
                    "{raw:?} is not a number, so only ==, != and ~ apply to {name}"
                ))
            }
        },
    };
    let source = match name.as_str() {
        "hostname" => Source::Hostname,
        "group" => Source::Group,
        "id" => Source::Id,
        "finding" => Source::Finding,
        "verdict" => {
            if let Literal::Text(text) = &value {
                if op != Op::Contains && !VERDICTS.contains(&text.as_str()) {
                    return Err(format!(
                        "verdict is one of {}; {text:?} is not",
                        VERDICTS.join(", ")
                    ));
                }
            }
            Source::Verdict
        }
        _ => Source::Snapshot(name.split('.').map(str::to_owned).collect()),
    };
    Ok(Comparison { source, op, value })
}

impl Filter {
    /// Parses an expression, checking every field name.
    pub fn parse(text: &str) -> Result<Self, String> {
        let known = fields();
        let tokens = tokenize(text)?;
        if tokens.is_empty() {
            return Err(format!("--where is empty: {SYNTAX}"));
        }
        let mut parser = Parser {
            tokens,
            at: 0,
            known: &known,
        };
        let expr = parser.any().map_err(|e| format!("--where {text:?}: {e}"))?;
        if parser.at != parser.tokens.len() {
            return Err(format!(
                "--where {text:?}: unexpected text after a comparison; join comparisons with and/or: {SYNTAX}"
            ));
        }
        Ok(Self(expr))
    }

    /// Whether the filter reads only what the device list already says
    /// (hostname, group, id), so devices can be chosen before any is
    /// diagnosed.
    pub fn needs_diagnosis(&self) -> bool {
        self.0.needs_diagnosis()
    }

    /// Whether `record` matches. A snapshot field that was not measured
    /// never matches, whatever the comparison.
    pub fn matches(&self, record: &Record<'_>) -> bool {
        self.0.matches(record)
    }
}

impl Expr {
    fn needs_diagnosis(&self) -> bool {
        match self {
            Expr::All(parts) | Expr::Any(parts) => parts.iter().any(Expr::needs_diagnosis),
            Expr::Compare(c) => !matches!(c.source, Source::Hostname | Source::Group | Source::Id),
        }
    }

    fn matches(&self, record: &Record<'_>) -> bool {
        match self {
            Expr::All(parts) => parts.iter().all(|p| p.matches(record)),
            Expr::Any(parts) => parts.iter().any(|p| p.matches(record)),
            Expr::Compare(c) => c.matches(record),
        }
    }
}

impl Comparison {
    fn matches(&self, record: &Record<'_>) -> bool {
        let text = |have: &str| match (&self.value, self.op) {
            (Literal::Text(want), Op::Eq) => have == want,
            (Literal::Text(want), Op::Ne) => have != want,
            (Literal::Text(want), Op::Contains) => {
                have.to_lowercase().contains(&want.to_lowercase())
            }
            (Literal::Number(_, raw), Op::Eq) => have == raw,
            (Literal::Number(_, raw), Op::Ne) => have != raw,
            _ => false,
        };
        match &self.source {
            Source::Hostname => text(record.hostname),
            Source::Group => text(record.group.unwrap_or("")),
            Source::Id => text(record.id),
            Source::Verdict => text(record.verdict),
            Source::Finding => match self.op {
                Op::Ne => record.findings.iter().all(|f| text(f)),
                _ => record.findings.iter().any(|f| text(f)),
            },
            Source::Snapshot(path) => {
                let Some(current) = record
                    .snapshot
                    .and_then(|s| super::field(s, path.iter().map(String::as_str)))
                else {
                    return false;
                };
                match (&self.value, current) {
                    (_, Value::Null) => false,
                    (Literal::Number(want, _), Value::Number(have)) => {
                        let Some(have) = have.as_f64() else {
                            return false;
                        };
                        match self.op {
                            Op::Lt => have < *want,
                            Op::Le => have <= *want,
                            Op::Gt => have > *want,
                            Op::Ge => have >= *want,
                            Op::Eq => have == *want,
                            Op::Ne => have != *want,
                            Op::Contains => false,
                        }
                    }
                    (Literal::Bool(want), Value::Bool(have)) => match self.op {
                        Op::Eq => have == want,
                        Op::Ne => have != want,
                        _ => false,
                    },
                    (_, Value::String(have)) => text(have),
                    _ => false,
                }
            }
        }
    }
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
            let filter = Filter::parse(text).unwrap();
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
            let filter = Filter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
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
        assert!(Filter::parse("group != paris").unwrap().matches(&no_group));
        assert!(Filter::parse("verdict == error")
            .unwrap()
            .matches(&no_group));
        assert!(!Filter::parse("wifi.signal_dbm < 0")
            .unwrap()
            .matches(&no_group));
    }

    #[test]
    fn unknown_fields_are_refused_with_the_valid_ones() {
        let error = Filter::parse("wifi.signal < -70").unwrap_err();
        assert!(error.contains("unknown field \"wifi.signal\""), "{error}");
        assert!(error.contains("wifi.signal_dbm"), "{error}");
        assert!(error.contains("hostname"), "{error}");
        assert!(error.contains("deskside diag fields"), "{error}");
        let error = Filter::parse("hostname == a or wifi.rssi < 3").unwrap_err();
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
            assert!(Filter::parse(text).is_err(), "{text:?} was accepted");
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
            Filter::parse(&format!("{} == {value}", field.name))
                .unwrap_or_else(|e| panic!("{}: {e}", field.name));
        }
        let text = render_fields(&fields);
        assert!(text.contains("wifi.signal_dbm"), "{text}");
    }
}
