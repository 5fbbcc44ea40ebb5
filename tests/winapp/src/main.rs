//! `deskside-testapp-win`: the Windows counterpart of `deskside-xclient`,
//! for end-to-end session tests under Wine. It shows one borderless window
//! at a fixed place with a known picture and a frame-counter barcode, and
//! appends every key and click it receives to a record file.
//!
//! ```text
//! wine deskside-testapp-win.exe --record C:\\rec.jsonl --geometry 640x400+0+0 --counter-fps 10
//! {"type":"ready","x":0,"y":0,"width":640,"height":400,"pid":32}      (stdout and the record)
//! ```
//!
//! The picture and the barcode are those of `deskside-xclient --counter`
//! (see `picture.rs`), so `deskside session --headless --probe-counter X,Y`
//! reads this program's counter too. The record format is in `picture.rs`
//! (`Record::to_json`). It must never do anything but draw and write down:
//! it is a test instrument.

// Only the Windows build draws and records; the unit tests of the picture
// and the record format run on every OS.
#[cfg_attr(not(windows), allow(dead_code))]
mod picture;
#[cfg(windows)]
mod win32;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Shows a known picture with a frame counter and records keys and clicks.
#[derive(Debug, Parser)]
#[command(name = "deskside-testapp-win", version)]
pub struct Args {
    /// Window title.
    #[arg(long, default_value = "deskside-testapp-win")]
    pub title: String,
    /// Window geometry WxH+X+Y in screen pixels; the whole window is client
    /// area (no border, no caption).
    #[arg(long, default_value = "640x400+0+0")]
    pub geometry: picture::Geometry,
    /// Counter increments (and barcode redraws) per second.
    #[arg(long, default_value_t = 10)]
    pub counter_fps: u32,
    /// The record file: one JSON object per line, appended and flushed per
    /// event (created if missing).
    #[arg(long)]
    pub record: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    run(args)
}

#[cfg(windows)]
fn run(args: Args) -> ExitCode {
    match win32::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("deskside-testapp-win: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(windows))]
fn run(args: Args) -> ExitCode {
    let _ = args;
    eprintln!(
        "deskside-testapp-win is a Windows program: build it with \
         `cargo build --target x86_64-pc-windows-gnu -p deskside-testapp-win` and run it under \
         Windows or Wine (scripts/wine-run); use deskside-xclient on X11"
    );
    ExitCode::from(2)
}
