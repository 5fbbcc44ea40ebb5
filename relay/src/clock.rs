//! The relay's one wall-clock reading, in Unix seconds or milliseconds.
//!
//! Every part of the relay that stamps a row or compares an expiry reads
//! the clock here, so there is one place that decides what a clock before
//! 1970 means (zero). Pure code (`protocol`, the store's rules) never reads
//! the clock: it takes the time as an argument.

use std::time::{SystemTime, UNIX_EPOCH};

/// Current time, Unix seconds.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Current time, Unix milliseconds.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
