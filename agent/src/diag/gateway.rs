//! Reachability of the home gateway.
//!
//! First choice: ICMP echo through an unprivileged ping socket, where the
//! OS allows it (Linux: the process's group in `net.ipv4.ping_group_range`;
//! Debian's default `1 0` allows nobody; Windows: `IcmpSendEcho2`, open to
//! every program). Otherwise — or when the router
//! ignores pings — a TCP connection attempt to ports routers commonly answer
//! on: a completed handshake *or a refusal (RST)* both prove the router
//! answered, and the time to either is a round trip. Silence on every probe
//! is reported as unknown, never as a fault: a router may drop both.

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

/// An ICMP echo request (type 8) with `seq`, checksummed. On ping sockets
/// the kernel replaces the identifier with the socket's own.
pub fn echo_request(seq: u16) -> [u8; 16] {
    let mut packet = [0u8; 16];
    packet[0] = 8; // echo request
    packet[6..8].copy_from_slice(&seq.to_be_bytes());
    packet[8..16].copy_from_slice(b"deskside");
    let checksum = internet_checksum(&packet);
    packet[2..4].copy_from_slice(&checksum.to_be_bytes());
    packet
}

/// The sequence number of an ICMP echo reply (type 0), if `packet` is one.
pub fn echo_reply_seq(packet: &[u8]) -> Option<u16> {
    (packet.len() >= 8 && packet[0] == 0 && packet[1] == 0)
        .then(|| u16::from_be_bytes([packet[6], packet[7]]))
}

/// RFC 1071 ones'-complement checksum.
fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| {
            u32::from(u16::from_be_bytes([
                pair[0],
                pair.get(1).copied().unwrap_or(0),
            ]))
        })
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Pings `gateway` with `IcmpSendEcho2`, which Windows allows without
/// privileges. `Err` when it refuses; `Ok` with one round trip per probe
/// (`None` = no reply).
#[cfg(windows)]
fn icmp_probe(gateway: std::net::Ipv4Addr) -> std::io::Result<Vec<Option<f64>>> {
    super::platform::icmp_echo(gateway, PROBES, INTERVAL, TIMEOUT)
}

/// Pings `gateway` with an unprivileged ICMP socket. `Err` when the OS does
/// not allow it; `Ok` with one round trip per probe (`None` = no reply).
#[cfg(not(windows))]
fn icmp_probe(gateway: std::net::Ipv4Addr) -> std::io::Result<Vec<Option<f64>>> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::io::Read as _;
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4))?;
    socket.set_read_timeout(Some(TIMEOUT))?;
    socket.connect(&std::net::SocketAddrV4::new(gateway, 0).into())?;
    let mut samples = Vec::new();
    let mut buffer = [0u8; 128];
    for seq in 0..PROBES as u16 {
        let sent = Instant::now();
        socket.send(&echo_request(seq))?;
        let answer = loop {
            match (&socket).read(&mut buffer) {
                Ok(n) if echo_reply_seq(&buffer[..n]) == Some(seq) => break Some(sent.elapsed()),
                Ok(_) => continue, // a late reply to an earlier probe
                Err(_) => break None,
            }
        };
        samples.push(answer.map(|rtt| rtt.as_secs_f64() * 1000.0));
        std::thread::sleep(INTERVAL);
    }
    Ok(samples)
}

/// Probes `gateway`: ICMP where allowed and answered, else TCP.
pub async fn probe(gateway: IpAddr) -> Probe<Gateway> {
    if let IpAddr::V4(v4) = gateway {
        let pinged = tokio::task::spawn_blocking(move || icmp_probe(v4)).await;
        match pinged {
            Ok(Ok(samples)) if samples.iter().any(Option::is_some) => {
                let answered: Vec<f64> = samples.iter().flatten().copied().collect();
                return Probe::Measured(Gateway {
                    address: gateway.to_string(),
                    method: "icmp".to_owned(),
                    sent: samples.len() as u32,
                    received: answered.len() as u32,
                    rtt: rtt_stats(&answered),
                });
            }
            Ok(Ok(_)) => {
                tracing::debug!("the gateway ignores pings; trying TCP");
                return tcp(gateway, true).await;
            }
            Ok(Err(e)) => tracing::debug!("unprivileged ICMP is not available ({e}); trying TCP"),
            Err(e) => tracing::debug!("the ping task failed ({e}); trying TCP"),
        }
    }
    tcp(gateway, false).await
}

/// The TCP fallback; `pinged` when pings were sent and none was answered.
async fn tcp(gateway: IpAddr, pinged: bool) -> Probe<Gateway> {
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
        if pinged {
            return Probe::unknown(format!(
                "the gateway {gateway} answered no ping and no TCP probe on ports 53, 80 or 443; it may still be fine"
            ));
        }
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

    #[test]
    fn echo_requests_carry_a_valid_checksum_and_replies_are_recognised() {
        let packet = echo_request(0x0102);
        assert_eq!(packet[0], 8);
        assert_eq!(&packet[6..8], &[1, 2]);
        // A packet including its own checksum sums to zero.
        assert_eq!(internet_checksum(&packet), 0);
        let mut reply = packet;
        reply[0] = 0;
        assert_eq!(echo_reply_seq(&reply), Some(0x0102));
        assert_eq!(echo_reply_seq(&packet), None, "a request is not a reply");
        assert_eq!(echo_reply_seq(&[0, 0, 0]), None);
        // RFC 1071's worked example: 0001 f203 f4f5 f6f7 sums to ddf2.
        assert_eq!(
            internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
    }

    #[test]
    fn pings_loopback_where_the_os_allows_unprivileged_icmp() {
        // Where ping sockets are not allowed (Debian's default), the probe
        // must fail cleanly so the caller falls back to TCP; where they are
        // (`ip netns exec NS` with `net.ipv4.ping_group_range = 0 2147483647`),
        // loopback answers every ping.
        match icmp_probe(std::net::Ipv4Addr::LOCALHOST) {
            Err(e) => {
                eprintln!("unprivileged ICMP not allowed here ({e}): the TCP fallback is used")
            }
            Ok(samples) => {
                assert_eq!(samples.len(), PROBES as usize);
                assert!(samples.iter().all(Option::is_some), "{samples:?}");
            }
        }
    }

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
