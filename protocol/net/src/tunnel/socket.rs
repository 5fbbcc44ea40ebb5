//! [`TunnelSocket`]: a `quinn::AsyncUdpSocket` whose "UDP datagrams" are
//! byte buffers in two small bounded queues, driven by a carrier.
//!
//! This module never blocks and never grows: a packet that does not fit in a
//! full queue is dropped and counted, exactly as a congested router would
//! drop it, and the QUIC connection above recovers. It knows nothing about
//! relays, session ids or outer connections.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::sync::mpsc;

/// The address a tunnel socket claims as its own. An RFC 5737 documentation
/// address: it never appears on any network, nothing is ever sent to it, and
/// it only exists because quinn wants a socket address.
pub const TUNNEL_LOCAL_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 1);

/// The address every packet arriving on a tunnel socket claims to come from,
/// and the address the console connects to. Like [`TUNNEL_LOCAL_ADDR`], a
/// placeholder that is never used on a network: the tunnel has exactly one
/// peer, so destination addresses are ignored.
pub const TUNNEL_PEER_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 1);

/// Default capacity, in packets, of each direction's queue: 256 full-size
/// packets are about 350 KB, a few milliseconds at the speeds a relay carries.
/// Larger queues only add latency (bufferbloat) under the inner congestion
/// controller; smaller ones drop bursts the inner QUIC sends in one go.
pub const DEFAULT_QUEUE_PACKETS: usize = 256;

/// Counters of one tunnel socket, shared with whoever holds a clone.
#[derive(Debug, Default)]
pub struct TunnelStats {
    sent: AtomicU64,
    received: AtomicU64,
    dropped_outgoing: AtomicU64,
    dropped_incoming: AtomicU64,
}

impl TunnelStats {
    /// Packets handed to the outgoing queue.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
    /// Packets delivered to quinn.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
    /// Outgoing packets dropped because the outgoing queue was full.
    pub fn dropped_outgoing(&self) -> u64 {
        self.dropped_outgoing.load(Ordering::Relaxed)
    }
    /// Incoming packets dropped because the incoming queue was full (counted
    /// by [`TunnelPort::deliver`]) or did not fit quinn's buffer.
    pub fn dropped_incoming(&self) -> u64 {
        self.dropped_incoming.load(Ordering::Relaxed)
    }
}

/// The carrier's end of a [`TunnelSocket`]: take outgoing packets from
/// `outgoing` and put incoming ones into `incoming` (preferably with
/// [`TunnelPort::deliver`], which drops instead of waiting when it is full).
#[derive(Debug)]
pub struct TunnelPort {
    /// Packets quinn wants sent to the peer, one inner UDP payload each.
    pub outgoing: mpsc::Receiver<Bytes>,
    /// Packets from the peer, one inner UDP payload each.
    pub incoming: mpsc::Sender<Bytes>,
    /// The socket's counters.
    pub stats: Arc<TunnelStats>,
}

impl TunnelPort {
    /// Queues a packet from the peer for quinn, dropping it (and counting the
    /// drop) when the queue is full. Returns `false` when the socket is gone.
    pub fn deliver(&self, packet: Bytes) -> bool {
        deliver(&self.incoming, &self.stats, packet)
    }
}

/// Non-blocking delivery into an incoming queue; shared with the carrier,
/// which keeps only the sender half.
pub(crate) fn deliver(queue: &mpsc::Sender<Bytes>, stats: &TunnelStats, packet: Bytes) -> bool {
    match queue.try_send(packet) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            stats.dropped_incoming.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// A UDP socket for quinn that carries packets through a [`TunnelPort`]
/// instead of the network. One socket serves one inner endpoint with exactly
/// one peer.
pub struct TunnelSocket {
    outgoing: mpsc::Sender<Bytes>,
    incoming: Mutex<mpsc::Receiver<Bytes>>,
    stats: Arc<TunnelStats>,
}

impl fmt::Debug for TunnelSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelSocket")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl TunnelSocket {
    /// A socket and the port that drives it, each direction's queue holding
    /// at most `queue_packets` packets (at least 1).
    pub fn pair_ends(queue_packets: usize) -> (TunnelSocket, TunnelPort) {
        let capacity = queue_packets.max(1);
        let (out_tx, out_rx) = mpsc::channel(capacity);
        let (in_tx, in_rx) = mpsc::channel(capacity);
        let stats = Arc::new(TunnelStats::default());
        let socket = TunnelSocket {
            outgoing: out_tx,
            incoming: Mutex::new(in_rx),
            stats: stats.clone(),
        };
        let port = TunnelPort {
            outgoing: out_rx,
            incoming: in_tx,
            stats,
        };
        (socket, port)
    }

    /// The socket's counters.
    pub fn stats(&self) -> Arc<TunnelStats> {
        self.stats.clone()
    }

    fn queue(&self, packet: &[u8]) -> io::Result<()> {
        match self.outgoing.try_send(Bytes::copy_from_slice(packet)) {
            Ok(()) => {
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                // Dropping is the point: blocking here would stall quinn's
                // connection driver, and growing would add latency.
                self.stats.dropped_outgoing.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the session tunnel was closed (its carrier port was dropped)",
            )),
        }
    }
}

impl AsyncUdpSocket for TunnelSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        match transmit.segment_size {
            // quinn asks for one segment per transmit (see
            // `max_transmit_segments`), but split defensively if it ever
            // hands over several.
            Some(size) if size > 0 && size < transmit.contents.len() => {
                for segment in transmit.contents.chunks(size) {
                    self.queue(segment)?;
                }
                Ok(())
            }
            _ => self.queue(transmit.contents),
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut queue = self.incoming.lock().unwrap_or_else(|p| p.into_inner());
        let slots = bufs.len().min(meta.len());
        let mut filled = 0;
        while filled < slots {
            let packet = if filled == 0 {
                match queue.poll_recv(cx) {
                    Poll::Ready(Some(packet)) => packet,
                    Poll::Ready(None) => {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::BrokenPipe,
                            "the session tunnel was closed (its carrier port was dropped)",
                        )))
                    }
                    Poll::Pending => return Poll::Pending,
                }
            } else {
                match queue.try_recv() {
                    Ok(packet) => packet,
                    Err(_) => break,
                }
            };
            let buf = &mut bufs[filled];
            if packet.len() > buf.len() {
                // Larger than anything quinn can receive: drop, as a too-small
                // UDP buffer would truncate and the packet would fail to
                // authenticate anyway.
                self.stats.dropped_incoming.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(len = packet.len(), "dropped an oversize tunnel packet");
                if filled == 0 {
                    // Keep polling so the waker stays registered.
                    continue;
                }
                break;
            }
            buf[..packet.len()].copy_from_slice(&packet);
            meta[filled] = RecvMeta {
                addr: TUNNEL_PEER_ADDR,
                len: packet.len(),
                stride: packet.len(),
                ecn: None,
                dst_ip: None,
            };
            self.stats.received.fetch_add(1, Ordering::Relaxed);
            filled += 1;
        }
        Poll::Ready(Ok(filled))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(TUNNEL_LOCAL_ADDR)
    }

    fn max_transmit_segments(&self) -> usize {
        1
    }

    fn max_receive_segments(&self) -> usize {
        1
    }

    /// The tunnel never fragments; it drops what does not fit. Returning the
    /// default (`true`) would make quinn silently turn MTU discovery off and
    /// stay at 1200-byte packets.
    fn may_fragment(&self) -> bool {
        false
    }
}

/// `try_send` never returns `WouldBlock` (a full queue drops), so the socket
/// is always writable.
#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transmit(contents: &[u8]) -> Transmit<'_> {
        Transmit {
            destination: TUNNEL_PEER_ADDR,
            ecn: None,
            contents,
            segment_size: None,
            src_ip: None,
        }
    }

    #[test]
    fn a_full_outgoing_queue_drops_instead_of_blocking() {
        let (socket, mut port) = TunnelSocket::pair_ends(4);
        // Nobody drains the port: ten sends must all return at once.
        for i in 0..10u8 {
            socket.try_send(&transmit(&[i; 100])).unwrap();
        }
        assert_eq!(socket.stats().sent(), 4);
        assert_eq!(socket.stats().dropped_outgoing(), 6);
        // The queue holds the first four, unchanged and in order.
        for i in 0..4u8 {
            assert_eq!(port.outgoing.try_recv().unwrap(), Bytes::from(vec![i; 100]));
        }
        assert!(port.outgoing.try_recv().is_err());
    }

    #[test]
    fn a_full_incoming_queue_drops_instead_of_blocking() {
        let (socket, port) = TunnelSocket::pair_ends(2);
        for _ in 0..5 {
            assert!(port.deliver(Bytes::from_static(b"packet")));
        }
        assert_eq!(socket.stats().dropped_incoming(), 3);
    }

    #[test]
    fn sending_after_the_port_is_gone_is_an_error_not_a_hang() {
        let (socket, port) = TunnelSocket::pair_ends(2);
        drop(port);
        let err = socket.try_send(&transmit(b"x")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn received_packets_come_from_the_placeholder_peer_one_per_buffer() {
        let (socket, port) = TunnelSocket::pair_ends(8);
        port.deliver(Bytes::from_static(b"one"));
        port.deliver(Bytes::from_static(b"two!"));
        let waker = futures_noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut a = [0u8; 1500];
        let mut b = [0u8; 1500];
        let mut c = [0u8; 1500];
        let mut bufs = [
            IoSliceMut::new(&mut a),
            IoSliceMut::new(&mut b),
            IoSliceMut::new(&mut c),
        ];
        let mut meta = [RecvMeta::default(); 3];
        let n = match socket.poll_recv(&mut cx, &mut bufs, &mut meta) {
            Poll::Ready(Ok(n)) => n,
            other => panic!("expected packets, got {other:?}"),
        };
        assert_eq!(n, 2);
        assert_eq!(&bufs[0][..meta[0].len], b"one");
        assert_eq!(&bufs[1][..meta[1].len], b"two!");
        assert_eq!(meta[1].addr, TUNNEL_PEER_ADDR);
        assert!(socket.poll_recv(&mut cx, &mut bufs, &mut meta).is_pending());
        assert!(!socket.may_fragment());
    }

    fn futures_noop_waker() -> std::task::Waker {
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: Arc<Self>) {}
        }
        std::task::Waker::from(Arc::new(Noop))
    }
}
