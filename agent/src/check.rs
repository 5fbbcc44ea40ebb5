//! `deskside-agent check`, `status` and `history`: the employee's own view
//! of this device, in the employee's language; and the errors of the
//! employee-facing commands (`run` included: its lock).
//!
//! Output goes through [`emit`], which treats a closed pipe
//! (`deskside-agent history --json | head`) as the reader being done, not
//! as an error. Nothing here talks to the relay except through the
//! diagnostics collection.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, UNIX_EPOCH};

use deskside_agent::diag::collect::{self, Step, Target};
use deskside_agent::diag::{add_connection_history, remember, Requester};
use deskside_agent::link::LinkError;
use deskside_agent::state::{
    process_alive, LinkState, Revocation, RevocationKind, StateDir, StateError,
};
use deskside_diag::report::{self, french_typography, Lang, Style};
use deskside_diag::verdict;
use deskside_protocol::Refusal;

/// Errors of the employee's commands.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The relay link or the state directory failed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// Another agent runs on the same state directory, or the lock failed.
    #[error(transparent)]
    Lock(#[from] deskside_agent::state::LockError),
    /// Standard output could not be written (other than a closed pipe).
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
    /// A help request could not be made (the text says what to do).
    #[error("{0}")]
    Help(String),
    /// The help requests' outbox failed.
    #[error(transparent)]
    Requests(#[from] deskside_agent::requests::RequestsError),
    /// `check --last` found no stored run it can show (the text says what
    /// to do).
    #[error("{0}")]
    NoLastCheck(String),
}

impl From<StateError> for CliError {
    fn from(error: StateError) -> Self {
        CliError::Link(error.into())
    }
}

/// Writes `text` to standard output. A closed pipe means the reader has
/// what it wanted (`| head`): success, nothing more to write.
pub fn emit(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::Output(e)),
    }
}

/// The language: `--lang` when given, else the locale.
pub fn language(flag: Option<&str>) -> Lang {
    report::lang_for(flag, |name| std::env::var(name).ok())
}

/// English or French.
pub fn t<'a>(lang: Lang, en: &'a str, fr: &'a str) -> &'a str {
    match lang {
        Lang::En => en,
        Lang::Fr => fr,
    }
}

/// Text for people in `lang`, with French typography in French.
pub fn localised(lang: Lang, text: String) -> String {
    match lang {
        Lang::En => text,
        Lang::Fr => french_typography(&text),
    }
}

/// Where this device stands with the relay, as far as this computer knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    Enrolled,
    NotEnrolled,
    NoLonger(RevocationKind),
}

impl Standing {
    fn as_str(self) -> &'static str {
        match self {
            Standing::Enrolled => "enrolled",
            Standing::NotEnrolled => "not_enrolled",
            Standing::NoLonger(RevocationKind::Revoked) => "revoked",
            Standing::NoLonger(RevocationKind::Unknown) => "unknown_to_relay",
        }
    }

    /// The sentence that must come first when the device cannot get help.
    fn first_line(self, lang: Lang) -> Option<&'static str> {
        Some(match self {
            Standing::Enrolled => return None,
            Standing::NotEnrolled => t(
                lang,
                "This computer is not enrolled with IT's support service, so its connection to the service was not checked. To enroll it, run `deskside-agent enroll TOKEN` with a token from IT.",
                "Cet ordinateur n'est pas inscrit au service d'assistance de votre service informatique : sa connexion à ce service n'a donc pas été vérifiée. Pour l'inscrire, lancez `deskside-agent enroll JETON` avec un jeton fourni par le service informatique.",
            ),
            Standing::NoLonger(RevocationKind::Revoked) => t(
                lang,
                "This computer is no longer enrolled: IT removed it from the support service, so it cannot get remote help. Ask IT for a new enrollment token, then run `deskside-agent enroll --force TOKEN`.",
                "Cet ordinateur n'est plus inscrit : le service informatique l'a retiré du service d'assistance, il ne peut donc plus recevoir d'aide à distance. Demandez un nouveau jeton d'inscription au service informatique, puis lancez `deskside-agent enroll --force JETON`.",
            ),
            Standing::NoLonger(RevocationKind::Unknown) => t(
                lang,
                "This computer is no longer enrolled: the support service does not know it any more, so it cannot get remote help. Ask IT for a new enrollment token, then run `deskside-agent enroll --force TOKEN`.",
                "Cet ordinateur n'est plus inscrit : le service d'assistance ne le connaît plus, il ne peut donc plus recevoir d'aide à distance. Demandez un nouveau jeton d'inscription au service informatique, puis lancez `deskside-agent enroll --force JETON`.",
            ),
        })
    }
}

/// What `check` was asked to do.
#[derive(Clone, Copy, Debug)]
pub struct CheckArgs<'a> {
    /// One JSON object instead of the report.
    pub json: bool,
    /// `--lang`.
    pub lang: Option<&'a str>,
    /// Skip the speed test.
    pub quick: bool,
    /// The full report (findings, evidence, technician notes, unknowns).
    pub details: bool,
    /// Judge and show the newest stored run instead of measuring.
    pub last: bool,
}

/// Runs every probe, judges the result and prints the report.
pub async fn check(state: &StateDir, args: CheckArgs<'_>) -> Result<(), CliError> {
    let lang = language(args.lang);
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
    if args.last {
        let snapshot = last_snapshot(state, lang)?;
        let standing = standing(state, target.is_some(), None);
        return show(&snapshot, standing, &policy, args, lang);
    }
    let mut options = deskside_agent::diag::options_for(&policy);
    options.path.throughput = !args.quick && target.is_some();
    let interactive = std::io::stderr().is_terminal() && !args.json;
    let progress = move |step: Step| {
        if !interactive {
            return;
        }
        let text = match step {
            Step::Local => t(
                lang,
                "Checking this device, its settings and the Wi‑Fi…",
                "Vérification de l'appareil, de ses réglages et du Wi‑Fi…",
            ),
            Step::Network => t(
                lang,
                "Measuring the connection to the support service…",
                "Mesure de la connexion au service d'assistance…",
            ),
            Step::Throughput => t(
                lang,
                "Measuring the connection and its speed (about 4 s)…",
                "Mesure de la connexion et de son débit (environ 4 s)…",
            ),
            Step::Done => return eprint!("\r\x1b[2K"),
        };
        eprint!("\r\x1b[2K{text}");
    };
    let last_connected = state.last_connected();
    let collected = collect::run(target.as_ref(), &options, &progress).await;
    let mut snapshot = collected.snapshot;
    add_connection_history(state, last_connected, &mut snapshot);
    remember(state, Requester::Employee, &snapshot, false);
    let standing = standing(state, target.is_some(), collected.relay_refusal.as_ref());
    show(&snapshot, standing, &policy, args, lang)
}

/// The newest run in the local history (`history`), for `check --last`.
fn last_snapshot(state: &StateDir, lang: Lang) -> Result<deskside_diag::Snapshot, CliError> {
    let newest = state.history().into_iter().next_back();
    let Some(mut entry) = newest else {
        return Err(CliError::NoLastCheck(
            t(
                lang,
                "no check has been run on this computer yet: run `deskside-agent check`",
                "aucune vérification n'a encore été faite sur cet ordinateur : lancez `deskside-agent check`",
            )
            .to_owned(),
        ));
    };
    serde_json::from_value(entry["snapshot"].take()).map_err(|e| {
        CliError::NoLastCheck(format!(
            "{} ({e})",
            t(
                lang,
                "the newest check in this computer's history cannot be read, perhaps written by another version: run `deskside-agent check` again",
                "la dernière vérification de l'historique de cet ordinateur est illisible, peut-être écrite par une autre version : relancez `deskside-agent check`",
            )
        ))
    })
}

/// Judges `snapshot` with the policy's thresholds and prints the report
/// `args` asks for.
fn show(
    snapshot: &deskside_diag::Snapshot,
    standing: Standing,
    policy: &deskside_diag::policy::Policy,
    args: CheckArgs<'_>,
    lang: Lang,
) -> Result<(), CliError> {
    let verdict = verdict::judge(snapshot, &policy.thresholds());
    if args.json {
        let value = serde_json::json!({
            "type": "check",
            "enrollment": standing.as_str(),
            "snapshot": snapshot,
            "verdict": verdict,
        });
        return emit(&format!("{value}\n"));
    }
    let style = Style {
        color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let mut text = String::new();
    if let Some(line) = standing.first_line(lang) {
        text.push_str(&localised(lang, line.to_owned()));
        text.push_str("\n\n");
    }
    if args.details {
        text.push_str(&report::render(&verdict, snapshot, lang, style));
    } else {
        text.push_str(&report::render_summary(&verdict, snapshot, lang, style));
        text.push('\n');
        text.push_str(&localised(
            lang,
            t(
                lang,
                "For the details of this result, run `deskside-agent check --last --details`; to send this result to IT, copy it into your request, or ask IT to run a diagnostic of this computer.\n",
                "Pour le détail de ce résultat, lancez `deskside-agent check --last --details` ; pour envoyer ce résultat au service informatique, copiez-le dans votre demande, ou demandez-lui de lancer un diagnostic de cet ordinateur.\n",
            )
            .to_owned(),
        ));
    }
    emit(&text)
}

/// Where the device stands: the relay's latest answer wins over what was
/// recorded before (a measurement the relay accepted proves enrollment; a
/// refusal is recorded for `status`).
fn standing(state: &StateDir, enrolled_here: bool, refusal: Option<&Refusal>) -> Standing {
    if !enrolled_here {
        return Standing::NotEnrolled;
    }
    let refused = match refusal {
        Some(Refusal::DeviceRevoked) => Some(RevocationKind::Revoked),
        Some(Refusal::DeviceUnknown) => Some(RevocationKind::Unknown),
        _ => None,
    };
    if let Some(kind) = refused {
        let revocation = Revocation {
            at: deskside_agent::clock::unix_secs(),
            kind,
        };
        if let Err(e) = state.record_revocation(&revocation) {
            tracing::warn!("cannot record that the relay refused this device: {e}");
        }
        return Standing::NoLonger(kind);
    }
    match state.revocation() {
        Some(recorded) => Standing::NoLonger(recorded.kind),
        None => Standing::Enrolled,
    }
}

fn rfc3339(secs: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
        .to_string()
}

/// `deskside-agent status`.
pub fn status(state: &StateDir, json: bool, lang: Option<&str>) -> Result<(), CliError> {
    let lang = language(lang);
    let enrollment = match state.enrollment() {
        Ok(e) => Some(e),
        Err(StateError::NotEnrolled(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let revocation = enrollment.as_ref().and(state.revocation());
    let published = state.status().filter(|s| process_alive(s.pid));
    let running = published
        .as_ref()
        .is_some_and(|s| s.state != LinkState::Stopped);
    let connected = published
        .as_ref()
        .is_some_and(|s| s.state == LinkState::Connected);
    let since = published.as_ref().map(|s| s.since);
    if json {
        let value = serde_json::json!({
            "type": "status",
            "enrolled": enrollment.is_some() && revocation.is_none(),
            "revoked": revocation.as_ref().map(|r| r.kind == RevocationKind::Revoked),
            "revocation": revocation.as_ref().map(|r| serde_json::json!({
                "kind": match r.kind {
                    RevocationKind::Revoked => "revoked",
                    RevocationKind::Unknown => "unknown_to_relay",
                },
                "at": rfc3339(r.at),
            })),
            "device_id": enrollment.as_ref().map(|e| e.device_id.to_string()),
            "organisation": enrollment.as_ref().map(|e| e.organisation.clone()),
            "relay": enrollment.as_ref().map(|e| e.relay.clone()),
            "fingerprint": enrollment.as_ref().map(|e| e.fingerprint.to_string()),
            "running": running,
            "pid": published.as_ref().filter(|_| running).map(|s| s.pid),
            "connected": connected,
            "since": since.filter(|_| running).map(rfc3339),
            "last_error": published.as_ref().and_then(|s| s.last_error.clone()),
            "monitoring": enrollment.as_ref().map(|_| deskside_agent::timeline::disclosure(state, false).0),
        });
        return emit(&format!("{value}\n"));
    }
    let mut out = String::new();
    let Some(enrollment) = enrollment else {
        out.push_str(&match lang {
            Lang::En => format!(
                "Enrolled:  no (state directory {})\nEnroll with `deskside-agent enroll TOKEN`, using a token from IT.\n",
                state.root().display()
            ),
            Lang::Fr => format!(
                "Inscrit : non (dossier d'état {})\nInscrivez cet ordinateur avec `deskside-agent enroll JETON`, en utilisant un jeton fourni par le service informatique.\n",
                state.root().display()
            ),
        });
        return emit(&localised(lang, out));
    };
    match (&revocation, lang) {
        (Some(r), Lang::En) => out.push_str(&format!(
            "Enrolled:  no longer: {} (seen {}); it was {} in organisation {}\n{}\n",
            match r.kind {
                RevocationKind::Revoked => "IT revoked this device",
                RevocationKind::Unknown => "the relay does not know this device any more",
            },
            rfc3339(r.at),
            enrollment.device_id,
            enrollment.organisation,
            "Ask IT for a new enrollment token, then run `deskside-agent enroll --force TOKEN`."
        )),
        (Some(r), Lang::Fr) => out.push_str(&format!(
            "Inscrit : plus maintenant : {} (constaté le {}) ; il était {} dans l'organisation {}\n{}\n",
            match r.kind {
                RevocationKind::Revoked => "le service informatique a révoqué cet ordinateur",
                RevocationKind::Unknown => "le relais ne connaît plus cet ordinateur",
            },
            rfc3339(r.at),
            enrollment.device_id,
            enrollment.organisation,
            "Demandez un nouveau jeton d'inscription au service informatique, puis lancez `deskside-agent enroll --force JETON`."
        )),
        (None, Lang::En) => out.push_str(&format!(
            "Enrolled:  yes, as {} in organisation {}\n",
            enrollment.device_id, enrollment.organisation
        )),
        (None, Lang::Fr) => out.push_str(&format!(
            "Inscrit : oui, comme {} dans l'organisation {}\n",
            enrollment.device_id, enrollment.organisation
        )),
    }
    out.push_str(&format!(
        "{}{} ({})\n",
        t(lang, "Relay:     ", "Relais : "),
        enrollment.relay,
        enrollment.fingerprint
    ));
    let now = deskside_agent::clock::unix_secs();
    let ago = |secs: i64| {
        humantime::format_duration(Duration::from_secs((now - secs).max(0) as u64)).to_string()
    };
    match (&published, lang) {
        (Some(s), Lang::En) if s.state == LinkState::Connected => out.push_str(&format!(
            "Agent:     running (pid {}), connected since {} ({} ago)\n",
            s.pid,
            rfc3339(s.since),
            ago(s.since)
        )),
        (Some(s), Lang::Fr) if s.state == LinkState::Connected => out.push_str(&format!(
            "Agent : en marche (pid {}), connecté depuis {} (il y a {})\n",
            s.pid,
            rfc3339(s.since),
            ago(s.since)
        )),
        (Some(s), _) if s.state == LinkState::Connecting => {
            out.push_str(&format!(
                "{} (pid {}), {} {} ({} {})\n",
                t(lang, "Agent:     running", "Agent : en marche"),
                s.pid,
                t(lang, "not connected since", "non connecté depuis"),
                rfc3339(s.since),
                ago(s.since),
                t(lang, "ago", "écoulés")
            ));
            if let Some(error) = &s.last_error {
                out.push_str(&format!(
                    "{} {error}\n",
                    t(lang, "Last error:", "Dernière erreur :")
                ));
            }
        }
        _ if revocation.is_some() => out.push_str(t(
            lang,
            "Agent:     not running (it stops when the relay refuses the device)\n",
            "Agent : arrêté (il s'arrête quand le relais refuse l'ordinateur)\n",
        )),
        _ => out.push_str(t(
            lang,
            "Agent:     not running (start it with `deskside-agent run` or `systemctl start deskside-agent`)\n",
            "Agent : arrêté (démarrez-le avec `deskside-agent run` ou `systemctl start deskside-agent`)\n",
        )),
    }
    out.push_str(&deskside_agent::timeline::disclosure(state, lang == Lang::Fr).1);
    emit(&localised(lang, out))
}

/// Lists the remembered diagnostic runs.
pub fn history(state: &StateDir, json: bool, lang: Option<&str>) -> Result<(), CliError> {
    let lang = language(lang);
    let entries = state.history();
    let mut out = String::new();
    let (monitoring_json, monitoring_text) =
        deskside_agent::timeline::disclosure(state, lang == Lang::Fr);
    if json {
        let mut line = monitoring_json;
        if let Some(object) = line.as_object_mut() {
            object.insert("type".to_owned(), "monitoring".into());
        }
        out.push_str(&line.to_string());
        out.push('\n');
        for entry in &entries {
            let mut line = entry.clone();
            if let Some(object) = line.as_object_mut() {
                object.insert("type".to_owned(), "diagnostics".into());
            }
            out.push_str(&line.to_string());
            out.push('\n');
        }
        return emit(&out);
    }
    if entries.is_empty() {
        out.push_str(t(
            lang,
            "No diagnostics have been collected on this device yet.\n",
            "Aucun diagnostic n'a encore été fait sur cet ordinateur.\n",
        ));
        out.push('\n');
        out.push_str(&monitoring_text);
        return emit(&localised(lang, out));
    }
    out.push_str(&format!(
        "{:<22} {:<24} {:<16} {}\n",
        t(lang, "WHEN", "QUAND"),
        t(lang, "ASKED BY", "DEMANDÉ PAR"),
        t(lang, "SENT", "ENVOYÉ"),
        t(lang, "COLLECTED", "CONTENU")
    ));
    for entry in entries.iter().rev() {
        let at = entry["at_ms"].as_i64().unwrap_or(0).max(0) as u64;
        let when =
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(at)).to_string();
        let asked = match (entry["requested_by"].as_str().unwrap_or("?"), lang) {
            ("employee", Lang::En) => "you".to_owned(),
            ("employee", Lang::Fr) => "vous".to_owned(),
            (other, _) => match entry["technician"].as_str() {
                Some(name) => name.to_owned(),
                None if other == "technician" => {
                    t(lang, "a technician", "un technicien").to_owned()
                }
                None => other.to_owned(),
            },
        };
        let sent = if entry["sent_to_relay"].as_bool().unwrap_or(false) {
            t(lang, "to IT", "au service info.")
        } else {
            t(lang, "kept here", "gardé ici")
        };
        let collected: Vec<&str> = [
            ("device", "device", "appareil"),
            ("network", "network", "réseau"),
            ("wifi", "wifi", "wi‑fi"),
            ("gateway", "router", "box"),
            ("dns", "dns", "dns"),
            ("clock", "clock", "horloge"),
            ("path", "path", "chemin"),
        ]
        .into_iter()
        .filter(|(section, _, _)| entry["snapshot"][section].get("measured").is_some())
        .map(|(_, en, fr)| t(lang, en, fr))
        .collect();
        out.push_str(&format!(
            "{when:<22} {asked:<24} {sent:<16} {}\n",
            collected.join(", ")
        ));
    }
    out.push_str(t(
        lang,
        "\nFull details: deskside-agent history --json\n",
        "\nDétail complet : deskside-agent history --json\n",
    ));
    out.push('\n');
    out.push_str(&monitoring_text);
    emit(&localised(lang, out))
}
