//! The viewer window itself: toolbar, picture, stats overlay, chat.
//!
//! Reads what the network side left in the shared state once per window
//! frame and sends commands and input on the channels; it never waits on
//! the network.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deskside_protocol::session::{Capabilities, EndedBy, InputEvent, Monitor, Quality};
use eframe::egui::{self, Color32, Pos2, Rect, RichText};
use tracing::{debug, warn};

use crate::input::{is_keyboard_event, Fit, InputTranslator};
use crate::io::{ViewerCommand, ViewerEvent, ViewerIo, ViewerStats};
use crate::pointer::{shape_rect, PointerAt};
use crate::{ViewerError, ViewerExit, ViewerOptions, TOOLBAR_HEIGHT};

/// Width of the chat panel when opened, in points.
const CHAT_WIDTH: f32 = 280.0;

pub(crate) fn run(opts: ViewerOptions, io: ViewerIo) -> Result<ViewerExit, ViewerError> {
    let exit: Arc<Mutex<Option<ViewerExit>>> = Arc::new(Mutex::new(None));
    let commands = io.commands.clone();
    let ctx = io.shared.ctx.clone();
    let title = opts.title();
    let [width, height] = opts.initial_size;
    let viewport = egui::ViewportBuilder::default()
        .with_title(title.clone())
        .with_app_id("deskside-viewer")
        .with_inner_size([width.max(320.0), height.max(200.0) + TOOLBAR_HEIGHT])
        .with_min_inner_size([320.0, TOOLBAR_HEIGHT + 100.0]);
    let native_options = native_options(viewport);
    let app_exit = exit.clone();
    let result = eframe::run_native_ext(
        &title,
        native_options,
        Some(ctx),
        Box::new(move |cc| {
            cc.egui_ctx.options_mut(|o| o.zoom_with_keyboard = false);
            Ok(Box::new(ViewerApp::new(opts, io, app_exit)))
        }),
    );
    let recorded = *exit.lock().unwrap_or_else(|p| p.into_inner());
    let exit = match recorded {
        Some(exit) => exit,
        None => {
            // The window went away without the app seeing it close (error,
            // or the event loop ended): the session must not outlive it.
            let _ = commands.send(ViewerCommand::End);
            ViewerExit {
                ended_by: EndedBy::Technician,
                end_sent: true,
            }
        }
    };
    match result {
        Ok(()) => Ok(exit),
        Err(error) => Err(ViewerError::Window(error.to_string())),
    }
}

/// Native options shared by the viewer's window: glow, no dithering (the
/// picture must keep its exact colours), any thread where winit allows it.
fn native_options(viewport: egui::ViewportBuilder) -> eframe::NativeOptions {
    eframe::NativeOptions {
        viewport,
        renderer: eframe::Renderer::Glow,
        dithering: false,
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

#[derive(Debug)]
struct ChatLine {
    from_technician: bool,
    notice: bool,
    text: String,
}

struct ViewerApp {
    opts: ViewerOptions,
    io: ViewerIo,
    exit: Arc<Mutex<Option<ViewerExit>>>,

    texture: Option<egui::TextureHandle>,
    frame_generation: u64,
    frame_size: Option<(u32, u32)>,
    cursor: Option<(i32, i32)>,
    /// The pointer's shape as a texture, with its size and hot spot
    /// (`None`: a plain marker), and the shape generation it shows.
    cursor_texture: Option<(egui::TextureHandle, [u16; 2], [u16; 2])>,
    cursor_shape_generation: u64,
    stats: ViewerStats,
    show_stats: bool,

    granted: Capabilities,
    /// The technician paused control locally (reversible).
    view_only: bool,
    /// The technician gave control back (not reversible in this session).
    control_dropped: bool,
    monitors: Vec<Monitor>,
    selected_monitor: u8,
    quality: Quality,

    chat: Vec<ChatLine>,
    chat_input: String,
    chat_open: bool,
    unread: usize,
    chat_edit_id: egui::Id,

    capture_unavailable: Option<String>,
    ended: Option<(EndedBy, Instant)>,
    end_sent: bool,

    translator: InputTranslator,
    last_fit: Option<Fit>,
    /// Whether typing goes to the remote desktop (false while the chat box
    /// has the keyboard).
    remote_keyboard: bool,
    outgoing: Vec<InputEvent>,
}

impl std::fmt::Debug for ViewerApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewerApp")
            .field("device", &self.opts.device_name)
            .finish_non_exhaustive()
    }
}

impl ViewerApp {
    fn new(opts: ViewerOptions, io: ViewerIo, exit: Arc<Mutex<Option<ViewerExit>>>) -> Self {
        let granted = opts.granted;
        Self {
            opts,
            io,
            exit,
            texture: None,
            frame_generation: 0,
            frame_size: None,
            cursor: None,
            cursor_texture: None,
            cursor_shape_generation: 0,
            stats: ViewerStats::default(),
            show_stats: true,
            granted,
            view_only: false,
            control_dropped: false,
            monitors: Vec::new(),
            selected_monitor: 0,
            quality: Quality::Auto,
            chat: Vec::new(),
            chat_input: String::new(),
            chat_open: false,
            unread: 0,
            chat_edit_id: egui::Id::unique("deskside-viewer-chat-input"),
            capture_unavailable: None,
            ended: None,
            end_sent: false,
            translator: InputTranslator::default(),
            last_fit: None,
            remote_keyboard: true,
            outgoing: Vec::new(),
        }
    }

    /// Whether input goes to the agent right now.
    fn control_active(&self) -> bool {
        self.granted.control && !self.view_only && !self.control_dropped && self.ended.is_none()
    }

    fn send_command(&self, command: ViewerCommand) {
        debug!(?command, "viewer command");
        if self.io.commands.send(command).is_err() {
            warn!("the session's network side is gone; the command was dropped");
        }
    }

    fn flush_input(&mut self) {
        for event in self.outgoing.drain(..) {
            if self.io.input.send(event).is_err() {
                warn!("the session's network side is gone; input was dropped");
                break;
            }
        }
    }

    fn end_by_technician(&mut self, ctx: &egui::Context) {
        if self.ended.is_none() && !self.end_sent {
            self.end_sent = true;
            self.send_command(ViewerCommand::End);
            self.record_exit(EndedBy::Technician);
        }
        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
    }

    fn record_exit(&self, ended_by: EndedBy) {
        let mut exit = self.exit.lock().unwrap_or_else(|p| p.into_inner());
        if exit.is_none() {
            *exit = Some(ViewerExit {
                ended_by,
                end_sent: self.end_sent,
            });
        }
    }

    /// Applies what the network side queued and uploads a new frame.
    fn pull_shared(&mut self, ctx: &egui::Context) {
        let (events, frame, cursor, shape, stats) = {
            let mut shared = self.io.shared.lock();
            let events: Vec<ViewerEvent> = shared.events.drain(..).collect();
            let frame = if shared.frame_generation != self.frame_generation {
                self.frame_generation = shared.frame_generation;
                shared.frame.clone()
            } else {
                None
            };
            let shape = if shared.cursor_shape_generation != self.cursor_shape_generation {
                self.cursor_shape_generation = shared.cursor_shape_generation;
                Some(shared.cursor_shape.clone())
            } else {
                None
            };
            (events, frame, shared.cursor, shape, shared.stats.clone())
        };
        self.cursor = cursor;
        if let Some(shape) = shape {
            // Once per change of shape (the agent sends each change once).
            self.cursor_texture = shape.map(|shape| {
                let size = [usize::from(shape.width), usize::from(shape.height)];
                let image = egui::ColorImage::from_rgba_unmultiplied(size, &shape.rgba);
                let texture = ctx.load_texture(
                    "deskside-remote-pointer",
                    image,
                    egui::TextureOptions::LINEAR,
                );
                (
                    texture,
                    [shape.width, shape.height],
                    [shape.hot_x, shape.hot_y],
                )
            });
        }
        self.stats = stats;
        for event in events {
            self.apply_event(event);
        }
        if let Some(frame) = frame {
            let size = [frame.width() as usize, frame.height() as usize];
            let image = egui::ColorImage::from_rgba_unmultiplied(size, frame.rgba());
            let options = egui::TextureOptions::LINEAR;
            match &mut self.texture {
                // Same size: update the texture in place.
                Some(texture) if texture.size() == size => {
                    texture.set_partial([0, 0], image, options)
                }
                Some(texture) => texture.set(image, options),
                None => {
                    self.texture = Some(ctx.load_texture("deskside-remote-screen", image, options))
                }
            }
            self.frame_size = Some((frame.width(), frame.height()));
        }
    }

    fn apply_event(&mut self, event: ViewerEvent) {
        match event {
            ViewerEvent::Granted(granted) => {
                if granted.control != self.granted.control {
                    let text = if granted.control {
                        "You may now control the mouse and keyboard."
                    } else {
                        "The employee switched the session to view only."
                    };
                    self.push_notice(text.to_owned());
                }
                self.granted = granted;
            }
            ViewerEvent::Monitors { monitors, selected } => {
                self.monitors = monitors;
                self.selected_monitor = selected;
            }
            ViewerEvent::Chat { text } => {
                self.chat.push(ChatLine {
                    from_technician: false,
                    notice: false,
                    text,
                });
                if !self.chat_open {
                    self.unread += 1;
                }
                self.chat_open = true;
            }
            ViewerEvent::Notice { text } => self.push_notice(text),
            ViewerEvent::CaptureUnavailable { reason } => {
                self.push_notice(reason.clone());
                self.capture_unavailable = Some(reason);
            }
            ViewerEvent::Ended { by } => {
                if self.ended.is_none() {
                    self.ended = Some((by, Instant::now()));
                    self.push_notice(ended_text(by).to_owned());
                    self.record_exit(by);
                }
            }
        }
    }

    fn push_notice(&mut self, text: String) {
        self.chat.push(ChatLine {
            from_technician: false,
            notice: true,
            text,
        });
    }

    fn toolbar(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        ui.horizontal(|ui| {
            ui.label(RichText::new(&self.opts.device_name).strong());
            if let Some(employee) = &self.opts.employee_name {
                ui.label(format!("· {employee}"));
            }
            ui.separator();
            ui.label("Verification code:");
            ui.label(
                RichText::new(&self.opts.verification_code)
                    .monospace()
                    .strong(),
            );
            ui.separator();
            let (state, colour) = if self.ended.is_some() {
                ("Session ended", Color32::GRAY)
            } else if self.control_active() {
                (
                    "You control the mouse and keyboard",
                    Color32::from_rgb(0xd0, 0x60, 0x30),
                )
            } else if self.granted.control && !self.control_dropped {
                ("Paused: view only", Color32::LIGHT_BLUE)
            } else {
                ("View only", Color32::LIGHT_BLUE)
            };
            ui.label(RichText::new(state).color(colour));
        });
        ui.horizontal(|ui| {
            // First, so it stays reachable however narrow the window is.
            if self.ended.is_none()
                && ui
                    .button(RichText::new("End session").color(Color32::from_rgb(0xe0, 0x40, 0x40)))
                    .clicked()
            {
                self.end_by_technician(&ctx);
            }
            if self.granted.control && !self.control_dropped {
                ui.checkbox(&mut self.view_only, "View only").on_hover_text(
                    "Stop sending your mouse and keyboard; untick to take control again.",
                );
                if ui
                    .button("Give up control")
                    .on_hover_text(
                        "Tell the employee you no longer need control (cannot be undone).",
                    )
                    .clicked()
                {
                    self.control_dropped = true;
                    self.send_command(ViewerCommand::DropControl);
                }
            }
            ui.checkbox(&mut self.show_stats, "Stats");
            let chat_label = if self.unread > 0 {
                format!("Chat ({})", self.unread)
            } else {
                "Chat".to_owned()
            };
            if ui.selectable_label(self.chat_open, chat_label).clicked() {
                self.chat_open = !self.chat_open;
            }
            if !self.monitors.is_empty() {
                let current = self
                    .monitors
                    .iter()
                    .find(|m| m.index == self.selected_monitor)
                    .map(monitor_label)
                    .unwrap_or_else(|| format!("Monitor {}", self.selected_monitor));
                let mut chosen = self.selected_monitor;
                egui::ComboBox::from_id_salt("monitor")
                    .selected_text(current)
                    .show_ui(ui, |ui| {
                        for monitor in &self.monitors {
                            ui.selectable_value(&mut chosen, monitor.index, monitor_label(monitor));
                        }
                    });
                if chosen != self.selected_monitor {
                    self.selected_monitor = chosen;
                    self.send_command(ViewerCommand::SelectMonitor(chosen));
                }
            }
            let mut quality = self.quality;
            egui::ComboBox::from_id_salt("quality")
                .selected_text(quality_label(quality))
                .show_ui(ui, |ui| {
                    for option in [Quality::Auto, Quality::Lossless, Quality::LowBandwidth] {
                        ui.selectable_value(&mut quality, option, quality_label(option));
                    }
                });
            if quality != self.quality {
                self.quality = quality;
                self.send_command(ViewerCommand::SetQuality(quality));
            }
        });
    }

    fn chat_panel(&mut self, ui: &mut egui::Ui) {
        self.unread = 0;
        ui.heading("Chat");
        let input_height = 64.0;
        egui::ScrollArea::vertical()
            .max_height((ui.available_height() - input_height).max(40.0))
            .stick_to_bottom(true)
            .auto_shrink([false, false])
            .show(ui, |ui| {
                for line in &self.chat {
                    let (who, colour) = if line.notice {
                        ("", Color32::GRAY)
                    } else if line.from_technician {
                        ("You: ", Color32::LIGHT_BLUE)
                    } else {
                        ("Employee: ", Color32::LIGHT_GREEN)
                    };
                    ui.label(RichText::new(format!("{who}{}", line.text)).color(colour));
                }
            });
        ui.separator();
        let mut send = false;
        ui.horizontal(|ui| {
            let edit = ui.add(
                egui::TextEdit::singleline(&mut self.chat_input)
                    .id(self.chat_edit_id)
                    .hint_text("Message to the employee")
                    .desired_width(CHAT_WIDTH - 70.0),
            );
            if edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                send = true;
                edit.request_focus();
            }
            if ui.button("Send").clicked() {
                send = true;
            }
        });
        if send && self.ended.is_none() {
            let text = self.chat_input.trim().to_owned();
            if !text.is_empty() {
                self.send_command(ViewerCommand::Chat(text.clone()));
                self.chat.push(ChatLine {
                    from_technician: true,
                    notice: false,
                    text,
                });
            }
            self.chat_input.clear();
        }
    }

    fn picture(&mut self, ui: &mut egui::Ui) {
        let available = ui.max_rect();
        let painter = ui.painter().clone();
        self.last_fit = None;
        if let (Some(texture), Some((width, height))) = (&self.texture, self.frame_size) {
            let fit = Fit::new(available, width, height);
            painter.image(
                texture.id(),
                fit.rect,
                Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0)),
                Color32::WHITE,
            );
            let local = ui.input(|i| i.pointer.hover_pos());
            let at = PointerAt::choose(&fit, self.cursor, local, self.control_active());
            match (at, &self.cursor_texture) {
                (Some(at), Some((texture, size, hot))) => {
                    if matches!(at, PointerAt::Local(_)) {
                        // The remote shape replaces the system pointer over
                        // the picture, drawn where the technician's pointer
                        // is now, not where the agent last saw it.
                        ui.ctx().set_cursor_icon(egui::CursorIcon::None);
                    }
                    painter.image(
                        texture.id(),
                        shape_rect(&fit, at.pos(), *size, *hot),
                        Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0)),
                        Color32::WHITE,
                    );
                }
                // No shape known: the system pointer stays the technician's
                // own, and a marker shows where the agent's is.
                (Some(PointerAt::Remote(at)), None) => {
                    painter.circle(
                        at,
                        5.0,
                        Color32::from_white_alpha(60),
                        (1.5, Color32::BLACK),
                    );
                    painter.circle_stroke(at, 6.5, (1.0, Color32::WHITE));
                }
                (Some(PointerAt::Local(_)), None) | (None, _) => {}
            }
            self.last_fit = Some(fit);
        } else {
            let text = match &self.capture_unavailable {
                Some(reason) => format!("No picture: {reason}"),
                None => "Waiting for the first picture…".to_owned(),
            };
            painter.text(
                available.center(),
                egui::Align2::CENTER_CENTER,
                text,
                egui::FontId::proportional(18.0),
                Color32::LIGHT_GRAY,
            );
        }
        if self.show_stats {
            let rtt = self
                .stats
                .rtt_ms
                .map_or_else(|| "RTT –".to_owned(), |ms| format!("RTT {ms:.0} ms"));
            let codec = if self.stats.codec.is_empty() {
                "–"
            } else {
                &self.stats.codec
            };
            let text = format!(
                "{:.0} fps · {:.0} kbit/s · {rtt} · {codec}",
                self.stats.fps, self.stats.kbit_per_s
            );
            let galley =
                painter.layout_no_wrap(text, egui::FontId::monospace(12.0), Color32::WHITE);
            let pos = Pos2::new(
                available.right() - galley.size().x - 12.0,
                available.top() + 6.0,
            );
            let background = Rect::from_min_size(pos, galley.size()).expand(4.0);
            painter.rect_filled(background, 4.0, Color32::from_black_alpha(160));
            painter.galley(pos, galley, Color32::WHITE);
        }
        if let Some((by, _)) = self.ended {
            let text = format!("{} This window closes by itself.", ended_text(by));
            let galley = painter.layout(
                text,
                egui::FontId::proportional(20.0),
                Color32::WHITE,
                available.width() - 40.0,
            );
            let rect = Rect::from_center_size(available.center(), galley.size()).expand(16.0);
            painter.rect_filled(rect, 8.0, Color32::from_black_alpha(200));
            painter.galley(rect.min + egui::vec2(16.0, 16.0), galley, Color32::WHITE);
        }
    }
}

impl eframe::App for ViewerApp {
    fn raw_input_hook(&mut self, ctx: &egui::Context, raw_input: &mut egui::RawInput) {
        if self.control_active() {
            let fit = self.last_fit;
            let pointer_allowed = |pos: Pos2| {
                ctx.layer_id_at(pos)
                    .is_none_or(|layer| layer.order == egui::Order::Background)
            };
            self.translator.translate(
                &raw_input.events,
                fit.as_ref(),
                &pointer_allowed,
                self.remote_keyboard,
                &mut self.outgoing,
            );
            if self.remote_keyboard {
                // The remote desktop has the keyboard: egui must not also act
                // on it (Tab moving focus, Space pressing a toolbar button).
                raw_input.events.retain(|event| !is_keyboard_event(event));
            }
        } else {
            self.translator.release_all(&mut self.outgoing);
        }
        if raw_input
            .events
            .iter()
            .any(|event| matches!(event, egui::Event::WindowFocused(false)))
        {
            self.translator.release_all(&mut self.outgoing);
        }
        self.flush_input();
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        self.pull_shared(&ctx);

        if ctx.input(|i| i.viewport().close_requested()) {
            self.end_by_technician(&ctx);
        }
        if let Some((_, at)) = self.ended {
            let elapsed = at.elapsed();
            if elapsed >= self.opts.close_after_end {
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            } else {
                ctx.request_repaint_after(
                    self.opts.close_after_end - elapsed + Duration::from_millis(10),
                );
            }
        }

        egui::Panel::top("toolbar")
            .exact_size(TOOLBAR_HEIGHT)
            .resizable(false)
            .show(ui, |ui| self.toolbar(ui));
        if self.chat_open {
            egui::Panel::right("chat")
                .default_size(CHAT_WIDTH)
                .resizable(true)
                .show(ui, |ui| self.chat_panel(ui));
        }
        egui::CentralPanel::default()
            .frame(egui::Frame::NONE.fill(Color32::BLACK))
            .show(ui, |ui| self.picture(ui));

        self.remote_keyboard = !ctx.memory(|m| m.has_focus(self.chat_edit_id));
    }

    fn clear_color(&self, _visuals: &egui::Visuals) -> [f32; 4] {
        [0.0, 0.0, 0.0, 1.0]
    }
}

fn monitor_label(monitor: &Monitor) -> String {
    let primary = if monitor.primary { ", main" } else { "" };
    format!(
        "{} ({}×{}{primary})",
        monitor.name, monitor.width, monitor.height
    )
}

fn quality_label(quality: Quality) -> &'static str {
    match quality {
        Quality::Auto => "Quality: automatic",
        Quality::Lossless => "Quality: sharp text",
        Quality::LowBandwidth => "Quality: slow link",
    }
}

fn ended_text(by: EndedBy) -> &'static str {
    match by {
        EndedBy::Technician => "You ended the session.",
        EndedBy::Employee => "The employee ended the session.",
        EndedBy::Expired => "The session's time ran out.",
        EndedBy::ConnectionLost => "The connection to the device was lost.",
        EndedBy::HelperGone => "The employee logged out or the session helper stopped.",
    }
}
