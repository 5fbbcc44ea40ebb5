//! Three-relay benchmark (issue 14): several real `deskside-relay`
//! processes share one PostgreSQL database (a test server started from
//! Debian's packages, as the store tests do), each holding N idle
//! in-process agents (the agent's own enrollment and link code). Reports
//! each relay's memory per agent, the directory's writes per second at
//! steady state (PostgreSQL's own counters: committed transactions and
//! rows inserted, updated or deleted in the database), and, after one relay
//! is killed with SIGKILL, how long its agents take to be attached to the
//! others again.
//!
//! Usage (after `cargo build --release --workspace --bins`):
//! `target/release/deskside-bench-cluster --agents 10000`
//!
//! Every agent knows all the relays (its own first), as an agent enrolled
//! with a multi-relay token does; the agents' sockets are spread over
//! loopback source addresses (127.2.x.y) so the relays' per-source limits
//! see a fleet, not one host.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use deskside_agent::link::{register, stay_attached_any, Services};
use deskside_agent::relays::RelayChoice;
use deskside_agent::state::{LinkState, AGENT_CERT_NAME};
use deskside_console::client::Client;
use deskside_net::Identity;
use deskside_protocol::agent::DeviceInfo;
use deskside_protocol::console::{ConsoleRequest, ConsoleResponse};
use deskside_protocol::token::{EnrollToken, RelayEndpoint};
use deskside_protocol::DeviceId;
use deskside_relay::pg_server::PgServer;
use deskside_tests::bench::{cpu_ticks, relay_program, rss_kib, start_relay_with, RelayProc};
use tokio::sync::{watch, Semaphore};

#[derive(Debug, Parser)]
struct Args {
    /// Idle agents per relay.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Relays sharing the database.
    #[arg(long, default_value_t = 3)]
    relays: usize,
    /// Client endpoints (UDP sockets) per relay's agents.
    #[arg(long, default_value_t = 32)]
    sockets: usize,
    /// Concurrent enrollments and first connections.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Seconds of steady state over which directory writes and relay CPU
    /// are measured.
    #[arg(long, default_value_t = 30)]
    steady_secs: u64,
    /// The relays' --idle-timeout (their directory lease is half of it).
    #[arg(long, default_value = "12s")]
    idle_timeout: String,
    /// Give up waiting for agents after this long.
    #[arg(long, default_value_t = 600)]
    max_wait_secs: u64,
    /// UDP buffer bytes (each way) asked for each client socket, as the
    /// relay asks for its own; 0 keeps the kernel's default (208 KiB). A
    /// real agent has a socket of its own; here hundreds share one, and
    /// with the default their relays' answers overflowed it in a storm.
    #[arg(long, default_value_t = deskside_relay::udp_buffers::DEFAULT_UDP_BUFFER)]
    client_udp_buffer: usize,
    /// Agents park after this many quiet seconds (the agent's default is
    /// 30); without it they stay attached. A parked agent holds a UDP
    /// socket of its own, so this process's file-descriptor limit caps
    /// the agents it can run.
    #[arg(long)]
    park_after_secs: Option<f64>,
}

/// Runs `f` on a thread of its own: the `postgres` client runs its own
/// runtime, which must not start on a thread inside this one.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(f)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// PostgreSQL's counters for the database: committed transactions, and rows
/// inserted + updated + deleted.
fn pg_counters(url: &str) -> anyhow::Result<(i64, i64)> {
    off_runtime(|| {
        let mut client = postgres::Client::connect(url, postgres::NoTls)?;
        let row = client.query_one(
            "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted
             FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )?;
        Ok((row.get(0), row.get(1)))
    })
}

/// Agents per relay id, as the relays' heartbeats wrote them.
fn directory_counts(url: &str, lease: i64) -> anyhow::Result<Vec<(String, u64)>> {
    off_runtime(|| {
        let store = deskside_relay::store::Store::open_url(url)?;
        let now = deskside_tests::cluster::now_secs();
        Ok(store
            .live_relays(now, lease)?
            .into_iter()
            .map(|r| (r.id, r.agents))
            .collect())
    })
}

/// The devices the directory says relay `relay_id` holds.
fn held_by(url: &str, relay_id: &str) -> anyhow::Result<Vec<DeviceId>> {
    off_runtime(|| {
        let mut client = postgres::Client::connect(url, postgres::NoTls)?;
        let rows = client.query(
            "SELECT device_id FROM presence WHERE relay_id = $1",
            &[&relay_id],
        )?;
        Ok(rows
            .iter()
            // The store keeps the id's 64 bits as a signed integer.
            .map(|row| DeviceId(u64::from_ne_bytes(row.get::<_, i64>(0).to_ne_bytes())))
            .collect())
    })
}

/// A client endpoint on loopback source address number `index` (127.2.x.y).
fn endpoint_on_source(index: usize, udp_buffer: usize) -> anyhow::Result<quinn::Endpoint> {
    let ip = std::net::Ipv4Addr::new(
        127,
        2,
        u8::try_from(index / 250).context("too many sockets")?,
        u8::try_from(index % 250 + 1).context("socket index")?,
    );
    let socket = std::net::UdpSocket::bind((ip, 0))?;
    if udp_buffer > 0 {
        let granted = deskside_relay::udp_buffers::apply(&socket, udp_buffer)?;
        for warning in deskside_relay::udp_buffers::warnings(udp_buffer, granted) {
            eprintln!("client socket: {warning}");
        }
    }
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        quinn::default_runtime().context("no async runtime")?,
    )?)
}

/// Prints what the links of `agents` (not attached when they should be)
/// last reported, grouped by state and error, with how long ago.
fn report_stuck(
    agents: impl Iterator<Item = usize>,
    states: &[AtomicU8],
    last_error: &[std::sync::Mutex<Option<String>>],
    last_change: &[AtomicU64],
    clock: Instant,
) {
    let now_ms = clock.elapsed().as_millis() as u64;
    let mut stuck: HashMap<String, (usize, u64, u64)> = HashMap::new();
    for i in agents {
        let error = last_error[i]
            .lock()
            .ok()
            .and_then(|last| last.clone())
            .unwrap_or_else(|| "(no error)".to_owned());
        let state = if states[i].load(Ordering::Relaxed) == 1 {
            "attached (to the dead relay?)"
        } else {
            "connecting"
        };
        let age = now_ms.saturating_sub(last_change[i].load(Ordering::Relaxed)) / 1000;
        let entry = stuck
            .entry(format!("{state}: {error}"))
            .or_insert((0, u64::MAX, 0));
        entry.0 += 1;
        entry.1 = entry.1.min(age);
        entry.2 = entry.2.max(age);
    }
    let mut stuck: Vec<_> = stuck.into_iter().collect();
    stuck.sort_by_key(|(_, (count, _, _))| std::cmp::Reverse(*count));
    for (what, (count, newest, oldest)) in stuck.iter().take(20) {
        println!("  not attached: {count} agents, last change {newest}–{oldest} s ago: {what}");
    }
}

/// One relay of the cluster.
struct Node {
    proc: RelayProc,
    data: PathBuf,
    id: String,
}

fn start_node(dir: &Path, index: usize, url: &str, idle: &str) -> anyhow::Result<Node> {
    let data = dir.join(format!("relay-{index}"));
    if index > 0 {
        deskside_tests::cluster::share_keys(&dir.join("relay-0"), &data);
    }
    let proc = start_relay_with(
        &relay_program()?,
        &data,
        0,
        &[
            "--store".to_owned(),
            url.to_owned(),
            "--idle-timeout".to_owned(),
            idle.to_owned(),
        ],
    )?;
    let id = std::fs::read_to_string(data.join("relay-id"))?
        .trim()
        .to_owned();
    Ok(Node { proc, data, id })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.relays < 2 {
        bail!("--relays must be at least 2 (one is killed)");
    }
    let idle = humantime::parse_duration(&args.idle_timeout)?;
    let lease = i64::try_from(idle.as_secs() / 2)?.max(2);
    let n = args.agents;
    let total = n * args.relays;
    println!(
        "deskside-bench-cluster: {} relays, {n} idle agents each ({total} in all), one PostgreSQL",
        args.relays
    );
    let pg = off_runtime(PgServer::start).context("cannot start the PostgreSQL server")?;
    let url = off_runtime(|| pg.create_database())?;
    let dir = tempfile::tempdir()?;
    let mut nodes = Vec::new();
    for index in 0..args.relays {
        nodes.push(start_node(dir.path(), index, &url, &args.idle_timeout)?);
    }
    let admin = std::fs::read_to_string(nodes[0].data.join("admin-token"))?
        .trim()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_base = nodes
        .iter()
        .map(|node| rss_kib(node.proc.child.id()))
        .collect::<Result<Vec<_>, _>>()?;

    // One enrollment token per relay, issued through that relay.
    let mut tokens = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let mut console = Client::connect(&node.proc.addr, node.proc.fingerprint, &admin).await?;
        if index == 0 {
            console
                .request(ConsoleRequest::SetPolicy {
                    key: "enroll_token_max_uses".to_owned(),
                    value: n.max(1).to_string(),
                })
                .await?;
        }
        let token = match console
            .request(ConsoleRequest::CreateEnrollToken {
                uses: u32::try_from(n)?,
                expires_in_secs: 3600,
                group: None,
            })
            .await?
        {
            ConsoleResponse::EnrollToken(issued) => EnrollToken::decode(&issued.token)?,
            other => bail!("unexpected answer {other:?}"),
        };
        console.close().await;
        tokens.push(token);
    }
    let all: Vec<RelayEndpoint> = nodes
        .iter()
        .map(|node| RelayEndpoint {
            addr: node.proc.addr.clone(),
            fingerprint: node.proc.fingerprint,
        })
        .collect();

    let endpoints = (0..args.sockets * args.relays)
        .map(|index| endpoint_on_source(index, args.client_udp_buffer))
        .collect::<Result<Vec<_>, _>>()?;
    let info = DeviceInfo {
        hostname: "bench".into(),
        os: "bench".into(),
        agent_version: "0".into(),
    };
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let home = i % args.relays;
        let endpoint = endpoints[i % endpoints.len()].clone();
        let token = tokens[home].clone();
        let info = info.clone();
        let gate = Arc::clone(&gate);
        tasks.spawn(async move {
            let _permit = gate.acquire().await?;
            let identity = Identity::generate(&[AGENT_CERT_NAME])?;
            let mut retries = 0;
            let device = loop {
                match register(&endpoint, &token, identity.clone(), info.clone()).await {
                    Ok((device, _)) => break device,
                    Err(e) if retries < 5 && !e.is_permanent() => {
                        retries += 1;
                        tokio::time::sleep(Duration::from_millis(500 * retries)).await;
                    }
                    Err(e) => return Err(anyhow::Error::from(e)),
                }
            };
            Ok::<_, anyhow::Error>((i, device, identity))
        });
    }
    let mut identities = Vec::with_capacity(total);
    while let Some(result) = tasks.join_next().await {
        identities.push(result??);
    }
    identities.sort_by_key(|(i, _, _)| *i);
    let index_of: HashMap<DeviceId, usize> = identities.iter().map(|(i, d, _)| (*d, *i)).collect();
    println!(
        "  enrolled {total} agents in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Attach them, each to its own relay first, and keep them attached.
    let states: Arc<Vec<AtomicU8>> = Arc::new((0..total).map(|_| AtomicU8::new(0)).collect());
    // How many times each agent attached.
    let attaches: Arc<Vec<AtomicU32>> = Arc::new((0..total).map(|_| AtomicU32::new(0)).collect());
    let gave_up = Arc::new(AtomicUsize::new(0));
    // Per agent: the last error its link reported and when (ms since the
    // bench started), so the agents that do not come back can be told
    // apart (retrying and failing, or waiting on something).
    let clock = Instant::now();
    let last_error: Arc<Vec<std::sync::Mutex<Option<String>>>> =
        Arc::new((0..total).map(|_| std::sync::Mutex::new(None)).collect());
    let last_change: Arc<Vec<AtomicU64>> =
        Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    // Attach requests an agent gave up on after
    // `deskside_agent::link::ATTACH_TIMEOUT` without an answer.
    let unanswered = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let attach_started = Instant::now();
    for (i, _, identity) in identities {
        let home = i % args.relays;
        let mut relays = vec![all[home].clone()];
        relays.extend(
            all.iter()
                .enumerate()
                .filter(|(j, _)| *j != home)
                .map(|(_, r)| r.clone()),
        );
        let endpoint = endpoints[i % endpoints.len()].clone();
        let states = Arc::clone(&states);
        let attaches = Arc::clone(&attaches);
        let gave_up = Arc::clone(&gave_up);
        let last_error = Arc::clone(&last_error);
        let last_change = Arc::clone(&last_change);
        let unanswered = Arc::clone(&unanswered);
        let mut stop = stop_rx.clone();
        let gate = Arc::clone(&gate);
        let park_after = args.park_after_secs.map(Duration::from_secs_f64);
        tokio::spawn(async move {
            let permit = std::sync::Mutex::new(gate.acquire_owned().await.ok());
            let publish = |state: LinkState, error: Option<String>| {
                let connected = state == LinkState::Connected;
                last_change[i].store(clock.elapsed().as_millis() as u64, Ordering::Relaxed);
                if error
                    .as_deref()
                    .is_some_and(|e| e.contains("timed out waiting for the peer"))
                {
                    unanswered.fetch_add(1, Ordering::Relaxed);
                }
                if let Ok(mut last) = last_error[i].lock() {
                    *last = error;
                }
                states[i].store(u8::from(connected), Ordering::Relaxed);
                if connected {
                    attaches[i].fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut held) = permit.lock() {
                        held.take();
                    }
                }
            };
            let mut choice = RelayChoice::new(relays);
            let outcome = stay_attached_any(
                &endpoint,
                &mut choice,
                &identity,
                &mut stop,
                &publish,
                Services {
                    diagnostics: None,
                    sessions: None,
                    timeline: None,
                    requests: None,
                    ignore_reconnect_advice: false,
                    park_after,
                },
                &|_| {},
            )
            .await;
            if outcome.is_err() {
                gave_up.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let connected = |filter: &dyn Fn(usize) -> bool| {
        (0..total)
            .filter(|&i| filter(i) && states[i].load(Ordering::Relaxed) == 1)
            .count()
    };
    let deadline = Duration::from_secs(args.max_wait_secs);
    loop {
        let now = connected(&|_| true);
        if now == total {
            break;
        }
        if attach_started.elapsed() > deadline {
            report_stuck(
                (0..total).filter(|&i| states[i].load(Ordering::Relaxed) != 1),
                &states,
                &last_error,
                &last_change,
                clock,
            );
            bail!("only {now} of {total} agents attached within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "  attached {total} agents in {:.1} s",
        attach_started.elapsed().as_secs_f64()
    );
    let settle = 10.0 + args.park_after_secs.map_or(0.0, |after| after + 2.0);
    println!("  settling {settle} s (and parking, if the agents do)");
    tokio::time::sleep(Duration::from_secs_f64(settle)).await;

    // Steady state: memory, CPU, directory writes.
    let counts = directory_counts(&url, lease)?;
    let ticks0 = nodes
        .iter()
        .map(|node| cpu_ticks(node.proc.child.id()))
        .collect::<Result<Vec<_>, _>>()?;
    let (commits0, tuples0) = pg_counters(&url)?;
    let steady = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.steady_secs)).await;
    let (commits1, tuples1) = pg_counters(&url)?;
    let secs = steady.elapsed().as_secs_f64();
    for (index, node) in nodes.iter().enumerate() {
        let pid = node.proc.child.id();
        let rss = rss_kib(pid)?;
        let cpu = (cpu_ticks(pid)? - ticks0[index]) as f64
            / deskside_tests::bench::CLOCK_TICKS_PER_SEC
            / secs
            * 100.0;
        let listed = counts
            .iter()
            .find(|(id, _)| *id == node.id)
            .map_or(0, |(_, agents)| *agents);
        println!(
            "  relay {index}: holds {listed} agents (its directory entry); RSS {:.1} MiB ({:.1} MiB empty) = {:.1} KiB per agent held; CPU {cpu:.1}% of one core",
            rss as f64 / 1024.0,
            rss_base[index] as f64 / 1024.0,
            rss.saturating_sub(rss_base[index]) as f64 / listed.max(1) as f64
        );
    }
    println!(
        "  directory at steady state over {secs:.0} s: {:.1} committed transactions/s, {:.1} rows written/s (PostgreSQL pg_stat_database, whole database)",
        (commits1 - commits0) as f64 / secs,
        (tuples1 - tuples0) as f64 / secs
    );

    // Kill the last relay; the agents it held must come back on the others.
    let node = nodes.pop().context("a relay")?;
    let victim_id = node.id.clone();
    let orphans: Vec<usize> = held_by(&url, &victim_id)?
        .iter()
        .filter_map(|device| index_of.get(device).copied())
        .collect();
    let before: Vec<u32> = orphans
        .iter()
        .map(|&i| attaches[i].load(Ordering::Relaxed))
        .collect();
    let mut proc = node.proc;
    let _ = proc.child.kill();
    let _ = proc.child.wait();
    let unanswered_before = unanswered.load(Ordering::Relaxed);
    let killed = Instant::now();
    let n = orphans.len();
    println!("  killed relay {victim_id}, which held {n} agents");
    let back_count = || {
        orphans
            .iter()
            .zip(&before)
            .filter(|(&i, &seen)| {
                attaches[i].load(Ordering::Relaxed) > seen && states[i].load(Ordering::Relaxed) == 1
            })
            .count()
    };
    let mut curve = Vec::new();
    let mut expired = None;
    let took = loop {
        let back = back_count();
        if back == n {
            break Some(killed.elapsed());
        }
        if expired.is_none()
            && !directory_counts(&url, lease)?
                .iter()
                .any(|(id, _)| *id == victim_id)
        {
            expired = Some(killed.elapsed());
        }
        if killed.elapsed() > deadline {
            break None;
        }
        let step = killed.elapsed().as_secs() / 5;
        if curve.len() as u64 <= step {
            curve.push(back);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let curve = curve
        .iter()
        .enumerate()
        .map(|(i, back)| format!("{}s:{back}", i * 5))
        .collect::<Vec<_>>()
        .join(" ");
    println!("  the dead relay's agents attached elsewhere over time since the kill (every 5 s): {curve}");
    if let Some(expired) = expired {
        println!(
            "  the dead relay left the directory's live relays {:.1} s after the kill (lease {lease} s)",
            expired.as_secs_f64()
        );
    }
    match took {
        Some(took) => println!(
            "  all {n} agents of the killed relay attached to the other relays {:.1} s after the kill",
            took.as_secs_f64()
        ),
        None => println!(
            "  only {} of {n} agents of the killed relay were attached elsewhere {} s after the kill",
            back_count(),
            args.max_wait_secs
        ),
    }
    let not_back = orphans.iter().zip(&before).filter(|(&i, &seen)| {
        attaches[i].load(Ordering::Relaxed) <= seen || states[i].load(Ordering::Relaxed) != 1
    });
    report_stuck(
        not_back.map(|(&i, _)| i),
        &states,
        &last_error,
        &last_change,
        clock,
    );
    tokio::time::sleep(Duration::from_secs(u64::try_from(lease)? + 2)).await;
    for (id, agents) in directory_counts(&url, lease)? {
        println!("  directory afterwards: {id} holds {agents}");
    }
    println!(
        "  attach requests left unanswered for {} s, given up and tried again: {} before the kill, {} after",
        deskside_agent::link::ATTACH_TIMEOUT.as_secs(),
        unanswered_before,
        unanswered.load(Ordering::Relaxed) - unanswered_before
    );
    println!("  agents that gave up: {}", gave_up.load(Ordering::Relaxed));
    let _ = stop_tx.send(true);
    drop(nodes);
    Ok(())
}
