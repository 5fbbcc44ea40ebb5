//! `deskside requests list|show|claim|reply|resolve|reopen`: the help
//! requests employees sent from their agents, worked as a queue.
//!
//! Texts come from employees, so human output passes them through
//! [`crate::output::printable`]. Viewers may list and show; acting needs the
//! technician role (the relay checks).

use clap::{Args, Subcommand};
use deskside_diag::timeline::{decode_batch, judge_timeline, Episode, EpisodeRules};
use deskside_diag::Thresholds;
use deskside_protocol::console::{ConsoleRequest, ConsoleResponse};
use deskside_protocol::request::{RequestAction, RequestDetail, RequestSummary};
use serde::Serialize;

use super::{printed, unexpected, Context};
use crate::output::{key_values, printable, relative, rfc3339, rfc3339_opt, Column, Table};

/// `deskside requests …`.
#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// List help requests, most urgent first, then oldest
    List(ListArgs),
    /// Show one request: the employee's answers, the verdict and its evidence, what happened
    Show(NumberArg),
    /// Take a request
    Claim(NumberArg),
    /// Answer the employee (their agent shows it)
    Reply {
        /// The request's number
        #[arg(value_name = "ID")]
        number: u64,
        /// The reply
        #[arg(value_name = "TEXT")]
        text: String,
    },
    /// Resolve a request
    Resolve {
        /// The request's number
        #[arg(value_name = "ID")]
        number: u64,
        /// What was done
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Reopen a resolved request
    Reopen(NumberArg),
}

/// Filters of `requests list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this status: new, claimed, waiting, resolved, closed, reopened
    #[arg(long)]
    status: Option<String>,
    /// Only requests assigned to you
    #[arg(long)]
    mine: bool,
    /// Only devices of this group
    #[arg(long)]
    group: Option<String>,
}

/// A request's number.
#[derive(Debug, Args)]
pub struct NumberArg {
    /// The request's number, as listed
    #[arg(value_name = "ID")]
    number: u64,
}

/// The JSON record of a request.
#[derive(Debug, Serialize)]
struct RequestRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    number: u64,
    device: String,
    hostname: &'a str,
    status: &'a str,
    priority: u8,
    summary: &'a str,
    verdict: Option<&'a str>,
    assignee: Option<&'a str>,
    created_at: String,
    first_response_at: Option<String>,
    resolved_at: Option<String>,
}

fn record(r: &RequestSummary) -> RequestRecord<'_> {
    RequestRecord {
        kind: "request",
        number: r.number,
        device: r.device.id.to_string(),
        hostname: &r.device.hostname,
        status: &r.status,
        priority: r.priority,
        summary: &r.summary,
        verdict: r.verdict_line.as_deref(),
        assignee: r.assignee.as_deref(),
        created_at: rfc3339(r.created_at),
        first_response_at: rfc3339_opt(r.first_response_at),
        resolved_at: rfc3339_opt(r.resolved_at),
    }
}

/// Runs a `requests` subcommand.
pub async fn run(command: RequestsCommand, ctx: &mut Context<'_>) -> anyhow::Result<()> {
    let request = match &command {
        RequestsCommand::List(args) => ConsoleRequest::ListRequests {
            status: args.status.clone(),
            mine: args.mine,
            group: args.group.clone(),
        },
        RequestsCommand::Show(arg) => ConsoleRequest::ShowRequest { number: arg.number },
        RequestsCommand::Claim(arg) => ConsoleRequest::ActOnRequest {
            number: arg.number,
            action: RequestAction::Claim,
        },
        RequestsCommand::Reply { number, text } => ConsoleRequest::ActOnRequest {
            number: *number,
            action: RequestAction::Reply { text: text.clone() },
        },
        RequestsCommand::Resolve { number, note } => ConsoleRequest::ActOnRequest {
            number: *number,
            action: RequestAction::Resolve { note: note.clone() },
        },
        RequestsCommand::Reopen(arg) => ConsoleRequest::ActOnRequest {
            number: arg.number,
            action: RequestAction::Reopen,
        },
    };
    let is_show = matches!(command, RequestsCommand::Show(_));
    let (_, mut client) = super::connect(ctx).await?;
    let answer = client.request(request).await;
    // `show` adds the device's timeline around the request's start.
    let timeline = match (&answer, is_show) {
        (Ok(ConsoleResponse::Request(detail)), true) => {
            let start_ms = detail.summary.created_at.saturating_mul(1000);
            let window = TIMELINE_AROUND.as_millis() as i64;
            Some(
                client
                    .request(ConsoleRequest::Timeline {
                        device: detail.summary.device.id.to_string(),
                        since_ms: start_ms - window,
                        until_ms: start_ms + window,
                    })
                    .await,
            )
        }
        _ => None,
    };
    client.close().await;
    let response = answer?;
    let timeline = timeline.map(|answer| match answer {
        Ok(ConsoleResponse::Timeline(data)) => judge(&data),
        Ok(other) => Err(unexpected(&other).to_string()),
        Err(e) => Err(e.to_string()),
    });
    let now = ctx.now;
    match response {
        ConsoleResponse::Requests(list) => {
            if ctx.out.is_json() {
                for r in &list {
                    printed(ctx.out.json(&record(r)))?;
                }
                return Ok(());
            }
            if list.is_empty() {
                return printed(ctx.out.text("No help requests match.\n"));
            }
            let mut table = Table::new(&[
                Column::new("ID"),
                Column::new("P"),
                Column::new("STATUS"),
                Column::capped("DEVICE", 24),
                Column::new("AGE"),
                Column::capped("ASSIGNEE", 16),
                Column::capped("SUMMARY", 40),
                Column::capped("VERDICT", 48),
            ]);
            for r in &list {
                table.row([
                    r.number.to_string(),
                    format!("P{}", r.priority),
                    r.status.clone(),
                    printable(&r.device.hostname).into_owned(),
                    relative(now, r.created_at),
                    r.assignee
                        .as_deref()
                        .map(printable)
                        .unwrap_or_default()
                        .into_owned(),
                    printable(&r.summary).into_owned(),
                    r.verdict_line
                        .as_deref()
                        .map(printable)
                        .unwrap_or_default()
                        .into_owned(),
                ]);
            }
            printed(ctx.out.text(&table.render()))
        }
        ConsoleResponse::Request(detail) => {
            printed(print_detail(ctx, &detail, timeline.as_ref(), now))
        }
        other => Err(unexpected(&other)),
    }
}

/// The device's timeline around a request's start: this long either side.
const TIMELINE_AROUND: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// The timeline window as `show` reports it.
#[derive(Debug, Serialize)]
struct TimelineWindow {
    samples: u32,
    monitoring: bool,
    episodes: Vec<Episode>,
}

fn judge(data: &deskside_protocol::timeline::DeviceTimeline) -> Result<TimelineWindow, String> {
    let samples = decode_batch(&data.batch).map_err(|e| {
        format!(
            "the relay sent timeline samples this console cannot read ({e}); upgrade the console"
        )
    })?;
    let thresholds: Thresholds = serde_json::from_slice(&data.thresholds).unwrap_or_default();
    let judged = judge_timeline(&samples, &thresholds, &EpisodeRules::default());
    Ok(TimelineWindow {
        samples: judged.samples,
        monitoring: data.monitoring,
        episodes: judged.episodes,
    })
}

fn print_detail(
    ctx: &mut Context<'_>,
    d: &RequestDetail,
    timeline: Option<&Result<TimelineWindow, String>>,
    now: i64,
) -> std::io::Result<()> {
    if ctx.out.is_json() {
        let verdict: Option<serde_json::Value> = d
            .verdict_json
            .as_deref()
            .and_then(|v| serde_json::from_slice(v).ok());
        let snapshot: Option<serde_json::Value> = d
            .snapshot_json
            .as_deref()
            .and_then(|v| serde_json::from_slice(v).ok());
        let mut value = serde_json::to_value(record(&d.summary)).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.insert("type".into(), "request_detail".into());
            map.insert(
                "answers".into(),
                serde_json::to_value(&d.answers).unwrap_or_default(),
            );
            map.insert(
                "failed_deliveries".into(),
                serde_json::to_value(&d.failures).unwrap_or_default(),
            );
            map.insert(
                "events".into(),
                serde_json::to_value(&d.events).unwrap_or_default(),
            );
            map.insert("verdict_detail".into(), verdict.unwrap_or_default());
            map.insert("snapshot".into(), snapshot.unwrap_or_default());
            if let Some(timeline) = timeline {
                let value = match timeline {
                    Ok(window) => serde_json::to_value(window).unwrap_or_default(),
                    Err(reason) => serde_json::json!({ "unavailable": reason }),
                };
                map.insert("timeline".into(), value);
            }
        }
        return ctx.out.json(&value);
    }
    let s = &d.summary;
    let a = &d.answers;
    let mut text = key_values(&[
        (
            "Request",
            format!("{} (P{}, {})", s.number, s.priority, s.status),
        ),
        (
            "Device",
            format!("{} ({})", printable(&s.device.hostname), s.device.id),
        ),
        (
            "Created",
            format!(
                "{} ({})",
                rfc3339(s.created_at),
                relative(now, s.created_at)
            ),
        ),
        (
            "Assignee",
            s.assignee
                .as_deref()
                .map(printable)
                .unwrap_or_default()
                .into_owned(),
        ),
        ("Problem", printable(&a.summary).into_owned()),
        ("Since", format!("{} ({})", printable(&a.since), a.pattern)),
        ("Applications", a.apps.join(", ")),
        ("Urgency", format!("{} (impact: {})", a.urgency, a.impact)),
        ("Contact", printable(&a.contact).into_owned()),
        (
            "Verdict",
            s.verdict_line
                .as_deref()
                .map(printable)
                .unwrap_or("no diagnostics attached".into())
                .into_owned(),
        ),
    ]);
    if let Some(verdict) = d
        .verdict_json
        .as_deref()
        .and_then(|v| serde_json::from_slice::<deskside_diag::verdict::Verdict>(v).ok())
    {
        for finding in verdict.problems() {
            text.push_str(&format!(
                "  - {} [{}]\n",
                printable(&finding.title.en),
                finding.id
            ));
            for e in &finding.evidence {
                text.push_str(&format!(
                    "      {}\n",
                    printable(&serde_json::to_string(e).unwrap_or_default())
                ));
            }
        }
    }
    if !d.failures.is_empty() {
        text.push_str("Failed deliveries before it arrived:\n");
        for f in &d.failures {
            text.push_str(&format!(
                "  - {}: {}\n",
                rfc3339(f.at_ms / 1000),
                printable(&f.error)
            ));
        }
    }
    match timeline {
        Some(Ok(window)) if window.samples > 0 => {
            text.push_str(&format!(
                "Timeline 30 min either side of the request: {} samples, {} episodes\n",
                window.samples,
                window.episodes.len()
            ));
            for e in &window.episodes {
                text.push_str(&format!(
                    "  {} {} [{}]: {}\n",
                    rfc3339(e.start_ms / 1000),
                    e.segment.as_str(),
                    e.id,
                    printable(&e.title.en)
                ));
            }
        }
        Some(Ok(window)) => text.push_str(if window.monitoring {
            "Timeline: no samples around the request (the agent was not connected)\n"
        } else {
            "Timeline: monitoring is off in the policy\n"
        }),
        Some(Err(reason)) => {
            text.push_str(&format!("Timeline: unavailable ({})\n", printable(reason)))
        }
        None => {}
    }
    text.push_str("Events:\n");
    for e in &d.events {
        text.push_str(&format!(
            "  {} {} {}{}\n",
            rfc3339(e.at),
            printable(&e.author),
            e.kind,
            if e.text.is_empty() {
                String::new()
            } else {
                format!(": {}", printable(&e.text))
            }
        ));
    }
    ctx.out.text(&text)
}
