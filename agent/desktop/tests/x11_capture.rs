//! X11 capture against a private Xvfb: pixels, damage, MIT-SHM over memfd,
//! the GetImage fallback and the cursor.

// The X11 backends exist on Unix only (see src/lib.rs).
#![cfg(unix)]
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod common;

use common::{bgr, xvfb_or_skip, TestWindow, QUADRANTS};
use deskside_desktop::{CaptureMethod, Capturer, Frame, X11Capturer, X11Options};
use x11rb::protocol::xproto::EventMask;

const W: u32 = 1280;
const H: u32 = 800;

/// Checks the colour at the centre of each quadrant of a full-screen window.
fn assert_quadrants(frame: &Frame<'_>) {
    assert_eq!((frame.width, frame.height), (W, H));
    let centres = [
        (W / 4, H / 4),
        (3 * W / 4, H / 4),
        (W / 4, 3 * H / 4),
        (3 * W / 4, 3 * H / 4),
    ];
    for ((x, y), rgb) in centres.into_iter().zip(QUADRANTS) {
        let p = frame.pixel(x, y).unwrap();
        assert_eq!(p[..3], bgr(rgb), "pixel ({x},{y})");
    }
    // Exact quadrant edges: the last red column and the first green one.
    assert_eq!(frame.pixel(W / 2 - 1, 0).unwrap()[..3], bgr(QUADRANTS[0]));
    assert_eq!(frame.pixel(W / 2, 0).unwrap()[..3], bgr(QUADRANTS[1]));
    assert_eq!(frame.pixel(W - 1, H - 1).unwrap()[..3], bgr(QUADRANTS[3]));
}

#[test]
fn shm_capture_returns_the_drawn_pattern_and_tracks_damage() {
    let Some(x) = xvfb_or_skip(
        "shm_capture_returns_the_drawn_pattern_and_tracks_damage",
        W,
        H,
    ) else {
        return;
    };
    let win = TestWindow::open(x.display(), 0, 0, W as u16, H as u16, EventMask::NO_EVENT);
    win.draw_quadrants();

    let mut cap = X11Capturer::open(x.display()).unwrap();
    assert_eq!(cap.method(), CaptureMethod::Shm);
    assert!(cap.tracks_damage());
    let monitors = cap.monitors().unwrap();
    assert_eq!(monitors.len(), 1, "{monitors:?}");
    assert_eq!(
        (
            monitors[0].x,
            monitors[0].y,
            monitors[0].width,
            monitors[0].height
        ),
        (0, 0, W, H)
    );

    let first = cap.capture(0).unwrap();
    assert!(first.changed, "the first capture always reports a change");
    assert_quadrants(&first.frame);
    // Still on the MIT-SHM path after a real capture (no silent fallback).
    assert_eq!(cap.method(), CaptureMethod::Shm);

    let second = cap.capture(0).unwrap();
    assert!(!second.changed, "nothing was drawn, so nothing changed");
    assert_quadrants(&second.frame);

    // A 10x10 yellow square inside the red quadrant.
    win.fill(100, 50, 10, 10, 0xffff00);
    let third = cap.capture(0).unwrap();
    assert!(third.changed, "drawing must be reported as a change");
    assert_eq!(third.frame.pixel(105, 55).unwrap()[..3], bgr(0xffff00));
    assert_eq!(third.frame.pixel(99, 55).unwrap()[..3], bgr(QUADRANTS[0]));
    assert!(!cap.capture(0).unwrap().changed);

    assert!(matches!(
        cap.capture(1),
        Err(deskside_desktop::CaptureError::NoSuchMonitor { index: 1, count: 1 })
    ));
}

#[test]
fn only_the_damaged_rectangles_are_grabbed_and_the_picture_stays_whole() {
    let Some(x) = xvfb_or_skip(
        "only_the_damaged_rectangles_are_grabbed_and_the_picture_stays_whole",
        W,
        H,
    ) else {
        return;
    };
    let win = TestWindow::open(x.display(), 0, 0, W as u16, H as u16, EventMask::NO_EVENT);
    win.draw_quadrants();
    let mut cap = X11Capturer::open(x.display()).unwrap();
    assert_quadrants(&cap.capture(0).unwrap().frame);
    assert_eq!(cap.damage(), None, "the first capture grabs everything");
    // Two small squares far apart, in two captures: each capture grabs
    // only its square, and the picture keeps the earlier one.
    win.fill(100, 50, 10, 10, 0xffff00);
    let frame = cap.capture(0).unwrap().frame;
    assert_eq!(frame.pixel(105, 55).unwrap()[..3], bgr(0xffff00));
    let damage = cap
        .damage()
        .expect("a partial grab reports its damage")
        .to_vec();
    assert!(
        damage
            .iter()
            .all(|r| r.x >= 100 && r.y >= 50 && r.x + r.width <= 110 && r.y + r.height <= 60),
        "{damage:?}"
    );
    win.fill(W as i16 - 20, H as i16 - 20, 10, 10, 0x00ffff);
    let frame = cap.capture(0).unwrap().frame;
    assert_eq!(frame.pixel(W - 15, H - 15).unwrap()[..3], bgr(0x00ffff));
    assert_eq!(frame.pixel(105, 55).unwrap()[..3], bgr(0xffff00));
    assert_eq!(
        frame.pixel(3 * W / 4, H / 4).unwrap()[..3],
        bgr(QUADRANTS[1])
    );
    assert_eq!(
        frame.pixel(W / 4, 3 * H / 4).unwrap()[..3],
        bgr(QUADRANTS[2])
    );
    // Nothing drawn: nothing changed, and the damage says so.
    assert!(!cap.capture(0).unwrap().changed);
    assert_eq!(cap.damage(), Some(&[][..]));
    // A large change is grabbed whole again, and is right.
    win.draw_quadrants();
    let frame = cap.capture(0).unwrap().frame;
    assert_quadrants(&frame);
}

#[test]
fn shm_segment_is_a_private_memfd_not_a_dev_shm_file() {
    let Some(x) = xvfb_or_skip(
        "shm_segment_is_a_private_memfd_not_a_dev_shm_file",
        320,
        200,
    ) else {
        return;
    };
    let list_dev_shm = || -> Vec<String> {
        std::fs::read_dir("/dev/shm")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut cap = X11Capturer::open(x.display()).unwrap();
    cap.capture(0).unwrap();
    assert_eq!(cap.method(), CaptureMethod::Shm);

    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps
        .lines()
        .find(|l| l.contains("deskside-capture"))
        .expect("the capture buffer is mapped");
    assert!(line.contains("/memfd:deskside-capture"), "{line}");
    assert!(
        !list_dev_shm().iter().any(|n| n.contains("deskside")),
        "{:?}",
        list_dev_shm()
    );
}

#[test]
fn getimage_fallback_returns_the_same_pixels() {
    let Some(x) = xvfb_or_skip("getimage_fallback_returns_the_same_pixels", W, H) else {
        return;
    };
    let win = TestWindow::open(x.display(), 0, 0, W as u16, H as u16, EventMask::NO_EVENT);
    win.draw_quadrants();
    let mut cap = X11Capturer::open_with(
        x.display(),
        X11Options {
            shm: false,
            damage: false,
        },
    )
    .unwrap();
    assert_eq!(cap.method(), CaptureMethod::GetImage);
    assert!(!cap.tracks_damage());
    let c = cap.capture(0).unwrap();
    assert!(c.changed);
    assert_quadrants(&c.frame);
    // Without damage tracking every capture says "changed".
    assert!(cap.capture(0).unwrap().changed);
}

#[test]
fn cursor_reports_position_and_shape_once() {
    let Some(x) = xvfb_or_skip("cursor_reports_position_and_shape_once", 320, 200) else {
        return;
    };
    let win = TestWindow::open(x.display(), 0, 0, 320, 200, EventMask::NO_EVENT);
    use x11rb::connection::Connection as _;
    use x11rb::protocol::xproto::ConnectionExt as _;
    win.conn
        .warp_pointer(x11rb::NONE, win.root, 0, 0, 0, 0, 37, 41)
        .unwrap();
    win.conn.flush().unwrap();
    win.sync();

    let mut cap = X11Capturer::open(x.display()).unwrap();
    let (px, py, shape) = cap.cursor().unwrap().expect("pointer position");
    assert_eq!((px, py), (37, 41));
    let shape = shape.expect("the first call carries the shape");
    assert!(shape.width > 0 && shape.height > 0);
    assert_eq!(
        shape.rgba.len(),
        usize::from(shape.width) * usize::from(shape.height) * 4
    );
    assert!(
        shape.rgba.chunks(4).any(|p| p[3] == 0xff),
        "some opaque pixels"
    );
    assert!(
        shape.rgba.chunks(4).any(|p| p[3] == 0),
        "some transparent pixels"
    );
    let (_, _, again) = cap.cursor().unwrap().unwrap();
    assert_eq!(again, None, "unchanged shape is not sent again");
}

#[test]
fn a_second_monitor_is_listed_and_captured_at_its_offset() {
    let Some(x) = xvfb_or_skip(
        "a_second_monitor_is_listed_and_captured_at_its_offset",
        W,
        H,
    ) else {
        return;
    };
    x.split_monitors(2).unwrap();
    let win = TestWindow::open(x.display(), 0, 0, W as u16, H as u16, EventMask::NO_EVENT);
    win.draw_quadrants();

    let mut cap = X11Capturer::open(x.display()).unwrap();
    let monitors = cap.monitors().unwrap();
    let geometry: Vec<(i32, i32, u32, u32)> = monitors
        .iter()
        .map(|m| (m.x, m.y, m.width, m.height))
        .collect();
    assert_eq!(geometry, [(0, 0, W / 2, H), (W as i32 / 2, 0, W / 2, H)]);
    assert!(monitors[0].primary && !monitors[1].primary);

    // The right monitor holds the green and white quadrants, at (0,0) of
    // its own frame.
    let right = cap.capture(1).unwrap();
    assert_eq!((right.frame.width, right.frame.height), (W / 2, H));
    assert_eq!(right.frame.pixel(0, 0).unwrap()[..3], bgr(QUADRANTS[1]));
    assert_eq!(
        right.frame.pixel(W / 4, 3 * H / 4).unwrap()[..3],
        bgr(QUADRANTS[3])
    );
    let left = cap.capture(0).unwrap();
    assert_eq!(
        left.frame.pixel(W / 2 - 1, 0).unwrap()[..3],
        bgr(QUADRANTS[0])
    );
    assert_eq!(left.frame.pixel(0, H - 1).unwrap()[..3], bgr(QUADRANTS[2]));

    // Drawing on the left monitor changes the left one only.
    assert!(!cap.capture(1).unwrap().changed);
    win.fill(10, 10, 20, 20, 0xffff00);
    assert!(
        !cap.capture(1).unwrap().changed,
        "the right monitor did not change"
    );
    assert!(cap.capture(0).unwrap().changed);
}
