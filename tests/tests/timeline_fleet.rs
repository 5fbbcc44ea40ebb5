//! End-to-end `deskside timeline --all --where`: four devices' samples
//! written into a real relay's database (as `deskside-bench-timeline fleet`
//! does), the relay judging them, and the real console choosing the
//! devices whose timeline matches, with exit code 3 when none does and 2
//! for a value no episode can have.

use deskside_diag::timeline::{
    encode_batch, GatewaySample, LinkKind, PressureSample, RelaySample, Sample, WifiSample,
};
use deskside_protocol::agent::DeviceInfo;
use deskside_protocol::DeviceId;
use deskside_relay::store::{OrgId, Store};
use deskside_tests::{Console, World};

/// Samples per device: the last four hours at one a minute.
const MINUTES: i64 = 240;

/// What goes wrong on one simulated device, by minute of the four hours.
#[derive(Clone, Copy)]
enum Trouble {
    /// Nothing: no episode, so `timeline --all` does not list it.
    None,
    /// The Wi‑Fi signal weak for ten minutes (home network).
    WeakWifi,
    /// The VPN dropping for a minute every 20 minutes (configuration,
    /// a periodic recurrence).
    VpnDrops,
    /// 30 % of the path probes lost for 30 minutes (ISP).
    RelayLoss,
}

/// One minute of a device that is healthy unless `trouble` says otherwise.
fn sample(at_ms: i64, minute: i64, trouble: Trouble) -> Sample {
    let weak = matches!(trouble, Trouble::WeakWifi) && (100..110).contains(&minute);
    let lossy = matches!(trouble, Trouble::RelayLoss) && (150..180).contains(&minute);
    let vpn_up = match trouble {
        Trouble::VpnDrops => Some(!(minute >= 20 && minute % 20 == 7)),
        _ => Some(false),
    };
    Sample {
        at_ms,
        utc_offset_min: 60,
        link: LinkKind::Wifi,
        wifi: Some(WifiSample {
            signal_dbm: Some(if weak { -84.0 } else { -55.0 }),
            noise_dbm: Some(-93.0),
            tx_rate_mbps: Some(866.7),
            rx_rate_mbps: Some(780.0),
            retries_percent: Some(2.0),
            access_point: Some("hmac-sha256:ap-1".to_owned()),
            band: Some(deskside_diag::snapshot::Band::Ghz5),
        }),
        vpn_up,
        gateway: Some(GatewaySample {
            sent: 10,
            received: 10,
            rtt_ms: Some(2.0),
        }),
        relay: Some(RelaySample {
            rtt_ms: Some(25.0),
            jitter_ms: Some(1.0),
            sent_packets: 20,
            lost_packets: if lossy { 6 } else { 0 },
        }),
        dns_ms: Some(20.0),
        pressure: Some(PressureSample {
            cpu_usage_percent: Some(10.0),
            cpu_some_avg60: Some(0.5),
            memory_available_percent: Some(55.0),
            memory_full_avg10: Some(0.0),
        }),
        marker: None,
    }
}

/// The hostnames `deskside timeline --all --where EXPR --json` lists,
/// sorted, and the groups of its per-group summary lines.
fn listed(admin: &Console, expression: &str) -> (Vec<String>, Vec<String>) {
    let out = admin
        .run(&[
            "timeline", "--all", "--since", "1d", "--where", expression, "--json",
        ])
        .ok();
    let lines = out.json_lines();
    let of_type = |kind: &str, key: &str| -> Vec<String> {
        let mut values: Vec<String> = lines
            .iter()
            .filter(|l| l["type"] == kind)
            .map(|l| l[key].as_str().unwrap_or("").to_owned())
            .collect();
        values.sort();
        values.dedup();
        values
    };
    (
        of_type("device_timeline", "hostname"),
        of_type("group_segment", "group"),
    )
}

#[test]
fn where_lists_only_the_devices_whose_timeline_matches() {
    let mut world = World::new();
    let relay = world.relay(None);
    let port = relay.port();
    let data_dir = relay.data_dir.clone();
    drop(relay);

    // The devices and their samples, straight into the relay's store.
    let store = Store::open(&data_dir.join("relay.db")).expect("open the relay database");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let now = now_ms / 1000;
    let devices = [
        ("paris-wifi", "paris", Trouble::WeakWifi),
        ("paris-isp", "paris", Trouble::RelayLoss),
        ("lyon-vpn", "lyon", Trouble::VpnDrops),
        ("lyon-fine", "lyon", Trouble::None),
    ];
    for (i, (hostname, group, trouble)) in devices.into_iter().enumerate() {
        let token = [i as u8 + 1; 32];
        store
            .create_enroll_token_in_group(
                OrgId(1),
                &token,
                1,
                now + 3_600,
                None,
                Some(group),
                "test",
                now,
            )
            .expect("enrollment token");
        let info = DeviceInfo {
            hostname: hostname.to_owned(),
            os: "Debian GNU/Linux 12".to_owned(),
            agent_version: "0.1.0".to_owned(),
        };
        let (record, _) = store
            .enroll_device(
                &token,
                format!("key-{hostname}").as_bytes(),
                &info,
                "192.0.2.1:1",
                DeviceId(0x2000 + i as u64),
                now,
            )
            .expect("store")
            .expect("enrolled");
        let rows: Vec<(i64, Vec<u8>)> = (0..MINUTES)
            .map(|minute| {
                let at_ms = now_ms - (MINUTES - minute) * 60_000;
                (at_ms, encode_batch(&[sample(at_ms, minute, trouble)]))
            })
            .collect();
        store.insert_timeline(record.id, &rows).expect("samples");
    }
    drop(store);

    let relay = world.relay(Some(port));
    let admin = world.console("admin");
    admin.login_admin(&relay);

    // Without --where: every device with an episode, the healthy one not.
    let all = admin
        .run(&["timeline", "--all", "--since", "1d", "--json"])
        .ok();
    let mut hosts: Vec<String> = all
        .json_lines()
        .iter()
        .filter(|l| l["type"] == "device_timeline")
        .map(|l| l["hostname"].as_str().unwrap_or("").to_owned())
        .collect();
    hosts.sort();
    assert_eq!(
        hosts,
        ["lyon-vpn", "paris-isp", "paris-wifi"],
        "{}",
        all.stdout
    );

    // (expression, hostnames listed, groups in the summary)
    let cases: [(&str, &[&str], &[&str]); 6] = [
        ("segment == home_network", &["paris-wifi"], &["paris"]),
        ("recurring > 0", &["lyon-vpn"], &["lyon"]),
        (
            "group == paris and metric == relay.loss",
            &["paris-isp"],
            &["paris"],
        ),
        (
            "segment == configuration or (minutes >= 25 and segment == isp)",
            &["lyon-vpn", "paris-isp"],
            &["lyon", "paris"],
        ),
        (
            "segment != isp and group == paris",
            &["paris-wifi"],
            &["paris"],
        ),
        ("hostname ~ PARIS", &["paris-isp", "paris-wifi"], &["paris"]),
    ];
    for (expression, hosts, groups) in cases {
        let (listed_hosts, listed_groups) = listed(&admin, expression);
        assert_eq!(listed_hosts, hosts, "--where {expression:?}");
        assert_eq!(listed_groups, groups, "--where {expression:?}");
    }

    // Nothing matches: exit code 3, said in words and, with --json, as a
    // no_match record.
    let none = admin
        .run(&[
            "timeline",
            "--all",
            "--since",
            "1d",
            "--where",
            "segment == device",
            "--json",
        ])
        .fails_with(3, "no device matched the --where expression");
    let lines = none.json_lines();
    assert_eq!(lines.len(), 1, "{}", none.stdout);
    assert_eq!(lines[0]["type"], "no_match", "{}", none.stdout);
    admin
        .run(&[
            "timeline",
            "--all",
            "--since",
            "1d",
            "--where",
            "minutes > 1000",
        ])
        .fails_with(3, "no device matched");
    // A value no episode can have, or a field the timeline does not know:
    // a usage error naming the valid ones.
    admin
        .run(&["timeline", "--all", "--where", "segment == kitchen"])
        .fails_with(2, "home_network");
    admin
        .run(&["timeline", "--all", "--where", "wifi.signal_dbm < -70"])
        .fails_with(2, "unknown field \"wifi.signal_dbm\"");
    // --where without --all is refused by the command line.
    admin
        .run(&["timeline", "paris-wifi", "--where", "episodes > 0"])
        .fails_with(2, "--all");
}
