//! The console request handlers, one file per request group (mirroring
//! the console's `console/src/cmd/`), and what they share: the [`Caller`]
//! a request runs for, the connection's [`ConsoleLink`] and [`run`].
//!
//! `console_conn` owns the connection loop and dispatches each request
//! here once its role is checked; nothing here imports from it.

pub mod audit;
pub mod devices;
pub mod diag;
pub mod enroll;
pub mod held_elsewhere;
pub mod policy;
pub mod session;
pub mod session_admin;
pub mod timeline;
pub mod tokens;

use deskside_net::tunnel::PacketSender;
use deskside_protocol::Refusal;

use crate::conn::internal_error;
use crate::sessions::ConnectionId;
use crate::shared::Shared;
use crate::store::{OrgId, Store, StoreError, Technician};

/// Who a request runs for, and when: read once per request.
#[derive(Debug)]
pub struct Caller<'a> {
    /// The relay's state.
    pub shared: &'a Shared,
    /// The authenticated technician.
    pub technician: &'a Technician,
    /// Their console connection.
    pub link: &'a ConsoleLink,
    /// The technician's organisation.
    pub org: OrgId,
    /// The technician as the audit log names them.
    pub actor: String,
    /// When the request is handled, Unix seconds.
    pub now: i64,
}

/// What request handlers know about their console connection.
#[derive(Debug)]
pub struct ConsoleLink {
    /// The connection's id in the router.
    pub connection: ConnectionId,
    /// Where the router sends this console's session packets.
    pub packets: PacketSender,
    /// The technician's organisation, as shown to employees.
    pub organisation: String,
    /// The session key certificate this console presented
    /// (`PresentSessionCertificate`), forwarded with its session requests.
    /// The relay cannot check or make one: it has no organisation key.
    pub session_certificate: std::sync::Mutex<Option<Vec<u8>>>,
    /// The token's state, checked before every request.
    pub access: crate::access::Access,
}

/// Runs a store operation and maps store failures to an internal refusal.
pub async fn run<T: Send + 'static>(
    shared: &Shared,
    op: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Refusal> {
    shared
        .store_as(crate::metrics::StoreOp::ConsoleRequest, op)
        .await?
        .map_err(|e| internal_error(&e))
}
