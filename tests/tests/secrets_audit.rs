//! End-to-end: nothing secret leaves a device or sits readable on the relay,
//! no secret reaches a log, and the audit log can be verified, also against
//! a rewrite that rehashed the whole chain.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use deskside_protocol::agent::AgentToRelay;
use deskside_protocol::token::EnrollToken;
use deskside_protocol::Fingerprint;
use deskside_tests::{bin, peers, secret_scan, wait_for, Enrolled, Proc, World};
use serde_json::Value;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn the_relay_refuses_a_data_directory_others_can_write() {
    let world = World::new();
    let dir = world.path("relay-data");
    std::fs::create_dir(&dir).unwrap();
    set_mode(&dir, 0o777);
    let output = Command::new(bin("deskside-relay"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "started on a 0777 directory: {stderr}"
    );
    assert!(
        stderr.contains(&format!("chmod 700 {}", dir.display())),
        "the message says what to run: {stderr}"
    );
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "nothing was created in the refused directory"
    );
}

#[test]
fn the_relay_makes_its_data_directory_and_every_file_owner_only() {
    let mut world = World::new();
    let dir = world.path("relay-data");
    std::fs::create_dir(&dir).unwrap();
    set_mode(&dir, 0o755);
    // A file some earlier tool left readable.
    std::fs::write(dir.join("notes.txt"), b"left by an operator").unwrap();
    set_mode(&dir.join("notes.txt"), 0o644);
    let relay = world.relay(None);
    let admin = world.console("admin");
    admin.login_admin(&relay);
    admin.enroll_token(1, "10m");
    assert_eq!(mode(&dir), 0o700, "the data directory");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    for expected in [
        "relay.db",
        "relay.db-wal",
        "relay.db-shm",
        "relay-key.pem",
        "reset.key",
        "admin-token",
        "audit-anchor.key",
        "notes.txt",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
}

#[test]
fn proxy_credentials_never_leave_the_agent() {
    let mut world = World::new();
    let Enrolled {
        relay,
        admin,
        agent,
        device,
    } = world.enrolled_laptop();
    let proxy = "http://alice:hunter2-proxy-pass@proxy.corp.invalid:3128";

    // The employee's own check: printed and kept in the local history.
    let local = Command::new(bin("deskside-agent"))
        .arg("--state-dir")
        .arg(&agent.state_dir)
        .args(["check", "--json"])
        .env("http_proxy", proxy)
        .env("HTTPS_PROXY", proxy)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&local.stdout);
    assert!(
        local.status.success(),
        "check failed: {}",
        String::from_utf8_lossy(&local.stderr)
    );
    assert!(
        !printed.contains("hunter2") && !printed.contains("alice"),
        "{printed}"
    );
    let snapshot: Value = printed
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v.get("network").is_some() || v.get("snapshot").is_some())
        .expect("a snapshot line");
    let snapshot = snapshot.get("snapshot").cloned().unwrap_or(snapshot);
    let shown = &snapshot["network"]["measured"]["proxy"];
    assert_eq!(shown["http"], "http://proxy.corp.invalid:3128", "{shown}");
    assert_eq!(shown["credentials"], "present", "{shown}");
    for entry in std::fs::read_dir(&agent.state_dir).unwrap() {
        let text = std::fs::read(entry.unwrap().path()).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&text).contains("hunter2"),
            "the agent's state directory keeps the proxy password"
        );
    }

    // A technician's collection: what the relay stores and shows.
    let mut command = Command::new(bin("deskside-agent"));
    command
        .arg("--state-dir")
        .arg(&agent.state_dir)
        .arg("run")
        .env("http_proxy", proxy)
        .env("RUST_LOG", "info,deskside_agent=debug");
    let (_running, _stdout) = world.spawn("laptop-run", command);
    admin.wait_status(&device, "online", Duration::from_secs(20));
    let fresh = admin.run(&["diag", &device, "--json"]).ok();
    let history = admin.run(&["diag", "history", &device, "--json"]).ok();
    for text in [&fresh.stdout, &history.stdout] {
        assert!(
            text.contains("proxy.corp.invalid"),
            "the proxy host is kept"
        );
        assert!(
            !text.contains("hunter2"),
            "the relay has the proxy password: {text}"
        );
    }
    let stored = std::fs::read(relay.data_dir.join("relay.db")).unwrap();
    let wal = std::fs::read(relay.data_dir.join("relay.db-wal")).unwrap_or_default();
    for bytes in [stored, wal] {
        assert!(
            !bytes.windows(7).any(|w| w == b"hunter2"),
            "the relay's database holds the proxy password"
        );
    }
}

#[test]
fn no_token_or_key_reaches_any_log() {
    let mut world = World::new();
    let (relay, admin) = world.relay_and_admin();
    // A technician token, used to log in.
    let issued = admin.create_token("ana", "technician");
    let ana = world.console("ana");
    ana.run(&["login", issued["login"].as_str().unwrap()]).ok();
    ana.run(&["devices", "list", "--json"]).ok();
    // An enrolled, running agent.
    let agent = world.agent("laptop");
    let device = agent.enroll(&admin.enroll_token(1, "10m"));
    let _running = world.run_agent(&agent);
    admin.wait_status(&device, "online", Duration::from_secs(20));
    // An attached agent that sends an enrollment secret (a buggy or hostile
    // agent): the relay closes the connection and logs why.
    let spare = admin.enroll_token(1, "10m");
    let secret = EnrollToken::decode(&spare).unwrap().secret;
    let fingerprint: Fingerprint = relay.fingerprint.parse().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut parties = peers::parties(&relay.addr, fingerprint, &relay.admin_token).await;
        parties
            .agent
            .send()
            .send(&AgentToRelay::Enroll {
                secret: secret.clone(),
                info: peers::info(),
            })
            .await
            .unwrap();
        peers::within(
            "the relay to close the connection",
            parties.agent.connection().closed(),
        )
        .await;
        // A console that sends its token twice.
        parties
            .console
            .send()
            .send(&deskside_protocol::console::ConsoleToRelay::Authenticate {
                token: relay.admin_token.clone(),
            })
            .await
            .unwrap();
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            parties.console.connection().closed(),
        )
        .await;
    });
    wait_for(
        "the relay to log the violation",
        Duration::from_secs(10),
        || relay.proc.log().contains("unexpected Enroll").then_some(()),
    );
    admin.run(&["tokens", "list", "--json"]).ok();
    admin.run(&["audit", "list", "--json"]).ok();
    assert!(
        secret_scan::remembered() >= 6,
        "the scan knows the secrets it looks for"
    );
    secret_scan::assert_no_secret_in_logs(&world.path(""));
}

/// Rows the audit log gets from a few admin actions.
fn make_audit_rows(admin: &deskside_tests::Console, n: usize) {
    for _ in 0..n {
        admin.enroll_token(1, "10m");
    }
}

fn relay_verify(data_dir: &Path, anchor: Option<&Path>) -> (i32, Value) {
    let mut command = Command::new(bin("deskside-relay"));
    command
        .args(["audit", "verify", "--json", "--data-dir"])
        .arg(data_dir);
    if let Some(anchor) = anchor {
        command.arg("--anchor-file").arg(anchor);
    }
    let output = command.stdin(Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), value)
}

#[test]
fn audit_verify_says_where_the_chain_breaks() {
    let mut world = World::new();
    let (mut relay, admin) = world.relay_and_admin();
    make_audit_rows(&admin, 3);
    let verified = admin.run(&["audit", "verify", "--json"]).ok().json();
    assert_eq!(verified["ok"], true, "{verified}");
    assert!(verified["rows"].as_u64().unwrap() >= 4, "{verified}");
    relay.proc.terminate();

    let (code, report) = relay_verify(&relay.data_dir, None);
    assert_eq!((code, &report["ok"]), (0, &Value::Bool(true)), "{report}");
    // Change row 2 without rehashing: a plain chain check names it.
    let store = deskside_relay::store::Store::open(&relay.data_dir.join("relay.db")).unwrap();
    store
        .forge_audit_row(2, r#"{"forged":true}"#, false)
        .unwrap();
    drop(store);
    let (code, report) = relay_verify(&relay.data_dir, None);
    assert_eq!(code, 2, "{report}");
    assert_eq!(report["broken_at"], 2, "{report}");
    assert!(
        report["problem"]
            .as_str()
            .unwrap()
            .contains("do not give its stored hash"),
        "{report}"
    );

    let relay = world.relay(Some(relay.port()));
    let run = admin.run(&["audit", "verify"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("row 2:"), "{}", run.stderr);
    drop(relay);
}

#[test]
fn audit_verify_catches_a_rehashed_chain_against_its_anchors() {
    let mut world = World::new();
    let anchor_dir = world.path("other-volume");
    std::fs::create_dir(&anchor_dir).unwrap();
    let anchor_file = anchor_dir.join("audit-heads.jsonl");
    let anchor_arg = anchor_file.to_str().unwrap().to_owned();
    let mut relay = world.relay_with(
        None,
        &[
            "--audit-anchor-file",
            &anchor_arg,
            "--audit-anchor-interval",
            "1s",
        ],
    );
    let admin = world.console("admin");
    admin.login_admin(&relay);
    make_audit_rows(&admin, 4);
    // The console keeps the signed head it saw.
    let first = admin.run(&["audit", "verify", "--json"]).ok().json();
    assert_eq!(first["ok"], true, "{first}");
    let head_id = first["head_id"].as_i64().unwrap();
    assert!(head_id >= 5, "{first}");
    assert!(admin.profile.with_extension("audit-head.json").exists());
    // The relay anchors the head in its file within a second or two.
    wait_for(
        "the anchor file to hold the head",
        Duration::from_secs(15),
        || {
            std::fs::read_to_string(&anchor_file)
                .ok()
                .filter(|t| t.lines().any(|l| l.contains(&format!("\"id\":{head_id},"))))
        },
    );
    make_audit_rows(&admin, 2);
    relay.proc.terminate();
    let (code, report) = relay_verify(&relay.data_dir, Some(&anchor_file));
    assert_eq!(code, 0, "{report}");
    assert!(report["anchors_matched"].as_u64().unwrap() >= 1, "{report}");

    // Someone with write access to the database rewrites row 2 and
    // rehashes the whole chain after it.
    let store = deskside_relay::store::Store::open(&relay.data_dir.join("relay.db")).unwrap();
    store
        .forge_audit_row(2, r#"{"uses":1,"note":"rewritten"}"#, true)
        .unwrap();
    let check = store.check_audit_chain().unwrap();
    assert_eq!(
        check.broken, None,
        "the rehashed chain passes a plain check"
    );
    drop(store);
    let (code, report) = relay_verify(&relay.data_dir, None);
    assert_eq!(
        code, 0,
        "without an anchor the rewrite is invisible: {report}"
    );

    // The anchor file catches it.
    let (code, report) = relay_verify(&relay.data_dir, Some(&anchor_file));
    assert_eq!(code, 2, "{report}");
    let problem = report["problem"].as_str().unwrap();
    assert!(
        problem.contains("was changed and the chain rehashed"),
        "{problem}"
    );
    assert!(
        report["anchor_mismatch_at"].as_i64().unwrap() >= 2,
        "{report}"
    );

    // And so does the console's kept head.
    let _relay = world.relay_with(Some(relay.port()), &["--audit-anchor-file", &anchor_arg]);
    let run = admin.run(&["audit", "verify"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("no longer extends the head signed at"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("row {head_id}")),
        "{}",
        run.stderr
    );
    // It keeps failing: the kept head is not replaced by the forged one.
    let again = admin.run(&["audit", "verify", "--json"]);
    assert_eq!(again.code, 1);
}

#[test]
fn the_wifi_identifier_key_reaches_agents_but_never_the_database() {
    let mut world = World::new();
    let (Enrolled { relay, admin, .. }, _running, policy) = laptop_with_kept_policy(&mut world);
    let key = policy["identifier_key"].as_str().unwrap().to_owned();
    assert!(key.len() >= 43, "a 32-byte key: {key}");
    assert!(
        policy["identifier_salt"].is_null(),
        "no salt any more: {policy}"
    );
    // The key is derived from a file outside the database…
    let key_file = relay.data_dir.join("identifier.key");
    assert_eq!(mode(&key_file), 0o600);
    // …and neither it nor a salt is in the database a thief could copy.
    for name in ["relay.db", "relay.db-wal"] {
        let bytes = std::fs::read(relay.data_dir.join(name)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&key), "{name} holds the identifier key");
        assert!(
            !text.contains("\"identifier_salt\":\""),
            "{name} holds a salt"
        );
    }
    // Technicians never see it.
    let shown = admin.run(&["policy", "show", "--json"]).ok().stdout;
    assert!(
        !shown.contains(&key) && !shown.contains("identifier_key\":\""),
        "{shown}"
    ); // Nor does any process log it.
    secret_scan::remember(&key);
    secret_scan::assert_no_secret_in_logs(&world.path(""));
}

#[test]
fn a_salt_stored_by_an_older_relay_is_removed_from_the_database() {
    let mut world = World::new();
    // The database an older relay left: an organisation whose settings hold
    // the identifier salt.
    let dir = world.path("relay-data");
    std::fs::create_dir(&dir).unwrap();
    set_mode(&dir, 0o700);
    let salt = "c2FsdC1mcm9tLWFuLW9sZGVyLXJlbGF5";
    let token = deskside_relay::secrets::new_technician_token().unwrap();
    {
        let store = deskside_relay::store::Store::open(&dir.join("relay.db")).unwrap();
        let org = store
            .bootstrap(
                "Default",
                "admin",
                &deskside_relay::secrets::hash_secret(&token),
                1,
            )
            .unwrap()
            .unwrap();
        let settings = serde_json::json!({ "identifier_salt": salt, "diagnostics_retention": 200 });
        store
            .set_organisation_settings(
                org,
                &settings.to_string(),
                "policy.salt_created",
                &serde_json::json!({}),
                "system",
                2,
            )
            .unwrap();
    }
    std::fs::write(dir.join("admin-token"), format!("{token}\n")).unwrap();
    set_mode(&dir.join("admin-token"), 0o600);

    let (Enrolled { relay, admin, .. }, _running, policy) = laptop_with_kept_policy(&mut world);
    assert!(policy["identifier_salt"].is_null(), "{policy}");
    let audit = admin.run(&["audit", "list", "--json"]).ok().json_lines();
    assert!(
        audit
            .iter()
            .any(|row| row["action"] == "policy.identifier_salt_removed"),
        "the migration is audited"
    );
    // The settings no longer hold it (older WAL frames are overwritten at
    // the next checkpoints).
    assert!(!newest_settings_hold_salt(&relay.data_dir, salt));
}

/// Starts a relay with an enrolled laptop whose agent runs and is online,
/// and waits for the agent to keep a policy holding an identifier key.
/// Returns the set-up, the running agent (keep it alive) and that policy.
fn laptop_with_kept_policy(world: &mut World) -> (Enrolled, Proc, Value) {
    let enrolled = world.enrolled_laptop();
    let running = world.run_agent(&enrolled.agent);
    enrolled
        .admin
        .wait_status(&enrolled.device, "online", Duration::from_secs(20));
    let kept = enrolled.agent.state_dir.join("policy.json");
    let policy: Value = wait_for(
        "the agent to keep the policy",
        Duration::from_secs(15),
        || {
            std::fs::read(&kept)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
                .filter(|p| p["identifier_key"].is_string())
        },
    );
    (enrolled, running, policy)
}

/// Whether the organisation's current settings (read through the store)
/// still hold `salt`.
fn newest_settings_hold_salt(data_dir: &Path, salt: &str) -> bool {
    let store = deskside_relay::store::Store::open(&data_dir.join("relay.db")).unwrap();
    store
        .organisation_settings(deskside_relay::store::OrgId(1))
        .unwrap()
        .contains(salt)
}
