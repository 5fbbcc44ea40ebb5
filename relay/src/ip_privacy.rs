//! Public IP addresses are personal data (a home connection's address
//! locates the employee): the relay stores them truncated, IPv4 to its /24
//! and IPv6 to its /48, unless the organisation's policy sets
//! `store_full_ip_addresses`. Private, loopback, link-local and shared
//! (CGNAT) addresses say nothing about where someone lives and are kept.
//!
//! Applied to stored snapshots (every string in the JSON that is an address,
//! an `address/prefix` or an `address:port`) and to the addresses of
//! devices in their row and in audit rows. Pure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Whether `ip` is routable on the internet (so it can locate someone).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                // 100.64.0.0/10, carrier-grade NAT.
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fe80::/10 link-local, fc00::/7 unique local.
                || (first & 0xffc0) == 0xfe80
                || (first & 0xfe00) == 0xfc00)
        }
    }
}

/// `ip` with its host part zeroed: /24 for IPv4, /48 for IPv6.
pub fn truncate(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return truncate(IpAddr::V4(v4));
            }
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
        }
    }
}

/// `text` truncated if it is a public address (`ip`, `ip:port`, `[ip]:port`
/// or `ip/prefix`); `None` if it is not an address or needs no change.
///
/// A truncated address always carries the prefix it was cut to
/// (`203.0.113.0/24`, `[2001:db8:1234::/48]:4433`), so nobody reading a
/// stored snapshot takes it for a real host: a DNS server shown as
/// `8.8.8.0` would send a technician after a resolver that does not exist.
pub fn truncate_text(text: &str) -> Option<String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return is_public(ip).then(|| network_text(ip));
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return is_public(socket.ip()).then(|| match socket {
            SocketAddr::V4(_) => format!("{}:{}", network_text(socket.ip()), socket.port()),
            SocketAddr::V6(_) => format!("[{}]:{}", network_text(socket.ip()), socket.port()),
        });
    }
    let (ip, prefix) = text.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    prefix.parse::<u8>().ok()?;
    // What is left is the truncated network, whatever the prefix was.
    is_public(ip).then(|| network_text(ip))
}

/// `ip` truncated, with the prefix it was truncated to.
fn network_text(ip: IpAddr) -> String {
    let truncated = truncate(ip);
    let bits = if truncated.is_ipv4() { 24 } else { 48 };
    format!("{truncated}/{bits}")
}

/// Truncates every public address among the strings of `value`.
pub fn truncate_in_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) => {
            if let Some(short) = truncate_text(text) {
                *text = short;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(truncate_in_json),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(truncate_in_json),
        _ => {}
    }
}

/// The snapshot JSON with public addresses truncated (unchanged if it does
/// not parse: it is refused later anyway).
pub fn truncate_snapshot(snapshot_json: Vec<u8>) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(&snapshot_json) {
        Ok(mut value) => {
            truncate_in_json(&mut value);
            serde_json::to_vec(&value).unwrap_or(snapshot_json)
        }
        Err(_) => snapshot_json,
    }
}

/// Whether the organisation settings (JSON text) ask for full addresses.
pub fn full_addresses_allowed(settings_json: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(settings_json)
        .ok()
        .and_then(|v| v.get("store_full_ip_addresses").and_then(|f| f.as_bool()))
        .unwrap_or(false)
}

/// `address` as the settings allow it to be stored.
pub fn address_to_store(settings_json: &str, address: &str) -> String {
    if full_addresses_allowed(settings_json) {
        return address.to_owned();
    }
    truncate_text(address).unwrap_or_else(|| address.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A test should panic on an unexpected error.
mod tests {
    use super::*;

    #[test]
    fn public_addresses_are_truncated_and_private_ones_kept() {
        let cases = [
            ("203.0.113.77", Some("203.0.113.0/24")),
            ("8.8.8.8", Some("8.8.8.0/24")),
            ("203.0.113.77:50123", Some("203.0.113.0/24:50123")),
            ("198.51.100.9/24", Some("198.51.100.0/24")),
            ("198.51.100.9/16", Some("198.51.100.0/24")),
            ("2001:db8:1234:5678:9abc::1", Some("2001:db8:1234::/48")),
            (
                "[2001:db8:1234:5678::1]:4433",
                Some("[2001:db8:1234::/48]:4433"),
            ),
            ("2001:db8:1234:5678::1/64", Some("2001:db8:1234::/48")),
            ("::ffff:203.0.113.77", Some("203.0.113.0/24")),
            ("192.168.1.20", None),
            ("10.0.0.1:4433", None),
            ("100.64.3.4", None),
            ("127.0.0.1:5000", None),
            ("fe80::1", None),
            ("fd12:3456::1", None),
            ("wlan0", None),
            ("1.2.3", None),
        ];
        for (input, expected) in cases {
            assert_eq!(truncate_text(input).as_deref(), expected, "{input}");
        }
    }

    #[test]
    fn snapshots_and_addresses_follow_the_policy() {
        let snapshot = serde_json::json!({
            "network": {"measured": {"interfaces": [{"addresses": ["192.168.1.5/24", "2a01:e0a:12:3456:1:2:3:4/64"]}],
                                      "dns_servers": ["9.9.9.9"]}},
            "path": {"public_ip": "81.2.69.160"}
        });
        let out: serde_json::Value =
            serde_json::from_slice(&truncate_snapshot(serde_json::to_vec(&snapshot).unwrap()))
                .unwrap();
        let text = out.to_string();
        assert!(
            text.contains("192.168.1.5/24") && text.contains("2a01:e0a:12::/48"),
            "{text}"
        );
        assert!(
            text.contains("81.2.69.0/24") && !text.contains("81.2.69.160"),
            "{text}"
        );
        assert_eq!(
            address_to_store("{}", "81.2.69.160:4000"),
            "81.2.69.0/24:4000"
        );
        assert_eq!(
            address_to_store(r#"{"store_full_ip_addresses":true}"#, "81.2.69.160:4000"),
            "81.2.69.160:4000"
        );
    }
}
