//! Agent footprint benchmark: the idle `deskside-agent run` on Linux next to
//! the Windows `deskside-agent.exe` under Wine, in the same run, against the
//! same relay.
//!
//! Starts the real relay and console (release, next to this binary: build
//! with `cargo build --release --workspace --bins` and this benchmark with
//! `--features wine`), enrolls one native agent and one Windows agent under
//! Wine through the end-to-end harness ([`deskside_tests::wine`]: the `.exe`
//! in `DESKSIDE_WINDOWS_BIN_DIR`, a Wine prefix of its own, created and
//! removed here), runs both with the same log settings, lets them settle,
//! then samples every second for `--secs` seconds:
//!
//! - resident set size (VmRSS) of each agent process: for the Windows agent
//!   the Wine process that runs the .exe, the closest Linux reading of its
//!   working set;
//! - CPU time of each agent process over the window, and of the prefix's
//!   `wineserver`, which serves every Wine process and so is reported apart
//!   (it is the cost of Wine, not of the agent).
//!
//! Usage:
//! `DESKSIDE_WINDOWS_BIN_DIR=target/x86_64-pc-windows-gnu/release target/release/deskside-bench-agent-footprint`

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use deskside_tests::bench::{cpu_ticks, rss_kib, CLOCK_TICKS_PER_SEC};
use deskside_tests::wine::Wine;
use deskside_tests::{wait_for, World};

#[derive(Debug, Parser)]
struct Args {
    /// Seconds of idle time measured.
    #[arg(long, default_value_t = 60)]
    secs: u64,
    /// Seconds both agents run before the measurement starts.
    #[arg(long, default_value_t = 10)]
    settle_secs: u64,
}

/// Processes whose command line contains `needle` and whose environment has
/// `WINEPREFIX=prefix` (so another prefix's processes are never counted).
fn wine_pids(needle: &str, prefix: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let want_env = format!("WINEPREFIX={}", prefix.display());
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(needle)
                && environ.split(|b| *b == 0).any(|v| v == want_env.as_bytes())
        })
        .collect()
}

/// The Wine process running the .exe: the one with the most resident memory
/// among those naming it (the `wine-run` shell and the loader stub are tiny).
fn windows_agent_pid(prefix: &Path) -> Option<u32> {
    wine_pids("deskside-agent.exe", prefix)
        .into_iter()
        .max_by_key(|pid| rss_kib(*pid).unwrap_or(0))
}

fn wineserver_pid(prefix: &Path) -> Option<u32> {
    wine_pids("wineserver", prefix).into_iter().next()
}

struct Sampled {
    rss_kib: Vec<u64>,
    cpu_ticks: u64,
}

impl Sampled {
    fn report(&self, name: &str, secs: f64) {
        let mut rss = self.rss_kib.clone();
        rss.sort_unstable();
        let median = rss.get(rss.len() / 2).copied().unwrap_or(0);
        let max = rss.last().copied().unwrap_or(0);
        let cpu_secs = self.cpu_ticks as f64 / CLOCK_TICKS_PER_SEC;
        println!(
            "{name:<28} RSS median {:>6.1} MiB, max {:>6.1} MiB; CPU {:.2} s over {:.0} s = {:.3} % of a core",
            median as f64 / 1024.0,
            max as f64 / 1024.0,
            cpu_secs,
            secs,
            cpu_secs / secs * 100.0
        );
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Outside CI a missing Wine or .exe prints why; this benchmark then stops.
    let wine = Wine::isolated("deskside-bench-agent-footprint")
        .context("Wine and deskside-agent.exe (DESKSIDE_WINDOWS_BIN_DIR) are needed")?;
    let mut world = World::new();
    let relay = world.relay(None);
    let admin = world.console("admin");
    admin.login_admin(&relay);

    let linux = world.agent("linux");
    linux.enroll(&admin.enroll_token(1, "10m"));
    let linux_proc = world.run_agent(&linux);

    let windows_agent = wine.agent("windows");
    windows_agent.enroll(&admin.enroll_token(1, "10m"));
    let windows = world.run_wine_agent(&windows_agent);
    let prefix = wine.prefix();
    wait_for("both agents online", Duration::from_secs(120), || {
        let online = admin
            .devices()
            .iter()
            .filter(|d| d["status"] == "online")
            .count();
        (online == 2).then_some(())
    });
    std::thread::sleep(Duration::from_secs(args.settle_secs));
    let windows_pid = windows_agent_pid(prefix).context("the Wine agent process")?;
    let server_pid = wineserver_pid(prefix).context("the prefix's wineserver")?;
    let linux_pid = linux_proc.pid();

    let pids = [linux_pid, windows_pid, server_pid];
    let start_ticks: Vec<u64> = pids
        .iter()
        .map(|p| cpu_ticks(*p))
        .collect::<Result<_, _>>()?;
    let mut rss: [Vec<u64>; 3] = Default::default();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(args.secs) {
        for (i, pid) in pids.iter().enumerate() {
            rss[i].push(rss_kib(*pid)?);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let secs = started.elapsed().as_secs_f64();
    let names = [
        "Linux deskside-agent",
        "Windows agent under Wine",
        "wineserver (Wine's cost)",
    ];
    for (i, name) in names.iter().enumerate() {
        Sampled {
            rss_kib: std::mem::take(&mut rss[i]),
            cpu_ticks: cpu_ticks(pids[i])? - start_ticks[i],
        }
        .report(name, secs);
    }
    let online = admin
        .devices()
        .iter()
        .filter(|d| d["status"] == "online")
        .count();
    println!("both agents still online at the end: {}", online == 2);
    drop(windows);
    Ok(())
}
