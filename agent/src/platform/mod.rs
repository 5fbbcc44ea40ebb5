//! Operating-system code of the agent that is neither diagnostics
//! (`diag::platform`) nor sessions (`session::channel`, `session::desktop`):
//! naming the OS, where state lives, and running as a system service.
//!
//! One file per concern and platform: `os_name.rs` is pure (no OS call, so
//! it is tested on every platform); `windows/` holds the Windows calls
//! (the only `unsafe` of this module). A macOS port adds `macos/` beside it.
//! Linux needs nothing here: its service is a systemd unit
//! (`installers/linux/`) around `deskside-agent run`.

pub mod os_name;
#[cfg(windows)]
pub mod windows;
