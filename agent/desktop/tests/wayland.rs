//! On Wayland, opening capture or input fails with a clear message and never
//! touches a display. (Its own test binary: it changes the environment.)

// The X11 backends exist on Unix only (see src/lib.rs).
#![cfg(unix)]
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use deskside_desktop::{CaptureError, EnigoSink, InputError, X11Capturer, WAYLAND_UNSUPPORTED};

#[test]
fn wayland_session_is_refused_with_a_clear_message() {
    // The only test in this binary, so changing the environment races nothing.
    std::env::set_var("WAYLAND_DISPLAY", "wayland-0");
    std::env::set_var("XDG_SESSION_TYPE", "wayland");
    // XWayland would answer on DISPLAY: it must not be used.
    std::env::set_var("DISPLAY", ":99");

    let err = X11Capturer::open_session().unwrap_err();
    assert!(matches!(err, CaptureError::Wayland), "{err:?}");
    assert_eq!(err.to_string(), WAYLAND_UNSUPPORTED);
    assert_eq!(
        err.to_string(),
        "Wayland sessions are not supported for screen capture yet; log in with an X11 (Xorg) session to allow remote view"
    );
    let err = EnigoSink::open_session().unwrap_err();
    assert!(matches!(err, InputError::Wayland), "{err:?}");

    std::env::remove_var("WAYLAND_DISPLAY");
    std::env::remove_var("XDG_SESSION_TYPE");
    std::env::remove_var("DISPLAY");
    assert!(matches!(
        X11Capturer::open_session().unwrap_err(),
        CaptureError::NoDisplay
    ));
}
