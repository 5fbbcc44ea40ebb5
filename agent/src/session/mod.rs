//! Remote sessions: the service side ([`host`]), the session helper
//! ([`helper`]), and the local socket between them ([`hub`], [`wire`]).

#[cfg(unix)]
pub mod helper;
pub mod host;
pub mod hub;
pub mod wire;
