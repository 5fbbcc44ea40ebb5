//! Logs the network moves of connected clients (QUIC connection migration).
//!
//! quinn accepts a client's new address by itself (`ServerConfig::migration`
//! is on by default, and the relay keeps it on): an agent whose laptop moved
//! from Wi‑Fi to a hotspot keeps its connection, its presence and its
//! running sessions. quinn does not tell the application, so a watcher looks
//! at the connection's remote address and logs each change.

use std::net::SocketAddr;
use std::time::Duration;

use tracing::Instrument;

/// How often a watcher looks at the remote address.
pub const PATH_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// Logs the moves of every attached agent, checking all of them every
/// [`PATH_CHECK_INTERVAL`] in one relay-owned task until the relay stops.
/// One task per agent cost every idle agent a task, a timer and four
/// wake-ups a second.
pub async fn watch_agents(shared: std::sync::Arc<crate::shared::Shared>) {
    let stopping = shared.tasks.stopping();
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PATH_CHECK_INTERVAL) => {}
            _ = &mut stopping => return,
        }
        for (device, from, to) in shared.presence.moves() {
            tracing::info!(%device, %from, %to, "client moved to a new network path (QUIC migration)");
        }
    }
}

/// Ends the watcher when dropped.
#[derive(Debug)]
pub struct PathWatch(tokio::task::JoinHandle<()>);

impl Drop for PathWatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Watches `connection` until it closes (or the returned guard drops),
/// logging in the current span each new remote address.
pub fn watch(connection: &quinn::Connection) -> PathWatch {
    let connection = connection.clone();
    let task = async move {
        let mut last: SocketAddr = connection.remote_address();
        while connection.close_reason().is_none() {
            tokio::time::sleep(PATH_CHECK_INTERVAL).await;
            let now = connection.remote_address();
            if now != last {
                tracing::info!(from = %last, to = %now, "client moved to a new network path (QUIC migration)");
                last = now;
            }
        }
    };
    PathWatch(tokio::spawn(task.instrument(tracing::Span::current())))
}
