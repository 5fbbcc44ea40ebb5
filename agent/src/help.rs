//! `deskside-agent help` (ask IT for help) and `deskside-agent requests`
//! (what became of the requests), in English or French.
//!
//! At most five questions, each with a default; every answer can also come
//! from a flag, and without a terminal the flags and defaults are all
//! there is. The quick check runs and its snapshot is attached unless the
//! employee drops it. What will be sent is shown first. The request is
//! written to the outbox before it is sent (see
//! `deskside_agent::requests`): nothing typed is lost.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use deskside_agent::diag::collect;
use deskside_agent::requests as outbox;
use deskside_agent::session::help_channel;
use deskside_agent::state::{StateDir, StateError};
use deskside_diag::report::{self, Lang, Style};
use deskside_diag::verdict;
use deskside_protocol::helper::FiledOutcome;
use deskside_protocol::request::{Answers, HelpRequest};
use deskside_session_ui::help_form::{
    ask_help_form_in_subprocess, show_help_notice_in_subprocess, HelpFormWindow,
};
use deskside_session_ui::{HelpFormAnswers, HelpFormOutcome, HelpFormOutcomeKind, HelpFormReply};

use crate::check::{emit, language, localised, t, CliError};

/// What `help` was given on the command line (`deskside-agent help`'s
/// flags; `--lang` is global and comes apart).
#[derive(Debug, Default, clap::Args)]
pub struct HelpArgs {
    /// What is wrong, in your own words.
    #[arg(long)]
    pub summary: Option<String>,
    /// Since when (e.g. "this morning").
    #[arg(long)]
    pub since: Option<String>,
    /// ongoing, intermittent or over.
    #[arg(long)]
    pub pattern: Option<String>,
    /// Applications hit: video, vpn, mail, browser, printer, other.
    #[arg(long, value_delimiter = ',')]
    pub apps: Option<Vec<String>>,
    /// How much it blocks you: can_work, slowed or blocked.
    #[arg(long)]
    pub urgency: Option<String>,
    /// Who else is hit: me, team or many (default me).
    #[arg(long)]
    pub impact: Option<String>,
    /// How and when IT can reach you (phone, chat or email, and when).
    #[arg(long)]
    pub contact: Option<String>,
    /// Do not attach the quick check's measurements.
    #[arg(long)]
    pub no_diagnostics: bool,
    /// Send without asking for confirmation.
    #[arg(long, short)]
    pub yes: bool,
    /// One JSON object instead of text (never asks questions).
    #[arg(long)]
    pub json: bool,
    /// Ask the questions in a window instead of the terminal (what the
    /// "Ask IT for help" launcher runs).
    #[arg(long, conflicts_with_all = ["summary", "since", "pattern", "apps", "urgency", "contact", "no_diagnostics"])]
    pub window: bool,
}

/// Asks one question on the terminal; an empty answer keeps `default`.
fn ask(question: &str, default: &str) -> Result<String, CliError> {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{question} [{default}] ");
    let _ = err.flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(CliError::Output)?;
    let line = line.trim();
    Ok(if line.is_empty() { default } else { line }.to_owned())
}

/// Maps what the employee typed (a number, an English or French word) to
/// the wire word.
fn pick(answer: &str, choices: &[(&str, &[&str])]) -> Option<String> {
    let answer = answer.trim().to_lowercase();
    for (index, (word, aliases)) in choices.iter().enumerate() {
        if answer == (index + 1).to_string()
            || answer == *word
            || aliases.contains(&answer.as_str())
        {
            return Some((*word).to_owned());
        }
    }
    None
}

const PATTERNS: &[(&str, &[&str])] = &[
    ("ongoing", &["now", "en cours", "continu"]),
    (
        "intermittent",
        &["sometimes", "par moments", "intermittent"],
    ),
    ("over", &["fixed", "terminé", "fini"]),
];
const URGENCIES: &[(&str, &[&str])] = &[
    ("can_work", &["can work", "ok", "je peux travailler"]),
    ("slowed", &["slowed down", "slow", "ralenti"]),
    ("blocked", &["block", "bloqué"]),
];
const IMPACTS: &[(&str, &[&str])] = &[
    ("me", &["just me", "moi"]),
    ("team", &["my team", "équipe"]),
    ("many", &["everyone", "beaucoup", "tous"]),
];
const APPS: &[(&str, &[&str])] = &[
    ("video", &["video calls", "visio", "teams", "zoom"]),
    ("vpn", &[]),
    ("mail", &["email", "messagerie"]),
    ("browser", &["web", "navigateur"]),
    ("printer", &["print", "imprimante"]),
    ("other", &["autre"]),
];

fn choose(value: &str, choices: &[(&str, &[&str])], what: &str) -> Result<String, CliError> {
    pick(value, choices).ok_or_else(|| {
        CliError::Help(format!(
            "{what} {value:?} is not one of: {}",
            choices.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
        ))
    })
}

fn apps_from(text: &str) -> Result<Vec<String>, CliError> {
    let mut out = Vec::new();
    for part in text.split([',', ' ']).filter(|p| !p.trim().is_empty()) {
        let app = choose(part, APPS, "application")?;
        if !out.contains(&app) {
            out.push(app);
        }
    }
    Ok(out)
}

/// The answers: flags first, then questions on a terminal, then defaults.
fn answers(args: &HelpArgs, lang: Lang, interactive: bool) -> Result<Answers, CliError> {
    let q = |en: &str, fr: &str| localised(lang, t(lang, en, fr).to_owned());
    // The flag's value; else, on a terminal, the answer to the question
    // (English, French) with its default; else nothing.
    let flag_or_ask = |flag: Option<&str>, (en, fr): (&str, &str), default: &str| match flag {
        Some(value) => Ok(Some(value.to_owned())),
        None if interactive => ask(&q(en, fr), default).map(Some),
        None => Ok(None),
    };
    let summary = flag_or_ask(
        args.summary.as_deref(),
        (
            "1/5 What is wrong, in your own words?",
            "1/5 Quel est le problème, avec vos mots ?",
        ),
        "",
    )?
    .unwrap_or_default();
    if summary.trim().is_empty() {
        return Err(CliError::Help(
            t(
                lang,
                "say what is wrong: `deskside-agent help --summary \"…\"` (or run it in a terminal to be asked)",
                "dites ce qui ne va pas : `deskside-agent help --summary \"…\"` (ou lancez-la dans un terminal pour répondre aux questions)",
            )
            .to_owned(),
        ));
    }
    let (since, pattern) = match (&args.since, &args.pattern, interactive) {
        (None, None, true) => {
            let since = ask(
                &q(
                    "2/5 Since when? (e.g. this morning)",
                    "2/5 Depuis quand ? (par ex. ce matin)",
                ),
                t(lang, "today", "aujourd'hui"),
            )?;
            let pattern = ask(
                &q(
                    "   Is it 1 ongoing, 2 intermittent, or 3 over?",
                    "   Est-ce 1 en cours, 2 par moments, ou 3 terminé ?",
                ),
                "1",
            )?;
            (since, choose(&pattern, PATTERNS, "pattern")?)
        }
        (since, pattern, _) => (
            since
                .clone()
                .unwrap_or_else(|| t(lang, "today", "aujourd'hui").to_owned()),
            choose(pattern.as_deref().unwrap_or("ongoing"), PATTERNS, "pattern")?,
        ),
    };
    let apps = match flag_or_ask(
        args.apps.as_ref().map(|apps| apps.join(",")).as_deref(),
        (
            "3/5 Which applications? video, vpn, mail, browser, printer, other (comma-separated)",
            "3/5 Quelles applications ? video (visio), vpn, mail, browser (navigateur), printer (imprimante), other (autre), séparées par des virgules",
        ),
        "other",
    )? {
        Some(text) => apps_from(&text)?,
        None => Vec::new(),
    };
    let urgency = flag_or_ask(
        args.urgency.as_deref(),
        (
            "4/5 How much does it block you? 1 I can work, 2 slowed down, 3 blocked",
            "4/5 À quel point cela vous bloque-t-il ? 1 je peux travailler, 2 ralenti, 3 bloqué",
        ),
        "2",
    )?;
    let urgency = choose(urgency.as_deref().unwrap_or("slowed"), URGENCIES, "urgency")?;
    let impact = choose(args.impact.as_deref().unwrap_or("me"), IMPACTS, "impact")?;
    let contact = flag_or_ask(
        args.contact.as_deref(),
        (
            "5/5 How and when can IT reach you? (phone number, chat or email, and when)",
            "5/5 Comment et quand le service informatique peut-il vous joindre ? (téléphone, chat ou e-mail, et quand)",
        ),
        t(lang, "chat, working hours", "chat, heures de bureau"),
    )?
    .unwrap_or_default();
    Ok(Answers {
        summary,
        since,
        pattern,
        apps,
        urgency,
        impact,
        contact,
        lang: match lang {
            Lang::En => "en".into(),
            Lang::Fr => "fr".into(),
        },
    })
}

/// The window's answers as the flags the terminal form takes, so both
/// forms go through [`answers`] and its checks and defaults: empty text
/// fields take the terminal form's defaults.
fn args_from_window(form: HelpFormAnswers, args: &HelpArgs, lang: Lang) -> HelpArgs {
    let or_default = |text: String, default: &str| {
        if text.trim().is_empty() {
            default.to_owned()
        } else {
            text
        }
    };
    HelpArgs {
        summary: Some(form.summary),
        since: Some(or_default(form.since, t(lang, "today", "aujourd'hui"))),
        pattern: Some(form.pattern),
        apps: Some(form.apps),
        urgency: Some(form.urgency),
        impact: args.impact.clone(),
        contact: Some(or_default(
            form.contact,
            t(lang, "chat, working hours", "chat, heures de bureau"),
        )),
        no_diagnostics: form.drop_diagnostics,
        yes: true,
        json: args.json,
        window: true,
    }
}

/// Shows the form window (this program's hidden `help-form` command) and
/// waits for it; `None` when the employee cancelled. The window stays open
/// until [`tell`] says how filing went.
async fn ask_in_window(lang: Lang) -> Result<Option<(HelpFormAnswers, HelpFormWindow)>, CliError> {
    let exe = std::env::current_exe().map_err(|e| {
        CliError::Help(format!(
            "could not find this program to open the help window ({e}); run `deskside-agent help` in a terminal instead"
        ))
    })?;
    let mut command = std::process::Command::new(exe);
    command.arg("help-form").arg(lang_code(lang));
    let reply = tokio::task::spawn_blocking(move || ask_help_form_in_subprocess(command))
        .await
        .map_err(|e| CliError::Help(format!("the help window's thread failed: {e}")))?
        .map_err(|e| {
            CliError::Help(format!(
                "{e}; run `deskside-agent help` in a terminal instead"
            ))
        })?;
    Ok(match reply {
        (HelpFormReply::Send(answers), window) => Some((answers, window)),
        (HelpFormReply::Cancelled, _) => None,
    })
}

/// Shows how filing went in the form window, if there is one.
fn tell(window: &mut Option<HelpFormWindow>, outcome: HelpFormOutcomeKind, text: &str) {
    if let Some(window) = window.take() {
        let outcome = HelpFormOutcome {
            outcome,
            text: text.trim().to_owned(),
        };
        if let Err(error) = window.show_outcome(&outcome) {
            tracing::warn!(%error, "could not show the outcome in the help window");
        }
    }
}

/// The preview: exactly what will be sent, in words.
fn preview(lang: Lang, answers: &Answers, diagnostics: Option<(&str, usize)>) -> String {
    let none = t(lang, "(none)", "(aucun)");
    let mut text = String::new();
    text.push_str(t(
        lang,
        "This will be sent to IT:\n",
        "Ceci sera envoyé au service informatique :\n",
    ));
    let lines = [
        (t(lang, "Problem", "Problème"), answers.summary.clone()),
        (t(lang, "Since", "Depuis"), format!("{} ({})", answers.since, answers.pattern)),
        (
            t(lang, "Applications", "Applications"),
            if answers.apps.is_empty() { none.to_owned() } else { answers.apps.join(", ") },
        ),
        (t(lang, "Urgency", "Urgence"), answers.urgency.clone()),
        (t(lang, "Contact", "Contact"), if answers.contact.is_empty() { none.to_owned() } else { answers.contact.clone() }),
        (
            t(lang, "Diagnostics", "Diagnostic"),
            match diagnostics {
                Some((line, bytes)) => format!(
                    "{line} ({bytes} {})",
                    t(lang, "bytes of measurements of this device and its connection; no screen content, no files", "octets de mesures de cet ordinateur et de sa connexion ; ni contenu d'écran, ni fichiers")
                ),
                None => t(lang, "not attached", "non joint").to_owned(),
            },
        ),
    ];
    for (label, value) in lines {
        let colon = t(lang, ":", " :");
        text.push_str(&format!("  {label}{colon} {value}\n"));
    }
    localised(lang, text)
}

/// `deskside-agent help`. With `--window`, an error raised before the
/// form opened (not enrolled, no state) is also shown in a window: the
/// launcher has no terminal to print it in.
pub async fn help(state: &StateDir, args: HelpArgs, lang: Option<&str>) -> Result<(), CliError> {
    let window = args.window;
    let mut form_opened = false;
    let result = help_filed(state, args, lang, &mut form_opened).await;
    if let (true, false, Err(error)) = (window, form_opened, &result) {
        let lang = language(lang);
        let mut command = std::process::Command::new(
            std::env::current_exe().unwrap_or_else(|_| "deskside-agent".into()),
        );
        command.args(["help-form", "--notice", lang_code(lang)]);
        let outcome = HelpFormOutcome {
            outcome: HelpFormOutcomeKind::Failed,
            text: localised(lang, error.to_string()),
        };
        if let Err(e) = show_help_notice_in_subprocess(command, &outcome) {
            tracing::warn!(error = %e, "could not show the error in a window");
        }
    }
    result
}

fn lang_code(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "en",
        Lang::Fr => "fr",
    }
}

async fn help_filed(
    state: &StateDir,
    args: HelpArgs,
    lang: Option<&str>,
    form_opened: &mut bool,
) -> Result<(), CliError> {
    let lang = language(lang);
    // Not enrolled as this user, but the system service runs (a
    // system-wide install): the request goes through the service.
    let mut through_service = None;
    let service = help_channel::service_socket();
    let enrollment = match (state.enrollment(), service) {
        (Ok(enrollment), _) => Some(enrollment),
        (Err(StateError::NotEnrolled(_)), Some(socket)) => {
            forward_leftovers(state, &socket).await;
            through_service = Some(socket);
            None
        }
        (Err(StateError::NotEnrolled(_)), None) => {
            return Err(CliError::Help(
                t(
                    lang,
                    "this computer is not enrolled with IT's support service, so a request cannot reach them: enroll it with `deskside-agent enroll TOKEN` (a token from IT), or call IT",
                    "cet ordinateur n'est pas inscrit au service d'assistance, une demande ne peut donc pas lui parvenir : inscrivez-le avec `deskside-agent enroll JETON` (un jeton fourni par le service informatique), ou appelez-le",
                )
                .to_owned(),
            ))
        }
        (Err(e), _) => return Err(e.into()),
    };
    let (args, mut window) = if args.window {
        *form_opened = true;
        match ask_in_window(lang).await? {
            Some((form, window)) => (args_from_window(form, &args, lang), Some(window)),
            None => return cancelled(lang, args.json),
        }
    } else {
        (args, None)
    };
    // The window asked its questions and showed what will be sent.
    let interactive = std::io::stdin().is_terminal() && !args.json && !args.window;
    let answers = answers(&args, lang, interactive)?;
    let mut snapshot_json = None;
    let mut verdict_text = None;
    if !args.no_diagnostics {
        if interactive {
            eprint!(
                "{}",
                t(
                    lang,
                    "Checking this device and its connection…",
                    "Vérification de l'ordinateur et de sa connexion…"
                )
            );
        }
        // Through the service, this user holds no key to measure the path
        // to the relay with: the device's own measurements only.
        let target = match &enrollment {
            Some(enrollment) => Some(collect::Target {
                relay: enrollment.relay.clone(),
                fingerprint: enrollment.fingerprint,
                identity: state.identity()?,
            }),
            None => None,
        };
        let policy = state.policy();
        let mut options = deskside_agent::diag::options_for(&policy);
        options.path.throughput = false;
        let collected = collect::run(target.as_ref(), &options, &|_| {}).await;
        if interactive {
            eprint!("\r\x1b[2K");
        }
        let verdict = verdict::judge(&collected.snapshot, &policy.thresholds());
        let summary =
            report::render_summary(&verdict, &collected.snapshot, lang, Style { color: false });
        verdict_text = Some(summary.lines().next().unwrap_or_default().to_owned());
        snapshot_json = serde_json::to_vec(&collected.snapshot).ok();
    }
    let mut request = HelpRequest {
        client_id: outbox::new_client_id(),
        created_ms: deskside_agent::clock::unix_millis(),
        answers,
        snapshot_json,
        failures: Vec::new(),
    };
    if !args.json {
        let shown = match (&verdict_text, &request.snapshot_json) {
            (Some(line), Some(json)) => Some((line.as_str(), json.len())),
            _ => None,
        };
        eprint!("{}", preview(lang, &request.answers, shown));
    }
    if interactive && !args.yes {
        let question = if request.snapshot_json.is_some() {
            t(
                lang,
                "Send? y: send, d: send without the diagnostics, n: cancel",
                "Envoyer ? o : envoyer, d : envoyer sans le diagnostic, n : annuler",
            )
        } else {
            t(
                lang,
                "Send? y: send, n: cancel",
                "Envoyer ? o : envoyer, n : annuler",
            )
        };
        match ask(&localised(lang, question.to_owned()), "y")?
            .to_lowercase()
            .as_str()
        {
            "y" | "yes" | "o" | "oui" => {}
            "d" if request.snapshot_json.is_some() => request.snapshot_json = None,
            _ => return cancelled(lang, false),
        }
    }
    // Written before any attempt (here, or in the service's outbox): a
    // crash from here on loses nothing.
    let filed = match &through_service {
        None => outbox::file(state, &mut request).await?,
        Some(socket) => file_through_service(state, socket, &mut request, lang).await?,
    };
    let outcome = match filed {
        FiledOutcome::Sent { number } => Ok(number),
        FiledOutcome::Refused { reason } => {
            let message = format!(
                "{}: {reason}",
                match through_service {
                    None => t(
                        lang,
                        "IT's relay refused this request",
                        "le relais du service informatique a refusé cette demande"
                    ),
                    Some(_) => t(
                        lang,
                        "this request was refused",
                        "cette demande a été refusée"
                    ),
                }
            );
            tell(
                &mut window,
                HelpFormOutcomeKind::Failed,
                &localised(lang, message.clone()),
            );
            return Err(CliError::Help(message));
        }
        FiledOutcome::Queued { error } => Err(error),
    };
    match outcome {
        Ok(number) => {
            let text = localised(
                lang,
                format!(
                    "{} #{number}. {}\n",
                    t(lang, "Sent to IT: request", "Envoyé au service informatique : demande"),
                    t(lang, "See its progress and IT's replies with `deskside-agent requests`.", "Suivez-la, avec les réponses du service informatique, par `deskside-agent requests`.")
                ),
            );
            tell(&mut window, HelpFormOutcomeKind::Sent, &text);
            if args.json {
                return emit(&format!(
                    "{}\n",
                    serde_json::json!({"type": "help_request", "client_id": request.client_id, "number": number, "status": "sent"})
                ));
            }
            emit(&text)
        }
        Err(error) => {
            let text = localised(
                lang,
                format!(
                    "{} ({error}). {}\n",
                    t(lang, "IT's support service cannot be reached right now", "Le service d'assistance est injoignable pour l'instant"),
                    t(lang, "Your request is saved on this computer and will be sent as soon as the agent connects; the failed attempt is attached as evidence.", "Votre demande est enregistrée sur cet ordinateur et partira dès que l'agent se connectera ; l'échec est joint comme indice.")
                ),
            );
            tell(&mut window, HelpFormOutcomeKind::Queued, &text);
            if args.json {
                return emit(&format!(
                    "{}\n",
                    serde_json::json!({"type": "help_request", "client_id": request.client_id, "number": null, "status": "queued", "error": error})
                ));
            }
            emit(&text)
        }
    }
}

/// Hands `request` to the agent service at `socket`, keeping a copy in
/// this user's own outbox until the service has it: if the service does
/// not answer, nothing typed is lost, and the next `help` or `requests`
/// hands it over ([`forward_leftovers`]).
async fn file_through_service(
    state: &StateDir,
    socket: &std::path::Path,
    request: &mut HelpRequest,
    lang: Lang,
) -> Result<FiledOutcome, CliError> {
    outbox::enqueue(state, request)?;
    match help_channel::file_through(socket, request).await {
        Ok(outcome) => {
            outbox::discard(state, &request.client_id)?;
            Ok(outcome)
        }
        Err(error) => {
            outbox::record_failure(
                state,
                request,
                deskside_agent::clock::unix_millis(),
                error.to_string(),
            )?;
            Err(CliError::Help(format!(
                "{error}. {}",
                t(
                    lang,
                    "Your request is saved on this computer and will be handed to the agent service the next time you run `deskside-agent help` or `deskside-agent requests`.",
                    "Votre demande est enregistrée sur cet ordinateur et sera transmise au service de l'agent la prochaine fois que vous lancerez `deskside-agent help` ou `deskside-agent requests`."
                )
            )))
        }
    }
}

/// Hands the service any request this user typed while it did not
/// answer; what it still does not take stays for the next time.
async fn forward_leftovers(state: &StateDir, socket: &std::path::Path) {
    for request in outbox::queued(state) {
        match help_channel::file_through(socket, &request).await {
            Ok(outcome) => {
                tracing::info!(client_id = %request.client_id, ?outcome, "a request saved earlier was handed to the agent service");
                if let Err(e) = outbox::discard(state, &request.client_id) {
                    tracing::warn!("{e}");
                }
            }
            Err(e) => {
                tracing::warn!(client_id = %request.client_id, "a request saved earlier is still waiting: {e}");
                return;
            }
        }
    }
}

/// Says nothing was sent.
fn cancelled(lang: Lang, json: bool) -> Result<(), CliError> {
    if json {
        return emit(&format!(
            "{}\n",
            serde_json::json!({"type": "help_request", "client_id": null, "number": null, "status": "cancelled"})
        ));
    }
    emit(&localised(
        lang,
        t(
            lang,
            "Cancelled: nothing was sent.\n",
            "Annulé : rien n'a été envoyé.\n",
        )
        .to_owned(),
    ))
}

/// `deskside-agent requests`: this device's requests, or, for a user with
/// no enrollment of their own while the system service runs, the ones
/// this user filed through the service.
pub async fn requests(state: &StateDir, json: bool, lang: Option<&str>) -> Result<(), CliError> {
    let lang = language(lang);
    let socket = match state.enrollment() {
        Err(StateError::NotEnrolled(_)) => help_channel::service_socket(),
        _ => None,
    };
    let (known, queued) = match socket {
        None => (outbox::load(state), outbox::queued(state)),
        Some(socket) => {
            forward_leftovers(state, &socket).await;
            let theirs = help_channel::list_through(&socket)
                .await
                .map_err(|e| CliError::Help(e.to_string()))?;
            let mut queued = theirs.queued;
            // Typed while the service did not answer: still on this side.
            queued.extend(outbox::queued(state));
            let known = outbox::RequestsState {
                sent: theirs.sent,
                relay: theirs.relay,
                ..outbox::RequestsState::default()
            };
            (known, queued)
        }
    };
    if json {
        let mut out = String::new();
        for request in &queued {
            out.push_str(&format!(
                "{}\n",
                serde_json::json!({"type": "request", "client_id": request.client_id, "number": null, "status": "queued", "summary": request.answers.summary, "failed_attempts": request.failures.len(), "events": []})
            ));
        }
        for sent in &known.sent {
            let relay = known.relay.iter().find(|r| r.client_id == sent.client_id);
            out.push_str(&format!(
                "{}\n",
                serde_json::json!({
                    "type": "request",
                    "client_id": sent.client_id,
                    "number": sent.number,
                    "status": relay.map_or("new", |r| r.status.as_str()),
                    "assignee": relay.and_then(|r| r.assignee.clone()),
                    "summary": sent.summary,
                    "events": relay.map(|r| r.events.clone()).unwrap_or_default(),
                })
            ));
        }
        return emit(&out);
    }
    if queued.is_empty() && known.sent.is_empty() {
        return emit(&localised(lang, t(lang, "No help requests from this computer. Ask IT for help with `deskside-agent help`.\n", "Aucune demande d'aide depuis cet ordinateur. Demandez de l'aide avec `deskside-agent help`.\n").to_owned()));
    }
    let mut text = String::new();
    for request in &queued {
        text.push_str(&format!(
            "- {} — {}\n",
            t(
                lang,
                "not sent yet (will be sent when the agent connects)",
                "pas encore envoyée (partira dès que l'agent se connectera)"
            ),
            request.answers.summary
        ));
    }
    for sent in &known.sent {
        let relay = known.relay.iter().find(|r| r.client_id == sent.client_id);
        let status = relay.map_or("new", |r| r.status.as_str());
        text.push_str(&format!(
            "- #{} [{}] {}\n",
            sent.number,
            status_word(lang, status),
            sent.summary
        ));
        for event in relay.map(|r| r.events.as_slice()).unwrap_or_default() {
            let what = match event.kind.as_str() {
                "claimed" => t(lang, "is handling it", "s'en occupe").to_owned(),
                "reply" => format!("{}: {}", t(lang, "replied", "a répondu"), event.text),
                "resolved" => format!("{}: {}", t(lang, "resolved it", "l'a résolue"), event.text),
                "reopened" => t(lang, "reopened it", "l'a rouverte").to_owned(),
                other => other.to_owned(),
            };
            text.push_str(&format!("    {} {}\n", event.author, what));
        }
    }
    emit(&localised(lang, text))
}

fn status_word(lang: Lang, status: &str) -> &str {
    match status {
        "new" => t(lang, "received", "reçue"),
        "claimed" => t(lang, "being handled", "prise en charge"),
        "waiting" => t(lang, "waiting for you", "en attente de vous"),
        "resolved" => t(lang, "resolved", "résolue"),
        "closed" => t(lang, "closed", "fermée"),
        "reopened" => t(lang, "reopened", "rouverte"),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_accept_numbers_and_words_in_both_languages() {
        assert_eq!(pick("3", URGENCIES).as_deref(), Some("blocked"));
        assert_eq!(pick("Bloqué", URGENCIES).as_deref(), Some("blocked"));
        assert_eq!(pick("slowed", URGENCIES).as_deref(), Some("slowed"));
        assert_eq!(pick("urgent", URGENCIES), None);
        assert_eq!(apps_from("visio, vpn,vpn").unwrap(), ["video", "vpn"]);
        assert!(apps_from("games").is_err());
    }

    #[test]
    fn the_windows_answers_become_the_same_request_as_the_terminals() {
        let form = HelpFormAnswers {
            summary: "calls freeze".into(),
            since: String::new(),
            pattern: "intermittent".into(),
            apps: vec!["video".into(), "vpn".into()],
            urgency: "blocked".into(),
            contact: "  ".into(),
            drop_diagnostics: true,
        };
        let given = HelpArgs {
            window: true,
            json: true,
            ..HelpArgs::default()
        };
        let args = args_from_window(form.clone(), &given, Lang::Fr);
        assert!(args.no_diagnostics && args.yes && args.json);
        let a = answers(&args, Lang::Fr, false).unwrap();
        assert_eq!(a.summary, "calls freeze");
        assert_eq!(a.since, "aujourd'hui", "empty: the terminal's default");
        assert_eq!(a.pattern, "intermittent");
        assert_eq!(a.apps, ["video", "vpn"]);
        assert_eq!((a.urgency.as_str(), a.impact.as_str()), ("blocked", "me"));
        assert_eq!(a.contact, "chat, heures de bureau");
        assert_eq!(a.lang, "fr");
        // What the employee typed is kept as typed; the diagnostics stay
        // unless the box is ticked.
        let typed = HelpFormAnswers {
            since: "this morning".into(),
            contact: "phone 0612, afternoons".into(),
            drop_diagnostics: false,
            apps: Vec::new(),
            ..form
        };
        let args = args_from_window(typed, &HelpArgs::default(), Lang::En);
        assert!(!args.no_diagnostics);
        let a = answers(&args, Lang::En, false).unwrap();
        assert_eq!(
            (a.since.as_str(), a.contact.as_str(), a.apps.len()),
            ("this morning", "phone 0612, afternoons", 0)
        );
        // An empty problem is refused as from the terminal.
        let empty = HelpFormAnswers::default();
        assert!(answers(&args_from_window(empty, &given, Lang::En), Lang::En, false).is_err());
    }

    #[test]
    fn non_interactive_answers_take_flags_and_defaults() {
        let args = HelpArgs {
            summary: Some("calls freeze".into()),
            urgency: Some("blocked".into()),
            apps: Some(vec!["video".into()]),
            ..HelpArgs::default()
        };
        let a = answers(&args, Lang::En, false).unwrap();
        assert_eq!(
            (a.urgency.as_str(), a.impact.as_str(), a.pattern.as_str()),
            ("blocked", "me", "ongoing")
        );
        assert!(answers(&HelpArgs::default(), Lang::Fr, false)
            .unwrap_err()
            .to_string()
            .contains("--summary"));
        let shown = preview(Lang::Fr, &a, None);
        assert!(shown.contains("Problème\u{a0}: calls freeze"), "{shown}");
        assert!(preview(Lang::En, &a, None).contains("Problem: calls freeze"));
    }
}
