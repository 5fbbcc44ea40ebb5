//! The "Ask IT for help" window: the five questions of `deskside-agent help`
//! (what is wrong; since when and whether it is ongoing; which
//! applications; how much it blocks; how to reach the employee), with the
//! same choices and defaults as the terminal form, in English or French,
//! and a box to leave the diagnostics out.
//!
//! The window only collects answers and shows what the agent says: it
//! sends nothing and touches no state. The agent turns the answers into a
//! request and files it through the same path as the terminal form (quick
//! check, outbox, relay), then tells the window how that went (sent, kept
//! for later, or failed), which it shows until the employee closes it.
//! Cancel, Escape or closing the form is [`HelpFormReply::Cancelled`]:
//! nothing is sent.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};

use eframe::egui::{self, Color32, RichText};
use serde::{Deserialize, Serialize};

use crate::subprocess::spawn_window;
use crate::words::{colon, UiLang};
use crate::{native_options, rect_of, UiError};

/// The window's title.
pub const HELP_FORM_TITLE: &str = "deskside — ask IT for help";
/// Fixed window size in points (not resizable).
pub const HELP_FORM_WINDOW_SIZE: [f32; 2] = [560.0, 520.0];
/// "What is wrong", a text field, `[x, y, width, height]` in window points.
pub const HELP_FORM_SUMMARY_INPUT: [f32; 4] = [16.0, 66.0, 528.0, 28.0];
/// "Since when", a text field (empty: "today").
pub const HELP_FORM_SINCE_INPUT: [f32; 4] = [16.0, 122.0, 528.0, 28.0];
/// The pattern choices (ongoing, intermittent, over), in [`PATTERNS`] order.
pub const HELP_FORM_PATTERN_BUTTONS: [[f32; 4]; 3] = [
    [16.0, 156.0, 170.0, 24.0],
    [195.0, 156.0, 170.0, 24.0],
    [374.0, 156.0, 170.0, 24.0],
];
/// The application boxes, in [`APPS`] order.
pub const HELP_FORM_APP_BOXES: [[f32; 4]; 6] = [
    [16.0, 212.0, 84.0, 24.0],
    [104.0, 212.0, 84.0, 24.0],
    [192.0, 212.0, 84.0, 24.0],
    [280.0, 212.0, 84.0, 24.0],
    [368.0, 212.0, 84.0, 24.0],
    [456.0, 212.0, 88.0, 24.0],
];
/// The urgency choices (can work, slowed down, blocked), in [`URGENCIES`] order.
pub const HELP_FORM_URGENCY_BUTTONS: [[f32; 4]; 3] = [
    [16.0, 268.0, 170.0, 24.0],
    [195.0, 268.0, 170.0, 24.0],
    [374.0, 268.0, 170.0, 24.0],
];
/// "How and when can IT reach you", a text field (empty: the default).
pub const HELP_FORM_CONTACT_INPUT: [f32; 4] = [16.0, 324.0, 528.0, 28.0];
/// "Do not attach the diagnostics", a check box.
pub const HELP_FORM_DROP_DIAGNOSTICS_BOX: [f32; 4] = [16.0, 362.0, 528.0, 24.0];
/// The Cancel button.
pub const HELP_FORM_CANCEL_BUTTON: [f32; 4] = [16.0, 456.0, 250.0, 48.0];
/// The Send button (greyed out until "what is wrong" has some text).
pub const HELP_FORM_SEND_BUTTON: [f32; 4] = [294.0, 456.0, 250.0, 48.0];

/// The pattern's wire words, as `deskside-agent help --pattern` takes them.
pub const PATTERNS: [&str; 3] = ["ongoing", "intermittent", "over"];
/// The applications' wire words, as `deskside-agent help --apps` takes them.
pub const APPS: [&str; 6] = ["video", "vpn", "mail", "browser", "printer", "other"];
/// The urgency's wire words, as `deskside-agent help --urgency` takes them.
pub const URGENCIES: [&str; 3] = ["can_work", "slowed", "blocked"];

/// What the employee filled in. Text fields left empty stay empty here: the
/// agent applies the terminal form's defaults to them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelpFormAnswers {
    /// What is wrong, in the employee's words (never empty when sent).
    pub summary: String,
    /// Since when (empty: the default, "today").
    pub since: String,
    /// One of [`PATTERNS`].
    pub pattern: String,
    /// Some of [`APPS`], in that order.
    pub apps: Vec<String>,
    /// One of [`URGENCIES`].
    pub urgency: String,
    /// How and when to reach the employee (empty: the default).
    pub contact: String,
    /// The employee ticked "do not attach the diagnostics".
    pub drop_diagnostics: bool,
}

impl Default for HelpFormAnswers {
    /// The terminal form's defaults: ongoing, "other", slowed down.
    fn default() -> Self {
        Self {
            summary: String::new(),
            since: String::new(),
            pattern: PATTERNS[0].to_owned(),
            apps: vec![APPS[5].to_owned()],
            urgency: URGENCIES[1].to_owned(),
            contact: String::new(),
            drop_diagnostics: false,
        }
    }
}

/// How the window ended; the line a `help-form` child prints on stdout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum HelpFormReply {
    /// The employee pressed Send.
    Send(HelpFormAnswers),
    /// Cancel, Escape or the window closed: nothing is to be sent.
    Cancelled,
}

/// The default of "since when", as the terminal form words it.
pub fn default_since(lang: UiLang) -> &'static str {
    lang.t("today", "aujourd'hui")
}

/// The default of "how to reach you", as the terminal form words it.
pub fn default_contact(lang: UiLang) -> &'static str {
    lang.t("chat, working hours", "chat, heures de bureau")
}

/// How filing the request went, as the agent tells the window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HelpFormOutcomeKind {
    /// The relay has the request.
    Sent,
    /// Kept on this computer, sent when the relay can be reached.
    Queued,
    /// Not sent, and not kept (the relay refused it, or filing failed).
    Failed,
}

/// The line the agent writes to a form child's stdin once the request is
/// filed: the window shows `text` (already in the employee's language).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelpFormOutcome {
    /// Sent, kept for later, or failed.
    pub outcome: HelpFormOutcomeKind,
    /// What to tell the employee.
    pub text: String,
}

/// The window's title while the agent files the request, and after.
pub const HELP_FORM_SENDING_TITLE: &str = "deskside — your request to IT";
/// The Close button once the request is filed (where Send was).
pub const HELP_FORM_CLOSE_BUTTON: [f32; 4] = HELP_FORM_SEND_BUTTON;

/// Largest line read from a pipe (five short answers, or one outcome).
const MAX_LINE: u64 = 64 * 1024;

/// Where the window is.
#[derive(Clone, Debug)]
enum Phase {
    /// The questions.
    Form,
    /// Sent to the agent; waiting for the outcome.
    Filing,
    /// The agent said how it went.
    Done(HelpFormOutcome),
    /// The agent's pipe closed without an outcome.
    Lost,
}

/// What the stdin thread learns, shared with the window.
#[derive(Debug, Default)]
struct FromAgent {
    outcome: Option<HelpFormOutcome>,
    closed: bool,
    ctx: Option<egui::Context>,
}

/// `main` of a form child process (`deskside-agent help-form [fr|en]`,
/// `deskside-session-ui help-form [fr|en]`): shows the form in `lang`
/// (the locale's language when `None`). On Send it prints one
/// [`HelpFormReply`] JSON line on stdout and stays open, saying the
/// request is being filed, until a [`HelpFormOutcome`] line arrives on
/// stdin (shown, with Close) or stdin closes (it says it does not know
/// whether the request left). Cancel prints the `cancelled` reply and
/// closes. Exit 2 with the reason on stderr if the window could not open.
pub fn help_form_main(lang: Option<&str>) -> ExitCode {
    run_main(lang, false)
}

/// `main` of a notice child (`deskside-agent help-form --notice [fr|en]`):
/// no questions, only the [`HelpFormOutcome`] line read from stdin, with
/// Close. Used when the request cannot even be started (e.g. this computer
/// is not enrolled), so an employee who clicked the launcher sees why.
/// Prints nothing on stdout.
pub fn help_notice_main(lang: Option<&str>) -> ExitCode {
    run_main(lang, true)
}

/// Shows `outcome` in a notice window in a child process started from
/// `command`, without waiting for it to be closed.
pub fn show_help_notice_in_subprocess(
    command: Command,
    outcome: &HelpFormOutcome,
) -> Result<(), UiError> {
    const WINDOW: &str = "help notice";
    let spawn_error = |source| UiError::Spawn {
        window: WINDOW,
        source,
    };
    let mut child = spawn_window(command, WINDOW, Stdio::null())?;
    let line = serde_json::to_string(outcome).map_err(|e| spawn_error(std::io::Error::other(e)))?;
    if let Some(mut pipe) = child.stdin.take() {
        writeln!(pipe, "{line}").map_err(spawn_error)?;
    }
    Ok(())
}

fn run_main(lang: Option<&str>, notice: bool) -> ExitCode {
    let lang = match lang {
        Some(code) if code.eq_ignore_ascii_case("fr") => UiLang::Fr,
        Some(code) if code.eq_ignore_ascii_case("en") => UiLang::En,
        _ => UiLang::current(),
    };
    let from_agent = Arc::new(Mutex::new(FromAgent::default()));
    let told = from_agent.clone();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = std::io::stdin().lock().take(MAX_LINE).read_line(&mut line);
        let mut shared = told.lock().unwrap_or_else(|p| p.into_inner());
        match read {
            Ok(n) if n > 0 => match serde_json::from_str(line.trim()) {
                Ok(outcome) => shared.outcome = Some(outcome),
                Err(error) => {
                    eprintln!("deskside help form: unreadable outcome line: {error}");
                    shared.closed = true;
                }
            },
            _ => shared.closed = true,
        }
        if let Some(ctx) = &shared.ctx {
            ctx.request_repaint();
        }
    });
    // A notice has nothing to reply.
    let replied = Arc::new(Mutex::new(notice));
    let app_replied = replied.clone();
    let viewport = egui::ViewportBuilder::default()
        .with_title(if notice {
            HELP_FORM_SENDING_TITLE
        } else {
            HELP_FORM_TITLE
        })
        .with_app_id("deskside-help")
        .with_inner_size(HELP_FORM_WINDOW_SIZE)
        .with_min_inner_size(HELP_FORM_WINDOW_SIZE)
        .with_max_inner_size(HELP_FORM_WINDOW_SIZE)
        .with_resizable(false);
    let result = eframe::run_native(
        HELP_FORM_TITLE,
        native_options(viewport, true),
        Box::new(move |cc| {
            cc.egui_ctx.options_mut(|o| o.zoom_with_keyboard = false);
            from_agent.lock().unwrap_or_else(|p| p.into_inner()).ctx = Some(cc.egui_ctx.clone());
            Ok(Box::new(HelpFormApp {
                lang,
                answers: HelpFormAnswers::default(),
                phase: if notice { Phase::Filing } else { Phase::Form },
                from_agent,
                replied: app_replied,
                focused: false,
            }))
        }),
    );
    if let Err(error) = result {
        eprintln!(
            "deskside help form: {}",
            UiError::Window {
                window: "help form",
                reason: error.to_string(),
            }
        );
        return ExitCode::from(2);
    }
    if !*replied.lock().unwrap_or_else(|p| p.into_inner()) {
        reply(&HelpFormReply::Cancelled);
    }
    ExitCode::SUCCESS
}

/// Prints the reply line (stdout is the agent's pipe).
fn reply(reply: &HelpFormReply) {
    match serde_json::to_string(reply) {
        Ok(line) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        Err(error) => eprintln!("deskside help form: could not encode the answers: {error}"),
    }
}

/// The open form window of a child process, once it replied: tell it how
/// filing went with [`HelpFormWindow::show_outcome`]. Dropping it closes
/// the child's stdin: the window then says it does not know whether the
/// request left. The window closes when the employee closes it; nothing
/// waits for that.
#[derive(Debug)]
pub struct HelpFormWindow {
    stdin: Option<ChildStdin>,
    _child: Child,
}

impl HelpFormWindow {
    /// Shows `outcome` in the window.
    pub fn show_outcome(mut self, outcome: &HelpFormOutcome) -> std::io::Result<()> {
        let line = serde_json::to_string(outcome).map_err(std::io::Error::other)?;
        let mut pipe = self
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("the help window's stdin is closed"))?;
        writeln!(pipe, "{line}")?;
        pipe.flush()
    }
}

/// Runs the form in a child process started from `command` (its stdin and
/// stdout become pipes) and waits, as long as the employee takes, for its
/// reply line. A child that ends without one (killed, crashed, no display:
/// its stderr says why) is an error, never a request.
pub fn ask_help_form_in_subprocess(
    command: Command,
) -> Result<(HelpFormReply, HelpFormWindow), UiError> {
    const WINDOW: &str = "help form";
    let mut child = spawn_window(command, WINDOW, Stdio::piped())?;
    let stdin = child.stdin.take();
    let mut line = String::new();
    let read = match child.stdout.take() {
        Some(stdout) => BufReader::new(stdout.take(MAX_LINE))
            .read_line(&mut line)
            .map_err(|e| e.to_string()),
        None => Err("the child's stdout was not captured".to_owned()),
    };
    let no_answer = |detail: String| UiError::NoAnswer {
        window: WINDOW,
        detail,
    };
    let reply = match read {
        Ok(_) if !line.trim().is_empty() => serde_json::from_str(line.trim())
            .map_err(|e| no_answer(format!("unreadable reply {:?}: {e}", line.trim())))?,
        Ok(_) => {
            drop(stdin);
            return Err(no_answer(match child.wait() {
                Ok(status) => format!("it exited with {status}"),
                Err(e) => format!("waiting for it failed: {e}"),
            }));
        }
        Err(e) => return Err(no_answer(e)),
    };
    Ok((
        reply,
        HelpFormWindow {
            stdin,
            _child: child,
        },
    ))
}

struct HelpFormApp {
    lang: UiLang,
    answers: HelpFormAnswers,
    phase: Phase,
    from_agent: Arc<Mutex<FromAgent>>,
    /// The reply line was printed.
    replied: Arc<Mutex<bool>>,
    /// The summary field got the keyboard focus once.
    focused: bool,
}

impl HelpFormApp {
    /// Prints the reply; Cancel closes, Send waits for the outcome.
    fn answer(&mut self, ctx: &egui::Context, answer: HelpFormReply) {
        let mut replied = self.replied.lock().unwrap_or_else(|p| p.into_inner());
        if *replied {
            return;
        }
        *replied = true;
        reply(&answer);
        match answer {
            HelpFormReply::Cancelled => ctx.send_viewport_cmd(egui::ViewportCommand::Close),
            HelpFormReply::Send(_) => {
                self.phase = Phase::Filing;
                ctx.send_viewport_cmd(egui::ViewportCommand::Title(
                    HELP_FORM_SENDING_TITLE.to_owned(),
                ));
            }
        }
    }

    /// After Send: filing, then the outcome and Close.
    fn filed_ui(&mut self, ui: &mut egui::Ui, ctx: &egui::Context) {
        let lang = self.lang;
        if let Phase::Filing = self.phase {
            let shared = self.from_agent.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(outcome) = &shared.outcome {
                self.phase = Phase::Done(outcome.clone());
            } else if shared.closed {
                self.phase = Phase::Lost;
            }
        }
        egui::CentralPanel::default().show(ui, |_| {});
        label_at(
            ui,
            [16.0, 8.0, 528.0, 30.0],
            RichText::new(lang.t(
                "Your request to IT",
                "Votre demande au service informatique",
            ))
            .size(20.0)
            .strong(),
        );
        let summary = self.answers.summary.trim();
        if !summary.is_empty() {
            label_at(
                ui,
                [16.0, 50.0, 528.0, 60.0],
                RichText::new(format!("« {summary} »")).italics(),
            );
        }
        let (text, color) = match &self.phase {
            Phase::Done(done) => (
                done.text.clone(),
                match done.outcome {
                    HelpFormOutcomeKind::Sent => Color32::from_rgb(0x60, 0xc0, 0x70),
                    HelpFormOutcomeKind::Queued => Color32::from_rgb(0xe0, 0xb0, 0x40),
                    HelpFormOutcomeKind::Failed => Color32::from_rgb(0xe0, 0x60, 0x60),
                },
            ),
            Phase::Lost => (
                lang.t(
                    "The agent stopped before saying whether your request was sent. \
                     Check with `deskside-agent requests`, or call IT.",
                    "L'agent s'est arrêté avant de dire si votre demande est partie. \
                     Vérifiez avec `deskside-agent requests`, ou appelez le service informatique.",
                )
                .to_owned(),
                Color32::from_rgb(0xe0, 0x60, 0x60),
            ),
            _ => (
                lang.t(
                    "Checking this computer and sending your request…",
                    "Vérification de l'ordinateur et envoi de votre demande…",
                )
                .to_owned(),
                Color32::from_gray(200),
            ),
        };
        label_at(
            ui,
            [16.0, 120.0, 528.0, 300.0],
            RichText::new(text).size(16.0).color(color),
        );
        let done = !matches!(self.phase, Phase::Filing);
        let close = ui
            .add_enabled_ui(done, |ui| {
                ui.put(
                    rect_of(HELP_FORM_CLOSE_BUTTON),
                    egui::Button::new(RichText::new(lang.t("Close", "Fermer")).size(18.0)),
                )
            })
            .inner;
        if done && (close.clicked() || ui.input(|i| i.key_pressed(egui::Key::Escape))) {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
    }
}

/// A left-aligned label in a fixed rectangle.
fn label_at(ui: &mut egui::Ui, xywh: [f32; 4], text: RichText) {
    ui.scope_builder(egui::UiBuilder::new().max_rect(rect_of(xywh)), |ui| {
        ui.label(text);
    });
}

/// The choices' words on screen, in the order of the wire words.
fn pattern_words(lang: UiLang) -> [&'static str; 3] {
    [
        lang.t("ongoing", "en cours"),
        lang.t("intermittent", "par moments"),
        lang.t("over", "terminé"),
    ]
}

fn app_words(lang: UiLang) -> [&'static str; 6] {
    [
        lang.t("video calls", "visio"),
        "VPN",
        lang.t("mail", "e-mail"),
        lang.t("browser", "navigateur"),
        lang.t("printer", "imprimante"),
        lang.t("other", "autre"),
    ]
}

fn urgency_words(lang: UiLang) -> [&'static str; 3] {
    [
        lang.t("I can work", "je peux travailler"),
        lang.t("slowed down", "ralenti"),
        lang.t("blocked", "bloqué"),
    ]
}

impl eframe::App for HelpFormApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        // Closing the form cancels; once sent, closing only closes.
        if matches!(self.phase, Phase::Form) && ctx.input(|i| i.viewport().close_requested()) {
            self.answer(ctx, HelpFormReply::Cancelled);
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        if !matches!(self.phase, Phase::Form) {
            self.filed_ui(ui, &ctx);
            return;
        }
        let lang = self.lang;
        if ui.input(|i| i.key_pressed(egui::Key::Escape)) {
            self.answer(&ctx, HelpFormReply::Cancelled);
            return;
        }
        let c = colon(lang);
        egui::CentralPanel::default().show(ui, |_| {});
        label_at(
            ui,
            [16.0, 8.0, 528.0, 30.0],
            RichText::new(lang.t("Ask IT for help", "Demander de l'aide"))
                .size(20.0)
                .strong(),
        );
        label_at(
            ui,
            [16.0, 44.0, 528.0, 20.0],
            RichText::new(format!(
                "1/5 {}",
                lang.t(
                    "What is wrong, in your own words?",
                    "Quel est le problème, avec vos mots\u{202f}?"
                )
            )),
        );
        let summary = ui.put(
            rect_of(HELP_FORM_SUMMARY_INPUT),
            egui::TextEdit::singleline(&mut self.answers.summary),
        );
        if !self.focused {
            self.focused = true;
            summary.request_focus();
        }
        label_at(
            ui,
            [16.0, 100.0, 528.0, 20.0],
            RichText::new(format!(
                "2/5 {}",
                lang.t("Since when?", "Depuis quand\u{202f}?")
            )),
        );
        ui.put(
            rect_of(HELP_FORM_SINCE_INPUT),
            egui::TextEdit::singleline(&mut self.answers.since).hint_text(default_since(lang)),
        );
        for ((rect, word), shown) in HELP_FORM_PATTERN_BUTTONS
            .iter()
            .zip(PATTERNS)
            .zip(pattern_words(lang))
        {
            let chosen = self.answers.pattern == word;
            if ui
                .put(rect_of(*rect), egui::RadioButton::new(chosen, shown))
                .clicked()
            {
                self.answers.pattern = word.to_owned();
            }
        }
        label_at(
            ui,
            [16.0, 190.0, 528.0, 20.0],
            RichText::new(format!(
                "3/5 {}",
                lang.t("Which applications?", "Quelles applications\u{202f}?")
            )),
        );
        for ((rect, word), shown) in HELP_FORM_APP_BOXES.iter().zip(APPS).zip(app_words(lang)) {
            let mut ticked = self.answers.apps.iter().any(|a| a == word);
            if ui
                .put(rect_of(*rect), egui::Checkbox::new(&mut ticked, shown))
                .changed()
            {
                // Kept in APPS order, whatever the order of the clicks.
                let mut apps: Vec<String> = APPS
                    .iter()
                    .filter(|a| {
                        if **a == word {
                            ticked
                        } else {
                            self.answers.apps.iter().any(|x| x == *a)
                        }
                    })
                    .map(|a| (*a).to_owned())
                    .collect();
                std::mem::swap(&mut self.answers.apps, &mut apps);
            }
        }
        label_at(
            ui,
            [16.0, 246.0, 528.0, 20.0],
            RichText::new(format!(
                "4/5 {}",
                lang.t(
                    "How much does it block you?",
                    "À quel point cela vous bloque-t-il\u{202f}?"
                )
            )),
        );
        for ((rect, word), shown) in HELP_FORM_URGENCY_BUTTONS
            .iter()
            .zip(URGENCIES)
            .zip(urgency_words(lang))
        {
            let chosen = self.answers.urgency == word;
            if ui
                .put(rect_of(*rect), egui::RadioButton::new(chosen, shown))
                .clicked()
            {
                self.answers.urgency = word.to_owned();
            }
        }
        label_at(
            ui,
            [16.0, 302.0, 528.0, 20.0],
            RichText::new(format!(
                "5/5 {}",
                lang.t(
                    "How and when can IT reach you? (phone, chat or email, and when)",
                    "Comment et quand vous joindre\u{202f}? (téléphone, chat ou e-mail, et quand)"
                )
            )),
        );
        ui.put(
            rect_of(HELP_FORM_CONTACT_INPUT),
            egui::TextEdit::singleline(&mut self.answers.contact).hint_text(default_contact(lang)),
        );
        ui.put(
            rect_of(HELP_FORM_DROP_DIAGNOSTICS_BOX),
            egui::Checkbox::new(
                &mut self.answers.drop_diagnostics,
                lang.t(
                    "Do not attach the diagnostics",
                    "Ne pas joindre le diagnostic",
                ),
            ),
        );
        label_at(
            ui,
            [16.0, 392.0, 528.0, 60.0],
            RichText::new(format!(
                "{}{c} {}",
                lang.t("What will be sent", "Ce qui sera envoyé"),
                if self.answers.drop_diagnostics {
                    lang.t(
                        "your answers above, nothing else.",
                        "vos réponses ci-dessus, rien d'autre.",
                    )
                } else {
                    lang.t(
                        "your answers above and the quick check's measurements of this \
                         computer and its connection (no screen content, no files).",
                        "vos réponses ci-dessus et les mesures de la vérification rapide de \
                         cet ordinateur et de sa connexion (ni contenu d'écran, ni fichiers).",
                    )
                }
            ))
            .color(Color32::from_gray(170)),
        );
        let cancel = ui.put(
            rect_of(HELP_FORM_CANCEL_BUTTON),
            egui::Button::new(RichText::new(lang.t("Cancel", "Annuler")).size(18.0)),
        );
        let ready = !self.answers.summary.trim().is_empty();
        let send = ui
            .add_enabled_ui(ready, |ui| {
                ui.put(
                    rect_of(HELP_FORM_SEND_BUTTON),
                    egui::Button::new(RichText::new(lang.t("Send", "Envoyer")).size(18.0).strong()),
                )
            })
            .inner;
        if cancel.clicked() {
            self.answer(&ctx, HelpFormReply::Cancelled);
        } else if send.clicked() && ready {
            let answers = self.answers.clone();
            self.answer(&ctx, HelpFormReply::Send(answers));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_line_is_tagged_json_both_ways() {
        let sent = HelpFormReply::Send(HelpFormAnswers {
            summary: "calls freeze".into(),
            ..HelpFormAnswers::default()
        });
        let line = serde_json::to_string(&sent).unwrap();
        assert!(
            line.starts_with(r#"{"answer":"send","summary":"calls freeze""#),
            "{line}"
        );
        assert_eq!(serde_json::from_str::<HelpFormReply>(&line).unwrap(), sent);
        assert_eq!(
            serde_json::to_string(&HelpFormReply::Cancelled).unwrap(),
            r#"{"answer":"cancelled"}"#
        );
        let outcome: HelpFormOutcome =
            serde_json::from_str(r#"{"outcome":"queued","text":"saved"}"#).unwrap();
        assert_eq!(outcome.outcome, HelpFormOutcomeKind::Queued);
    }

    #[test]
    fn the_defaults_are_the_terminal_forms() {
        let a = HelpFormAnswers::default();
        assert_eq!(
            (a.pattern.as_str(), a.urgency.as_str(), a.apps.as_slice()),
            ("ongoing", "slowed", &["other".to_owned()][..])
        );
        assert_eq!(default_since(UiLang::Fr), "aujourd'hui");
        assert_eq!(default_contact(UiLang::En), "chat, working hours");
    }

    #[test]
    fn no_two_controls_overlap() {
        let mut rects: Vec<[f32; 4]> = vec![
            HELP_FORM_SUMMARY_INPUT,
            HELP_FORM_SINCE_INPUT,
            HELP_FORM_CONTACT_INPUT,
            HELP_FORM_DROP_DIAGNOSTICS_BOX,
            HELP_FORM_CANCEL_BUTTON,
            HELP_FORM_SEND_BUTTON,
        ];
        rects.extend(HELP_FORM_PATTERN_BUTTONS);
        rects.extend(HELP_FORM_APP_BOXES);
        rects.extend(HELP_FORM_URGENCY_BUTTONS);
        for (i, a) in rects.iter().enumerate() {
            assert!(
                a[0] + a[2] <= HELP_FORM_WINDOW_SIZE[0] && a[1] + a[3] <= HELP_FORM_WINDOW_SIZE[1]
            );
            for b in &rects[i + 1..] {
                let apart = a[0] + a[2] <= b[0]
                    || b[0] + b[2] <= a[0]
                    || a[1] + a[3] <= b[1]
                    || b[1] + b[3] <= a[1];
                assert!(apart, "{a:?} overlaps {b:?}");
            }
        }
    }
}
