//! What leaves the relay for ticketing systems follows the organisation's
//! policy, whatever the request's snapshot carries: a real relay with
//! Zammad, GLPI and a webhook (the strict fakes of
//! `deskside_tests::ticketing`), and a device that files help requests over
//! a raw agent connection with a snapshot holding a Wi‑Fi network name and
//! access point in clear and a public address (what an agent acting under
//! an older policy, or ignoring it, would send).
//!
//! - Default policy: every system gets the identifiers hashed the way
//!   agents hash them (`hmac-sha256:`, the same value everywhere) and the
//!   address truncated.
//! - `wifi_identifiers_in_clear` and `store_full_ip_addresses` on: the clear
//!   values reach them.
//! - The policy in force when an event leaves counts: a request stored
//!   while clear values were allowed, still waiting for Zammad when the
//!   policy becomes strict again, reaches Zammad filtered.

use std::time::{Duration, Instant};

use base64::Engine as _;
use deskside_diag::snapshot::{NetworkConfig, Probe, Snapshot, Wifi};
use deskside_protocol::agent::{AgentToRelay, RelayToAgent};
use deskside_protocol::request::{Answers, HelpRequest};
use deskside_tests::ticketing::{FakeGlpi, FakeWebhook, FakeZammad};
use deskside_tests::{secret_scan, wait_for, Console, World};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(60);

const ZAMMAD_TOKEN: &str = "zammad-token-privacy-0123456789";
const GLPI_USER_TOKEN: &str = "glpi-user-token-privacy-0123456789";
const GLPI_APP_TOKEN: &str = "glpi-app-token-privacy-0123456789";
const HOOK_SECRET: &str = "hook-secret-privacy-0123456789";

const SSID: &str = "HomeNet-Dupont";
const BSSID: &str = "aa:bb:cc:00:11:22";
const PUBLIC_DNS: &str = "81.2.69.160";
const TRUNCATED_DNS: &str = "81.2.69.0/24";
const PRIVATE_DNS: &str = "192.168.1.1";

/// A snapshot with Wi‑Fi identifiers in clear and a public DNS server.
fn snapshot_json() -> Vec<u8> {
    let snapshot = Snapshot {
        format: 1,
        agent_version: "0.0.0".into(),
        wifi: Probe::Measured(Wifi {
            interface: "wlan0".into(),
            ssid: Some(SSID.into()),
            bssid: Some(BSSID.into()),
            signal_dbm: Some(-61.0),
            ..Wifi::default()
        }),
        network: Probe::Measured(NetworkConfig {
            dns_servers: vec![PUBLIC_DNS.into(), PRIVATE_DNS.into()],
            ..NetworkConfig::default()
        }),
        ..Snapshot::default()
    };
    serde_json::to_vec(&snapshot).expect("snapshot JSON")
}

fn help_request(client_id: &str) -> HelpRequest {
    HelpRequest {
        client_id: client_id.into(),
        created_ms: 1_700_000_000_000,
        answers: Answers {
            summary: format!("the Wi-Fi drops ({client_id})"),
            since: "today".into(),
            pattern: "intermittent".into(),
            apps: vec!["video".into()],
            urgency: "slowed".into(),
            impact: "me".into(),
            contact: "chat".into(),
            lang: "en".into(),
        },
        snapshot_json: Some(snapshot_json()),
        failures: Vec::new(),
    }
}

/// A device enrolled over a raw agent connection that files requests.
struct RawDevice {
    runtime: tokio::runtime::Runtime,
    endpoint: quinn::Endpoint,
    options: deskside_net::transport::ConnectOptions,
}

impl RawDevice {
    fn enroll(relay: &deskside_tests::Relay) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let fingerprint: deskside_protocol::Fingerprint =
            relay.fingerprint.parse().expect("fingerprint");
        let (endpoint, identity) = runtime.block_on(async {
            let mut admin = deskside_console::client::Client::connect(
                &relay.addr,
                fingerprint,
                &relay.admin_token,
            )
            .await
            .expect("admin connection");
            let identity = deskside_tests::bench::enroll_raw_devices(
                &relay.addr,
                fingerprint,
                &mut admin,
                1,
                "tickets-privacy",
            )
            .await
            .expect("enroll a raw device")
            .remove(0);
            let endpoint = deskside_net::transport::client_endpoint(
                deskside_net::transport::resolve(&relay.addr)
                    .await
                    .expect("resolve"),
            )
            .expect("endpoint");
            (endpoint, identity)
        });
        let options = deskside_net::transport::ConnectOptions {
            relay: relay.addr.clone(),
            fingerprint,
            identity: Some(identity),
            idle_timeout: Duration::from_secs(10),
            keep_alive: None,
            software: "tickets-privacy".into(),
        };
        Self {
            runtime,
            endpoint,
            options,
        }
    }

    /// Files `request` and returns its number.
    fn file(&self, request: HelpRequest) -> u64 {
        self.runtime.block_on(async {
            let mut connected = deskside_net::connect(&self.endpoint, &self.options)
                .await
                .expect("agent connection");
            connected
                .send
                .send(&AgentToRelay::HelpRequest(request))
                .await
                .expect("send the request");
            let number = loop {
                match connected.recv.recv::<RelayToAgent>().await {
                    Ok(Some(RelayToAgent::HelpRequestStored { number, .. })) => break number,
                    Ok(Some(_)) => continue,
                    other => panic!("the help request was not stored: {other:?}"),
                }
            };
            connected.connection.close(0u32.into(), b"sent");
            number
        })
    }
}

/// The snapshot Zammad got with request `number`'s ticket.
fn zammad_snapshot(zammad: &FakeZammad, number: u64) -> Option<Value> {
    let title = format!("deskside request {number}:");
    zammad
        .state()
        .tickets
        .iter()
        .find(|t| t["title"].as_str().is_some_and(|s| s.starts_with(&title)))
        .and_then(|t| {
            t["article"]["attachments"]
                .as_array()?
                .iter()
                .find(|a| a["filename"] == format!("snapshot-{number}.json"))
                .cloned()
        })
        .map(|a| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(a["data"].as_str().expect("data"))
                .expect("base64");
            serde_json::from_slice(&bytes).expect("JSON")
        })
}

/// The snapshot document GLPI got for request `number`.
fn glpi_snapshot(glpi: &FakeGlpi, number: u64) -> Option<Value> {
    glpi.state()
        .documents
        .iter()
        .find(|d| d["file_name"] == format!("snapshot-{number}.json"))
        .map(|d| serde_json::from_str(d["content"].as_str().expect("content")).expect("JSON"))
}

/// The snapshot in the webhook's `created` document for request `number`.
fn hook_snapshot(hook: &FakeWebhook, number: u64) -> Option<Value> {
    hook.state()
        .deliveries
        .iter()
        .find(|d| d["event"]["kind"] == "created" && d["request"]["number"] == number)
        .map(|d| d["snapshot"].clone())
}

fn wifi_and_dns(snapshot: &Value) -> (String, String, Vec<String>) {
    let wifi = &snapshot["wifi"]["measured"];
    let dns = snapshot["network"]["measured"]["dns_servers"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|s| s.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default();
    (
        wifi["ssid"].as_str().unwrap_or_default().to_owned(),
        wifi["bssid"].as_str().unwrap_or_default().to_owned(),
        dns,
    )
}

fn assert_filtered(system: &str, snapshot: &Value) -> (String, String) {
    let text = snapshot.to_string();
    for clear in [SSID, BSSID, PUBLIC_DNS] {
        assert!(
            !text.contains(clear),
            "{system} got {clear:?} in clear: {text}"
        );
    }
    let (ssid, bssid, dns) = wifi_and_dns(snapshot);
    for hashed in [&ssid, &bssid] {
        let hex = hashed.strip_prefix("hmac-sha256:").unwrap_or_default();
        assert!(
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "{system}: {hashed:?} is not an agent's keyed hash"
        );
    }
    assert_ne!(ssid, bssid);
    assert_eq!(dns, [TRUNCATED_DNS, PRIVATE_DNS], "{system}");
    (ssid, bssid)
}

fn assert_clear(system: &str, snapshot: &Value) {
    let (ssid, bssid, dns) = wifi_and_dns(snapshot);
    assert_eq!(
        (ssid.as_str(), bssid.as_str()),
        (SSID, BSSID),
        "{system}: {snapshot}"
    );
    assert_eq!(dns, [PUBLIC_DNS, PRIVATE_DNS], "{system}");
}

fn set_policy(admin: &Console, key: &str, value: &str) {
    admin.run(&["policy", "set", key, value]).ok();
}

#[test]
fn what_reaches_ticketing_systems_follows_the_policy_when_it_leaves() {
    let started = Instant::now();
    for secret in [ZAMMAD_TOKEN, GLPI_USER_TOKEN, GLPI_APP_TOKEN, HOOK_SECRET] {
        secret_scan::remember(secret);
    }
    let mut zammad = FakeZammad::start(ZAMMAD_TOKEN);
    let glpi = FakeGlpi::start(GLPI_USER_TOKEN, GLPI_APP_TOKEN);
    let hook = FakeWebhook::start(HOOK_SECRET);
    let mut world = World::new();
    let secret_file = |name: &str, value: &str| {
        let path = world.path(name);
        deskside_net::files::write_private(&path, value.as_bytes()).expect("secret file");
        path
    };
    let config = format!(
        r#"
[tickets]
retry_initial = "200ms"
retry_max = "500ms"
timeout = "5s"

[[tickets.connector]]
type = "zammad"
url = "{zammad_url}"
token_file = {zammad_token:?}
group = "Service Desk"
customer = "helpdesk@example.org"

[[tickets.connector]]
type = "glpi"
url = "{glpi_url}"
user_token_file = {glpi_user:?}
app_token_file = {glpi_app:?}

[[tickets.connector]]
type = "webhook"
name = "hooks"
url = "{hook_url}"
secret_file = {hook_secret:?}
"#,
        zammad_url = zammad.server.base(),
        zammad_token = secret_file("zammad.token", ZAMMAD_TOKEN),
        glpi_url = glpi.api_url(),
        glpi_user = secret_file("glpi-user.token", GLPI_USER_TOKEN),
        glpi_app = secret_file("glpi-app.token", GLPI_APP_TOKEN),
        hook_url = hook.url(),
        hook_secret = secret_file("hook.secret", HOOK_SECRET),
    );
    let config_path = world.path("relay.toml");
    std::fs::write(&config_path, config).expect("relay.toml");
    let config_arg = config_path.display().to_string();
    let relay = world.relay_with(None, &["--config", &config_arg]);
    let admin = world.console("admin");
    admin.login_admin(&relay);
    let device = RawDevice::enroll(&relay);

    // The default policy: hashed and truncated in every system, the same
    // hash everywhere.
    let first = device.file(help_request("privacy1"));
    let from = |what: &str, get: &dyn Fn() -> Option<Value>| wait_for(what, LONG, get);
    let z = from("Zammad's snapshot", &|| zammad_snapshot(&zammad, first));
    let g = from("GLPI's snapshot", &|| glpi_snapshot(&glpi, first));
    let h = from("the webhook's snapshot", &|| hook_snapshot(&hook, first));
    let hashes = assert_filtered("Zammad", &z);
    assert_eq!(assert_filtered("GLPI", &g), hashes);
    assert_eq!(assert_filtered("the webhook", &h), hashes);

    // Clear values allowed: they reach every system.
    set_policy(&admin, "wifi_identifiers_in_clear", "true");
    set_policy(&admin, "store_full_ip_addresses", "true");
    let second = device.file(help_request("privacy2"));
    assert_clear(
        "Zammad",
        &from("Zammad's snapshot", &|| zammad_snapshot(&zammad, second)),
    );
    assert_clear(
        "GLPI",
        &from("GLPI's snapshot", &|| glpi_snapshot(&glpi, second)),
    );
    assert_clear(
        "the webhook",
        &from("the webhook's snapshot", &|| hook_snapshot(&hook, second)),
    );

    // Stored while clear values were allowed, delivered after the policy
    // became strict again: filtered by the policy in force when it leaves.
    zammad.server.stop();
    let third = device.file(help_request("privacy3"));
    assert_clear(
        "the webhook",
        &from("the webhook's snapshot", &|| hook_snapshot(&hook, third)),
    );
    set_policy(&admin, "wifi_identifiers_in_clear", "false");
    set_policy(&admin, "store_full_ip_addresses", "false");
    zammad.server.start();
    let late = from("Zammad's late snapshot", &|| {
        zammad_snapshot(&zammad, third)
    });
    assert_eq!(assert_filtered("Zammad, late", &late), hashes);
    eprintln!("tickets privacy e2e took {:?}", started.elapsed());
}
