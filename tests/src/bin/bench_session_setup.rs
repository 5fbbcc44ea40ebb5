//! `deskside-bench-session-setup`: end-to-end session setup time with and
//! without the organisation key's certificate check, in one run.
//!
//! Starts the real relay (`--dev`, loopback) and two real agents (no session
//! helper, so no one can be asked and no X display is needed):
//! - *baseline*: enrolled with a plain `dse1_` token; sessions opened by a
//!   console without an organisation key (the path every session took
//!   before the organisation key existed);
//! - *certified*: enrolled with a `dse2_` token from a console holding the
//!   organisation key; sessions opened by a technician logged in with a
//!   certified `dsl2_` login string (one more request to present the
//!   certificate; the agent checks it before the handshake).
//!
//! Each run spawns `deskside --json session DEVICE --headless` and times
//! from the spawn to the `waiting_for_consent` line: connect and
//! authenticate to the relay, register the session key, (present the
//! certificate,) open the session, the agent's check, and the end-to-end
//! handshake. Runs alternate between the two, so both see the same load.
//! Also timed: the certificate check alone, in process.
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/deskside-bench-session-setup [--runs 20]
//! ```

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use deskside_net::orgkey::{check_session_certificate, OrgSigningKey};
use deskside_protocol::Fingerprint;
use deskside_tests::{bin, Console, World};

#[derive(Debug, Parser)]
struct Args {
    /// Sessions per variant.
    #[arg(long, default_value_t = 20)]
    runs: u32,
}

/// Milliseconds from spawning the console to its `waiting_for_consent`.
fn setup_ms(console: &Console, device: &str) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut child = Command::new(bin("deskside"))
        .arg("--profile")
        .arg(&console.profile)
        .args([
            "--json",
            "session",
            device,
            "--headless",
            "--reason",
            "bench",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start deskside")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut elapsed = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if line.contains("\"waiting_for_consent\"") {
            elapsed = Some(start.elapsed());
            break;
        }
    }
    let _ = child.wait();
    match elapsed {
        Some(elapsed) => Ok(elapsed.as_secs_f64() * 1000.0),
        None => bail!("the session to {device} never reached waiting_for_consent"),
    }
}

fn stats(name: &str, mut samples: Vec<f64>) -> serde_json::Value {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    serde_json::json!({
        "type": "session_setup", "variant": name, "runs": samples.len(),
        "median_ms": (at(0.5) * 10.0).round() / 10.0,
        "p90_ms": (at(0.9) * 10.0).round() / 10.0,
        "mean_ms": (mean * 10.0).round() / 10.0,
        "min_ms": (samples[0] * 10.0).round() / 10.0,
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut world = World::new();
    let relay = world.relay(None);

    let plain = world.console("plain");
    plain.login_admin(&relay);
    let plain_token = plain.enroll_token(1, "1h");
    let old = world.agent("baseline");
    let old_device = old.enroll(&plain_token);
    let _old_agent = world.run_agent(&old);

    let org_admin = world.console("orgadmin");
    org_admin.login_admin(&relay);
    org_admin.run(&["org-key", "init", "--json"]).ok();
    let org_token = org_admin.enroll_token(1, "1h");
    let new = world.agent("certified");
    let new_device = new.enroll(&org_token);
    let _new_agent = world.run_agent(&new);
    let issued = org_admin
        .run(&[
            "tokens",
            "create",
            "--name",
            "bench",
            "--role",
            "technician",
            "--json",
        ])
        .ok()
        .json();
    let tech = world.console("tech");
    tech.run(&[
        "login",
        issued["login"].as_str().context("login")?,
        "--json",
    ])
    .ok();
    plain.wait_status(&old_device, "online", Duration::from_secs(60));
    plain.wait_status(&new_device, "online", Duration::from_secs(60));

    // One unmeasured session each (page cache, first connections).
    setup_ms(&plain, &old_device)?;
    setup_ms(&tech, &new_device)?;
    let (mut baseline, mut certified) = (Vec::new(), Vec::new());
    for _ in 0..args.runs {
        baseline.push(setup_ms(&plain, &old_device)?);
        certified.push(setup_ms(&tech, &new_device)?);
    }
    println!("{}", stats("baseline_dse1_uncertified", baseline));
    println!("{}", stats("org_key_dse2_certified", certified));

    // The agent's check alone.
    let key = OrgSigningKey::generate()?;
    let session_key = Fingerprint([7; 32]);
    let certificate = key.certify(session_key, "bench", 0).encode();
    let checks = 10_000u32;
    let start = Instant::now();
    for _ in 0..checks {
        check_session_certificate(&key.public(), Some(&certificate), session_key)?;
    }
    let per_check_us = start.elapsed().as_secs_f64() * 1e6 / f64::from(checks);
    println!(
        "{}",
        serde_json::json!({
            "type": "certificate_check", "checks": checks,
            "per_check_us": (per_check_us * 10.0).round() / 10.0,
            "certificate_bytes": certificate.len(),
        })
    );
    Ok(())
}
