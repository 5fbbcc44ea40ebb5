//! Messages between an agent and the relay.
//!
//! After the hello exchange the agent sends exactly one of `Enroll` or
//! `Attach`; the relay answers `Enrolled`, `Attached` or `Refused`. An attached
//! agent then stays connected; the relay pings it to measure the path.

use serde::{Deserialize, Serialize};

use crate::ids::{DeviceId, Fingerprint, SessionId};
use crate::message::Nested;
use crate::refusal::Refusal;
use crate::session::{Capabilities, EndedBy};

/// What an agent says about the machine it runs on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Host name as the OS reports it.
    pub hostname: String,
    /// OS name and version, e.g. `Debian GNU/Linux 12`.
    pub os: String,
    /// Version of the agent, e.g. `0.1.0`.
    pub agent_version: String,
}

/// Agent → relay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentToRelay {
    /// Registers the key this connection authenticated with as a new device.
    Enroll {
        /// The secret part of the enrollment token.
        secret: String,
        /// Facts about the device.
        info: DeviceInfo,
    },
    /// Attaches this connection to the device enrolled with its key.
    Attach {
        /// Facts about the device, refreshed on every connection.
        info: DeviceInfo,
    },
    /// Answer to [`RelayToAgent::Ping`].
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// Opens a measurement connection (see [`crate::measure`]) for the
    /// device enrolled with this key, without touching its presence.
    Measure,
    /// A fresh diagnostic snapshot asked for by [`RelayToAgent::CollectDiagnostics`].
    Diagnostics {
        /// The request's id.
        request_id: u64,
        /// The snapshot as JSON (the format of `deskside-diag`), or why the
        /// agent could not or would not collect it.
        result: Result<Vec<u8>, String>,
    },
    /// The employee's answer to [`RelayToAgent::SessionRequest`]. The relay
    /// commits it to the audit log and answers [`RelayToAgent::ConsentRecorded`];
    /// nothing of the session is sent before that.
    SessionConsent {
        /// The session.
        session_id: SessionId,
        /// What was granted; `None` when refused, timed out or no one could
        /// be asked.
        granted: Option<Capabilities>,
        /// `accepted`, `refused`, `timed_out` or why no one could be asked.
        outcome: String,
    },
    /// A session ended on this device (audit).
    SessionEnded {
        /// The session.
        session_id: SessionId,
        /// Who ended it.
        by: EndedBy,
    },
    /// The agent applied the policy of [`RelayToAgent::PolicyUpdate`]
    /// `revision` (it governs the next collection).
    PolicyApplied {
        /// The update's revision.
        revision: u64,
    },
    /// The monitors of the employee's display, as the session helper
    /// reported them (sent when they become known or change), so the relay
    /// refuses a session asked for a monitor that does not exist before
    /// the employee is asked.
    Monitors {
        /// The monitors, by index; empty when no helper is connected.
        monitors: Vec<crate::session::Monitor>,
    },
    /// Timeline samples (monitoring), oldest first, numbered from
    /// `first_seq` by the agent; the relay stores them and answers
    /// [`RelayToAgent::TimelineStored`]. Resending is harmless: the relay
    /// keeps one sample per device and time.
    TimelineSamples {
        /// The agent's sequence number of the first sample.
        first_seq: u64,
        /// The samples, in the batch format of `deskside-diag`'s
        /// `timeline::encode_batch` (a format byte, then postcard).
        batch: Vec<u8>,
    },
    /// A help request typed by the employee (`deskside-agent help`): sent
    /// as the first message of a connection of its own, or on the attached
    /// connection. The relay stores it once per `client_id` and answers
    /// [`RelayToAgent::HelpRequestStored`].
    HelpRequest(crate::request::HelpRequest),
    /// The agent has nothing to do: it asks to park (see [`crate::park`]).
    /// The relay answers [`RelayToAgent::Parked`], or nothing while it has
    /// something for the agent (the agent asks again later).
    Park,
    /// A message from a newer agent; never sent.
    #[serde(skip)]
    Unknown {
        /// Its variant index.
        tag: u32,
    },
}
crate::impl_message!(AgentToRelay, known = 12);

/// Relay → agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayToAgent {
    /// Enrollment succeeded.
    Enrolled {
        /// The new device's id.
        device_id: DeviceId,
        /// Name of the organisation the device now belongs to.
        organisation: String,
    },
    /// The connection is attached; the device is online.
    Attached {
        /// The device's id.
        device_id: DeviceId,
        /// Name of the device's organisation.
        organisation: String,
        /// Relay's clock, milliseconds since the Unix epoch.
        relay_time_ms: i64,
    },
    /// The request was refused; the relay closes the connection after this.
    Refused(Nested<Refusal>),
    /// Liveness and round-trip probe; answer with `Pong`.
    Ping {
        /// Echoed back in the pong.
        nonce: u64,
    },
    /// The measurement connection is ready.
    MeasureReady {
        /// Relay's clock, milliseconds since the Unix epoch.
        relay_time_ms: i64,
    },
    /// A technician asks for a fresh diagnostic snapshot; answer with
    /// [`AgentToRelay::Diagnostics`].
    CollectDiagnostics {
        /// Echoed in the answer.
        request_id: u64,
        /// Whether to run the throughput test (moves data for ~3 s).
        throughput: bool,
    },
    /// The organisation's diagnostics policy (JSON in the `deskside-diag`
    /// policy format), sent after `Attached`.
    Policy {
        /// The policy.
        json: Vec<u8>,
    },
    /// A technician asks for a remote session. The agent runs the end-to-end
    /// connection (pinning `technician_key`), asks the employee, and answers
    /// [`AgentToRelay::SessionConsent`].
    SessionRequest(SessionRequest),
    /// The consent for this session is committed to the audit log.
    ConsentRecorded {
        /// The session.
        session_id: SessionId,
    },
    /// The organisation's policy changed while the agent is connected
    /// (same JSON as [`RelayToAgent::Policy`]); answer
    /// [`AgentToRelay::PolicyApplied`] once it governs collection.
    PolicyUpdate {
        /// Echoed in the answer.
        revision: u64,
        /// The policy.
        json: Vec<u8>,
    },
    /// The relay ended this session request or session: the technician
    /// withdrew the request before the employee answered (cancelled,
    /// crashed or lost the connection), or an administrator ended it, or
    /// the technician's access was revoked or expired. Close the consent
    /// dialog (an answer sent now is not recorded as consent), or end the
    /// running session at once: the relay forwards nothing more for it.
    SessionWithdrawn {
        /// The session.
        session_id: SessionId,
    },
    /// Like [`RelayToAgent::CollectDiagnostics`], naming the technician
    /// who asked (kept in the device's local history).
    CollectDiagnosticsFor {
        /// Echoed in the answer.
        request_id: u64,
        /// Whether to run the throughput test (moves data for ~3 s).
        throughput: bool,
        /// The technician's display name.
        technician: String,
    },
    /// Like [`RelayToAgent::SessionRequest`], with the organisation's
    /// certificate of the technician's session key (an encoded
    /// `certificate::SessionKeyCertificate`). An agent enrolled with an
    /// organisation key refuses a session whose key it does not certify.
    CertifiedSessionRequest {
        /// The request.
        request: SessionRequest,
        /// The certificate the technician's console presented.
        certificate: Vec<u8>,
    },
    /// The timeline samples up to and including `through_seq` are stored;
    /// the agent need not send them again.
    TimelineStored {
        /// The last stored sample's sequence number.
        through_seq: u64,
    },
    /// The help request is stored (also when it had been stored before);
    /// the agent may forget its copy.
    HelpRequestStored {
        /// The agent's id for it.
        client_id: String,
        /// The relay's number for it.
        number: u64,
    },
    /// The device's help requests and the replies meant for the employee:
    /// sent after `Attached` and whenever a technician acts on one.
    HelpRequests(Vec<crate::request::EmployeeRequest>),
    /// How to come back after losing this relay (sent after `Attached`):
    /// the first reconnection waits a random delay within `spread_ms`, so
    /// a restarted relay sees its fleet return spread over the window
    /// instead of all at once (see [`crate::reconnect`]).
    ReconnectAdvice {
        /// Width of the window reconnections are spread over, ms.
        spread_ms: u32,
    },
    /// The relays sharing this relay's directory that are up now (this one
    /// first), each with its certificate fingerprint: the agent keeps the
    /// list and fails over to one of them when its relay dies. Sent after
    /// [`RelayToAgent::Attached`] by relays with a shared store.
    RelayList {
        /// The relays, this one first.
        relays: Vec<crate::token::RelayEndpoint>,
    },
    /// The agent is parked (see [`crate::park`]): it closes this
    /// connection and sends heartbeats with `ticket`, authenticated with
    /// `key`, until the relay wakes it.
    Parked {
        /// The ticket its heartbeats carry.
        ticket: [u8; crate::park::TICKET_LEN],
        /// The key of both directions' MACs.
        key: [u8; 32],
        /// The relay's idle timeout, ms: a parked device whose heartbeats
        /// stop for this long is offline, so the agent sends them at least
        /// three times in it, and takes the relay for lost after it.
        idle_ms: u32,
    },
    /// A message from a newer relay; never sent.
    #[serde(skip)]
    Unknown {
        /// Its variant index.
        tag: u32,
    },
}
crate::impl_message!(RelayToAgent, known = 19);

/// A session request as the agent receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRequest {
    /// Tags the session's packets through the relay.
    pub session_id: SessionId,
    /// Technician's display name.
    pub technician: String,
    /// Organisation name.
    pub organisation: String,
    /// What is asked for.
    pub capabilities: Capabilities,
    /// Why.
    pub reason: String,
    /// SHA-256 of the technician's registered session key.
    pub technician_key: Fingerprint,
    /// How long a grant lasts, in seconds.
    pub grant_secs: u64,
}
