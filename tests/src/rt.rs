//! A real Request Tracker 5 for the RT connector's tests: Debian's
//! `request-tracker5` with `rt5-db-sqlite`, run from a temporary directory
//! with its own site configuration (`RT_SITE_CONFIG`, and an empty
//! `RT_SITE_CONFIG_DIR` so the system's `/etc/request-tracker5` is never
//! read), its own SQLite database made by `rt-setup-database --action init`,
//! and its bundled server (`rt-server`, Starlet with two workers) on a free
//! loopback port. An auth token for `root` is made with RT's own libraries
//! while the server starts; the queue is made through REST 2.0.
//!
//! In front of RT sits [`LosingProxy`], a loopback HTTP proxy that can
//! let RT handle one request and then lose its answer, holding the
//! client's connection open: the moment a relay killed after RT answered
//! but before it recorded the answer would be in.
//!
//! RT's processes form their own process group, killed on drop. When RT is
//! not installed, [`Rt::start`] panics under `CI=true` and otherwise returns
//! `None` after printing why the test is skipped.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// RT's bundled server.
pub const RT_SERVER: &str = "/usr/share/request-tracker5/libexec/rt-server";
/// RT's libraries.
const RT_LIB: &str = "/usr/share/request-tracker5/lib";
/// Longest wait for RT to set up or answer.
const START_LIMIT: Duration = Duration::from_secs(120);

/// A running Request Tracker.
#[derive(Debug)]
pub struct Rt {
    dir: tempfile::TempDir,
    port: u16,
    token: String,
    server: Option<Child>,
    http: ureq::Agent,
    /// How long setting up and starting RT took.
    pub started_in: Duration,
}

impl Rt {
    /// Sets up and starts RT with a queue named `queue`, or `None` (after
    /// saying so) when RT is not installed and CI is not set.
    pub fn start(queue: &str) -> Option<Rt> {
        if !Path::new(RT_SERVER).exists() {
            let why = format!(
                "Request Tracker 5 is not installed ({RT_SERVER} is missing): \
                 apt-get install request-tracker5 rt5-db-sqlite"
            );
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
            eprintln!("SKIPPED: {why}");
            return None;
        }
        let begun = Instant::now();
        let dir = tempfile::tempdir().expect("RT's directory");
        let port = free_tcp_port();
        for sub in ["etc.d", "mason", "session"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("RT's directories");
        }
        std::fs::write(
            dir.path().join("RT_SiteConfig.pm"),
            site_config(dir.path(), port),
        )
        .expect("RT_SiteConfig.pm");
        let mut rt = Rt {
            port,
            token: String::new(),
            server: None,
            http: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .build()
                .into(),
            dir,
            started_in: Duration::ZERO,
        };
        let setup = rt
            .command("rt-setup-database")
            .args([
                "--action",
                "init",
                "--skip-create",
                "--dba",
                "root",
                "--prompt-for-dba-password",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run rt-setup-database");
        assert!(
            setup.status.success(),
            "rt-setup-database failed: {}{}",
            String::from_utf8_lossy(&setup.stdout),
            String::from_utf8_lossy(&setup.stderr)
        );
        rt.spawn_server();
        // The token, with RT's libraries, while the server starts.
        let token = rt
            .command("perl")
            .args([
                &format!("-I{RT_LIB}"),
                "-e",
                "use RT; RT::LoadConfig(); RT::Init(); \
                 my $u = RT::User->new(RT->SystemUser); $u->Load('root'); \
                 my $t = RT::AuthToken->new($u); \
                 my ($ok, $msg, $auth) = $t->Create(Owner => $u->Id, Description => 'deskside tests'); \
                 die \"$msg\\n\" unless $ok; print $auth;",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run perl");
        assert!(
            token.status.success(),
            "cannot make an RT auth token: {}",
            String::from_utf8_lossy(&token.stderr)
        );
        rt.token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
        crate::secret_scan::remember(&rt.token);
        rt.wait_ready();
        let made = rt.post("/queue", &serde_json::json!({ "Name": queue }));
        assert!(made["id"].is_string(), "queue {queue} not made: {made}");
        rt.started_in = begun.elapsed();
        eprintln!("Request Tracker set up and started in {:?}", rt.started_in);
        Some(rt)
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .env("RT_SITE_CONFIG", self.dir.path().join("RT_SiteConfig.pm"))
            .env("RT_SITE_CONFIG_DIR", self.dir.path().join("etc.d"));
        command
    }

    fn spawn_server(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("RT's log");
        let child = self
            .command(RT_SERVER)
            .args(["--port", &self.port.to_string(), "--max-workers", "2"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("RT's log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start rt-server");
        self.server = Some(child);
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("rt-server.log")
    }

    /// What RT printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let answer = self
                .http
                .get(format!("{}/REST/2.0/queues/all", self.url()))
                .header("Authorization", &format!("token {}", self.token))
                .call();
            if matches!(&answer, Ok(a) if a.status() == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "RT did not answer within {START_LIMIT:?}: {answer:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// RT's web address (the REST 2.0 API is under `/REST/2.0`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// root's auth token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Stops RT (its whole process group).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.server.take() {
            kill_group(&child);
            let _ = child.wait();
        }
    }

    /// Starts the stopped RT again on the same port and database, and
    /// waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.server.is_none(), "RT is running");
        self.spawn_server();
        self.wait_ready();
    }

    fn answer(&self, result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Value {
        let mut response = result.unwrap_or_else(|e| panic!("RT: {e}\n{}", self.log()));
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        assert!((200..300).contains(&status), "RT answered {status}: {body}");
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("RT's answer is not JSON ({e}): {body}"))
    }

    /// `GET /REST/2.0{path}` as root.
    pub fn get(&self, path: &str) -> Value {
        self.answer(
            self.http
                .get(format!("{}/REST/2.0{path}", self.url()))
                .header("Authorization", &format!("token {}", self.token))
                .call(),
        )
    }

    /// `POST /REST/2.0{path}` of `body` as root.
    pub fn post(&self, path: &str, body: &Value) -> Value {
        self.answer(
            self.http
                .post(format!("{}/REST/2.0{path}", self.url()))
                .header("Authorization", &format!("token {}", self.token))
                .header("Content-Type", "application/json")
                .send(body.to_string().as_bytes()),
        )
    }

    /// The ids of the tickets TicketSQL `query` finds, in id order.
    pub fn ticket_ids(&self, query: &str) -> Vec<u64> {
        let mut encoded = String::new();
        for b in query.bytes() {
            if b.is_ascii_alphanumeric() {
                encoded.push(char::from(b));
            } else {
                encoded.push_str(&format!("%{b:02X}"));
            }
        }
        let found = self.get(&format!(
            "/tickets?query={encoded}&orderby=id&order=ASC&per_page=100"
        ));
        found["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i["id"].as_str().and_then(|id| id.parse().ok()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ticket `id` as REST 2.0 shows it.
    pub fn ticket(&self, id: u64) -> Value {
        self.get(&format!("/ticket/{id}"))
    }

    /// Ticket `id`'s transactions with their type and data (a comment's
    /// data is its subject), oldest first.
    pub fn history(&self, id: u64) -> Vec<Value> {
        let found = self.get(&format!(
            "/ticket/{id}/history?fields=Type,Data,OldValue,NewValue,Field&per_page=100"
        ));
        found["items"].as_array().cloned().unwrap_or_default()
    }

    /// Ticket `id`'s attachments with their file name, type and content
    /// (the collection gives it as text), oldest first.
    pub fn attachments(&self, id: u64) -> Vec<RtAttachment> {
        let found = self.get(&format!(
            "/ticket/{id}/attachments?fields=Filename,ContentType,TransactionId,Content&per_page=100"
        ));
        found["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|a| RtAttachment {
                filename: a["Filename"].as_str().unwrap_or_default().to_owned(),
                content_type: a["ContentType"].as_str().unwrap_or_default().to_owned(),
                content: a["Content"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    }
}

/// One attachment of a ticket.
#[derive(Clone, Debug)]
pub struct RtAttachment {
    /// Its file name (empty for a message's body).
    pub filename: String,
    /// Its MIME type.
    pub content_type: String,
    /// Its content.
    pub content: String,
}

impl Drop for Rt {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- rt-server log -----\n{}", self.log());
        }
        self.stop();
    }
}

fn kill_group(child: &Child) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    #[allow(unsafe_code)]
    // SAFETY: kill(2) has no memory-safety preconditions; the group is our
    // child's own (process_group(0)).
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// RT's site configuration: SQLite in `dir`, the web server on `port`,
/// logs to stderr, mail dropped, Mason's caches in `dir`.
fn site_config(dir: &Path, port: u16) -> String {
    let dir = dir.display();
    format!(
        r#"Set($rtname, 'deskside-test');
Set($Organization, 'deskside.test');
Set($DatabaseType, 'SQLite');
Set($DatabaseName, '{dir}/rt.db');
Set($WebDomain, '127.0.0.1');
Set($WebPort, {port});
Set($WebPath, '');
Set($WebBaseURL, 'http://127.0.0.1:{port}');
Set($LogToSTDERR, 'warning');
Set($LogToSyslog, undef);
Set($LogToFile, undef);
Set($MailCommand, sub {{ 1 }});
Set($CorrespondAddress, 'rt@deskside.test');
Set($CommentAddress, 'rt-comment@deskside.test');
$RT::MasonDataDir = '{dir}/mason';
$RT::MasonSessionDir = '{dir}/session';
1;
"#
    )
}

#[derive(Debug, Default)]
struct LoseState {
    /// The method and path of the next request whose answer is lost.
    armed: Option<(String, String)>,
    /// Requests RT handled whose answer was lost.
    lost: usize,
}

/// A loopback HTTP proxy to a server on `127.0.0.1:target`, one request
/// per connection (it closes each after the answer). Armed with
/// [`LosingProxy::lose_next`], it forwards the next matching request, reads
/// the server's whole answer (so the server has done its work) and never
/// passes it on: the client waits until it gives up or dies.
#[derive(Debug)]
pub struct LosingProxy {
    port: u16,
    state: Arc<Mutex<LoseState>>,
    stop: Arc<AtomicBool>,
}

impl LosingProxy {
    /// Starts the proxy to `127.0.0.1:target`.
    pub fn start(target: u16) -> LosingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(LoseState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_state, thread_stop) = (Arc::clone(&state), Arc::clone(&stop));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if thread_stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let (state, stop) = (Arc::clone(&thread_state), Arc::clone(&thread_stop));
                std::thread::spawn(move || relay_one(client, target, &state, &stop));
            }
        });
        LosingProxy { port, state, stop }
    }

    /// The proxy's address, standing for the server's.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Loses the answer to the next `method` request for exactly `path`
    /// (without its query).
    pub fn lose_next(&self, method: &str, path: &str) {
        self.state.lock().expect("proxy state").armed = Some((method.into(), path.into()));
    }

    /// How many answers were lost so far.
    pub fn lost(&self) -> usize {
        self.state.lock().expect("proxy state").lost
    }
}

impl Drop for LosingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads an HTTP head (through the blank line) and then the body its
/// Content-Length announces (or, with `to_eof`, everything until EOF).
fn read_message(stream: &mut TcpStream, to_eof: bool) -> Option<(String, Vec<u8>)> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 || data.len() > 1 << 20 {
            return None;
        }
        data.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())
            .flatten()
    });
    let mut body = data[head_end..].to_vec();
    match length {
        Some(length) => {
            while body.len() < length {
                let n = stream.read(&mut chunk).ok()?;
                if n == 0 {
                    return None;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        None if to_eof => {
            stream.read_to_end(&mut body).ok()?;
        }
        None => {}
    }
    Some((head, body))
}

/// `head` with its Connection header replaced by `Connection: close`.
fn closing(head: &str) -> String {
    let mut out = String::new();
    for line in head.trim_end().split("\r\n") {
        let is_connection = line
            .split_once(':')
            .is_some_and(|(name, _)| name.trim().eq_ignore_ascii_case("connection"));
        if !is_connection {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

fn relay_one(mut client: TcpStream, target: u16, state: &Mutex<LoseState>, stop: &AtomicBool) {
    let Some((head, body)) = read_message(&mut client, false) else {
        return;
    };
    let mut words = head.split_whitespace();
    let (method, target_path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target_path.split('?').next().unwrap_or("");
    let lose = {
        let mut state = state.lock().expect("proxy state");
        let matches = state
            .armed
            .as_ref()
            .is_some_and(|(m, p)| m == method && p == path);
        if matches {
            state.armed = None;
        }
        matches
    };
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)) else {
        return; // The server is down: the client sees its connection closed.
    };
    if server.write_all(closing(&head).as_bytes()).is_err() || server.write_all(&body).is_err() {
        return;
    }
    let Some((answer_head, answer_body)) = read_message(&mut server, true) else {
        return;
    };
    if lose {
        state.lock().expect("proxy state").lost += 1;
        // Hold the client until it goes away (or the proxy stops).
        let _ = client.set_read_timeout(Some(Duration::from_millis(200)));
        let mut sink = [0u8; 1024];
        while !stop.load(Ordering::SeqCst) {
            match client.read(&mut sink) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        }
        return;
    }
    let _ = client.write_all(closing(&answer_head).as_bytes());
    let _ = client.write_all(&answer_body);
}
