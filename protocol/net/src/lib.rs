//! deskside's thin async driver around `deskside-protocol`: QUIC endpoints,
//! TLS with pinned certificates, and framed streams.
//!
//! This crate plays `quinn`'s role next to `quinn-proto`: everything that
//! touches sockets, TLS and tokio for the agent, relay and console, and no
//! product logic. Message meaning belongs to the protocol crate; policy
//! (who may do what) belongs to the relay.

pub mod docs;
pub mod files;
pub mod framed;
pub mod orgkey;
pub mod park;
pub mod plain_udp;
pub mod roam;
pub mod tls;
pub mod transport;
pub mod tunnel;

pub use framed::{FramedRecv, FramedSend, NetError};
pub use tls::{fingerprint_of, key_fingerprint, key_fingerprint_of, spki_of, Identity, TlsError};
pub use transport::{connect, ConnectError, ConnectOptions, Connected, ALPN};
pub use tunnel::{
    accept_session, connect_session, verification_code, Carrier, SessionConfig, SessionConn,
    TunnelError, TunnelPort, TunnelSocket,
};
