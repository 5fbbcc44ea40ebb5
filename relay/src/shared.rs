//! The state every connection task of one relay shares: the store, who is
//! online, the session router, the admission gate, keys kept outside the
//! database, metrics and the tasks the relay owns.
//!
//! Built once by [`Relay::spawn`](crate::server::Relay::spawn) and handed to
//! each connection as an `Arc`. It holds no connection state of its own and
//! never starts a task itself: spawned work goes to [`Shared::tasks`].

use std::sync::Arc;

use deskside_protocol::{Fingerprint, Refusal};

use crate::config::RelayHooks;
use crate::conn::internal_error;
use crate::presence::Presence;
use crate::sessions::Router;
use crate::store::Store;

/// State shared by every connection task.
#[derive(Debug)]
pub struct Shared {
    /// The database.
    pub store: Arc<Store>,
    /// Online devices.
    pub presence: Presence,
    /// This relay in the directory of relays sharing the store.
    pub directory: crate::cluster::Directory,
    /// The relay certificate's fingerprint (for tokens).
    pub fingerprint: Fingerprint,
    /// The address written into tokens.
    pub public_addr: String,
    /// Per-device limits of the measurement server.
    pub measure_limits: Arc<crate::measure::MeasureLimits>,
    /// Routes of remote-session packets.
    pub router: Arc<Router>,
    /// Test hooks (the default outside tests).
    pub hooks: RelayHooks,
    /// Who may start a handshake, and the limits before authentication.
    pub admission: Arc<crate::admission::Gate>,
    /// The key that signs the audit chain's head (kept outside the database).
    pub audit_anchor: crate::audit_anchor::AnchorKey,
    /// The key Wi‑Fi identifiers are hashed with (kept outside the database).
    pub identifier_key: crate::identifier_key::IdentifierKey,
    /// Live console connections per technician token, closed when the
    /// token is revoked.
    pub consoles: crate::access::Consoles,
    /// Counters and histograms served as Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Tasks that outlive their connection (resume-grace timers), owned
    /// by the relay: [`Relay::shutdown`](crate::server::Relay::shutdown) waits for them.
    pub tasks: crate::tasks::Tasks,
}

impl Shared {
    /// The devices of `org` online on any relay: those this relay holds,
    /// and with a shared store those the directory says a live relay holds.
    pub async fn online_in(
        &self,
        org: crate::store::OrgId,
    ) -> std::collections::HashSet<deskside_protocol::DeviceId> {
        let mut online: std::collections::HashSet<_> = self.presence.online().into_iter().collect();
        if self.directory.is_shared() {
            let lease = self.directory.lease_secs();
            let now = crate::clock::now_secs();
            match self
                .store(move |store| store.online_devices(org, now, lease))
                .await
            {
                Ok(Ok(elsewhere)) => online.extend(elsewhere),
                Ok(Err(e)) => tracing::warn!("cannot read which devices other relays hold: {e}"),
                Err(_) => {}
            }
        }
        online
    }

    /// Whether `device` is online on any relay (see [`Shared::online_in`]).
    pub async fn is_online_anywhere(&self, device: deskside_protocol::DeviceId) -> bool {
        if self.presence.is_online(device) {
            return true;
        }
        if !self.directory.is_shared() {
            return false;
        }
        let lease = self.directory.lease_secs();
        let now = crate::clock::now_secs();
        matches!(
            self.store(move |store| store.device_holder(device, now, lease))
                .await,
            Ok(Ok(Some(_)))
        )
    }

    /// Runs a store operation on the blocking pool (its latency is
    /// measured as [`StoreOp::Other`](crate::metrics::StoreOp::Other)).
    pub async fn store<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> Result<T, Refusal> {
        self.store_as(crate::metrics::StoreOp::Other, op).await
    }

    /// [`Shared::store`] for an operation whose latency is measured under
    /// its own kind.
    pub async fn store_as<T: Send + 'static>(
        &self,
        kind: crate::metrics::StoreOp,
        op: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> Result<T, Refusal> {
        let store = Arc::clone(&self.store);
        let started = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || op(&store))
            .await
            .map_err(|e| internal_error(&e));
        self.metrics.store_op(kind, started.elapsed());
        result
    }
}
