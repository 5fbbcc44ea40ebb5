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
/// A stopping service ends its relay connection and reports STOPPED within
/// a few seconds (0.1-0.5 s measured under Wine); Windows' own wait is 20 s.
const STOP: Duration = Duration::from_secs(10);

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
    let listed = admin.device(&device).expect("the device is listed");
    let os = listed["os"].as_str().unwrap_or_default();
    assert!(
        names_windows_10_or_11(os),
        "os is {os:?}, not \"Windows 10 (BUILD)\" or the like: {listed}"
    );

    proc.kill();
    admin.wait_status(&device, "offline", OFFLINE);

    let _proc = world.run_wine_agent(&agent);
    admin.wait_status(&device, "online", ONLINE);
}

/// `Windows 10 (18362)`, `Windows 11 23H2 (22631)`: the release, maybe the
/// feature update, and a Windows 10 or later build number. (Wine's default
/// prefix made sysinfo say `Windows 0 (7601)`.)
fn names_windows_10_or_11(os: &str) -> bool {
    let release_ok = os.starts_with("Windows 10 ") || os.starts_with("Windows 11 ");
    let build = os
        .rsplit_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .and_then(|b| b.parse::<u32>().ok());
    // 10240: the first Windows 10 release.
    release_ok && build.is_some_and(|b| b >= 10_240)
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

/// `deskside-agent.exe service install`, then Wine's Service Control
/// Manager: `net start` brings the device online (and the service starts
/// the session helper in the user's session), `net stop` stops it cleanly
/// within seconds and it goes offline, Wine's next boot starts it again
/// (automatic start), and `service uninstall` stops and removes it. A
/// revoked device's service stops itself with exit code 3.
#[test]
fn the_windows_service_installs_starts_stops_starts_at_boot_and_uninstalls() {
    // Services and reboots are machine-wide: a prefix of its own.
    let Some(wine) = Wine::isolated("windows_agent::service") else {
        return;
    };
    let mut world = World::new();
    let (_relay, admin) = world.relay_and_admin();
    // An ordinary program that keeps this prefix's wineserver, and with it
    // Wine's services.exe, up between the commands below; without it each
    // command would boot Wine anew and start the automatic service itself.
    let hold = wine.agent("hold");
    let mut holder = world.run_wine_agent_waiting(&hold);

    let installed = wine.run_agent_exe(&["service", "install"]).ok();
    assert!(
        installed
            .stdout
            .contains("Installed the deskside-agent service"),
        "{}",
        installed.stdout
    );
    let query = wine.run("sc", &["query", "deskside-agent"]).ok();
    assert!(
        query.stdout.contains("STOPPED"),
        "install registers, it does not start: {}",
        query.stdout
    );

    // The service's state directory: %ProgramData%\deskside\agent.
    let state = wine.service_agent();
    let device = state.enroll(&admin.enroll_token(1, "10m"));

    let started = wine.run("net", &["start", "deskside-agent"]);
    assert_eq!(started.code, 0, "net start: {started:?}");
    let online = admin.wait_status(&device, "online", ONLINE);
    eprintln!("service: online {online:?} after `net start` returned");
    let running = wine.run("sc", &["query", "deskside-agent"]).ok();
    assert!(running.stdout.contains("RUNNING"), "{}", running.stdout);

    let stop_started = std::time::Instant::now();
    let stopped = wine.run("net", &["stop", "deskside-agent"]);
    assert_eq!(stopped.code, 0, "net stop: {stopped:?}");
    // Wine's `net stop` may return while the service is still
    // STOP_PENDING (measured): poll the Service Control Manager.
    let query = deskside_tests::wait_for("the service to stop", STOP, || {
        let query = wine.run("sc", &["query", "deskside-agent"]).ok();
        query.stdout.contains("STOPPED").then_some(query.stdout)
    });
    let stop_took = stop_started.elapsed();
    assert!(
        query.contains("WIN32_EXIT_CODE    : 0"),
        "a clean stop: {query}"
    );
    let offline = admin.wait_status(&device, "offline", OFFLINE);
    eprintln!("service: stopped {stop_took:?} after `net stop` began; offline {offline:?} later");

    // Off and on again: the next program boots Wine, whose services.exe
    // starts every automatic service.
    holder.kill();
    assert!(
        wine.power_off(Duration::from_secs(60)),
        "the prefix's wineserver did not exit within 60 s"
    );
    let booted = wine.run("sc", &["query", "deskside-agent"]).ok();
    eprintln!("after boot: {}", booted.stdout);
    let online = admin.wait_status(&device, "online", ONLINE);
    eprintln!("service: online {online:?} after Wine's boot");

    let log = std::fs::read_to_string(state.state_dir_unix().join("service.log"))
        .expect("the service logs to service.log in its state directory");
    for line in [
        "the deskside-agent service is running",
        "Windows asked the service to stop",
        "the deskside-agent service stopped code=0",
        // At start, in the signed-in user's session (Wine's session 1),
        // and it connects back over the named pipe.
        "started the session helper in the user's session",
        "session helper connected",
    ] {
        assert!(
            log.contains(line),
            "{line:?} not in the service log:\n{log}"
        );
    }
    // The helper it started found the installed service's pipe and was
    // admitted from the user's session (Wine's session 1).
    assert!(
        log.lines()
            .any(|l| l.contains("waiting for the session helper")
                && l.trim_end()
                    .ends_with(r"socket=\\.\pipe\deskside-agent-helper")),
        "the service listens on the agreed pipe: {log}"
    );
    let admitted = log
        .lines()
        .find(|l| l.contains("session helper connected"))
        .unwrap_or_default();
    assert!(admitted.contains("in session 1"), "{admitted}");
    let leaked = deskside_tests::secret_scan::found_in(&log);
    assert!(leaked.is_empty(), "the service logged secrets: {leaked:?}");

    let removed = wine.run_agent_exe(&["service", "uninstall"]).ok();
    assert!(
        removed.stdout.contains("Stopped and removed"),
        "{}",
        removed.stdout
    );
    admin.wait_status(&device, "offline", OFFLINE);
    let gone = wine.run("sc", &["query", "deskside-agent"]);
    assert_ne!(gone.code, 0, "the service is still registered: {gone:?}");
    let again = wine.run_agent_exe(&["service", "uninstall"]).ok();
    assert!(again.stdout.contains("not installed"), "{}", again.stdout);

    // Installed again and revoked: the service stops itself with exit code
    // 3 ("retrying cannot help"), which Windows records.
    wine.run_agent_exe(&["service", "install"]).ok();
    let started = wine.run("net", &["start", "deskside-agent"]);
    assert_eq!(started.code, 0, "net start: {started:?}");
    admin.wait_status(&device, "online", ONLINE);
    admin.run(&["devices", "revoke", &device, "--json"]).ok();
    let stopped = deskside_tests::wait_for("the revoked service to stop", OFFLINE, || {
        let query = wine.run("sc", &["query", "deskside-agent"]).ok();
        query.stdout.contains("STOPPED").then_some(query.stdout)
    });
    assert!(
        stopped.contains("SERVICE_EXIT_CODE  : 3"),
        "a revoked device's service stops with exit code 3: {stopped}"
    );
    let removed = wine.run_agent_exe(&["service", "uninstall"]).ok();
    assert!(
        removed.stdout.contains("Stopped and removed"),
        "{}",
        removed.stdout
    );
}
