//! The relay side of remote sessions, end to end, with raw clients: a
//! console and an agent written here with `deskside-net` (not the real
//! agent and console binaries), talking to the relay library in-process or
//! to the `deskside-spy-relay` binary.
//!
//! What is checked: the request reaches the agent with the right keys, the
//! end-to-end handshake runs through the relay and both sides derive the
//! same verification code, nothing flows beyond the handshake before the
//! consent is audited, the relay forwards only ciphertext, every step lands
//! in the audit log in order, and a relay that substitutes keys is caught.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on surprises.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deskside_net::tunnel::SessionConn;
use deskside_protocol::agent::AgentToRelay;
use deskside_protocol::console::{ConsoleRequest, ConsoleResponse};
use deskside_protocol::session::{Capabilities, EndedBy};
use deskside_protocol::{Fingerprint, SessionId};
use deskside_relay::config::{FileConfig, Overrides};
use deskside_relay::{Relay, RelayConfig, RelayHooks};
use deskside_tests::peers::{answer_consent, handshake, open_session, parties, within, Peer, STEP};

/// A secret the console sends inside the session; it must never appear in
/// what the relay forwards.
const PLAINTEXT: &[u8] = b"PLAINTEXT-MARKER-the-relay-must-never-see-this";

/// Bigger than the relay's pre-consent budget (64 KiB), so it only arrives
/// if the consent lifted the budget.
const AFTER_CONSENT_BYTES: usize = 512 * 1024;

/// Sends `bytes` from the console to the agent on a new inner stream and
/// returns what the agent read, or `None` if nothing complete arrived in
/// `wait` (the stream is then reset, so it never completes later).
async fn transfer(
    console: &SessionConn,
    agent: &SessionConn,
    bytes: Vec<u8>,
    wait: Duration,
) -> Option<Vec<u8>> {
    let mut stream = console.connection.open_uni().await.unwrap();
    let write = async {
        stream.write_all(&bytes).await.ok()?;
        stream.finish().ok()
    };
    // Streams left over from an earlier, reset transfer fail to read; the
    // first one that reads to its end is this one.
    let read = async {
        loop {
            let mut incoming = agent.connection.accept_uni().await.ok()?;
            if let Ok(data) = incoming.read_to_end(16 << 20).await {
                return Some(data);
            }
        }
    };
    let received = tokio::time::timeout(wait, async { tokio::join!(write, read).1 })
        .await
        .ok()
        .flatten();
    if received.is_none() {
        let _ = stream.reset(quinn::VarInt::from_u32(0));
    }
    received
}

fn payload() -> Vec<u8> {
    PLAINTEXT
        .iter()
        .copied()
        .cycle()
        .take(AFTER_CONSENT_BYTES)
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

async fn spawn_relay(
    data_dir: &std::path::Path,
    hooks: RelayHooks,
) -> (Relay, String, Fingerprint, String) {
    let mut config = RelayConfig::resolve(
        FileConfig::default(),
        Overrides {
            dev: true,
            listen: Some("127.0.0.1:0".parse().unwrap()),
            data_dir: Some(data_dir.to_owned()),
            idle_timeout: Some(Duration::from_secs(10)),
            ..Overrides::default()
        },
    )
    .unwrap();
    config.hooks = hooks;
    let relay = Relay::spawn(config).await.unwrap();
    let addr = relay.local_addr().unwrap().to_string();
    let fingerprint = relay.fingerprint();
    let token = relay.bootstrap.as_ref().unwrap().admin_token.clone();
    (relay, addr, fingerprint, token)
}

/// `session.*` actions in the audit log about the device, oldest first.
async fn session_audit(console: &mut Peer, device: &str) -> Vec<(String, serde_json::Value)> {
    let rows = match console
        .request(ConsoleRequest::AuditList {
            device: Some(device.to_owned()),
            limit: 100,
        })
        .await
        .unwrap()
    {
        ConsoleResponse::Audit(rows) => rows,
        other => panic!("{other:?}"),
    };
    let mut rows: Vec<_> = rows
        .into_iter()
        .filter(|row| row.action.starts_with("session."))
        .map(|row| (row.action, serde_json::from_str(&row.detail).unwrap()))
        .collect();
    rows.reverse();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consented_session_flows_end_to_end_and_the_relay_sees_only_ciphertext() {
    let dir = tempfile::tempdir().unwrap();
    let forwarded = Arc::new(Mutex::new(Vec::<u8>::new()));
    let spy = Arc::clone(&forwarded);
    let hooks = RelayHooks {
        on_forward: Some(Arc::new(move |_, _, bytes: &[u8]| {
            spy.lock().unwrap().extend_from_slice(bytes);
        })),
        substitute_keys: None,
    };
    let (relay, addr, fingerprint, admin) = spawn_relay(dir.path(), hooks).await;
    let mut parties = parties(&addr, fingerprint, &admin).await;
    let (opened, request) = open_session(&mut parties).await;
    assert_eq!(
        opened.device_key,
        parties.agent_identity.key_fingerprint().unwrap()
    );
    assert_eq!(
        request.technician_key,
        parties.console_identity.key_fingerprint().unwrap()
    );
    assert_eq!(request.capabilities, Capabilities::VIEW);
    assert_eq!(request.grant_secs, 3600);

    let (console, agent, _tunnels) =
        within("the handshake", handshake(&parties, &opened, &request)).await;
    let (console, agent) = (console.unwrap(), agent.unwrap());
    assert_eq!(
        console.verification_code(opened.session_id).unwrap(),
        agent.verification_code(request.session_id).unwrap()
    );

    // Before the consent is audited, a screenful does not get through.
    assert_eq!(
        transfer(&console, &agent, payload(), Duration::from_secs(2)).await,
        None,
        "more than the pre-consent budget crossed the relay"
    );

    answer_consent(&mut parties, &request, Some(Capabilities::VIEW)).await;
    let received = transfer(&console, &agent, payload(), STEP).await;
    assert_eq!(
        received.as_deref(),
        Some(&payload()[..]),
        "the session carries data once consented"
    );

    let seen = forwarded.lock().unwrap().clone();
    assert!(
        seen.len() > AFTER_CONSENT_BYTES,
        "the hook saw the traffic ({} bytes)",
        seen.len()
    );
    assert!(!contains(&seen, PLAINTEXT), "the relay saw plaintext");

    parties.end_session(opened.session_id).await;
    // The agent's own report of the end changes nothing any more.
    parties
        .agent
        .send()
        .send(&AgentToRelay::SessionEnded {
            session_id: request.session_id,
            by: EndedBy::Employee,
        })
        .await
        .unwrap();
    let audit = session_audit(&mut parties.console, &parties.device).await;
    let actions: Vec<&str> = audit.iter().map(|(action, _)| action.as_str()).collect();
    // (`session.key_registered` is about the token, not the device.)
    assert_eq!(
        actions,
        ["session.request", "session.consent", "session.end"]
    );
    assert_eq!(audit[1].1["outcome"], "accepted");
    assert_eq!(audit[2].1["by"], "technician");

    console.close(0, b"bye").await;
    agent.close(0, b"bye").await;
    parties.close().await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_refused_clearly_and_only_parties_may_act() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, addr, fingerprint, admin) = spawn_relay(dir.path(), RelayHooks::default()).await;
    let mut parties = parties(&addr, fingerprint, &admin).await;

    // No session key registered yet.
    let refusal = parties
        .console
        .request(ConsoleRequest::OpenSession {
            device: parties.device.clone(),
            capabilities: Capabilities::VIEW,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert!(
        refusal.to_string().contains("run `deskside login` again"),
        "{refusal}"
    );

    let key = parties.console_identity.key_fingerprint().unwrap();
    parties
        .console
        .request(ConsoleRequest::RegisterSessionKey { key })
        .await
        .unwrap();
    for (capabilities, reason, expected) in [
        (
            Capabilities {
                view: false,
                control: true,
            },
            "x".to_owned(),
            "always includes seeing the screen",
        ),
        (Capabilities::VIEW, "é".repeat(501), "keep it to 500"),
    ] {
        let refusal = parties
            .console
            .request(ConsoleRequest::OpenSession {
                device: parties.device.clone(),
                capabilities,
                reason,
            })
            .await
            .unwrap_err();
        assert!(refusal.to_string().contains(expected), "{refusal}");
    }

    // A refused session forwards nothing and cannot be ended twice.
    let (opened, request) = open_session(&mut parties).await;
    answer_consent(&mut parties, &request, None).await;
    // Ending a session that is not yours is refused; ending a refused one
    // is a no-op.
    let refusal = parties
        .console
        .request(ConsoleRequest::EndSession {
            session_id: SessionId(opened.session_id.0 ^ 1),
        })
        .await
        .unwrap_err();
    assert!(
        refusal.to_string().contains("only end sessions you opened"),
        "{refusal}"
    );
    parties.end_session(opened.session_id).await;
    let audit = session_audit(&mut parties.console, &parties.device).await;
    let actions: Vec<&str> = audit.iter().map(|(action, _)| action.as_str()).collect();
    assert_eq!(actions, ["session.request", "session.consent"]);
    assert_eq!(audit[1].1["granted"], serde_json::Value::Null);

    // An agent that answers for a session that is not its own is cut off.
    parties
        .agent
        .send()
        .send(&AgentToRelay::SessionConsent {
            session_id: SessionId(42),
            granted: Some(Capabilities::VIEW),
            outcome: "accepted".to_owned(),
        })
        .await
        .unwrap();
    let closed = within(
        "the relay closing the agent",
        parties.agent.connection().closed(),
    )
    .await;
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(1), "{close:?}");
        }
        other => panic!("expected a protocol-violation close, got {other:?}"),
    }

    parties.console.close().await;
    relay.shutdown().await;
}

/// Starts `deskside-spy-relay` the way the harness starts the real relay
/// and returns the process and its ready line.
fn spawn_spy(dir: &std::path::Path, extra: &[&str]) -> (std::process::Child, serde_json::Value) {
    let mut child = Command::new(deskside_tests::bin("deskside-spy-relay"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("relay-data"))
        .args(["--idle-timeout", "6s", "--spy-file"])
        .arg(dir.join("spy.bin"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("spy-relay.log")).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("ready line {line:?} is not JSON: {e}"));
    assert_eq!(ready["type"], "ready");
    (child, ready)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_substitutes_keys_is_caught_by_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, ready) = spawn_spy(dir.path(), &["--substitute-keys"]);
    let addr = ready["listen"].as_str().unwrap().to_owned();
    let fingerprint: Fingerprint = ready["fingerprint"].as_str().unwrap().parse().unwrap();
    let admin = std::fs::read_to_string(dir.path().join("relay-data/admin-token")).unwrap();
    let mut parties = parties(&addr, fingerprint, admin.trim()).await;
    let (opened, request) = open_session(&mut parties).await;
    assert_eq!(
        opened.device_key.to_string(),
        ready["substituted_device_key"].as_str().unwrap()
    );
    assert_eq!(
        request.technician_key.to_string(),
        ready["substituted_technician_key"].as_str().unwrap()
    );
    let (console, agent, _tunnels) =
        within("the handshake", handshake(&parties, &opened, &request)).await;
    assert!(
        console.is_err(),
        "the console accepted a substituted device key"
    );
    assert!(
        agent.is_err(),
        "the agent accepted a substituted technician key"
    );
    // The spy saw the handshake packets (so the hook works) and they are
    // within the pre-consent budget. The spy relay appends them on a thread
    // of its own: wait for the first bytes (under load they came after the
    // handshake's end was seen here), then for the writes to settle.
    let spied = || {
        std::fs::metadata(dir.path().join("spy.bin"))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while spied() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = spied();
    assert!(
        seen > 0 && seen <= 2 * 64 * 1024,
        "spy file holds {seen} bytes"
    );
    parties.close().await;
    let _ = child.kill();
    let _ = child.wait();
}
