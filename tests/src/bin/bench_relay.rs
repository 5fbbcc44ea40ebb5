//! `deskside-bench-relay`: what forwarding one remote session costs the
//! real relay process, next to a direct quinn connection in the same run.
//!
//! Starts `deskside-relay serve --dev` (the binary beside this one) on
//! loopback, enrolls and attaches a raw agent, logs a raw console in, opens
//! a session, records the consent, runs the end-to-end handshake through
//! the relay, and sends `--mib` MiB on one inner stream from the agent to
//! the console (the direction screen frames take). Then the same transfer
//! on a direct quinn connection between the same two keys, with the same
//! inner transport settings.
//!
//! Reported: throughput of both, and the relay process's CPU time (user +
//! system, from /proc/PID/stat) during the relayed transfer, per Gbit
//! forwarded. The two peers run in this process on two worker threads, so
//! on a 2-core machine they compete with the relay for the cores.
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/deskside-bench-relay [--mib 512] [--runs 3]
//! ```

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use clap::Parser;
use deskside_net::tls::{pinned_key_client_config, pinned_key_server_config};
use deskside_net::tunnel::{SessionConfig, SessionConn, SESSION_ALPN, SESSION_SERVER_NAME};
use deskside_net::Identity;
use deskside_protocol::session::Capabilities;
use deskside_tests::bench::{cpu_ticks, start_relay, CLOCK_TICKS_PER_SEC};
use deskside_tests::peers::{answer_consent, handshake, open_session, parties};

const CHUNK: usize = 64 * 1024;

#[derive(Debug, Parser)]
struct Args {
    /// MiB per transfer.
    #[arg(long, default_value_t = 512)]
    mib: usize,
    /// Relayed and direct transfers, alternating.
    #[arg(long, default_value_t = 3)]
    runs: u32,
}

/// Sends `bytes` on a new uni stream of `from` and reads them all on
/// `to`; returns the seconds it took.
async fn transfer(
    from: &quinn::Connection,
    to: &quinn::Connection,
    bytes: usize,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let send = async {
        let mut stream = from.open_uni().await?;
        let chunk = bytes::Bytes::from(vec![0xa5u8; CHUNK]);
        let mut left = bytes;
        while left > 0 {
            let n = left.min(CHUNK);
            stream.write_chunk(chunk.slice(..n)).await?;
            left -= n;
        }
        stream.finish()?;
        anyhow::Ok(stream)
    };
    let receive = async {
        let mut stream = to.accept_uni().await?;
        let mut total = 0usize;
        let mut buf = vec![0u8; CHUNK];
        while let Some(n) = stream.read(&mut buf).await? {
            total += n;
        }
        anyhow::Ok(total)
    };
    let (sent, received) = tokio::join!(send, receive);
    let _stream = sent?;
    let received = received?;
    if received != bytes {
        bail!("received {received} bytes of {bytes}");
    }
    Ok(start.elapsed().as_secs_f64())
}

/// A direct connection between the two session keys, with the inner
/// transport settings.
async fn direct(
    agent: &Identity,
    console: &Identity,
) -> anyhow::Result<(
    quinn::Endpoint,
    quinn::Endpoint,
    quinn::Connection,
    quinn::Connection,
)> {
    let (tls, _) = pinned_key_server_config(agent, console.key_fingerprint()?, SESSION_ALPN)?;
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
    server.transport_config(Arc::new(SessionConfig::default().transport()));
    let server_endpoint = quinn::Endpoint::server(server, "127.0.0.1:0".parse()?)?;
    let addr = server_endpoint.local_addr()?;
    let (tls, _) = pinned_key_client_config(console, agent.key_fingerprint()?, SESSION_ALPN)?;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut client = quinn::ClientConfig::new(Arc::new(quic));
    client.transport_config(Arc::new(SessionConfig::default().transport()));
    let client_endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    let connecting = client_endpoint.connect_with(client, addr, SESSION_SERVER_NAME)?;
    let accept = async {
        let incoming = server_endpoint.accept().await.context("no connection")?;
        anyhow::Ok(incoming.await?)
    };
    let (console_conn, agent_conn) = tokio::join!(connecting, accept);
    Ok((server_endpoint, client_endpoint, agent_conn?, console_conn?))
}

fn gbit(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 * 8.0 / seconds / 1e9
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bytes = args.mib << 20;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("relay-data");
    let relay = start_relay(&data, 0)?;
    let admin_token = std::fs::read_to_string(data.join("admin-token"))?
        .trim()
        .to_owned();
    let pid = relay.child.id();
    let mut parties = parties(&relay.addr, relay.fingerprint, &admin_token).await;
    let (opened, request) = open_session(&mut parties).await;
    let (console, agent, _carriers) = handshake(&parties, &opened, &request).await;
    let (console, agent): (SessionConn, SessionConn) = (console?, agent?);
    answer_consent(&mut parties, &request, Some(Capabilities::VIEW)).await;
    let (_server, _client, direct_agent, direct_console) =
        direct(&parties.agent_identity, &parties.console_identity).await?;
    // Warm both paths (congestion windows, MTU discovery).
    transfer(&agent.connection, &console.connection, 8 << 20).await?;
    transfer(&direct_agent, &direct_console, 8 << 20).await?;
    println!(
        "{:<8} {:>6} {:>10} {:>12} {:>16}",
        "path", "MiB", "seconds", "Gbit/s", "relay CPU s/Gbit"
    );
    for _ in 0..args.runs {
        let ticks_before = cpu_ticks(pid)?;
        let relayed = transfer(&agent.connection, &console.connection, bytes).await?;
        let relay_cpu = (cpu_ticks(pid)? - ticks_before) as f64 / CLOCK_TICKS_PER_SEC;
        let forwarded_gbit = bytes as f64 * 8.0 / 1e9;
        println!(
            "{:<8} {:>6} {:>10.3} {:>12.3} {:>16.3}",
            "relayed",
            args.mib,
            relayed,
            gbit(bytes, relayed),
            relay_cpu / forwarded_gbit
        );
        let direct_s = transfer(&direct_agent, &direct_console, bytes).await?;
        println!(
            "{:<8} {:>6} {:>10.3} {:>12.3} {:>16}",
            "direct",
            args.mib,
            direct_s,
            gbit(bytes, direct_s),
            "-"
        );
        println!(
            "{}",
            serde_json::json!({
                "type": "relay_bench", "mib": args.mib,
                "relayed_gbit_per_s": gbit(bytes, relayed),
                "direct_gbit_per_s": gbit(bytes, direct_s),
                "relay_cpu_s": relay_cpu,
                "relay_cpu_s_per_gbit": relay_cpu / forwarded_gbit,
                "relay_cores_busy": relay_cpu / relayed,
                "inner_lost_packets": console.connection.stats().path.lost_packets,
            })
        );
    }
    Ok(())
}
