//! Input injection with enigo against a private Xvfb: a test window must
//! receive the click at the mapped position and keys spelling the text.

// The X11 backends exist on Unix only (see src/lib.rs).
#![cfg(unix)]
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod common;

use std::time::Duration;

use common::{xvfb_or_skip, TestWindow};
use deskside_desktop::{map_event, DesktopEvent, EnigoSink, InputSink};
use deskside_protocol::session::{InputEvent, Key, Monitor, MouseButton};
use x11rb::connection::Connection as _;
use x11rb::protocol::xproto::{ConnectionExt as _, EventMask, InputFocus, KeyButMask};
use x11rb::protocol::Event;

/// The character a key press types, from the keyboard mapping (ASCII only).
fn typed_char(win: &TestWindow, keycode: u8, state: KeyButMask) -> Option<char> {
    let setup = win.conn.setup();
    let map = win
        .conn
        .get_keyboard_mapping(setup.min_keycode, setup.max_keycode - setup.min_keycode + 1)
        .unwrap()
        .reply()
        .unwrap();
    let per = usize::from(map.keysyms_per_keycode);
    let base = usize::from(keycode - setup.min_keycode) * per;
    let shifted = state.contains(KeyButMask::SHIFT);
    let sym = map.keysyms.get(base + usize::from(shifted)).copied()?;
    (0x20..=0x7e).contains(&sym).then(|| char::from(sym as u8))
}

#[test]
fn enigo_moves_clicks_scrolls_and_types_into_a_window() {
    let Some(x) = xvfb_or_skip(
        "enigo_moves_clicks_scrolls_and_types_into_a_window",
        1280,
        800,
    ) else {
        return;
    };
    // The window covers desktop (100,100)-(500,400).
    let win = TestWindow::open(
        x.display(),
        100,
        100,
        400,
        300,
        EventMask::BUTTON_PRESS | EventMask::KEY_PRESS,
    );
    win.conn
        .set_input_focus(InputFocus::POINTER_ROOT, win.window, x11rb::CURRENT_TIME)
        .unwrap();
    win.conn.flush().unwrap();
    win.sync();

    // The console shows the monitor at half size: frame (150,100) is desktop
    // (300,200), window (200,100).
    let monitor = Monitor {
        index: 0,
        name: "screen".into(),
        x: 0,
        y: 0,
        width: 1280,
        height: 800,
        primary: true,
    };
    let console_events = [
        InputEvent::PointerMove { x: 150, y: 100 },
        InputEvent::Button {
            button: MouseButton::Left,
            pressed: true,
        },
        InputEvent::Button {
            button: MouseButton::Left,
            pressed: false,
        },
        InputEvent::Scroll { dx: 0, dy: 1 },
        InputEvent::Text {
            text: "Hello, World!".into(),
        },
        InputEvent::Key {
            key: Key::Return,
            pressed: true,
        },
        InputEvent::Key {
            key: Key::Return,
            pressed: false,
        },
    ];
    let mut sink = EnigoSink::open(x.display()).unwrap();
    for ev in &console_events {
        let mapped = map_event(ev, &monitor, 640, 400).expect("every event maps");
        sink.apply(&mapped).unwrap();
    }
    assert_eq!(
        map_event(&console_events[0], &monitor, 640, 400),
        Some(DesktopEvent::MoveTo { x: 300, y: 200 })
    );

    let timeout = Duration::from_secs(10);
    let Event::ButtonPress(click) = win.wait_for(timeout, |e| matches!(e, Event::ButtonPress(_)))
    else {
        unreachable!()
    };
    assert_eq!(click.detail, 1, "left button");
    assert_eq!((click.root_x, click.root_y), (300, 200), "desktop position");
    assert_eq!(
        (click.event_x, click.event_y),
        (200, 100),
        "window position"
    );
    let Event::ButtonPress(scroll) = win.wait_for(timeout, |e| matches!(e, Event::ButtonPress(_)))
    else {
        unreachable!()
    };
    assert_eq!(scroll.detail, 5, "scroll down is button 5");

    let mut typed = String::new();
    while typed.len() < 13 {
        let Event::KeyPress(k) = win.wait_for(timeout, |e| matches!(e, Event::KeyPress(_))) else {
            unreachable!()
        };
        typed.push(typed_char(&win, k.detail, k.state).unwrap_or('?'));
    }
    assert_eq!(typed, "Hello, World!");
    let Event::KeyPress(ret) = win.wait_for(timeout, |e| matches!(e, Event::KeyPress(_))) else {
        unreachable!()
    };
    let setup = win.conn.setup();
    let map = win
        .conn
        .get_keyboard_mapping(ret.detail, 1)
        .unwrap()
        .reply()
        .unwrap();
    let _ = setup;
    assert_eq!(map.keysyms.first().copied(), Some(0xff0d), "Return keysym");
}
