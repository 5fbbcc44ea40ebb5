//! The console's relay connection while a session runs. When it is lost (a
//! Wi‑Fi hiccup, the relay restarting), this connects again with backoff,
//! asks the relay to resume the session on the new connection, and moves
//! the session's [`Carrier`] over. The end-to-end connection inside never
//! notices more than lost packets, as long as the path is back within its
//! idle timeout ([`INNER_IDLE_TIMEOUT`]); past that the session is over
//! anyway and this gives up.
//!
//! A network switch (the technician's laptop moving from Wi‑Fi to a
//! hotspot) needs no reconnection: a [`Roamer`] moves the connection's
//! endpoint to a new socket when the source address towards the relay
//! changes, and QUIC migrates the connection (as the agent does).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deskside_net::roam::{Roamer, Source};
use deskside_net::tunnel::{Carrier, INNER_IDLE_TIMEOUT};
use deskside_protocol::console::{ConsoleRequest, ConsoleResponse};
use deskside_protocol::{Fingerprint, Refusal, SessionId};
use tokio::sync::{mpsc, oneshot};

use crate::client::{Client, ClientError};

/// First delay between reconnection attempts.
const BACKOFF_INITIAL: Duration = Duration::from_millis(250);
/// Longest delay between attempts: short, because the end-to-end
/// connection only waits [`INNER_IDLE_TIMEOUT`].
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Where and as whom to connect again.
#[derive(Clone, Debug)]
pub struct RelayTarget {
    /// `host:port`.
    pub relay: String,
    /// The pinned relay certificate.
    pub fingerprint: Fingerprint,
    /// The technician token.
    pub token: String,
    /// The file that may pin the source address ([`source_address_path`]).
    pub source_address: PathBuf,
}

/// The file that pins the console's source address towards the relay (one
/// IP address, for machines with several networks), beside the profile:
/// `<profile>.source-address`. Without it the OS's route decides, and a
/// change of the route's source address moves the connection too.
pub fn source_address_path(profile: &Path) -> PathBuf {
    crate::org_key::beside(profile, "source-address")
}

/// Keeps one relay connection's endpoint on the current network; stops
/// when dropped.
struct Roaming(tokio::task::JoinHandle<()>);

impl Drop for Roaming {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts moving `client`'s endpoint with the source address (at once when
/// the address is pinned).
fn roam(client: &Client, source_address: &Path) -> Roaming {
    let mut roamer = Roamer::new(
        client.endpoint().clone(),
        client.connection().remote_address(),
        Source::Pinned(source_address.to_owned()),
    );
    if let Err(e) = roamer.check() {
        tracing::debug!("cannot look at the route to the relay: {e}");
    }
    Roaming(tokio::spawn(roamer.run()))
}

/// What happened to the relay connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// The connection to the relay broke; reconnecting.
    Lost {
        /// Why, as quinn says it.
        reason: String,
    },
    /// A new connection carries the session.
    Resumed {
        /// From the loss to the resume.
        after: Duration,
        /// Connection attempts it took.
        attempts: u32,
    },
    /// The session cannot be resumed: the relay says it is over, or the
    /// relay did not come back in time.
    GaveUp {
        /// Why.
        reason: String,
    },
}

/// Runs in the background for one session; see the module docs.
#[derive(Debug)]
pub struct SessionLink {
    task: tokio::task::JoinHandle<Option<Client>>,
    stop: oneshot::Sender<()>,
    events: mpsc::UnboundedReceiver<LinkEvent>,
}

impl SessionLink {
    /// Watches `client`, whose connection `carrier` is attached to, for the
    /// session `session_id`.
    pub fn start(
        client: Client,
        target: RelayTarget,
        carrier: Arc<Carrier>,
        session_id: SessionId,
    ) -> Self {
        let (stop, stop_rx) = oneshot::channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(keep(
            client, target, carrier, session_id, stop_rx, events_tx,
        ));
        Self { task, stop, events }
    }

    /// The next event; pending forever once the watcher has stopped.
    pub async fn next_event(&mut self) -> LinkEvent {
        match self.events.recv().await {
            Some(event) => event,
            None => std::future::pending().await,
        }
    }

    /// Stops watching and hands back the current connection, if there is
    /// one that works.
    pub async fn finish(self) -> Option<Client> {
        let _ = self.stop.send(());
        self.task.await.ok().flatten()
    }
}

async fn keep(
    mut client: Client,
    target: RelayTarget,
    carrier: Arc<Carrier>,
    session_id: SessionId,
    mut stop: oneshot::Receiver<()>,
    events: mpsc::UnboundedSender<LinkEvent>,
) -> Option<Client> {
    let mut _roaming = roam(&client, &target.source_address);
    loop {
        let closed = tokio::select! {
            closed = client.connection().closed() => closed,
            _ = &mut stop => return Some(client),
        };
        // A revoked or expired token: reconnecting would only be refused.
        if let Some(reason) = crate::client::access_ended(client.connection()) {
            tracing::warn!("the relay ended this technician's access: {reason}");
            let _ = events.send(LinkEvent::GaveUp { reason });
            return None;
        }
        let lost_at = Instant::now();
        carrier.detach();
        tracing::warn!("lost the relay connection ({closed}); reconnecting to resume the session");
        let _ = events.send(LinkEvent::Lost {
            reason: closed.to_string(),
        });
        let deadline = lost_at + INNER_IDLE_TIMEOUT;
        let mut backoff = BACKOFF_INITIAL;
        let mut attempts = 0u32;
        client = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let reason = format!(
                    "the relay could not be reached again within {} s",
                    INNER_IDLE_TIMEOUT.as_secs()
                );
                let _ = events.send(LinkEvent::GaveUp { reason });
                return None;
            }
            attempts += 1;
            let attempt = tokio::select! {
                attempt = tokio::time::timeout(left, resume(&target, session_id)) => attempt,
                _ = &mut stop => return None,
            };
            match attempt {
                Ok(Ok(resumed)) => break resumed,
                Ok(Err(ClientError::Refused(refusal))) if is_final(&refusal) => {
                    tracing::warn!("the relay will not resume the session: {refusal}");
                    let _ = events.send(LinkEvent::GaveUp {
                        reason: refusal.to_string(),
                    });
                    return None;
                }
                Ok(Err(e)) => tracing::debug!(attempts, "reconnecting failed: {e}"),
                Err(_) => tracing::debug!(attempts, "reconnecting timed out"),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = &mut stop => return None,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        };
        carrier.attach(client.connection().clone());
        _roaming = roam(&client, &target.source_address);
        let after = lost_at.elapsed();
        tracing::info!(
            attempts,
            after_ms = after.as_millis() as u64,
            "session resumed on a new relay connection"
        );
        let _ = events.send(LinkEvent::Resumed { after, attempts });
    }
}

/// Whether a refusal means trying again is pointless (the session is over,
/// or the token no longer works), rather than a passing failure.
fn is_final(refusal: &Refusal) -> bool {
    !matches!(refusal, Refusal::Internal(_))
}

/// Connects, authenticates and asks to resume `session_id`.
async fn resume(target: &RelayTarget, session_id: SessionId) -> Result<Client, ClientError> {
    let mut client = Client::connect(&target.relay, target.fingerprint, &target.token).await?;
    match client
        .request(ConsoleRequest::ResumeSession { session_id })
        .await?
    {
        ConsoleResponse::Done => Ok(client),
        other => Err(ClientError::Unexpected(format!("{other:?}"))),
    }
}
