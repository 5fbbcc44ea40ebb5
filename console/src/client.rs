//! The console's connection to the relay: connect, authenticate, request.
//!
//! One [`Client`] holds one QUIC connection and its control stream. It never
//! retries on its own: a console command is short-lived and reports failures
//! to the person (or script) that ran it.
//!
//! One thing it does follow: a relay sharing its directory with others
//! answers a request about a device another relay holds with
//! [`Refusal::HeldElsewhere`]. The client then connects to that relay
//! (pinning the certificate the answer names), logs in with the same token,
//! presents again what this connection presented (the session
//! certificate), asks again, and from then on talks to that relay. One hop
//! per request: a second redirect is returned as it is, so two relays
//! with stale views cannot send a console round in circles.

use std::time::Duration;

use deskside_net::transport::{client_endpoint, resolve, ConnectOptions};
use deskside_net::{connect, ConnectError, FramedRecv, FramedSend, NetError};
use deskside_protocol::console::{
    ConsoleRequest, ConsoleResponse, ConsoleToRelay, RelayToConsole, CLOSE_ACCESS_ENDED,
};
use deskside_protocol::message::Nested;
use deskside_protocol::{Fingerprint, Refusal, Role};
use thiserror::Error;

/// How long the console waits for any one answer from the relay. A fresh
/// diagnostic with a throughput test takes ~5 s; the relay gives an agent
/// 45 s before answering for it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a fleet run waits for the next answer before giving up.
const FLEET_ANSWER_TIMEOUT: Duration = Duration::from_secs(90);

/// Errors talking to the relay.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The connection could not be set up.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The relay refused the token or the request.
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// The connection broke or the relay sent something unexpected.
    #[error("lost the connection to the relay: {0}")]
    Net(#[from] NetError),
    /// The relay closed the connection because the technician token was
    /// revoked or expired; the relay's reason says what to do.
    #[error("{0}")]
    AccessEnded(String),
    /// The relay answered with something this console does not understand.
    #[error(
        "the relay sent an answer this console does not understand ({0}); upgrade the console"
    )]
    Unexpected(String),
    /// The device is held by another relay, which could not be reached or
    /// refused this console's token.
    #[error("the device is connected to relay {relay}, and asking there failed: {reason}; check that this computer can reach {relay} over UDP")]
    Redirect {
        /// The other relay's address.
        relay: String,
        /// What went wrong there.
        reason: String,
    },
}

/// A relay to connect to: its address and pinned certificate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RelayAddr {
    /// `host:port`.
    pub relay: String,
    /// The certificate to pin.
    pub fingerprint: Fingerprint,
}

/// The relay a refusal sends the console to, if it is a redirect.
pub fn redirect_of(refusal: &Refusal) -> Option<RelayAddr> {
    match refusal {
        Refusal::HeldElsewhere {
            relay_addr,
            fingerprint,
            ..
        } => Some(RelayAddr {
            relay: relay_addr.clone(),
            fingerprint: *fingerprint,
        }),
        _ => None,
    }
}

/// Whether `request` sets up state the relay keeps per connection, so a
/// redirected client presents it again to the relay it moves to. (The
/// session key is kept in the shared store; the certificate only for the
/// connection.)
fn is_connection_setup(request: &ConsoleRequest) -> bool {
    matches!(request, ConsoleRequest::PresentSessionCertificate { .. })
}

/// The redirected requests of a fleet run grouped by the relay they go
/// to, each group in the order the requests were made and the relays in
/// the order they were first named.
pub fn group_by_relay(redirected: Vec<(usize, RelayAddr)>) -> Vec<(RelayAddr, Vec<usize>)> {
    let mut groups: Vec<(RelayAddr, Vec<usize>)> = Vec::new();
    for (index, relay) in redirected {
        match groups.iter_mut().find(|(known, _)| *known == relay) {
            Some((_, indices)) => indices.push(index),
            None => groups.push((relay, vec![index])),
        }
    }
    for (_, indices) in &mut groups {
        indices.sort_unstable();
    }
    groups
}

/// The technician token, never shown in `Debug` output.
#[derive(Clone)]
struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Who the relay says we are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The technician's name.
    pub technician: String,
    /// The token's role.
    pub role: Role,
    /// The organisation's name.
    pub organisation: String,
}

/// An authenticated connection to the relay.
#[derive(Debug)]
pub struct Client {
    endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    send: FramedSend,
    recv: FramedRecv,
    session: Session,
    next_id: u64,
    /// The relay this connection reaches.
    relay: RelayAddr,
    /// The token it logged in with, to log in where a redirect sends it.
    token: Token,
    /// Per-connection set-up requests made so far, presented again after
    /// a redirect ([`is_connection_setup`]).
    setup: Vec<ConsoleRequest>,
}

impl Client {
    /// Connects to `relay`, pinning `fingerprint`, and authenticates with the
    /// technician `token`.
    pub async fn connect(
        relay: &str,
        fingerprint: Fingerprint,
        token: &str,
    ) -> Result<Self, ClientError> {
        let addr = resolve(relay).await?;
        let endpoint = client_endpoint(addr)?;
        let options = ConnectOptions {
            relay: relay.to_owned(),
            fingerprint,
            identity: None,
            idle_timeout: Duration::from_secs(30),
            // As often as the agents: a relay may run with an idle timeout
            // as short as 5 s, and a console waiting on a long request
            // (a speed test) must not be dropped as idle meanwhile.
            keep_alive: Some(Duration::from_secs(4)),
            software: format!("deskside {}", env!("CARGO_PKG_VERSION")),
        };
        let connected = connect(&endpoint, &options).await?;
        let mut send = connected.send;
        let mut recv = connected.recv;
        send.send(&ConsoleToRelay::Authenticate {
            token: token.to_owned(),
        })
        .await?;
        let answer = timed(recv.recv::<RelayToConsole>()).await?;
        let session = match answer {
            Some(RelayToConsole::Authenticated {
                technician,
                role,
                organisation,
            }) => Session {
                technician,
                role,
                organisation,
            },
            Some(RelayToConsole::Refused(Nested(refusal))) => return Err(refusal.into()),
            Some(other) => return Err(ClientError::Unexpected(format!("{other:?}"))),
            None => return Err(NetError::Truncated.into()),
        };
        Ok(Self {
            endpoint,
            connection: connected.connection,
            send,
            recv,
            session,
            next_id: 1,
            relay: RelayAddr {
                relay: relay.to_owned(),
                fingerprint,
            },
            token: Token(token.to_owned()),
            setup: Vec::new(),
        })
    }

    /// The relay this client talks to now: the profile's, or the one a
    /// redirect moved it to.
    pub fn relay(&self) -> &RelayAddr {
        &self.relay
    }

    /// The QUIC endpoint the connection runs on, to move it to another
    /// network (see `cmd::session_link`).
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// The QUIC connection, for remote-session packets (see `cmd::session`).
    pub fn connection(&self) -> &quinn::Connection {
        &self.connection
    }

    /// Who the relay authenticated us as.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Sends one request and waits for its response. When the relay says
    /// another relay holds the device, asks that one (see the module
    /// docs); once it answered, this client talks to it from then on.
    pub async fn request(
        &mut self,
        request: ConsoleRequest,
    ) -> Result<ConsoleResponse, ClientError> {
        let result = self.request_here(request.clone()).await;
        let Err(ClientError::Refused(refusal)) = &result else {
            return result;
        };
        let Some(relay) = redirect_of(refusal) else {
            return result;
        };
        let redirected = async {
            let mut there = self.connect_like_this(&relay).await?;
            let answer = there.request_here(request).await;
            Ok::<_, ClientError>((there, answer))
        };
        match redirected.await {
            Ok((there, Ok(response))) => {
                tracing::info!(relay = %relay.relay, "moved to the relay holding the device");
                let here = std::mem::replace(self, there);
                here.close().await;
                Ok(response)
            }
            Ok((there, Err(error))) => {
                there.close().await;
                Err(error)
            }
            Err(error) => Err(ClientError::Redirect {
                relay: relay.relay,
                reason: error.to_string(),
            }),
        }
    }

    /// [`Client::request`] on this connection only, remembering set-up
    /// requests that succeed.
    async fn request_here(
        &mut self,
        request: ConsoleRequest,
    ) -> Result<ConsoleResponse, ClientError> {
        let setup = is_connection_setup(&request).then(|| request.clone());
        let result = self.request_inner(request).await;
        let result = self.explained(result);
        if let (Some(setup), Ok(_)) = (setup, &result) {
            self.setup.push(setup);
        }
        result
    }

    /// A client on `relay` with this one's token, given this connection's
    /// set-up requests.
    async fn connect_like_this(&self, relay: &RelayAddr) -> Result<Client, ClientError> {
        tracing::info!(relay = %relay.relay, "another relay holds the device: asking it");
        let mut there = Client::connect(&relay.relay, relay.fingerprint, &self.token.0).await?;
        for setup in &self.setup {
            there.request_here(setup.clone()).await?;
        }
        Ok(there)
    }

    async fn request_inner(
        &mut self,
        request: ConsoleRequest,
    ) -> Result<ConsoleResponse, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        self.send
            .send(&ConsoleToRelay::Request {
                id,
                request: Nested(request),
            })
            .await?;
        loop {
            match timed(self.recv.recv::<RelayToConsole>()).await? {
                Some(RelayToConsole::Response {
                    id: answered,
                    result,
                }) if answered == id => {
                    return match result {
                        Ok(Nested(ConsoleResponse::Unknown { tag })) => {
                            Err(ClientError::Unexpected(format!("response type {tag}")))
                        }
                        Ok(Nested(response)) => Ok(response),
                        Err(Nested(refusal)) => Err(refusal.into()),
                    };
                }
                Some(RelayToConsole::Refused(Nested(refusal))) => return Err(refusal.into()),
                // Answers to other ids and messages from newer relays are not
                // ours to handle.
                Some(_) => continue,
                None => return Err(NetError::Truncated.into()),
            }
        }
    }

    /// Sends many requests, at most `window` unanswered at a time, and calls
    /// `on_answer(index, result)` for each as it arrives (in any order).
    /// Per-request refusals go to `on_answer`; a broken connection ends the
    /// whole call with an error.
    ///
    /// Requests about devices another relay holds are asked again there
    /// once this relay has answered the rest: one connection per other
    /// relay, the same window. A relay that cannot be reached fails only
    /// its own requests (each gets the reason); this connection stays the
    /// client's.
    pub async fn request_all(
        &mut self,
        requests: Vec<ConsoleRequest>,
        window: usize,
        mut on_answer: impl FnMut(usize, Result<ConsoleResponse, ClientError>),
    ) -> Result<(), ClientError> {
        let mut redirected = Vec::new();
        let result = self
            .request_all_inner(requests.clone(), window, |index, result| {
                match result.as_ref().err().and_then(redirect_of) {
                    Some(relay) => redirected.push((index, relay)),
                    None => on_answer(index, result.map_err(ClientError::Refused)),
                }
            })
            .await;
        self.explained(result)?;
        for (relay, indices) in group_by_relay(redirected) {
            let asked: Vec<ConsoleRequest> = indices.iter().map(|&i| requests[i].clone()).collect();
            let mut answered = vec![false; indices.len()];
            let run_there = async {
                let mut there = self.connect_like_this(&relay).await?;
                let result = there
                    .request_all_inner(asked, window, |position, result| {
                        answered[position] = true;
                        on_answer(indices[position], result.map_err(ClientError::Refused))
                    })
                    .await;
                let result = there.explained(result);
                there.close().await;
                result
            };
            if let Err(error) = run_there.await {
                // What that relay answered before failing was reported;
                // the others get the reason.
                let reason = error.to_string();
                for (position, &index) in indices.iter().enumerate() {
                    if !answered[position] {
                        on_answer(
                            index,
                            Err(ClientError::Redirect {
                                relay: relay.relay.clone(),
                                reason: reason.clone(),
                            }),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    async fn request_all_inner(
        &mut self,
        requests: Vec<ConsoleRequest>,
        window: usize,
        mut on_answer: impl FnMut(usize, Result<ConsoleResponse, Refusal>),
    ) -> Result<(), ClientError> {
        let window = window.max(1);
        let total = requests.len();
        let mut pending = std::collections::HashMap::new();
        let mut queue = requests.into_iter().enumerate();
        let mut answered = 0;
        while answered < total {
            while pending.len() < window {
                let Some((index, request)) = queue.next() else {
                    break;
                };
                let id = self.next_id;
                self.next_id += 1;
                pending.insert(id, index);
                self.send
                    .send(&ConsoleToRelay::Request {
                        id,
                        request: Nested(request),
                    })
                    .await?;
            }
            let message =
                tokio::time::timeout(FLEET_ANSWER_TIMEOUT, self.recv.recv::<RelayToConsole>())
                    .await
                    .map_err(|_| NetError::Timeout)??;
            match message {
                Some(RelayToConsole::Response { id, result }) => {
                    let Some(index) = pending.remove(&id) else {
                        continue;
                    };
                    answered += 1;
                    on_answer(
                        index,
                        match result {
                            Ok(Nested(response)) => Ok(response),
                            Err(Nested(refusal)) => Err(refusal),
                        },
                    );
                }
                Some(RelayToConsole::Refused(Nested(refusal))) => return Err(refusal.into()),
                Some(_) => continue,
                None => return Err(NetError::Truncated.into()),
            }
        }
        Ok(())
    }

    /// A broken connection explained: when the relay closed it because the
    /// token stopped granting access, its reason instead of a bare
    /// "connection lost".
    fn explained<T>(&self, result: Result<T, ClientError>) -> Result<T, ClientError> {
        match result {
            Err(ClientError::Net(error)) => Err(match access_ended(&self.connection) {
                Some(reason) => ClientError::AccessEnded(reason),
                None => ClientError::Net(error),
            }),
            other => other,
        }
    }

    /// Closes the connection politely and waits until the relay knows.
    pub async fn close(self) {
        self.connection.close(0u32.into(), b"bye");
        self.endpoint.wait_idle().await;
    }
}

/// The relay's reason, if it closed `connection` because the technician
/// token stopped granting access ([`CLOSE_ACCESS_ENDED`]).
pub fn access_ended(connection: &quinn::Connection) -> Option<String> {
    match connection.close_reason()? {
        quinn::ConnectionError::ApplicationClosed(close)
            if close.error_code == quinn::VarInt::from_u32(CLOSE_ACCESS_ENDED) =>
        {
            Some(String::from_utf8_lossy(&close.reason).into_owned())
        }
        _ => None,
    }
}

async fn timed<T>(
    fut: impl std::future::Future<Output = Result<T, NetError>>,
) -> Result<T, NetError> {
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .map_err(|_| NetError::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(n: u8) -> RelayAddr {
        RelayAddr {
            relay: format!("10.0.0.{n}:4433"),
            fingerprint: Fingerprint([n; 32]),
        }
    }

    #[test]
    fn only_held_elsewhere_redirects_and_it_names_the_relay_to_pin() {
        let held = Refusal::HeldElsewhere {
            device: "laptop".to_owned(),
            relay_addr: "10.0.0.2:4433".to_owned(),
            fingerprint: Fingerprint([2; 32]),
        };
        assert_eq!(redirect_of(&held), Some(relay(2)));
        for other in [
            Refusal::Invalid("laptop is offline".to_owned()),
            Refusal::NotFound("laptop".to_owned()),
            Refusal::BadTechnicianToken,
            Refusal::Unknown { tag: 99 },
        ] {
            assert_eq!(redirect_of(&other), None, "{other:?}");
        }
    }

    #[test]
    fn the_session_certificate_is_presented_again_after_a_redirect_and_nothing_else() {
        assert!(is_connection_setup(
            &ConsoleRequest::PresentSessionCertificate {
                certificate: vec![1, 2, 3]
            }
        ));
        for request in [
            ConsoleRequest::ListDevices,
            ConsoleRequest::RegisterSessionKey {
                key: Fingerprint([0; 32]),
            },
            ConsoleRequest::Diagnose {
                device: "laptop".to_owned(),
                throughput: false,
            },
        ] {
            assert!(!is_connection_setup(&request), "{request:?}");
        }
    }

    #[test]
    fn fleet_redirects_are_grouped_per_relay_in_request_order() {
        let groups = group_by_relay(vec![
            (5, relay(3)),
            (1, relay(2)),
            (4, relay(3)),
            (2, relay(2)),
        ]);
        assert_eq!(groups, vec![(relay(3), vec![4, 5]), (relay(2), vec![1, 2])]);
        assert!(group_by_relay(Vec::new()).is_empty());
    }

    #[test]
    fn a_token_never_shows_in_debug_output() {
        let token = Token("dst_secret_value".to_owned());
        assert_eq!(format!("{token:?}"), "<redacted>");
    }
}
