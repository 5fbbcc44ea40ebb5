//! A strict reader of the Prometheus text exposition format (0.0.4), for
//! tests that scrape the relay: it refuses what a lenient scraper would let
//! pass, so a test that reads a page through it checks the format too.
//!
//! Rules checked: every family has exactly one `# HELP` and one `# TYPE`
//! line, both before its samples; no other comments; every sample belongs
//! to a declared family and families are not interleaved; counters are
//! named `…_total`; histograms have, per label set, `_bucket` lines with an
//! `le` label, cumulative counts, a `+Inf` bucket equal to `_count`, and a
//! `_sum`; no series appears twice; names and label names are valid; values
//! parse as floats; every name starts with the expected prefix.

use std::collections::{BTreeMap, HashMap, HashSet};

/// Labels of one sample, sorted by name.
pub type Labels = BTreeMap<String, String>;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Its metric name (for histograms `…_bucket`, `…_sum`, `…_count`).
    pub name: String,
    /// Its labels.
    pub labels: Labels,
    /// Its value.
    pub value: f64,
}

/// One family.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// `counter`, `gauge` or `histogram`.
    pub kind: String,
    /// The HELP text (unescaped).
    pub help: String,
    /// Its samples, in page order.
    pub samples: Vec<Sample>,
}

/// A parsed page.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// Families by name.
    pub families: HashMap<String, Family>,
}

impl Exposition {
    /// The value of the sample `name` with exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: Labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.families
            .values()
            .flat_map(|f| &f.samples)
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }

    /// Like [`Exposition::value`], panicking with the page's names when the
    /// sample is missing.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or_else(|| {
            let mut names: Vec<&String> = self.families.keys().collect();
            names.sort();
            panic!("no sample {name} {labels:?}; families: {names:?}")
        })
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text
            .parse::<f64>()
            .map_err(|_| format!("bad value {text:?}")),
    }
}

fn unescape_help(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                other => return Err(format!("bad escape \\{other:?} in HELP")),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Parses `name{a="b",…} value` (no timestamps: the relay writes none).
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("no value in {line:?}"))?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = Labels::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let closed = loop {
            // A label name up to '=' (or the closing brace).
            let start = match chars.peek() {
                Some((_, '}')) => {
                    let (i, _) = chars.next().unwrap_or((0, '}'));
                    break i;
                }
                Some((i, _)) => *i,
                None => return Err(format!("unclosed labels in {line:?}")),
            };
            let mut eq = None;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    eq = Some(i);
                    break;
                }
            }
            let eq = eq.ok_or_else(|| format!("label without '=' in {line:?}"))?;
            let key = &after[start..eq];
            if !valid_label_name(key) {
                return Err(format!("bad label name {key:?} in {line:?}"));
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label value not quoted in {line:?}"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => return Err(format!("bad escape {other:?} in {line:?}")),
                    },
                    Some((_, '"')) => break,
                    Some((_, '\n')) | None => {
                        return Err(format!("unterminated label value in {line:?}"))
                    }
                    Some((_, c)) => value.push(c),
                }
            }
            if labels.insert(key.to_owned(), value).is_some() {
                return Err(format!("label {key:?} twice in {line:?}"));
            }
            match chars.next() {
                Some((_, ',')) => continue,
                Some((i, '}')) => break i,
                other => return Err(format!("expected ',' or '}}', got {other:?} in {line:?}")),
            }
        };
        rest = &after[closed + 1..];
    }
    let value = rest
        .strip_prefix(' ')
        .ok_or_else(|| format!("no space before the value in {line:?}"))?;
    if value.contains(' ') {
        return Err(format!("timestamps or extra fields in {line:?}"));
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(value)?,
    })
}

/// The family a sample of `kind` named `name` must belong to.
fn family_of(name: &str, family: &str, kind: &str) -> bool {
    match kind {
        "histogram" => [
            format!("{family}_bucket"),
            format!("{family}_sum"),
            format!("{family}_count"),
        ]
        .iter()
        .any(|n| n == name),
        _ => name == family,
    }
}

/// Parses and checks a whole page; every name must start with `prefix`.
pub fn parse(text: &str, prefix: &str) -> Result<Exposition, String> {
    let mut page = Exposition::default();
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut current: Option<String> = None;
    let mut closed_families: HashSet<String> = HashSet::new();
    let mut series: HashSet<(String, Labels)> = HashSet::new();
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the page does not end with a newline".into());
    }
    for (number, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}", number + 1);
        if line.is_empty() {
            return Err(at("empty line".into()));
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut parts = comment.splitn(4, ' ');
            let (Some(""), Some(keyword), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(at(format!("comment that is not HELP or TYPE: {line:?}")));
            };
            let rest = parts.next().unwrap_or("");
            if !valid_name(name) || !name.starts_with(prefix) {
                return Err(at(format!("bad family name {name:?}")));
            }
            if page
                .families
                .get(name)
                .is_some_and(|f| !f.samples.is_empty())
                || closed_families.contains(name)
            {
                return Err(at(format!("{keyword} for {name} after its samples")));
            }
            if current.as_deref() != Some(name) {
                if let Some(previous) = current.take() {
                    closed_families.insert(previous);
                }
                current = Some(name.to_owned());
            }
            match keyword {
                "HELP" => {
                    if helps
                        .insert(name.to_owned(), unescape_help(rest).map_err(at)?)
                        .is_some()
                    {
                        return Err(at(format!("second HELP for {name}")));
                    }
                }
                "TYPE" => {
                    if !matches!(rest, "counter" | "gauge" | "histogram") {
                        return Err(at(format!("unexpected type {rest:?} for {name}")));
                    }
                    if rest == "counter" && !name.ends_with("_total") {
                        return Err(at(format!("counter {name} is not named …_total")));
                    }
                    if rest != "counter" && name.ends_with("_total") {
                        return Err(at(format!("{rest} {name} is named like a counter")));
                    }
                    if types.insert(name.to_owned(), rest.to_owned()).is_some() {
                        return Err(at(format!("second TYPE for {name}")));
                    }
                }
                _ => return Err(at(format!("comment that is not HELP or TYPE: {line:?}"))),
            }
            continue;
        }
        let sample = parse_sample(line).map_err(at)?;
        let family = current
            .clone()
            .ok_or_else(|| at(format!("sample {} before any family", sample.name)))?;
        let (Some(help), Some(kind)) = (helps.get(&family), types.get(&family)) else {
            return Err(at(format!("family {family} lacks HELP or TYPE")));
        };
        if !family_of(&sample.name, &family, kind) {
            return Err(at(format!(
                "sample {} does not belong to the {kind} family {family} declared above it",
                sample.name
            )));
        }
        if kind == "histogram"
            && sample.name.ends_with("_bucket") != sample.labels.contains_key("le")
        {
            return Err(at(format!(
                "`le` on a non-bucket or missing on a bucket: {line}"
            )));
        }
        if kind != "histogram" && sample.labels.contains_key("le") {
            return Err(at(format!("`le` outside a histogram: {line}")));
        }
        if !series.insert((sample.name.clone(), sample.labels.clone())) {
            return Err(at(format!("series repeated: {line}")));
        }
        if kind == "counter" && (sample.value.is_nan() || sample.value < 0.0) {
            return Err(at(format!("negative or NaN counter: {line}")));
        }
        let entry = page
            .families
            .entry(family.clone())
            .or_insert_with(|| Family {
                kind: kind.clone(),
                help: help.clone(),
                samples: Vec::new(),
            });
        entry.samples.push(sample);
    }
    for name in helps.keys().chain(types.keys()) {
        if !(helps.contains_key(name) && types.contains_key(name)) {
            return Err(format!("family {name} lacks HELP or TYPE"));
        }
    }
    for (name, family) in &page.families {
        if family.kind == "histogram" {
            check_histogram(name, family)?;
        }
    }
    Ok(page)
}

fn check_histogram(name: &str, family: &Family) -> Result<(), String> {
    /// Per label set: `(le, count)` buckets, the sum, the count.
    type Series = (Vec<(f64, f64)>, Option<f64>, Option<f64>);
    let mut sets: BTreeMap<Labels, Series> = BTreeMap::new();
    for sample in &family.samples {
        let mut labels = sample.labels.clone();
        let le = labels.remove("le");
        let entry = sets.entry(labels).or_default();
        if sample.name.ends_with("_bucket") {
            let le = parse_value(le.as_deref().unwrap_or(""))
                .map_err(|e| format!("{name}: bad le: {e}"))?;
            entry.0.push((le, sample.value));
        } else if sample.name.ends_with("_sum") {
            entry.1 = Some(sample.value);
        } else {
            entry.2 = Some(sample.value);
        }
    }
    for (labels, (buckets, sum, count)) in sets {
        let what = format!("{name}{labels:?}");
        let Some(count) = count else {
            return Err(format!("{what}: no _count"));
        };
        if sum.is_none() {
            return Err(format!("{what}: no _sum"));
        }
        if buckets.last().map(|b| b.0) != Some(f64::INFINITY) {
            return Err(format!("{what}: the last bucket is not +Inf"));
        }
        if buckets
            .windows(2)
            .any(|w| w[0].0 >= w[1].0 || w[0].1 > w[1].1)
        {
            return Err(format!("{what}: buckets not increasing or not cumulative"));
        }
        if buckets.last().map(|b| b.1) != Some(count) {
            return Err(format!("{what}: +Inf bucket differs from _count"));
        }
    }
    Ok(())
}

/// Fetches `http://addr/metrics` with a plain HTTP/1.1 GET; returns the
/// status line and the body.
pub fn scrape(addr: &str) -> (String, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr)
        .unwrap_or_else(|e| panic!("cannot connect to the metrics endpoint {addr}: {e}"));
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("read timeout");
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\n\r\n")
                .as_bytes(),
        )
        .expect("send the request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {answer:?}"));
    let status = head.lines().next().unwrap_or("").to_owned();
    (status, body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# HELP p_a_total A.\n# TYPE p_a_total counter\np_a_total{k=\"v\\\"x\"} 3\n\
# HELP p_h_seconds H.\n# TYPE p_h_seconds histogram\n\
p_h_seconds_bucket{op=\"x\",le=\"0.1\"} 1\np_h_seconds_bucket{op=\"x\",le=\"+Inf\"} 2\n\
p_h_seconds_sum{op=\"x\"} 0.5\np_h_seconds_count{op=\"x\"} 2\n";

    #[test]
    fn a_good_page_parses() {
        let page = parse(GOOD, "p_").unwrap();
        assert_eq!(page.get("p_a_total", &[("k", "v\"x")]), 3.0);
        assert_eq!(page.get("p_h_seconds_count", &[("op", "x")]), 2.0);
        assert_eq!(page.families["p_h_seconds"].kind, "histogram");
    }

    #[test]
    fn bad_pages_are_refused() {
        // Each page, why it is bad, and what the error must say (so a page
        // refused for another reason than the one it tests fails).
        for (bad, why, says) in [
            ("p_a_total 1\n", "no family", "before any family"),
            ("# TYPE p_a_total counter\np_a_total 1\n", "no HELP", "lacks HELP or TYPE"),
            ("# HELP p_a A.\n# TYPE p_a counter\np_a 1\n", "counter without _total", "is not named …_total"),
            ("# HELP p_a A.\n# TYPE p_a gauge\np_b 1\n", "foreign sample", "does not belong"),
            ("# HELP p_a A.\n# TYPE p_a gauge\np_a 1\np_a 2\n", "repeated series", "series repeated"),
            ("# HELP p_a A.\n# TYPE p_a gauge\np_a one\n", "bad value", "bad value"),
            ("# HELP p_a A.\n# TYPE p_a gauge\np_a{k=v} 1\n", "unquoted label", "not quoted"),
            ("# HELP q_a A.\n# TYPE q_a gauge\nq_a 1\n", "wrong prefix", "bad family name"),
            ("# HELP p_a A.\n# TYPE p_a gauge\np_a 1", "no final newline", "does not end with a newline"),
            ("# HELP p_a A.\n# TYPE p_a gauge\n# other\np_a 1\n", "stray comment", "not HELP or TYPE"),
            ("# HELP p_a A.\n# TYPE p_a gauge\np_a 1 1700000000\n", "timestamp", "timestamps"),
            (
                "# HELP p_h H.\n# TYPE p_h histogram\np_h_bucket{le=\"1\"} 1\np_h_sum 1\np_h_count 1\n",
                "no +Inf", "not +Inf",
            ),
            (
                "# HELP p_h H.\n# TYPE p_h histogram\np_h_bucket{le=\"1\"} 2\np_h_bucket{le=\"+Inf\"} 1\np_h_sum 1\np_h_count 1\n",
                "not cumulative", "not cumulative",
            ),
            (
                "# HELP p_h H.\n# TYPE p_h histogram\np_h_bucket{le=\"+Inf\"} 1\np_h_count 1\n",
                "no sum", "no _sum",
            ),
            (
                "# HELP p_h H.\n# TYPE p_h histogram\np_h_bucket{le=\"+Inf\"} 2\np_h_sum 1\np_h_count 1\n",
                "Inf differs from count", "differs from _count",
            ),
            (
                "# HELP p_a A.\n# TYPE p_a gauge\np_a 1\n# HELP p_b B.\n# TYPE p_b gauge\np_b 1\np_a{x=\"1\"} 1\n",
                "interleaved", "does not belong",
            ),
            (
                "# HELP p_a A.\n# TYPE p_a gauge\np_a 1\n# HELP p_b B.\n# TYPE p_b gauge\np_b 1\n# HELP p_a A.\n",
                "family declared again", "after its samples",
            ),
        ] {
            match parse(bad, "p_") {
                Ok(_) => panic!("accepted a page with {why}: {bad:?}"),
                Err(e) => assert!(e.contains(says), "{why}: refused for another reason: {e}"),
            }
        }
    }
}
