//! The viewer under Xvfb: the picture is drawn where and in the colours it
//! should be, a click arrives as the right frame coordinates, typing arrives
//! as text, and the window closes when the session ends.
//!
//! `harness = false`: the window runs on this process's main thread while a
//! driver thread plays network side and user.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use deskside_protocol::session::{
    AgentToConsole, Capabilities, Cursor, CursorShape, EndedBy, InputEvent, MouseButton,
    PointerShape,
};
use deskside_viewer::{
    run_viewer, viewer_channel, RgbaFrame, ViewerEvent, ViewerExit, ViewerOptions, ViewerReceivers,
    ViewerRemote, ViewerStats, TOOLBAR_HEIGHT,
};
use support::x11::{tools_available, Xvfb, DEADLINE};

const FRAME_WIDTH: u32 = 320;
const FRAME_HEIGHT: u32 = 240;
const RED: [u8; 3] = [220, 30, 30];
const GREEN: [u8; 3] = [30, 200, 60];
const BLUE: [u8; 3] = [40, 60, 230];
const YELLOW: [u8; 3] = [240, 220, 20];
/// The remote pointer's shape in step 5: a colour the picture does not have.
const MAGENTA: [u8; 3] = [255, 0, 255];

fn quadrants() -> RgbaFrame {
    let mut rgba = Vec::with_capacity((FRAME_WIDTH * FRAME_HEIGHT * 4) as usize);
    for y in 0..FRAME_HEIGHT {
        for x in 0..FRAME_WIDTH {
            let colour = match (x < FRAME_WIDTH / 2, y < FRAME_HEIGHT / 2) {
                (true, true) => RED,
                (false, true) => GREEN,
                (true, false) => BLUE,
                (false, false) => YELLOW,
            };
            rgba.extend_from_slice(&colour);
            rgba.push(255);
        }
    }
    RgbaFrame::new(FRAME_WIDTH, FRAME_HEIGHT, rgba).expect("the test frame has the right size")
}

/// Receives input until `done` says the collected events are complete.
fn collect_input(
    runtime: &tokio::runtime::Runtime,
    receivers: &mut ViewerReceivers,
    what: &str,
    done: impl Fn(&[InputEvent]) -> bool,
) -> Result<Vec<InputEvent>, String> {
    let started = Instant::now();
    let mut events = Vec::new();
    while !done(&events) {
        let left = DEADLINE.checked_sub(started.elapsed()).unwrap_or_default();
        match runtime.block_on(async { tokio::time::timeout(left, receivers.input.recv()).await }) {
            Ok(Some(event)) => events.push(event),
            Ok(None) => {
                return Err(format!(
                    "input channel closed while waiting for {what}; got {events:?}"
                ))
            }
            Err(_) => return Err(format!("no {what} within {DEADLINE:?}; got {events:?}")),
        }
    }
    Ok(events)
}

fn drive(
    xvfb: &Xvfb,
    remote: &ViewerRemote,
    receivers: &mut ViewerReceivers,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    remote.set_stats(ViewerStats {
        fps: 30.0,
        kbit_per_s: 1200.0,
        rtt_ms: Some(12.0),
        codec: "zstd tiles".into(),
    });
    remote.set_frame(Arc::new(quadrants()), None);

    // 1. The title, and the picture 1:1 under the toolbar.
    let window = xvfb.wait_for_window("test-device");
    let title = xvfb.xdotool(&["getwindowname", &window]);
    if title.trim() != "deskside — test-device" {
        return Err(format!("window title is {title:?}"));
    }
    let top = TOOLBAR_HEIGHT as u32;
    let (w, h) = (FRAME_WIDTH, FRAME_HEIGHT);
    // Points well inside each quadrant (away from the stats overlay, which
    // sits in the top right corner of the picture area).
    let probes = [
        (w / 4, top + h / 4, RED, "top left"),
        (3 * w / 4, top + h / 3, GREEN, "top right"),
        (w / 4, top + 3 * h / 4, BLUE, "bottom left"),
        (3 * w / 4, top + 3 * h / 4, YELLOW, "bottom right"),
        (10, top + 40, RED, "near the top left corner"),
        (w - 10, top + h - 10, YELLOW, "bottom right corner"),
        (
            w / 2 - 3,
            top + h / 2 + 3,
            BLUE,
            "just left of the middle, below",
        ),
        (
            w / 2 + 3,
            top + h / 2 - 3,
            GREEN,
            "just right of the middle, above",
        ),
    ];
    let shot = xvfb.wait_for_picture(&window, "the quadrant picture", |image| {
        image.is_near(w / 4, top + h / 4, RED, 6)
    });
    for (x, y, colour, name) in probes {
        if !shot.is_near(x, y, colour, 6) {
            return Err(format!(
                "{name} pixel ({x},{y}) is {:?}, expected {colour:?} (window {}x{}, screenshot in {})",
                shot.pixel(x, y),
                shot.width,
                shot.height,
                shot.save("viewer").display()
            ));
        }
    }
    eprintln!("ok: picture drawn 1:1 with the right colours");

    // 2. A click at window (100, top + 50) is frame pixel (100, 50).
    xvfb.click(&window, 100.0, top as f32 + 50.0);
    let events = collect_input(&runtime, receivers, "a click", |events| {
        events.iter().any(|e| {
            matches!(
                e,
                InputEvent::Button {
                    button: MouseButton::Left,
                    pressed: false
                }
            )
        })
    })?;
    let press = events
        .iter()
        .position(|e| matches!(e, InputEvent::Button { pressed: true, .. }))
        .ok_or_else(|| format!("no press in {events:?}"))?;
    let last_move = events[..press]
        .iter()
        .rev()
        .find(|e| matches!(e, InputEvent::PointerMove { .. }));
    if last_move != Some(&InputEvent::PointerMove { x: 100, y: 50 })
        || events[press]
            != (InputEvent::Button {
                button: MouseButton::Left,
                pressed: true,
            })
    {
        return Err(format!("click arrived as {events:?}"));
    }
    eprintln!("ok: click arrived as {events:?}");

    // 3. Typing goes to the remote desktop as text.
    // No window manager under Xvfb: give the window the keyboard focus.
    xvfb.xdotool(&["windowfocus", &window]);
    xvfb.xdotool(&["type", "--delay", "50", "abc"]);
    let events = collect_input(&runtime, receivers, "the text \"abc\"", |events| {
        let text: String = events
            .iter()
            .filter_map(|e| match e {
                InputEvent::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        text.len() >= 3
    })?;
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            InputEvent::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    if text != "abc" {
        return Err(format!("typing \"abc\" arrived as {events:?}"));
    }
    eprintln!("ok: typing arrived as {events:?}");

    // 4. Nothing was asked of the network side so far.
    if let Ok(command) = receivers.commands.try_recv() {
        return Err(format!("unexpected command {command:?}"));
    }

    // 5. The pointer's real shape (a 12x12 magenta square, hot spot at its
    //    top-left corner): where the agent says while the technician's
    //    pointer is away from the window, and under the technician's own
    //    pointer, at once, while it is over the picture (control is granted).
    let shape = CursorShape {
        width: 12,
        height: 12,
        hot_x: 0,
        hot_y: 0,
        rgba: [MAGENTA[0], MAGENTA[1], MAGENTA[2], 255].repeat(144),
    };
    let image = deskside_codec::pointer::pack(&shape).map_err(|e| e.to_string())?;
    xvfb.xdotool(&["mousemove", "1200", "780"]);
    remote.handle_agent_message(&AgentToConsole::PointerShape(PointerShape {
        id: 1,
        image: Some(image),
    }));
    remote.handle_agent_message(&AgentToConsole::Pointer(Cursor {
        x: 40,
        y: 180,
        shape: None,
    }));
    let remote_spot = (46, top + 186);
    xvfb.wait_for_picture(
        &window,
        "the pointer's shape where the agent says",
        |image| image.is_near(remote_spot.0, remote_spot.1, MAGENTA, 6),
    );
    eprintln!("ok: the pointer's shape drawn where the agent says");
    let (local_x, local_y) = (200, top + 60);
    xvfb.xdotool(&[
        "mousemove",
        "--window",
        &window,
        &local_x.to_string(),
        &local_y.to_string(),
    ]);
    let shot = xvfb.wait_for_picture(
        &window,
        "the pointer's shape under the technician's own pointer",
        |image| image.is_near(local_x + 6, local_y + 6, MAGENTA, 6),
    );
    if !shot.is_near(remote_spot.0, remote_spot.1, BLUE, 6) {
        return Err(format!(
            "the shape is drawn twice: at the technician's pointer and still at the agent's \
             (pixel {:?}; screenshot in {})",
            shot.pixel(remote_spot.0, remote_spot.1),
            shot.save("viewer-pointer").display()
        ));
    }
    eprintln!("ok: the pointer's shape drawn under the technician's own pointer");
    Ok(())
}

fn main() {
    if !tools_available() {
        return;
    }
    let xvfb = Xvfb::start();
    // Set before any thread starts: the window (this thread) reads them.
    std::env::set_var("DISPLAY", &xvfb.display);
    std::env::set_var("WINIT_X11_SCALE_FACTOR", "1");
    std::env::set_var("LIBGL_ALWAYS_SOFTWARE", "1");

    let (io, remote, mut receivers) = viewer_channel();
    let mut options = ViewerOptions::new("test-device", "123 456");
    options.employee_name = Some("Sam Employee".into());
    options.granted = Capabilities::CONTROL;
    options.initial_size = [FRAME_WIDTH as f32, FRAME_HEIGHT as f32];
    options.close_after_end = Duration::from_millis(300);

    let driver = std::thread::scope(|scope| {
        let driver = scope.spawn(|| {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                drive(&xvfb, &remote, &mut receivers)
            }))
            .unwrap_or_else(|_| Err("the driver panicked (see above)".into()));
            // Whatever happened, end the session so the window closes.
            remote.send(ViewerEvent::Ended {
                by: EndedBy::Employee,
            });
            outcome
        });
        let exit = run_viewer(options, io);
        let outcome = driver
            .join()
            .unwrap_or_else(|_| Err("driver thread failed".into()));
        (exit, outcome)
    });
    let (exit, outcome) = driver;
    let mut failures = Vec::new();
    if let Err(error) = outcome {
        failures.push(error);
    }
    match exit {
        Ok(ViewerExit {
            ended_by: EndedBy::Employee,
            end_sent: false,
        }) => eprintln!("ok: the window closed by itself after the employee ended the session"),
        other => failures.push(format!(
            "run_viewer returned {other:?}, expected ended by the employee"
        )),
    }
    if let Ok(command) = receivers.commands.try_recv() {
        failures.push(format!("unexpected command after the end: {command:?}"));
    }
    if failures.is_empty() {
        println!("test viewer_x11 ... ok");
        println!("test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
    } else {
        for failure in &failures {
            eprintln!("FAILED: {failure}");
        }
        println!("test viewer_x11 ... FAILED");
        println!("test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out");
        // `exit` skips destructors: stop Xvfb first.
        drop(xvfb);
        std::process::exit(1);
    }
}
