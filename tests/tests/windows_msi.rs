//! The Windows installer end to end: `deskside-agent.msi`, built on Linux by
//! `installers/windows/build-msi` (wixl), read back with `msiinfo`, then
//! installed, used and removed with Wine's `msiexec` against the Linux relay
//! and console.
//!
//! Run by scripts/windows-tests (`cargo test -p deskside-tests --features
//! wine --test windows_msi`) after it builds the MSI. The MSI is
//! `DESKSIDE_MSI`, else `<target dir>/windows/deskside-agent.msi`. Without
//! msitools, Wine or the MSI these tests skip with a message, or fail when
//! `CI=true`.
//!
//! What Wine 8.0 cannot show (see the README's installer section): Windows
//! Installer's log hiding (Wine's msi writes every property, MsiHiddenProperties
//! included, into a verbose log, so no log is asked for here), and the
//! service running in session 0 of a real Windows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use deskside_agent::session::launcher::{helper_command_line, RUN_VALUE_NAME};
use deskside_tests::wine::{self, Wine};
use deskside_tests::x11::on_path;
use deskside_tests::{secret_scan, wait_for, World};

/// Wine starts programs slowly on a loaded 2-core machine.
const ONLINE: Duration = Duration::from_secs(120);
/// The relay's idle timeout in tests is 6 s; then the device is offline.
const OFFLINE: Duration = Duration::from_secs(60);
/// Registry writes reach system.reg when the wineserver exits.
const WINESERVER_EXIT: Duration = Duration::from_secs(120);

const INSTALL_DIR: &str = "C:\\Program Files\\deskside";
const STATE_DIR: &str = wine::SERVICE_STATE_DIR;
const SERVICE_KEY: &str = "HKLM\\System\\CurrentControlSet\\Services\\deskside-agent";
const RUN_KEY: &str = "HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Run";

/// The MSI path: `DESKSIDE_MSI`, else `windows/deskside-agent.msi` in the
/// target directory this test runs from.
fn msi_path() -> PathBuf {
    if let Some(path) = std::env::var_os("DESKSIDE_MSI").filter(|v| !v.is_empty()) {
        return PathBuf::from(path);
    }
    wine::target_dir().join("windows/deskside-agent.msi")
}

/// The MSI, when it and msiinfo are here. Otherwise panics when `CI=true`,
/// else prints a visible "SKIPPED" line and returns `None`.
fn find_msi(test: &str) -> Option<PathBuf> {
    let msi = msi_path();
    let missing = if !on_path("msiinfo") {
        Some("msiinfo is not installed (Debian: apt-get install msitools wixl; scripts/lib.sh's Windows packages)".to_owned())
    } else if !msi.is_file() {
        Some(format!(
            "{} is missing: build it with installers/windows/build-msi (scripts/windows-tests does), or point DESKSIDE_MSI at it",
            msi.display()
        ))
    } else {
        None
    };
    wine::prerequisites_met(test, missing).then_some(msi)
}

/// One table of the MSI, `msiinfo export`: a row per record, by column name.
fn table(msi: &Path, name: &str) -> Vec<HashMap<String, String>> {
    let out = Command::new("msiinfo")
        .arg("export")
        .arg(msi)
        .arg(name)
        .output()
        .expect("run msiinfo");
    assert!(
        out.status.success(),
        "msiinfo export {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("msiinfo prints UTF-8");
    let mut lines = text.lines();
    let columns: Vec<String> = lines
        .next()
        .expect("a header line")
        .split('\t')
        .map(str::to_owned)
        .collect();
    // Then the column types and the table name with its keys.
    lines
        .skip(2)
        .map(|line| {
            columns
                .iter()
                .cloned()
                .zip(line.split('\t').map(str::to_owned))
                .collect()
        })
        .collect()
}

/// The single row of `table` whose column `key` is `value`.
fn row<'t>(
    table: &'t [HashMap<String, String>],
    key: &str,
    value: &str,
) -> &'t HashMap<String, String> {
    let rows: Vec<_> = table.iter().filter(|r| r[key] == value).collect();
    assert_eq!(rows.len(), 1, "one row with {key} = {value}: {table:?}");
    rows[0]
}

fn number(row: &HashMap<String, String>, column: &str) -> i64 {
    row[column]
        .parse()
        .unwrap_or_else(|e| panic!("{column} of {row:?} is not a number: {e}"))
}

#[test]
fn the_msi_tables_install_the_service_the_run_key_and_a_hidden_one_shot_enrollment() {
    let Some(msi) = find_msi("windows_msi::tables") else {
        return;
    };

    let properties = table(&msi, "Property");
    let property = |name: &str| {
        properties
            .iter()
            .find(|r| r["Property"] == name)
            .map(|r| r["Value"].clone())
    };
    assert_eq!(
        property("ProductVersion").as_deref(),
        Some(env!("CARGO_PKG_VERSION")),
        "the version comes from the workspace Cargo.toml"
    );
    assert_eq!(
        property("ENROLL_TOKEN"),
        None,
        "the token has no default stored in the package"
    );
    let list = |name: &str| -> Vec<String> {
        property(name)
            .unwrap_or_default()
            .split(';')
            .map(str::to_owned)
            .collect()
    };
    assert!(
        list("MsiHiddenProperties").contains(&"ENROLL_TOKEN".to_owned()),
        "ENROLL_TOKEN is hidden from the installer's log: {properties:?}"
    );
    for name in ["ENROLL_TOKEN", "KEEP_STATE"] {
        assert!(
            list("SecureCustomProperties").contains(&name.to_owned()),
            "{name} reaches the elevated installation: {properties:?}"
        );
    }

    // The binary, in Program Files\deskside, in a 64-bit component.
    let directories = table(&msi, "Directory");
    let install_dir = row(&directories, "Directory", "INSTALLDIR");
    assert_eq!(install_dir["Directory_Parent"], "ProgramFiles64Folder");
    assert_eq!(install_dir["DefaultDir"], "deskside");
    let files = table(&msi, "File");
    let exe = row(&files, "FileName", "deskside-agent.exe");
    let components = table(&msi, "Component");
    let component = row(&components, "Component", &exe["Component_"]);
    assert_eq!(component["Directory_"], "INSTALLDIR");
    assert_eq!(
        component["KeyPath"], exe["File"],
        "the service runs the key file"
    );
    const COMPONENT_64BIT: i64 = 0x100;
    assert_ne!(number(component, "Attributes") & COMPONENT_64BIT, 0);

    // The service: "[INSTALLDIR]deskside-agent.exe" service run, LocalSystem,
    // automatic start, own process.
    let services = table(&msi, "ServiceInstall");
    let service = row(&services, "Name", "deskside-agent");
    assert_eq!(service["DisplayName"], "deskside agent");
    assert_eq!(service["Arguments"], "service run");
    assert_eq!(service["StartName"], "LocalSystem");
    assert_eq!(service["Component_"], exe["Component_"]);
    const SERVICE_WIN32_OWN_PROCESS: i64 = 0x10;
    const SERVICE_AUTO_START: i64 = 2;
    assert_eq!(number(service, "ServiceType"), SERVICE_WIN32_OWN_PROCESS);
    assert_eq!(number(service, "StartType"), SERVICE_AUTO_START);
    let controls = table(&msi, "ServiceControl");
    let control = row(&controls, "Name", "deskside-agent");
    // msidbServiceControlEvent: start on install, stop on install and
    // uninstall, delete on uninstall.
    let event = number(control, "Event");
    for (bit, what) in [
        (0x1, "start on install"),
        (0x2, "stop on install"),
        (0x20, "stop on uninstall"),
        (0x80, "delete on uninstall"),
    ] {
        assert_ne!(event & bit, 0, "{what}: event {event}");
    }
    assert_eq!(control["Wait"], "1");

    // The session helper starts at every sign-in: HKLM Run, 64-bit view.
    let registry = table(&msi, "Registry");
    // The name and command the agent itself uses (launcher::RUN_VALUE_NAME).
    let run_value = row(&registry, "Name", RUN_VALUE_NAME);
    const HKLM: &str = "2";
    assert_eq!(run_value["Root"], HKLM);
    assert_eq!(
        run_value["Key"],
        "SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run"
    );
    assert_eq!(
        run_value["Value"],
        helper_command_line(Path::new("[INSTALLDIR]deskside-agent.exe"))
    );
    let run_component = row(&components, "Component", &run_value["Component_"]);
    assert_ne!(number(run_component, "Attributes") & COMPONENT_64BIT, 0);

    // Enrollment: the installed exe, deferred, as LocalSystem, its command
    // line (token included) kept out of the log, once.
    let actions = table(&msi, "CustomAction");
    let enroll = row(&actions, "Action", "EnrollDevice");
    let kind = number(enroll, "Type");
    const EXE_FROM_FILE: i64 = 18;
    const IN_SCRIPT: i64 = 0x400;
    const NO_IMPERSONATE: i64 = 0x800;
    const HIDE_TARGET: i64 = 0x2000;
    const CONTINUE_ON_FAILURE: i64 = 0x40;
    assert_eq!(kind & 0x3f, EXE_FROM_FILE, "type {kind}");
    for (bit, what) in [
        (IN_SCRIPT, "deferred"),
        (NO_IMPERSONATE, "not impersonated"),
        (HIDE_TARGET, "target hidden"),
    ] {
        assert_ne!(kind & bit, 0, "EnrollDevice {what}: type {kind}");
    }
    assert_eq!(
        kind & CONTINUE_ON_FAILURE,
        0,
        "a failed enrollment fails the installation"
    );
    assert_eq!(enroll["Source"], exe["File"]);
    assert_eq!(
        enroll["Target"],
        "--state-dir \"[CommonAppDataFolder]deskside\\agent\" enroll --if-not-enrolled \"[ENROLL_TOKEN]\""
    );
    // Uninstall: the agent stops its service, waits for it and deletes it
    // before the files and the state go.
    let stop = row(&actions, "Action", "StopAgentService");
    assert_eq!(number(stop, "Type") & 0x3f, EXE_FROM_FILE);
    assert_ne!(number(stop, "Type") & IN_SCRIPT, 0);
    assert_eq!(stop["Source"], exe["File"]);
    assert_eq!(stop["Target"], "service uninstall");
    // Then the session helpers it started, which run the same binary.
    let close = row(&actions, "Action", "CloseSessionHelpers");
    assert_ne!(number(close, "Type") & IN_SCRIPT, 0);
    assert!(
        close["Target"].ends_with("taskkill.exe /f /im deskside-agent.exe"),
        "{close:?}"
    );
    let remove_state = row(&actions, "Action", "RemoveState");
    assert!(
        remove_state["Target"].contains("rmdir /s /q \"[CommonAppDataFolder]deskside\\agent\""),
        "{remove_state:?}"
    );
    assert_ne!(number(remove_state, "Type") & IN_SCRIPT, 0);

    // Order: enrolled after the files and the service are installed and
    // before the service starts; the state goes after the service is
    // deleted, never in an upgrade, and not with KEEP_STATE.
    let sequence = table(&msi, "InstallExecuteSequence");
    let at = |action: &str| number(row(&sequence, "Action", action), "Sequence");
    assert!(at("InstallFiles") < at("EnrollDevice"));
    assert!(at("InstallServices") < at("EnrollDevice"));
    assert!(at("EnrollDevice") < at("StartServices"));
    assert!(at("InstallInitialize") < at("StopAgentService"));
    assert!(at("StopAgentService") < at("CloseSessionHelpers"));
    assert!(at("CloseSessionHelpers") < at("StopServices"));
    assert!(at("SetCmdExe") < at("CloseSessionHelpers"));
    assert!(at("DeleteServices") < at("RemoveState"));
    assert!(at("RemoveExistingProducts") < at("InstallInitialize"));
    assert!(at("SetCmdExe") < at("RemoveState"));
    let enroll_condition = &row(&sequence, "Action", "EnrollDevice")["Condition"];
    assert!(
        enroll_condition.contains("ENROLL_TOKEN")
            && enroll_condition.contains("NOT (REMOVE=\"ALL\")"),
        "{enroll_condition}"
    );
    let remove_condition = &row(&sequence, "Action", "RemoveState")["Condition"];
    for needle in [
        "REMOVE=\"ALL\"",
        "NOT UPGRADINGPRODUCTCODE",
        "NOT KEEP_STATE",
    ] {
        assert!(remove_condition.contains(needle), "{remove_condition}");
    }
}

/// The MSI's Windows path (Wine maps `/` to `Z:\`).
fn windows_path(unix: &Path) -> String {
    let absolute = std::fs::canonicalize(unix).expect("the MSI's absolute path");
    format!("Z:{}", absolute.display()).replace('/', "\\")
}

/// Runs `msiexec ARGS` under Wine and returns its exit code and output.
fn msiexec(wine: &Wine, args: &[&str]) -> deskside_tests::Run {
    wine.run("msiexec", args)
}

/// `sc query deskside-agent` (exit code 0 when the service exists).
fn service_query(wine: &Wine) -> deskside_tests::Run {
    wine.run("sc", &["query", "deskside-agent"])
}

/// Every file under `dir` whose bytes contain `needle` as ASCII or UTF-16LE.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let ascii = needle.as_bytes().to_vec();
    let utf16: Vec<u8> = needle.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if meta.is_file() {
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let contains = |n: &[u8]| bytes.windows(n.len()).any(|window| window == n);
            if contains(&ascii) || contains(&utf16) {
                found.push(path);
            }
        }
    }
    found
}

/// The live registry (HKLM, HKU) as text, through `reg export`.
fn registry_text(wine: &Wine, world: &World) -> String {
    let mut text = String::new();
    for (hive, file) in [("HKLM", "hklm.reg"), ("HKU", "hku.reg")] {
        let path = world.path(file);
        wine.run("reg", &["export", hive, &windows_path_new(&path), "/y"])
            .ok();
        let bytes = std::fs::read(&path).expect("reg export wrote its file");
        // reg export writes UTF-16LE with a byte-order mark.
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
            .collect();
        text.push_str(&String::from_utf16_lossy(&units));
    }
    text
}

/// The data of value `name` in `reg query` output
/// (`    NAME    REG_SZ    DATA`).
fn registry_value(query: &str, name: &str) -> String {
    query
        .lines()
        .find_map(|line| {
            let mut parts = line.trim().splitn(3, "    ");
            (parts.next() == Some(name)).then(|| parts.nth(1).unwrap_or_default().trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no value {name} in:\n{query}"))
}

/// A Windows path (`Z:\…`) for a file that may not exist yet.
fn windows_path_new(unix: &Path) -> String {
    format!("Z:{}", unix.display()).replace('/', "\\")
}

#[test]
fn wine_msiexec_installs_enrolls_once_keeps_no_token_and_uninstalls() {
    let Some(msi) = find_msi("windows_msi::install") else {
        return;
    };
    // A Windows of its own: it installs a service, and waits for the
    // wineserver to exit.
    let Some(wine) = Wine::isolated("windows_msi::install") else {
        return;
    };
    let msi = windows_path(&msi);
    let before = service_query(&wine);
    assert_ne!(
        before.code,
        0,
        "the Wine prefix {} already has a deskside-agent service: run this test in a fresh prefix",
        wine.prefix().display()
    );
    let mut world = World::new();
    let (_relay, admin) = world.relay_and_admin();
    let token = admin.enroll_token(1, "10m");
    secret_scan::remember_token(&token);

    // A token the agent refuses fails the installation, which rolls back.
    let refused = msiexec(&wine, &["/i", &msi, "ENROLL_TOKEN=dse1_not-a-token", "/qn"]);
    assert_ne!(refused.code, 0, "a refused token installed: {refused:?}");
    eprintln!(
        "msiexec with a refused token exited with {} (rolled back)",
        refused.code
    );
    assert_ne!(service_query(&wine).code, 0, "rolled back: no service");
    assert!(
        !wine
            .unix_path(&format!("{INSTALL_DIR}\\deskside-agent.exe"))
            .exists(),
        "rolled back: no binary"
    );
    assert!(!wine.unix_path(STATE_DIR).join("agent-key.pem").exists());

    // Install, enrolling with the token: silent, as Intune or GPO would.
    msiexec(
        &wine,
        &["/i", &msi, &format!("ENROLL_TOKEN={token}"), "/qn"],
    )
    .ok();
    assert!(wine
        .unix_path(&format!("{INSTALL_DIR}\\deskside-agent.exe"))
        .is_file());
    let service = wine.run("reg", &["query", SERVICE_KEY]).ok().stdout;
    // Wine 8.0's msi writes the path without quotes (Windows Installer
    // quotes it); the SCM finds the same program either way.
    assert_eq!(
        registry_value(&service, "ImagePath").replace('"', ""),
        format!("{INSTALL_DIR}\\deskside-agent.exe service run"),
        "the service's command line: {service}"
    );
    assert_eq!(registry_value(&service, "ObjectName"), "LocalSystem");
    assert_eq!(registry_value(&service, "Start"), "0x2", "automatic start");
    let run_key = wine
        .run("reg", &["query", RUN_KEY, "/v", RUN_VALUE_NAME])
        .ok()
        .stdout;
    assert_eq!(
        registry_value(&run_key, RUN_VALUE_NAME),
        format!("\"{INSTALL_DIR}\\deskside-agent.exe\" session-helper")
    );
    let state = wine.unix_path(STATE_DIR);
    assert!(
        state.join("agent-key.pem").is_file(),
        "enrolled into {STATE_DIR}"
    );
    secret_scan::remember_key_file(&state.join("agent-key.pem"));

    // The relay lists the device, and the service brings it online.
    let devices = admin.devices();
    assert_eq!(devices.len(), 1, "one device enrolled: {devices:?}");
    let device = devices[0]["id"].as_str().expect("device id").to_owned();
    admin.wait_status(&device, "online", ONLINE);
    let listed = admin.device(&device).expect("the device is listed");
    let os = listed["os"].as_str().unwrap_or_default();
    assert!(os.starts_with("Windows"), "os is {os:?}: {listed}");
    let query = service_query(&wine).ok().stdout;
    assert!(query.contains("RUNNING"), "{query}");
    // The installed service starts the session helper in the user's
    // session from Program Files, and admits it on its pipe.
    let service_log = state.join("service.log");
    wait_for(
        "the session helper to connect to the service",
        ONLINE,
        || {
            std::fs::read_to_string(&service_log)
                .unwrap_or_default()
                .contains("session helper connected")
                .then_some(())
        },
    );

    // The token is nowhere: not in C:, not in the live registry. (The
    // search finds it where it is, in either encoding.)
    let planted = world.path("planted");
    std::fs::create_dir_all(&planted).expect("a directory to plant the token in");
    std::fs::write(planted.join("ascii"), format!("x{token}x")).expect("plant");
    let utf16: Vec<u8> = token.encode_utf16().flat_map(u16::to_le_bytes).collect();
    std::fs::write(planted.join("utf16"), utf16).expect("plant");
    assert_eq!(files_containing(&planted, &token).len(), 2);
    std::fs::remove_dir_all(&planted).expect("remove the planted token");
    let drive_c = wine.prefix().join("drive_c");
    assert_eq!(files_containing(&drive_c, &token), Vec::<PathBuf>::new());
    let registry = registry_text(&wine, &world);
    assert!(
        registry.contains(RUN_VALUE_NAME),
        "the export holds the installed Run value"
    );
    assert!(!registry.contains(&token), "the token is in the registry");
    assert!(
        !state.join("enroll-pending.json").exists(),
        "the pending enrollment is cleared"
    );

    // Uninstall keeping the state, reinstall with the same (spent,
    // single-use) token, as a deployment tool repeating its command would:
    // the enrolled device is left alone, and comes back online.
    msiexec(&wine, &["/x", &msi, "KEEP_STATE=1", "/qn"]).ok();
    let gone = service_query(&wine);
    assert_ne!(gone.code, 0, "the service is removed: {}", gone.stdout);
    admin.wait_status(&device, "offline", OFFLINE);
    assert!(
        state.join("agent-key.pem").is_file(),
        "KEEP_STATE=1 keeps the state"
    );
    msiexec(
        &wine,
        &["/i", &msi, &format!("ENROLL_TOKEN={token}"), "/qn"],
    )
    .ok();
    admin.wait_status(&device, "online", ONLINE);
    assert_eq!(admin.devices().len(), 1, "no second device");

    // Uninstall: the service, the files, the Run value and the state go.
    msiexec(&wine, &["/x", &msi, "/qn"]).ok();
    let gone = service_query(&wine);
    assert_ne!(gone.code, 0, "the service is removed: {}", gone.stdout);
    assert!(!state.exists(), "the state is removed");
    assert!(
        !wine.unix_path("C:\\ProgramData\\deskside").exists(),
        "the emptied C:\\ProgramData\\deskside is removed"
    );
    assert!(!wine
        .unix_path(&format!("{INSTALL_DIR}\\deskside-agent.exe"))
        .exists());
    let run_key = wine.run("reg", &["query", RUN_KEY, "/v", RUN_VALUE_NAME]);
    assert_ne!(
        run_key.code, 0,
        "the Run value is removed: {}",
        run_key.stdout
    );
    admin.wait_status(&device, "offline", OFFLINE);

    // The registry files on disk are written when the wineserver exits.
    let prefix = wine.prefix().to_owned();
    assert!(
        wine.wait_for_wineserver_exit(WINESERVER_EXIT),
        "the wineserver of {} did not exit within {WINESERVER_EXIT:?}",
        prefix.display()
    );
    for hive in ["system.reg", "user.reg", "userdef.reg"] {
        let text = std::fs::read_to_string(prefix.join(hive))
            .unwrap_or_else(|e| panic!("read {hive} of {}: {e}", prefix.display()));
        assert!(text.contains("[Software"), "{hive} has keys");
        assert!(!text.contains(&token), "the token is in {hive}");
    }
    assert_eq!(files_containing(&drive_c, &token), Vec::<PathBuf>::new());
}
