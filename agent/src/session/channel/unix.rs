//! The channel on Unix: a socket file readable and writable by every local
//! user, where who may talk is decided per connection from the peer's uid
//! (`SO_PEERCRED`): the service's own uid, or the owner of an active local
//! graphical login known to systemd-logind.

use std::path::Path;

use tokio::net::{UnixListener, UnixStream};

use super::{admit, Accepted, Halves, Login, Peer, PeerFacts, Program};

/// The service's listening socket.
#[derive(Debug)]
pub struct Listener {
    inner: UnixListener,
}

impl Listener {
    /// Binds the socket (replacing a stale one), readable and writable by
    /// all local users: who may talk is decided per connection.
    pub fn bind(path: &Path) -> std::io::Result<Listener> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let inner = UnixListener::bind(path)?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
        Ok(Listener { inner })
    }

    /// The next connection and who it comes from.
    pub async fn accept(&mut self) -> std::io::Result<Accepted> {
        let (stream, _) = self.inner.accept().await?;
        let local_user = stream
            .peer_cred()
            .ok()
            .map(|cred| format!("uid {}", cred.uid()));
        let peer = match stream.peer_cred() {
            Ok(cred) => {
                let uid = cred.uid();
                peer_allowed(uid).map(|()| Peer {
                    user: format!("uid {uid}"),
                    process: cred.pid().and_then(|p| u32::try_from(p).ok()),
                    session: None,
                })
            }
            Err(e) => Err(format!("cannot read its credentials: {e}")),
        };
        Ok(Accepted {
            halves: halves(stream),
            peer,
            local_user,
        })
    }
}

/// Connects a helper to the service's socket.
pub async fn connect(path: &Path) -> std::io::Result<Halves> {
    Ok(halves(UnixStream::connect(path).await?))
}

fn halves(stream: UnixStream) -> Halves {
    let (read, write) = stream.into_split();
    Halves {
        read: Box::new(read),
        write: Box::new(write),
    }
}

/// Whether a helper running as `uid` may connect.
pub fn peer_allowed(uid: u32) -> Result<(), String> {
    let user = format!("uid {uid}");
    let service_user = format!("uid {}", own_uid());
    if user == service_user {
        return Ok(());
    }
    let logins: Vec<Login<String>> = graphical_session_users(Path::new("/run/systemd/sessions"))
        .into_iter()
        .map(|uid| Login {
            user: format!("uid {uid}"),
            session: None,
        })
        .collect();
    admit(&PeerFacts {
        user: &user,
        session: None,
        program: &Program::Unchecked,
        service_user: &service_user,
        logins: &logins,
    })
}

fn own_uid() -> u32 {
    nix::unistd::Uid::effective().as_raw()
}

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

#[cfg(test)]
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
    fn a_user_without_a_graphical_session_is_refused_with_the_reason() {
        // No uid this high owns a logind session on a test machine.
        let uid = 4_000_000_000;
        assert_eq!(
            peer_allowed(uid),
            Err(format!(
                "uid {uid} has no active graphical login session on this device"
            ))
        );
    }

    #[tokio::test]
    async fn a_connection_comes_with_the_peers_uid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let mut listener = Listener::bind(&path).unwrap();
        let _client = connect(&path).await.unwrap();
        let accepted = listener.accept().await.unwrap();
        let peer = accepted.peer.unwrap();
        assert_eq!(peer.user, format!("uid {}", own_uid()));
        assert_eq!(peer.process, Some(std::process::id()));
    }
}
