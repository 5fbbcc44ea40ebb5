//! A plain UDP socket for quinn, for network stacks that refuse quinn-udp's
//! socket setup.
//!
//! quinn normally wraps its socket with quinn-udp, which turns on ECN,
//! packet-info and don't-fragment options and fails the whole endpoint if
//! any of them is refused. Wine 8.0 (Debian 12) refuses two of them
//! (`getsockopt(IPV6_V6ONLY)` on an IPv4 socket: WSAEOPNOTSUPP; no
//! `IP_RECVECN`), so no endpoint could be created there at all. This socket
//! does plain `send_to`/`recv_from`: one datagram per call, no ECN marks (so
//! no ECN-based congestion signals), and it says packets may be fragmented
//! (so quinn keeps to its 1200-byte minimum instead of probing the path
//! MTU). [`crate::transport::client_endpoint`] uses it only when quinn's
//! own setup fails, and logs that it did.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::io::ReadBuf;

/// A tokio UDP socket behind quinn's socket trait, without quinn-udp.
#[derive(Debug)]
pub struct PlainUdpSocket {
    io: tokio::net::UdpSocket,
}

impl PlainUdpSocket {
    /// Wraps a bound socket (made non-blocking here). Needs a tokio runtime.
    pub fn new(socket: std::net::UdpSocket) -> io::Result<PlainUdpSocket> {
        socket.set_nonblocking(true)?;
        Ok(PlainUdpSocket {
            io: tokio::net::UdpSocket::from_std(socket)?,
        })
    }
}

/// A quinn endpoint on a plain UDP socket bound to `bind`, acting as a
/// server too when `server` is given.
pub fn endpoint(
    bind: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> io::Result<quinn::Endpoint> {
    let socket = PlainUdpSocket::new(std::net::UdpSocket::bind(bind)?)?;
    quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        server,
        Arc::new(socket),
        Arc::new(quinn::TokioRuntime),
    )
}

impl AsyncUdpSocket for PlainUdpSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(WritablePoller {
            socket: self,
            pending: None,
        })
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        // One datagram per transmit: `max_transmit_segments` is 1.
        self.io
            .try_send_to(transmit.contents, transmit.destination)
            .map(|_| ())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(slot)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        let mut read = ReadBuf::new(buf);
        match self.io.poll_recv_from(cx, &mut read) {
            Poll::Ready(Ok(addr)) => {
                let len = read.filled().len();
                *slot = RecvMeta {
                    addr,
                    len,
                    stride: len,
                    ecn: None,
                    dst_ip: None,
                };
                Poll::Ready(Ok(1))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        1
    }

    fn max_receive_segments(&self) -> usize {
        1
    }
}

type Writable = Pin<Box<dyn Future<Output = io::Result<()>> + Send + Sync>>;

/// Waits until the socket can send again after a `WouldBlock`.
struct WritablePoller {
    socket: Arc<PlainUdpSocket>,
    pending: Option<Writable>,
}

impl fmt::Debug for WritablePoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WritablePoller")
            .field("socket", &self.socket)
            .field("waiting", &self.pending.is_some())
            .finish()
    }
}

impl UdpPoller for WritablePoller {
    fn poll_writable(mut self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let pending = this.pending.get_or_insert_with(|| {
            let socket = this.socket.clone();
            Box::pin(async move { socket.io.writable().await })
        });
        let result = pending.as_mut().poll(cx);
        if result.is_ready() {
            this.pending = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{client_config, Identity, RELAY_SERVER_NAME};
    use crate::transport::{client_endpoint, ALPN};

    /// A QUIC connection over plain sockets carries a stream both ways. Runs
    /// on Linux and, in scripts/windows-tests, under Wine, where quinn's own
    /// socket setup fails.
    #[tokio::test]
    async fn quic_runs_over_plain_udp_sockets() {
        let id = Identity::generate(&[RELAY_SERVER_NAME]).unwrap();
        let tls = id.server_config(ALPN).unwrap();
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
        let server = quinn::ServerConfig::with_crypto(Arc::new(quic));
        let server = endpoint("127.0.0.1:0".parse().unwrap(), Some(server)).unwrap();
        let addr = server.local_addr().unwrap();
        let echo = tokio::spawn(async move {
            let conn = server.accept().await.unwrap().await.unwrap();
            let (mut send, mut recv) = conn.accept_bi().await.unwrap();
            let data = recv.read_to_end(1 << 20).await.unwrap();
            send.write_all(&data).await.unwrap();
            send.finish().unwrap();
            conn.closed().await;
        });

        let client = endpoint("127.0.0.1:0".parse().unwrap(), None).unwrap();
        let (tls, _) = client_config(id.fingerprint(), None, ALPN).unwrap();
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let config = quinn::ClientConfig::new(Arc::new(quic));
        let conn = client
            .connect_with(config, addr, RELAY_SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        // Larger than one datagram, so it takes several packets each way.
        let message: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        send.write_all(&message).await.unwrap();
        send.finish().unwrap();
        let back = recv.read_to_end(1 << 20).await.unwrap();
        assert_eq!(back, message);
        conn.close(0u32.into(), b"done");
        echo.await.unwrap();
    }

    /// The endpoint the agent and console dial from exists wherever quinn
    /// or this fallback can open a socket (under Wine: only the fallback).
    #[tokio::test]
    async fn a_client_endpoint_can_always_be_made() {
        let endpoint = client_endpoint("127.0.0.1:4433".parse().unwrap()).unwrap();
        assert!(endpoint.local_addr().unwrap().port() != 0);
    }
}
