//! `deskside-spy-relay`: the real relay library with its test hooks turned
//! on, for end-to-end tests of the "relay blind" promise.
//!
//! It takes the subset of `deskside-relay serve` flags the test harness
//! uses (`serve --dev --listen ADDR --data-dir DIR --idle-timeout 6s`) and
//! prints the same JSON ready line, so a test can start it in place of the
//! real relay. On top of that:
//!
//! - `--spy-file PATH` appends the bytes of every forwarded session packet
//!   to PATH, so a test can check that no plaintext ever crossed the relay;
//! - `--substitute-keys` hands out the keys of two freshly generated
//!   identities instead of the real device and technician keys (a relay
//!   attacking the end-to-end handshake). Their fingerprints are added to
//!   the ready line as `substituted_device_key` and
//!   `substituted_technician_key`.
//!
//! Never ship this binary: it exists only in the test crate.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use deskside_net::Identity;
use deskside_relay::config::{FileConfig, Overrides};
use deskside_relay::{Relay, RelayConfig, RelayHooks};

/// A deskside relay that records what it forwards (tests only).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the spying relay until SIGINT or SIGTERM; prints the ready line.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Accepted for compatibility with `deskside-relay serve`; the spy
    /// always runs in development mode (loopback, self-signed).
    #[arg(long)]
    dev: bool,
    /// UDP address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// State directory (database, keys).
    #[arg(long)]
    data_dir: PathBuf,
    /// QUIC idle timeout (e.g. 4s).
    #[arg(long, value_parser = humantime::parse_duration)]
    idle_timeout: Option<Duration>,
    /// host:port written into tokens, if not the bound address.
    #[arg(long)]
    public_addr: Option<String>,
    /// Append every forwarded session packet's bytes to this file.
    #[arg(long)]
    spy_file: PathBuf,
    /// Hand out the keys of fresh identities instead of the real ones.
    #[arg(long)]
    substitute_keys: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let Command::Serve(args) = Cli::parse().command;
    let result = tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(serve(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Appends forwarded bytes to the spy file on a thread of its own, so the
/// relay's forwarding never waits for the disk.
fn spy_writer(path: PathBuf) -> anyhow::Result<std::sync::mpsc::Sender<Vec<u8>>> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open the spy file {}", path.display()))?;
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        for bytes in rx {
            if let Err(e) = file.write_all(&bytes) {
                eprintln!("error: cannot append to the spy file: {e}");
                return;
            }
        }
    });
    Ok(tx)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = RelayConfig::resolve(
        FileConfig::default(),
        Overrides {
            dev: true,
            listen: Some(args.listen),
            public_addr: args.public_addr,
            data_dir: Some(args.data_dir),
            idle_timeout: args.idle_timeout,
            metrics_listen: None,
            store: None,
        },
    )?;
    let spy = spy_writer(args.spy_file.clone())?;
    let substitute_keys = if args.substitute_keys {
        let fresh = || -> anyhow::Result<_> {
            Ok(Identity::generate(&["deskside-spy"])?.key_fingerprint()?)
        };
        Some((fresh()?, fresh()?))
    } else {
        None
    };
    config.hooks = RelayHooks {
        on_forward: Some(Arc::new(move |_session, _direction, bytes: &[u8]| {
            let _ = spy.send(bytes.to_vec());
        })),
        substitute_keys,
    };
    let data_dir = config.data_dir.clone();
    let relay = Relay::spawn(config).await?;
    let local = relay
        .local_addr()
        .context("cannot read the bound address")?;
    let mut ready = serde_json::json!({
        "type": "ready",
        "listen": local.to_string(),
        "public_addr": relay.public_addr(),
        "fingerprint": relay.fingerprint().to_string(),
        "data_dir": data_dir.display().to_string(),
        "version": env!("CARGO_PKG_VERSION"),
        "spy_file": args.spy_file.display().to_string(),
    });
    if let (Some((device_key, technician_key)), Some(object)) =
        (substitute_keys, ready.as_object_mut())
    {
        object.insert(
            "substituted_device_key".to_owned(),
            device_key.to_string().into(),
        );
        object.insert(
            "substituted_technician_key".to_owned(),
            technician_key.to_string().into(),
        );
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{ready}").context("cannot write the ready line")?;
    stdout.flush().context("cannot write the ready line")?;
    drop(stdout);

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    relay.shutdown().await;
    Ok(())
}
