//! Checks that the relay can start before it creates anything.
//!
//! A first start creates the database, the organisation and the one-time
//! admin token. If the certificate were checked only after that, a typo in
//! `cert =` would leave a database behind whose admin token was never shown.
//! So the certificate and key are read and matched, and the UDP port bound,
//! first; [`Relay::spawn`](crate::Relay::spawn) then uses what was checked.
//!
//! Never does: create or change a file.

use std::net::UdpSocket;

use anyhow::Context as _;
use deskside_net::{Identity, ALPN};

use crate::config::{CertSource, RelayConfig};
use crate::tls_files::load_identity;

/// What the checks produced, for the start to use.
#[derive(Debug)]
pub struct Preflight {
    /// The certificate and key from files (`None` for a self-signed
    /// certificate, which lives in the data directory).
    pub identity: Option<Identity>,
    /// The bound UDP socket.
    pub socket: UdpSocket,
}

/// Reads and matches the certificate files and binds the listening address.
pub fn check(config: &RelayConfig) -> anyhow::Result<Preflight> {
    let identity = match &config.cert {
        CertSource::Files { cert, key } => {
            // Reading files named in the configuration creates nothing.
            let identity = load_identity(&config.data_dir, &config.cert)?;
            identity.server_config(ALPN).with_context(|| {
                format!(
                    "the key {} does not go with the certificate {}: configure the key the certificate was issued for",
                    key.display(),
                    cert.display()
                )
            })?;
            Some(identity)
        }
        CertSource::SelfSigned => None,
    };
    let socket = UdpSocket::bind(config.listen).with_context(|| {
        format!(
            "cannot listen on UDP {}: is another relay running there? choose another address with --listen or `listen =`",
            config.listen
        )
    })?;
    Ok(Preflight { identity, socket })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FileConfig, Overrides};

    fn config(dir: &std::path::Path, cert: &str, key: &str) -> RelayConfig {
        let file: FileConfig = toml::from_str(&format!(
            "cert = {cert:?}\nkey = {key:?}\nlisten = \"127.0.0.1:0\"\ndata_dir = {:?}",
            dir.join("data")
        ))
        .unwrap();
        RelayConfig::resolve(file, Overrides::default()).unwrap()
    }

    #[test]
    fn missing_and_mismatched_certificates_are_refused_without_creating_anything() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            deskside_net::files::write_private(&path, text.as_bytes()).unwrap();
            path.display().to_string()
        };
        let one = Identity::generate(&["one"]).unwrap();
        let two = Identity::generate(&["two"]).unwrap();
        let cert = write("cert.pem", one.cert_pem());
        let key = write("key.pem", one.key_pem());
        let other_key = write("other-key.pem", two.key_pem());

        let missing = dir.path().join("nope.pem").display().to_string();
        let error = check(&config(dir.path(), &missing, &key)).unwrap_err();
        assert!(format!("{error:#}").contains("nope.pem"), "{error:#}");
        let error = check(&config(dir.path(), &cert, &other_key)).unwrap_err();
        assert!(
            format!("{error:#}").contains("does not go with"),
            "{error:#}"
        );
        assert!(!dir.path().join("data").exists());

        let ok = check(&config(dir.path(), &cert, &key)).unwrap();
        assert_eq!(ok.identity.unwrap().fingerprint(), one.fingerprint());
        // The port is taken now: a second relay on it is refused.
        let taken = ok.socket.local_addr().unwrap();
        let mut busy = config(dir.path(), &cert, &key);
        busy.listen = taken;
        let error = check(&busy).unwrap_err();
        assert!(format!("{error:#}").contains("cannot listen"), "{error:#}");
        assert!(!dir.path().join("data").exists());
    }
}
