//! The home router and the VPN server when a full-tunnel VPN holds the
//! default route, decided from the IPv4 route table (`/proc/net/route`
//! parsed by [`super::proc`]).
//!
//! A full-tunnel VPN sends everything into its tunnel in one of two ways:
//! a default route through the tunnel with a better metric than the
//! physical one (NetworkManager, many clients), or OpenVPN's `def1`, two
//! halves 0.0.0.0/1 and 128.0.0.0/1 that beat the untouched default route
//! by prefix length. Either way it adds a host route to its server through
//! the home router, so the encrypted packets still leave by the physical
//! interface. WireGuard's `wg-quick` uses a separate routing table and
//! leaves the main table alone, so the main table's default route is still
//! the home router's.
//!
//! The home gateway is the router on the physical interface: the gateway
//! probe must measure that hop, not the tunnel's far end (whose loss would
//! be blamed on the home network). Pure: no I/O.

use std::net::Ipv4Addr;

use super::proc::{default_gateway, route_for, Route, RTF_HOST};

/// An address on the public internet, used to ask the table where general
/// traffic goes (any address outside private ranges would do).
const INTERNET: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The other half of the address space, for OpenVPN's two /1 routes.
const INTERNET_HIGH: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

/// What the route table says about a full-tunnel VPN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tunnel {
    /// The tunnel interface that carries general traffic.
    pub interface: String,
    /// The home router on the physical interface, and that interface.
    pub home_gateway: Option<(String, Ipv4Addr)>,
    /// The VPN server: the host route through the home router.
    pub server: Option<Ipv4Addr>,
}

/// `Some` when general traffic goes into a tunnel interface (`is_tunnel`
/// names them); `None` when it leaves by a physical interface (no VPN, a
/// split-tunnel VPN, or WireGuard's separate table).
pub fn full_tunnel(routes: &[Route], is_tunnel: impl Fn(&str) -> bool) -> Option<Tunnel> {
    let interface = [INTERNET, INTERNET_HIGH]
        .into_iter()
        .filter_map(|address| route_for(routes, address))
        .find(|interface| is_tunnel(interface))?
        .to_owned();
    let physical: Vec<Route> = routes
        .iter()
        .filter(|r| !is_tunnel(&r.interface))
        .cloned()
        .collect();
    // The physical default route when the VPN left it in place; else the
    // router the VPN server's host route goes through.
    let home_gateway = default_gateway(&physical).or_else(|| {
        physical
            .iter()
            .filter(|r| r.is_usable() && r.is_via_gateway())
            .min_by_key(|r| (r.flags & RTF_HOST == 0, r.metric.unwrap_or(u32::MAX)))
            .map(|r| (r.interface.clone(), r.gateway))
    });
    let server = physical
        .iter()
        .filter(|r| r.is_usable() && r.is_via_gateway() && r.flags & RTF_HOST != 0)
        .find(|r| {
            home_gateway
                .as_ref()
                .is_none_or(|(_, gateway)| *gateway == r.gateway)
        })
        .map(|r| r.destination);
    Some(Tunnel {
        interface,
        home_gateway,
        server,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::parse::proc::parse_routes;

    const HEADER: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";
    const HOME: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
    const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

    fn tunnel_names(name: &str) -> bool {
        name.starts_with("tun") || name.starts_with("wg")
    }

    fn table(lines: &str) -> Vec<Route> {
        parse_routes(&format!("{HEADER}{lines}"))
    }

    /// `ip route`: default via 10.8.0.1 dev tun0 metric 50; default via
    /// 192.168.1.1 dev wlan0 metric 600; 10.8.0.0/24 dev tun0;
    /// 203.0.113.7 via 192.168.1.1 dev wlan0; 192.168.1.0/24 dev wlan0.
    const TUNNEL_DEFAULT: &str = "\
tun0\t00000000\t0100080A\t0003\t0\t0\t50\t00000000\t0\t0\t0
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
tun0\t0000080A\t00000000\t0001\t0\t0\t50\t00FFFFFF\t0\t0\t0
wlan0\t077100CB\t0101A8C0\t0007\t0\t0\t0\tFFFFFFFF\t0\t0\t0
wlan0\t0001A8C0\t00000000\t0001\t0\t0\t600\t00FFFFFF\t0\t0\t0
";

    #[test]
    fn a_tunnel_default_route_does_not_hide_the_home_router() {
        let routes = table(TUNNEL_DEFAULT);
        // Today's choice, the default route with the best metric, is the
        // tunnel's far end: probing it measures the VPN, not the home.
        assert_eq!(
            default_gateway(&routes),
            Some(("tun0".to_owned(), Ipv4Addr::new(10, 8, 0, 1)))
        );
        let tunnel = full_tunnel(&routes, tunnel_names).expect("a full tunnel");
        assert_eq!(tunnel.interface, "tun0");
        assert_eq!(tunnel.home_gateway, Some(("wlan0".to_owned(), HOME)));
        assert_eq!(tunnel.server, Some(SERVER));
    }

    #[test]
    fn openvpn_def1_halves_and_a_removed_default_still_find_the_home_router() {
        // `redirect-gateway def1`: 0/1 and 128/1 via 10.8.0.1 dev tun0; the
        // physical default route stays.
        let def1 = table(
            "\
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
tun0\t00000000\t0100080A\t0003\t0\t0\t0\t00000080\t0\t0\t0
tun0\t00000080\t0100080A\t0003\t0\t0\t0\t00000080\t0\t0\t0
wlan0\t077100CB\t0101A8C0\t0007\t0\t0\t0\tFFFFFFFF\t0\t0\t0
",
        );
        let tunnel = full_tunnel(&def1, tunnel_names).expect("def1 is a full tunnel");
        assert_eq!(tunnel.home_gateway, Some(("wlan0".to_owned(), HOME)));
        assert_eq!(tunnel.server, Some(SERVER));
        // A client that deleted the physical default route: only the host
        // route to its server names the home router.
        let replaced = table(
            "\
tun0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0
wlan0\t077100CB\t0101A8C0\t0007\t0\t0\t0\tFFFFFFFF\t0\t0\t0
wlan0\t0001A8C0\t00000000\t0001\t0\t0\t600\t00FFFFFF\t0\t0\t0
",
        );
        assert_eq!(default_gateway(&replaced), None, "today: no gateway at all");
        let tunnel = full_tunnel(&replaced, tunnel_names).expect("a full tunnel");
        assert_eq!(tunnel.home_gateway, Some(("wlan0".to_owned(), HOME)));
        assert_eq!(tunnel.server, Some(SERVER));
    }

    #[test]
    fn no_vpn_split_tunnels_and_wireguard_tables_are_not_full_tunnels() {
        // No VPN.
        let plain = table("wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n");
        assert_eq!(full_tunnel(&plain, tunnel_names), None);
        // Split tunnel: only 10.0.0.0/8 into wg0. (wg-quick's full tunnel
        // lives in table 51820, which /proc/net/route does not show: the
        // main table looks like this too.)
        let split = table(
            "\
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
wg0\t0000000A\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0
",
        );
        assert_eq!(full_tunnel(&split, tunnel_names), None);
        assert_eq!(full_tunnel(&[], tunnel_names), None);
    }
}
