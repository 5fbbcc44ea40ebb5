//! Help-request statistics benchmark: how long the relay's store takes to
//! compute `deskside stats` over a large store.
//!
//! Seeds a fresh on-disk store (WAL, as the relay opens it) through the
//! store's own calls: `--devices` devices and `--requests` help requests,
//! each with one real quick-check snapshot of this machine (the agent's
//! own probes, no relay path) and its verdict as the relay judges it, with
//! one of a few warning findings added so the findings query has work; a
//! third claimed, a fifth of those resolved. Then times
//! `Store::request_stats` over a 30-day window covering every request,
//! with and without a group filter, and prints each run.
//!
//! Usage: `target/release/deskside-bench-stats --requests 100000`

use std::time::Instant;

use anyhow::Context as _;
use clap::Parser;
use deskside_protocol::agent::DeviceInfo;
use deskside_protocol::request::{Answers, RequestAction};
use deskside_protocol::{DeviceId, Role, TechnicianId};
use deskside_relay::store::{NewRequest, Store, Technician};

#[derive(Debug, Parser)]
struct Args {
    /// Devices that sent requests.
    #[arg(long, default_value_t = 1000)]
    devices: u64,
    /// Requests in all.
    #[arg(long, default_value_t = 100_000)]
    requests: u64,
    /// Timed runs of the query.
    #[arg(long, default_value_t = 3)]
    runs: u32,
}

const T0: i64 = 1_800_000_000;
/// Findings added to the verdicts, one per request in turn.
const FINDINGS: [(&str, &str); 5] = [
    ("wifi.signal_weak", "home_network"),
    ("path.loss", "isp"),
    ("dns.slow", "configuration"),
    ("disk.full", "device"),
    ("relay.slow", "service"),
];

fn hash(secret: &str) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, secret.as_bytes()).as_ref());
    out
}

/// The real verdict with finding `i` added as a warning and made primary.
fn verdict(real: &serde_json::Value, i: usize) -> String {
    let (id, segment) = FINDINGS[i % FINDINGS.len()];
    let mut verdict = real.clone();
    if let Some(findings) = verdict["findings"].as_array_mut() {
        findings.insert(
            0,
            serde_json::json!({
                "id": id, "segment": segment, "stage": "link", "severity": "warning",
                "confidence": "high",
                "title": { "en": "A problem the benchmark added", "fr": "Un problème ajouté" },
                "evidence": [], "advice": { "en": "Move closer.", "fr": "Rapprochez-vous." },
                "technician_note": { "en": "", "fr": "" }
            }),
        );
    }
    verdict["primary"] = serde_json::json!(segment);
    verdict.to_string()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let policy = deskside_diag::policy::Policy::default();
    let mut collect_options = deskside_agent::diag::options_for(&policy);
    collect_options.path.throughput = false;
    let collected = deskside_agent::diag::collect::run(None, &collect_options, &|_| {}).await;
    let snapshot = serde_json::to_vec(&collected.snapshot)?;
    let judged =
        deskside_relay::diagnostics::judge(snapshot, &deskside_diag::Thresholds::default())
            .map_err(anyhow::Error::msg)?;
    let real: serde_json::Value = serde_json::from_str(&judged.verdict)?;
    println!(
        "each request: snapshot {} bytes, verdict {} bytes of JSON",
        judged.snapshot.len(),
        verdict(&real, 0).len()
    );

    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("relay.db"))?;
    let org = store
        .bootstrap("Bench", "root", &hash("admin"), T0)?
        .context("a fresh store has no organisation")?;
    let uses = u32::try_from(args.devices)?;
    store.create_enroll_token(org, &hash("enroll"), uses, T0 + 86_400, None, "bench", T0)?;
    let mut devices = Vec::new();
    for i in 0..args.devices {
        let info = DeviceInfo {
            hostname: format!("laptop-{i}"),
            os: "Debian GNU/Linux 12".into(),
            agent_version: "0.1.0".into(),
        };
        let (device, _) = store
            .enroll_device(
                &hash("enroll"),
                format!("key-{i}").as_bytes(),
                &info,
                "192.0.2.7:5000",
                DeviceId(i + 1),
                T0,
            )?
            .map_err(|refusal| anyhow::anyhow!("{refusal}"))?;
        devices.push(device.id);
    }
    let admin = Technician {
        id: TechnicianId(1),
        org,
        name: "root".into(),
        role: Role::Admin,
    };
    let seeding = Instant::now();
    // Spread over 20 days: a device sends one request every 1000 × 17 s,
    // far below the hourly limit.
    let last = T0 + args.requests as i64 * 17;
    for i in 0..args.requests {
        let created = T0 + i as i64 * 17;
        let request = NewRequest {
            client_id: format!("r{i}"),
            answers: Answers {
                summary: "video calls freeze".into(),
                urgency: "slowed".into(),
                impact: "me".into(),
                ..Answers::default()
            },
            snapshot: Some(judged.snapshot.clone()),
            verdict: Some(verdict(&real, i as usize)),
            verdict_line: Some(judged.line.clone()),
            failures: Vec::new(),
            priority: 3,
        };
        let device = devices[(i % args.devices) as usize];
        let (number, _) = store
            .insert_request(org, device, &request, created)?
            .map_err(|refusal| anyhow::anyhow!("{refusal}"))?;
        if i % 3 == 0 {
            store
                .act_on_request(org, number, &admin, &RequestAction::Claim, created + 300)?
                .map_err(|refusal| anyhow::anyhow!("{refusal}"))?;
        }
        if i % 15 == 0 {
            let resolve = RequestAction::Resolve {
                note: String::new(),
            };
            store
                .act_on_request(org, number, &admin, &resolve, created + 3600)?
                .map_err(|refusal| anyhow::anyhow!("{refusal}"))?;
        }
    }
    println!(
        "seeded {} requests on {} devices in {:.1} s",
        args.requests,
        args.devices,
        seeding.elapsed().as_secs_f64()
    );

    let since = last - 30 * 86_400;
    for run in 1..=args.runs {
        let started = Instant::now();
        let stats = store.request_stats(org, since, None)?;
        println!(
            "run {run}: request_stats over {} requests in {:.0} ms ({} categories, {} findings, {} repeat devices, first response median {:?} s, resolution median {:?} s)",
            stats.total,
            started.elapsed().as_secs_f64() * 1000.0,
            stats.categories.len(),
            stats.findings.len(),
            stats.repeat_devices.len(),
            stats.first_response.median_secs,
            stats.resolution.median_secs
        );
        anyhow::ensure!(
            stats.total == args.requests,
            "every request is in the window"
        );
    }
    let started = Instant::now();
    let stats = store.request_stats(org, since, Some("nobody"))?;
    println!(
        "group filter matching no device: {} requests in {:.0} ms",
        stats.total,
        started.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}
