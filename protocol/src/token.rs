//! Self-contained token strings handed to people: enrollment tokens and
//! console login strings.
//!
//! Each carries the relay's address and certificate fingerprint next to the
//! secret, so that `deskside-agent enroll TOKEN` or `deskside login STRING` is
//! all a person types: nothing to trust on first use, no CA to configure.
//! Format: a prefix naming the kind and version, then base64url (no padding)
//! of the postcard-encoded payload.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ids::Fingerprint;

/// Prefix of enrollment tokens.
pub const ENROLL_PREFIX: &str = "dse1_";
/// Prefix of console login strings.
pub const LOGIN_PREFIX: &str = "dsl1_";
/// Longest token text accepted, to bound work on garbage input.
const MAX_TOKEN_TEXT: usize = 2048;

/// Errors parsing a token string.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    /// The text does not start with the expected prefix.
    #[error("this is not a deskside {kind} (it should start with {prefix}); copy the whole string again")]
    WrongPrefix {
        /// What was expected.
        kind: &'static str,
        /// The prefix expected.
        prefix: &'static str,
    },
    /// The text is damaged: bad base64, truncated or too long.
    #[error("the {0} is damaged or truncated; copy the whole string again")]
    Damaged(&'static str),
}

/// What an enrollment token carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollToken {
    /// Relay address as `host:port`.
    pub relay: String,
    /// Fingerprint of the relay's certificate.
    pub fingerprint: Fingerprint,
    /// Secret checked by the relay (stored there only as a hash).
    pub secret: String,
}

/// What a console login string carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginString {
    /// Relay address as `host:port`.
    pub relay: String,
    /// Fingerprint of the relay's certificate.
    pub fingerprint: Fingerprint,
    /// The technician token.
    pub token: String,
}

pub(crate) fn encode_token<T: Serialize>(prefix: &str, value: &T) -> String {
    // Encoding plain structs of strings and arrays cannot fail.
    let bytes = postcard::to_stdvec(value).unwrap_or_default();
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

pub(crate) fn decode_token<T: for<'de> Deserialize<'de>>(
    text: &str,
    prefix: &'static str,
    kind: &'static str,
) -> Result<T, TokenError> {
    let text = text.trim();
    if text.len() > MAX_TOKEN_TEXT {
        return Err(TokenError::Damaged(kind));
    }
    let body = text
        .strip_prefix(prefix)
        .ok_or(TokenError::WrongPrefix { kind, prefix })?;
    let bytes = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| TokenError::Damaged(kind))?;
    crate::message::decode_value(&bytes).map_err(|_| TokenError::Damaged(kind))
}

impl EnrollToken {
    /// The token as text.
    pub fn encode(&self) -> String {
        encode_token(ENROLL_PREFIX, self)
    }

    /// Parses a token from text (surrounding whitespace is ignored).
    pub fn decode(text: &str) -> Result<Self, TokenError> {
        decode_token(text, ENROLL_PREFIX, "enrollment token")
    }
}

impl LoginString {
    /// The login string as text.
    pub fn encode(&self) -> String {
        encode_token(LOGIN_PREFIX, self)
    }

    /// Parses a login string from text (surrounding whitespace is ignored).
    pub fn decode(text: &str) -> Result<Self, TokenError> {
        decode_token(text, LOGIN_PREFIX, "login string")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> EnrollToken {
        EnrollToken {
            relay: "relay.example.org:4433".into(),
            fingerprint: Fingerprint([9; 32]),
            secret: "s3cr3t".into(),
        }
    }

    #[test]
    fn enroll_token_round_trips() {
        let text = token().encode();
        assert!(text.starts_with("dse1_"));
        assert_eq!(EnrollToken::decode(&format!("  {text}\n")), Ok(token()));
    }

    #[test]
    fn damaged_tokens_are_refused_with_advice() {
        let text = token().encode();
        let truncated = &text[..text.len() - 5];
        assert_eq!(
            EnrollToken::decode(truncated),
            Err(TokenError::Damaged("enrollment token"))
        );
        let err = EnrollToken::decode("hello").unwrap_err();
        assert!(err.to_string().contains("should start with dse1_"));
        assert!(LoginString::decode(&text).is_err());
    }
}
