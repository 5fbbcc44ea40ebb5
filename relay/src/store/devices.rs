//! Devices: enrollment (spending a token use), attachment, presence times,
//! lookup by id prefix or hostname, and revocation. A refused enrollment or
//! attachment changes nothing.

// The store's shared types, imports and helpers (`store.rs`).
use super::*;

/// How many candidates an ambiguous device query names before "and N more".
pub(super) const MAX_CANDIDATES_SHOWN: usize = 10;

/// `address` as `org`'s policy allows it to be stored: public addresses
/// truncated unless `store_full_ip_addresses` (see `ip_privacy`).
pub(super) fn address_to_store(
    conn: &Connection,
    org: OrgId,
    address: &str,
) -> Result<String, StoreError> {
    let settings: String = conn
        .query_row(
            "SELECT settings FROM organisations WHERE id = ?1",
            [org.0],
            |row| row.get(0),
        )
        .optional()?
        .unwrap_or_default();
    Ok(crate::ip_privacy::address_to_store(&settings, address))
}

/// Columns read by [`device_from_row`].
pub(super) const DEVICE_COLUMNS: &str = "id, org_id, public_key, hostname, os, agent_version, \
     first_seen, last_seen, last_address, revoked_at, device_group";

pub(super) fn device_from_row(row: &Row<'_>) -> super::sql::Result<DeviceRecord> {
    Ok(DeviceRecord {
        id: device_id_from_sql(row.get(0)?),
        org: OrgId(row.get(1)?),
        public_key: row.get(2)?,
        hostname: row.get(3)?,
        os: row.get(4)?,
        agent_version: row.get(5)?,
        first_seen: row.get(6)?,
        last_seen: row.get(7)?,
        last_address: row.get(8)?,
        revoked_at: row.get(9)?,
        group: row.get(10)?,
    })
}

/// Devices matching a `WHERE` clause written in this module (never user
/// text: user values go in `params`).
pub(super) fn query_devices(
    conn: &Connection,
    condition: &str,
    params: &[&dyn super::sql::ToValue],
) -> Result<Vec<DeviceRecord>, StoreError> {
    let mut statement = conn.prepare(&format!(
        "SELECT {DEVICE_COLUMNS} FROM devices WHERE {condition}"
    ))?;
    let rows = statement.query_map(params, device_from_row)?;
    let mut devices = Vec::new();
    for row in rows {
        devices.push(row?);
    }
    Ok(devices)
}

/// The inclusive id range covered by a lower-case prefix such as `dev_1a2b`,
/// or `None` if `text` is not `dev_` followed by 4 to 15 hex digits.
///
/// The range never straddles the sign bit (the first hex digit fixes it), so
/// it stays one contiguous range after the bit-cast to `i64`.
pub(super) fn id_prefix_range(text: &str) -> Option<(DeviceId, DeviceId)> {
    let digits = text.strip_prefix("dev_")?;
    if !(4..16).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let prefix = u64::from_str_radix(digits, 16).ok()?;
    let free_bits = 4 * (16 - digits.len() as u32);
    let low = prefix << free_bits;
    let high = low | ((1_u64 << free_bits) - 1);
    Some((DeviceId(low), DeviceId(high)))
}

/// Picks the device a query means among its matches; `None` if there are
/// none. See [`Store::find_device`] for the rules.
pub(super) fn choose_device(
    query: &str,
    mut candidates: Vec<DeviceRecord>,
) -> Option<Result<DeviceRecord, Refusal>> {
    if candidates.len() <= 1 {
        return candidates.pop().map(Ok);
    }
    let active: Vec<&DeviceRecord> = candidates
        .iter()
        .filter(|device| device.revoked_at.is_none())
        .collect();
    if let [only] = active.as_slice() {
        return Some(Ok((*only).clone()));
    }
    let mut shown: Vec<&DeviceRecord> = if active.is_empty() {
        candidates.iter().collect()
    } else {
        active
    };
    shown.sort_by_key(|device| device.id);
    let count = shown.len();
    let mut names: Vec<String> = shown
        .iter()
        .take(MAX_CANDIDATES_SHOWN)
        .map(|device| format!("{} ({})", device.id, device.hostname))
        .collect();
    if count > MAX_CANDIDATES_SHOWN {
        names.push(format!("and {} more", count - MAX_CANDIDATES_SHOWN));
    }
    Some(Err(Refusal::Invalid(format!(
        "\"{query}\" matches {count} devices: {}; name one by its id",
        names.join(", ")
    ))))
}

impl Store {
    /// Enrolls a device with an enrollment token, in one transaction.
    ///
    /// Refusals, checked in this order: unknown or revoked token →
    /// `EnrollTokenInvalid`; no uses left → `EnrollTokenUsedUp`;
    /// `expires_at <= now` → `EnrollTokenExpired`; `public_key` already
    /// belongs to a device (even a revoked one) → `AlreadyEnrolled`. A
    /// refusal changes nothing and writes no audit row.
    ///
    /// On success the token loses one use, the device is stored with
    /// `first_seen = last_seen = now`, `device.enroll` is audited, and the
    /// record is returned with its organisation's name. `new_id` is chosen
    /// at random by the caller; the astronomically unlikely collision with
    /// an existing id is a `StoreError::Sqlite` (constraint), after which the
    /// caller may retry with another id.
    pub fn enroll_device(
        &self,
        token_hash: &[u8; 32],
        public_key: &[u8],
        info: &DeviceInfo,
        address: &str,
        new_id: DeviceId,
        now: i64,
    ) -> Result<Result<(DeviceRecord, String), Refusal>, StoreError> {
        let mut conn = self.lock();
        // IMMEDIATE takes the write lock first, so two agents racing for a
        // token's last use cannot both read `uses_left = 1`.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let token = tx
            .query_row(
                "SELECT id, org_id, uses_left, expires_at, revoked_at
                 FROM enroll_tokens WHERE token_hash = ?1",
                [&token_hash[..]],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        OrgId(row.get(1)?),
                        row.get::<_, i64>(2)?,
                        row.get::<_, i64>(3)?,
                        row.get::<_, Option<i64>>(4)?,
                    ))
                },
            )
            .optional()?;
        let Some((token_id, org, uses_left, expires_at, revoked_at)) = token else {
            return Ok(Err(Refusal::EnrollTokenInvalid));
        };
        if revoked_at.is_some() {
            return Ok(Err(Refusal::EnrollTokenInvalid));
        }
        // The same key retrying the same token (its agent lost the answer,
        // or crashed before keeping its files) gets the same device and
        // spends no second use: checked before the uses and the expiry.
        let retried = tx
            .query_row(
                &format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices
                     WHERE public_key = ?1 AND enroll_token_id = ?2 AND revoked_at IS NULL"
                ),
                params![public_key, token_id],
                device_from_row,
            )
            .optional()?;
        if let Some(device) = retried {
            let org_name: String = tx.query_row(
                "SELECT name FROM organisations WHERE id = ?1",
                [device.org.0],
                |row| row.get(0),
            )?;
            return Ok(Ok((device, org_name)));
        }
        if uses_left <= 0 {
            return Ok(Err(Refusal::EnrollTokenUsedUp));
        }
        if expires_at <= now {
            return Ok(Err(Refusal::EnrollTokenExpired));
        }
        let key_taken: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM devices WHERE public_key = ?1)",
            [public_key],
            |row| row.get(0),
        )?;
        if key_taken {
            return Ok(Err(Refusal::AlreadyEnrolled));
        }
        let address = &address_to_store(&tx, org, address)?;
        tx.execute(
            "UPDATE enroll_tokens SET uses_left = uses_left - 1 WHERE id = ?1",
            [token_id],
        )?;
        tx.execute(
            "INSERT INTO devices (id, org_id, public_key, hostname, os, agent_version,
                                  first_seen, last_seen, last_address, enroll_token_id, device_group)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9,
                     (SELECT device_group FROM enroll_tokens WHERE id = ?9))",
            params![
                device_id_to_sql(new_id),
                org.0,
                public_key,
                info.hostname,
                info.os,
                info.agent_version,
                now,
                address,
                token_id
            ],
        )?;
        let org_name: String = tx.query_row(
            "SELECT name FROM organisations WHERE id = ?1",
            [org.0],
            |row| row.get(0),
        )?;
        let target = device_target(new_id);
        insert_audit(
            &tx,
            &NewAudit {
                at: now,
                org: Some(org),
                actor: &target,
                action: "device.enroll",
                target: &target,
                detail: &serde_json::json!({
                    "hostname": info.hostname,
                    "os": info.os,
                    "agent_version": info.agent_version,
                    "address": address,
                    "enroll_token_id": token_id,
                }),
            },
        )?;
        let group: Option<String> = tx.query_row(
            "SELECT device_group FROM devices WHERE id = ?1",
            [device_id_to_sql(new_id)],
            |row| row.get(0),
        )?;
        tx.commit()?;
        let record = DeviceRecord {
            group,
            id: new_id,
            org,
            public_key: public_key.to_vec(),
            hostname: info.hostname.clone(),
            os: info.os.clone(),
            agent_version: info.agent_version.clone(),
            first_seen: now,
            last_seen: now,
            last_address: Some(address.to_owned()),
            revoked_at: None,
        };
        Ok(Ok((record, org_name)))
    }

    /// Attaches a connection to the device enrolled with `public_key`:
    /// refreshes what the agent reports, `last_seen` and `last_address`, and
    /// returns the updated record. Unknown key → `DeviceUnknown`; revoked
    /// device → `DeviceRevoked` (nothing is updated). Not audited: presence
    /// is too frequent.
    pub fn attach_device(
        &self,
        public_key: &[u8],
        info: &DeviceInfo,
        address: &str,
        now: i64,
    ) -> Result<Result<DeviceRecord, Refusal>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = tx
            .query_row(
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE public_key = ?1"),
                [public_key],
                device_from_row,
            )
            .optional()?;
        let Some(mut device) = found else {
            return Ok(Err(Refusal::DeviceUnknown));
        };
        if device.revoked_at.is_some() {
            return Ok(Err(Refusal::DeviceRevoked));
        }
        let address = &address_to_store(&tx, device.org, address)?;
        tx.execute(
            // At least a second after enrollment: `last_seen = first_seen`
            // marks a device that never attached (an orphan, see
            // `remove_orphan_devices`), even when it attaches in the second
            // it enrolled.
            "UPDATE devices SET hostname = ?1, os = ?2, agent_version = ?3,
                                last_seen = CASE WHEN ?4 > first_seen + 1 THEN ?4
                                                 ELSE first_seen + 1 END,
                                last_address = ?5
             WHERE id = ?6",
            params![
                info.hostname,
                info.os,
                info.agent_version,
                now,
                address,
                device_id_to_sql(device.id)
            ],
        )?;
        tx.commit()?;
        device.hostname.clone_from(&info.hostname);
        device.os.clone_from(&info.os);
        device.agent_version.clone_from(&info.agent_version);
        device.last_seen = now.max(device.first_seen + 1);
        device.last_address = Some(address.to_owned());
        Ok(Ok(device))
    }

    /// Enrolled devices not revoked, in every organisation: the fleet a
    /// restarted relay expects back.
    pub fn active_device_count(&self) -> Result<usize, StoreError> {
        let count: i64 = self.lock().query_row(
            "SELECT count(*) FROM devices WHERE revoked_at IS NULL",
            [],
            |row| row.get(0),
        )?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    /// The enrolled, unrevoked device owning `public_key`, without changing
    /// anything (measurement connections authenticate this way).
    pub fn device_by_key(
        &self,
        public_key: &[u8],
    ) -> Result<Result<DeviceRecord, Refusal>, StoreError> {
        let conn = self.lock();
        let found = conn
            .query_row(
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE public_key = ?1"),
                [public_key],
                device_from_row,
            )
            .optional()?;
        Ok(match found {
            None => Err(Refusal::DeviceUnknown),
            Some(device) if device.revoked_at.is_some() => Err(Refusal::DeviceRevoked),
            Some(device) => Ok(device),
        })
    }

    /// Sets `last_seen = now` for the given devices, in one transaction.
    /// Unknown ids are ignored, and `last_seen` never moves backwards.
    pub fn mark_seen(&self, ids: &[DeviceId], now: i64) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut statement = tx.prepare(
                "UPDATE devices SET last_seen = CASE WHEN ?1 > last_seen THEN ?1 ELSE last_seen END
                     WHERE id = ?2",
            )?;
            for id in ids {
                statement.execute(params![now, device_id_to_sql(*id)])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The organisation's devices, revoked ones included, ordered by host
    /// name (case-insensitively) then id.
    pub fn list_devices(&self, org: OrgId) -> Result<Vec<DeviceRecord>, StoreError> {
        let conn = self.lock();
        let mut devices = query_devices(&conn, "org_id = ?1", params![org.0])?;
        // Sorted here rather than in SQL so that ids sort as the unsigned
        // numbers they are, not as their bit-cast signed storage.
        devices.sort_by(|a, b| {
            (a.hostname.to_lowercase(), a.id).cmp(&(b.hostname.to_lowercase(), b.id))
        });
        Ok(devices)
    }

    /// Finds one device of `org` from what a technician typed.
    ///
    /// Tried in order: an exact id (`dev_` and 16 hex digits); a unique id
    /// prefix of at least `dev_` and 4 hex digits; a unique host name,
    /// compared case-insensitively (ASCII, as host names are). When a prefix
    /// or host name matches several devices and exactly one of them is not
    /// revoked, that one is chosen: a re-enrolled machine keeps its name.
    /// Otherwise several matches → `Refusal::Invalid` naming them, none →
    /// `Refusal::NotFound`. Devices of other organisations never match.
    pub fn find_device(
        &self,
        org: OrgId,
        query: &str,
    ) -> Result<Result<DeviceRecord, Refusal>, StoreError> {
        let query = query.trim();
        let conn = self.lock();
        let lower = query.to_ascii_lowercase();
        if let Ok(id) = lower.parse::<DeviceId>() {
            let mut found = query_devices(
                &conn,
                "org_id = ?1 AND id = ?2",
                params![org.0, device_id_to_sql(id)],
            )?;
            if let Some(device) = found.pop() {
                return Ok(Ok(device));
            }
        }
        if let Some((low, high)) = id_prefix_range(&lower) {
            let candidates = query_devices(
                &conn,
                "org_id = ?1 AND id BETWEEN ?2 AND ?3",
                params![org.0, device_id_to_sql(low), device_id_to_sql(high)],
            )?;
            if let Some(choice) = choose_device(query, candidates) {
                return Ok(choice);
            }
        }
        // SQLite's index is `COLLATE NOCASE`; PostgreSQL's is on
        // `lower(hostname)` (`pg_schema.sql`).
        let same_name = if conn.is_postgres() {
            "org_id = ?1 AND lower(hostname) = lower(?2)"
        } else {
            "org_id = ?1 AND hostname = ?2 COLLATE NOCASE"
        };
        let candidates = query_devices(&conn, same_name, params![org.0, query])?;
        if let Some(choice) = choose_device(query, candidates) {
            return Ok(choice);
        }
        Ok(Err(Refusal::NotFound(format!(
            "no device matches \"{query}\": list devices with `deskside devices list`"
        ))))
    }

    /// Revokes a device of `org` (audited as `device.revoke`); it can no
    /// longer attach. `None` if the organisation has no such device.
    /// Revoking a revoked device keeps the first `revoked_at` and writes no
    /// second audit row.
    pub fn revoke_device(
        &self,
        org: OrgId,
        id: DeviceId,
        actor: &str,
        now: i64,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE devices SET revoked_at = ?1
             WHERE id = ?2 AND org_id = ?3 AND revoked_at IS NULL",
            params![now, device_id_to_sql(id), org.0],
        )?;
        let mut found = query_devices(
            &tx,
            "org_id = ?1 AND id = ?2",
            params![org.0, device_id_to_sql(id)],
        )?;
        let Some(device) = found.pop() else {
            return Ok(None);
        };
        if changed > 0 {
            insert_audit(
                &tx,
                &NewAudit {
                    at: now,
                    org: Some(org),
                    actor,
                    action: "device.revoke",
                    target: &device_target(id),
                    detail: &serde_json::json!({ "hostname": device.hostname }),
                },
            )?;
        }
        tx.commit()?;
        Ok(Some(device))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A test should panic on an unexpected error.
mod tests {
    use super::*;
    use crate::store::tests::*;

    #[test]
    fn devices_join_the_group_of_their_enrollment_token() {
        let (store, org) = bootstrapped();
        store
            .create_enroll_token_in_group(
                org,
                &hash("paris"),
                1,
                T0 + DAY,
                None,
                Some("paris"),
                "t",
                T0,
            )
            .unwrap();
        enroll_token(&store, org, "plain", 1);
        let grouped = enroll(&store, "paris", "k1", "a", 1, T0).unwrap();
        let plain = enroll(&store, "plain", "k2", "b", 2, T0).unwrap();
        assert_eq!(grouped.group.as_deref(), Some("paris"));
        assert_eq!(plain.group, None);
        let listed = store.list_devices(org).unwrap();
        let groups: Vec<_> = listed.iter().map(|d| d.group.clone()).collect();
        assert_eq!(
            groups,
            [Some("paris".to_owned()), None],
            "listed by hostname"
        );
        assert_eq!(grouped.summary(true).group.as_deref(), Some("paris"));
    }

    #[test]
    fn enrollment_stores_the_device_and_spends_a_use() {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "e1", 1);
        let (device, org_name) = store
            .enroll_device(
                &hash("e1"),
                b"key-1",
                &info("laptop-1"),
                "192.0.2.7:50000",
                DeviceId(0xabc),
                T0 + 10,
            )
            .unwrap()
            .unwrap();
        assert_eq!(org_name, "Acme");
        let expected = DeviceRecord {
            id: DeviceId(0xabc),
            org,
            public_key: b"key-1".to_vec(),
            hostname: "laptop-1".to_owned(),
            os: "Debian GNU/Linux 12".to_owned(),
            agent_version: "0.1.0".to_owned(),
            first_seen: T0 + 10,
            last_seen: T0 + 10,
            last_address: Some("192.0.2.0/24:50000".to_owned()), /* public: truncated to its /24 */
            revoked_at: None,
            group: None,
        };
        assert_eq!(device, expected);
        assert_eq!(
            store.list_devices(org).unwrap(),
            std::slice::from_ref(&expected)
        );
        assert_eq!(snapshot(&store).0, [(1, 0)]);
        let summary = expected.summary(true);
        assert_eq!((summary.id, summary.online), (DeviceId(0xabc), true));
        assert_eq!(summary.last_address.as_deref(), Some("192.0.2.0/24:50000"));
    }

    #[test]
    fn enrollment_refusals_for_bad_tokens() {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "good", 5);
        enroll_token(&store, org, "revoked", 5);
        store
            .lock()
            .execute(
                "UPDATE enroll_tokens SET revoked_at = ?1 WHERE id = 2",
                [T0],
            )
            .unwrap();
        let expires = T0 + DAY;
        let cases = [
            ("unknown", expires - 1, Err(Refusal::EnrollTokenInvalid)),
            ("revoked", expires - 1, Err(Refusal::EnrollTokenInvalid)),
            ("good", expires, Err(Refusal::EnrollTokenExpired)),
            ("good", expires + 1, Err(Refusal::EnrollTokenExpired)),
            ("good", expires - 1, Ok(())),
        ];
        for (n, (secret, now, expected)) in cases.into_iter().enumerate() {
            let got = enroll(&store, secret, &format!("key-{n}"), "pc", n as u64 + 1, now);
            assert_eq!(got.map(|_| ()), expected, "token {secret:?} at {now}");
        }
    }

    #[test]
    fn a_key_enrolls_only_once_even_after_revocation() {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "e1", 5);
        enroll_token(&store, org, "e2", 5);
        let device = enroll(&store, "e1", "key-1", "pc", 1, T0).unwrap();
        assert_eq!(
            enroll(&store, "e2", "key-1", "pc", 2, T0),
            Err(Refusal::AlreadyEnrolled)
        );
        store
            .revoke_device(org, device.id, "system", T0)
            .unwrap()
            .unwrap();
        assert_eq!(
            enroll(&store, "e2", "key-1", "pc", 2, T0),
            Err(Refusal::AlreadyEnrolled)
        );
        assert_eq!(snapshot(&store).0, [(1, 4), (2, 5)]);
    }

    #[test]
    fn refusals_change_nothing() {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "used-up", 1);
        enroll_token(&store, org, "expired", 3);
        enroll_token(&store, org, "good", 3);
        store
            .lock()
            .execute(
                "UPDATE enroll_tokens SET expires_at = ?1 WHERE id = 2",
                [T0],
            )
            .unwrap();
        enroll(&store, "used-up", "key-1", "pc", 1, T0).unwrap();
        let before = snapshot(&store);
        let refused = [
            ("unknown", "key-2", Refusal::EnrollTokenInvalid),
            ("used-up", "key-2", Refusal::EnrollTokenUsedUp),
            ("expired", "key-2", Refusal::EnrollTokenExpired),
            ("good", "key-1", Refusal::AlreadyEnrolled),
        ];
        for (secret, key, refusal) in refused {
            assert_eq!(enroll(&store, secret, key, "pc", 2, T0), Err(refusal));
            assert_eq!(snapshot(&store), before, "after refusing {secret:?}");
        }
        let unknown = store
            .attach_device(b"key-9", &info("pc"), "198.51.100.1:1", T0)
            .unwrap();
        assert_eq!(unknown, Err(Refusal::DeviceUnknown));
        assert_eq!(snapshot(&store), before);
    }

    #[test]
    fn attach_refreshes_a_device_and_refuses_revoked_ones() {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "e", 2);
        let device = enroll(&store, "e", "key-1", "old-name", 1, T0).unwrap();
        let audit_rows = snapshot(&store).2;

        let new_info = DeviceInfo {
            hostname: "new-name".to_owned(),
            os: "Fedora 40".to_owned(),
            agent_version: "0.2.0".to_owned(),
        };
        let attached = store
            .attach_device(b"key-1", &new_info, "198.51.100.1:4433", T0 + 60)
            .unwrap()
            .unwrap();
        let expected = DeviceRecord {
            hostname: "new-name".to_owned(),
            os: "Fedora 40".to_owned(),
            agent_version: "0.2.0".to_owned(),
            last_seen: T0 + 60,
            last_address: Some("198.51.100.0/24:4433".to_owned()), /* truncated */
            ..device.clone()
        };
        assert_eq!(attached, expected);
        assert_eq!(store.list_devices(org).unwrap(), [expected]);
        assert_eq!(snapshot(&store).2, audit_rows, "attaching is not audited");

        store
            .revoke_device(org, device.id, "system", T0 + 70)
            .unwrap()
            .unwrap();
        let refused = store
            .attach_device(b"key-1", &new_info, "198.51.100.1:1", T0 + 80)
            .unwrap();
        assert_eq!(refused, Err(Refusal::DeviceRevoked));
        assert_eq!(store.list_devices(org).unwrap()[0].last_seen, T0 + 60);
    }

    #[test]
    fn mark_seen_moves_last_seen_forward_only() {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "e", 2);
        enroll(&store, "e", "key-1", "a", 1, T0).unwrap();
        enroll(&store, "e", "key-2", "b", 2, T0).unwrap();
        store
            .mark_seen(&[DeviceId(1), DeviceId(99)], T0 + 100)
            .unwrap();
        store.mark_seen(&[DeviceId(1)], T0 + 50).unwrap();
        store.mark_seen(&[], T0 + 200).unwrap();
        let last_seen: Vec<i64> = store
            .list_devices(org)
            .unwrap()
            .iter()
            .map(|d| d.last_seen)
            .collect();
        assert_eq!(last_seen, [T0 + 100, T0]);
    }

    #[test]
    fn devices_are_listed_by_hostname_then_id() {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "e", 4);
        let high_bit = 0xf000_0000_0000_0000;
        enroll(&store, "e", "key-1", "beta", 2, T0).unwrap();
        enroll(&store, "e", "key-2", "Alpha", 9, T0).unwrap();
        enroll(&store, "e", "key-3", "beta", high_bit, T0).unwrap();
        enroll(&store, "e", "key-4", "beta", 1, T0).unwrap();
        let order: Vec<u64> = store
            .list_devices(org)
            .unwrap()
            .iter()
            .map(|d| d.id.0)
            .collect();
        assert_eq!(order, [9, 1, 2, high_bit]);
    }

    #[test]
    fn find_device_by_id_prefix_and_hostname() {
        let (store, acme, globex) = two_orgs();
        let not_found = |query: &str| {
            Err(format!(
                "not found: no device matches \"{query}\": list devices with `deskside devices list`"
            ))
        };
        let cases: Vec<(OrgId, &str, Result<u64, String>)> = vec![
            (acme, "dev_1234567800000001", Ok(0x1234_5678_0000_0001)),
            (acme, "  DEV_1234567800000001 ", Ok(0x1234_5678_0000_0001)),
            (acme, "dev_12345", Ok(0x1234_5678_0000_0001)),
            (acme, "dev_abcd", Ok(0xabcd_0000_0000_0003)),
            (acme, "dev_ffff", Ok(0xffff_0000_0000_0004)),
            (acme, "dev_ffff000000000004", Ok(0xffff_0000_0000_0004)),
            (acme, "Laptop-1", Ok(0x1234_5678_0000_0001)),
            (globex, "laptop-1", Ok(0x5555_0000_0000_0005)),
            (
                acme,
                "dev_1234",
                Err("invalid request: \"dev_1234\" matches 2 devices: \
                     dev_1234567800000001 (laptop-1), dev_1234999900000002 (shared); \
                     name one by its id"
                    .to_owned()),
            ),
            (
                acme,
                "shared",
                Err("invalid request: \"shared\" matches 2 devices: \
                     dev_1234999900000002 (shared), dev_abcd000000000003 (SHARED); \
                     name one by its id"
                    .to_owned()),
            ),
            (acme, "dev_123", not_found("dev_123")),
            (
                acme,
                "dev_5555000000000005",
                not_found("dev_5555000000000005"),
            ),
            (acme, "dev_5555", not_found("dev_5555")),
            (acme, "globex-only", not_found("globex-only")),
            (acme, "laptop", not_found("laptop")),
            (acme, "", not_found("")),
        ];
        for (org, query, expected) in cases {
            let got = store
                .find_device(org, query)
                .unwrap()
                .map(|device| device.id.0)
                .map_err(|refusal| refusal.to_string());
            assert_eq!(got, expected, "query {query:?} in org {org}");
        }
    }

    #[test]
    fn find_device_prefers_the_one_device_not_revoked() {
        let (store, acme, _) = two_orgs();
        store
            .revoke_device(acme, DeviceId(0x1234_9999_0000_0002), "system", T0)
            .unwrap();
        let found = store.find_device(acme, "shared").unwrap().unwrap();
        assert_eq!(found.id, DeviceId(0xabcd_0000_0000_0003));
        let found = store.find_device(acme, "dev_1234").unwrap().unwrap();
        assert_eq!(found.id, DeviceId(0x1234_5678_0000_0001));
        // A revoked device is still found when it is the only match.
        let found = store.find_device(acme, "dev_12349").unwrap().unwrap();
        assert_eq!(found.revoked_at, Some(T0));
    }

    #[test]
    fn revoke_device_within_its_org_only() {
        let (store, acme, globex) = two_orgs();
        let id = DeviceId(0x1234_5678_0000_0001);
        assert_eq!(store.revoke_device(globex, id, "x", T0).unwrap(), None);
        let first = store
            .revoke_device(acme, id, "technician:1 (root)", T0 + 5)
            .unwrap()
            .unwrap();
        let again = store
            .revoke_device(acme, id, "technician:1 (root)", T0 + 9)
            .unwrap()
            .unwrap();
        assert_eq!(
            (first.revoked_at, again.revoked_at),
            (Some(T0 + 5), Some(T0 + 5))
        );
        let revokes: Vec<AuditRecord> = store
            .audit_entries(Some(acme), 100)
            .unwrap()
            .into_iter()
            .filter(|entry| entry.action == "device.revoke")
            .collect();
        assert_eq!(revokes.len(), 1);
        assert_eq!(revokes[0].target, "device:dev_1234567800000001");
        assert_eq!(revokes[0].actor, "technician:1 (root)");
    }
}
