//! Recurring episodes: the same metric at about the same local time on
//! several days, at a regular period, or on one access point only.
//!
//! A recurrence is what turns "the call froze again" into something a
//! technician can act on: evening congestion is the ISP's busy hour, a VPN
//! that drops every 20 minutes is a rekey or idle timer, weak Wi‑Fi on one
//! access point is a room the signal does not reach.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::episodes::{Episode, EpisodeRules, Metric};
use super::sample::Sample;
use crate::verdict::{Stage, Text};

const MINUTES_PER_DAY: i64 = 1_440;

/// The shape of a recurrence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pattern {
    /// Episodes start at about the same local time on several days.
    DailyAt {
        /// Earliest local start, minutes after midnight.
        from_min: u16,
        /// Latest local start, minutes after midnight.
        to_min: u16,
        /// Distinct days it happened on.
        days: u32,
    },
    /// Episodes start at a regular period.
    Every {
        /// The period, minutes (median gap between starts).
        minutes: u32,
    },
    /// Wi‑Fi or home-network episodes happen on one access point and not
    /// on the others the device used.
    AccessPoint {
        /// The access point (as the samples name it).
        access_point: String,
        /// Hours of samples on it.
        hours_there: u32,
        /// Hours of samples on the other access points, where no such
        /// episode happened.
        hours_elsewhere: u32,
    },
}

/// A recurrence of one metric's episodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recurrence {
    /// The metric's identifier, e.g. `relay.rtt`.
    pub id: String,
    /// Its shape.
    pub pattern: Pattern,
    /// The episodes it covers, as their `id@start_ms` keys.
    pub episodes: Vec<String>,
    /// One sentence, English and French.
    pub description: Text,
}

/// Finds the recurrences among `episodes` (of a series of `samples`).
pub(crate) fn recurrences(
    episodes: &[Episode],
    samples: &[Sample],
    interval_ms: i64,
    rules: &EpisodeRules,
) -> Vec<Recurrence> {
    let offset_min = samples
        .first()
        .map(|s| i64::from(s.utc_offset_min))
        .unwrap_or(0);
    let mut by_metric: BTreeMap<Metric, Vec<&Episode>> = BTreeMap::new();
    for episode in episodes {
        by_metric.entry(episode.metric).or_default().push(episode);
    }
    let mut out = Vec::new();
    for (metric, list) in &by_metric {
        let daily = daily(*metric, list, offset_min, rules);
        let in_daily: BTreeSet<String> = daily
            .as_ref()
            .map(|r| r.episodes.iter().cloned().collect())
            .unwrap_or_default();
        out.extend(daily);
        let rest: Vec<&Episode> = list
            .iter()
            .copied()
            .filter(|e| !in_daily.contains(&e.key()))
            .collect();
        out.extend(periodic(*metric, &rest, interval_ms, rules));
        if matches!(metric.stage(), Stage::Link | Stage::Gateway) {
            out.extend(access_point(*metric, list, samples, interval_ms));
        }
    }
    out
}

fn local_minutes(at_ms: i64, offset_min: i64) -> i64 {
    at_ms.div_euclid(60_000) + offset_min
}

fn clock(minute_of_day: i64) -> String {
    format!("{:02}:{:02}", minute_of_day / 60, minute_of_day % 60)
}

/// An episode's local start: minute of the day, day number, the episode.
type Start<'e> = (i64, i64, &'e Episode);

/// The largest group of episodes starting within
/// [`EpisodeRules::daily_window_min`] of one another's time of day, when
/// it spans [`EpisodeRules::daily_min_days`] days.
fn daily(
    metric: Metric,
    list: &[&Episode],
    offset_min: i64,
    rules: &EpisodeRules,
) -> Option<Recurrence> {
    let window = i64::from(rules.daily_window_min);
    let starts: Vec<Start<'_>> = list
        .iter()
        .map(|e| {
            let local = local_minutes(e.start_ms, offset_min);
            (
                local.rem_euclid(MINUTES_PER_DAY),
                local.div_euclid(MINUTES_PER_DAY),
                *e,
            )
        })
        .collect();
    let mut best: Option<(usize, i64, Vec<&Start<'_>>)> = None;
    for (anchor, _, _) in &starts {
        // Members: starts at most `window` minutes after the anchor, on the
        // circle of the day.
        let members: Vec<&Start<'_>> = starts
            .iter()
            .filter(|(m, _, _)| (m - anchor).rem_euclid(MINUTES_PER_DAY) <= window)
            .collect();
        let days: BTreeSet<i64> = members.iter().map(|(_, d, _)| *d).collect();
        if best.as_ref().is_none_or(|(n, _, _)| days.len() > *n) {
            best = Some((days.len(), *anchor, members));
        }
    }
    let (days, anchor, members) = best?;
    if days < rules.daily_min_days as usize {
        return None;
    }
    let latest = members
        .iter()
        .map(|(m, _, _)| (m - anchor).rem_euclid(MINUTES_PER_DAY))
        .max()
        .unwrap_or(0);
    let from_min = anchor;
    let to_min = (anchor + latest).rem_euclid(MINUTES_PER_DAY);
    let title = metric.title();
    Some(Recurrence {
        id: metric.id().to_owned(),
        pattern: Pattern::DailyAt {
            from_min: from_min as u16,
            to_min: to_min as u16,
            days: days as u32,
        },
        episodes: members.iter().map(|(_, _, e)| e.key()).collect(),
        description: Text::new(
            format!(
                "{} on {days} days, each time starting between {} and {} (local time).",
                title.en,
                clock(from_min),
                clock(to_min)
            ),
            format!(
                "{} sur {days} jours, chaque fois à partir de {}–{} (heure locale).",
                title.fr,
                clock(from_min),
                clock(to_min)
            ),
        ),
    })
}

/// Starts at a regular period: at least
/// [`EpisodeRules::periodic_min_episodes`] episodes, three quarters of the
/// gaps within [`EpisodeRules::periodic_tolerance`] of their median.
fn periodic(
    metric: Metric,
    list: &[&Episode],
    interval_ms: i64,
    rules: &EpisodeRules,
) -> Option<Recurrence> {
    if list.len() < rules.periodic_min_episodes.max(3) as usize {
        return None;
    }
    let mut starts: Vec<i64> = list.iter().map(|e| e.start_ms).collect();
    starts.sort_unstable();
    let mut gaps: Vec<i64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_unstable();
    let median = gaps[gaps.len() / 2];
    // A period must be well above the sampling itself to mean anything.
    if median < 3 * interval_ms {
        return None;
    }
    let tolerance = ((median as f64 * rules.periodic_tolerance) as i64).max(interval_ms);
    let regular = gaps
        .iter()
        .filter(|g| (*g - median).abs() <= tolerance)
        .count();
    if regular * 4 < gaps.len() * 3 {
        return None;
    }
    let minutes = ((median + 30_000) / 60_000) as u32;
    let title = metric.title();
    Some(Recurrence {
        id: metric.id().to_owned(),
        pattern: Pattern::Every { minutes },
        episodes: list.iter().map(|e| e.key()).collect(),
        description: Text::new(
            format!(
                "{} about every {minutes} minutes ({} times).",
                title.en,
                list.len()
            ),
            format!(
                "{} environ toutes les {minutes} minutes ({} fois).",
                title.fr,
                list.len()
            ),
        ),
    })
}

/// Episodes on one access point, none on the others the device used for
/// at least as long.
fn access_point(
    metric: Metric,
    list: &[&Episode],
    samples: &[Sample],
    interval_ms: i64,
) -> Option<Recurrence> {
    let mut per_ap: BTreeMap<&str, Vec<&Episode>> = BTreeMap::new();
    for episode in list {
        if let Some(ap) = &episode.access_point {
            per_ap.entry(ap.as_str()).or_default().push(episode);
        }
    }
    if per_ap.len() != 1 {
        // None, or trouble on several access points: not one place.
        return None;
    }
    let (ap, episodes) = per_ap.into_iter().next()?;
    if episodes.len() < 2 {
        return None;
    }
    let mut time_on: BTreeMap<&str, i64> = BTreeMap::new();
    for sample in samples {
        if let Some(seen) = sample.wifi.as_ref().and_then(|w| w.access_point.as_deref()) {
            *time_on.entry(seen).or_default() += interval_ms;
        }
    }
    let there = time_on.get(ap).copied().unwrap_or(0);
    let elsewhere: i64 = time_on
        .iter()
        .filter(|(other, _)| **other != ap)
        .map(|(_, ms)| *ms)
        .sum();
    if elsewhere < there || elsewhere == 0 {
        return None;
    }
    let hours = |ms: i64| ((ms + 1_800_000) / 3_600_000) as u32;
    let title = metric.title();
    Some(Recurrence {
        id: metric.id().to_owned(),
        pattern: Pattern::AccessPoint {
            access_point: ap.to_owned(),
            hours_there: hours(there),
            hours_elsewhere: hours(elsewhere),
        },
        episodes: episodes.iter().map(|e| e.key()).collect(),
        description: Text::new(
            format!(
                "{} {} times, always on access point {ap}, never on the others ({} h there, {} h elsewhere).",
                title.en,
                episodes.len(),
                hours(there),
                hours(elsewhere)
            ),
            format!(
                "{} {} fois, toujours sur le point d'accès {ap}, jamais sur les autres ({} h sur celui-ci, {} h ailleurs).",
                title.fr,
                episodes.len(),
                hours(there),
                hours(elsewhere)
            ),
        ),
    })
}
