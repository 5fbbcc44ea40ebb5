//! Starts a private virtual X server (Xvfb) for tests and benchmarks.
//!
//! The server gets the first free display number of a range (`:40` to `:49` by
//! default, the range reserved for this crate's tests), is killed when the
//! [`Xvfb`] value is dropped, and is ready to accept connections when
//! [`Xvfb::start`] returns (it polls with a deadline, never sleeps blindly).
//! Nothing in the agent uses this at run time.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Display numbers tried by [`Xvfb::start`].
pub const DEFAULT_DISPLAYS: RangeInclusive<u16> = 40..=49;

/// How long a server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a virtual X server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum XvfbError {
    /// No `Xvfb` binary on `PATH`.
    #[error("Xvfb is not installed (no Xvfb on PATH); install it with `apt-get install xvfb`")]
    NotInstalled,
    /// Every display number of the range was taken.
    #[error(
        "no free X display in :{first}..=:{last}; stop stale Xvfb servers (see /tmp/.X*-lock)"
    )]
    NoFreeDisplay {
        /// First display number tried.
        first: u16,
        /// Last display number tried.
        last: u16,
    },
    /// Spawning the server failed.
    #[error("could not start Xvfb: {0}; check that the Xvfb binary runs")]
    Spawn(#[source] std::io::Error),
    /// The server did not accept connections in time.
    #[error("Xvfb on {display} did not accept connections within {secs} s; the machine may be overloaded, try again")]
    NotReady {
        /// The display.
        display: String,
        /// The timeout.
        secs: u64,
    },
    /// RandR refused to define the monitors.
    #[error("cannot define RandR monitors on {display}: {detail}")]
    Monitors {
        /// The display.
        display: String,
        /// What failed.
        detail: String,
    },
}

/// A running Xvfb server, killed on drop.
#[derive(Debug)]
pub struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    /// Whether an `Xvfb` binary is on `PATH`.
    pub fn is_installed() -> bool {
        find_binary().is_some()
    }

    /// Starts a `width` x `height` x 24 server on the first free display of
    /// [`DEFAULT_DISPLAYS`].
    pub fn start(width: u32, height: u32) -> Result<Self, XvfbError> {
        Self::start_in(DEFAULT_DISPLAYS, width, height)
    }

    /// Starts a `width` x `height` x 24 server on the first free display of
    /// `displays`.
    pub fn start_in(
        displays: RangeInclusive<u16>,
        width: u32,
        height: u32,
    ) -> Result<Self, XvfbError> {
        let binary = find_binary().ok_or(XvfbError::NotInstalled)?;
        let (first, last) = (*displays.start(), *displays.end());
        for n in displays {
            // A lock file naming a live process means a server owns the
            // display; a stale one (its process gone) is removed by Xvfb.
            if lock_owner_alive(n) {
                continue;
            }
            let child = Command::new(&binary)
                .arg(format!(":{n}"))
                .args(["-screen", "0", &format!("{width}x{height}x24")])
                .args(["-nolisten", "tcp", "-noreset"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(XvfbError::Spawn)?;
            let mut server = Xvfb {
                child,
                display: format!(":{n}"),
            };
            match server.wait_ready(n)? {
                true => return Ok(server),
                // Lost a race for this display: try the next one.
                false => continue,
            }
        }
        Err(XvfbError::NoFreeDisplay { first, last })
    }

    /// The display name, e.g. `:40`.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// Splits the screen into `count` monitors side by side, of equal width
    /// (RandR 1.5 `SetMonitor`, what `xrandr --setmonitor` does): the first
    /// takes over the server's one output, the others have none. Xvfb has
    /// one output, so this is how tests get a multi-monitor desktop.
    pub fn split_monitors(&self, count: u16) -> Result<(), XvfbError> {
        use x11rb::connection::Connection as _;
        use x11rb::protocol::randr::{self, ConnectionExt as _};
        use x11rb::protocol::xproto::ConnectionExt as _;
        let fail = |detail: String| XvfbError::Monitors {
            display: self.display.clone(),
            detail,
        };
        let (conn, screen) =
            x11rb::connect(Some(&self.display)).map_err(|e| fail(e.to_string()))?;
        let root = conn.setup().roots[screen].root;
        let (width, height) = (
            conn.setup().roots[screen].width_in_pixels,
            conn.setup().roots[screen].height_in_pixels,
        );
        let count = count.max(1);
        let resources = conn
            .randr_get_screen_resources(root)
            .map_err(|e| fail(e.to_string()))?
            .reply()
            .map_err(|e| fail(e.to_string()))?;
        let each = width / count;
        for i in 0..count {
            let name = conn
                .intern_atom(false, format!("deskside-test-{i}").as_bytes())
                .map_err(|e| fail(e.to_string()))?
                .reply()
                .map_err(|e| fail(e.to_string()))?
                .atom;
            let outputs = if i == 0 {
                resources.outputs.clone()
            } else {
                Vec::new()
            };
            let info = randr::MonitorInfo {
                name,
                primary: i == 0,
                automatic: false,
                x: i16::try_from(i * each).unwrap_or(i16::MAX),
                y: 0,
                width: each,
                height,
                width_in_millimeters: u32::from(each) / 4,
                height_in_millimeters: u32::from(height) / 4,
                outputs,
            };
            conn.randr_set_monitor(root, info)
                .map_err(|e| fail(e.to_string()))?
                .check()
                .map_err(|e| fail(e.to_string()))?;
        }
        Ok(())
    }

    /// The server's process id (to measure its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until our server accepts connections. `Ok(false)` when it exited
    /// (another server took the display).
    fn wait_ready(&mut self, n: u16) -> Result<bool, XvfbError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let pid = self.child.id();
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(false);
            }
            let ours = std::fs::read_to_string(format!("/tmp/.X{n}-lock"))
                .map(|s| s.trim().parse::<u32>().ok() == Some(pid))
                .unwrap_or(false);
            if ours && x11rb::connect(Some(&self.display)).is_ok() {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(XvfbError::NotReady {
            display: self.display.clone(),
            secs: READY_TIMEOUT.as_secs(),
        })
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        // SIGTERM lets Xvfb remove its lock file and socket; SIGKILL (what
        // `Child::kill` sends) would leave them behind and block the display
        // number for the next user.
        let terminated = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .map(|pid| rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_ok())
            .unwrap_or(false);
        if terminated {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether display `n`'s lock file names a running process.
fn lock_owner_alive(n: u16) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/tmp/.X{n}-lock")) else {
        // No lock file (or unreadable: let Xvfb decide).
        return false;
    };
    match text.trim().parse::<u32>() {
        Ok(pid) => Path::new(&format!("/proc/{pid}")).exists(),
        // A lock being written right now: treat as taken.
        Err(_) => true,
    }
}

fn find_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("Xvfb"))
        .find(|p| p.is_file())
}
