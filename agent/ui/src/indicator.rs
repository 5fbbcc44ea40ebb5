//! The session indicator: always on top while a session runs, says who sees
//! the screen, and has Stop, "Switch to view only", the chat and "Ask IT
//! for help" (the help request window, as from the desktop launcher).
//!
//! It is small (360 × 262 points, under a sixth of a 1366 × 768 laptop screen)
//! and the employee can move it out of the way by dragging its text, as
//! well as by its title bar.
//!
//! Stop is sent the moment it is pressed, before the window closes; closing
//! the window is a Stop too, so no session outlives its indicator.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use deskside_protocol::session::{Capabilities, EndedBy};
use eframe::egui::{self, Color32, RichText};
use tokio::sync::mpsc;

use crate::words::{colon, ended, windows_limits, UiLang};
use crate::{
    native_options, rect_of, IndicatorCommand, IndicatorEvent, IndicatorExit, IndicatorInfo,
    UiError,
};

/// The indicator's window title.
pub const INDICATOR_TITLE: &str = "deskside — session active";
/// Fixed window size in points (not resizable): compact, so it hides little
/// of a laptop screen.
pub const INDICATOR_WINDOW_SIZE: [f32; 2] = [360.0, 262.0];
/// The Stop button, `[x, y, width, height]` in window points.
pub const INDICATOR_STOP_BUTTON: [f32; 4] = [8.0, 66.0, 168.0, 34.0];
/// The "Switch to view only" button (shown only while control is granted),
/// `[x, y, width, height]` in window points.
pub const INDICATOR_DOWNGRADE_BUTTON: [f32; 4] = [184.0, 66.0, 168.0, 34.0];
/// The chat's text field (the last row of the window), `[x, y, width,
/// height]` in window points.
pub const INDICATOR_CHAT_INPUT: [f32; 4] = [8.0, 200.0, 270.0, 22.0];
/// The help button ("?", on Windows only) at the right of the chat's
/// heading: it shows what the technician cannot reach on Windows in place of
/// the chat, and back. `[x, y, width, height]` in window points.
pub const INDICATOR_HELP_BUTTON: [f32; 4] = [320.0, 106.0, 28.0, 20.0];
/// The "Ask IT for help" button, in the last row below the chat, `[x, y,
/// width, height]` in window points.
pub const INDICATOR_ASK_HELP_BUTTON: [f32; 4] = [8.0, 230.0, 200.0, 24.0];
/// The area above the buttons: dragging it moves the window.
const DRAG_AREA: [f32; 4] = [0.0, 0.0, 360.0, 62.0];

/// Top of the chat area, below the buttons.
const CHAT_TOP: f32 = 108.0;
/// Bottom of the chat area, above the "Ask IT for help" row.
const CHAT_BOTTOM: f32 = 220.0;

#[derive(Debug, Default)]
struct Inbox {
    events: VecDeque<IndicatorEvent>,
}

/// The indicator window's ends of the channels; pass it to [`run_indicator`].
#[derive(Debug)]
pub struct IndicatorIo {
    inbox: Arc<Mutex<Inbox>>,
    ctx: egui::Context,
    commands: mpsc::UnboundedSender<IndicatorCommand>,
}

/// The session side's handle: queues events and wakes the window. Cheap to clone.
#[derive(Debug, Clone)]
pub struct IndicatorRemote {
    inbox: Arc<Mutex<Inbox>>,
    ctx: egui::Context,
}

impl IndicatorRemote {
    /// Queues an event for the indicator and wakes it.
    pub fn send(&self, event: IndicatorEvent) {
        self.inbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .events
            .push_back(event);
        self.ctx.request_repaint();
    }
}

/// Creates the channels between an indicator window and the session side.
/// The receiver yields the employee's [`IndicatorCommand`]s.
pub fn indicator_channel() -> (
    IndicatorIo,
    IndicatorRemote,
    mpsc::UnboundedReceiver<IndicatorCommand>,
) {
    let inbox = Arc::new(Mutex::new(Inbox::default()));
    let ctx = egui::Context::default();
    let (commands, receiver) = mpsc::unbounded_channel();
    (
        IndicatorIo {
            inbox: inbox.clone(),
            ctx: ctx.clone(),
            commands,
        },
        IndicatorRemote { inbox, ctx },
        receiver,
    )
}

/// Shows the indicator and blocks until the employee stops the session (or
/// closes the window) or the session side reports the end.
///
/// Errors when the window cannot open; the caller must then end the session
/// (a session never runs without its indicator).
pub fn run_indicator(info: IndicatorInfo, io: IndicatorIo) -> Result<IndicatorExit, UiError> {
    let exit: Arc<Mutex<Option<IndicatorExit>>> = Arc::new(Mutex::new(None));
    let viewport = egui::ViewportBuilder::default()
        .with_title(INDICATOR_TITLE)
        .with_app_id("deskside-indicator")
        .with_inner_size(INDICATOR_WINDOW_SIZE)
        .with_min_inner_size(INDICATOR_WINDOW_SIZE)
        .with_max_inner_size(INDICATOR_WINDOW_SIZE)
        .with_resizable(false)
        .with_always_on_top()
        // Shown without taking the keyboard from what the employee is
        // typing in (Windows: no activation; X11 ignores it, focus there
        // follows the window manager).
        .with_active(false);
    let commands = io.commands.clone();
    let ctx = io.ctx.clone();
    let app_exit = exit.clone();
    let result = eframe::run_native_ext(
        INDICATOR_TITLE,
        native_options(viewport, false),
        Some(ctx),
        Box::new(move |cc| {
            cc.egui_ctx.options_mut(|o| o.zoom_with_keyboard = false);
            Ok(Box::new(IndicatorApp::new(info, io, app_exit)))
        }),
    );
    let recorded = *exit.lock().unwrap_or_else(|p| p.into_inner());
    let exit = match recorded {
        Some(exit) => exit,
        None => {
            // The window went away on its own: the session must stop.
            let _ = commands.send(IndicatorCommand::Stop);
            IndicatorExit::Stopped
        }
    };
    match result {
        Ok(()) => Ok(exit),
        Err(error) => Err(UiError::Window {
            window: "session indicator",
            reason: error.to_string(),
        }),
    }
}

/// The sentence at the top of the indicator.
pub(crate) fn indicator_text(info: &IndicatorInfo, granted: Capabilities, lang: UiLang) -> String {
    let who = format!("{} ({})", info.technician, info.organisation);
    match (granted.control, lang) {
        (true, UiLang::En) => format!("{who} sees your screen and uses your mouse and keyboard."),
        (true, UiLang::Fr) => {
            format!("{who} voit votre écran et utilise votre souris et votre clavier.")
        }
        (false, UiLang::En) => format!("{who} sees your screen."),
        (false, UiLang::Fr) => format!("{who} voit votre écran."),
    }
}

struct IndicatorApp {
    lang: UiLang,
    info: IndicatorInfo,
    granted: Capabilities,
    io: IndicatorIo,
    exit: Arc<Mutex<Option<IndicatorExit>>>,
    chat: Vec<(bool, String)>,
    chat_input: String,
    ended: Option<EndedBy>,
    /// The help (from `help_for_this_os`) is shown in place of the chat.
    show_help: bool,
}

impl std::fmt::Debug for IndicatorApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndicatorApp")
            .field("technician", &self.info.technician)
            .finish_non_exhaustive()
    }
}

impl IndicatorApp {
    fn new(info: IndicatorInfo, io: IndicatorIo, exit: Arc<Mutex<Option<IndicatorExit>>>) -> Self {
        Self {
            lang: UiLang::current(),
            show_help: false,
            granted: info.granted,
            info,
            io,
            exit,
            chat: Vec::new(),
            chat_input: String::new(),
            ended: None,
        }
    }

    fn send(&self, command: IndicatorCommand) {
        tracing::debug!(?command, "indicator command");
        if self.io.commands.send(command).is_err() {
            tracing::warn!("the session side is gone; the indicator command was dropped");
        }
    }

    fn finish(&self, ctx: &egui::Context, exit: IndicatorExit) {
        let mut slot = self.exit.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            if exit == IndicatorExit::Stopped {
                self.send(IndicatorCommand::Stop);
            }
            *slot = Some(exit);
        }
        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
    }

    fn pull_events(&mut self, ctx: &egui::Context) {
        let events: Vec<IndicatorEvent> = self
            .io
            .inbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .events
            .drain(..)
            .collect();
        for event in events {
            match event {
                IndicatorEvent::Granted(granted) => self.granted = granted,
                IndicatorEvent::Chat { text } => self.chat.push((false, text)),
                IndicatorEvent::Ended { by } => {
                    self.ended = Some(by);
                    tracing::info!(by = by.as_str(), "session ended; closing the indicator");
                    self.finish(ctx, IndicatorExit::Ended(by));
                }
            }
        }
    }
}

/// The "?" help of this OS, if it has one: on Windows, what a helper
/// running as the user cannot see or control (elevated windows, UAC).
fn help_for_this_os(lang: UiLang) -> Option<&'static str> {
    cfg!(windows).then(|| windows_limits(lang))
}

impl eframe::App for IndicatorApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.pull_events(ctx);
        if ctx.input(|i| i.viewport().close_requested()) {
            self.finish(ctx, IndicatorExit::Stopped);
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        let lang = self.lang;
        egui::CentralPanel::default().show(ui, |ui| {
            ui.label(
                RichText::new(indicator_text(&self.info, self.granted, lang))
                    .size(14.0)
                    .strong()
                    .color(Color32::from_rgb(0xff, 0xb0, 0x40)),
            );
            ui.label(
                RichText::new(format!(
                    "{}{} {}",
                    lang.t("Session code", "Code de la session"),
                    colon(lang),
                    self.info.verification_code
                ))
                .size(12.0),
            );
            if let Some(by) = self.ended {
                ui.label(ended(lang, by));
            }
        });
        // Dragging the text moves the window (the title bar works too).
        let drag = ui.interact(
            rect_of(DRAG_AREA),
            ui.scope_id().with("indicator-drag"),
            egui::Sense::drag(),
        );
        if drag.drag_started() {
            ctx.send_viewport_cmd(egui::ViewportCommand::StartDrag);
        }

        let stop = ui.put(
            rect_of(INDICATOR_STOP_BUTTON),
            egui::Button::new(
                RichText::new(lang.t("Stop", "Arrêter"))
                    .size(16.0)
                    .strong()
                    .color(Color32::WHITE),
            )
            .fill(Color32::from_rgb(0xb0, 0x20, 0x20)),
        );
        if stop.clicked() {
            self.finish(&ctx, IndicatorExit::Stopped);
        }
        if self.granted.control {
            let downgrade = ui.put(
                rect_of(INDICATOR_DOWNGRADE_BUTTON),
                egui::Button::new(
                    RichText::new(lang.t("Switch to view only", "Passer en affichage seul"))
                        .size(13.0),
                ),
            );
            if downgrade.clicked() {
                // Shown at once; the session side confirms with `Granted`.
                self.granted.control = false;
                self.send(IndicatorCommand::DowngradeToViewOnly);
            }
        }

        let [width, _] = INDICATOR_WINDOW_SIZE;
        let chat_rect = egui::Rect::from_min_max(
            egui::pos2(12.0, CHAT_TOP),
            egui::pos2(width - 12.0, CHAT_BOTTOM),
        );
        let mut send = false;
        ui.scope_builder(egui::UiBuilder::new().max_rect(chat_rect), |ui| {
            if let (true, Some(help)) = (self.show_help, help_for_this_os(lang)) {
                ui.label(
                    RichText::new(
                        lang.t("What stays out of reach", "Ce qui reste hors d'atteinte"),
                    )
                    .strong(),
                );
                egui::ScrollArea::vertical()
                    .max_height(chat_rect.height() - 24.0)
                    .auto_shrink([false, false])
                    .show(ui, |ui| ui.label(RichText::new(help).size(12.0)));
                return;
            }
            ui.label(
                RichText::new(lang.t("Chat with the technician", "Discuter avec le technicien"))
                    .strong(),
            );
            egui::ScrollArea::vertical()
                .max_height(chat_rect.height() - 64.0)
                .stick_to_bottom(true)
                .auto_shrink([false, false])
                .show(ui, |ui| {
                    for (mine, text) in &self.chat {
                        let (who, colour) = if *mine {
                            (lang.t("You", "Vous"), Color32::LIGHT_BLUE)
                        } else {
                            (self.info.technician.as_str(), Color32::LIGHT_GREEN)
                        };
                        ui.label(
                            RichText::new(format!("{who}{} {text}", colon(lang))).color(colour),
                        );
                    }
                });
            ui.horizontal(|ui| {
                let edit = ui.add(
                    egui::TextEdit::singleline(&mut self.chat_input)
                        .hint_text(lang.t("Write a message", "Écrire un message"))
                        .desired_width(chat_rect.width() - 70.0),
                );
                if edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                    send = true;
                    edit.request_focus();
                }
                if ui.button(lang.t("Send", "Envoyer")).clicked() {
                    send = true;
                }
            });
        });
        let ask = ui.put(
            rect_of(INDICATOR_ASK_HELP_BUTTON),
            egui::Button::new(
                RichText::new(lang.t("Ask IT for help…", "Demander de l'aide…")).size(13.0),
            ),
        );
        if ask.clicked() {
            self.send(IndicatorCommand::AskForHelp);
        }
        if let Some(help) = help_for_this_os(lang) {
            let button = ui
                .put(rect_of(INDICATOR_HELP_BUTTON), egui::Button::new("?"))
                .on_hover_text(help);
            if button.clicked() {
                self.show_help = !self.show_help;
            }
        }
        if send {
            let text = self.chat_input.trim().to_owned();
            if !text.is_empty() {
                self.send(IndicatorCommand::Chat(text.clone()));
                self.chat.push((true, text));
            }
            self.chat_input.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_names_the_technician_and_what_they_can_do() {
        let info = IndicatorInfo {
            technician: "Alice".into(),
            organisation: "ACME IT".into(),
            granted: Capabilities::CONTROL,
            verification_code: "123 456".into(),
        };
        assert_eq!(
            indicator_text(&info, Capabilities::VIEW, UiLang::En),
            "Alice (ACME IT) sees your screen."
        );
        assert!(indicator_text(&info, Capabilities::CONTROL, UiLang::En)
            .ends_with("uses your mouse and keyboard."));
        assert_eq!(
            indicator_text(&info, Capabilities::VIEW, UiLang::Fr),
            "Alice (ACME IT) voit votre écran."
        );
    }

    #[test]
    fn the_indicator_is_compact_and_its_controls_fit() {
        let [width, height] = INDICATOR_WINDOW_SIZE;
        // At most a sixth of a 1366 × 768 laptop screen (it was a quarter).
        assert!(width * height <= 1366.0 * 768.0 / 6.0, "{width} × {height}");
        for control in [
            INDICATOR_STOP_BUTTON,
            INDICATOR_DOWNGRADE_BUTTON,
            INDICATOR_CHAT_INPUT,
            INDICATOR_HELP_BUTTON,
            INDICATOR_ASK_HELP_BUTTON,
        ] {
            assert!(control[0] + control[2] <= width && control[1] + control[3] <= height);
        }
        let ask = rect_of(INDICATOR_ASK_HELP_BUTTON);
        assert!(ask.min.y >= CHAT_BOTTOM, "below the chat");
        for other in [
            INDICATOR_STOP_BUTTON,
            INDICATOR_DOWNGRADE_BUTTON,
            INDICATOR_CHAT_INPUT,
            INDICATOR_HELP_BUTTON,
        ] {
            assert!(!ask.intersects(rect_of(other)), "{other:?}");
        }
        assert!(rect_of(INDICATOR_CHAT_INPUT).max.y <= CHAT_BOTTOM + 2.0);
        let help = rect_of(INDICATOR_HELP_BUTTON);
        for other in [
            INDICATOR_STOP_BUTTON,
            INDICATOR_DOWNGRADE_BUTTON,
            INDICATOR_CHAT_INPUT,
            DRAG_AREA,
        ] {
            assert!(!help.intersects(rect_of(other)), "{other:?}");
        }
        assert!(!rect_of(INDICATOR_STOP_BUTTON).intersects(rect_of(DRAG_AREA)));
        assert!(rect_of(INDICATOR_CHAT_INPUT).min.y >= CHAT_TOP);
    }

    #[test]
    fn only_windows_has_the_help_about_elevated_windows_and_uac() {
        assert_eq!(
            help_for_this_os(UiLang::En).is_some(),
            cfg!(windows),
            "the help button is for Windows"
        );
    }

    #[test]
    fn remote_events_reach_the_inbox() {
        let (io, remote, _commands) = indicator_channel();
        remote.send(IndicatorEvent::Ended {
            by: EndedBy::Technician,
        });
        let inbox = io.inbox.lock().expect("not poisoned");
        assert_eq!(inbox.events.len(), 1);
    }
}
