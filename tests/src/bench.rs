//! Pieces shared by the benchmark binaries: the real relay as a child
//! process, raw devices enrolled on it, and the /proc readings they report.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context as _};
use deskside_console::client::Client;
use deskside_net::Identity;
use deskside_protocol::agent::{AgentToRelay, DeviceInfo, RelayToAgent};
use deskside_protocol::console::{ConsoleRequest, ConsoleResponse};
use deskside_protocol::token::EnrollToken;
use deskside_protocol::Fingerprint;

/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux).
pub const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// A `deskside-relay serve --dev` child process, killed when dropped.
#[derive(Debug)]
pub struct RelayProc {
    /// The process.
    pub child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The certificate fingerprint clients pin.
    pub fingerprint: Fingerprint,
}

impl Drop for RelayProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The release relay beside the running benchmark.
fn relay_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name("deskside-relay");
    if !path.exists() {
        bail!(
            "{} is missing: run `cargo build --release --workspace --bins`",
            path.display()
        );
    }
    Ok(path)
}

/// Starts the relay on loopback (`port` 0: any free port) with its data in
/// `data_dir`, logging only warnings, and waits for its ready line.
pub fn start_relay(data_dir: &Path, port: u16) -> anyhow::Result<RelayProc> {
    start_relay_program(&relay_bin()?, data_dir, port)
}

/// Like [`start_relay`], with another relay binary (for example one built
/// from an older commit, to compare).
pub fn start_relay_program(
    program: &Path,
    data_dir: &Path,
    port: u16,
) -> anyhow::Result<RelayProc> {
    start_relay_with(program, data_dir, port, &[])
}

/// The release relay beside the running benchmark, for
/// [`start_relay_with`].
pub fn relay_program() -> anyhow::Result<PathBuf> {
    relay_bin()
}

/// Like [`start_relay_program`], with `extra` `serve` flags before those of
/// `DESKSIDE_BENCH_RELAY_ARGS` (e.g. `--store URL` for relays sharing a
/// PostgreSQL database).
pub fn start_relay_with(
    program: &Path,
    data_dir: &Path,
    port: u16,
    extra: &[String],
) -> anyhow::Result<RelayProc> {
    let mut child = Command::new(program)
        .args([
            "serve",
            "--dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data_dir)
        .args(extra)
        // Extra `serve` flags for every benchmark's relay, e.g.
        // `--metrics-listen 127.0.0.1:9474` to measure what scraping costs.
        .args(
            std::env::var("DESKSIDE_BENCH_RELAY_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start the relay")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let ready: serde_json::Value = serde_json::from_str(&line).context("ready line")?;
    Ok(RelayProc {
        child,
        addr: ready["listen"].as_str().context("listen")?.to_owned(),
        fingerprint: ready["fingerprint"]
            .as_str()
            .context("fingerprint")?
            .parse()?,
    })
}

/// Enrolls `n` devices on the relay at `relay` through raw agent
/// connections (enrollment tokens from `client`, an admin's console) and
/// returns their identities; `software` names the benchmark in the hello.
pub async fn enroll_raw_devices(
    relay: &str,
    fingerprint: Fingerprint,
    client: &mut Client,
    n: usize,
    software: &str,
) -> anyhow::Result<Vec<Identity>> {
    let endpoint =
        deskside_net::transport::client_endpoint(deskside_net::transport::resolve(relay).await?)?;
    let mut identities = Vec::with_capacity(n);
    let mut secret = String::new();
    for i in 0..n {
        // One token allows 100 uses by default policy; take a new one per 100.
        if i % 100 == 0 {
            secret = match client
                .request(ConsoleRequest::CreateEnrollToken {
                    uses: 100,
                    expires_in_secs: 3600,
                    group: None,
                })
                .await?
            {
                ConsoleResponse::EnrollToken(issued) => EnrollToken::decode(&issued.token)?.secret,
                other => bail!("unexpected {other:?}"),
            };
        }
        let identity = Identity::generate(&["deskside-agent"])?;
        let options = deskside_net::transport::ConnectOptions {
            relay: relay.to_owned(),
            fingerprint,
            identity: Some(identity.clone()),
            idle_timeout: std::time::Duration::from_secs(10),
            keep_alive: None,
            software: software.to_owned(),
        };
        let mut connected = deskside_net::connect(&endpoint, &options).await?;
        connected
            .send
            .send(&AgentToRelay::Enroll {
                secret: secret.clone(),
                info: DeviceInfo {
                    hostname: format!("bench-{i:05}"),
                    os: "Bench OS".to_owned(),
                    agent_version: "0.0.0".to_owned(),
                },
            })
            .await?;
        match connected.recv.recv::<RelayToAgent>().await? {
            Some(RelayToAgent::Enrolled { .. }) => {}
            other => bail!("enrollment {i} failed: {other:?}"),
        }
        connected.connection.close(0u32.into(), b"enrolled");
        identities.push(identity);
    }
    Ok(identities)
}

/// Resident set size of process `pid` in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")
}

/// User + system CPU time of process `pid` in clock ticks.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}
