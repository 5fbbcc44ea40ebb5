//! Stored diagnostic snapshots and their verdicts: written with their audit
//! row, listed newest first, pruned per device by the policy's retention.

// The store's shared types, imports and helpers (`store.rs`).
use super::*;

/// A stored diagnostic snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDiagnosticsRow {
    /// Row id.
    pub id: i64,
    /// When the relay received it, Unix seconds.
    pub received_at: i64,
    /// The snapshot, JSON.
    pub snapshot_json: String,
    /// The verdict, JSON.
    pub verdict_json: String,
}

/// What a stored snapshot holds, for its `diagnostics.collect` audit row:
/// the measured sections and whether the speed test ran.
pub(super) fn collected_detail(snapshot_id: i64, snapshot_json: &str) -> serde_json::Value {
    const SECTIONS: [&str; 7] = [
        "device", "network", "wifi", "gateway", "dns", "clock", "path",
    ];
    let snapshot: serde_json::Value =
        serde_json::from_str(snapshot_json).unwrap_or(serde_json::Value::Null);
    let measured: Vec<&str> = SECTIONS
        .into_iter()
        .filter(|section| snapshot[section].get("measured").is_some())
        .collect();
    let throughput = snapshot["path"]["measured"]["download"]
        .get("measured")
        .is_some()
        || snapshot["path"]["measured"]["upload"]
            .get("measured")
            .is_some();
    serde_json::json!({
        "snapshot_id": snapshot_id,
        "collected": measured,
        "throughput": throughput,
    })
}

impl Store {
    /// Stores a diagnostic snapshot and its verdict (both JSON text) and
    /// audits the collection as `diagnostics.collect` (actor
    /// `requested_by`, what was measured), then keeps only the newest
    /// `keep` snapshots of that device. Returns the new row's id.
    #[allow(clippy::too_many_arguments)]
    pub fn insert_diagnostics(
        &self,
        org: OrgId,
        device: DeviceId,
        requested_by: &str,
        snapshot_json: &str,
        verdict_json: &str,
        primary_segment: Option<&str>,
        keep: u32,
        now: i64,
    ) -> Result<i64, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO diagnostics (device_id, org_id, received_at, requested_by, snapshot, verdict, primary_segment)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                device_id_to_sql(device),
                org.0,
                now,
                requested_by,
                snapshot_json,
                verdict_json,
                primary_segment
            ],
        )?;
        let id = tx.last_insert_rowid()?;
        insert_audit(
            &tx,
            &NewAudit {
                at: now,
                org: Some(org),
                actor: requested_by,
                action: "diagnostics.collect",
                target: &device_target(device),
                detail: &collected_detail(id, snapshot_json),
            },
        )?;
        tx.execute(
            "DELETE FROM diagnostics WHERE device_id = ?1 AND id NOT IN
               (SELECT id FROM diagnostics WHERE device_id = ?1 ORDER BY id DESC LIMIT ?2)",
            params![device_id_to_sql(device), i64::from(keep.max(1))],
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// The newest `limit` stored snapshots of `device`, newest first.
    pub fn diagnostics_history(
        &self,
        org: OrgId,
        device: DeviceId,
        limit: u32,
    ) -> Result<Vec<StoredDiagnosticsRow>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare(
            "SELECT id, received_at, snapshot, verdict FROM diagnostics
             WHERE org_id = ?1 AND device_id = ?2 ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = statement.query_map(
            params![org.0, device_id_to_sql(device), i64::from(limit)],
            |row| {
                Ok(StoredDiagnosticsRow {
                    id: row.get(0)?,
                    received_at: row.get(1)?,
                    snapshot_json: row.get(2)?,
                    verdict_json: row.get(3)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A test should panic on an unexpected error.
mod tests {
    use crate::store::tests::*;

    #[test]
    fn diagnostics_are_stored_listed_newest_first_and_pruned_per_device() {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "enroll", 2);
        let device = enroll(&store, "enroll", "key-a", "laptop", 1, T0).unwrap();
        let other = enroll(&store, "enroll", "key-b", "desktop", 2, T0).unwrap();
        for n in 0..5 {
            let snapshot = format!("{{\"n\":{n}}}");
            store
                .insert_diagnostics(org, device.id, "t", &snapshot, "{}", Some("isp"), 3, T0 + n)
                .unwrap();
        }
        store
            .insert_diagnostics(org, other.id, "t", "{}", "{}", None, 3, T0)
            .unwrap();
        let history = store.diagnostics_history(org, device.id, 10).unwrap();
        let kept: Vec<&str> = history.iter().map(|r| r.snapshot_json.as_str()).collect();
        assert_eq!(
            kept,
            ["{\"n\":4}", "{\"n\":3}", "{\"n\":2}"],
            "newest 3 kept"
        );
        assert_eq!(
            store.diagnostics_history(org, other.id, 10).unwrap().len(),
            1
        );
        assert_eq!(
            store.diagnostics_history(org, device.id, 1).unwrap().len(),
            1
        );
        assert!(store
            .insert_diagnostics(org, device.id, "t", "not json", "{}", None, 3, T0)
            .is_err());
    }

    #[test]
    fn every_stored_collection_is_audited_with_who_and_what() {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "enroll", 1);
        let device = enroll(&store, "enroll", "key-a", "laptop", 1, T0).unwrap();
        let snapshot = r#"{"device":{"measured":{}},"wifi":{"unknown":"no radio"},
            "path":{"measured":{"download":{"measured":{"mbit_per_s":50.0}},"upload":{"unknown":"x"}}}}"#;
        let id = store
            .insert_diagnostics(
                org,
                device.id,
                "technician:2 (ana)",
                snapshot,
                "{}",
                None,
                3,
                T0,
            )
            .unwrap();
        let row = store.audit_entries(Some(org), 1).unwrap().remove(0);
        assert_eq!(row.action, "diagnostics.collect");
        assert_eq!(row.actor, "technician:2 (ana)");
        assert_eq!(row.target, format!("device:{}", device.id));
        assert_eq!(
            row.detail,
            serde_json::json!({"snapshot_id": id, "collected": ["device", "path"], "throughput": true})
        );
    }
}
