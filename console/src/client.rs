//! The console's connection to the relay: connect, authenticate, request.
//!
//! One [`Client`] holds one QUIC connection and its control stream. It never
//! retries on its own: a console command is short-lived and reports failures
//! to the person (or script) that ran it.

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
        })
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

    /// Sends one request and waits for its response.
    pub async fn request(
        &mut self,
        request: ConsoleRequest,
    ) -> Result<ConsoleResponse, ClientError> {
        let result = self.request_inner(request).await;
        self.explained(result)
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
    pub async fn request_all(
        &mut self,
        requests: Vec<ConsoleRequest>,
        window: usize,
        on_answer: impl FnMut(usize, Result<ConsoleResponse, Refusal>),
    ) -> Result<(), ClientError> {
        let result = self.request_all_inner(requests, window, on_answer).await;
        self.explained(result)
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
