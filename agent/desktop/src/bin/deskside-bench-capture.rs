//! `deskside-bench-capture`: how fast X11 capture runs, and what it costs.
//!
//! ```text
//! cargo run --release -p deskside-desktop --bin deskside-bench-capture -- --seconds 3
//! ```
//!
//! On Windows (or under Wine on an X display) it captures the primary
//! monitor with the backend `WindowsCapturer` picks (`--backend gdi|dxgi`
//! forces one) and prints the wall time per capture of a still screen:
//!
//! ```text
//! cargo build --release --target x86_64-pc-windows-gnu -p deskside-desktop --bin deskside-bench-capture
//! DISPLAY=:N scripts/wine-run target/x86_64-pc-windows-gnu/release/deskside-bench-capture.exe --seconds 5
//! ```
//!
//! Starts a private 1920x1080 Xvfb (or uses `--display :N` with `--server-pid`
//! unknown), then for each scenario captures monitor 0 in a tight loop for
//! `--seconds` and prints one JSON line: captures per second, how many reported
//! a change, and CPU time per capture in this thread (the capturer) and in the
//! X server (which does the copy). Scenarios:
//!
//! - `shm-static`: MIT-SHM + XDamage, nothing drawn (the idle desktop).
//! - `shm-changing`: MIT-SHM + XDamage while another thread repaints the whole
//!   screen as fast as the server allows (a busy desktop).
//! - `getimage-static` / `getimage-changing`: the fallback path (no MIT-SHM, no
//!   XDamage) in the same two situations.
//!
//! CPU times come from `/proc/thread-self/stat` and `/proc/PID/stat` (10 ms
//! ticks), so runs shorter than a second are imprecise.

#[cfg(unix)]
#[path = "deskside-bench-capture/x11.rs"]
mod x11;

#[cfg(unix)]
fn main() -> std::process::ExitCode {
    x11::main()
}

#[cfg(windows)]
#[path = "deskside-bench-capture/windows.rs"]
mod windows;

#[cfg(windows)]
fn main() -> std::process::ExitCode {
    windows::main()
}

#[cfg(not(any(unix, windows)))]
fn main() -> std::process::ExitCode {
    eprintln!("deskside-bench-capture measures X11 and Windows capture only");
    std::process::ExitCode::from(1)
}
