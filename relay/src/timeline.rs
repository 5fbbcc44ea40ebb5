//! The relay's side of the timeline: storing the samples agents upload,
//! answering `deskside timeline`, and keeping the table small (10-minute
//! summaries after 48 hours, deleted after the organisation's
//! `timeline_retention_days`).
//!
//! A bad batch closes nothing by itself: a batch in a newer sample format
//! is left unacknowledged (the agent keeps it until the relay is upgraded);
//! one that does not decode, or samples dated absurdly, are a protocol
//! violation of that one agent connection.

use deskside_diag::timeline::{self, EpisodeRules, Sample};
use deskside_protocol::console::ConsoleResponse;
use deskside_protocol::timeline::{DeviceTimeline, FleetTimelineEntry};
use deskside_protocol::{DeviceId, Refusal};

use crate::clock::now_millis;
use crate::conn::internal_error;
use crate::shared::Shared;
use crate::store::OrgId;

/// Samples newer than this are kept as taken.
pub const FULL_RESOLUTION_MS: i64 = 48 * 3_600_000;
/// Older samples are summarised per bucket of this length.
pub const SUMMARY_BUCKET_MS: i64 = 10 * 60_000;
/// Most samples one answer carries: a week at one a minute (a week of
/// summaries and two days of minutes is about 3,600).
pub const MAX_ANSWER_SAMPLES: u32 = 10_080;
/// Most samples one agent connection may upload per hour: a week of
/// backlog at one a minute, then some. Beyond, batches are not
/// acknowledged (the agent retries later) rather than filling the disk.
pub const MAX_SAMPLES_PER_HOUR: u32 = 12_000;
/// Rows summarised per store call (about 20 ms of the store's lock).
const SUMMARY_CHUNK_ROWS: usize = 5_000;
/// How far ahead of the relay's clock a sample may be dated.
const MAX_FUTURE_MS: i64 = 24 * 3_600_000;

/// What became of an uploaded batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Stored {
    /// Stored (or already stored); acknowledge through this sequence number.
    Through(u64),
    /// Not stored now, for a reason that is not the agent's fault (a newer
    /// format, the hourly budget, the disk): no acknowledgement, the agent
    /// sends it again later.
    Later(String),
}

/// Per-connection upload budget.
#[derive(Debug)]
pub struct UploadBudget {
    window_start_ms: i64,
    used: u32,
}

impl Default for UploadBudget {
    fn default() -> Self {
        UploadBudget {
            window_start_ms: now_millis(),
            used: 0,
        }
    }
}

/// Decodes and stores one uploaded batch of `device`'s samples. `Err` is a
/// protocol violation (the reason is logged and the connection closed).
pub async fn store_batch(
    shared: &Shared,
    device: DeviceId,
    first_seq: u64,
    batch: &[u8],
    budget: &mut UploadBudget,
) -> Result<Stored, String> {
    let samples = match timeline::decode_batch(batch) {
        Ok(samples) => samples,
        Err(e @ timeline::BatchError::Format { .. }) => return Ok(Stored::Later(e.to_string())),
        Err(e) => return Err(e.to_string()),
    };
    let Some(count) = u64::try_from(samples.len()).ok().filter(|n| *n > 0) else {
        return Ok(Stored::Through(first_seq.saturating_sub(1)));
    };
    let now = now_millis();
    if now - budget.window_start_ms > 3_600_000 {
        budget.window_start_ms = now;
        budget.used = 0;
    }
    if budget.used.saturating_add(samples.len() as u32) > MAX_SAMPLES_PER_HOUR {
        return Ok(Stored::Later(format!(
            "more than {MAX_SAMPLES_PER_HOUR} timeline samples this hour"
        )));
    }
    budget.used += samples.len() as u32;
    let rows = rows_of(&samples, now)?;
    match shared
        .store(move |s| s.insert_timeline(device, &rows))
        .await
        .map_err(|r| r.to_string())?
    {
        Ok(added) => {
            tracing::debug!(added, count, first_seq, "timeline samples stored");
            Ok(Stored::Through(first_seq.saturating_add(count - 1)))
        }
        Err(e) => {
            tracing::warn!("cannot store timeline samples: {e}");
            Ok(Stored::Later(e.to_string()))
        }
    }
}

/// The store's rows for `samples` (one one-sample batch each), checking
/// their dates: none before 2020 (no agent sampled then), none more than a
/// day ahead of the relay's clock (a broken clock or a forged batch).
pub fn rows_of(samples: &[Sample], now_ms: i64) -> Result<Vec<(i64, Vec<u8>)>, String> {
    samples
        .iter()
        .map(|sample| {
            if sample.at_ms < 1_577_836_800_000 || sample.at_ms > now_ms + MAX_FUTURE_MS {
                return Err(format!(
                    "a timeline sample is dated {} ms, outside 2020 … now + 1 day",
                    sample.at_ms
                ));
            }
            Ok((
                sample.at_ms,
                timeline::encode_batch(std::slice::from_ref(sample)),
            ))
        })
        .collect()
}

/// The samples of stored one-sample batches (unreadable ones skipped).
fn decode_all<'a>(batches: impl IntoIterator<Item = &'a Vec<u8>>) -> Vec<Sample> {
    batches
        .into_iter()
        .filter_map(|batch| timeline::decode_batch(batch).ok())
        .flatten()
        .collect()
}

fn decode_rows(rows: &[crate::store::TimelineRow]) -> Vec<Sample> {
    decode_all(rows.iter().map(|row| &row.sample))
}

/// `deskside timeline DEVICE`: the device's samples in the window.
pub async fn device_timeline(
    shared: &Shared,
    org: OrgId,
    device: String,
    since_ms: i64,
    until_ms: i64,
) -> Result<ConsoleResponse, Refusal> {
    if since_ms > until_ms {
        return Err(Refusal::Invalid(
            "the timeline window starts after it ends; give --since before --until".to_owned(),
        ));
    }
    let record = shared
        .store(move |s| s.find_device(org, &device))
        .await?
        .map_err(|e| internal_error(&e))??;
    let id = record.id;
    let (rows, truncated) = shared
        .store(move |s| s.timeline_between(id, since_ms, until_ms, MAX_ANSWER_SAMPLES))
        .await?
        .map_err(|e| internal_error(&e))?;
    let samples = decode_rows(&rows);
    let policy = crate::policy::load(shared, org).await?;
    let thresholds = serde_json::to_vec(&policy.thresholds()).map_err(|e| internal_error(&e))?;
    Ok(ConsoleResponse::Timeline(DeviceTimeline {
        device: record.summary(shared.presence.is_online(id)),
        batch: timeline::encode_batch(&samples),
        truncated,
        thresholds,
        monitoring: policy.monitoring,
    }))
}

/// `deskside timeline --all`: every device with episodes in the window,
/// judged here so the answer stays small for a large fleet.
pub async fn fleet_timeline(
    shared: &Shared,
    org: OrgId,
    group: Option<String>,
    since_ms: i64,
    until_ms: i64,
) -> Result<ConsoleResponse, Refusal> {
    let policy = crate::policy::load(shared, org).await?;
    let thresholds = policy.thresholds();
    let devices = shared
        .store(move |s| s.list_devices(org))
        .await?
        .map_err(|e| internal_error(&e))?;
    let with_samples = shared
        .store(move |s| s.timeline_devices(org, since_ms, until_ms))
        .await?
        .map_err(|e| internal_error(&e))?;
    let by_id: std::collections::HashMap<DeviceId, &crate::store::DeviceRecord> =
        devices.iter().map(|d| (d.id, d)).collect();
    let mut entries = Vec::new();
    for (id, count) in with_samples {
        let Some(record) = by_id.get(&id) else {
            continue;
        };
        if group.is_some() && record.group != group {
            continue;
        }
        let (rows, _) = shared
            .store(move |s| s.timeline_between(id, since_ms, until_ms, MAX_ANSWER_SAMPLES))
            .await?
            .map_err(|e| internal_error(&e))?;
        // Judged off the store's lock: other requests go on meanwhile.
        let thresholds = thresholds.clone();
        // Each episode marked with whether a recurrence covers it: the
        // answer carries no recurrences, and `--where recurring > 0` asks.
        let episodes = tokio::task::spawn_blocking(move || {
            timeline::judge_timeline(&decode_rows(&rows), &thresholds, &EpisodeRules::default())
                .fleet_episodes()
        })
        .await
        .map_err(|e| internal_error(&e))?;
        if episodes.is_empty() {
            continue;
        }
        entries.push((
            episodes.len(),
            FleetTimelineEntry {
                device: record.summary(shared.presence.is_online(id)),
                samples: count,
                episodes: serde_json::to_vec(&episodes).map_err(|e| internal_error(&e))?,
            },
        ));
    }
    entries.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    let entries: Vec<FleetTimelineEntry> = entries.into_iter().map(|(_, e)| e).collect();
    Ok(ConsoleResponse::TimelineFleet(entries))
}

/// Summarises samples older than [`FULL_RESOLUTION_MS`] and deletes those
/// past each organisation's retention. Run at start and hourly.
pub async fn maintain(shared: &Shared) {
    let now = now_millis();
    // In chunks, so that a large backlog (a relay that was down for days,
    // a first start after an upgrade) never holds the store for long.
    let (mut removed, mut added) = (0, 0);
    loop {
        let chunk = shared
            .store(move |s| {
                s.summarise_timeline(
                    now - FULL_RESOLUTION_MS,
                    SUMMARY_BUCKET_MS,
                    SUMMARY_CHUNK_ROWS,
                    |blobs| {
                        timeline::worst_of(&decode_all(blobs)).map(|s| timeline::encode_batch(&[s]))
                    },
                )
            })
            .await;
        match chunk {
            Ok(Ok((0, _))) => break,
            Ok(Ok((r, a))) => {
                removed += r;
                added += a;
            }
            Ok(Err(e)) => {
                tracing::warn!("cannot summarise old timeline samples: {e}");
                break;
            }
            Err(_) => break,
        }
        tokio::task::yield_now().await;
    }
    if removed > 0 {
        tracing::info!(
            removed,
            added,
            "timeline samples older than 48 h summarised"
        );
    }
    let orgs = match shared.store(|s| s.timeline_orgs()).await {
        Ok(Ok(orgs)) => orgs,
        Ok(Err(e)) => {
            tracing::warn!("cannot list organisations for timeline retention: {e}");
            return;
        }
        Err(_) => return,
    };
    for org in orgs {
        let days = match crate::policy::load(shared, org).await {
            Ok(policy) => policy.timeline_retention_days.max(1),
            Err(_) => deskside_diag::policy::DEFAULT_TIMELINE_RETENTION_DAYS,
        };
        let before = now - i64::from(days) * 86_400_000;
        if let Ok(Err(e)) = shared.store(move |s| s.prune_timeline(org, before)).await {
            tracing::warn!(%org, "cannot delete old timeline samples: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_547_600_000;

    #[test]
    fn samples_dated_before_2020_or_a_day_ahead_are_refused() {
        let at = |at_ms| Sample {
            at_ms,
            ..Sample::default()
        };
        let rows = rows_of(&[at(NOW - 60_000), at(NOW + 3_600_000)], NOW).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            timeline::decode_batch(&rows[0].1).unwrap(),
            vec![at(NOW - 60_000)]
        );
        for bad in [0, 1_500_000_000_000, NOW + 2 * 86_400_000] {
            let error = rows_of(&[at(NOW), at(bad)], NOW).unwrap_err();
            assert!(error.contains("outside 2020"), "{error}");
        }
    }
}
