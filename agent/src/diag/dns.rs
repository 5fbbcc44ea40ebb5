//! Name resolution through the system resolver.
//!
//! Looks up the names that matter to this device (the relay's name, plus any
//! the organisation lists) with the same resolver every application uses
//! (`getaddrinfo`), timing each. Comparing with the relay connection, which
//! is made by address once resolved, tells "DNS is broken" from "nothing
//! works".

use std::time::{Duration, Instant};

use deskside_diag::snapshot::{Dns, DnsLookup};
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

/// Looks up every name in `names` (with port 443 for getaddrinfo).
pub async fn probe(names: &[String], relay_reachable: Option<bool>) -> Probe<Dns> {
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
    Probe::Measured(Dns {
        lookups,
        relay_reachable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let Probe::Measured(dns) = probe(&["localhost".to_owned()], Some(true)).await else {
            panic!("measured");
        };
        assert!(dns.lookups[0].error.is_none(), "{:?}", dns.lookups[0]);
        assert!(matches!(
            probe(&[], None).await,
            Probe::NotApplicable { .. }
        ));
    }
}
