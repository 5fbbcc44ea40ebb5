//! `deskside-agent session-helper`: runs inside the employee's graphical
//! session. It connects to the agent service's channel (a Unix socket or
//! the Windows named pipe, see [`super::channel`]), shows the consent
//! dialog and the session indicator (each in a child process, so a crashed
//! or killed window counts as a refusal or a Stop), and — only after the
//! service says the consent is audited — captures the screen and injects
//! the technician's input.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use deskside_codec::adapt::{choose, BandwidthEstimator, PathEstimate, FULL_FPS};
use deskside_codec::frame::BgraFrame;
use deskside_codec::pointer::ShapeSender;
use deskside_codec::{Encoder, EncoderConfig};
use deskside_desktop::map_event;
use deskside_protocol::helper::{ConsentAnswer, ConsentPrompt, HelperToService, ServiceToHelper};
use deskside_protocol::message::Nested;
use deskside_protocol::session::{
    AgentToConsole, Capabilities, ConsoleToAgent, Cursor, EndedBy, InputEvent, Monitor, Quality,
};
use deskside_protocol::SessionId;
use deskside_session_ui::subprocess::ConsentWithdrawer;
use deskside_session_ui::{
    ConsentAnswer as UiAnswer, ConsentRequest, IndicatorCommand, IndicatorEvent, IndicatorInfo,
};
use tokio::sync::mpsc;

use super::channel::{self, Halves};
use super::desktop::{self, Use};
use super::pace::{Next, Pacer};
use super::wire::{write_message, MessageReader};

/// Smallest frame whose delivery time is used as a bandwidth sample.
const MIN_RATE_SAMPLE: usize = 64 * 1024;

/// How long to wait before reconnecting to a service that is not there.
const RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// Runs the helper until the process is stopped, reconnecting to the
/// service whenever it restarts. `addresses` are tried in turn (see
/// [`channel::helper_addresses`]).
///
/// On Windows one helper runs per session and set of addresses: the
/// service starts one at logon and the Run entry another; the second exits
/// at once (status 0) instead of being refused by the service every 2 s.
pub async fn run(addresses: &[PathBuf]) -> ! {
    #[cfg(windows)]
    let _instance = match super::win32::claim_single_instance(&instance_name(addresses)) {
        Ok(Some(claim)) => Some(claim),
        Ok(None) => {
            tracing::info!("another deskside session helper already runs in this session; exiting");
            std::process::exit(0);
        }
        Err(e) => {
            tracing::warn!("cannot tell whether another session helper runs here: {e}");
            None
        }
    };
    let display = desktop::detect_screen();
    if let Err(reason) = &display {
        tracing::warn!("remote view will not be possible here: {reason}");
    }
    let mut warned = false;
    loop {
        let mut failures = Vec::new();
        for address in addresses {
            match channel::connect(address).await {
                Ok(halves) => {
                    warned = false;
                    tracing::info!(socket = %address.display(), "connected to the agent service");
                    if let Err(reason) = serve(halves, display.clone(), address).await {
                        tracing::warn!("agent service connection ended: {reason}");
                    }
                    failures.clear();
                    break;
                }
                Err(e) => failures.push(format!("{} ({e})", address.display())),
            }
        }
        if !failures.is_empty() && !warned {
            warned = true;
            tracing::info!(
                "the agent service is not reachable at {}; retrying every {} s",
                failures.join(", "),
                RECONNECT_DELAY.as_secs()
            );
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

/// The per-session mutex naming the helpers of one set of addresses.
#[cfg(windows)]
fn instance_name(addresses: &[PathBuf]) -> String {
    let joined: Vec<String> = addresses
        .iter()
        .map(|a| a.to_string_lossy().to_lowercase())
        .collect();
    let digest = ring::digest::digest(&ring::digest::SHA256, joined.join("|").as_bytes());
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("Local\\deskside-session-helper-{hex}")
}

async fn serve(
    halves: Halves,
    display: Result<String, String>,
    address: &std::path::Path,
) -> Result<(), String> {
    let Halves { read, mut write } = halves;
    let mut reader = MessageReader::new(read);
    write_message(
        &mut write,
        &HelperToService::Hello {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            display: display.clone(),
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    match reader.next::<ServiceToHelper>().await {
        Ok(Some(ServiceToHelper::Welcome)) => {}
        Ok(_) => return Err("the service refused this helper (another one may be connected, or this user has no active graphical session)".to_owned()),
        Err(e) => return Err(e.to_string()),
    }
    let (out_tx, mut out_rx) = mpsc::channel::<HelperToService>(8);
    let writer = tokio::spawn(async move {
        while let Some(message) = out_rx.recv().await {
            if write_message(&mut write, &message).await.is_err() {
                break;
            }
        }
    });
    // The service learns the monitors now, so that a session asked for a
    // monitor this display does not have is refused before the dialog.
    let listed = display.clone();
    let monitors = tokio::task::spawn_blocking(move || list_monitors(&listed))
        .await
        .unwrap_or_default();
    tracing::info!(count = monitors.len(), "monitors reported to the service");
    let _ = out_tx.send(HelperToService::Monitors { monitors }).await;
    let mut active: Option<Active> = None;
    let mut prompts: std::collections::HashMap<SessionId, ConsentPrompt> = Default::default();
    // Open consent dialogs, to tell them when a request is withdrawn.
    let dialogs = ConsentDialogs::default();
    let (indicator_tx, mut indicator_rx) =
        mpsc::unbounded_channel::<(SessionId, IndicatorCommand)>();
    let result = loop {
        tokio::select! {
            message = reader.next::<ServiceToHelper>() => {
                let message = match message {
                    Ok(Some(message)) => message,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e.to_string()),
                };
                match message {
                    ServiceToHelper::Consent(prompt) => {
                        prompts.insert(prompt.session_id, prompt.clone());
                        let out = out_tx.clone();
                        let dialogs = dialogs.clone();
                        tokio::spawn(async move {
                            let session_id = prompt.session_id;
                            let asked = dialogs.clone();
                            let answer = tokio::task::spawn_blocking(move || ask(&prompt, &asked))
                                .await
                                .unwrap_or(Some(ConsentAnswer::Failed));
                            dialogs.forget(session_id);
                            let Some(answer) = answer else {
                                // Withdrawn: the service is no longer asking.
                                tracing::info!(session = %session_id, "the consent dialog closed on the withdrawal");
                                return;
                            };
                            tracing::info!(session = %session_id, answer = answer.as_str(), "consent answered");
                            let _ = out.send(HelperToService::Consent { session_id, answer }).await;
                        });
                    }
                    ServiceToHelper::Start { session_id, granted, expires_in_secs } => {
                        if let Some(old) = active.take() {
                            old.stop(EndedBy::Technician);
                        }
                        let prompt = prompts.remove(&session_id);
                        active = Some(Active::start(
                            session_id,
                            granted,
                            expires_in_secs,
                            display.clone(),
                            prompt,
                            out_tx.clone(),
                            indicator_tx.clone(),
                        ).await);
                    }
                    ServiceToHelper::FrameCredit { session_id, rtt_ms } => {
                        if let Some(a) = active.as_ref().filter(|a| a.id == session_id) {
                            let _ = a.capture.send(CaptureCommand::Credit { rtt_ms });
                        }
                    }
                    ServiceToHelper::FromConsole { session_id, message: Nested(message) } => {
                        if let Some(a) = active.as_mut().filter(|a| a.id == session_id) {
                            a.handle_console(message);
                        }
                    }
                    ServiceToHelper::Input { session_id, event: Nested(event) } => {
                        if let Some(a) = active.as_ref().filter(|a| a.id == session_id) {
                            a.input(event);
                        }
                    }
                    ServiceToHelper::End { session_id, by } => {
                        prompts.remove(&session_id);
                        if let Some(a) = active.take_if(|a| a.id == session_id) {
                            a.stop(by);
                        }
                    }
                    ServiceToHelper::Withdrawn { session_id } => {
                        prompts.remove(&session_id);
                        tracing::info!(session = %session_id, "the technician withdrew the request");
                        dialogs.withdraw(session_id);
                    }
                    ServiceToHelper::HelpRequestUpdate(update) => {
                        super::help_channel::show_update(update);
                    }
                    // Answers to `help` and `requests` on their own
                    // connections; never sent to the session helper.
                    ServiceToHelper::Welcome
                    | ServiceToHelper::HelpRequestFiled { .. }
                    | ServiceToHelper::HelpRequestList(_) => {}
                    ServiceToHelper::Unknown { tag } => {
                        tracing::debug!(tag, "ignoring a message from a newer service");
                    }
                }
            }
            Some((session_id, command)) = indicator_rx.recv() => {
                if let Some(a) = active.as_mut().filter(|a| a.id == session_id) {
                    match command {
                        IndicatorCommand::Stop => {
                            tracing::info!(session = %session_id, "the employee stopped the session");
                            let _ = out_tx.send(HelperToService::ToConsole {
                                session_id,
                                message: Nested(AgentToConsole::Ended { by: EndedBy::Employee }),
                            }).await;
                            if let Some(a) = active.take() {
                                a.stop(EndedBy::Employee);
                            }
                        }
                        IndicatorCommand::DowngradeToViewOnly => {
                            a.drop_control();
                            let _ = out_tx.send(HelperToService::ToConsole {
                                session_id,
                                message: Nested(AgentToConsole::Granted(Capabilities::VIEW)),
                            }).await;
                        }
                        IndicatorCommand::AskForHelp => {
                            super::help_channel::open_help_window(address);
                        }
                        IndicatorCommand::Chat(text) => {
                            let _ = out_tx.send(HelperToService::ToConsole {
                                session_id,
                                message: Nested(AgentToConsole::Chat { text }),
                            }).await;
                        }
                    }
                }
            }
        }
    };
    // The service is gone: nothing may go on without it.
    if let Some(a) = active.take() {
        a.stop(EndedBy::ConnectionLost);
    }
    writer.abort();
    result
}

/// The display's monitors (none when capture is impossible here).
fn list_monitors(display: &Result<String, String>) -> Vec<Monitor> {
    let Ok(screen) = display else {
        return Vec::new();
    };
    let listed = desktop::open_capturer(screen, Use::Monitors)
        .and_then(|mut c| c.monitors().map_err(|e| e.to_string()));
    match listed {
        Ok(monitors) => monitors,
        Err(e) => {
            tracing::warn!(%screen, "cannot list the monitors: {e}");
            Vec::new()
        }
    }
}

/// The consent dialogs on screen, by session, and the sessions withdrawn
/// before their dialog started.
#[derive(Clone, Debug, Default)]
struct ConsentDialogs {
    inner: std::sync::Arc<std::sync::Mutex<DialogsInner>>,
}

#[derive(Debug, Default)]
struct DialogsInner {
    open: std::collections::HashMap<SessionId, ConsentWithdrawer>,
    withdrawn: std::collections::HashSet<SessionId>,
}

impl ConsentDialogs {
    fn lock(&self) -> std::sync::MutexGuard<'_, DialogsInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The dialog of `session_id` runs; withdraws it at once if the
    /// withdrawal came first.
    fn started(&self, session_id: SessionId, withdrawer: ConsentWithdrawer) {
        let mut inner = self.lock();
        if inner.withdrawn.remove(&session_id) {
            withdraw_dialog(&withdrawer);
        }
        inner.open.insert(session_id, withdrawer);
    }

    fn withdraw(&self, session_id: SessionId) {
        let mut inner = self.lock();
        match inner.open.get(&session_id) {
            Some(withdrawer) => withdraw_dialog(withdrawer),
            None => {
                inner.withdrawn.insert(session_id);
            }
        }
    }

    fn forget(&self, session_id: SessionId) {
        let mut inner = self.lock();
        inner.open.remove(&session_id);
        inner.withdrawn.remove(&session_id);
    }

    fn is_withdrawn(&self, session_id: SessionId) -> bool {
        self.lock().withdrawn.contains(&session_id)
    }
}

fn withdraw_dialog(withdrawer: &ConsentWithdrawer) {
    if let Err(e) = withdrawer.withdraw() {
        tracing::debug!("the consent dialog had closed already: {e}");
    }
}

/// Runs the consent dialog in a child process; a crash counts as refused.
/// `None` when the request was withdrawn while it was open.
fn ask(prompt: &ConsentPrompt, dialogs: &ConsentDialogs) -> Option<ConsentAnswer> {
    let session_id = prompt.session_id;
    if dialogs.is_withdrawn(session_id) {
        return None;
    }
    let Ok(exe) = std::env::current_exe() else {
        return Some(ConsentAnswer::Failed);
    };
    let mut command = Command::new(exe);
    command.arg("consent-dialog");
    let request = ConsentRequest {
        technician: prompt.technician.clone(),
        organisation: prompt.organisation.clone(),
        capabilities: prompt.capabilities,
        reason: prompt.reason.clone(),
        verification_code: prompt.verification_code.clone(),
        timeout: Some(Duration::from_secs(prompt.timeout_secs)),
        accept_after: None,
    };
    let answer = deskside_session_ui::subprocess::ask_consent_in_subprocess_withdrawable(
        command,
        &request,
        |withdrawer| dialogs.started(session_id, withdrawer),
    );
    Some(match answer {
        Ok(UiAnswer::Withdrawn) => return None,
        Ok(UiAnswer::Accepted) => ConsentAnswer::Accepted,
        Ok(UiAnswer::Refused) => ConsentAnswer::Refused,
        Ok(UiAnswer::TimedOut) => ConsentAnswer::TimedOut,
        Err(e) => {
            tracing::warn!("the consent dialog failed: {e}; counting it as refused");
            ConsentAnswer::Failed
        }
    })
}

enum CaptureCommand {
    /// The previous frame has left; the end-to-end RTT in ms (0: unknown).
    Credit {
        rtt_ms: u32,
    },
    /// The screen changed (from the change-signal thread).
    Changed,
    SelectMonitor(u8),
    Quality(Quality),
    Keyframe,
    /// The console decodes tiles with copies (scrolling).
    AllowCopies,
    Stop,
}

/// What the input thread needs to map frame pixels to the desktop.
#[derive(Clone, Debug)]
struct Geometry {
    monitor: Monitor,
    frame_w: u32,
    frame_h: u32,
}

struct Active {
    id: SessionId,
    control: Arc<std::sync::atomic::AtomicBool>,
    capture: std_mpsc::Sender<CaptureCommand>,
    input: Option<std_mpsc::Sender<InputEvent>>,
    indicator: Option<deskside_session_ui::subprocess::IndicatorProcess>,
}

impl Active {
    async fn start(
        id: SessionId,
        granted: Capabilities,
        expires_in_secs: u64,
        display: Result<String, String>,
        prompt: Option<ConsentPrompt>,
        out: mpsc::Sender<HelperToService>,
        indicator_commands: mpsc::UnboundedSender<(SessionId, IndicatorCommand)>,
    ) -> Self {
        let control = Arc::new(std::sync::atomic::AtomicBool::new(granted.control));
        let (capture_tx, capture_rx) = std_mpsc::channel();
        let geometry: Arc<Mutex<Option<Geometry>>> = Arc::default();
        let mut input = None;
        match &display {
            Ok(screen) => {
                let capture_screen = screen.clone();
                let out = out.clone();
                let capture_geometry = geometry.clone();
                let wake = capture_tx.clone();
                std::thread::Builder::new()
                    .name("capture".into())
                    .spawn(move || {
                        capture_loop(
                            id,
                            &capture_screen,
                            granted,
                            expires_in_secs,
                            Inbox {
                                commands: capture_rx,
                                wake,
                            },
                            out,
                            capture_geometry,
                        )
                    })
                    .ok();
                if granted.control {
                    let (tx, rx) = std_mpsc::channel::<InputEvent>();
                    let control = control.clone();
                    let input_screen = screen.clone();
                    std::thread::Builder::new()
                        .name("input".into())
                        .spawn(move || input_loop(&input_screen, rx, geometry, control))
                        .ok();
                    input = Some(tx);
                }
            }
            Err(reason) => {
                let _ = out
                    .send(HelperToService::ToConsole {
                        session_id: id,
                        message: Nested(AgentToConsole::Welcome {
                            granted,
                            monitors: Vec::new(),
                            selected: 0,
                            expires_in_secs,
                        }),
                    })
                    .await;
                let _ = out
                    .send(HelperToService::ToConsole {
                        session_id: id,
                        message: Nested(AgentToConsole::CaptureUnavailable {
                            reason: reason.clone(),
                        }),
                    })
                    .await;
            }
        }
        let indicator = match std::env::current_exe() {
            Ok(exe) => {
                let mut command = Command::new(exe);
                command.arg("session-indicator");
                let info = IndicatorInfo {
                    technician: prompt
                        .as_ref()
                        .map(|p| p.technician.clone())
                        .unwrap_or_default(),
                    organisation: prompt
                        .as_ref()
                        .map(|p| p.organisation.clone())
                        .unwrap_or_default(),
                    granted,
                    verification_code: prompt.map(|p| p.verification_code).unwrap_or_default(),
                };
                match deskside_session_ui::subprocess::IndicatorProcess::spawn(command, &info) {
                    Ok((process, mut commands)) => {
                        tokio::spawn(async move {
                            while let Some(command) = commands.recv().await {
                                if indicator_commands.send((id, command)).is_err() {
                                    break;
                                }
                            }
                        });
                        Some(process)
                    }
                    Err(e) => {
                        tracing::warn!("cannot show the session indicator: {e}");
                        None
                    }
                }
            }
            Err(e) => {
                tracing::warn!("cannot find this program to show the indicator: {e}");
                None
            }
        };
        Self {
            id,
            control,
            capture: capture_tx,
            input,
            indicator,
        }
    }

    fn handle_console(&mut self, message: ConsoleToAgent) {
        match message {
            ConsoleToAgent::SelectMonitor { index } => {
                let _ = self.capture.send(CaptureCommand::SelectMonitor(index));
            }
            ConsoleToAgent::SetQuality(quality) => {
                let _ = self.capture.send(CaptureCommand::Quality(quality));
            }
            ConsoleToAgent::RequestKeyframe => {
                let _ = self.capture.send(CaptureCommand::Keyframe);
            }
            ConsoleToAgent::Chat { text } => {
                if let Some(indicator) = self.indicator.as_mut() {
                    let _ = indicator.send(&IndicatorEvent::Chat { text });
                }
            }
            ConsoleToAgent::DecodesTileCopies => {
                let _ = self.capture.send(CaptureCommand::AllowCopies);
            }
            ConsoleToAgent::DropControl => self.drop_control(),
            // The service handles these (end, frame acknowledgements).
            ConsoleToAgent::End
            | ConsoleToAgent::AcknowledgesFrames
            | ConsoleToAgent::FrameReceived { .. }
            | ConsoleToAgent::Unknown { .. } => {}
        }
    }

    fn drop_control(&mut self) {
        self.control
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.input = None;
        if let Some(indicator) = self.indicator.as_mut() {
            let _ = indicator.send(&IndicatorEvent::Granted(Capabilities::VIEW));
        }
    }

    fn input(&self, event: InputEvent) {
        // Second check after the service's: a view-only session never
        // reaches the input thread.
        if self.control.load(std::sync::atomic::Ordering::SeqCst) {
            if let Some(input) = &self.input {
                let _ = input.send(event);
            }
        }
    }

    fn stop(mut self, by: EndedBy) {
        self.control
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let _ = self.capture.send(CaptureCommand::Stop);
        if let Some(mut indicator) = self.indicator.take() {
            let _ = indicator.send(&IndicatorEvent::Ended { by });
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(3));
                let _ = indicator.kill();
            });
        }
    }
}

fn capture_loop(
    session_id: SessionId,
    display: &str,
    granted: Capabilities,
    expires_in_secs: u64,
    inbox: Inbox,
    out: mpsc::Sender<HelperToService>,
    geometry: Arc<Mutex<Option<Geometry>>>,
) {
    let send = |message: AgentToConsole| {
        out.blocking_send(HelperToService::ToConsole {
            session_id,
            message: Nested(message),
        })
        .is_ok()
    };
    let mut capturer = match desktop::open_capturer(display, Use::Streaming) {
        Ok(c) => c,
        Err(reason) => {
            send(AgentToConsole::CaptureUnavailable { reason });
            return;
        }
    };
    let monitors = match capturer.monitors() {
        Ok(m) if !m.is_empty() => m,
        Ok(_) | Err(_) => {
            send(AgentToConsole::CaptureUnavailable {
                reason: "the display reports no monitor".to_owned(),
            });
            return;
        }
    };
    let mut selected = monitors.iter().position(|m| m.primary).unwrap_or(0) as u8;
    if !send(AgentToConsole::Welcome {
        granted,
        monitors: monitors.clone(),
        selected,
        expires_in_secs,
    }) {
        return;
    }
    let mut encoder = match Encoder::new(EncoderConfig::default()) {
        Ok(e) => e,
        Err(e) => {
            send(AgentToConsole::CaptureUnavailable {
                reason: format!("cannot start the encoder: {e}"),
            });
            return;
        }
    };
    // Wake on change: a thread waits for the display's change signal and
    // turns each change into a command; it ends with the loop (`change_watch`).
    let Inbox { commands, wake } = inbox;
    let change_watch = watch_changes(display, wake);
    let started = Instant::now();
    let mut quality = Quality::Auto;
    let mut bandwidth = BandwidthEstimator::new();
    // Frames handed to the service and not yet credited, oldest first.
    let mut in_flight: std::collections::VecDeque<(Instant, usize)> = Default::default();
    // Until the first choice of the codec (before the first capture), its
    // top rate.
    let mut pacer = Pacer::new(change_watch.is_some(), FULL_FPS);
    let mut seq = 0u64;
    let mut rtt: Option<f64> = None;
    let mut cursor_pos: Option<(i32, i32)> = None;
    // Pointer shapes go on the control stream once per change, each
    // picture once per session (`deskside_codec::pointer`).
    let mut shapes = ShapeSender::new();
    loop {
        // Commands first (credits, changes, the technician's requests),
        // then capture when the pacer says so: on a change, with a free
        // frame slot, within the rate limit (see `pace.rs`).
        let now = Instant::now();
        let command = match pacer.poll_capture(now) {
            Next::CaptureNow => match commands.try_recv() {
                Ok(command) => Some(command),
                Err(std_mpsc::TryRecvError::Empty) => None,
                Err(std_mpsc::TryRecvError::Disconnected) => return,
            },
            next => {
                let wait = match next {
                    Next::WaitUntil(at) => at.saturating_duration_since(now),
                    _ => Duration::from_millis(200),
                };
                match commands.recv_timeout(wait) {
                    Ok(command) => Some(command),
                    Err(std_mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
        };
        if let Some(command) = command {
            match command {
                CaptureCommand::Credit { rtt_ms } => {
                    rtt = (rtt_ms > 0).then_some(f64::from(rtt_ms));
                    tracing::trace!("frame credit");
                    // Only big frames say something about bandwidth: a small
                    // one's time to credit is the round trip, not the rate.
                    if let Some((at, bytes)) =
                        in_flight.pop_front().filter(|(_, b)| *b >= MIN_RATE_SAMPLE)
                    {
                        bandwidth.record(bytes as u64, at.elapsed().as_micros() as u64);
                    }
                    pacer.handle_credit();
                }
                CaptureCommand::Changed => pacer.handle_damage(),
                CaptureCommand::SelectMonitor(index) => {
                    if usize::from(index) < monitors.len() {
                        selected = index;
                        encoder.request_keyframe();
                        pacer.handle_wanted();
                    }
                }
                CaptureCommand::Quality(q) => quality = q,
                CaptureCommand::AllowCopies => encoder.allow_copies(true),
                CaptureCommand::Keyframe => {
                    encoder.request_keyframe();
                    pacer.handle_wanted();
                }
                CaptureCommand::Stop => return,
            }
            continue;
        }
        let choice = choose(
            quality,
            PathEstimate {
                bandwidth_bps: bandwidth.estimate(),
                rtt_ms: rtt,
            },
            encoder.recent(),
        );
        encoder.apply(&choice);
        pacer.set_max_fps(choice.max_fps);
        let tick = Instant::now();
        let monitor = monitors[usize::from(selected)].clone();
        let cursor = match capturer.cursor() {
            Ok(Some((x, y, shape))) => {
                if let Some(shape) = shape {
                    let change = shapes.handle_shape(&shape);
                    if let Some(e) = change.refused {
                        tracing::warn!("pointer shape not sent: {e}");
                    }
                    if let Some(message) = change.message {
                        tracing::debug!(
                            id = message.id,
                            new = message.image.is_some(),
                            "pointer shape"
                        );
                        if !send(AgentToConsole::PointerShape(message)) {
                            return;
                        }
                    }
                }
                Some((x, y))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::debug!("cannot read the pointer: {e}");
                None
            }
        };
        let encoded = match capturer.capture(selected) {
            Ok(captured) => {
                let frame = captured.frame;
                *geometry.lock().unwrap_or_else(|p| p.into_inner()) = Some(Geometry {
                    monitor: monitor.clone(),
                    frame_w: frame.width,
                    frame_h: frame.height,
                });
                if !captured.changed && !encoder.wants_unchanged_frame() {
                    // XDamage says the picture is the previous one: no
                    // comparison, no encoding, nothing to send.
                    Ok(None)
                } else {
                    match BgraFrame::new(frame.data, frame.width, frame.height, frame.stride) {
                        Ok(bgra) => encoder.encode(&bgra, started.elapsed().as_micros() as u64),
                        Err(e) => {
                            tracing::warn!("captured frame unusable: {e}");
                            Ok(None)
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!("capture failed: {e}");
                Ok(None)
            }
        };
        let cursor_changed = cursor != cursor_pos;
        let mut sent = false;
        match encoded {
            Ok(Some(encoded)) => {
                let bytes = encoded.payload.len();
                let mut frame =
                    encoded.into_video_frame(seq, selected, started.elapsed().as_micros() as u64);
                frame.cursor = cursor.map(|(x, y)| {
                    cursor_pos = Some((x, y));
                    Cursor {
                        x: x - monitor.x,
                        y: y - monitor.y,
                        shape: None,
                    }
                });
                seq += 1;
                if out
                    .blocking_send(HelperToService::Video { session_id, frame })
                    .is_err()
                {
                    return;
                }
                in_flight.push_back((Instant::now(), bytes));
                sent = true;
                tracing::trace!(seq, bytes, "frame sent");
            }
            Ok(None) if cursor_changed => {
                // Only the pointer moved: a small message of its own on the
                // control stream, never a frame (its shape travels apart,
                // above).
                if let Some((x, y)) = cursor {
                    cursor_pos = Some((x, y));
                    if !send(AgentToConsole::Pointer(Cursor {
                        x: x - monitor.x,
                        y: y - monitor.y,
                        shape: None,
                    })) {
                        return;
                    }
                    tracing::trace!(x, y, "pointer sent");
                }
            }
            Ok(None) => tracing::trace!("nothing changed"),
            Err(e) => {
                tracing::warn!("encoding failed: {e}; sending a full frame next");
                encoder.request_keyframe();
                pacer.handle_wanted();
            }
        }
        pacer.handle_captured(tick, sent);
    }
}

/// The capture thread's commands, and a sender into them for the
/// change-signal thread.
struct Inbox {
    commands: std_mpsc::Receiver<CaptureCommand>,
    wake: std_mpsc::Sender<CaptureCommand>,
}

/// Ends the change-signal thread when dropped.
struct ChangeWatch(Option<desktop::StopWaiting>);

impl Drop for ChangeWatch {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            stop();
        }
    }
}

/// Starts a thread that turns the display's change signals into
/// [`CaptureCommand::Changed`]; `None` where there is no signal (the loop
/// then looks on a timer).
fn watch_changes(display: &str, wake: std_mpsc::Sender<CaptureCommand>) -> Option<ChangeWatch> {
    let (mut wait, stop) = desktop::open_change_signal(display)?;
    let spawned = std::thread::Builder::new()
        .name("capture-wake".into())
        .spawn(move || loop {
            match wait() {
                Ok(true) => {
                    if wake.send(CaptureCommand::Changed).is_err() {
                        break;
                    }
                }
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(
                        "the change signal failed ({e}); looking at the screen on a timer"
                    );
                    break;
                }
            }
        });
    match spawned {
        Ok(_) => Some(ChangeWatch(Some(stop))),
        Err(e) => {
            tracing::warn!("cannot start the change-signal thread: {e}");
            stop();
            None
        }
    }
}

fn input_loop(
    screen: &str,
    events: std_mpsc::Receiver<InputEvent>,
    geometry: Arc<Mutex<Option<Geometry>>>,
    control: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut sink = match desktop::open_input(screen) {
        Ok(sink) => sink,
        Err(e) => {
            tracing::warn!("cannot inject input on {screen}: {e}");
            return;
        }
    };
    while let Ok(event) = events.recv() {
        if !control.load(std::sync::atomic::Ordering::SeqCst) {
            continue;
        }
        let Some(g) = geometry.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            continue;
        };
        if let Some(mapped) = map_event(&event, &g.monitor, g.frame_w, g.frame_h) {
            if let Err(e) = sink.apply(&mapped) {
                tracing::warn!("input injection failed: {e}");
            }
        }
    }
}
