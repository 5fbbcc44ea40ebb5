//! The Windows half of the end-to-end harness: runs `deskside-agent.exe`
//! (built for `x86_64-pc-windows-gnu`) under Wine, against the Linux relay
//! and console of [`crate::World`].
//!
//! Shape: [`Wine`] is the prerequisites (Wine, the `.exe`) plus a Wine
//! prefix; [`WineAgent`] mirrors [`crate::Agent`] (a state directory and the
//! CLI); [`World::run_wine_agent`] mirrors [`World::run_agent`] and returns
//! the same killable [`Proc`], whose log goes through the secret scan.
//!
//! Every Wine program runs through `scripts/wine-run`, which creates the
//! prefix on first use and puts a timeout on every Wine step.
//!
//! The prefix: `DESKSIDE_WINEPREFIX` when set (scripts/windows-tests sets one
//! per run and removes it), else one scratch prefix per test binary, created
//! here and, at the process's exit, its `wineserver -k`ed and deleted. A test
//! that changes the whole Windows (installs a service, reboots) takes a prefix
//! of its own with [`Wine::isolated`], removed the same way when it is done.
//! This module never touches any other prefix.
//!
//! Never here: a Wine prefix shared with another test run, or a kill of any
//! process the harness did not start.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::Value;

use crate::x11::on_path;
use crate::{secret_scan, Proc, Run, World};

/// The target triple of the Windows build.
pub const WINDOWS_TARGET: &str = "x86_64-pc-windows-gnu";

/// The Wine prefix this test process uses.
struct Prefix {
    /// The prefix directory (`WINEPREFIX`).
    path: PathBuf,
    /// The scratch directory holding it, its lock and boot log, when this
    /// process created it (and must remove it at exit).
    owned_dir: Option<PathBuf>,
}

static PREFIX: OnceLock<Prefix> = OnceLock::new();

fn prefix() -> &'static Prefix {
    PREFIX.get_or_init(|| {
        if let Some(path) = std::env::var_os("DESKSIDE_WINEPREFIX").filter(|v| !v.is_empty()) {
            return Prefix {
                path: PathBuf::from(path),
                owned_dir: None,
            };
        }
        let dir = tempfile::Builder::new()
            .prefix("deskside-wine-")
            .tempdir()
            .expect("temporary directory for a Wine prefix")
            .keep();
        #[allow(unsafe_code)]
        // SAFETY: atexit only stores the function pointer; the function is
        // `extern "C"`, takes nothing and does not unwind (it only spawns a
        // process and removes a directory, ignoring errors).
        let registered = unsafe { libc::atexit(remove_owned_prefix) } == 0;
        if !registered {
            eprintln!(
                "warning: cannot register the clean-up of the Wine prefix {}: remove it by hand",
                dir.display()
            );
        }
        Prefix {
            path: dir.join("prefix"),
            owned_dir: Some(dir),
        }
    })
}

/// At exit: stops the processes of the prefix this process created (and no
/// other), then deletes it.
extern "C" fn remove_owned_prefix() {
    if let Some(Prefix {
        path,
        owned_dir: Some(dir),
    }) = PREFIX.get()
    {
        remove_prefix(path, dir);
    }
}

/// `wineserver -k` in `path` (a prefix this process created), then deletes
/// `dir`, the scratch directory holding it.
fn remove_prefix(path: &Path, dir: &Path) {
    if path.exists() {
        let _ = Command::new("timeout")
            .args(["30", "wineserver", "-k"])
            .env("WINEPREFIX", path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A prefix owned by one [`Wine`] (and its clones): removed when the last
/// is dropped.
#[derive(Debug)]
struct OwnPrefix {
    path: PathBuf,
    dir: PathBuf,
}

impl Drop for OwnPrefix {
    fn drop(&mut self) {
        remove_prefix(&self.path, &self.dir);
    }
}

/// Which prefix a [`Wine`] runs in.
#[derive(Clone, Debug)]
enum PrefixRef {
    /// The test binary's (or `DESKSIDE_WINEPREFIX`).
    Shared,
    /// Its own, from [`Wine::isolated`].
    Own(Arc<OwnPrefix>),
}

/// Runs a Wine command to completion, its output going to files, not pipes:
/// the first Wine program of a prefix starts the wineserver and Wine's
/// system processes (services.exe, explorer.exe…), which inherit its
/// standard output and error and keep them open for as long as they run, so
/// reading a pipe to its end would wait for them (measured: a test hung).
fn run(command: &mut Command) -> Run {
    use std::io::{Read as _, Seek as _};
    let mut stdout = tempfile::tempfile().expect("temporary file for stdout");
    let mut stderr = tempfile::tempfile().expect("temporary file for stderr");
    let status = command
        .stdin(std::process::Stdio::null())
        .stdout(stdout.try_clone().expect("clone stdout file"))
        .stderr(stderr.try_clone().expect("clone stderr file"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let read = |file: &mut std::fs::File| {
        let mut bytes = Vec::new();
        file.rewind().expect("rewind output file");
        file.read_to_end(&mut bytes).expect("read output file");
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: read(&mut stdout),
        stderr: read(&mut stderr),
    }
}

/// The repository root (for `scripts/wine-run`): from `CARGO_MANIFEST_DIR`
/// as `cargo test` sets it when running, else as it was at build time (a
/// test binary in a shared target directory may have been built from
/// another checkout).
fn repo_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .expect("tests/ is inside the workspace")
        .to_owned()
}

/// Where the Windows binaries are: `DESKSIDE_WINDOWS_BIN_DIR`, else
/// `<target dir>/x86_64-pc-windows-gnu/debug` next to this test's own
/// target directory.
pub fn windows_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DESKSIDE_WINDOWS_BIN_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    target_dir().join(WINDOWS_TARGET).join("debug")
}

/// The target directory this test binary runs from
/// (`<target>/<profile>/deps/<test>` -> `<target>`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("the executable has a directory");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("target/<profile>");
    }
    // target/<profile> -> target
    dir.parent().expect("the target directory").to_owned()
}

/// Whether a Windows test may run, given what it lacks (`missing`, if
/// anything): when something is missing, panics when `CI=true` (CI must run
/// these tests), else prints a visible "SKIPPED" line naming `test`.
pub fn prerequisites_met(test: &str, missing: Option<String>) -> bool {
    let Some(why) = missing else {
        return true;
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {why} (CI=true: Windows tests must run)"
    );
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// Wine and the Windows agent: what every Windows end-to-end test needs.
#[derive(Clone, Debug)]
pub struct Wine {
    exe: PathBuf,
    prefix: PrefixRef,
}

impl Wine {
    /// Finds Wine and `deskside-agent.exe`. When one is missing: panics
    /// when `CI=true` (CI must run these tests), else prints a visible
    /// "SKIPPED" line naming `test` and returns `None`.
    pub fn find(test: &str) -> Option<Self> {
        let exe = windows_bin_dir().join("deskside-agent.exe");
        let missing = if !on_path("wine") || !on_path("wineserver") {
            Some("wine is not installed (Debian: apt-get install wine wine64; scripts/lib.sh's Windows packages)".to_owned())
        } else if !exe.is_file() {
            Some(format!(
                "{} is missing: build it with `cargo build --target {WINDOWS_TARGET} -p deskside-agent` (scripts/windows-tests does), or point DESKSIDE_WINDOWS_BIN_DIR at it",
                exe.display()
            ))
        } else {
            None
        };
        if !prerequisites_met(test, missing) {
            return None;
        }
        Some(Self {
            exe,
            prefix: PrefixRef::Shared,
        })
    }

    /// Like [`Wine::find`], with a new prefix of its own (created at the
    /// first Wine command, about 15 s), whatever `DESKSIDE_WINEPREFIX` says:
    /// for tests that change the whole Windows (a service, a reboot) and
    /// must neither disturb nor be disturbed by others. Its processes are
    /// killed and it is deleted when the last clone is dropped.
    pub fn isolated(test: &str) -> Option<Self> {
        let shared = Self::find(test)?;
        let dir = tempfile::Builder::new()
            .prefix("deskside-wine-own-")
            .tempdir()
            .expect("temporary directory for a Wine prefix")
            .keep();
        Some(Self {
            exe: shared.exe,
            prefix: PrefixRef::Own(Arc::new(OwnPrefix {
                path: dir.join("prefix"),
                dir,
            })),
        })
    }

    /// The agent executable (a Unix path).
    pub fn agent_exe(&self) -> &Path {
        &self.exe
    }

    /// The Wine prefix in use (`WINEPREFIX`).
    pub fn prefix(&self) -> &Path {
        match &self.prefix {
            PrefixRef::Shared => &prefix().path,
            PrefixRef::Own(own) => &own.path,
        }
    }

    /// Turns this Windows off: kills every process of the prefix
    /// (`wineserver -k`) and waits up to `timeout` for its wineserver to
    /// exit. The next Wine program boots it again: the wineserver, Wine's
    /// services.exe and, with it, every automatic service. Only for a prefix
    /// of its own ([`Wine::isolated`]): other tests share the others.
    pub fn power_off(&self, timeout: Duration) -> bool {
        assert!(
            matches!(self.prefix, PrefixRef::Own(_)),
            "power_off needs Wine::isolated: other tests share this prefix"
        );
        self.wineserver("-k", timeout);
        self.wait_for_wineserver_exit(timeout)
    }

    /// Waits up to `timeout` for this prefix's wineserver to exit
    /// (`wineserver -w`), which is when Wine writes the registry files;
    /// false if it did not.
    pub fn wait_for_wineserver_exit(&self, timeout: Duration) -> bool {
        self.wineserver("-w", timeout)
    }

    /// `wineserver FLAG` in this prefix, for at most `timeout`.
    fn wineserver(&self, flag: &str, timeout: Duration) -> bool {
        Command::new("timeout")
            .arg(timeout.as_secs().max(1).to_string())
            .args(["wineserver", flag])
            .env("WINEPREFIX", self.prefix())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// The Unix path of `C:\…` in the prefix (`drive_c/…`). Panics on a
    /// path on another drive.
    pub fn unix_path(&self, windows_path: &str) -> PathBuf {
        let rest = windows_path
            .strip_prefix("C:\\")
            .or_else(|| windows_path.strip_prefix("c:\\"))
            .unwrap_or_else(|| panic!("{windows_path} is not on drive C:"));
        let mut path = self.prefix().join("drive_c");
        for part in rest.split('\\').filter(|p| !p.is_empty()) {
            path.push(part);
        }
        path
    }

    /// `scripts/wine-run PROGRAM`, in this prefix, with Wine's timeouts.
    /// `program` is a Unix path to an `.exe` or a Wine builtin (`sc`, `net`).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(repo_root().join("scripts/wine-run"));
        command
            .arg(program)
            .env("DESKSIDE_WINEPREFIX", self.prefix())
            .env_remove("DESKSIDE_ENROLL_TOKEN");
        command
    }

    /// Runs a Windows program to completion (`sc query …`).
    pub fn run(&self, program: &str, args: &[&str]) -> Run {
        run(self.command(program).args(args))
    }

    /// Runs `deskside-agent.exe ARGS` to completion, without a state
    /// directory flag (for commands that choose their own).
    pub fn run_agent_exe(&self, args: &[&str]) -> Run {
        run(self.command(&self.exe).args(args))
    }

    /// An agent with its own state directory `C:\deskside-e2e\…` in the
    /// prefix (removed when the agent is dropped, unless a test failed).
    pub fn agent(&self, name: &str) -> WineAgent {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let windows_dir = format!("C:\\deskside-e2e\\{}-{n}-{name}-state", std::process::id());
        let unix_dir = self.unix_path(&windows_dir);
        WineAgent {
            wine: self.clone(),
            name: name.to_owned(),
            windows_dir,
            unix_dir,
        }
    }

    /// The installed service's state directory ([`SERVICE_STATE_DIR`]) and
    /// the CLI over it: enrolls the service, and holds its `service.log`
    /// (removed when dropped, unless a test failed).
    pub fn service_agent(&self) -> WineAgent {
        WineAgent {
            wine: self.clone(),
            name: "service".to_owned(),
            windows_dir: SERVICE_STATE_DIR.to_owned(),
            unix_dir: self.unix_path(SERVICE_STATE_DIR),
        }
    }
}

/// The installed service's state directory, `%ProgramData%\deskside\agent`.
pub const SERVICE_STATE_DIR: &str = r"C:\ProgramData\deskside\agent";

/// A Windows agent's state directory and CLI, under Wine: the counterpart of
/// [`crate::Agent`].
#[derive(Debug)]
pub struct WineAgent {
    wine: Wine,
    name: String,
    windows_dir: String,
    unix_dir: PathBuf,
}

impl WineAgent {
    /// The state directory as the agent sees it (`C:\…`).
    pub fn state_dir_windows(&self) -> &str {
        &self.windows_dir
    }

    /// The same directory seen from Linux (`<prefix>/drive_c/…`).
    pub fn state_dir_unix(&self) -> &Path {
        &self.unix_dir
    }

    /// The private key's Unix path.
    pub fn key_path(&self) -> PathBuf {
        self.unix_dir.join("agent-key.pem")
    }

    /// The Wine environment it runs in.
    pub fn wine(&self) -> &Wine {
        &self.wine
    }

    /// The command `deskside-agent.exe --state-dir DIR ARGS`.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = self.wine.command(&self.wine.exe);
        command.arg("--state-dir").arg(&self.windows_dir).args(args);
        command
    }

    /// Runs `deskside-agent.exe ARGS` with this state directory.
    pub fn run(&self, args: &[&str]) -> Run {
        run(&mut self.command(args))
    }

    /// Enrolls and returns the device id.
    pub fn enroll(&self, token: &str) -> String {
        secret_scan::remember_token(token);
        self.run(&["enroll", token]).ok();
        secret_scan::remember_key_file(&self.key_path());
        self.status()["device_id"]
            .as_str()
            .expect("device id after enroll")
            .to_owned()
    }

    /// `status --json`.
    pub fn status(&self) -> Value {
        self.run(&["status", "--json"]).ok().json()
    }
}

impl Drop for WineAgent {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.unix_dir);
        }
    }
}

impl World {
    /// Starts `deskside-agent.exe run` under Wine for `agent`. The returned
    /// process is `scripts/wine-run`; killing it kills the Windows program
    /// too (as SIGKILL does a native agent).
    pub fn run_wine_agent(&mut self, agent: &WineAgent) -> Proc {
        let mut command = agent.command(&["run"]);
        command.env("RUST_LOG", "info,deskside_agent=debug");
        self.spawn_wine(&agent.name, command)
    }

    /// Starts `deskside-agent.exe run --wait-for-enrollment` for an agent
    /// that is not enrolled: a Windows program that runs until killed.
    pub fn run_wine_agent_waiting(&mut self, agent: &WineAgent) -> Proc {
        let command = agent.command(&["run", "--wait-for-enrollment"]);
        self.spawn_wine(&agent.name, command)
    }

    /// Starts any Wine command (from [`Wine::command`]) like
    /// [`World::spawn`], killed with all its descendants.
    pub fn spawn_wine(&mut self, name: &str, command: Command) -> Proc {
        let log = self.log_path(name);
        let (mut proc, _stdout) = Proc::spawn(name, command, log);
        proc.kill_tree = true;
        proc
    }

    /// Like [`World::spawn_wine`], returning the program's stdout for the
    /// caller to read (a Windows program that prints to a closed stdout
    /// fails).
    pub fn spawn_wine_piped(
        &mut self,
        name: &str,
        command: Command,
    ) -> (Proc, std::process::ChildStdout) {
        let log = self.log_path(name);
        let (mut proc, stdout) = Proc::spawn(name, command, log);
        proc.kill_tree = true;
        (proc, stdout.expect("stdout is piped"))
    }
}
