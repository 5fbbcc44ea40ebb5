//! The timeline's charts, pure: the terminal chart (one row of block
//! characters per metric) and the SVG a technician attaches to a ticket.
//! Both read the same [`Series`]: the main metrics per sample, in the
//! window asked for.

use std::fmt::Write as _;

use deskside_diag::timeline::{Episode, Sample};
use deskside_diag::verdict::Segment;
use deskside_diag::Thresholds;

/// One metric to chart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Row {
    /// Wi‑Fi signal, dBm (lower is worse).
    Signal,
    /// Probe loss to the home router, percent.
    GatewayLoss,
    /// Round trip to the relay, ms.
    RelayRtt,
    /// Packet loss to the relay, percent.
    RelayLoss,
}

/// The rows, top to bottom.
pub const ROWS: [Row; 4] = [Row::Signal, Row::GatewayLoss, Row::RelayRtt, Row::RelayLoss];

impl Row {
    /// Label, padded by the caller.
    pub fn label(self) -> &'static str {
        match self {
            Row::Signal => "Wi‑Fi signal dBm",
            Row::GatewayLoss => "router loss %",
            Row::RelayRtt => "relay RTT ms",
            Row::RelayLoss => "relay loss %",
        }
    }

    /// The value in one sample, if measured.
    pub fn value(self, sample: &Sample) -> Option<f64> {
        let v = match self {
            Row::Signal => sample.wifi.as_ref()?.signal_dbm.map(f64::from),
            Row::GatewayLoss => {
                let g = sample.gateway.as_ref()?;
                (g.sent > 0).then(|| {
                    100.0 * f64::from(g.sent.saturating_sub(g.received)) / f64::from(g.sent)
                })
            }
            Row::RelayRtt => sample.relay.as_ref()?.rtt_ms.map(f64::from),
            Row::RelayLoss => sample.relay.as_ref()?.loss_percent(),
        };
        v.filter(|v| v.is_finite())
    }

    /// Whether lower values are worse (the signal).
    pub fn lower_is_worse(self) -> bool {
        self == Row::Signal
    }

    /// The threshold drawn as a line.
    pub fn threshold(self, t: &Thresholds) -> f64 {
        match self {
            Row::Signal => t.wifi_signal_weak_dbm,
            Row::GatewayLoss => t.gateway_loss_percent,
            Row::RelayRtt => t.path_rtt_ms,
            Row::RelayLoss => t.path_loss_percent,
        }
    }

    /// The scale's fixed ends (worst, best) so that charts compare across
    /// devices; values beyond are clamped.
    fn scale(self) -> (f64, f64) {
        match self {
            Row::Signal => (-90.0, -40.0),
            Row::GatewayLoss | Row::RelayLoss => (20.0, 0.0),
            Row::RelayRtt => (300.0, 0.0),
        }
    }

    /// 0.0 (best) … 1.0 (worst) on the fixed scale.
    fn badness(self, value: f64) -> f64 {
        let (worst, best) = self.scale();
        ((value - best) / (worst - best)).clamp(0.0, 1.0)
    }
}

/// The stretch of time a chart shows, read in the device's local time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Start, Unix milliseconds.
    pub from_ms: i64,
    /// End, Unix milliseconds (inclusive).
    pub to_ms: i64,
    /// The device's offset from UTC, minutes.
    pub offset_min: i64,
    /// A time to mark (`--at`), when given.
    pub mark_ms: Option<i64>,
}

const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The worst value of `row` among `samples`.
fn worst(row: Row, samples: &[&Sample]) -> Option<f64> {
    let values = samples.iter().filter_map(|s| row.value(s));
    if row.lower_is_worse() {
        values.reduce(f64::min)
    } else {
        values.reduce(f64::max)
    }
}

/// Samples split into at most `width` columns of equal time.
fn columns(samples: &[Sample], from_ms: i64, to_ms: i64, width: usize) -> Vec<Vec<&Sample>> {
    let width = width.max(1);
    let span = (to_ms - from_ms).max(1);
    let mut out: Vec<Vec<&Sample>> = vec![Vec::new(); width];
    for sample in samples {
        if sample.at_ms < from_ms || sample.at_ms > to_ms {
            continue;
        }
        let column =
            (((sample.at_ms - from_ms) as i128 * width as i128) / (span as i128 + 1)) as usize;
        out[column.min(width - 1)].push(sample);
    }
    out
}

/// `HH:MM` of `at_ms` shifted by `offset_min`.
pub fn clock(at_ms: i64, offset_min: i64) -> String {
    let minutes = (at_ms.div_euclid(60_000) + offset_min).rem_euclid(1_440);
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// The terminal chart: one row per metric (taller bar = worse, `·` = not
/// measured), a row marking episodes by segment initial, a time axis, and a
/// caret under `mark_ms` when given.
pub fn terminal(samples: &[Sample], episodes: &[Episode], window: &Window, width: usize) -> String {
    let Window {
        from_ms,
        to_ms,
        offset_min,
        mark_ms,
    } = *window;
    let cols = columns(samples, from_ms, to_ms, width);
    let width = cols.len();
    let label_width = 17;
    let mut out = String::new();
    for row in ROWS {
        let mut line = String::new();
        let mut seen: Vec<f64> = Vec::new();
        for column in &cols {
            match worst(row, column) {
                Some(v) => {
                    seen.push(v);
                    let index = (row.badness(v) * (BLOCKS.len() - 1) as f64).round() as usize;
                    line.push(BLOCKS[index.min(BLOCKS.len() - 1)]);
                }
                None => line.push('·'),
            }
        }
        let range = if seen.is_empty() {
            "not measured".to_owned()
        } else {
            let min = seen.iter().copied().fold(f64::INFINITY, f64::min);
            let max = seen.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{min:.0}…{max:.0}")
        };
        let _ = writeln!(out, "{:<label_width$} {line} {range}", row.label());
    }
    // Episodes: the initial of the segment they are attributed to.
    let span = (to_ms - from_ms).max(1) as i128;
    let mut marks = vec![' '; width];
    for episode in episodes {
        let start = episode.start_ms.max(from_ms);
        let end = episode.end_ms.unwrap_or(to_ms).min(to_ms);
        if end < from_ms || start > to_ms {
            continue;
        }
        let first = ((start - from_ms) as i128 * width as i128 / (span + 1)) as usize;
        let last = ((end - from_ms) as i128 * width as i128 / (span + 1)) as usize;
        let initial = segment_initial(episode.segment);
        for mark in marks
            .iter_mut()
            .take(last.min(width - 1) + 1)
            .skip(first.min(width - 1))
        {
            // Upstream segments win where episodes overlap.
            if *mark == ' ' || segment_rank(initial) < segment_rank(*mark) {
                *mark = initial;
            }
        }
    }
    let _ = writeln!(
        out,
        "{:<label_width$} {}",
        "episodes",
        marks.iter().collect::<String>()
    );
    // Time axis: start, middle and end.
    let mut axis = vec![' '; width];
    let labels = [
        (0usize, clock(from_ms, offset_min)),
        (
            width / 2,
            clock(from_ms + (to_ms - from_ms) / 2, offset_min),
        ),
        (width.saturating_sub(5), clock(to_ms, offset_min)),
    ];
    for (at, text) in labels {
        for (i, c) in text.chars().enumerate() {
            if let Some(slot) = axis.get_mut(at + i) {
                *slot = c;
            }
        }
    }
    let _ = writeln!(
        out,
        "{:<label_width$} {}",
        "",
        axis.iter().collect::<String>()
    );
    if let Some(mark) = mark_ms.filter(|m| (from_ms..=to_ms).contains(m)) {
        let at = ((mark - from_ms) as i128 * width as i128 / (span + 1)) as usize;
        let _ = writeln!(
            out,
            "{:<label_width$} {}^ {}",
            "",
            " ".repeat(at),
            clock(mark, offset_min)
        );
    }
    out.push_str("(taller is worse; · not measured; episodes: D device, H home network, C configuration, I ISP, S service, ? unknown)\n");
    out
}

fn segment_initial(segment: Segment) -> char {
    match segment {
        Segment::Device => 'D',
        Segment::HomeNetwork => 'H',
        Segment::Configuration => 'C',
        Segment::Isp => 'I',
        Segment::Service => 'S',
        Segment::Unknown => '?',
    }
}

fn segment_rank(initial: char) -> usize {
    "DHCIS?".find(initial).unwrap_or(6)
}

fn segment_colour(segment: Segment) -> &'static str {
    match segment {
        Segment::Device => "#b07aa1",
        Segment::HomeNetwork => "#f28e2b",
        Segment::Configuration => "#edc948",
        Segment::Isp => "#e15759",
        Segment::Service => "#4e79a7",
        Segment::Unknown => "#bab0ac",
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The SVG chart: one panel per metric with its threshold dashed, the
/// episodes as bands coloured by segment, a legend and a time axis.
pub fn svg(
    title: &str,
    samples: &[Sample],
    episodes: &[Episode],
    thresholds: &Thresholds,
    window: &Window,
) -> String {
    let Window {
        from_ms,
        to_ms,
        offset_min,
        mark_ms,
    } = *window;
    const WIDTH: f64 = 960.0;
    const LEFT: f64 = 150.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 50.0;
    const PANEL: f64 = 110.0;
    const GAP: f64 = 20.0;
    let plot = WIDTH - LEFT - RIGHT;
    let height = TOP + ROWS.len() as f64 * (PANEL + GAP) + 60.0;
    let span = (to_ms - from_ms).max(1) as f64;
    let x = |at: i64| LEFT + (at - from_ms) as f64 / span * plot;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="24" font-size="16" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let bottom = TOP + ROWS.len() as f64 * (PANEL + GAP) - GAP;
    for episode in episodes {
        let start = episode.start_ms.max(from_ms);
        let end = episode.end_ms.unwrap_or(to_ms).min(to_ms);
        if end < from_ms || start > to_ms {
            continue;
        }
        let _ = writeln!(
            out,
            r#"<rect x="{:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="{}" fill-opacity="0.18"><title>{} ({}) {}–{}</title></rect>"#,
            x(start),
            (x(end) - x(start)).max(2.0),
            bottom - TOP,
            segment_colour(episode.segment),
            escape(&episode.title.en),
            episode.segment,
            clock(episode.start_ms, offset_min),
            episode
                .end_ms
                .map(|e| clock(e, offset_min))
                .unwrap_or_else(|| "…".to_owned())
        );
    }
    for (i, row) in ROWS.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL + GAP);
        let (worst, best) = row.scale();
        // Worse is drawn lower, like the terminal chart's taller bars are
        // worse: y grows with badness.
        let y = |value: f64| top + row.badness(value) * PANEL;
        let _ = writeln!(
            out,
            r##"<rect x="{LEFT}" y="{top}" width="{plot}" height="{PANEL}" fill="none" stroke="#ccc"/>"##
        );
        let _ = writeln!(
            out,
            r##"<text x="10" y="{:.1}">{}</text><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#666">{best:.0}</text><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#666">{worst:.0}</text>"##,
            top + PANEL / 2.0,
            escape(row.label()),
            LEFT - 4.0,
            top + 10.0,
            LEFT - 4.0,
            top + PANEL
        );
        let limit = y(row.threshold(thresholds));
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{limit:.1}" y2="{limit:.1}" stroke="#e15759" stroke-dasharray="4 3"/>"##,
            LEFT + plot
        );
        // One polyline per run of measured samples.
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for sample in samples
            .iter()
            .filter(|s| (from_ms..=to_ms).contains(&s.at_ms))
        {
            match row.value(sample) {
                Some(v) => {
                    if let Some(run) = runs.last_mut() {
                        run.push((x(sample.at_ms), y(v)));
                    }
                }
                None => runs.push(Vec::new()),
            }
        }
        for run in runs.iter().filter(|r| !r.is_empty()) {
            let points: Vec<String> = run
                .iter()
                .map(|(px, py)| format!("{px:.1},{py:.1}"))
                .collect();
            let _ = writeln!(
                out,
                r##"<polyline fill="none" stroke="#4e79a7" stroke-width="1.5" points="{}"/>"##,
                points.join(" ")
            );
        }
    }
    // Time axis: five ticks.
    for tick in 0..=4 {
        let at = from_ms + (to_ms - from_ms) * tick / 4;
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x(at),
            bottom + 18.0,
            clock(at, offset_min)
        );
    }
    if let Some(mark) = mark_ms.filter(|m| (from_ms..=to_ms).contains(m)) {
        let _ = writeln!(
            out,
            r#"<line x1="{0:.1}" x2="{0:.1}" y1="{TOP}" y2="{bottom:.1}" stroke="black" stroke-width="1.5"/>"#,
            x(mark)
        );
    }
    let mut legend_x = LEFT;
    for segment in Segment::ALL.into_iter().filter(|s| *s != Segment::Unknown) {
        let _ = writeln!(
            out,
            r#"<rect x="{legend_x}" y="{:.1}" width="12" height="12" fill="{}" fill-opacity="0.5"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            bottom + 32.0,
            segment_colour(segment),
            legend_x + 16.0,
            bottom + 42.0,
            segment
        );
        legend_x += 140.0;
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use deskside_diag::timeline::{RelaySample, WifiSample};

    fn sample(minute: i64, signal: f32, rtt: f32) -> Sample {
        Sample {
            at_ms: minute * 60_000,
            wifi: Some(WifiSample {
                signal_dbm: Some(signal),
                ..WifiSample::default()
            }),
            relay: Some(RelaySample {
                rtt_ms: Some(rtt),
                jitter_ms: None,
                sent_packets: 20,
                lost_packets: 0,
            }),
            ..Sample::default()
        }
    }

    #[test]
    fn the_terminal_chart_shows_the_dip_where_it_happened() {
        // 10 minutes; the signal drops at minutes 4 and 5.
        let samples: Vec<Sample> = (0..10)
            .map(|m| sample(m, if (4..6).contains(&m) { -85.0 } else { -50.0 }, 30.0))
            .collect();
        let window = Window {
            from_ms: 0,
            to_ms: 9 * 60_000,
            offset_min: 60,
            mark_ms: Some(4 * 60_000),
        };
        let chart = terminal(&samples, &[], &window, 10);
        let signal = chart.lines().next().unwrap();
        let bars: String = signal.chars().skip(18).take(10).collect();
        assert_eq!(bars, "▂▂▂▂▇▇▂▂▂▂", "{chart}");
        assert!(signal.ends_with("-85…-50"), "{signal}");
        let gateway = chart.lines().nth(1).unwrap();
        assert!(gateway.contains("··········") && gateway.ends_with("not measured"));
        // Axis in the device's local time (UTC+1) and the caret at 01:04.
        assert!(chart.contains("01:00"), "{chart}");
        assert!(chart.contains("^ 01:04"), "{chart}");
    }

    #[test]
    fn the_svg_is_well_formed_and_escapes_text() {
        let samples: Vec<Sample> = (0..10).map(|m| sample(m, -60.0, 30.0)).collect();
        let svg = svg(
            "laptop <1> & co",
            &samples,
            &[],
            &Thresholds::default(),
            &Window {
                from_ms: 0,
                to_ms: 540_000,
                offset_min: 0,
                mark_ms: None,
            },
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("laptop &lt;1&gt; &amp; co"));
        assert_eq!(
            svg.matches("<polyline").count(),
            3,
            "signal, RTT and loss; the router was not measured"
        );
        assert_eq!(
            svg.matches("stroke-dasharray").count(),
            4,
            "one threshold per row"
        );
    }
}
