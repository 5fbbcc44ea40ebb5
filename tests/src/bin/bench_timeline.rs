//! Timeline benchmarks.
//!
//! `agent`: what monitoring costs one real agent. A real relay behind the
//! impairment proxy (used here only to count bytes) and a real
//! `deskside-agent run`; one phase with monitoring off, then one with it
//! on, same process, same duration. Reports the agent's extra upload
//! (bytes per minute, agent → relay, counted by the proxy), its CPU (share
//! of one core, from /proc) and its resident memory in each phase, against
//! the budget (under 1 KB/min, 0.2 % of a core, 2 MiB), and what the real
//! samples it sent take in the relay's database (per device per day).
//!
//! `fleet`: relay storage per device per day, and how long
//! `deskside timeline --all --since 7d` takes over N simulated devices
//! (samples written straight into a real relay's database: the last 48 h
//! at one a minute, older days as the relay's 10-minute summaries, with
//! realistic noise and an evening problem on every tenth device).
//!
//! Usage (build with `cargo build --release --workspace --bins`):
//! `deskside-bench-timeline agent --phase-secs 600`,
//! `deskside-bench-timeline fleet --devices 1000 --days 7`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use deskside_diag::timeline::{
    encode_batch, worst_of, GatewaySample, LinkKind, PressureSample, RelaySample, Sample,
    WifiSample,
};
use deskside_protocol::agent::DeviceInfo;
use deskside_protocol::DeviceId;
use deskside_relay::store::{OrgId, Store};
use deskside_tests::bench::{cpu_ticks, rss_kib, CLOCK_TICKS_PER_SEC};
use deskside_tests::impair::ImpairProxy;
use deskside_tests::{wait_for, ProxiedRelay, World};

#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// One agent's upload, CPU and memory with monitoring off, then on
    Agent {
        /// Length of each phase, seconds
        #[arg(long, default_value_t = 600)]
        phase_secs: u64,
        /// Monitoring interval during the "on" phase, seconds
        #[arg(long, default_value_t = 60)]
        interval: u32,
    },
    /// Relay storage per device and `timeline --all` over a fleet
    Fleet {
        /// Simulated devices
        #[arg(long, default_value_t = 1000)]
        devices: u64,
        /// Days of history per device
        #[arg(long, default_value_t = 7)]
        days: i64,
    },
}

/// Agent process readings at one moment.
struct Reading {
    at: Instant,
    ticks: u64,
    up_bytes: u64,
    up_packets: u64,
    down_bytes: u64,
    rss_kib: u64,
}

fn read(pid: u32, proxy: &ImpairProxy) -> anyhow::Result<Reading> {
    let stats = proxy.stats();
    Ok(Reading {
        at: Instant::now(),
        ticks: cpu_ticks(pid)?,
        up_bytes: stats.up.received_bytes,
        up_packets: stats.up.received_packets,
        down_bytes: stats.down.received_bytes,
        rss_kib: rss_kib(pid)?,
    })
}

fn report(name: &str, from: &Reading, to: &Reading) -> (f64, f64, f64) {
    let secs = to.at.duration_since(from.at).as_secs_f64();
    let up = (to.up_bytes - from.up_bytes) as f64 / secs * 60.0;
    let down = (to.down_bytes - from.down_bytes) as f64 / secs * 60.0;
    let packets = (to.up_packets - from.up_packets) as f64 / secs * 60.0;
    let cpu = (to.ticks - from.ticks) as f64 / CLOCK_TICKS_PER_SEC / secs * 100.0;
    println!(
        "{name:<15} {secs:>6.0} s  agent→relay {up:>7.0} B/min in {packets:.1} packets/min  relay→agent {down:>7.0} B/min  agent CPU {cpu:>6.3} % of a core  RSS {} KiB",
        to.rss_kib
    );
    (up, cpu, to.rss_kib as f64)
}

fn agent_bench(phase: Duration, interval: u32) -> anyhow::Result<()> {
    let mut world = World::new();
    // The proxy only counts bytes here (no impairment).
    let ProxiedRelay {
        relay,
        proxy,
        runtime: _runtime,
    } = world.relay_behind_proxy();
    let admin = world.console("admin");
    admin.login_admin(&relay);
    admin.run(&["policy", "set", "monitoring", "off"]).ok();
    admin
        .run(&[
            "policy",
            "set",
            "monitoring_interval",
            &interval.to_string(),
        ])
        .ok();
    let agent = world.agent("laptop");
    let device = agent.enroll(&admin.enroll_token(1, "10m"));
    let proc = world.run_agent(&agent);
    admin.wait_status(&device, "online", Duration::from_secs(60));
    let pid = proc.pid();
    let settle = Instant::now();
    wait_for("the agent to settle", Duration::from_secs(20), || {
        (settle.elapsed() >= Duration::from_secs(10)).then_some(())
    });
    println!(
        "phases of {} s, monitoring interval {interval} s",
        phase.as_secs()
    );
    let start = read(pid, &proxy)?;
    std::thread::sleep(phase);
    let off_end = read(pid, &proxy)?;
    let (off_up, off_cpu, off_rss) = report("monitoring off", &start, &off_end);
    admin.run(&["policy", "set", "monitoring", "on"]).ok();
    let on_start = read(pid, &proxy)?;
    std::thread::sleep(phase);
    let on_end = read(pid, &proxy)?;
    let (on_up, on_cpu, on_rss) = report("monitoring on", &on_start, &on_end);
    let kept = deskside_agent::timeline::ring::Ring::read_all(&agent.state_dir);
    let hwm = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.to_owned())
        })
        .unwrap_or_default();
    println!(
        "monitoring adds {:.0} B/min upload, {:.3} % of a core, {:+.0} KiB RSS; {} samples taken; agent {hwm}",
        on_up - off_up,
        on_cpu - off_cpu,
        on_rss - off_rss,
        kept.len()
    );
    let (extra_up, extra_cpu, extra_kib) = (on_up - off_up, on_cpu - off_cpu, on_rss - off_rss);
    println!(
        "budget: upload {extra_up:.0} of 1000 B/min {}, CPU {extra_cpu:.3} of 0.2 % {}, memory {extra_kib:+.0} of 2048 KiB {}",
        verdict(extra_up < 1000.0),
        verdict(extra_cpu < 0.2),
        verdict(extra_kib < 2048.0)
    );
    drop(proc);
    // What the samples it sent take on the relay, read once it is stopped.
    let data_dir = relay.data_dir.clone();
    drop(relay);
    let store = Store::open(&data_dir.join("relay.db")).context("open the relay database")?;
    let id: DeviceId = device.parse().context("the enrolled device id")?;
    let (rows, bytes) = store.timeline_bytes(id)?;
    if rows > 0 {
        let per_sample = bytes as f64 / rows as f64;
        println!(
            "relay storage: {rows} samples stored, {per_sample:.0} bytes each with their key; at one every {interval} s ≈ {:.0} KB per device per day at full resolution",
            per_sample * 86_400.0 / f64::from(interval.max(1)) / 1000.0
        );
    }
    Ok(())
}

fn verdict(within: bool) -> &'static str {
    if within {
        "(within)"
    } else {
        "(OVER)"
    }
}

/// A tiny deterministic generator (SplitMix64) for the simulated noise.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One realistic sample: a hashed access point, every probe measured.
fn sample(rng: &mut Rng, at_ms: i64, evening_problem: bool) -> Sample {
    let local_min = (at_ms / 60_000 + 60).rem_euclid(1_440);
    let evening = evening_problem && (19 * 60..21 * 60).contains(&local_min);
    let sent = 18 + (rng.next() * 16.0) as u32;
    Sample {
        at_ms,
        utc_offset_min: 60,
        link: LinkKind::Wifi,
        wifi: Some(WifiSample {
            signal_dbm: Some((-58.0 - rng.next() * 6.0) as f32),
            noise_dbm: Some(-93.0),
            tx_rate_mbps: Some(866.7),
            rx_rate_mbps: Some(780.0),
            retries_percent: Some((rng.next() * 8.0) as f32),
            access_point: Some(
                "hmac-sha256:3f9a1c2e4b5d6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8"
                    .to_owned(),
            ),
            band: Some(deskside_diag::snapshot::Band::Ghz5),
        }),
        vpn_up: Some(false),
        gateway: Some(GatewaySample {
            sent: 10,
            received: 10,
            rtt_ms: Some((1.5 + rng.next() * 2.0) as f32),
        }),
        relay: Some(RelaySample {
            rtt_ms: Some(if evening {
                170.0
            } else {
                (25.0 + rng.next() * 8.0) as f32
            }),
            jitter_ms: Some((1.0 + rng.next() * 2.0) as f32),
            sent_packets: sent,
            lost_packets: if evening {
                3
            } else {
                u32::from(rng.next() < 0.01)
            },
        }),
        dns_ms: Some((15.0 + rng.next() * 20.0) as f32),
        pressure: Some(PressureSample {
            cpu_usage_percent: Some((5.0 + rng.next() * 20.0) as f32),
            cpu_some_avg60: Some((rng.next() * 3.0) as f32),
            memory_available_percent: Some(55.0),
            memory_full_avg10: Some(0.0),
        }),
        marker: None,
    }
}

/// Rows of one device: (summaries older than 48 h, as the relay keeps
/// them: the worst of each 10 minutes; the last 48 h one a minute).
type Rows = (Vec<(i64, Vec<u8>)>, Vec<(i64, Vec<u8>)>);

fn device_rows(rng: &mut Rng, now_ms: i64, days: i64, problem: bool) -> Rows {
    let start = now_ms - days * 86_400_000;
    let full_from = now_ms - 48 * 3_600_000;
    let (mut summaries, mut full) = (Vec::new(), Vec::new());
    let mut at = start - start.rem_euclid(600_000);
    while at + 600_000 <= full_from {
        let bucket: Vec<Sample> = (0..10)
            .map(|m| sample(rng, at + m * 60_000, problem))
            .collect();
        if let Some(summary) = worst_of(&bucket) {
            summaries.push((at, encode_batch(&[summary])));
        }
        at += 600_000;
    }
    while at <= now_ms {
        full.push((at, encode_batch(&[sample(rng, at, problem)])));
        at += 60_000;
    }
    (summaries, full)
}

fn fleet_bench(devices: u64, days: i64) -> anyhow::Result<()> {
    let mut world = World::new();
    let relay = world.relay(None);
    let port = relay.port();
    let data_dir = relay.data_dir.clone();
    drop(relay);
    let store = Store::open(&data_dir.join("relay.db")).context("open the relay database")?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let now = now_ms / 1000;
    let org = OrgId(1);
    let token = [7u8; 32];
    store.create_enroll_token(org, &token, devices as u32, now + 3_600, None, "bench", now)?;
    let mut rng = Rng(42);
    let started = Instant::now();
    let mut rows_total = 0usize;
    let mut first_device = None;
    for i in 0..devices {
        let info = DeviceInfo {
            hostname: format!("laptop-{i:05}"),
            os: "Debian GNU/Linux 12".to_owned(),
            agent_version: "0.1.0".to_owned(),
        };
        let key = format!("bench-key-{i}");
        let record = match store.enroll_device(
            &token,
            key.as_bytes(),
            &info,
            "192.0.2.1:1",
            DeviceId(0x1000 + i),
            now,
        )? {
            Ok((record, _)) => record,
            Err(refusal) => bail!("enrolling device {i}: {refusal}"),
        };
        first_device.get_or_insert(record.id);
        let (summaries, full) = device_rows(&mut rng, now_ms, days, i % 10 == 0);
        rows_total += summaries.len() + full.len();
        store.insert_timeline_rows(record.id, &summaries, 600)?;
        store.insert_timeline(record.id, &full)?;
    }
    println!(
        "{devices} devices × {days} days: {rows_total} rows written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if let Some(id) = first_device {
        let (rows, bytes) = store.timeline_bytes(id)?;
        let full_day = 1_440.0 * bytes as f64 / rows as f64;
        let summary_day = 144.0 * bytes as f64 / rows as f64;
        println!(
            "storage per device: {rows} rows, {bytes} bytes of samples and keys; per day ≈ {:.0} KB at full resolution (first 48 h), ≈ {:.0} KB summarised",
            full_day / 1000.0,
            summary_day / 1000.0
        );
    }
    drop(store);
    let file = std::fs::metadata(data_dir.join("relay.db"))?.len();
    println!("relay.db: {:.1} MB", file as f64 / 1e6);
    let relay = world.relay(Some(port));
    let admin = world.console("admin");
    admin.login_admin(&relay);
    let started = Instant::now();
    let out = admin
        .run(&[
            "timeline",
            "--all",
            "--since",
            &format!("{days}d"),
            "--json",
        ])
        .ok();
    let took = started.elapsed();
    let listed = out
        .json_lines()
        .iter()
        .filter(|l| l["type"] == "device_timeline")
        .count();
    println!(
        "deskside timeline --all --since {days}d: {:.2} s, {listed} devices with episodes listed (expected {})",
        took.as_secs_f64(),
        devices.div_ceil(10)
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command {
        Bench::Agent {
            phase_secs,
            interval,
        } => agent_bench(Duration::from_secs(phase_secs), interval),
        Bench::Fleet { devices, days } => fleet_bench(devices, days),
    }
}
