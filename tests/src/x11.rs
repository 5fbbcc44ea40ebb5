//! Driving X displays in end-to-end tests and benchmarks: find windows,
//! click, type and take screenshots with xdotool and ImageMagick, and read
//! JSON lines a process prints.

use std::io::{BufRead as _, BufReader};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use deskside_desktop::xvfb::Xvfb;
use serde_json::Value;

use crate::wait_for;

/// Whether Xvfb, xdotool and `import` are installed. With `CI=true` a
/// missing one panics (a failure, not a skip); elsewhere this prints why
/// the caller skips.
pub fn prerequisites() -> bool {
    let missing: Vec<&str> = [
        ("Xvfb", Xvfb::is_installed()),
        ("xdotool", on_path("xdotool")),
        ("import", on_path("import")),
    ]
    .into_iter()
    .filter(|(_, ok)| !ok)
    .map(|(name, _)| name)
    .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but {missing:?} are not installed (Debian: xvfb xdotool imagemagick)");
    }
    eprintln!("SKIPPED: remote-session tests need {missing:?} (Debian: xvfb xdotool imagemagick)");
    false
}

pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

pub fn xdotool(display: &str, args: &[&str]) -> String {
    let out = Command::new("xdotool")
        .args(args)
        .env("DISPLAY", display)
        .output()
        .expect("run xdotool");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn find_window(display: &str, title: &str, timeout: Duration) -> String {
    wait_for(&format!("window {title:?} on {display}"), timeout, || {
        xdotool(display, &["search", "--onlyvisible", "--name", title])
            .lines()
            .last()
            .map(str::to_owned)
    })
}

pub fn window_gone(display: &str, title: &str) -> bool {
    xdotool(display, &["search", "--name", title])
        .trim()
        .is_empty()
}

/// Window position and size on its screen.
pub fn geometry(display: &str, window: &str) -> (i64, i64, i64, i64) {
    let text = xdotool(display, &["getwindowgeometry", "--shell", window]);
    let get = |key: &str| -> i64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {text:?}"))
    };
    (get("X"), get("Y"), get("WIDTH"), get("HEIGHT"))
}

pub fn click(display: &str, x: i64, y: i64) {
    xdotool(
        display,
        &["mousemove", "--sync", &x.to_string(), &y.to_string()],
    );
    xdotool(display, &["click", "1"]);
}

/// The centre of a `[x, y, width, height]` button rectangle (in window
/// points, as `deskside-session-ui` exports them), in whole pixels.
pub fn centre(button: [f32; 4]) -> (i64, i64) {
    (
        (button[0] + button[2] / 2.0) as i64,
        (button[1] + button[3] / 2.0) as i64,
    )
}

/// Whether `pixel` is the green of the consent dialog's armed Accept button
/// (it is grey until armed).
pub fn armed_green([r, g, b]: [u8; 3]) -> bool {
    g > r.saturating_add(40) && g > b.saturating_add(40)
}

/// Clicks Accept (once it is armed: green) or Refuse in the consent dialog
/// on `display`, as a person would: again if the dialog is still open
/// `per_click` later (on a loaded machine the first click can land before
/// the dialog has laid out its buttons), 5 clicks at most. `patience`
/// bounds the waits for the window and for the arming. Panics with
/// `helper_log()` when the dialog stays open.
pub fn answer_consent(
    display: &str,
    accept: bool,
    patience: Duration,
    per_click: Duration,
    helper_log: impl Fn() -> String,
) {
    let title = "remote support request";
    let window = find_window(display, title, patience);
    let (x, y, _, _) = geometry(display, &window);
    let (bx, by) = centre(if accept {
        deskside_session_ui::CONSENT_ACCEPT_BUTTON
    } else {
        deskside_session_ui::CONSENT_REFUSE_BUTTON
    });
    if accept {
        wait_for("the Accept button to be armed", patience, || {
            let shot = screenshot(display, &window);
            if i64::from(shot.0) <= bx || i64::from(shot.1) <= by {
                return None;
            }
            armed_green(pixel(&shot, bx, by)).then_some(())
        });
    }
    for _ in 0..5 {
        click(display, x + bx, y + by);
        let deadline = Instant::now() + per_click;
        while Instant::now() < deadline {
            if window_gone(display, title) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!(
        "the consent dialog did not close after 5 clicks on {}\nhelper log:\n{}",
        if accept { "Accept" } else { "Refuse" },
        helper_log()
    );
}

/// A screenshot of one window as RGB rows.
pub fn screenshot(display: &str, window: &str) -> (u32, u32, Vec<u8>) {
    let out = Command::new("import")
        .args(["-window", window, "png:-"])
        .env("DISPLAY", display)
        .output()
        .expect("run import");
    assert!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    decode_rgb(out.stdout)
}

/// A PNG as RGB rows, whatever its colour type and bit depth.
fn decode_rgb(png_bytes: Vec<u8>) -> (u32, u32, Vec<u8>) {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    // 8 bits per channel whatever `import` chose (palette, 1-bit, 16-bit).
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("png size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let channels = info.color_type.samples();
    let mut rgb = Vec::with_capacity((info.width * info.height * 3) as usize);
    // `import` writes a greyscale PNG when the window is all grey (a window
    // not drawn yet is black): one or two channels, expanded here.
    for pixel in buf[..info.buffer_size()].chunks(channels) {
        match pixel {
            [grey] | [grey, _] => rgb.extend_from_slice(&[*grey; 3]),
            _ => rgb.extend_from_slice(&pixel[..3]),
        }
    }
    (info.width, info.height, rgb)
}

pub fn pixel(shot: &(u32, u32, Vec<u8>), x: i64, y: i64) -> [u8; 3] {
    let (w, _, rgb) = shot;
    let i = (y as usize * *w as usize + x as usize) * 3;
    [rgb[i], rgb[i + 1], rgb[i + 2]]
}

pub fn close_to(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 8)
}

/// Lines a process prints on stdout, collected by a thread.
#[derive(Debug)]
pub struct Lines(mpsc::Receiver<Value>);

impl Lines {
    pub fn new(stdout: std::process::ChildStdout) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    if tx.send(value).is_err() {
                        break;
                    }
                }
            }
        });
        Self(rx)
    }

    /// Every line until `stop` returns true for one (included), or timeout.
    pub fn until(&self, timeout: Duration, mut stop: impl FnMut(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.0.recv_timeout(left) {
                Ok(value) => {
                    let done = stop(&value);
                    seen.push(value);
                    if done {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        seen
    }

    /// Everything received so far.
    pub fn drain(&self) -> Vec<Value> {
        self.0.try_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_greyscale_png_decodes_to_rgb() {
        let mut bytes = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut bytes, 2, 1);
            encoder.set_color(png::ColorType::Grayscale);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header().unwrap();
            writer.write_image_data(&[0, 200]).unwrap();
        }
        assert_eq!(decode_rgb(bytes), (2, 1, vec![0, 0, 0, 200, 200, 200]));
    }
}
