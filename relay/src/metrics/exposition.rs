//! The Prometheus text exposition format (version 0.0.4), written by hand:
//! one `# HELP` and one `# TYPE` line per family, then its samples.

use std::fmt::Write as _;

/// The `Content-Type` of what [`Writer`] produces.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Kinds of metric families this relay exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up; the name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets, `_sum` and `_count`.
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Builds one exposition text.
#[derive(Debug, Default)]
pub struct Writer {
    out: String,
}

impl Writer {
    /// Starts a family. Counters must be named `…_total` (checked in debug
    /// builds and by the tests that render every family).
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        debug_assert!(kind != Kind::Counter || name.ends_with("_total"), "{name}");
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.name());
    }

    /// One sample line: `name{label="value",…} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Value) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, text)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape_label(text));
            }
            self.out.push('}');
        }
        self.out.push(' ');
        value.write(&mut self.out);
        self.out.push('\n');
    }

    /// The samples of one histogram (its family must have been started):
    /// cumulative buckets with `le`, the `+Inf` bucket, `_sum` and `_count`.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        snapshot: &super::histogram::Snapshot,
    ) {
        let bucket = format!("{name}_bucket");
        for (bound, count) in &snapshot.buckets {
            let le = format_float(*bound);
            let mut with_le: Vec<(&str, &str)> = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, *count);
        }
        let mut with_le: Vec<(&str, &str)> = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&bucket, &with_le, snapshot.count);
        self.sample(&format!("{name}_sum"), labels, snapshot.sum_seconds);
        self.sample(&format!("{name}_count"), labels, snapshot.count);
    }

    /// The finished text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// A sample value.
pub trait Value {
    /// Appends the value as the format spells it.
    fn write(&self, out: &mut String);
}

impl Value for u64 {
    fn write(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for i64 {
    fn write(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for usize {
    fn write(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for f64 {
    fn write(&self, out: &mut String) {
        out.push_str(&format_float(*self));
    }
}

/// Floats as Go's `strconv.ParseFloat` reads them: `+Inf`, `-Inf`, `NaN`,
/// else Rust's shortest round-trip decimal.
pub fn format_float(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{value}")
    }
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::super::histogram::Histogram;
    use super::*;

    #[test]
    fn families_samples_and_escapes_are_written_as_the_format_says() {
        let mut w = Writer::default();
        w.family(
            "deskside_relay_things_total",
            "Things seen.\nSecond line with a \\ backslash.",
            Kind::Counter,
        );
        w.sample(
            "deskside_relay_things_total",
            &[("kind", "a\"b\\c\nd")],
            3u64,
        );
        w.sample("deskside_relay_things_total", &[], 0u64);
        w.family("deskside_relay_level", "A level.", Kind::Gauge);
        w.sample("deskside_relay_level", &[("x", "1"), ("y", "2")], -2i64);
        w.sample("deskside_relay_level", &[], 0.5f64);
        assert_eq!(
            w.finish(),
            "# HELP deskside_relay_things_total Things seen.\\nSecond line with a \\\\ backslash.\n\
             # TYPE deskside_relay_things_total counter\n\
             deskside_relay_things_total{kind=\"a\\\"b\\\\c\\nd\"} 3\n\
             deskside_relay_things_total 0\n\
             # HELP deskside_relay_level A level.\n\
             # TYPE deskside_relay_level gauge\n\
             deskside_relay_level{x=\"1\",y=\"2\"} -2\n\
             deskside_relay_level 0.5\n"
        );
    }

    #[test]
    fn a_histogram_has_cumulative_buckets_an_inf_bucket_sum_and_count() {
        let h = Histogram::default();
        h.observe(std::time::Duration::from_micros(50));
        h.observe(std::time::Duration::from_secs(20));
        let mut w = Writer::default();
        w.family("deskside_relay_op_seconds", "Op time.", Kind::Histogram);
        w.histogram("deskside_relay_op_seconds", &[("op", "x")], &h.snapshot());
        let text = w.finish();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[2],
            "deskside_relay_op_seconds_bucket{op=\"x\",le=\"0.0001\"} 1"
        );
        assert!(lines.contains(&"deskside_relay_op_seconds_bucket{op=\"x\",le=\"10\"} 1"));
        assert!(lines.contains(&"deskside_relay_op_seconds_bucket{op=\"x\",le=\"+Inf\"} 2"));
        assert!(lines.contains(&"deskside_relay_op_seconds_sum{op=\"x\"} 20.00005"));
        assert_eq!(
            lines.last(),
            Some(&"deskside_relay_op_seconds_count{op=\"x\"} 2")
        );
        // 16 bounds + Inf + sum + count + HELP + TYPE.
        assert_eq!(lines.len(), 21);
    }

    #[test]
    fn floats_are_spelled_for_prometheus() {
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(0.00025), "0.00025");
        assert_eq!(format_float(2.0), "2");
    }
}
