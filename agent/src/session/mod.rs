//! Remote sessions: the service side ([`host`]), the session helper
//! ([`helper`]), and the local socket between them ([`hub`], [`wire`]).

pub mod helper;
pub mod host;
pub mod hub;
pub mod wire;
