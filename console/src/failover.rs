//! Reaching one of several relays: a profile from a login string that names
//! several relays (sharing one directory) may use any of them.
//!
//! The profile's own relay is tried first; each next one starts
//! [`STAGGER`] later, or at once when every earlier attempt failed, and the
//! first that authenticates wins (the others are abandoned). Each relay's
//! certificate is pinned by its own fingerprint. A refusal of the token is
//! the answer, not a reason to ask another relay: they share one store.

use std::time::Duration;

use deskside_protocol::token::RelayEndpoint;

use crate::client::{Client, ClientError};
use crate::profile::Profile;

/// Head start of each relay over the next: a live relay answers well
/// within it, so a console normally makes one connection.
pub const STAGGER: Duration = Duration::from_millis(1500);

/// Connects and authenticates with `profile` on the first of its relays
/// that answers.
pub async fn connect_any(profile: &Profile) -> Result<Client, ClientError> {
    connect_first(profile.relays(), &profile.token, STAGGER).await
}

/// Whether another relay may succeed where this error happened: the relay
/// could not be reached, its certificate was not the pinned one, or the
/// connection broke.
fn worth_another_relay(error: &ClientError) -> bool {
    matches!(error, ClientError::Connect(_) | ClientError::Net(_))
}

async fn connect_first(
    relays: Vec<RelayEndpoint>,
    token: &str,
    stagger: Duration,
) -> Result<Client, ClientError> {
    let started = tokio::time::Instant::now();
    let mut pending = relays.into_iter().enumerate().peekable();
    // Owned here: dropping the set when one attempt wins aborts the others.
    let mut running = tokio::task::JoinSet::new();
    let mut first_error: Option<ClientError> = None;
    loop {
        while let Some((position, _)) = pending.peek() {
            let due = started + stagger * u32::try_from(*position).unwrap_or(u32::MAX);
            if !running.is_empty() && due > tokio::time::Instant::now() {
                break;
            }
            if let Some((_, relay)) = pending.next() {
                let token = token.to_owned();
                running.spawn(async move {
                    let outcome = Client::connect(&relay.addr, relay.fingerprint, &token).await;
                    (relay, outcome)
                });
            }
        }
        let next_start = pending
            .peek()
            .map(|(position, _)| started + stagger * u32::try_from(*position).unwrap_or(u32::MAX));
        tokio::select! {
            joined = running.join_next() => match joined {
                Some(Ok((relay, Ok(client)))) => {
                    tracing::info!(relay = %relay.addr, "connected");
                    return Ok(client);
                }
                Some(Ok((relay, Err(error)))) => {
                    if !worth_another_relay(&error) {
                        return Err(error);
                    }
                    tracing::info!(relay = %relay.addr, "cannot use this relay, trying the others: {error}");
                    first_error.get_or_insert(error);
                }
                Some(Err(join)) => {
                    first_error.get_or_insert(ClientError::Unexpected(format!("connection attempt failed: {join}")));
                }
                None => {
                    if pending.peek().is_none() {
                        break;
                    }
                }
            },
            _ = tokio::time::sleep_until(next_start.unwrap_or(started)), if next_start.is_some() => {}
        }
    }
    Err(first_error.unwrap_or_else(|| {
        ClientError::Unexpected("the profile names no relay: run `deskside login` again".to_owned())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use deskside_net::ConnectError;
    use deskside_protocol::Refusal;

    #[test]
    fn only_reachability_failures_move_on_to_another_relay() {
        assert!(worth_another_relay(&ClientError::Connect(
            ConnectError::Timeout("a:1".into())
        )));
        assert!(worth_another_relay(&ClientError::Connect(
            ConnectError::Refused("a:1".into())
        )));
        assert!(!worth_another_relay(&ClientError::Refused(
            Refusal::BadTechnicianToken
        )));
    }
}
