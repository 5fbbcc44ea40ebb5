//! Diagnostics: the probes that fill a `deskside_diag::Snapshot`.
//!
//! Each probe answers "unknown, because …" rather than failing or guessing;
//! the classifier in `deskside-diag` turns the snapshot into a verdict.
//! Platform-specific probes live in `platform/` (one file per OS); the
//! parsers for the tools they run live in `parse/` and are pure.

pub mod collect;
pub mod dns;
pub mod gateway;
pub mod parse;
pub mod path;
pub mod platform;
pub mod proxy;
#[cfg(test)]
mod reasons;
pub mod system;

use crate::link::{BoxFuture, DiagnosticsSource};
use crate::state::StateDir;

/// Who asked for a diagnostic run, as remembered in the local history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requester {
    /// The employee, with `deskside-agent check`.
    Employee,
    /// A technician, through the relay, with their display name when the
    /// relay sent it.
    Technician(Option<String>),
}

impl Requester {
    fn as_str(&self) -> &'static str {
        match self {
            Requester::Employee => "employee",
            Requester::Technician(_) => "technician",
        }
    }

    fn technician(&self) -> Option<&str> {
        match self {
            Requester::Technician(name) => name.as_deref(),
            Requester::Employee => None,
        }
    }
}

/// Remembers a run in the state directory's history (best effort: a
/// failure to write is logged, not fatal).
pub fn remember(
    state: &StateDir,
    requester: Requester,
    snapshot: &deskside_diag::Snapshot,
    sent_to_relay: bool,
) {
    let at = crate::clock::unix_millis();
    let entry = serde_json::json!({
        "at_ms": at,
        "requested_by": requester.as_str(),
        "technician": requester.technician(),
        "sent_to_relay": sent_to_relay,
        "snapshot": snapshot,
    });
    if let Err(e) = state.append_history(&entry) {
        tracing::warn!("cannot record the diagnostic run in the local history: {e}");
    }
}

/// The network this device is on, as "interface via gateway" of its
/// default route, if it has one.
pub fn network_identity(network: &deskside_diag::snapshot::NetworkConfig) -> Option<String> {
    let route = network.default_route.as_ref()?;
    Some(format!("{} via {}", route.interface, route.gateway))
}

/// [`network_identity`] of the network this device is on now.
pub fn current_network() -> Option<String> {
    platform::network(None).value().and_then(network_identity)
}

/// Adds what the state directory knows to a snapshot taken now: the last
/// successful QUIC connection to the relay, if it was made on the network
/// the device is on now or on an unknown one (`last_connected` must be read
/// before the run, which records its own connection); and records this
/// run's connection if it made one.
pub fn add_connection_history(
    state: &StateDir,
    last_connected: Option<crate::state::LastConnected>,
    snapshot: &mut deskside_diag::Snapshot,
) {
    let here = snapshot.network.value().and_then(network_identity);
    if let deskside_diag::Probe::Measured(path) = &mut snapshot.path {
        path.last_connected_ms = last_connected
            .filter(|c| match (&c.network, &here) {
                (Some(then), Some(now)) => then == now,
                _ => true,
            })
            .map(|c| c.at.saturating_mul(1000));
        if path.udp_ok {
            state.record_connected(crate::clock::unix_secs(), here);
        }
    }
}

/// The agent service's diagnostics: runs every probe on request of a
/// technician and remembers what it sent.
#[derive(Debug)]
pub struct AgentDiagnostics {
    /// Where the history goes.
    pub state: StateDir,
    /// The relay to measure against: the one the agent is attached to
    /// (see [`DiagnosticsSource::attached_to`]).
    pub target: std::sync::Mutex<collect::Target>,
}

/// Collection options following the organisation's policy.
pub fn options_for(policy: &deskside_diag::policy::Policy) -> collect::Options {
    collect::Options {
        privacy: platform::Privacy {
            wifi_identifiers_in_clear: policy.wifi_identifiers_in_clear,
            salt: policy.identifier_salt.clone(),
            key: policy.identifier_key.clone(),
        },
        ..collect::Options::default()
    }
}

impl DiagnosticsSource for AgentDiagnostics {
    fn attached_to(&self, relay: &deskside_protocol::token::RelayEndpoint) {
        let mut target = self
            .target
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        target.relay.clone_from(&relay.addr);
        target.fingerprint = relay.fingerprint;
    }

    fn set_policy(&self, json: &[u8]) -> Result<(), String> {
        self.state
            .save_policy(json)
            .map_err(|e| format!("cannot keep the organisation's policy: {e}"))
    }

    fn collect(&self, throughput: bool) -> BoxFuture<Result<Vec<u8>, String>> {
        self.collect_for(throughput, None)
    }

    fn collect_for(
        &self,
        throughput: bool,
        technician: Option<String>,
    ) -> BoxFuture<Result<Vec<u8>, String>> {
        let state = self.state.clone();
        let target = self
            .target
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        Box::pin(async move {
            let policy = state.policy();
            if policy.diagnostics_consent == deskside_diag::policy::Consent::Employee {
                return Err("this organisation requires the employee's approval before a technician collects diagnostics, and approval needs the session helper, which this agent does not have yet; ask the employee to run `deskside-agent check` and share the result".to_owned());
            }
            let mut options = options_for(&policy);
            options.path.throughput = throughput;
            let last_connected = state.last_connected();
            let mut snapshot = collect::snapshot(Some(&target), &options, &|_| {}).await;
            add_connection_history(&state, last_connected, &mut snapshot);
            let json = serde_json::to_vec(&snapshot)
                .map_err(|e| format!("cannot encode the snapshot: {e}"))?;
            remember(&state, Requester::Technician(technician), &snapshot, true);
            Ok(json)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::LastConnected;
    use deskside_diag::snapshot::{DefaultRoute, NetworkConfig, Path};
    use deskside_diag::{Probe, Snapshot};

    fn snapshot_on(gateway: &str) -> Snapshot {
        Snapshot {
            network: Probe::Measured(NetworkConfig {
                default_route: Some(DefaultRoute {
                    interface: "wlan0".to_owned(),
                    gateway: gateway.to_owned(),
                }),
                ..NetworkConfig::default()
            }),
            path: Probe::Measured(Path::default()),
            ..Snapshot::default()
        }
    }

    fn last_connected_ms(snapshot: &Snapshot) -> Option<i64> {
        snapshot.path.value().and_then(|p| p.last_connected_ms)
    }

    #[test]
    fn a_connection_made_on_another_network_is_not_evidence() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let home = |at| LastConnected {
            at,
            network: Some("wlan0 via 192.168.1.1".to_owned()),
        };
        let mut at_home = snapshot_on("192.168.1.1");
        add_connection_history(&state, Some(home(100)), &mut at_home);
        assert_eq!(last_connected_ms(&at_home), Some(100_000));
        let mut at_the_cafe = snapshot_on("10.7.0.1");
        add_connection_history(&state, Some(home(100)), &mut at_the_cafe);
        assert_eq!(last_connected_ms(&at_the_cafe), None);
        let unknown = LastConnected {
            at: 100,
            network: None,
        };
        let mut anywhere = snapshot_on("10.7.0.1");
        add_connection_history(&state, Some(unknown), &mut anywhere);
        assert_eq!(last_connected_ms(&anywhere), Some(100_000));
    }
}
