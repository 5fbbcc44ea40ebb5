//! Reachability of the home gateway.
//!
//! Unprivileged ICMP is disabled on many Linux systems (Debian's default
//! `net.ipv4.ping_group_range = 1 0`), so the probe is a TCP connection
//! attempt to ports routers commonly answer on: a completed handshake *or a
//! refusal (RST)* both prove the router answered, and the time to either is
//! a round trip. Only silence on every port is "no answer" — and since a
//! router may simply drop TCP, silence on all probes is reported as
//! unknown, never as a fault.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use deskside_diag::snapshot::Gateway;
use deskside_diag::Probe;

use super::path::rtt_stats;

/// Ports tried, in order: DNS (most home routers run a resolver), HTTP and
/// HTTPS (the admin page).
const PORTS: [u16; 3] = [53, 80, 443];
/// Probes sent once a port answers.
const PROBES: u32 = 10;
/// Spacing of the probes.
const INTERVAL: Duration = Duration::from_millis(20);
/// Longest wait for one probe: a LAN answers in a few milliseconds.
const TIMEOUT: Duration = Duration::from_millis(500);

/// One TCP probe: `Some(rtt)` if the host answered (accepted or refused).
async fn tcp_probe(target: SocketAddr) -> Option<Duration> {
    let started = Instant::now();
    match tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(target)).await {
        Ok(Ok(_stream)) => Some(started.elapsed()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(started.elapsed()),
        _ => None,
    }
}

/// Probes `gateway`.
pub async fn probe(gateway: IpAddr) -> Probe<Gateway> {
    // Find a port the router answers on.
    let mut port = None;
    for candidate in PORTS {
        if tcp_probe(SocketAddr::new(gateway, candidate))
            .await
            .is_some()
        {
            port = Some(candidate);
            break;
        }
    }
    let Some(port) = port else {
        return Probe::unknown(format!(
            "the gateway {gateway} answered no TCP probe on ports 53, 80 or 443 and ICMP is not available to unprivileged programs here; it may still be fine"
        ));
    };
    let target = SocketAddr::new(gateway, port);
    let mut samples = Vec::new();
    let mut sent = 0;
    for _ in 0..PROBES {
        sent += 1;
        if let Some(rtt) = tcp_probe(target).await {
            samples.push(rtt.as_secs_f64() * 1000.0);
        }
        tokio::time::sleep(INTERVAL).await;
    }
    Probe::Measured(Gateway {
        address: gateway.to_string(),
        method: format!("tcp/{port}"),
        sent,
        received: samples.len() as u32,
        rtt: rtt_stats(&samples),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refusing_host_counts_as_answering() {
        // Nothing listens on this port of loopback: the kernel answers RST.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        assert!(tcp_probe(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .is_some());
    }

    #[tokio::test]
    async fn a_reachable_gateway_is_measured() {
        // Loopback refuses on 53/80/443 unless something listens: either way
        // it answers.
        let Probe::Measured(gateway) = probe(IpAddr::from([127, 0, 0, 1])).await else {
            panic!("loopback always answers");
        };
        assert_eq!(gateway.sent, PROBES);
        assert_eq!(gateway.received, PROBES);
        assert!(gateway.rtt.unwrap().median_ms < 100.0);
    }
}
