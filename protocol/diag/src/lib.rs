//! deskside diagnostics: the snapshot format and the classifier.
//!
//! Pure: no I/O, no clock, no sockets. The agent fills a [`Snapshot`] from
//! its probes; the relay stores it; the console and the agent both judge it
//! with [`verdict::judge`] and print it with [`report`]. Because the
//! classifier lives here, a snapshot saved to a file is judged the same way
//! offline (`deskside diag judge FILE`) as live.
//!
//! - [`snapshot`]: what the agent measured.
//! - [`thresholds`]: the limits the classifier applies, with their sources,
//!   overridable per organisation.
//! - [`verdict`]: the classifier, snapshot → [`Verdict`].
//! - [`measure`]: the path measurement's arithmetic (RFC 3550 jitter,
//!   latency under load per direction, RPM).
//! - [`reason`]: why something could not be measured, in French.
//! - [`report`]: the verdict as plain text for the employee and the
//!   technician, in English or French.

pub mod measure;
pub mod policy;
pub mod reason;
pub mod report;
pub mod snapshot;
pub mod thresholds;
pub mod timeline;
pub mod verdict;

#[cfg(test)]
mod testkit;

pub use report::{lang_from_locale, render, Lang, Style};
pub use snapshot::{Probe, Snapshot, FORMAT_VERSION};
pub use thresholds::{ThresholdError, Thresholds};
pub use verdict::{
    judge, Confidence, Evidence, EvidenceValue, Finding, Segment, Severity, Stage, Text, Unknown,
    Verdict,
};
