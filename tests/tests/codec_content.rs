//! The codec chosen by content (issue 15), end to end with the real relay,
//! agent and console on Xvfb: while a page scrolls the agent sends each
//! frame as a copy of the rows that moved plus the uncovered strip
//! (lossless tiles with copies, which this console announces it decodes),
//! never H.264 and never the whole moved window; and soon after the scroll
//! stops the console's picture is pixel-exact (the last frame is).
//!
//! Needs Xvfb, xdotool and ImageMagick's `import`: with `CI=true` a missing
//! one fails the test; elsewhere the test is skipped with a message.

use std::time::{Duration, Instant};

use deskside_tests::stage::{SessionStage, StageOptions};
use deskside_tests::x11::{prerequisites, screenshot, xdotool};
use serde_json::Value;

const DISPLAYS: std::ops::RangeInclusive<u16> = 150..=159;
const AGENT_SCREEN: (u32, u32) = (1024, 768);
/// The scrolling window (below and right of the employee's session
/// indicator, which stays on top at the top-left): `X, Y, W, H`.
const PAGE: (u32, u32, u32, u32) = (400, 300, 620, 460);
/// Scroll frames (3 s at 30 fps).
const SCROLL_FRAMES: &str = "90";
/// The product's goal is under a second from the end of the motion to an
/// exact picture. With copies every frame is exact, so the exact picture
/// is the first frame captured after the scroll's last one; without them
/// (H.264 while it moves) it came 445–694 ms after the stop (debug builds,
/// shared 2-core machine, load average 7–9). The limit leaves room for a
/// loaded machine.
const EXACT_WITHIN: Duration = Duration::from_millis(1_800);

/// FNV-1a 64 of the RGB rows of `PAGE` in an RGB screenshot, as the
/// console's `--probe-region` digests its decoded frames.
fn digest(shot: &(u32, u32, Vec<u8>)) -> String {
    let (width, _, rgb) = shot;
    let (x, y, w, h) = PAGE;
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for row in y..y + h {
        let start = (row as usize * *width as usize + x as usize) * 3;
        for &byte in &rgb[start..start + w as usize * 3] {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

#[test]
fn a_scroll_travels_as_copies_and_the_picture_is_exact_soon_after_it_stops() {
    if !prerequisites() {
        eprintln!("skipped: Xvfb, xdotool or ImageMagick missing");
        return;
    }
    let began = Instant::now();
    let (x, y, w, h) = PAGE;
    let mut stage = SessionStage::start(&StageOptions {
        relay_program: "deskside-relay".into(),
        relay_args: Vec::new(),
        agent_screen: AGENT_SCREEN,
        console_screen: (640, 480),
        displays: DISPLAYS,
        xclient_args: vec![
            "--geometry".into(),
            format!("{w}x{h}+{x}+{y}"),
            "--scroll-page".into(),
            SCROLL_FRAMES.into(),
        ],
        agent_monitors: 1,
    });
    let region = format!("{x},{y},{w},{h}");
    let (session, out) = stage.session(&[
        "--headless",
        "--view-only",
        "--probe-region",
        &region,
        "--duration",
        "60s",
    ]);
    out.until(Duration::from_secs(60), |v| {
        v["state"] == "waiting_for_consent"
    });
    stage.answer_consent(true);
    let mut seen = out.until(Duration::from_secs(60), |v| v["type"] == "frame_region");
    assert!(
        seen.iter().any(|v| v["type"] == "frame_region"),
        "no frame reached the console: {}",
        stage.helper.log()
    );
    // The still page first: the console's picture of it is exact (the
    // session's first pictures, the indicator appearing, have settled).
    let display = stage.agent_x.display().to_owned();
    let still = digest(&screenshot(&display, "root"));
    seen.extend(out.until(Duration::from_secs(30), |v| {
        v["type"] == "frame_region" && v["digest"] == still.as_str()
    }));
    assert!(
        seen.iter().any(|v| v["digest"] == still.as_str()),
        "the still page never showed exactly on the console\nhelper: {}",
        stage.helper.log()
    );

    // Scroll: a wheel-down press on the page starts it.
    let scroll_from_us = deskside_tests::stage::now_us() as u64;
    xdotool(
        &display,
        &[
            "mousemove",
            &(x + w / 2).to_string(),
            &(y + h / 2).to_string(),
            "click",
            "5",
        ],
    );
    let stopped = stage
        .xevents
        .until(Duration::from_secs(30), |v| v["type"] == "scroll_stopped");
    let stopped_us = stopped
        .iter()
        .find(|v| v["type"] == "scroll_stopped")
        .and_then(|v| v["unix_us"].as_u64())
        .unwrap_or_else(|| panic!("the page did not scroll: {stopped:?}"));
    let target = digest(&screenshot(&display, "root"));
    let mut after = out.until(Duration::from_secs(20), |v| {
        v["type"] == "frame_region" && v["digest"] == target.as_str()
    });
    // A little longer: whatever comes after the exact picture.
    after.extend(out.until(Duration::from_secs(2), |_| false));
    drop(session);
    seen.extend(after);

    let frames: Vec<&Value> = seen
        .iter()
        .filter(|v| v["type"] == "frame_region")
        .collect();
    let scrolling: Vec<&Value> = frames
        .iter()
        .copied()
        .filter(|v| {
            v["unix_us"]
                .as_u64()
                .is_some_and(|t| t > scroll_from_us && t <= stopped_us)
        })
        .collect();
    let h264_while_scrolling = scrolling.iter().filter(|v| v["codec"] == "H264").count();
    let with_copies = scrolling.iter().filter(|v| v["copies"] == true).count();
    let bytes: Vec<u64> = scrolling
        .iter()
        .filter_map(|v| v["bytes"].as_u64())
        .collect();
    let mean_bytes = bytes.iter().sum::<u64>() / (bytes.len() as u64).max(1);
    let exact = frames
        .iter()
        .find(|v| v["digest"] == target.as_str() && v["unix_us"].as_u64() > Some(stopped_us));
    let codecs: Vec<String> = frames
        .iter()
        .map(|v| {
            format!(
                "{}{}",
                v["codec"].as_str().unwrap_or("?"),
                if v["keyframe"] == true { "*" } else { "" }
            )
        })
        .collect();
    eprintln!("frames (codec, * keyframe): {}", codecs.join(" "));
    eprintln!(
        "while scrolling: {} frames, {with_copies} with copies, {h264_while_scrolling} H.264, bytes mean {mean_bytes} largest {}",
        scrolling.len(),
        bytes.iter().max().copied().unwrap_or(0)
    );
    assert!(
        scrolling.len() >= 10,
        "only {} frames while the page scrolled for 3 s\nhelper: {}",
        scrolling.len(),
        stage.helper.log()
    );
    // Copies explain a scroll, so H.264 should not start. A loaded machine
    // may capture a few frames mid-redraw in ways copies do not explain
    // (two such frames in three start H.264 for at least 300 ms): a third
    // of the frames is allowed. Without copies H.264 carried all but the
    // first two frames.
    assert!(
        h264_while_scrolling * 3 <= scrolling.len(),
        "{h264_while_scrolling} of {} frames were H.264 while the page scrolled\nhelper: {}",
        scrolling.len(),
        stage.helper.log()
    );
    assert!(
        with_copies * 2 >= scrolling.len(),
        "only {with_copies} of {} frames while scrolling carried copies\nhelper: {}",
        scrolling.len(),
        stage.helper.log()
    );
    let exact = exact.unwrap_or_else(|| {
        panic!(
            "the console's picture never became exact after the scroll\nhelper: {}",
            stage.helper.log()
        )
    });
    assert_eq!(
        exact["codec"], "ZstdTiles",
        "exact pictures come from lossless tiles"
    );
    let delay = Duration::from_micros(
        exact["unix_us"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(stopped_us),
    );
    // Whatever came after it, the last picture is exact too.
    let last_exact = frames
        .last()
        .is_some_and(|v| v["digest"] == target.as_str());
    eprintln!(
        "{with_copies} frames with copies while scrolling; exact picture {} ms after the scroll stopped; test took {:.1} s",
        delay.as_millis(),
        began.elapsed().as_secs_f64()
    );
    assert!(
        delay <= EXACT_WITHIN,
        "the picture became exact {} ms after the scroll stopped (limit {} ms)",
        delay.as_millis(),
        EXACT_WITHIN.as_millis()
    );
    assert!(last_exact, "the last picture is not exact");
}
