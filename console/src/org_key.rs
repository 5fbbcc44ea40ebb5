//! The organisation key as the console keeps it, next to the profile.
//!
//! Each file is named after the profile file (`profile.json` →
//! `profile.org-key.pk8`), so two profiles in one directory never share one:
//! - `….org-key.pk8`: the organisation's Ed25519 signing key (PKCS#8, 0600),
//!   only in administrators' profiles; made by `deskside org-key init`.
//! - `….session-key.pem`: the console's session key (made on first use, or
//!   taken from a `dsl2_` login string).
//! - `….delegate-key` and `….delegation.bin`: an Ed25519 delegate key (its
//!   seed, 0600) and the organisation key's certificate of it; the console
//!   binds the devices enrolled with its tokens with it.
//! - `….session-cert.bin`: the organisation's certificate of that session
//!   key, which it presents to the relay before
//!   opening sessions; it also tells the console the organisation's public
//!   key, which it adds to the enrollment tokens it creates.
//!
//! The relay never sees the private key: certificates and `dse2_` tokens
//! are made here, on the administrator's or technician's computer.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use deskside_net::files::{read_private, write_private};
use deskside_net::orgkey::{check_device_binding, OrgSigningKey, SeedKey};
use deskside_net::Identity;
use deskside_protocol::certificate::{
    CertifiedEnrollToken, CertifiedLoginString, DelegationCertificate, OrgKey,
    SessionKeyCertificate, TokenBinding,
};
use deskside_protocol::console::{IssuedEnrollToken, IssuedTechnicianToken};
use deskside_protocol::token::{EnrollToken, LoginString};
use deskside_protocol::Fingerprint;

/// Subject name of console session keys.
pub const SESSION_CERT_NAME: &str = "deskside-console";

/// `profile`'s sibling named after it: `DIR/NAME.json` → `DIR/NAME.suffix`.
pub(crate) fn beside(profile: &Path, suffix: &str) -> PathBuf {
    let stem = profile
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "profile".to_owned());
    profile.with_file_name(format!("{stem}.{suffix}"))
}

/// The organisation signing key's file, next to `profile`.
pub fn signing_key_path(profile: &Path) -> PathBuf {
    beside(profile, "org-key.pk8")
}

/// The session key's file, next to `profile`.
pub fn session_key_path(profile: &Path) -> PathBuf {
    beside(profile, "session-key.pem")
}

/// The session key certificate's file, next to `profile`.
pub fn certificate_path(profile: &Path) -> PathBuf {
    beside(profile, "session-cert.bin")
}

/// The delegate key's seed file, next to `profile`.
pub fn delegate_key_path(profile: &Path) -> PathBuf {
    beside(profile, "delegate-key")
}

/// The delegate key's certificate file, next to `profile`.
pub fn delegation_path(profile: &Path) -> PathBuf {
    beside(profile, "delegation.bin")
}

/// The delegate key and its certificate, if this profile holds them.
pub fn delegate(profile: &Path) -> anyhow::Result<Option<(SeedKey, DelegationCertificate)>> {
    let (key_path, cert_path) = (delegate_key_path(profile), delegation_path(profile));
    if !key_path.exists() || !cert_path.exists() {
        return Ok(None);
    }
    let damaged = || {
        format!(
            "{} or {} is damaged; log in again with a dsl2_ login string from an administrator",
            key_path.display(),
            cert_path.display()
        )
    };
    let key = SeedKey::from_seed(&read_private(&key_path)?).with_context(damaged)?;
    let delegation =
        DelegationCertificate::decode(&read_private(&cert_path)?).with_context(damaged)?;
    if delegation.claim.delegate_key != key.public() {
        anyhow::bail!(damaged());
    }
    Ok(Some((key, delegation)))
}

fn save_delegate(profile: &Path, seed: &[u8], delegation: &[u8]) -> anyhow::Result<()> {
    write_private(&delegate_key_path(profile), seed)?;
    write_private(&delegation_path(profile), delegation)?;
    Ok(())
}

/// The organisation signing key, if this profile holds one.
pub fn signing_key(profile: &Path) -> anyhow::Result<Option<OrgSigningKey>> {
    let path = signing_key_path(profile);
    if !path.exists() {
        return Ok(None);
    }
    let bytes = read_private(&path)
        .with_context(|| format!("cannot use the organisation key {}", path.display()))?;
    let key = OrgSigningKey::from_pkcs8(&bytes)
        .with_context(|| format!("{} is not an organisation key", path.display()))?;
    Ok(Some(key))
}

/// The console's session key: created once next to the profile, 0600.
pub fn session_identity(profile: &Path) -> anyhow::Result<Identity> {
    let path = session_key_path(profile);
    match read_private(&path) {
        Ok(bytes) => {
            let pem = String::from_utf8(bytes).with_context(|| {
                format!(
                    "{} is not a PEM key; delete it to make a new one",
                    path.display()
                )
            })?;
            Identity::from_key_pem(&pem, &[SESSION_CERT_NAME]).with_context(|| {
                format!("{} is damaged; delete it to make a new one", path.display())
            })
        }
        Err(_) if !path.exists() => {
            let identity = Identity::generate(&[SESSION_CERT_NAME])?;
            write_private(&path, identity.key_pem().as_bytes())?;
            Ok(identity)
        }
        Err(e) => Err(e).with_context(|| format!("cannot use the session key {}", path.display())),
    }
}

/// The stored certificate of the session key, if any, checked to be for
/// `identity`'s key (a certificate left over from an older key is ignored
/// with a warning: sessions would be refused with it anyway).
pub fn session_certificate(
    profile: &Path,
    identity: &Identity,
) -> anyhow::Result<Option<SessionKeyCertificate>> {
    let path = certificate_path(profile);
    if !path.exists() {
        return Ok(None);
    }
    let bytes = read_private(&path)
        .with_context(|| format!("cannot use the session certificate {}", path.display()))?;
    let certificate = SessionKeyCertificate::decode(&bytes).with_context(|| {
        format!(
            "{} is damaged; log in again with a login string from an administrator",
            path.display()
        )
    })?;
    if certificate.claim.session_key != identity.key_fingerprint()? {
        tracing::warn!(
            "{} certifies another session key than {}; log in again with a new login string from an administrator",
            path.display(),
            session_key_path(profile).display()
        );
        return Ok(None);
    }
    Ok(Some(certificate))
}

/// The organisation's public key as this console knows it: from the
/// signing key, else from the session certificate.
pub fn known_org_key(profile: &Path) -> anyhow::Result<Option<OrgKey>> {
    if let Some(key) = signing_key(profile)? {
        return Ok(Some(key.public()));
    }
    let identity_path = session_key_path(profile);
    if !identity_path.exists() {
        return Ok(None);
    }
    let identity = session_identity(profile)?;
    Ok(session_certificate(profile, &identity)?.map(|c| c.claim.org_key))
}

/// Certifies this console's own session key (`deskside org-key init`).
pub fn certify_own_session_key(
    profile: &Path,
    key: &OrgSigningKey,
    technician: &str,
    now: i64,
) -> anyhow::Result<SessionKeyCertificate> {
    let identity = session_identity(profile)?;
    let certificate = key.certify(
        identity.key_fingerprint()?,
        technician,
        u64::try_from(now).unwrap_or(0),
    );
    write_private(&certificate_path(profile), &certificate.encode())?;
    let delegate = SeedKey::generate()?;
    let delegation = key.delegate(
        delegate.public(),
        technician,
        u64::try_from(now).unwrap_or(0),
    );
    save_delegate(profile, delegate.seed(), &delegation.encode())?;
    Ok(certificate)
}

/// When this profile holds the organisation key, turns the login string of
/// a new technician token into a `dsl2_` one carrying a fresh session key
/// made for the technician and its certificate. Returns whether it did.
pub fn certify_issued_token(
    profile: &Path,
    issued: &mut IssuedTechnicianToken,
    now: i64,
) -> anyhow::Result<bool> {
    let Some(key) = signing_key(profile)? else {
        return Ok(false);
    };
    let login = LoginString::decode(&issued.login)
        .context("the relay sent a damaged login string; upgrade the relay")?;
    let session = Identity::generate(&[SESSION_CERT_NAME])?;
    let certificate = key.certify(
        session.key_fingerprint()?,
        &issued.info.name,
        u64::try_from(now).unwrap_or(0),
    );
    let delegate = SeedKey::generate()?;
    let delegation = key.delegate(
        delegate.public(),
        &issued.info.name,
        u64::try_from(now).unwrap_or(0),
    );
    issued.login = CertifiedLoginString {
        login,
        session_key: session.key_pem().into_bytes(),
        certificate: certificate.encode(),
        delegate_seed: delegate.seed().to_vec(),
        delegation: delegation.encode(),
    }
    .encode();
    Ok(true)
}

/// When this console knows the organisation key, turns a new enrollment
/// token into a `dse2_` one carrying it. Returns the key added.
pub fn add_to_enroll_token(
    profile: &Path,
    issued: &mut IssuedEnrollToken,
    now: i64,
) -> anyhow::Result<Option<OrgKey>> {
    let Some(org_key) = known_org_key(profile)? else {
        return Ok(None);
    };
    let token = EnrollToken::decode(&issued.token)
        .context("the relay sent a damaged enrollment token; upgrade the relay")?;
    // With a delegate key, the token also carries a fresh token key that
    // binds the enrolled device's key (the relay never sees it).
    let binding = match delegate(profile)? {
        Some((delegate, delegation)) => {
            let token_key = SeedKey::generate()?;
            let certificate = delegate.certify_token_key(
                &delegation,
                token_key.public(),
                u64::try_from(now).unwrap_or(0),
            );
            Some(TokenBinding {
                seed: token_key.seed().to_vec(),
                certificate,
            })
        }
        None => {
            tracing::warn!("this console holds no delegate key: devices enrolled with this token are not bound to the organisation key (log in again with a dsl2_ login string)");
            None
        }
    };
    issued.token = CertifiedEnrollToken {
        token,
        org_key,
        binding,
    }
    .encode();
    Ok(Some(org_key))
}

/// What the device key check found.
#[derive(Debug, PartialEq, Eq)]
pub enum DeviceCheck {
    /// This console knows no organisation key: nothing to check.
    NoOrgKey,
    /// The device's key is bound to the organisation key.
    Bound,
    /// The device showed no binding and `--allow-unbound-device` was given.
    AllowedUnbound,
    /// The device closed the connection before showing a binding (it
    /// refused, or no one could be asked): no session can run on it, and
    /// the caller reports the device's close reason.
    Closed,
}

/// How long the device has to show its key binding after the handshake.
pub const BINDING_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Checks the device key the end-to-end handshake proved (`device_key`)
/// against the organisation key, with the binding the device shows on the
/// session's first stream. Never trusts the relay: the binding is signed
/// with a token key the relay never saw.
pub async fn check_device(
    profile: &Path,
    connection: &quinn::Connection,
    device_key: Fingerprint,
    allow_unbound: bool,
) -> anyhow::Result<DeviceCheck> {
    let Some(org_key) = known_org_key(profile)? else {
        return Ok(DeviceCheck::NoOrgKey);
    };
    let shown = async {
        let mut stream = connection.accept_uni().await.ok()?;
        stream
            .read_to_end(deskside_protocol::certificate::MAX_CERTIFICATE_LEN)
            .await
            .ok()
    };
    let binding = tokio::time::timeout(BINDING_WAIT, shown)
        .await
        .ok()
        .flatten();
    if binding.is_none() && connection.close_reason().is_some() {
        return Ok(DeviceCheck::Closed);
    }
    match check_device_binding(&org_key, binding.as_deref(), device_key) {
        Ok(_) => Ok(DeviceCheck::Bound),
        Err(deskside_net::orgkey::BindingError::Missing) if allow_unbound => {
            Ok(DeviceCheck::AllowedUnbound)
        }
        Err(e) => Err(e.into()),
    }
}

/// Saves the session key and certificate of a `dsl2_` login string, after
/// the login was accepted.
pub fn save_certified_login(
    profile: &Path,
    certified: &CertifiedLoginString,
) -> anyhow::Result<()> {
    let pem = String::from_utf8(certified.session_key.clone())
        .context("the login string's session key is damaged; ask for a new login string")?;
    let identity = Identity::from_key_pem(&pem, &[SESSION_CERT_NAME])
        .context("the login string's session key is damaged; ask for a new login string")?;
    let certificate = SessionKeyCertificate::decode(&certified.certificate)
        .context("the login string's certificate is damaged; ask for a new login string")?;
    if certificate.claim.session_key != identity.key_fingerprint()? {
        anyhow::bail!(
            "the login string's certificate is for another key; ask your administrator for a new login string"
        );
    }
    let delegate = SeedKey::from_seed(&certified.delegate_seed)
        .context("the login string's delegate key is damaged; ask for a new login string")?;
    let delegation = DelegationCertificate::decode(&certified.delegation)
        .context("the login string's delegation is damaged; ask for a new login string")?;
    if delegation.claim.delegate_key != delegate.public()
        || delegation.claim.org_key != certificate.claim.org_key
    {
        anyhow::bail!(
            "the login string's delegate key does not match its certificate; ask your administrator for a new login string"
        );
    }
    write_private(&session_key_path(profile), pem.as_bytes())?;
    write_private(&certificate_path(profile), &certified.certificate)?;
    save_delegate(profile, &certified.delegate_seed, &certified.delegation)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use deskside_net::orgkey::check_session_certificate;
    use deskside_protocol::certificate::decode_login_string;
    use deskside_protocol::console::TechnicianTokenInfo;
    use deskside_protocol::{Fingerprint, Role, TechnicianId};

    fn issued() -> IssuedTechnicianToken {
        IssuedTechnicianToken {
            info: TechnicianTokenInfo {
                id: TechnicianId(7),
                name: "alice".into(),
                role: Role::Technician,
                created_at: 1,
                expires_at: None,
                revoked_at: None,
                last_used_at: None,
            },
            token: "dst_secret".into(),
            login: LoginString {
                relay: "r:1".into(),
                fingerprint: Fingerprint([1; 32]),
                token: "dst_secret".into(),
                other_relays: Vec::new(),
            }
            .encode(),
        }
    }

    #[test]
    fn an_admin_profile_issues_certified_login_strings_that_log_in_with_a_certified_key() {
        let admin = tempfile::tempdir().unwrap();
        let admin_profile = admin.path().join("profile.json");
        let mut plain = issued();
        assert!(!certify_issued_token(&admin_profile, &mut plain, 5).unwrap());
        assert!(plain.login.starts_with("dsl1_"));

        let key = OrgSigningKey::generate().unwrap();
        write_private(&signing_key_path(&admin_profile), key.pkcs8()).unwrap();
        let mut certified = issued();
        assert!(certify_issued_token(&admin_profile, &mut certified, 5).unwrap());
        let (login, extra) = decode_login_string(&certified.login).unwrap();
        assert_eq!(login.token, "dst_secret");
        let extra = extra.unwrap();

        let tech = tempfile::tempdir().unwrap();
        let tech_profile = tech.path().join("profile.json");
        save_certified_login(&tech_profile, &extra).unwrap();
        let identity = session_identity(&tech_profile).unwrap();
        let certificate = session_certificate(&tech_profile, &identity)
            .unwrap()
            .unwrap();
        assert_eq!(certificate.claim.technician, "alice");
        check_session_certificate(
            &key.public(),
            Some(&certificate.encode()),
            identity.key_fingerprint().unwrap(),
        )
        .unwrap();
        assert_eq!(known_org_key(&tech_profile).unwrap(), Some(key.public()));
        // The technician's enrollment tokens bind devices to the org key.
        let mut enroll = IssuedEnrollToken {
            token: EnrollToken {
                relay: "r:1".into(),
                fingerprint: Fingerprint([1; 32]),
                secret: "s".into(),
                other_relays: Vec::new(),
            }
            .encode(),
            uses: 1,
            expires_at: 9,
        };
        add_to_enroll_token(&tech_profile, &mut enroll, 5).unwrap();
        let (_, certified) =
            deskside_protocol::certificate::decode_enroll_token(&enroll.token).unwrap();
        let binding = certified.unwrap().binding.unwrap();
        let token_key = SeedKey::from_seed(&binding.seed).unwrap();
        let device = Fingerprint([3; 32]);
        let bound = token_key.bind_device(&binding.certificate, device).encode();
        check_device_binding(&key.public(), Some(&bound), device).unwrap();
    }
}
