//! The organisation signing key: Ed25519 (ring) signatures over the claims
//! of `deskside_protocol::certificate`.
//!
//! The private key lives in an administrator's console profile (0600) and
//! never on the relay; this module signs session key certificates with it
//! and checks them against the organisation key an agent enrolled with. It
//! never decides what to do about a bad certificate: callers refuse the
//! session and say why.

use deskside_protocol::certificate::{
    DelegationCertificate, DelegationClaim, DeviceBinding, DeviceBindingClaim, OrgKey,
    SessionKeyCertificate, SessionKeyClaim, TokenKeyCertificate, TokenKeyClaim,
};
use deskside_protocol::Fingerprint;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use thiserror::Error;

/// Errors of the organisation key and its certificates; each says what to do.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum OrgKeyError {
    /// The stored private key is not an Ed25519 PKCS#8 key.
    #[error("the organisation key file is damaged ({0}); restore it from your backup")]
    BadKey(String),
    /// The random generator failed.
    #[error("cannot generate an organisation key: the system random generator failed")]
    Random,
    /// No certificate came with the session key.
    #[error("the technician's session key comes without a certificate of the organisation key this device trusts: the technician must log in with a login string from an administrator holding the organisation key (or the relay is substituting keys)")]
    Missing,
    /// The certificate could not be decoded.
    #[error("the technician's session key certificate is damaged: the technician should ask an administrator for a new login string")]
    Damaged,
    /// The certificate was signed by another organisation key.
    #[error("the technician's session key is certified by organisation key {found}, but this device trusts {trusted}: re-enroll the device with a token made by a console holding the current organisation key")]
    OtherOrganisation {
        /// The key this device enrolled with.
        trusted: OrgKey,
        /// The key named in the certificate.
        found: OrgKey,
    },
    /// The signature does not verify.
    #[error("the technician's session key certificate has an invalid signature: it was not made with the organisation key (the relay may be forging it)")]
    BadSignature,
    /// The certificate is valid but for another key.
    #[error("the session key {used} is not the one the organisation certified for {technician} ({certified}): the relay may be substituting keys; the session is refused")]
    OtherKey {
        /// The technician named in the certificate.
        technician: String,
        /// The certified key.
        certified: Fingerprint,
        /// The key the session uses.
        used: Fingerprint,
    },
}

impl OrgKeyError {
    /// A short form for the audit log (the relay takes at most 200
    /// characters of outcome): what failed, without advice.
    pub fn audit_text(&self) -> String {
        match self {
            OrgKeyError::BadKey(_) | OrgKeyError::Random => "organisation key unusable".to_owned(),
            OrgKeyError::Missing => {
                "no certificate of the organisation key came with the session key".to_owned()
            }
            OrgKeyError::Damaged => "the session key certificate is damaged".to_owned(),
            OrgKeyError::OtherOrganisation { found, .. } => {
                format!("certified by another organisation key ({found})")
            }
            OrgKeyError::BadSignature => {
                "the certificate's signature is not the organisation key's".to_owned()
            }
            OrgKeyError::OtherKey { technician, .. } => {
                let name: String = technician.chars().take(40).collect();
                format!("the session key is not the one certified for {name}: key substituted")
            }
        }
    }
}

/// The organisation's private signing key.
pub struct OrgSigningKey {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for OrgSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrgSigningKey")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

impl OrgSigningKey {
    /// A fresh key.
    pub fn generate() -> Result<Self, OrgKeyError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| OrgKeyError::Random)?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    /// Loads a key from its PKCS#8 DER bytes (as [`OrgSigningKey::pkcs8`] wrote them).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, OrgKeyError> {
        let pair =
            Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| OrgKeyError::BadKey(e.to_string()))?;
        Ok(Self {
            pair,
            pkcs8: pkcs8.to_vec(),
        })
    }

    /// The PKCS#8 DER bytes, to store owner-only.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public half, which agents and consoles trust.
    pub fn public(&self) -> OrgKey {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        OrgKey(out)
    }

    /// Certifies `session_key` as `technician`'s, issued at `issued_at`
    /// (Unix seconds).
    pub fn certify(
        &self,
        session_key: Fingerprint,
        technician: &str,
        issued_at: u64,
    ) -> SessionKeyCertificate {
        let claim = SessionKeyClaim {
            org_key: self.public(),
            session_key,
            technician: technician.to_owned(),
            issued_at,
        };
        let signature = self.pair.sign(&claim.signed_bytes()).as_ref().to_vec();
        SessionKeyCertificate { claim, signature }
    }

    /// Lets `delegate` (an Ed25519 public key) certify enrollment token
    /// keys on behalf of `holder`.
    pub fn delegate(
        &self,
        delegate: [u8; 32],
        holder: &str,
        issued_at: u64,
    ) -> DelegationCertificate {
        let claim = DelegationClaim {
            org_key: self.public(),
            delegate_key: delegate,
            holder: holder.to_owned(),
            issued_at,
        };
        let signature = self.pair.sign(&claim.signed_bytes()).as_ref().to_vec();
        DelegationCertificate { claim, signature }
    }
}

/// Why a device key is not bound to the organisation key; each says what
/// to do.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BindingError {
    /// The device showed no binding.
    #[error("the device key is not bound to the organisation key (the device was enrolled with a token made without a delegate key, or it is not the device at all: the relay may be posing as it); enroll the device again with a token from `deskside enroll-token create` on a console logged in with a dsl2_ login string, or pass --allow-unbound-device and compare the verification code with the employee")]
    Missing,
    /// The binding could not be decoded.
    #[error("the device's key binding is damaged; enroll the device again")]
    Damaged,
    /// The chain does not start at the trusted organisation key.
    #[error("the device is bound to organisation key {found}, not {trusted}: enroll it again with a token from this organisation")]
    OtherOrganisation {
        /// The key this console trusts.
        trusted: OrgKey,
        /// The key named in the binding.
        found: OrgKey,
    },
    /// A signature in the chain does not verify.
    #[error("the device's key binding has an invalid {0} signature: it was not made by this organisation (the relay may be forging it); do not continue")]
    BadSignature(&'static str),
    /// The binding is for another key than the device proved.
    #[error("the device proved key {proved}, but its binding is for {bound}: the relay may be substituting the device key; do not continue")]
    OtherKey {
        /// The key in the binding.
        bound: Fingerprint,
        /// The key the device proved in the handshake.
        proved: Fingerprint,
    },
}

/// An Ed25519 key kept as its 32-byte seed: a delegate key (in a console
/// profile) or an enrollment token key (inside a `dse2_` token).
pub struct SeedKey {
    pair: Ed25519KeyPair,
    seed: [u8; 32],
}

impl std::fmt::Debug for SeedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedKey")
            .field("public", &hex_of(&self.public()))
            .finish_non_exhaustive()
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl SeedKey {
    /// A fresh key.
    pub fn generate() -> Result<Self, OrgKeyError> {
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
            .map_err(|_| OrgKeyError::Random)?;
        Self::from_seed(&seed)
    }

    /// The key of a stored seed.
    pub fn from_seed(seed: &[u8]) -> Result<Self, OrgKeyError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|e| OrgKeyError::BadKey(e.to_string()))?;
        let mut copy = [0u8; 32];
        copy.copy_from_slice(seed);
        Ok(Self { pair, seed: copy })
    }

    /// The seed, to store owner-only.
    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// The public half.
    pub fn public(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    /// As a delegate holding `delegation`: certifies an enrollment token's
    /// key.
    pub fn certify_token_key(
        &self,
        delegation: &DelegationCertificate,
        token_key: [u8; 32],
        issued_at: u64,
    ) -> TokenKeyCertificate {
        let claim = TokenKeyClaim {
            org_key: delegation.claim.org_key,
            token_key,
            issued_at,
        };
        let signature = self.pair.sign(&claim.signed_bytes()).as_ref().to_vec();
        TokenKeyCertificate {
            claim,
            signature,
            delegation: delegation.clone(),
        }
    }

    /// As a token key certified by `certificate`: binds `device_key`.
    pub fn bind_device(
        &self,
        certificate: &TokenKeyCertificate,
        device_key: Fingerprint,
    ) -> DeviceBinding {
        let claim = DeviceBindingClaim {
            org_key: certificate.claim.org_key,
            device_key,
        };
        let signature = self.pair.sign(&claim.signed_bytes()).as_ref().to_vec();
        DeviceBinding {
            claim,
            signature,
            token: certificate.clone(),
        }
    }
}

fn verify(key: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, key)
        .verify(message, signature)
        .is_ok()
}

/// Checks that `binding` (encoded, as the device showed it) binds
/// `device_key` (the key the device proved in the handshake) through a
/// chain that starts at `trusted`.
pub fn check_device_binding(
    trusted: &OrgKey,
    binding: Option<&[u8]>,
    device_key: Fingerprint,
) -> Result<DeviceBinding, BindingError> {
    let bytes = binding
        .filter(|b| !b.is_empty())
        .ok_or(BindingError::Missing)?;
    let binding = DeviceBinding::decode(bytes).map_err(|_| BindingError::Damaged)?;
    let delegation = &binding.token.delegation;
    for found in [
        binding.claim.org_key,
        binding.token.claim.org_key,
        delegation.claim.org_key,
    ] {
        if found != *trusted {
            return Err(BindingError::OtherOrganisation {
                trusted: *trusted,
                found,
            });
        }
    }
    if !verify(
        &trusted.0,
        &delegation.claim.signed_bytes(),
        &delegation.signature,
    ) {
        return Err(BindingError::BadSignature("delegation"));
    }
    if !verify(
        &delegation.claim.delegate_key,
        &binding.token.claim.signed_bytes(),
        &binding.token.signature,
    ) {
        return Err(BindingError::BadSignature("token key"));
    }
    if !verify(
        &binding.token.claim.token_key,
        &binding.claim.signed_bytes(),
        &binding.signature,
    ) {
        return Err(BindingError::BadSignature("device binding"));
    }
    if binding.claim.device_key != device_key {
        return Err(BindingError::OtherKey {
            bound: binding.claim.device_key,
            proved: device_key,
        });
    }
    Ok(binding)
}

/// Checks that `certificate` (encoded, as it travels) is `trusted`'s
/// certificate of `session_key`; returns the certificate when it is.
pub fn check_session_certificate(
    trusted: &OrgKey,
    certificate: Option<&[u8]>,
    session_key: Fingerprint,
) -> Result<SessionKeyCertificate, OrgKeyError> {
    let bytes = certificate.ok_or(OrgKeyError::Missing)?;
    let certificate = SessionKeyCertificate::decode(bytes).map_err(|_| OrgKeyError::Damaged)?;
    if certificate.claim.org_key != *trusted {
        return Err(OrgKeyError::OtherOrganisation {
            trusted: *trusted,
            found: certificate.claim.org_key,
        });
    }
    UnparsedPublicKey::new(&ED25519, trusted.0)
        .verify(&certificate.claim.signed_bytes(), &certificate.signature)
        .map_err(|_| OrgKeyError::BadSignature)?;
    if certificate.claim.session_key != session_key {
        return Err(OrgKeyError::OtherKey {
            technician: certificate.claim.technician.clone(),
            certified: certificate.claim.session_key,
            used: session_key,
        });
    }
    Ok(certificate)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: Fingerprint = Fingerprint([4; 32]);

    #[test]
    fn a_certificate_of_the_trusted_key_for_this_session_key_passes() {
        let org = OrgSigningKey::generate().unwrap();
        let cert = org.certify(KEY, "alice", 1_800_000_000).encode();
        let checked = check_session_certificate(&org.public(), Some(&cert), KEY).unwrap();
        assert_eq!(checked.claim.technician, "alice");
        // The stored key loads back to the same public key.
        let again = OrgSigningKey::from_pkcs8(org.pkcs8()).unwrap();
        assert_eq!(again.public(), org.public());
    }

    #[test]
    fn a_device_key_bound_through_a_delegate_checks_and_every_break_is_named() {
        let org = OrgSigningKey::generate().unwrap();
        let trusted = org.public();
        let delegate = SeedKey::generate().unwrap();
        let delegation = org.delegate(delegate.public(), "alice", 1);
        let token = SeedKey::generate().unwrap();
        let token_cert = delegate.certify_token_key(&delegation, token.public(), 2);
        // The token travels as its seed; the agent rebuilds the key.
        let agent_side = SeedKey::from_seed(token.seed()).unwrap();
        let device = Fingerprint([8; 32]);
        let binding = agent_side.bind_device(&token_cert, device);
        let good = binding.encode();
        assert!(good.len() < 1024, "{}", good.len());
        check_device_binding(&trusted, Some(&good), device).unwrap();

        let check = |bytes: Option<&[u8]>, key| check_device_binding(&trusted, bytes, key);
        assert_eq!(check(None, device).unwrap_err(), BindingError::Missing);
        assert_eq!(check(Some(&[]), device).unwrap_err(), BindingError::Missing);
        assert_eq!(
            check(Some(b"junk"), device).unwrap_err(),
            BindingError::Damaged
        );
        // A relay posing as the device proves another key.
        let relay_key = Fingerprint([9; 32]);
        assert!(matches!(
            check(Some(&good), relay_key).unwrap_err(),
            BindingError::OtherKey { proved, .. } if proved == relay_key
        ));
        // A relay binding its own key with its own "token key".
        let rogue_token = SeedKey::generate().unwrap();
        let mut rogue = rogue_token.bind_device(&token_cert, relay_key);
        assert_eq!(
            check(Some(&rogue.encode()), relay_key).unwrap_err(),
            BindingError::BadSignature("device binding")
        );
        // ... certified by a delegate the organisation never certified.
        let rogue_delegate = SeedKey::generate().unwrap();
        let mut forged_delegation = delegation.clone();
        forged_delegation.claim.delegate_key = rogue_delegate.public();
        rogue.token = rogue_delegate.certify_token_key(&forged_delegation, rogue_token.public(), 3);
        assert_eq!(
            check(Some(&rogue.encode()), relay_key).unwrap_err(),
            BindingError::BadSignature("delegation")
        );
        // Another organisation's chain.
        let other = OrgSigningKey::generate().unwrap();
        let other_delegation = other.delegate(delegate.public(), "alice", 1);
        let other_cert = delegate.certify_token_key(&other_delegation, token.public(), 2);
        let other_binding = token.bind_device(&other_cert, device).encode();
        assert!(matches!(
            check(Some(&other_binding), device).unwrap_err(),
            BindingError::OtherOrganisation { .. }
        ));
    }

    #[test]
    fn every_kind_of_bad_certificate_is_refused_with_its_reason() {
        let org = OrgSigningKey::generate().unwrap();
        let other_org = OrgSigningKey::generate().unwrap();
        let trusted = org.public();
        let good = org.certify(KEY, "alice", 1);
        let check = |bytes: Option<&[u8]>, key| check_session_certificate(&trusted, bytes, key);

        assert_eq!(check(None, KEY).unwrap_err(), OrgKeyError::Missing);
        assert_eq!(check(Some(b"junk"), KEY).unwrap_err(), OrgKeyError::Damaged);
        // A substituted key: the real certificate names another key.
        let substituted = Fingerprint([5; 32]);
        assert!(matches!(
            check(Some(&good.encode()), substituted).unwrap_err(),
            OrgKeyError::OtherKey { used, .. } if used == substituted
        ));
        // A certificate from another organisation key.
        let foreign = other_org.certify(KEY, "mallory", 1).encode();
        assert!(matches!(
            check(Some(&foreign), KEY).unwrap_err(),
            OrgKeyError::OtherOrganisation { .. }
        ));
        // A forged claim: the trusted key named, signed by another key.
        let mut forged = other_org.certify(substituted, "mallory", 1);
        forged.claim.org_key = trusted;
        assert_eq!(
            check(Some(&forged.encode()), substituted).unwrap_err(),
            OrgKeyError::BadSignature
        );
        // A real signature whose claim was edited afterwards.
        let mut edited = good.clone();
        edited.claim.session_key = substituted;
        assert_eq!(
            check(Some(&edited.encode()), substituted).unwrap_err(),
            OrgKeyError::BadSignature
        );
        assert!(OrgKeyError::Missing.to_string().contains("log in"));
        let long = OrgKeyError::OtherKey {
            technician: "x".repeat(500),
            certified: KEY,
            used: substituted,
        };
        assert!(long.audit_text().len() < 150, "{}", long.audit_text());
    }
}
