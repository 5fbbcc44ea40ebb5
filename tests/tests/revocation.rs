//! Revocation and expiry end access at once, end to end: the real relay
//! and console binaries, with raw console and agent peers
//! (`deskside_tests::peers`) holding connections open across a revocation.
//!
//! Also: enrollment-token limits, listing and revocation; idempotent
//! enrollment; groups, unique technician names and the last-admin guard;
//! `session list` and `session end` for administrators.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on surprises.

use std::time::{Duration, Instant};

use deskside_net::Identity;
use deskside_protocol::agent::{AgentToRelay, RelayToAgent};
use deskside_protocol::console::{ConsoleRequest, ConsoleResponse, CLOSE_ACCESS_ENDED};
use deskside_protocol::session::Capabilities;
use deskside_protocol::token::EnrollToken;
use deskside_protocol::{Fingerprint, Role};
use deskside_tests::peers::{answer_consent, info, open_session, parties, within, Parties, Peer};
use deskside_tests::{Console, Relay, World};
use serde_json::Value;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn fingerprint(relay: &Relay) -> Fingerprint {
    relay.fingerprint.parse().unwrap()
}

/// Creates a technician token with the admin console; returns its secret.
fn token(admin: &Console, name: &str, role: &str, extra: &[&str]) -> String {
    let mut args = vec!["tokens", "create", "--name", name, "--role", role, "--json"];
    args.extend_from_slice(extra);
    admin.run(&args).ok().json()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Creates an admin technician token named `name`; returns its secret and id.
fn admin_token_with_id(admin: &Console, name: &str) -> (String, deskside_protocol::TechnicianId) {
    let created = admin.create_token(name, "admin");
    let secret = created["token"].as_str().unwrap().to_owned();
    let id = deskside_protocol::TechnicianId(created["id"].as_u64().unwrap());
    (secret, id)
}

/// `request` as the frame a raw console peer sends, with request id `id`.
fn raw_request(id: u64, request: ConsoleRequest) -> deskside_protocol::console::ConsoleToRelay {
    deskside_protocol::console::ConsoleToRelay::Request {
        id,
        request: deskside_protocol::message::Nested(request),
    }
}

/// The audit rows (newest first) as the admin reads them.
fn audit(admin: &Console) -> Vec<Value> {
    admin
        .run(&["audit", "list", "--limit", "200", "--json"])
        .ok()
        .json_lines()
}

/// `session.end` rows of `session` (16 hex digits).
fn session_ends(admin: &Console, session: &str) -> Vec<Value> {
    audit(admin)
        .into_iter()
        .filter(|row| row["action"] == "session.end" && row["detail"]["session_id"] == session)
        .collect()
}

/// Waits for `connection` to be closed by the relay and returns how long it
/// took and the close, which must carry [`CLOSE_ACCESS_ENDED`].
async fn closed_for_access(
    connection: &quinn::Connection,
    within_at_most: Duration,
) -> (Duration, String) {
    let start = Instant::now();
    let error = tokio::time::timeout(within_at_most, connection.closed())
        .await
        .unwrap_or_else(|_| {
            panic!("the relay kept the connection open for {within_at_most:?} after its token stopped working")
        });
    let took = start.elapsed();
    match error {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(
                close.error_code,
                quinn::VarInt::from_u32(CLOSE_ACCESS_ENDED),
                "close code"
            );
            (took, String::from_utf8_lossy(&close.reason).into_owned())
        }
        other => panic!("closed for another reason: {other}"),
    }
}

#[test]
fn a_revoked_admin_loses_its_open_connection_at_once_and_cannot_mint_tokens() {
    let mut world = World::new();
    let (relay, admin) = world.relay_and_admin();
    let mallory = token(&admin, "mallory", "admin", &[]);
    runtime().block_on(async {
        let mut peer = Peer::console(&relay.addr, fingerprint(&relay), &mallory).await;
        // The connection works before the revocation.
        assert!(matches!(
            peer.request(ConsoleRequest::ListTechnicianTokens).await,
            Ok(ConsoleResponse::TechnicianTokens(_))
        ));
        let connection = peer.connection();
        // Revoked by name (not id), from another console.
        let revoked = admin
            .run(&["tokens", "revoke", "mallory", "--json"])
            .ok()
            .json();
        assert_eq!(revoked["type"], "technician_token_revoked");
        assert_eq!(revoked["name"], "mallory");
        let revoked_at = Instant::now();
        let (_, reason) = closed_for_access(&connection, Duration::from_secs(1)).await;
        assert!(
            revoked_at.elapsed() <= Duration::from_secs(1),
            "closed {:?} after the revocation",
            revoked_at.elapsed()
        );
        assert!(reason.contains("revoked"), "{reason}");
        assert!(reason.contains("deskside login"), "{reason}");
        // The old connection cannot mint a token any more.
        let mint = ConsoleRequest::CreateTechnicianToken {
            name: "backdoor".to_owned(),
            role: Role::Admin,
            expires_in_secs: None,
        };
        let sent = peer.send().send(&raw_request(99, mint)).await;
        assert!(sent.is_err(), "a request went out on a revoked connection");
    });
    // Nothing was minted, and the token cannot log in again.
    let tokens = admin.run(&["tokens", "list", "--json"]).ok().json_lines();
    assert!(tokens.iter().all(|t| t["name"] != "backdoor"), "{tokens:?}");
    world
        .console("mallory")
        .login(&relay, &mallory)
        .fails_with(1, "not accepted");
}

#[test]
fn an_expired_token_is_cut_at_its_expiry_and_its_session_ends_audited() {
    let mut world = World::new();
    let (relay, admin) = world.relay_and_admin();
    let tess = token(&admin, "tess", "technician", &["--expires", "6s"]);
    let created = Instant::now();
    let session = runtime().block_on(async {
        let mut parties = parties(&relay.addr, fingerprint(&relay), &tess).await;
        let (opened, request) = open_session(&mut parties).await;
        answer_consent(&mut parties, &request, Some(Capabilities::VIEW)).await;
        let connection = parties.console.connection();
        let left = Duration::from_secs(6).saturating_sub(created.elapsed());
        let (_, reason) = closed_for_access(&connection, left + Duration::from_secs(3)).await;
        assert!(
            created.elapsed() >= Duration::from_secs(5),
            "closed before the token expired"
        );
        assert!(reason.contains("expired"), "{reason}");
        format!("{:016x}", opened.session_id)
    });
    let ends = session_ends(&admin, &session);
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0]["detail"]["by"], "token_expired");
    assert_eq!(ends[0]["actor"], "system");
}

/// The next message the agent gets is the relay ending `session`.
async fn expect_session_ended_at_the_agent(parties: &mut Parties, session: &str) {
    match tokio::time::timeout(Duration::from_secs(5), parties.agent.agent_message()).await {
        Ok(RelayToAgent::SessionWithdrawn { session_id }) => {
            assert_eq!(format!("{session_id:016x}"), session)
        }
        Ok(other) => panic!("the agent was not told the session ended: {other:?}"),
        Err(_) => panic!("the agent was not told within 5 s that session {session} ended"),
    }
}

#[test]
fn admins_list_and_end_sessions_and_a_revocation_ends_the_rest() {
    let mut world = World::new();
    let (relay, admin) = world.relay_and_admin();
    let tom = token(&admin, "tom", "technician", &[]);
    runtime().block_on(async {
        let mut parties = parties(&relay.addr, fingerprint(&relay), &tom).await;
        let (first, request) = open_session(&mut parties).await;
        answer_consent(&mut parties, &request, Some(Capabilities::VIEW)).await;
        let first = format!("{:016x}", first.session_id);

        let listed = admin.run(&["session", "list", "--json"]).ok().json_lines();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0]["session_id"], first.as_str());
        assert_eq!(listed[0]["technician"], "tom");
        assert_eq!(listed[0]["state"], "running");
        assert!(admin.run(&["session", "list"]).ok().stdout.contains("tom"));
        let ended = admin.run(&["session", "end", &first, "--json"]).ok().json();
        assert_eq!(ended["type"], "session_ended");
        // The agent is told, so that the running session ends on the
        // employee's screen at once.
        expect_session_ended_at_the_agent(&mut parties, &first).await;
        assert!(admin
            .run(&["session", "list", "--json"])
            .ok()
            .stdout
            .trim()
            .is_empty());
        let ends = session_ends(&admin, &first);
        assert_eq!(ends.len(), 1, "{ends:?}");
        assert_eq!(ends[0]["detail"]["by"], "administrator");
        assert!(
            ends[0]["actor"].as_str().unwrap().contains("(admin)"),
            "{ends:?}"
        );
        admin
            .run(&["session", "end", &first])
            .fails_with(1, "no open session");
        // A technician may not list or end other people's sessions.
        let tech = world.console("tom");
        tech.login(&relay, &tom).ok();
        tech.run(&["session", "list"])
            .fails_with(1, "permission denied");

        // Ending a request the employee has not answered yet closes the
        // dialog on the device.
        let (pending, _) = open_session(&mut parties).await;
        admin
            .run(&["session", "end", &format!("{:016x}", pending.session_id)])
            .ok();
        match parties.agent.agent_message().await {
            RelayToAgent::SessionWithdrawn { session_id } => {
                assert_eq!(session_id, pending.session_id)
            }
            other => panic!("the agent was not told: {other:?}"),
        }

        // A second session, still open when tom's token is revoked.
        let (second, request) = open_session(&mut parties).await;
        answer_consent(&mut parties, &request, Some(Capabilities::VIEW)).await;
        let second = format!("{:016x}", second.session_id);
        let connection = parties.console.connection();
        admin.run(&["tokens", "revoke", "tom"]).ok();
        let (took, reason) = closed_for_access(&connection, Duration::from_secs(5)).await;
        assert!(took <= Duration::from_secs(1), "closed after {took:?}");
        assert!(reason.contains("revoked"), "{reason}");
        expect_session_ended_at_the_agent(&mut parties, &second).await;
        let ends = session_ends(&admin, &second);
        assert_eq!(ends.len(), 1, "{ends:?}");
        assert_eq!(ends[0]["detail"]["by"], "token_revoked");
        assert!(admin
            .run(&["session", "list", "--json"])
            .ok()
            .stdout
            .trim()
            .is_empty());
    });
}

#[test]
fn enrollment_tokens_obey_policy_limits_and_can_be_listed_and_revoked() {
    let mut world = World::new();
    let (relay, admin) = world.relay_and_admin();
    let tech = world.console("tech");
    tech.login(&relay, &token(&admin, "tina", "technician", &[]))
        .ok();
    // The defaults: at most 100 uses and 30 days.
    tech.run(&[
        "enroll-token",
        "create",
        "--uses",
        "100000",
        "--expires",
        "1h",
    ])
    .fails_with(1, "enroll_token_max_uses");
    tech.run(&["enroll-token", "create", "--uses", "1", "--expires", "365d"])
        .fails_with(1, "enroll_token_max_lifetime");
    admin
        .run(&["policy", "set", "enroll_token_max_uses", "5"])
        .ok();
    let shown = admin.run(&["policy", "show", "--json"]).ok().stdout;
    assert!(shown.contains("enroll_token_max_uses"), "{shown}");
    tech.run(&["enroll-token", "create", "--uses", "6"])
        .fails_with(1, "from 1 to 5 devices");
    let created = tech
        .run(&[
            "enroll-token",
            "create",
            "--uses",
            "5",
            "--group",
            "paris",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(created["group"], "paris");
    assert!(tech
        .run(&["enroll-token", "create", "--group", "lyon"])
        .ok()
        .stdout
        .contains("joining group \"lyon\""));

    let listed = tech
        .run(&["enroll-token", "list", "--json"])
        .ok()
        .json_lines();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["group"], "paris");
    assert_eq!(listed[0]["uses_left"], 5);
    assert_eq!(listed[0]["created_by"], "tina");
    assert!(listed.iter().all(|t| t.get("token").is_none()));
    let id = listed[0]["id"].as_u64().unwrap().to_string();
    tech.run(&["enroll-token", "revoke", &id])
        .fails_with(1, "permission denied");
    let revoked = admin
        .run(&["enroll-token", "revoke", &id, "--json"])
        .ok()
        .json();
    assert_eq!(revoked["status"], "revoked");
    world
        .agent("late")
        .run(&["enroll", created["token"].as_str().unwrap()])
        .fails_with(1, "not valid");
    assert!(audit(&admin)
        .iter()
        .any(|row| row["action"] == "enroll_token.revoke"));
}

#[test]
fn the_same_agent_key_retrying_a_single_use_token_gets_the_same_device() {
    let mut world = World::new();
    let (relay, admin) = world.relay_and_admin();
    let secret = EnrollToken::decode(&admin.enroll_token(1, "1h"))
        .unwrap()
        .secret;
    let identity = Identity::generate(&["deskside-agent"]).unwrap();
    let enroll = |identity: Identity| {
        let secret = secret.clone();
        let relay = &relay;
        async move {
            let mut peer = Peer::connect(&relay.addr, fingerprint(relay), Some(identity)).await;
            peer.send()
                .send(&AgentToRelay::Enroll {
                    secret,
                    info: info(),
                })
                .await
                .unwrap();
            let answer = within("the enrollment answer", peer.recv().recv::<RelayToAgent>())
                .await
                .unwrap();
            peer.close().await;
            answer
        }
    };
    runtime().block_on(async {
        let first = match enroll(identity.clone()).await {
            Some(RelayToAgent::Enrolled { device_id, .. }) => device_id,
            other => panic!("{other:?}"),
        };
        // The agent lost the answer (crash, network) and retries.
        match enroll(identity.clone()).await {
            Some(RelayToAgent::Enrolled { device_id, .. }) => assert_eq!(device_id, first),
            other => panic!("the retry was refused: {other:?}"),
        }
        // Another key finds the single use spent.
        match enroll(Identity::generate(&["deskside-agent"]).unwrap()).await {
            Some(RelayToAgent::Refused(_)) => {}
            other => panic!("{other:?}"),
        }
    });
    assert_eq!(admin.devices().len(), 1);
}

#[test]
fn groups_show_names_are_unique_and_the_last_admin_stays() {
    let mut world = World::new();
    let (_relay, admin) = world.relay_and_admin();
    let created = admin
        .run(&["enroll-token", "create", "--group", "paris", "--json"])
        .ok()
        .json();
    let agent = world.agent("laptop");
    let device = agent.enroll(created["token"].as_str().unwrap());
    let listed = admin.devices();
    assert_eq!(listed[0]["group"], "paris");
    assert!(admin
        .run(&["devices", "list"])
        .ok()
        .stdout
        .contains("paris"));
    let shown = admin.run(&["devices", "show", &device]).ok().stdout;
    assert!(
        shown.contains("group") && shown.contains("paris"),
        "{shown}"
    );

    token(&admin, "Ana", "technician", &[]);
    admin
        .run(&["tokens", "create", "--name", "ana", "--role", "viewer"])
        .fails_with(1, "already named");
    admin.run(&["tokens", "revoke", "Ana"]).ok();
    token(&admin, "Ana", "viewer", &[]);

    // The bootstrap token (id 1) is the only admin.
    admin
        .run(&["tokens", "revoke", "1"])
        .fails_with(1, "last active admin token");
    let tokens = admin.run(&["tokens", "list", "--json"]).ok().json_lines();
    assert_eq!(tokens[0]["status"], "active");
}

#[test]
fn an_agent_that_dies_before_saving_its_enrollment_retries_as_the_same_device() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut world = World::new();
    let (_relay, admin) = world.relay_and_admin();
    let token = admin.enroll_token(1, "1h");
    let agent = world.agent("laptop");
    // The relay accepts, then saving the key fails (a directory is in the
    // way): the same as dying between the answer and the files.
    std::fs::create_dir_all(agent.key_path().join("in-the-way")).unwrap();
    std::fs::set_permissions(&agent.state_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let failed = agent.run(&["enroll", &token]);
    assert_ne!(
        failed.code, 0,
        "saving should have failed: {}",
        failed.stdout
    );
    let enrolled = admin.devices();
    assert_eq!(
        enrolled.len(),
        1,
        "the relay recorded the device: {enrolled:?}"
    );
    std::fs::remove_dir_all(agent.key_path()).unwrap();
    // The single-use token is spent, yet the retry gets the same device.
    let device = agent.enroll(&token);
    assert_eq!(enrolled[0]["id"], device.as_str());
    assert_eq!(admin.devices().len(), 1);
    assert!(!agent.state_dir.join("enroll-pending.json").exists());
}

#[test]
fn a_console_waiting_on_the_relay_prints_why_its_access_ended() {
    let mut world = World::new();
    let (relay, admin) = world.relay_and_admin();
    let ted = token(&admin, "ted", "technician", &[]);
    let console = world.console("ted");
    console.login(&relay, &ted).ok();
    runtime().block_on(async {
        // An attached agent that never answers: `deskside diag` waits.
        let mut parties = parties(&relay.addr, fingerprint(&relay), &ted).await;
        let mut waiting = std::process::Command::new(deskside_tests::bin("deskside"))
            .arg("--profile")
            .arg(&console.profile)
            .args(["diag", &parties.device])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The relay asked the agent: the console's request is in flight.
        let asked = parties.agent.agent_message().await;
        assert!(
            format!("{asked:?}").contains("CollectDiagnostics"),
            "{asked:?}"
        );
        admin.run(&["tokens", "revoke", "ted"]).ok();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = waiting.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the console still waits 10 s after the revocation"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let output = waiting.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("your technician token was revoked"),
            "{stderr}"
        );
        assert!(stderr.contains("deskside login"), "{stderr}");
    });
}

#[test]
fn a_revocation_written_by_another_relay_is_seen_within_about_a_second() {
    let mut world = World::new();
    let (relay, admin) = world.relay_and_admin();
    let (secret, id) = admin_token_with_id(&admin, "otto");
    runtime().block_on(async {
        let mut peer = Peer::console(&relay.addr, fingerprint(&relay), &secret).await;
        assert!(peer.request(ConsoleRequest::ListDevices).await.is_ok());
        // Another process sharing the database revokes the token: this
        // relay's registry never hears of it.
        let store = deskside_relay::store::Store::open(&relay.data_dir.join("relay.db")).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        store
            .revoke_technician_token(deskside_relay::store::OrgId(1), id, "test", now)
            .unwrap()
            .unwrap();
        let revoked_at = Instant::now();
        let connection = peer.connection();
        let mut next = 1000;
        while connection.close_reason().is_none() {
            assert!(
                revoked_at.elapsed() < Duration::from_secs(5),
                "requests still run 5 s after the revocation"
            );
            next += 1;
            let _ = peer
                .send()
                .send(&raw_request(next, ConsoleRequest::ListDevices))
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (_, reason) = closed_for_access(&connection, Duration::from_secs(1)).await;
        assert!(reason.contains("revoked"), "{reason}");
        assert!(
            revoked_at.elapsed() < Duration::from_millis(2500),
            "seen after {:?}",
            revoked_at.elapsed()
        );
    });
}

#[test]
fn an_admin_revoking_its_own_token_gets_the_answer_then_nothing_more() {
    let mut world = World::new();
    let (relay, admin) = world.relay_and_admin();
    let (secret, id) = admin_token_with_id(&admin, "leaving");
    runtime().block_on(async {
        let mut peer = Peer::console(&relay.addr, fingerprint(&relay), &secret).await;
        match peer
            .request(ConsoleRequest::RevokeTechnicianToken { id })
            .await
        {
            Ok(ConsoleResponse::TechnicianTokenRevoked(info)) => {
                assert!(info.revoked_at.is_some())
            }
            other => panic!("{other:?}"),
        }
        // The next request on the same connection ends it.
        let _ = peer
            .send()
            .send(&raw_request(77, ConsoleRequest::ListDevices))
            .await;
        let (_, reason) = closed_for_access(&peer.connection(), Duration::from_secs(2)).await;
        assert!(reason.contains("revoked"), "{reason}");
    });
}
