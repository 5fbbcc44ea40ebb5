//! Messages between the agent service and the session helper, over the
//! local Unix socket (`/run/deskside-agent/session.sock`).
//!
//! The service (an unprivileged system user) owns the enrolled key and the
//! end-to-end session connection; the helper (inside the employee's
//! graphical session) owns the consent dialog, the indicator, capture and
//! input. The service never captures and the helper never holds the key.
//! Frames are the usual length-prefixed postcard frames, at most
//! [`crate::session::MAX_VIDEO_FRAME_LEN`] long.

use serde::{Deserialize, Serialize};

use crate::ids::SessionId;
use crate::message::Nested;
use crate::request::{EmployeeRequest, HelpRequest, RequestEvent};

use crate::session::{
    AgentToConsole, Capabilities, ConsoleToAgent, EndedBy, InputEvent, Monitor, VideoFrame,
};

/// Service → helper.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceToHelper {
    /// Answer to [`HelperToService::Hello`]: the helper is registered.
    Welcome,
    /// Ask the employee.
    Consent(ConsentPrompt),
    /// The consent is audited: start capturing (only now).
    Start {
        /// The session.
        session_id: SessionId,
        /// What was granted.
        granted: Capabilities,
        /// Seconds until the grant expires.
        expires_in_secs: u64,
    },
    /// A control message from the technician.
    FromConsole {
        /// The session.
        session_id: SessionId,
        /// The message (nested, so a newer one decodes as `Unknown`).
        message: Nested<ConsoleToAgent>,
    },
    /// An input event from the technician (only forwarded when control is
    /// granted; the helper checks again).
    Input {
        /// The session.
        session_id: SessionId,
        /// The event (nested, so a newer one decodes as `Unknown`).
        event: Nested<InputEvent>,
    },
    /// A video frame has reached the console (it acknowledged it; with a
    /// console that does not acknowledge, the frame was written); the helper
    /// may capture the next (latest-frame-wins across the socket).
    FrameCredit {
        /// The session.
        session_id: SessionId,
        /// The end-to-end connection's smoothed round-trip time in
        /// milliseconds, for the codec choice; 0 when not known yet.
        rtt_ms: u32,
    },
    /// The session is over: close the indicator, stop capturing.
    End {
        /// The session.
        session_id: SessionId,
        /// Who ended it.
        by: EndedBy,
    },
    /// The technician withdrew the request before the employee answered:
    /// close the consent dialog and say so; no answer counts any more.
    Withdrawn {
        /// The session.
        session_id: SessionId,
    },
    /// Answer to [`HelperToService::FileHelpRequest`]: what became of the
    /// request the local user filed through the service.
    HelpRequestFiled {
        /// The request's client id.
        client_id: String,
        /// Sent, kept in the service's outbox, or refused.
        outcome: FiledOutcome,
    },
    /// Answer to [`HelperToService::ListHelpRequests`]: the requests the
    /// asking local user filed through the service.
    HelpRequestList(LocalRequests),
    /// One of this device's requests changed on the relay (a reply, a
    /// status change): the helper tells the employee (a desktop
    /// notification).
    HelpRequestUpdate(RequestUpdate),
    /// A message from a newer service; never sent.
    #[serde(skip)]
    Unknown {
        /// Its variant index.
        tag: u32,
    },
}
crate::impl_message!(ServiceToHelper, known = 11);

/// What became of a request filed through the service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FiledOutcome {
    /// The relay stored it under this number.
    Sent {
        /// The relay's number.
        number: u64,
    },
    /// The relay could not be reached: the request waits in the service's
    /// outbox and goes as soon as the service connects.
    Queued {
        /// Why it could not be sent now.
        error: String,
    },
    /// The relay (or the service) refused it; it was not kept.
    Refused {
        /// Why.
        reason: String,
    },
}

/// A request the relay acknowledged, as the service lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentHelpRequest {
    /// The agent's id for it.
    pub client_id: String,
    /// The relay's number.
    pub number: u64,
    /// The employee's summary.
    pub summary: String,
    /// When typed, Unix ms.
    pub created_ms: i64,
}

/// The requests a local user filed through the service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalRequests {
    /// Waiting in the service's outbox (snapshots left out).
    pub queued: Vec<HelpRequest>,
    /// Acknowledged by the relay.
    pub sent: Vec<SentHelpRequest>,
    /// The relay's view of those (status, replies), as last received.
    pub relay: Vec<EmployeeRequest>,
}

/// A change to one of this device's requests, for a desktop notification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestUpdate {
    /// The relay's number.
    pub number: u64,
    /// Its status now.
    pub status: String,
    /// The newest event meant for the employee (a reply, a resolution),
    /// if the change came with one.
    pub event: Option<RequestEvent>,
}

/// What the consent dialog shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentPrompt {
    /// The session.
    pub session_id: SessionId,
    /// Technician's display name.
    pub technician: String,
    /// Organisation name.
    pub organisation: String,
    /// What is asked for.
    pub capabilities: Capabilities,
    /// Why.
    pub reason: String,
    /// The code both screens show, from the end-to-end handshake.
    pub verification_code: String,
    /// Seconds before no answer counts as a refusal.
    pub timeout_secs: u64,
}

/// The employee's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsentAnswer {
    /// Accepted what was asked.
    Accepted,
    /// Refused.
    Refused,
    /// No answer in time.
    TimedOut,
    /// The dialog could not be shown or died.
    Failed,
}

impl ConsentAnswer {
    /// Stable name for audit rows.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentAnswer::Accepted => "accepted",
            ConsentAnswer::Refused => "refused",
            ConsentAnswer::TimedOut => "timed_out",
            ConsentAnswer::Failed => "dialog_failed",
        }
    }
}

/// Helper → service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelperToService {
    /// First message: who and where.
    Hello {
        /// Helper's version.
        version: String,
        /// The X display, or why there is none usable (Wayland).
        display: Result<String, String>,
    },
    /// The answer to a [`ServiceToHelper::Consent`].
    Consent {
        /// The session.
        session_id: SessionId,
        /// The answer.
        answer: ConsentAnswer,
    },
    /// A message for the technician (welcome, chat, downgrade, end).
    ToConsole {
        /// The session.
        session_id: SessionId,
        /// The message (nested, so a newer one decodes as `Unknown`).
        message: Nested<AgentToConsole>,
    },
    /// A captured, encoded frame.
    Video {
        /// The session.
        session_id: SessionId,
        /// The frame.
        frame: VideoFrame,
    },
    /// The monitors of the helper's display, sent after the welcome, so a
    /// session asked for a monitor that does not exist is refused before
    /// anyone is asked.
    Monitors {
        /// The monitors, by index.
        monitors: Vec<Monitor>,
    },
    /// First and only message of a connection from `deskside-agent help`
    /// run by a local user who has no enrollment of their own: the service
    /// files the request for them (keeping it in its outbox) and answers
    /// [`ServiceToHelper::HelpRequestFiled`].
    FileHelpRequest(HelpRequest),
    /// First and only message of a connection from `deskside-agent
    /// requests` run by such a user: the service answers
    /// [`ServiceToHelper::HelpRequestList`] with that user's requests.
    ListHelpRequests,
    /// A message from a newer helper; never sent.
    #[serde(skip)]
    Unknown {
        /// Its variant index.
        tag: u32,
    },
}
crate::impl_message!(HelperToService, known = 7);
