//! The agent service's end of the helper channel: accepts the session
//! helper (the channel says who it is and whether it may talk, see
//! [`super::channel`]) and routes its messages to sessions.
//!
//! Anyone the channel refuses is told nothing and disconnected, with the
//! reason logged. One helper at a time: a second one is refused while the
//! first is alive.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use deskside_protocol::helper::{HelperToService, RequestUpdate, ServiceToHelper};
use deskside_protocol::session::Monitor;
use deskside_protocol::SessionId;
use tokio::sync::mpsc;

use super::channel::{Accepted, Halves, Listener, Peer, ReadHalf, WriteHalf};
use super::wire::{write_message, MessageReader};
use crate::state::StateDir;

/// Messages queued towards the helper before a sender waits.
const TO_HELPER_QUEUE: usize = 64;
/// Messages queued from the helper per session (frames are big: keep small).
const FROM_HELPER_QUEUE: usize = 8;

/// The connected helper, shared by the accept loop and the sessions.
#[derive(Debug, Default)]
pub struct HelperHub {
    inner: Mutex<Option<Connected>>,
    next_id: Mutex<u64>,
    /// The connected helper's monitors; empty while none is connected or
    /// it could not list them.
    monitors: tokio::sync::watch::Sender<Vec<Monitor>>,
    /// The service's state, for the help requests local users file and
    /// list over the channel (see [`super::help_channel`]); `None`: refused.
    requests: Option<StateDir>,
}

#[derive(Debug)]
struct Connected {
    id: u64,
    peer: Peer,
    display: Result<String, String>,
    tx: mpsc::Sender<ServiceToHelper>,
    sessions: Arc<Mutex<HashMap<SessionId, mpsc::Sender<HelperToService>>>>,
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
    sessions: Arc<Mutex<HashMap<SessionId, mpsc::Sender<HelperToService>>>>,
    session_id: SessionId,
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
    /// A hub that also files and lists local users' help requests in
    /// `state` (the running agent's).
    pub fn with_requests(state: StateDir) -> HelperHub {
        HelperHub {
            requests: Some(state),
            ..HelperHub::default()
        }
    }

    /// Tells the connected helper, if any, that one of this device's
    /// requests changed (it shows a notification). A request a local user
    /// filed through the service (`filed_by`) is told only to that user's
    /// helper. Never waits: with no helper or a full queue the update is
    /// dropped (`requests` shows it).
    pub fn request_update(&self, update: RequestUpdate, filed_by: Option<String>) {
        let inner = lock(&self.inner);
        let helper = inner
            .as_ref()
            .filter(|h| filed_by.as_ref().is_none_or(|user| *user == h.peer.user));
        if let Some(helper) = helper {
            if let Err(e) = helper
                .tx
                .try_send(ServiceToHelper::HelpRequestUpdate(update))
            {
                tracing::info!("the session helper was not told of a request's change: {e}");
            }
        }
    }

    /// A line to the connected helper for `session_id`, or why there is none.
    pub fn open(&self, session_id: SessionId) -> Result<HelperLine, String> {
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
            peer = %helper.peer,
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

/// Accepts helpers until the listener fails for good (bind it with
/// [`Listener::bind`] at [`super::channel::address_for`]).
pub async fn serve(mut listener: Listener, hub: Arc<HelperHub>) {
    loop {
        let accepted = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("helper channel accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        let hub = hub.clone();
        tokio::spawn(async move {
            if let Err(reason) = run_connection(accepted, &hub).await {
                tracing::info!("helper channel connection ended: {reason}");
            }
        });
    }
}

/// One connection: a session helper (its hello first) or a local user's
/// `help` / `requests` (one question, one answer).
async fn run_connection(accepted: Accepted, hub: &HelperHub) -> Result<(), String> {
    let Accepted {
        halves,
        peer,
        local_user,
    } = accepted;
    let Halves { read, write } = halves;
    let mut reader = MessageReader::new(read);
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), reader.next())
        .await
        .map_err(|_| "no first message within 5 s".to_owned())?
        .map_err(|e| e.to_string())?;
    match first {
        Some(HelperToService::Hello { version, display }) => match peer {
            Ok(peer) => {
                let who = peer.to_string();
                run_helper(reader, write, (version, display), peer, hub)
                    .await
                    .map_err(|reason| format!("{who}: {reason}"))
            }
            Err(reason) => Err(format!("refused a helper connection: {reason}")),
        },
        Some(
            question @ (HelperToService::FileHelpRequest(_) | HelperToService::ListHelpRequests),
        ) => match (&hub.requests, local_user) {
            (Some(state), Some(user)) => {
                super::help_channel::answer(state, &user, question, write).await
            }
            (None, _) => Err("this agent does not take help requests over its channel".to_owned()),
            (_, None) => Err("refused a help request: the local user is unknown".to_owned()),
        },
        Some(_) => Err("the first message was neither a hello nor a help request".to_owned()),
        None => Ok(()),
    }
}

async fn run_helper(
    mut reader: MessageReader<ReadHalf>,
    mut write: WriteHalf,
    (version, screen): (String, Result<String, String>),
    peer: Peer,
    hub: &HelperHub,
) -> Result<(), String> {
    let (tx, mut to_helper) = mpsc::channel::<ServiceToHelper>(TO_HELPER_QUEUE);
    let sessions: Arc<Mutex<HashMap<SessionId, mpsc::Sender<HelperToService>>>> = Arc::default();
    let id = {
        let mut inner = lock(&hub.inner);
        if inner.as_ref().is_some_and(|h| !h.tx.is_closed()) {
            return Err("another session helper is already connected".to_owned());
        }
        let mut next = lock(&hub.next_id);
        *next += 1;
        *inner = Some(Connected {
            id: *next,
            peer: peer.clone(),
            display: screen.clone(),
            tx: tx.clone(),
            sessions: sessions.clone(),
        });
        *next
    };
    tracing::info!(helper = id, %peer, %version, ?screen, "session helper connected");
    write_message(&mut write, &ServiceToHelper::Welcome)
        .await
        .map_err(|e| e.to_string())?;
    let writer = tokio::spawn(async move {
        while let Some(message) = to_helper.recv().await {
            if let Err(e) = write_message(&mut write, &message).await {
                tracing::info!("helper channel write failed: {e}");
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
                    HelperToService::FileHelpRequest(_) | HelperToService::ListHelpRequests => {
                        break Err("a help request on a session helper's connection".to_owned())
                    }
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
                        tracing::debug!(session = %session_id, "message for a session that is over")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::channel;

    #[tokio::test]
    async fn a_helper_connects_and_a_second_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // A fresh address: a socket in a temporary directory, or a pipe
        // named after one.
        let path = channel::address_for(dir.path());
        let listener = Listener::bind(&path).unwrap();
        let hub = Arc::new(HelperHub::default());
        tokio::spawn(serve(listener, hub.clone()));
        assert!(hub.open(SessionId(1)).is_err());
        let hello = HelperToService::Hello {
            version: "t".into(),
            display: Ok(":9".into()),
        };
        let Halves {
            read: r1,
            write: mut w1,
        } = channel::connect(&path).await.unwrap();
        write_message(&mut w1, &hello).await.unwrap();
        let mut r1 = MessageReader::new(r1);
        assert_eq!(
            r1.next::<ServiceToHelper>().await.unwrap(),
            Some(ServiceToHelper::Welcome)
        );
        let Halves {
            read: r2,
            write: mut w2,
        } = channel::connect(&path).await.unwrap();
        write_message(&mut w2, &hello).await.unwrap();
        let mut r2 = MessageReader::new(r2);
        assert_eq!(r2.next::<ServiceToHelper>().await.unwrap(), None);
        let mut line = hub.open(SessionId(5)).unwrap();
        assert!(hub.open(SessionId(6)).is_err(), "one session at a time");
        write_message(
            &mut w1,
            &HelperToService::Consent {
                session_id: SessionId(5),
                answer: deskside_protocol::helper::ConsentAnswer::Refused,
            },
        )
        .await
        .unwrap();
        assert!(matches!(
            line.rx.recv().await,
            Some(HelperToService::Consent {
                session_id: SessionId(5),
                ..
            })
        ));
        // Both halves: a pipe has no half-close.
        drop(w1);
        drop(r1);
        assert!(
            line.rx.recv().await.is_none(),
            "the line ends with the helper"
        );
    }
}
