//! End-to-end test harness: starts the real `deskside-relay`, `deskside-agent`
//! and `deskside` binaries on loopback with temporary directories.
//!
//! Rules it enforces: no fixed ports (the relay binds `127.0.0.1:0` and
//! reports its address in its ready line), no sleeps as synchronisation (poll
//! with a deadline), children killed on drop, and their logs printed when a
//! test fails.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
pub mod bench;
pub mod cluster;
pub mod impair;
pub mod latency;
pub mod netns;
pub mod peers;
pub mod prometheus;
pub mod rt;
pub mod secret_scan;
pub mod stage;
pub mod ticketing;
#[cfg(feature = "wine")]
pub mod wine;
pub mod x11;

/// Where cargo put the workspace binaries: next to a benchmark binary, or
/// one level up from a test executable (`target/<profile>/deps/<test>`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let here = exe.parent().expect("the executable has a directory");
    let dir = if here.ends_with("deps") {
        here.parent().expect("target/<profile>")
    } else {
        here
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins` (the test script does this)",
        path.display()
    );
    path
}

/// Polls `check` every 100 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A UDP port on 127.0.0.1 that was free a moment ago (bound, read,
/// released), for a relay that must start on a port known in advance:
/// behind a proxy, or restarted on the same port.
pub fn free_udp_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("addr").port()
}

/// A child process killed on drop, whose stderr goes to a log file that is
/// printed if the test panics.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    /// Kill every descendant too: the child is a wrapper script (Wine's
    /// `scripts/wine-run`) whose program would survive the script.
    kill_tree: bool,
}

impl Proc {
    fn spawn(
        name: &str,
        mut command: Command,
        log: PathBuf,
    ) -> (Self, Option<std::process::ChildStdout>) {
        let log_file = std::fs::File::create(&log).expect("create log file");
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = child.stdout.take();
        (
            Self {
                name: name.to_owned(),
                child,
                log,
                kill_tree: false,
            },
            stdout,
        )
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) {
        self.kill_with_descendants();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        signal(self.child.id(), libc::SIGTERM);
        self.wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{} did not exit within 10 s of SIGTERM", self.name))
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Proc {
    /// SIGKILLs the process, then every descendant when `kill_tree` is set
    /// (listed before any dies, so none is missed by being re-parented).
    /// The wrapper dies first: a wrapper that saw its program killed would
    /// react (scripts/wine-run then kills every program of the Wine prefix,
    /// other tests' agents included).
    fn kill_with_descendants(&mut self) {
        let tree = if self.kill_tree {
            descendants(self.child.id())
        } else {
            Vec::new()
        };
        let _ = self.child.kill();
        for pid in tree {
            signal(pid, libc::SIGKILL);
        }
    }
}

/// Every descendant of `pid`, from `/proc/PID/task/TID/children` (Linux).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(parent) = queue.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                found.push(child);
                queue.push(child);
            }
        }
    }
    found
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_with_descendants();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- {} stderr -----\n{}", self.name, self.log());
            return;
        }
        // No secret is ever logged: every token and key the harness saw
        // created is looked for in this process's log.
        let leaked = secret_scan::found_in(&self.log());
        assert!(
            leaked.is_empty(),
            "{} logged secrets ({}): {}",
            self.name,
            self.log.display(),
            leaked.join(", ")
        );
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    #[allow(unsafe_code)]
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our child.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// A test world: one temporary directory holding every process's state.
#[derive(Debug)]
pub struct World {
    dir: tempfile::TempDir,
    logs: usize,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    /// A fresh temporary directory.
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("deskside-e2e-")
                .tempdir()
                .expect("tempdir"),
            logs: 0,
        }
    }

    /// A path inside the world.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log_path(&mut self, name: &str) -> PathBuf {
        self.logs += 1;
        self.path(&format!("{name}-{}.log", self.logs))
    }

    /// Starts a `--dev` relay with its data in `relay-data`, on an ephemeral
    /// port (or `port` to restart on the same one).
    pub fn relay(&mut self, port: Option<u16>) -> Relay {
        self.relay_with(port, &[])
    }

    /// Like [`World::relay`], with extra `serve` flags.
    pub fn relay_with(&mut self, port: Option<u16>, extra: &[&str]) -> Relay {
        self.relay_program("deskside-relay", port, extra)
    }

    /// A relay reached only through a userspace impairment proxy (no
    /// impairment yet): the relay advertises the proxy's address in its
    /// tokens, so agents enrolled with them measure their path through it.
    /// The proxy runs on the returned two-thread runtime; the relay's own
    /// port is `proxy.upstream()`, to restart it on.
    pub fn relay_behind_proxy(&mut self) -> ProxiedRelay {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
        let proxy = runtime
            .block_on(impair::ImpairProxy::spawn(
                upstream,
                impair::Impairment::default(),
            ))
            .expect("proxy");
        let public = proxy.local_addr().to_string();
        let relay = self.relay_with(Some(upstream.port()), &["--public-addr", &public]);
        ProxiedRelay {
            relay,
            proxy,
            runtime,
        }
    }

    /// Like [`World::relay_with`], running another relay program that takes
    /// the same flags (the test-only `deskside-spy-relay`).
    pub fn relay_program(&mut self, program: &str, port: Option<u16>, extra: &[&str]) -> Relay {
        let listen = format!("127.0.0.1:{}", port.unwrap_or(0));
        self.relay_serving(program, &["--dev", "--listen", &listen], extra)
    }

    /// Starts `program serve HEAD… --data-dir relay-data --idle-timeout 6s
    /// EXTRA…`: [`World::relay_program`] with other flags than `--dev` on
    /// loopback (a configuration file and a listening address other hosts,
    /// or network namespaces, can reach).
    pub fn relay_serving(&mut self, program: &str, head: &[&str], extra: &[&str]) -> Relay {
        let data_dir = self.path("relay-data");
        self.relay_named("relay", program, data_dir, head, extra, None)
    }

    /// [`World::relay_serving`] with its data in `data_dir` and its log
    /// and process named `name`, for several relays in one world
    /// (`cluster.rs`). `admin_token` is what [`Relay::admin_token`] holds
    /// for a relay that did not make its organisation (it shares another
    /// relay's store); `None` reads the `admin-token` file it wrote.
    pub fn relay_named(
        &mut self,
        name: &str,
        program: &str,
        data_dir: PathBuf,
        head: &[&str],
        extra: &[&str],
        admin_token: Option<&str>,
    ) -> Relay {
        let mut command = Command::new(bin(program));
        command
            .arg("serve")
            .args(head)
            .arg("--data-dir")
            .arg(&data_dir)
            // Longer than the agents' 4 s keep-alive: at 4 s the idle
            // timeout raced the keep-alive, and every idle agent dropped and
            // reconnected every 4 s (a session asked in that gap was refused
            // as "offline").
            .args(["--idle-timeout", "6s"])
            .args(extra)
            .env("RUST_LOG", "info,deskside_relay=debug");
        let log = self.log_path(name);
        let (proc, stdout) = Proc::spawn(name, command, log);
        let ready = read_ready_line(stdout.expect("relay stdout"), &proc);
        let addr = ready["listen"]
            .as_str()
            .expect("listen in ready line")
            .to_owned();
        let fingerprint = ready["fingerprint"]
            .as_str()
            .expect("fingerprint")
            .to_owned();
        let metrics = ready["metrics"].as_str().map(str::to_owned);
        let admin_token = match admin_token {
            Some(token) => token.to_owned(),
            None => std::fs::read_to_string(data_dir.join("admin-token"))
                .expect("admin-token file")
                .trim()
                .to_owned(),
        };
        secret_scan::remember_token(&admin_token);
        secret_scan::remember_key_file(&data_dir.join("relay-key.pem"));
        Relay {
            proc,
            addr,
            fingerprint,
            admin_token,
            data_dir,
            metrics,
        }
    }

    /// A console with its own profile file (not logged in yet).
    pub fn console(&self, name: &str) -> Console {
        Console {
            profile: self.path(&format!("{name}-profile.json")),
        }
    }

    /// An agent with its own state directory.
    pub fn agent(&self, name: &str) -> Agent {
        Agent {
            state_dir: self.path(&format!("{name}-state")),
            name: name.to_owned(),
        }
    }

    /// Starts any program, logging its stderr like the others; its stdout is
    /// returned for the caller to read.
    pub fn spawn(&mut self, name: &str, command: Command) -> (Proc, std::process::ChildStdout) {
        let log = self.log_path(name);
        let (proc, stdout) = Proc::spawn(name, command, log);
        (proc, stdout.expect("stdout is piped"))
    }

    /// Starts `deskside-agent run` for `agent`.
    pub fn run_agent(&mut self, agent: &Agent) -> Proc {
        self.run_agent_through(agent, &[])
    }

    /// Like [`World::run_agent`], started through `prefix` (a command that
    /// runs the rest of its command line, e.g. `ip netns exec NAME`).
    pub fn run_agent_through(&mut self, agent: &Agent, prefix: &[String]) -> Proc {
        let mut command = match prefix.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(bin("deskside-agent"));
                command
            }
            None => Command::new(bin("deskside-agent")),
        };
        command
            .arg("--state-dir")
            .arg(&agent.state_dir)
            .arg("run")
            .env("RUST_LOG", "info,deskside_agent=debug");
        let log = self.log_path(&agent.name);
        Proc::spawn(&agent.name, command, log).0
    }

    /// Starts a `--dev` relay on an ephemeral port and a console `admin`
    /// logged into it with the relay's first admin token: where most tests
    /// begin.
    pub fn relay_and_admin(&mut self) -> (Relay, Console) {
        let relay = self.relay(None);
        let admin = self.console("admin");
        admin.login_admin(&relay);
        (relay, admin)
    }

    /// [`World::relay_and_admin`] plus an agent `laptop` enrolled with a
    /// single-use enrollment token valid for ten minutes. The agent service
    /// is not started: call [`World::run_agent`] for that.
    pub fn enrolled_laptop(&mut self) -> Enrolled {
        let (relay, admin) = self.relay_and_admin();
        let agent = self.agent("laptop");
        let device = agent.enroll(&admin.enroll_token(1, "10m"));
        Enrolled {
            relay,
            admin,
            agent,
            device,
        }
    }
}

/// What [`World::enrolled_laptop`] sets up. Bind every field you keep alive:
/// dropping `relay` stops the relay.
#[derive(Debug)]
pub struct Enrolled {
    /// The running relay.
    pub relay: Relay,
    /// The console `admin`, logged in as the relay's first administrator.
    pub admin: Console,
    /// The enrolled agent `laptop` (not running).
    pub agent: Agent,
    /// The device id the relay gave `agent`.
    pub device: String,
}

fn read_ready_line(stdout: std::process::ChildStdout, proc: &Proc) -> Value {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep draining so the relay never blocks on a full pipe.
        for _ in lines {}
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| {
            panic!(
                "relay printed no ready line within 30 s; stderr:\n{}",
                proc.log()
            )
        });
    let value: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("ready line {line:?} is not JSON: {e}"));
    assert_eq!(
        value["type"], "ready",
        "first stdout line is the ready line"
    );
    value
}

/// A relay behind an impairment proxy, from [`World::relay_behind_proxy`].
#[derive(Debug)]
pub struct ProxiedRelay {
    /// The relay.
    pub relay: Relay,
    /// The proxy in front of it: `set` shapes the agents' path.
    pub proxy: impair::ImpairProxy,
    /// The runtime the proxy runs on; it stops when this is dropped.
    pub runtime: tokio::runtime::Runtime,
}

/// A running relay.
#[derive(Debug)]
pub struct Relay {
    /// The process.
    pub proc: Proc,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// `sha256:…`.
    pub fingerprint: String,
    /// The bootstrap admin token.
    pub admin_token: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Where it serves Prometheus metrics (`--metrics-listen`), from its
    /// ready line; `None` when off.
    pub metrics: Option<String>,
}

impl Relay {
    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    }
}

/// Output of a CLI run, with helpers.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Panics unless the exit code is 0.
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "command failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panics unless the command failed with `code` and stderr contains `needle`.
    pub fn fails_with(self, code: i32, needle: &str) -> Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "stderr does not mention {needle:?}:\n{}",
            self.stderr
        );
        self
    }

    /// Stdout parsed as JSON lines.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line {l:?}: {e}"))
            })
            .collect()
    }

    /// The single JSON object printed.
    pub fn json(&self) -> Value {
        let mut lines = self.json_lines();
        assert_eq!(
            lines.len(),
            1,
            "expected one JSON line, got: {}",
            self.stdout
        );
        lines.remove(0)
    }
}

fn run(command: &mut Command) -> Run {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    Run::from(output)
}

/// The technician console, with its own profile.
#[derive(Debug, Clone)]
pub struct Console {
    /// Profile file.
    pub profile: PathBuf,
}

impl Console {
    /// Runs `deskside ARGS` with this profile.
    pub fn run(&self, args: &[&str]) -> Run {
        secret_scan::remember_args(args);
        let out = run(Command::new(bin("deskside"))
            .arg("--profile")
            .arg(&self.profile)
            .args(args)
            .env_remove("DESKSIDE_TOKEN"));
        secret_scan::remember_json_tokens(&out.stdout);
        out
    }

    /// Creates a technician token named `name` with `role` (`admin`,
    /// `technician` or `viewer`) through this console, which must be logged
    /// in as an administrator. Returns the `tokens create --json` answer: the
    /// secret in `token`, a login string in `login`, the id in `id`.
    pub fn create_token(&self, name: &str, role: &str) -> Value {
        self.run(&["tokens", "create", "--name", name, "--role", role, "--json"])
            .ok()
            .json()
    }

    /// Logs in with flags.
    pub fn login(&self, relay: &Relay, token: &str) -> Run {
        self.run(&[
            "login",
            "--relay",
            &relay.addr,
            "--fingerprint",
            &relay.fingerprint,
            "--token",
            token,
            "--json",
        ])
    }

    /// Logs in as the bootstrap admin.
    pub fn login_admin(&self, relay: &Relay) {
        self.login(relay, &relay.admin_token).ok();
    }

    /// Creates an enrollment token.
    pub fn enroll_token(&self, uses: u32, expires: &str) -> String {
        let out = self
            .run(&[
                "enroll-token",
                "create",
                "--uses",
                &uses.to_string(),
                "--expires",
                expires,
                "--json",
            ])
            .ok()
            .json();
        out["token"].as_str().expect("token").to_owned()
    }

    /// `devices list --json`.
    pub fn devices(&self) -> Vec<Value> {
        self.run(&["devices", "list", "--json"]).ok().json_lines()
    }

    /// One device's row of `devices list --json`, if it is listed.
    pub fn device(&self, id: &str) -> Option<Value> {
        self.devices().into_iter().find(|d| d["id"] == id)
    }

    /// Status of one device as listed (`online`, `offline`, `revoked`).
    pub fn device_status(&self, id: &str) -> Option<String> {
        self.device(id)
            .and_then(|d| d["status"].as_str().map(str::to_owned))
    }

    /// The rows of `requests list --json`.
    pub fn requests(&self) -> Vec<Value> {
        self.run(&["requests", "list", "--json"]).ok().json_lines()
    }

    /// Waits until the device is listed with `status`.
    pub fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> Duration {
        let start = Instant::now();
        wait_for(&format!("device {id} to be {status}"), timeout, || {
            (self.device_status(id).as_deref() == Some(status)).then_some(())
        });
        start.elapsed()
    }
}

/// An agent's state directory and CLI.
#[derive(Debug, Clone)]
pub struct Agent {
    /// State directory.
    pub state_dir: PathBuf,
    name: String,
}

impl Agent {
    /// Runs `deskside-agent ARGS` with this state directory.
    pub fn run(&self, args: &[&str]) -> Run {
        run(Command::new(bin("deskside-agent"))
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(args)
            .env_remove("DESKSIDE_ENROLL_TOKEN"))
    }

    /// Enrolls and returns the device id.
    pub fn enroll(&self, token: &str) -> String {
        secret_scan::remember_token(token);
        self.run(&["enroll", token]).ok();
        secret_scan::remember_key_file(&self.key_path());
        self.status()["device_id"]
            .as_str()
            .expect("device id after enroll")
            .to_owned()
    }

    /// `check --json` (with `--quick` when `quick`): the output line,
    /// checked to be a `check`, with the `snapshot` and the `verdict`.
    pub fn check_json(&self, quick: bool) -> Value {
        let mut args = vec!["check", "--json"];
        if quick {
            args.push("--quick");
        }
        let out = self.run(&args).ok().json();
        assert_eq!(out["type"], "check");
        out
    }

    /// `help --summary SUMMARY --urgency URGENCY EXTRA… --json`: what it
    /// printed about the request (`status`, and `number` once the relay
    /// has it).
    pub fn ask_help(&self, summary: &str, urgency: &str, extra: &[&str]) -> Value {
        let mut args = vec!["help", "--summary", summary, "--urgency", urgency];
        args.extend_from_slice(extra);
        args.push("--json");
        self.run(&args).ok().json()
    }

    /// `status --json`.
    pub fn status(&self) -> Value {
        self.run(&["status", "--json"]).ok().json()
    }

    /// Path of the private key.
    pub fn key_path(&self) -> PathBuf {
        self.state_dir.join("agent-key.pem")
    }
}

/// In-process raw QUIC clients that skip the normal client code, for
/// misbehaviour and version tests.
pub mod raw {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use deskside_net::tls::client_config;
    use deskside_net::transport::{client_endpoint, transport_config};
    use deskside_net::{FramedRecv, FramedSend, ALPN};
    use deskside_protocol::version::{ClientHello, ServerHello, VersionRange, MAGIC};
    use deskside_protocol::Fingerprint;

    /// A QUIC connection to the relay (pinned, no client certificate) with
    /// nothing sent yet. The endpoint must outlive the connection.
    async fn connect(
        addr: SocketAddr,
        fingerprint: Fingerprint,
    ) -> (quinn::Endpoint, quinn::Connection) {
        let endpoint = client_endpoint(addr).expect("endpoint");
        let (tls, _) = client_config(fingerprint, None, ALPN).expect("tls");
        let mut config = quinn::ClientConfig::new(Arc::new(
            quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic tls"),
        ));
        config.transport_config(Arc::new(transport_config(Duration::from_secs(30), None)));
        let connection = endpoint
            .connect_with(config, addr, "deskside-relay")
            .expect("connect")
            .await
            .expect("handshake");
        (endpoint, connection)
    }

    /// Optionally sends a valid hello, then writes `bytes` on the control
    /// stream and returns how the relay closed the connection (as text).
    pub async fn send_and_wait_close(
        addr: SocketAddr,
        fingerprint: Fingerprint,
        bytes: &[u8],
        after_hello: bool,
    ) -> String {
        let (_endpoint, connection) = connect(addr, fingerprint).await;
        let (mut send, mut recv) = connection.open_bi().await.expect("stream");
        if after_hello {
            let body = deskside_protocol::message::encode_value(&ClientHello::current("raw-test"))
                .expect("hello");
            let mut frame = Vec::new();
            deskside_protocol::frame::encode_frame(&body, 1024, &mut frame).expect("frame");
            send.write_all(&frame).await.expect("write hello");
            let mut header = [0u8; 4];
            recv.read_exact(&mut header).await.expect("server hello");
        }
        send.write_all(bytes).await.expect("write");
        let reason = tokio::time::timeout(Duration::from_secs(15), connection.closed())
            .await
            .expect("the relay closes a misbehaving connection");
        reason.to_string()
    }

    /// Sends a hello claiming `versions` and returns the relay's answer.
    pub async fn exchange_hello(
        addr: SocketAddr,
        fingerprint: Fingerprint,
        versions: VersionRange,
    ) -> ServerHello {
        let (_endpoint, connection) = connect(addr, fingerprint).await;
        let (send, recv) = connection.open_bi().await.expect("stream");
        let mut send = FramedSend::new(send, 1024);
        let mut recv = FramedRecv::new(recv, 1024);
        send.send_value(&ClientHello {
            magic: MAGIC,
            versions,
            software: "deskside-from-the-future 9.0".into(),
        })
        .await
        .expect("send hello");
        tokio::time::timeout(Duration::from_secs(10), recv.recv_value())
            .await
            .expect("the relay answers instead of hanging")
            .expect("a server hello")
    }
}
