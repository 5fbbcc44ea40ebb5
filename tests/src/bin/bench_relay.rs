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

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use clap::Parser;
use deskside_net::tls::{pinned_key_client_config, pinned_key_server_config};
use deskside_net::tunnel::{SessionConfig, SessionConn, SESSION_ALPN, SESSION_SERVER_NAME};
use deskside_net::Identity;
use deskside_protocol::agent::{AgentToRelay, RelayToAgent};
use deskside_protocol::session::Capabilities;
use deskside_protocol::Fingerprint;
use deskside_tests::bin;
use deskside_tests::peers::{handshake, open_session, parties};

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

/// The relay process, killed when dropped.
struct RelayProcess {
    child: Child,
    addr: String,
    fingerprint: Fingerprint,
    admin_token: String,
    _dir: tempfile::TempDir,
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_relay() -> anyhow::Result<RelayProcess> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("relay-data");
    let mut child = Command::new(bin("deskside-relay"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start deskside-relay (build it first: cargo build --release --workspace --bins)")?;
    let stdout = child.stdout.take().context("relay stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let ready: serde_json::Value =
        serde_json::from_str(&line).with_context(|| format!("ready line {line:?}"))?;
    let addr = ready["listen"].as_str().context("listen")?.to_owned();
    let fingerprint: Fingerprint = ready["fingerprint"]
        .as_str()
        .context("fingerprint")?
        .parse()
        .map_err(|e| anyhow::anyhow!("fingerprint: {e:?}"))?;
    let admin_token = std::fs::read_to_string(data.join("admin-token"))?
        .trim()
        .to_owned();
    Ok(RelayProcess {
        child,
        addr,
        fingerprint,
        admin_token,
        _dir: dir,
    })
}

/// User + system CPU seconds of process `pid` so far.
fn process_cpu(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("/proc stat format")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; 12 and 13 here.
    let ticks: u64 = fields.get(11).context("utime")?.parse::<u64>()?
        + fields.get(12).context("stime")?.parse::<u64>()?;
    Ok(ticks as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    // `getconf CLK_TCK`: 100 on every Linux this runs on; read it to be sure.
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
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
    let relay = start_relay()?;
    let pid = relay.child.id();
    let mut parties = parties(&relay.addr, relay.fingerprint, &relay.admin_token).await;
    let (opened, request) = open_session(&mut parties).await;
    let (console, agent, _carriers) = handshake(&parties, &opened, &request).await;
    let (console, agent): (SessionConn, SessionConn) = (console?, agent?);
    parties
        .agent
        .send()
        .send(&AgentToRelay::SessionConsent {
            session_id: request.session_id,
            granted: Some(Capabilities::VIEW),
            outcome: "accepted".to_owned(),
        })
        .await?;
    match parties.agent.agent_message().await {
        RelayToAgent::ConsentRecorded { .. } => {}
        other => bail!("expected ConsentRecorded, got {other:?}"),
    }
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
        let cpu_before = process_cpu(pid)?;
        let relayed = transfer(&agent.connection, &console.connection, bytes).await?;
        let relay_cpu = process_cpu(pid)? - cpu_before;
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
