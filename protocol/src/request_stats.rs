//! Statistics over help requests (`deskside stats`): what a helpdesk reads
//! to see recurring faults across the fleet.
//!
//! The relay computes them from the requests it stores; this module only
//! names what travels. Times are Unix seconds, durations whole seconds.

use serde::{Deserialize, Serialize};

use crate::ids::DeviceId;

/// Category of a request whose verdict found no problem.
pub const NO_PROBLEM: &str = "no_problem";
/// Category of a request sent without diagnostics (the employee dropped
/// them, or the quick check could not run).
pub const NO_DIAGNOSTICS: &str = "no_diagnostics";
/// The categories always listed, in path order, then the two without a
/// blamed segment. `unknown` is a problem the verdict could not attribute.
pub const CATEGORIES: [&str; 8] = [
    "device",
    "configuration",
    "home_network",
    "isp",
    "service",
    "unknown",
    NO_PROBLEM,
    NO_DIAGNOSTICS,
];

/// Statistics of the requests created in a window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestStats {
    /// Start of the window (requests created at or after it count).
    pub since: i64,
    /// Requests in the window.
    pub total: u64,
    /// Requests by the segment their verdict blamed, every name of
    /// [`CATEGORIES`] in that order (zeros included), then any other.
    pub categories: Vec<CategoryCount>,
    /// The problems (warning or worse) found most often, most first.
    pub findings: Vec<FindingCount>,
    /// Devices with two requests or more in the window, most first.
    pub repeat_devices: Vec<RepeatDevice>,
    /// Time from creation to the first claim, reply or linked session.
    pub first_response: Latency,
    /// Time from creation to resolution, of the requests resolved now.
    pub resolution: Latency,
}

/// Requests of one category.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryCount {
    /// A name of [`CATEGORIES`] (or a segment a newer relay knows).
    pub category: String,
    /// Requests in it.
    pub requests: u64,
    /// Of which resolved (or closed).
    pub resolved: u64,
}

/// Requests whose verdict holds one finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingCount {
    /// Its stable id, e.g. `wifi.signal_weak`.
    pub id: String,
    /// The segment it blames.
    pub segment: String,
    /// Requests whose verdict holds it.
    pub requests: u64,
}

/// A device that asked for help more than once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepeatDevice {
    /// The device.
    pub device: DeviceId,
    /// Its hostname.
    pub hostname: String,
    /// Its requests in the window.
    pub requests: u64,
}

/// How long something took, over the requests where it happened.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    /// Requests where it happened.
    pub count: u64,
    /// The median in seconds (the mean of the two middle ones, rounded
    /// down, for an even count); `None` when `count` is 0.
    pub median_secs: Option<u64>,
}

/// The median of `durations` as [`Latency`] defines it; sorts them.
pub fn latency(durations: &mut [u64]) -> Latency {
    durations.sort_unstable();
    let n = durations.len();
    let median_secs = match n {
        0 => None,
        _ if n % 2 == 1 => Some(durations[n / 2]),
        _ => {
            let (low, high) = (durations[n / 2 - 1], durations[n / 2]);
            Some(low + (high - low) / 2)
        }
    };
    Latency {
        count: n as u64,
        median_secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        let cases: [(&[u64], Option<u64>); 5] = [
            (&[], None),
            (&[7], Some(7)),
            (&[30, 10, 20], Some(20)),
            (&[40, 10, 30, 20], Some(25)),
            (&[10, 13], Some(11)),
        ];
        for (input, expected) in cases {
            let mut durations = input.to_vec();
            let got = latency(&mut durations);
            assert_eq!(got.median_secs, expected, "{input:?}");
            assert_eq!(got.count, input.len() as u64);
        }
    }
}
