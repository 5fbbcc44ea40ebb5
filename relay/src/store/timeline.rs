//! Timeline samples in the store: one row per device and sample time, the
//! sample kept as its agent sent it (a one-sample batch of `deskside-diag`'s
//! format), so the store never needs to know the sample's shape.
//!
//! Samples are data, not audit (like snapshots): storing, summarising and
//! pruning them writes no audit row. Nothing here reads the clock: times
//! (Unix milliseconds) are passed in.
//!
//! Resolution: rows arrive at the agent's interval (`resolution_s` 0 means
//! "as sampled"); [`Store::summarise_timeline`] replaces rows older than a
//! cut-off by one row per bucket, built by the caller's `merge` (the relay
//! keeps the worst of each 10 minutes), so a week of history stays small
//! without averaging old episodes away.

use super::sql::{params, TransactionBehavior};
use deskside_protocol::DeviceId;

use super::{device_id_from_sql, device_id_to_sql, OrgId, Store, StoreError};

/// Schema version 5: timeline samples.
pub(super) const MIGRATION_5: &str = r#"
CREATE TABLE timeline (
    device_id    INTEGER NOT NULL REFERENCES devices(id),
    at_ms        INTEGER NOT NULL,
    resolution_s INTEGER NOT NULL DEFAULT 0,
    sample       BLOB NOT NULL,
    PRIMARY KEY (device_id, at_ms)
) STRICT, WITHOUT ROWID;
"#;

/// One stored sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineRow {
    /// The sample's time, Unix milliseconds.
    pub at_ms: i64,
    /// 0 for a sample as taken, else the length of the summary's bucket.
    pub resolution_s: i64,
    /// The sample (a one-sample batch).
    pub sample: Vec<u8>,
}

impl Store {
    /// Stores samples of `device` (`(at_ms, one-sample batch)`); a sample
    /// already stored for the same time is kept (agents resend after a
    /// lost acknowledgement). Returns how many rows were new.
    pub fn insert_timeline(
        &self,
        device: DeviceId,
        samples: &[(i64, Vec<u8>)],
    ) -> Result<usize, StoreError> {
        self.insert_timeline_rows(device, samples, 0)
    }

    /// Like [`Store::insert_timeline`], for rows that are already
    /// summaries of `resolution_s` seconds (imports, benchmarks).
    pub fn insert_timeline_rows(
        &self,
        device: DeviceId,
        samples: &[(i64, Vec<u8>)],
        resolution_s: i64,
    ) -> Result<usize, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut added = 0;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO timeline (device_id, at_ms, resolution_s, sample)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
            )?;
            for (at_ms, sample) in samples {
                added += insert.execute(params![
                    device_id_to_sql(device),
                    at_ms,
                    resolution_s,
                    sample
                ])?;
            }
        }
        tx.commit()?;
        Ok(added)
    }

    /// The samples of `device` from `since_ms` to `until_ms` (inclusive),
    /// oldest first: at most `limit`, the newest ones when there are more
    /// (then the flag is true).
    pub fn timeline_between(
        &self,
        device: DeviceId,
        since_ms: i64,
        until_ms: i64,
        limit: u32,
    ) -> Result<(Vec<TimelineRow>, bool), StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare_cached(
            "SELECT at_ms, resolution_s, sample FROM timeline
             WHERE device_id = ?1 AND at_ms >= ?2 AND at_ms <= ?3
             ORDER BY at_ms DESC LIMIT ?4",
        )?;
        let mut rows = statement
            .query_map(
                params![
                    device_id_to_sql(device),
                    since_ms,
                    until_ms,
                    i64::from(limit) + 1
                ],
                |row| {
                    Ok(TimelineRow {
                        at_ms: row.get(0)?,
                        resolution_s: row.get(1)?,
                        sample: row.get(2)?,
                    })
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        let truncated = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        rows.reverse();
        Ok((rows, truncated))
    }

    /// Devices of `org` with samples between the two times, with how many.
    pub fn timeline_devices(
        &self,
        org: OrgId,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<(DeviceId, u32)>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare_cached(
            "SELECT t.device_id, count(*) FROM timeline t
             JOIN devices d ON d.id = t.device_id
             WHERE d.org_id = ?1 AND t.at_ms >= ?2 AND t.at_ms <= ?3
             GROUP BY t.device_id",
        )?;
        let rows = statement
            .query_map(params![org.0, since_ms, until_ms], |row| {
                Ok((
                    device_id_from_sql(row.get(0)?),
                    u32::try_from(row.get::<_, i64>(1)?).unwrap_or(u32::MAX),
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Replaces the full-resolution samples older than `before_ms` of every
    /// device by one row per `bucket_ms` bucket, made by `merge` from the
    /// bucket's samples (oldest first). A bucket `merge` cannot summarise
    /// (`None`) is left as it is. Works on at most about `max_rows` rows per
    /// call (whole buckets only), so the store's lock is held briefly: call
    /// again until nothing is removed. Returns the rows removed and added.
    pub fn summarise_timeline(
        &self,
        before_ms: i64,
        bucket_ms: i64,
        max_rows: usize,
        merge: impl Fn(&[Vec<u8>]) -> Option<Vec<u8>>,
    ) -> Result<(usize, usize), StoreError> {
        let bucket_ms = bucket_ms.max(1);
        let max_rows = max_rows.max(1);
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut rows: Vec<(i64, i64, Vec<u8>)> = {
            let mut statement = tx.prepare(
                "SELECT device_id, at_ms, sample FROM timeline
                 WHERE resolution_s = 0 AND at_ms < ?1 ORDER BY device_id, at_ms LIMIT ?2",
            )?;
            statement
                .query_map(params![before_ms, max_rows as i64 + 1], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?
                .collect::<Result<Vec<_>, _>>()?
        };
        if rows.len() > max_rows {
            // The last bucket may continue beyond the limit: leave it whole
            // for the next call (unless it is the only one).
            let key = |(device, at, _): &(i64, i64, Vec<u8>)| (*device, at.div_euclid(bucket_ms));
            let last = rows.last().map(key);
            let whole = rows.iter().position(|r| Some(key(r)) == last).unwrap_or(0);
            if whole > 0 {
                rows.truncate(whole);
            }
        }
        let (mut removed, mut added) = (0, 0);
        // Prepared once: a chunk deletes thousands of rows.
        let mut delete =
            tx.prepare_cached("DELETE FROM timeline WHERE device_id = ?1 AND at_ms = ?2")?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO timeline (device_id, at_ms, resolution_s, sample)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (device_id, at_ms)
             DO UPDATE SET resolution_s = excluded.resolution_s, sample = excluded.sample",
        )?;
        let mut start = 0;
        while start < rows.len() {
            let (device, at_ms, _) = &rows[start];
            let bucket = at_ms.div_euclid(bucket_ms);
            let end = rows[start..]
                .iter()
                .position(|(d, t, _)| d != device || t.div_euclid(bucket_ms) != bucket)
                .map_or(rows.len(), |n| start + n);
            let samples: Vec<Vec<u8>> =
                rows[start..end].iter().map(|(_, _, s)| s.clone()).collect();
            if let Some(summary) = merge(&samples) {
                for (_, t, _) in &rows[start..end] {
                    removed += delete.execute(params![device, t])?;
                }
                added += insert.execute(params![
                    device,
                    bucket * bucket_ms,
                    bucket_ms / 1000,
                    summary
                ])?;
            }
            start = end;
        }
        drop((delete, insert));
        tx.commit()?;
        Ok((removed, added))
    }

    /// Deletes the samples of `org`'s devices older than `before_ms`.
    /// Returns how many.
    pub fn prune_timeline(&self, org: OrgId, before_ms: i64) -> Result<usize, StoreError> {
        let conn = self.lock();
        Ok(conn.execute(
            "DELETE FROM timeline WHERE at_ms < ?2
               AND device_id IN (SELECT id FROM devices WHERE org_id = ?1)",
            params![org.0, before_ms],
        )?)
    }

    /// Organisations with devices that have samples.
    pub fn timeline_orgs(&self) -> Result<Vec<OrgId>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare(
            "SELECT DISTINCT d.org_id FROM devices d
             WHERE EXISTS (SELECT 1 FROM timeline t WHERE t.device_id = d.id)",
        )?;
        let orgs = statement
            .query_map([], |row| Ok(OrgId(row.get(0)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(orgs)
    }

    /// Bytes the timeline table and its rows take (SQLite's `dbstat` is not
    /// always compiled in, so this is the sum of the stored samples plus
    /// the two keys, a lower bound of the file space).
    pub fn timeline_bytes(&self, device: DeviceId) -> Result<(u64, u64), StoreError> {
        let conn = self.lock();
        let (rows, bytes): (i64, i64) = conn.query_row(
            "SELECT count(*), coalesce(sum(length(sample)) + count(*) * 17, 0)
             FROM timeline WHERE device_id = ?1",
            params![device_id_to_sql(device)],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        Ok((rows as u64, bytes as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{bootstrapped, enroll, enroll_token, T0};

    fn enrolled_device() -> (Store, OrgId, DeviceId) {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "enroll", 1);
        let device = enroll(&store, "enroll", "key-1", "laptop", 7, T0)
            .expect("enrolled")
            .id;
        (store, org, device)
    }

    #[test]
    fn samples_are_stored_once_and_read_back_in_order() {
        let (store, org, device) = enrolled_device();
        let rows: Vec<(i64, Vec<u8>)> = (0..5).map(|i| (1_000 * i, vec![i as u8])).collect();
        assert_eq!(store.insert_timeline(device, &rows).unwrap(), 5);
        // Resent after a lost acknowledgement: nothing new.
        assert_eq!(store.insert_timeline(device, &rows[3..]).unwrap(), 0);
        let (read, truncated) = store.timeline_between(device, 1_000, 3_000, 10).unwrap();
        assert!(!truncated);
        assert_eq!(
            read.iter().map(|r| r.at_ms).collect::<Vec<_>>(),
            [1_000, 2_000, 3_000]
        );
        // The limit keeps the newest.
        let (read, truncated) = store.timeline_between(device, 0, 10_000, 2).unwrap();
        assert!(truncated);
        assert_eq!(
            read.iter().map(|r| r.at_ms).collect::<Vec<_>>(),
            [3_000, 4_000]
        );
        assert_eq!(
            store.timeline_devices(org, 0, 10_000).unwrap(),
            [(device, 5)]
        );
        assert_eq!(store.prune_timeline(org, 2_000).unwrap(), 2);
        assert_eq!(
            store.timeline_devices(org, 0, 10_000).unwrap(),
            [(device, 3)]
        );
    }

    #[test]
    fn old_samples_are_summarised_per_bucket() {
        let (store, _, device) = enrolled_device();
        // Samples every 60 s for 30 minutes.
        let rows: Vec<(i64, Vec<u8>)> = (0..30).map(|i| (60_000 * i, vec![i as u8])).collect();
        store.insert_timeline(device, &rows).unwrap();
        // Summarise the first 20 minutes into 10-minute buckets, keeping
        // the largest byte of each (the "worst").
        let (removed, added) = store
            .summarise_timeline(1_200_000, 600_000, 1_000, |samples| {
                samples.iter().map(|s| s[0]).max().map(|m| vec![m])
            })
            .unwrap();
        assert_eq!((removed, added), (20, 2));
        let (read, _) = store.timeline_between(device, 0, i64::MAX, 100).unwrap();
        assert_eq!(read.len(), 12);
        assert_eq!(
            read[..2],
            [
                TimelineRow {
                    at_ms: 0,
                    resolution_s: 600,
                    sample: vec![9]
                },
                TimelineRow {
                    at_ms: 600_000,
                    resolution_s: 600,
                    sample: vec![19]
                }
            ]
        );
        assert_eq!(read[2].resolution_s, 0);
        // A small limit works through whole buckets, call after call.
        let (store, _, device) = enrolled_device();
        store.insert_timeline(device, &rows).unwrap();
        let merge = |samples: &[Vec<u8>]| samples.iter().map(|s| s[0]).max().map(|m| vec![m]);
        // (removed, added) per call: one whole bucket each, then nothing.
        for expected in [(10, 1), (10, 1), (10, 1), (0, 0)] {
            assert_eq!(
                store
                    .summarise_timeline(1_800_000, 600_000, 15, merge)
                    .unwrap(),
                expected
            );
        }
        let (read, _) = store.timeline_between(device, 0, i64::MAX, 100).unwrap();
        assert_eq!(
            read.iter()
                .map(|r| (r.at_ms, r.sample[0]))
                .collect::<Vec<_>>(),
            [(0, 9), (600_000, 19), (1_200_000, 29)]
        );
        // Summaries are not summarised again.
        assert_eq!(
            store
                .summarise_timeline(1_200_000, 600_000, 1_000, |s| Some(s[0].clone()))
                .unwrap(),
            (0, 0)
        );
    }
}
