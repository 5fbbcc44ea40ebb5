//! The Windows backends against a real desktop: a window of this test paints
//! a known picture with GDI and the GDI capturer must find its pixels where
//! the window is; `SendInputSink` types and clicks into a window of this
//! test, which must receive exactly that.
//!
//! Built for Windows only. Under Wine they need an X display (Wine draws
//! windows through X11): scripts/windows-tests runs them on Xvfb. Without
//! one they are skipped with a message, or fail when `CI=true`.
#![cfg(windows)]
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use deskside_desktop::{
    wine_version, CaptureBackend, Capturer, DesktopEvent, GdiCapturer, InputSink, SendInputSink,
    WindowsCapturer,
};
use deskside_protocol::session::{Key, MouseButton};
use windows::core::PCWSTR;
use windows::Win32::Foundation::{COLORREF, HWND, LPARAM, LRESULT, POINT, RECT, WPARAM};
use windows::Win32::Graphics::Gdi::{
    BeginPaint, ClientToScreen, CreateSolidBrush, DeleteObject, EndPaint, FillRect, InvalidateRect,
    UpdateWindow, HGDIOBJ, PAINTSTRUCT,
};
use windows::Win32::System::LibraryLoader::GetModuleHandleW;
use windows::Win32::UI::Input::KeyboardAndMouse::SetFocus;
use windows::Win32::UI::WindowsAndMessaging::{
    CreateWindowExW, DefWindowProcW, DestroyWindow, DispatchMessageW, GetForegroundWindow,
    LoadCursorW, PeekMessageW, RegisterClassW, SetForegroundWindow, ShowWindow, TranslateMessage,
    IDC_ARROW, MSG, PM_REMOVE, SW_SHOW, WINDOW_EX_STYLE, WM_CHAR, WM_KEYDOWN, WM_LBUTTONDOWN,
    WM_LBUTTONUP, WM_MOUSEWHEEL, WM_PAINT, WM_RBUTTONDOWN, WNDCLASSW, WS_POPUP, WS_VISIBLE,
};

/// The picture: four vertical bars of 40 x 120 pixels, as (r, g, b).
const BARS: [(u8, u8, u8); 4] = [
    (0xd0, 0x20, 0x30),
    (0x20, 0xc0, 0x40),
    (0x30, 0x40, 0xe0),
    (0xf0, 0xe0, 0x10),
];
const BAR_W: i32 = 40;
const PICTURE_H: i32 = 120;
/// The second bar's colour after the repaint of the damage check.
const REPAINTED: (u8, u8, u8) = (0x11, 0x22, 0x33);
/// Set to 1 to paint the second bar in REPAINTED.
static REPAINT: AtomicU32 = AtomicU32::new(0);

/// What the input window received.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Received {
    Char(u16),
    KeyDown(u16),
    LeftDown(i32, i32),
    LeftUp(i32, i32),
    RightDown(i32, i32),
    Wheel(i16),
}
static RECEIVED: Mutex<Vec<Received>> = Mutex::new(Vec::new());

/// Whether the test can run here; skips (or fails under CI) without a
/// display under Wine.
fn display_available(test: &str) -> bool {
    let Some(wine) = wine_version() else {
        return true;
    };
    if std::env::var("DISPLAY").is_ok_and(|d| !d.is_empty()) {
        return true;
    }
    let message = format!(
        "{test}: Wine {wine} has no X display (DISPLAY is unset), so it cannot show windows; run under Xvfb (scripts/windows-tests does)"
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}");
    }
    eprintln!("SKIPPED {message}");
    false
}

fn colorref((r, g, b): (u8, u8, u8)) -> COLORREF {
    COLORREF(u32::from(r) | u32::from(g) << 8 | u32::from(b) << 16)
}

unsafe extern "system" fn picture_proc(hwnd: HWND, msg: u32, w: WPARAM, l: LPARAM) -> LRESULT {
    if msg == WM_PAINT {
        let mut paint = PAINTSTRUCT::default();
        // SAFETY: the window is ours and being painted; BeginPaint/EndPaint
        // pair up, brushes are deleted after use.
        unsafe {
            let dc = BeginPaint(hwnd, &mut paint);
            for (i, color) in BARS.iter().enumerate() {
                let color = if i == 1 && REPAINT.load(Ordering::SeqCst) == 1 {
                    REPAINTED
                } else {
                    *color
                };
                let brush = CreateSolidBrush(colorref(color));
                let x = i as i32 * BAR_W;
                let rect = RECT {
                    left: x,
                    top: 0,
                    right: x + BAR_W,
                    bottom: PICTURE_H,
                };
                FillRect(dc, &rect, brush);
                let _ = DeleteObject(HGDIOBJ::from(brush));
            }
            let _ = EndPaint(hwnd, &paint);
        }
        return LRESULT(0);
    }
    // SAFETY: default handling of our window's other messages.
    unsafe { DefWindowProcW(hwnd, msg, w, l) }
}

unsafe extern "system" fn input_proc(hwnd: HWND, msg: u32, w: WPARAM, l: LPARAM) -> LRESULT {
    let point = || {
        (
            (l.0 & 0xffff) as i16 as i32,
            ((l.0 >> 16) & 0xffff) as i16 as i32,
        )
    };
    let event = match msg {
        WM_CHAR => Some(Received::Char(w.0 as u16)),
        WM_KEYDOWN => Some(Received::KeyDown(w.0 as u16)),
        WM_LBUTTONDOWN => Some(Received::LeftDown(point().0, point().1)),
        WM_LBUTTONUP => Some(Received::LeftUp(point().0, point().1)),
        WM_RBUTTONDOWN => Some(Received::RightDown(point().0, point().1)),
        WM_MOUSEWHEEL => Some(Received::Wheel(((w.0 >> 16) & 0xffff) as u16 as i16)),
        _ => None,
    };
    if let Some(event) = event {
        RECEIVED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
    }
    // SAFETY: default handling of our window's messages.
    unsafe { DefWindowProcW(hwnd, msg, w, l) }
}

/// A borderless window of this test at desktop (`x`, `y`).
struct TestWindow {
    hwnd: HWND,
}

impl TestWindow {
    fn new(
        class: &str,
        proc: unsafe extern "system" fn(HWND, u32, WPARAM, LPARAM) -> LRESULT,
        x: i32,
        y: i32,
        w: i32,
        h: i32,
    ) -> Self {
        let name: Vec<u16> = class.encode_utf16().chain([0]).collect();
        // SAFETY: registers a class whose name outlives the window (leaked
        // below); the module handle is this program's.
        unsafe {
            let instance = GetModuleHandleW(PCWSTR::null()).expect("module handle");
            let class_name = PCWSTR(name.as_ptr());
            let wc = WNDCLASSW {
                lpfnWndProc: Some(proc),
                hInstance: instance.into(),
                lpszClassName: class_name,
                // The standard arrow over the window (a class without a
                // cursor leaves the pointer hidden under Wine).
                hCursor: LoadCursorW(None, IDC_ARROW).expect("the arrow cursor"),
                ..Default::default()
            };
            RegisterClassW(&wc);
            let hwnd = CreateWindowExW(
                WINDOW_EX_STYLE(0),
                class_name,
                class_name,
                WS_POPUP | WS_VISIBLE,
                x,
                y,
                w,
                h,
                None,
                None,
                Some(instance.into()),
                None,
            )
            .expect("CreateWindowExW");
            std::mem::forget(name);
            let _ = ShowWindow(hwnd, SW_SHOW);
            let _ = UpdateWindow(hwnd);
            Self { hwnd }
        }
    }

    /// The desktop position of the window's client origin.
    fn origin(&self) -> (i32, i32) {
        let mut p = POINT { x: 0, y: 0 };
        // SAFETY: our window and an out-pointer to a local.
        let _ = unsafe { ClientToScreen(self.hwnd, &mut p) };
        (p.x, p.y)
    }
}

impl Drop for TestWindow {
    fn drop(&mut self) {
        // SAFETY: our window, destroyed once, on the thread that made it.
        let _ = unsafe { DestroyWindow(self.hwnd) };
    }
}

/// Handles this thread's messages for `time`.
fn pump(time: Duration) {
    let until = Instant::now() + time;
    loop {
        let mut msg = MSG::default();
        // SAFETY: the standard message loop on this thread's queue.
        unsafe {
            while PeekMessageW(&mut msg, None, 0, 0, PM_REMOVE).as_bool() {
                let _ = TranslateMessage(&msg);
                DispatchMessageW(&msg);
            }
        }
        if Instant::now() >= until {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `check` while pumping messages, up to `limit`.
fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        pump(Duration::from_millis(20));
        if check() {
            return true;
        }
    }
    check()
}

/// Whether monitor-relative pixel (`x`, `y`) of the frame is `(r, g, b)`.
fn pixel_is(frame: &deskside_desktop::Frame<'_>, x: i32, y: i32, (r, g, b): (u8, u8, u8)) -> bool {
    let (Ok(x), Ok(y)) = (u32::try_from(x), u32::try_from(y)) else {
        return false;
    };
    frame.pixel(x, y).is_some_and(|p| p[..3] == [b, g, r])
}

#[test]
fn gdi_capture_finds_a_window_picture_and_its_damage() {
    if !display_available("gdi_capture_finds_a_window_picture_and_its_damage") {
        return;
    }
    let window = TestWindow::new(
        "deskside-picture",
        picture_proc,
        40,
        40,
        BAR_W * 4,
        PICTURE_H,
    );
    let mut capturer = GdiCapturer::open().expect("GDI capturer");
    let monitors = capturer.monitors().expect("monitors");
    assert!(!monitors.is_empty(), "no monitor listed");
    let (wx, wy) = window.origin();
    let index = monitors
        .iter()
        .position(|m| {
            wx >= m.x && wy >= m.y && wx < m.x + m.width as i32 && wy < m.y + m.height as i32
        })
        .expect("the window is on a monitor") as u8;
    let monitor = monitors[usize::from(index)].clone();
    let (ox, oy) = (wx - monitor.x, wy - monitor.y);
    // Probe points: each bar's corners and centre, one pixel inside.
    let probes = |colors: [(u8, u8, u8); 4]| -> Vec<(i32, i32, (u8, u8, u8))> {
        let mut v = Vec::new();
        for (i, c) in colors.iter().enumerate() {
            let x0 = ox + i as i32 * BAR_W;
            for (dx, dy) in [
                (1, 1),
                (BAR_W - 2, 1),
                (BAR_W / 2, PICTURE_H / 2),
                (1, PICTURE_H - 2),
                (BAR_W - 2, PICTURE_H - 2),
            ] {
                v.push((x0 + dx, oy + dy, *c));
            }
        }
        v
    };
    let expected = probes(BARS);
    let mut seen = String::new();
    let found = wait_until(Duration::from_secs(15), || {
        let captured = capturer.capture(index).expect("capture");
        let frame = captured.frame;
        assert_eq!((frame.width, frame.height), (monitor.width, monitor.height));
        let bad: Vec<_> = expected
            .iter()
            .filter(|(x, y, c)| !pixel_is(&frame, *x, *y, *c))
            .map(|(x, y, _)| (*x, *y, frame.pixel(*x as u32, *y as u32)))
            .collect();
        seen = format!("{bad:?}");
        bad.is_empty()
    });
    assert!(found, "the window's picture at ({ox},{oy}) on monitor {index} was not captured; wrong pixels (x, y, [b, g, r, x]): {seen}");
    // The screen is still: the next capture says unchanged.
    let still = capturer.capture(index).expect("capture");
    assert!(!still.changed, "a still screen was reported as changed");
    assert_eq!(capturer.damage(), Some(&[][..]));
    // Repaint the second bar: the capture changes, the damage covers it.
    REPAINT.store(1, Ordering::SeqCst);
    // SAFETY: our window; invalidating makes it repaint.
    unsafe {
        let _ = InvalidateRect(Some(window.hwnd), None, false);
    }
    let mut colors = BARS;
    colors[1] = REPAINTED;
    let repainted = probes(colors);
    let mut damage = None;
    let changed = wait_until(Duration::from_secs(15), || {
        let captured = capturer.capture(index).expect("capture");
        let ok = captured.changed
            && repainted
                .iter()
                .all(|(x, y, c)| pixel_is(&captured.frame, *x, *y, *c));
        damage = capturer.damage().map(<[_]>::to_vec);
        ok
    });
    assert!(changed, "the repainted bar was not captured");
    let damage = damage.expect("GDI reports damage");
    let covers = |y: i32| {
        damage
            .iter()
            .any(|r| y >= r.y as i32 && y < (r.y + r.height) as i32)
    };
    assert!(
        covers(oy + 1) && covers(oy + PICTURE_H - 2),
        "damage {damage:?} misses the repainted rows {}..{}",
        oy,
        oy + PICTURE_H
    );
}

#[test]
fn the_helper_knows_its_interactive_desktop() {
    // A test program runs in the signed-in session (Wine's too): its
    // window station is the interactive WinSta0.
    let desktop = deskside_desktop::windows_desktop().expect("an interactive desktop");
    assert_eq!(desktop.to_ascii_lowercase(), r"winsta0\default");
}

#[test]
fn windows_capturer_falls_back_to_gdi_under_wine() {
    if wine_version().is_none()
        || !display_available("windows_capturer_falls_back_to_gdi_under_wine")
    {
        // On real Windows either backend is right.
        return;
    }
    let dxgi = deskside_desktop::DxgiCapturer::open().expect_err("Wine has no Desktop Duplication");
    eprintln!("DXGI Desktop Duplication under Wine: {dxgi}");
    let mut capturer = WindowsCapturer::open().expect("a capturer");
    assert_eq!(
        capturer.backend(),
        CaptureBackend::Gdi,
        "Wine has no Desktop Duplication"
    );
    let captured = capturer.capture(0).expect("capture");
    assert!(captured.changed && captured.frame.width > 0);
}

#[test]
fn sendinput_types_and_clicks_into_a_window() {
    if !display_available("sendinput_types_and_clicks_into_a_window") {
        return;
    }
    let window = TestWindow::new("deskside-input", input_proc, 400, 300, 200, 150);
    // SAFETY: our window, on this thread.
    unsafe {
        let _ = SetForegroundWindow(window.hwnd);
        let _ = SetFocus(Some(window.hwnd));
    }
    assert!(
        // SAFETY: no arguments.
        wait_until(Duration::from_secs(10), || unsafe { GetForegroundWindow() }
            == window.hwnd),
        "the test window did not become the foreground window"
    );
    let (wx, wy) = window.origin();
    let mut sink = SendInputSink::open().expect("SendInput sink");
    let events = [
        DesktopEvent::MoveTo {
            x: wx + 30,
            y: wy + 20,
        },
        DesktopEvent::Button {
            button: MouseButton::Left,
            pressed: true,
        },
        DesktopEvent::Button {
            button: MouseButton::Left,
            pressed: false,
        },
        DesktopEvent::MoveTo {
            x: wx + 151,
            y: wy + 97,
        },
        DesktopEvent::Button {
            button: MouseButton::Right,
            pressed: true,
        },
        DesktopEvent::Button {
            button: MouseButton::Right,
            pressed: false,
        },
        DesktopEvent::Scroll { dx: 0, dy: 1 },
        DesktopEvent::Text("Hé!\n".into()),
        DesktopEvent::Key {
            key: Key::Char('a'),
            pressed: true,
        },
        DesktopEvent::Key {
            key: Key::Char('a'),
            pressed: false,
        },
        DesktopEvent::Key {
            key: Key::Left,
            pressed: true,
        },
        DesktopEvent::Key {
            key: Key::Left,
            pressed: false,
        },
    ];
    let mut pointer = GdiCapturer::open().expect("GDI capturer");
    for (i, event) in events.iter().enumerate() {
        sink.apply(event).expect("SendInput");
        pump(Duration::from_millis(20));
        if i == 0 {
            // The capturer sees the pointer where SendInput put it, with
            // its shape the first time (an arrow: some opaque pixels).
            let (x, y, shape) = pointer
                .cursor()
                .expect("cursor")
                .expect("a pointer position");
            assert_eq!(
                (x, y),
                (wx + 30, wy + 20),
                "the pointer is not where it was moved"
            );
            let shape = shape.expect("the first cursor call carries the shape");
            assert!(
                shape.width > 1 && shape.height > 1,
                "{}x{}",
                shape.width,
                shape.height
            );
            assert_eq!(
                shape.rgba.len(),
                usize::from(shape.width) * usize::from(shape.height) * 4
            );
            assert!(
                shape.rgba.chunks(4).any(|p| p[3] == 0xff),
                "an invisible cursor shape"
            );
            assert!(
                shape.rgba.chunks(4).any(|p| p[3] == 0),
                "a cursor shape with no transparent pixel"
            );
            let again = pointer
                .cursor()
                .expect("cursor")
                .expect("a pointer position");
            assert_eq!(again.2, None, "the unchanged shape was sent again");
        }
    }
    let typed: Vec<u16> = "Hé!\ra".encode_utf16().collect();
    let chars = || -> Vec<u16> {
        RECEIVED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(|e| match e {
                Received::Char(c) => Some(*c),
                _ => None,
            })
            .collect()
    };
    let has = |e: &Received| {
        RECEIVED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(e)
    };
    let expected = [
        Received::LeftDown(30, 20),
        Received::LeftUp(30, 20),
        Received::RightDown(151, 97),
        Received::Wheel(-120),
        Received::KeyDown(0x41),
        Received::KeyDown(0x25),
    ];
    let all = wait_until(Duration::from_secs(10), || {
        chars() == typed && expected.iter().all(has)
    });
    let received = RECEIVED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    assert!(
        all,
        "the window did not receive exactly the injected input; typed {:?} (want {:?}), received {received:?}",
        String::from_utf16_lossy(&chars()),
        String::from_utf16_lossy(&typed),
    );
}
