//! The health answer a load balancer reads (`GET /healthz` on the metrics
//! listener): healthy when the relay's accept loop runs and its store
//! takes a write lock and answers a trivial query within [`STORE_DEADLINE`].
//!
//! At most one store check runs at a time: while one is still blocked (a
//! stuck disk, a lock held elsewhere), further requests are answered 503 at
//! once instead of piling blocked threads up behind it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::store::Store;

/// How long the store has to answer the health query.
pub const STORE_DEADLINE: Duration = Duration::from_secs(2);

/// What the health check looks at.
#[derive(Debug, Clone)]
pub struct Health {
    store: Arc<Store>,
    accepting: Arc<AtomicBool>,
    checking: Arc<AtomicBool>,
}

/// Clears the "accepting" flag when dropped: held by the accept loop's task,
/// so the flag turns false however that loop ends.
#[derive(Debug)]
pub struct Accepting(Arc<AtomicBool>);

impl Drop for Accepting {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Health {
    /// A check of `store`, and the guard the accept loop holds while it runs.
    pub fn new(store: Arc<Store>) -> (Self, Accepting) {
        let accepting = Arc::new(AtomicBool::new(true));
        let health = Self {
            store,
            accepting: Arc::clone(&accepting),
            checking: Arc::new(AtomicBool::new(false)),
        };
        (health, Accepting(accepting))
    }

    /// `Ok(body)`: fit to serve; `Err(reason)`: not, and why.
    pub async fn check(&self) -> Result<String, String> {
        if !self.accepting.load(Ordering::SeqCst) {
            return Err("unavailable: the relay no longer accepts connections".to_owned());
        }
        if self.checking.swap(true, Ordering::SeqCst) {
            return Err(
                "unavailable: the store has not answered the previous health check yet".to_owned(),
            );
        }
        let store = Arc::clone(&self.store);
        let checking = Arc::clone(&self.checking);
        let started = Instant::now();
        // The flag is cleared when the query ends, not when this request
        // gives up on it.
        let query = tokio::task::spawn_blocking(move || {
            let result = store.ping();
            checking.store(false, Ordering::SeqCst);
            result
        });
        match tokio::time::timeout(STORE_DEADLINE, query).await {
            Ok(Ok(Ok(()))) => Ok(format!(
                "ok: accepting connections, the store answered in {} ms",
                started.elapsed().as_millis()
            )),
            Ok(Ok(Err(e))) => Err(format!("unavailable: the store failed a trivial query: {e}")),
            Ok(Err(e)) => Err(format!("unavailable: the store check did not run: {e}")),
            Err(_) => Err(format!(
                "unavailable: the store did not answer a trivial query within {} s (a lock held elsewhere, or a stuck disk)",
                STORE_DEADLINE.as_secs()
            )),
        }
    }

    /// The check in the form the metrics listener takes.
    pub fn into_check(self) -> crate::metrics::http::Check {
        Arc::new(move || {
            let health = self.clone();
            Box::pin(async move { health.check().await })
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::{Read as _, Write as _};

    use super::*;
    use crate::config::{FileConfig, Overrides, RelayConfig};

    fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: relay\r\n\r\n").as_bytes())
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    async fn get_async(addr: std::net::SocketAddr, path: &'static str) -> String {
        tokio::task::spawn_blocking(move || get(addr, path))
            .await
            .unwrap()
    }

    /// Polls, generously (a loaded machine may miss the 2 s deadline).
    async fn until_healthy(addr: std::net::SocketAddr) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = get_async(addr, "/health").await;
            if answer.starts_with("HTTP/1.1 200 OK\r\n") {
                return answer;
            }
            assert!(Instant::now() < deadline, "never healthy: {answer}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The real relay, in process, with its metrics listener; a second
    /// SQLite connection to its database holds the write lock.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn healthz_is_200_and_503_with_the_reason_while_the_store_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let file: FileConfig = toml::from_str(&format!(
            "self_signed = true\nlisten = \"127.0.0.1:0\"\ndata_dir = {data:?}\n[metrics]\nlisten = \"127.0.0.1:0\"\n"
        ))
        .unwrap();
        let config = RelayConfig::resolve(file, Overrides::default()).unwrap();
        let relay = crate::server::Relay::spawn(config).await.unwrap();
        let addr = relay.metrics_addr().unwrap();

        let answer = until_healthy(addr).await;
        assert!(
            answer.contains("\r\n\r\nok: accepting connections"),
            "{answer}"
        );

        // Another process's writer (here: another connection) holds the
        // database's write lock: the relay could not record anything.
        let blocker = rusqlite::Connection::open(data.join("relay.db")).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let answer = get_async(addr, "/healthz").await;
        assert!(
            answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{answer}"
        );
        assert!(
            answer.contains("the store did not answer a trivial query within 2 s"),
            "{answer}"
        );
        blocker.execute_batch("ROLLBACK").unwrap();

        // Healthy again once the lock is gone (the blocked check may still
        // be finishing).
        until_healthy(addr).await;
        relay.shutdown().await;
    }
}
