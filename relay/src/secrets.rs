//! Secret generation and hashing for technician and enrollment tokens.
//!
//! Tokens are 32 random bytes from the OS, so a single SHA-256 is enough to
//! store them: there is nothing to brute-force that a slow hash would
//! protect. Secrets are never logged, never stored in clear and never sent
//! back after the response that issued them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};

/// Prefix of technician tokens, so a leaked one is recognisable by scanners.
pub const TECHNICIAN_TOKEN_PREFIX: &str = "dst_";

/// `n` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], ring::error::Unspecified> {
    let mut out = [0u8; N];
    SystemRandom::new().fill(&mut out)?;
    Ok(out)
}

/// A new technician token: `dst_` and 43 base64url characters.
pub fn new_technician_token() -> Result<String, ring::error::Unspecified> {
    Ok(format!(
        "{TECHNICIAN_TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(random_bytes::<32>()?)
    ))
}

/// A new enrollment secret: 43 base64url characters.
pub fn new_enroll_secret() -> Result<String, ring::error::Unspecified> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

/// The name of a message's variant, for logs: `Enroll` for
/// `Enroll { secret: "…", … }`. Messages are never logged with `{:?}`,
/// whose fields may hold a secret (an enrollment secret, a token).
pub fn message_kind(message: &dyn std::fmt::Debug) -> String {
    let text = format!("{message:?}");
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    text[..end].to_owned()
}

/// The stored form of a secret.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_and_well_formed() {
        let a = new_technician_token().unwrap();
        let b = new_technician_token().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("dst_"));
        assert_eq!(a.len(), 4 + 43);
        assert_ne!(hash_secret(&a), hash_secret(&b));
        assert_eq!(hash_secret(&a), hash_secret(&a));
    }

    #[test]
    fn message_kinds_leave_the_fields_out() {
        let message = deskside_protocol::agent::AgentToRelay::Enroll {
            secret: "s3cret-enroll".to_owned(),
            info: deskside_protocol::agent::DeviceInfo {
                hostname: "pc".to_owned(),
                os: "os".to_owned(),
                agent_version: "1".to_owned(),
            },
        };
        assert_eq!(message_kind(&message), "Enroll");
        let token = deskside_protocol::console::ConsoleToRelay::Authenticate {
            token: "dst_secret".to_owned(),
        };
        assert_eq!(message_kind(&token), "Authenticate");
        assert_eq!(message_kind(&"plain"), "");
    }
}
