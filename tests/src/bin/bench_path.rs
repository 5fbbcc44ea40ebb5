//! Path-measurement benchmark: how long a snapshot takes, and how close the
//! agent's throughput test comes to a known, shaped rate.
//!
//! Starts the real `deskside-relay` (release build next to this binary), the
//! project's userspace impairment proxy in front of it, and the agent's own
//! measurement code in-process. For each rate, the proxy shapes both
//! directions (UDP payload bytes per second, FIFO queue); the agent measures
//! download and upload goodput.
//!
//! Usage: `target/release/deskside-bench-path [--rates 1,10,50,100,200] [--runs 3]`

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use deskside_agent::diag::collect::{self, Target};
use deskside_agent::diag::path::{measure, PathOptions};
use deskside_agent::link::register;
use deskside_agent::state::AGENT_CERT_NAME;
use deskside_console::client::Client;
use deskside_net::transport::client_endpoint;
use deskside_net::Identity;
use deskside_protocol::agent::DeviceInfo;
use deskside_protocol::console::{ConsoleRequest, ConsoleResponse};
use deskside_protocol::token::EnrollToken;
use deskside_protocol::Fingerprint;
use deskside_tests::impair::{ImpairProxy, Impairment, LinkShape};

#[derive(Debug, Parser)]
struct Args {
    /// Shaped rates in Mbit/s.
    #[arg(long, value_delimiter = ',', default_values_t = [1u64, 10, 50, 100, 200])]
    rates: Vec<u64>,
    /// Measurements per rate.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// One-way delay added by the proxy, milliseconds.
    #[arg(long, default_value_t = 10)]
    delay_ms: u64,
    /// Snapshots timed without the throughput test.
    #[arg(long, default_value_t = 5)]
    snapshots: usize,
    /// No proxy: the relay listens on this address and the path is shaped
    /// outside the benchmark (tc tbf between network namespaces, see
    /// tests/bench/kernel-shaped.sh); `--rates` then only labels the rows.
    #[arg(long, value_name = "ADDR")]
    direct: Option<SocketAddr>,
    /// With --direct: start the relay inside this network namespace.
    #[arg(long, requires = "direct")]
    relay_netns: Option<String>,
    /// Prints, for each run, what the proxy received and forwarded in each
    /// 100 ms (Mbit/s) and its queue drops, per direction: whether a low
    /// result is the sender leaving the link idle or the link itself.
    #[arg(long)]
    trace: bool,
}

/// One look at the proxy's counters.
struct ProxySample {
    at: Instant,
    stats: deskside_tests::impair::ProxyStats,
}

/// The proxy's traffic in 100 ms bins: "received/forwarded Mbit/s
/// (drops)" per bin, for one direction.
fn trace_line(samples: &[ProxySample], direction: deskside_tests::impair::Direction) -> String {
    let Some(first) = samples.first() else {
        return String::new();
    };
    let mut bins = Vec::new();
    let mut start = first;
    for sample in samples {
        let span = sample.at.duration_since(start.at).as_secs_f64();
        if span < 0.1 {
            continue;
        }
        let (a, b) = (
            start.stats.direction(direction),
            sample.stats.direction(direction),
        );
        let mbit = |bytes: u64| bytes as f64 * 8.0 / span / 1e6;
        bins.push(format!(
            "{:.0}/{:.0}({})",
            mbit(b.received_bytes - a.received_bytes),
            mbit(b.forwarded_bytes - a.forwarded_bytes),
            b.dropped_queue - a.dropped_queue
        ));
        start = sample;
    }
    bins.join(" ")
}

struct RelayProc(Child);

impl Drop for RelayProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_relay(
    dir: &std::path::Path,
    listen: SocketAddr,
    public: &str,
    netns: Option<&str>,
) -> anyhow::Result<(RelayProc, Fingerprint)> {
    use std::io::BufRead as _;
    let bin = std::env::current_exe()?.with_file_name("deskside-relay");
    if !bin.exists() {
        bail!(
            "{} is missing: run `cargo build --release --workspace --bins`",
            bin.display()
        );
    }
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    // --dev binds loopback only: elsewhere the relay runs as in production,
    // from a configuration file and a certificate made here.
    command
        .args([
            "serve",
            "--listen",
            &listen.to_string(),
            "--public-addr",
            public,
            "--data-dir",
        ])
        .arg(dir);
    if listen.ip().is_loopback() {
        command.arg("--dev");
    } else {
        std::fs::create_dir_all(dir)?;
        let identity = Identity::generate(&["deskside-relay"])?;
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, identity.cert_pem())?;
        deskside_net::files::write_private(&key, identity.key_pem().as_bytes())?;
        let config = dir.join("relay.toml");
        std::fs::write(
            &config,
            format!(
                "cert = {:?}\nkey = {:?}\n",
                cert.display().to_string(),
                key.display().to_string()
            ),
        )?;
        command.arg("--config").arg(&config);
    }
    let mut child = command
        .env(
            "RUST_LOG",
            std::env::var("BENCH_RELAY_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create("/tmp/bench-path-relay.log")?)
        .spawn()?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    let ready: serde_json::Value = serde_json::from_str(&line)?;
    let fingerprint = ready["fingerprint"]
        .as_str()
        .context("fingerprint")?
        .parse()?;
    Ok((RelayProc(child), fingerprint))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The agent's own debug lines (stop times, windows) with RUST_LOG=debug.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let dir = tempfile::tempdir()?;
    let (proxy, listen, public) = match args.direct {
        Some(addr) => (None, addr, addr.to_string()),
        None => {
            let port = std::net::UdpSocket::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let upstream: SocketAddr = ([127, 0, 0, 1], port).into();
            let proxy = ImpairProxy::spawn(upstream, Impairment::default()).await?;
            let public = proxy.local_addr().to_string();
            (Some(proxy), upstream, public)
        }
    };
    let (_relay, fingerprint) = start_relay(
        &dir.path().join("relay"),
        listen,
        &public,
        args.relay_netns.as_deref(),
    )?;
    // The relay is ready once it printed its ready line; the admin token
    // file is written before that.
    let admin = std::fs::read_to_string(dir.path().join("relay/admin-token"))?
        .trim()
        .to_owned();

    // Enroll one in-process agent.
    let mut console = Client::connect(&public, fingerprint, &admin).await?;
    let token = match console
        .request(ConsoleRequest::CreateEnrollToken {
            uses: 1,
            expires_in_secs: 600,
            group: None,
        })
        .await?
    {
        ConsoleResponse::EnrollToken(issued) => EnrollToken::decode(&issued.token)?,
        other => bail!("unexpected {other:?}"),
    };
    console.close().await;
    let identity = Identity::generate(&[AGENT_CERT_NAME])?;
    let endpoint = client_endpoint(public.parse()?)?;
    let info = DeviceInfo {
        hostname: "bench".into(),
        os: "bench".into(),
        agent_version: "0".into(),
    };
    register(&endpoint, &token, identity.clone(), info).await?;

    // Snapshot time without the throughput test, unshaped path.
    let target = Target {
        relay: public.clone(),
        fingerprint,
        identity: identity.clone(),
    };
    let mut times = Vec::new();
    for _ in 0..args.snapshots {
        let started = Instant::now();
        let snapshot =
            collect::snapshot(Some(&target), &collect::Options::default(), &|_| {}).await;
        times.push(started.elapsed().as_secs_f64());
        if snapshot.path.value().map(|p| p.udp_ok) != Some(true) {
            bail!("the snapshot did not reach the relay: {:?}", snapshot.path);
        }
    }
    if !times.is_empty() {
        println!(
            "snapshot without throughput test: median {:.2} s, max {:.2} s over {} runs",
            median(&mut times.clone()),
            times.iter().cloned().fold(0.0, f64::max),
            times.len()
        );
    }

    match &proxy {
        Some(_) => println!(
            "throughput through the impairment proxy ({} ms each way, FIFO queue = 2 x BDP + 64 KB):",
            args.delay_ms
        ),
        None => println!("throughput on the externally shaped path to {public}:"),
    }
    println!(
        "{:>10} {:>12} {:>8} {:>12} {:>8} {:>10}",
        "shaped", "download", "error", "upload", "error", "test time"
    );
    for &rate in &args.rates {
        let bps = rate * 1_000_000;
        let bdp = (bps as f64 / 8.0 * 2.0 * args.delay_ms as f64 / 1000.0) as usize;
        if let Some(proxy) = &proxy {
            proxy.set(Impairment::symmetric(
                LinkShape::default()
                    .delay(Duration::from_millis(args.delay_ms))
                    .rate_bps(bps)
                    .queue_bytes(2 * bdp + 64 * 1024),
            ));
        }
        let mut downs = Vec::new();
        let mut ups = Vec::new();
        let mut took = Vec::new();
        for _ in 0..args.runs {
            let options = PathOptions {
                throughput: true,
                ..PathOptions::default()
            };
            let started = Instant::now();
            let measured = measure(&public, fingerprint, identity.clone(), &options);
            tokio::pin!(measured);
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let report = loop {
                tokio::select! {
                    report = &mut measured => break report,
                    _ = tick.tick(), if args.trace => if let Some(proxy) = &proxy {
                        samples.push(ProxySample { at: Instant::now(), stats: proxy.stats() });
                    },
                }
            };
            took.push(started.elapsed().as_secs_f64());
            if args.trace {
                use deskside_tests::impair::Direction;
                eprintln!("    down (relay→agent) per 100 ms, received/forwarded Mbit/s (queue drops): {}", trace_line(&samples, Direction::Down));
                eprintln!(
                    "    up (agent→relay): {}",
                    trace_line(&samples, Direction::Up)
                );
            }
            // Each run on its own line (stderr), with where its time went:
            // the table below only shows medians.
            let phases: Vec<String> = report
                .phases
                .iter()
                .map(|(name, at)| format!("{name} {:.0}", at.as_secs_f64() * 1000.0))
                .collect();
            eprintln!(
                "  {rate} Mbit/s: down {:?} up {:?} Mbit/s, {:.2} s; phases end at (ms): {}",
                report
                    .path
                    .download
                    .value()
                    .map(|t| (t.mbps * 100.0).round() / 100.0),
                report
                    .path
                    .upload
                    .value()
                    .map(|t| (t.mbps * 100.0).round() / 100.0),
                took.last().copied().unwrap_or_default(),
                phases.join(", ")
            );
            let down = report.path.download.value().map(|t| t.mbps);
            let up = report.path.upload.value().map(|t| t.mbps);
            match (down, up) {
                (Some(d), Some(u)) => {
                    downs.push(d);
                    ups.push(u);
                }
                _ => bail!(
                    "rate {rate}: throughput not measured: {:?} / {:?}",
                    report.path.download,
                    report.path.upload
                ),
            }
        }
        let (d, u) = (median(&mut downs), median(&mut ups));
        println!(
            "{:>7} Mb {:>9.2} Mb {:>+7.1}% {:>9.2} Mb {:>+7.1}% {:>9.2} s",
            rate,
            d,
            (d - rate as f64) / rate as f64 * 100.0,
            u,
            (u - rate as f64) / rate as f64 * 100.0,
            median(&mut took)
        );
    }
    if let Some(proxy) = &proxy {
        println!("proxy stats: {}", proxy.stats().to_json());
    }
    Ok(())
}
