//! The organisation key's certificates and the token forms that carry them.
//!
//! An organisation may hold an Ed25519 signing key that lives with its
//! administrators and never on the relay (see `ARCHITECTURE.md`, "Keys").
//! It certifies technicians' session keys; agents learn its public half at
//! enrollment (inside a `dse2_` token) and refuse a session key it did not
//! certify, so a relay that hands out another key cannot open a session.
//!
//! Device keys are bound at enrollment with a secret the relay never sees:
//! a `dse2_` token made by a console holding a *delegate* key (an Ed25519
//! key the organisation key certified for an administrator or technician)
//! carries a fresh token key pair and the delegate's certificate of its
//! public half; the agent signs its own key with the token key at
//! enrollment and shows that [`DeviceBinding`] to certified consoles, which
//! check the chain organisation key → delegate → token key → device key.
//!
//! This module only describes and encodes: the bytes that are signed, the
//! certificates, and the `dse2_`/`dsl2_` token forms. Signing and checking
//! signatures (which needs a crypto library) live in `deskside-net::orgkey`.
//! No I/O, no clock: issue times are passed in.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ids::{Fingerprint, ParseError};
use crate::token::{decode_with_relays, encode_with_relays, EnrollToken, LoginString, TokenError};

/// Prefix of enrollment tokens that also carry the organisation key.
pub const CERTIFIED_ENROLL_PREFIX: &str = "dse2_";
/// Prefix of login strings that also carry a certified session key.
pub const CERTIFIED_LOGIN_PREFIX: &str = "dsl2_";
/// Prefix of certified enrollment tokens naming more than one relay
/// (`dse2_` followed by the list, see [`crate::token`]).
pub const CERTIFIED_ENROLL_LIST_PREFIX: &str = "dse4_";
/// Prefix of certified login strings naming more than one relay.
pub const CERTIFIED_LOGIN_LIST_PREFIX: &str = "dsl4_";

/// Domain separation of the signed bytes, so a signature made for a session
/// key certificate can never be replayed as anything else.
pub const SESSION_KEY_CERTIFICATE_CONTEXT: &[u8] = b"deskside session-key certificate v1\0";

/// Domain separation of delegation certificates.
pub const DELEGATION_CONTEXT: &[u8] = b"deskside delegation certificate v1\0";
/// Domain separation of token key certificates.
pub const TOKEN_KEY_CONTEXT: &[u8] = b"deskside enrollment-token key certificate v1\0";
/// Domain separation of device bindings.
pub const DEVICE_BINDING_CONTEXT: &[u8] = b"deskside device binding v1\0";

/// Longest encoded certificate accepted, to bound work on garbage input.
pub const MAX_CERTIFICATE_LEN: usize = 1024;

/// The bytes a signature covers: a context, then the postcard encoding.
fn signed<T: Serialize>(context: &[u8], value: &T) -> Vec<u8> {
    let mut out = context.to_vec();
    // Encoding structs of arrays, strings and integers cannot fail.
    out.extend(postcard::to_stdvec(value).unwrap_or_default());
    out
}

fn decode_bounded<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, CertificateError> {
    if bytes.len() > MAX_CERTIFICATE_LEN {
        return Err(CertificateError::Damaged);
    }
    crate::message::decode_value(bytes).map_err(|_| CertificateError::Damaged)
}

/// The organisation key lets `delegate_key` (Ed25519) vouch for enrollment
/// token keys on behalf of `holder`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegationClaim {
    /// The signing organisation key.
    pub org_key: OrgKey,
    /// The delegate's public key.
    pub delegate_key: [u8; 32],
    /// Who holds it (technician name).
    pub holder: String,
    /// Issue time, Unix seconds.
    pub issued_at: u64,
}

impl DelegationClaim {
    /// The bytes the organisation key signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        signed(DELEGATION_CONTEXT, self)
    }
}

/// A delegation claim and the organisation key's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegationCertificate {
    /// What is vouched for.
    pub claim: DelegationClaim,
    /// Ed25519 signature by the organisation key.
    pub signature: Vec<u8>,
}

impl DelegationCertificate {
    /// As bytes.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }
    /// Parses, refusing oversize input and trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, CertificateError> {
        decode_bounded(bytes)
    }
}

/// A delegate vouches for one enrollment token's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenKeyClaim {
    /// The organisation key at the root.
    pub org_key: OrgKey,
    /// The token's public key (Ed25519).
    pub token_key: [u8; 32],
    /// Issue time, Unix seconds.
    pub issued_at: u64,
}

impl TokenKeyClaim {
    /// The bytes the delegate key signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        signed(TOKEN_KEY_CONTEXT, self)
    }
}

/// A token key claim, the delegate's signature and the delegate's own
/// certificate: everything needed to reach the organisation key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenKeyCertificate {
    /// What is vouched for.
    pub claim: TokenKeyClaim,
    /// Ed25519 signature by the delegate key.
    pub signature: Vec<u8>,
    /// The delegate's certificate by the organisation key.
    pub delegation: DelegationCertificate,
}

/// What the token key signs at enrollment: this device key belongs to the
/// organisation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceBindingClaim {
    /// The organisation key at the root.
    pub org_key: OrgKey,
    /// SHA-256 of the device key's SubjectPublicKeyInfo.
    pub device_key: Fingerprint,
}

impl DeviceBindingClaim {
    /// The bytes the token key signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        signed(DEVICE_BINDING_CONTEXT, self)
    }
}

/// A device key binding: the claim, the token key's signature, and the
/// token key's certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceBinding {
    /// What is bound.
    pub claim: DeviceBindingClaim,
    /// Ed25519 signature by the token key.
    pub signature: Vec<u8>,
    /// The token key's certificate.
    pub token: TokenKeyCertificate,
}

impl DeviceBinding {
    /// As bytes (what the agent stores and shows).
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }
    /// Parses, refusing oversize input and trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, CertificateError> {
        decode_bounded(bytes)
    }
}

/// The binding secret inside a `dse2_` token: the token key's private
/// seed and its certificate. The relay never sees it (the console adds it
/// to the relay's token text).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenBinding {
    /// Ed25519 seed of the token key (32 bytes).
    pub seed: Vec<u8>,
    /// The token key's certificate.
    pub certificate: TokenKeyCertificate,
}

impl fmt::Debug for TokenBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenBinding")
            .field("seed", &"<hidden>")
            .finish_non_exhaustive()
    }
}

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
        signed(SESSION_KEY_CERTIFICATE_CONTEXT, self)
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
        decode_bounded(bytes)
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
    /// The secret that binds the enrolled device's key, when the console
    /// that made the token held a delegate key.
    pub binding: Option<TokenBinding>,
}

impl CertifiedEnrollToken {
    /// The token as text.
    pub fn encode(&self) -> String {
        encode_with_relays(
            CERTIFIED_ENROLL_PREFIX,
            CERTIFIED_ENROLL_LIST_PREFIX,
            self,
            &self.token.other_relays,
        )
    }
}

/// Parses either form of enrollment token: `dse1_` (no organisation key:
/// the device trusts the relay for session keys, as before) or `dse2_`.
pub fn decode_enroll_token(
    text: &str,
) -> Result<(EnrollToken, Option<CertifiedEnrollToken>), TokenError> {
    let trimmed = text.trim();
    if trimmed.starts_with(CERTIFIED_ENROLL_PREFIX)
        || trimmed.starts_with(CERTIFIED_ENROLL_LIST_PREFIX)
    {
        let (mut certified, others): (CertifiedEnrollToken, _) = decode_with_relays(
            text,
            CERTIFIED_ENROLL_PREFIX,
            CERTIFIED_ENROLL_LIST_PREFIX,
            "enrollment token",
        )?;
        certified.token.other_relays = others;
        return Ok((certified.token.clone(), Some(certified)));
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
    /// Ed25519 seed of the technician's delegate key (binds the devices
    /// enrolled with the technician's tokens).
    pub delegate_seed: Vec<u8>,
    /// The encoded [`DelegationCertificate`] of that key.
    pub delegation: Vec<u8>,
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
        encode_with_relays(
            CERTIFIED_LOGIN_PREFIX,
            CERTIFIED_LOGIN_LIST_PREFIX,
            self,
            &self.login.other_relays,
        )
    }
}

/// Parses either form of login string: `dsl1_` or `dsl2_`.
pub fn decode_login_string(
    text: &str,
) -> Result<(LoginString, Option<CertifiedLoginString>), TokenError> {
    let trimmed = text.trim();
    if trimmed.starts_with(CERTIFIED_LOGIN_PREFIX)
        || trimmed.starts_with(CERTIFIED_LOGIN_LIST_PREFIX)
    {
        let (mut certified, others): (CertifiedLoginString, _) = decode_with_relays(
            text,
            CERTIFIED_LOGIN_PREFIX,
            CERTIFIED_LOGIN_LIST_PREFIX,
            "login string",
        )?;
        certified.login.other_relays = others;
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
            other_relays: Vec::new(),
        }
    }

    #[test]
    fn both_enrollment_token_forms_decode() {
        let old = enroll().encode();
        assert_eq!(decode_enroll_token(&old), Ok((enroll(), None)));
        let certified = CertifiedEnrollToken {
            token: enroll(),
            org_key: OrgKey([7; 32]),
            binding: Some(TokenBinding {
                seed: vec![1; 32],
                certificate: TokenKeyCertificate {
                    claim: TokenKeyClaim {
                        org_key: OrgKey([7; 32]),
                        token_key: [2; 32],
                        issued_at: 5,
                    },
                    signature: vec![3; 64],
                    delegation: DelegationCertificate {
                        claim: DelegationClaim {
                            org_key: OrgKey([7; 32]),
                            delegate_key: [4; 32],
                            holder: "alice".into(),
                            issued_at: 5,
                        },
                        signature: vec![5; 64],
                    },
                },
            }),
        };
        let new = certified.encode();
        assert!(
            new.starts_with("dse2_") && new.len() < 2048,
            "{}",
            new.len()
        );
        assert_eq!(
            decode_enroll_token(&format!(" {new}\n")),
            Ok((enroll(), Some(certified)))
        );
        // An old agent (dse1_ only) refuses the new form instead of
        // misreading it.
        assert!(EnrollToken::decode(&new).is_err());
        assert!(decode_enroll_token(&new[..new.len() - 4]).is_err());
    }

    #[test]
    fn certified_tokens_carry_the_relay_list() {
        let others = vec![crate::token::RelayEndpoint {
            addr: "relay-b.example.org:4433".into(),
            fingerprint: Fingerprint([8; 32]),
        }];
        let certified = CertifiedEnrollToken {
            token: EnrollToken {
                other_relays: others.clone(),
                ..enroll()
            },
            org_key: OrgKey([7; 32]),
            binding: None,
        };
        let text = certified.encode();
        assert!(text.starts_with("dse4_"), "{text}");
        assert_eq!(
            decode_enroll_token(&text),
            Ok((certified.token.clone(), Some(certified.clone())))
        );
        // Without a list the certified form is the old one.
        let single = CertifiedEnrollToken {
            token: enroll(),
            ..certified
        };
        assert!(single.encode().starts_with("dse2_"));
        let login = CertifiedLoginString {
            login: LoginString {
                relay: "r:1".into(),
                fingerprint: Fingerprint([1; 32]),
                token: "dst_x".into(),
                other_relays: others,
            },
            session_key: vec![1; 241],
            certificate: vec![2; 150],
            delegate_seed: vec![3; 32],
            delegation: vec![4; 150],
        };
        let text = login.encode();
        assert!(text.starts_with("dsl4_"), "{text}");
        let (decoded, certified) = decode_login_string(&text).expect("decodes");
        assert_eq!(decoded, login.login);
        assert!(certified == Some(login));
    }

    #[test]
    fn both_login_string_forms_decode() {
        let login = LoginString {
            relay: "r:1".into(),
            fingerprint: Fingerprint([1; 32]),
            token: "dst_x".into(),
            other_relays: Vec::new(),
        };
        assert_eq!(
            decode_login_string(&login.encode()),
            Ok((login.clone(), None))
        );
        let certified = CertifiedLoginString {
            login: login.clone(),
            session_key: vec![1; 241],
            certificate: vec![2; 150],
            delegate_seed: vec![3; 32],
            delegation: vec![4; 150],
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
