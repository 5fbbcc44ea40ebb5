//! The relay's UDP socket buffers.
//!
//! One socket carries every agent. With the kernel's default receive
//! buffer (208 KiB on Linux) a reconnect storm (thousands of agents
//! handshaking in the same second after a relay restart) overflows it:
//! 20–44 % of datagrams were dropped while 30,000 agents reattached, and
//! each lost handshake cost a 10 s timeout and a retry. So the relay asks
//! for `udp_buffer` bytes (default [`DEFAULT_UDP_BUFFER`]) each way, reads
//! back what the kernel granted, and warns, naming the sysctl to raise,
//! when the kernel capped it (Linux caps an unprivileged request at
//! `net.core.rmem_max` / `net.core.wmem_max`; the packages raise both with
//! a sysctl.d drop-in).

use std::net::UdpSocket;

/// Bytes asked for each way unless `udp_buffer` says otherwise.
pub const DEFAULT_UDP_BUFFER: usize = 8 << 20;
/// The accepted range of `udp_buffer`.
pub const MIN_UDP_BUFFER: usize = 64 << 10;
/// See [`MIN_UDP_BUFFER`].
pub const MAX_UDP_BUFFER: usize = 1 << 30;

/// What the kernel granted, in the bytes the relay asked for (Linux reports
/// twice the usable size, for its bookkeeping; that is undone here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Granted {
    /// Receive buffer.
    pub receive: usize,
    /// Send buffer.
    pub send: usize,
}

/// Asks for `wanted` bytes each way and reads back what was granted.
pub fn apply(socket: &UdpSocket, wanted: usize) -> std::io::Result<Granted> {
    let socket = socket2::SockRef::from(socket);
    // A refusal leaves the old size: what counts is what is read back.
    if let Err(e) = socket.set_recv_buffer_size(wanted) {
        tracing::debug!("cannot set the UDP receive buffer: {e}");
    }
    if let Err(e) = socket.set_send_buffer_size(wanted) {
        tracing::debug!("cannot set the UDP send buffer: {e}");
    }
    Ok(Granted {
        receive: as_asked(socket.recv_buffer_size()?),
        send: as_asked(socket.send_buffer_size()?),
    })
}

/// The size as the caller asked for it: Linux doubles the value set.
fn as_asked(reported: usize) -> usize {
    if cfg!(target_os = "linux") {
        reported / 2
    } else {
        reported
    }
}

/// The warnings an operator must see for `granted` when `wanted` was asked:
/// one per capped direction, naming the sysctl to raise.
pub fn warnings(wanted: usize, granted: Granted) -> Vec<String> {
    let mut out = Vec::new();
    for (what, got, sysctl) in [
        ("receive", granted.receive, "net.core.rmem_max"),
        ("send", granted.send, "net.core.wmem_max"),
    ] {
        if got < wanted {
            out.push(format!(
                "the kernel capped the relay's UDP {what} buffer at {} KiB (asked for {} KiB): a reconnect storm will drop handshakes; raise {sysctl} to at least {wanted} (`sysctl -w {sysctl}={wanted}`; the packages ship /usr/lib/sysctl.d/60-deskside-relay.conf), or lower `udp_buffer` in the configuration",
                got >> 10,
                wanted >> 10,
            ));
        }
    }
    out
}

/// [`apply`], then logs what was granted and any warning.
pub fn apply_and_report(socket: &UdpSocket, wanted: usize) -> Option<Granted> {
    match apply(socket, wanted) {
        Ok(granted) => {
            tracing::info!(
                receive_kib = granted.receive >> 10,
                send_kib = granted.send >> 10,
                asked_kib = wanted >> 10,
                "UDP socket buffers"
            );
            for warning in warnings(wanted, granted) {
                tracing::warn!("{warning}");
            }
            Some(granted)
        }
        Err(e) => {
            tracing::warn!("cannot read the UDP socket's buffer sizes: {e}");
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn read_back(socket: &UdpSocket) -> Granted {
        let socket = socket2::SockRef::from(socket);
        Granted {
            receive: as_asked(socket.recv_buffer_size().unwrap()),
            send: as_asked(socket.send_buffer_size().unwrap()),
        }
    }

    #[test]
    fn the_granted_size_is_read_back_from_the_socket() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = read_back(&socket);
        // A small size every kernel grants, then one no default grants.
        let small = apply(&socket, MIN_UDP_BUFFER).unwrap();
        assert_eq!(small, read_back(&socket));
        assert!(small.receive >= MIN_UDP_BUFFER, "{small:?}");
        assert!(warnings(MIN_UDP_BUFFER, small).is_empty());
        let huge = apply(&socket, MAX_UDP_BUFFER).unwrap();
        assert_eq!(huge, read_back(&socket));
        assert!(huge.receive > small.receive || huge.receive >= MAX_UDP_BUFFER);
        // Whatever this kernel's limit, a capped size names its sysctl.
        let warned = warnings(MAX_UDP_BUFFER, huge);
        assert_eq!(
            warned.iter().any(|w| w.contains("net.core.rmem_max")),
            huge.receive < MAX_UDP_BUFFER,
            "{before:?} {huge:?} {warned:?}"
        );
        assert_eq!(
            warned.iter().any(|w| w.contains("net.core.wmem_max")),
            huge.send < MAX_UDP_BUFFER,
            "{huge:?} {warned:?}"
        );
    }

    #[test]
    fn a_capped_size_is_reported_with_the_sysctl_to_raise() {
        let wanted = DEFAULT_UDP_BUFFER;
        let capped = Granted {
            receive: 208 << 10,
            send: DEFAULT_UDP_BUFFER,
        };
        let warned = warnings(wanted, capped);
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(warned[0].contains("UDP receive buffer at 208 KiB (asked for 8192 KiB)"));
        assert!(warned[0].contains("sysctl -w net.core.rmem_max=8388608"));
        let full = Granted {
            receive: wanted,
            send: wanted,
        };
        assert!(warnings(wanted, full).is_empty());
    }
}
