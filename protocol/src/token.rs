//! Self-contained token strings handed to people: enrollment tokens and
//! console login strings.
//!
//! Each carries the relay's address and certificate fingerprint next to the
//! secret, so that `deskside-agent enroll TOKEN` or `deskside login STRING` is
//! all a person types: nothing to trust on first use, no CA to configure.
//! Format: a prefix naming the kind and version, then base64url (no padding)
//! of the postcard-encoded payload.
//!
//! Several relays sharing one directory issue tokens that name all of them
//! (each with its own certificate fingerprint), so an agent or console can
//! fail over. A token naming one relay is written exactly as before
//! (`dse1_`, `dsl1_`), so single-relay sites and old agents see no change; a
//! token naming more is written with the list appended to the old payload
//! under its own prefix (`dse3_`, `dsl3_`; `dse4_`, `dsl4_` for the
//! certified forms), which agents older than the list refuse as "not a
//! deskside token" instead of misreading it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ids::Fingerprint;

/// Prefix of enrollment tokens.
pub const ENROLL_PREFIX: &str = "dse1_";
/// Prefix of console login strings.
pub const LOGIN_PREFIX: &str = "dsl1_";
/// Prefix of enrollment tokens naming more than one relay.
pub const ENROLL_LIST_PREFIX: &str = "dse3_";
/// Prefix of console login strings naming more than one relay.
pub const LOGIN_LIST_PREFIX: &str = "dsl3_";
/// Longest token text accepted, to bound work on garbage input (a
/// certified login string naming a dozen relays fits).
const MAX_TOKEN_TEXT: usize = 4096;
/// Most relays a token may name besides the first.
pub const MAX_OTHER_RELAYS: usize = 16;

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

/// One relay a token names: where it is and the certificate it must
/// present (an address alone is never trusted).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RelayEndpoint {
    /// Relay address as `host:port`.
    pub addr: String,
    /// Fingerprint of that relay's certificate.
    pub fingerprint: Fingerprint,
}

/// What an enrollment token carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollToken {
    /// Relay address as `host:port` (the issuing relay).
    pub relay: String,
    /// Fingerprint of the relay's certificate.
    pub fingerprint: Fingerprint,
    /// Secret checked by the relay (stored there only as a hash).
    pub secret: String,
    /// The other relays sharing the issuing relay's directory (empty with a
    /// single relay). Not part of the old payload: encoded after it, under
    /// [`ENROLL_LIST_PREFIX`], when not empty.
    #[serde(skip)]
    pub other_relays: Vec<RelayEndpoint>,
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
    /// The other relays sharing the issuing relay's directory, as in
    /// [`EnrollToken::other_relays`] (encoded under [`LOGIN_LIST_PREFIX`]).
    #[serde(skip)]
    pub other_relays: Vec<RelayEndpoint>,
}

/// Every relay of a token, the first one (the issuer) first, duplicates of
/// an address dropped.
pub fn all_relays(
    relay: &str,
    fingerprint: Fingerprint,
    others: &[RelayEndpoint],
) -> Vec<RelayEndpoint> {
    let mut all = vec![RelayEndpoint {
        addr: relay.to_owned(),
        fingerprint,
    }];
    for other in others {
        if !all.iter().any(|known| known.addr == other.addr) {
            all.push(other.clone());
        }
    }
    all
}

pub(crate) fn encode_token<T: Serialize>(prefix: &str, value: &T) -> String {
    // Encoding plain structs of strings and arrays cannot fail.
    let bytes = postcard::to_stdvec(value).unwrap_or_default();
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Encodes `value` under `prefix`, or, when `others` is not empty, the same
/// payload followed by the list under `list_prefix`.
pub(crate) fn encode_with_relays<T: Serialize>(
    prefix: &str,
    list_prefix: &str,
    value: &T,
    others: &[RelayEndpoint],
) -> String {
    if others.is_empty() {
        return encode_token(prefix, value);
    }
    let others = &others[..others.len().min(MAX_OTHER_RELAYS)];
    encode_token(list_prefix, &(value, others))
}

/// Decodes what [`encode_with_relays`] wrote: `(value, others)`.
pub(crate) fn decode_with_relays<T: for<'de> Deserialize<'de>>(
    text: &str,
    prefix: &'static str,
    list_prefix: &'static str,
    kind: &'static str,
) -> Result<(T, Vec<RelayEndpoint>), TokenError> {
    if text.trim().starts_with(list_prefix) {
        let (value, others): (T, Vec<RelayEndpoint>) = decode_token(text, list_prefix, kind)?;
        if others.is_empty() || others.len() > MAX_OTHER_RELAYS {
            return Err(TokenError::Damaged(kind));
        }
        return Ok((value, others));
    }
    decode_token(text, prefix, kind).map(|value| (value, Vec::new()))
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
        encode_with_relays(ENROLL_PREFIX, ENROLL_LIST_PREFIX, self, &self.other_relays)
    }

    /// Parses a token from text (surrounding whitespace is ignored), either
    /// form (`dse1_`, `dse3_`).
    pub fn decode(text: &str) -> Result<Self, TokenError> {
        let (mut token, others): (Self, _) =
            decode_with_relays(text, ENROLL_PREFIX, ENROLL_LIST_PREFIX, "enrollment token")?;
        token.other_relays = others;
        Ok(token)
    }

    /// Every relay the token names, the issuer first.
    pub fn relays(&self) -> Vec<RelayEndpoint> {
        all_relays(&self.relay, self.fingerprint, &self.other_relays)
    }
}

impl LoginString {
    /// The login string as text.
    pub fn encode(&self) -> String {
        encode_with_relays(LOGIN_PREFIX, LOGIN_LIST_PREFIX, self, &self.other_relays)
    }

    /// Parses a login string from text (surrounding whitespace is ignored),
    /// either form (`dsl1_`, `dsl3_`).
    pub fn decode(text: &str) -> Result<Self, TokenError> {
        let (mut login, others): (Self, _) =
            decode_with_relays(text, LOGIN_PREFIX, LOGIN_LIST_PREFIX, "login string")?;
        login.other_relays = others;
        Ok(login)
    }

    /// Every relay the login string names, the issuer first.
    pub fn relays(&self) -> Vec<RelayEndpoint> {
        all_relays(&self.relay, self.fingerprint, &self.other_relays)
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
            other_relays: Vec::new(),
        }
    }

    fn others() -> Vec<RelayEndpoint> {
        vec![
            RelayEndpoint {
                addr: "relay-b.example.org:4433".into(),
                fingerprint: Fingerprint([2; 32]),
            },
            RelayEndpoint {
                addr: "10.0.0.3:4433".into(),
                fingerprint: Fingerprint([3; 32]),
            },
        ]
    }

    /// The encoding of the single-relay forms as released before relay
    /// lists existed: old tokens in the field must keep decoding, and a
    /// single-relay token must still decode in old agents.
    #[test]
    fn single_relay_tokens_keep_the_old_encoding() {
        #[derive(Serialize)]
        struct OldEnrollToken {
            relay: String,
            fingerprint: Fingerprint,
            secret: String,
        }
        let old = encode_token(
            ENROLL_PREFIX,
            &OldEnrollToken {
                relay: "relay.example.org:4433".into(),
                fingerprint: Fingerprint([9; 32]),
                secret: "s3cr3t".into(),
            },
        );
        assert_eq!(token().encode(), old);
        assert_eq!(EnrollToken::decode(&old), Ok(token()));
        assert_eq!(token().relays().len(), 1);
    }

    #[test]
    fn relay_lists_round_trip_and_old_decoders_refuse_them() {
        let listed = EnrollToken {
            other_relays: others(),
            ..token()
        };
        let text = listed.encode();
        assert!(text.starts_with("dse3_"), "{text}");
        assert_eq!(
            EnrollToken::decode(&format!(" {text}\n")),
            Ok(listed.clone())
        );
        let relays = listed.relays();
        assert_eq!(relays.len(), 3);
        assert_eq!(relays[0].addr, "relay.example.org:4433");
        assert_eq!(relays[0].fingerprint, Fingerprint([9; 32]));
        assert_eq!(relays[2].fingerprint, Fingerprint([3; 32]));
        // What an agent before relay lists does with it: a clear refusal.
        assert!(matches!(
            decode_token::<EnrollToken>(&text, ENROLL_PREFIX, "enrollment token"),
            Err(TokenError::WrongPrefix { .. })
        ));
        // A truncated list is damaged, not a shorter list.
        assert!(EnrollToken::decode(&text[..text.len() - 3]).is_err());
        let login = LoginString {
            relay: "r:1".into(),
            fingerprint: Fingerprint([1; 32]),
            token: "dst_x".into(),
            other_relays: others(),
        };
        let text = login.encode();
        assert!(text.starts_with("dsl3_"), "{text}");
        assert_eq!(LoginString::decode(&text), Ok(login));
        assert!(EnrollToken::decode(&text).is_err());
    }

    #[test]
    fn the_issuer_comes_first_and_duplicates_are_dropped() {
        let mut others = others();
        others.push(RelayEndpoint {
            addr: "relay.example.org:4433".into(),
            fingerprint: Fingerprint([7; 32]),
        });
        let all = all_relays("relay.example.org:4433", Fingerprint([9; 32]), &others);
        let addrs: Vec<_> = all.iter().map(|r| r.addr.as_str()).collect();
        assert_eq!(
            addrs,
            [
                "relay.example.org:4433",
                "relay-b.example.org:4433",
                "10.0.0.3:4433"
            ]
        );
        assert_eq!(all[0].fingerprint, Fingerprint([9; 32]));
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
