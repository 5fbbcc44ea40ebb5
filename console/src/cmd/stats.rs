//! `deskside stats`: what the help requests of a window say about the
//! fleet (requests by category of verdict, the most frequent findings,
//! devices that asked more than once, median times to first response and
//! to resolution). The relay computes them; this file only asks and
//! prints. Viewers may read them.
//!
//! `--json` prints one object per line: one `summary`, then a `category`
//! per category (zeros included), a `finding` per finding, a
//! `repeat_device` per device. `--csv` prints the same records as rows of
//! one table whose first column is that type.

use std::time::Duration;

use clap::Args;
use deskside_protocol::console::{ConsoleRequest, ConsoleResponse};
use deskside_protocol::request_stats::{Latency, RequestStats};
use serde::Serialize;

use super::diag::csv_field;
use super::{printed, unexpected, Context};
use crate::exit::UsageError;
use crate::output::{rfc3339, Column, Table};

/// Flags of `deskside stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// How far back to look: requests created in this window count, e.g.
    /// 7d, 30d, 12h
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION",
          default_value = "30d")]
    since: Duration,
    /// Only devices of this group (set by the enrollment token)
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// Comma-separated values (one table, first column the record type)
    /// instead of tables
    #[arg(long)]
    csv: bool,
}

/// The `summary` record.
#[derive(Debug, Serialize)]
struct Summary<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    since: String,
    group: Option<&'a str>,
    requests: u64,
    first_response_count: u64,
    first_response_median_secs: Option<u64>,
    resolution_count: u64,
    resolution_median_secs: Option<u64>,
}

/// The other records: `category`, `finding`, `repeat_device`.
#[derive(Debug, Serialize)]
struct Record<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    segment: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<&'a str>,
    requests: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    resolved: Option<u64>,
}

impl<'a> Record<'a> {
    fn new(kind: &'static str, requests: u64) -> Self {
        Record {
            kind,
            category: None,
            id: None,
            segment: None,
            device: None,
            hostname: None,
            requests,
            resolved: None,
        }
    }
}

fn records(stats: &RequestStats) -> Vec<Record<'_>> {
    let categories = stats.categories.iter().map(|c| Record {
        category: Some(&c.category),
        resolved: Some(c.resolved),
        ..Record::new("category", c.requests)
    });
    let findings = stats.findings.iter().map(|f| Record {
        id: Some(&f.id),
        segment: Some(&f.segment),
        ..Record::new("finding", f.requests)
    });
    let devices = stats.repeat_devices.iter().map(|d| Record {
        device: Some(d.device.to_string()),
        hostname: Some(&d.hostname),
        ..Record::new("repeat_device", d.requests)
    });
    categories.chain(findings).chain(devices).collect()
}

/// Runs `deskside stats`.
pub async fn run(args: StatsArgs, ctx: &mut Context<'_>) -> anyhow::Result<()> {
    if args.csv && ctx.out.is_json() {
        return Err(UsageError::new(
            "--json and --csv are two output formats: pick one",
            "deskside stats --help",
        )
        .into());
    }
    let window = i64::try_from(args.since.as_secs()).unwrap_or(i64::MAX);
    let since = ctx.now.saturating_sub(window);
    let response = super::request(
        ctx,
        ConsoleRequest::RequestStats {
            since,
            group: args.group.clone(),
        },
    )
    .await?;
    let stats = match response {
        ConsoleResponse::RequestStats(stats) => stats,
        other => return Err(unexpected(&other)),
    };
    let group = args.group.as_deref();
    if ctx.out.is_json() {
        printed(ctx.out.json(&Summary {
            kind: "summary",
            since: rfc3339(stats.since),
            group,
            requests: stats.total,
            first_response_count: stats.first_response.count,
            first_response_median_secs: stats.first_response.median_secs,
            resolution_count: stats.resolution.count,
            resolution_median_secs: stats.resolution.median_secs,
        }))?;
        for record in records(&stats) {
            printed(ctx.out.json(&record))?;
        }
        return Ok(());
    }
    let text = if args.csv {
        csv(&stats)
    } else {
        human(&stats, args.since, group)
    };
    printed(ctx.out.text(&text))
}

fn csv(stats: &RequestStats) -> String {
    let mut text = String::from("type,name,detail,requests,resolved,median_secs\n");
    let mut line = |cells: [String; 6]| {
        let cells: Vec<String> = cells.iter().map(|c| csv_field(c)).collect();
        text.push_str(&cells.join(","));
        text.push('\n');
    };
    let number = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
    let resolved: u64 = stats.categories.iter().map(|c| c.resolved).sum();
    line([
        "summary".into(),
        "requests".into(),
        rfc3339(stats.since),
        stats.total.to_string(),
        resolved.to_string(),
        String::new(),
    ]);
    for (name, latency) in [
        ("first_response", &stats.first_response),
        ("resolution", &stats.resolution),
    ] {
        line([
            "summary".into(),
            name.into(),
            String::new(),
            latency.count.to_string(),
            String::new(),
            number(latency.median_secs),
        ]);
    }
    for c in &stats.categories {
        line([
            "category".into(),
            c.category.clone(),
            String::new(),
            c.requests.to_string(),
            c.resolved.to_string(),
            String::new(),
        ]);
    }
    for f in &stats.findings {
        line([
            "finding".into(),
            f.id.clone(),
            f.segment.clone(),
            f.requests.to_string(),
            String::new(),
            String::new(),
        ]);
    }
    for d in &stats.repeat_devices {
        line([
            "repeat_device".into(),
            d.hostname.clone(),
            d.device.to_string(),
            d.requests.to_string(),
            String::new(),
            String::new(),
        ]);
    }
    text
}

fn median(latency: &Latency) -> String {
    match latency.median_secs {
        Some(secs) => format!(
            "{} (over {} requests)",
            humantime::format_duration(Duration::from_secs(secs)),
            latency.count
        ),
        None => "none yet".to_owned(),
    }
}

fn human(stats: &RequestStats, window: Duration, group: Option<&str>) -> String {
    let mut text = format!(
        "Help requests since {} ({}{}): {}\n\n",
        rfc3339(stats.since),
        humantime::format_duration(window),
        group.map(|g| format!(", group {g}")).unwrap_or_default(),
        stats.total
    );
    let mut table = Table::new(&[
        Column::new("CATEGORY"),
        Column::new("REQUESTS"),
        Column::new("RESOLVED"),
    ]);
    for c in &stats.categories {
        table.row([
            c.category.replace('_', " "),
            c.requests.to_string(),
            c.resolved.to_string(),
        ]);
    }
    text.push_str(&table.render());
    text.push('\n');
    if stats.findings.is_empty() {
        text.push_str("No problem found in the requests' diagnostics.\n\n");
    } else {
        let mut table = Table::new(&[
            Column::capped("FINDING", 40),
            Column::new("SEGMENT"),
            Column::new("REQUESTS"),
        ]);
        for f in &stats.findings {
            table.row([f.id.clone(), f.segment.clone(), f.requests.to_string()]);
        }
        text.push_str(&table.render());
        text.push('\n');
    }
    if stats.repeat_devices.is_empty() {
        text.push_str("No device asked more than once.\n\n");
    } else {
        let mut table = Table::new(&[
            Column::capped("DEVICE", 32),
            Column::new("ID"),
            Column::new("REQUESTS"),
        ]);
        for d in &stats.repeat_devices {
            table.row([
                d.hostname.clone(),
                d.device.to_string(),
                d.requests.to_string(),
            ]);
        }
        text.push_str(&table.render());
        text.push('\n');
    }
    text.push_str(&format!(
        "Median time to first response: {}\nMedian time to resolution:     {}\n",
        median(&stats.first_response),
        median(&stats.resolution)
    ));
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A test should panic on an unexpected error.
mod tests {
    use super::*;
    use deskside_protocol::request_stats::{CategoryCount, FindingCount, RepeatDevice};
    use deskside_protocol::DeviceId;

    fn stats() -> RequestStats {
        RequestStats {
            since: 1_700_000_000,
            total: 3,
            categories: vec![CategoryCount {
                category: "home_network".into(),
                requests: 3,
                resolved: 1,
            }],
            findings: vec![FindingCount {
                id: "wifi.signal_weak".into(),
                segment: "home_network".into(),
                requests: 2,
            }],
            repeat_devices: vec![RepeatDevice {
                device: DeviceId(7),
                hostname: "laptop, \"blue\"".into(),
                requests: 3,
            }],
            first_response: Latency {
                count: 2,
                median_secs: Some(90),
            },
            resolution: Latency::default(),
        }
    }

    #[test]
    fn csv_has_one_row_per_record_and_quotes_what_needs_it() {
        let text = csv(&stats());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "type,name,detail,requests,resolved,median_secs",
                "summary,requests,2023-11-14T22:13:20Z,3,1,",
                "summary,first_response,,2,,90",
                "summary,resolution,,0,,",
                "category,home_network,,3,1,",
                "finding,wifi.signal_weak,home_network,2,,",
                &format!("repeat_device,\"laptop, \"\"blue\"\"\",{},3,,", DeviceId(7)),
            ]
        );
    }

    #[test]
    fn json_records_carry_their_type() {
        let stats = stats();
        let lines: Vec<serde_json::Value> = records(&stats)
            .iter()
            .map(|r| serde_json::to_value(r).unwrap())
            .collect();
        assert_eq!(
            lines[0],
            serde_json::json!({"type": "category", "category": "home_network", "requests": 3, "resolved": 1})
        );
        assert_eq!(
            lines[1],
            serde_json::json!({"type": "finding", "id": "wifi.signal_weak", "segment": "home_network", "requests": 2})
        );
        assert_eq!(lines[2]["type"], "repeat_device");
        assert_eq!(lines[2]["device"], DeviceId(7).to_string());
    }

    #[test]
    fn human_output_names_medians_or_says_none() {
        let text = human(&stats(), Duration::from_secs(30 * 86_400), Some("paris"));
        assert!(text.contains("(30days, group paris): 3"), "{text}");
        assert!(text.contains("home network"), "{text}");
        assert!(
            text.contains("first response: 1m 30s (over 2 requests)"),
            "{text}"
        );
        assert!(text.contains("resolution:     none yet"), "{text}");
    }
}
