//! The agent's side of parking (see [`deskside_protocol::park`]): while it
//! has nothing to do, the agent keeps its presence with one authenticated
//! datagram per keep-alive interval instead of a QUIC connection, and
//! attaches again when the relay calls it, when it has something to send,
//! or when the relay stops answering.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deskside_protocol::park::{Heartbeat, Reply, Ticket, REPLY_LEN};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;

/// What the relay gave a parked agent.
#[derive(Clone)]
pub struct Parking {
    /// The relay's address (the one the connection used).
    pub relay: SocketAddr,
    /// The ticket its heartbeats carry.
    pub ticket: Ticket,
    /// The key of both directions' MACs.
    pub key: [u8; 32],
    /// The relay's idle timeout: heartbeats go out at least three times
    /// in it, and a relay silent for it is taken for lost.
    pub idle: Duration,
    /// The address heartbeats leave from, when the agent's QUIC endpoint
    /// is bound to one (a pinned source address); else the route's.
    pub local: Option<std::net::IpAddr>,
}

impl std::fmt::Debug for Parking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parking")
            .field("relay", &self.relay)
            .finish_non_exhaustive()
    }
}

/// The relay path as a parked agent's heartbeats see it, for monitoring
/// ([`crate::timeline`]): heartbeats sent and answered, and the last
/// round trip.
#[derive(Debug)]
pub struct ParkPath {
    /// Tells one parking's counters from the next one's.
    pub id: usize,
    sent: AtomicU64,
    answered: AtomicU64,
    /// The last heartbeat's round trip, µs; 0 before the first answer.
    rtt_us: AtomicU64,
}

impl ParkPath {
    /// Counters for a new parking.
    pub fn new() -> ParkPath {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
        ParkPath {
            // Far from QUIC's stable ids (addresses), so never equal.
            id: usize::MAX - NEXT.fetch_add(1, Ordering::Relaxed),
            sent: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            rtt_us: AtomicU64::new(0),
        }
    }

    /// The last heartbeat's round trip, once one was answered.
    pub fn rtt(&self) -> Option<Duration> {
        match self.rtt_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Heartbeats sent, and those of them not answered (the latest one,
    /// perhaps still on its way, does not count as lost).
    pub fn counters(&self) -> (u64, u64) {
        let sent = self.sent.load(Ordering::Relaxed);
        let answered = self.answered.load(Ordering::Relaxed);
        (sent, sent.saturating_sub(1).saturating_sub(answered))
    }
}

impl Default for ParkPath {
    fn default() -> Self {
        ParkPath::new()
    }
}

/// Why parking ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Unparked {
    /// The relay has something for the agent: attach now.
    Called,
    /// Something the agent gets on attaching changed (the policy): it
    /// attached after the delay it drew within its reconnect window,
    /// heartbeats going on meanwhile.
    Refresh,
    /// The relay no longer takes the ticket (restarted, stopping, ticket
    /// expired, device revoked): attach again to learn where it stands.
    Reattach,
    /// Something local needs the connection (a help request to send).
    Work,
    /// No answer for the idle timeout: the relay is presumably gone.
    Lost,
    /// The agent is stopping.
    Stopped,
}

/// Replies taken for heartbeats at most this many counters old.
const REPLY_WINDOW: u64 = 8;

/// A UDP socket towards the relay (a new one follows a network change:
/// the kernel picks the current route's source address).
async fn socket_to(
    relay: SocketAddr,
    local: Option<std::net::IpAddr>,
) -> std::io::Result<UdpSocket> {
    let local: SocketAddr = match local {
        Some(ip) => (ip, 0).into(),
        None if relay.is_ipv4() => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        None => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(relay).await?;
    Ok(socket)
}

/// Stays parked until the relay calls, the relay is lost for `idle`, the
/// agent stops, or `work` resolves. A heartbeat goes out every `interval`.
/// `refresh_after` is how long to go on after the relay asks for a
/// refresh ([`Reply::REFRESH`]): a delay the caller drew within its
/// reconnect window.
pub async fn stay_parked(
    parking: &Parking,
    path: &ParkPath,
    interval: Duration,
    idle: Duration,
    refresh_after: Duration,
    stop: &mut watch::Receiver<bool>,
    work: impl std::future::Future<Output = ()>,
) -> Unparked {
    // When to attach for a refresh, once asked.
    let mut refresh_at: Option<Instant> = None;
    // When the last few heartbeats left, by counter.
    let mut sent_at = [None::<Instant>; REPLY_WINDOW as usize];
    tokio::pin!(work);
    let mac = deskside_net::park::mac(&parking.key);
    let mut socket: Option<UdpSocket> = None;
    let mut counter = 0u64;
    let mut last_answer = Instant::now();
    let mut unanswered = 0u32;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = [0u8; 64];
    loop {
        let receive = async {
            match socket.as_ref() {
                Some(socket) => socket.recv(&mut buf).await,
                None => std::future::pending().await,
            }
        };
        let refresh_due = async {
            match refresh_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.changed() => return Unparked::Stopped,
            () = &mut work => return Unparked::Work,
            () = refresh_due => return Unparked::Refresh,
            _ = tick.tick() => {
                if last_answer.elapsed() > idle {
                    return Unparked::Lost;
                }
                // The last heartbeat went unanswered: perhaps the network
                // changed under the socket (a connected UDP socket keeps
                // its first source address); a new one takes the current
                // route, and the relay follows the new address.
                if unanswered >= 1 {
                    socket = None;
                }
                if socket.is_none() {
                    match socket_to(parking.relay, parking.local).await {
                        Ok(fresh) => socket = Some(fresh),
                        Err(e) => {
                            tracing::debug!(relay = %parking.relay, "cannot open a socket to the relay: {e}");
                            continue;
                        }
                    }
                }
                counter += 1;
                unanswered += 1;
                sent_at[(counter % REPLY_WINDOW) as usize] = Some(Instant::now());
                path.sent.fetch_add(1, Ordering::Relaxed);
                let datagram = Heartbeat { ticket: parking.ticket, counter }.encode(&mac);
                if let Some(open) = socket.as_ref() {
                    if let Err(e) = open.send(&datagram).await {
                        tracing::debug!(relay = %parking.relay, "heartbeat not sent: {e}");
                        socket = None;
                    }
                }
            }
            received = receive => {
                let len = match received {
                    Ok(len) => len,
                    Err(e) => {
                        // An ICMP error (port unreachable) surfaces here on
                        // a connected socket: the relay is down or moved.
                        tracing::debug!(relay = %parking.relay, "heartbeat socket: {e}");
                        socket = None;
                        continue;
                    }
                };
                if len != REPLY_LEN {
                    continue;
                }
                let Ok(reply) = Reply::decode(&buf[..len], &mac) else {
                    tracing::debug!(relay = %parking.relay, "park reply with a wrong MAC ignored");
                    continue;
                };
                if reply.counter > counter || reply.counter + REPLY_WINDOW < counter {
                    continue;
                }
                last_answer = Instant::now();
                unanswered = 0;
                // Each heartbeat's first answer counts (a call repeats the
                // last counter).
                if let Some(sent) = sent_at[(reply.counter % REPLY_WINDOW) as usize].take() {
                    path.answered.fetch_add(1, Ordering::Relaxed);
                    let us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
                    path.rtt_us.store(us, Ordering::Relaxed);
                }
                if reply.reattach() {
                    return Unparked::Reattach;
                }
                if reply.wakes() {
                    return Unparked::Called;
                }
                if reply.refresh() && refresh_at.is_none() {
                    refresh_at = Some(Instant::now() + refresh_after);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deskside_protocol::park::TICKET_LEN;

    /// A relay stand-in on loopback: answers heartbeats with `flags` from
    /// the `answer_from`-th on (0: never answers).
    async fn relay(key: [u8; 32], answer_from: u64, flags: u8) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = socket.local_addr().expect("addr");
        tokio::spawn(async move {
            let mac = deskside_net::park::mac(&key);
            let mut buf = [0u8; 128];
            loop {
                let Ok((len, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let heartbeat = Heartbeat::decode(&buf[..len], &mac).expect("a valid heartbeat");
                if answer_from == 0 || heartbeat.counter < answer_from {
                    continue;
                }
                let reply = Reply {
                    counter: heartbeat.counter,
                    flags,
                }
                .encode(&mac);
                let _ = socket.send_to(&reply, from).await;
            }
        });
        addr
    }

    fn parking(relay: SocketAddr, key: [u8; 32]) -> Parking {
        Parking {
            relay,
            ticket: [9; TICKET_LEN],
            key,
            idle: Duration::from_secs(12),
            local: Some(std::net::Ipv4Addr::LOCALHOST.into()),
        }
    }

    /// Parks against `relay` with `key`, heartbeats every `interval`
    /// (ms), lost after `idle` (ms), a refresh taken after `refresh` (ms),
    /// until `work` resolves.
    async fn park_with(
        (relay, key): (SocketAddr, [u8; 32]),
        path: &ParkPath,
        (interval, idle, refresh): (u64, u64, u64),
        work: impl std::future::Future<Output = ()>,
    ) -> Unparked {
        let (_tx, mut stop) = watch::channel(false);
        stay_parked(
            &parking(relay, key),
            path,
            Duration::from_millis(interval),
            Duration::from_millis(idle),
            Duration::from_millis(refresh),
            &mut stop,
            work,
        )
        .await
    }

    #[tokio::test]
    async fn a_call_from_the_relay_ends_parking() {
        let key = [5; 32];
        let addr = relay(key, 3, Reply::WAKE).await;
        let path = ParkPath::new();
        let outcome = park_with((addr, key), &path, (20, 5000, 0), std::future::pending()).await;
        assert_eq!(outcome, Unparked::Called);
    }

    #[tokio::test]
    async fn a_refresh_is_taken_after_the_drawn_delay_with_heartbeats_going_on() {
        let key = [5; 32];
        let addr = relay(key, 1, Reply::REFRESH).await;
        let started = Instant::now();
        let path = ParkPath::new();
        let outcome = park_with((addr, key), &path, (50, 5000, 600), std::future::pending()).await;
        assert_eq!(outcome, Unparked::Refresh);
        assert!(started.elapsed() >= Duration::from_millis(600));
        // Still heartbeating while it waited.
        assert!(path.counters().0 >= 5, "{:?}", path.counters());
    }

    #[tokio::test]
    async fn a_silent_relay_is_lost_after_the_idle_timeout() {
        let key = [5; 32];
        let addr = relay(key, 0, 0).await;
        let started = Instant::now();
        let path = ParkPath::new();
        let outcome = park_with((addr, key), &path, (20, 300, 0), std::future::pending()).await;
        assert_eq!(outcome, Unparked::Lost);
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn a_reply_under_another_key_is_ignored() {
        // Answers "attach again" under the wrong key: not taken, so the
        // relay counts as silent.
        let addr = relay([6; 32], 1, Reply::REATTACH).await;
        let path = ParkPath::new();
        let outcome = park_with((addr, [5; 32]), &path, (20, 300, 0), std::future::pending()).await;
        assert_eq!(outcome, Unparked::Lost);
    }

    #[tokio::test]
    async fn quiet_answers_keep_the_agent_parked_until_it_has_work() {
        let key = [5; 32];
        let addr = relay(key, 1, 0).await;
        let started = Instant::now();
        let path = ParkPath::new();
        let work = tokio::time::sleep(Duration::from_secs(3));
        let outcome = park_with((addr, key), &path, (50, 1000, 0), work).await;
        // Answered all along: parked well past the idle timeout (a 1 s
        // stall of this test's thread under load would fail it).
        assert_eq!(outcome, Unparked::Work);
        assert!(path.rtt().is_some());
        let (sent, lost) = path.counters();
        assert!(sent >= 20, "{sent} heartbeats");
        // Loopback loses nothing; a late answer under load counts once.
        assert!(lost <= 1, "{lost} of {sent} lost");
        assert!(started.elapsed() >= Duration::from_secs(3));
    }
}
