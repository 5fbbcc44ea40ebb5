//! The consent dialog: who asks, for what, why, the verification code,
//! Accept / Refuse and a countdown.
//!
//! Refusal is the default: closing the window refuses, the timeout refuses,
//! and neither Enter nor any other key accepts. Accept only works
//! [`ACCEPT_ARMING_DELAY`] after the dialog is first drawn, so a click or a
//! key meant for another window, landing as the dialog pops up, cannot
//! accept. Nothing here starts a capture; the caller does that only after
//! [`ConsentAnswer::Accepted`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eframe::egui::{self, Color32, RichText};

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

/// Builds the dialog's plain-language sentences.
pub fn consent_text(req: &ConsentRequest) -> ConsentText {
    let what = if req.capabilities.control {
        "They want to see your screen and control your mouse and keyboard."
    } else {
        "They want to see your screen. They will not be able to click or type."
    };
    let reason = req.reason.trim();
    ConsentText {
        who: format!(
            "{} from {} asks for remote help.",
            req.technician, req.organisation
        ),
        what: what.to_owned(),
        reason: if reason.is_empty() {
            String::new()
        } else {
            format!("Reason: {reason}")
        },
        code_hint: "Check that the technician sees the same code before you accept:".to_owned(),
    }
}

/// Shows the consent dialog and blocks until the employee answers, the
/// timeout passes or the window is closed.
///
/// Errors when the window cannot open (no display); the caller must treat
/// that as a refusal.
pub fn ask_consent(req: ConsentRequest) -> Result<ConsentAnswer, UiError> {
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
            Ok(Box::new(ConsentApp::new(req, app_answer)))
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
}

impl std::fmt::Debug for ConsentApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsentApp")
            .field("who", &self.text.who)
            .finish_non_exhaustive()
    }
}

impl ConsentApp {
    fn new(req: ConsentRequest, answer: Arc<Mutex<Option<ConsentAnswer>>>) -> Self {
        let timeout = req.timeout.unwrap_or(DEFAULT_CONSENT_TIMEOUT);
        Self {
            text: consent_text(&req),
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
            ui.label(RichText::new("Remote support request").size(22.0).strong());
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
            ui.label(format!(
                "If you do nothing, the request is refused in {seconds_left} s (of {total} s)."
            ));
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
            egui::Button::new(RichText::new("Refuse").size(18.0)),
        );
        let accept_button = egui::Button::new(RichText::new("Accept").size(18.0).strong());
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
        assert_eq!(view.who, "Alice Martin from ACME IT asks for remote help.");
        assert!(view.what.contains("see your screen"));
        assert!(!view.what.contains("control your mouse"));
        assert_eq!(view.reason, "");
        let control = consent_text(&request(Capabilities::CONTROL, "Printer setup"));
        assert!(control.what.contains("control your mouse and keyboard"));
        assert_eq!(control.reason, "Reason: Printer setup");
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
