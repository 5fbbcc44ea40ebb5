//! The employee's consent dialog and session indicator (eframe/egui).
//!
//! Two windows, each blocking the thread that opens it:
//!
//! - [`ask_consent`]: "Alice from ACME IT wants to see your screen" with the
//!   verification code, **Accept** / **Refuse** and a countdown. No answer in
//!   time is [`ConsentAnswer::TimedOut`]; closing the window is
//!   [`ConsentAnswer::Refused`]. Any error must be treated as a refusal.
//! - [`run_indicator`]: the always-visible "Alice can see your screen" window
//!   with **Stop**, "Switch to view only" and the chat, for the whole session.
//!
//! And, apart from sessions, [`help_form`]: the employee's "Ask IT for
//! help" form, run by `deskside-agent help --window`.
//!
//! This crate does no networking: the indicator talks to the session through
//! the channels made by [`indicator_channel`]. It can also run each window in
//! a child process ([`subprocess`]), which is the recommended way for the
//! agent's session helper: a dialog process that is killed or crashes then
//! counts as a refusal (or a Stop), never as consent.
//!
//! Threads: a window may be opened from any thread on Linux and Windows (the
//! event loop is built with `with_any_thread`), but winit allows only one
//! event loop per process, so all windows of one process must be opened from
//! the same thread. Separate processes ([`subprocess`]) have no such limit.
//!
//! Layout: both windows have a fixed size and fixed button positions (the
//! `*_BUTTON` constants, `[x, y, width, height]` in window points; one point
//! is one pixel at scale factor 1, e.g. under Xvfb with
//! `WINIT_X11_SCALE_FACTOR=1`, or on Windows at 96 DPI, Wine's default), so
//! tests and accessibility tools can click them. At another scale factor
//! the window and its buttons grow together (Windows at 144 DPI: 1.5, tested
//! under Wine).
//!
//! Windows: the same windows, drawn with OpenGL through WGL (under Wine on
//! Xvfb, Mesa's llvmpipe behind GLX). The indicator's "?" button
//! ([`INDICATOR_HELP_BUTTON`], Windows only) says what a helper running as
//! the user cannot reach there: windows running as administrator and UAC
//! prompts ([`words::windows_limits`]).

mod consent;
pub mod help_form;
mod indicator;
pub mod subprocess;
#[cfg(windows)]
mod windows_lang;
pub mod words;

use std::time::Duration;

use deskside_protocol::session::{Capabilities, EndedBy};
use eframe::egui;
use serde::{Deserialize, Serialize};

pub use consent::{
    ask_consent, ask_consent_withdrawable, consent_text, consent_text_in, ConsentText, Withdrawal,
    ACCEPT_ARMING_DELAY, CONSENT_ACCEPT_BUTTON, CONSENT_REFUSE_BUTTON, CONSENT_TITLE,
    CONSENT_WINDOW_SIZE, WITHDRAWN_NOTICE, WITHDRAWN_TITLE,
};
pub use help_form::{
    HelpFormAnswers, HelpFormOutcome, HelpFormOutcomeKind, HelpFormReply, HELP_FORM_TITLE,
};
pub use indicator::{
    indicator_channel, run_indicator, IndicatorIo, IndicatorRemote, INDICATOR_ASK_HELP_BUTTON,
    INDICATOR_CHAT_INPUT, INDICATOR_DOWNGRADE_BUTTON, INDICATOR_HELP_BUTTON, INDICATOR_STOP_BUTTON,
    INDICATOR_TITLE, INDICATOR_WINDOW_SIZE,
};

/// How long the employee has to answer when the request does not say.
pub const DEFAULT_CONSENT_TIMEOUT: Duration = Duration::from_secs(60);

/// A technician's request, as the employee sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRequest {
    /// The technician's display name.
    pub technician: String,
    /// The organisation the technician works for.
    pub organisation: String,
    /// What is asked: view, or view and control.
    pub capabilities: Capabilities,
    /// Why, in the technician's words (may be empty).
    pub reason: String,
    /// The code the technician also sees; the employee compares them.
    pub verification_code: String,
    /// How long to wait before refusing by default
    /// ([`DEFAULT_CONSENT_TIMEOUT`] when `None`).
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// How long after the dialog is first drawn Accept starts to work
    /// ([`ACCEPT_ARMING_DELAY`] when `None`).
    #[serde(default)]
    pub accept_after: Option<Duration>,
}

/// The employee's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentAnswer {
    /// The employee pressed Accept.
    Accepted,
    /// The employee pressed Refuse or closed the window.
    Refused,
    /// No answer before the timeout: refused by default.
    TimedOut,
    /// The technician withdrew the request before the employee answered;
    /// the dialog said so and offered nothing to accept.
    Withdrawn,
}

impl ConsentAnswer {
    /// Whether the session may start.
    pub fn is_accepted(self) -> bool {
        self == ConsentAnswer::Accepted
    }
}

/// What the indicator shows about the running session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndicatorInfo {
    /// The technician's display name.
    pub technician: String,
    /// The organisation the technician works for.
    pub organisation: String,
    /// What the employee granted.
    pub granted: Capabilities,
    /// The verification code of the session, shown small for reference.
    pub verification_code: String,
}

/// Something the session tells the indicator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndicatorEvent {
    /// What is granted changed (e.g. the technician gave up control).
    Granted(Capabilities),
    /// A chat line from the technician.
    Chat {
        /// The text.
        text: String,
    },
    /// The session ended; the indicator closes.
    Ended {
        /// Who ended it.
        by: EndedBy,
    },
}

/// Something the employee asks from the indicator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndicatorCommand {
    /// End the session now (Stop button, or the indicator window closed).
    Stop,
    /// Keep the session but take control back: view only from now on.
    DowngradeToViewOnly,
    /// A chat line from the employee.
    Chat(String),
    /// Open the "Ask IT for help" window (the button beside Stop); the
    /// session goes on.
    AskForHelp,
}

/// How the indicator ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndicatorExit {
    /// The employee pressed Stop or closed the window ([`IndicatorCommand::Stop`] was sent).
    Stopped,
    /// The session side reported the end.
    Ended(EndedBy),
}

/// A window could not be shown, or a window process gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// The window or its OpenGL context could not be created.
    #[error(
        "could not open the {window} window: {reason}; check that a graphical session is \
         available (DISPLAY set, X server running) and that OpenGL works (Mesa: libgl1-mesa-dri)"
    )]
    Window {
        /// Which window.
        window: &'static str,
        /// eframe's error.
        reason: String,
    },
    /// The window process could not be started or talked to.
    #[error("could not run the {window} window process: {source}; check that the program exists and is executable")]
    Spawn {
        /// Which window.
        window: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The window process ended without a valid answer (killed, crashed, or
    /// it could not open its window; its stderr says why).
    #[error(
        "the {window} window process ended without an answer ({detail}); treat this as a refusal"
    )]
    NoAnswer {
        /// Which window.
        window: &'static str,
        /// Exit status or parse error.
        detail: String,
    },
}

/// Native options shared by the windows: glow, fixed size, on top, any thread
/// where winit allows it.
pub(crate) fn native_options(
    viewport: egui::ViewportBuilder,
    centered: bool,
) -> eframe::NativeOptions {
    eframe::NativeOptions {
        viewport,
        renderer: eframe::Renderer::Glow,
        centered,
        event_loop_builder: Some(Box::new(|builder| {
            #[cfg(all(unix, not(target_os = "macos"), not(target_os = "android")))]
            {
                use winit::platform::x11::EventLoopBuilderExtX11;
                builder.with_any_thread(true);
            }
            #[cfg(target_os = "windows")]
            {
                use winit::platform::windows::EventLoopBuilderExtWindows;
                builder.with_any_thread(true);
            }
            let _ = builder;
        })),
        ..Default::default()
    }
}

/// `[x, y, w, h]` → egui rectangle.
pub(crate) fn rect_of(xywh: [f32; 4]) -> egui::Rect {
    egui::Rect::from_min_size(egui::pos2(xywh[0], xywh[1]), egui::vec2(xywh[2], xywh[3]))
}
