//! Messages between the console and the relay.
//!
//! After the hello exchange the console sends `Authenticate` with its
//! technician token; only after `Authenticated` may it send requests. Each
//! request carries an id echoed in its response, so later versions can
//! pipeline requests on one stream.

use serde::{Deserialize, Serialize};

use crate::session::Capabilities;

use crate::ids::{DeviceId, Fingerprint, Role, SessionId, TechnicianId};
use crate::message::Nested;
use crate::refusal::Refusal;

/// QUIC close code of a console connection whose technician token was
/// revoked or expired; the close reason says which and what to do.
pub const CLOSE_ACCESS_ENDED: u32 = 6;

/// Console → relay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsoleToRelay {
    /// Proves who the technician is. Must be the first message.
    Authenticate {
        /// The technician token as issued by `deskside tokens create`.
        token: String,
    },
    /// One request; answered by one [`RelayToConsole::Response`].
    Request {
        /// Echoed in the response.
        id: u64,
        /// What is asked. Nested so that a request this relay does not know
        /// decodes as `ConsoleRequest::Unknown` instead of failing the frame.
        request: Nested<ConsoleRequest>,
    },
    /// A message from a newer console; never sent.
    #[serde(skip)]
    Unknown {
        /// Its variant index.
        tag: u32,
    },
}
crate::impl_message!(ConsoleToRelay, known = 2);

/// Relay → console.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayToConsole {
    /// The token was accepted.
    Authenticated {
        /// The technician's name.
        technician: String,
        /// The token's role.
        role: Role,
        /// The organisation's name.
        organisation: String,
    },
    /// Answer to the request with the same id.
    Response {
        /// The request's id.
        id: u64,
        /// The outcome.
        result: Result<Nested<ConsoleResponse>, Nested<Refusal>>,
    },
    /// The connection is refused; the relay closes it after this.
    Refused(Nested<Refusal>),
    /// A message from a newer relay; never sent.
    #[serde(skip)]
    Unknown {
        /// Its variant index.
        tag: u32,
    },
}
crate::impl_message!(RelayToConsole, known = 3);

/// What a console can ask of the relay. Append-only, like every message enum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsoleRequest {
    /// Every device of the organisation.
    ListDevices,
    /// One device, by full id, unique id prefix or unique hostname.
    ShowDevice {
        /// Id, id prefix or hostname.
        device: String,
    },
    /// Revokes a device: its key is refused from now on.
    RevokeDevice {
        /// Id, id prefix or hostname.
        device: String,
    },
    /// Issues an enrollment token.
    CreateEnrollToken {
        /// How many devices may enroll with it (at least 1).
        uses: u32,
        /// Lifetime in seconds.
        expires_in_secs: u64,
        /// Device group the enrolled devices join (for `diag --group`).
        group: Option<String>,
    },
    /// Issues a technician token.
    CreateTechnicianToken {
        /// Technician's display name.
        name: String,
        /// Role granted.
        role: Role,
        /// Lifetime in seconds; `None` for no expiry.
        expires_in_secs: Option<u64>,
    },
    /// Every technician token of the organisation (never the secrets).
    ListTechnicianTokens,
    /// Revokes a technician token.
    RevokeTechnicianToken {
        /// The token's id.
        id: TechnicianId,
    },
    /// Asks the online agent for a fresh diagnostic snapshot; the relay
    /// stores it and returns it.
    Diagnose {
        /// Id, id prefix or hostname.
        device: String,
        /// Whether to include the throughput test (~3 s of traffic).
        throughput: bool,
    },
    /// Stored snapshots of a device, newest first.
    DiagnosticsHistory {
        /// Id, id prefix or hostname.
        device: String,
        /// At most this many.
        limit: u32,
    },
    /// The organisation's diagnostics policy.
    ShowPolicy,
    /// Changes one key of the policy.
    SetPolicy {
        /// The key, e.g. `diagnostics_consent` or `thresholds.NAME`.
        key: String,
        /// Its new value, as text.
        value: String,
    },
    /// Registers the key this console will use in remote sessions (the
    /// SHA-256 of its SubjectPublicKeyInfo) for the caller's token. Agents
    /// pin it in the end-to-end handshake.
    RegisterSessionKey {
        /// The key's fingerprint.
        key: Fingerprint,
    },
    /// Asks an online device for a remote session. The relay audits the
    /// request and forwards it; the employee decides on their screen.
    OpenSession {
        /// Id, id prefix or hostname.
        device: String,
        /// What is asked for.
        capabilities: Capabilities,
        /// Why, shown to the employee.
        reason: String,
    },
    /// Rows of the audit log, newest first.
    AuditList {
        /// Only rows about this device (id, id prefix or hostname).
        device: Option<String>,
        /// At most this many.
        limit: u32,
    },
    /// Tells the relay the technician ended a session (audit).
    EndSession {
        /// The session.
        session_id: SessionId,
    },
    /// Carries one of this technician's open sessions on this connection
    /// from now on: sent after the console lost its relay connection (a
    /// network hiccup, a relay restart) and connected again. The
    /// end-to-end connection inside resumes by itself.
    ResumeSession {
        /// The session.
        session_id: SessionId,
    },
    /// Every enrollment token of the organisation (never the secrets).
    ListEnrollTokens,
    /// Revokes an enrollment token: no device can enroll with it any more.
    RevokeEnrollToken {
        /// The token's id, as listed.
        id: u64,
    },
    /// The organisation's open sessions (waiting for consent or running).
    ListSessions,
    /// Ends any open session of the organisation (an administrator's
    /// decision, audited with who ended it).
    EndAnySession {
        /// The session.
        session_id: SessionId,
    },
    /// Presents the organisation's certificate of the session key this
    /// console registered (`RegisterSessionKey`). The relay keeps it for
    /// this connection and forwards it with the session requests it opens,
    /// so agents that know the organisation key can check it; the relay
    /// cannot make one.
    PresentSessionCertificate {
        /// An encoded `certificate::SessionKeyCertificate`.
        certificate: Vec<u8>,
    },
    /// Checks the audit chain and signs its head (`deskside audit verify`).
    VerifyAudit {
        /// The id of the last signed head this console kept: the relay
        /// answers with the hash now stored there.
        anchor_id: Option<i64>,
    },
    /// Like `OpenSession`, for one monitor of the device: the relay refuses
    /// a monitor the device does not have before anyone is asked.
    OpenSessionOnMonitor {
        /// Id, id prefix or hostname.
        device: String,
        /// What is asked for.
        capabilities: Capabilities,
        /// Why, shown to the employee.
        reason: String,
        /// The monitor's index (0 is the first).
        monitor: u8,
    },
    /// The timeline samples of one device between two times (Unix
    /// milliseconds), for `deskside timeline DEVICE`.
    Timeline {
        /// Id, id prefix or hostname.
        device: String,
        /// Start of the window.
        since_ms: i64,
        /// End of the window.
        until_ms: i64,
    },
    /// Every device with timeline episodes between two times, judged by
    /// the relay (`deskside timeline --all`).
    TimelineFleet {
        /// Only devices of this group.
        group: Option<String>,
        /// Start of the window.
        since_ms: i64,
        /// End of the window.
        until_ms: i64,
    },
    /// Help requests of the organisation, by priority then age.
    ListRequests {
        /// Only this status.
        status: Option<String>,
        /// Only those assigned to the caller.
        mine: bool,
        /// Only devices of this group.
        group: Option<String>,
    },
    /// One help request with its answers, snapshot, verdict and events.
    ShowRequest {
        /// The request's number.
        number: u64,
    },
    /// Claims, answers, resolves or reopens a help request, or links a
    /// session to it.
    ActOnRequest {
        /// The request's number.
        number: u64,
        /// What to do.
        action: crate::request::RequestAction,
    },
    /// Statistics of the help requests created since a time
    /// (`deskside stats`).
    RequestStats {
        /// Start of the window, Unix seconds.
        since: i64,
        /// Only devices of this group.
        group: Option<String>,
    },
    /// Like `OpenSession` (or `OpenSessionOnMonitor` with `monitor`), for
    /// a session meant for help request `request`: when the device is
    /// offline, so no session exists to link, the relay records a
    /// `session_not_held` event on that request. The console still links
    /// an opened session with `ActOnRequest`.
    OpenLinkedSession {
        /// Id, id prefix or hostname.
        device: String,
        /// What is asked for.
        capabilities: Capabilities,
        /// Why, shown to the employee.
        reason: String,
        /// The monitor's index (0 is the first), if one is asked for.
        monitor: Option<u8>,
        /// The help request's number.
        request: u64,
    },
    /// A request from a newer console; never sent.
    #[serde(skip)]
    Unknown {
        /// Its variant index.
        tag: u32,
    },
}

crate::impl_message!(ConsoleRequest, known = 30);

impl ConsoleRequest {
    /// The least role allowed to make this request.
    ///
    /// This is the single table of permissions; the relay checks every
    /// request against it before doing anything.
    pub fn required_role(&self) -> Role {
        match self {
            ConsoleRequest::ListDevices
            | ConsoleRequest::ShowDevice { .. }
            | ConsoleRequest::DiagnosticsHistory { .. }
            | ConsoleRequest::Timeline { .. }
            | ConsoleRequest::TimelineFleet { .. }
            | ConsoleRequest::ListRequests { .. }
            | ConsoleRequest::ShowRequest { .. }
            | ConsoleRequest::RequestStats { .. } => Role::Viewer,
            ConsoleRequest::ActOnRequest { .. } => Role::Technician,
            // A fresh snapshot makes the device work and move data.
            ConsoleRequest::CreateEnrollToken { .. }
            | ConsoleRequest::Diagnose { .. }
            | ConsoleRequest::ShowPolicy
            | ConsoleRequest::RegisterSessionKey { .. }
            | ConsoleRequest::PresentSessionCertificate { .. }
            | ConsoleRequest::OpenSession { .. }
            | ConsoleRequest::OpenSessionOnMonitor { .. }
            | ConsoleRequest::OpenLinkedSession { .. }
            | ConsoleRequest::EndSession { .. }
            | ConsoleRequest::ResumeSession { .. } => Role::Technician,
            ConsoleRequest::AuditList { .. } | ConsoleRequest::VerifyAudit { .. } => Role::Admin,
            ConsoleRequest::ListEnrollTokens => Role::Technician,
            ConsoleRequest::RevokeEnrollToken { .. }
            | ConsoleRequest::ListSessions
            | ConsoleRequest::EndAnySession { .. } => Role::Admin,
            ConsoleRequest::SetPolicy { .. } => Role::Admin,
            ConsoleRequest::RevokeDevice { .. }
            | ConsoleRequest::CreateTechnicianToken { .. }
            | ConsoleRequest::ListTechnicianTokens
            | ConsoleRequest::RevokeTechnicianToken { .. } => Role::Admin,
            // Unknown requests are refused anyway; demand the most.
            ConsoleRequest::Unknown { .. } => Role::Admin,
        }
    }
}

/// The relay's successful answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsoleResponse {
    /// Answer to `ListDevices`.
    Devices(Vec<DeviceSummary>),
    /// Answer to `ShowDevice`.
    Device(DeviceSummary),
    /// Answer to `RevokeDevice`.
    DeviceRevoked(DeviceSummary),
    /// Answer to `CreateEnrollToken`.
    EnrollToken(IssuedEnrollToken),
    /// Answer to `CreateTechnicianToken`.
    TechnicianToken(IssuedTechnicianToken),
    /// Answer to `ListTechnicianTokens`.
    TechnicianTokens(Vec<TechnicianTokenInfo>),
    /// Answer to `RevokeTechnicianToken`.
    TechnicianTokenRevoked(TechnicianTokenInfo),
    /// Answer to `Diagnose`.
    Diagnostics(StoredDiagnostics),
    /// Answer to `DiagnosticsHistory`.
    DiagnosticsHistory(Vec<StoredDiagnostics>),
    /// Answer to `ShowPolicy` and `SetPolicy`: the policy as JSON (the
    /// `deskside-diag` policy format, salt left out).
    Policy(Vec<u8>),
    /// Answer to `RegisterSessionKey`, `EndSession` and `ResumeSession`.
    Done,
    /// Answer to `OpenSession`: the request reached the device. The console
    /// now runs the end-to-end connection through the relay, pinning
    /// `device_key`.
    SessionOpened(SessionOpened),
    /// Answer to `AuditList`.
    Audit(Vec<AuditEntry>),
    /// Answer to `SetPolicy` (relays that push policies to connected
    /// agents): the policy and how many connected agents applied it.
    PolicySet(PolicySetOutcome),
    /// Answer to `ListEnrollTokens`.
    EnrollTokens(Vec<EnrollTokenInfo>),
    /// Answer to `RevokeEnrollToken`.
    EnrollTokenRevoked(EnrollTokenInfo),
    /// Answer to `ListSessions`.
    Sessions(Vec<SessionInfo>),
    /// Answer to `VerifyAudit`.
    AuditVerified(crate::audit::AuditVerification),
    /// Answer to `Timeline`.
    Timeline(crate::timeline::DeviceTimeline),
    /// Answer to `TimelineFleet`: devices with episodes, most first.
    TimelineFleet(Vec<crate::timeline::FleetTimelineEntry>),
    /// Answer to `ListRequests`.
    Requests(Vec<crate::request::RequestSummary>),
    /// Answer to `ShowRequest` and `ActOnRequest`.
    Request(Box<crate::request::RequestDetail>),
    /// Answer to `RequestStats`.
    RequestStats(Box<crate::request_stats::RequestStats>),
    /// A response from a newer relay; never sent.
    #[serde(skip)]
    Unknown {
        /// Its variant index.
        tag: u32,
    },
}

crate::impl_message!(ConsoleResponse, known = 23);

/// An enrollment token as listed, without its secret. Times are Unix
/// seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollTokenInfo {
    /// Row id (for `deskside enroll-token revoke`).
    pub id: u64,
    /// Enrollments it allowed when issued.
    pub uses_total: u32,
    /// Enrollments left.
    pub uses_left: u32,
    /// Issue time.
    pub created_at: i64,
    /// Expiry.
    pub expires_at: i64,
    /// Revocation time, if revoked.
    pub revoked_at: Option<i64>,
    /// The group its devices join.
    pub group: Option<String>,
    /// Name of the technician who issued it, if known.
    pub created_by: Option<String>,
}

/// An open session as listed for administrators. Times are Unix seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The session id.
    pub session_id: SessionId,
    /// The device.
    pub device: DeviceId,
    /// The device's host name.
    pub hostname: String,
    /// The technician token that opened it.
    pub technician: TechnicianId,
    /// The technician's name.
    pub technician_name: String,
    /// What was asked for (`view` or `view+control`).
    pub capabilities: String,
    /// What the employee granted; `None` while waiting for the answer.
    pub granted: Option<String>,
    /// When it was asked for.
    pub requested_at: i64,
    /// When the employee answered.
    pub consent_at: Option<i64>,
}

/// A policy change and its reach.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySetOutcome {
    /// The policy as JSON, as in [`ConsoleResponse::Policy`].
    pub policy_json: Vec<u8>,
    /// Connected agents of the organisation that confirmed they apply it.
    pub applied: u32,
    /// Agents of the organisation connected when it changed.
    pub connected: u32,
}

/// A session request the relay forwarded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionOpened {
    /// Tags the session's packets through the relay.
    pub session_id: SessionId,
    /// The device.
    pub device: DeviceSummary,
    /// SHA-256 of the device's enrolled public key (SubjectPublicKeyInfo).
    pub device_key: Fingerprint,
}

/// One audit row. Times are Unix seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Row number (increasing).
    pub id: i64,
    /// When.
    pub at: i64,
    /// Who (`technician:…`, `device:…`, `system`).
    pub actor: String,
    /// What, e.g. `session.consent`.
    pub action: String,
    /// On what, e.g. `device:dev_…`.
    pub target: String,
    /// Details as JSON text.
    pub detail: String,
}

/// A device as the console shows it. Times are Unix seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSummary {
    /// The device's id.
    pub id: DeviceId,
    /// Host name reported at its last connection.
    pub hostname: String,
    /// OS reported at its last connection.
    pub os: String,
    /// Agent version reported at its last connection.
    pub agent_version: String,
    /// Whether an agent connection is attached right now.
    pub online: bool,
    /// When it enrolled.
    pub first_seen: i64,
    /// When it was last connected (now, if online).
    pub last_seen: i64,
    /// Address of its last connection, as the relay saw it.
    pub last_address: Option<String>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
    /// Device group, from the enrollment token.
    pub group: Option<String>,
}

/// A freshly issued enrollment token; the only time its text is visible.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedEnrollToken {
    /// The whole token (relay address, fingerprint and secret).
    pub token: String,
    /// How many enrollments it allows.
    pub uses: u32,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

/// A freshly issued technician token; the only time its text is visible.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedTechnicianToken {
    /// The token's public description.
    pub info: TechnicianTokenInfo,
    /// The secret token to hand to the technician.
    pub token: String,
    /// The same token combined with the relay address and fingerprint, for
    /// `deskside login LOGIN_STRING`.
    pub login: String,
}

/// A technician token as listed, without its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TechnicianTokenInfo {
    /// Row id.
    pub id: TechnicianId,
    /// Technician's name.
    pub name: String,
    /// Role granted.
    pub role: Role,
    /// Issue time, Unix seconds.
    pub created_at: i64,
    /// Expiry, Unix seconds, if any.
    pub expires_at: Option<i64>,
    /// Revocation time, Unix seconds, if revoked.
    pub revoked_at: Option<i64>,
    /// Last successful authentication, Unix seconds.
    pub last_used_at: Option<i64>,
}

/// A diagnostic snapshot as the relay stored it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDiagnostics {
    /// Row id in the relay's history.
    pub id: u64,
    /// The device.
    pub device: DeviceSummary,
    /// When the relay received it, Unix seconds.
    pub received_at: i64,
    /// The snapshot, JSON in the `deskside-diag` format.
    pub snapshot_json: Vec<u8>,
    /// The relay's verdict, JSON in the `deskside-diag` format (judged with
    /// the organisation's thresholds when it was stored).
    pub verdict_json: Vec<u8>,
}
