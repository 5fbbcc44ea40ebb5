//! The deskside agent: enrollment, the relay link and presence.
//!
//! `state` owns the files in the state directory (key, identity, status);
//! `link` owns the connection to the relay; `backoff` is the pure retry
//! schedule. Later: diagnostics, and the session helper's local socket.

pub mod backoff;
pub mod clock;
pub mod diag;
pub mod enroll_pending;
pub mod link;
pub mod org_trust;
pub mod park;
pub mod platform;
pub mod relays;
pub mod requests;
pub mod service;
pub mod session;
pub mod state;
pub mod timeline;
