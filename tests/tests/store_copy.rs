//! Moving a relay from its embedded SQLite store to PostgreSQL with
//! `deskside-relay copy-store`, as the README tells an administrator to:
//! stop the relay, copy, start it with `--store`.

use std::process::Command;
use std::time::Duration;

use deskside_relay::pg_server::PgServer;
use deskside_tests::{bin, Enrolled, World};

fn relay_command(data_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(bin("deskside-relay"))
        .args(args)
        .arg("--dev")
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run deskside-relay")
}

#[test]
fn a_relay_moved_to_postgresql_keeps_its_devices_tokens_and_audit_chain() {
    let test = "store_copy::a_relay_moved_to_postgresql_keeps_its_devices_tokens_and_audit_chain";
    let Some(pg) = PgServer::shared_or_skip(test) else {
        return;
    };
    let mut world = World::new();
    let Enrolled {
        relay,
        admin,
        agent,
        device,
    } = world.enrolled_laptop();
    let agent_proc = world.run_agent(&agent);
    admin.wait_status(&device, "online", Duration::from_secs(30));
    admin.create_token("ana", "technician");
    // The console keeps the signed audit head: after the move, the chain
    // must still extend it (same rows, same hashes).
    admin.run(&["audit", "verify", "--json"]).ok();
    let port = relay.port();
    let data_dir = relay.data_dir.clone();
    drop(agent_proc);
    drop(relay);

    let url = pg.create_database().expect("database");
    let copied = relay_command(&data_dir, &["copy-store", "--json", "--to", &url]);
    assert!(
        copied.status.success(),
        "copy-store failed: {}",
        String::from_utf8_lossy(&copied.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&copied.stdout).expect("copy-store --json prints JSON");
    let rows = |table: &str| {
        report["tables"]
            .as_array()
            .and_then(|tables| tables.iter().find(|t| t[0] == table))
            .and_then(|t| t[1].as_u64())
            .unwrap_or_else(|| panic!("no count for {table} in {report}"))
    };
    assert_eq!(rows("devices"), 1, "{report}");
    assert_eq!(rows("technician_tokens"), 2, "{report}");
    assert!(rows("audit") >= 4, "{report}");
    // A second copy into the same database is refused: it is not empty.
    let again = relay_command(&data_dir, &["copy-store", "--to", &url]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // `migrate` on the copied database finds it current.
    let migrated = relay_command(&data_dir, &["migrate", "--json", "--store", &url]);
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let migrated: serde_json::Value = serde_json::from_slice(&migrated.stdout).expect("JSON");
    assert_eq!(migrated["backend"], "postgres");

    // The relay on PostgreSQL, same keys, same port: the console's login
    // still works, the device is there and comes online, the chain extends
    // the head the console kept, and new changes are audited after it.
    let _relay = world.relay_with(Some(port), &["--store", &url]);
    let devices = admin.devices();
    assert_eq!(devices.len(), 1, "{devices:?}");
    assert_eq!(devices[0]["id"], device.as_str());
    let _agent_proc = world.run_agent(&agent);
    admin.wait_status(&device, "online", Duration::from_secs(30));
    let tokens = admin.run(&["tokens", "list", "--json"]).ok().json_lines();
    assert!(
        tokens.iter().any(|t| t["name"] == "ana"),
        "the technician token was copied: {tokens:?}"
    );
    admin.create_token("bea", "viewer");
    let verified = admin.run(&["audit", "verify", "--json"]).ok().json();
    assert_eq!(verified["ok"], true, "{verified}");
}
