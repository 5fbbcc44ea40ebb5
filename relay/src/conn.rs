//! Per-connection helpers that the connection handlers (`agent_conn`,
//! `console_conn`, `measure`, ...) and the accept loop (`server`) share:
//! close codes, the budget and deadline before authentication, the version
//! exchange and first message, how a connection ended, and the checks every
//! handler applies to what came from the network.
//!
//! It sits below its users: it imports no handler and nothing from
//! `server`, so handlers never import back up into the accept loop.

use std::time::Duration;

use deskside_net::{spki_of, FramedRecv, FramedSend, NetError};
use deskside_protocol::version::{negotiate, ClientHello, ServerHello, VersionRange, MAGIC};
use deskside_protocol::{Refusal, Role, MAX_CLIENT_FRAME_LEN, MAX_RELAY_FRAME_LEN};
use rustls::pki_types::CertificateDer;
use tokio::sync::watch;

use crate::metrics::AuthFailure;
use crate::shared::Shared;

/// Close code: normal end.
pub const CLOSE_OK: u32 = 0;
/// Close code: the peer broke the protocol (bad frame, wrong order).
pub const CLOSE_PROTOCOL_VIOLATION: u32 = 1;
/// Close code: the peer was refused (bad token, revoked, version).
pub const CLOSE_REFUSED: u32 = 2;
/// Close code: the device was revoked while connected.
pub const CLOSE_REVOKED: u32 = 4;
/// Close code: the relay is shutting down.
pub const CLOSE_SHUTDOWN: u32 = 5;

/// How long a new connection has to complete its hello and authentication.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection receive window before authentication: the hello and the
/// authentication message fit many times over, and a peer that pushes data
/// on streams the relay does not read gets no further.
pub const PRE_AUTH_RECEIVE_WINDOW: u32 = 64 << 10;
/// After authentication, the budget `transport_config` gives every
/// connection (keep them in step).
const AUTHENTICATED_RECEIVE_WINDOW: u32 = 16 << 20;
const AUTHENTICATED_STREAMS: u32 = 16;

/// The budget of a connection that has not authenticated: its control
/// stream and 64 KiB in flight. [`authenticated`] widens it.
pub fn pre_auth_budget(transport: &mut quinn::TransportConfig) {
    transport.max_concurrent_bidi_streams(1u32.into());
    transport.max_concurrent_uni_streams(0u32.into());
    transport.receive_window(quinn::VarInt::from_u32(PRE_AUTH_RECEIVE_WINDOW));
}

/// Called by the connection handlers once the peer proved who it is: lifts
/// the connection's authentication deadline, frees its place among the
/// unauthenticated, and gives it the budget of an authenticated peer.
/// Prefer [`authenticated_as`], which also counts the connection.
pub fn authenticated(shared: &Shared, connection: &quinn::Connection) {
    authenticated_with_streams(shared, connection, AUTHENTICATED_STREAMS);
}

/// Streams an attached agent may have open at once, each way: its control
/// stream, and one unidirectional stream for session packets too large for
/// a datagram (a second while the first closes). quinn keeps an entry for
/// every stream the peer may open, so the general budget (16 each way) cost
/// every idle agent about 2 KiB; an agent opens nothing else on this
/// connection (measurements and help requests come on their own).
pub const AGENT_STREAMS: u32 = 2;

fn authenticated_with_streams(shared: &Shared, connection: &quinn::Connection, streams: u32) {
    shared.admission.authenticated(connection.stable_id());
    connection.set_max_concurrent_bi_streams(streams.into());
    connection.set_max_concurrent_uni_streams(streams.into());
    connection.set_receive_window(quinn::VarInt::from_u32(AUTHENTICATED_RECEIVE_WINDOW));
}

/// [`authenticated`], counting the connection by `kind` in the metrics:
/// it counts as open (`deskside_relay_connections{kind}`) while the
/// returned guard is held.
pub fn authenticated_as<'a>(
    shared: &'a Shared,
    connection: &quinn::Connection,
    kind: crate::metrics::ConnKind,
) -> crate::metrics::OpenConnection<'a> {
    // Lowering the budget later would not free quinn's entries: an agent
    // gets its small budget at once.
    let streams = match kind {
        crate::metrics::ConnKind::Agent => AGENT_STREAMS,
        _ => AUTHENTICATED_STREAMS,
    };
    authenticated_with_streams(shared, connection, streams);
    shared.metrics.authenticated(kind)
}

/// Logs an unexpected failure and returns a refusal naming a log reference.
pub fn internal_error(error: &dyn std::fmt::Display) -> Refusal {
    let reference = format!(
        "{:08x}",
        crate::secrets::random_bytes::<4>()
            .map(u32::from_be_bytes)
            .unwrap_or(0)
    );
    tracing::error!(%reference, "internal error: {error}");
    Refusal::Internal(reference)
}

/// Refusals that mean "you are not who you claim": counted per source by
/// the admission gate and summarised in the log instead of one line each.
/// The list of such refusals is the metrics' one
/// ([`AuthFailure::of_refusal`] and [`AuthFailure::is_identity`]).
pub fn is_auth_failure(refusal: &Refusal) -> bool {
    AuthFailure::of_refusal(refusal).is_identity()
}

/// Why a connection was closed before it authenticated.
#[derive(Debug)]
pub enum PreAuth {
    /// The deadline after the first packet passed.
    Deadline,
    /// A datagram came before authentication.
    Datagram,
}

/// Resolves when the connection must be closed for what it did (or did not
/// do) before authenticating; never once it authenticated.
pub async fn pre_auth_guard(
    connection: &quinn::Connection,
    mut authenticated: watch::Receiver<bool>,
    deadline: tokio::time::Instant,
) -> PreAuth {
    tokio::select! {
        biased;
        _ = async { authenticated.wait_for(|done| *done).await.map(|_| ()) } => std::future::pending().await,
        _ = tokio::time::sleep_until(deadline) => PreAuth::Deadline,
        datagram = connection.read_datagram() => match datagram {
            Ok(_) => PreAuth::Datagram,
            // The connection is gone; the handler sees it too.
            Err(_) => std::future::pending().await,
        },
    }
}

/// How a connection ended, for the log.
#[derive(Debug)]
pub enum End {
    /// Normal end or the peer went away.
    Closed,
    /// The peer was refused and told why.
    Refused(Refusal),
    /// The peer broke the protocol; the connection is closed with this reason.
    Violation(String),
    /// The connection broke underneath us.
    Lost(String),
}

impl From<NetError> for End {
    fn from(error: NetError) -> Self {
        match error {
            NetError::Frame(_) | NetError::Message(_) | NetError::Truncated => {
                End::Violation(error.to_string())
            }
            NetError::Timeout => End::Violation("did not authenticate in time".to_owned()),
            NetError::Read(quinn::ReadError::ConnectionLost(
                quinn::ConnectionError::ApplicationClosed(_),
            ))
            | NetError::Connection(quinn::ConnectionError::ApplicationClosed(_)) => End::Closed,
            other => End::Lost(other.to_string()),
        }
    }
}

/// The SubjectPublicKeyInfo of the client certificate, if one was presented.
pub fn peer_public_key(connection: &quinn::Connection) -> Option<Vec<u8>> {
    let identity = connection.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    spki_of(certs.first()?).ok()
}

/// Accepts the control stream and runs the version exchange.
pub async fn accept_control(
    connection: &quinn::Connection,
) -> Result<(FramedSend, FramedRecv), End> {
    let hello = async {
        let (send, recv) = connection.accept_bi().await.map_err(NetError::from)?;
        let send = FramedSend::new(send, MAX_RELAY_FRAME_LEN);
        let mut recv = FramedRecv::new(recv, MAX_CLIENT_FRAME_LEN);
        let hello: ClientHello = recv.recv_value().await?;
        Ok::<_, NetError>((send, recv, hello))
    };
    let (mut send, recv, hello) = tokio::time::timeout(AUTH_TIMEOUT, hello)
        .await
        .map_err(|_| End::from(NetError::Timeout))??;
    if hello.magic != MAGIC {
        return Err(End::Violation(
            "not a deskside client (bad magic)".to_owned(),
        ));
    }
    let software = format!("deskside-relay {}", env!("CARGO_PKG_VERSION"));
    match negotiate(VersionRange::CURRENT, hello.versions) {
        Ok(version) => {
            send.send_value(&ServerHello::Accepted { version, software })
                .await?;
            tracing::debug!(client = %hello.software, version, "hello");
            Ok((send, recv))
        }
        Err(_) => {
            send.send_value(&ServerHello::VersionMismatch {
                relay: VersionRange::CURRENT,
                software,
            })
            .await?;
            finish_and_wait(&mut send).await;
            Err(End::Refused(Refusal::ProtocolViolation(format!(
                "client {} speaks protocol {}, relay speaks {}",
                hello.software,
                hello.versions,
                VersionRange::CURRENT
            ))))
        }
    }
}

/// Finishes a stream and waits (briefly) until the peer has read it, so a
/// final message is not lost when the connection is closed right after.
pub async fn finish_and_wait(send: &mut FramedSend) {
    send.finish();
    let _ = tokio::time::timeout(Duration::from_secs(2), send.stream().stopped()).await;
}

/// Checks a role, for handlers.
pub fn require(have: Role, needed: Role) -> Result<(), Refusal> {
    if have.allows(needed) {
        Ok(())
    } else {
        Err(Refusal::Forbidden { needed, have })
    }
}

/// Bounds for a field that came from the network.
pub fn check_text(field: &str, value: &str, max: usize) -> Result<(), Refusal> {
    if value.len() > max {
        return Err(Refusal::Invalid(format!(
            "{field} is longer than {max} bytes"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Refusal::Invalid(format!(
            "{field} contains control characters"
        )));
    }
    Ok(())
}

/// Waits for the authentication message with the connection's deadline.
pub async fn first_message<M: deskside_protocol::Message>(recv: &mut FramedRecv) -> Result<M, End> {
    match tokio::time::timeout(AUTH_TIMEOUT, recv.recv::<M>()).await {
        Err(_) => Err(End::from(NetError::Timeout)),
        Ok(Ok(Some(message))) => Ok(message),
        Ok(Ok(None)) => Err(End::Closed),
        Ok(Err(e)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The refusals the admission gate counts against a source are exactly
    /// the metrics' identity failures: one list, read from both sides.
    #[test]
    fn identity_refusals_count_against_the_source_and_nothing_else_does() {
        let identity = [
            Refusal::BadTechnicianToken,
            Refusal::EnrollTokenInvalid,
            Refusal::EnrollTokenUsedUp,
            Refusal::EnrollTokenExpired,
            Refusal::DeviceUnknown,
            Refusal::DeviceRevoked,
        ];
        for refusal in &identity {
            assert!(is_auth_failure(refusal), "{refusal:?} names a bad identity");
            assert!(AuthFailure::of_refusal(refusal).is_identity());
        }
        let other = [
            Refusal::ProtocolViolation("version".to_owned()),
            Refusal::Invalid("field".to_owned()),
            Refusal::Internal("0000".to_owned()),
        ];
        for refusal in &other {
            assert!(
                !is_auth_failure(refusal),
                "{refusal:?} is not about identity"
            );
        }
        // Every metrics reason that is an identity failure comes from one
        // of the refusals above.
        let from_refusals: Vec<AuthFailure> =
            identity.iter().map(AuthFailure::of_refusal).collect();
        for reason in AuthFailure::ALL {
            assert_eq!(
                reason.is_identity(),
                from_refusals.contains(&reason),
                "{reason:?}"
            );
        }
    }
}
