//! An agent never waits forever on a relay that took its connection and
//! never answered its `Attach` (issue 14: in the three-relay benchmark,
//! agents of a killed relay waited this way on a surviving relay for
//! minutes, and never tried again).
//!
//! The relay here is deliberately mute: a real QUIC endpoint with a real
//! certificate that completes the handshake and the hello exchange, reads
//! the agent's `Attach` and then holds the connection open without a word
//! (QUIC keep-alives keep it alive). The agent is the agent's own link code
//! (`stay_attached_any`). Before the fix the agent waited on the first
//! connection for good; now it gives up after
//! [`deskside_agent::link::ATTACH_TIMEOUT`] and attaches again.
//!
//! Costs about 16 s (one attach deadline plus a short backoff).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deskside_agent::link::{stay_attached_any, Services, ATTACH_TIMEOUT};
use deskside_agent::relays::RelayChoice;
use deskside_agent::state::{LinkState, AGENT_CERT_NAME};
use deskside_net::transport::client_endpoint;
use deskside_net::{FramedRecv, FramedSend, Identity, ALPN};
use deskside_protocol::agent::AgentToRelay;
use deskside_protocol::token::RelayEndpoint;
use deskside_protocol::version::{ClientHello, ServerHello, VersionRange};
use deskside_protocol::{MAX_CLIENT_FRAME_LEN, MAX_RELAY_FRAME_LEN};
use tokio::sync::watch;

/// A relay that answers the hello, then never answers `Attach`. Counts the
/// `Attach` requests it received.
async fn mute_relay() -> (quinn::Endpoint, RelayEndpoint, Arc<AtomicUsize>) {
    let identity = Identity::generate(&["deskside-relay"]).expect("a relay certificate");
    let tls = identity
        .server_config(ALPN)
        .expect("a TLS server configuration");
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).expect("QUIC TLS");
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(60)).expect("idle timeout"),
    ));
    config.transport_config(Arc::new(transport));
    let endpoint =
        quinn::Endpoint::server(config, "127.0.0.1:0".parse().expect("an address")).expect("bind");
    let relay = RelayEndpoint {
        addr: endpoint.local_addr().expect("local address").to_string(),
        fingerprint: identity.fingerprint(),
    };
    let attaches = Arc::new(AtomicUsize::new(0));
    let server = endpoint.clone();
    let counted = Arc::clone(&attaches);
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else {
                    return;
                };
                let Ok((send, recv)) = connection.accept_bi().await else {
                    return;
                };
                let mut send = FramedSend::new(send, MAX_RELAY_FRAME_LEN);
                let mut recv = FramedRecv::new(recv, MAX_CLIENT_FRAME_LEN);
                let Ok(_hello) = recv.recv_value::<ClientHello>().await else {
                    return;
                };
                let accepted = ServerHello::Accepted {
                    version: VersionRange::CURRENT.max,
                    software: "mute-relay".to_owned(),
                };
                if send.send_value(&accepted).await.is_err() {
                    return;
                }
                if let Ok(Some(AgentToRelay::Attach { .. })) = recv.recv::<AgentToRelay>().await {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
                // Never a word more: the connection stays open until the
                // agent closes it.
                connection.closed().await;
            });
        }
    });
    (endpoint, relay, attaches)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_gives_up_on_a_relay_that_never_answers_its_attach() {
    let (_server, relay, attaches) = mute_relay().await;
    let identity = Identity::generate(&[AGENT_CERT_NAME]).expect("a device key");
    let endpoint = client_endpoint(relay.addr.parse().expect("an address")).expect("a socket");
    let (stop_tx, stop_rx) = watch::channel(false);
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let agent = {
        let errors = Arc::clone(&errors);
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let publish = |state: LinkState, error: Option<String>| {
                if let (LinkState::Connecting, Some(error)) = (state, error) {
                    errors.lock().unwrap_or_else(|p| p.into_inner()).push(error);
                }
            };
            let mut choice = RelayChoice::new(vec![relay]);
            stay_attached_any(
                &endpoint,
                &mut choice,
                &identity,
                &mut stop,
                &publish,
                Services::default(),
                &|_| {},
            )
            .await
        })
    };

    // The first attach arrives at once; a second one only if the agent gave
    // up on the first: after the deadline and a backoff of at most 0.5 s
    // (the first failure), plus a handshake. 25 s more is ample under load.
    let started = Instant::now();
    let limit = ATTACH_TIMEOUT + Duration::from_secs(25);
    while attaches.load(Ordering::SeqCst) < 2 {
        assert!(
            started.elapsed() < limit,
            "the agent sent {} attach request(s) in {limit:?} and is still waiting for an answer that never comes; it must give up and try again",
            attaches.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // It did not give up early either: not before the deadline.
    assert!(
        started.elapsed() >= ATTACH_TIMEOUT,
        "gave up after {:?}, before the attach deadline",
        started.elapsed()
    );
    let seen = errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(
        seen.iter().any(|error| error.contains("timed out")),
        "the agent reported why it tried again: {seen:?}"
    );
    let _ = stop_tx.send(true);
    let outcome = tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .expect("the agent stops when told");
    assert!(matches!(outcome, Ok(Ok(()))), "{outcome:?}");
}
