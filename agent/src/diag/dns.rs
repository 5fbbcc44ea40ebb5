//! Name resolution through the system resolver.
//!
//! Looks up the names that matter to this device (the relay's name, plus any
//! the organisation lists) with the same resolver every application uses
//! (`getaddrinfo`), timing each. Comparing with the relay connection, which
//! is made by address once resolved, tells "DNS is broken" from "nothing
//! works".

use std::time::{Duration, Instant};

use std::net::{IpAddr, SocketAddr};

use deskside_diag::snapshot::{DirectLookup, Dns, DnsLookup};
use deskside_diag::Probe;

/// Longest wait for one lookup.
const TIMEOUT: Duration = Duration::from_secs(3);

/// The host part of `host:port`, if it is a name rather than an address.
pub fn host_name(addr: &str) -> Option<String> {
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host.parse::<std::net::IpAddr>().is_err() && !host.is_empty()).then(|| host.to_owned())
}

/// Servers asked directly at most.
const DIRECT_SERVERS: usize = 2;

/// A DNS query for the A record of `name` with recursion desired, or `None`
/// when the name cannot be encoded (a label longer than 63 bytes, …).
pub fn query_packet(id: u16, name: &str) -> Option<Vec<u8>> {
    let mut packet = Vec::with_capacity(name.len() + 18);
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00]); // standard query, recursion desired
    packet.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.push(0);
    packet.extend_from_slice(&[0, 1, 0, 1]); // type A, class IN
    (packet.len() <= 512).then_some(packet)
}

/// The number of answers in a response to query `id`, or why it failed.
pub fn answer_count(id: u16, packet: &[u8]) -> Result<u16, String> {
    if packet.len() < 12 || packet[..2] != id.to_be_bytes() {
        return Err("not an answer to this query".to_owned());
    }
    if packet[2] & 0x80 == 0 {
        return Err("not a response".to_owned());
    }
    match packet[3] & 0x0f {
        0 => Ok(u16::from_be_bytes([packet[6], packet[7]])),
        2 => Err("server failure (SERVFAIL)".to_owned()),
        3 => Err("no such name (NXDOMAIN)".to_owned()),
        5 => Err("query refused (REFUSED)".to_owned()),
        other => Err(format!("error code {other}")),
    }
}

/// Asks `server` for `name` directly over UDP.
pub async fn direct_lookup(server: SocketAddr, name: &str) -> DirectLookup {
    let mut lookup = DirectLookup {
        server: server.ip().to_string(),
        name: name.to_owned(),
        ..DirectLookup::default()
    };
    let id = rand::random::<u16>();
    let Some(query) = query_packet(id, name) else {
        lookup.error = Some("the name cannot be put in a DNS query".to_owned());
        return lookup;
    };
    let bind: SocketAddr = if server.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let outcome = async {
        let socket = tokio::net::UdpSocket::bind(bind).await?;
        socket.connect(server).await?;
        let started = Instant::now();
        socket.send(&query).await?;
        let mut buffer = [0u8; 1500];
        loop {
            let n = socket.recv(&mut buffer).await?;
            // Ignore stray datagrams that do not answer this query.
            if buffer[..n.min(2)] == id.to_be_bytes() {
                return Ok::<_, std::io::Error>((started.elapsed(), buffer[..n].to_vec()));
            }
        }
    };
    match tokio::time::timeout(TIMEOUT, outcome).await {
        Err(_) => lookup.error = Some(format!("no answer within {} s", TIMEOUT.as_secs())),
        Ok(Err(e)) => lookup.error = Some(e.to_string()),
        Ok(Ok((elapsed, answer))) => match answer_count(id, &answer) {
            Ok(count) => {
                lookup.duration_ms = Some(elapsed.as_secs_f64() * 1000.0);
                lookup.answers = count;
            }
            Err(e) => lookup.error = Some(e),
        },
    }
    lookup
}

/// Looks up every name in `names` through the system resolver (port 443
/// for getaddrinfo), and again straight at up to two of `servers` that are
/// not local stubs.
pub async fn probe(
    names: &[String],
    servers: &[IpAddr],
    relay_reachable: Option<bool>,
) -> Probe<Dns> {
    if names.is_empty() {
        return Probe::not_applicable(
            "the relay is configured by address and no other name is listed to test",
        );
    }
    let mut lookups = Vec::new();
    for name in names {
        let started = Instant::now();
        let result = tokio::time::timeout(TIMEOUT, tokio::net::lookup_host((name.as_str(), 443)))
            .await
            .map(|r| r.map(|addrs| addrs.count()));
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        lookups.push(match result {
            Ok(Ok(count)) if count > 0 => DnsLookup {
                name: name.clone(),
                duration_ms: Some(elapsed),
                error: None,
            },
            Ok(Ok(_)) => DnsLookup {
                name: name.clone(),
                duration_ms: None,
                error: Some("no address returned".to_owned()),
            },
            Ok(Err(e)) => DnsLookup {
                name: name.clone(),
                duration_ms: None,
                error: Some(e.to_string()),
            },
            Err(_) => DnsLookup {
                name: name.clone(),
                duration_ms: None,
                error: Some(format!("no answer within {} s", TIMEOUT.as_secs())),
            },
        });
    }
    let mut direct = Vec::new();
    for server in servers
        .iter()
        .filter(|ip| !ip.is_loopback())
        .take(DIRECT_SERVERS)
    {
        for name in names {
            direct.push(direct_lookup(SocketAddr::new(*server, 53), name).await);
        }
    }
    Probe::Measured(Dns {
        lookups,
        direct,
        relay_reachable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_encoded_and_answers_decoded() {
        let query = query_packet(0xbeef, "relay.example.org").unwrap();
        assert_eq!(&query[..4], &[0xbe, 0xef, 0x01, 0x00]);
        assert_eq!(&query[12..18], b"\x05relay");
        assert_eq!(&query[query.len() - 5..], &[0, 0, 1, 0, 1]);
        assert!(query_packet(1, &"a".repeat(64)).is_none());
        assert!(query_packet(1, "a..b").is_none());
        let mut answer = query.clone();
        answer[2] |= 0x80;
        answer[7] = 2;
        assert_eq!(answer_count(0xbeef, &answer), Ok(2));
        answer[3] = 3;
        assert!(answer_count(0xbeef, &answer)
            .unwrap_err()
            .contains("NXDOMAIN"));
        assert!(answer_count(0xbeee, &answer).is_err());
        assert!(
            answer_count(0xbeef, &query).is_err(),
            "a query is not a response"
        );
    }

    #[tokio::test]
    async fn a_server_is_asked_directly_and_silence_is_an_error() {
        // A tiny DNS server on loopback that answers every query with one
        // address.
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buffer = [0u8; 512];
            while let Ok((n, from)) = server.recv_from(&mut buffer).await {
                let mut answer = buffer[..n].to_vec();
                answer[2] |= 0x80;
                answer[7] = 1;
                let _ = server.send_to(&answer, from).await;
            }
        });
        let lookup = direct_lookup(addr, "relay.example.org").await;
        assert_eq!(lookup.error, None);
        assert_eq!(lookup.answers, 1);
        assert!(lookup.duration_ms.is_some());
        // Nothing listens here: an ICMP port-unreachable or a timeout.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dead = silent.local_addr().unwrap();
        drop(silent);
        assert!(direct_lookup(dead, "relay.example.org")
            .await
            .error
            .is_some());
    }

    #[test]
    fn only_names_are_looked_up() {
        assert_eq!(
            host_name("relay.example.org:4433").as_deref(),
            Some("relay.example.org")
        );
        assert_eq!(host_name("127.0.0.1:4433"), None);
        assert_eq!(host_name("[::1]:4433"), None);
        assert_eq!(host_name("localhost"), Some("localhost".to_owned()));
    }

    #[tokio::test]
    async fn localhost_resolves_and_nothing_to_test_is_not_applicable() {
        let Probe::Measured(dns) = probe(&["localhost".to_owned()], &[], Some(true)).await else {
            panic!("measured");
        };
        assert!(dns.lookups[0].error.is_none(), "{:?}", dns.lookups[0]);
        assert!(dns.direct.is_empty(), "no server listed, none asked");
        assert!(matches!(
            probe(&[], &[], None).await,
            Probe::NotApplicable { .. }
        ));
    }
}
