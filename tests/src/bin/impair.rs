//! `deskside-impair`: a userspace UDP impairment proxy (a netem stand-in)
//! for trying deskside over a bad network on one machine.
//!
//! ```text
//! deskside-impair --upstream 127.0.0.1:4433 --delay 40ms --jitter 5ms \
//!     --loss 1% --rate 20mbit --queue 256k
//! {"type":"ready","listen":"127.0.0.1:40123","upstream":"127.0.0.1:4433"}
//! ```
//!
//! Point the agent at the `listen` address instead of the relay. The shape
//! applies to both directions, so a round trip gets the delay twice. Stops on
//! Ctrl-C or SIGTERM and prints its counters as a `{"type":"stats",…}` line.
//! All logic lives in `deskside_tests::impair`; this file only parses flags.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use deskside_tests::impair::units::{parse_duration, parse_fraction, parse_rate, parse_size};
use deskside_tests::impair::{ImpairProxy, Impairment, LinkShape, ProxyOptions};
use serde_json::{json, Value};

/// Forwards UDP datagrams to an upstream server while delaying, dropping,
/// rate-limiting or reordering them, per direction like netem.
#[derive(Debug, Parser)]
#[command(name = "deskside-impair", version)]
struct Args {
    /// The real server to forward to, e.g. the relay's 127.0.0.1:4433.
    #[arg(long)]
    upstream: SocketAddr,
    /// Address to listen on; port 0 picks a free one (see the ready line).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// One-way delay per direction: 40ms, 1.5s, 250us.
    #[arg(long, value_parser = parse_duration, default_value = "0")]
    delay: Duration,
    /// Uniform jitter around the delay (never reorders by itself): 5ms.
    #[arg(long, value_parser = parse_duration, default_value = "0")]
    jitter: Duration,
    /// Independent random loss per direction: 0.01 or 1%.
    #[arg(long, value_parser = parse_fraction, default_value = "0")]
    loss: f64,
    /// Rate limit per direction in bits per second: 20mbit, 500kbit.
    /// Unlimited if absent.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<u64>,
    /// Queue in front of the rate limit, tail-dropping: 256k, 1m, 64000.
    #[arg(long, value_parser = parse_size, default_value = "256k")]
    queue: usize,
    /// Probability that a packet is held back and sent after the next one.
    #[arg(long, value_parser = parse_fraction, default_value = "0")]
    reorder: f64,
    /// Drop everything in these directions ("UDP blocked").
    #[arg(long, value_enum)]
    blackout: Option<Blackout>,
    /// Seed for loss, jitter and reordering, for repeatable runs.
    #[arg(long)]
    seed: Option<u64>,
    /// Also print a stats line this often: 1s, 500ms.
    #[arg(long, value_parser = parse_duration)]
    stats_interval: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Blackout {
    /// Client → upstream.
    Up,
    /// Upstream → client.
    Down,
    /// Both ways.
    Both,
}

impl Args {
    /// The validated impairment the flags describe.
    fn impairment(&self) -> anyhow::Result<Impairment> {
        let shape = LinkShape {
            delay: self.delay,
            jitter: self.jitter,
            loss: self.loss,
            rate_bps: self.rate,
            queue_bytes: self.queue,
            reorder: self.reorder,
            blackout: false,
        };
        let mut impairment = Impairment::symmetric(shape);
        impairment.up.blackout = matches!(self.blackout, Some(Blackout::Up | Blackout::Both));
        impairment.down.blackout = matches!(self.blackout, Some(Blackout::Down | Blackout::Both));
        impairment.seed = self.seed;
        impairment.validate().context("check the flags")?;
        Ok(impairment)
    }
}

/// Prints one JSON object per line with `"type"` first, for people reading
/// along. Nobody reading stdout any more (a closed pipe) is not a reason to
/// stop forwarding packets, so write errors are ignored.
fn emit(kind: &str, fields: &Value) {
    let mut line = format!("{{\"type\":{}", json!(kind));
    if let Value::Object(fields) = fields {
        for (key, value) in fields {
            line.push_str(&format!(",{}:{value}", json!(key)));
        }
    }
    line.push('}');
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
}

async fn run(args: Args) -> anyhow::Result<()> {
    let impairment = args.impairment()?;
    let options = ProxyOptions {
        listen: args.listen,
        ..ProxyOptions::default()
    };
    let proxy = ImpairProxy::spawn_with(args.upstream, impairment, options)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; pick another --listen address",
                args.listen
            )
        })?;
    emit(
        "ready",
        &json!({
            "listen": proxy.local_addr().to_string(),
            "upstream": proxy.upstream().to_string(),
        }),
    );

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    let mut ticker = args.stats_interval.map(tokio::time::interval);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = async { ticker.as_mut().expect("guarded").tick().await }, if ticker.is_some() => {
                emit("stats", &proxy.stats().to_json());
            }
        }
    }
    emit("stats", &proxy.stats().to_json());
    proxy.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("deskside-impair: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
