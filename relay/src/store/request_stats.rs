//! Statistics over the help requests of a window (`deskside stats`).
//!
//! A request's category is the `primary` segment of the verdict stored
//! with it; a verdict without one is `no_problem`, a request without a
//! verdict (no diagnostics attached) is `no_diagnostics`. The category and
//! the verdict's problems (warning or worse) are derived once, when the
//! request is stored ([`record_facts`], same transaction), into
//! `requests.category` and `request_findings`: the statistics then read a
//! covering index and a small table, never the requests' snapshots and
//! verdicts (a few kB each), so they stay fast on a large store. Reads
//! only; nothing here reads the clock.

use std::collections::BTreeMap;

use super::sql::params;
use deskside_protocol::request_stats::{
    latency, CategoryCount, FindingCount, RepeatDevice, RequestStats, CATEGORIES,
};

use super::{device_id_from_sql, OrgId, Store, StoreError};

/// Findings listed, most frequent first.
pub const MAX_FINDINGS: usize = 10;
/// Devices with repeated requests listed, most requests first.
pub const MAX_REPEAT_DEVICES: usize = 50;

/// The category of a request row, from its `verdict` column (the names of
/// `request_stats::CATEGORIES`; an unreadable verdict is `unknown`).
macro_rules! category_of_verdict {
    () => {
        "CASE WHEN verdict IS NULL THEN 'no_diagnostics'
              WHEN json_valid(verdict)
                THEN COALESCE(json_extract(verdict, '$.primary'), 'no_problem')
              ELSE 'unknown' END"
    };
}

/// Records the problems (warning or worse) of the verdicts of the
/// `requests r` the statement's end selects.
macro_rules! record_problems {
    () => {
        "INSERT OR IGNORE INTO request_findings (request_id, finding, segment)
         SELECT r.id, json_extract(f.value, '$.id'),
                COALESCE(json_extract(f.value, '$.segment'), 'unknown')
         FROM requests r,
              json_each(CASE WHEN json_valid(r.verdict) THEN r.verdict ELSE '{}' END,
                        '$.findings') f
         WHERE json_extract(f.value, '$.severity') IN ('warning', 'critical')
           AND json_extract(f.value, '$.id') IS NOT NULL"
    };
}

/// Schema: each request's category and problems, derived from its verdict
/// (existing requests included), and the index the statistics read.
pub(super) const MIGRATION_REQUEST_FACTS: &str = concat!(
    "ALTER TABLE requests ADD COLUMN category TEXT;
UPDATE requests SET category = ",
    category_of_verdict!(),
    ";
CREATE TABLE request_findings (
    request_id INTEGER NOT NULL REFERENCES requests(id),
    finding    TEXT NOT NULL,
    segment    TEXT NOT NULL,
    PRIMARY KEY (request_id, finding)
) STRICT, WITHOUT ROWID;
",
    record_problems!(),
    ";
CREATE INDEX requests_window
    ON requests(org_id, created_at, device_id, category, first_response_at, resolved_at);
"
);

/// Derives the category and problems of request `number` from its stored
/// verdict; called in the transaction that stores the request.
pub(super) fn record_facts(conn: &super::sql::Connection, number: u64) -> Result<(), StoreError> {
    let id = number as i64;
    if conn.is_postgres() {
        return record_facts_in_rust(conn, id);
    }
    conn.prepare_cached(concat!(
        "UPDATE requests SET category = ",
        category_of_verdict!(),
        " WHERE id = ?1"
    ))?
    .execute(params![id])?;
    conn.prepare_cached(concat!(record_problems!(), " AND r.id = ?1"))?
        .execute(params![id])?;
    Ok(())
}

/// [`record_facts`] for PostgreSQL, which has no `json_valid` (before
/// version 16): the same derivation as `category_of_verdict!` and
/// `record_problems!`, done on the parsed verdict.
fn record_facts_in_rust(conn: &super::sql::Connection, id: i64) -> Result<(), StoreError> {
    let verdict: Option<String> =
        conn.query_row("SELECT verdict FROM requests WHERE id = ?1", [id], |row| {
            row.get(0)
        })?;
    let parsed = verdict
        .as_deref()
        .map(serde_json::from_str::<serde_json::Value>);
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let category = match &parsed {
        None => "no_diagnostics".to_owned(),
        Some(Err(_)) => "unknown".to_owned(),
        Some(Ok(verdict)) => match verdict.get("primary") {
            None | Some(serde_json::Value::Null) => "no_problem".to_owned(),
            Some(primary) => text(primary),
        },
    };
    conn.execute(
        "UPDATE requests SET category = ?1 WHERE id = ?2",
        params![category, id],
    )?;
    let findings = match &parsed {
        Some(Ok(verdict)) => verdict.get("findings").and_then(|f| f.as_array()).cloned(),
        _ => None,
    };
    for finding in findings.unwrap_or_default() {
        let severity = finding.get("severity").and_then(|s| s.as_str());
        let Some(finding_id) = finding.get("id").filter(|v| !v.is_null()) else {
            continue;
        };
        if !matches!(severity, Some("warning" | "critical")) {
            continue;
        }
        let segment = match finding.get("segment") {
            None | Some(serde_json::Value::Null) => "unknown".to_owned(),
            Some(segment) => text(segment),
        };
        conn.execute(
            "INSERT INTO request_findings (request_id, finding, segment) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
            params![id, text(finding_id), segment],
        )?;
    }
    Ok(())
}

/// The requests `r` of the window: `?1` organisation, `?2` start, `?3`
/// group.
const WINDOW: &str = "r.org_id = ?1 AND r.created_at >= ?2
     AND (CAST(?3 AS TEXT) IS NULL OR r.device_id IN (SELECT id FROM devices WHERE device_group = ?3))";

impl Store {
    /// Statistics of the requests of `org` created at or after `since`,
    /// of the devices of `group` only when it is given.
    pub fn request_stats(
        &self,
        org: OrgId,
        since: i64,
        group: Option<&str>,
    ) -> Result<RequestStats, StoreError> {
        let conn = self.lock();
        let args = params![org.0, since, group];

        // Categories and times: one pass over the window's index entries.
        let mut statement = conn.prepare_cached(&format!(
            "SELECT COALESCE(r.category, 'unknown'), r.created_at, r.first_response_at,
                    r.resolved_at
             FROM requests r INDEXED BY requests_window
             WHERE {WINDOW}"
        ))?;
        let mut rows = statement.query(args)?;
        let mut by_category: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let (mut first_response, mut resolution) = (Vec::new(), Vec::new());
        let mut total = 0;
        while let Some(row) = rows.next()? {
            total += 1;
            let category: String = row.get(0)?;
            let created: i64 = row.get(1)?;
            let responded: Option<i64> = row.get(2)?;
            let resolved: Option<i64> = row.get(3)?;
            let counts = by_category.entry(category).or_default();
            counts.0 += 1;
            if let Some(at) = responded {
                first_response.push(at.saturating_sub(created).max(0) as u64);
            }
            if let Some(at) = resolved {
                counts.1 += 1;
                resolution.push(at.saturating_sub(created).max(0) as u64);
            }
        }
        drop(rows);
        let mut categories: Vec<CategoryCount> = CATEGORIES
            .iter()
            .map(|name| {
                let (requests, resolved) = by_category.remove(*name).unwrap_or_default();
                CategoryCount {
                    category: (*name).to_owned(),
                    requests,
                    resolved,
                }
            })
            .collect();
        categories.extend(
            by_category
                .into_iter()
                .map(|(category, (requests, resolved))| CategoryCount {
                    category,
                    requests,
                    resolved,
                }),
        );

        // Problems (warning or worse); one row per request and finding.
        let mut statement = conn.prepare_cached(&format!(
            "SELECT f.finding, f.segment, COUNT(*) AS n
             FROM requests r INDEXED BY requests_window
             JOIN request_findings f ON f.request_id = r.id
             WHERE {WINDOW}
             GROUP BY f.finding, f.segment
             ORDER BY n DESC, f.finding
             LIMIT {MAX_FINDINGS}"
        ))?;
        let findings = statement
            .query_map(args, |row| {
                Ok(FindingCount {
                    id: row.get(0)?,
                    segment: row.get(1)?,
                    requests: row.get::<_, i64>(2)? as u64,
                })
            })?
            .collect::<super::sql::Result<Vec<_>>>()?;

        let mut statement = conn.prepare_cached(&format!(
            "SELECT r.device_id, d.hostname, COUNT(*) AS n
             FROM requests r INDEXED BY requests_window
             JOIN devices d ON d.id = r.device_id
             WHERE {WINDOW}
             GROUP BY r.device_id, d.hostname
             HAVING COUNT(*) >= 2
             ORDER BY n DESC, d.hostname, r.device_id
             LIMIT {MAX_REPEAT_DEVICES}"
        ))?;
        let repeat_devices = statement
            .query_map(args, |row| {
                Ok(RepeatDevice {
                    device: device_id_from_sql(row.get(0)?),
                    hostname: row.get(1)?,
                    requests: row.get::<_, i64>(2)? as u64,
                })
            })?
            .collect::<super::sql::Result<Vec<_>>>()?;

        Ok(RequestStats {
            since,
            total,
            categories,
            findings,
            repeat_devices,
            first_response: latency(&mut first_response),
            resolution: latency(&mut resolution),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A test should panic on an unexpected error.
mod tests {
    use super::super::tests::{bootstrapped, enroll, enroll_token, hash, T0};
    use super::super::{NewRequest, Technician};
    use super::*;
    use deskside_protocol::request::{Answers, RequestAction};
    use deskside_protocol::request_stats::Latency;
    use deskside_protocol::{DeviceId, Role, TechnicianId};

    /// A verdict as `diagnostics::judge` stores it, with `problems` as
    /// warnings and one informational finding that must not count.
    fn verdict(primary: Option<&str>, problems: &[(&str, &str)]) -> String {
        let mut findings: Vec<_> = problems
            .iter()
            .map(|(id, segment)| {
                serde_json::json!({ "id": id, "segment": segment, "severity": "warning" })
            })
            .collect();
        findings.push(serde_json::json!({
            "id": "clock.info", "segment": "configuration", "severity": "info"
        }));
        serde_json::json!({
            "findings": findings, "primary": primary, "unknowns": [], "ok_checks": []
        })
        .to_string()
    }

    fn request(client_id: &str, verdict: Option<String>) -> NewRequest {
        NewRequest {
            client_id: client_id.into(),
            answers: Answers {
                summary: "calls freeze".into(),
                urgency: "slowed".into(),
                impact: "me".into(),
                ..Answers::default()
            },
            snapshot: verdict.as_ref().map(|_| "{}".to_owned()),
            verdict,
            verdict_line: None,
            failures: Vec::new(),
            priority: 3,
        }
    }

    fn alice(org: OrgId) -> Technician {
        Technician {
            id: TechnicianId(1),
            org,
            name: "alice".into(),
            role: Role::Technician,
        }
    }

    fn count(stats: &RequestStats, category: &str) -> (u64, u64) {
        let row = stats
            .categories
            .iter()
            .find(|c| c.category == category)
            .unwrap();
        (row.requests, row.resolved)
    }

    /// Two devices: `laptop` (no group) and `desk` (group `paris`).
    fn fleet() -> (Store, OrgId, DeviceId, DeviceId) {
        let (store, org) = bootstrapped();
        enroll_token(&store, org, "secret", 1);
        let laptop = enroll(&store, "secret", "key-1", "laptop", 7, T0)
            .unwrap()
            .id;
        store
            .create_enroll_token_in_group(
                org,
                &hash("paris"),
                1,
                T0 + 3600,
                None,
                Some("paris"),
                "system",
                T0,
            )
            .unwrap();
        let desk = enroll(&store, "paris", "key-2", "desk", 8, T0).unwrap().id;
        (store, org, laptop, desk)
    }

    /// Device, client id, created, verdict, first response and
    /// resolution (seconds after creation).
    type Seed = (
        DeviceId,
        &'static str,
        i64,
        Option<String>,
        Option<i64>,
        Option<i64>,
    );

    #[test]
    fn counts_categories_findings_repeats_and_medians_exactly() {
        let (store, org, laptop, desk) = fleet();
        let wifi = ("wifi.signal_weak", "home_network");
        let loss = ("path.loss", "isp");
        let seeded: [Seed; 5] = [
            (
                laptop,
                "a",
                T0 + 100,
                Some(verdict(Some("home_network"), &[wifi, loss])),
                Some(60),
                Some(600),
            ),
            (
                laptop,
                "b",
                T0 + 200,
                Some(verdict(Some("home_network"), &[wifi])),
                Some(30),
                None,
            ),
            (
                laptop,
                "c",
                T0 + 300,
                Some(verdict(Some("isp"), &[loss])),
                Some(90),
                Some(1000),
            ),
            (
                desk,
                "d",
                T0 + 400,
                Some(verdict(None, &[])),
                Some(10),
                None,
            ),
            (desk, "e", T0 + 500, None, None, None),
        ];
        let who = alice(org);
        for (device, id, created, verdict, responded, resolved) in seeded {
            let (number, _) = store
                .insert_request(org, device, &request(id, verdict), created)
                .unwrap()
                .unwrap();
            if let Some(after) = responded {
                store
                    .act_on_request(org, number, &who, &RequestAction::Claim, created + after)
                    .unwrap()
                    .unwrap();
            }
            if let Some(after) = resolved {
                let note = RequestAction::Resolve {
                    note: "done".into(),
                };
                store
                    .act_on_request(org, number, &who, &note, created + after)
                    .unwrap()
                    .unwrap();
            }
        }

        let stats = store.request_stats(org, T0, None).unwrap();
        assert_eq!(stats.total, 5);
        let got: Vec<_> = stats
            .categories
            .iter()
            .map(|c| (c.category.as_str(), c.requests, c.resolved))
            .collect();
        assert_eq!(
            got,
            [
                ("device", 0, 0),
                ("configuration", 0, 0),
                ("home_network", 2, 1),
                ("isp", 1, 1),
                ("service", 0, 0),
                ("unknown", 0, 0),
                ("no_problem", 1, 0),
                ("no_diagnostics", 1, 0),
            ]
        );
        let findings: Vec<_> = stats
            .findings
            .iter()
            .map(|f| (f.id.as_str(), f.segment.as_str(), f.requests))
            .collect();
        // Ties by id; the informational finding is left out.
        assert_eq!(
            findings,
            [
                ("path.loss", "isp", 2),
                ("wifi.signal_weak", "home_network", 2)
            ]
        );
        let repeats: Vec<_> = stats
            .repeat_devices
            .iter()
            .map(|d| (d.device, d.hostname.as_str(), d.requests))
            .collect();
        assert_eq!(repeats, [(laptop, "laptop", 3), (desk, "desk", 2)]);
        // First responses 10, 30, 60, 90: even count, mean of 30 and 60.
        assert_eq!(
            stats.first_response,
            Latency {
                count: 4,
                median_secs: Some(45)
            }
        );
        // Resolutions 600 and 1000.
        assert_eq!(
            stats.resolution,
            Latency {
                count: 2,
                median_secs: Some(800)
            }
        );

        // The group keeps desk's two requests only; odd count of responses.
        let paris = store.request_stats(org, T0, Some("paris")).unwrap();
        assert_eq!(paris.total, 2);
        assert_eq!(count(&paris, "no_problem"), (1, 0));
        assert_eq!(count(&paris, "no_diagnostics"), (1, 0));
        assert_eq!(count(&paris, "home_network"), (0, 0));
        assert!(paris.findings.is_empty());
        assert_eq!(paris.repeat_devices.len(), 1);
        assert_eq!(
            paris.first_response,
            Latency {
                count: 1,
                median_secs: Some(10)
            }
        );
        assert_eq!(
            paris.resolution,
            Latency {
                count: 0,
                median_secs: None
            }
        );
        let nowhere = store.request_stats(org, T0, Some("lyon")).unwrap();
        assert_eq!((nowhere.total, nowhere.repeat_devices.len()), (0, 0));

        // The window's edge: a request created exactly at `since` counts,
        // one a second earlier does not.
        let edge = store.request_stats(org, T0 + 300, None).unwrap();
        assert_eq!(edge.total, 3);
        assert_eq!(count(&edge, "isp"), (1, 1));
        assert_eq!(count(&edge, "home_network"), (0, 0));
        // Responses 90, 10: even count, (10 + 90) / 2.
        assert_eq!(
            edge.first_response,
            Latency {
                count: 2,
                median_secs: Some(50)
            }
        );
        assert_eq!(
            edge.findings,
            [FindingCount {
                id: "path.loss".into(),
                segment: "isp".into(),
                requests: 1
            }]
        );
        assert_eq!(
            edge.repeat_devices.len(),
            1,
            "only desk has two in the window"
        );
        let after = store.request_stats(org, T0 + 301, None).unwrap();
        assert_eq!(after.total, 2);
        assert_eq!(count(&after, "isp"), (0, 0));
    }

    #[test]
    fn a_reopened_request_has_no_resolution_and_an_unreadable_verdict_is_unknown() {
        let (store, org, laptop, _) = fleet();
        let who = alice(org);
        let (number, _) = store
            .insert_request(
                org,
                laptop,
                &request("a", Some(verdict(Some("device"), &[]))),
                T0,
            )
            .unwrap()
            .unwrap();
        let resolve = RequestAction::Resolve {
            note: String::new(),
        };
        store
            .act_on_request(org, number, &who, &resolve, T0 + 50)
            .unwrap()
            .unwrap();
        store
            .act_on_request(org, number, &who, &RequestAction::Reopen, T0 + 70)
            .unwrap()
            .unwrap();
        store
            .insert_request(org, laptop, &request("b", Some("not json".into())), T0 + 1)
            .unwrap()
            .unwrap();
        let stats = store.request_stats(org, 0, None).unwrap();
        assert_eq!(count(&stats, "device"), (1, 0));
        assert_eq!(count(&stats, "unknown"), (1, 0));
        assert_eq!(
            stats.resolution,
            Latency {
                count: 0,
                median_secs: None
            }
        );
        // Resolving counted as the first response.
        assert_eq!(
            stats.first_response,
            Latency {
                count: 1,
                median_secs: Some(50)
            }
        );
        assert!(stats.findings.is_empty());
    }

    #[test]
    fn the_migration_derives_the_facts_of_requests_stored_before_it() {
        // A store at the schema before this migration, with requests.
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        super::super::configure(&conn).unwrap();
        let mut conn = super::super::sql::Connection::sqlite(conn);
        let before = super::super::MIGRATIONS
            .iter()
            .position(|m| *m == MIGRATION_REQUEST_FACTS)
            .unwrap();
        super::super::migrate(&mut conn, &super::super::MIGRATIONS[..before], "test").unwrap();
        let store = Store {
            conn: std::sync::Mutex::new(conn),
            location: "test".into(),
            request_events: tokio::sync::watch::channel(0).0,
        };
        let org = store
            .bootstrap("Acme", "root", &hash("admin"), T0)
            .unwrap()
            .unwrap();
        enroll_token(&store, org, "secret", 1);
        let laptop = enroll(&store, "secret", "key-1", "laptop", 7, T0)
            .unwrap()
            .id;
        let wifi = [("wifi.signal_weak", "home_network")];
        for (client_id, verdict) in [
            ("a", Some(verdict(Some("home_network"), &wifi))),
            ("b", None),
        ] {
            store
                .lock()
                .execute(
                    "INSERT INTO requests (org_id, device_id, client_id, answers, verdict,
                         failures, priority, status, created_at, first_response_at)
                     VALUES (?1, ?2, ?3, '{}', ?4, '[]', 3, 'claimed', ?5, ?6)",
                    params![org.0, laptop.0 as i64, client_id, verdict, T0 + 10, T0 + 70],
                )
                .unwrap();
        }
        let mut conn = store.lock();
        super::super::migrate(&mut conn, super::super::MIGRATIONS, "test").unwrap();
        drop(conn);

        let stats = store.request_stats(org, T0, None).unwrap();
        assert_eq!(stats.total, 2);
        assert_eq!(count(&stats, "home_network"), (1, 0));
        assert_eq!(count(&stats, "no_diagnostics"), (1, 0));
        assert_eq!(
            stats.findings,
            [FindingCount {
                id: "wifi.signal_weak".into(),
                segment: "home_network".into(),
                requests: 1
            }]
        );
        assert_eq!(
            stats.first_response,
            Latency {
                count: 2,
                median_secs: Some(60)
            }
        );
    }
}
