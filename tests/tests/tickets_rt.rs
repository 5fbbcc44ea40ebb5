//! The Request Tracker connector against the real RT 5 from Debian
//! (`deskside_tests::rt`): a real relay, agent and console; RT read back
//! through its REST 2.0 API.

use std::time::{Duration, Instant};

use deskside_tests::rt::{LosingProxy, Rt};
use deskside_tests::{wait_for, Console, World};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(60);
const QUEUE: &str = "Helpdesk";
/// The queue of a second connector, straight to RT with basic
/// authentication (RT's initial `root` password).
const BASIC_QUEUE: &str = "Helpdesk basic";

fn show(console: &Console, number: u64) -> Value {
    console
        .run(&["requests", "show", &number.to_string(), "--json"])
        .ok()
        .json()
}

/// The texts of `requests show`'s events of `kind` by the `rt` connector.
fn rt_events(console: &Console, number: u64, kind: &str) -> Vec<String> {
    connector_events(console, number, kind, "rt")
}

fn connector_events(console: &Console, number: u64, kind: &str, connector: &str) -> Vec<String> {
    show(console, number)["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["kind"] == kind && e["author"] == connector)
                .filter_map(|e| e["text"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The subjects of ticket `id`'s comments (unfolded: RT keeps a long
/// subject folded over lines, as in the mail header).
fn comments(rt: &Rt, id: u64) -> Vec<String> {
    rt.history(id)
        .iter()
        .filter(|t| t["Type"] == "Comment")
        .map(|t| {
            let subject = t["Data"].as_str().unwrap_or_default();
            subject.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .collect()
}

fn comments_with(rt: &Rt, id: u64, needle: &str) -> usize {
    comments(rt, id)
        .iter()
        .filter(|s| s.contains(needle))
        .count()
}

#[test]
fn a_help_request_becomes_one_rt_ticket_whose_events_are_comments_once() {
    let started = Instant::now();
    let Some(mut rt) = Rt::start(QUEUE) else {
        return;
    };
    let proxy = LosingProxy::start(rt.port());

    let mut world = World::new();
    let token_file = world.path("rt.token");
    deskside_net::files::write_private(&token_file, rt.token().as_bytes()).expect("token file");
    let password_file = world.path("rt.password");
    deskside_net::files::write_private(&password_file, b"password").expect("password file");
    rt.post("/queue", &serde_json::json!({ "Name": BASIC_QUEUE }));
    // A generous exchange limit: the relay must still be waiting for the
    // answer the proxy loses when the test kills it.
    let config = format!(
        r#"
[tickets]
retry_initial = "300ms"
retry_max = "1s"
timeout = "30s"

[[tickets.connector]]
type = "rt"
url = "{url}"
queue = "{QUEUE}"
token_file = {token_file:?}
default_requestor = "helpdesk@example.org"

[[tickets.connector]]
type = "rt"
name = "rt-basic"
url = "{rt_url}"
queue = "{BASIC_QUEUE}"
user = "root"
password_file = {password_file:?}
"#,
        url = proxy.url(),
        rt_url = rt.url(),
    );
    let config_path = world.path("relay.toml");
    std::fs::write(&config_path, config).expect("relay.toml");
    let config_arg = config_path.display().to_string();
    let mut relay = world.relay_with(None, &["--config", &config_arg]);
    let port = relay.port();
    let admin = world.console("admin");
    admin.login_admin(&relay);
    let agent = world.agent("laptop");
    agent.enroll(&admin.enroll_token(1, "10m"));

    // RT makes the ticket but its answer is lost, and the relay is killed
    // before it hears it: the restarted relay finds that ticket instead of
    // making a second one.
    proxy.lose_next("POST", "/REST/2.0/ticket");
    let sent = agent.ask_help(
        "video calls freeze every few minutes",
        "blocked",
        &[
            "--apps",
            "video",
            "--contact",
            "email bob.martin@example.org, mornings",
        ],
    );
    assert_eq!(sent["status"], "sent", "{sent}");
    let number = sent["number"].as_u64().expect("a request number");
    wait_for("RT to make the ticket whose answer is lost", LONG, || {
        (proxy.lost() == 1).then_some(())
    });
    relay.proc.kill();
    let mut relay = world.relay_with(Some(port), &["--config", &config_arg]);
    let shown = wait_for("the RT ticket in requests show", LONG, || {
        rt_events(&admin, number, "ticket").into_iter().next()
    });
    let marker = format!("[deskside #{number}]");
    let ids = rt.ticket_ids(&format!("Queue = '{QUEUE}'"));
    assert_eq!(ids.len(), 1, "one ticket in the queue: {ids:?}");
    let id = ids[0];
    assert_eq!(
        shown,
        format!("RT #{id} {}/Ticket/Display.html?id={id}", proxy.url())
    );

    // The ticket's fields.
    let ticket = rt.ticket(id);
    assert_eq!(
        ticket["Subject"],
        format!("{marker} video calls freeze every few minutes"),
        "{ticket}"
    );
    let queue = rt.get(&format!(
        "/queue/{}",
        ticket["Queue"]["id"].as_str().expect("queue id")
    ));
    assert_eq!(queue["Name"], QUEUE);
    let requestors: Vec<&str> = ticket["Requestor"]
        .as_array()
        .map(|r| r.iter().filter_map(|u| u["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(requestors, ["bob.martin@example.org"], "{ticket}");
    let attachments = rt.attachments(id);
    let content = attachments
        .iter()
        .find(|a| a.filename.is_empty() && a.content_type == "text/plain")
        .map(|a| a.content.clone())
        .expect("the ticket's text");
    assert!(
        content.contains("Problem: video calls freeze every few minutes")
            && content.contains("Contact: email bob.martin@example.org, mornings")
            && content.contains(&format!("Help request {number} from ")),
        "{content}"
    );
    let named = |name: &str| {
        attachments
            .iter()
            .filter(|a| a.filename == name)
            .collect::<Vec<_>>()
    };
    let summaries = named(&format!("request-{number}.txt"));
    assert_eq!(summaries.len(), 1, "the summary attached once");
    assert!(summaries[0]
        .content
        .contains("Problem: video calls freeze every few minutes"));
    let snapshots = named(&format!("snapshot-{number}.json"));
    assert_eq!(snapshots.len(), 1, "the snapshot attached once");
    assert_eq!(snapshots[0].content_type, "application/json");
    let snapshot: Value = serde_json::from_str(&snapshots[0].content).expect("snapshot JSON");
    assert!(snapshot.is_object(), "{snapshot}");

    // Claim and reply: comments on the same ticket.
    let n = number.to_string();
    admin.run(&["requests", "claim", &n]).ok();
    admin
        .run(&["requests", "reply", &n, "Please restart your router."])
        .ok();
    wait_for("the claim and the reply as comments", LONG, || {
        let subjects = comments(&rt, id);
        (subjects.iter().any(|s| s.contains("took the request"))
            && subjects
                .iter()
                .any(|s| s.contains("Please restart your router.")))
        .then_some(())
    });

    // The resolution's comment is made but its answer lost; the relay is
    // killed, and comes back while RT is down: the delivery waits, shown
    // as failing; once RT is back the comment is not made twice and the
    // ticket is resolved.
    proxy.lose_next("POST", &format!("/REST/2.0/ticket/{id}/comment"));
    admin
        .run(&["requests", "resolve", &n, "--note", "router replaced"])
        .ok();
    wait_for(
        "RT to take the resolution whose answer is lost",
        LONG,
        || (proxy.lost() == 2).then_some(()),
    );
    relay.proc.kill();
    rt.stop();
    let mut relay = world.relay_with(Some(port), &["--config", &config_arg]);
    let why = wait_for("the failing RT delivery in requests show", LONG, || {
        rt_events(&admin, number, "delivery_failing")
            .into_iter()
            .find(|text| !text.contains(" 1 failed attempt"))
    });
    assert!(why.contains("failed attempt"), "{why}");
    rt.restart();
    wait_for("the RT ticket resolved", LONG, || {
        (rt.ticket(id)["Status"] == "resolved").then_some(())
    });
    wait_for("nothing left failing", LONG, || {
        rt_events(&admin, number, "delivery_failing")
            .is_empty()
            .then_some(())
    });

    // Reopening: a comment, and the ticket open again.
    admin.run(&["requests", "reopen", &n]).ok();
    wait_for("the RT ticket open again", LONG, || {
        (rt.ticket(id)["Status"] == "open").then_some(())
    });

    // Exactly once: one ticket, each event one comment carrying its id,
    // the evidence attached once.
    assert_eq!(rt.ticket_ids(&format!("Queue = '{QUEUE}'")), [id]);
    let subjects = comments(&rt, id);
    assert_eq!(
        subjects.len(),
        4,
        "claim, reply, resolution, reopening: {subjects:?}"
    );
    for needle in [
        "took the request",
        "Please restart your router.",
        "resolved the request: router replaced",
        "reopened the request",
    ] {
        assert_eq!(comments_with(&rt, id, needle), 1, "{needle}: {subjects:?}");
    }
    let mut events: Vec<&str> = subjects
        .iter()
        .map(|s| {
            assert!(s.starts_with(&format!("{marker} event ")), "{s}");
            s.split(':').next().unwrap_or_default()
        })
        .collect();
    events.sort_unstable();
    events.dedup();
    assert_eq!(events.len(), 4, "distinct events: {subjects:?}");
    let attachments = rt.attachments(id);
    assert_eq!(
        attachments
            .iter()
            .filter(|a| a.filename.starts_with("snapshot-"))
            .count(),
        1
    );

    // The second connector (basic authentication, no lost answers, the
    // same relay kills and RT outage): its own ticket, the same events once.
    let basic = rt.ticket_ids(&format!("Queue = '{BASIC_QUEUE}'"));
    assert_eq!(basic.len(), 1, "{basic:?}");
    let basic = basic[0];
    assert_ne!(basic, id);
    wait_for("the basic connector's reopening", LONG, || {
        (rt.ticket(basic)["Status"] == "open" && comments(&rt, basic).len() >= 4).then_some(())
    });
    let basic_subjects = comments(&rt, basic);
    assert_eq!(
        basic_subjects.len(),
        4,
        "claim, reply, resolution, reopening: {basic_subjects:?}"
    );
    assert_eq!(
        rt.ticket(basic)["Subject"],
        format!("{marker} video calls freeze every few minutes")
    );
    wait_for("nothing failing for the basic connector", LONG, || {
        connector_events(&admin, number, "delivery_failing", "rt-basic")
            .is_empty()
            .then_some(())
    });
    let audit = admin.run(&["audit", "list", "--json"]).ok().json_lines();
    assert_eq!(
        audit
            .iter()
            .filter(|a| a["action"] == "request.ticket")
            .count(),
        2,
        "one audited ticket per connector"
    );
    let status = relay.proc.terminate();
    assert!(status.success(), "the relay stops cleanly: {status:?}");
    eprintln!(
        "RT e2e took {:?} (RT's start: {:?})",
        started.elapsed(),
        rt.started_in
    );
}
