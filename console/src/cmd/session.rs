//! `deskside session DEVICE` (alias `view`): a remote session.
//!
//! The console asks the relay, then runs its own end-to-end QUIC connection
//! to the agent through the relay (`deskside_net::tunnel`), pinning the key
//! the device enrolled with and presenting this console's session key (kept
//! next to the profile, registered for the token at every start). Both
//! screens show the same verification code, derived from that handshake.
//! The employee accepts or refuses on their desktop; after an acceptance
//! the agent opens the control and video streams, and this side opens the
//! input stream when control was granted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use deskside_codec::pointer::ShapeCache;
use deskside_codec::Decoder;
use deskside_net::framed::{FramedRecv, FramedSend};
use deskside_net::tunnel::{
    connect_session, Carrier, SessionConfig, SessionConn, TunnelSocket, DEFAULT_QUEUE_PACKETS,
};
use deskside_protocol::console::{ConsoleRequest, ConsoleResponse, SessionOpened};
use deskside_protocol::session::{
    close, AgentToConsole, Capabilities, Codec, ConsoleToAgent, EndedBy, InputEvent, MouseButton,
    VideoFrame, MAX_CONTROL_FRAME_LEN, MAX_VIDEO_FRAME_LEN,
};
use serde_json::json;

use super::interrupt::Interrupt;
use super::session_link::{LinkEvent, RelayTarget, SessionLink};
use super::{connect, unexpected, Context};
use crate::client::ClientError;
use crate::exit::UsageError;
use deskside_protocol::Refusal;

/// The employee has 60 s; allow for the dialog to open and the answer to
/// be audited.
const CONSENT_WAIT: Duration = Duration::from_secs(90);
/// After the consent: how long the device may take to start the session
/// and send its first frame.
const STREAM_WAIT: Duration = Duration::from_secs(30);

/// Arguments of `deskside session`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SessionArgs {
    /// `session list` and `session end ID` (admin) instead of opening one.
    #[command(subcommand)]
    pub admin: Option<super::session_admin::SessionAdminCommand>,
    /// Device id, id prefix or hostname.
    #[arg(required = true)]
    pub device: Option<String>,
    /// Ask only to see the screen, not to control it.
    #[arg(long)]
    pub view_only: bool,
    /// Go on with a device whose key is not bound to the organisation key
    /// (enrolled with an older token): then only comparing the verification
    /// code with the employee shows it is the real device.
    #[arg(long)]
    pub allow_unbound_device: bool,
    /// Show this monitor of the device first (0 is the first; the viewer's
    /// toolbar switches later). The device's primary monitor by default.
    #[arg(long, value_name = "INDEX")]
    pub monitor: Option<u8>,
    /// Why you ask; the employee sees it in the consent dialog.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Link the session to this help request (`deskside requests list`):
    /// when it ends, who, when, how long and what the employee granted
    /// show in `deskside requests show ID` (never any screen content).
    #[arg(long, value_name = "ID")]
    pub request: Option<u64>,
    /// No window: report the session's events on stdout (one JSON object
    /// per line with --json), for scripts and checks.
    #[arg(long)]
    pub headless: bool,
    /// End the session after this long (e.g. 30s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// With --headless: type this text on the device once the first frame
    /// arrived (dropped by the agent unless control was granted).
    #[arg(long, requires = "headless")]
    pub type_text: Option<String>,
    /// With --headless: read the frame-counter barcode of the test X client
    /// (`deskside-xclient --counter`) from every decoded frame and report
    /// it with the time, for the glass-to-glass latency benchmark.
    /// The barcode's top-left corner in frame pixels, as `X,Y`.
    #[arg(long, requires = "headless", hide = true, value_name = "X,Y", value_parser = parse_origin)]
    pub probe_counter: Option<(u32, u32)>,
    /// With --headless: report every video frame (its size in bytes and
    /// the time), for the bandwidth tests and benchmarks.
    #[arg(long, requires = "headless", hide = true)]
    pub frame_log: bool,
    /// With --headless: once frames flow, move the pointer every MS
    /// milliseconds, to a new spot of the 100×50 px area whose top-left
    /// corner is --probe-input-at, and report each move with the time, for
    /// the input latency benchmark.
    #[arg(long, requires = "headless", hide = true, value_name = "MS")]
    pub probe_input: Option<u64>,
    /// Top-left corner of the --probe-input area, in frame pixels (`X,Y`).
    #[arg(long, hide = true, value_name = "X,Y", value_parser = parse_origin, default_value = "0,0")]
    pub probe_input_at: (u32, u32),
    /// With --headless: report for every decoded frame its codec, its
    /// payload bytes, whether it carried copies (scrolling) and a
    /// digest (FNV-1a 64 of the RGB rows) of this rectangle of the frame,
    /// `X,Y,W,H` in frame pixels, for the tests that check the picture is
    /// exact.
    #[arg(long, requires = "headless", hide = true, value_name = "X,Y,W,H", value_parser = parse_rect)]
    pub probe_region: Option<(u32, u32, u32, u32)>,
    /// With --headless: once the first frame arrived, left-click at this
    /// frame pixel (`X,Y`); --type-text then goes out a second later (for
    /// tests: the click brings the clicked window to the front).
    #[arg(long, requires = "headless", hide = true, value_name = "X,Y", value_parser = parse_origin)]
    pub click: Option<(u32, u32)>,
}

/// With --click and --type-text: how long after the click the text goes
/// out (a window brought to the front by a click takes the keys only once
/// it has handled the click).
const CLICK_SETTLE: Duration = Duration::from_secs(1);

fn parse_origin(text: &str) -> Result<(u32, u32), String> {
    let (x, y) = text.split_once(',').ok_or("expected X,Y")?;
    Ok((
        x.trim().parse().map_err(|e| format!("bad X: {e}"))?,
        y.trim().parse().map_err(|e| format!("bad Y: {e}"))?,
    ))
}

fn parse_rect(text: &str) -> Result<(u32, u32, u32, u32), String> {
    let parts: Vec<&str> = text.split(',').collect();
    let [x, y, w, h] = parts[..] else {
        return Err("expected X,Y,W,H".to_owned());
    };
    let num = |v: &str, what: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|e| format!("bad {what}: {e}"))
    };
    Ok((num(x, "X")?, num(y, "Y")?, num(w, "W")?, num(h, "H")?))
}

/// FNV-1a 64 of the RGB rows of a rectangle of an RGBA picture; `None`
/// when the rectangle is not inside the picture.
fn region_digest(rect: (u32, u32, u32, u32), width: u32, height: u32, rgba: &[u8]) -> Option<u64> {
    let (x, y, w, h) = rect;
    if x.checked_add(w)? > width || y.checked_add(h)? > height {
        return None;
    }
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for row in y..y + h {
        let start = (row as usize * width as usize + x as usize) * 4;
        for pixel in rgba.get(start..start + w as usize * 4)?.chunks_exact(4) {
            for &byte in &pixel[..3] {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    Some(hash)
}

/// The `deskside-xclient --counter` barcode: 32 squares of 16 px at the
/// top-left corner, bit `i` in square `i`, white = 1.
fn read_counter(origin: (u32, u32), width: u32, height: u32, rgba: &[u8]) -> Option<u32> {
    if width < origin.0 + 512 || height < origin.1 + 16 {
        return None;
    }
    let mut value = 0u32;
    for bit in 0..32u32 {
        let (x, y) = (origin.0 + 16 * bit + 8, origin.1 + 8);
        let i = (y as usize * width as usize + x as usize) * 4;
        if *rgba.get(i)? > 127 {
            value |= 1 << bit;
        }
    }
    Some(value)
}

/// Runs `deskside session`.
pub async fn run(args: SessionArgs, ctx: &mut Context<'_>) -> anyhow::Result<()> {
    if let Some(command) = args.admin {
        return super::session_admin::run(command, ctx).await;
    }
    if args.reason.chars().count() > 500 {
        return Err(UsageError::new(
            "--reason is limited to 500 characters",
            "deskside session --help",
        )
        .into());
    }
    if !args.headless {
        // Checked before the employee is asked: a console that cannot show
        // the session must not make them accept one.
        viewer_can_open()?;
    }
    let identity = crate::org_key::session_identity(&ctx.profile_path)?;
    let certificate = crate::org_key::session_certificate(&ctx.profile_path, &identity)?;
    let (profile, mut client) = connect(ctx).await?;
    let key = identity.key_fingerprint()?;
    match client
        .request(ConsoleRequest::RegisterSessionKey { key })
        .await?
    {
        ConsoleResponse::Done => {}
        other => return Err(unexpected(&other)),
    }
    if let Some(certificate) = certificate {
        // Devices that trust the organisation key refuse the session key
        // without it; the relay forwards it with the request.
        match client
            .request(ConsoleRequest::PresentSessionCertificate {
                certificate: certificate.encode(),
            })
            .await
            .context("the relay did not take the session key certificate (upgrade the relay)")?
        {
            ConsoleResponse::Done => {}
            other => return Err(unexpected(&other)),
        }
    }
    let capabilities = if args.view_only {
        Capabilities::VIEW
    } else {
        Capabilities::CONTROL
    };
    let device = args.device.clone().unwrap_or_default();
    let reason = args.reason.clone();
    // Linked to a help request, the relay is told its number, so a device
    // that is offline leaves a trace on the request; an older relay that
    // does not know this request is asked the old way.
    let linked = args
        .request
        .map(|request| ConsoleRequest::OpenLinkedSession {
            device: device.clone(),
            capabilities,
            reason: reason.clone(),
            monitor: args.monitor,
            request,
        });
    // With --monitor the relay refuses a monitor the device does not have
    // before the employee is asked.
    let request = match args.monitor {
        Some(monitor) => ConsoleRequest::OpenSessionOnMonitor {
            device,
            capabilities,
            reason,
            monitor,
        },
        None => ConsoleRequest::OpenSession {
            device,
            capabilities,
            reason,
        },
    };
    let answer = match linked {
        Some(linked) => match client.request(linked).await {
            Err(ClientError::Refused(Refusal::Invalid(why)))
                if why.starts_with("this relay does not know request type") =>
            {
                client.request(request).await?
            }
            other => other?,
        },
        None => client.request(request).await?,
    };
    let opened: SessionOpened = match answer {
        ConsoleResponse::SessionOpened(opened) => opened,
        other => return Err(unexpected(&other)),
    };
    let session_id = opened.session_id;
    if let Some(number) = args.request {
        let link = ConsoleRequest::ActOnRequest {
            number,
            action: deskside_protocol::request::RequestAction::LinkSession { session_id },
        };
        match client.request(link).await {
            Ok(ConsoleResponse::Request(_)) => {}
            Ok(other) => return Err(unexpected(&other)),
            // The employee is already being asked: go on, say why the
            // request will not show this session.
            Err(e) => eprintln!(
                "warning: the session is not linked to help request {number}: {e}; check the number with `deskside requests list`"
            ),
        }
    }
    // From here on Ctrl-C withdraws the request (or ends the session)
    // instead of killing the process.
    let interrupt = Interrupt::listen();
    let span = tracing::info_span!("session", id = %session_id, device = %opened.device.id);
    let _guard = span.enter();
    let carrier = Arc::new(Carrier::new());
    carrier.attach(client.connection().clone());
    let (socket, port) = TunnelSocket::pair_ends(DEFAULT_QUEUE_PACKETS);
    let _carried = carrier.carry(session_id, port)?;
    // From here on the relay connection may come and go under the session;
    // it comes back to the relay that opened it, which holds the device
    // (the profile's, or the one the relay sent us to).
    let target = RelayTarget {
        relay: client.relay().relay.clone(),
        fingerprint: client.relay().fingerprint,
        token: profile.token.clone(),
        source_address: crate::cmd::session_link::source_address_path(&ctx.profile_path),
    };
    let mut link = SessionLink::start(client, target.clone(), Arc::clone(&carrier), session_id);
    let config = SessionConfig::default();
    let connecting = connect_session(socket, &identity, opened.device_key, &config);
    let conn = tokio::select! {
        conn = connecting => conn.context("the end-to-end connection to the device failed")?,
        () = interrupt.wait() => {
            // Closing the relay connection withdraws the request.
            if let Some(client) = link.finish().await {
                client.close().await;
            }
            bail!("cancelled with Ctrl-C before the employee was asked; the request is withdrawn");
        }
    };
    // The handshake proved the device key the relay named; with an
    // organisation key, that key must also be bound to it (a relay posing
    // as the device cannot show a binding of its own key).
    match crate::org_key::check_device(
        &ctx.profile_path,
        &conn.connection,
        opened.device_key,
        args.allow_unbound_device,
    )
    .await
    {
        Ok(check) => tracing::info!(?check, "device key checked"),
        Err(e) => {
            conn.close(
                close::REFUSED,
                b"the device key is not bound to the organisation key",
            )
            .await;
            if let Some(mut client) = link.finish().await {
                let _ = client
                    .request(ConsoleRequest::EndSession { session_id })
                    .await;
                client.close().await;
            }
            return Err(e.context("the session was stopped before the employee was asked"));
        }
    }
    let code = conn.verification_code(session_id)?;
    let hostname = opened.device.hostname.clone();
    if ctx.out.is_json() {
        ctx.out.json(&json!({
            "type": "session", "state": "waiting_for_consent", "session_id": session_id.to_string(),
            "device": opened.device.id.to_string(), "hostname": hostname, "verification_code": code,
        }))?;
        ctx.out.flush()?;
    } else {
        eprintln!(
            "Verification code: {code}\nWaiting for the person at {hostname} to accept (they see the same code)…"
        );
    }
    let outcome = run_session(
        &conn,
        &args,
        ctx,
        &mut link,
        &interrupt,
        (&hostname, &code),
        capabilities,
    )
    .await;
    let by = match &outcome {
        Ok(by) => *by,
        Err(_) => EndedBy::ConnectionLost,
    };
    let mut client = link.finish().await;
    if by == EndedBy::Technician {
        // Recorded by the relay now rather than after its grace period; a
        // console between relay connections makes a new one for it.
        if client.is_none() {
            let reconnect =
                crate::client::Client::connect(&target.relay, target.fingerprint, &target.token);
            client = tokio::time::timeout(Duration::from_secs(5), reconnect)
                .await
                .ok()
                .and_then(Result::ok);
        }
        if let Some(client) = client.as_mut() {
            let _ = client
                .request(ConsoleRequest::EndSession { session_id })
                .await;
        }
    }
    conn.close(close::ENDED, b"technician closed the session")
        .await;
    if let Some(client) = client {
        client.close().await;
    }
    outcome.map(|_| ())
}

/// Whether this console can open its viewer window: on Linux and the BSDs
/// an X11 or Wayland display must be named (macOS and Windows always have
/// one).
fn viewer_can_open() -> anyhow::Result<()> {
    let needs_display = cfg!(all(unix, not(target_os = "macos")));
    let named = |var: &str| std::env::var_os(var).is_some_and(|value| !value.is_empty());
    if needs_display && !named("DISPLAY") && !named("WAYLAND_DISPLAY") {
        bail!(
            "no display for the viewer window (neither DISPLAY nor WAYLAND_DISPLAY is set), so the employee was not asked; run `deskside session` from a graphical desktop, or add --headless to run it without a window"
        );
    }
    Ok(())
}

/// Waits for the agent's streams (consent), then runs the session.
async fn run_session(
    conn: &SessionConn,
    args: &SessionArgs,
    ctx: &mut Context<'_>,
    link: &mut SessionLink,
    interrupt: &Interrupt,
    (hostname, code): (&str, &str),
    asked: Capabilities,
) -> anyhow::Result<EndedBy> {
    let streams = tokio::select! {
        streams = conn.connection.accept_bi() => streams,
        _ = tokio::time::sleep(CONSENT_WAIT) => bail!("no answer from the device within {} s", CONSENT_WAIT.as_secs()),
        () = interrupt.wait() => bail!("cancelled with Ctrl-C before the employee answered; the request is withdrawn and their dialog says so"),
        gave_up = wait_for_give_up(link, ctx) => bail!(
            "the request was withdrawn before the employee answered: this console lost its relay connection ({gave_up}); run `deskside session` again"
        ),
    };
    let (control_send, control_recv) = match streams {
        Ok(streams) => streams,
        Err(quinn::ConnectionError::ApplicationClosed(closed)) => {
            let reason = String::from_utf8_lossy(&closed.reason).into_owned();
            let code = u32::try_from(closed.error_code.into_inner()).unwrap_or(u32::MAX);
            match code {
                close::REFUSED if reason.contains("withdrawn") => bail!(
                    "the request was withdrawn before the employee answered (this console's relay connection was lost); run `deskside session` again"
                ),
                close::REFUSED => bail!("the session was not accepted: {reason}"),
                close::UNAVAILABLE => bail!("the device cannot start a session: {reason}"),
                close::NOT_AUDITED => bail!("the session was stopped because the relay did not record the consent: {reason}"),
                close::UNCERTIFIED => bail!("the device refused the session before asking anyone: {reason}"),
                _ => bail!("the device closed the session: {reason}"),
            }
        }
        Err(e) => bail!("lost the end-to-end connection before the session started: {e}"),
    };
    let mut control = FramedSend::new(control_send, MAX_CONTROL_FRAME_LEN);
    let mut control_in = FramedRecv::new(control_recv, MAX_CONTROL_FRAME_LEN);
    let welcome = tokio::select! {
        welcome = tokio::time::timeout(STREAM_WAIT, control_in.recv::<AgentToConsole>()) => welcome
            .map_err(|_| {
                anyhow::anyhow!(
                    "the device accepted but did not start the session within {} s",
                    STREAM_WAIT.as_secs()
                )
            })??,
        () = interrupt.wait() => {
            let _ = control.send(&ConsoleToAgent::End).await;
            bail!("cancelled with Ctrl-C as the session started; it is ended");
        }
    };
    let Some(AgentToConsole::Welcome {
        granted,
        monitors,
        selected,
        expires_in_secs,
    }) = welcome
    else {
        bail!("the device did not start the session properly ({welcome:?}); upgrade the agent");
    };
    // Each frame read is acknowledged, so the device captures the next one
    // when the path has carried one, not when its send buffer took it.
    control.send(&ConsoleToAgent::AcknowledgesFrames).await?;
    // Its decoder (deskside-codec) applies copies: a scroll costs the
    // uncovered strip instead of H.264 or every moved tile.
    control.send(&ConsoleToAgent::DecodesTileCopies).await?;
    let selected = match args.monitor {
        Some(index) if usize::from(index) >= monitors.len() => bail!(
            "the device has {} monitor(s): --monitor takes 0 to {}",
            monitors.len(),
            monitors.len().saturating_sub(1)
        ),
        Some(index) if index != selected => {
            control
                .send(&ConsoleToAgent::SelectMonitor { index })
                .await?;
            index
        }
        _ => selected,
    };
    if ctx.out.is_json() {
        ctx.out.json(&json!({
            "type": "session", "state": "started", "granted": granted.label(),
            "asked": asked.label(), "monitors": monitors.len(), "selected": selected,
            "expires_in_secs": expires_in_secs,
        }))?;
        ctx.out.flush()?;
    } else {
        eprintln!(
            "Accepted: {} for up to {} min.",
            granted.label(),
            expires_in_secs / 60
        );
    }
    // The video stream shows up with the first frame; meanwhile the device
    // may say why no picture will come.
    let stream_wait = tokio::time::sleep(STREAM_WAIT);
    tokio::pin!(stream_wait);
    // What comes before the first frame (the pointer's first shape and
    // position) is handed to the session's loop, not dropped.
    let mut early = Vec::new();
    let video = loop {
        tokio::select! {
            video = conn.connection.accept_uni() => {
                break video.context("the device opened no video stream")?;
            }
            message = control_in.recv::<AgentToConsole>() => match message? {
                Some(AgentToConsole::CaptureUnavailable { reason }) => {
                    bail!("the device cannot show its screen: {reason}")
                }
                Some(AgentToConsole::Ended { by }) => {
                    bail!("the session ended before the first picture (ended by {})", by.as_str())
                }
                Some(other) if early.len() < MAX_EARLY_MESSAGES => early.push(other),
                Some(other) => tracing::debug!("dropped before the first frame: {other:?}"),
                None => bail!("the device closed the session before the first picture"),
            },
            _ = &mut stream_wait => bail!(
                "the device sent no picture within {} s of starting the session",
                STREAM_WAIT.as_secs()
            ),
            () = interrupt.wait() => {
                let _ = control.send(&ConsoleToAgent::End).await;
                bail!("cancelled with Ctrl-C before the first picture; the session is ended");
            }
        }
    };
    let video = FramedRecv::new(video, MAX_VIDEO_FRAME_LEN);
    // Input has its own stream so it never waits behind video; opened even
    // for view-only sessions (the agent drops what comes on it).
    let input = FramedSend::new(conn.connection.open_uni().await?, MAX_CONTROL_FRAME_LEN);
    if args.headless {
        headless(
            conn, args, ctx, link, interrupt, control, control_in, video, input, early,
        )
        .await
    } else {
        let json = ctx.out.is_json();
        windowed(
            conn, args, link, interrupt, hostname, code, granted, monitors, selected, control,
            control_in, video, input, json, early,
        )
        .await
    }
}

/// Reports the relay link's events while waiting for the employee, until
/// the link gives up (a request is withdrawn when its console's relay
/// connection goes away, so it cannot be resumed); returns why.
async fn wait_for_give_up(link: &mut SessionLink, ctx: &mut Context<'_>) -> String {
    loop {
        let event = link.next_event().await;
        if ctx.out.is_json() {
            let _ = ctx.out.json(&link_event_json(&event));
            let _ = ctx.out.flush();
        } else {
            eprintln!("{}", link_event_text(&event));
        }
        if let LinkEvent::GaveUp { reason } = event {
            return reason;
        }
    }
}

/// Who ended a session, from the agent's close frame (it names them in the
/// reason when it closes normally).
fn ended_by_close(closed: &quinn::ConnectionError) -> EndedBy {
    match closed {
        quinn::ConnectionError::ApplicationClosed(frame)
            if frame.error_code.into_inner() == u64::from(close::ENDED) =>
        {
            std::str::from_utf8(&frame.reason)
                .ok()
                .and_then(EndedBy::parse)
                .unwrap_or(EndedBy::ConnectionLost)
        }
        _ => EndedBy::ConnectionLost,
    }
}

/// Wall-clock time in microseconds since the Unix epoch, for the probes'
/// reports (compared with the test X client's, on the same machine).
fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A send on the end-to-end connection failed: the session is over, and
/// still reported as such.
fn lost(error: &deskside_net::NetError) -> EndedBy {
    tracing::warn!("the end-to-end connection failed: {error}");
    EndedBy::ConnectionLost
}

fn link_event_json(event: &LinkEvent) -> serde_json::Value {
    match event {
        LinkEvent::Lost { reason } => {
            json!({"type": "relay_link", "state": "lost", "reason": reason})
        }
        LinkEvent::Resumed { after, attempts } => json!({
            "type": "relay_link", "state": "resumed",
            "after_ms": after.as_millis() as u64, "attempts": attempts,
        }),
        LinkEvent::GaveUp { reason } => {
            json!({"type": "relay_link", "state": "gave_up", "reason": reason})
        }
    }
}

fn link_event_text(event: &LinkEvent) -> String {
    match event {
        LinkEvent::Lost { reason } => {
            format!("Lost the connection to the relay ({reason}); reconnecting…")
        }
        LinkEvent::Resumed { after, .. } => format!(
            "Reconnected to the relay after {:.1} s; the session goes on.",
            after.as_secs_f64()
        ),
        LinkEvent::GaveUp { reason } => format!("The session cannot go on: {reason}"),
    }
}

fn decode(decoder: &mut Decoder, frame: &VideoFrame) -> Option<(u32, u32, Vec<u8>)> {
    match decoder.decode_frame(frame) {
        Ok(()) => decoder
            .picture()
            .map(|p| (p.width, p.height, p.rgba.to_vec())),
        Err(e) => {
            tracing::debug!("frame {} did not decode: {e}", frame.seq);
            None
        }
    }
}

/// Messages kept from before the first frame; more are dropped (a device
/// sends a handful: its pointer's shape and position).
const MAX_EARLY_MESSAGES: usize = 64;

/// What the headless console keeps of the pointer between messages.
#[derive(Debug, Default)]
struct PointerReport {
    /// Position messages seen.
    messages: u64,
    /// The shapes the device sent, by number.
    shapes: ShapeCache,
}

/// Reports a message from the device in headless mode (the caller handles
/// `Ended`).
fn report_message(
    ctx: &mut Context<'_>,
    pointer: &mut PointerReport,
    message: AgentToConsole,
) -> anyhow::Result<()> {
    match message {
        AgentToConsole::Pointer(cursor) => {
            // One short line per move (the shape's pixels would drown the
            // output).
            pointer.messages += 1;
            if ctx.out.is_json() {
                ctx.out
                    .json(&json!({"type": "pointer", "x": cursor.x, "y": cursor.y,
                    "shape": cursor.shape.is_some(), "unix_us": unix_us()}))?;
                ctx.out.flush()?;
            }
        }
        AgentToConsole::PointerShape(shape) => {
            // One line per change of shape: its number, whether its picture
            // came with it, and the picture's size once unpacked (from the
            // cache when only the number came).
            let shown = pointer.shapes.handle_shape(&shape);
            if let Err(e) = &shown {
                tracing::warn!("pointer shape ignored: {e}");
            }
            if ctx.out.is_json() {
                let size = shown.ok().flatten().map(|s| {
                    json!({"width": s.width, "height": s.height, "hot_x": s.hot_x, "hot_y": s.hot_y})
                });
                ctx.out
                    .json(&json!({"type": "pointer_shape", "id": shape.id,
                    "picture": shape.image.is_some(), "shape": size, "unix_us": unix_us()}))?;
                ctx.out.flush()?;
            }
        }
        message => {
            if ctx.out.is_json() {
                ctx.out
                    .json(&json!({"type": "session_message", "message": format!("{message:?}")}))?;
                ctx.out.flush()?;
            } else {
                eprintln!("{message:?}");
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn headless(
    conn: &SessionConn,
    args: &SessionArgs,
    ctx: &mut Context<'_>,
    link: &mut SessionLink,
    interrupt: &Interrupt,
    mut control: FramedSend,
    mut control_in: FramedRecv,
    mut video: FramedRecv,
    mut input: FramedSend,
    early: Vec<AgentToConsole>,
) -> anyhow::Result<EndedBy> {
    let mut decoder = Decoder::new()?;
    let started = Instant::now();
    let deadline = tokio::time::sleep(args.duration.unwrap_or(Duration::MAX / 4));
    tokio::pin!(deadline);
    let (mut frames, mut bytes, mut decoded) = (0u64, 0u64, 0u64);
    let (mut clicked, mut typed) = (false, false);
    let mut type_after: Option<Instant> = None;
    let mut probing = false;
    let mut probe = tokio::time::interval(Duration::from_millis(
        args.probe_input.unwrap_or(1000).max(1),
    ));
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probe_seq = 0u32;
    let mut last_size = (0, 0);
    let mut last_counter = None;
    let mut pointer = PointerReport::default();
    for message in early {
        report_message(ctx, &mut pointer, message)?;
    }
    let by = loop {
        tokio::select! {
            frame = video.recv_value::<VideoFrame>() => {
                let Ok(frame) = frame else { break EndedBy::ConnectionLost };
                if let Err(e) = control.send(&ConsoleToAgent::FrameReceived { seq: frame.seq }).await {
                    break lost(&e);
                }
                frames += 1;
                bytes += frame.payload.len() as u64;
                if args.frame_log {
                    ctx.out.json(&json!({"type": "frame", "seq": frame.seq,
                        "bytes": frame.payload.len(), "unix_us": unix_us()}))?;
                }
                if let Some((w, h, rgba)) = decode(&mut decoder, &frame) {
                    decoded += 1;
                    last_size = (w, h);
                    if let Some(rect) = args.probe_region {
                        let digest = region_digest(rect, w, h, &rgba).map(|d| format!("{d:016x}"));
                        let copies = frame.codec == Codec::ZstdTiles
                            && deskside_codec::tiles::carries_copies(&frame.payload);
                        ctx.out.json(&json!({"type": "frame_region", "seq": frame.seq,
                            "codec": format!("{:?}", frame.codec), "keyframe": frame.keyframe,
                            "bytes": frame.payload.len(), "copies": copies,
                            "digest": digest, "unix_us": unix_us()}))?;
                    }
                    if let Some(origin) = args.probe_counter {
                        let value = read_counter(origin, w, h, &rgba);
                        if value.is_some() && value != last_counter {
                            last_counter = value;
                            ctx.out.json(&json!({"type": "frame_counter", "value": value, "unix_us": unix_us(), "seq": frame.seq}))?;
                        }
                    }
                } else if let Err(e) = control.send(&ConsoleToAgent::RequestKeyframe).await {
                    break lost(&e);
                }
                probing = args.probe_input.is_some();
                // The click first; the text on the first frame at least
                // CLICK_SETTLE later, once the clicked window has come to
                // the front (it takes the keys).
                let mut once = Vec::new();
                if !clicked {
                    clicked = true;
                    if let Some((x, y)) = args.click {
                        once.push(InputEvent::PointerMove { x, y });
                        for pressed in [true, false] {
                            once.push(InputEvent::Button { button: MouseButton::Left, pressed });
                        }
                        type_after = Some(Instant::now() + CLICK_SETTLE);
                    }
                }
                if !typed && type_after.is_none_or(|at| Instant::now() >= at) {
                    typed = true;
                    if let Some(text) = &args.type_text {
                        once.push(InputEvent::Text { text: text.clone() });
                    }
                }
                let mut failed = None;
                for event in &once {
                    if let Err(e) = input.send(event).await {
                        failed = Some(e);
                        break;
                    }
                }
                if let Some(e) = failed {
                    break lost(&e);
                }
            }
            message = control_in.recv::<AgentToConsole>() => match message {
                Ok(Some(AgentToConsole::Ended { by })) => break by,
                Ok(Some(message)) => report_message(ctx, &mut pointer, message)?,
                Ok(None) | Err(_) => break EndedBy::ConnectionLost,
            },
            _ = &mut deadline => {
                if let Err(e) = control.send(&ConsoleToAgent::End).await {
                    tracing::warn!("could not tell the device the session ends: {e}");
                }
                break EndedBy::Technician;
            }
            _ = probe.tick(), if probing => {
                // A spot not used in the last 5,000 moves, so each report
                // of the X client matches exactly one move.
                let (x0, y0) = args.probe_input_at;
                let (x, y) = (x0 + probe_seq % 100, y0 + (probe_seq / 100) % 50);
                probe_seq = probe_seq.wrapping_add(1);
                let sent_at = unix_us();
                if let Err(e) = input.send(&InputEvent::PointerMove { x, y }).await {
                    break lost(&e);
                }
                ctx.out.json(&json!({"type": "input_sent", "x": x, "y": y, "unix_us": sent_at}))?;
            }
            event = link.next_event() => {
                let gave_up = matches!(event, LinkEvent::GaveUp { .. });
                if ctx.out.is_json() {
                    ctx.out.json(&link_event_json(&event))?;
                    ctx.out.flush()?;
                } else {
                    eprintln!("{}", link_event_text(&event));
                }
                if gave_up {
                    break EndedBy::ConnectionLost;
                }
            }
            closed = conn.connection.closed() => break ended_by_close(&closed),
            () = interrupt.wait() => {
                let _ = control.send(&ConsoleToAgent::End).await;
                break EndedBy::Technician;
            }
        }
    };
    let summary = json!({
        "type": "session_end", "ended_by": by.as_str(), "frames": frames, "decoded": decoded,
        "bytes": bytes, "width": last_size.0, "height": last_size.1,
        "seconds": started.elapsed().as_secs_f64(), "pointer_messages": pointer.messages,
    });
    if ctx.out.is_json() {
        ctx.out.json(&summary)?;
    } else {
        ctx.out.text(&format!(
            "Session ended by {}: {frames} frames ({decoded} decoded, {} KiB) in {:.1} s.\n",
            by.as_str(),
            bytes / 1024,
            started.elapsed().as_secs_f64()
        ))?;
    }
    Ok(by)
}

#[allow(clippy::too_many_arguments)]
async fn windowed(
    conn: &SessionConn,
    args: &SessionArgs,
    link: &mut SessionLink,
    interrupt: &Interrupt,
    hostname: &str,
    code: &str,
    granted: Capabilities,
    monitors: Vec<deskside_protocol::session::Monitor>,
    selected: u8,
    mut control: FramedSend,
    mut control_in: FramedRecv,
    mut video: FramedRecv,
    mut input: FramedSend,
    json: bool,
    early: Vec<AgentToConsole>,
) -> anyhow::Result<EndedBy> {
    use deskside_viewer::{
        run_viewer, viewer_channel, RgbaFrame, ViewerCommand, ViewerEvent, ViewerOptions,
        ViewerStats,
    };
    let (io, remote, mut receivers) = viewer_channel();
    let mut options = ViewerOptions::new(hostname.to_owned(), code.to_owned());
    options.granted = granted;
    if let Some(monitor) = monitors.get(usize::from(selected)) {
        options.initial_size = [monitor.width as f32, monitor.height as f32];
    }
    remote.send(ViewerEvent::Monitors { monitors, selected });
    for message in &early {
        remote.handle_agent_message(message);
    }
    let mut window = tokio::task::spawn_blocking(move || run_viewer(options, io));
    // Set when the window is gone before the session ended (closed, or it
    // failed to open): the session ends with it.
    let mut window_gone = None;
    let mut decoder = Decoder::new()?;
    let deadline = tokio::time::sleep(args.duration.unwrap_or(Duration::MAX / 4));
    tokio::pin!(deadline);
    let mut stats_tick = tokio::time::interval(Duration::from_secs(1));
    let (mut frames, mut bytes) = (0u64, 0u64);
    let mut codec = Codec::ZstdTiles;
    let by = loop {
        tokio::select! {
            frame = video.recv_value::<VideoFrame>() => {
                let Ok(frame) = frame else { break EndedBy::ConnectionLost };
                if let Err(e) = control.send(&ConsoleToAgent::FrameReceived { seq: frame.seq }).await {
                    break lost(&e);
                }
                frames += 1;
                bytes += frame.payload.len() as u64;
                codec = frame.codec;
                let cursor = frame.cursor.as_ref().map(|c| (c.x, c.y));
                match decode(&mut decoder, &frame) {
                    Some((w, h, rgba)) => match RgbaFrame::new(w, h, rgba) {
                        Ok(picture) => remote.set_frame(Arc::new(picture), cursor),
                        Err(e) => tracing::warn!("frame not shown: {e}"),
                    },
                    None => {
                        if let Err(e) = control.send(&ConsoleToAgent::RequestKeyframe).await {
                            break lost(&e);
                        }
                    }
                }
            }
            message = control_in.recv::<AgentToConsole>() => match message {
                Ok(Some(message)) => {
                    remote.handle_agent_message(&message);
                    if let AgentToConsole::Ended { by } = message {
                        break by;
                    }
                }
                Ok(None) | Err(_) => break EndedBy::ConnectionLost,
            },
            Some(command) = receivers.commands.recv() => {
                let message = match command {
                    ViewerCommand::End => {
                        let _ = control.send(&ConsoleToAgent::End).await;
                        break EndedBy::Technician;
                    }
                    ViewerCommand::SelectMonitor(index) => ConsoleToAgent::SelectMonitor { index },
                    ViewerCommand::SetQuality(quality) => ConsoleToAgent::SetQuality(quality),
                    ViewerCommand::Chat(text) => ConsoleToAgent::Chat { text },
                    ViewerCommand::DropControl => ConsoleToAgent::DropControl,
                };
                if let Err(e) = control.send(&message).await {
                    break lost(&e);
                }
            }
            Some(event) = receivers.input.recv() => {
                if let Err(e) = input.send(&event).await {
                    break lost(&e);
                }
            }
            _ = stats_tick.tick() => {
                remote.set_stats(ViewerStats {
                    fps: frames as f32,
                    kbit_per_s: (bytes * 8) as f32 / 1000.0,
                    rtt_ms: Some(conn.connection.rtt().as_secs_f32() * 1000.0),
                    codec: match codec { Codec::ZstdTiles => "zstd tiles".into(), Codec::H264 => "H.264".into() },
                });
                frames = 0;
                bytes = 0;
            }
            _ = &mut deadline => {
                let _ = control.send(&ConsoleToAgent::End).await;
                break EndedBy::Technician;
            }
            event = link.next_event() => {
                if json {
                    println!("{}", link_event_json(&event));
                }
                remote.send(ViewerEvent::Notice { text: link_event_text(&event) });
                if matches!(event, LinkEvent::GaveUp { .. }) {
                    break EndedBy::ConnectionLost;
                }
            }
            closed = conn.connection.closed() => break ended_by_close(&closed),
            () = interrupt.wait() => {
                let _ = control.send(&ConsoleToAgent::End).await;
                break EndedBy::Technician;
            }
            shown = &mut window, if window_gone.is_none() => {
                window_gone = Some(shown);
                let _ = control.send(&ConsoleToAgent::End).await;
                break EndedBy::Technician;
            }
        }
    };
    remote.send(ViewerEvent::Ended { by });
    // The session is over now; the window stays a moment to say so.
    if json {
        println!(
            "{}",
            json!({"type": "session_end", "ended_by": by.as_str()})
        );
    }
    // A window that could not be shown ends the command with its reason
    // (exit 1), even though the session itself ended properly.
    let shown = match window_gone {
        Some(shown) => shown,
        None => window.await,
    };
    match shown {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => bail!("the viewer window failed, so the session could not be shown: {e}"),
        Err(e) => bail!("the viewer window crashed: {e}"),
    }
    eprintln!("Session ended by {}.", by.as_str());
    Ok(by)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_barcode_reads_back() {
        let (w, h) = (600u32, 20u32);
        let mut rgba = vec![0u8; (w * h * 4) as usize];
        let value = 0b1011_0000_0000_0000_0000_0000_0000_0101u32;
        for bit in 0..32u32 {
            if value & (1 << bit) != 0 {
                for y in 0..16 {
                    for x in 16 * bit..16 * bit + 16 {
                        let i = ((y * w + x) * 4) as usize;
                        rgba[i..i + 4].copy_from_slice(&[255, 255, 255, 255]);
                    }
                }
            }
        }
        assert_eq!(read_counter((0, 0), w, h, &rgba), Some(value));
        assert_eq!(read_counter((0, 0), 100, h, &rgba), None, "too narrow");
        assert_eq!(read_counter((100, 0), w, h, &rgba), None, "off the frame");
    }
}
