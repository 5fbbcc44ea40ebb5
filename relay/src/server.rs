//! The relay server: one QUIC endpoint, one task per connection.
//!
//! Structured like iroh-relay: [`Relay::spawn`] starts the endpoint and the
//! accept loop, [`Relay::shutdown`] stops them, and no task outlives the
//! handle. Every connection runs in its own tracing span and must pass the
//! hello exchange and authentication before anything else is read from it;
//! any bad frame closes that one connection with a logged reason.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use deskside_net::files::write_private;
use deskside_net::transport::transport_config;
use deskside_net::tunnel::tune_outer_transport;
use deskside_net::ALPN;
use deskside_protocol::{Fingerprint, SessionId};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::admin_token::ADMIN_TOKEN_FILE;
use crate::admission::{Decision, Ticket};
use crate::clock::now_secs;
use crate::config::RelayConfig;
use crate::conn::{
    accept_control, is_auth_failure, peer_public_key, pre_auth_budget, pre_auth_guard, End,
    PreAuth, CLOSE_PROTOCOL_VIOLATION, CLOSE_REFUSED, CLOSE_SHUTDOWN,
};
use crate::metrics::{AuthFailure, FirstPacket, Handshake};
use crate::presence::Presence;
use crate::secrets::{hash_secret, new_technician_token};
use crate::sessions::Router;
use crate::shared::Shared;
use crate::store::{SessionParty, Store, SYSTEM_ACTOR};
use crate::tls_files::{endpoint_config, load_identity};
use crate::{agent_conn, console_conn};

/// First packets waiting for the accept loop's decision at once.
const MAX_INCOMING: usize = 1024;
/// Bytes buffered for one waiting first packet's connection (beyond the
/// first packet), and for all of them.
const INCOMING_BUFFER: u64 = 64 << 10;
const INCOMING_BUFFER_TOTAL: u64 = 8 << 20;

/// How often the accept loop asks for the admission summary (the summary
/// itself comes once per `log_interval`).
const SUMMARY_POLL: Duration = Duration::from_secs(1);

/// How often the last-seen time of online devices is written to the store.
const LAST_SEEN_INTERVAL: Duration = Duration::from_secs(60);

/// What first start created: shown once to the operator.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// The admin technician token.
    pub admin_token: String,
    /// Where it was also written (mode 0600).
    pub token_file: PathBuf,
}

/// A running relay.
#[derive(Debug)]
pub struct Relay {
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    accept_task: tokio::task::JoinHandle<()>,
    anchor_task: tokio::task::JoinHandle<()>,
    metrics_task: Option<tokio::task::JoinHandle<()>>,
    metrics_addr: Option<SocketAddr>,
    /// One per ticketing connector (`tickets::spawn`).
    tickets_tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Set when this start bootstrapped a new organisation.
    pub bootstrap: Option<Bootstrap>,
}

impl Relay {
    /// Opens the store, loads or creates key material, binds the endpoint and
    /// starts accepting connections.
    pub async fn spawn(config: RelayConfig) -> anyhow::Result<Self> {
        // Certificate files and the listening address first: a start that
        // cannot serve must not create the database and its admin token.
        let preflight = crate::preflight::check(&config)?;
        let metrics_listener = config
            .metrics_listen
            .map(crate::metrics::http::bind)
            .transpose()?;
        // Before anything is read from it: refuse a directory others can
        // write, and make it and its files owner-only.
        for path in crate::data_dir::prepare(&config.data_dir)? {
            tracing::info!(path = %path.display(), "made owner-only");
        }
        let store = Arc::new(crate::store_admin::open_store(&config)?);
        let bootstrap = bootstrap(&store, &config)?;
        let interrupted = store
            .sort_interrupted_sessions(now_secs())
            .context("cannot record the end of sessions interrupted by the last stop")?;
        if !interrupted.ended.is_empty() {
            tracing::info!(
                sessions = interrupted.ended.len(),
                "recorded the end of session requests cut by the relay's last stop"
            );
        }

        let audit_anchor = crate::audit_anchor::AnchorKey::load_or_create(&config.data_dir)?;
        let identifier_key =
            crate::identifier_key::IdentifierKey::load_or_create(&config.data_dir)?;
        let identity = match preflight.identity {
            Some(identity) => identity,
            None => load_identity(&config.data_dir, &config.cert)?,
        };
        let fingerprint = identity.fingerprint();
        let tls = identity.server_config(ALPN)?;
        let quic_tls = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .context("the TLS configuration is not usable for QUIC")?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(quic_tls));
        let mut transport = transport_config(config.idle_timeout, None);
        tune_outer_transport(&mut transport);
        pre_auth_budget(&mut transport);
        server_config.transport_config(Arc::new(transport));
        // Clients keep their connection across a network switch (QUIC
        // migration; `roaming` logs each move). quinn's default, said here
        // because sessions rely on it.
        server_config.migration(true);
        // Each first packet is decided on at once in the accept loop, so
        // few wait at a time; quinn's defaults (65,536 and 100 MiB of
        // buffered packets) are sized for applications that wait.
        server_config.max_incoming(MAX_INCOMING);
        server_config.incoming_buffer_size(INCOMING_BUFFER);
        server_config.incoming_buffer_size_total(INCOMING_BUFFER_TOTAL);
        // One secret behind stateless resets, connection ids and park
        // tickets, read once.
        let endpoint_secret = crate::tls_files::endpoint_secret(&config.data_dir)?;
        let endpoint_config = endpoint_config(&endpoint_secret);
        let socket = preflight.socket;
        // Sized for a reconnect storm; a cap is logged with the sysctl to raise.
        crate::udp_buffers::apply_and_report(&socket, config.udp_buffer);
        let runtime = quinn::default_runtime().context("no async runtime for QUIC")?;
        // Park datagrams share the port; quinn sees the rest (crate::park).
        let socket = runtime
            .wrap_udp_socket(socket)
            .context("cannot use the UDP socket")?;
        let (socket, heartbeats) = crate::park::DemuxSocket::new(socket);
        let park_secret = crate::park::ParkSecret::derive_from(&endpoint_secret);
        let endpoint = quinn::Endpoint::new_with_abstract_socket(
            endpoint_config,
            Some(server_config),
            Arc::clone(&socket) as Arc<dyn quinn::AsyncUdpSocket>,
            runtime,
        )
        .context("cannot start the QUIC endpoint")?;
        let local = endpoint
            .local_addr()
            .context("cannot read the bound address")?;
        let public_addr = config
            .public_addr
            .clone()
            .unwrap_or_else(|| local.to_string());

        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            directory: crate::cluster::Directory::new(
                crate::cluster::relay_id(&config.data_dir)?,
                store.is_postgres(),
                config.idle_timeout,
            ),
            store,
            presence: Presence::default(),
            fingerprint,
            public_addr,
            measure_limits: Arc::default(),
            router: Arc::new(Router::new(config.hooks.on_forward.clone())),
            hooks: config.hooks.clone(),
            admission: crate::admission::Gate::new(config.limits.clone()),
            audit_anchor,
            identifier_key,
            consoles: crate::access::Consoles::default(),
            metrics: Arc::default(),
            tasks: crate::tasks::Tasks::new(shutdown_rx.clone()),
        });
        shared.presence.enable_parking(crate::park::Waker {
            socket,
            secret: park_secret,
        });
        shared
            .tasks
            .spawn(crate::park::run(Arc::clone(&shared), heartbeats));
        // The fleet that will come back after a restart: agents are told to
        // spread their reconnections over a window sized to it.
        match shared.store.active_device_count() {
            Ok(devices) => shared.admission.observe_fleet(devices),
            Err(e) => tracing::warn!("cannot count the enrolled devices: {e}"),
        }
        // Sessions that were running when the relay stopped: their parties
        // keep the end-to-end connection and come back; route them again,
        // and end those whose console does not return in time.
        let resumable: Vec<SessionId> = interrupted.resumable.iter().map(|r| r.id).collect();
        for record in &interrupted.resumable {
            let session = record.id;
            shared.router.restore(session, record.device);
            tracing::info!(session = %session, "session open at the last stop: waiting for its parties to come back");
        }
        // Join the directory before any agent can attach.
        let record = crate::cluster::own_record(&shared);
        shared
            .store(move |store| store.register_relay(&record))
            .await
            .map_err(|r| anyhow::anyhow!("{r:?}"))?
            .context("cannot register this relay in the store's directory")?;
        if let Err(e) = crate::cluster::claim_keys(&shared, &config.data_dir).await {
            let id = shared.directory.relay_id.clone();
            let _ = shared.store(move |store| store.deregister_relay(&id)).await;
            return Err(e);
        }
        shared.tasks.spawn(crate::cluster::run(Arc::clone(&shared)));
        if shared.directory.is_shared() {
            // Policy changes made through other relays reach our agents.
            shared
                .tasks
                .spawn(crate::policy_sync::run(Arc::clone(&shared)));
            // So do session ends (a token revoked through another relay).
            shared
                .tasks
                .spawn(crate::ended_elsewhere::run(Arc::clone(&shared)));
        }
        // Agents' network moves (consoles watch their own connection).
        shared
            .tasks
            .spawn(crate::roaming::watch_agents(Arc::clone(&shared)));
        let mut extra = serde_json::Map::new();
        extra.insert("relay_restarted".to_owned(), serde_json::Value::Bool(true));
        shared.tasks.spawn(console_conn::end_unresumed(
            Arc::clone(&shared),
            resumable,
            SessionParty::System,
            SYSTEM_ACTOR.to_owned(),
            extra,
        ));
        // Everything this start created (keys, -wal, -shm) is owner-only too.
        crate::data_dir::tighten_files(&config.data_dir)?;
        let anchor_task = tokio::spawn(crate::audit_anchor::run(
            Arc::clone(&shared),
            config.audit_anchor_file.clone(),
            config.audit_anchor_interval,
            shutdown_rx.clone(),
        ));
        let (health, accepting) = crate::health::Health::new(Arc::clone(&shared.store));
        let mut metrics_addr = None;
        let metrics_task = match metrics_listener {
            Some(listener) => {
                let addr = listener
                    .local_addr()
                    .context("cannot read the metrics address")?;
                if !addr.ip().is_loopback() {
                    tracing::warn!(%addr, "metrics are served beyond this host: make sure a firewall lets only the monitoring server reach them");
                }
                tracing::info!(%addr, "serving metrics at http://{addr}/metrics (health: /healthz)");
                metrics_addr = Some(addr);
                let page_shared = Arc::clone(&shared);
                let page: crate::metrics::http::Page =
                    Arc::new(move || crate::metrics::render(&page_shared));
                Some(tokio::spawn(crate::metrics::http::run(
                    listener,
                    page,
                    health.into_check(),
                    Arc::clone(&shared.metrics),
                    shutdown_rx.clone(),
                )))
            }
            None => None,
        };
        let tickets_tasks = crate::tickets::spawn(&shared, &config.tickets, &shutdown_rx);
        let accept_task = tokio::spawn({
            let accept = accept_loop(endpoint.clone(), Arc::clone(&shared), shutdown_rx);
            // The health check says "unavailable" once the loop ends.
            async move {
                let _accepting = accepting;
                accept.await;
            }
        });
        Ok(Self {
            endpoint,
            shared,
            shutdown,
            accept_task,
            anchor_task,
            metrics_task,
            metrics_addr,
            tickets_tasks,
            bootstrap,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Where metrics are served (`None`: turned off).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The certificate fingerprint clients pin.
    pub fn fingerprint(&self) -> Fingerprint {
        self.shared.fingerprint
    }

    /// The address written into tokens.
    pub fn public_addr(&self) -> &str {
        &self.shared.public_addr
    }

    /// Closes every connection, telling peers the relay is going away, and
    /// waits for every task to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.accept_task.await;
        let _ = self.anchor_task.await;
        if let Some(task) = self.metrics_task {
            let _ = task.await;
        }
        for task in self.tickets_tasks {
            let _ = task.await;
        }
        // Resume-grace timers end their wait at the signal; a store write
        // one of them began finishes first.
        self.shared
            .tasks
            .join(crate::tasks::SHUTDOWN_DEADLINE)
            .await;
        let online = self.shared.presence.online();
        let now = now_secs();
        let _ = self
            .shared
            .store(move |store| store.mark_seen(&online, now))
            .await;
        self.endpoint
            .close(CLOSE_SHUTDOWN.into(), b"relay shutting down");
        // Bounded: peers that do not acknowledge the close are not waited for.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

fn bootstrap(store: &Store, config: &RelayConfig) -> anyhow::Result<Option<Bootstrap>> {
    let token =
        new_technician_token().map_err(|_| anyhow::anyhow!("the OS random generator failed"))?;
    let created = store
        .bootstrap(
            &config.organisation,
            "admin",
            &hash_secret(&token),
            now_secs(),
        )
        .context("cannot bootstrap the organisation")?;
    if created.is_none() {
        return Ok(None);
    }
    let token_file = config.data_dir.join(ADMIN_TOKEN_FILE);
    write_private(&token_file, format!("{token}\n").as_bytes())?;
    Ok(Some(Bootstrap {
        admin_token: token,
        token_file,
    }))
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let mut last_seen = tokio::time::interval(LAST_SEEN_INTERVAL);
    last_seen.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once: orphans are swept at start, then hourly.
    let mut orphans = tokio::time::interval(crate::access::ORPHAN_SWEEP_INTERVAL);
    orphans.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut summaries = tokio::time::interval(SUMMARY_POLL);
    summaries.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let log_interval = humantime::format_duration(shared.admission.limits().log_interval);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => admit(&shared, incoming, &mut connections),
                None => break,
            },
            // Reap finished connection tasks so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = summaries.tick() => {
                if let Some(summary) = shared.admission.poll_summary(std::time::Instant::now()) {
                    tracing::warn!("before authentication, in the last {log_interval}: {summary}");
                }
            }
            _ = last_seen.tick() => {
                let online = shared.presence.online();
                let now = now_secs();
                if !online.is_empty() {
                    if let Ok(Err(e)) = shared.store_as(crate::metrics::StoreOp::LastSeen, move |s| s.mark_seen(&online, now)).await {
                        tracing::warn!("cannot record last-seen times: {e}");
                    }
                }
            }
            _ = orphans.tick() => {
                crate::access::remove_orphans(&shared).await;
                crate::timeline::maintain(&shared).await;
            }
        }
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

/// Decides on a new connection's first packet (see [`crate::admission`]).
fn admit(shared: &Arc<Shared>, incoming: quinn::Incoming, connections: &mut JoinSet<()>) {
    let remote = incoming.remote_address();
    let validated = incoming.remote_address_validated();
    match shared
        .admission
        .admit(remote.ip(), validated, std::time::Instant::now())
    {
        Ok(ticket) => {
            shared.metrics.first_packet(FirstPacket::Accepted);
            connections.spawn(serve_connection(Arc::clone(shared), incoming, ticket));
        }
        Err(Decision::Retry) => {
            shared.metrics.first_packet(FirstPacket::Retry);
            if let Err(e) = incoming.retry() {
                e.into_incoming().refuse();
            }
        }
        Err(Decision::Wait(full)) => {
            shared.metrics.first_packet(FirstPacket::Waited);
            tracing::trace!(%remote, ?full, "first packet left for the client to send again");
            incoming.ignore();
        }
        Err(decision) => {
            shared.metrics.first_packet(FirstPacket::Refused);
            tracing::trace!(%remote, ?decision, "first packet refused");
            incoming.refuse();
        }
    }
}

async fn serve_connection(shared: Arc<Shared>, incoming: quinn::Incoming, mut ticket: Ticket) {
    let remote = incoming.remote_address();
    // One deadline from the first packet to authenticated: the handshake,
    // the hello and the authentication all count against it.
    let auth_deadline = shared.admission.limits().auth_deadline;
    let deadline = tokio::time::Instant::now() + auth_deadline;
    let connecting = match incoming.accept() {
        Ok(connecting) => connecting,
        Err(e) => {
            tracing::debug!(%remote, "QUIC handshake failed: {e}");
            shared.metrics.handshake(Handshake::Failed);
            return;
        }
    };
    let connection = match tokio::time::timeout_at(deadline, connecting).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => {
            tracing::debug!(%remote, "QUIC handshake failed: {e}");
            shared.metrics.handshake(Handshake::Failed);
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "QUIC handshake not done within {auth_deadline:?}");
            shared.metrics.handshake(Handshake::TimedOut);
            shared.admission.deadline_close();
            return;
        }
    };
    shared.metrics.handshake(Handshake::Completed);
    let authenticated = ticket.handshake_done(connection.stable_id());
    let auth_state = authenticated.clone();
    let peer_key = peer_public_key(&connection);
    let kind = if peer_key.is_some() {
        "agent"
    } else {
        "console"
    };
    let span = tracing::info_span!("conn", %remote, kind, device = tracing::field::Empty, technician = tracing::field::Empty);
    async move {
        let serve = async {
            match accept_control(&connection).await {
                Ok((send, recv)) => match peer_key {
                    Some(key) => agent_conn::serve(&shared, &connection, key, send, recv).await,
                    None => console_conn::serve(&shared, &connection, send, recv).await,
                },
                Err(end) => end,
            }
        };
        let end = tokio::select! {
            end = serve => end,
            why = pre_auth_guard(&connection, authenticated, deadline) => {
                let reason = match why {
                    PreAuth::Deadline => {
                        shared.metrics.auth_failure(AuthFailure::Timeout);
                        shared.admission.deadline_close();
                        format!("did not authenticate within {} s of its first packet", auth_deadline.as_secs())
                    }
                    PreAuth::Datagram => {
                        shared.metrics.auth_failure(AuthFailure::ProtocolViolation);
                        "sent a datagram before authenticating".to_owned()
                    }
                };
                // Counted in the admission summary; one line each would let
                // a flood write the log.
                tracing::debug!("closing connection: {reason}");
                connection.close(CLOSE_PROTOCOL_VIOLATION.into(), reason.as_bytes());
                return;
            }
        };
        drop(ticket);
        if !*auth_state.borrow() {
            shared.metrics.auth_failure(match &end {
                End::Refused(refusal) => AuthFailure::of_refusal(refusal),
                End::Violation(_) => AuthFailure::ProtocolViolation,
                End::Closed | End::Lost(_) => AuthFailure::Abandoned,
            });
        }
        match end {
            End::Closed => tracing::debug!("connection closed"),
            End::Refused(refusal) => {
                if is_auth_failure(&refusal) {
                    shared
                        .admission
                        .auth_failure(remote.ip(), std::time::Instant::now());
                    tracing::debug!("refused: {refusal}");
                } else {
                    tracing::info!("refused: {refusal}");
                }
                connection.close(CLOSE_REFUSED.into(), b"refused");
            }
            End::Violation(reason) => {
                tracing::warn!("closing connection: {reason}");
                let reason = reason.chars().take(200).collect::<String>();
                connection.close(CLOSE_PROTOCOL_VIOLATION.into(), reason.as_bytes());
            }
            End::Lost(reason) => tracing::debug!("connection lost: {reason}"),
        }
    }
    .instrument(span)
    .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use deskside_protocol::agent::DeviceInfo;
    use deskside_protocol::session::Capabilities;
    use deskside_protocol::{DeviceId, TechnicianId};

    use super::*;
    use crate::config::{FileConfig, Overrides};
    use crate::store::NewSession;

    fn sha(secret: &str) -> [u8; 32] {
        let mut out = [0; 32];
        out.copy_from_slice(
            ring::digest::digest(&ring::digest::SHA256, secret.as_bytes()).as_ref(),
        );
        out
    }

    /// A database whose last run stopped during a consented session: the
    /// next start waits for its parties to come back (a resume-grace task).
    fn database_with_a_running_session(data: &std::path::Path) {
        std::fs::create_dir_all(data).unwrap();
        let store = Store::open(&data.join("relay.db")).unwrap();
        let now = now_secs();
        let org = store
            .bootstrap("Acme", "admin", &sha("admin"), now)
            .unwrap()
            .unwrap();
        store
            .create_enroll_token(org, &sha("enroll"), 1, now + 3600, None, "test", now)
            .unwrap();
        let info = DeviceInfo {
            hostname: "laptop".to_owned(),
            os: "Debian GNU/Linux 12".to_owned(),
            agent_version: "0.1.0".to_owned(),
        };
        let (device, _) = store
            .enroll_device(
                &sha("enroll"),
                b"key",
                &info,
                "192.0.2.7:5000",
                DeviceId(7),
                now,
            )
            .unwrap()
            .unwrap();
        let session = NewSession {
            id: deskside_protocol::SessionId(42),
            org,
            device: device.id,
            technician: TechnicianId(1),
            capabilities: Capabilities::CONTROL,
            reason: "printer",
        };
        store.open_session(&session, "test", now).unwrap();
        store
            .record_consent(
                deskside_protocol::SessionId(42),
                device.id,
                Some(Capabilities::CONTROL),
                "accepted",
                now,
            )
            .unwrap();
    }

    /// Before: the resume-grace task was detached, kept the store and ended
    /// the session (a store write) up to a grace period after shutdown.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_during_a_resume_grace_leaves_no_task_holding_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        database_with_a_running_session(&data);
        let file: FileConfig = toml::from_str(&format!(
            "self_signed = true\nlisten = \"127.0.0.1:0\"\ndata_dir = {data:?}\n"
        ))
        .unwrap();
        let relay = Relay::spawn(RelayConfig::resolve(file, Overrides::default()).unwrap())
            .await
            .unwrap();
        assert_eq!(
            relay.shared.tasks.len(),
            4,
            "the resume-grace task, the agents' network-move watcher, the directory task and the parked agents' task run"
        );
        let store = Arc::downgrade(&relay.shared.store);
        let shared = Arc::downgrade(&relay.shared);
        let started = std::time::Instant::now();
        relay.shutdown().await;
        // Nothing the relay started can reach the store any more, so
        // nothing writes to it after shutdown returned.
        assert!(shared.upgrade().is_none(), "a task still holds the relay");
        assert!(store.upgrade().is_none(), "a task still holds the store");
        // The grace wait was cut, not waited out.
        assert!(started.elapsed() < crate::console_conn::RESUME_GRACE);
        // The session was left for the next start to sort.
        let store = Store::open(&data.join("relay.db")).unwrap();
        assert!(store
            .session(deskside_protocol::SessionId(42))
            .unwrap()
            .unwrap()
            .ended_at
            .is_none());
    }
}
