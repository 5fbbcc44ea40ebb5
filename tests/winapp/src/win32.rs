//! The Win32 half of the test program: one `WS_POPUP` window painted with
//! GDI from `picture`'s rectangles, a `SetTimer` tick that advances the
//! counter, and a window procedure that appends each key and click to the
//! record file. All `unsafe` of this crate is here.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::fs::File;
use std::io::Write as _;
use std::ptr::null;

use anyhow::{bail, Context as _};
use windows_sys::Win32::Foundation::{HWND, LPARAM, LRESULT, RECT, WPARAM};
use windows_sys::Win32::Graphics::Gdi::{
    BeginPaint, CreateSolidBrush, DeleteObject, EndPaint, FillRect, InvalidateRect, UpdateWindow,
    PAINTSTRUCT,
};
use windows_sys::Win32::System::LibraryLoader::GetModuleHandleW;
use windows_sys::Win32::UI::Input::KeyboardAndMouse::SetFocus;
use windows_sys::Win32::UI::WindowsAndMessaging::{
    CreateWindowExW, DefWindowProcW, DispatchMessageW, GetClientRect, GetMessageW, LoadCursorW,
    PostQuitMessage, RegisterClassW, SetForegroundWindow, SetTimer, ShowWindow, TranslateMessage,
    IDC_ARROW, MSG, SW_SHOW, WM_CHAR, WM_DESTROY, WM_KEYDOWN, WM_LBUTTONDOWN, WM_LBUTTONUP,
    WM_MBUTTONDOWN, WM_MBUTTONUP, WM_PAINT, WM_RBUTTONDOWN, WM_RBUTTONUP, WM_SYSKEYDOWN, WM_TIMER,
    WNDCLASSW, WS_POPUP, WS_VISIBLE,
};

use crate::picture::{self, Button, Fill, Record, Utf16Joiner};
use crate::Args;

/// What the window procedure needs; one window per process.
struct State {
    record: File,
    counter: u32,
    chars: Utf16Joiner,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// Appends one record line and flushes it, so a test reading the file sees
/// every event that was handled. A failed write ends the program: a test
/// must not read a record with holes.
fn append(state: &mut State, record: &Record) {
    let line = format!("{}\n", record.to_json());
    if let Err(e) = state
        .record
        .write_all(line.as_bytes())
        .and_then(|()| state.record.flush())
    {
        eprintln!("deskside-testapp-win: error: could not write the record file: {e}");
        std::process::exit(1);
    }
}

fn with_state(f: impl FnOnce(&mut State)) {
    STATE.with(|cell| {
        if let Some(state) = cell.borrow_mut().as_mut() {
            f(state);
        }
    });
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain([0]).collect()
}

/// Client coordinates of a mouse message (signed 16-bit halves of lParam).
fn point(lparam: LPARAM) -> (i32, i32) {
    let x = i32::from((lparam & 0xffff) as u16 as i16);
    let y = i32::from(((lparam >> 16) & 0xffff) as u16 as i16);
    (x, y)
}

fn fill(hdc: windows_sys::Win32::Graphics::Gdi::HDC, f: &Fill) {
    let rect = RECT {
        left: f.left,
        top: f.top,
        right: f.right,
        bottom: f.bottom,
    };
    // SAFETY: hdc is the paint DC BeginPaint returned and is valid until
    // EndPaint; the brush is created, used and deleted here.
    unsafe {
        let brush = CreateSolidBrush(f.colour.colorref());
        FillRect(hdc, &rect, brush);
        DeleteObject(brush);
    }
}

/// The window procedure: paints, ticks and records.
unsafe extern "system" fn window_proc(
    hwnd: HWND,
    msg: u32,
    wparam: WPARAM,
    lparam: LPARAM,
) -> LRESULT {
    match msg {
        WM_PAINT => {
            // SAFETY: PAINTSTRUCT is plain data that BeginPaint fills.
            let mut ps: PAINTSTRUCT = unsafe { std::mem::zeroed() };
            // SAFETY: hwnd is this window, handling WM_PAINT.
            let hdc = unsafe { BeginPaint(hwnd, &mut ps) };
            let mut client = RECT {
                left: 0,
                top: 0,
                right: 0,
                bottom: 0,
            };
            // SAFETY: hwnd is valid; client is a writable RECT.
            unsafe { GetClientRect(hwnd, &mut client) };
            let mut counter = 0;
            with_state(|s| counter = s.counter);
            for f in picture::quadrants(client.right, client.bottom) {
                fill(hdc, &f);
            }
            for f in picture::barcode(counter) {
                fill(hdc, &f);
            }
            // SAFETY: ends the paint BeginPaint started.
            unsafe { EndPaint(hwnd, &ps) };
            0
        }
        WM_TIMER => {
            with_state(|s| s.counter = s.counter.wrapping_add(1));
            let strip = RECT {
                left: 0,
                top: 0,
                right: picture::SQUARE * picture::BITS as i32,
                bottom: picture::SQUARE,
            };
            // SAFETY: hwnd is this window; only the barcode strip is redrawn.
            unsafe { InvalidateRect(hwnd, &strip, 0) };
            0
        }
        WM_KEYDOWN | WM_SYSKEYDOWN => {
            let record = Record::KeyDown {
                vk: wparam as u32,
                scan: ((lparam >> 16) & 0xff) as u32,
                repeat: (lparam >> 30) & 1 == 1,
                sys: msg == WM_SYSKEYDOWN,
            };
            with_state(|s| append(s, &record));
            // SAFETY: default handling (Alt menus, F10) with the same arguments.
            unsafe { DefWindowProcW(hwnd, msg, wparam, lparam) }
        }
        WM_CHAR => {
            with_state(|s| {
                if let Some(c) = s.chars.push(wparam as u16) {
                    append(s, &Record::Char(c));
                }
            });
            0
        }
        WM_LBUTTONDOWN | WM_LBUTTONUP | WM_MBUTTONDOWN | WM_MBUTTONUP | WM_RBUTTONDOWN
        | WM_RBUTTONUP => {
            let button = match msg {
                WM_LBUTTONDOWN | WM_LBUTTONUP => Button::Left,
                WM_MBUTTONDOWN | WM_MBUTTONUP => Button::Middle,
                _ => Button::Right,
            };
            let down = matches!(msg, WM_LBUTTONDOWN | WM_MBUTTONDOWN | WM_RBUTTONDOWN);
            let (x, y) = point(lparam);
            with_state(|s| append(s, &Record::Button { button, down, x, y }));
            0
        }
        WM_DESTROY => {
            // SAFETY: ends this thread's message loop.
            unsafe { PostQuitMessage(0) };
            0
        }
        // SAFETY: default handling for everything else.
        _ => unsafe { DefWindowProcW(hwnd, msg, wparam, lparam) },
    }
}

/// Opens the window and runs its message loop until it is closed.
pub fn run(args: &Args) -> anyhow::Result<()> {
    if args.counter_fps == 0 || args.counter_fps > 100 {
        bail!(
            "--counter-fps must be between 1 and 100 (Windows timers tick at most ~64 times a second), got {}",
            args.counter_fps
        );
    }
    let record = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.record)
        .with_context(|| {
            format!(
                "could not open the record file {}; check that its folder exists and is writable",
                args.record.display()
            )
        })?;
    STATE.with(|cell| {
        *cell.borrow_mut() = Some(State {
            record,
            counter: 0,
            chars: Utf16Joiner::default(),
        })
    });

    let class_name = wide("deskside-testapp-win");
    let title = wide(&args.title);
    let g = args.geometry;
    // SAFETY: plain Win32 window creation with valid, NUL-terminated
    // strings that outlive the calls; every handle is checked.
    let hwnd = unsafe {
        let instance = GetModuleHandleW(null());
        let class = WNDCLASSW {
            style: 0,
            lpfnWndProc: Some(window_proc),
            cbClsExtra: 0,
            cbWndExtra: 0,
            hInstance: instance,
            hIcon: std::ptr::null_mut(),
            hCursor: LoadCursorW(std::ptr::null_mut(), IDC_ARROW),
            hbrBackground: std::ptr::null_mut(),
            lpszMenuName: null(),
            lpszClassName: class_name.as_ptr(),
        };
        if RegisterClassW(&class) == 0 {
            bail!("RegisterClassW failed: {}", std::io::Error::last_os_error());
        }
        let hwnd = CreateWindowExW(
            0,
            class_name.as_ptr(),
            title.as_ptr(),
            WS_POPUP | WS_VISIBLE,
            g.x,
            g.y,
            g.width,
            g.height,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            instance,
            null(),
        );
        if hwnd.is_null() {
            bail!(
                "CreateWindowExW failed: {}; under Wine, check that DISPLAY names a running X server",
                std::io::Error::last_os_error()
            );
        }
        ShowWindow(hwnd, SW_SHOW);
        SetForegroundWindow(hwnd);
        SetFocus(hwnd);
        UpdateWindow(hwnd);
        if SetTimer(hwnd, 1, 1000 / args.counter_fps, None) == 0 {
            bail!("SetTimer failed: {}", std::io::Error::last_os_error());
        }
        hwnd
    };
    let _ = hwnd;

    let ready = Record::Ready {
        geometry: g,
        pid: std::process::id(),
    };
    with_state(|s| append(s, &ready));
    println!("{}", ready.to_json());

    // SAFETY: MSG is plain data; the loop runs on the thread that owns the
    // window, until WM_QUIT (GetMessageW returns 0) or an error (-1).
    unsafe {
        let mut msg: MSG = std::mem::zeroed();
        while GetMessageW(&mut msg, std::ptr::null_mut(), 0, 0) > 0 {
            TranslateMessage(&msg);
            DispatchMessageW(&msg);
        }
    }
    Ok(())
}
