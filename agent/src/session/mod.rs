//! Remote sessions: the service side ([`host`]), the session helper
//! ([`helper`]), and the local channel between them ([`channel`]: a Unix
//! socket or a Windows named pipe; [`hub`], [`wire`]).

pub mod channel;
mod delivery;
mod desktop;
pub mod help_channel;
pub mod helper;
pub mod host;
pub mod hub;
pub mod launcher;
#[cfg(unix)]
pub mod notify;
mod pace;
#[cfg(windows)]
mod win32;
pub mod wire;
