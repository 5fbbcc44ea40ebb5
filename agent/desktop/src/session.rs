//! Which kind of graphical session this process runs in, from the environment.
//!
//! Pure: [`detect_display_from`] takes the variable values as arguments;
//! [`detect_display`] only reads them. Nothing here connects to a display.

/// What a technician sees when capture is refused on Wayland (also the
/// message of [`crate::CaptureError::Wayland`]).
pub const WAYLAND_UNSUPPORTED: &str = "Wayland sessions are not supported for screen capture yet; log in with an X11 (Xorg) session to allow remote view";

/// The kind of graphical session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisplayKind {
    /// An X11 (Xorg) session on this display, e.g. `:0`.
    X11 {
        /// The `DISPLAY` value.
        display: String,
    },
    /// A Wayland session: capture is not supported (an X11 connection would
    /// only see XWayland windows, so it would show a mostly black screen).
    Wayland,
    /// No graphical session (a service, an SSH login).
    None,
}

/// Reads `WAYLAND_DISPLAY`, `XDG_SESSION_TYPE` and `DISPLAY` and classifies the
/// session with [`detect_display_from`].
pub fn detect_display() -> DisplayKind {
    let wayland = std::env::var("WAYLAND_DISPLAY").ok();
    let session_type = std::env::var("XDG_SESSION_TYPE").ok();
    let display = std::env::var("DISPLAY").ok();
    detect_display_from(
        wayland.as_deref(),
        session_type.as_deref(),
        display.as_deref(),
    )
}

/// Classifies a session from the values of `WAYLAND_DISPLAY`,
/// `XDG_SESSION_TYPE` and `DISPLAY` (`None` or empty when unset).
///
/// An explicit `XDG_SESSION_TYPE` wins (`x11` with a `DISPLAY` is X11 even if a
/// stray `WAYLAND_DISPLAY` is set; `wayland` is Wayland even though XWayland
/// sets `DISPLAY`); otherwise a `WAYLAND_DISPLAY` means Wayland, and a
/// `DISPLAY` alone means X11.
pub fn detect_display_from(
    wayland_display: Option<&str>,
    session_type: Option<&str>,
    display: Option<&str>,
) -> DisplayKind {
    let display = set(display);
    let x11 = |d: &str| DisplayKind::X11 {
        display: d.to_owned(),
    };
    match set(session_type).map(str::to_ascii_lowercase).as_deref() {
        Some("wayland") => return DisplayKind::Wayland,
        Some("x11") => {
            if let Some(d) = display {
                return x11(d);
            }
        }
        _ => {}
    }
    if set(wayland_display).is_some() {
        return DisplayKind::Wayland;
    }
    match display {
        Some(d) => x11(d),
        None => DisplayKind::None,
    }
}

/// A variable's value, trimmed; `None` when unset or blank.
fn set(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x11(d: &str) -> DisplayKind {
        DisplayKind::X11 {
            display: d.to_owned(),
        }
    }

    #[test]
    fn classifies_sessions_from_environment_values() {
        // (WAYLAND_DISPLAY, XDG_SESSION_TYPE, DISPLAY) -> expected
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            DisplayKind,
        );
        let cases: &[Case] = &[
            (None, None, None, DisplayKind::None),
            (None, None, Some(":0"), x11(":0")),
            (None, Some("x11"), Some(":1"), x11(":1")),
            (None, Some("tty"), Some(":0"), x11(":0")),
            (Some("wayland-0"), None, None, DisplayKind::Wayland),
            // XWayland sets DISPLAY inside a Wayland session.
            (
                Some("wayland-0"),
                Some("wayland"),
                Some(":0"),
                DisplayKind::Wayland,
            ),
            (Some("wayland-0"), None, Some(":0"), DisplayKind::Wayland),
            (None, Some("wayland"), Some(":0"), DisplayKind::Wayland),
            (None, Some("Wayland"), None, DisplayKind::Wayland),
            // An explicit x11 session wins over a stray WAYLAND_DISPLAY.
            (Some("wayland-0"), Some("x11"), Some(":0"), x11(":0")),
            // x11 session type without DISPLAY: fall through to the others.
            (Some("wayland-0"), Some("x11"), None, DisplayKind::Wayland),
            (None, Some("x11"), None, DisplayKind::None),
            // Empty values count as unset.
            (Some(""), Some(""), Some(""), DisplayKind::None),
            (Some(""), None, Some(" :2 "), x11(":2")),
        ];
        for (w, t, d, want) in cases {
            assert_eq!(&detect_display_from(*w, *t, *d), want, "{w:?} {t:?} {d:?}");
        }
    }
}
