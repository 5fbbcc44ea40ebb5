//! The timeline: compact samples an agent records every minute while
//! connected, and the pure function that judges a window of them.
//!
//! Pure like the rest of the crate: no I/O, no clock, no randomness. The
//! agent fills [`Sample`]s, the relay keeps them, and the console (or
//! anyone with a file of samples) calls [`judge_timeline`] to get
//! [`Episode`]s attributed to a segment by the snapshot classifier's path
//! order, the [`Event`]s (roams, link changes, sleep) and the
//! [`Recurrence`]s among the episodes.
//!
//! - [`sample`]: the sample and its versioned batch format.
//! - [`episodes`]: thresholds with hysteresis → episodes, attribution.
//! - [`recurrence`]: same hour every day, a regular period, one access
//!   point.

pub mod episodes;
pub mod recurrence;
pub mod sample;

#[cfg(test)]
mod synth;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use episodes::{sample_interval_ms, Episode, EpisodeRules, Event, EventKind, Metric, METRICS};
pub use recurrence::{Pattern, Recurrence};
pub use sample::{
    batch_from_bodies, decode_batch, decode_sample_body, encode_batch, encode_sample_body,
    worst_of, BatchError, GatewaySample, LinkKind, Marker, PressureSample, RelaySample, Sample,
    WifiSample, MAX_BATCH_SAMPLES, SAMPLE_FORMAT,
};

use crate::thresholds::Thresholds;

/// The judgement of a window of samples.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// The first sample's time, ms since the Unix epoch.
    pub from_ms: Option<i64>,
    /// The last sample's time.
    pub to_ms: Option<i64>,
    /// How many samples were judged.
    pub samples: u32,
    /// Their usual spacing, ms.
    pub interval_ms: i64,
    /// The episodes, by start time (then path order).
    pub episodes: Vec<Episode>,
    /// Roams, link changes, starts, sleeps and gaps, by time.
    pub events: Vec<Event>,
    /// Recurring episodes.
    pub recurrences: Vec<Recurrence>,
}

/// An episode as a fleet answer carries it (`deskside timeline --all`,
/// which sends no recurrences): the episode, and whether one of the
/// window's recurrences covers it. In JSON, the episode's own fields plus
/// `recurring` (absent when false, and from relays that predate it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetEpisode {
    /// The episode.
    #[serde(flatten)]
    pub episode: Episode,
    /// Whether a recurrence of the window covers it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recurring: bool,
}

impl Timeline {
    /// The episodes, each marked with whether a recurrence covers it.
    pub fn fleet_episodes(&self) -> Vec<FleetEpisode> {
        let recurring: std::collections::BTreeSet<&str> = self
            .recurrences
            .iter()
            .flat_map(|r| r.episodes.iter().map(String::as_str))
            .collect();
        self.episodes
            .iter()
            .map(|episode| FleetEpisode {
                recurring: recurring.contains(episode.key().as_str()),
                episode: episode.clone(),
            })
            .collect()
    }

    /// Episodes attributed to `segment`.
    pub fn episodes_in(
        &self,
        segment: crate::verdict::Segment,
    ) -> impl Iterator<Item = &Episode> + '_ {
        self.episodes.iter().filter(move |e| e.segment == segment)
    }
}

/// Judges `samples` (in any order; duplicates of one time are read once)
/// with the classifier's `thresholds` and the timeline's `rules`.
pub fn judge_timeline(
    samples: &[Sample],
    thresholds: &Thresholds,
    rules: &EpisodeRules,
) -> Timeline {
    let mut sorted: Vec<Sample> = samples.to_vec();
    sorted.sort_by_key(|s| s.at_ms);
    sorted.dedup_by_key(|s| s.at_ms);
    let interval_ms = sample_interval_ms(&sorted);
    let mut all = Vec::new();
    for metric in METRICS {
        all.extend(episodes::episodes_of(
            metric,
            &sorted,
            interval_ms,
            thresholds,
            rules,
        ));
    }
    let open_until_ms = sorted.last().map(|s| s.at_ms + interval_ms).unwrap_or(0);
    episodes::attribute(&mut all, open_until_ms, rules);
    all.sort_by_key(|e| (e.start_ms, e.metric));
    let recurrences = recurrence::recurrences(&all, &sorted, interval_ms, rules);
    let mut events = episodes::events(&sorted, interval_ms, rules);
    events.sort_by_key(|e| e.at_ms);
    Timeline {
        from_ms: sorted.first().map(|s| s.at_ms),
        to_ms: sorted.last().map(|s| s.at_ms),
        samples: u32::try_from(sorted.len()).unwrap_or(u32::MAX),
        interval_ms,
        episodes: all,
        events,
        recurrences,
    }
}

/// The fleet answer's episodes (beside `tests.rs`, the synthetic series).
#[cfg(test)]
mod fleet_tests {
    use super::synth::*;
    use super::*;

    #[test]
    fn fleet_episodes_mark_the_recurring_ones_and_read_as_plain_episodes() {
        // The VPN drops every 20 minutes (a periodic recurrence); once, the
        // Wi‑Fi signal is weak for five minutes (a lone episode).
        let samples = series(5, 240, &Noise::default(), |minute, _, s| {
            s.vpn_up = Some(!(minute >= 20 && minute % 20 == 7));
            if (100..105).contains(&minute) {
                wifi(s).signal_dbm = Some(-84.0);
            }
        });
        let timeline = judge_timeline(&samples, &Thresholds::default(), &EpisodeRules::default());
        let fleet = timeline.fleet_episodes();
        assert_eq!(fleet.len(), timeline.episodes.len());
        let marks: Vec<(&str, bool)> = fleet
            .iter()
            .map(|f| (f.episode.id.as_str(), f.recurring))
            .collect();
        assert!(
            marks.contains(&("wifi.signal", false)) && marks.contains(&("vpn.down", true)),
            "{marks:?}"
        );
        assert!(
            marks
                .iter()
                .all(|(id, recurring)| *recurring == (*id == "vpn.down")),
            "{marks:?}"
        );
        // A console that predates the mark reads plain episodes; a relay that
        // predates it sends episodes that read as not recurring.
        let json = serde_json::to_vec(&fleet).unwrap();
        let plain: Vec<Episode> = serde_json::from_slice(&json).unwrap();
        assert_eq!(plain, timeline.episodes);
        let old = serde_json::to_vec(&timeline.episodes).unwrap();
        let read: Vec<FleetEpisode> = serde_json::from_slice(&old).unwrap();
        assert!(read.iter().all(|f| !f.recurring));
        assert_eq!(
            read.into_iter().map(|f| f.episode).collect::<Vec<_>>(),
            timeline.episodes
        );
    }
}
