//! Help requests over the service's local channel, for a local user who has
//! no enrollment of their own (a system-wide install: the identity lives in
//! the service's state directory, which ordinary users cannot read).
//!
//! `deskside-agent help` and `deskside-agent requests` connect to the
//! service's socket (the one the session helper uses), send one question
//! ([`HelperToService::FileHelpRequest`] or
//! [`HelperToService::ListHelpRequests`]) and read one answer. The service
//! knows who asked from the kernel (`SO_PEERCRED`, see [`super::channel`]),
//! files the request through its own outbox (so it is kept if the relay is
//! down) and records which local user filed it; a user lists only their
//! own requests.
//!
//! This module never decides who may be the session helper: any local
//! user may ask for help, only the helper policy in `channel` admits
//! helpers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use deskside_protocol::helper::{
    FiledOutcome, HelperToService, LocalRequests, RequestUpdate, ServiceToHelper,
};
use deskside_protocol::request::HelpRequest;

use super::channel::{self, WriteHalf};
use super::wire::{write_message, MessageReader};
use crate::requests;
use crate::state::StateDir;
use deskside_session_ui::words::UiLang;

/// The environment variable naming the service's socket (tests, and a
/// service started with a state directory of its own); by default the
/// installed service's ([`channel::SYSTEM_SOCKET`]).
pub const SOCKET_ENV: &str = "DESKSIDE_AGENT_SOCKET";

/// How long a client waits for the service's answer: the service tries
/// the relay for up to [`requests::SEND_TIMEOUT`] before keeping the
/// request queued.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(requests::SEND_TIMEOUT.as_secs() + 20);

/// Requests of one local user that may wait in the service's outbox.
const MAX_QUEUED_PER_USER: usize = 10;

/// Errors of a client of the service's channel.
#[derive(Debug, thiserror::Error)]
pub enum HelpChannelError {
    /// The socket exists but nobody answers on it.
    #[error("the deskside agent service does not answer on {address} ({source}); ask IT to check that the deskside-agent service runs (`systemctl status deskside-agent`)")]
    Unreachable {
        /// The socket.
        address: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The connection failed or carried something unreadable.
    #[error("the connection to the deskside agent service failed ({0}); try again, and if it keeps failing ask IT to check the deskside-agent service")]
    Wire(String),
    /// The service said nothing in time.
    #[error("the deskside agent service did not answer within {} s; try again in a minute", ANSWER_TIMEOUT.as_secs())]
    Timeout,
    /// The service closed the connection without an answer (it refused
    /// the question, or is too old to know it).
    #[error("the deskside agent service did not take the request (it may be older than this command, or refused it: see its log); ask IT to update deskside-agent")]
    NoAnswer,
}

/// The service's socket for a user with no enrollment of their own:
/// `DESKSIDE_AGENT_SOCKET`, else the installed service's, if the socket
/// exists. Windows: not built (the per-user and service state directories
/// there are not bridged yet).
pub fn service_socket() -> Option<PathBuf> {
    #[cfg(unix)]
    {
        let address = std::env::var_os(SOCKET_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(channel::SYSTEM_SOCKET));
        address.exists().then_some(address)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Files `request` through the service at `address`.
pub async fn file_through(
    address: &Path,
    request: &HelpRequest,
) -> Result<FiledOutcome, HelpChannelError> {
    let answer = ask(address, &HelperToService::FileHelpRequest(request.clone())).await?;
    match answer {
        ServiceToHelper::HelpRequestFiled { client_id, outcome }
            if client_id == request.client_id =>
        {
            Ok(outcome)
        }
        other => Err(HelpChannelError::Wire(format!(
            "unexpected answer {other:?}"
        ))),
    }
}

/// The requests this user filed through the service at `address`.
pub async fn list_through(address: &Path) -> Result<LocalRequests, HelpChannelError> {
    match ask(address, &HelperToService::ListHelpRequests).await? {
        ServiceToHelper::HelpRequestList(list) => Ok(list),
        other => Err(HelpChannelError::Wire(format!(
            "unexpected answer {other:?}"
        ))),
    }
}

async fn ask(
    address: &Path,
    question: &HelperToService,
) -> Result<ServiceToHelper, HelpChannelError> {
    let halves =
        channel::connect(address)
            .await
            .map_err(|source| HelpChannelError::Unreachable {
                address: address.to_owned(),
                source,
            })?;
    let mut write = halves.write;
    write_message(&mut write, question)
        .await
        .map_err(|e| HelpChannelError::Wire(e.to_string()))?;
    let mut reader = MessageReader::new(halves.read);
    match tokio::time::timeout(ANSWER_TIMEOUT, reader.next::<ServiceToHelper>()).await {
        Err(_) => Err(HelpChannelError::Timeout),
        Ok(Err(e)) => Err(HelpChannelError::Wire(e.to_string())),
        Ok(Ok(None)) => Err(HelpChannelError::NoAnswer),
        Ok(Ok(Some(answer))) => Ok(answer),
    }
}

/// The service's side: answers one local user's question on `write`.
pub async fn answer(
    state: &StateDir,
    local_user: &str,
    question: HelperToService,
    mut write: WriteHalf,
) -> Result<(), String> {
    let reply = match question {
        HelperToService::FileHelpRequest(mut request) => {
            let outcome = file_for(state, local_user, &mut request).await;
            ServiceToHelper::HelpRequestFiled {
                client_id: request.client_id,
                outcome,
            }
        }
        HelperToService::ListHelpRequests => {
            ServiceToHelper::HelpRequestList(requests::for_local_user(state, local_user))
        }
        _ => return Err("not a help request".to_owned()),
    };
    write_message(&mut write, &reply)
        .await
        .map_err(|e| format!("cannot answer {local_user}: {e}"))
}

async fn file_for(state: &StateDir, local_user: &str, request: &mut HelpRequest) -> FiledOutcome {
    if !requests::valid_client_id(&request.client_id) {
        tracing::warn!(local_user, "refused a help request with a malformed id");
        return FiledOutcome::Refused {
            reason: "the request's id is not 32 hexadecimal digits".to_owned(),
        };
    }
    // A local user may not replace or resend someone else's request.
    let known = requests::load(state);
    let taken = known.sent.iter().any(|s| s.client_id == request.client_id)
        || requests::queued(state)
            .iter()
            .any(|q| q.client_id == request.client_id);
    let owner = known.local_users.get(&request.client_id);
    if owner.is_some_and(|o| o != local_user) || (taken && owner.is_none()) {
        tracing::warn!(local_user, client_id = %request.client_id, "refused a help request whose id belongs to another user");
        return FiledOutcome::Refused {
            reason: "a request with this id was filed by someone else".to_owned(),
        };
    }
    // The service's disk is not a local user's to fill: a few requests
    // waiting for the relay are plenty.
    let waiting = requests::queued(state)
        .iter()
        .filter(|q| known.local_users.get(&q.client_id).map(String::as_str) == Some(local_user))
        .count();
    if waiting >= MAX_QUEUED_PER_USER {
        tracing::warn!(
            local_user,
            waiting,
            "refused a help request: too many waiting"
        );
        return FiledOutcome::Refused {
            reason: format!(
                "{waiting} of your requests are already waiting for IT's relay; they will be sent when it can be reached, or call IT"
            ),
        };
    }
    tracing::info!(local_user, client_id = %request.client_id, "a local user filed a help request through the service");
    let kept = match requests::remember_local_user(state, &request.client_id, local_user) {
        Ok(()) => requests::file(state, request).await,
        Err(e) => Err(e),
    };
    match kept {
        Ok(outcome) => {
            tracing::info!(local_user, client_id = %request.client_id, ?outcome, "help request filed for a local user");
            outcome
        }
        Err(e) => {
            tracing::warn!(local_user, "cannot keep a local user's help request: {e}");
            FiledOutcome::Refused {
                reason: format!("the agent service could not keep the request ({e})"),
            }
        }
    }
}

/// The session helper's side: one of this device's requests changed. A
/// desktop notification says so (Unix: freedesktop Notifications over
/// D-Bus; on a thread of its own, as the bus may be slow).
pub fn show_update(update: RequestUpdate) {
    let (summary, body) = update_words(&update, UiLang::current());
    tracing::info!(number = update.number, status = %update.status, "a help request changed");
    #[cfg(unix)]
    {
        let spawned = std::thread::Builder::new()
            .name("notify".into())
            .spawn(move || match super::notify::notify(&summary, &body) {
                Ok(id) => tracing::info!(id, "request notification shown"),
                Err(e) => tracing::warn!("cannot show the request notification: {e}"),
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the notification thread: {e}");
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (summary, body);
    }
}

/// Opens the "Ask IT for help" window as the desktop launcher does
/// (`deskside-agent help --window`), for the indicator's button. The
/// window's process learns the service this helper talks to, so a user
/// with no enrollment of their own files through it. It runs on its own;
/// a thread reaps it.
pub fn open_help_window(service: &Path) {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            tracing::warn!("cannot find this program to open the help window: {e}");
            return;
        }
    };
    let mut command = std::process::Command::new(exe);
    command
        .args(["help", "--window"])
        .env(SOCKET_ENV, service)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    match command.spawn() {
        Ok(mut child) => {
            tracing::info!(
                pid = child.id(),
                "the help window was opened from the indicator"
            );
            let reaped = std::thread::Builder::new()
                .name("help-window".into())
                .spawn(move || {
                    let status = child.wait();
                    tracing::info!(?status, "the help window's process ended");
                });
            if let Err(e) = reaped {
                tracing::warn!("cannot watch the help window's process: {e}");
            }
        }
        Err(e) => tracing::warn!("cannot open the help window: {e}"),
    }
}

/// The notification's title and text, in the employee's language.
pub fn update_words(update: &RequestUpdate, lang: UiLang) -> (String, String) {
    let fr = lang == UiLang::Fr;
    let n = update.number;
    let kind = update.event.as_ref().map(|e| e.kind.as_str());
    let text = update
        .event
        .as_ref()
        .map(|e| e.text.trim().to_owned())
        .unwrap_or_default();
    let who = update
        .event
        .as_ref()
        .map(|e| e.author.clone())
        .unwrap_or_default();
    let summary = match (kind, fr) {
        (Some("reply"), false) => format!("IT replied to your request #{n}"),
        (Some("reply"), true) => {
            format!("Le service informatique a répondu à votre demande n°\u{a0}{n}")
        }
        (Some("resolved"), false) => format!("Your request #{n} is resolved"),
        (Some("resolved"), true) => format!("Votre demande n°\u{a0}{n} est résolue"),
        (Some("claimed"), false) => format!("IT is handling your request #{n}"),
        (Some("claimed"), true) => {
            format!("Le service informatique s'occupe de votre demande n°\u{a0}{n}")
        }
        (Some("reopened"), false) => format!("Your request #{n} was reopened"),
        (Some("reopened"), true) => format!("Votre demande n°\u{a0}{n} a été rouverte"),
        (_, false) => format!("Your request #{n} changed: {}", update.status),
        (_, true) => format!(
            "Votre demande n°\u{a0}{n} a changé\u{a0}: {}",
            update.status
        ),
    };
    let body = match (text.is_empty(), who.is_empty(), fr) {
        (false, false, _) => format!("{who}: {text}"),
        (false, true, _) => text,
        (true, _, false) => "See `deskside-agent requests`.".to_owned(),
        (true, _, true) => "Voir `deskside-agent requests`.".to_owned(),
    };
    (summary, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use deskside_protocol::request::RequestEvent;

    #[cfg(unix)]
    #[tokio::test]
    async fn the_service_answers_a_local_users_questions_on_the_helper_socket() {
        use crate::session::hub::{serve, HelperHub};
        use deskside_protocol::request::Answers;
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("agent"));
        let path = channel::address_for(dir.path());
        let listener = channel::Listener::bind(&path).unwrap();
        let hub = std::sync::Arc::new(HelperHub::with_requests(state.clone()));
        tokio::spawn(serve(listener, hub));
        // An id that would name a file outside the outbox is refused, and
        // nothing is written.
        let mut request = HelpRequest {
            client_id: "../../identity".into(),
            created_ms: 1,
            answers: Answers::default(),
            snapshot_json: None,
            failures: Vec::new(),
        };
        let refused = file_through(&path, &request).await.unwrap();
        assert!(
            matches!(&refused, FiledOutcome::Refused { reason } if reason.contains("32 hexadecimal")),
            "{refused:?}"
        );
        assert!(requests::queued(&state).is_empty());
        // Requests the service holds for this user are listed to them,
        // without their snapshots; the service's own ones are not.
        let me = format!("uid {}", nix::unistd::Uid::effective().as_raw());
        request.client_id = requests::new_client_id();
        request.snapshot_json = Some(b"{}".to_vec());
        requests::remember_local_user(&state, &request.client_id, &me).unwrap();
        requests::enqueue(&state, &request).unwrap();
        let mut theirs = request.clone();
        theirs.client_id = requests::new_client_id();
        requests::enqueue(&state, &theirs).unwrap();
        let listed = list_through(&path).await.unwrap();
        assert_eq!(listed.queued.len(), 1);
        assert_eq!(listed.queued[0].client_id, request.client_id);
        assert_eq!(listed.queued[0].snapshot_json, None);
        // The service's own request's id cannot be taken over.
        let taken = file_through(&path, &theirs).await.unwrap();
        assert!(
            matches!(&taken, FiledOutcome::Refused { reason } if reason.contains("someone else")),
            "{taken:?}"
        );
    }

    #[test]
    fn a_reply_is_worded_in_english_and_french() {
        let update = RequestUpdate {
            number: 12,
            status: "waiting".into(),
            event: Some(RequestEvent {
                at: 1,
                author: "Sam".into(),
                kind: "reply".into(),
                text: " Restart it. ".into(),
            }),
        };
        assert_eq!(
            update_words(&update, UiLang::En),
            (
                "IT replied to your request #12".to_owned(),
                "Sam: Restart it.".to_owned()
            )
        );
        let (summary, body) = update_words(&update, UiLang::Fr);
        assert_eq!(
            summary,
            "Le service informatique a répondu à votre demande n°\u{a0}12"
        );
        assert_eq!(body, "Sam: Restart it.");
        let quiet = RequestUpdate {
            event: None,
            status: "closed".into(),
            ..update
        };
        let (summary, body) = update_words(&quiet, UiLang::En);
        assert_eq!(summary, "Your request #12 changed: closed");
        assert!(body.contains("deskside-agent requests"), "{body}");
    }
}
