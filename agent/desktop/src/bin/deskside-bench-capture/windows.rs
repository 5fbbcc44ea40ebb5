//! The Windows benchmark (GDI and, where it works, DXGI); see the binary's
//! documentation.

use std::time::{Duration, Instant};

use deskside_desktop::{CaptureBackend, Capturer, WindowsCapturer};

struct Options {
    seconds: f64,
    backend: Option<CaptureBackend>,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        seconds: 3.0,
        backend: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--seconds" => o.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--backend" => {
                o.backend = Some(match value()?.as_str() {
                    "gdi" => CaptureBackend::Gdi,
                    "dxgi" => CaptureBackend::Dxgi,
                    other => return Err(format!("--backend {other:?}: use gdi or dxgi")),
                })
            }
            "-h" | "--help" => {
                return Err(
                    "usage: deskside-bench-capture [--seconds S] [--backend gdi|dxgi]".into(),
                )
            }
            other => return Err(format!("unknown argument {other:?}; see --help")),
        }
    }
    Ok(o)
}

/// Captures the primary monitor in a tight loop for `seconds` and prints
/// one JSON line: wall time per capture (the capture call is synchronous:
/// for GDI it includes the BitBlt and the comparison with the previous
/// picture), how many reported a change, the screen size.
pub(crate) fn main() -> std::process::ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let opened = match o.backend {
        Some(b) => WindowsCapturer::open_backend(b),
        None => WindowsCapturer::open(),
    };
    let mut capturer = match opened {
        Ok(c) => c,
        Err(e) => {
            eprintln!("deskside-bench-capture: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let monitors = match capturer.monitors() {
        Ok(m) if !m.is_empty() => m,
        Ok(_) => {
            eprintln!("deskside-bench-capture: no monitor");
            return std::process::ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("deskside-bench-capture: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let index = monitors.iter().position(|m| m.primary).unwrap_or(0);
    let monitor = &monitors[index];
    let run_for = Duration::from_secs_f64(o.seconds);
    let (mut captures, mut changed, mut checksum, mut worst) = (0u64, 0u64, 0u64, Duration::ZERO);
    let start = Instant::now();
    while start.elapsed() < run_for {
        let t = Instant::now();
        match capturer.capture(index as u8) {
            Ok(c) => {
                captures += 1;
                changed += u64::from(c.changed);
                checksum =
                    checksum.wrapping_add(u64::from(c.frame.data.first().copied().unwrap_or(0)));
            }
            Err(e) => {
                eprintln!("deskside-bench-capture: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
        worst = worst.max(t.elapsed());
    }
    let elapsed = start.elapsed().as_secs_f64();
    let fields = [
        "\"type\":\"scenario\",\"name\":\"windows-static\"".to_owned(),
        format!("\"backend\":\"{}\"", capturer.backend().as_str()),
        format!(
            "\"wine\":{}",
            deskside_desktop::wine_version()
                .map(|v| format!("\"{v}\""))
                .unwrap_or_else(|| "null".to_owned())
        ),
        format!("\"width\":{},\"height\":{}", monitor.width, monitor.height),
        format!("\"seconds\":{elapsed:.2},\"captures\":{captures},\"changed\":{changed}"),
        format!("\"captures_per_s\":{:.1}", captures as f64 / elapsed),
        format!(
            "\"wall_ms_per_capture\":{:.2}",
            elapsed * 1000.0 / captures.max(1) as f64
        ),
        format!("\"worst_ms\":{:.2}", worst.as_secs_f64() * 1000.0),
        format!("\"checksum\":{checksum}"),
    ];
    println!("{{{}}}", fields.join(","));
    std::process::ExitCode::SUCCESS
}
