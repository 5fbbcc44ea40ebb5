//! Throughput of one end-to-end session connection through a forwarding
//! relay on loopback, against a direct quinn connection in the same run.
//!
//! ```text
//! cargo run --release -p deskside-net --example tunnel_bench [MiB]
//! ```
//!
//! Console, agent and relay each run a single-threaded tokio runtime on
//! their own OS thread, standing in for three processes. The agent sends
//! `MiB` (default 256) on one unidirectional stream to the console (the
//! direction screen frames take). CPU time per role is the thread's
//! on-CPU time from `/proc/<pid>/task/<tid>/schedstat` (nanoseconds, Linux
//! only) over the transfer. Prints one JSON object per line. With
//! `NO_DATAGRAMS=1` the outer connections refuse datagrams, so the session
//! packets take the outer stream fallback.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use deskside_net::tls::{
    client_config, pinned_key_client_config, pinned_key_server_config, Identity, RELAY_SERVER_NAME,
};
use deskside_net::transport::{transport_config, ALPN};
use deskside_net::tunnel::{
    accept_session, connect_session, packet_link, tune_outer_transport, Carrier, PacketSender,
    SessionConfig, TunnelSocket, DEFAULT_QUEUE_PACKETS, SESSION_ALPN, SESSION_SERVER_NAME,
};
use deskside_protocol::{Fingerprint, SessionId};

const SESSION: SessionId = SessionId(42);
const CHUNK: usize = 64 << 10;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let mib: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 256,
    };
    let bytes = mib << 20;
    let technician = Identity::generate(&["technician"])?;
    let agent = Identity::generate(&["deskside-agent"])?;

    // Direct: agent serves, console connects, same inner TLS and transport.
    {
        let (addr_tx, addr_rx) = std_mpsc::channel();
        let (agent_thread, agent_tid) = {
            let (agent, tech_key) = (agent.clone(), technician.key_fingerprint()?);
            role("agent", move || {
                direct_agent(agent, tech_key, bytes, addr_tx)
            })
        };
        let addr = addr_rx.recv()?;
        let tids = [("agent", agent_tid)];
        let (console_thread, _) = {
            let (technician, agent_key) = (technician.clone(), agent.key_fingerprint()?);
            role("console", move || {
                direct_console(technician, agent_key, addr, bytes, tids)
            })
        };
        let report = join(console_thread)?;
        join(agent_thread)?;
        println!("{{\"type\":\"direct\",\"mib\":{mib},{report}}}");
    }

    // Through the relay.
    {
        let (relay_tx, relay_rx) = std_mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let (relay_thread, relay_tid) = role("relay", move || relay(relay_tx, stop_rx));
        let (relay_addr, relay_pin) = relay_rx.recv()?;
        let (agent_thread, agent_tid) = {
            let (agent, tech_key) = (agent.clone(), technician.key_fingerprint()?);
            role("agent", move || {
                tunnel_agent(agent, tech_key, relay_addr, relay_pin, bytes)
            })
        };
        let tids = [("relay", relay_tid), ("agent", agent_tid)];
        let (console_thread, _) = {
            let (technician, agent_key) = (technician.clone(), agent.key_fingerprint()?);
            role("console", move || {
                tunnel_console(technician, agent_key, relay_addr, relay_pin, bytes, tids)
            })
        };
        let report = join(console_thread)?;
        join(agent_thread)?;
        let _ = stop_tx.send(());
        let forwarded = join(relay_thread)?;
        println!("{{\"type\":\"tunnel\",\"mib\":{mib},{report},{forwarded}}}");
    }
    Ok(())
}

/// Runs `f` in a single-threaded runtime on a new thread; returns its handle
/// and its kernel thread id.
fn role<F, Fut, T>(name: &str, f: F) -> (std::thread::JoinHandle<Result<T, Error>>, u32)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, Error>>,
    T: Send + 'static,
{
    let (tid_tx, tid_rx) = std_mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = tid_tx.send(thread_id());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(f())
        })
        .expect("the benchmark needs three threads");
    let tid = tid_rx.recv().unwrap_or(0);
    (handle, tid)
}

fn join<T>(handle: std::thread::JoinHandle<Result<T, Error>>) -> Result<T, Error> {
    handle
        .join()
        .map_err(|_| Error::from("a benchmark thread panicked"))?
}

fn thread_id() -> u32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}

/// On-CPU nanoseconds of a thread of this process.
fn cpu_ns(tid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn own_cpu_ns() -> u64 {
    cpu_ns(thread_id())
}

/// Reads `bytes` from the first uni stream of `conn`, timing it and the CPU
/// of `others` and of this thread.
async fn receive<const N: usize>(
    conn: &quinn::Connection,
    bytes: usize,
    others: [(&str, u32); N],
) -> Result<String, Error> {
    let before: Vec<u64> = others.iter().map(|(_, t)| cpu_ns(*t)).collect();
    let own_before = own_cpu_ns();
    let start = Instant::now();
    let mut recv = conn.accept_uni().await?;
    let mut total = 0usize;
    let mut buf = vec![0u8; CHUNK];
    while let Some(n) = recv.read(&mut buf).await? {
        total += n;
    }
    let elapsed = start.elapsed();
    if total != bytes {
        return Err(format!("received {total} bytes, expected {bytes}").into());
    }
    let mut report = format!(
        "\"seconds\":{:.3},\"gbit_per_s\":{:.3},\"console_cpu_s\":{:.3}",
        elapsed.as_secs_f64(),
        (bytes as f64 * 8.0) / elapsed.as_secs_f64() / 1e9,
        (own_cpu_ns() - own_before) as f64 / 1e9
    );
    for ((name, tid), before) in others.iter().zip(before) {
        report.push_str(&format!(
            ",\"{name}_cpu_s\":{:.3}",
            (cpu_ns(*tid) - before) as f64 / 1e9
        ));
    }
    let stats = conn.stats();
    report.push_str(&format!(
        ",\"inner_lost_packets\":{},\"inner_mtu\":{},\"inner_rtt_us\":{}",
        stats.path.lost_packets,
        stats.path.current_mtu,
        stats.path.rtt.as_micros()
    ));
    conn.close(0u32.into(), b"done");
    Ok(report)
}

async fn send(conn: &quinn::Connection, bytes: usize) -> Result<(), Error> {
    let mut send = conn.open_uni().await?;
    let chunk = bytes::Bytes::from(vec![0xa5u8; CHUNK]);
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK);
        send.write_chunk(chunk.slice(..n)).await?;
        left -= n;
    }
    send.finish()?;
    // Wait for the console to close once it has everything.
    let _ = conn.closed().await;
    Ok(())
}

async fn direct_agent(
    agent: Identity,
    tech_key: Fingerprint,
    bytes: usize,
    addr_tx: std_mpsc::Sender<SocketAddr>,
) -> Result<(), Error> {
    let (tls, _) = pinned_key_server_config(&agent, tech_key, SESSION_ALPN)?;
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
    server.transport_config(Arc::new(SessionConfig::default().transport()));
    let endpoint = quinn::Endpoint::server(server, "127.0.0.1:0".parse()?)?;
    addr_tx.send(endpoint.local_addr()?)?;
    let conn = endpoint.accept().await.ok_or("endpoint closed")?.await?;
    send(&conn, bytes).await
}

async fn direct_console(
    technician: Identity,
    agent_key: Fingerprint,
    addr: SocketAddr,
    bytes: usize,
    others: [(&str, u32); 1],
) -> Result<String, Error> {
    let (tls, _) = pinned_key_client_config(&technician, agent_key, SESSION_ALPN)?;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(SessionConfig::default().transport()));
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    let conn = endpoint
        .connect_with(config, addr, SESSION_SERVER_NAME)?
        .await?;
    let report = receive(&conn, bytes, others).await?;
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    Ok(report)
}

fn outer_transport() -> quinn::TransportConfig {
    let mut config = transport_config(Duration::from_secs(12), Some(Duration::from_secs(4)));
    tune_outer_transport(&mut config);
    // `NO_DATAGRAMS=1` measures the stream fallback instead.
    if std::env::var_os("NO_DATAGRAMS").is_some() {
        config.datagram_receive_buffer_size(None);
    }
    config
}

type Routes = Arc<Mutex<HashMap<(SessionId, u8), PacketSender>>>;

/// The forwarding relay: a connection claims `[role][session id]` on a
/// bidirectional stream, then its session packets go to the other role.
async fn relay(
    ready: std_mpsc::Sender<(SocketAddr, Fingerprint)>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<String, Error> {
    let id = Identity::generate(&[RELAY_SERVER_NAME])?;
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(id.server_config(ALPN)?)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
    server.transport_config(Arc::new(outer_transport()));
    let endpoint = quinn::Endpoint::server(server, "127.0.0.1:0".parse()?)?;
    ready.send((endpoint.local_addr()?, id.fingerprint()))?;
    let routes = Routes::default();
    let forwarded = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut connections = tokio::task::JoinSet::new();
    let accept = async {
        while let Some(incoming) = endpoint.accept().await {
            let (routes, forwarded) = (routes.clone(), forwarded.clone());
            connections.spawn(async move {
                let Ok(conn) = incoming.await else { return };
                let Ok((mut send, mut recv)) = conn.accept_bi().await else {
                    return;
                };
                let mut claim = [0u8; 9];
                if recv.read_exact(&mut claim).await.is_err() {
                    return;
                }
                let role = claim[0];
                let mut session = [0u8; 8];
                session.copy_from_slice(&claim[1..]);
                let session = SessionId(u64::from_be_bytes(session));
                let (sender, mut receiver) = packet_link(conn);
                routes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert((session, role), sender);
                let _ = send.write_all(&[1]).await;
                while let Ok(packet) = receiver.recv().await {
                    let peer = routes
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&(packet.session_id(), 1 - role))
                        .cloned();
                    if let Some(peer) = peer {
                        peer.send(packet);
                        forwarded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    };
    tokio::select! {
        _ = accept => {}
        _ = stop => {}
    }
    let dropped: u64 = routes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .map(|s| s.stats().dropped())
        .sum();
    Ok(format!(
        "\"relay_forwarded_packets\":{},\"relay_dropped_packets\":{dropped}",
        forwarded.load(std::sync::atomic::Ordering::Relaxed)
    ))
}

async fn outer(addr: SocketAddr, pin: Fingerprint, role: u8) -> Result<quinn::Connection, Error> {
    let (tls, _) = client_config(pin, None, ALPN)?;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(outer_transport()));
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    let conn = endpoint
        .connect_with(config, addr, RELAY_SERVER_NAME)?
        .await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let mut claim = vec![role];
    claim.extend_from_slice(&SESSION.0.to_be_bytes());
    send.write_all(&claim).await?;
    let mut ack = [0u8; 1];
    recv.read_exact(&mut ack).await?;
    Ok(conn)
}

async fn tunnel_agent(
    agent: Identity,
    tech_key: Fingerprint,
    relay: SocketAddr,
    pin: Fingerprint,
    bytes: usize,
) -> Result<(), Error> {
    let carrier = Carrier::new();
    carrier.attach(outer(relay, pin, 1).await?);
    let (socket, port) = TunnelSocket::pair_ends(DEFAULT_QUEUE_PACKETS);
    let stats = socket.stats();
    let _carried = carrier.carry(SESSION, port)?;
    let session = accept_session(socket, &agent, tech_key, &SessionConfig::default()).await?;
    send(&session.connection, bytes).await?;
    eprintln!(
        "agent tunnel socket: sent {} dropped_outgoing {}\n",
        stats.sent(),
        stats.dropped_outgoing()
    );
    Ok(())
}

async fn tunnel_console(
    technician: Identity,
    agent_key: Fingerprint,
    relay: SocketAddr,
    pin: Fingerprint,
    bytes: usize,
    others: [(&str, u32); 2],
) -> Result<String, Error> {
    let carrier = Carrier::new();
    carrier.attach(outer(relay, pin, 0).await?);
    let (socket, port) = TunnelSocket::pair_ends(DEFAULT_QUEUE_PACKETS);
    let stats = socket.stats();
    let _carried = carrier.carry(SESSION, port)?;
    let session =
        connect_session(socket, &technician, agent_key, &SessionConfig::default()).await?;
    let report = receive(&session.connection, bytes, others).await?;
    // Let the close leave through the tunnel before the carrier goes away,
    // or the agent would wait out its idle timeout.
    session.close(0, b"done").await;
    Ok(format!(
        "{report},\"console_socket_dropped_incoming\":{}",
        stats.dropped_incoming()
    ))
}
