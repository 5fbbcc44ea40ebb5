//! The organisation key's certificates and the token forms that carry them.
//!
//! An organisation may hold an Ed25519 signing key that lives with its
//! administrators and never on the relay (see `ARCHITECTURE.md`, "Keys").
//! It certifies technicians' session keys; agents learn its public half at
//! enrollment (inside a `dse2_` token) and refuse a session key it did not
//! certify, so a relay that hands out another key cannot open a session.
//!
//! This module only describes and encodes: the bytes that are signed, the
//! certificate, and the `dse2_`/`dsl2_` token forms. Signing and checking
//! signatures (which needs a crypto library) live in `deskside-net::orgkey`.
//! No I/O, no clock: issue times are passed in.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ids::{Fingerprint, ParseError};
use crate::token::{decode_token, encode_token, EnrollToken, LoginString, TokenError};

/// Prefix of enrollment tokens that also carry the organisation key.
pub const CERTIFIED_ENROLL_PREFIX: &str = "dse2_";
/// Prefix of login strings that also carry a certified session key.
pub const CERTIFIED_LOGIN_PREFIX: &str = "dsl2_";

/// Domain separation of the signed bytes, so a signature made for a session
/// key certificate can never be replayed as anything else.
pub const SESSION_KEY_CERTIFICATE_CONTEXT: &[u8] = b"deskside session-key certificate v1\0";

/// Longest encoded certificate accepted, to bound work on garbage input.
pub const MAX_CERTIFICATE_LEN: usize = 1024;

/// The organisation's public key (Ed25519, 32 bytes).
///
/// Written as `ed25519:` followed by 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OrgKey(pub [u8; 32]);

impl fmt::Display for OrgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ed25519:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for OrgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for OrgKey {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.strip_prefix("ed25519:").unwrap_or(s), &mut out).map_err(|_| {
            ParseError {
                what: "organisation key",
                input: s.to_owned(),
                expected: "expected ed25519: followed by 64 hex digits, as printed by `deskside org-key show`",
            }
        })?;
        Ok(Self(out))
    }
}

/// What the organisation key vouches for: this session key belongs to this
/// technician of this organisation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionKeyClaim {
    /// The organisation key that signs (so a console knows which key it
    /// holds a certificate of; agents compare it with the key they enrolled
    /// with and never trust it by itself).
    pub org_key: OrgKey,
    /// SHA-256 of the certified session key's SubjectPublicKeyInfo.
    pub session_key: Fingerprint,
    /// The technician's name, for logs and the audit.
    pub technician: String,
    /// When it was issued, Unix seconds.
    pub issued_at: u64,
}

impl SessionKeyClaim {
    /// The exact bytes the organisation key signs: the context, then the
    /// postcard encoding of the claim.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = SESSION_KEY_CERTIFICATE_CONTEXT.to_vec();
        // Encoding a struct of arrays, a string and an integer cannot fail.
        out.extend(postcard::to_stdvec(self).unwrap_or_default());
        out
    }
}

/// A session key certificate: the claim and the organisation's Ed25519
/// signature over [`SessionKeyClaim::signed_bytes`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionKeyCertificate {
    /// What is vouched for.
    pub claim: SessionKeyClaim,
    /// The Ed25519 signature (64 bytes).
    pub signature: Vec<u8>,
}

/// Errors decoding a certificate.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CertificateError {
    /// The bytes are not a certificate.
    #[error("the session key certificate is damaged; ask an administrator for a new login string")]
    Damaged,
}

impl SessionKeyCertificate {
    /// The certificate as bytes (what travels and is stored).
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Parses a certificate, refusing oversize input and trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, CertificateError> {
        if bytes.len() > MAX_CERTIFICATE_LEN {
            return Err(CertificateError::Damaged);
        }
        crate::message::decode_value(bytes).map_err(|_| CertificateError::Damaged)
    }
}

/// An enrollment token plus the organisation key agents must trust for
/// session keys; written `dse2_…`. A console that knows the organisation
/// key adds it to the token the relay issued, so the relay never chooses it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertifiedEnrollToken {
    /// The relay's token.
    pub token: EnrollToken,
    /// The organisation key.
    pub org_key: OrgKey,
}

impl CertifiedEnrollToken {
    /// The token as text.
    pub fn encode(&self) -> String {
        encode_token(CERTIFIED_ENROLL_PREFIX, self)
    }
}

/// Parses either form of enrollment token: `dse1_` (no organisation key:
/// the device trusts the relay for session keys, as before) or `dse2_`.
pub fn decode_enroll_token(text: &str) -> Result<(EnrollToken, Option<OrgKey>), TokenError> {
    if text.trim().starts_with(CERTIFIED_ENROLL_PREFIX) {
        let certified: CertifiedEnrollToken =
            decode_token(text, CERTIFIED_ENROLL_PREFIX, "enrollment token")?;
        return Ok((certified.token, Some(certified.org_key)));
    }
    EnrollToken::decode(text).map(|token| (token, None))
}

/// A login string plus a session key made for the technician and its
/// certificate; written `dsl2_…`. The administrator's console makes it when
/// it issues a technician token, so the relay never sees the session key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertifiedLoginString {
    /// The relay's login string.
    pub login: LoginString,
    /// The session private key, PKCS#8 PEM text.
    pub session_key: Vec<u8>,
    /// The encoded [`SessionKeyCertificate`] of that key.
    pub certificate: Vec<u8>,
}

impl fmt::Debug for CertifiedLoginString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedLoginString")
            .field("relay", &self.login.relay)
            .field("session_key", &"<hidden>")
            .finish_non_exhaustive()
    }
}

impl CertifiedLoginString {
    /// The login string as text.
    pub fn encode(&self) -> String {
        encode_token(CERTIFIED_LOGIN_PREFIX, self)
    }
}

/// Parses either form of login string: `dsl1_` or `dsl2_`.
pub fn decode_login_string(
    text: &str,
) -> Result<(LoginString, Option<CertifiedLoginString>), TokenError> {
    if text.trim().starts_with(CERTIFIED_LOGIN_PREFIX) {
        let certified: CertifiedLoginString =
            decode_token(text, CERTIFIED_LOGIN_PREFIX, "login string")?;
        return Ok((certified.login.clone(), Some(certified)));
    }
    LoginString::decode(text).map(|login| (login, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enroll() -> EnrollToken {
        EnrollToken {
            relay: "relay.example.org:4433".into(),
            fingerprint: Fingerprint([9; 32]),
            secret: "s3cr3t".into(),
        }
    }

    #[test]
    fn both_enrollment_token_forms_decode() {
        let old = enroll().encode();
        assert_eq!(decode_enroll_token(&old), Ok((enroll(), None)));
        let new = CertifiedEnrollToken {
            token: enroll(),
            org_key: OrgKey([7; 32]),
        }
        .encode();
        assert!(new.starts_with("dse2_"));
        assert_eq!(
            decode_enroll_token(&format!(" {new}\n")),
            Ok((enroll(), Some(OrgKey([7; 32]))))
        );
        // An old agent (dse1_ only) refuses the new form instead of
        // misreading it.
        assert!(EnrollToken::decode(&new).is_err());
        assert!(decode_enroll_token(&new[..new.len() - 4]).is_err());
    }

    #[test]
    fn both_login_string_forms_decode() {
        let login = LoginString {
            relay: "r:1".into(),
            fingerprint: Fingerprint([1; 32]),
            token: "dst_x".into(),
        };
        assert_eq!(
            decode_login_string(&login.encode()),
            Ok((login.clone(), None))
        );
        let certified = CertifiedLoginString {
            login: login.clone(),
            session_key: vec![1; 138],
            certificate: vec![2; 150],
        };
        let text = certified.encode();
        assert!(
            text.starts_with("dsl2_") && text.len() < 2048,
            "{}",
            text.len()
        );
        assert_eq!(decode_login_string(&text), Ok((login, Some(certified))));
    }

    #[test]
    fn certificates_round_trip_and_garbage_is_refused() {
        let cert = SessionKeyCertificate {
            claim: SessionKeyClaim {
                org_key: OrgKey([3; 32]),
                session_key: Fingerprint([4; 32]),
                technician: "alice".into(),
                issued_at: 1_800_000_000,
            },
            signature: vec![5; 64],
        };
        assert_eq!(
            SessionKeyCertificate::decode(&cert.encode()),
            Ok(cert.clone())
        );
        let mut trailing = cert.encode();
        trailing.push(0);
        assert!(SessionKeyCertificate::decode(&trailing).is_err());
        assert!(SessionKeyCertificate::decode(&[0xff; 4]).is_err());
        assert!(SessionKeyCertificate::decode(&vec![0; 2000]).is_err());
        // The signed bytes start with the context and change with the claim.
        let signed = cert.claim.signed_bytes();
        assert!(signed.starts_with(SESSION_KEY_CERTIFICATE_CONTEXT));
        let mut other = cert.claim.clone();
        other.session_key = Fingerprint([6; 32]);
        assert_ne!(signed, other.signed_bytes());
    }

    #[test]
    fn org_keys_print_and_parse() {
        let key = OrgKey([0xab; 32]);
        let text = key.to_string();
        assert!(text.starts_with("ed25519:ab"));
        assert_eq!(text.parse::<OrgKey>(), Ok(key));
        assert!("ed25519:zz".parse::<OrgKey>().is_err());
    }
}
