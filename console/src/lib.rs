//! The deskside console: the technician's command-line tool, `deskside`.
//!
//! Code map:
//! - [`cli`]: global options, validation into a [`cli::Config`], shared value parsers.
//! - [`cmd`]: one file per command group (`login`/`whoami`, `devices`,
//!   `enroll-token`, `tokens`) and the dispatch table.
//! - [`client`]: the authenticated connection to the relay.
//! - [`profile`]: the saved relay address, fingerprint and token (mode 0600).
//! - [`output`]: tables, JSON lines, time formatting; pure apart from writing.
//! - [`exit`]: exit codes and failure reporting.
//! - [`logging`]: tracing to stderr.
//!
//! Invariants: stdout carries only results (JSON lines with `--json`), logs
//! and errors go to stderr; the clock is read once, in [`run`]; secrets are
//! never printed except a token at the moment it is created.

pub mod cli;
pub mod client;
pub mod cmd;
pub mod exit;
pub mod failover;
pub mod filter;
pub mod logging;
pub mod org_key;
pub mod output;
pub mod profile;

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;

use crate::cli::Config;
use crate::output::Printer;

/// Runs a validated command to completion on a single-threaded runtime (a
/// console command makes one or two requests; it needs no thread pool).
pub fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    let mut ctx = cmd::Context {
        profile_path: config.profile_path,
        now: unix_now(),
        out: Printer::new(&mut lock, config.format),
    };
    runtime.block_on(cmd::run(config.action, &mut ctx))?;
    cmd::printed(lock.flush())
}

/// The current time in Unix seconds (0 if the clock is before 1970).
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
