//! Parked agents on the relay (see [`deskside_protocol::park`]): an idle
//! agent's presence kept by small authenticated datagrams instead of a QUIC
//! connection.
//!
//! - [`ParkSecret`] issues tickets and derives each ticket's key and device,
//!   so the relay keeps no key per agent.
//! - [`DemuxSocket`] sits between quinn and the UDP socket: park datagrams
//!   (first byte below `0x40`) go to [`run`], everything else to quinn.
//! - [`run`] answers heartbeats, wakes parked agents that have commands
//!   waiting ([`crate::presence::Presence::commands`]), and takes parked
//!   devices offline once their heartbeats stop for the idle timeout.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use deskside_protocol::park::{self as wire, Heartbeat, Reply, Sealed, Ticket, HEARTBEAT_LEN};
use deskside_protocol::DeviceId;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::sync::mpsc;

use crate::shared::Shared;

/// How long a ticket is taken; after it the agent attaches again (so its
/// certificate, revocation and device information are checked again).
pub const TICKET_LIFETIME_SECS: u32 = 6 * 3600;

/// How long commands wait for a woken agent to attach before they fail.
pub const WAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Heartbeats waiting for [`run`]; more are dropped (the agent sends the
/// next one a keep-alive later, and only a lost reply for the whole idle
/// timeout counts).
const QUEUE: usize = 16_384;

/// Newly parked agents (connections closed) after which freed memory is
/// returned to the system ([`crate::trim`]), at most every
/// [`TRIM_INTERVAL`].
const TRIM_AFTER_PARKED: usize = 1000;
const TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// How often [`run`] sweeps: expiry, wakes sent again, commands timed out.
const SWEEP: Duration = Duration::from_secs(1);

/// The relay's secret behind park tickets, derived from the key kept in
/// its data directory (so tickets stay valid across a restart, where the
/// relay answers them with [`Reply::REATTACH`]).
pub struct ParkSecret {
    key: ring::hmac::Key,
}

impl fmt::Debug for ParkSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ParkSecret(..)")
    }
}

impl ParkSecret {
    /// The park secret derived from the data directory's endpoint secret
    /// ([`crate::tls_files::endpoint_secret`]).
    pub fn derive_from(endpoint_secret: &[u8]) -> ParkSecret {
        let master = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, endpoint_secret);
        let derived = ring::hmac::sign(&master, b"deskside park tickets");
        ParkSecret {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref()),
        }
    }

    /// A secret for tests.
    #[cfg(test)]
    pub fn for_tests(seed: u8) -> ParkSecret {
        ParkSecret {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[seed; 32]),
        }
    }

    fn derive(&self, label: &[u8], data: &[u8]) -> [u8; 32] {
        let mut context = ring::hmac::Context::with_key(&self.key);
        context.update(label);
        context.update(data);
        let mut out = [0u8; 32];
        out.copy_from_slice(context.sign().as_ref());
        out
    }

    fn mask(&self, random: [u8; 12]) -> [u8; 12] {
        let mut mask = [0u8; 12];
        mask.copy_from_slice(&self.derive(b"mask", &random)[..12]);
        mask
    }

    /// A new ticket for `device`, and its key.
    pub fn issue(&self, device: DeviceId, now_secs: i64) -> anyhow::Result<(Ticket, [u8; 32])> {
        let random = crate::secrets::random_bytes::<12>()
            .map_err(|_| anyhow::anyhow!("the OS random generator failed"))?;
        let sealed = Sealed {
            device,
            issued_secs: u32::try_from(now_secs).unwrap_or(u32::MAX),
        };
        let ticket = wire::seal(random, sealed, self.mask(random));
        Ok((ticket, self.key_of(&ticket)))
    }

    /// The key of `ticket`'s datagrams.
    pub fn key_of(&self, ticket: &Ticket) -> [u8; 32] {
        self.derive(b"key", ticket)
    }

    /// What `ticket` says (genuine only if a datagram's MAC checked with
    /// [`ParkSecret::key_of`] matched).
    pub fn open(&self, ticket: &Ticket) -> Sealed {
        wire::unseal(ticket, self.mask(wire::random_part(ticket)))
    }

    /// A reply to the agent holding `ticket`.
    pub fn reply(&self, ticket: &Ticket, counter: u64, flags: u8) -> [u8; wire::REPLY_LEN] {
        Reply { counter, flags }.encode(deskside_net::park::mac(&self.key_of(ticket)))
    }
}

/// A heartbeat as the socket saw it.
#[derive(Debug)]
pub struct Received {
    bytes: [u8; HEARTBEAT_LEN],
    from: SocketAddr,
    to: Option<IpAddr>,
}

/// Where a reply goes: the agent's address, and the relay address the
/// heartbeat came to (the reply leaves from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The agent's address.
    pub to: SocketAddr,
    /// The relay's address the agent used.
    pub from_ip: Option<IpAddr>,
}

/// The relay's UDP socket as quinn sees it, minus the park datagrams.
#[derive(Debug)]
pub struct DemuxSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    heartbeats: mpsc::Sender<Received>,
}

impl DemuxSocket {
    /// Wraps `inner`; park datagrams go to the returned receiver (for
    /// [`run`]).
    pub fn new(inner: Arc<dyn AsyncUdpSocket>) -> (Arc<DemuxSocket>, mpsc::Receiver<Received>) {
        let (heartbeats, receiver) = mpsc::channel(QUEUE);
        (Arc::new(DemuxSocket { inner, heartbeats }), receiver)
    }

    /// Sends a park datagram.
    pub fn send(&self, route: Route, bytes: &[u8]) {
        let transmit = Transmit {
            destination: route.to,
            ecn: None,
            contents: bytes,
            segment_size: None,
            src_ip: route.from_ip,
        };
        if let Err(e) = self.inner.try_send(&transmit) {
            // Lost like any datagram: the agent's next heartbeat gets
            // another answer, and wakes are sent again every second.
            tracing::debug!(to = %route.to, "cannot send a park datagram: {e}");
        }
    }

    /// Takes the park datagrams out of one received message (one datagram,
    /// or several of one size when the kernel coalesced them).
    fn divert(&self, data: &[u8], meta: &RecvMeta) -> bool {
        if !wire::is_park_datagram(data) {
            return false;
        }
        let stride = meta.stride.max(1);
        for datagram in data.chunks(stride) {
            let Ok(bytes) = <[u8; HEARTBEAT_LEN]>::try_from(datagram) else {
                tracing::trace!(from = %meta.addr, len = datagram.len(), "dropping a park datagram of the wrong size");
                continue;
            };
            let received = Received {
                bytes,
                from: meta.addr,
                to: meta.dst_ip,
            };
            if self.heartbeats.try_send(received).is_err() {
                tracing::debug!(from = %meta.addr, "park queue full: heartbeat dropped");
            }
        }
        true
    }
}

impl AsyncUdpSocket for DemuxSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Arc::clone(&self.inner).create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            let received = match self.inner.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(received)) => received,
                other => return other,
            };
            // Keep quinn's messages at the front, in order; a buffer and
            // its meta move together (quinn reads them pairwise).
            let mut kept = 0;
            for index in 0..received {
                let len = meta[index].len.min(bufs[index].len());
                if self.divert(&bufs[index][..len], &meta[index]) {
                    continue;
                }
                if kept != index {
                    bufs.swap(kept, index);
                    meta.swap(kept, index);
                }
                kept += 1;
            }
            if kept > 0 || received == 0 {
                return Poll::Ready(Ok(kept));
            }
            // Only park datagrams: read on, so quinn is woken again only
            // for its own packets.
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

/// What presence needs to reach parked agents: the socket and the secret.
#[derive(Debug)]
pub struct Waker {
    /// The relay's socket.
    pub socket: Arc<DemuxSocket>,
    /// The ticket secret.
    pub secret: ParkSecret,
}

impl Waker {
    /// Sends the agent holding `ticket` a reply with `flags`.
    pub fn send(&self, route: Route, ticket: &Ticket, counter: u64, flags: u8) {
        self.socket
            .send(route, &self.secret.reply(ticket, counter, flags));
    }
}

/// Answers heartbeats and keeps parked presence until shutdown.
pub async fn run(shared: Arc<Shared>, mut heartbeats: mpsc::Receiver<Received>) {
    let Some(waker) = shared.presence.waker() else {
        return;
    };
    let idle = shared.directory.idle_timeout();
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopping = shared.tasks.stopping();
    tokio::pin!(stopping);
    // Parked count at the last trim: once many connections gave way to
    // parked entries, their memory goes back to the system.
    let mut parked_at_trim = 0usize;
    let mut last_trim = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = &mut stopping => break,
            received = heartbeats.recv() => match received {
                Some(received) => handle(&shared, waker, received),
                None => break,
            },
            _ = sweep.tick() => {
                let parked = shared.presence.parked_count();
                if parked >= parked_at_trim + TRIM_AFTER_PARKED && last_trim.elapsed() >= TRIM_INTERVAL {
                    parked_at_trim = parked;
                    last_trim = std::time::Instant::now();
                    let started = std::time::Instant::now();
                    let _ = tokio::task::spawn_blocking(crate::trim::release_free_memory).await;
                    tracing::debug!(parked, took_ms = started.elapsed().as_millis() as u64, "returned closed connections' memory to the system");
                }
                parked_at_trim = parked_at_trim.min(parked);
                let swept = shared.presence.sweep(std::time::Instant::now(), idle, WAKE_TIMEOUT);
                for (route, ticket, counter) in swept.wakes {
                    waker.send(route, &ticket, counter, Reply::WAKE);
                }
                if !swept.offline.is_empty() {
                    for device in &swept.offline {
                        shared.directory.released(*device);
                        tracing::info!(device = %device, "parked device offline: no heartbeat within the idle timeout");
                    }
                    let now = crate::clock::now_secs();
                    let offline = swept.offline;
                    if let Ok(Err(e)) = shared
                        .store_as(crate::metrics::StoreOp::LastSeen, move |store| store.mark_seen(&offline, now))
                        .await
                    {
                        tracing::warn!("cannot record last-seen times: {e}");
                    }
                }
            }
        }
    }
    // Parked agents learn of the stop at once and attach again (here
    // after the restart, or to another relay).
    for (route, ticket, counter) in shared.presence.unpark_all() {
        waker.send(route, &ticket, counter, Reply::REATTACH);
    }
}

fn handle(shared: &Shared, waker: &Waker, received: Received) {
    let Ok(ticket) = Heartbeat::ticket_of(&received.bytes) else {
        return;
    };
    let key = waker.secret.key_of(&ticket);
    let Ok(heartbeat) = Heartbeat::decode(&received.bytes, deskside_net::park::mac(&key)) else {
        tracing::trace!(from = %received.from, "heartbeat with a wrong MAC dropped");
        return;
    };
    let sealed = waker.secret.open(&ticket);
    let route = Route {
        to: received.from,
        from_ip: received.to,
    };
    let now_secs = crate::clock::now_secs();
    let expired =
        now_secs.saturating_sub(i64::from(sealed.issued_secs)) > i64::from(TICKET_LIFETIME_SECS);
    let outcome = if expired {
        shared.presence.forget_parked(sealed.device, &ticket);
        crate::presence::Heard::Unknown
    } else {
        shared
            .presence
            .heartbeat(sealed.device, &heartbeat, route, std::time::Instant::now())
    };
    match outcome {
        crate::presence::Heard::Taken {
            wake,
            refresh,
            moved,
        } => {
            if let Some(from) = moved {
                tracing::info!(device = %sealed.device, %from, to = %route.to, "parked agent moved to a new network address");
            }
            let mut flags = 0;
            if wake {
                flags |= Reply::WAKE;
            }
            if refresh {
                flags |= Reply::REFRESH;
            }
            waker.send(route, &ticket, heartbeat.counter, flags);
        }
        crate::presence::Heard::Stale => {}
        crate::presence::Heard::Unknown => {
            tracing::debug!(device = %sealed.device, expired, "heartbeat of a ticket this relay does not hold: the agent attaches again");
            waker.send(route, &ticket, heartbeat.counter, Reply::REATTACH);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_names_its_device_and_its_key_depends_on_the_secret() {
        let secret = ParkSecret::for_tests(1);
        let (ticket, key) = secret.issue(DeviceId(42), 1_790_000_000).expect("random");
        assert_eq!(
            secret.open(&ticket),
            Sealed {
                device: DeviceId(42),
                issued_secs: 1_790_000_000
            }
        );
        assert_eq!(secret.key_of(&ticket), key);
        let other = ParkSecret::for_tests(2);
        assert_ne!(other.key_of(&ticket), key);
        assert_ne!(other.open(&ticket).device, DeviceId(42));
        // Two tickets of one device differ (random part), keys too.
        let (again, key2) = secret.issue(DeviceId(42), 1_790_000_000).expect("random");
        assert_ne!(again, ticket);
        assert_ne!(key2, key);
    }

    #[test]
    fn a_reply_authenticates_under_the_agents_key() {
        let secret = ParkSecret::for_tests(1);
        let (ticket, key) = secret.issue(DeviceId(7), 1).expect("random");
        let bytes = secret.reply(&ticket, 3, Reply::WAKE);
        let reply = Reply::decode(&bytes, deskside_net::park::mac(&key)).expect("valid");
        assert_eq!(reply.counter, 3);
        assert!(reply.wakes());
    }
}
