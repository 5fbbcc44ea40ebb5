//! `deskside diag DEVICE`, `deskside diag history DEVICE` and
//! `deskside diag judge FILE`: diagnostics and their verdict.
//!
//! A fresh snapshot is collected by the online agent, judged and stored by
//! the relay (with the organisation's thresholds) and printed here with the
//! same report the employee sees. A saved snapshot is judged offline with
//! the same classifier.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use deskside_diag::report::{self, Lang, Style};
use deskside_diag::thresholds::Thresholds;
use deskside_diag::verdict::{self, Verdict};
use deskside_diag::Snapshot;
use deskside_protocol::console::{ConsoleRequest, ConsoleResponse, StoredDiagnostics};
use serde_json::Value;

use super::{printed, unexpected, Context};
use crate::exit::NoMatch;
use crate::output::{printable, relative, rfc3339, Column, Table};

pub mod filter;

pub use filter::Filter;

/// `deskside diag …`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DiagArgs {
    #[command(subcommand)]
    command: Option<DiagCommand>,
    /// Device to diagnose now: id (dev_…), unique id prefix, or hostname
    #[arg(value_name = "DEVICE")]
    device: Option<String>,
    /// Include the throughput test (about 3 s of traffic on the device's link)
    #[arg(long)]
    throughput: bool,
    /// Diagnose every device of the organisation (offline ones are listed
    /// with the error "offline")
    #[arg(long, conflicts_with = "device")]
    all: bool,
    /// Diagnose every device of this group (set by the enrollment token)
    #[arg(long, value_name = "GROUP", conflicts_with_all = ["device", "all"])]
    group: Option<String>,
    /// With --all or --group: keep only the devices that match, e.g.
    /// 'wifi.signal_dbm < -70 and group == paris' or 'verdict != ok'.
    /// Fields: hostname, group, id, verdict, finding and the snapshot's
    /// values (list: `deskside diag fields`); OP one of < <= > >= == != ~
    /// (contains); join with and/or and parentheses. An unknown field is an
    /// error; when no device matches, exit code 3
    #[arg(long = "where", value_name = "EXPR")]
    filter: Option<String>,
    /// With --all or --group: comma-separated values instead of a table
    #[arg(long)]
    csv: bool,
    /// With --all or --group: devices diagnosed at the same time
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Language of the report [default: from the locale]
    #[arg(long, value_parser = ["en", "fr"])]
    lang: Option<String>,
}

/// The `diag` subcommands.
#[derive(Debug, Subcommand)]
enum DiagCommand {
    /// List the fields a `--where` expression may name
    Fields,
    /// List a device's stored snapshots, newest first
    History {
        /// Device: id (dev_…), unique id prefix, or hostname
        #[arg(value_name = "DEVICE")]
        device: String,
        /// How many
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Judge a saved snapshot offline (from `deskside-agent check --json`,
    /// `deskside diag --json`, or a bare snapshot)
    Judge {
        /// The file (`-` for standard input)
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Language of the report [default: from the locale]
        #[arg(long, value_parser = ["en", "fr"])]
        lang: Option<String>,
    },
}

fn language(flag: Option<&str>) -> Lang {
    report::lang_for(flag, |name| std::env::var(name).ok())
}

fn style() -> Style {
    Style {
        color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    }
}

/// Runs a `diag` command.
pub async fn run(args: DiagArgs, ctx: &mut Context<'_>) -> anyhow::Result<()> {
    match (args.command, args.device) {
        (Some(DiagCommand::Judge { file, lang }), _) => judge_file(&file, lang.as_deref(), ctx),
        (Some(DiagCommand::Fields), _) => printed(print_fields(ctx)),
        (Some(DiagCommand::History { device, limit }), _) => {
            let response =
                super::request(ctx, ConsoleRequest::DiagnosticsHistory { device, limit }).await?;
            match response {
                ConsoleResponse::DiagnosticsHistory(rows) => printed(print_history(ctx, &rows)),
                other => Err(unexpected(&other)),
            }
        }
        (None, Some(_)) if args.filter.is_some() || args.csv => Err(crate::exit::UsageError::new(
            "--where and --csv apply to fleet runs: use them with --all or --group",
            "deskside diag --help",
        )
        .into()),
        (None, Some(device)) => {
            let lang = language(args.lang.as_deref());
            let response = super::request(
                ctx,
                ConsoleRequest::Diagnose {
                    device,
                    throughput: args.throughput,
                },
            )
            .await?;
            match response {
                ConsoleResponse::Diagnostics(stored) => print_stored(ctx, &stored, lang),
                other => Err(unexpected(&other)),
            }
        }
        (None, None) if args.all || args.group.is_some() => {
            let filter = match args.filter.as_deref().map(filter::parse).transpose() {
                Ok(filter) => filter,
                Err(message) => {
                    return Err(crate::exit::UsageError::new(message, "deskside diag --help").into())
                }
            };
            let selection = Selection {
                group: args.group,
                filter,
                csv: args.csv,
                concurrency: args.concurrency,
            };
            fleet(ctx, args.throughput, &selection).await
        }
        (None, None) => Err(crate::exit::UsageError::new(
            "name a DEVICE to diagnose, or use `deskside diag history DEVICE` or `deskside diag judge FILE`",
            "deskside diag --help",
        )
        .into()),
    }
}

/// One device's outcome in a fleet run.
struct FleetRow {
    id: String,
    hostname: String,
    group: Option<String>,
    outcome: Result<(Snapshot, Verdict, Value), String>,
}

impl FleetRow {
    /// Whether this row passes a `--where` filter.
    fn passes(&self, filter: &Filter) -> bool {
        let (verdict, findings, snapshot) = match &self.outcome {
            Ok((_, verdict, json)) => (segment_name(verdict), finding_ids(verdict), Some(json)),
            Err(_) => ("error".to_owned(), Vec::new(), None),
        };
        filter.matches(&filter::Record {
            id: &self.id,
            hostname: &self.hostname,
            group: self.group.as_deref(),
            verdict: &verdict,
            findings: &findings,
            snapshot,
        })
    }
}

fn finding_ids(verdict: &Verdict) -> Vec<String> {
    verdict.findings.iter().map(|f| f.id.to_string()).collect()
}

/// Why a fleet run printed nothing, in words.
fn no_match(selection: &Selection, listed: usize, diagnosed: usize) -> NoMatch {
    let scope = match &selection.group {
        Some(group) => format!("in the group {group:?}"),
        None => "in the organisation".to_owned(),
    };
    let message = match (&selection.filter, listed) {
        (_, 0) => "no device matched: the organisation has no enrolled device yet (create a token with `deskside enroll-token create`)".to_owned(),
        (None, _) => format!("no device matched: no device {scope} (see `deskside devices list`)"),
        (Some(_), _) => format!(
            "no device matched the --where expression ({diagnosed} diagnosed {scope}); check the values with `deskside diag DEVICE --json`"
        ),
    };
    NoMatch(message)
}

fn segment_name(verdict: &Verdict) -> String {
    verdict
        .primary
        .and_then(|segment| serde_json::to_value(segment).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "ok".to_owned())
}

/// `text` as one CSV field, quoted when it must be.
pub(crate) fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// The field at `path` in a snapshot's JSON, looking through the
/// `measured` wrapper of every probe; `None` if it was not measured.
fn field<'a, 'k>(
    snapshot: &'a Value,
    path: impl IntoIterator<Item = &'k str>,
) -> Option<&'a Value> {
    let unwrap = |value: &'a Value| value.get("measured").unwrap_or(value);
    let mut current = snapshot;
    for key in path {
        current = unwrap(current).get(key)?;
    }
    Some(unwrap(current))
}

fn number(snapshot: &Value, path: &[&str]) -> Option<f64> {
    field(snapshot, path.iter().copied())?.as_f64()
}

/// Which devices a fleet run covers and how it prints.
struct Selection {
    group: Option<String>,
    filter: Option<Filter>,
    csv: bool,
    concurrency: usize,
}

async fn fleet(
    ctx: &mut Context<'_>,
    throughput: bool,
    selection: &Selection,
) -> anyhow::Result<()> {
    let (filter, csv, concurrency) = (
        selection.filter.as_ref(),
        selection.csv,
        selection.concurrency,
    );
    let (_, mut client) = super::connect(ctx).await?;
    // Every device would be refused for the same reason: say it once.
    let needed = ConsoleRequest::Diagnose {
        device: String::new(),
        throughput,
    }
    .required_role();
    let have = client.session().role;
    if !have.allows(needed) {
        client.close().await;
        return Err(deskside_protocol::Refusal::Forbidden { needed, have }.into());
    }
    let devices = match client.request(ConsoleRequest::ListDevices).await? {
        ConsoleResponse::Devices(devices) => devices,
        other => return Err(unexpected(&other)),
    };
    let listed = devices.len();
    // A filter on what the list already says chooses devices before any is
    // diagnosed.
    let chosen_early = |d: &deskside_protocol::console::DeviceSummary| match filter {
        Some(filter) if !filter::needs_diagnosis(filter) => filter.matches(&filter::Record {
            id: &d.id.to_string(),
            hostname: &d.hostname,
            group: d.group.as_deref(),
            verdict: "",
            findings: &[],
            snapshot: None,
        }),
        _ => true,
    };
    let devices: Vec<_> = devices
        .into_iter()
        .filter(|d| d.revoked_at.is_none())
        .filter(|d| selection.group.is_none() || d.group == selection.group)
        .filter(chosen_early)
        .collect();
    let mut rows: Vec<Option<FleetRow>> = devices.iter().map(|_| None).collect();
    let mut asked = Vec::new();
    for (index, device) in devices.iter().enumerate() {
        if device.online {
            asked.push(index);
        } else {
            rows[index] = Some(FleetRow {
                id: device.id.to_string(),
                hostname: device.hostname.clone(),
                group: device.group.clone(),
                outcome: Err("offline".to_owned()),
            });
        }
    }
    let requests = asked
        .iter()
        .map(|&i| ConsoleRequest::Diagnose {
            device: devices[i].id.to_string(),
            throughput,
        })
        .collect();
    let show_progress = std::io::stderr().is_terminal();
    let total = asked.len();
    let mut done = 0;
    client
        .request_all(requests, concurrency, |position, result| {
            let index = asked[position];
            let device = &devices[index];
            let outcome = match result {
                Ok(ConsoleResponse::Diagnostics(stored)) => parse_stored(&stored)
                    .map(|(snapshot, verdict)| {
                        let json =
                            serde_json::from_slice(&stored.snapshot_json).unwrap_or(Value::Null);
                        (snapshot, verdict, json)
                    })
                    .map_err(|e| e.to_string()),
                Ok(other) => Err(unexpected(&other).to_string()),
                Err(refusal) => Err(refusal.to_string()),
            };
            rows[index] = Some(FleetRow {
                id: device.id.to_string(),
                hostname: device.hostname.clone(),
                group: device.group.clone(),
                outcome,
            });
            done += 1;
            if show_progress {
                eprint!("\r\x1b[2Kdiagnosed {done}/{total}");
            }
        })
        .await?;
    if show_progress {
        eprint!("\r\x1b[2K");
    }
    client.close().await;
    let diagnosed = rows.iter().flatten().filter(|r| r.outcome.is_ok()).count();
    let rows: Vec<FleetRow> = rows
        .into_iter()
        .flatten()
        .filter(|row| filter.is_none_or(|filter| row.passes(filter)))
        .collect();
    if rows.is_empty() {
        return Err(no_match(selection, listed, diagnosed).into());
    }
    printed(print_fleet(ctx, &rows, csv))
}

fn print_fields(ctx: &mut Context<'_>) -> std::io::Result<()> {
    let fields = filter::fields();
    if ctx.out.is_json() {
        for field in &fields {
            ctx.out.json(&serde_json::json!({
                "type": "field",
                "name": field.name,
                "kind": format!("{:?}", field.kind).to_lowercase(),
                "about": field.about,
            }))?;
        }
        return Ok(());
    }
    ctx.out.text(&filter::render_fields(&fields))
}

fn print_fleet(ctx: &mut Context<'_>, rows: &[FleetRow], csv: bool) -> std::io::Result<()> {
    if ctx.out.is_json() {
        for row in rows {
            match &row.outcome {
                Ok((snapshot, verdict, _)) => ctx.out.json(&serde_json::json!({
                    "type": "diagnostics",
                    "device": row.id,
                    "hostname": row.hostname,
                    "snapshot": snapshot,
                    "verdict": verdict,
                }))?,
                Err(message) => ctx.out.json(&serde_json::json!({
                    "type": "error",
                    "device": row.id,
                    "hostname": row.hostname,
                    "message": message,
                }))?,
            }
        }
        return Ok(());
    }
    let header = [
        "ID", "HOSTNAME", "VERDICT", "FINDINGS", "WIFI_DBM", "RTT_MS", "LOSS_PCT",
    ];
    let cells = |row: &FleetRow| -> [String; 7] {
        match &row.outcome {
            Ok((_, verdict, json)) => {
                let fmt = |v: Option<f64>, digits: usize| {
                    v.map(|x| format!("{x:.digits$}")).unwrap_or_default()
                };
                let loss = match (
                    number(json, &["path", "probes_sent"]),
                    number(json, &["path", "probes_received"]),
                ) {
                    (Some(sent), Some(received)) if sent > 0.0 => {
                        Some(100.0 * (sent - received) / sent)
                    }
                    _ => None,
                };
                [
                    row.id.clone(),
                    row.hostname.clone(),
                    segment_name(verdict),
                    verdict
                        .findings
                        .iter()
                        .map(|f| f.id.to_string())
                        .collect::<Vec<_>>()
                        .join(" "),
                    fmt(number(json, &["wifi", "signal_dbm"]), 0),
                    fmt(number(json, &["path", "idle_rtt", "median_ms"]), 1),
                    fmt(loss, 1),
                ]
            }
            Err(message) => [
                row.id.clone(),
                row.hostname.clone(),
                "error".to_owned(),
                message.clone(),
                String::new(),
                String::new(),
                String::new(),
            ],
        }
    };
    if csv {
        let mut text = header.join(",").to_lowercase() + "\n";
        for row in rows {
            text += &cells(row)
                .iter()
                .map(|c| csv_field(c))
                .collect::<Vec<_>>()
                .join(",");
            text.push('\n');
        }
        return ctx.out.text(&text);
    }
    let mut table = Table::new(&[
        Column::new("ID"),
        Column::capped("HOSTNAME", 24),
        Column::new("VERDICT"),
        Column::capped("FINDINGS", 48),
        Column::new("WIFI dBm"),
        Column::new("RTT ms"),
        Column::new("LOSS %"),
    ]);
    for row in rows {
        let mut cells = cells(row);
        cells[1] = printable(&cells[1]).into_owned();
        table.row(cells);
    }
    ctx.out.text(&table.render())
}

fn parse_stored(stored: &StoredDiagnostics) -> anyhow::Result<(Snapshot, Verdict)> {
    let snapshot: Snapshot = serde_json::from_slice(&stored.snapshot_json)
        .context("the relay returned a snapshot this console cannot read; upgrade the console")?;
    let verdict: Verdict = serde_json::from_slice(&stored.verdict_json)
        .context("the relay returned a verdict this console cannot read; upgrade the console")?;
    Ok((snapshot, verdict))
}

fn print_stored(
    ctx: &mut Context<'_>,
    stored: &StoredDiagnostics,
    lang: Lang,
) -> anyhow::Result<()> {
    let (snapshot, verdict) = parse_stored(stored)?;
    if ctx.out.is_json() {
        let record = serde_json::json!({
            "type": "diagnostics",
            "id": stored.id,
            "device": stored.device.id.to_string(),
            "hostname": stored.device.hostname,
            "received_at": rfc3339(stored.received_at),
            "snapshot": snapshot,
            "verdict": verdict,
        });
        return printed(ctx.out.json(&record));
    }
    let header = format!(
        "{} ({}) — snapshot #{} received {}\n\n",
        stored.device.id,
        printable(&stored.device.hostname),
        stored.id,
        relative(ctx.now, stored.received_at)
    );
    printed(
        ctx.out
            .text(&(header + &report::render(&verdict, &snapshot, lang, style()))),
    )
}

fn print_history(ctx: &mut Context<'_>, rows: &[StoredDiagnostics]) -> std::io::Result<()> {
    if ctx.out.is_json() {
        for stored in rows {
            let snapshot: Value =
                serde_json::from_slice(&stored.snapshot_json).unwrap_or(Value::Null);
            let verdict: Value =
                serde_json::from_slice(&stored.verdict_json).unwrap_or(Value::Null);
            ctx.out.json(&serde_json::json!({
                "type": "diagnostics",
                "id": stored.id,
                "device": stored.device.id.to_string(),
                "hostname": stored.device.hostname,
                "received_at": rfc3339(stored.received_at),
                "snapshot": snapshot,
                "verdict": verdict,
            }))?;
        }
        return Ok(());
    }
    if rows.is_empty() {
        return ctx
            .out
            .text("No stored snapshots. Take one with `deskside diag DEVICE`.\n");
    }
    let mut table = Table::new(&[
        Column::new("ID"),
        Column::new("RECEIVED"),
        Column::new("VERDICT"),
        Column::new("FINDINGS"),
    ]);
    for stored in rows {
        let verdict: Option<Verdict> = serde_json::from_slice(&stored.verdict_json).ok();
        let primary = verdict
            .as_ref()
            .and_then(|v| v.primary)
            .and_then(|segment| serde_json::to_value(segment).ok())
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "no fault".to_owned());
        let findings = verdict
            .as_ref()
            .map(|v| {
                v.findings
                    .iter()
                    .map(|f| f.id.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        table.row([
            stored.id.to_string(),
            relative(ctx.now, stored.received_at),
            primary,
            findings,
        ]);
    }
    ctx.out.text(&table.render())
}

/// Finds the snapshot in what a file holds: a bare snapshot, a
/// `deskside-agent check --json` record or a `deskside diag --json` record.
fn snapshot_from(value: Value) -> anyhow::Result<Snapshot> {
    let inner = match value.get("snapshot") {
        Some(snapshot) if value.get("type").is_some() => snapshot.clone(),
        _ => value,
    };
    if inner.get("format").is_none() {
        anyhow::bail!("this JSON is not a deskside snapshot (no `format` field)");
    }
    serde_json::from_value(inner).context("this snapshot does not have the deskside format")
}

fn judge_file(
    file: &std::path::Path,
    lang: Option<&str>,
    ctx: &mut Context<'_>,
) -> anyhow::Result<()> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    // Accept one JSON document, or JSON lines (judging each).
    let values: Vec<Value> = match serde_json::from_str::<Value>(&text) {
        Ok(value) => vec![value],
        Err(_) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .with_context(|| format!("{} is not JSON", file.display()))?,
    };
    let lang = language(lang);
    for value in values {
        let snapshot = snapshot_from(value)?;
        let verdict = verdict::judge(&snapshot, &Thresholds::default());
        if ctx.out.is_json() {
            printed(ctx.out.json(&serde_json::json!({
                "type": "verdict",
                "snapshot": snapshot,
                "verdict": verdict,
            })))?;
        } else {
            printed(
                ctx.out
                    .text(&report::render(&verdict, &snapshot, lang, style())),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn snapshots_are_found_in_every_saved_shape() {
        let bare = serde_json::json!({"format": 1, "agent_version": "0.1.0"});
        assert_eq!(snapshot_from(bare.clone()).unwrap().agent_version, "0.1.0");
        let check = serde_json::json!({"type": "check", "snapshot": bare, "verdict": {}});
        assert_eq!(snapshot_from(check).unwrap().format, 1);
        let err = snapshot_from(serde_json::json!({"hello": 1})).unwrap_err();
        assert!(err.to_string().contains("not a deskside snapshot"));
    }
}
