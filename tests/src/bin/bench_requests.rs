//! Per-request cost benchmark: how much relay time does one console request
//! take, measured on the real `deskside-relay` next to this binary? Used to
//! price the technician-token check the relay runs before every request
//! (run this binary from a directory holding an older relay to compare).
//!
//! Starts the relay, enrolls `--devices` raw devices (never attached), then
//! sends `--requests` requests of one kind, pipelined `--window` at a time
//! on one authenticated connection, `--rounds` times. Reports the median
//! round's wall time per request and the relay's CPU time per request.
//!
//! Usage: `target/release/deskside-bench-requests --devices 1000`

use std::time::Instant;

use anyhow::{bail, Context as _};
use clap::Parser;
use deskside_console::client::Client;
use deskside_protocol::console::{ConsoleRequest, ConsoleResponse};
use deskside_tests::bench::{cpu_ticks, enroll_raw_devices, start_relay, CLOCK_TICKS_PER_SEC};

#[derive(Debug, Parser)]
struct Args {
    /// Devices to enroll first (the requests below read them).
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Requests per round.
    #[arg(long, default_value_t = 5000)]
    requests: usize,
    /// Requests in flight at once (like `diag --all`'s default window).
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Rounds; the median is reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

/// Builds the i-th request of a round.
type RequestMaker<'a> = Box<dyn Fn(usize) -> ConsoleRequest + 'a>;

async fn bench(args: &Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("relay");
    let relay = start_relay(&data, 0)?;
    let pid = relay.child.id();
    let admin = std::fs::read_to_string(data.join("admin-token"))?
        .trim()
        .to_owned();
    let mut client = Client::connect(&relay.addr, relay.fingerprint, &admin).await?;
    let started = Instant::now();
    enroll_raw_devices(
        &relay.addr,
        relay.fingerprint,
        &mut client,
        args.devices,
        "bench-requests",
    )
    .await?;
    println!(
        "enrolled {} devices in {:.1} s",
        args.devices,
        started.elapsed().as_secs_f64()
    );
    // What `diag --all` sends per device, answered at once for devices that
    // are offline (all of them here): find the device, refuse.
    let device_ids: Vec<String> = match client.request(ConsoleRequest::ListDevices).await? {
        ConsoleResponse::Devices(devices) => devices.iter().map(|d| d.id.to_string()).collect(),
        other => bail!("unexpected {other:?}"),
    };
    let kinds: [(&str, RequestMaker); 2] = [
        (
            "ShowDevice (by id)",
            Box::new(|i| ConsoleRequest::ShowDevice {
                device: device_ids[i % device_ids.len()].clone(),
            }),
        ),
        (
            "ListDevices (all devices)",
            Box::new(|_| ConsoleRequest::ListDevices),
        ),
    ];
    for (name, make) in &kinds {
        let requests = if name.starts_with("ListDevices") {
            args.requests / 10
        } else {
            args.requests
        };
        let mut walls = Vec::new();
        let mut cpus = Vec::new();
        for _ in 0..args.rounds {
            let batch: Vec<ConsoleRequest> = (0..requests).map(make).collect();
            let ticks = cpu_ticks(pid)?;
            let start = Instant::now();
            let mut failed = 0;
            client
                .request_all(batch, args.window, |_, result| {
                    if result.is_err() {
                        failed += 1;
                    }
                })
                .await?;
            let wall = start.elapsed();
            let cpu = (cpu_ticks(pid)? - ticks) as f64 / CLOCK_TICKS_PER_SEC;
            if failed > 0 {
                bail!("{failed} requests failed");
            }
            walls.push(wall.as_secs_f64() * 1e6 / requests as f64);
            cpus.push(cpu * 1e6 / requests as f64);
        }
        walls.sort_by(f64::total_cmp);
        cpus.sort_by(f64::total_cmp);
        println!(
            "{name}: {requests} requests x {} rounds, window {}: median {:.0} µs wall and {:.0} µs relay CPU per request (rounds: wall {:?} µs)",
            args.rounds,
            args.window,
            walls[walls.len() / 2],
            cpus[cpus.len() / 2],
            walls.iter().map(|w| w.round() as i64).collect::<Vec<_>>(),
        );
    }
    client.close().await;
    drop(relay);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(bench(&args))
}
