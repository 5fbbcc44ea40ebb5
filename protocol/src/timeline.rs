//! Console ↔ relay messages of the timeline (`deskside timeline`): the
//! samples of one device, and the fleet summary.
//!
//! Samples travel in `deskside-diag`'s batch format (a format byte, then
//! postcard) and episodes as its JSON, so this crate need not know their
//! shape, as with diagnostic snapshots.

use serde::{Deserialize, Serialize};

use crate::console::DeviceSummary;

/// Answer to `ConsoleRequest::Timeline`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceTimeline {
    /// The device.
    pub device: DeviceSummary,
    /// Its samples in the asked window, oldest first (`deskside-diag`
    /// `timeline::encode_batch`). Samples older than the relay's full
    /// resolution window are 10-minute summaries (the worst of each).
    pub batch: Vec<u8>,
    /// Whether the relay had to leave out older samples to stay within
    /// its answer limit (the window is then shorter than asked).
    pub truncated: bool,
    /// The organisation's thresholds (JSON of `deskside-diag`
    /// `Thresholds`, overrides applied), to judge the samples with.
    pub thresholds: Vec<u8>,
    /// Whether the organisation's policy has monitoring on.
    pub monitoring: bool,
}

/// One device of `ConsoleRequest::TimelineFleet`'s answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetTimelineEntry {
    /// The device.
    pub device: DeviceSummary,
    /// Samples the relay holds for it in the window.
    pub samples: u32,
    /// The episodes the relay found (JSON array of `deskside-diag`
    /// `timeline::FleetEpisode`: an `Episode`'s fields, plus `recurring`
    /// when a recurrence of the window covers it).
    pub episodes: Vec<u8>,
}
