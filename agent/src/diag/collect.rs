//! One diagnostic run: every probe, in parallel where they do not disturb
//! each other, into one [`Snapshot`].

use std::net::IpAddr;
use std::time::Instant;

use deskside_diag::snapshot::{Device, NetworkConfig};
use deskside_diag::{Probe, Snapshot, FORMAT_VERSION};
use deskside_net::Identity;
use deskside_protocol::Fingerprint;

use super::path::{self, PathOptions};
use super::{dns, gateway, platform, system};

/// Where and how to measure.
#[derive(Clone, Debug)]
pub struct Target {
    /// Relay address (`host:port`).
    pub relay: String,
    /// Pinned relay certificate.
    pub fingerprint: Fingerprint,
    /// This device's identity, for the measurement connection.
    pub identity: Identity,
}

/// Options of one run.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Path measurement settings (throughput on or off).
    pub path: PathOptions,
    /// Extra names to resolve besides the relay's.
    pub dns_names: Vec<String>,
    /// Organisation policy for Wi‑Fi identifiers.
    pub privacy: platform::Privacy,
}

/// A step of the run, for progress display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Device, network configuration and Wi‑Fi.
    Local,
    /// Gateway, DNS and the relay path.
    Network,
    /// Throughput test.
    Throughput,
    /// Done.
    Done,
}

/// One run's result.
#[derive(Debug)]
pub struct Collected {
    /// What was measured.
    pub snapshot: Snapshot,
    /// The relay's refusal of the path measurement, if it refused (the
    /// device is revoked or unknown, another measurement is running).
    pub relay_refusal: Option<deskside_protocol::Refusal>,
}

/// Runs every probe. `progress` is told when each step starts.
pub async fn snapshot(
    target: Option<&Target>,
    options: &Options,
    progress: &(dyn Fn(Step) + Sync),
) -> Snapshot {
    run(target, options, progress).await.snapshot
}

/// Runs every probe, keeping the relay's refusal if it refused.
pub async fn run(
    target: Option<&Target>,
    options: &Options,
    progress: &(dyn Fn(Step) + Sync),
) -> Collected {
    let started = Instant::now();
    let taken_at_ms = crate::clock::unix_millis();
    progress(Step::Local);
    let relay_ip = match target {
        Some(t) => deskside_net::transport::resolve(&t.relay)
            .await
            .ok()
            .map(|a| a.ip()),
        None => None,
    };
    let privacy = options.privacy.clone();
    // The device probe mostly waits out its CPU sample (2 s on Windows):
    // the network configuration and Wi‑Fi are read meanwhile.
    let device = tokio::task::spawn_blocking(system::collect);
    let network_and_wifi = tokio::task::spawn_blocking(move || {
        let network = platform::network(relay_ip);
        let wifi = match &network {
            Probe::Measured(network) => platform::wifi(network, &privacy),
            other => Probe::unknown(format!(
                "network configuration unknown: {}",
                other.reason().unwrap_or("")
            )),
        };
        (network, wifi)
    });
    let local = match tokio::join!(device, network_and_wifi) {
        (Ok(device), Ok((network, wifi))) => Ok((device, network, wifi)),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    let (device, network, wifi): (Probe<Device>, Probe<NetworkConfig>, _) = match local {
        Ok((device, mut network, wifi)) => {
            // Whatever the platform probe did: no proxy password leaves here.
            if let Probe::Measured(config) = &mut network {
                config.proxy = super::proxy::without_credentials(std::mem::take(&mut config.proxy));
            }
            (Probe::Measured(device), network, wifi)
        }
        Err(e) => {
            let reason = format!("the local probes failed: {e}");
            (
                Probe::unknown(reason.clone()),
                Probe::unknown(reason.clone()),
                Probe::unknown(reason),
            )
        }
    };

    progress(if options.path.throughput {
        Step::Throughput
    } else {
        Step::Network
    });
    let gateway_ip = network.value().and_then(gateway_to_probe);
    let vpn_server_ip: Option<IpAddr> = network
        .value()
        .and_then(|n| n.vpn_server.as_ref())
        .and_then(|v| v.address.parse().ok());
    let gateway = async {
        let home = async {
            match gateway_ip {
                Some(ip) => gateway::probe(ip).await,
                None => Probe::unknown("no default gateway"),
            }
        };
        // The VPN server's round trip is its own measurement, run beside
        // the home router's.
        let server = async {
            match vpn_server_ip {
                Some(ip) => Some(gateway::probe(ip).await),
                None => None,
            }
        };
        tokio::join!(home, server)
    };
    let path = async {
        match target {
            Some(t) => Some(
                path::measure(&t.relay, t.fingerprint, t.identity.clone(), &options.path).await,
            ),
            None => None,
        }
    };
    let ((gateway, vpn_round_trip), path) = tokio::join!(gateway, path);
    let mut network = network;
    if let (Probe::Measured(n), Some(round_trip)) = (&mut network, vpn_round_trip) {
        if let Some(server) = n.vpn_server.as_mut() {
            server.round_trip = Some(round_trip);
        }
    }
    let relay_reachable = path.as_ref().map(|p| p.path.udp_ok);
    let mut names: Vec<String> = target
        .and_then(|t| dns::host_name(&t.relay))
        .into_iter()
        .collect();
    names.extend(options.dns_names.iter().cloned());
    let servers: Vec<IpAddr> = network
        .value()
        .map(|n| {
            n.dns_servers
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let dns = dns::probe(&names, &servers, relay_reachable).await;
    let mut relay_refusal = None;
    let (path, clock) = match path {
        Some(report) => {
            relay_refusal = report.refusal;
            (Probe::Measured(report.path), report.clock)
        }
        None => (
            Probe::unknown("not enrolled: no relay to measure"),
            Probe::unknown("not enrolled: no relay to compare with"),
        ),
    };
    // Windows' own verdict (absent elsewhere), read at the end of the run
    // beside the path result the classifier compares it with.
    let os_connectivity = tokio::task::spawn_blocking(platform::os_connectivity)
        .await
        .unwrap_or_else(|e| Some(Probe::unknown(format!("the local probes failed: {e}"))));
    progress(Step::Done);
    let snapshot = Snapshot {
        format: FORMAT_VERSION,
        taken_at_ms,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        duration_ms: started.elapsed().as_millis() as u64,
        device,
        network,
        wifi,
        gateway,
        dns,
        clock,
        path,
        os_connectivity,
    };
    Collected {
        snapshot,
        relay_refusal,
    }
}

/// The router the gateway probe measures: the home router on the physical
/// interface when a full-tunnel VPN holds the default route, else the
/// default route's gateway.
fn gateway_to_probe(network: &NetworkConfig) -> Option<IpAddr> {
    network
        .home_gateway
        .as_ref()
        .or(network.default_route.as_ref())
        .and_then(|r| r.gateway.parse().ok())
}

#[cfg(test)]
mod gateway_choice_tests {
    use super::*;
    use deskside_diag::snapshot::DefaultRoute;

    #[test]
    fn with_a_full_tunnel_the_gateway_probe_targets_the_home_router() {
        let route = |interface: &str, gateway: &str| DefaultRoute {
            interface: interface.to_owned(),
            gateway: gateway.to_owned(),
        };
        let tunnelled = NetworkConfig {
            default_route: Some(route("tun0", "10.8.0.1")),
            home_gateway: Some(route("wlan0", "192.168.1.1")),
            ..NetworkConfig::default()
        };
        assert_eq!(
            gateway_to_probe(&tunnelled),
            Some("192.168.1.1".parse().unwrap())
        );
        let plain = NetworkConfig {
            default_route: Some(route("wlan0", "192.168.1.1")),
            ..NetworkConfig::default()
        };
        assert_eq!(
            gateway_to_probe(&plain),
            Some("192.168.1.1".parse().unwrap())
        );
        assert_eq!(gateway_to_probe(&NetworkConfig::default()), None);
    }
}
