//! The directory of relays sharing one store, and which relay holds each
//! device (presence).
//!
//! Each relay registers itself (id, public address, certificate
//! fingerprint, load) and renews its row with a heartbeat. A device's
//! presence row names the relay holding its connection. The lease is the
//! relay's, not the device's: a presence row counts only while its relay's
//! heartbeat is younger than the lease, so a relay renews all its devices
//! with one row write, and the devices of a relay that died count as
//! offline once its lease runs out, without anyone deleting their rows
//! (live relays prune them later).
//!
//! Presence and heartbeats are not audited: like `mark_seen`, they are too
//! frequent, and they are facts about connections, not changes of state.

// The store's shared types, imports and helpers (`store.rs`).
use super::*;

use std::collections::HashSet;

/// Schema version 9: the relay directory and device presence.
pub(super) const MIGRATION_CLUSTER: &str = r#"
CREATE TABLE relays (
    id           TEXT PRIMARY KEY,
    public_addr  TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    agents       INTEGER NOT NULL DEFAULT 0,
    consoles     INTEGER NOT NULL DEFAULT 0,
    keys_id      TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE TABLE presence (
    device_id INTEGER PRIMARY KEY REFERENCES devices(id),
    relay_id  TEXT NOT NULL,
    since     INTEGER NOT NULL
) STRICT;
CREATE INDEX presence_by_relay ON presence(relay_id);
"#;

/// The same for PostgreSQL (`migrations::PG_MIGRATIONS`).
pub(super) const PG_MIGRATION_CLUSTER: &str = r#"
CREATE TABLE relays (
    id           TEXT COLLATE "C" PRIMARY KEY,
    public_addr  TEXT COLLATE "C" NOT NULL,
    fingerprint  TEXT COLLATE "C" NOT NULL,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    agents       BIGINT NOT NULL DEFAULT 0,
    consoles     BIGINT NOT NULL DEFAULT 0,
    keys_id      TEXT COLLATE "C" NOT NULL DEFAULT ''
);
CREATE TABLE presence (
    device_id BIGINT PRIMARY KEY REFERENCES devices(id),
    relay_id  TEXT COLLATE "C" NOT NULL,
    since     BIGINT NOT NULL
);
CREATE INDEX presence_by_relay ON presence(relay_id);
"#;

/// A relay as the directory knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayRecord {
    /// Its id (random, kept in its data directory).
    pub id: String,
    /// `host:port` agents and consoles reach it at.
    pub public_addr: String,
    /// Its certificate's fingerprint, as tokens carry it.
    pub fingerprint: String,
    /// When it started, Unix seconds.
    pub started_at: i64,
    /// Its last heartbeat, Unix seconds.
    pub heartbeat_at: i64,
    /// Agents attached at its last heartbeat.
    pub agents: u64,
    /// Consoles connected at its last heartbeat.
    pub consoles: u64,
}

const RELAY_COLUMNS: &str =
    "r.id, r.public_addr, r.fingerprint, r.started_at, r.heartbeat_at, r.agents, r.consoles";

fn relay_from_row(row: &super::sql::Row<'_>) -> super::sql::Result<RelayRecord> {
    Ok(RelayRecord {
        id: row.get(0)?,
        public_addr: row.get(1)?,
        fingerprint: row.get(2)?,
        started_at: row.get(3)?,
        heartbeat_at: row.get(4)?,
        agents: u64::try_from(row.get::<_, i64>(5)?).unwrap_or(0),
        consoles: u64::try_from(row.get::<_, i64>(6)?).unwrap_or(0),
    })
}

impl Store {
    /// Registers (or re-registers, after a restart) a relay, heartbeat now.
    pub fn register_relay(&self, relay: &RelayRecord) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO relays (id, public_addr, fingerprint, started_at, heartbeat_at, agents, consoles)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (id) DO UPDATE SET public_addr = excluded.public_addr,
                 fingerprint = excluded.fingerprint, started_at = excluded.started_at,
                 heartbeat_at = excluded.heartbeat_at, agents = excluded.agents,
                 consoles = excluded.consoles",
            params![
                relay.id,
                relay.public_addr,
                relay.fingerprint,
                relay.started_at,
                relay.heartbeat_at,
                i64::try_from(relay.agents).unwrap_or(i64::MAX),
                i64::try_from(relay.consoles).unwrap_or(i64::MAX),
            ],
        )?;
        // Whatever this relay held before it restarted is not held now.
        tx.execute("DELETE FROM presence WHERE relay_id = ?1", [&relay.id])?;
        tx.commit()?;
        Ok(())
    }

    /// Records which keys relay `id` (registered) uses, unless another live
    /// relay uses other ones: then `Err` names that relay and nothing is
    /// written. `keys_id` identifies the keys kept outside the database
    /// (the Wi‑Fi identifier key and the audit anchor key), which every
    /// relay on one store must share: otherwise the same Wi‑Fi name hashes
    /// differently by relay, and audit heads are signed by several keys.
    pub fn claim_relay_keys(
        &self,
        id: &str,
        keys_id: &str,
        now: i64,
        lease: i64,
    ) -> Result<Result<(), RelayRecord>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let other = tx
            .query_row(
                &format!(
                    "SELECT {RELAY_COLUMNS} FROM relays r
                     WHERE r.id <> ?1 AND r.heartbeat_at >= ?2 AND r.keys_id <> ''
                       AND r.keys_id <> ?3
                     ORDER BY r.id LIMIT 1"
                ),
                params![id, now - lease, keys_id],
                relay_from_row,
            )
            .optional()?;
        if let Some(other) = other {
            return Ok(Err(other));
        }
        tx.execute(
            "UPDATE relays SET keys_id = ?2 WHERE id = ?1",
            params![id, keys_id],
        )?;
        tx.commit()?;
        Ok(Ok(()))
    }

    /// Renews relay `id`'s lease (and so its devices'), with its load.
    /// Returns false when its row is gone (another relay pruned it after a
    /// long pause): the caller registers again.
    pub fn relay_heartbeat(
        &self,
        id: &str,
        agents: u64,
        consoles: u64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE relays SET heartbeat_at = ?2, agents = ?3, consoles = ?4 WHERE id = ?1",
            params![
                id,
                now,
                i64::try_from(agents).unwrap_or(i64::MAX),
                i64::try_from(consoles).unwrap_or(i64::MAX)
            ],
        )?;
        tx.commit()?;
        Ok(changed == 1)
    }

    /// Removes relay `id` and its presence rows (a clean stop).
    pub fn deregister_relay(&self, id: &str) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM presence WHERE relay_id = ?1", [id])?;
        tx.execute("DELETE FROM relays WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(())
    }

    /// The relays whose heartbeat is at most `lease` seconds old, lowest
    /// load first.
    pub fn live_relays(&self, now: i64, lease: i64) -> Result<Vec<RelayRecord>, StoreError> {
        let conn = self.lock();
        let relays = conn
            .prepare(&format!(
                "SELECT {RELAY_COLUMNS} FROM relays r WHERE r.heartbeat_at >= ?1
                 ORDER BY r.agents, r.id"
            ))?
            .query_map([now - lease], relay_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(relays)
    }

    /// Records that relay `relay_id` holds `device` from `now` (replacing
    /// whichever relay held it before).
    pub fn hold_device(
        &self,
        device: DeviceId,
        relay_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.apply_presence(relay_id, &[(device, true)], now)
    }

    /// Applies a batch of presence changes of relay `relay_id` in one
    /// transaction: `true` holds the device from `now`, `false` releases it
    /// (as [`Store::hold_device`] and [`Store::release_device`]).
    pub fn apply_presence(
        &self,
        relay_id: &str,
        changes: &[(DeviceId, bool)],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for &(device, held) in changes {
            if held {
                tx.execute(
                    "INSERT INTO presence (device_id, relay_id, since) VALUES (?1, ?2, ?3)
                     ON CONFLICT (device_id) DO UPDATE SET relay_id = excluded.relay_id,
                         since = excluded.since",
                    params![device_id_to_sql(device), relay_id, now],
                )?;
            } else {
                tx.execute(
                    "DELETE FROM presence WHERE device_id = ?1 AND relay_id = ?2",
                    params![device_id_to_sql(device), relay_id],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Relay `relay_id` no longer holds `device` (unless another relay took
    /// it over meanwhile, whose row stays).
    pub fn release_device(&self, device: DeviceId, relay_id: &str) -> Result<(), StoreError> {
        // The time is only written for a device held.
        self.apply_presence(relay_id, &[(device, false)], 0)
    }

    /// The live relay holding `device`, if any.
    pub fn device_holder(
        &self,
        device: DeviceId,
        now: i64,
        lease: i64,
    ) -> Result<Option<RelayRecord>, StoreError> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                &format!(
                    "SELECT {RELAY_COLUMNS} FROM presence p JOIN relays r ON r.id = p.relay_id
                     WHERE p.device_id = ?1 AND r.heartbeat_at >= ?2"
                ),
                params![device_id_to_sql(device), now - lease],
                relay_from_row,
            )
            .optional()?)
    }

    /// The devices of `org` some live relay holds.
    pub fn online_devices(
        &self,
        org: OrgId,
        now: i64,
        lease: i64,
    ) -> Result<HashSet<DeviceId>, StoreError> {
        let conn = self.lock();
        let ids = conn
            .prepare(
                "SELECT p.device_id FROM presence p
                 JOIN relays r ON r.id = p.relay_id
                 JOIN devices d ON d.id = p.device_id
                 WHERE d.org_id = ?1 AND r.heartbeat_at >= ?2",
            )?
            .query_map(params![org.0, now - lease], |row| {
                row.get::<_, i64>(0).map(device_id_from_sql)
            })?
            .collect::<Result<HashSet<_>, _>>()?;
        Ok(ids)
    }

    /// Whether this relay leads the ticketing outbox: with several relays on
    /// one store, one delivers, or each event would reach the ticketing
    /// systems once per relay. The leader holds a session-level advisory
    /// lock on its store connection, which PostgreSQL releases when that
    /// connection ends (the relay died, or the server restarted): another
    /// relay's next check takes it over. Re-taking a lock this session holds
    /// succeeds, so leading is checked by trying again. Always true on
    /// SQLite (one relay).
    pub fn hold_outbox_lead(&self) -> Result<bool, StoreError> {
        let conn = self.lock();
        if !conn.is_postgres() {
            return Ok(true);
        }
        Ok(conn.query_row(
            "SELECT pg_try_advisory_lock(?1)",
            [super::sql::OUTBOX_LOCK],
            |row| row.get(0),
        )?)
    }

    /// Deletes the presence rows of relays whose lease ran out, and the
    /// rows of relays silent for `forget` seconds. Returns the presence
    /// rows removed.
    pub fn prune_presence(&self, now: i64, lease: i64, forget: i64) -> Result<usize, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let removed = tx.execute(
            "DELETE FROM presence WHERE relay_id IN
                 (SELECT id FROM relays WHERE heartbeat_at < ?1)
             OR relay_id NOT IN (SELECT id FROM relays)",
            [now - lease],
        )?;
        tx.execute("DELETE FROM relays WHERE heartbeat_at < ?1", [now - forget])?;
        tx.commit()?;
        Ok(removed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A test should panic on an unexpected error.
mod tests {
    use super::super::tests::*;
    use super::*;

    fn relay(id: &str, at: i64) -> RelayRecord {
        RelayRecord {
            id: id.to_owned(),
            public_addr: format!("{id}.example:4433"),
            fingerprint: format!("fp-{id}"),
            started_at: at,
            heartbeat_at: at,
            agents: 0,
            consoles: 0,
        }
    }

    #[test]
    fn a_device_is_online_while_its_relays_lease_lasts_and_moves_between_relays() {
        let (store, acme, globex) = two_orgs();
        let laptop = DeviceId(0x1234_5678_0000_0001);
        let other = DeviceId(0x5555_0000_0000_0005);
        store.register_relay(&relay("a", T0)).unwrap();
        store.register_relay(&relay("b", T0)).unwrap();
        store.hold_device(laptop, "b", T0).unwrap();
        store.hold_device(other, "a", T0).unwrap();
        let lease = 30;
        assert_eq!(
            store
                .device_holder(laptop, T0 + 10, lease)
                .unwrap()
                .unwrap()
                .id,
            "b"
        );
        assert_eq!(
            store.online_devices(acme, T0 + 10, lease).unwrap(),
            HashSet::from([laptop])
        );
        assert_eq!(
            store.online_devices(globex, T0 + 10, lease).unwrap(),
            HashSet::from([other])
        );
        // Relay b falls silent; a keeps beating.
        assert!(store.relay_heartbeat("a", 1, 0, T0 + 25).unwrap());
        assert_eq!(
            store
                .device_holder(laptop, T0 + 30, lease)
                .unwrap()
                .unwrap()
                .id,
            "b"
        );
        assert_eq!(store.device_holder(laptop, T0 + 31, lease).unwrap(), None);
        assert!(store
            .online_devices(acme, T0 + 31, lease)
            .unwrap()
            .is_empty());
        let live: Vec<String> = store
            .live_relays(T0 + 31, lease)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(live, ["a"]);
        // The laptop comes back through a; b's late cleanup leaves it there.
        store.hold_device(laptop, "a", T0 + 32).unwrap();
        store.release_device(laptop, "b").unwrap();
        assert_eq!(
            store
                .device_holder(laptop, T0 + 33, lease)
                .unwrap()
                .unwrap()
                .id,
            "a"
        );
        // Pruning removes only what dead relays held.
        assert!(store.relay_heartbeat("a", 2, 0, T0 + 40).unwrap());
        store.hold_device(other, "b", T0).unwrap();
        assert_eq!(store.prune_presence(T0 + 41, lease, 3600).unwrap(), 1);
        assert_eq!(store.prune_presence(T0 + 3700, lease, 3600).unwrap(), 1);
        assert!(store.live_relays(T0 + 3700, 1_000_000).unwrap().is_empty());
        assert!(!store.relay_heartbeat("b", 0, 0, T0 + 3700).unwrap());
    }

    /// Two relays' store connections: one leads the outbox until its
    /// connection ends, then the other takes over.
    #[test]
    fn one_relay_leads_the_outbox_until_its_connection_ends() {
        if !on_postgres() {
            let store = fresh_store();
            assert!(
                store.hold_outbox_lead().unwrap(),
                "SQLite: the one relay leads"
            );
            return;
        }
        let server = crate::pg_server::PgServer::shared().unwrap();
        let url = server.create_database().unwrap();
        let first = Store::open_postgres(&url).unwrap();
        let second = Store::open_postgres(&url).unwrap();
        assert!(first.hold_outbox_lead().unwrap());
        assert!(
            first.hold_outbox_lead().unwrap(),
            "leading is checked by trying again"
        );
        assert!(!second.hold_outbox_lead().unwrap());
        drop(first);
        let took_over = (0..50).any(|_| {
            let lead = second.hold_outbox_lead().unwrap();
            if !lead {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            lead
        });
        assert!(took_over, "the second relay leads once the first is gone");
    }

    #[test]
    fn relays_on_one_store_must_share_their_keys() {
        let (store, _, _) = two_orgs();
        store.register_relay(&relay("a", T0)).unwrap();
        store.register_relay(&relay("b", T0)).unwrap();
        assert_eq!(store.claim_relay_keys("a", "k1", T0, 30).unwrap(), Ok(()));
        assert_eq!(store.claim_relay_keys("b", "k1", T0, 30).unwrap(), Ok(()));
        store.register_relay(&relay("c", T0)).unwrap();
        let refused = store
            .claim_relay_keys("c", "k2", T0, 30)
            .unwrap()
            .unwrap_err();
        assert_eq!(refused.id, "a");
        // Once the others are gone (lease run out), other keys are accepted.
        assert_eq!(
            store.claim_relay_keys("c", "k2", T0 + 31, 30).unwrap(),
            Ok(())
        );
    }

    #[test]
    fn a_restarted_relay_holds_nothing_until_its_agents_attach_again() {
        let (store, acme, _) = two_orgs();
        let laptop = DeviceId(0x1234_5678_0000_0001);
        store.register_relay(&relay("a", T0)).unwrap();
        store.hold_device(laptop, "a", T0).unwrap();
        store.register_relay(&relay("a", T0 + 5)).unwrap();
        assert!(store.online_devices(acme, T0 + 6, 30).unwrap().is_empty());
        store.deregister_relay("a").unwrap();
        assert!(store.live_relays(T0 + 6, 30).unwrap().is_empty());
    }
}
