//! The employee's help requests on this device: the outbox that keeps every
//! typed request until the relay acknowledges it, and the requests' state
//! as the relay last sent it (replies included).
//!
//! A request is written (owner-only, `deskside_net::files`) to
//! `requests-outbox/<client_id>.json` before anything is sent, and deleted
//! only after the relay answered `HelpRequestStored`; a crash, a reboot or
//! an unreachable relay leaves it there, and `deskside-agent run` sends it
//! when it connects. The relay stores one request per client id, so a
//! resend after a lost acknowledgement is harmless. Failed attempts are
//! added to the request: they are evidence of the connection problem.

use std::path::PathBuf;

use deskside_net::files::{create_private_dir, read_private, write_private, FileError};
use deskside_net::transport::{client_endpoint, resolve};
use deskside_net::{connect, NetError};
use deskside_protocol::agent::{AgentToRelay, RelayToAgent};
use deskside_protocol::helper::{FiledOutcome, LocalRequests, RequestUpdate};
use deskside_protocol::message::Nested;
use deskside_protocol::request::{DeliveryFailure, EmployeeRequest, HelpRequest};
use deskside_protocol::Refusal;
use serde::{Deserialize, Serialize};

use crate::link::LinkError;
use crate::state::StateDir;

/// The outbox directory in the state directory.
pub const OUTBOX_DIR: &str = "requests-outbox";
/// The requests' state as the relay last sent it, and the ones sent.
pub const STATE_FILE: &str = "requests.json";
/// How long `help` waits for the relay before leaving the request queued.
pub const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Errors of the outbox.
#[derive(Debug, thiserror::Error)]
pub enum RequestsError {
    /// A file could not be written or read.
    #[error("{0}; check the permissions of the agent's state directory")]
    File(#[from] FileError),
    /// A file holds something unreadable.
    #[error("{path} is unreadable ({error}); move it away and type the request again")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        error: String,
    },
}

/// What this device knows of its requests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestsState {
    /// Requests the relay acknowledged: client id, number, summary, when
    /// typed (Unix ms).
    pub sent: Vec<SentRequest>,
    /// The relay's view (status, replies), as last received.
    pub relay: Vec<EmployeeRequest>,
    /// Which local user filed each request that came through the service's
    /// local channel (client id → "uid 1000"); requests filed by the
    /// service's own user are not listed.
    #[serde(default)]
    pub local_users: std::collections::BTreeMap<String, String>,
}

/// A request the relay acknowledged (the same record the service hands a
/// local user over its channel).
pub use deskside_protocol::helper::SentHelpRequest as SentRequest;

/// Whether `client_id` is one this agent could have made (32 lowercase hex
/// digits): it names a file, so anything else (a path) is refused.
pub fn valid_client_id(client_id: &str) -> bool {
    client_id.len() == 32
        && client_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Files a request: writes it to the outbox first (so nothing typed is
/// lost), tries once to send it on a connection of its own, and says what
/// became of it. A request the relay refused as invalid is dropped (the
/// employee is told why); one that could not reach the relay stays queued
/// with the failed attempt attached, for the running agent to send.
pub async fn file(
    state: &StateDir,
    request: &mut HelpRequest,
) -> Result<FiledOutcome, RequestsError> {
    enqueue(state, request)?;
    let relay = state
        .enrollment()
        .map(|e| e.relay)
        .unwrap_or_else(|_| "IT's relay".to_owned());
    let outcome = match tokio::time::timeout(SEND_TIMEOUT, send_once(state, request)).await {
        Ok(Ok(number)) => {
            delivered(state, &request.client_id, number)?;
            return Ok(FiledOutcome::Sent { number });
        }
        // The relay read it and said what is wrong: resending it cannot
        // help, and the employee is there to send it again, corrected.
        Ok(Err(LinkError::Refused(Refusal::Invalid(reason)))) => {
            discard(state, &request.client_id)?;
            return Ok(FiledOutcome::Refused { reason });
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!(
            "the relay {relay} did not answer within {} s",
            SEND_TIMEOUT.as_secs()
        ),
    };
    record_failure(state, request, crate::clock::unix_millis(), outcome.clone())?;
    Ok(FiledOutcome::Queued { error: outcome })
}

/// Records that `local_user` filed `client_id` through the service (before
/// the request is queued, so a crash never leaves it unattributed).
pub fn remember_local_user(
    state: &StateDir,
    client_id: &str,
    local_user: &str,
) -> Result<(), RequestsError> {
    update(state, |current| {
        current
            .local_users
            .insert(client_id.to_owned(), local_user.to_owned());
    })
}

/// The requests `local_user` filed through the service: the queued ones
/// (without their snapshots), the sent ones and the relay's view of them.
pub fn for_local_user(state: &StateDir, local_user: &str) -> LocalRequests {
    let known = load(state);
    let theirs =
        |client_id: &str| known.local_users.get(client_id).map(String::as_str) == Some(local_user);
    LocalRequests {
        queued: queued(state)
            .into_iter()
            .filter(|r| theirs(&r.client_id))
            .map(|r| HelpRequest {
                snapshot_json: None,
                ..r
            })
            .collect(),
        sent: known
            .sent
            .iter()
            .filter(|s| theirs(&s.client_id))
            .cloned()
            .collect(),
        relay: known
            .relay
            .iter()
            .filter(|r| theirs(&r.client_id))
            .cloned()
            .collect(),
    }
}

/// A new client id: 32 hex digits.
pub fn new_client_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn outbox(state: &StateDir) -> PathBuf {
    state.root().join(OUTBOX_DIR)
}

fn queued_path(state: &StateDir, client_id: &str) -> PathBuf {
    outbox(state).join(format!("{client_id}.json"))
}

/// Writes the request to the outbox (before any attempt to send it).
pub fn enqueue(state: &StateDir, request: &HelpRequest) -> Result<PathBuf, RequestsError> {
    create_private_dir(&outbox(state))?;
    let path = queued_path(state, &request.client_id);
    let json = serde_json::to_vec(request).map_err(|e| RequestsError::Corrupt {
        path: path.clone(),
        error: e.to_string(),
    })?;
    write_private(&path, &json)?;
    Ok(path)
}

/// Every request waiting in the outbox, oldest first. Unreadable files
/// are left in place and logged.
pub fn queued(state: &StateDir) -> Vec<HelpRequest> {
    let Ok(entries) = std::fs::read_dir(outbox(state)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        match read_private(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                serde_json::from_slice::<HelpRequest>(&bytes).map_err(|e| e.to_string())
            }) {
            Ok(request) => out.push(request),
            Err(e) => tracing::warn!(path = %path.display(), "queued help request unreadable: {e}"),
        }
    }
    out.sort_by_key(|r| r.created_ms);
    out
}

/// Adds a failed attempt to a queued request.
pub fn record_failure(
    state: &StateDir,
    request: &mut HelpRequest,
    at_ms: i64,
    error: String,
) -> Result<(), RequestsError> {
    request.failures.push(DeliveryFailure { at_ms, error });
    if request.failures.len() > 20 {
        request.failures.remove(0);
    }
    enqueue(state, request).map(|_| ())
}

/// The relay stored the request: forget the queued copy, remember its
/// number.
pub fn delivered(state: &StateDir, client_id: &str, number: u64) -> Result<(), RequestsError> {
    let path = queued_path(state, client_id);
    let summary = read_private(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<HelpRequest>(&bytes).ok())
        .map(|r| (r.answers.summary, r.created_ms));
    update(state, |current| {
        if !current.sent.iter().any(|s| s.client_id == client_id) {
            let (summary, created_ms) = summary.unwrap_or_default();
            current.sent.push(SentRequest {
                client_id: client_id.to_owned(),
                number,
                summary,
                created_ms,
            });
        }
    })?;
    discard(state, client_id)
}

/// Removes a queued request the relay refused as invalid (the employee
/// was told why).
pub fn discard(state: &StateDir, client_id: &str) -> Result<(), RequestsError> {
    let path = queued_path(state, client_id);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RequestsError::File(FileError::Io {
            action: "cannot remove",
            path,
            source: e,
        })),
    }
}

/// Keeps the relay's view of the requests.
pub fn save_relay_view(
    state: &StateDir,
    requests: Vec<EmployeeRequest>,
) -> Result<(), RequestsError> {
    update(state, |current| current.relay = requests)
}

/// What changed between the relay's previous view of the requests and
/// `new`, for the employee to be told: a request whose status changed or
/// that has new events (the newest one comes along). A request seen for
/// the first time counts only if it already has events. Each update comes
/// with its request's client id.
pub fn changes(old: &[EmployeeRequest], new: &[EmployeeRequest]) -> Vec<(String, RequestUpdate)> {
    new.iter()
        .filter_map(|request| {
            let before = old.iter().find(|o| o.client_id == request.client_id);
            let (status_changed, seen) = match before {
                Some(b) => (b.status != request.status, b.events.len()),
                None => (false, 0),
            };
            let fresh = request.events.get(seen..).unwrap_or_default();
            (status_changed || !fresh.is_empty()).then(|| {
                let update = RequestUpdate {
                    number: request.number,
                    status: request.status.clone(),
                    event: fresh.last().cloned(),
                };
                (request.client_id.clone(), update)
            })
        })
        .collect()
}

/// What this device knows of its requests.
pub fn load(state: &StateDir) -> RequestsState {
    read_private(&state.root().join(STATE_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// The lock file next to [`STATE_FILE`] that serialises its updates.
pub const LOCK_FILE: &str = "requests.lock";

/// Serialises the updates of this process's threads (the service's link
/// and its local channel); the file lock below does it across processes
/// (the service and `deskside-agent help`/`requests` run by the same user).
static UPDATES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Applies `change` to [`STATE_FILE`] as one read-modify-write: under the
/// process's lock and an exclusive advisory lock on [`LOCK_FILE`], it
/// reads the file, changes it and writes it back atomically (temp file,
/// fsync, rename), so concurrent updates never overwrite each other.
fn update(state: &StateDir, change: impl FnOnce(&mut RequestsState)) -> Result<(), RequestsError> {
    // A thread that panicked while holding the lock left no half-written
    // file (the write is atomic): the lock is still good to use.
    let _in_process = UPDATES.lock().unwrap_or_else(|e| e.into_inner());
    create_private_dir(state.root())?;
    let lock_path = state.root().join(LOCK_FILE);
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let lock_file = options.open(&lock_path).map_err(|source| FileError::Io {
        action: "cannot open",
        path: lock_path.clone(),
        source,
    })?;
    lock_file.lock().map_err(|source| FileError::Io {
        action: "cannot lock",
        path: lock_path,
        source,
    })?;
    let mut current = load(state);
    change(&mut current);
    // Closing the file (end of scope) releases the lock after the write.
    save(state, &current)
}

fn save(state: &StateDir, current: &RequestsState) -> Result<(), RequestsError> {
    let path = state.root().join(STATE_FILE);
    let json = serde_json::to_vec_pretty(current).map_err(|e| RequestsError::Corrupt {
        path: path.clone(),
        error: e.to_string(),
    })?;
    write_private(&path, &json)?;
    Ok(())
}

/// Sends one request on a connection of its own (the running agent's
/// connection is left alone) and returns the relay's number for it.
pub async fn send_once(state: &StateDir, request: &HelpRequest) -> Result<u64, LinkError> {
    let enrollment = state.enrollment()?;
    let identity = state.identity()?;
    let addr = resolve(&enrollment.relay).await?;
    let endpoint = client_endpoint(addr)?;
    let mut connected = connect(
        &endpoint,
        &crate::link::options(&enrollment.relay, enrollment.fingerprint, identity),
    )
    .await?;
    connected
        .send
        .send(&AgentToRelay::HelpRequest(request.clone()))
        .await?;
    let answer = connected.recv.recv::<RelayToAgent>().await?;
    connected.connection.close(0u32.into(), b"request sent");
    let outcome = match answer {
        Some(RelayToAgent::HelpRequestStored { client_id, number })
            if client_id == request.client_id =>
        {
            Ok(number)
        }
        Some(RelayToAgent::Refused(Nested(refusal))) => Err(LinkError::Refused(refusal)),
        Some(other) => Err(LinkError::Unexpected(format!("{other:?}"))),
        None => Err(NetError::Truncated.into()),
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), endpoint.wait_idle()).await;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use deskside_protocol::request::Answers;

    fn request(id: &str, at: i64) -> HelpRequest {
        HelpRequest {
            client_id: id.into(),
            created_ms: at,
            answers: Answers {
                summary: format!("problem {id}"),
                ..Answers::default()
            },
            snapshot_json: None,
            failures: vec![],
        }
    }

    #[test]
    fn a_queued_request_stays_until_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("agent"));
        assert!(queued(&state).is_empty());
        let mut second = request("b", 2);
        enqueue(&state, &request("a", 1)).unwrap();
        enqueue(&state, &second).unwrap();
        record_failure(&state, &mut second, 3, "timed out".into()).unwrap();
        let waiting = queued(&state);
        assert_eq!(
            waiting
                .iter()
                .map(|r| r.client_id.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(waiting[1].failures.len(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(queued_path(&state, "a"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "owner-only");
        }
        delivered(&state, "a", 17).unwrap();
        delivered(&state, "a", 17).unwrap();
        assert_eq!(queued(&state).len(), 1);
        let known = load(&state);
        assert_eq!(known.sent.len(), 1);
        assert_eq!(
            (known.sent[0].number, known.sent[0].summary.as_str()),
            (17, "problem a")
        );
        assert_eq!(new_client_id().len(), 32);
        assert_ne!(new_client_id(), new_client_id());
    }

    #[test]
    fn a_local_user_sees_only_the_requests_they_filed_through_the_service() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("agent"));
        let (alice, bob) = ("uid 1000", "uid 1001");
        let ids: Vec<String> = (0..3).map(|_| new_client_id()).collect();
        remember_local_user(&state, &ids[0], alice).unwrap();
        remember_local_user(&state, &ids[1], bob).unwrap();
        // ids[2]: the service's own user (no local user recorded).
        for (at, id) in ids.iter().enumerate() {
            let mut r = request(id, at as i64);
            r.snapshot_json = Some(b"{}".to_vec());
            enqueue(&state, &r).unwrap();
        }
        delivered(&state, &ids[1], 7).unwrap();
        let theirs = for_local_user(&state, alice);
        assert_eq!(theirs.queued.len(), 1);
        assert_eq!(theirs.queued[0].client_id, ids[0]);
        assert_eq!(theirs.queued[0].snapshot_json, None, "snapshots stay");
        assert!(theirs.sent.is_empty());
        let bobs = for_local_user(&state, bob);
        assert_eq!((bobs.queued.len(), bobs.sent[0].number), (0, 7));
        assert!(for_local_user(&state, "uid 1002").queued.is_empty());
    }

    #[test]
    fn a_reply_or_a_status_change_is_an_update_and_an_unchanged_list_none() {
        use deskside_protocol::request::RequestEvent;
        let event = |kind: &str, text: &str| RequestEvent {
            at: 1,
            author: "tech".into(),
            kind: kind.into(),
            text: text.into(),
        };
        let request = |id: &str, status: &str, events: Vec<RequestEvent>| EmployeeRequest {
            client_id: id.into(),
            number: 4,
            status: status.into(),
            assignee: None,
            events,
        };
        let before = vec![request("a", "claimed", vec![event("claimed", "")])];
        assert!(changes(&before, &before).is_empty());
        let replied = vec![request(
            "a",
            "waiting",
            vec![event("claimed", ""), event("reply", "restart it")],
        )];
        let updates = changes(&before, &replied);
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].0, "a");
        assert_eq!(updates[0].1.status, "waiting");
        assert_eq!(
            updates[0].1.event.as_ref().map(|e| e.text.as_str()),
            Some("restart it")
        );
        // New and quiet: nothing to say; new with a reply: say it.
        assert!(changes(&[], &[request("b", "new", vec![])]).is_empty());
        assert_eq!(changes(&[], &replied).len(), 1);
    }

    #[test]
    fn concurrent_updates_from_the_link_and_the_local_channel_are_all_kept() {
        // The service's link (delivered, relay view) and its local channel
        // (local users) update requests.json from different threads at the
        // same time: none of the updates may be lost.
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("agent"));
        let per_thread = 10;
        let ids: Vec<Vec<String>> = (0..8)
            .map(|_| (0..per_thread).map(|_| new_client_id()).collect())
            .collect();
        std::thread::scope(|scope| {
            for (t, mine) in ids.iter().enumerate() {
                let state = &state;
                scope.spawn(move || {
                    for (i, id) in mine.iter().enumerate() {
                        if t % 2 == 0 {
                            remember_local_user(state, id, &format!("uid {t}")).unwrap();
                        } else {
                            enqueue(state, &request(id, i as i64)).unwrap();
                            delivered(state, id, (t * 100 + i) as u64).unwrap();
                        }
                    }
                });
            }
            scope.spawn(|| {
                for n in 0..per_thread {
                    let view = vec![EmployeeRequest {
                        client_id: "relay".into(),
                        number: n as u64,
                        status: "new".into(),
                        assignee: None,
                        events: vec![],
                    }];
                    save_relay_view(&state, view).unwrap();
                }
            });
        });
        let known = load(&state);
        for (t, mine) in ids.iter().enumerate() {
            for id in mine {
                if t % 2 == 0 {
                    assert_eq!(known.local_users.get(id), Some(&format!("uid {t}")), "lost");
                } else {
                    assert!(known.sent.iter().any(|s| &s.client_id == id), "lost");
                }
            }
        }
        assert_eq!(known.relay.len(), 1);
        assert_eq!(known.relay[0].number, per_thread as u64 - 1);
    }

    #[test]
    fn an_update_waits_for_another_process_holding_the_lock_file() {
        // Another process (the CLI) holding the file lock is stood in for
        // by a second open of the lock file: flock and LockFileEx locks
        // belong to the open file, so it excludes this process's update.
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("agent"));
        create_private_dir(state.root()).unwrap();
        let other = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(state.root().join(LOCK_FILE))
            .unwrap();
        other.lock().unwrap();
        let id = new_client_id();
        let (done, finished) = std::sync::mpsc::channel();
        let waiting = {
            let (state, id) = (state.clone(), id.clone());
            std::thread::spawn(move || {
                let result = remember_local_user(&state, &id, "uid 1000");
                let _ = done.send(result.is_ok());
            })
        };
        // With the lock held the update cannot finish (this never fails
        // on correct code; on code without the lock it finishes at once).
        assert!(
            finished
                .recv_timeout(std::time::Duration::from_millis(300))
                .is_err(),
            "the update did not wait for the file lock"
        );
        assert!(load(&state).local_users.is_empty());
        // Closing the file releases its lock, as when the other process
        // finishes (under Wine 8 an explicit unlock here failed with
        // "Lock violation").
        drop(other);
        let ok = finished
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap();
        waiting.join().unwrap();
        assert!(ok);
        assert_eq!(
            load(&state).local_users.get(&id).map(String::as_str),
            Some("uid 1000")
        );
    }

    #[test]
    fn only_our_own_ids_name_files() {
        assert!(valid_client_id(&new_client_id()));
        assert!(!valid_client_id("../../../../etc/passwd0000000000"));
        assert!(!valid_client_id("ABCDEF0123456789abcdef0123456789"));
        assert!(!valid_client_id("abc"));
    }
}
