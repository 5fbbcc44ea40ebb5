//! Moving a client endpoint to a new network without a new connection.
//!
//! When a laptop moves from Wi‑Fi to a phone's hotspot, the address it sends
//! from changes. QUIC connections survive that (connection migration): the
//! client sends from its new address and the server (quinn's
//! `ServerConfig::migration`, on by default and on in the relay) validates
//! the new path and carries on. Waiting for the next packet to wander out is
//! slow and, with a socket bound to the old address, never happens; so a
//! [`Roamer`] watches the source address the OS would use towards the relay
//! and, on a change, moves the endpoint to a fresh socket at once
//! (`Endpoint::rebind`): quinn then switches every connection to a new
//! connection id and pings, so the relay learns the new path within one
//! round trip. The end-to-end session tunnel travels inside the relay
//! connection (its addresses are virtual), so it moves with it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How often a [`Roamer`] looks at the route: a switch is noticed within
/// this time (the check is a few system calls and sends nothing).
pub const ROAM_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// The local address the OS would send from towards `target` now (a UDP
/// socket "connected" to it; no packet is sent).
pub fn route_source(target: SocketAddr) -> io::Result<IpAddr> {
    let socket = std::net::UdpSocket::bind(unspecified(target))?;
    socket.connect(target)?;
    Ok(socket.local_addr()?.ip())
}

fn unspecified(target: SocketAddr) -> SocketAddr {
    if target.is_ipv6() {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    }
}

/// Moves `endpoint` to a new UDP socket bound to `bind` (port chosen by the
/// OS); every connection of the endpoint migrates to it. Falls back to a
/// plain socket where quinn-udp's setup is refused (Wine), as
/// [`crate::transport::client_endpoint`] does. Returns the new local address.
pub fn rebind(endpoint: &quinn::Endpoint, bind: SocketAddr) -> io::Result<SocketAddr> {
    let socket = std::net::UdpSocket::bind(bind)?;
    let local = socket.local_addr()?;
    match endpoint.rebind(socket) {
        Ok(()) => Ok(local),
        Err(refused) => {
            let socket = std::net::UdpSocket::bind(bind)?;
            let local = socket.local_addr()?;
            let plain = crate::plain_udp::PlainUdpSocket::new(socket)?;
            endpoint
                .rebind_abstract(Arc::new(plain))
                .map_err(|_| refused)?;
            Ok(local)
        }
    }
}

/// Where the source address comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// The OS's route towards the relay (the normal case): the endpoint is
    /// bound to the unspecified address and moved to a fresh socket when
    /// the route's source address changes.
    Route,
    /// The address written in this file (one IP address; for machines with
    /// several networks and for tests): the endpoint is bound to exactly
    /// that address and moved when the file changes. A missing or
    /// unreadable file means "the OS's route".
    Pinned(PathBuf),
}

/// A source-address change that moved the endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Moved {
    /// The source address before (`None` at the first look).
    pub from: Option<IpAddr>,
    /// The source address now.
    pub to: IpAddr,
    /// The new socket's local address.
    pub local: SocketAddr,
}

/// Watches the source address towards one target and moves an endpoint
/// when it changes.
#[derive(Debug)]
pub struct Roamer {
    endpoint: quinn::Endpoint,
    target: SocketAddr,
    source: Source,
    current: Option<IpAddr>,
}

impl Roamer {
    /// A roamer for `endpoint`'s connections to `target`. Nothing is done
    /// before the first [`Roamer::check`].
    pub fn new(endpoint: quinn::Endpoint, target: SocketAddr, source: Source) -> Roamer {
        Roamer {
            endpoint,
            target,
            source,
            current: None,
        }
    }

    /// The pinned address, if the source is a readable file holding one.
    fn pinned(&self) -> Option<IpAddr> {
        match &self.source {
            Source::Route => None,
            Source::Pinned(path) => std::fs::read_to_string(path).ok()?.trim().parse().ok(),
        }
    }

    /// Looks once: when the source address differs from the last one seen,
    /// moves the endpoint to a new socket and says so. At the first look
    /// the endpoint is moved only when the address is pinned (it starts on
    /// the unspecified address, which follows the route by itself).
    pub fn check(&mut self) -> io::Result<Option<Moved>> {
        let pinned = self.pinned();
        let now = match pinned {
            Some(ip) => ip,
            None => route_source(self.target)?,
        };
        let from = self.current;
        if from == Some(now) {
            return Ok(None);
        }
        let bind = match pinned {
            Some(ip) => SocketAddr::new(ip, 0),
            None => unspecified(self.target),
        };
        let first_unpinned = from.is_none() && pinned.is_none();
        let local = if first_unpinned {
            self.endpoint.local_addr()?
        } else {
            rebind(&self.endpoint, bind)?
        };
        self.current = Some(now);
        if first_unpinned {
            return Ok(None);
        }
        Ok(Some(Moved {
            from,
            to: now,
            local,
        }))
    }

    /// Checks every [`ROAM_CHECK_INTERVAL`], logging each move (and each
    /// failed look once until it recovers). It never returns: a closed
    /// endpoint does not end it, so its owner aborts the task (the agent's
    /// `link::run` does when it stops).
    pub async fn run(mut self) {
        let mut failing = false;
        loop {
            match self.check() {
                Ok(Some(moved)) => {
                    failing = false;
                    tracing::info!(
                        from = %moved.from.map_or_else(|| "none".to_owned(), |ip| ip.to_string()),
                        to = %moved.to,
                        local = %moved.local,
                        "network changed: moved the relay connection to a new socket (QUIC migration)"
                    );
                }
                Ok(None) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::debug!("cannot look at the route to {}: {e}", self.target);
                }
                Err(_) => {}
            }
            tokio::time::sleep(ROAM_CHECK_INTERVAL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_to_loopback_starts_on_loopback() {
        let ip = route_source("127.0.0.1:9".parse().unwrap()).unwrap();
        assert!(ip.is_loopback(), "{ip}");
    }

    #[tokio::test]
    async fn a_pinned_address_moves_the_endpoint_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("source-address");
        // The agent's own endpoint, which falls back to a plain UDP socket
        // where quinn-udp's setup is refused (Wine 8.0).
        let endpoint = crate::transport::client_endpoint("127.0.0.1:9".parse().unwrap()).unwrap();
        let mut roamer = Roamer::new(
            endpoint.clone(),
            "127.0.0.1:9".parse().unwrap(),
            Source::Pinned(file.clone()),
        );
        // No file: the route, unspecified bind kept.
        assert_eq!(roamer.check().unwrap(), None);
        assert!(endpoint.local_addr().unwrap().ip().is_unspecified());
        std::fs::write(&file, "127.0.0.2\n").unwrap();
        let moved = roamer.check().unwrap().expect("moved to 127.0.0.2");
        assert_eq!(moved.to, "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(endpoint.local_addr().unwrap(), moved.local);
        assert_eq!(roamer.check().unwrap(), None, "no change, no move");
        std::fs::write(&file, "127.0.0.3").unwrap();
        let moved = roamer.check().unwrap().expect("moved to 127.0.0.3");
        assert_eq!(moved.from, Some("127.0.0.2".parse().unwrap()));
        assert_eq!(endpoint.local_addr().unwrap().ip(), moved.to);
    }
}
