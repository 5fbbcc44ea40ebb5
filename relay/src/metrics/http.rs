//! The metrics endpoint: a deliberately small HTTP/1.1 server that answers
//! `GET /metrics` and, for load balancers, `GET /healthz` (or `/health`):
//! 200 when the relay is fit to serve, 503 with the reason otherwise (see
//! [`crate::health`]). Nothing else.
//!
//! It must never be a way in or a way to hurt the relay: it reads at most
//! [`MAX_HEAD`] bytes of request head within [`REQUEST_TIMEOUT`], serves at
//! most [`MAX_CONNECTIONS`] clients at once (more are closed at once), never
//! reads a body, answers one request per connection and closes it. Garbage
//! gets a 400 and a closed connection, never a panic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::{Metrics, Scrape};

/// Most bytes of request line and headers read (Prometheus sends ~300).
pub const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its request and read the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Clients served at once.
pub const MAX_CONNECTIONS: usize = 8;

/// Makes the page on each scrape.
pub type Page = Arc<dyn Fn() -> String + Send + Sync>;

/// Answers a health request: `Ok(body)` for 200, `Err(reason)` for 503.
/// It must answer within [`REQUEST_TIMEOUT`] (a late answer is a timeout).
pub type Check = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send>>
        + Send
        + Sync,
>;

/// Binds the metrics address; a clear error when it cannot.
pub fn bind(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| {
        format!("cannot listen for metrics on TCP {addr}: choose a free address with `[metrics] listen` in the configuration or --metrics-listen (or leave both out to turn metrics off)")
    })?;
    listener
        .set_nonblocking(true)
        .context("cannot make the metrics socket non-blocking")?;
    Ok(listener)
}

/// Serves until `shutdown` turns true; every client task ends with it.
pub async fn run(
    listener: std::net::TcpListener,
    page: Page,
    health: Check,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("cannot serve metrics: {e}");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut clients = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            Some(_) = clients.join_next(), if !clients.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                        metrics.scrape(Scrape::Busy);
                        tracing::debug!(%peer, "metrics: too many clients at once, closed");
                        continue;
                    };
                    let page = Arc::clone(&page);
                    let health = Arc::clone(&health);
                    let metrics = Arc::clone(&metrics);
                    clients.spawn(async move {
                        let answer = match tokio::time::timeout(REQUEST_TIMEOUT, serve_one(stream, &page, &health)).await {
                            Ok(answer) => answer,
                            Err(_) => Scrape::Timeout,
                        };
                        metrics.scrape(answer);
                        if !matches!(answer, Scrape::Ok | Scrape::Healthy) {
                            tracing::debug!(%peer, ?answer, "metrics: request not served");
                        }
                        drop(slot);
                    });
                }
                // Out of descriptors and the like: wait a little instead of
                // spinning.
                Err(e) => {
                    tracing::warn!("metrics: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    clients.abort_all();
    while clients.join_next().await.is_some() {}
}

async fn serve_one(mut stream: TcpStream, page: &Page, health: &Check) -> Scrape {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let verdict = loop {
        if let Some(end) = find_head_end(&head) {
            break judge(&head[..end]);
        }
        if head.len() >= MAX_HEAD {
            break Scrape::TooLarge;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Scrape::BadRequest,
            // At most MAX_HEAD + one chunk is ever held.
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    };
    let (verdict, response) = match verdict {
        Scrape::Healthy => match health().await {
            Ok(body) => (Scrape::Healthy, text("200 OK", &format!("{body}\n"))),
            Err(reason) => (
                Scrape::Unhealthy,
                text("503 Service Unavailable", &format!("{reason}\n")),
            ),
        },
        other => (other, page_or_error(other, page)),
    };
    // A client that does not read its answer is cut by the caller's timeout.
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
    verdict
}

/// The answer to every request but a health check.
fn page_or_error(verdict: Scrape, page: &Page) -> String {
    match verdict {
        Scrape::Ok => response("200 OK", super::exposition::CONTENT_TYPE, &[], page()),
        Scrape::NotFound => text(
            "404 Not Found",
            "only /metrics and /healthz are served here\n",
        ),
        Scrape::MethodNotAllowed => response(
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            &[("Allow", "GET")],
            "only GET is served here\n".to_owned(),
        ),
        Scrape::TooLarge => text(
            "431 Request Header Fields Too Large",
            "request head too large\n",
        ),
        _ => text("400 Bad Request", "not an HTTP/1 request\n"),
    }
}

fn text(status: &str, body: &str) -> String {
    response(status, "text/plain; charset=utf-8", &[], body.to_owned())
}

fn response(status: &str, content_type: &str, extra: &[(&str, &str)], body: String) -> String {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n",
        body.len()
    );
    for (name, value) in extra {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out
}

/// Where the request head ends (the index of its blank line), if it does.
fn find_head_end(head: &[u8]) -> Option<usize> {
    head.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| head.windows(2).position(|w| w == b"\n\n"))
}

/// Decides on a complete request head (without its blank line).
pub fn judge(head: &[u8]) -> Scrape {
    let Ok(head) = std::str::from_utf8(head) else {
        return Scrape::BadRequest;
    };
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let Some(request_line) = lines.next() else {
        return Scrape::BadRequest;
    };
    let parts: Vec<&str> = request_line.split(' ').collect();
    let [method, target, version] = parts.as_slice() else {
        return Scrape::BadRequest;
    };
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    if !token(method) || !token(target) || !matches!(*version, "HTTP/1.0" | "HTTP/1.1") {
        return Scrape::BadRequest;
    }
    // Header lines must at least look like headers.
    if lines.any(|line| !line.contains(':') || line.chars().any(|c| c.is_control() && c != '\t')) {
        return Scrape::BadRequest;
    }
    if *method != "GET" {
        return Scrape::MethodNotAllowed;
    }
    match target.split('?').next().unwrap_or(target) {
        "/metrics" => Scrape::Ok,
        "/healthz" | "/health" => Scrape::Healthy,
        _ => Scrape::NotFound,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_is_served() {
        assert_eq!(
            judge(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*"),
            Scrape::Ok
        );
        assert_eq!(judge(b"GET /metrics?x=1 HTTP/1.0"), Scrape::Ok);
        assert_eq!(judge(b"GET / HTTP/1.1"), Scrape::NotFound);
        assert_eq!(judge(b"GET /healthz HTTP/1.1"), Scrape::Healthy);
        assert_eq!(judge(b"GET /health?probe=lb HTTP/1.0"), Scrape::Healthy);
        assert_eq!(judge(b"POST /healthz HTTP/1.1"), Scrape::MethodNotAllowed);
        assert_eq!(judge(b"GET /metrics/../admin HTTP/1.1"), Scrape::NotFound);
        assert_eq!(judge(b"POST /metrics HTTP/1.1"), Scrape::MethodNotAllowed);
        assert_eq!(judge(b"HEAD /metrics HTTP/1.1"), Scrape::MethodNotAllowed);
        for garbage in [
            &b""[..],
            b"\xff\xfe\x00",
            b"GET /metrics",
            b"GET  /metrics HTTP/1.1",
            b"GET /metrics HTTP/2",
            b"GET /metrics HTTP/1.1\r\nno colon here",
            b"GET /metrics HTTP/1.1\r\nX: a\x00b",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ] {
            assert_eq!(judge(garbage), Scrape::BadRequest, "{garbage:?}");
        }
    }

    async fn start() -> (
        SocketAddr,
        Arc<Metrics>,
        watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    ) {
        start_with(Arc::new(|| Box::pin(async { Ok("fine".to_owned()) }))).await
    }

    async fn start_with(
        health: Check,
    ) -> (
        SocketAddr,
        Arc<Metrics>,
        watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::default());
        let (stop, stopped) = watch::channel(false);
        let page: Page = Arc::new(|| "# HELP x X.\n# TYPE x gauge\nx 1\n".to_owned());
        let task = tokio::spawn(run(listener, page, health, Arc::clone(&metrics), stopped));
        (addr, metrics, stop, task)
    }

    #[tokio::test]
    async fn health_answers_200_or_503_with_the_checks_reason() {
        let sick = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&sick);
        let health: Check = Arc::new(move || {
            let sick = flag.load(std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                if sick {
                    Err("the store is on fire".to_owned())
                } else {
                    Ok("ok".to_owned())
                }
            })
        });
        let (addr, metrics, stop, task) = start_with(health).await;
        let answer = exchange(addr, b"GET /healthz HTTP/1.1\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nok\n"), "{answer}");
        sick.store(true, std::sync::atomic::Ordering::SeqCst);
        let answer = exchange(addr, b"GET /health HTTP/1.1\r\n\r\n").await;
        assert!(
            answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{answer}"
        );
        assert!(
            answer.ends_with("\r\n\r\nthe store is on fire\n"),
            "{answer}"
        );
        let count =
            |s: Scrape| metrics.scrapes[s as usize].load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!((count(Scrape::Healthy), count(Scrape::Unhealthy)), (1, 1));
        assert_eq!(count(Scrape::Ok), 0, "a health check is not a scrape");
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // The server may close before reading everything (too large): a
        // failed write is fine, the answer is what counts.
        let _ = stream.write_all(request).await;
        let mut answer = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn garbage_gets_an_error_and_the_server_keeps_serving() {
        let (addr, metrics, stop, task) = start().await;
        let mut random = vec![0u8; 4096];
        for (i, b) in random.iter_mut().enumerate() {
            *b = (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0];
        }
        random.extend_from_slice(b"\r\n\r\n");
        let answer = exchange(addr, &random).await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        let huge = [
            b"GET /metrics HTTP/1.1\r\nX: ".as_slice(),
            &vec![b'a'; 64 * 1024],
        ]
        .concat();
        let answer = exchange(addr, &huge).await;
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        let answer = exchange(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
        assert!(answer.contains("Allow: GET\r\n"), "{answer}");
        let answer = exchange(addr, b"GET /admin HTTP/1.1\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
        // A client that connects and closes at once.
        drop(TcpStream::connect(addr).await.unwrap());
        let answer = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: relay\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(
            answer.contains("Content-Type: text/plain; version=0.0.4"),
            "{answer}"
        );
        assert!(
            answer.ends_with("\r\n\r\n# HELP x X.\n# TYPE x gauge\nx 1\n"),
            "{answer}"
        );
        let count =
            |s: Scrape| metrics.scrapes[s as usize].load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(count(Scrape::Ok), 1);
        assert_eq!(count(Scrape::TooLarge), 1);
        assert_eq!(count(Scrape::MethodNotAllowed), 1);
        assert_eq!(count(Scrape::NotFound), 1);
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_silent_client_is_cut_after_the_timeout_and_the_rest_are_served() {
        let (addr, metrics, stop, task) = start().await;
        // Fill every slot with clients that send half a request line.
        let mut silent = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(b"GET /met").await.unwrap();
            silent.push(stream);
        }
        // One more is turned away at once: the server accepts in arrival
        // order, so the silent ones hold every slot by then.
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        let _ = extra.read_to_end(&mut buf).await;
        assert!(buf.is_empty());
        let count =
            |s: Scrape| metrics.scrapes[s as usize].load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(count(Scrape::Busy), 1);
        // After the timeout the silent ones are cut, and a scrape works.
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT * 2;
        while count(Scrape::Timeout) < MAX_CONNECTIONS as u64 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "silent clients not cut"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let answer = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert_eq!(count(Scrape::Timeout), MAX_CONNECTIONS as u64);
        assert_eq!(count(Scrape::Busy), 1);
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
