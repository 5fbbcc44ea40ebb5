//! The wall clock, read in one place. A clock before 1970 reads as 0
//! rather than failing: every caller uses it for display or offsets.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub fn unix_secs() -> i64 {
    unix_millis() / 1000
}
