//! `deskside timeline DEVICE` and `deskside timeline --all`: what happened
//! to a device's link and path over time, from the samples its agent
//! records every minute.
//!
//! The relay sends the samples and the organisation's thresholds; this
//! command judges them with the same pure function as the relay
//! (`deskside_diag::timeline::judge_timeline`) and prints the episodes,
//! recurrences and events, and a chart. Times shown are the device's local
//! time (its agent reports its offset from UTC); `--at 10:15` is read in
//! that time too, because that is when the employee says the call froze.

pub mod chart;
pub mod filter;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use deskside_diag::timeline::{
    decode_batch, judge_timeline, Episode, EpisodeRules, FleetEpisode, Sample, Timeline,
};
use deskside_diag::Thresholds;
use deskside_protocol::console::{ConsoleRequest, ConsoleResponse};
use deskside_protocol::timeline::{DeviceTimeline, FleetTimelineEntry};
use serde::Serialize;

use super::{printed, unexpected, Context};
use crate::exit::{NoMatch, UsageError};
use crate::output::{printable, Column, Table};

/// Width of the terminal chart, in columns.
const CHART_WIDTH: usize = 60;
/// The window around `--at`.
const AROUND_AT: Duration = Duration::from_secs(30 * 60);

/// `deskside timeline …`.
#[derive(Debug, Args)]
pub struct TimelineArgs {
    /// Device: id (dev_…), unique id prefix, or hostname
    #[arg(value_name = "DEVICE", required_unless_present = "all")]
    device: Option<String>,
    /// Every device of the organisation with episodes in the window
    #[arg(long, conflicts_with = "device")]
    all: bool,
    /// With --all: only devices of this group
    #[arg(long, value_name = "GROUP", requires = "all")]
    group: Option<String>,
    /// With --all: only the devices whose timeline matches, e.g.
    /// 'segment == home_network and recurring > 0'. Fields: hostname,
    /// group, id, online, samples, episodes, segment, metric, severity,
    /// recurring, minutes (see --help); when none matches, exit code 3
    #[arg(long = "where", value_name = "EXPR", requires = "all", long_help = filter::help())]
    filter: Option<String>,
    /// How far back to look, e.g. 30m, 2h, 7d [default: 2h, or 7d with --all]
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    since: Option<Duration>,
    /// Look at the 30 minutes either side of this time: HH:MM in the
    /// device's local time (the last such time, today or yesterday), or
    /// RFC 3339 (2026-12-06T10:15:00Z)
    #[arg(long, value_name = "TIME", conflicts_with = "all")]
    at: Option<String>,
    /// Also write the chart as an SVG file (to attach to a ticket)
    #[arg(long, value_name = "FILE", conflicts_with = "all")]
    svg: Option<PathBuf>,
    /// With --json: also print every sample of the window
    /// (`{"type":"sample",…}`), for scripts and spreadsheets
    #[arg(long, conflicts_with = "all")]
    samples: bool,
}

/// What `--at` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum At {
    /// A clock time in the device's local time, minutes after midnight.
    Clock(i64),
    /// An absolute time, Unix milliseconds.
    Absolute(i64),
}

/// Parses `--at`.
pub fn parse_at(text: &str) -> Result<At, String> {
    let text = text.trim();
    if let Some((h, m)) = text.split_once(':') {
        if h.len() <= 2 && m.len() == 2 {
            if let (Ok(h), Ok(m)) = (h.parse::<i64>(), m.parse::<i64>()) {
                if (0..24).contains(&h) && (0..60).contains(&m) {
                    return Ok(At::Clock(h * 60 + m));
                }
            }
        }
    }
    humantime::parse_rfc3339_weak(text)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| At::Absolute(d.as_millis() as i64))
        .ok_or_else(|| {
            format!("--at takes HH:MM (the device's local time) or an RFC 3339 time such as 2026-12-06T10:15:00Z, not {text:?}")
        })
}

/// The last time at or before `now_ms` whose local clock (UTC +
/// `offset_min`) reads `minute_of_day`.
pub fn last_clock_time(minute_of_day: i64, offset_min: i64, now_ms: i64) -> i64 {
    let local_now_min = now_ms.div_euclid(60_000) + offset_min;
    let today_start = local_now_min - local_now_min.rem_euclid(1_440);
    let mut local = today_start + minute_of_day;
    if local > local_now_min {
        local -= 1_440;
    }
    (local - offset_min) * 60_000
}

/// The JSON record of the window.
#[derive(Debug, Serialize)]
struct WindowRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    device: String,
    hostname: String,
    from_ms: i64,
    to_ms: i64,
    samples: u32,
    interval_s: i64,
    utc_offset_min: i64,
    monitoring: bool,
    truncated: bool,
    at_ms: Option<i64>,
    svg: Option<&'a str>,
}

/// A JSON line with a `type` and the judged item's own fields.
fn typed<T: Serialize>(kind: &str, value: &T) -> serde_json::Value {
    let mut value = serde_json::to_value(value).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("type".to_owned(), kind.into());
    }
    value
}

/// Runs `deskside timeline`.
pub async fn run(args: TimelineArgs, ctx: &mut Context<'_>) -> anyhow::Result<()> {
    if args.all {
        return fleet(args, ctx).await;
    }
    // clap's `requires = "all"` is met by the flag's default `false`.
    if args.filter.is_some() || args.group.is_some() {
        return Err(UsageError::new(
            "--where and --group choose among devices: use them with --all",
            "deskside timeline --help",
        )
        .into());
    }
    let Some(device) = args.device.clone() else {
        return Err(
            UsageError::new("name a DEVICE, or use --all", "deskside timeline --help").into(),
        );
    };
    let now_ms = ctx.now.saturating_mul(1000);
    let at = args
        .at
        .as_deref()
        .map(parse_at)
        .transpose()
        .map_err(|e| UsageError::new(e, "deskside timeline --help"))?;
    let since = args.since.unwrap_or(Duration::from_secs(2 * 3600));
    // For a clock time the device's offset is known only from its samples:
    // fetch the last day and a half, then narrow.
    let (since_ms, until_ms) = match at {
        Some(At::Absolute(t)) => (
            t - AROUND_AT.as_millis() as i64,
            t + AROUND_AT.as_millis() as i64,
        ),
        Some(At::Clock(_)) => (now_ms - 38 * 3_600_000, now_ms),
        None => (
            now_ms - since.as_millis().min(i64::MAX as u128) as i64,
            now_ms,
        ),
    };
    let answer = super::request(
        ctx,
        ConsoleRequest::Timeline {
            device,
            since_ms,
            until_ms,
        },
    )
    .await?;
    let data = match answer {
        ConsoleResponse::Timeline(data) => data,
        other => return Err(unexpected(&other)),
    };
    let samples = decode_batch(&data.batch)
        .context("the relay sent timeline samples this console cannot read; upgrade the console")?;
    let thresholds: Thresholds = serde_json::from_slice(&data.thresholds).unwrap_or_default();
    let offset_min = samples.last().map_or(0, |s| i64::from(s.utc_offset_min));
    let (from_ms, to_ms, mark) = match at {
        Some(At::Clock(minute)) => {
            let t = last_clock_time(minute, offset_min, now_ms);
            (
                t - AROUND_AT.as_millis() as i64,
                t + AROUND_AT.as_millis() as i64,
                Some(t),
            )
        }
        Some(At::Absolute(t)) => (since_ms, until_ms, Some(t)),
        None => (since_ms, until_ms, None),
    };
    let window: Vec<Sample> = samples
        .into_iter()
        .filter(|s| (from_ms..=to_ms).contains(&s.at_ms))
        .collect();
    let judged = judge_timeline(&window, &thresholds, &EpisodeRules::default());
    let shown = chart::Window {
        from_ms,
        to_ms,
        offset_min,
        mark_ms: mark,
    };
    let svg_path = args.svg.as_ref().map(|p| p.display().to_string());
    if let Some(path) = &args.svg {
        let title = format!(
            "{} — {} to {} (local time, UTC{:+})",
            data.device.hostname,
            chart::clock(from_ms, offset_min),
            chart::clock(to_ms, offset_min),
            offset_min as f64 / 60.0
        );
        let svg = chart::svg(&title, &window, &judged.episodes, &thresholds, &shown);
        std::fs::write(path, svg).with_context(|| {
            format!(
                "cannot write the chart to {}; check the path and that the directory is writable",
                path.display()
            )
        })?;
    }
    if ctx.out.is_json() {
        let header = WindowRecord {
            kind: "timeline",
            device: data.device.id.to_string(),
            hostname: data.device.hostname.clone(),
            from_ms,
            to_ms,
            samples: judged.samples,
            interval_s: judged.interval_ms / 1000,
            utc_offset_min: offset_min,
            monitoring: data.monitoring,
            truncated: data.truncated,
            at_ms: mark,
            svg: svg_path.as_deref(),
        };
        let mut result = ctx.out.json(&header);
        for episode in &judged.episodes {
            result = result.and_then(|_| ctx.out.json(&typed("episode", episode)));
        }
        for recurrence in &judged.recurrences {
            result = result.and_then(|_| ctx.out.json(&typed("recurrence", recurrence)));
        }
        for event in &judged.events {
            result = result.and_then(|_| ctx.out.json(&typed("event", event)));
        }
        if args.samples {
            for sample in &window {
                result = result.and_then(|_| ctx.out.json(&typed("sample", sample)));
            }
        }
        return printed(result);
    }
    let text = render(&data, &window, &judged, &shown, svg_path.as_deref());
    printed(ctx.out.text(&text))
}

/// The human output of one device's window (`samples`, judged as `judged`,
/// shown over `shown`).
fn render(
    data: &DeviceTimeline,
    samples: &[Sample],
    judged: &Timeline,
    shown: &chart::Window,
    svg: Option<&str>,
) -> String {
    let chart::Window {
        from_ms,
        to_ms,
        offset_min,
        ..
    } = *shown;
    let mut out = format!(
        "{} ({}) · {}–{} device local time (UTC{:+03}:{:02}) · {} samples, every {} s\n",
        printable(&data.device.hostname),
        data.device.id,
        chart::clock(from_ms, offset_min),
        chart::clock(to_ms, offset_min),
        offset_min / 60,
        (offset_min % 60).abs(),
        judged.samples,
        judged.interval_ms / 1000
    );
    if !data.monitoring {
        out.push_str("Monitoring is off in the organisation's policy (`deskside policy set monitoring on`).\n");
    }
    if data.truncated {
        out.push_str("Only the newest samples fit in one answer; ask for a shorter window to see older ones.\n");
    }
    if samples.is_empty() {
        out.push_str(
            "No samples in this window: the agent was not connected, or monitoring was off.\n",
        );
        return out;
    }
    out.push('\n');
    if judged.episodes.is_empty() {
        out.push_str("No episode: every measured metric stayed within its threshold.\n");
    } else {
        let mut table = Table::new(&[
            Column::new("START"),
            Column::new("END"),
            Column::new("SEGMENT"),
            Column::capped("WHAT", 48),
            Column::capped("EVIDENCE", 90),
        ]);
        for episode in &judged.episodes {
            table.row([
                chart::clock(episode.start_ms, offset_min),
                episode
                    .end_ms
                    .map(|e| chart::clock(e, offset_min))
                    .unwrap_or_else(|| "ongoing".to_owned()),
                episode.segment.to_string(),
                episode.title.en.clone(),
                evidence(episode),
            ]);
        }
        out.push_str(&table.render());
    }
    for recurrence in &judged.recurrences {
        out.push_str(&format!(
            "Recurring: {}\n",
            printable(&recurrence.description.en)
        ));
    }
    for event in &judged.events {
        use deskside_diag::timeline::EventKind;
        let what = match &event.kind {
            EventKind::Roam { from, to } => {
                format!("Wi‑Fi roamed from {} to {}", printable(from), printable(to))
            }
            EventKind::LinkChange { from, to } => {
                format!("link changed from {} to {}", from.as_str(), to.as_str())
            }
            EventKind::Started => "monitoring started".to_owned(),
            EventKind::Resumed { asleep_s } => {
                format!("woke up after {} min asleep", asleep_s / 60)
            }
            EventKind::Gap { until_ms } => {
                format!("no samples until {}", chart::clock(*until_ms, offset_min))
            }
        };
        out.push_str(&format!(
            "{}  {what}\n",
            chart::clock(event.at_ms, offset_min)
        ));
    }
    out.push('\n');
    out.push_str(&chart::terminal(
        samples,
        &judged.episodes,
        shown,
        CHART_WIDTH,
    ));
    if let Some(path) = svg {
        out.push_str(&format!("Chart written to {path}\n"));
    }
    out
}

fn evidence(episode: &Episode) -> String {
    let mut parts: Vec<String> = episode
        .evidence
        .iter()
        .map(|e| {
            let value = match &e.value {
                deskside_diag::EvidenceValue::Number(n) => format!("{n:.1}"),
                deskside_diag::EvidenceValue::Flag(f) => f.to_string(),
                deskside_diag::EvidenceValue::Text(t) => printable(t).into_owned(),
            };
            format!("{} {value} ({})", e.metric, e.threshold)
        })
        .collect();
    if let Some(ap) = &episode.access_point {
        parts.push(format!(
            "AP {}",
            printable(&ap.chars().take(20).collect::<String>())
        ));
    }
    if !episode.explained_by.is_empty() {
        parts.push(format!(
            "explained by {}",
            episode
                .explained_by
                .iter()
                .map(|k| k.split('@').next().unwrap_or(k))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    parts.join(" · ")
}

/// One device of `--all`, as a JSON record.
#[derive(Debug, Serialize)]
struct FleetRecord {
    #[serde(rename = "type")]
    kind: &'static str,
    device: String,
    hostname: String,
    group: Option<String>,
    online: bool,
    samples: u32,
    episodes: usize,
    segments: std::collections::BTreeMap<String, usize>,
    last_episode_ms: Option<i64>,
}

/// Episodes per segment in one group, as a JSON record.
#[derive(Debug, Serialize)]
struct GroupRecord {
    #[serde(rename = "type")]
    kind: &'static str,
    group: Option<String>,
    segment: String,
    episodes: usize,
    devices: usize,
}

async fn fleet(args: TimelineArgs, ctx: &mut Context<'_>) -> anyhow::Result<()> {
    let now_ms = ctx.now.saturating_mul(1000);
    let since = args.since.unwrap_or(Duration::from_secs(7 * 86_400));
    let filter = args
        .filter
        .as_deref()
        .map(filter::parse)
        .transpose()
        .map_err(|e| UsageError::new(e, "deskside timeline --help"))?;
    let answer = super::request(
        ctx,
        ConsoleRequest::TimelineFleet {
            group: args.group.clone(),
            since_ms: now_ms - since.as_millis().min(i64::MAX as u128) as i64,
            until_ms: now_ms,
        },
    )
    .await?;
    let entries: Vec<FleetTimelineEntry> = match answer {
        ConsoleResponse::TimelineFleet(entries) => entries,
        other => return Err(unexpected(&other)),
    };
    let mut records = Vec::new();
    for entry in &entries {
        let episodes: Vec<FleetEpisode> =
            serde_json::from_slice(&entry.episodes).unwrap_or_default();
        let id = entry.device.id.to_string();
        let device = filter::Device {
            id: &id,
            hostname: &entry.device.hostname,
            group: entry.device.group.as_deref(),
            online: entry.device.online,
            samples: entry.samples,
            episodes: &episodes,
            now_ms,
        };
        if filter.as_ref().is_some_and(|f| !f.matches(&device)) {
            continue;
        }
        let mut segments = std::collections::BTreeMap::new();
        for FleetEpisode { episode, .. } in &episodes {
            *segments.entry(episode.segment.to_string()).or_insert(0) += 1;
        }
        records.push(FleetRecord {
            kind: "device_timeline",
            device: id.clone(),
            hostname: entry.device.hostname.clone(),
            group: entry.device.group.clone(),
            online: entry.device.online,
            samples: entry.samples,
            episodes: episodes.len(),
            segments,
            last_episode_ms: episodes.iter().map(|e| e.episode.start_ms).max(),
        });
    }
    records.sort_by(|a, b| {
        b.episodes
            .cmp(&a.episodes)
            .then(a.hostname.cmp(&b.hostname))
    });
    let mut groups: std::collections::BTreeMap<(Option<String>, String), (usize, usize)> =
        std::collections::BTreeMap::new();
    for record in &records {
        for (segment, count) in &record.segments {
            let slot = groups
                .entry((record.group.clone(), segment.clone()))
                .or_default();
            slot.0 += count;
            slot.1 += 1;
        }
    }
    let mut by_group: Vec<GroupRecord> = groups
        .into_iter()
        .map(|((group, segment), (episodes, devices))| GroupRecord {
            kind: "group_segment",
            group,
            segment,
            episodes,
            devices,
        })
        .collect();
    by_group.sort_by(|a, b| a.group.cmp(&b.group).then(b.episodes.cmp(&a.episodes)));
    if records.is_empty() && filter.is_some() {
        return Err(NoMatch(format!(
            "no device matched the --where expression ({} with episodes in the last {}{}); check the values with `deskside timeline --all --json`",
            entries.len(),
            humantime::format_duration(since),
            args.group
                .as_ref()
                .map(|g| format!(" in the group {g:?}"))
                .unwrap_or_default()
        ))
        .into());
    }
    if ctx.out.is_json() {
        let mut result = Ok(());
        for record in &records {
            result = result.and_then(|_| ctx.out.json(record));
        }
        for record in &by_group {
            result = result.and_then(|_| ctx.out.json(record));
        }
        return printed(result);
    }
    if records.is_empty() {
        return printed(ctx.out.text(&format!(
            "No device had an episode in the last {}.\n",
            humantime::format_duration(since)
        )));
    }
    let mut table = Table::new(&[
        Column::new("DEVICE"),
        Column::new("HOSTNAME"),
        Column::new("GROUP"),
        Column::new("EPISODES"),
        Column::new("SEGMENTS"),
    ]);
    for record in &records {
        table.row([
            record.device.clone(),
            printable(&record.hostname).into_owned(),
            record.group.clone().unwrap_or_default(),
            record.episodes.to_string(),
            record
                .segments
                .iter()
                .map(|(s, n)| format!("{s} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
    let mut text = table.render();
    text.push_str("\nEpisodes per segment and group:\n");
    let mut summary = Table::new(&[
        Column::new("GROUP"),
        Column::new("SEGMENT"),
        Column::new("EPISODES"),
        Column::new("DEVICES"),
    ]);
    for record in &by_group {
        summary.row([
            record.group.clone().unwrap_or_else(|| "(none)".to_owned()),
            record.segment.clone(),
            record.episodes.to_string(),
            record.devices.to_string(),
        ]);
    }
    text.push_str(&summary.render());
    printed(ctx.out.text(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_is_a_local_clock_time_or_an_absolute_one() {
        assert_eq!(parse_at("10:15"), Ok(At::Clock(615)));
        assert_eq!(parse_at("9:05"), Ok(At::Clock(545)));
        assert_eq!(
            parse_at("2026-12-06T10:15:00Z"),
            Ok(At::Absolute(1_796_552_100_000))
        );
        for bad in ["25:00", "10:5", "tea time", "10:15:00"] {
            assert!(parse_at(bad).unwrap_err().contains("HH:MM"), "{bad}");
        }
    }

    #[test]
    fn a_clock_time_is_the_last_one_in_the_devices_local_time() {
        // Now: 2026-12-06 09:00 UTC, device at UTC+1 (10:00 local).
        let now = 1_796_547_600_000;
        // 09:30 local today is 08:30 UTC.
        assert_eq!(last_clock_time(9 * 60 + 30, 60, now), now - 30 * 60_000);
        // 10:15 local has not come yet today: yesterday's.
        assert_eq!(
            last_clock_time(10 * 60 + 15, 60, now),
            now + 15 * 60_000 - 86_400_000
        );
        // In UTC: 09:00 is now.
        assert_eq!(last_clock_time(9 * 60, 0, now), now);
    }
}
