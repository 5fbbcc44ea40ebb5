//! Test support: a private Xvfb display, xdotool, and window screenshots.
//!
//! Kept identical in `console/viewer/tests/support/` and
//! `agent/ui/tests/support/` so the two UI crates stay independent.
//!
//! When Xvfb, xdotool or ImageMagick's `import` is missing, tests skip with a
//! message, except under `CI=true`, where they fail.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long to wait for a window or a picture before failing the test.
pub const DEADLINE: Duration = Duration::from_secs(60);
/// Pause between two polls of the display.
const POLL: Duration = Duration::from_millis(100);

static NEXT_DISPLAY: AtomicU32 = AtomicU32::new(0);

/// Returns `false` (after saying why) when the tools are missing and the
/// test should be skipped; panics instead under `CI=true`.
pub fn tools_available() -> bool {
    let missing: Vec<&str> = ["Xvfb", "xdotool", "import"]
        .into_iter()
        .filter(|tool| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!(
        "UI test needs {missing:?}: apt-get install -y xvfb xdotool imagemagick \
         libgl1-mesa-dri libegl1 libgl1 libxkbcommon-x11-0 libxcursor1 libxrandr2 libxi6"
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}");
    }
    eprintln!("SKIPPED: {message}");
    false
}

/// A running Xvfb on one of the displays :50 to :59, killed on drop.
pub struct Xvfb {
    child: Child,
    /// `:NN`.
    pub display: String,
}

impl Xvfb {
    /// Starts Xvfb on a free display in :50–:59, 1280x800x24.
    pub fn start() -> Xvfb {
        for _ in 0..10 {
            let n = 50 + NEXT_DISPLAY.fetch_add(1, Ordering::SeqCst) % 10;
            if !display_is_free(n) {
                continue;
            }
            let display = format!(":{n}");
            let mut child = Command::new("Xvfb")
                // -noreset: by default Xvfb resets when its last client leaves, and a
                // client connecting during the reset fails.
                .args([
                    &display,
                    "-screen",
                    "0",
                    "1280x800x24",
                    "-nolisten",
                    "tcp",
                    "-noreset",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("Xvfb is on PATH (checked) and starts");
            let socket = format!("/tmp/.X11-unix/X{n}");
            let started = Instant::now();
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // lost a race for this display; try the next one
                }
                if Path::new(&socket).exists()
                    && Command::new("xdotool")
                        .arg("getmouselocation")
                        .env("DISPLAY", &display)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success())
                {
                    return Xvfb { child, display };
                }
                if started.elapsed() > DEADLINE {
                    let _ = child.kill();
                    panic!("Xvfb on {display} did not start within {DEADLINE:?}");
                }
                std::thread::sleep(POLL);
            }
        }
        panic!("no free X display in :50-:59 (remove stale /tmp/.X5?-lock files)");
    }

    /// A command with this display and a fixed scale factor of 1, so window
    /// points are pixels.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command
            .env("DISPLAY", &self.display)
            .env("WINIT_X11_SCALE_FACTOR", "1")
            .env("LIBGL_ALWAYS_SOFTWARE", "1");
        command
    }

    /// Runs `xdotool ARGS`, returns its stdout; panics if it fails.
    pub fn xdotool(&self, args: &[&str]) -> String {
        let output = self
            .command("xdotool")
            .args(args)
            .output()
            .expect("xdotool runs");
        assert!(
            output.status.success(),
            "xdotool {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits for a visible window whose name matches `pattern`; returns its id.
    pub fn wait_for_window(&self, pattern: &str) -> String {
        let started = Instant::now();
        loop {
            let output = self
                .command("xdotool")
                .args(["search", "--onlyvisible", "--name", pattern])
                .output()
                .expect("xdotool runs");
            if let Some(id) = String::from_utf8_lossy(&output.stdout).lines().next() {
                return id.trim().to_owned();
            }
            assert!(
                started.elapsed() < DEADLINE,
                "no window named {pattern:?} appeared within {DEADLINE:?}"
            );
            std::thread::sleep(POLL);
        }
    }

    /// Moves the pointer to window position (`x`, `y`) and clicks button 1.
    pub fn click(&self, window: &str, x: f32, y: f32) {
        let (x, y) = (format!("{}", x.round()), format!("{}", y.round()));
        self.xdotool(&["mousemove", "--window", window, &x, &y]);
        self.xdotool(&["click", "1"]);
    }

    /// A screenshot of `window`.
    pub fn screenshot(&self, window: &str) -> Image {
        let output = self
            .command("import")
            .args(["-window", window, "png:-"])
            .output()
            .expect("import runs");
        assert!(
            output.status.success(),
            "import -window {window} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Image::decode_png(&output.stdout)
    }

    /// Takes screenshots until `ready` holds (the window has drawn what the
    /// test waits for); returns that screenshot.
    pub fn wait_for_picture(
        &self,
        window: &str,
        what: &str,
        ready: impl Fn(&Image) -> bool,
    ) -> Image {
        let started = Instant::now();
        loop {
            let image = self.screenshot(window);
            if ready(&image) {
                return image;
            }
            if started.elapsed() > DEADLINE {
                let path = std::env::temp_dir()
                    .join(format!("deskside-ui-test-{}.png", std::process::id()));
                let _ = std::fs::write(&path, image.to_ppm());
                panic!(
                    "{what} did not appear within {DEADLINE:?}; last screenshot (PPM) in {}",
                    path.display()
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

/// Whether display `:n` has no server. A lock file whose process is gone
/// (a server killed with SIGKILL leaves it behind) is removed.
fn display_is_free(n: u32) -> bool {
    let lock = format!("/tmp/.X{n}-lock");
    let Ok(contents) = std::fs::read_to_string(&lock) else {
        return !Path::new(&lock).exists();
    };
    match contents.trim().parse::<u32>() {
        Ok(pid) if !Path::new(&format!("/proc/{pid}")).exists() => {
            let _ = std::fs::remove_file(&lock);
            let _ = std::fs::remove_file(format!("/tmp/.X11-unix/X{n}"));
            true
        }
        _ => false,
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        // SIGTERM lets Xvfb remove its lock file and socket; SIGKILL would not.
        let terminated = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !terminated {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// An RGB screenshot.
pub struct Image {
    pub width: u32,
    pub height: u32,
    rgb: Vec<u8>,
}

impl Image {
    fn decode_png(bytes: &[u8]) -> Image {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().expect("import wrote a PNG");
        let mut buffer = vec![
            0;
            reader
                .output_buffer_size()
                .expect("PNG size fits in memory")
        ];
        let info = reader.next_frame(&mut buffer).expect("PNG decodes");
        let channels = match info.color_type {
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            png::ColorType::Grayscale => 1,
            png::ColorType::GrayscaleAlpha => 2,
            png::ColorType::Indexed => panic!("EXPAND leaves no indexed PNG"),
        };
        let mut rgb = Vec::with_capacity((info.width * info.height * 3) as usize);
        for pixel in buffer[..info.buffer_size()].chunks_exact(channels) {
            match channels {
                1 | 2 => rgb.extend_from_slice(&[pixel[0]; 3]),
                _ => rgb.extend_from_slice(&pixel[..3]),
            }
        }
        Image {
            width: info.width,
            height: info.height,
            rgb,
        }
    }

    /// The pixel at (`x`, `y`), or black outside the image.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        if x >= self.width || y >= self.height {
            return [0, 0, 0];
        }
        let i = ((y * self.width + x) * 3) as usize;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// Whether the pixel at (`x`, `y`) is within `tolerance` of `rgb` per channel.
    pub fn is_near(&self, x: u32, y: u32, rgb: [u8; 3], tolerance: u8) -> bool {
        self.pixel(x, y)
            .iter()
            .zip(rgb)
            .all(|(a, b)| a.abs_diff(b) <= tolerance)
    }

    /// Saves the image as a PPM file in the temp directory; returns its path.
    pub fn save(&self, name: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "deskside-ui-test-{name}-{}.ppm",
            std::process::id()
        ));
        let _ = std::fs::write(&path, self.to_ppm());
        path
    }

    fn to_ppm(&self) -> Vec<u8> {
        let mut out = format!("P6\n{} {}\n255\n", self.width, self.height).into_bytes();
        out.extend_from_slice(&self.rgb);
        out
    }
}
