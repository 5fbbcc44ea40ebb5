//! The Windows agent end to end: `deskside-agent.exe` under Wine (harness:
//! `deskside_tests::wine`) against the Linux relay and console.
//!
//! Run by scripts/windows-tests (`cargo test -p deskside-tests --features
//! wine --test windows_agent`) after it builds the `.exe`. Without Wine or
//! the `.exe` these tests skip with a message, or fail when `CI=true`.

use std::time::Duration;

use deskside_tests::wine::Wine;
use deskside_tests::World;

/// Wine starts programs slowly on a loaded 2-core machine.
const ONLINE: Duration = Duration::from_secs(90);
/// The relay's idle timeout in tests is 6 s; then the device is offline.
const OFFLINE: Duration = Duration::from_secs(60);

#[test]
fn the_windows_agent_enrolls_once_shows_online_as_windows_and_follows_kill_and_restart() {
    let Some(wine) = Wine::find("windows_agent::enrolls") else {
        return;
    };
    let mut world = World::new();
    let (_relay, admin) = world.relay_and_admin();
    let token = admin.enroll_token(1, "10m");
    let agent = wine.agent("winlaptop");
    let device = agent.enroll(&token);
    let status = agent.status();
    assert_eq!(status["enrolled"], true, "{status}");

    // The single-use token is spent: a second Windows agent is refused.
    let second = wine.agent("second");
    let refused = second.run(&["enroll", &token]);
    assert_ne!(refused.code, 0, "a spent token enrolled again: {refused:?}");
    assert!(
        refused.stderr.contains("token"),
        "the refusal names the token: {}",
        refused.stderr
    );

    let mut proc = world.run_wine_agent(&agent);
    admin.wait_status(&device, "online", ONLINE);
    let listed = admin
        .devices()
        .into_iter()
        .find(|d| d["id"] == device.as_str())
        .expect("the device is listed");
    let os = listed["os"].as_str().unwrap_or_default();
    assert!(os.starts_with("Windows"), "os is {os:?}: {listed}");

    proc.kill();
    admin.wait_status(&device, "offline", OFFLINE);

    let _proc = world.run_wine_agent(&agent);
    admin.wait_status(&device, "online", ONLINE);
}

#[test]
fn a_key_everyone_may_read_stops_the_windows_agent_with_the_fix() {
    let Some(wine) = Wine::find("windows_agent::open_key") else {
        return;
    };
    let mut world = World::new();
    let (_relay, admin) = world.relay_and_admin();
    let agent = wine.agent("openkey");
    agent.enroll(&admin.enroll_token(1, "10m"));
    // Wine derives a file's DACL from its Unix mode: 0644 reads as
    // "Everyone may read" (see scripts/wine-run).
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(agent.key_path(), std::fs::Permissions::from_mode(0o644))
            .expect("chmod the key in the prefix");
    }
    let run = agent.run(&["run"]);
    assert_ne!(run.code, 0, "the agent started with an open key: {run:?}");
    assert!(
        run.stderr.contains("agent-key.pem") && run.stderr.contains("icacls"),
        "the refusal names the key and the fix: {}",
        run.stderr
    );
}
