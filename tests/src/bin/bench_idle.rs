//! Idle-agent benchmark: how much does the relay spend holding N idle
//! agents, and how long do they all take to come back after a restart?
//!
//! Starts the real `deskside-relay` binary (next to this one; build with
//! `cargo build --release --workspace --bins`), then N lightweight in-process
//! agents that use the agent's own enrollment and reconnect code. Reports
//! relay RSS per connection, relay CPU while idle, and the time until all N
//! are attached again after the relay is killed and restarted.
//!
//! Usage: `target/release/deskside-bench-idle --agents 1000 --agents 10000`
//!
//! The agents' sockets are bound to distinct loopback addresses (127.1.x.y,
//! all of 127/8 is loopback on Linux) so the relay's per-source limits see
//! a fleet, not one host. `--old-reconnect` makes the agents ignore the
//! relay's reconnection window (the behaviour before it existed) and
//! `--relay PATH` runs another relay build, to compare storms.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use deskside_agent::link::{register, stay_attached, BoxFuture, DiagnosticsSource, Services};
use deskside_agent::state::{LinkState, AGENT_CERT_NAME};
use deskside_console::client::Client;
use deskside_net::Identity;
use deskside_protocol::agent::DeviceInfo;
use deskside_protocol::console::{ConsoleRequest, ConsoleResponse};
use deskside_protocol::token::EnrollToken;
use deskside_tests::bench::{
    cpu_ticks, rss_kib, start_relay, start_relay_program, RelayProc, CLOCK_TICKS_PER_SEC,
};
use tokio::sync::{watch, Semaphore};

#[derive(Debug, Parser)]
struct Args {
    /// Number of agents; repeat for several runs.
    #[arg(long = "agents", default_values_t = [1000usize])]
    agents: Vec<usize>,
    /// Client endpoints (UDP sockets) the agents are spread over.
    #[arg(long, default_value_t = 32)]
    sockets: usize,
    /// Concurrent enrollments and first connections.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Seconds of idle time over which relay CPU is measured.
    #[arg(long, default_value_t = 20)]
    idle_secs: u64,
    /// Also time `deskside diag --all --json` across the N agents (each
    /// answers with a snapshot this machine really took at start).
    #[arg(long)]
    fleet: bool,
    /// Agents reconnect right after losing the relay, ignoring its advised
    /// window (as before the window existed).
    #[arg(long)]
    old_reconnect: bool,
    /// Another relay binary (for example an older build) to run instead of
    /// the one next to this benchmark.
    #[arg(long)]
    relay: Option<std::path::PathBuf>,
    /// Agents park after this many seconds with nothing to do (the relay
    /// then holds a presence entry instead of a QUIC connection); memory is
    /// measured once they had time to. Without it they stay attached.
    #[arg(long)]
    park_after_secs: Option<f64>,
    /// Run the agents in this many child processes of this benchmark
    /// (each has its own file-descriptor limit: a parked agent holds a
    /// socket of its own); 0 runs them in this process.
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Internal: run as a worker for the relay at this address, with
    /// `--worker-fingerprint` and `--worker-token`, printing its counts.
    #[arg(long, hide = true)]
    worker_relay: Option<String>,
    #[arg(long, hide = true)]
    worker_fingerprint: Option<String>,
    #[arg(long, hide = true)]
    worker_token: Option<String>,
    /// Internal: the worker's first loopback source index.
    #[arg(long, hide = true, default_value_t = 0)]
    worker_first_source: usize,
    /// Give up waiting for the agents after the restart after this long.
    #[arg(long, default_value_t = 600)]
    max_wait_secs: u64,
}

/// Starts the relay the arguments name.
fn relay_for(args: &Args, data: &std::path::Path, port: u16) -> anyhow::Result<RelayProc> {
    match &args.relay {
        Some(program) => start_relay_program(program, data, port),
        None => start_relay(data, port),
    }
}

/// A client endpoint on loopback source address number `index` (127.1.x.y).
fn endpoint_on_source(index: usize) -> anyhow::Result<quinn::Endpoint> {
    let ip = std::net::Ipv4Addr::new(127, 1, (index / 250) as u8, (index % 250 + 1) as u8);
    let socket = std::net::UdpSocket::bind((ip, 0))?;
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        quinn::default_runtime().ok_or_else(|| anyhow::anyhow!("no async runtime"))?,
    )?)
}

/// A simulated agent's diagnostics: the same real snapshot every time.
struct CannedDiagnostics(Arc<Vec<u8>>);

impl DiagnosticsSource for CannedDiagnostics {
    fn collect(&self, _throughput: bool) -> BoxFuture<Result<Vec<u8>, String>> {
        let snapshot = Arc::clone(&self.0);
        Box::pin(async move { Ok(snapshot.as_ref().clone()) })
    }
}

async fn wait_count(counters: &Counters, target: usize, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if counters.connected() >= target {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Agents' counts: attachments, failures (failed attempts and lost
/// connections) and agents that gave up, summed over their sources (this
/// process, or each worker).
#[derive(Clone, Default)]
struct Counters {
    sources: Vec<Arc<[AtomicUsize; 3]>>,
}

impl Counters {
    fn add_source(&mut self) -> Arc<[AtomicUsize; 3]> {
        let source = Arc::new([
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        ]);
        self.sources.push(Arc::clone(&source));
        source
    }

    fn sum(&self, index: usize) -> usize {
        self.sources
            .iter()
            .map(|s| s[index].load(Ordering::Relaxed))
            .sum()
    }

    fn connected(&self) -> usize {
        self.sum(0)
    }

    fn failures(&self) -> usize {
        self.sum(1)
    }

    fn gave_up(&self) -> usize {
        self.sum(2)
    }
}

/// Enrolls `n` agents with `token` and keeps them attached (in this
/// process), counting into `counts`; they stop when the returned sender
/// is set.
#[allow(clippy::too_many_arguments)]
async fn run_agents(
    n: usize,
    relay_addr: &str,
    fingerprint: deskside_protocol::Fingerprint,
    token: &EnrollToken,
    args: &Args,
    first_source: usize,
    canned: Option<Arc<dyn DiagnosticsSource>>,
    counts: Arc<[AtomicUsize; 3]>,
) -> anyhow::Result<watch::Sender<bool>> {
    let endpoints = (first_source..first_source + args.sockets)
        .map(endpoint_on_source)
        .collect::<Result<Vec<_>, _>>()?;
    let info = DeviceInfo {
        hostname: "bench".into(),
        os: "bench".into(),
        agent_version: "0".into(),
    };

    // Enroll N identities.
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let endpoint = endpoints[i % endpoints.len()].clone();
        let token = token.clone();
        let info = info.clone();
        let gate = Arc::clone(&gate);
        tasks.spawn(async move {
            let _permit = gate.acquire().await?;
            let identity = Identity::generate(&[AGENT_CERT_NAME])?;
            // Like an installer, retry a few times when the relay is busy.
            let mut retries = 0;
            loop {
                match register(&endpoint, &token, identity.clone(), info.clone()).await {
                    Ok(_) => break,
                    Err(e) if retries < 5 && !e.is_permanent() => {
                        retries += 1;
                        tokio::time::sleep(Duration::from_millis(500 * retries)).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok::<_, anyhow::Error>((identity, retries))
        });
    }
    let mut identities = Vec::with_capacity(n);
    let mut retries = 0;
    while let Some(result) = tasks.join_next().await {
        let (identity, tries) = result??;
        identities.push(identity);
        retries += tries;
    }
    eprintln!(
        "  enrolled {n} agents in {:.1} s ({retries} retries after timeouts)",
        started.elapsed().as_secs_f64()
    );

    // Attach them all and keep them attached.
    let (stop_tx, stop_rx) = watch::channel(false);
    for (i, identity) in identities.into_iter().enumerate() {
        let endpoint = endpoints[i % endpoints.len()].clone();
        let relay_addr = relay_addr.to_owned();
        let counts = Arc::clone(&counts);
        let ignore_reconnect_advice = args.old_reconnect;
        let park_after = args.park_after_secs.map(Duration::from_secs_f64);
        let canned = canned.clone();
        let mut stop = stop_rx.clone();
        let gate = Arc::clone(&gate);
        tokio::spawn(async move {
            // Only the first connection is gated, to keep the start orderly;
            // reconnections after the restart run free, as in the field.
            let permit = std::sync::Mutex::new(gate.acquire_owned().await.ok());
            let publish = |state: LinkState, error: Option<String>| {
                if error.is_some() {
                    counts[1].fetch_add(1, Ordering::Relaxed);
                }
                if state == LinkState::Connected {
                    counts[0].fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut held) = permit.lock() {
                        held.take();
                    }
                }
            };
            let outcome = stay_attached(
                &endpoint,
                &relay_addr,
                fingerprint,
                &identity,
                &mut stop,
                &publish,
                Services {
                    diagnostics: canned,
                    sessions: None,
                    timeline: None,
                    requests: None,
                    ignore_reconnect_advice,
                    park_after,
                },
            )
            .await;
            if outcome.is_err() {
                counts[2].fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    Ok(stop_tx)
}

/// Worker mode: runs `--agents` agents for the relay the hidden flags
/// name and prints `connected failures gave_up` every 100 ms.
async fn worker(args: &Args, relay_addr: &str) -> anyhow::Result<()> {
    let fingerprint = args
        .worker_fingerprint
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("--worker-fingerprint missing"))?
        .parse()?;
    let token = EnrollToken::decode(
        args.worker_token
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("--worker-token missing"))?,
    )?;
    let n = args.agents.first().copied().unwrap_or(0);
    let mut counters = Counters::default();
    let counts = counters.add_source();
    let _stop = run_agents(
        n,
        relay_addr,
        fingerprint,
        &token,
        args,
        args.worker_first_source,
        None,
        counts,
    )
    .await?;
    use std::io::Write as _;
    let mut out = std::io::stdout();
    loop {
        // The parent closed our stdout: it is done.
        if writeln!(
            out,
            "{} {} {}",
            counters.connected(),
            counters.failures(),
            counters.gave_up()
        )
        .and_then(|()| out.flush())
        .is_err()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts `args.workers` worker processes with `n` agents between them;
/// their counts go into `counters`. The children are killed on drop.
fn start_workers(
    n: usize,
    relay: &RelayProc,
    token: &str,
    args: &Args,
    counters: &mut Counters,
) -> anyhow::Result<Vec<ChildGuard>> {
    use std::io::BufRead as _;
    let mut children = Vec::new();
    for worker in 0..args.workers {
        let share = n / args.workers + usize::from(worker < n % args.workers);
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(["--agents", &share.to_string()])
            .args(["--sockets", &args.sockets.to_string()])
            .args(["--concurrency", &args.concurrency.to_string()])
            .args(["--worker-relay", &relay.addr])
            .args(["--worker-fingerprint", &relay.fingerprint.to_string()])
            .args(["--worker-token", token])
            .args([
                "--worker-first-source",
                &(worker * args.sockets).to_string(),
            ])
            .stdout(std::process::Stdio::piped());
        if let Some(after) = args.park_after_secs {
            command.args(["--park-after-secs", &after.to_string()]);
        }
        if args.old_reconnect {
            command.arg("--old-reconnect");
        }
        let mut child = command.spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no worker stdout"))?;
        let counts = counters.add_source();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let values: Vec<usize> = line.split(' ').filter_map(|v| v.parse().ok()).collect();
                if let [connected, failures, gave_up] = values[..] {
                    counts[0].store(connected, Ordering::Relaxed);
                    counts[1].store(failures, Ordering::Relaxed);
                    counts[2].store(gave_up, Ordering::Relaxed);
                }
            }
        });
        children.push(ChildGuard(child));
    }
    Ok(children)
}

/// A worker process, killed when dropped.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn bench(n: usize, args: &Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("relay");
    let mut relay = relay_for(args, &data, 0)?;
    let pid = relay.child.id();
    let admin = std::fs::read_to_string(data.join("admin-token"))?
        .trim()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_base = rss_kib(pid)?;

    let mut console = Client::connect(&relay.addr, relay.fingerprint, &admin).await?;
    // One token for all N: above the default policy limit of 100 uses.
    console
        .request(ConsoleRequest::SetPolicy {
            key: "enroll_token_max_uses".to_owned(),
            value: (n + 1).to_string(),
        })
        .await?;
    let token_text = match console
        .request(ConsoleRequest::CreateEnrollToken {
            // One more for the device whose snapshot `--fleet` answers with.
            uses: u32::try_from(n + 1)?,
            expires_in_secs: 3600,
            group: None,
        })
        .await?
    {
        ConsoleResponse::EnrollToken(issued) => issued.token,
        other => bail!("unexpected answer {other:?}"),
    };
    console.close().await;
    let token = EnrollToken::decode(&token_text)?;

    let target: std::net::SocketAddr = relay.addr.parse()?;

    // One real snapshot of this machine against this relay, which every
    // simulated agent will answer with (in-process agents only).
    let canned: Option<Arc<dyn DiagnosticsSource>> = if args.fleet && args.workers == 0 {
        // An enrolled device, so the snapshot's path measurement is real.
        let identity = Identity::generate(&[AGENT_CERT_NAME])?;
        let info = DeviceInfo {
            hostname: "bench-snapshot".into(),
            os: "bench".into(),
            agent_version: "0".into(),
        };
        register(&endpoint_on_source(0)?, &token, identity.clone(), info).await?;
        let target = deskside_agent::diag::collect::Target {
            relay: relay.addr.clone(),
            fingerprint: relay.fingerprint,
            identity,
        };
        let snapshot = deskside_agent::diag::collect::snapshot(
            Some(&target),
            &deskside_agent::diag::collect::Options::default(),
            &|_| {},
        )
        .await;
        Some(Arc::new(CannedDiagnostics(Arc::new(serde_json::to_vec(
            &snapshot,
        )?))))
    } else {
        None
    };

    let mut counters = Counters::default();
    let mut stop_tx = None;
    let _workers = if args.workers == 0 {
        let counts = counters.add_source();
        stop_tx = Some(
            run_agents(
                n,
                &relay.addr,
                relay.fingerprint,
                &token,
                args,
                0,
                canned,
                counts,
            )
            .await?,
        );
        Vec::new()
    } else {
        start_workers(n, &relay, &token_text, args, &mut counters)?
    };
    let Some(took) = wait_count(&counters, n, Duration::from_secs(600)).await else {
        bail!("only {} of {n} agents attached", counters.connected());
    };
    println!("  attached {n} agents in {:.1} s", took.as_secs_f64());
    // Parking: the quiet period, a second for the check, and up to 10 s
    // until the relay returns the closed connections' memory.
    let settle = 5.0 + args.park_after_secs.map_or(0.0, |after| after + 15.0);
    println!("  sleeping {settle} s so the relay settles (and the agents park, if they do)");
    tokio::time::sleep(Duration::from_secs_f64(settle)).await;

    let rss = rss_kib(pid)?;
    let ticks0 = cpu_ticks(pid)?;
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let ticks1 = cpu_ticks(pid)?;
    let cpu = (ticks1 - ticks0) as f64 / CLOCK_TICKS_PER_SEC / args.idle_secs as f64 * 100.0;
    println!(
        "  relay RSS: {:.1} MiB with {n} agents ({:.1} MiB empty) = {:.1} KiB per connection",
        rss as f64 / 1024.0,
        rss_base as f64 / 1024.0,
        (rss.saturating_sub(rss_base)) as f64 / n as f64
    );
    println!("  relay CPU while idle: {cpu:.1}% of one core (keep-alive every 4 s per agent)");

    if args.fleet {
        fleet_diag(&data, &relay, &admin, n)?;
    }

    // Restart: hard kill, then a new process on the same port and data.
    let port = target.port();
    let before = counters.connected();
    let _ = relay.child.kill();
    let _ = relay.child.wait();
    let killed = Instant::now();
    relay = relay_for(args, &data, port)?;
    let restarted = killed.elapsed();
    let failures_before = counters.failures();
    let relay_ticks0 = cpu_ticks(relay.child.id())?;
    // Agents back every 5 s since the kill.
    let mut curve = Vec::new();
    let took = loop {
        let back = counters.connected() - before;
        if back >= n {
            break Some(killed.elapsed());
        }
        if killed.elapsed() > Duration::from_secs(args.max_wait_secs) {
            break None;
        }
        let step = killed.elapsed().as_secs() / 5;
        if curve.len() as u64 <= step {
            curve.push(back);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let back = counters.connected() - before;
    let relay_cpu = (cpu_ticks(relay.child.id())? - relay_ticks0) as f64 / CLOCK_TICKS_PER_SEC;
    let curve = curve
        .iter()
        .enumerate()
        .map(|(i, back)| format!("{}s:{back}", i * 5))
        .collect::<Vec<_>>()
        .join(" ");
    println!("  reattached over time since the kill (every 5 s): {curve}");
    println!(
        "  failed connection attempts and lost connections during the restart: {}; agents that gave up: {}",
        counters.failures() - failures_before,
        counters.gave_up()
    );
    println!("  relay CPU from its restart until all were back: {relay_cpu:.1} s");
    match took {
        Some(took) => println!(
            "  relay restart: new process ready {:.2} s after the kill; all {n} agents reattached {:.1} s after the kill",
            restarted.as_secs_f64(),
            took.as_secs_f64()
        ),
        None => println!(
            "  relay restart: new process ready {:.2} s after the kill; only {back} of {n} agents reattached within {} s",
            restarted.as_secs_f64(),
            args.max_wait_secs
        ),
    }
    if let (Some(after), Some(_)) = (args.park_after_secs, took) {
        // Every agent was attached at once during the storm: what the
        // relay keeps once they parked again (the allocator may hold on to
        // the storm's peak).
        tokio::time::sleep(Duration::from_secs_f64(after + 15.0)).await;
        let rss = rss_kib(relay.child.id())?;
        println!(
            "  relay RSS {:.0} s after all were back (parked again): {:.1} MiB = {:.1} KiB per agent above the empty relay",
            after + 15.0,
            rss as f64 / 1024.0,
            (rss.saturating_sub(rss_base)) as f64 / n as f64
        );
    }
    if let Some(stop) = stop_tx {
        let _ = stop.send(true);
    }
    drop(relay);
    Ok(())
}

/// Times the real console's `diag --all --json` against the N agents.
fn fleet_diag(
    data: &std::path::Path,
    relay: &RelayProc,
    admin: &str,
    n: usize,
) -> anyhow::Result<()> {
    let console = std::env::current_exe()?.with_file_name("deskside");
    let profile = data.join("bench-profile.json");
    let login = Command::new(&console)
        .arg("--profile")
        .arg(&profile)
        .args([
            "login",
            "--relay",
            &relay.addr,
            "--fingerprint",
            &relay.fingerprint.to_string(),
            "--token",
            admin,
        ])
        .output()?;
    if !login.status.success() {
        bail!(
            "console login failed: {}",
            String::from_utf8_lossy(&login.stderr)
        );
    }
    let started = Instant::now();
    let out = Command::new(&console)
        .arg("--profile")
        .arg(&profile)
        .args(["diag", "--all", "--json"])
        .output()?;
    let took = started.elapsed();
    if !out.status.success() {
        bail!(
            "diag --all failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let snapshots = text
        .lines()
        .filter(|l| l.contains("\"type\":\"diagnostics\""))
        .count();
    let errors = text
        .lines()
        .filter(|l| l.contains("\"type\":\"error\""))
        .count();
    println!(
        "  deskside diag --all --json: {snapshots} snapshots judged and stored, {errors} per-device errors, of {n} devices, in {:.2} s",
        took.as_secs_f64()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(relay) = args.worker_relay.clone() {
        return worker(&args, &relay).await;
    }
    for &n in &args.agents {
        println!("N = {n}");
        bench(n, &args).await?;
    }
    Ok(())
}
