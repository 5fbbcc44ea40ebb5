//! Diagnostics of the Windows agent end to end: `deskside-agent.exe` under
//! Wine (harness: `deskside_tests::wine`), asked for a snapshot by the Linux
//! console through the Linux relay, which judges and stores it; the same
//! snapshot judged offline on Linux with `deskside diag judge`.
//!
//! What Wine answers is measured and checked against what Linux says about
//! the same machine (Wine's IP Helper reads the Linux network): adapters,
//! the default gateway, DNS servers and timing, the QUIC path and the clock.
//! What Wine cannot answer (its Native Wifi API is a stub, it has no NCSI)
//! must be "unknown" with that reason, and the verdict must blame nothing
//! on the network for it.
//!
//! Run by scripts/windows-tests (`cargo test -p deskside-tests --features
//! wine --test windows_diag`). Without Wine or the `.exe` it skips with a
//! message, or fails when `CI=true`.

use std::net::Ipv4Addr;
use std::time::Duration;

use deskside_tests::wine::Wine;
use deskside_tests::{free_udp_port, World};
use serde_json::Value;

/// Wine starts programs slowly on a loaded 2-core machine.
const ONLINE: Duration = Duration::from_secs(90);

/// The IPv4 default gateway Linux uses (`/proc/net/route`), if any.
fn linux_default_gateway() -> Option<Ipv4Addr> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&"00000000") || fields.get(7) != Some(&"00000000") {
            return None;
        }
        let gateway = u32::from_str_radix(fields.get(2)?, 16).ok()?;
        // Little-endian hex, as the kernel prints it.
        (gateway != 0).then(|| Ipv4Addr::from(gateway.to_le_bytes()))
    })
}

/// The IPv4 name servers of `/etc/resolv.conf`.
fn linux_name_servers() -> Vec<String> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .map(|server| server.trim().to_owned())
        .filter(|server| server.parse::<Ipv4Addr>().is_ok())
        .collect()
}

fn measured<'a>(snapshot: &'a Value, probe: &str) -> &'a Value {
    let value = &snapshot[probe]["measured"];
    assert!(
        !value.is_null(),
        "{probe} is not measured: {}",
        snapshot[probe]
    );
    value
}

fn unknown_reason<'a>(snapshot: &'a Value, probe: &str) -> &'a str {
    snapshot[probe]["unknown"]["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("{probe} is not unknown: {}", snapshot[probe]))
}

#[test]
fn a_technician_gets_the_windows_agents_snapshot_measured_where_wine_can_and_unknown_where_not() {
    let Some(wine) = Wine::find("windows_diag") else {
        return;
    };
    let mut world = World::new();
    // Tokens carry the relay's name, so the agent looks it up: DNS timing.
    let port = free_udp_port();
    let relay = world.relay_with(Some(port), &["--public-addr", &format!("localhost:{port}")]);
    let admin = world.console("admin");
    admin.login_admin(&relay);
    // Addresses as measured: the gateway is compared with Linux's below
    // (by default the relay stores public addresses truncated to /24).
    admin
        .run(&["policy", "set", "store_full_ip_addresses", "true"])
        .ok();
    let agent = wine.agent("windiag");
    let device = agent.enroll(&admin.enroll_token(1, "10m"));
    let _running = world.run_wine_agent(&agent);
    admin.wait_status(&device, "online", ONLINE);

    let fresh = admin.run(&["diag", &device, "--json"]).ok().json();
    assert_eq!(fresh["type"], "diagnostics");
    let snapshot = &fresh["snapshot"];

    // The device, with the longer CPU sample Windows needs (no PSI there).
    let machine = measured(snapshot, "device");
    assert_eq!(machine["os_name"], "Windows", "{machine}");
    assert_eq!(machine["cpu"]["usage_sample_ms"], 2000, "{machine}");
    assert!(machine["memory"]["total_bytes"].as_u64() > Some(0));
    assert!(
        machine["disks"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["is_system"] == true)),
        "the system drive is measured: {}",
        machine["disks"]
    );
    assert!(machine["pressure"]["not_applicable"].is_object());

    // Adapters, default gateway and DNS servers: what Linux has, seen
    // through Wine's IP Helper.
    let network = measured(snapshot, "network");
    let interfaces = network["interfaces"].as_array().expect("interfaces");
    assert!(
        interfaces
            .iter()
            .any(|i| i["up"] == true && i["addresses"].as_array().is_some_and(|a| !a.is_empty())),
        "an adapter that is up with an address: {network}"
    );
    if let Some(gateway) = linux_default_gateway() {
        assert_eq!(
            network["default_route"]["gateway"],
            gateway.to_string(),
            "{network}"
        );
        // Reachability of that router: measured, or unknown with a reason
        // (this machine's gateway may ignore pings and TCP), never a fault.
        let probe = &snapshot["gateway"];
        assert!(
            probe["measured"]["address"] == gateway.to_string()
                || probe["unknown"]["reason"].is_string(),
            "{probe}"
        );
    }
    let servers = linux_name_servers();
    if !servers.is_empty() {
        let listed: Vec<&str> = network["dns_servers"]
            .as_array()
            .expect("dns_servers")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for server in &servers {
            assert!(listed.contains(&server.as_str()), "{server} in {listed:?}");
        }
    }
    assert_eq!(network["relay_via_vpn"], false, "{network}");

    // DNS timing of the relay's name, the QUIC path and the clock: the same
    // code as on Linux.
    let dns = measured(snapshot, "dns");
    let lookup = &dns["lookups"][0];
    assert_eq!(lookup["name"], "localhost", "{dns}");
    assert!(lookup["duration_ms"].as_f64().is_some(), "{dns}");
    let path = measured(snapshot, "path");
    assert_eq!(path["udp_ok"], true, "{path}");
    assert!(path["idle_rtt"]["median_ms"].as_f64().is_some(), "{path}");
    let clock = measured(snapshot, "clock");
    // Same machine, same clock: the offset is the measurement's error.
    assert!(
        clock["offset_ms"].as_i64().is_some_and(|o| o.abs() < 2_000),
        "{clock}"
    );

    // What Wine cannot answer says so.
    assert!(
        unknown_reason(snapshot, "wifi").contains("Wine"),
        "{}",
        snapshot["wifi"]
    );
    assert!(
        unknown_reason(snapshot, "os_connectivity").contains("NCSI"),
        "{}",
        snapshot["os_connectivity"]
    );

    eprintln!(
        "windows_diag: path connect {} ms, idle RTT median {} ms, jitter {} ms; gateway {}; findings {}; unknowns {}",
        path["connect_ms"],
        path["idle_rtt"]["median_ms"],
        path["idle_rtt"]["jitter_ms"],
        snapshot["gateway"],
        fresh["verdict"]["findings"]
            .as_array()
            .map(|f| f.iter().map(|f| f["id"].to_string()).collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
        fresh["verdict"]["unknowns"]
            .as_array()
            .map(|u| u.iter().map(|u| u["what"].to_string()).collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
    );

    // No false fault: the only problem a loaded test machine may show is a
    // busy processor, which the snapshot measured; nothing is blamed on the
    // network, the configuration or the relay.
    let verdict = &fresh["verdict"];
    let problems: Vec<&Value> = verdict["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["severity"] != "info")
        .collect();
    assert!(
        problems.iter().all(|f| f["id"] == "device.cpu_busy"),
        "false faults: {problems:?}"
    );
    let unknowns: Vec<&str> = verdict["unknowns"]
        .as_array()
        .expect("unknowns")
        .iter()
        .filter_map(|u| u["what"].as_str())
        .collect();
    for what in ["wifi", "os_connectivity"] {
        assert!(unknowns.contains(&what), "{what} in {unknowns:?}");
    }

    // The relay stored it; Linux judges the saved snapshot the same way,
    // and its French report translates Wine's reasons.
    let history = admin
        .run(&["diag", "history", &device, "--json"])
        .ok()
        .json_lines();
    assert_eq!(history.len(), 1, "{history:?}");
    let file = world.path("windows-snapshot.json");
    std::fs::write(&file, fresh.to_string()).expect("save the snapshot");
    let judged = admin
        .run(&["diag", "judge", file.to_str().expect("utf-8"), "--json"])
        .ok()
        .json();
    assert_eq!(judged["verdict"]["findings"], verdict["findings"]);
    assert_eq!(judged["verdict"]["unknowns"], verdict["unknowns"]);
    let french = admin
        .run(&[
            "diag",
            "judge",
            file.to_str().expect("utf-8"),
            "--lang",
            "fr",
        ])
        .ok();
    assert!(
        french
            .stdout
            .contains("qui n'a pas d'indicateur d'état de la connectivité réseau (NCSI)"),
        "{}",
        french.stdout
    );
}
