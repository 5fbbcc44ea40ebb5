//! Ending a technician's access at once.
//!
//! A console connection authenticates once, but its token is checked again
//! before every request ([`Access::check`]), the connection is closed the moment
//! its token is revoked on this relay ([`end_access`] through
//! [`Consoles`]) or expires (a timer in the connection's loop, see
//! [`expiry`]), and the token's open sessions are ended with a
//! `session.end` row saying why. The close reason travels with QUIC close
//! code [`CLOSE_ACCESS_ENDED`], and consoles print it.
//!
//! This module never reads the store directly: it goes through `Shared`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use deskside_protocol::console::CLOSE_ACCESS_ENDED;
use deskside_protocol::{Refusal, TechnicianId};

use crate::clock::now_secs;
use crate::conn::internal_error;
use crate::presence::AgentCommand;
use crate::shared::Shared;
use crate::store::{AccessEnd, EndedSession};

/// The live console connections of each technician token on this relay.
#[derive(Debug, Default)]
pub struct Consoles {
    by_token: Mutex<HashMap<TechnicianId, Vec<quinn::Connection>>>,
}

impl Consoles {
    fn lock(&self) -> MutexGuard<'_, HashMap<TechnicianId, Vec<quinn::Connection>>> {
        // Plain inserts and removals: a panic elsewhere leaves the map whole.
        self.by_token.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records an authenticated connection of `technician`.
    pub fn register(&self, technician: TechnicianId, connection: &quinn::Connection) {
        self.lock()
            .entry(technician)
            .or_default()
            .push(connection.clone());
    }

    /// Forgets a connection that ended.
    pub fn unregister(&self, technician: TechnicianId, connection: &quinn::Connection) {
        let mut map = self.lock();
        if let Some(list) = map.get_mut(&technician) {
            list.retain(|c| c.stable_id() != connection.stable_id());
            if list.is_empty() {
                map.remove(&technician);
            }
        }
    }

    /// Closes every connection of `technician` with `reason`; returns how
    /// many there were.
    pub fn close_all(&self, technician: TechnicianId, reason: &str) -> usize {
        self.close_all_but(technician, reason, None)
    }

    /// Like [`Consoles::close_all`], leaving `kept` (a `stable_id`) open.
    pub fn close_all_but(
        &self,
        technician: TechnicianId,
        reason: &str,
        kept: Option<usize>,
    ) -> usize {
        let mut map = self.lock();
        let mut connections = map.remove(&technician).unwrap_or_default();
        if let Some(kept) = kept {
            let (keep, close): (Vec<_>, Vec<_>) =
                connections.into_iter().partition(|c| c.stable_id() == kept);
            if !keep.is_empty() {
                map.insert(technician, keep);
            }
            connections = close;
        }
        drop(map);
        for connection in &connections {
            connection.close(CLOSE_ACCESS_ENDED.into(), reason.as_bytes());
        }
        connections.len()
    }

    /// How many connections `technician` has open (for tests and logs).
    pub fn count(&self, technician: TechnicianId) -> usize {
        self.lock().get(&technician).map_or(0, Vec::len)
    }
}

/// The close reason a console prints when its token stops working.
pub fn close_reason(cause: AccessEnd) -> String {
    match cause {
        AccessEnd::Revoked => "your technician token was revoked by an administrator; this connection and its sessions are closed: ask an administrator for a new token, then run `deskside login` again".to_owned(),
        AccessEnd::Expired => "your technician token expired; this connection and its sessions are closed: ask an administrator for a new token, then run `deskside login` again".to_owned(),
    }
}

/// What one console connection knows about its token, to check it before
/// every request.
///
/// The check is in memory: a revocation on this relay has closed the
/// connection ([`Consoles::close_all`]), and the expiry is compared with
/// the clock. The store is read again at most once a second, for changes
/// made elsewhere (another relay sharing the database, an administrator's
/// tool): a per-request read cost about 40 µs of relay time per request
/// (`deskside-bench-requests`), for nothing the once-a-second read misses
/// by more than a second.
#[derive(Debug)]
pub struct Access {
    technician: TechnicianId,
    connection: quinn::Connection,
    expires_at: Option<i64>,
    /// When the store was last read, Unix seconds.
    store_read_at: AtomicI64,
    /// Set when a request on this connection revoked its own token.
    revoked: AtomicBool,
}

impl Access {
    /// The access of `technician` on `connection`, whose token expires at
    /// `expires_at`, read from the store at `read_at`.
    pub fn new(
        technician: TechnicianId,
        connection: &quinn::Connection,
        expires_at: Option<i64>,
        read_at: i64,
    ) -> Self {
        Self {
            technician,
            connection: connection.clone(),
            expires_at,
            store_read_at: AtomicI64::new(read_at),
            revoked: AtomicBool::new(false),
        }
    }

    /// Records that this connection's own token was revoked by a request
    /// on it: the next request ends its access.
    pub fn mark_revoked(&self) {
        self.revoked.store(true, Ordering::Relaxed);
    }

    /// Checks, before a request runs, that the token still grants access.
    /// If it does not (revoked, expired, possibly by another relay sharing
    /// the database), the token's access is ended and the request refused.
    pub async fn check(&self, shared: &Shared) -> Result<(), Refusal> {
        if self.connection.close_reason().is_some() {
            // Closed by a revocation (or gone): nothing more runs for it.
            return Err(Refusal::BadTechnicianToken);
        }
        let now = now_secs();
        let cause = if self.revoked.load(Ordering::Relaxed) {
            AccessEnd::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            AccessEnd::Expired
        } else if self.store_read_at.swap(now, Ordering::Relaxed) >= now {
            return Ok(());
        } else {
            let id = self.technician;
            match shared.store(move |s| s.technician_access(id, now)).await? {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(cause)) => cause,
                Err(e) => return Err(internal_error(&e)),
            }
        };
        end_access(shared, self.technician, cause, crate::store::SYSTEM_ACTOR).await;
        Err(Refusal::BadTechnicianToken)
    }
}

/// When `technician`'s token expires (Unix seconds), `None` for never;
/// `Err` if it no longer grants access.
pub async fn expiry(shared: &Shared, technician: TechnicianId) -> Result<Option<i64>, AccessEnd> {
    let now = now_secs();
    match shared
        .store(move |s| s.technician_access(technician, now))
        .await
    {
        Ok(Ok(access)) => access,
        // A store fault is not a revocation: the per-request check will
        // see the token's state once the store answers again.
        Ok(Err(e)) => {
            internal_error(&e);
            Ok(None)
        }
        Err(_) => Ok(None),
    }
}

/// Sleeps until `expires_at` (Unix seconds); forever for `None`.
pub async fn until(expires_at: Option<i64>) {
    match expires_at {
        Some(at) => {
            let left = at.saturating_sub(now_secs()).max(0) as u64;
            tokio::time::sleep(std::time::Duration::from_secs(left)).await;
        }
        None => std::future::pending().await,
    }
}

/// Ends `technician`'s access: closes its console connections on this
/// relay with the reason, then ends its open sessions (audited with
/// `actor` and why) and stops forwarding their packets.
pub async fn end_access(shared: &Shared, technician: TechnicianId, cause: AccessEnd, actor: &str) {
    end_access_but(shared, technician, cause, actor, None).await;
}

/// Like [`end_access`], leaving connection `kept` (a `stable_id`) open: an
/// administrator who revokes their own token gets the answer on it, and it
/// closes at its next request ([`Access::mark_revoked`]).
pub async fn end_access_but(
    shared: &Shared,
    technician: TechnicianId,
    cause: AccessEnd,
    actor: &str,
    kept: Option<usize>,
) {
    let closed = shared
        .consoles
        .close_all_but(technician, &close_reason(cause), kept);
    let now = now_secs();
    let actor = actor.to_owned();
    let ended = shared
        .store(move |s| s.end_technician_sessions(technician, cause, &actor, now))
        .await;
    let sessions = match ended {
        Ok(Ok(sessions)) => sessions,
        Ok(Err(e)) => {
            internal_error(&e);
            Vec::new()
        }
        Err(_) => Vec::new(),
    };
    for session in &sessions {
        stop(
            shared,
            session,
            "its technician token stopped granting access",
        )
        .await;
    }
    if closed > 0 || !sessions.is_empty() {
        tracing::info!(
            %technician,
            why = cause.as_str(),
            connections = closed,
            sessions = sessions.len(),
            "technician access ended"
        );
    }
}

/// Stops a session the store just ended: the relay forwards nothing more
/// for it, and the agent is told, so that a consent dialog closes and a
/// running session ends at once on the employee's screen (without the
/// message it would wait out the end-to-end idle timeout, 30 s).
pub async fn stop(shared: &Shared, session: &EndedSession, why: &str) {
    crate::session_follow_up::session_ended(shared, &session.record, why);
    if let Some(commands) = shared.presence.commands(session.device) {
        let command = AgentCommand::WithdrawSession {
            session_id: session.id,
        };
        if commands.send(command).await.is_err() {
            tracing::debug!(device = %session.device, consented = session.consented, "the device went offline; the session ends with its connection");
        }
    }
}

/// How long an enrolled device may stay without ever attaching before it
/// counts as an orphan (an enrollment whose agent crashed before keeping
/// its identity): a day covers an install interrupted overnight.
pub const ORPHAN_AGE_SECS: i64 = 24 * 3600;

/// How often the relay looks for orphan devices.
pub const ORPHAN_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes orphan devices (enrolled more than [`ORPHAN_AGE_SECS`] ago,
/// never attached), each audited, and gives their token uses back.
pub async fn remove_orphans(shared: &Shared) {
    let now = now_secs();
    match shared
        .store(move |s| s.remove_orphan_devices(now - ORPHAN_AGE_SECS, now))
        .await
    {
        Ok(Ok(removed)) => {
            for device in removed {
                tracing::info!(%device, "removed a device that enrolled but never attached");
            }
        }
        Ok(Err(e)) => tracing::warn!("cannot remove orphan devices: {e}"),
        Err(_) => {}
    }
}
