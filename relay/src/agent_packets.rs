//! The session path of an attached agent, started only when it is needed.
//!
//! Session packets to and from an agent travel on its presence connection
//! ([`crate::sessions`]): a packet link with two tasks and two queues, plus
//! a forwarding task. Nearly every agent is idle and has no session, and
//! those tasks and queues cost each of them several KiB of relay memory
//! (heap profile of `deskside-bench-idle`), so an agent's link starts only
//! when this device has a session route when it attaches (a session that
//! outlived a reconnect or a relay restart), when a session request is sent
//! to it, or when it sends a session packet that is not a path probe. Until
//! then the connection task reads the datagrams itself and echoes path
//! probes in place, rate-limited as the forwarding task does
//! ([`crate::probe_echo`]). Once started, the link stays until the
//! connection ends. Unidirectional (fallback) streams the agent opens
//! before that wait in quinn, unread, until the link starts; this relay
//! always offers datagrams, so an agent uses them only for session packets
//! larger than the path's datagrams, after a session started the link.
//!
//! What this module must never do: look inside a packet past its session id,
//! or wait for anything (it runs inside the agent's connection task).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use deskside_net::tunnel::{LinkError, SessionPacket, PROBE_SESSION_ID};
use deskside_protocol::DeviceId;

use crate::probe_echo::{EchoLimit, MAX_PROBE_LEN};
use crate::sessions::{spawn_forwarding, Forwarding, Party, Router};

/// An attached agent's session path: idle, or started.
pub struct AgentPackets {
    router: Arc<Router>,
    device: DeviceId,
    connection: quinn::Connection,
    echo_limit: EchoLimit,
    forwarding: Option<Forwarding>,
}

impl std::fmt::Debug for AgentPackets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentPackets")
            .field("device", &self.device)
            .field("started", &self.is_started())
            .finish_non_exhaustive()
    }
}

impl AgentPackets {
    /// The session path of `device` on `connection`; started at once when
    /// the router already has a session of this device.
    pub fn new(router: Arc<Router>, device: DeviceId, connection: &quinn::Connection) -> Self {
        let mut packets = Self {
            router,
            device,
            connection: connection.clone(),
            echo_limit: EchoLimit::new(Instant::now()),
            forwarding: None,
        };
        if packets.router.has_routes_for(device) {
            packets.start();
        }
        packets
    }

    /// Whether the packet link runs (it then owns the connection's
    /// datagrams and unidirectional streams).
    pub fn is_started(&self) -> bool {
        self.forwarding.is_some()
    }

    /// Starts the packet link and registers it with the router, once.
    pub fn start(&mut self) {
        if self.forwarding.is_some() {
            return;
        }
        let (sender, forwarding) = spawn_forwarding(
            Arc::clone(&self.router),
            Party::Agent(self.device),
            &self.connection,
        );
        self.router
            .attach_agent(self.device, self.connection.stable_id(), sender);
        self.forwarding = Some(forwarding);
        tracing::debug!("session path started");
    }

    /// Handles a datagram the connection task read while the link was not
    /// started: a path probe is echoed, a session packet starts the link and
    /// is forwarded. `Err` with the reason when it is not a session packet
    /// (the caller closes the connection).
    pub fn handle_datagram(&mut self, datagram: Bytes) -> Result<(), String> {
        let packet = match SessionPacket::from_wire(datagram) {
            Ok(packet) => packet,
            Err(LinkError::Malformed(reason)) => {
                return Err(format!("malformed session packet: {reason}"))
            }
            Err(LinkError::Closed(_)) => return Ok(()),
        };
        if packet.session_id() == PROBE_SESSION_ID {
            if packet.wire().len() <= MAX_PROBE_LEN && self.echo_limit.allow(Instant::now()) {
                // It came as a datagram, so it fits as one; a lost echo is
                // a lost probe, which is what the agent measures.
                let _ = self.connection.send_datagram(packet.wire().clone());
            }
            return Ok(());
        }
        self.start();
        self.router.forward(Party::Agent(self.device), packet);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use deskside_net::{FramedRecv, FramedSend};

    use crate::shared::Shared;

    /// The size of the future an async fn returns, without calling it.
    fn agent_future_size<F, Fut>(_: &F) -> usize
    where
        F: Fn(&'static Shared, &'static quinn::Connection, Vec<u8>, FramedSend, FramedRecv) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Regression guard for the idle memory of an attached agent: its
    /// connection task holds this future for as long as it is online, and
    /// the future is as large as its largest state, so the rare handlers
    /// (enrollment, consent, help requests, timeline uploads...) are boxed.
    /// Measured in a debug build: 6,080 bytes before they were, 5,016
    /// after; a release build's is smaller.
    #[test]
    fn an_attached_agents_connection_future_stays_small() {
        let size = agent_future_size(&crate::agent_conn::serve);
        assert!(
            size <= 5_300,
            "agent_conn::serve's future is {size} bytes, held by every online agent: box the new rarely-awaited future"
        );
    }
}
