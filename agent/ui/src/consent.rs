//! The consent dialog: who asks, for what, why, the verification code,
//! Accept / Refuse and a countdown.
//!
//! Refusal is the default: closing the window refuses, the timeout refuses,
//! and neither Enter nor any other key accepts. Accept only works
//! [`ACCEPT_ARMING_DELAY`] after the dialog is first drawn, so a click or a
//! key meant for another window, landing as the dialog pops up, cannot
//! accept. Nothing here starts a capture; the caller does that only after
//! [`ConsentAnswer::Accepted`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eframe::egui::{self, Color32, RichText};

use crate::words::{colon, UiLang};
use crate::{
    native_options, rect_of, ConsentAnswer, ConsentRequest, UiError, DEFAULT_CONSENT_TIMEOUT,
};

/// The dialog's window title.
pub const CONSENT_TITLE: &str = "deskside — remote support request";
/// How long after the dialog is first drawn Accept starts to work (it is
/// greyed out until then).
pub const ACCEPT_ARMING_DELAY: Duration = Duration::from_secs(1);
/// Fixed window size in points (not resizable).
pub const CONSENT_WINDOW_SIZE: [f32; 2] = [520.0, 420.0];
/// The Refuse button, `[x, y, width, height]` in window points.
pub const CONSENT_REFUSE_BUTTON: [f32; 4] = [24.0, 352.0, 220.0, 48.0];
/// The Accept button, `[x, y, width, height]` in window points.
pub const CONSENT_ACCEPT_BUTTON: [f32; 4] = [276.0, 352.0, 220.0, 48.0];
/// The window title once the technician withdrew the request.
pub const WITHDRAWN_TITLE: &str = "deskside — offer withdrawn";
/// How long the dialog says the request was withdrawn before it closes by
/// itself (long enough to read two sentences).
pub const WITHDRAWN_NOTICE: Duration = Duration::from_secs(6);

/// Tells an open consent dialog, from any thread, that the technician
/// withdrew the request: it stops offering Accept, says so, and closes.
#[derive(Clone, Debug, Default)]
pub struct Withdrawal {
    inner: Arc<WithdrawalInner>,
}

#[derive(Debug, Default)]
struct WithdrawalInner {
    withdrawn: AtomicBool,
    /// The dialog's context, to wake it; set once it runs.
    ctx: Mutex<Option<egui::Context>>,
}

impl Withdrawal {
    /// The request was withdrawn.
    pub fn withdraw(&self) {
        self.inner.withdrawn.store(true, Ordering::SeqCst);
        let ctx = self
            .inner
            .ctx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(ctx) = ctx {
            ctx.request_repaint();
        }
    }

    /// Whether [`Withdrawal::withdraw`] was called.
    pub fn is_withdrawn(&self) -> bool {
        self.inner.withdrawn.load(Ordering::SeqCst)
    }

    fn wake_through(&self, ctx: &egui::Context) {
        *self.inner.ctx.lock().unwrap_or_else(|p| p.into_inner()) = Some(ctx.clone());
    }
}

/// The dialog's sentences, separate from drawing so they can be tested and
/// translated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentText {
    /// "Alice Martin from ACME IT asks for remote help."
    pub who: String,
    /// "They want to see your screen and control your mouse and keyboard."
    pub what: String,
    /// "Reason: …" (empty when no reason was given).
    pub reason: String,
    /// How to use the code.
    pub code_hint: String,
}

/// Builds the dialog's plain-language sentences in the locale's language.
pub fn consent_text(req: &ConsentRequest) -> ConsentText {
    consent_text_in(req, UiLang::current())
}

/// Builds the dialog's plain-language sentences: the technician offers
/// help, and the employee decides.
pub fn consent_text_in(req: &ConsentRequest, lang: UiLang) -> ConsentText {
    let what = match (req.capabilities.control, lang) {
        (true, UiLang::En) => {
            "To help, they would see your screen and use your mouse and keyboard."
        }
        (true, UiLang::Fr) => {
            "Pour vous aider, cette personne verrait votre écran et utiliserait votre souris et votre clavier."
        }
        (false, UiLang::En) => {
            "To help, they would see your screen, without being able to click or type."
        }
        (false, UiLang::Fr) => {
            "Pour vous aider, cette personne verrait votre écran, sans pouvoir cliquer ni taper."
        }
    };
    let reason = req.reason.trim();
    ConsentText {
        who: match lang {
            UiLang::En => format!(
                "{} from {} offers to help you on this computer.",
                req.technician, req.organisation
            ),
            UiLang::Fr => format!(
                "{} ({}) vous propose son aide sur cet ordinateur.",
                req.technician, req.organisation
            ),
        },
        what: what.to_owned(),
        reason: if reason.is_empty() {
            String::new()
        } else {
            format!("{}{} {reason}", lang.t("Reason", "Motif"), colon(lang))
        },
        code_hint: format!(
            "{}{}",
            lang.t(
                "Check that the technician sees the same code before you accept",
                "Vérifiez que le technicien voit le même code avant d'accepter"
            ),
            colon(lang)
        ),
    }
}

/// Shows the consent dialog and blocks until the employee answers, the
/// timeout passes or the window is closed.
///
/// Errors when the window cannot open (no display); the caller must treat
/// that as a refusal.
pub fn ask_consent(req: ConsentRequest) -> Result<ConsentAnswer, UiError> {
    ask_consent_withdrawable(req, Withdrawal::default())
}

/// Like [`ask_consent`]; once `withdrawal` is told, the dialog drops
/// Accept, says the request was withdrawn, closes after
/// [`WITHDRAWN_NOTICE`] and the answer is [`ConsentAnswer::Withdrawn`].
pub fn ask_consent_withdrawable(
    req: ConsentRequest,
    withdrawal: Withdrawal,
) -> Result<ConsentAnswer, UiError> {
    let answer: Arc<Mutex<Option<ConsentAnswer>>> = Arc::new(Mutex::new(None));
    let viewport = egui::ViewportBuilder::default()
        .with_title(CONSENT_TITLE)
        .with_app_id("deskside-consent")
        .with_inner_size(CONSENT_WINDOW_SIZE)
        .with_min_inner_size(CONSENT_WINDOW_SIZE)
        .with_max_inner_size(CONSENT_WINDOW_SIZE)
        .with_resizable(false)
        .with_always_on_top();
    let app_answer = answer.clone();
    let result = eframe::run_native(
        CONSENT_TITLE,
        native_options(viewport, true),
        Box::new(move |cc| {
            cc.egui_ctx.options_mut(|o| o.zoom_with_keyboard = false);
            withdrawal.wake_through(&cc.egui_ctx);
            Ok(Box::new(ConsentApp::new(req, app_answer, withdrawal)))
        }),
    );
    if let Err(error) = result {
        return Err(UiError::Window {
            window: "consent",
            reason: error.to_string(),
        });
    }
    let answer = *answer.lock().unwrap_or_else(|p| p.into_inner());
    // The window closed without a button: that is a refusal.
    Ok(answer.unwrap_or(ConsentAnswer::Refused))
}

struct ConsentApp {
    lang: UiLang,
    text: ConsentText,
    code: String,
    deadline: Instant,
    timeout: Duration,
    answer: Arc<Mutex<Option<ConsentAnswer>>>,
    answered: bool,
    /// How long after the first drawing Accept starts to work.
    accept_after: Duration,
    /// When Accept starts to work; set at the first drawing.
    armed_at: Option<Instant>,
    /// The technician's name, for the withdrawn notice.
    technician: String,
    /// Told when the technician withdraws the request.
    withdrawal: Withdrawal,
    /// When the dialog learnt the request was withdrawn.
    withdrawn_at: Option<Instant>,
}

impl std::fmt::Debug for ConsentApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsentApp")
            .field("who", &self.text.who)
            .finish_non_exhaustive()
    }
}

impl ConsentApp {
    fn new(
        req: ConsentRequest,
        answer: Arc<Mutex<Option<ConsentAnswer>>>,
        withdrawal: Withdrawal,
    ) -> Self {
        let timeout = req.timeout.unwrap_or(DEFAULT_CONSENT_TIMEOUT);
        Self {
            technician: req.technician.clone(),
            withdrawal,
            withdrawn_at: None,
            lang: UiLang::current(),
            text: consent_text_in(&req, UiLang::current()),
            code: req.verification_code,
            deadline: Instant::now() + timeout,
            timeout,
            answer,
            answered: false,
            accept_after: req.accept_after.unwrap_or(ACCEPT_ARMING_DELAY),
            armed_at: None,
        }
    }

    fn answer(&mut self, ctx: &egui::Context, answer: ConsentAnswer) {
        if !self.answered {
            self.answered = true;
            tracing::info!(?answer, "consent answered");
            *self.answer.lock().unwrap_or_else(|p| p.into_inner()) = Some(answer);
        }
        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
    }
}

impl eframe::App for ConsentApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        // Here rather than in `ui`, so the timeout fires even while the
        // window is hidden or minimised.
        let now = Instant::now();
        if self.withdrawn_at.is_none() && self.withdrawal.is_withdrawn() && !self.answered {
            // Nothing can be accepted from now on: the answer is fixed.
            self.answered = true;
            *self.answer.lock().unwrap_or_else(|p| p.into_inner()) = Some(ConsentAnswer::Withdrawn);
            self.withdrawn_at = Some(now);
            tracing::info!("the technician withdrew the request");
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(WITHDRAWN_TITLE.to_owned()));
        }
        if let Some(withdrawn_at) = self.withdrawn_at {
            let close_at = withdrawn_at + WITHDRAWN_NOTICE;
            if now >= close_at || ctx.input(|i| i.viewport().close_requested()) {
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            } else {
                ctx.request_repaint_after(close_at - now);
            }
            return;
        }
        if now >= self.deadline {
            self.answer(ctx, ConsentAnswer::TimedOut);
        } else {
            let left = self.deadline - now;
            // Wake at the next whole second of the countdown.
            let to_next_second = Duration::from_nanos(u64::from(left.subsec_nanos()) + 1_000_000);
            ctx.request_repaint_after(to_next_second.min(left));
        }
        if ctx.input(|i| i.viewport().close_requested()) && !self.answered {
            self.answer(ctx, ConsentAnswer::Refused);
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        if self.withdrawn_at.is_some() {
            self.withdrawn_ui(ui, &ctx);
            return;
        }
        if ui.input(|i| i.key_pressed(egui::Key::Escape)) {
            self.answer(&ctx, ConsentAnswer::Refused);
        }
        let seconds_left = self
            .deadline
            .saturating_duration_since(Instant::now())
            .as_secs_f32()
            .ceil() as u64;
        egui::CentralPanel::default().show(ui, |ui| {
            ui.add_space(4.0);
            ui.label(
                RichText::new(self.lang.t("Offer of remote help", "Proposition d'aide à distance"))
                    .size(22.0)
                    .strong(),
            );
            ui.add_space(8.0);
            ui.label(RichText::new(&self.text.who).size(16.0));
            ui.label(RichText::new(&self.text.what).size(16.0).strong());
            if !self.text.reason.is_empty() {
                ui.add_space(4.0);
                ui.label(RichText::new(&self.text.reason).size(15.0).italics());
            }
            ui.add_space(10.0);
            ui.label(&self.text.code_hint);
            ui.label(
                RichText::new(&self.code)
                    .size(34.0)
                    .monospace()
                    .strong()
                    .color(Color32::from_rgb(0x40, 0xa0, 0xff)),
            );
            ui.add_space(6.0);
            let total = self.timeout.as_secs().max(1);
            ui.label(match self.lang {
                UiLang::En => format!(
                    "If you do nothing, the offer is declined in {seconds_left} s (of {total} s)."
                ),
                UiLang::Fr => format!(
                    "Sans réponse, la proposition sera refusée dans {seconds_left} s (sur {total} s)."
                ),
            });
        });
        let armed_at = *self
            .armed_at
            .get_or_insert_with(|| Instant::now() + self.accept_after);
        let armed = Instant::now() >= armed_at;
        if !armed {
            ctx.request_repaint_after(armed_at.saturating_duration_since(Instant::now()));
        }
        let refuse = ui.put(
            rect_of(CONSENT_REFUSE_BUTTON),
            egui::Button::new(RichText::new(self.lang.t("Decline", "Refuser")).size(18.0)),
        );
        let accept_button = egui::Button::new(
            RichText::new(self.lang.t("Accept", "Accepter"))
                .size(18.0)
                .strong(),
        );
        let accept = ui
            .add_enabled_ui(armed, |ui| {
                ui.put(
                    rect_of(CONSENT_ACCEPT_BUTTON),
                    if armed {
                        accept_button.fill(Color32::from_rgb(0x20, 0x70, 0x30))
                    } else {
                        accept_button
                    },
                )
            })
            .inner;
        if refuse.clicked() {
            self.answer(&ctx, ConsentAnswer::Refused);
        } else if accept.clicked() {
            self.answer(&ctx, ConsentAnswer::Accepted);
        }
    }
}

impl ConsentApp {
    /// The request is gone: say so, offer only Close.
    fn withdrawn_ui(&mut self, ui: &mut egui::Ui, ctx: &egui::Context) {
        egui::CentralPanel::default().show(ui, |ui| {
            ui.add_space(4.0);
            let lang = self.lang;
            ui.label(
                RichText::new(lang.t("Offer withdrawn", "Proposition retirée"))
                    .size(22.0)
                    .strong(),
            );
            ui.add_space(8.0);
            let who = match lang {
                UiLang::En => format!(
                    "{} withdrew the offer before you answered.",
                    self.technician
                ),
                UiLang::Fr => format!(
                    "{} a retiré sa proposition avant votre réponse.",
                    self.technician
                ),
            };
            ui.label(RichText::new(who).size(16.0));
            ui.label(
                RichText::new(lang.t(
                    "Nothing was shared. There is nothing to do.",
                    "Rien n'a été partagé. Vous n'avez rien à faire.",
                ))
                .size(16.0),
            );
            ui.add_space(6.0);
            ui.label(lang.t(
                "This window closes by itself.",
                "Cette fenêtre se ferme d'elle-même.",
            ));
        });
        let close = ui.put(
            rect_of(CONSENT_REFUSE_BUTTON),
            egui::Button::new(RichText::new(self.lang.t("Close", "Fermer")).size(18.0)),
        );
        if close.clicked() || ui.input(|i| i.key_pressed(egui::Key::Escape)) {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deskside_protocol::session::Capabilities;

    fn request(capabilities: Capabilities, reason: &str) -> ConsentRequest {
        ConsentRequest {
            technician: "Alice Martin".into(),
            organisation: "ACME IT".into(),
            capabilities,
            reason: reason.into(),
            verification_code: "123 456".into(),
            timeout: None,
            accept_after: None,
        }
    }

    #[test]
    fn text_says_what_is_asked_in_plain_words() {
        let view = consent_text(&request(Capabilities::VIEW, "  "));
        assert_eq!(
            view.who,
            consent_text_in(&request(Capabilities::VIEW, ""), UiLang::current()).who
        );
        let view = consent_text_in(&request(Capabilities::VIEW, "  "), UiLang::En);
        assert_eq!(
            view.who,
            "Alice Martin from ACME IT offers to help you on this computer."
        );
        assert!(
            !view.who.contains("asks"),
            "the technician offers, not asks"
        );
        assert!(view.what.contains("see your screen"));
        assert!(!view.what.contains("your mouse"));
        assert_eq!(view.reason, "");
        let control = consent_text_in(&request(Capabilities::CONTROL, "Printer setup"), UiLang::En);
        assert!(control.what.contains("use your mouse and keyboard"));
        assert_eq!(control.reason, "Reason: Printer setup");
    }

    #[test]
    fn the_french_dialog_is_french_with_french_typography() {
        let text = consent_text_in(&request(Capabilities::CONTROL, "Imprimante"), UiLang::Fr);
        assert_eq!(
            text.who,
            "Alice Martin (ACME IT) vous propose son aide sur cet ordinateur."
        );
        assert!(text.what.contains("votre souris et votre clavier"));
        assert_eq!(text.reason, "Motif\u{a0}: Imprimante");
        assert!(text.code_hint.ends_with("avant d'accepter\u{a0}:"));
    }

    #[test]
    fn buttons_fit_in_the_window_and_do_not_overlap() {
        for button in [CONSENT_REFUSE_BUTTON, CONSENT_ACCEPT_BUTTON] {
            assert!(button[0] + button[2] <= CONSENT_WINDOW_SIZE[0]);
            assert!(button[1] + button[3] <= CONSENT_WINDOW_SIZE[1]);
        }
        assert!(!rect_of(CONSENT_REFUSE_BUTTON).intersects(rect_of(CONSENT_ACCEPT_BUTTON)));
    }
}
