//! The deskside relay: enrollment, authentication, presence and the store.
//!
//! `server` owns the QUIC endpoint and spawns one task per connection;
//! `agent_conn` and `console_conn` serve the two kinds of peers, with the
//! per-connection helpers of `conn` and the relay-wide state of `shared`; `store` is
//! the only code that talks SQL; `presence` knows who is online;
//! `sessions` routes remote-session packets between agents and consoles.

pub mod access;
pub mod admin_token;
pub mod admission;
pub mod agent_conn;
pub mod agent_packets;
pub mod audit_anchor;
pub mod audit_verify;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod console;
pub mod console_conn;
pub mod data_dir;
pub mod diagnostics;
pub mod ended_elsewhere;
pub mod enroll_limits;
pub mod health;
pub mod identifier_key;
pub mod ip_privacy;
pub mod measure;
pub mod metrics;
pub mod park;
#[cfg(all(unix, any(test, feature = "test-utils")))]
pub mod pg_server;
pub mod policy;
pub mod policy_sync;
pub mod preflight;
pub mod presence;
pub mod probe_echo;
pub mod relay_list;
pub mod requests;
pub mod roaming;
pub mod secrets;
pub mod server;
pub mod session_follow_up;
pub mod sessions;
pub mod shared;
pub mod store;
pub mod store_admin;
pub mod tasks;
pub mod tickets;
pub mod timeline;
pub mod tls_files;
pub mod trim;
pub mod udp_buffers;
pub mod withdraw;

pub use config::{Direction, RelayConfig, RelayHooks};
pub use server::Relay;
