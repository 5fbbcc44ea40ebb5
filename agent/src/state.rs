//! The agent's state directory: enrollment identity, private key, and the
//! status the running agent publishes for `deskside-agent status`.
//!
//! The private key never leaves this directory and is refused if other users
//! can read it. Enrollment writes the key first and `identity.json` last, so
//! the presence of `identity.json` means "fully enrolled".

use std::path::{Path, PathBuf};

use deskside_net::files::{create_private_dir, read_private, write_private, FileError};
use deskside_net::Identity;
use deskside_protocol::{DeviceId, Fingerprint};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Subject name in the agent's self-signed certificate (informational only:
/// the relay identifies devices by public key).
pub const AGENT_CERT_NAME: &str = "deskside-agent";

const IDENTITY_FILE: &str = "identity.json";
const KEY_FILE: &str = "agent-key.pem";
const STATUS_FILE: &str = "status.json";
const HISTORY_FILE: &str = "diagnostics-history.jsonl";
const POLICY_FILE: &str = "policy.json";
/// Written when the relay says this device is revoked or unknown; removed by
/// a new enrollment.
const REVOKED_FILE: &str = "revoked.json";
/// The last time a QUIC (UDP) connection to the relay worked.
const LAST_CONNECTED_FILE: &str = "last-connected.json";
/// Held (advisory lock) by the one `deskside-agent run` using this directory.
const RUN_LOCK_FILE: &str = "run.lock";
/// Diagnostic runs remembered for `deskside-agent history`.
const HISTORY_KEEP: usize = 50;

/// Errors reading or writing agent state.
#[derive(Debug, Error)]
pub enum StateError {
    /// A file could not be read or written, or has unsafe permissions.
    #[error(transparent)]
    File(#[from] FileError),
    /// The device is not enrolled.
    #[error("this device is not enrolled (no {0}): run `deskside-agent enroll TOKEN` with a token from IT")]
    NotEnrolled(PathBuf),
    /// A state file is damaged.
    #[error(
        "{path} is damaged ({reason}); enroll again with a new token, or restore it from backup"
    )]
    Damaged {
        /// Which file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// What enrollment recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    /// The device id assigned by the relay.
    pub device_id: DeviceId,
    /// Organisation name.
    pub organisation: String,
    /// Relay address.
    pub relay: String,
    /// Pinned relay certificate fingerprint.
    pub fingerprint: Fingerprint,
    /// Enrollment time, Unix seconds.
    pub enrolled_at: i64,
    /// The other relays sharing the enrolling relay's directory, each with
    /// its pinned fingerprint: from the token, then from the list the
    /// relays send (absent in state files written before relay lists, and
    /// with a single relay).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_relays: Vec<deskside_protocol::token::RelayEndpoint>,
}

impl Enrollment {
    /// Every relay this device may attach to, the enrolling relay first.
    pub fn relays(&self) -> Vec<deskside_protocol::token::RelayEndpoint> {
        deskside_protocol::token::all_relays(&self.relay, self.fingerprint, &self.other_relays)
    }
}

/// Connection state published by `deskside-agent run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Trying to reach the relay.
    Connecting,
    /// Attached to the relay.
    Connected,
    /// Stopped.
    Stopped,
}

/// The running agent's status file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Process id of the agent that wrote it.
    pub pid: u32,
    /// Current state.
    pub state: LinkState,
    /// Since when, Unix seconds.
    pub since: i64,
    /// The last connection error, if any.
    pub last_error: Option<String>,
}

/// The agent's state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Uses `root` (created 0700 when first written).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The default: `/var/lib/deskside-agent` for root, else
    /// `$XDG_STATE_HOME/deskside-agent` or `~/.local/state/deskside-agent`.
    /// Windows: `%ProgramData%\deskside\agent` when elevated, else
    /// `%LOCALAPPDATA%\deskside\agent` (`platform::windows::paths`).
    pub fn default_root() -> PathBuf {
        #[cfg(windows)]
        return crate::platform::windows::paths::default_state_dir();
        #[cfg(not(windows))]
        Self::default_unix_root()
    }

    #[cfg(not(windows))]
    fn default_unix_root() -> PathBuf {
        if is_root() {
            return PathBuf::from("/var/lib/deskside-agent");
        }
        if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(state).join("deskside-agent");
        }
        if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(home).join(".local/state/deskside-agent");
        }
        PathBuf::from("deskside-agent-state")
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Path of the private key.
    pub fn key_path(&self) -> PathBuf {
        self.path(KEY_FILE)
    }

    /// Whether `identity.json` exists.
    pub fn is_enrolled(&self) -> bool {
        self.path(IDENTITY_FILE).exists()
    }

    /// Reads the enrollment record.
    pub fn enrollment(&self) -> Result<Enrollment, StateError> {
        let path = self.path(IDENTITY_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotEnrolled(path))
            }
            Err(source) => {
                return Err(FileError::Io {
                    action: "cannot read",
                    path,
                    source,
                }
                .into())
            }
        };
        serde_json::from_slice(&bytes).map_err(|e| StateError::Damaged {
            path,
            reason: e.to_string(),
        })
    }

    /// Reads the private key (refusing one readable by others) and wraps it
    /// in a fresh self-signed certificate.
    pub fn identity(&self) -> Result<Identity, StateError> {
        let path = self.key_path();
        let pem = read_private(&path)?;
        let pem = String::from_utf8(pem).map_err(|e| StateError::Damaged {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Identity::from_key_pem(&pem, &[AGENT_CERT_NAME]).map_err(|e| StateError::Damaged {
            path,
            reason: e.to_string(),
        })
    }

    /// Stores a new enrollment: key first, identity last.
    pub fn save_enrollment(
        &self,
        identity: &Identity,
        enrollment: &Enrollment,
    ) -> Result<(), StateError> {
        create_private_dir(&self.root)?;
        write_private(&self.key_path(), identity.key_pem().as_bytes())?;
        let json = serde_json::to_vec_pretty(enrollment).map_err(|e| StateError::Damaged {
            path: self.path(IDENTITY_FILE),
            reason: e.to_string(),
        })?;
        write_private(&self.path(IDENTITY_FILE), &json)?;
        Ok(())
    }

    /// Keeps the relay list a relay sent (`relays`): the enrolling relay
    /// stays the first entry, the listed others come next and the others
    /// known before stay after them (see
    /// [`merge_lists`](crate::relays::merge_lists): a relay missing from one
    /// list is most likely restarting). Rewrites `identity.json` atomically
    /// and only when the list changed.
    pub fn save_relays(
        &self,
        relays: &[deskside_protocol::token::RelayEndpoint],
    ) -> Result<(), StateError> {
        let mut enrollment = self.enrollment()?;
        let listed: Vec<_> = relays
            .iter()
            .filter(|relay| relay.addr != enrollment.relay)
            .cloned()
            .collect();
        let mut others = crate::relays::merge_lists(listed, &enrollment.other_relays);
        others.truncate(deskside_protocol::token::MAX_OTHER_RELAYS);
        if others == enrollment.other_relays {
            return Ok(());
        }
        enrollment.other_relays = others;
        let json = serde_json::to_vec_pretty(&enrollment).map_err(|e| StateError::Damaged {
            path: self.path(IDENTITY_FILE),
            reason: e.to_string(),
        })?;
        write_private(&self.path(IDENTITY_FILE), &json)?;
        Ok(())
    }

    /// Removes the enrollment (used before enrolling again with `--force`).
    pub fn forget_enrollment(&self) -> Result<(), StateError> {
        for name in [
            IDENTITY_FILE,
            KEY_FILE,
            STATUS_FILE,
            HISTORY_FILE,
            POLICY_FILE,
            REVOKED_FILE,
            LAST_CONNECTED_FILE,
        ] {
            let path = self.path(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(FileError::Io {
                        action: "cannot remove",
                        path,
                        source,
                    }
                    .into())
                }
            }
        }
        Ok(())
    }

    /// Publishes the running agent's status.
    pub fn write_status(&self, status: &Status) -> Result<(), StateError> {
        let json = serde_json::to_vec(status).map_err(|e| StateError::Damaged {
            path: self.path(STATUS_FILE),
            reason: e.to_string(),
        })?;
        write_private(&self.path(STATUS_FILE), &json)?;
        Ok(())
    }

    /// Remembers a diagnostic run (who asked, what was collected), keeping
    /// the newest [`HISTORY_KEEP`] so the employee can see what left their
    /// device.
    pub fn append_history(&self, entry: &serde_json::Value) -> Result<(), StateError> {
        let mut lines: Vec<String> = std::fs::read_to_string(self.path(HISTORY_FILE))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        lines.push(entry.to_string());
        let start = lines.len().saturating_sub(HISTORY_KEEP);
        let mut text = lines[start..].join("\n");
        text.push('\n');
        write_private(&self.path(HISTORY_FILE), text.as_bytes())?;
        Ok(())
    }

    /// Keeps the organisation's policy as the relay last sent it (it holds
    /// the identifier salt, so owner-only).
    pub fn save_policy(&self, json: &[u8]) -> Result<(), StateError> {
        write_private(&self.path(POLICY_FILE), json)?;
        Ok(())
    }

    /// The organisation's policy as last received, or the defaults.
    pub fn policy(&self) -> deskside_diag::policy::Policy {
        std::fs::read(self.path(POLICY_FILE))
            .map(|bytes| deskside_diag::policy::Policy::from_json(&bytes))
            .unwrap_or_default()
    }

    /// Remembered diagnostic runs, oldest first (unreadable lines skipped).
    pub fn history(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path(HISTORY_FILE))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Reads the last published status, if any.
    pub fn status(&self) -> Option<Status> {
        let bytes = std::fs::read(self.path(STATUS_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Why the relay no longer accepts this device, as recorded when it said so.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// When the agent learned it, Unix seconds.
    pub at: i64,
    /// `revoked` (an administrator revoked it) or `unknown` (the relay does
    /// not know this device: never enrolled there, or its record is gone).
    pub kind: RevocationKind,
}

/// How the relay refused the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationKind {
    /// An administrator revoked the device.
    Revoked,
    /// The relay does not know the device's key.
    Unknown,
}

/// The last successful QUIC connection to the relay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastConnected {
    /// Unix seconds.
    pub at: i64,
    /// The network it was made on (default route: interface and gateway),
    /// when known: a connection made on another network proves nothing
    /// about this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

/// Errors taking the run lock.
#[derive(Debug, Error)]
pub enum LockError {
    /// Another agent holds it.
    #[error("another `deskside-agent run`{holder} already uses the state directory {dir}; stop it first (`systemctl stop deskside-agent` for the installed service), or give this one its own --state-dir")]
    Held {
        /// The directory.
        dir: PathBuf,
        /// " (pid N)" when known.
        holder: String,
    },
    /// The state directory could not be created.
    #[error(transparent)]
    File(#[from] FileError),
    /// The lock file could not be opened or locked.
    #[error("cannot lock {path}: {source}; check the state directory's owner and permissions")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The run lock: released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
}

impl StateDir {
    /// Takes the advisory lock that lets only one `deskside-agent run` use
    /// this directory (two would replace each other's relay connection in
    /// a loop). The lock dies with the process, so a crash never leaves a
    /// stale lock behind.
    pub fn lock_run(&self) -> Result<RunLock, LockError> {
        use std::io::{Read as _, Seek as _, Write as _};
        let path = self.path(RUN_LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        create_private_dir(&self.root)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = text
                    .trim()
                    .parse::<u32>()
                    .map(|pid| format!(" (pid {pid})"))
                    .unwrap_or_default();
                return Err(LockError::Held {
                    dir: self.root.clone(),
                    holder,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(std::process::id().to_string().as_bytes())
            .map_err(io)?;
        Ok(RunLock { _file: file })
    }

    /// Records that the relay refused this device for good.
    pub fn record_revocation(&self, revocation: &Revocation) -> Result<(), StateError> {
        let json = serde_json::to_vec(revocation).map_err(|e| StateError::Damaged {
            path: self.path(REVOKED_FILE),
            reason: e.to_string(),
        })?;
        write_private(&self.path(REVOKED_FILE), &json)?;
        Ok(())
    }

    /// The recorded revocation, if the relay refused this device.
    pub fn revocation(&self) -> Option<Revocation> {
        let bytes = std::fs::read(self.path(REVOKED_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Records a successful QUIC connection to the relay, made on
    /// `network` (best effort).
    pub fn record_connected(&self, at: i64, network: Option<String>) {
        let record = LastConnected { at, network };
        let json = serde_json::to_vec(&record).unwrap_or_default();
        if let Err(e) = write_private(&self.path(LAST_CONNECTED_FILE), &json) {
            tracing::debug!("cannot record the last connection time: {e}");
        }
    }

    /// The last successful QUIC connection to the relay, if any was recorded.
    pub fn last_connected(&self) -> Option<LastConnected> {
        let bytes = std::fs::read(self.path(LAST_CONNECTED_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        // /proc/self is owned by the process's effective uid.
        std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// Whether a process with this pid exists.
pub fn process_alive(pid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        Path::new(&format!("/proc/{pid}")).exists()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An enrollment with one relay, as every agent had before relay lists.
    fn single_relay_enrollment() -> Enrollment {
        Enrollment {
            device_id: DeviceId(7),
            organisation: "Org".into(),
            relay: "127.0.0.1:4433".into(),
            fingerprint: Fingerprint([1; 32]),
            enrolled_at: 1_700_000_000,
            other_relays: Vec::new(),
        }
    }

    #[test]
    fn enrollment_round_trips_and_key_keeps_its_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("agent"));
        assert!(matches!(
            state.enrollment(),
            Err(StateError::NotEnrolled(_))
        ));
        let identity = Identity::generate(&[AGENT_CERT_NAME]).unwrap();
        let enrollment = single_relay_enrollment();
        state.save_enrollment(&identity, &enrollment).unwrap();
        assert!(state.is_enrolled());
        assert_eq!(state.enrollment().unwrap(), enrollment);
        assert_eq!(
            state.identity().unwrap().spki().unwrap(),
            identity.spki().unwrap()
        );
        state.forget_enrollment().unwrap();
        assert!(!state.is_enrolled());
    }

    /// An `identity.json` written before relay lists names one relay; it
    /// keeps working, and the list a relay sends is added to it.
    #[test]
    fn an_old_single_relay_state_file_reads_and_learns_the_relay_list() {
        use deskside_protocol::token::RelayEndpoint;
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("agent"));
        let identity = Identity::generate(&[AGENT_CERT_NAME]).unwrap();
        let enrollment = single_relay_enrollment();
        state.save_enrollment(&identity, &enrollment).unwrap();
        let written = std::fs::read_to_string(state.path(IDENTITY_FILE)).unwrap();
        // The single-relay file is the old one, field for field.
        assert!(!written.contains("other_relays"), "{written}");
        let old: serde_json::Value = serde_json::from_str(&written).unwrap();
        assert_eq!(old.as_object().unwrap().len(), 5, "{written}");
        assert_eq!(state.enrollment().unwrap().relays().len(), 1);

        let b = RelayEndpoint {
            addr: "127.0.0.1:5544".into(),
            fingerprint: Fingerprint([2; 32]),
        };
        let own = RelayEndpoint {
            addr: "127.0.0.1:4433".into(),
            fingerprint: Fingerprint([1; 32]),
        };
        state.save_relays(&[b.clone(), own.clone()]).unwrap();
        let relays = state.enrollment().unwrap().relays();
        assert_eq!(relays, [own.clone(), b.clone()]);
        // An empty list, or one naming only the enrolling relay, never
        // makes the device forget the others.
        state.save_relays(&[]).unwrap();
        state.save_relays(std::slice::from_ref(&own)).unwrap();
        assert_eq!(
            state.enrollment().unwrap().relays(),
            [own.clone(), b.clone()]
        );
        // A new relay comes before the ones the list left out.
        let c = RelayEndpoint {
            addr: "127.0.0.1:6655".into(),
            fingerprint: Fingerprint([3; 32]),
        };
        state.save_relays(&[own.clone(), c.clone()]).unwrap();
        assert_eq!(state.enrollment().unwrap().relays(), [own, c, b]);
        assert_eq!(
            state.identity().unwrap().spki().unwrap(),
            identity.spki().unwrap()
        );
    }

    #[test]
    fn a_second_run_lock_on_the_same_directory_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("agent"));
        let first = state.lock_run().unwrap();
        let err = state.lock_run().unwrap_err().to_string();
        assert!(err.contains("another `deskside-agent run`"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        state.lock_run().unwrap();
    }

    #[test]
    fn revocation_and_last_connection_are_forgotten_by_a_new_enrollment() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("agent"));
        create_private_dir(state.root()).unwrap();
        assert_eq!(state.revocation(), None);
        let revocation = Revocation {
            at: 5,
            kind: RevocationKind::Revoked,
        };
        state.record_revocation(&revocation).unwrap();
        state.record_connected(7, Some("eth0 via 192.0.2.1".to_owned()));
        assert_eq!(state.revocation(), Some(revocation));
        assert_eq!(
            state.last_connected(),
            Some(LastConnected {
                at: 7,
                network: Some("eth0 via 192.0.2.1".to_owned())
            })
        );
        state.forget_enrollment().unwrap();
        assert_eq!(state.revocation(), None);
        assert_eq!(state.last_connected(), None);
    }

    #[test]
    #[cfg(unix)]
    fn a_key_readable_by_others_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let identity = Identity::generate(&[AGENT_CERT_NAME]).unwrap();
        write_private(&state.key_path(), identity.key_pem().as_bytes()).unwrap();
        std::fs::set_permissions(state.key_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = state.identity().unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
