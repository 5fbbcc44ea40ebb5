//! deskside diagnostics: the snapshot format and the classifier.
//!
//! Pure: no I/O, no clock, no sockets. The agent fills a [`Snapshot`] from
//! its probes; the relay stores it; the console and the agent both judge it
//! with [`verdict::judge`] and print it with [`report`]. Because the
//! classifier lives here, a snapshot saved to a file is judged the same way
//! offline (`deskside diag judge FILE`) as live.

pub mod snapshot;

pub use snapshot::{Probe, Snapshot, FORMAT_VERSION};
