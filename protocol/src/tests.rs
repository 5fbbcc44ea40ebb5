//! Properties of the whole wire format: round trips, unknown-variant fallback,
//! framing on hostile byte streams and the text forms of ids and tokens.
//!
//! Unit tests of a single module stay next to it; this module holds what
//! crosses modules (a frame carrying a message carrying a nested message) and
//! the property tests, so that each decoder has a round-trip property and a
//! "never panics on garbage" property, as the style guide asks. The fuzz
//! targets in `protocol/fuzz` explore the same surface further but need a
//! nightly toolchain, so the hostile inputs that matter are replayed here as
//! plain tests that CI runs.
//!
//! Like the crate, these tests do no I/O. One test reads a clock, and only to
//! bound how long decoding hostile input may take.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Serialize};

use crate::agent::{AgentToRelay, DeviceInfo, RelayToAgent, SessionRequest};
use crate::console::{
    AuditEntry, ConsoleRequest, ConsoleResponse, ConsoleToRelay, DeviceSummary, EnrollTokenInfo,
    IssuedEnrollToken, IssuedTechnicianToken, PolicySetOutcome, RelayToConsole, SessionInfo,
    SessionOpened, StoredDiagnostics, TechnicianTokenInfo,
};
use crate::frame::{encode_frame, parse_header, HEADER_LEN};
use crate::helper::{
    ConsentAnswer, ConsentPrompt, FiledOutcome, HelperToService, LocalRequests, RequestUpdate,
    SentHelpRequest, ServiceToHelper,
};
use crate::message::{decode_value, encode_value, Nested};
use crate::session::{
    AgentToConsole, Capabilities, Codec, ConsoleToAgent, Cursor, CursorShape, EndedBy, InputEvent,
    Key, Monitor, MouseButton, PointerImage, PointerImageError, PointerShape, Quality, VideoFrame,
    MAX_POINTER_SIDE, MAX_VIDEO_FRAME_LEN,
};
use crate::token::{EnrollToken, LoginString, TokenError, ENROLL_PREFIX, LOGIN_PREFIX};
use crate::version::{negotiate, ClientHello, MustUpgrade, ServerHello, VersionRange};
use crate::{
    decode_message, encode_message, DeviceId, Fingerprint, FrameDecoder, FrameError, Message,
    MessageError, Refusal, Role, SessionId, TechnicianId, MAX_CLIENT_FRAME_LEN,
    MAX_RELAY_FRAME_LEN,
};

/// Cases per property. Each property runs in a few milliseconds per hundred
/// cases in a debug build, so the whole suite stays well under ten seconds.
const CASES: u32 = 256;

// ---------------------------------------------------------------------------
// Strategies: one per wire type, one arm per variant. `Unknown` variants are
// never sent, so no strategy produces them.
// ---------------------------------------------------------------------------

/// Any text, including control characters, combining marks and astral-plane
/// characters; short, because length does not change how a string encodes.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..12).prop_map(|chars| chars.into_iter().collect())
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Viewer),
        Just(Role::Technician),
        Just(Role::Admin)
    ]
}

fn device_id() -> impl Strategy<Value = DeviceId> {
    any::<u64>().prop_map(DeviceId)
}

fn technician_id() -> impl Strategy<Value = TechnicianId> {
    any::<u64>().prop_map(TechnicianId)
}

fn fingerprint() -> impl Strategy<Value = Fingerprint> {
    any::<[u8; 32]>().prop_map(Fingerprint)
}

fn refusal() -> impl Strategy<Value = Refusal> {
    prop_oneof![
        Just(Refusal::EnrollTokenInvalid),
        Just(Refusal::EnrollTokenUsedUp),
        Just(Refusal::EnrollTokenExpired),
        Just(Refusal::AlreadyEnrolled),
        Just(Refusal::DeviceUnknown),
        Just(Refusal::DeviceRevoked),
        Just(Refusal::BadTechnicianToken),
        (role(), role()).prop_map(|(needed, have)| Refusal::Forbidden { needed, have }),
        text().prop_map(Refusal::NotFound),
        text().prop_map(Refusal::Invalid),
        text().prop_map(Refusal::ProtocolViolation),
        text().prop_map(Refusal::Internal),
        any::<u64>().prop_map(|retry_after_s| Refusal::MeasurementBusy { retry_after_s }),
        any::<u64>().prop_map(|retry_after_s| Refusal::MeasurementBudgetSpent { retry_after_s }),
        (text(), text(), fingerprint()).prop_map(|(device, relay_addr, fingerprint)| {
            Refusal::HeldElsewhere {
                device,
                relay_addr,
                fingerprint,
            }
        }),
    ]
}

fn device_info() -> impl Strategy<Value = DeviceInfo> {
    (text(), text(), text()).prop_map(|(hostname, os, agent_version)| DeviceInfo {
        hostname,
        os,
        agent_version,
    })
}

fn agent_to_relay() -> impl Strategy<Value = AgentToRelay> {
    prop_oneof![
        (text(), device_info()).prop_map(|(secret, info)| AgentToRelay::Enroll { secret, info }),
        device_info().prop_map(|info| AgentToRelay::Attach { info }),
        any::<u64>().prop_map(|nonce| AgentToRelay::Pong { nonce }),
        Just(AgentToRelay::Measure),
        (
            any::<u64>(),
            prop_oneof![bytes(64).prop_map(Ok), text().prop_map(Err)]
        )
            .prop_map(|(request_id, result)| AgentToRelay::Diagnostics { request_id, result }),
        (any::<u64>(), prop::option::of(capabilities()), text()).prop_map(
            |(session_id, granted, outcome)| AgentToRelay::SessionConsent {
                session_id: SessionId(session_id),
                granted,
                outcome,
            }
        ),
        (any::<u64>(), ended_by()).prop_map(|(session_id, by)| AgentToRelay::SessionEnded {
            session_id: SessionId(session_id),
            by
        }),
        any::<u64>().prop_map(|revision| AgentToRelay::PolicyApplied { revision }),
        prop::collection::vec(monitor(), 0..3)
            .prop_map(|monitors| AgentToRelay::Monitors { monitors }),
        (any::<u64>(), bytes(64))
            .prop_map(|(first_seq, batch)| AgentToRelay::TimelineSamples { first_seq, batch }),
        help_request().prop_map(AgentToRelay::HelpRequest),
        Just(AgentToRelay::Park),
    ]
}

fn answers() -> impl Strategy<Value = crate::request::Answers> {
    (
        (text(), text(), text()),
        prop::collection::vec(text(), 0..3),
        (text(), text(), text(), text()),
    )
        .prop_map(
            |((summary, since, pattern), apps, (urgency, impact, contact, lang))| {
                crate::request::Answers {
                    summary,
                    since,
                    pattern,
                    apps,
                    urgency,
                    impact,
                    contact,
                    lang,
                }
            },
        )
}

fn help_request() -> impl Strategy<Value = crate::request::HelpRequest> {
    (
        text(),
        any::<i64>(),
        answers(),
        prop::option::of(bytes(64)),
        prop::collection::vec((any::<i64>(), text()), 0..3),
    )
        .prop_map(
            |(client_id, created_ms, answers, snapshot_json, failures)| {
                crate::request::HelpRequest {
                    client_id,
                    created_ms,
                    answers,
                    snapshot_json,
                    failures: failures
                        .into_iter()
                        .map(|(at_ms, error)| crate::request::DeliveryFailure { at_ms, error })
                        .collect(),
                }
            },
        )
}

fn request_event() -> impl Strategy<Value = crate::request::RequestEvent> {
    (any::<i64>(), text(), text(), text()).prop_map(|(at, author, kind, text)| {
        crate::request::RequestEvent {
            at,
            author,
            kind,
            text,
        }
    })
}

fn request_summary() -> impl Strategy<Value = crate::request::RequestSummary> {
    (
        any::<u64>(),
        device_summary(),
        (text(), any::<u8>(), text(), prop::option::of(text())),
        prop::option::of(text()),
        (
            any::<i64>(),
            prop::option::of(any::<i64>()),
            prop::option::of(any::<i64>()),
        ),
    )
        .prop_map(
            |(
                number,
                device,
                (status, priority, summary, verdict_line),
                assignee,
                (created_at, first_response_at, resolved_at),
            )| crate::request::RequestSummary {
                number,
                device,
                status,
                priority,
                summary,
                verdict_line,
                assignee,
                created_at,
                first_response_at,
                resolved_at,
            },
        )
}

fn request_action() -> impl Strategy<Value = crate::request::RequestAction> {
    use crate::request::RequestAction;
    prop_oneof![
        Just(RequestAction::Claim),
        text().prop_map(|text| RequestAction::Reply { text }),
        text().prop_map(|note| RequestAction::Resolve { note }),
        Just(RequestAction::Reopen),
        any::<u64>().prop_map(|session_id| RequestAction::LinkSession {
            session_id: SessionId(session_id)
        }),
    ]
}

fn relay_to_agent() -> impl Strategy<Value = RelayToAgent> {
    prop_oneof![
        (device_id(), text()).prop_map(|(device_id, organisation)| RelayToAgent::Enrolled {
            device_id,
            organisation
        }),
        (device_id(), text(), any::<i64>()).prop_map(|(device_id, organisation, relay_time_ms)| {
            RelayToAgent::Attached {
                device_id,
                organisation,
                relay_time_ms,
            }
        }),
        refusal().prop_map(|r| RelayToAgent::Refused(Nested(r))),
        any::<u64>().prop_map(|nonce| RelayToAgent::Ping { nonce }),
        any::<i64>().prop_map(|relay_time_ms| RelayToAgent::MeasureReady { relay_time_ms }),
        (any::<u64>(), any::<bool>()).prop_map(|(request_id, throughput)| {
            RelayToAgent::CollectDiagnostics {
                request_id,
                throughput,
            }
        }),
        bytes(64).prop_map(|json| RelayToAgent::Policy { json }),
        session_request().prop_map(RelayToAgent::SessionRequest),
        any::<u64>().prop_map(|session_id| RelayToAgent::ConsentRecorded {
            session_id: SessionId(session_id)
        }),
        (any::<u64>(), bytes(64))
            .prop_map(|(revision, json)| RelayToAgent::PolicyUpdate { revision, json }),
        any::<u64>().prop_map(|session_id| RelayToAgent::SessionWithdrawn {
            session_id: SessionId(session_id)
        }),
        (any::<u64>(), any::<bool>(), text()).prop_map(|(request_id, throughput, technician)| {
            RelayToAgent::CollectDiagnosticsFor {
                request_id,
                throughput,
                technician,
            }
        }),
        (session_request(), bytes(64)).prop_map(|(request, certificate)| {
            RelayToAgent::CertifiedSessionRequest {
                request,
                certificate,
            }
        }),
        any::<u64>().prop_map(|through_seq| RelayToAgent::TimelineStored { through_seq }),
        (text(), any::<u64>())
            .prop_map(|(client_id, number)| RelayToAgent::HelpRequestStored { client_id, number }),
        prop::collection::vec(
            (
                text(),
                any::<u64>(),
                text(),
                prop::option::of(text()),
                prop::collection::vec(request_event(), 0..3)
            ),
            0..3
        )
        .prop_map(|list| RelayToAgent::HelpRequests(
            list.into_iter()
                .map(|(client_id, number, status, assignee, events)| {
                    crate::request::EmployeeRequest {
                        client_id,
                        number,
                        status,
                        assignee,
                        events,
                    }
                })
                .collect()
        )),
        any::<u32>().prop_map(|spread_ms| RelayToAgent::ReconnectAdvice { spread_ms }),
        prop::collection::vec((text(), fingerprint()), 0..4).prop_map(|relays| {
            RelayToAgent::RelayList {
                relays: relays
                    .into_iter()
                    .map(|(addr, fingerprint)| crate::token::RelayEndpoint { addr, fingerprint })
                    .collect(),
            }
        }),
        (
            any::<[u8; crate::park::TICKET_LEN]>(),
            any::<[u8; 32]>(),
            any::<u32>()
        )
            .prop_map(|(ticket, key, idle_ms)| RelayToAgent::Parked {
                ticket,
                key,
                idle_ms
            }),
    ]
}

fn session_request() -> impl Strategy<Value = SessionRequest> {
    (
        any::<u64>(),
        (text(), text()),
        capabilities(),
        text(),
        fingerprint(),
        any::<u64>(),
    )
        .prop_map(
            |(
                session_id,
                (technician, organisation),
                capabilities,
                reason,
                technician_key,
                grant_secs,
            )| {
                SessionRequest {
                    session_id: SessionId(session_id),
                    technician,
                    organisation,
                    capabilities,
                    reason,
                    technician_key,
                    grant_secs,
                }
            },
        )
}

fn console_request() -> impl Strategy<Value = ConsoleRequest> {
    prop_oneof![
        Just(ConsoleRequest::ListDevices),
        text().prop_map(|device| ConsoleRequest::ShowDevice { device }),
        text().prop_map(|device| ConsoleRequest::RevokeDevice { device }),
        (any::<u32>(), any::<u64>(), prop::option::of(text())).prop_map(
            |(uses, expires_in_secs, group)| ConsoleRequest::CreateEnrollToken {
                uses,
                expires_in_secs,
                group,
            }
        ),
        (text(), role(), any::<Option<u64>>()).prop_map(|(name, role, expires_in_secs)| {
            ConsoleRequest::CreateTechnicianToken {
                name,
                role,
                expires_in_secs,
            }
        }),
        Just(ConsoleRequest::ListTechnicianTokens),
        technician_id().prop_map(|id| ConsoleRequest::RevokeTechnicianToken { id }),
        (text(), any::<bool>())
            .prop_map(|(device, throughput)| ConsoleRequest::Diagnose { device, throughput }),
        (text(), any::<u32>())
            .prop_map(|(device, limit)| ConsoleRequest::DiagnosticsHistory { device, limit }),
        Just(ConsoleRequest::ShowPolicy),
        (text(), text()).prop_map(|(key, value)| ConsoleRequest::SetPolicy { key, value }),
        fingerprint().prop_map(|key| ConsoleRequest::RegisterSessionKey { key }),
        (text(), capabilities(), text()).prop_map(|(device, capabilities, reason)| {
            ConsoleRequest::OpenSession {
                device,
                capabilities,
                reason,
            }
        }),
        (prop::option::of(text()), any::<u32>())
            .prop_map(|(device, limit)| ConsoleRequest::AuditList { device, limit }),
        any::<u64>().prop_map(|session_id| ConsoleRequest::EndSession {
            session_id: SessionId(session_id)
        }),
        any::<u64>().prop_map(|session_id| ConsoleRequest::ResumeSession {
            session_id: SessionId(session_id)
        }),
        Just(ConsoleRequest::ListEnrollTokens),
        any::<u64>().prop_map(|id| ConsoleRequest::RevokeEnrollToken { id }),
        Just(ConsoleRequest::ListSessions),
        any::<u64>().prop_map(|session_id| ConsoleRequest::EndAnySession {
            session_id: SessionId(session_id)
        }),
        bytes(64).prop_map(|certificate| ConsoleRequest::PresentSessionCertificate { certificate }),
        prop::option::of(any::<i64>())
            .prop_map(|anchor_id| ConsoleRequest::VerifyAudit { anchor_id }),
        (text(), capabilities(), text(), any::<u8>()).prop_map(
            |(device, capabilities, reason, monitor)| ConsoleRequest::OpenSessionOnMonitor {
                device,
                capabilities,
                reason,
                monitor,
            }
        ),
        (text(), any::<i64>(), any::<i64>()).prop_map(|(device, since_ms, until_ms)| {
            ConsoleRequest::Timeline {
                device,
                since_ms,
                until_ms,
            }
        }),
        (prop::option::of(text()), any::<i64>(), any::<i64>()).prop_map(
            |(group, since_ms, until_ms)| ConsoleRequest::TimelineFleet {
                group,
                since_ms,
                until_ms,
            }
        ),
        (
            prop::option::of(text()),
            any::<bool>(),
            prop::option::of(text())
        )
            .prop_map(|(status, mine, group)| ConsoleRequest::ListRequests {
                status,
                mine,
                group
            }),
        any::<u64>().prop_map(|number| ConsoleRequest::ShowRequest { number }),
        (any::<u64>(), request_action())
            .prop_map(|(number, action)| ConsoleRequest::ActOnRequest { number, action }),
        (any::<i64>(), prop::option::of(text()))
            .prop_map(|(since, group)| ConsoleRequest::RequestStats { since, group }),
        (
            text(),
            capabilities(),
            text(),
            prop::option::of(any::<u8>()),
            any::<u64>()
        )
            .prop_map(|(device, capabilities, reason, monitor, request)| {
                ConsoleRequest::OpenLinkedSession {
                    device,
                    capabilities,
                    reason,
                    monitor,
                    request,
                }
            }),
    ]
}

fn deskside_protocol_audit_verification() -> crate::audit::AuditVerification {
    crate::audit::AuditVerification {
        rows: 3,
        broken: Some(crate::audit::AuditBreak {
            id: 2,
            problem: "changed".to_owned(),
        }),
        head: Some(crate::audit::SignedAuditHead {
            id: 1,
            hash: vec![7; 32],
            signed_at: 9,
            public_key: vec![1; 32],
            signature: vec![2; 64],
        }),
        anchor_hash: None,
    }
}

fn device_summary() -> impl Strategy<Value = DeviceSummary> {
    (
        device_id(),
        (text(), text(), text()),
        any::<bool>(),
        any::<i64>(),
        any::<i64>(),
        prop::option::of(text()),
        any::<Option<i64>>(),
        prop::option::of(text()),
    )
        .prop_map(
            |(
                id,
                (hostname, os, agent_version),
                online,
                first_seen,
                last_seen,
                addr,
                revoked,
                group,
            )| {
                DeviceSummary {
                    id,
                    hostname,
                    os,
                    agent_version,
                    online,
                    first_seen,
                    last_seen,
                    last_address: addr,
                    revoked_at: revoked,
                    group,
                }
            },
        )
}

fn stored_diagnostics() -> impl Strategy<Value = StoredDiagnostics> {
    (
        any::<u64>(),
        device_summary(),
        any::<i64>(),
        bytes(64),
        bytes(64),
    )
        .prop_map(
            |(id, device, received_at, snapshot_json, verdict_json)| StoredDiagnostics {
                id,
                device,
                received_at,
                snapshot_json,
                verdict_json,
            },
        )
}

fn technician_token_info() -> impl Strategy<Value = TechnicianTokenInfo> {
    (
        technician_id(),
        text(),
        role(),
        any::<i64>(),
        any::<Option<i64>>(),
        any::<Option<i64>>(),
        any::<Option<i64>>(),
    )
        .prop_map(
            |(id, name, role, created_at, expires_at, revoked_at, last_used_at)| {
                TechnicianTokenInfo {
                    id,
                    name,
                    role,
                    created_at,
                    expires_at,
                    revoked_at,
                    last_used_at,
                }
            },
        )
}

fn console_response() -> impl Strategy<Value = ConsoleResponse> {
    prop_oneof![
        prop::collection::vec(device_summary(), 0..4).prop_map(ConsoleResponse::Devices),
        device_summary().prop_map(ConsoleResponse::Device),
        device_summary().prop_map(ConsoleResponse::DeviceRevoked),
        (text(), any::<u32>(), any::<i64>()).prop_map(|(token, uses, expires_at)| {
            ConsoleResponse::EnrollToken(IssuedEnrollToken {
                token,
                uses,
                expires_at,
            })
        }),
        (technician_token_info(), text(), text()).prop_map(|(info, token, login)| {
            ConsoleResponse::TechnicianToken(IssuedTechnicianToken { info, token, login })
        }),
        prop::collection::vec(technician_token_info(), 0..4)
            .prop_map(ConsoleResponse::TechnicianTokens),
        technician_token_info().prop_map(ConsoleResponse::TechnicianTokenRevoked),
        stored_diagnostics().prop_map(ConsoleResponse::Diagnostics),
        proptest::collection::vec(stored_diagnostics(), 0..3)
            .prop_map(ConsoleResponse::DiagnosticsHistory),
        bytes(64).prop_map(ConsoleResponse::Policy),
        Just(ConsoleResponse::Done),
        (any::<u64>(), device_summary(), fingerprint()).prop_map(
            |(session_id, device, device_key)| {
                ConsoleResponse::SessionOpened(SessionOpened {
                    session_id: SessionId(session_id),
                    device,
                    device_key,
                })
            }
        ),
        prop::collection::vec(audit_entry(), 0..4).prop_map(ConsoleResponse::Audit),
        (bytes(64), any::<u32>(), any::<u32>()).prop_map(|(policy_json, applied, connected)| {
            ConsoleResponse::PolicySet(PolicySetOutcome {
                policy_json,
                applied,
                connected,
            })
        }),
        prop::collection::vec(enroll_token_info(), 0..4).prop_map(ConsoleResponse::EnrollTokens),
        enroll_token_info().prop_map(ConsoleResponse::EnrollTokenRevoked),
        prop::collection::vec(session_info(), 0..4).prop_map(ConsoleResponse::Sessions),
        (
            any::<u64>(),
            prop::option::of((any::<i64>(), text())),
            bytes(40)
        )
            .prop_map(|(rows, broken, hash)| {
                let mut verification = deskside_protocol_audit_verification();
                verification.rows = rows;
                verification.broken =
                    broken.map(|(id, problem)| crate::audit::AuditBreak { id, problem });
                verification.anchor_hash = Some(hash);
                ConsoleResponse::AuditVerified(verification)
            }),
        (
            device_summary(),
            bytes(64),
            any::<bool>(),
            bytes(16),
            any::<bool>()
        )
            .prop_map(|(device, batch, truncated, thresholds, monitoring)| {
                ConsoleResponse::Timeline(crate::timeline::DeviceTimeline {
                    device,
                    batch,
                    truncated,
                    thresholds,
                    monitoring,
                })
            }),
        prop::collection::vec((device_summary(), any::<u32>(), bytes(32)), 0..3).prop_map(
            |entries| {
                ConsoleResponse::TimelineFleet(
                    entries
                        .into_iter()
                        .map(
                            |(device, samples, episodes)| crate::timeline::FleetTimelineEntry {
                                device,
                                samples,
                                episodes,
                            },
                        )
                        .collect(),
                )
            }
        ),
        prop::collection::vec(request_summary(), 0..3).prop_map(ConsoleResponse::Requests),
        (
            request_summary(),
            answers(),
            (prop::option::of(bytes(32)), prop::option::of(bytes(32))),
            prop::collection::vec(request_event(), 0..3),
        )
            .prop_map(
                |(summary, answers, (snapshot_json, verdict_json), events)| {
                    ConsoleResponse::Request(Box::new(crate::request::RequestDetail {
                        summary,
                        answers,
                        snapshot_json,
                        verdict_json,
                        failures: Vec::new(),
                        events,
                    }))
                }
            ),
        (
            any::<i64>(),
            any::<u64>(),
            (text(), any::<u64>(), any::<u64>()),
            (text(), text(), any::<u64>()),
            (any::<u64>(), text(), any::<u64>()),
            (any::<u64>(), prop::option::of(any::<u64>())),
        )
            .prop_map(
                |(since, total, category, finding, repeat, (count, median_secs))| {
                    use crate::request_stats::*;
                    ConsoleResponse::RequestStats(Box::new(RequestStats {
                        since,
                        total,
                        categories: vec![CategoryCount {
                            category: category.0,
                            requests: category.1,
                            resolved: category.2,
                        }],
                        findings: vec![FindingCount {
                            id: finding.0,
                            segment: finding.1,
                            requests: finding.2,
                        }],
                        repeat_devices: vec![RepeatDevice {
                            device: DeviceId(repeat.0),
                            hostname: repeat.1,
                            requests: repeat.2,
                        }],
                        first_response: Latency { count, median_secs },
                        resolution: Latency::default(),
                    }))
                }
            ),
    ]
}

fn enroll_token_info() -> impl Strategy<Value = EnrollTokenInfo> {
    (
        any::<u64>(),
        (any::<u32>(), any::<u32>()),
        (any::<i64>(), any::<i64>(), prop::option::of(any::<i64>())),
        (prop::option::of(text()), prop::option::of(text())),
    )
        .prop_map(
            |(
                id,
                (uses_total, uses_left),
                (created_at, expires_at, revoked_at),
                (group, created_by),
            )| {
                EnrollTokenInfo {
                    id,
                    uses_total,
                    uses_left,
                    created_at,
                    expires_at,
                    revoked_at,
                    group,
                    created_by,
                }
            },
        )
}

fn session_info() -> impl Strategy<Value = SessionInfo> {
    (
        (any::<u64>(), device_id(), text()),
        (any::<u64>(), text()),
        (text(), prop::option::of(text())),
        (any::<i64>(), prop::option::of(any::<i64>())),
    )
        .prop_map(
            |(
                (session_id, device, hostname),
                (technician, technician_name),
                (capabilities, granted),
                (requested_at, consent_at),
            )| SessionInfo {
                session_id: SessionId(session_id),
                device,
                hostname,
                technician: TechnicianId(technician),
                technician_name,
                capabilities,
                granted,
                requested_at,
                consent_at,
            },
        )
}

fn audit_entry() -> impl Strategy<Value = AuditEntry> {
    (any::<i64>(), any::<i64>(), text(), text(), text(), text()).prop_map(
        |(id, at, actor, action, target, detail)| AuditEntry {
            id,
            at,
            actor,
            action,
            target,
            detail,
        },
    )
}

fn console_to_relay() -> impl Strategy<Value = ConsoleToRelay> {
    prop_oneof![
        text().prop_map(|token| ConsoleToRelay::Authenticate { token }),
        (any::<u64>(), console_request()).prop_map(|(id, request)| ConsoleToRelay::Request {
            id,
            request: Nested(request),
        }),
    ]
}

fn relay_to_console() -> impl Strategy<Value = RelayToConsole> {
    let result = prop_oneof![
        console_response().prop_map(|response| Ok(Nested(response))),
        refusal().prop_map(|r| Err(Nested(r))),
    ];
    prop_oneof![
        (text(), role(), text()).prop_map(|(technician, role, organisation)| {
            RelayToConsole::Authenticated {
                technician,
                role,
                organisation,
            }
        }),
        (any::<u64>(), result).prop_map(|(id, result)| RelayToConsole::Response { id, result }),
        refusal().prop_map(|r| RelayToConsole::Refused(Nested(r))),
    ]
}

fn capabilities() -> impl Strategy<Value = Capabilities> {
    (any::<bool>(), any::<bool>()).prop_map(|(view, control)| Capabilities { view, control })
}

fn ended_by() -> impl Strategy<Value = EndedBy> {
    prop_oneof![
        Just(EndedBy::Technician),
        Just(EndedBy::Employee),
        Just(EndedBy::Expired),
        Just(EndedBy::ConnectionLost),
        Just(EndedBy::HelperGone),
    ]
}

fn quality() -> impl Strategy<Value = Quality> {
    prop_oneof![
        Just(Quality::Auto),
        Just(Quality::Lossless),
        Just(Quality::LowBandwidth),
    ]
}

fn monitor() -> impl Strategy<Value = Monitor> {
    (
        any::<u8>(),
        text(),
        any::<i32>(),
        any::<i32>(),
        any::<u32>(),
        any::<u32>(),
        any::<bool>(),
    )
        .prop_map(|(index, name, x, y, width, height, primary)| Monitor {
            index,
            name,
            x,
            y,
            width,
            height,
            primary,
        })
}

fn console_to_agent() -> impl Strategy<Value = ConsoleToAgent> {
    prop_oneof![
        any::<u8>().prop_map(|index| ConsoleToAgent::SelectMonitor { index }),
        quality().prop_map(ConsoleToAgent::SetQuality),
        Just(ConsoleToAgent::RequestKeyframe),
        text().prop_map(|text| ConsoleToAgent::Chat { text }),
        Just(ConsoleToAgent::DropControl),
        Just(ConsoleToAgent::End),
        Just(ConsoleToAgent::AcknowledgesFrames),
        any::<u64>().prop_map(|seq| ConsoleToAgent::FrameReceived { seq }),
        Just(ConsoleToAgent::DecodesTileCopies),
    ]
}

fn agent_to_console() -> impl Strategy<Value = AgentToConsole> {
    prop_oneof![
        (
            capabilities(),
            prop::collection::vec(monitor(), 0..4),
            any::<u8>(),
            any::<u64>(),
        )
            .prop_map(|(granted, monitors, selected, expires_in_secs)| {
                AgentToConsole::Welcome {
                    granted,
                    monitors,
                    selected,
                    expires_in_secs,
                }
            }),
        capabilities().prop_map(AgentToConsole::Granted),
        text().prop_map(|text| AgentToConsole::Chat { text }),
        text().prop_map(|reason| AgentToConsole::CaptureUnavailable { reason }),
        ended_by().prop_map(|by| AgentToConsole::Ended { by }),
        cursor().prop_map(AgentToConsole::Pointer),
        pointer_shape().prop_map(AgentToConsole::PointerShape),
    ]
}

fn pointer_shape() -> impl Strategy<Value = PointerShape> {
    let image = (
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        bytes(64),
    )
        .prop_map(|(width, height, hot_x, hot_y, rgba_zstd)| PointerImage {
            width,
            height,
            hot_x,
            hot_y,
            rgba_zstd,
        });
    (any::<u32>(), prop::option::of(image)).prop_map(|(id, image)| PointerShape { id, image })
}

fn codec() -> impl Strategy<Value = Codec> {
    prop_oneof![Just(Codec::ZstdTiles), Just(Codec::H264)]
}

fn cursor() -> impl Strategy<Value = Cursor> {
    let shape = (
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        bytes(64),
    )
        .prop_map(|(width, height, hot_x, hot_y, rgba)| CursorShape {
            width,
            height,
            hot_x,
            hot_y,
            rgba,
        });
    (any::<i32>(), any::<i32>(), prop::option::of(shape)).prop_map(|(x, y, shape)| Cursor {
        x,
        y,
        shape,
    })
}

fn video_frame() -> impl Strategy<Value = VideoFrame> {
    (
        any::<u64>(),
        any::<u8>(),
        any::<u32>(),
        any::<u32>(),
        codec(),
        any::<bool>(),
        bytes(256),
        prop::option::of(cursor()),
        any::<u64>(),
    )
        .prop_map(
            |(seq, monitor, width, height, codec, keyframe, payload, cursor, captured_us)| {
                VideoFrame {
                    seq,
                    monitor,
                    width,
                    height,
                    codec,
                    keyframe,
                    payload,
                    cursor,
                    captured_us,
                }
            },
        )
}

fn mouse_button() -> impl Strategy<Value = MouseButton> {
    prop_oneof![
        Just(MouseButton::Left),
        Just(MouseButton::Middle),
        Just(MouseButton::Right),
    ]
}

fn key() -> impl Strategy<Value = Key> {
    prop_oneof![
        Just(Key::Return),
        Just(Key::Tab),
        Just(Key::Backspace),
        Just(Key::Escape),
        Just(Key::Delete),
        Just(Key::Insert),
        Just(Key::Home),
        Just(Key::End),
        Just(Key::PageUp),
        Just(Key::PageDown),
        Just(Key::Left),
        Just(Key::Right),
        Just(Key::Up),
        Just(Key::Down),
        Just(Key::Space),
        Just(Key::Shift),
        Just(Key::Control),
        Just(Key::Alt),
        Just(Key::Meta),
        // Any number: the wire does not stop at F12, the agent must.
        any::<u8>().prop_map(Key::F),
        any::<char>().prop_map(Key::Char),
    ]
}

fn input_event() -> impl Strategy<Value = InputEvent> {
    prop_oneof![
        (any::<u32>(), any::<u32>()).prop_map(|(x, y)| InputEvent::PointerMove { x, y }),
        (mouse_button(), any::<bool>())
            .prop_map(|(button, pressed)| InputEvent::Button { button, pressed }),
        (any::<i32>(), any::<i32>()).prop_map(|(dx, dy)| InputEvent::Scroll { dx, dy }),
        (key(), any::<bool>()).prop_map(|(key, pressed)| InputEvent::Key { key, pressed }),
        text().prop_map(|text| InputEvent::Text { text }),
    ]
}

fn consent_prompt() -> impl Strategy<Value = ConsentPrompt> {
    (
        any::<u64>(),
        (text(), text()),
        capabilities(),
        text(),
        text(),
        any::<u64>(),
    )
        .prop_map(
            |(
                session_id,
                (technician, organisation),
                capabilities,
                reason,
                verification_code,
                timeout_secs,
            )| {
                ConsentPrompt {
                    session_id: SessionId(session_id),
                    technician,
                    organisation,
                    capabilities,
                    reason,
                    verification_code,
                    timeout_secs,
                }
            },
        )
}

fn consent_answer() -> impl Strategy<Value = ConsentAnswer> {
    prop_oneof![
        Just(ConsentAnswer::Accepted),
        Just(ConsentAnswer::Refused),
        Just(ConsentAnswer::TimedOut),
        Just(ConsentAnswer::Failed),
    ]
}

fn service_to_helper() -> impl Strategy<Value = ServiceToHelper> {
    prop_oneof![
        Just(ServiceToHelper::Welcome),
        consent_prompt().prop_map(ServiceToHelper::Consent),
        (any::<u64>(), capabilities(), any::<u64>()).prop_map(
            |(session_id, granted, expires_in_secs)| ServiceToHelper::Start {
                session_id: SessionId(session_id),
                granted,
                expires_in_secs,
            }
        ),
        (any::<u64>(), console_to_agent()).prop_map(|(session_id, message)| {
            ServiceToHelper::FromConsole {
                session_id: SessionId(session_id),
                message: Nested(message),
            }
        }),
        (any::<u64>(), input_event()).prop_map(|(session_id, event)| ServiceToHelper::Input {
            session_id: SessionId(session_id),
            event: Nested(event),
        }),
        (any::<u64>(), any::<u32>()).prop_map(|(session_id, rtt_ms)| {
            ServiceToHelper::FrameCredit {
                session_id: SessionId(session_id),
                rtt_ms,
            }
        }),
        (any::<u64>(), ended_by()).prop_map(|(session_id, by)| ServiceToHelper::End {
            session_id: SessionId(session_id),
            by
        }),
        any::<u64>().prop_map(|session_id| ServiceToHelper::Withdrawn {
            session_id: SessionId(session_id)
        }),
        (
            text(),
            prop_oneof![
                any::<u64>().prop_map(|number| FiledOutcome::Sent { number }),
                text().prop_map(|error| FiledOutcome::Queued { error }),
                text().prop_map(|reason| FiledOutcome::Refused { reason }),
            ]
        )
            .prop_map(|(client_id, outcome)| ServiceToHelper::HelpRequestFiled {
                client_id,
                outcome
            }),
        (
            prop::collection::vec(help_request(), 0..2),
            prop::collection::vec((text(), any::<u64>(), text(), any::<i64>()), 0..2),
            prop::collection::vec(
                (
                    text(),
                    any::<u64>(),
                    text(),
                    prop::option::of(text()),
                    prop::collection::vec(request_event(), 0..2)
                ),
                0..2
            ),
        )
            .prop_map(|(queued, sent, relay)| ServiceToHelper::HelpRequestList(
                LocalRequests {
                    queued,
                    sent: sent
                        .into_iter()
                        .map(|(client_id, number, summary, created_ms)| SentHelpRequest {
                            client_id,
                            number,
                            summary,
                            created_ms,
                        })
                        .collect(),
                    relay: relay
                        .into_iter()
                        .map(|(client_id, number, status, assignee, events)| {
                            crate::request::EmployeeRequest {
                                client_id,
                                number,
                                status,
                                assignee,
                                events,
                            }
                        })
                        .collect(),
                }
            )),
        (any::<u64>(), text(), prop::option::of(request_event())).prop_map(
            |(number, status, event)| ServiceToHelper::HelpRequestUpdate(RequestUpdate {
                number,
                status,
                event
            })
        ),
    ]
}

fn helper_to_service() -> impl Strategy<Value = HelperToService> {
    prop_oneof![
        (
            text(),
            prop_oneof![text().prop_map(Ok), text().prop_map(Err)]
        )
            .prop_map(|(version, display)| HelperToService::Hello { version, display }),
        (any::<u64>(), consent_answer()).prop_map(|(session_id, answer)| {
            HelperToService::Consent {
                session_id: SessionId(session_id),
                answer,
            }
        }),
        (any::<u64>(), agent_to_console()).prop_map(|(session_id, message)| {
            HelperToService::ToConsole {
                session_id: SessionId(session_id),
                message: Nested(message),
            }
        }),
        (any::<u64>(), video_frame()).prop_map(|(session_id, frame)| HelperToService::Video {
            session_id: SessionId(session_id),
            frame
        }),
        prop::collection::vec(monitor(), 0..3)
            .prop_map(|monitors| HelperToService::Monitors { monitors }),
        help_request().prop_map(HelperToService::FileHelpRequest),
        Just(HelperToService::ListHelpRequests),
    ]
}

fn version_range() -> impl Strategy<Value = VersionRange> {
    (any::<u16>(), any::<u16>()).prop_map(|(min, max)| VersionRange { min, max })
}

fn client_hello() -> impl Strategy<Value = ClientHello> {
    // Any magic: the hello must carry whatever a peer sent so the relay can
    // tell garbage from a deskside client.
    (any::<[u8; 4]>(), version_range(), text()).prop_map(|(magic, versions, software)| {
        ClientHello {
            magic,
            versions,
            software,
        }
    })
}

fn server_hello() -> impl Strategy<Value = ServerHello> {
    prop_oneof![
        (any::<u16>(), text())
            .prop_map(|(version, software)| ServerHello::Accepted { version, software }),
        (version_range(), text())
            .prop_map(|(relay, software)| ServerHello::VersionMismatch { relay, software }),
    ]
}

/// Token fields short enough that the token text stays under the decoder's
/// 2048-character limit: 100 characters of up to 4 bytes each, twice, plus
/// the fingerprint, is at most 850 bytes, about 1140 base64 characters.
fn token_text() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..100).prop_map(|chars| chars.into_iter().collect())
}

fn enroll_token() -> impl Strategy<Value = EnrollToken> {
    (token_text(), fingerprint(), token_text()).prop_map(|(relay, fingerprint, secret)| {
        EnrollToken {
            relay,
            fingerprint,
            secret,
            other_relays: Vec::new(),
        }
    })
}

fn login_string() -> impl Strategy<Value = LoginString> {
    (token_text(), fingerprint(), token_text()).prop_map(|(relay, fingerprint, token)| {
        LoginString {
            relay,
            fingerprint,
            token,
            other_relays: Vec::new(),
        }
    })
}

fn bytes(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max_len)
}

// ---------------------------------------------------------------------------
// Helpers shared by the properties.
// ---------------------------------------------------------------------------

/// Postcard's varint encoding of `value`, as it precedes enum fields and
/// sequence contents.
fn varint(value: u64) -> Vec<u8> {
    encode_value(&value).expect("a u64 always encodes")
}

/// The variant index at the start of an encoded enum.
fn tag_of(body: &[u8]) -> u32 {
    postcard::take_from_bytes::<u32>(body)
        .expect("an encoded enum starts with its variant index")
        .0
}

/// Encodes, checks the tag is a known one, decodes, and checks trailing bytes
/// after a valid message are rejected with their exact count.
fn check_message_round_trip<M>(message: &M, trailing: &[u8]) -> Result<(), TestCaseError>
where
    M: Message + Clone + PartialEq + Debug,
{
    let body = encode_message(message).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(tag_of(&body) < M::KNOWN_VARIANTS);
    prop_assert_eq!(decode_message::<M>(&body), Ok(message.clone()));

    // Through a frame, as it travels.
    let mut wire = Vec::new();
    encode_frame(&body, MAX_RELAY_FRAME_LEN, &mut wire)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut decoder = FrameDecoder::new(MAX_RELAY_FRAME_LEN);
    decoder.extend(&wire);
    prop_assert_eq!(decoder.next_frame(), Ok(Some(body.clone())));
    prop_assert_eq!(decoder.buffered(), 0);

    if !trailing.is_empty() {
        let mut long = body;
        long.extend_from_slice(trailing);
        prop_assert_eq!(
            decode_message::<M>(&long),
            Err(MessageError::TrailingBytes(trailing.len()))
        );
    }
    Ok(())
}

/// [`check_message_round_trip`] for plain values (the hellos).
fn check_value_round_trip<T>(value: &T, trailing: &[u8]) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let body = encode_value(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let decoded = decode_value::<T>(&body);
    prop_assert_eq!(decoded.as_ref(), Ok(value));
    if !trailing.is_empty() {
        let mut long = body;
        long.extend_from_slice(trailing);
        prop_assert_eq!(
            decode_value::<T>(&long).err(),
            Some(MessageError::TrailingBytes(trailing.len()))
        );
    }
    Ok(())
}

/// A body whose variant index is `tag` and whose fields are `fields`.
fn body_with_tag(tag: u32, fields: &[u8]) -> Vec<u8> {
    let mut body = varint(u64::from(tag));
    body.extend_from_slice(fields);
    body
}

/// A tag this build does not know for `M`, from any `raw` value: small raw
/// values give tags right at the boundary, large ones give far-future tags.
fn newer_tag<M: Message>(raw: u32) -> u32 {
    raw.max(M::KNOWN_VARIANTS)
}

/// A newer peer's frame decodes as `Unknown { tag }`, whatever follows.
fn check_newer_tag<M>(raw: u32, fields: &[u8]) -> Result<(), TestCaseError>
where
    M: Message + PartialEq + Debug,
{
    let tag = newer_tag::<M>(raw);
    prop_assert_eq!(
        decode_message::<M>(&body_with_tag(tag, fields)),
        Ok(M::unknown(tag))
    );
    Ok(())
}

/// Decoding arbitrary bytes returns rather than panics; when it returns a
/// known message, that message round-trips (the bytes may differ: postcard
/// accepts over-long varints).
fn check_decode_is_total<M>(body: &[u8]) -> Result<(), TestCaseError>
where
    M: Message + Clone + PartialEq + Debug,
{
    let Ok(message) = decode_message::<M>(body) else {
        return Ok(());
    };
    if tag_of(body) >= M::KNOWN_VARIANTS {
        prop_assert_eq!(message, M::unknown(tag_of(body)));
    } else if encode_message(&message).is_ok() {
        check_message_round_trip(&message, &[])?;
    } else {
        // A known envelope around a newer nested message decodes (so the
        // relay can answer "not supported") but cannot be sent back.
        let debug = format!("{message:?}");
        prop_assert!(debug.contains("Unknown {"), "unencodable: {}", debug);
    }
    Ok(())
}

/// Runs `body` through every decoder of the crate; none may panic.
fn decode_as_everything(body: &[u8]) -> Result<(), TestCaseError> {
    check_decode_is_total::<AgentToRelay>(body)?;
    check_decode_is_total::<RelayToAgent>(body)?;
    check_decode_is_total::<ConsoleToRelay>(body)?;
    check_decode_is_total::<RelayToConsole>(body)?;
    check_decode_is_total::<ConsoleRequest>(body)?;
    check_decode_is_total::<ConsoleResponse>(body)?;
    check_decode_is_total::<ConsoleToAgent>(body)?;
    check_decode_is_total::<AgentToConsole>(body)?;
    check_decode_is_total::<InputEvent>(body)?;
    check_decode_is_total::<ServiceToHelper>(body)?;
    check_decode_is_total::<HelperToService>(body)?;
    if let Ok(frame) = decode_value::<VideoFrame>(body) {
        check_value_round_trip(&frame, &[])?;
    }
    if let Ok(hello) = decode_value::<ClientHello>(body) {
        check_value_round_trip(&hello, &[])?;
    }
    if let Ok(hello) = decode_value::<ServerHello>(body) {
        check_value_round_trip(&hello, &[])?;
    }
    Ok(())
}

/// Splits `wire` into consecutive chunks whose sizes cycle through `sizes`.
fn chunks<'a>(wire: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = wire;
    let mut size = sizes.iter().copied().cycle();
    while !rest.is_empty() {
        let take = size.next().unwrap_or(1).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(take);
        out.push(chunk);
        rest = tail;
    }
    out
}

// ---------------------------------------------------------------------------
// Round trips.
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn agent_to_relay_round_trips(message in agent_to_relay(), trailing in bytes(8)) {
        check_message_round_trip(&message, &trailing)?;
    }

    #[test]
    fn relay_to_agent_round_trips(message in relay_to_agent(), trailing in bytes(8)) {
        check_message_round_trip(&message, &trailing)?;
    }

    #[test]
    fn console_to_relay_round_trips(message in console_to_relay(), trailing in bytes(8)) {
        check_message_round_trip(&message, &trailing)?;
    }

    #[test]
    fn relay_to_console_round_trips(message in relay_to_console(), trailing in bytes(8)) {
        check_message_round_trip(&message, &trailing)?;
    }

    #[test]
    fn console_request_round_trips(message in console_request(), trailing in bytes(8)) {
        check_message_round_trip(&message, &trailing)?;
    }

    #[test]
    fn console_response_round_trips(message in console_response(), trailing in bytes(8)) {
        check_message_round_trip(&message, &trailing)?;
    }

    #[test]
    fn console_to_agent_round_trips(message in console_to_agent(), trailing in bytes(8)) {
        check_message_round_trip(&message, &trailing)?;
    }

    #[test]
    fn agent_to_console_round_trips(message in agent_to_console(), trailing in bytes(8)) {
        check_message_round_trip(&message, &trailing)?;
    }

    #[test]
    fn input_event_round_trips(message in input_event(), trailing in bytes(8)) {
        check_message_round_trip(&message, &trailing)?;
    }

    #[test]
    fn service_to_helper_round_trips(message in service_to_helper(), trailing in bytes(8)) {
        check_message_round_trip(&message, &trailing)?;
    }

    #[test]
    fn helper_to_service_round_trips(message in helper_to_service(), trailing in bytes(8)) {
        check_message_round_trip(&message, &trailing)?;
    }

    #[test]
    fn video_frame_round_trips(frame in video_frame(), trailing in bytes(8)) {
        check_value_round_trip(&frame, &trailing)?;
    }

    #[test]
    fn refusal_round_trips_alone_and_inside_both_directions(
        refusal in refusal(),
        id in any::<u64>(),
        trailing in bytes(8),
    ) {
        check_value_round_trip(&refusal, &trailing)?;
        check_message_round_trip(&refusal, &trailing)?;
        check_message_round_trip(&RelayToAgent::Refused(Nested(refusal.clone())), &trailing)?;
        check_message_round_trip(&RelayToConsole::Refused(Nested(refusal.clone())), &trailing)?;
        check_message_round_trip(&RelayToConsole::Response { id, result: Err(Nested(refusal)) }, &trailing)?;
    }

    #[test]
    fn client_hello_round_trips(hello in client_hello(), trailing in bytes(8)) {
        check_value_round_trip(&hello, &trailing)?;
    }

    #[test]
    fn server_hello_round_trips(hello in server_hello(), trailing in bytes(8)) {
        check_value_round_trip(&hello, &trailing)?;
    }

    #[test]
    fn nested_messages_with_trailing_bytes_are_malformed(
        id in any::<u64>(),
        request in console_request(),
        response in console_response(),
        trailing in prop::collection::vec(any::<u8>(), 1..8),
    ) {
        // The inner bytes carry a known message followed by garbage: the
        // envelope is fine, the nested message is not.
        let mut inner = encode_message(&request).map_err(|e| TestCaseError::fail(e.to_string()))?;
        inner.extend_from_slice(&trailing);
        let body = encode_value(&(1u32, id, inner)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(matches!(decode_message::<ConsoleToRelay>(&body), Err(MessageError::Malformed(_))));

        let mut inner = encode_message(&response).map_err(|e| TestCaseError::fail(e.to_string()))?;
        inner.extend_from_slice(&trailing);
        let body = encode_value(&(1u32, id, 0u32, inner)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(matches!(decode_message::<RelayToConsole>(&body), Err(MessageError::Malformed(_))));
    }

    #[test]
    fn enroll_token_round_trips_through_text(token in enroll_token(), pad in "[ \t\r\n]{0,3}") {
        let text = token.encode();
        prop_assert!(text.starts_with(ENROLL_PREFIX));
        prop_assert_eq!(EnrollToken::decode(&text), Ok(token.clone()));
        prop_assert_eq!(EnrollToken::decode(&format!("{pad}{text}{pad}")), Ok(token));
        prop_assert_eq!(
            LoginString::decode(&text),
            Err(TokenError::WrongPrefix { kind: "login string", prefix: LOGIN_PREFIX })
        );
    }

    #[test]
    fn login_string_round_trips_through_text(login in login_string(), pad in "[ \t\r\n]{0,3}") {
        let text = login.encode();
        prop_assert!(text.starts_with(LOGIN_PREFIX));
        prop_assert_eq!(LoginString::decode(&text), Ok(login.clone()));
        prop_assert_eq!(LoginString::decode(&format!("{pad}{text}{pad}")), Ok(login));
        prop_assert_eq!(
            EnrollToken::decode(&text),
            Err(TokenError::WrongPrefix { kind: "enrollment token", prefix: ENROLL_PREFIX })
        );
    }

    #[test]
    fn token_decoding_never_panics(text in any::<String>(), payload in "[A-Za-z0-9_-]{0,80}") {
        let _ = EnrollToken::decode(&text);
        let _ = LoginString::decode(&text);
        // With the right prefix, the base64 and postcard layers are reached.
        let enroll = format!("{ENROLL_PREFIX}{payload}");
        if let Ok(token) = EnrollToken::decode(&enroll) {
            prop_assert_eq!(EnrollToken::decode(&token.encode()), Ok(token));
        }
        let login = format!("{LOGIN_PREFIX}{payload}");
        if let Ok(login) = LoginString::decode(&login) {
            prop_assert_eq!(LoginString::decode(&login.encode()), Ok(login));
        }
    }

    #[test]
    fn device_id_round_trips_through_text(id in device_id()) {
        let text = id.to_string();
        prop_assert_eq!(text.len(), "dev_".len() + 16);
        prop_assert_eq!(text.parse::<DeviceId>(), Ok(id));
        prop_assert_eq!(text.to_uppercase().replace("DEV_", "dev_").parse::<DeviceId>(), Ok(id));
    }

    #[test]
    fn device_id_parsing_accepts_only_the_printed_form(
        digits in "[0-9a-fA-F+ -]{16}|[+-][0-9a-f]{15}|[0-9a-f]{0,18}|\\PC{0,16}",
    ) {
        // One device must have one name: whatever parses prints back as the
        // same text, up to the case of the hex digits.
        let text = format!("dev_{digits}");
        if let Ok(id) = text.parse::<DeviceId>() {
            prop_assert_eq!(id.to_string(), text.to_ascii_lowercase());
        }
    }

    #[test]
    fn technician_id_round_trips_through_text(id in technician_id()) {
        prop_assert_eq!(id.to_string().parse::<TechnicianId>(), Ok(id));
    }

    #[test]
    fn fingerprint_round_trips_through_every_accepted_form(fingerprint in fingerprint()) {
        let text = fingerprint.to_string();
        prop_assert_eq!(text.len(), "sha256:".len() + 64);
        prop_assert_eq!(text.parse::<Fingerprint>(), Ok(fingerprint));
        let bare = hex::encode(fingerprint.0);
        prop_assert_eq!(bare.parse::<Fingerprint>(), Ok(fingerprint));
        // As browsers and openssl print it: upper case, colon-separated.
        let colons = fingerprint.0.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
        prop_assert_eq!(colons.parse::<Fingerprint>(), Ok(fingerprint));
    }

    #[test]
    fn fingerprint_parsing_never_panics(text in "\\PC{0,80}|(sha256:)?[0-9a-fA-F:]{0,70}") {
        if let Ok(fingerprint) = text.parse::<Fingerprint>() {
            prop_assert_eq!(fingerprint.to_string().parse::<Fingerprint>(), Ok(fingerprint));
        }
    }
}

#[test]
fn device_ids_have_one_spelling() {
    // `u64::from_str_radix` alone would accept a leading `+`, giving one
    // device two names.
    assert!("dev_+00000000000000f".parse::<DeviceId>().is_err());
    assert!("dev_-00000000000000f".parse::<DeviceId>().is_err());
    assert!("dev_ 00000000000000f".parse::<DeviceId>().is_err());
    assert_eq!(
        "dev_000000000000000F".parse::<DeviceId>(),
        Ok(DeviceId(15)),
        "upper-case hex is the same id"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn negotiation_picks_the_newest_version_both_speak_or_says_who_upgrades(
        (a, b) in (any::<u16>(), any::<u16>()),
        peer in version_range(),
    ) {
        // Only well-formed local ranges: ours is a constant. The peer's comes
        // off the wire and may be anything, even upside down.
        let local = VersionRange { min: a.min(b), max: a.max(b) };
        let speaks = |range: VersionRange, v: u16| range.min <= v && v <= range.max;
        match negotiate(local, peer) {
            Ok(version) => {
                prop_assert!(speaks(local, version) && speaks(peer, version));
                prop_assert!((version..=local.max).skip(1).all(|v| !speaks(peer, v)));
            }
            Err(MustUpgrade::Local) => prop_assert!(local.max < peer.min),
            Err(MustUpgrade::Peer) => {
                prop_assert!((local.min..=local.max).all(|v| !speaks(peer, v)));
                prop_assert!(local.max >= peer.min);
            }
        }
    }
}

#[test]
fn ended_by_round_trips_through_text() {
    // Audit rows store these names; every variant needs its own.
    let all = [
        EndedBy::Technician,
        EndedBy::Employee,
        EndedBy::Expired,
        EndedBy::ConnectionLost,
        EndedBy::HelperGone,
    ];
    assert_eq!(all.len(), decodable_variants::<EndedBy>().len());
    for by in all {
        assert_eq!(EndedBy::parse(by.as_str()), Some(by));
    }
    assert_eq!(EndedBy::parse("Technician"), None);
    assert_eq!(EndedBy::parse(""), None);
}

#[test]
fn roles_round_trip_through_text() {
    for role in [Role::Viewer, Role::Technician, Role::Admin] {
        assert_eq!(role.to_string().parse::<Role>(), Ok(role));
    }
    assert!("Admin".parse::<Role>().is_err());
    assert!("".parse::<Role>().is_err());
}

#[test]
fn encoding_an_unknown_placeholder_fails_at_every_level() {
    // `Unknown` only ever comes from decoding; sending one is a bug the
    // encoder must report rather than put garbage on the wire.
    assert!(encode_message(&AgentToRelay::Unknown { tag: 9 }).is_err());
    assert!(encode_message(&RelayToAgent::Unknown { tag: 9 }).is_err());
    assert!(encode_message(&ConsoleToRelay::Unknown { tag: 9 }).is_err());
    assert!(encode_message(&RelayToConsole::Unknown { tag: 9 }).is_err());
    assert!(encode_message(&ConsoleRequest::Unknown { tag: 9 }).is_err());
    assert!(encode_message(&ConsoleResponse::Unknown { tag: 9 }).is_err());
    assert!(encode_message(&ConsoleToAgent::Unknown { tag: 9 }).is_err());
    assert!(encode_message(&AgentToConsole::Unknown { tag: 9 }).is_err());
    assert!(encode_message(&InputEvent::Unknown { tag: 9 }).is_err());
    assert!(encode_message(&ServiceToHelper::Unknown { tag: 9 }).is_err());
    assert!(encode_message(&HelperToService::Unknown { tag: 9 }).is_err());
    // The helper socket nests session messages, as the relay's envelopes
    // do; a placeholder inside is refused just the same.
    let from_console = ServiceToHelper::FromConsole {
        session_id: SessionId(1),
        message: Nested(ConsoleToAgent::Unknown { tag: 9 }),
    };
    assert!(encode_message(&from_console).is_err());
    let input = ServiceToHelper::Input {
        session_id: SessionId(1),
        event: Nested(InputEvent::Unknown { tag: 9 }),
    };
    assert!(encode_message(&input).is_err());
    let to_console = HelperToService::ToConsole {
        session_id: SessionId(1),
        message: Nested(AgentToConsole::Unknown { tag: 9 }),
    };
    assert!(encode_message(&to_console).is_err());
    let nested_request = ConsoleToRelay::Request {
        id: 1,
        request: Nested(ConsoleRequest::Unknown { tag: 9 }),
    };
    assert!(encode_message(&nested_request).is_err());
    let nested_response = RelayToConsole::Response {
        id: 1,
        result: Ok(Nested(ConsoleResponse::Unknown { tag: 9 })),
    };
    assert!(encode_message(&nested_response).is_err());
}

// ---------------------------------------------------------------------------
// Append-only enums: KNOWN_VARIANTS must follow the declarations.
// ---------------------------------------------------------------------------

/// The variant names serde's derive hands to `deserialize_enum` for `T`:
/// every variant that can be decoded, in wire order. A deserializer that
/// records them and then gives up reads them without any hand-kept list, so
/// adding a variant cannot go unnoticed by these tests.
fn decodable_variants<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Recorder<'a>(&'a mut &'static [&'static str]);

    impl<'de> de::Deserializer<'de> for Recorder<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not an enum"))
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            variants: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = variants;
            Err(de::Error::custom("recorded"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map struct identifier ignored_any
        }
    }

    let mut variants: &'static [&'static str] = &[];
    let _ = T::deserialize(Recorder(&mut variants));
    variants
}

/// The variant index of each sample, as encoded.
fn encoded_tags<T: Serialize>(samples: &[T]) -> Vec<u32> {
    samples
        .iter()
        .map(|sample| tag_of(&encode_value(sample).expect("samples are encodable")))
        .collect()
}

/// The variant indices a strategy produces over many deterministic draws.
fn tags_produced_by<T: Serialize + Debug>(strategy: impl Strategy<Value = T>) -> BTreeSet<u32> {
    let mut runner = TestRunner::deterministic();
    (0..500)
        .map(|_| {
            let value = strategy
                .new_tree(&mut runner)
                .expect("strategies here never reject")
                .current();
            tag_of(&encode_value(&value).expect("strategy values are encodable"))
        })
        .collect()
}

fn check_known_variants<M: Message>(name: &str) {
    let declared = decodable_variants::<M>();
    assert!(
        !declared.is_empty(),
        "{name}: could not read its variants; is it still an enum?"
    );
    assert!(
        !declared.contains(&"Unknown"),
        "{name}: `Unknown` must stay #[serde(skip)]: it is never sent"
    );
    assert_eq!(
        M::KNOWN_VARIANTS as usize,
        declared.len(),
        "{name}: a variant was added or removed without updating KNOWN_VARIANTS \
         in impl_message!; its variants are {declared:?}"
    );
}

#[test]
fn known_variants_counts_every_declared_variant() {
    check_known_variants::<AgentToRelay>("AgentToRelay");
    check_known_variants::<RelayToAgent>("RelayToAgent");
    check_known_variants::<ConsoleToRelay>("ConsoleToRelay");
    check_known_variants::<RelayToConsole>("RelayToConsole");
    check_known_variants::<ConsoleRequest>("ConsoleRequest");
    check_known_variants::<ConsoleResponse>("ConsoleResponse");
    check_known_variants::<ConsoleToAgent>("ConsoleToAgent");
    check_known_variants::<AgentToConsole>("AgentToConsole");
    check_known_variants::<InputEvent>("InputEvent");
    check_known_variants::<ServiceToHelper>("ServiceToHelper");
    check_known_variants::<HelperToService>("HelperToService");
    check_known_variants::<Refusal>("Refusal");
    check_known_variants::<crate::measure::MeasureRequest>("MeasureRequest");
    check_known_variants::<crate::measure::MeasureReply>("MeasureReply");
}

#[test]
fn the_last_known_variant_encodes_as_known_variants_minus_one() {
    // A variant appended without bumping KNOWN_VARIANTS fails
    // `known_variants_counts_every_declared_variant`; one inserted or moved
    // before these fails `message_variants_are_append_only`; this checks the
    // count and the encoder agree on where the known variants end.
    fn tag<M: Message>(message: &M) -> u32 {
        tag_of(&encode_message(message).expect("known variants are encodable"))
    }
    assert_eq!(
        tag(&AgentToRelay::HelpRequest(crate::request::HelpRequest {
            client_id: "a".into(),
            created_ms: 0,
            answers: crate::request::Answers::default(),
            snapshot_json: None,
            failures: Vec::new(),
        })),
        AgentToRelay::KNOWN_VARIANTS - 2
    );
    assert_eq!(tag(&AgentToRelay::Park), AgentToRelay::KNOWN_VARIANTS - 1);
    assert_eq!(
        tag(&RelayToAgent::ReconnectAdvice { spread_ms: 0 }),
        RelayToAgent::KNOWN_VARIANTS - 3
    );
    assert_eq!(
        tag(&RelayToAgent::RelayList { relays: Vec::new() }),
        RelayToAgent::KNOWN_VARIANTS - 2
    );
    assert_eq!(
        tag(&RelayToAgent::Parked {
            ticket: [0; crate::park::TICKET_LEN],
            key: [0; 32],
            idle_ms: 0,
        }),
        RelayToAgent::KNOWN_VARIANTS - 1
    );
    assert_eq!(
        tag(&ConsoleToRelay::Request {
            id: 1,
            request: Nested(ConsoleRequest::ListDevices),
        }),
        ConsoleToRelay::KNOWN_VARIANTS - 1
    );
    assert_eq!(
        tag(&RelayToConsole::Refused(Nested(Refusal::DeviceUnknown))),
        RelayToConsole::KNOWN_VARIANTS - 1
    );
    assert_eq!(
        tag(&ConsoleRequest::OpenLinkedSession {
            device: "laptop".into(),
            capabilities: crate::session::Capabilities::VIEW,
            reason: String::new(),
            monitor: None,
            request: 7,
        }),
        ConsoleRequest::KNOWN_VARIANTS - 1
    );
    assert_eq!(
        tag(&ConsoleResponse::RequestStats(Box::default())),
        ConsoleResponse::KNOWN_VARIANTS - 1
    );
    assert_eq!(
        tag(&ConsoleToAgent::DecodesTileCopies),
        ConsoleToAgent::KNOWN_VARIANTS - 1
    );
    assert_eq!(
        tag(&AgentToConsole::PointerShape(PointerShape {
            id: PointerShape::UNKNOWN,
            image: None,
        })),
        AgentToConsole::KNOWN_VARIANTS - 1
    );
    assert_eq!(
        tag(&InputEvent::Text {
            text: String::new()
        }),
        InputEvent::KNOWN_VARIANTS - 1
    );
    assert_eq!(
        tag(&ServiceToHelper::HelpRequestUpdate(RequestUpdate {
            number: 1,
            status: String::new(),
            event: None,
        })),
        ServiceToHelper::KNOWN_VARIANTS - 1
    );
    assert_eq!(
        tag(&HelperToService::ListHelpRequests),
        HelperToService::KNOWN_VARIANTS - 1
    );
}

/// One value drawn from `strategy`, the same on every run.
fn sample<T>(strategy: impl Strategy<Value = T>) -> T {
    strategy
        .new_tree(&mut TestRunner::deterministic())
        .expect("strategies here never reject")
        .current()
}

/// Checks that `encode(id)` spells the session id exactly as the bare
/// `u64` it replaced: the varint of the number, at one place, every other
/// byte the same whatever the id.
fn assert_session_id_is_a_bare_number(name: &str, encode: impl Fn(SessionId) -> Vec<u8>) {
    let zero = encode(SessionId(0));
    let one = encode(SessionId(1));
    assert_eq!(zero.len(), one.len(), "{name}");
    let at = zero
        .iter()
        .zip(&one)
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| panic!("{name}: the session id is not encoded"));
    assert_eq!(zero.get(at), Some(&0), "{name}");
    for raw in [127, 128, 300, (1 << 53) + 1, u64::MAX] {
        let mut expected = zero[..at].to_vec();
        expected.extend(varint(raw));
        expected.extend(&zero[at + 1..]);
        assert_eq!(
            encode(SessionId(raw)),
            expected,
            "{name} with session {raw}"
        );
    }
}

#[test]
fn every_message_carrying_a_session_id_spells_it_as_the_bare_number() {
    // The fields were `u64` before they were `SessionId`: peers on either
    // side of that change must read each other's messages, so each message
    // that carries one encodes it as the varint of the number, nothing
    // around it moved.
    fn message<M: Message>(message: M) -> Vec<u8> {
        encode_message(&message).expect("encodable")
    }
    let request = sample(session_request());
    let prompt = sample(consent_prompt());
    let frame = sample(video_frame());
    let opened = SessionOpened {
        session_id: SessionId(0),
        device: sample(device_summary()),
        device_key: Fingerprint([7; 32]),
    };
    let by = EndedBy::Employee;
    let granted = Capabilities::VIEW;
    type Encode = Box<dyn Fn(SessionId) -> Vec<u8>>;
    let cases: Vec<(&str, Encode)> = vec![
        (
            "AgentToRelay::SessionConsent",
            Box::new(move |session_id| {
                message(AgentToRelay::SessionConsent {
                    session_id,
                    granted: Some(granted),
                    outcome: "accepted".into(),
                })
            }),
        ),
        (
            "AgentToRelay::SessionEnded",
            Box::new(move |session_id| message(AgentToRelay::SessionEnded { session_id, by })),
        ),
        (
            "RelayToAgent::SessionRequest",
            Box::new({
                let request = request.clone();
                move |session_id| {
                    message(RelayToAgent::SessionRequest(SessionRequest {
                        session_id,
                        ..request.clone()
                    }))
                }
            }),
        ),
        (
            "RelayToAgent::CertifiedSessionRequest",
            Box::new(move |session_id| {
                message(RelayToAgent::CertifiedSessionRequest {
                    request: SessionRequest {
                        session_id,
                        ..request.clone()
                    },
                    certificate: vec![1, 2, 3],
                })
            }),
        ),
        (
            "RelayToAgent::ConsentRecorded",
            Box::new(|session_id| message(RelayToAgent::ConsentRecorded { session_id })),
        ),
        (
            "RelayToAgent::SessionWithdrawn",
            Box::new(|session_id| message(RelayToAgent::SessionWithdrawn { session_id })),
        ),
        (
            "ConsoleRequest::EndSession",
            Box::new(|session_id| message(ConsoleRequest::EndSession { session_id })),
        ),
        (
            "ConsoleRequest::ResumeSession",
            Box::new(|session_id| message(ConsoleRequest::ResumeSession { session_id })),
        ),
        (
            "ConsoleRequest::EndAnySession",
            Box::new(|session_id| message(ConsoleRequest::EndAnySession { session_id })),
        ),
        (
            "ConsoleResponse::SessionOpened",
            Box::new(move |session_id| {
                message(ConsoleResponse::SessionOpened(SessionOpened {
                    session_id,
                    ..opened.clone()
                }))
            }),
        ),
        (
            "ServiceToHelper::Consent",
            Box::new(move |session_id| {
                message(ServiceToHelper::Consent(ConsentPrompt {
                    session_id,
                    ..prompt.clone()
                }))
            }),
        ),
        (
            "ServiceToHelper::Start",
            Box::new(move |session_id| {
                message(ServiceToHelper::Start {
                    session_id,
                    granted,
                    expires_in_secs: 600,
                })
            }),
        ),
        (
            "ServiceToHelper::FromConsole",
            Box::new(|session_id| {
                message(ServiceToHelper::FromConsole {
                    session_id,
                    message: Nested(ConsoleToAgent::RequestKeyframe),
                })
            }),
        ),
        (
            "ServiceToHelper::Input",
            Box::new(|session_id| {
                message(ServiceToHelper::Input {
                    session_id,
                    event: Nested(InputEvent::PointerMove { x: 3, y: 4 }),
                })
            }),
        ),
        (
            "ServiceToHelper::FrameCredit",
            Box::new(|session_id| {
                message(ServiceToHelper::FrameCredit {
                    session_id,
                    rtt_ms: 25,
                })
            }),
        ),
        (
            "ServiceToHelper::End",
            Box::new(move |session_id| message(ServiceToHelper::End { session_id, by })),
        ),
        (
            "ServiceToHelper::Withdrawn",
            Box::new(|session_id| message(ServiceToHelper::Withdrawn { session_id })),
        ),
        (
            "HelperToService::Consent",
            Box::new(|session_id| {
                message(HelperToService::Consent {
                    session_id,
                    answer: ConsentAnswer::Refused,
                })
            }),
        ),
        (
            "HelperToService::ToConsole",
            Box::new(|session_id| {
                message(HelperToService::ToConsole {
                    session_id,
                    message: Nested(AgentToConsole::Chat { text: "hi".into() }),
                })
            }),
        ),
        (
            "HelperToService::Video",
            Box::new(move |session_id| {
                message(HelperToService::Video {
                    session_id,
                    frame: frame.clone(),
                })
            }),
        ),
    ];
    for (name, encode) in &cases {
        assert_session_id_is_a_bare_number(name, encode);
    }
}

#[test]
fn message_variants_are_append_only() {
    // A variant's position is its wire tag, so released variants may never
    // be reordered, renamed away or removed; new ones go at the end (before
    // `Unknown`). Extend these lists when appending; never edit them.
    fn check<M: Message>(name: &str, released: &[&str]) {
        let declared = decodable_variants::<M>();
        assert!(
            declared.starts_with(released),
            "{name}: released variants {released:?} must stay first and in order, found {declared:?}"
        );
    }
    check::<AgentToRelay>("AgentToRelay", &["Enroll", "Attach", "Pong"]);
    check::<RelayToAgent>("RelayToAgent", &["Enrolled", "Attached", "Refused", "Ping"]);
    check::<ConsoleToRelay>("ConsoleToRelay", &["Authenticate", "Request"]);
    check::<RelayToConsole>("RelayToConsole", &["Authenticated", "Response", "Refused"]);
    check::<ConsoleRequest>(
        "ConsoleRequest",
        &[
            "ListDevices",
            "ShowDevice",
            "RevokeDevice",
            "CreateEnrollToken",
            "CreateTechnicianToken",
            "ListTechnicianTokens",
            "RevokeTechnicianToken",
        ],
    );
    check::<ConsoleResponse>(
        "ConsoleResponse",
        &[
            "Devices",
            "Device",
            "DeviceRevoked",
            "EnrollToken",
            "TechnicianToken",
            "TechnicianTokens",
            "TechnicianTokenRevoked",
        ],
    );
}

#[test]
fn strategies_cover_every_variant() {
    // A variant added to an enum but not to its strategy would never be
    // round-trip tested; this ties each strategy to the declarations.
    fn all(n: usize) -> BTreeSet<u32> {
        (0..n as u32).collect()
    }
    let cases: [(&str, BTreeSet<u32>, usize); 20] = [
        (
            "AgentToRelay",
            tags_produced_by(agent_to_relay()),
            decodable_variants::<AgentToRelay>().len(),
        ),
        (
            "RelayToAgent",
            tags_produced_by(relay_to_agent()),
            decodable_variants::<RelayToAgent>().len(),
        ),
        (
            "ConsoleToRelay",
            tags_produced_by(console_to_relay()),
            decodable_variants::<ConsoleToRelay>().len(),
        ),
        (
            "RelayToConsole",
            tags_produced_by(relay_to_console()),
            decodable_variants::<RelayToConsole>().len(),
        ),
        (
            "ConsoleRequest",
            tags_produced_by(console_request()),
            decodable_variants::<ConsoleRequest>().len(),
        ),
        (
            "ConsoleResponse",
            tags_produced_by(console_response()),
            decodable_variants::<ConsoleResponse>().len(),
        ),
        (
            "ConsoleToAgent",
            tags_produced_by(console_to_agent()),
            decodable_variants::<ConsoleToAgent>().len(),
        ),
        (
            "AgentToConsole",
            tags_produced_by(agent_to_console()),
            decodable_variants::<AgentToConsole>().len(),
        ),
        (
            "InputEvent",
            tags_produced_by(input_event()),
            decodable_variants::<InputEvent>().len(),
        ),
        (
            "ServiceToHelper",
            tags_produced_by(service_to_helper()),
            decodable_variants::<ServiceToHelper>().len(),
        ),
        (
            "HelperToService",
            tags_produced_by(helper_to_service()),
            decodable_variants::<HelperToService>().len(),
        ),
        (
            "Refusal",
            tags_produced_by(refusal()),
            decodable_variants::<Refusal>().len(),
        ),
        (
            "ServerHello",
            tags_produced_by(server_hello()),
            decodable_variants::<ServerHello>().len(),
        ),
        (
            "Role",
            tags_produced_by(role()),
            decodable_variants::<Role>().len(),
        ),
        (
            "EndedBy",
            tags_produced_by(ended_by()),
            decodable_variants::<EndedBy>().len(),
        ),
        (
            "Quality",
            tags_produced_by(quality()),
            decodable_variants::<Quality>().len(),
        ),
        (
            "Codec",
            tags_produced_by(codec()),
            decodable_variants::<Codec>().len(),
        ),
        (
            "MouseButton",
            tags_produced_by(mouse_button()),
            decodable_variants::<MouseButton>().len(),
        ),
        (
            "Key",
            tags_produced_by(key()),
            decodable_variants::<Key>().len(),
        ),
        (
            "ConsentAnswer",
            tags_produced_by(consent_answer()),
            decodable_variants::<ConsentAnswer>().len(),
        ),
    ];
    for (name, produced, declared) in cases {
        assert_eq!(
            produced,
            all(declared),
            "the {name} strategy must produce every variant"
        );
    }
}

#[test]
fn frozen_enums_keep_their_variants_in_order() {
    // The hello answer and roles are read by every past and future release;
    // their variant order is their wire encoding.
    assert_eq!(
        decodable_variants::<ServerHello>(),
        ["Accepted", "VersionMismatch"]
    );
    assert_eq!(
        decodable_variants::<Role>(),
        ["Viewer", "Technician", "Admin"]
    );
    assert_eq!(
        encoded_tags(&[Role::Viewer, Role::Technician, Role::Admin]),
        [0, 1, 2]
    );
}

// ---------------------------------------------------------------------------
// Newer peers: tags at or past KNOWN_VARIANTS decode as `Unknown`.
// ---------------------------------------------------------------------------

#[test]
fn hand_built_envelopes_match_the_encoder() {
    // The properties below build envelopes around unknown nested tags by
    // hand; this pins the layout they assume to the real encoder.
    let request = ConsoleRequest::ShowDevice {
        device: "laptop".into(),
    };
    let inner = encode_message(&request).expect("encodable");
    assert_eq!(
        encode_value(&(1u32, 42u64, inner)).expect("encodable"),
        encode_message(&ConsoleToRelay::Request {
            id: 42,
            request: Nested(request),
        })
        .expect("encodable")
    );
    let response = ConsoleResponse::Devices(Vec::new());
    let inner = encode_message(&response).expect("encodable");
    assert_eq!(
        encode_value(&(1u32, 42u64, 0u32, inner)).expect("encodable"),
        encode_message(&RelayToConsole::Response {
            id: 42,
            result: Ok(Nested(response)),
        })
        .expect("encodable")
    );
}

#[test]
fn the_first_unknown_tag_of_each_enum_decodes_as_unknown() {
    fn first_unknown<M: Message + PartialEq + Debug>() {
        let tag = M::KNOWN_VARIANTS;
        assert_eq!(
            decode_message::<M>(&varint(tag.into())),
            Ok(M::unknown(tag))
        );
    }
    first_unknown::<AgentToRelay>();
    first_unknown::<RelayToAgent>();
    first_unknown::<ConsoleToRelay>();
    first_unknown::<RelayToConsole>();
    first_unknown::<ConsoleRequest>();
    first_unknown::<ConsoleResponse>();
    first_unknown::<ConsoleToAgent>();
    first_unknown::<AgentToConsole>();
    first_unknown::<InputEvent>();
    first_unknown::<ServiceToHelper>();
    first_unknown::<HelperToService>();
    first_unknown::<Refusal>();
    first_unknown::<crate::measure::MeasureRequest>();
    first_unknown::<crate::measure::MeasureReply>();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn newer_top_level_tags_decode_as_unknown(
        raw in prop_oneof![0u32..16, any::<u32>()],
        fields in bytes(32),
    ) {
        check_newer_tag::<AgentToRelay>(raw, &fields)?;
        check_newer_tag::<RelayToAgent>(raw, &fields)?;
        check_newer_tag::<ConsoleToRelay>(raw, &fields)?;
        check_newer_tag::<RelayToConsole>(raw, &fields)?;
        check_newer_tag::<ConsoleRequest>(raw, &fields)?;
        check_newer_tag::<ConsoleResponse>(raw, &fields)?;
        check_newer_tag::<ConsoleToAgent>(raw, &fields)?;
        check_newer_tag::<AgentToConsole>(raw, &fields)?;
        check_newer_tag::<InputEvent>(raw, &fields)?;
        check_newer_tag::<ServiceToHelper>(raw, &fields)?;
        check_newer_tag::<HelperToService>(raw, &fields)?;
    }

    #[test]
    fn newer_nested_requests_decode_as_unknown_inside_a_known_envelope(
        raw in prop_oneof![0u32..16, any::<u32>()],
        id in any::<u64>(),
        fields in bytes(32),
    ) {
        let tag = newer_tag::<ConsoleRequest>(raw);
        let body = encode_value(&(1u32, id, body_with_tag(tag, &fields)))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(
            decode_message::<ConsoleToRelay>(&body),
            Ok(ConsoleToRelay::Request { id, request: Nested(ConsoleRequest::Unknown { tag }) })
        );
    }

    #[test]
    fn newer_nested_responses_decode_as_unknown_inside_a_known_envelope(
        raw in prop_oneof![0u32..16, any::<u32>()],
        id in any::<u64>(),
        fields in bytes(32),
    ) {
        let tag = newer_tag::<ConsoleResponse>(raw);
        let body = encode_value(&(1u32, id, 0u32, body_with_tag(tag, &fields)))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(
            decode_message::<RelayToConsole>(&body),
            Ok(RelayToConsole::Response {
                id,
                result: Ok(Nested(ConsoleResponse::Unknown { tag })),
            })
        );
    }
}

// ---------------------------------------------------------------------------
// Garbage in: decoders return errors, never panic.
// ---------------------------------------------------------------------------

/// Bodies close to valid ones: a valid encoding with a byte changed, cut
/// short, or extended, so the decoders get past the tag into the fields.
fn damaged_body() -> impl Strategy<Value = Vec<u8>> {
    let valid = prop_oneof![
        agent_to_relay().prop_map(|m| encode_message(&m)),
        relay_to_agent().prop_map(|m| encode_message(&m)),
        console_to_relay().prop_map(|m| encode_message(&m)),
        relay_to_console().prop_map(|m| encode_message(&m)),
        console_to_agent().prop_map(|m| encode_message(&m)),
        agent_to_console().prop_map(|m| encode_message(&m)),
        input_event().prop_map(|m| encode_message(&m)),
        service_to_helper().prop_map(|m| encode_message(&m)),
        helper_to_service().prop_map(|m| encode_message(&m)),
        video_frame().prop_map(|m| encode_value(&m)),
        client_hello().prop_map(|m| encode_value(&m)),
        server_hello().prop_map(|m| encode_value(&m)),
    ]
    .prop_map(|body| body.expect("strategy values are encodable"));
    (valid, any::<prop::sample::Index>(), any::<u8>(), 0usize..3).prop_map(
        |(mut body, at, byte, how)| {
            let at = at.index(body.len());
            match how {
                0 => body[at] = byte,
                1 => body.truncate(at),
                _ => body.insert(at, byte),
            }
            body
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES * 2))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(body in bytes(256)) {
        decode_as_everything(&body)?;
    }

    #[test]
    fn decoding_arbitrary_fields_after_a_known_tag_never_panics(
        // Every known tag of every enum (ConsoleRequest has the most).
        tag in 0u8..15,
        fields in bytes(256),
    ) {
        let mut body = vec![tag];
        body.extend_from_slice(&fields);
        decode_as_everything(&body)?;
    }

    #[test]
    fn decoding_damaged_messages_never_panics(body in damaged_body()) {
        decode_as_everything(&body)?;
    }
}

// ---------------------------------------------------------------------------
// Framing on arbitrary byte streams.
// ---------------------------------------------------------------------------

/// A piece of a byte stream under test.
#[derive(Clone, Debug)]
enum Piece {
    /// A valid frame with this body (which may exceed the limit under test).
    Frame(Vec<u8>),
    /// A bare header announcing this length, with no body behind it.
    Header(u32),
    /// Anything at all.
    Garbage(Vec<u8>),
}

fn piece(max: usize) -> impl Strategy<Value = Piece> {
    let limit = max as u32;
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 1..=max.min(48)).prop_map(Piece::Frame),
        1 => prop_oneof![
            Just(0u32),
            Just(limit),
            Just(limit.saturating_add(1)),
            Just(u32::MAX),
            any::<u32>(),
        ]
        .prop_map(Piece::Header),
        1 => bytes(12).prop_map(Piece::Garbage),
    ]
}

fn stream(pieces: &[Piece]) -> Vec<u8> {
    let mut wire = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Frame(body) => {
                wire.extend_from_slice(&(body.len() as u32).to_be_bytes());
                wire.extend_from_slice(body);
            }
            Piece::Header(len) => wire.extend_from_slice(&len.to_be_bytes()),
            Piece::Garbage(bytes) => wire.extend_from_slice(bytes),
        }
    }
    wire
}

/// What a decoder given the whole stream at once must report.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    /// Each complete frame's body and the stream offset just past it.
    frames: Vec<(Vec<u8>, usize)>,
    /// The first invalid header's error and the offset just past the header.
    error: Option<(FrameError, usize)>,
}

/// A direct reading of the frame format, independent of `FrameDecoder`.
fn reference_split(wire: &[u8], max: usize) -> Expected {
    let mut expected = Expected::default();
    let mut at = 0;
    while let Some(header) = wire.get(at..at + HEADER_LEN) {
        let header: [u8; HEADER_LEN] = header.try_into().expect("four bytes");
        let len = u32::from_be_bytes(header) as usize;
        let header_end = at + HEADER_LEN;
        if len == 0 {
            expected.error = Some((FrameError::Empty, header_end));
            break;
        }
        if len > max {
            expected.error = Some((
                FrameError::TooLarge {
                    announced: len,
                    max,
                },
                header_end,
            ));
            break;
        }
        let Some(body) = wire.get(header_end..header_end + len) else {
            break;
        };
        expected.frames.push((body.to_vec(), header_end + len));
        at = header_end + len;
    }
    expected
}

/// Feeds `wire` to a decoder in the given chunks, draining it after each, and
/// checks every frame and error comes out in the very chunk that completes it.
fn check_decoder_against_reference(
    wire: &[u8],
    sizes: &[usize],
    max: usize,
) -> Result<(), TestCaseError> {
    let expected = reference_split(wire, max);
    let mut decoder = FrameDecoder::new(max);
    let mut frames = expected.frames.iter();
    let mut fed = 0;
    for chunk in chunks(wire, sizes) {
        let before = fed;
        fed += chunk.len();
        decoder.extend(chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(body)) => {
                    let Some((expected_body, end)) = frames.next() else {
                        return Err(TestCaseError::fail("decoder invented a frame"));
                    };
                    prop_assert_eq!(&body, expected_body);
                    // Complete as soon as possible: in the chunk holding its last byte.
                    prop_assert!(before < *end && *end <= fed);
                }
                Ok(None) => break,
                Err(error) => {
                    prop_assert!(frames.next().is_none(), "frames were skipped");
                    let Some((expected_error, header_end)) = &expected.error else {
                        return Err(TestCaseError::fail(format!("unexpected error {error}")));
                    };
                    prop_assert_eq!(&error, expected_error);
                    // Refused in the chunk that completed the header: the
                    // body behind a bad header is never waited for, so at
                    // most the rest of that one chunk was buffered.
                    prop_assert!(before < *header_end && *header_end <= fed);
                    // And the stream stays refused.
                    prop_assert_eq!(decoder.next_frame(), Err(error));
                    return Ok(());
                }
            }
        }
        // Whatever is left is an incomplete frame, never a complete one.
        prop_assert!(decoder.buffered() < HEADER_LEN + max);
    }
    prop_assert!(frames.next().is_none(), "a complete frame was not returned");
    prop_assert!(
        expected.error.is_none(),
        "an invalid header was not reported"
    );
    let consumed = expected.frames.last().map_or(0, |(_, end)| *end);
    prop_assert_eq!(decoder.buffered(), wire.len() - consumed);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES * 2))]

    #[test]
    fn frame_decoder_handles_arbitrary_streams_in_arbitrary_chunks(
        (max, pieces) in prop_oneof![1usize..64, Just(MAX_CLIENT_FRAME_LEN)]
            .prop_flat_map(|max| (Just(max), prop::collection::vec(piece(max), 0..8))),
        sizes in prop::collection::vec(1usize..40, 1..8),
    ) {
        check_decoder_against_reference(&stream(&pieces), &sizes, max)?;
    }

    #[test]
    fn frame_decoder_handles_pure_noise(
        wire in bytes(512),
        sizes in prop::collection::vec(1usize..64, 1..8),
    ) {
        check_decoder_against_reference(&wire, &sizes, MAX_CLIENT_FRAME_LEN)?;
        check_decoder_against_reference(&wire, &sizes, MAX_RELAY_FRAME_LEN)?;
    }

    #[test]
    fn client_frames_split_anywhere_decode_to_the_same_messages(
        agent in prop::collection::vec(agent_to_relay(), 1..6),
        console in prop::collection::vec(console_to_relay(), 1..6),
        sizes in prop::collection::vec(1usize..48, 1..8),
    ) {
        check_stream_round_trip(&agent, &sizes, MAX_CLIENT_FRAME_LEN)?;
        check_stream_round_trip(&console, &sizes, MAX_CLIENT_FRAME_LEN)?;
    }

    #[test]
    fn relay_frames_split_anywhere_decode_to_the_same_messages(
        agent in prop::collection::vec(relay_to_agent(), 1..6),
        console in prop::collection::vec(relay_to_console(), 1..6),
        sizes in prop::collection::vec(1usize..48, 1..8),
    ) {
        check_stream_round_trip(&agent, &sizes, MAX_RELAY_FRAME_LEN)?;
        check_stream_round_trip(&console, &sizes, MAX_RELAY_FRAME_LEN)?;
    }

    #[test]
    fn session_frames_split_anywhere_decode_to_the_same_messages(
        control in prop::collection::vec(console_to_agent(), 1..6),
        replies in prop::collection::vec(agent_to_console(), 1..6),
        input in prop::collection::vec(input_event(), 1..6),
        service in prop::collection::vec(service_to_helper(), 1..6),
        helper in prop::collection::vec(helper_to_service(), 1..6),
        sizes in prop::collection::vec(1usize..48, 1..8),
    ) {
        // The control and input limits belong to agent and console; the
        // helper socket's is the video limit. Small frames fit either.
        check_stream_round_trip(&control, &sizes, MAX_VIDEO_FRAME_LEN)?;
        check_stream_round_trip(&replies, &sizes, MAX_VIDEO_FRAME_LEN)?;
        check_stream_round_trip(&input, &sizes, MAX_VIDEO_FRAME_LEN)?;
        check_stream_round_trip(&service, &sizes, MAX_VIDEO_FRAME_LEN)?;
        check_stream_round_trip(&helper, &sizes, MAX_VIDEO_FRAME_LEN)?;
    }
}

/// Encodes `messages` as consecutive frames, feeds them in chunks and checks
/// the same messages come out, in order, with nothing left over.
fn check_stream_round_trip<M>(
    messages: &[M],
    sizes: &[usize],
    max: usize,
) -> Result<(), TestCaseError>
where
    M: Message + PartialEq + Debug,
{
    let mut wire = Vec::new();
    for message in messages {
        let body = encode_message(message).map_err(|e| TestCaseError::fail(e.to_string()))?;
        encode_frame(&body, max, &mut wire).map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    let mut decoder = FrameDecoder::new(max);
    let mut decoded = Vec::new();
    for chunk in chunks(&wire, sizes) {
        decoder.extend(chunk);
        while let Some(body) = decoder
            .next_frame()
            .map_err(|e| TestCaseError::fail(e.to_string()))?
        {
            decoded
                .push(decode_message::<M>(&body).map_err(|e| TestCaseError::fail(e.to_string()))?);
        }
    }
    prop_assert_eq!(decoded.as_slice(), messages);
    prop_assert_eq!(decoder.buffered(), 0);
    Ok(())
}

// ---------------------------------------------------------------------------
// Hostile inputs, replayed deterministically (the fuzz targets' seeds).
// ---------------------------------------------------------------------------

/// A frame header announcing `len` bytes.
fn header(len: usize) -> Vec<u8> {
    u32::try_from(len)
        .expect("test lengths fit a header")
        .to_be_bytes()
        .to_vec()
}

/// `body` as one complete frame.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut wire = header(body.len());
    wire.extend_from_slice(body);
    wire
}

/// Concatenates byte strings.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// What the relay's frame decoder must make of a hostile client stream.
#[derive(Debug, PartialEq)]
enum Framing {
    /// Waits for more bytes, holding this many.
    Waits { buffered: usize },
    /// Refuses the stream.
    Refuses(FrameError),
    /// Yields this many frames, then waits holding nothing.
    Yields(usize),
}

/// Streams a client could send to the relay, with what the decoder must do.
fn hostile_streams() -> Vec<(&'static str, Vec<u8>, Framing)> {
    let max = MAX_CLIENT_FRAME_LEN;
    vec![
        ("empty input", Vec::new(), Framing::Waits { buffered: 0 }),
        (
            "a partial header",
            vec![0, 0, 1],
            Framing::Waits { buffered: 3 },
        ),
        (
            "the largest header a u32 can announce",
            vec![0xff; 4],
            Framing::Refuses(FrameError::TooLarge {
                announced: u32::MAX as usize,
                max,
            }),
        ),
        (
            "a header announcing zero bytes",
            vec![0; 4],
            Framing::Refuses(FrameError::Empty),
        ),
        (
            "a header one byte over the client limit, with body bytes behind it",
            cat(&[&header(max + 1), &[7; 64]]),
            Framing::Refuses(FrameError::TooLarge {
                announced: max + 1,
                max,
            }),
        ),
        (
            "a header of exactly the client limit, body still to come",
            cat(&[&header(max), &[7; 64]]),
            Framing::Waits {
                buffered: HEADER_LEN + 64,
            },
        ),
        (
            "a valid header with a truncated body",
            cat(&[&header(100), &[1; 99]]),
            Framing::Waits {
                buffered: HEADER_LEN + 99,
            },
        ),
        (
            "a good frame followed by an oversize header",
            cat(&[&frame(&[2, 5]), &header(max + 1)]),
            Framing::Refuses(FrameError::TooLarge {
                announced: max + 1,
                max,
            }),
        ),
        (
            "a thousand one-byte frames",
            [0, 0, 0, 1, 9].repeat(1000),
            Framing::Yields(1000),
        ),
    ]
}

/// Frame bodies no client→relay decoder may accept (each as the whole body).
fn hostile_bodies() -> Vec<(&'static str, Vec<u8>)> {
    // A varint whose every byte has the continuation bit set never ends.
    let endless_varint = vec![0x80; 64 * 1024];
    // 2^32 as a varint: four full continuation bytes, then 0x10.
    let four_giga = [0x80, 0x80, 0x80, 0x80, 0x10];
    // u64::MAX as a varint: ten bytes.
    let huge = varint(u64::MAX);
    vec![
        ("an empty body", Vec::new()),
        ("a tag varint longer than a u32", vec![0xff; 5]),
        (
            "a tag varint with bits beyond 32",
            vec![0xff, 0xff, 0xff, 0xff, 0x1f],
        ),
        ("a tag varint that never ends", endless_varint.clone()),
        ("a known tag with no fields", vec![0]),
        (
            "an agent Enroll whose secret is invalid UTF-8",
            vec![0, 2, 0xff, 0xfe],
        ),
        (
            "an agent Enroll whose secret is an over-long encoding of NUL",
            vec![0, 2, 0xc0, 0x80],
        ),
        (
            "an agent Attach whose hostname is a lone surrogate",
            vec![1, 3, 0xed, 0xa0, 0x80],
        ),
        (
            "a console Authenticate whose token is cut inside a character",
            vec![0, 2, 0xc3, 0x28],
        ),
        (
            "a string length claiming 2^32 bytes",
            cat(&[&[0], &four_giga, b"abc"]),
        ),
        ("a string length of u64::MAX", cat(&[&[0], &huge, b"abc"])),
        (
            "nested request bytes claiming 2^32 bytes",
            cat(&[&[1, 7], &four_giga, &[0; 16]]),
        ),
        (
            "nested request bytes whose varint never ends",
            cat(&[&[1, 7], &endless_varint]),
        ),
        (
            "an envelope where the nested request belongs, twice over",
            cat(&[&[1, 1, 5], &[1, 1, 2], &[1, 1, 0]]),
        ),
        (
            "a nested request whose own nested length lies",
            cat(&[&[1, 1, 3], &[1, 0xff, 0x7f]]),
        ),
        (
            "a nested ShowDevice whose name is invalid UTF-8",
            cat(&[&[1, 1, 4], &[1, 2, 0xff, 0xff]]),
        ),
        ("ones all the way down", vec![1; 4096]),
    ]
}

/// Bodies no session decoder (console↔agent, service↔helper, video) may
/// accept: a peer inside the end-to-end connection, or a process on the
/// helper socket, is no more trusted than a client of the relay.
fn hostile_session_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let endless_varint = vec![0x80; 64 * 1024];
    let four_giga = [0x80, 0x80, 0x80, 0x80, 0x10];
    let huge = varint(u64::MAX);
    // A VideoFrame's fields up to its payload: seq 1, monitor 0, 640×480
    // (as varints), ZstdTiles, keyframe.
    let frame_head = cat(&[&[1, 0], &varint(640), &varint(480), &[0, 1]]);
    vec![
        ("an empty body", Vec::new()),
        ("a tag varint longer than a u32", vec![0xff; 5]),
        ("a tag varint that never ends", endless_varint.clone()),
        (
            "a console Chat whose text is invalid UTF-8",
            vec![3, 2, 0xff, 0xfe],
        ),
        (
            "a console Chat whose text claims 2^32 bytes",
            cat(&[&[3], &four_giga, b"abc"]),
        ),
        (
            "an agent Chat whose text claims u64::MAX bytes",
            cat(&[&[2], &huge, b"abc"]),
        ),
        (
            "a Welcome listing 2^32 monitors",
            cat(&[&[0, 1, 1], &four_giga, &[0; 16]]),
        ),
        (
            "a bare video frame whose payload claims 2^32 bytes",
            cat(&[&frame_head, &four_giga, &[0; 16]]),
        ),
        (
            "a helper Video whose payload claims 2^32 bytes",
            cat(&[&[3, 7], &frame_head, &four_giga, &[0; 16]]),
        ),
        (
            // Empty payload; a cursor at (1, -2) whose 1×1 shape, hot spot
            // (0, 0), claims 2^32 bytes of RGBA.
            "a cursor shape claiming 2^32 RGBA bytes",
            cat(&[
                &[3, 7],
                &frame_head,
                &[0, 1, 2, 3, 1, 1, 1, 0, 0],
                &four_giga,
            ]),
        ),
        (
            "a video payload whose length varint never ends",
            cat(&[&[3, 7], &frame_head, &endless_varint]),
        ),
        (
            // An input Button's `pressed`, a helper Consent's answer.
            "a bool or a closed enum past its last value",
            vec![1, 0, 7],
        ),
        ("ones all the way down", vec![1; 4096]),
    ]
}

#[test]
fn hostile_streams_are_refused_or_awaited_without_buffering_bodies() {
    for (what, wire, expected) in hostile_streams() {
        let mut decoder = FrameDecoder::new(MAX_CLIENT_FRAME_LEN);
        decoder.extend(&wire);
        let mut yielded = 0;
        let outcome = loop {
            match decoder.next_frame() {
                Ok(Some(_)) => yielded += 1,
                Ok(None) if yielded > 0 => break Framing::Yields(yielded),
                Ok(None) => {
                    break Framing::Waits {
                        buffered: decoder.buffered(),
                    }
                }
                Err(error) => break Framing::Refuses(error),
            }
        };
        assert_eq!(outcome, expected, "{what}");
        if let Framing::Yields(_) = outcome {
            assert_eq!(decoder.buffered(), 0, "{what}");
        }
    }
}

#[test]
fn oversize_headers_are_refused_from_the_header_alone() {
    // Four bytes are enough to refuse: nothing of the body is needed.
    for announced in [MAX_CLIENT_FRAME_LEN + 1, u32::MAX as usize] {
        assert_eq!(
            parse_header(
                u32::try_from(announced).expect("fits").to_be_bytes(),
                MAX_CLIENT_FRAME_LEN
            ),
            Err(FrameError::TooLarge {
                announced,
                max: MAX_CLIENT_FRAME_LEN
            })
        );
    }
    assert_eq!(
        parse_header(
            header(MAX_CLIENT_FRAME_LEN)[..].try_into().expect("4"),
            MAX_CLIENT_FRAME_LEN
        ),
        Ok(MAX_CLIENT_FRAME_LEN)
    );
}

#[test]
fn hostile_bodies_are_rejected_by_every_client_decoder_quickly() {
    // A decoder that trusted a length prefix would try to allocate gigabytes
    // (and abort) or spin; either shows up here as a crash or as time.
    let start = Instant::now();
    for (what, body) in hostile_bodies() {
        assert!(
            decode_message::<AgentToRelay>(&body).is_err(),
            "AgentToRelay accepted {what}"
        );
        assert!(
            decode_message::<ConsoleToRelay>(&body).is_err(),
            "ConsoleToRelay accepted {what}"
        );
        assert!(
            decode_value::<ClientHello>(&body).is_err(),
            "ClientHello accepted {what}"
        );
        // The same bytes framed, as the relay receives them.
        if !body.is_empty() && body.len() <= MAX_CLIENT_FRAME_LEN {
            let mut decoder = FrameDecoder::new(MAX_CLIENT_FRAME_LEN);
            decoder.extend(&frame(&body));
            assert_eq!(decoder.next_frame(), Ok(Some(body.clone())), "{what}");
        }
    }
    // Generous: these take microseconds; seconds would mean a length was
    // believed somewhere.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "hostile bodies took {:?}",
        start.elapsed()
    );
}

#[test]
fn hostile_bodies_are_rejected_by_every_session_decoder_quickly() {
    let start = Instant::now();
    for (what, body) in hostile_session_bodies() {
        assert!(
            decode_message::<ConsoleToAgent>(&body).is_err(),
            "ConsoleToAgent accepted {what}"
        );
        assert!(
            decode_message::<AgentToConsole>(&body).is_err(),
            "AgentToConsole accepted {what}"
        );
        assert!(
            decode_message::<InputEvent>(&body).is_err(),
            "InputEvent accepted {what}"
        );
        assert!(
            decode_message::<ServiceToHelper>(&body).is_err(),
            "ServiceToHelper accepted {what}"
        );
        assert!(
            decode_message::<HelperToService>(&body).is_err(),
            "HelperToService accepted {what}"
        );
        assert!(
            decode_value::<VideoFrame>(&body).is_err(),
            "VideoFrame accepted {what}"
        );
        // The same bytes framed, as the video stream and the helper socket
        // receive them.
        if !body.is_empty() {
            let mut decoder = FrameDecoder::new(MAX_VIDEO_FRAME_LEN);
            decoder.extend(&frame(&body));
            assert_eq!(decoder.next_frame(), Ok(Some(body.clone())), "{what}");
        }
    }
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "hostile session bodies took {:?}",
        start.elapsed()
    );
}

#[test]
fn relay_answers_claiming_huge_lengths_are_rejected() {
    // The console must survive a hostile relay too: a device list claiming
    // 2^32 entries, at the top level and nested in a response.
    let four_giga = [0x80, 0x80, 0x80, 0x80, 0x10];
    let devices = cat(&[&[0], &four_giga]);
    assert!(decode_message::<ConsoleResponse>(&devices).is_err());
    let nested = encode_value(&(1u32, 7u64, 0u32, devices)).expect("encodable");
    assert!(decode_message::<RelayToConsole>(&nested).is_err());
    let tokens = cat(&[&[5], &four_giga, &[0; 32]]);
    assert!(decode_message::<ConsoleResponse>(&tokens).is_err());
}

#[test]
fn a_five_byte_tag_of_u32_max_is_a_newer_message_not_an_error() {
    // 0xff 0xff 0xff 0xff 0x0f is the longest valid u32 varint: u32::MAX.
    // Every enum must read it as a message from the far future.
    let body = [0xff, 0xff, 0xff, 0xff, 0x0f];
    let tag = u32::MAX;
    assert_eq!(
        decode_message::<AgentToRelay>(&body),
        Ok(AgentToRelay::Unknown { tag })
    );
    assert_eq!(
        decode_message::<RelayToAgent>(&body),
        Ok(RelayToAgent::Unknown { tag })
    );
    assert_eq!(
        decode_message::<ConsoleToRelay>(&body),
        Ok(ConsoleToRelay::Unknown { tag })
    );
    assert_eq!(
        decode_message::<RelayToConsole>(&body),
        Ok(RelayToConsole::Unknown { tag })
    );
    assert_eq!(
        decode_message::<ConsoleRequest>(&body),
        Ok(ConsoleRequest::Unknown { tag })
    );
    assert_eq!(
        decode_message::<ConsoleResponse>(&body),
        Ok(ConsoleResponse::Unknown { tag })
    );
    assert_eq!(
        decode_message::<ConsoleToAgent>(&body),
        Ok(ConsoleToAgent::Unknown { tag })
    );
    assert_eq!(
        decode_message::<AgentToConsole>(&body),
        Ok(AgentToConsole::Unknown { tag })
    );
    assert_eq!(
        decode_message::<InputEvent>(&body),
        Ok(InputEvent::Unknown { tag })
    );
    assert_eq!(
        decode_message::<ServiceToHelper>(&body),
        Ok(ServiceToHelper::Unknown { tag })
    );
    assert_eq!(
        decode_message::<HelperToService>(&body),
        Ok(HelperToService::Unknown { tag })
    );
    // Inside a known envelope, the same.
    let request = encode_value(&(1u32, 3u64, body.to_vec())).expect("encodable");
    assert_eq!(
        decode_message::<ConsoleToRelay>(&request),
        Ok(ConsoleToRelay::Request {
            id: 3,
            request: Nested(ConsoleRequest::Unknown { tag }),
        })
    );
    // The hello is not an enum: these bytes are a wrong magic and a cut-off
    // version range, which is an error.
    assert!(decode_value::<ClientHello>(&body).is_err());
}

/// Records the size hint a sequence decoder gives for a claimed length.
struct SeqSizeHint(Option<usize>);

impl<'de> Deserialize<'de> for SeqSizeHint {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HintVisitor;
        impl<'de> Visitor<'de> for HintVisitor {
            type Value = SeqSizeHint;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<SeqSizeHint, A::Error> {
                Ok(SeqSizeHint(seq.size_hint()))
            }
        }
        deserializer.deserialize_seq(HintVisitor)
    }
}

#[test]
fn postcard_does_not_believe_lengths_longer_than_the_input() {
    // Every `Vec` we decode (device lists, token lists and the bytes of a
    // nested message) preallocates from the sequence's size hint. Postcard
    // gives no hint when the claimed length exceeds the bytes left, so a
    // claim of 2^32 elements allocates nothing. This pins that behaviour of
    // the postcard version in use.
    let hint = |bytes: &[u8]| {
        postcard::take_from_bytes::<SeqSizeHint>(bytes)
            .expect("the visitor reads no elements")
            .0
             .0
    };
    assert_eq!(hint(&[0x80, 0x80, 0x80, 0x80, 0x10]), None);
    assert_eq!(hint(&cat(&[&varint(u64::MAX), &[0; 8]])), None);
    assert_eq!(hint(&[3, 1, 2, 3]), Some(3));
    assert_eq!(hint(&[4, 1, 2, 3]), None);
}

// ---------------------------------------------------------------------------
// The largest frames: video near its limit.
// ---------------------------------------------------------------------------

/// Passes `body` through `encode_frame` and a `FrameDecoder` limited to
/// `max`, freeing each copy as soon as the next exists.
fn through_one_frame(body: Vec<u8>, max: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    encode_frame(&body, max, &mut wire).expect("the body fits the limit");
    drop(body);
    let mut decoder = FrameDecoder::new(max);
    decoder.extend(&wire);
    drop(wire);
    let body = decoder
        .next_frame()
        .expect("the header is valid")
        .expect("the frame is complete");
    assert_eq!(decoder.buffered(), 0);
    body
}

#[test]
fn a_video_frame_filling_the_video_limit_round_trips() {
    // A lossless keyframe of a big screen is the largest thing a session
    // carries: from the helper inside `HelperToService::Video`, then on the
    // video stream as a bare `VideoFrame`, both framed with
    // MAX_VIDEO_FRAME_LEN. The envelope makes the helper's frame the larger,
    // so the payload is sized to put that one exactly at the limit. Payloads
    // are rebuilt rather than kept, so at most two 32 MiB copies are alive;
    // postcard moves a payload byte by byte, which takes about three seconds
    // in a debug build, so the frame makes one round trip.
    let max = MAX_VIDEO_FRAME_LEN;
    let session_id = SessionId(u64::MAX);
    let video = |payload_len: usize| {
        // Not all one value, so a shifted or dropped byte shows.
        let pattern: Vec<u8> = (0..=250).collect();
        let mut payload = pattern.repeat(payload_len / pattern.len() + 1);
        payload.truncate(payload_len);
        VideoFrame {
            seq: u64::MAX,
            monitor: 255,
            width: 7680,
            height: 4320,
            codec: Codec::ZstdTiles,
            keyframe: true,
            payload,
            cursor: Some(Cursor {
                x: -1,
                y: 4320,
                shape: None,
            }),
            captured_us: u64::MAX,
        }
    };
    let envelope = |payload_len: usize| HelperToService::Video {
        session_id,
        frame: video(payload_len),
    };

    // The layout the sizes below rely on: the envelope is the tag and the
    // session id, then the bare frame.
    let prefix = 1 + varint(session_id.0).len();
    let empty = encode_message(&envelope(0)).expect("encodable");
    assert_eq!(
        empty[prefix..],
        encode_value(&video(0)).expect("encodable")[..]
    );
    // Everything but the payload and its length prefix, whose varint is as
    // long for the payload as for `max` (both need four bytes).
    let fixed = empty.len() - varint(0).len();
    let payload_len = max - fixed - varint(max as u64).len();
    assert_eq!(varint(payload_len as u64).len(), varint(max as u64).len());

    let body = encode_message(&envelope(payload_len)).expect("encodable");
    assert_eq!(
        body.len(),
        max,
        "the helper's frame is exactly at the limit"
    );
    // So the bare frame on the video stream, `prefix` bytes shorter, fits.
    let body = through_one_frame(body, max);
    let decoded = decode_message::<HelperToService>(&body).expect("decodable");
    drop(body);
    // Not assert_eq!: a failure would print 32 MiB.
    assert!(
        decoded == envelope(payload_len),
        "the frame changed on the way"
    );
    drop(decoded);

    // One byte more is refused by the sender (the zeroed body is never
    // touched, so it costs no memory) and, from its header, by the receiver.
    assert_eq!(
        encode_frame(&vec![0; max + 1], max, &mut Vec::new()),
        Err(FrameError::BodyTooLarge { len: max + 1, max })
    );
    assert_eq!(
        parse_header(header(max + 1)[..].try_into().expect("4"), max),
        Err(FrameError::TooLarge {
            announced: max + 1,
            max
        })
    );
}

#[test]
fn a_newer_session_message_on_the_helper_socket_decodes_as_unknown() {
    // FromConsole (tag 3), session 1, nested body [9]: a ConsoleToAgent
    // variant this build does not know.
    let decoded: ServiceToHelper = decode_message(&[3, 1, 1, 9]).unwrap();
    assert_eq!(
        decoded,
        ServiceToHelper::FromConsole {
            session_id: SessionId(1),
            message: Nested(ConsoleToAgent::Unknown { tag: 9 }),
        }
    );
}

#[test]
fn pointer_shapes_round_trip_with_and_without_their_picture() {
    let defined = AgentToConsole::PointerShape(PointerShape {
        id: 3,
        image: Some(PointerImage {
            width: 13,
            height: 7,
            hot_x: 3,
            hot_y: 2,
            rgba_zstd: vec![0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3],
        }),
    });
    let again = AgentToConsole::PointerShape(PointerShape { id: 3, image: None });
    for message in [defined, again] {
        let bytes = encode_value(&message).expect("encodes");
        assert_eq!(
            decode_value::<AgentToConsole>(&bytes).expect("decodes"),
            message
        );
    }
}

#[test]
fn pointer_pictures_are_bounded_before_anything_is_allocated() {
    assert_eq!(PointerImage::raw_len(1, 1), Ok(4));
    assert_eq!(PointerImage::raw_len(13, 7), Ok(13 * 7 * 4));
    assert_eq!(
        PointerImage::raw_len(MAX_POINTER_SIDE, MAX_POINTER_SIDE),
        Ok(256 * 256 * 4)
    );
    for (width, height) in [
        (0, 7),
        (7, 0),
        (MAX_POINTER_SIDE + 1, 1),
        (1, MAX_POINTER_SIDE + 1),
        (u16::MAX, u16::MAX),
    ] {
        assert_eq!(
            PointerImage::raw_len(width, height),
            Err(PointerImageError::Size { width, height })
        );
    }
}
