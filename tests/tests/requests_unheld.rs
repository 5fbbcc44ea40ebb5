//! A session linked to a help request that never ran still leaves its
//! trace on the request: a real relay (with a signed webhook, the strict
//! fake of `deskside_tests::ticketing`), a device and a technician as raw
//! protocol peers (`deskside_tests::peers`), and the real console reading
//! the request back.
//!
//! The employee refuses two sessions linked to the request: one refused
//! after the technician linked it, one refused before the link was made
//! (the console links right after the relay opened the session, so a quick
//! refusal can come first); a third, linked and never answered, is
//! withdrawn when the technician's console goes away. Each becomes one
//! `session_not_held` event that says who asked, when, for what and why
//! nothing happened, and the outbox delivers it to the webhook.

use std::time::{Duration, Instant};

use deskside_protocol::agent::{AgentToRelay, RelayToAgent, SessionRequest};
use deskside_protocol::console::{ConsoleRequest, ConsoleResponse};
use deskside_protocol::request::{Answers, HelpRequest, RequestAction};
use deskside_protocol::session::Capabilities;
use deskside_protocol::SessionId;
use deskside_tests::peers::{parties, within, Parties};
use deskside_tests::ticketing::FakeWebhook;
use deskside_tests::{secret_scan, wait_for, World};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(60);
const HOOK_SECRET: &str = "hook-secret-unheld-0123456789";

async fn file_request(parties: &mut Parties) -> u64 {
    parties
        .agent
        .send()
        .send(&AgentToRelay::HelpRequest(HelpRequest {
            client_id: "unheld1".into(),
            created_ms: 1_700_000_000_000,
            answers: Answers {
                summary: "the printer does not print".into(),
                since: "today".into(),
                pattern: "ongoing".into(),
                apps: vec!["printer".into()],
                urgency: "slowed".into(),
                impact: "me".into(),
                contact: "chat".into(),
                lang: "en".into(),
            },
            snapshot_json: None,
            failures: Vec::new(),
        }))
        .await
        .expect("send the request");
    match next(parties).await {
        RelayToAgent::HelpRequestStored { number, .. } => number,
        other => panic!("the help request was not stored: {other:?}"),
    }
}

/// The agent's next message, past the relay's pushes of the employee's
/// requests (each technician action sends one).
async fn next(parties: &mut Parties) -> RelayToAgent {
    loop {
        match within("a relay message", parties.agent.agent_message()).await {
            RelayToAgent::HelpRequests(_) => continue,
            other => return other,
        }
    }
}

/// The technician asks for a view session; returns the request the agent got.
async fn ask(parties: &mut Parties) -> SessionRequest {
    let key = parties.console_identity.key_fingerprint().expect("key");
    assert_eq!(
        parties
            .console
            .request(ConsoleRequest::RegisterSessionKey { key })
            .await,
        Ok(ConsoleResponse::Done)
    );
    let opened = match parties
        .console
        .request(ConsoleRequest::OpenSession {
            device: parties.device.clone(),
            capabilities: Capabilities::VIEW,
            reason: "the printer does not print".into(),
        })
        .await
    {
        Ok(ConsoleResponse::SessionOpened(opened)) => opened,
        other => panic!("no session: {other:?}"),
    };
    match next(parties).await {
        RelayToAgent::SessionRequest(request) if request.session_id == opened.session_id => request,
        other => panic!("expected the session request, got {other:?}"),
    }
}

/// The employee refuses; the relay confirms it recorded the answer.
async fn refuse(parties: &mut Parties, request: &SessionRequest) {
    parties
        .agent
        .send()
        .send(&AgentToRelay::SessionConsent {
            session_id: request.session_id,
            granted: None,
            outcome: "refused".into(),
        })
        .await
        .expect("send the answer");
    match next(parties).await {
        RelayToAgent::ConsentRecorded { session_id } => assert_eq!(session_id, request.session_id),
        other => panic!("expected ConsentRecorded, got {other:?}"),
    }
}

async fn link(parties: &mut Parties, number: u64, session_id: SessionId) {
    match parties
        .console
        .request(ConsoleRequest::ActOnRequest {
            number,
            action: RequestAction::LinkSession { session_id },
        })
        .await
    {
        Ok(ConsoleResponse::Request(_)) => {}
        other => panic!("the session was not linked: {other:?}"),
    }
}

#[test]
fn a_linked_session_the_employee_refused_is_a_follow_up_on_the_request() {
    let started = Instant::now();
    secret_scan::remember(HOOK_SECRET);
    let hook = FakeWebhook::start(HOOK_SECRET);
    let mut world = World::new();
    let secret = world.path("hook.secret");
    deskside_net::files::write_private(&secret, HOOK_SECRET.as_bytes()).expect("secret file");
    let config = format!(
        r#"
[tickets]
retry_initial = "200ms"
retry_max = "500ms"

[[tickets.connector]]
type = "webhook"
name = "hooks"
url = "{}"
secret_file = {secret:?}
"#,
        hook.url()
    );
    let config_path = world.path("relay.toml");
    std::fs::write(&config_path, config).expect("relay.toml");
    let relay = world.relay_with(None, &["--config", &config_path.display().to_string()]);
    let admin = world.console("admin");
    admin.login_admin(&relay);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let fingerprint = relay.fingerprint.parse().expect("fingerprint");
    let (number, sessions) = runtime.block_on(async {
        let mut parties = parties(&relay.addr, fingerprint, &relay.admin_token).await;
        let number = file_request(&mut parties).await;
        // Linked, then refused.
        let first = ask(&mut parties).await;
        link(&mut parties, number, first.session_id).await;
        refuse(&mut parties, &first).await;
        // Refused, then linked.
        let second = ask(&mut parties).await;
        refuse(&mut parties, &second).await;
        link(&mut parties, number, second.session_id).await;
        // Linked, unanswered, and the technician's console goes away: the
        // relay withdraws it.
        let third = ask(&mut parties).await;
        link(&mut parties, number, third.session_id).await;
        parties.close().await;
        (
            number,
            [first.session_id, second.session_id, third.session_id],
        )
    });

    let events: Vec<Value> = wait_for("the three follow-ups", LONG, || {
        let shown = admin
            .run(&["requests", "show", &number.to_string(), "--json"])
            .ok()
            .json();
        let events: Vec<Value> = shown["events"]
            .as_array()?
            .iter()
            .filter(|e| e["kind"] == "session_not_held")
            .cloned()
            .collect();
        (events.len() >= 3).then_some(events)
    });
    assert_eq!(
        events.len(),
        3,
        "one per session that never ran: {events:?}"
    );
    // Each session that never ran is told once: by its stored event, not
    // a second time from the sessions table ("not granted (refused)"), in
    // the JSON and in the human output.
    let shown = admin
        .run(&["requests", "show", &number.to_string(), "--json"])
        .ok()
        .json();
    let human = admin
        .run(&["requests", "show", &number.to_string()])
        .ok()
        .stdout;
    for session in sessions {
        let prefix = format!("session {session:016x} ");
        let told: Vec<&Value> = shown["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| e["text"].as_str().is_some_and(|t| t.starts_with(&prefix)))
            .collect();
        assert_eq!(told.len(), 1, "{prefix}told once in --json: {told:?}");
        assert_eq!(told[0]["kind"], "session_not_held", "{told:?}");
        let lines = human
            .lines()
            .filter(|l| l.contains(&format!(": {prefix}")))
            .count();
        assert_eq!(lines, 1, "{prefix}told once in the human output:\n{human}");
    }
    let why = [
        "the employee refused it",
        "the employee refused it",
        "it was withdrawn before the employee answered",
    ];
    for ((event, session), why) in events.iter().zip(sessions).zip(why) {
        let text = event["text"].as_str().expect("text");
        assert!(
            text.starts_with(&format!("session {session:016x} asked 20")),
            "which session and when it was asked: {text}"
        );
        assert!(
            text.contains(&format!(" for view: {why}")),
            "what was asked and why nothing happened: {text}"
        );
        assert!(
            event["author"].as_str().is_some_and(|a| !a.is_empty()),
            "who asked: {event}"
        );
    }
    // The outbox delivers them like every other event.
    let delivered = wait_for("the follow-ups at the webhook", LONG, || {
        let texts: Vec<String> = hook
            .state()
            .deliveries
            .iter()
            .filter(|d| d["event"]["kind"] == "session_not_held")
            .map(|d| d["event"]["text"].as_str().unwrap_or_default().to_owned())
            .collect();
        (texts.len() == 3).then_some(texts)
    });
    for (text, event) in delivered.iter().zip(&events) {
        assert_eq!(Some(text.as_str()), event["text"].as_str());
    }
    let audit = admin.run(&["audit", "list", "--json"]).ok().json_lines();
    assert_eq!(
        audit
            .iter()
            .filter(|a| a["action"] == "request.session_follow_up")
            .count(),
        3,
        "each follow-up is audited"
    );
    eprintln!("unheld-session e2e took {:?}", started.elapsed());
}

/// A session asked for with `--request` while the device is offline never
/// exists, yet the request says it was asked for and why nothing happened:
/// the real console is refused as before (exit code 1, "is offline") and
/// the relay writes one `session_not_held` event, audited.
#[test]
fn a_session_asked_for_while_the_device_is_offline_is_a_follow_up_on_the_request() {
    let started = Instant::now();
    let mut world = World::new();
    let relay = world.relay(None);
    let admin = world.console("admin");
    admin.login_admin(&relay);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let fingerprint = relay.fingerprint.parse().expect("fingerprint");
    let (number, device) = runtime.block_on(async {
        let mut parties = parties(&relay.addr, fingerprint, &relay.admin_token).await;
        let number = file_request(&mut parties).await;
        let device = parties.device.clone();
        // The device goes away (the console peer too; the real one asks).
        parties.close().await;
        (number, device)
    });
    admin.wait_status(&device, "offline", LONG);

    admin
        .run(&[
            "session",
            &device,
            "--headless",
            "--reason",
            "the printer does not print",
            "--request",
            &number.to_string(),
        ])
        .fails_with(1, "is offline");

    let shown = admin
        .run(&["requests", "show", &number.to_string(), "--json"])
        .ok()
        .json();
    let events: Vec<&Value> = shown["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "session_not_held")
        .collect();
    assert_eq!(events.len(), 1, "one trace of the offline ask: {shown}");
    let text = events[0]["text"].as_str().expect("text");
    assert!(
        text.starts_with("a session asked 20")
            && text.contains(" for view+control: ")
            && text.contains("the device was offline"),
        "when, for what and why nothing happened: {text}"
    );
    assert!(
        events[0]["author"].as_str().is_some_and(|a| !a.is_empty()),
        "who asked: {}",
        events[0]
    );
    let audit = admin.run(&["audit", "list", "--json"]).ok().json_lines();
    assert_eq!(
        audit
            .iter()
            .filter(|a| a["action"] == "request.session_follow_up")
            .count(),
        1,
        "the follow-up is audited"
    );
    eprintln!("offline-session e2e took {:?}", started.elapsed());
}
