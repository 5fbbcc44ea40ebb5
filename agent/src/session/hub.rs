//! The agent service's end of the local socket: accepts the session helper
//! (checking who it runs as) and routes its messages to sessions.
//!
//! Who may connect: the peer's uid (from the kernel, `SO_PEERCRED`) must be
//! the service's own uid (development: both in one user's session) or the
//! owner of an active graphical login session known to systemd-logind.
//! Anyone else is told nothing and disconnected, with the reason logged.
//! One helper at a time: a second one is refused while the first is alive.
//!
//! The socket itself is Unix-only (`cfg(unix)` items below); on Windows the
//! service has no helper channel yet (a named pipe is planned): no helper
//! ever connects, and a session request finds no one to ask.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use deskside_protocol::helper::{HelperToService, ServiceToHelper};
#[cfg(unix)]
use deskside_protocol::session::session_id_text;
use deskside_protocol::session::Monitor;
#[cfg(unix)]
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

#[cfg(unix)]
use super::wire::{write_message, MessageReader};

/// Where the packaged service listens (its `RuntimeDirectory`).
pub const SYSTEM_SOCKET: &str = "/run/deskside-agent/session.sock";

/// Messages queued towards the helper before a sender waits.
#[cfg(unix)]
const TO_HELPER_QUEUE: usize = 64;
/// Messages queued from the helper per session (frames are big: keep small).
const FROM_HELPER_QUEUE: usize = 8;

/// The socket path for a state directory: the system one for the packaged
/// service, else inside the state directory.
pub fn socket_path_for(state_root: &Path) -> PathBuf {
    if state_root == Path::new(crate::service::SYSTEM_STATE_DIR) {
        PathBuf::from(SYSTEM_SOCKET)
    } else {
        state_root.join("session.sock")
    }
}

/// The connected helper, shared by the accept loop and the sessions.
#[derive(Debug, Default)]
pub struct HelperHub {
    inner: Mutex<Option<Connected>>,
    #[cfg_attr(not(unix), allow(dead_code))]
    next_id: Mutex<u64>,
    /// The connected helper's monitors; empty while none is connected or
    /// it could not list them.
    monitors: tokio::sync::watch::Sender<Vec<Monitor>>,
}

#[derive(Debug)]
struct Connected {
    id: u64,
    uid: u32,
    display: Result<String, String>,
    tx: mpsc::Sender<ServiceToHelper>,
    sessions: Arc<Mutex<HashMap<u64, mpsc::Sender<HelperToService>>>>,
}

/// A session's line to the helper.
#[derive(Debug)]
pub struct HelperLine {
    /// Towards the helper.
    pub tx: mpsc::Sender<ServiceToHelper>,
    /// From the helper, for this session only; ends when the helper goes.
    pub rx: mpsc::Receiver<HelperToService>,
    /// The helper's display, or why capture is impossible there.
    pub display: Result<String, String>,
    sessions: Arc<Mutex<HashMap<u64, mpsc::Sender<HelperToService>>>>,
    session_id: u64,
}

impl Drop for HelperLine {
    fn drop(&mut self) {
        lock(&self.sessions).remove(&self.session_id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl HelperHub {
    /// A line to the connected helper for `session_id`, or why there is none.
    pub fn open(&self, session_id: u64) -> Result<HelperLine, String> {
        let inner = lock(&self.inner);
        let Some(helper) = inner.as_ref().filter(|h| !h.tx.is_closed()) else {
            return Err("no one is logged in to a graphical session on this device (the deskside session helper is not running)".to_owned());
        };
        let (tx, rx) = mpsc::channel(FROM_HELPER_QUEUE);
        let mut sessions = lock(&helper.sessions);
        if !sessions.is_empty() {
            return Err("another remote session is already running on this device".to_owned());
        }
        sessions.insert(session_id, tx);
        tracing::info!(
            helper = helper.id,
            uid = helper.uid,
            "session routed to the helper"
        );
        Ok(HelperLine {
            tx: helper.tx.clone(),
            rx,
            display: helper.display.clone(),
            sessions: helper.sessions.clone(),
            session_id,
        })
    }

    /// The connected helper's monitors, as they change (empty: unknown).
    pub fn monitors(&self) -> tokio::sync::watch::Receiver<Vec<Monitor>> {
        self.monitors.subscribe()
    }

    /// Whether a helper is connected.
    pub fn connected(&self) -> bool {
        lock(&self.inner)
            .as_ref()
            .is_some_and(|h| !h.tx.is_closed())
    }
}

#[cfg(unix)]
/// Binds the socket (replacing a stale one), readable and writable by all
/// local users: who may talk is decided per connection from its credentials.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

#[cfg(unix)]
/// Accepts helpers forever.
pub async fn serve(listener: UnixListener, hub: Arc<HelperHub>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("helper socket accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        let uid = match stream.peer_cred() {
            Ok(cred) => cred.uid(),
            Err(e) => {
                tracing::warn!("refused a helper connection: cannot read its credentials: {e}");
                continue;
            }
        };
        if let Err(reason) = peer_allowed(uid) {
            tracing::warn!(uid, "refused a helper connection: {reason}");
            continue;
        }
        let hub = hub.clone();
        tokio::spawn(async move {
            if let Err(reason) = run_helper(stream, uid, &hub).await {
                tracing::info!(uid, "helper connection ended: {reason}");
            }
        });
    }
}

#[cfg(unix)]
/// Whether a helper running as `uid` may connect.
pub fn peer_allowed(uid: u32) -> Result<(), String> {
    if uid == own_uid() {
        return Ok(());
    }
    let users = graphical_session_users(Path::new("/run/systemd/sessions"));
    if users.contains(&uid) {
        Ok(())
    } else {
        Err(format!(
            "uid {uid} has no active graphical login session on this device"
        ))
    }
}

#[cfg(unix)]
fn own_uid() -> u32 {
    nix::unistd::Uid::effective().as_raw()
}

#[cfg(unix)]
/// Owners of active, local, graphical logind sessions.
pub fn graphical_session_users(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut users = Vec::new();
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
                .map(str::trim)
        };
        let graphical = matches!(field("TYPE"), Some("x11" | "wayland"));
        let active = field("ACTIVE") == Some("1");
        let local = field("REMOTE") != Some("1");
        if let (true, true, true, Some(uid)) = (
            graphical,
            active,
            local,
            field("UID").and_then(|u| u.parse().ok()),
        ) {
            users.push(uid);
        }
    }
    users
}

#[cfg(unix)]
async fn run_helper(stream: UnixStream, uid: u32, hub: &HelperHub) -> Result<(), String> {
    let (read, mut write) = stream.into_split();
    let mut reader = MessageReader::new(read);
    let hello = tokio::time::timeout(std::time::Duration::from_secs(5), reader.next())
        .await
        .map_err(|_| "no hello within 5 s".to_owned())?
        .map_err(|e| e.to_string())?;
    let Some(HelperToService::Hello {
        version,
        display: screen,
    }) = hello
    else {
        return Err("the first message was not a hello".to_owned());
    };
    let (tx, mut to_helper) = mpsc::channel::<ServiceToHelper>(TO_HELPER_QUEUE);
    let sessions: Arc<Mutex<HashMap<u64, mpsc::Sender<HelperToService>>>> = Arc::default();
    let id = {
        let mut inner = lock(&hub.inner);
        if inner.as_ref().is_some_and(|h| !h.tx.is_closed()) {
            return Err("another session helper is already connected".to_owned());
        }
        let mut next = lock(&hub.next_id);
        *next += 1;
        *inner = Some(Connected {
            id: *next,
            uid,
            display: screen.clone(),
            tx: tx.clone(),
            sessions: sessions.clone(),
        });
        *next
    };
    tracing::info!(helper = id, uid, %version, ?screen, "session helper connected");
    write_message(&mut write, &ServiceToHelper::Welcome)
        .await
        .map_err(|e| e.to_string())?;
    let writer = tokio::spawn(async move {
        while let Some(message) = to_helper.recv().await {
            if let Err(e) = write_message(&mut write, &message).await {
                tracing::info!("helper socket write failed: {e}");
                break;
            }
        }
    });
    let outcome = loop {
        match reader.next::<HelperToService>().await {
            Ok(Some(message)) => {
                let session_id = match &message {
                    HelperToService::Consent { session_id, .. }
                    | HelperToService::ToConsole { session_id, .. }
                    | HelperToService::Video { session_id, .. } => *session_id,
                    HelperToService::Hello { .. } => break Err("a second hello".to_owned()),
                    HelperToService::Monitors { monitors } => {
                        tracing::info!(
                            helper = id,
                            count = monitors.len(),
                            "the helper's monitors"
                        );
                        hub.monitors.send_if_modified(|known| {
                            let changed = *known != *monitors;
                            known.clone_from(monitors);
                            changed
                        });
                        continue;
                    }
                    HelperToService::Unknown { tag } => {
                        tracing::debug!(tag, "ignoring a message from a newer helper");
                        continue;
                    }
                };
                let route = lock(&sessions).get(&session_id).cloned();
                match route {
                    Some(route) => {
                        if route.send(message).await.is_err() {
                            lock(&sessions).remove(&session_id);
                        }
                    }
                    None => {
                        tracing::debug!(session = %session_id_text(session_id), "message for a session that is over")
                    }
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e.to_string()),
        }
    };
    // Dropping the routes ends every session's line: they see the helper go.
    lock(&sessions).clear();
    {
        let mut inner = lock(&hub.inner);
        if inner.as_ref().is_some_and(|h| h.id == id) {
            *inner = None;
            hub.monitors.send_if_modified(|known| {
                let changed = !known.is_empty();
                known.clear();
                changed
            });
        }
    }
    writer.abort();
    outcome
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn only_active_local_graphical_sessions_count() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("1", "UID=1000\nTYPE=x11\nACTIVE=1\nREMOTE=0\n");
        write("2", "UID=1001\nTYPE=tty\nACTIVE=1\n");
        write("3", "UID=1002\nTYPE=wayland\nACTIVE=0\n");
        write("4", "UID=1003\nTYPE=x11\nACTIVE=1\nREMOTE=1\n");
        write("5", "UID=1004\nTYPE=wayland\nACTIVE=1\n");
        let mut users = graphical_session_users(dir.path());
        users.sort();
        assert_eq!(users, vec![1000, 1004]);
        assert!(graphical_session_users(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn the_service_user_itself_is_allowed() {
        assert!(peer_allowed(own_uid()).is_ok());
    }

    #[test]
    fn the_packaged_service_uses_the_runtime_directory() {
        assert_eq!(
            socket_path_for(Path::new("/var/lib/deskside-agent")),
            PathBuf::from(SYSTEM_SOCKET)
        );
        assert_eq!(
            socket_path_for(Path::new("/tmp/x")),
            PathBuf::from("/tmp/x/session.sock")
        );
    }

    #[tokio::test]
    async fn a_helper_connects_and_a_second_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = bind(&path).unwrap();
        let hub = Arc::new(HelperHub::default());
        tokio::spawn(serve(listener, hub.clone()));
        assert!(hub.open(1).is_err());
        let hello = HelperToService::Hello {
            version: "t".into(),
            display: Ok(":9".into()),
        };
        let first = UnixStream::connect(&path).await.unwrap();
        let (r1, mut w1) = first.into_split();
        write_message(&mut w1, &hello).await.unwrap();
        let mut r1 = MessageReader::new(r1);
        assert_eq!(
            r1.next::<ServiceToHelper>().await.unwrap(),
            Some(ServiceToHelper::Welcome)
        );
        let second = UnixStream::connect(&path).await.unwrap();
        let (r2, mut w2) = second.into_split();
        write_message(&mut w2, &hello).await.unwrap();
        let mut r2 = MessageReader::new(r2);
        assert_eq!(r2.next::<ServiceToHelper>().await.unwrap(), None);
        let mut line = hub.open(5).unwrap();
        assert!(hub.open(6).is_err(), "one session at a time");
        write_message(
            &mut w1,
            &HelperToService::Consent {
                session_id: 5,
                answer: deskside_protocol::helper::ConsentAnswer::Refused,
            },
        )
        .await
        .unwrap();
        assert!(matches!(
            line.rx.recv().await,
            Some(HelperToService::Consent { session_id: 5, .. })
        ));
        drop(w1);
        assert!(
            line.rx.recv().await.is_none(),
            "the line ends with the helper"
        );
    }
}
