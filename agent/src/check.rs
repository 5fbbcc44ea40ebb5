//! `deskside-agent check` and `deskside-agent history`: the employee's own
//! view of the diagnostics.

use std::io::IsTerminal as _;
use std::time::{Duration, UNIX_EPOCH};

use deskside_agent::diag::collect::{self, Step, Target};
use deskside_agent::diag::{remember, Requester};
use deskside_agent::link::LinkError;
use deskside_agent::state::{StateDir, StateError};
use deskside_diag::report::{self, Lang, Style};
use deskside_diag::verdict;

fn language(flag: Option<&str>) -> Lang {
    report::lang_for(flag, |name| std::env::var(name).ok())
}

/// Runs every probe, judges the result and prints the report.
pub async fn check(
    state: &StateDir,
    json: bool,
    lang: Option<&str>,
    quick: bool,
) -> Result<(), LinkError> {
    let lang = language(lang);
    let target = match state.enrollment() {
        Ok(enrollment) => Some(Target {
            relay: enrollment.relay,
            fingerprint: enrollment.fingerprint,
            identity: state.identity()?,
        }),
        Err(StateError::NotEnrolled(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let policy = state.policy();
    let mut options = deskside_agent::diag::options_for(&policy);
    options.path.throughput = !quick && target.is_some();
    let interactive = std::io::stderr().is_terminal() && !json;
    let french = lang == Lang::Fr;
    let progress = move |step: Step| {
        if !interactive {
            return;
        }
        let text = match (step, french) {
            (Step::Local, false) => "Checking this device, its settings and the Wi‑Fi…",
            (Step::Local, true) => "Vérification de l'appareil, de ses réglages et du Wi‑Fi…",
            (Step::Network, false) => "Measuring the connection to the support service…",
            (Step::Network, true) => "Mesure de la connexion au service d'assistance…",
            (Step::Throughput, false) => "Measuring the connection and its speed (about 4 s)…",
            (Step::Throughput, true) => "Mesure de la connexion et de son débit (environ 4 s)…",
            (Step::Done, _) => return eprint!("\r\x1b[2K"),
        };
        eprint!("\r\x1b[2K{text}");
    };
    let snapshot = collect::snapshot(target.as_ref(), &options, &progress).await;
    remember(state, Requester::Employee, &snapshot, false);
    let verdict = verdict::judge(&snapshot, &policy.thresholds());
    if json {
        let value = serde_json::json!({
            "type": "check",
            "snapshot": snapshot,
            "verdict": verdict,
        });
        println!("{value}");
    } else {
        let style = Style {
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        };
        print!("{}", report::render(&verdict, &snapshot, lang, style));
    }
    Ok(())
}

/// Lists the remembered diagnostic runs.
pub fn history(state: &StateDir, json: bool) -> Result<(), LinkError> {
    let entries = state.history();
    if json {
        for entry in &entries {
            let mut line = entry.clone();
            if let Some(object) = line.as_object_mut() {
                object.insert("type".to_owned(), "diagnostics".into());
            }
            println!("{line}");
        }
        return Ok(());
    }
    if entries.is_empty() {
        println!("No diagnostics have been collected on this device yet.");
        return Ok(());
    }
    println!("{:<22} {:<12} {:<10} COLLECTED", "WHEN", "ASKED BY", "SENT");
    for entry in entries.iter().rev() {
        let at = entry["at_ms"].as_i64().unwrap_or(0).max(0) as u64;
        let when =
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(at)).to_string();
        let asked = entry["requested_by"].as_str().unwrap_or("?");
        let sent = if entry["sent_to_relay"].as_bool().unwrap_or(false) {
            "to IT"
        } else {
            "kept here"
        };
        let collected: Vec<&str> = [
            "device", "network", "wifi", "gateway", "dns", "clock", "path",
        ]
        .into_iter()
        .filter(|section| entry["snapshot"][section].get("measured").is_some())
        .collect();
        println!("{when:<22} {asked:<12} {sent:<10} {}", collected.join(", "));
    }
    println!("\nFull details: deskside-agent history --json");
    Ok(())
}
