//! `deskside-bench-flood`: does the relay survive a handshake flood from
//! the internet, and can a legitimate agent and console still get in?
//!
//! Starts `deskside-relay serve --dev` (the binary beside this one, or
//! `--relay PATH`) on loopback and attacks it from loopback, bounded in
//! count and time:
//!
//! - *Initials*: valid, never-completed QUIC Initial packets (a fresh
//!   connection each, made with `quinn-proto` as a real client would start
//!   one) at `--rate` per second for `--seconds`, spread over `--sources`
//!   source addresses (127.0.0.2 and up; all of 127/8 is loopback on Linux).
//!   The packets are made before the flood starts, so the flood itself costs
//!   this process only the `send` calls. Nothing answers the relay's
//!   replies: to the relay this looks like a spoofed flood.
//! - *Stuffers*: `--stuffers` connections (from `--stuffer-sources`
//!   addresses 127.0.1.x) that complete the QUIC handshake, send a valid
//!   hello, never authenticate, and open every stream they may to push data
//!   the relay never reads; when the relay closes one, it reconnects until
//!   the flood ends.
//!
//! Meanwhile a legitimate console (login with the admin token) and a
//! legitimate agent (attach with an enrolled key) connect from 127.0.0.1
//! in turn, `--probes` times a second, each on a fresh endpoint; the time
//! from the first packet to the relay's `Authenticated`/`Attached` is
//! recorded (a probe that takes longer than 5 s counts as failed). The
//! relay's RSS is read from /proc every 200 ms during the flood and for
//! `--settle` seconds after it.
//!
//! ```text
//! cargo build --release -p deskside-relay -p deskside-tests --bins
//! target/release/deskside-bench-flood [--rate 5000] [--seconds 15] [--relay PATH]
//! ```
//!
//! Prints a human summary on stderr and one JSON object on stdout.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use deskside_net::tls::client_config;
use deskside_net::transport::{connect, transport_config, ConnectOptions};
use deskside_net::{FramedRecv, FramedSend, Identity, ALPN};
use deskside_protocol::agent::{AgentToRelay, DeviceInfo, RelayToAgent};
use deskside_protocol::console::{ConsoleRequest, ConsoleResponse, ConsoleToRelay, RelayToConsole};
use deskside_protocol::token::EnrollToken;
use deskside_protocol::version::ClientHello;
use deskside_protocol::Fingerprint;
use deskside_tests::bench::{rss_kib, start_relay_program, RelayProc};
use deskside_tests::peers::initial_packets;

/// A probe slower than this counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the relay's RSS is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// Most Initials made in advance (about 1.2 KB each).
const MAX_INITIALS: u64 = 300_000;
/// Bytes a stuffer writes per stream at most.
const STUFF_PER_STREAM: usize = 4 << 20;

#[derive(Debug, Parser)]
struct Args {
    /// The relay binary (default: `deskside-relay` beside this binary).
    #[arg(long)]
    relay: Option<PathBuf>,
    /// Never-completed QUIC Initials per second.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// How long the flood lasts, in seconds.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Source addresses of the Initials (127.0.0.2 and up).
    #[arg(long, default_value_t = 64)]
    sources: u8,
    /// Connections that never authenticate and stuff streams.
    #[arg(long, default_value_t = 32)]
    stuffers: usize,
    /// Source addresses of the stuffers (127.0.1.1 and up).
    #[arg(long, default_value_t = 4)]
    stuffer_sources: u8,
    /// Legitimate logins per second (console and agent in turn).
    #[arg(long, default_value_t = 4)]
    probes: u64,
    /// Seconds to keep reading the relay's RSS after the flood.
    #[arg(long, default_value_t = 20)]
    settle: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.rate.saturating_mul(args.seconds) > MAX_INITIALS {
        bail!("--rate × --seconds is above {MAX_INITIALS} Initials: shorten the flood");
    }
    if args.sources == 0 || args.sources > 250 || args.stuffer_sources == 0 {
        bail!("--sources must be 1..=250 and --stuffer-sources at least 1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

/// What the legitimate clients saw.
#[derive(Debug, Default)]
struct Probes {
    console_ms: Vec<f64>,
    agent_ms: Vec<f64>,
    failed: Vec<String>,
}

impl Probes {
    fn all_ms(&self) -> Vec<f64> {
        let mut all: Vec<f64> = self
            .console_ms
            .iter()
            .chain(&self.agent_ms)
            .copied()
            .collect();
        // A failed probe counts as the timeout, so failures push p99 up.
        all.extend(
            self.failed
                .iter()
                .map(|_| PROBE_TIMEOUT.as_secs_f64() * 1000.0),
        );
        all.sort_by(f64::total_cmp);
        all
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn run(args: Args) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let program = match &args.relay {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("deskside-relay"),
    };
    let relay = start_relay_program(&program, data.path(), 0)?;
    let pid = relay.child.id();
    let target: SocketAddr = relay.addr.parse().context("relay address")?;
    let admin = std::fs::read_to_string(data.path().join("admin-token"))?
        .trim()
        .to_owned();
    let agent_identity = enroll_agent(&relay, &admin).await?;

    eprintln!(
        "making {} Initials for {} s at {}/s…",
        args.rate * args.seconds,
        args.seconds,
        args.rate
    );
    let made = Instant::now();
    let initials = initial_packets(
        (args.rate * args.seconds) as usize,
        target,
        relay.fingerprint,
    )?;
    eprintln!(
        "made {} Initials of {} bytes in {:.1} s",
        initials.len(),
        initials.first().map_or(0, Vec::len),
        made.elapsed().as_secs_f64()
    );

    // Before the flood.
    let idle_rss = rss_kib(pid)?;
    let mut calm = Probes::default();
    for turn in 0..10 {
        probe(&relay, &admin, &agent_identity, turn, &mut calm).await;
    }

    // The flood.
    let flooding = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicU64::new(0));
    let flood_start = Instant::now();
    let flood = {
        let flooding = Arc::clone(&flooding);
        let sent = Arc::clone(&sent);
        let (rate, seconds, sources) = (args.rate, args.seconds, args.sources);
        std::thread::spawn(move || {
            send_initials(initials, target, rate, seconds, sources, &sent, &flooding)
        })
    };
    let stuffed = Arc::new(StuffCounters::default());
    let mut stuffers = tokio::task::JoinSet::new();
    for index in 0..args.stuffers {
        let source = Ipv4Addr::new(
            127,
            0,
            1,
            1 + (index % usize::from(args.stuffer_sources)) as u8,
        );
        stuffers.spawn(stuff(
            target,
            relay.fingerprint,
            source,
            Arc::clone(&flooding),
            Arc::clone(&stuffed),
        ));
    }
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let mut during = Probes::default();
    let probe_every = Duration::from_millis(1000 / args.probes.max(1));
    let mut next_probe = Instant::now();
    let mut next_sample = Instant::now();
    let mut turn = 0;
    while flooding.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next_sample {
            samples.push((
                flood_start.elapsed().as_secs_f64(),
                rss_kib(pid).unwrap_or(0),
            ));
            next_sample += SAMPLE_EVERY;
        }
        if now >= next_probe {
            probe(&relay, &admin, &agent_identity, turn, &mut during).await;
            turn += 1;
            next_probe = Instant::now() + probe_every;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let flood_secs = flood_start.elapsed().as_secs_f64();
    let flood_result = flood
        .join()
        .map_err(|_| anyhow::anyhow!("the flood thread panicked"))?;
    flood_result?;
    while stuffers.join_next().await.is_some() {}
    let end_rss = rss_kib(pid).unwrap_or(0);

    // After the flood: is the memory given back?
    let settle_start = Instant::now();
    while settle_start.elapsed() < Duration::from_secs(args.settle) {
        samples.push((
            flood_start.elapsed().as_secs_f64(),
            rss_kib(pid).unwrap_or(0),
        ));
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    let settled_rss = rss_kib(pid).unwrap_or(0);
    let mut after = Probes::default();
    for turn in 0..10 {
        probe(&relay, &admin, &agent_identity, turn, &mut after).await;
    }
    let peak_rss = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let hwm = vm_hwm_kib(pid).unwrap_or(0);
    let sent = sent.load(Ordering::Relaxed);

    let summary = |name: &str, probes: &Probes| {
        let all = probes.all_ms();
        eprintln!(
            "{name}: {} console + {} agent logins, {} failed; p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            probes.console_ms.len(),
            probes.agent_ms.len(),
            probes.failed.len(),
            percentile(&all, 50.0),
            percentile(&all, 99.0),
            all.last().copied().unwrap_or(f64::NAN)
        );
        for failure in probes.failed.iter().take(3) {
            eprintln!("  failed: {failure}");
        }
        serde_json::json!({
            "console": probes.console_ms.len(),
            "agent": probes.agent_ms.len(),
            "failed": probes.failed.len(),
            "p50_ms": percentile(&all, 50.0),
            "p99_ms": percentile(&all, 99.0),
            "max_ms": all.last().copied(),
        })
    };
    eprintln!(
        "Initials: {sent} sent in {flood_secs:.1} s ({:.0}/s) from {} sources",
        sent as f64 / flood_secs,
        args.sources
    );
    eprintln!(
        "stuffers: {} connections, {} refused or failed, {} streams opened, {} MiB accepted by the relay",
        stuffed.connections.load(Ordering::Relaxed),
        stuffed.refused.load(Ordering::Relaxed),
        stuffed.streams.load(Ordering::Relaxed),
        stuffed.bytes.load(Ordering::Relaxed) >> 20
    );
    eprintln!(
        "relay RSS: idle {} MiB, peak {} MiB (VmHWM {} MiB), end of flood {} MiB, {} s later {} MiB",
        idle_rss >> 10,
        peak_rss >> 10,
        hwm >> 10,
        end_rss >> 10,
        args.settle,
        settled_rss >> 10
    );
    let calm = summary("before the flood", &calm);
    let during_json = summary("during the flood", &during);
    let after_json = summary("after the flood", &after);
    println!(
        "{}",
        serde_json::json!({
            "type": "flood",
            "rate": args.rate,
            "seconds": args.seconds,
            "initials_sent": sent,
            "initials_per_sec": sent as f64 / flood_secs,
            "sources": args.sources,
            "stuffers": args.stuffers,
            "stuffer_connections": stuffed.connections.load(Ordering::Relaxed),
            "stuffer_refused": stuffed.refused.load(Ordering::Relaxed),
            "stuffer_streams": stuffed.streams.load(Ordering::Relaxed),
            "stuffer_bytes_accepted": stuffed.bytes.load(Ordering::Relaxed),
            "rss_idle_kib": idle_rss,
            "rss_peak_kib": peak_rss,
            "rss_hwm_kib": hwm,
            "rss_end_of_flood_kib": end_rss,
            "rss_settled_kib": settled_rss,
            "settle_secs": args.settle,
            "probes_before": calm,
            "probes_during": during_json,
            "probes_after": after_json,
        })
    );
    Ok(())
}

fn vm_hwm_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmHWM")
}

/// Enrolls one agent key with a fresh token and returns it.
async fn enroll_agent(relay: &RelayProc, admin: &str) -> anyhow::Result<Identity> {
    let (endpoint, mut console) = connect_from(relay, Ipv4Addr::LOCALHOST, None).await?;
    console
        .send
        .send(&ConsoleToRelay::Authenticate {
            token: admin.to_owned(),
        })
        .await?;
    match console.recv.recv::<RelayToConsole>().await? {
        Some(RelayToConsole::Authenticated { .. }) => {}
        other => bail!("admin login failed: {other:?}"),
    }
    console
        .send
        .send(&ConsoleToRelay::Request {
            id: 1,
            request: deskside_protocol::message::Nested(ConsoleRequest::CreateEnrollToken {
                uses: 1,
                expires_in_secs: 600,
                group: None,
            }),
        })
        .await?;
    let token = match console.recv.recv::<RelayToConsole>().await? {
        Some(RelayToConsole::Response {
            result: Ok(deskside_protocol::message::Nested(ConsoleResponse::EnrollToken(issued))),
            ..
        }) => issued.token,
        other => bail!("no enrollment token: {other:?}"),
    };
    console.connection.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    let secret = EnrollToken::decode(&token)?.secret;
    let identity = Identity::generate(&["deskside-agent"])?;
    let (endpoint, mut agent) =
        connect_from(relay, Ipv4Addr::LOCALHOST, Some(identity.clone())).await?;
    agent
        .send
        .send(&AgentToRelay::Enroll {
            secret,
            info: bench_info(),
        })
        .await?;
    match agent.recv.recv::<RelayToAgent>().await? {
        Some(RelayToAgent::Enrolled { .. }) => {}
        other => bail!("enrollment failed: {other:?}"),
    }
    agent.connection.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    Ok(identity)
}

fn bench_info() -> DeviceInfo {
    DeviceInfo {
        hostname: "flood-bench".into(),
        os: "linux".into(),
        agent_version: "bench".into(),
    }
}

/// Connects (QUIC + hello) from `source`, as the real clients do.
async fn connect_from(
    relay: &RelayProc,
    source: Ipv4Addr,
    identity: Option<Identity>,
) -> anyhow::Result<(quinn::Endpoint, deskside_net::transport::Connected)> {
    let endpoint = endpoint_on(source)?;
    let connected = connect(
        &endpoint,
        &ConnectOptions {
            relay: relay.addr.clone(),
            fingerprint: relay.fingerprint,
            identity,
            idle_timeout: Duration::from_secs(10),
            keep_alive: None,
            software: "deskside-bench-flood".into(),
        },
    )
    .await?;
    Ok((endpoint, connected))
}

fn endpoint_on(source: Ipv4Addr) -> anyhow::Result<quinn::Endpoint> {
    let socket = UdpSocket::bind((source, 0)).with_context(|| format!("cannot bind {source}"))?;
    let runtime = quinn::default_runtime().context("no runtime")?;
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        runtime,
    )?)
}

/// One legitimate login: console on even turns, agent on odd ones.
async fn probe(relay: &RelayProc, admin: &str, agent: &Identity, turn: u64, probes: &mut Probes) {
    let start = Instant::now();
    let as_agent = turn % 2 == 1;
    let attempt = async {
        let identity = as_agent.then(|| agent.clone());
        let (endpoint, mut peer) = connect_from(relay, Ipv4Addr::LOCALHOST, identity).await?;
        if as_agent {
            peer.send
                .send(&AgentToRelay::Attach { info: bench_info() })
                .await?;
            match peer.recv.recv::<RelayToAgent>().await? {
                Some(RelayToAgent::Attached { .. }) => {}
                other => bail!("not attached: {other:?}"),
            }
        } else {
            peer.send
                .send(&ConsoleToRelay::Authenticate {
                    token: admin.to_owned(),
                })
                .await?;
            match peer.recv.recv::<RelayToConsole>().await? {
                Some(RelayToConsole::Authenticated { .. }) => {}
                other => bail!("not authenticated: {other:?}"),
            }
        }
        let elapsed = start.elapsed();
        peer.connection.close(0u32.into(), b"probe done");
        drop(endpoint);
        Ok(elapsed)
    };
    match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(Ok(elapsed)) => {
            let ms = elapsed.as_secs_f64() * 1000.0;
            if as_agent {
                probes.agent_ms.push(ms);
            } else {
                probes.console_ms.push(ms);
            }
        }
        Ok(Err(e)) => probes.failed.push(format!("{e:#}")),
        Err(_) => probes
            .failed
            .push(format!("no login within {PROBE_TIMEOUT:?}")),
    }
}

/// Sends the Initials at `rate` per second for `seconds`, round robin over
/// the source addresses, then clears `flooding`.
fn send_initials(
    initials: Vec<Vec<u8>>,
    target: SocketAddr,
    rate: u64,
    seconds: u64,
    sources: u8,
    sent: &AtomicU64,
    flooding: &AtomicBool,
) -> anyhow::Result<()> {
    let result = (|| {
        let sockets = (0..sources)
            .map(|i| {
                let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i));
                let socket = UdpSocket::bind((source, 0))?;
                socket.set_nonblocking(true)?;
                Ok(socket)
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let start = Instant::now();
        let end = Duration::from_secs(seconds);
        let mut next = 0usize;
        while start.elapsed() < end && next < initials.len() {
            let due = ((start.elapsed().as_secs_f64() * rate as f64) as usize).min(initials.len());
            while next < due {
                let socket = &sockets[next % sockets.len()];
                // A full socket buffer drops the packet, as a lossy path would.
                if socket.send_to(&initials[next], target).is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                next += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    })();
    flooding.store(false, Ordering::Relaxed);
    result
}

#[derive(Debug, Default)]
struct StuffCounters {
    connections: AtomicU64,
    refused: AtomicU64,
    streams: AtomicU64,
    bytes: AtomicU64,
}

/// One stuffer: connect, hello, then push data on every stream the relay
/// lets it open, never authenticating; again when closed, until the flood
/// ends.
async fn stuff(
    target: SocketAddr,
    fingerprint: Fingerprint,
    source: Ipv4Addr,
    flooding: Arc<AtomicBool>,
    counters: Arc<StuffCounters>,
) {
    while flooding.load(Ordering::Relaxed) {
        let attempt = stuff_once(target, fingerprint, source, &flooding, &counters);
        if tokio::time::timeout(Duration::from_secs(30), attempt)
            .await
            .map_or(true, |r| r.is_err())
        {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn stuff_once(
    target: SocketAddr,
    fingerprint: Fingerprint,
    source: Ipv4Addr,
    flooding: &AtomicBool,
    counters: &StuffCounters,
) -> anyhow::Result<()> {
    let endpoint = endpoint_on(source)?;
    let (tls, _) = client_config(fingerprint, None, ALPN)?;
    let mut config = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls)?,
    ));
    config.transport_config(Arc::new(transport_config(Duration::from_secs(30), None)));
    let connection = tokio::time::timeout(
        Duration::from_secs(5),
        endpoint.connect_with(config, target, "deskside-relay")?,
    )
    .await
    .context("handshake timed out")??;
    counters.connections.fetch_add(1, Ordering::Relaxed);
    let (send, recv) = connection.open_bi().await?;
    let mut send = FramedSend::new(send, 1 << 16);
    let _recv = FramedRecv::new(recv, 1 << 16);
    send.send_value(&ClientHello::current("deskside-bench-flood stuffer"))
        .await?;
    let chunk = bytes::Bytes::from(vec![0x5au8; 64 << 10]);
    let mut writers = tokio::task::JoinSet::new();
    for index in 0..32 {
        let opened = if index % 2 == 0 {
            tokio::time::timeout(Duration::from_millis(500), connection.open_bi())
                .await
                .ok()
                .and_then(Result::ok)
                .map(|(send, _)| send)
        } else {
            tokio::time::timeout(Duration::from_millis(500), connection.open_uni())
                .await
                .ok()
                .and_then(Result::ok)
        };
        let Some(mut stream) = opened else { continue };
        counters.streams.fetch_add(1, Ordering::Relaxed);
        let chunk = chunk.clone();
        writers.spawn(async move {
            let mut written = 0u64;
            while (written as usize) < STUFF_PER_STREAM {
                match tokio::time::timeout(
                    Duration::from_secs(2),
                    stream.write_chunk(chunk.clone()),
                )
                .await
                {
                    Ok(Ok(())) => written += chunk.len() as u64,
                    _ => break,
                }
            }
            written
        });
    }
    while let Some(written) = writers.join_next().await {
        counters
            .bytes
            .fetch_add(written.unwrap_or(0), Ordering::Relaxed);
    }
    // Hold on until the relay closes us or the flood ends.
    while flooding.load(Ordering::Relaxed) {
        if tokio::time::timeout(Duration::from_millis(200), connection.closed())
            .await
            .is_ok()
        {
            break;
        }
    }
    connection.close(0u32.into(), b"stuffer done");
    Ok(())
}
