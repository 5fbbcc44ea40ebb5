//! Help-request benchmark: how many help requests, each with a real quick
//! check snapshot of this machine, the real `deskside-relay` accepts per
//! second, and how large one is on the wire.
//!
//! Starts the relay, enrolls `--devices` raw devices, collects one local
//! snapshot (the agent's own probes, no relay path), then sends
//! `--requests` requests the way `deskside-agent help` does: each on a
//! connection of its own (handshake, `HelpRequest`, wait for
//! `HelpRequestStored`), `--concurrency` at a time. Checks the relay lists
//! exactly that many, and reports requests per second, the relay's CPU per
//! request and the size of one request on the wire.
//!
//! With `--webhook`, the relay also delivers every request to a local
//! webhook receiver (`deskside_tests::ticketing::FakeWebhook`, which checks
//! each signature) through its ticketing outbox, and the benchmark reports
//! how fast the outbox delivered them.
//!
//! Usage: `target/release/deskside-bench-help-requests --requests 500 [--webhook]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use deskside_console::client::Client;
use deskside_net::Identity;
use deskside_protocol::agent::{AgentToRelay, RelayToAgent};
use deskside_protocol::console::{ConsoleRequest, ConsoleResponse};
use deskside_protocol::request::{Answers, HelpRequest};
use deskside_tests::bench::{cpu_ticks, enroll_raw_devices, start_relay, CLOCK_TICKS_PER_SEC};

#[derive(Debug, Parser)]
struct Args {
    /// Devices sending requests.
    #[arg(long, default_value_t = 20)]
    devices: usize,
    /// Requests in all.
    #[arg(long, default_value_t = 500)]
    requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Also deliver every request to a local webhook receiver through the
    /// relay's ticketing outbox, and time it.
    #[arg(long)]
    webhook: bool,
}

fn options(
    relay: &str,
    fingerprint: deskside_protocol::Fingerprint,
    identity: Identity,
) -> deskside_net::transport::ConnectOptions {
    deskside_net::transport::ConnectOptions {
        relay: relay.to_owned(),
        fingerprint,
        identity: Some(identity),
        idle_timeout: Duration::from_secs(10),
        keep_alive: None,
        software: "bench-help-requests".to_owned(),
    }
}

fn request(i: usize, snapshot: &[u8]) -> HelpRequest {
    HelpRequest {
        client_id: format!("{i:032x}"),
        created_ms: 1_700_000_000_000,
        answers: Answers {
            summary: "Video calls freeze every few minutes since this morning; the VPN drops too."
                .to_owned(),
            since: "this morning".to_owned(),
            pattern: "intermittent".to_owned(),
            apps: vec!["video".to_owned(), "vpn".to_owned()],
            urgency: "blocked".to_owned(),
            impact: "me".to_owned(),
            contact: "chat, or +33 6 00 00 00 00 before noon".to_owned(),
            lang: "en".to_owned(),
        },
        snapshot_json: Some(snapshot.to_vec()),
        failures: Vec::new(),
    }
}

async fn bench(
    args: &Args,
    webhook: Option<&deskside_tests::ticketing::FakeWebhook>,
) -> anyhow::Result<()> {
    let policy = deskside_diag::policy::Policy::default();
    let mut collect_options = deskside_agent::diag::options_for(&policy);
    collect_options.path.throughput = false;
    let collected = deskside_agent::diag::collect::run(None, &collect_options, &|_| {}).await;
    let snapshot = serde_json::to_vec(&collected.snapshot)?;
    let one = request(0, &snapshot);
    let wire = deskside_protocol::encode_message(&AgentToRelay::HelpRequest(one))?.len() + 4;
    println!(
        "one request: snapshot {} bytes of JSON; on the wire {} bytes (frame with its 4-byte length)",
        snapshot.len(),
        wire
    );

    let dir = tempfile::tempdir()?;
    let data = dir.path().join("relay");
    let relay = start_relay(&data, 0)?;
    let pid = relay.child.id();
    let admin = std::fs::read_to_string(data.join("admin-token"))?
        .trim()
        .to_owned();
    let mut client = Client::connect(&relay.addr, relay.fingerprint, &admin).await?;
    let identities = Arc::new(
        enroll_raw_devices(
            &relay.addr,
            relay.fingerprint,
            &mut client,
            args.devices,
            "bench-help-requests",
        )
        .await?,
    );
    let endpoint = deskside_net::transport::client_endpoint(
        deskside_net::transport::resolve(&relay.addr).await?,
    )?;
    let snapshot = Arc::new(snapshot);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ticks = cpu_ticks(pid)?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (identities, snapshot, next, endpoint) = (
            Arc::clone(&identities),
            Arc::clone(&snapshot),
            Arc::clone(&next),
            endpoint.clone(),
        );
        let (addr, fingerprint, total) = (relay.addr.clone(), relay.fingerprint, args.requests);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<(), anyhow::Error>(());
                }
                let identity = identities[i % identities.len()].clone();
                let mut connected =
                    deskside_net::connect(&endpoint, &options(&addr, fingerprint, identity))
                        .await?;
                connected
                    .send
                    .send(&AgentToRelay::HelpRequest(request(i, &snapshot)))
                    .await?;
                match connected.recv.recv::<RelayToAgent>().await? {
                    Some(RelayToAgent::HelpRequestStored { .. }) => {}
                    other => bail!("request {i} not stored: {other:?}"),
                }
                connected.connection.close(0u32.into(), b"sent");
            }
        }));
    }
    for task in tasks {
        task.await.context("sender task")??;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(pid)? - ticks) as f64 / CLOCK_TICKS_PER_SEC;
    let listed = match client
        .request(ConsoleRequest::ListRequests {
            status: None,
            mine: false,
            group: None,
        })
        .await?
    {
        ConsoleResponse::Requests(list) => list.len(),
        other => bail!("unexpected {other:?}"),
    };
    if listed != args.requests {
        bail!(
            "the relay lists {listed} requests, {} were sent",
            args.requests
        );
    }
    println!(
        "{} requests from {} devices, {} at a time, each on its own connection: {:.1} s, {:.0} requests/s, {:.2} ms relay CPU per request; all {listed} listed",
        args.requests,
        identities.len(),
        args.concurrency,
        wall,
        args.requests as f64 / wall,
        cpu * 1e3 / args.requests as f64
    );
    if let Some(webhook) = webhook {
        let deadline = Instant::now() + Duration::from_secs(300);
        let delivered = loop {
            let state = webhook.state();
            if state.deliveries.len() >= args.requests || Instant::now() > deadline {
                break state;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let all = started.elapsed().as_secs_f64();
        if delivered.deliveries.len() != args.requests || delivered.bad_signatures > 0 {
            bail!(
                "the webhook received {} of {} requests ({} bad signatures)",
                delivered.deliveries.len(),
                args.requests,
                delivered.bad_signatures
            );
        }
        println!(
            "webhook: all {} delivered and signature-checked {:.1} s after the first request ({:.1} s after the last was stored): {:.0} deliveries/s overall; {} repeats",
            args.requests,
            all,
            all - wall,
            args.requests as f64 / all,
            delivered.repeats
        );
    }
    client.close().await;
    drop(relay);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The webhook receiver and the relay's [tickets] section, set up before
    // the runtime starts (the relay's extra flags travel in the
    // environment, see `start_relay`).
    let config_dir = tempfile::tempdir()?;
    let webhook = if args.webhook {
        let secret = "bench-webhook-secret-0123456789";
        let webhook = deskside_tests::ticketing::FakeWebhook::start(secret);
        let secret_file = config_dir.path().join("hook.secret");
        deskside_net::files::write_private(&secret_file, secret.as_bytes())?;
        let config = config_dir.path().join("relay.toml");
        std::fs::write(
            &config,
            format!(
                "[tickets]\nretry_initial = \"200ms\"\nretry_max = \"1s\"\n[[tickets.connector]]\ntype = \"webhook\"\nurl = {:?}\nsecret_file = {:?}\n",
                webhook.url(),
                secret_file
            ),
        )?;
        let extra = std::env::var("DESKSIDE_BENCH_RELAY_ARGS").unwrap_or_default();
        std::env::set_var(
            "DESKSIDE_BENCH_RELAY_ARGS",
            format!("{extra} --config {}", config.display()),
        );
        Some(webhook)
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(bench(&args, webhook.as_ref()))
}
