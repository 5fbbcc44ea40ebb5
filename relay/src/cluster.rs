//! This relay's place in the directory of relays sharing its store.
//!
//! At start the relay registers itself (id, public address, certificate
//! fingerprint); a task owned by the relay then renews its lease, writes
//! which devices it holds (batched: a reconnect storm of thousands of
//! agents is a few transactions, not thousands) and prunes what dead relays
//! left. At a clean stop it deregisters; after a crash its lease runs out
//! and its devices count as offline everywhere.
//!
//! With the embedded SQLite store there is one relay, which registers too
//! (so `relays` says who serves), but nothing asks the directory who is
//! online: the in-memory [`Presence`](crate::presence::Presence) is the
//! whole truth. With a shared PostgreSQL store, "online" is "some live
//! relay holds it" ([`Directory::is_shared`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use deskside_protocol::DeviceId;
use tokio::sync::Notify;

use crate::clock::now_secs;
use crate::shared::Shared;
use crate::store::RelayRecord;

/// The file in the data directory that keeps this relay's directory id.
pub const RELAY_ID_FILE: &str = "relay-id";

/// How long presence changes are gathered before they are written.
const COALESCE: Duration = Duration::from_millis(100);

/// Relays silent this long are removed from the directory.
const FORGET_AFTER_SECS: i64 = 24 * 3600;

/// This relay in the directory, and the presence changes it has not
/// written yet.
#[derive(Debug)]
pub struct Directory {
    /// This relay's id.
    pub relay_id: String,
    /// Whether other relays share the store (PostgreSQL).
    shared_store: bool,
    /// A relay's row counts for this long after its heartbeat, in seconds.
    lease_secs: i64,
    /// The relay's idle timeout.
    idle_timeout: Duration,
    /// The latest unwritten state per device: held (true) or released.
    pending: Mutex<HashMap<DeviceId, bool>>,
    wake: Notify,
}

impl Directory {
    /// The directory view of a relay whose idle timeout is `idle_timeout`:
    /// a dead relay's devices stop counting as online within it.
    pub fn new(relay_id: String, shared_store: bool, idle_timeout: Duration) -> Directory {
        // Half the idle timeout (at least 2 s), renewed three times in it:
        // a dead relay's devices are offline at most a second past this.
        let lease_secs = i64::try_from(idle_timeout.as_secs() / 2)
            .unwrap_or(i64::MAX)
            .max(2);
        Directory {
            relay_id,
            shared_store,
            lease_secs,
            idle_timeout,
            pending: Mutex::default(),
            wake: Notify::new(),
        }
    }

    /// The relay's idle timeout (a silent device is offline after it).
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Whether several relays may share the store, so that who is online
    /// must be read from the directory.
    pub fn is_shared(&self) -> bool {
        self.shared_store
    }

    /// How long a relay's heartbeat counts, in seconds.
    pub fn lease_secs(&self) -> i64 {
        self.lease_secs
    }

    /// This relay now holds `device`.
    pub fn held(&self, device: DeviceId) {
        self.note(device, true);
    }

    /// This relay no longer holds `device`.
    pub fn released(&self, device: DeviceId) {
        self.note(device, false);
    }

    fn note(&self, device: DeviceId, held: bool) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(device, held);
        self.wake.notify_one();
    }

    fn take_pending(&self) -> Vec<(DeviceId, bool)> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.drain().collect()
    }
}

/// This relay's directory id, made at its first start and kept in the data
/// directory, so a restarted relay takes its own row back.
pub fn relay_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(RELAY_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if is_relay_id(text.trim()) => return Ok(text.trim().to_owned()),
        Ok(_) => {
            tracing::warn!(path = %path.display(), "the relay id file is not an id: making a new one")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read {}", path.display()));
        }
    }
    let mut bytes = [0_u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("the OS random generator failed"))?;
    let id = format!("relay_{}", hex::encode(bytes));
    std::fs::write(&path, format!("{id}\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

fn is_relay_id(text: &str) -> bool {
    text.strip_prefix("relay_")
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// What names the keys this relay keeps outside the database (the Wi‑Fi
/// identifier key and the audit anchor key); relays sharing a store must
/// have the same.
pub fn keys_id(shared: &Shared) -> String {
    let anchor = ring::digest::digest(&ring::digest::SHA256, &shared.audit_anchor.public_key());
    format!(
        "{}-{}",
        shared.identifier_key.key_id(),
        hex::encode(&anchor.as_ref()[..8])
    )
}

/// Records this relay's keys in the directory, or fails (with what to do)
/// when another live relay on the same store has other keys.
pub async fn claim_keys(shared: &Arc<Shared>, data_dir: &Path) -> anyhow::Result<()> {
    let (id, keys) = (shared.directory.relay_id.clone(), keys_id(shared));
    let lease = shared.directory.lease_secs;
    let now = now_secs();
    let claimed = shared
        .store(move |store| store.claim_relay_keys(&id, &keys, now, lease))
        .await
        .map_err(|r| anyhow::anyhow!("{r:?}"))?
        .context("cannot record this relay's keys in the store's directory")?;
    if let Err(other) = claimed {
        anyhow::bail!(
            "relay {} ({}) shares this store with other keys than this relay's: every relay on one store must hash Wi‑Fi names and sign audit heads with the same keys. Stop this relay, copy {} and {} from that relay's data directory into {}, and start it again",
            other.id,
            other.public_addr,
            crate::identifier_key::IDENTIFIER_KEY_FILE,
            crate::audit_anchor::ANCHOR_KEY_FILE,
            data_dir.display()
        );
    }
    Ok(())
}

/// The directory row this relay writes about itself now.
pub fn own_record(shared: &Shared) -> RelayRecord {
    let now = now_secs();
    RelayRecord {
        id: shared.directory.relay_id.clone(),
        public_addr: shared.public_addr.clone(),
        fingerprint: shared.fingerprint.to_string(),
        started_at: now,
        heartbeat_at: now,
        agents: shared.presence.count() as u64,
        consoles: 0,
    }
}

/// Keeps this relay's directory entry and presence rows current until the
/// relay stops, then deregisters it. Owned by the relay's tasks.
pub async fn run(shared: Arc<Shared>) {
    let stopping = shared.tasks.stopping();
    tokio::pin!(stopping);
    let beat = Duration::from_secs(
        u64::try_from(shared.directory.lease_secs / 3)
            .unwrap_or(1)
            .max(1),
    );
    let mut heartbeat = tokio::time::interval(beat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stopping => break,
            () = shared.directory.wake.notified() => {
                // Gather the changes of a burst (a reconnect storm).
                tokio::time::sleep(COALESCE).await;
                flush(&shared).await;
            }
            _ = heartbeat.tick() => beat_once(&shared).await,
        }
    }
    flush(&shared).await;
    let id = shared.directory.relay_id.clone();
    match shared.store(move |store| store.deregister_relay(&id)).await {
        Ok(Ok(())) => tracing::info!("left the relay directory"),
        Ok(Err(e)) => tracing::warn!("cannot leave the relay directory: {e}"),
        Err(_) => {}
    }
}

async fn flush(shared: &Arc<Shared>) {
    let changes = shared.directory.take_pending();
    if changes.is_empty() {
        return;
    }
    let id = shared.directory.relay_id.clone();
    let now = now_secs();
    let count = changes.len();
    match shared
        .store(move |store| store.apply_presence(&id, &changes, now))
        .await
    {
        Ok(Ok(())) => {
            shared.metrics.directory_write();
            tracing::debug!(changes = count, "wrote presence");
        }
        Ok(Err(e)) => tracing::warn!("cannot write which devices this relay holds: {e}"),
        Err(_) => {}
    }
}

async fn beat_once(shared: &Arc<Shared>) {
    let id = shared.directory.relay_id.clone();
    let agents = shared.presence.count() as u64;
    let lease = shared.directory.lease_secs;
    let now = now_secs();
    let beat = shared
        .store(move |store| {
            let known = store.relay_heartbeat(&id, agents, 0, now)?;
            let pruned = store.prune_presence(now, lease, FORGET_AFTER_SECS)?;
            let live = store.live_relays(now, lease)?.len();
            Ok::<_, crate::store::StoreError>((known, pruned, live))
        })
        .await;
    if let Ok(Ok((_, _, live))) = &beat {
        shared.metrics.directory_write();
        shared.metrics.live_relays(*live as u64);
    }
    match beat.map(|b| b.map(|(known, pruned, _)| (known, pruned))) {
        Ok(Ok((true, pruned))) => {
            if pruned > 0 {
                tracing::info!(
                    devices = pruned,
                    "removed the presence of devices whose relay stopped beating"
                );
            }
        }
        Ok(Ok((false, _))) => {
            // Pruned after a long pause: register again, with every device
            // this relay holds.
            tracing::warn!("this relay's directory entry was gone: registering again");
            let record = own_record(shared);
            let held: Vec<(DeviceId, bool)> = shared
                .presence
                .online()
                .into_iter()
                .map(|d| (d, true))
                .collect();
            let id = record.id.clone();
            let now = now_secs();
            let again = shared
                .store(move |store| {
                    store.register_relay(&record)?;
                    store.apply_presence(&id, &held, now)
                })
                .await;
            if let Ok(Err(e)) = again {
                tracing::warn!("cannot register this relay again: {e}");
            }
        }
        Ok(Err(e)) => tracing::warn!("cannot renew this relay's directory lease: {e}"),
        Err(_) => {}
    }
}
