//! `[tickets]` in relay.toml: the ticketing connectors, validated once,
//! their secrets read from owner-only files or the environment (never
//! from the configuration file itself, never printed).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::Deserialize;

/// Default wait after a first failed delivery.
pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_secs(2);
/// Default longest wait between attempts.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(600);
/// Default limit of one HTTP exchange.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// `[tickets]` as written. Every field is optional; no connector, no
/// delivery.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketsFile {
    /// Wait after a first failed delivery (humantime). Default `2s`,
    /// doubling after each further failure.
    pub retry_initial: Option<String>,
    /// Longest wait between attempts (humantime). Default `10m`.
    pub retry_max: Option<String>,
    /// Limit of one HTTP exchange (humantime). Default `15s`.
    pub timeout: Option<String>,
    /// PEM file of the certificate authorities to trust for HTTPS instead
    /// of the usual public ones (Mozilla's list), for systems with an
    /// internal CA. Default: the public ones.
    pub ca_file: Option<PathBuf>,
    /// `[[tickets.connector]]`, one per ticketing system.
    #[serde(default)]
    pub connector: Vec<ConnectorFile>,
}

/// `[[tickets.connector]]` as written: `type` says which system.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ConnectorFile {
    /// A JSON POST per event, signed with HMAC-SHA256.
    Webhook {
        /// Name in logs and in `deskside requests show` (default `webhook`).
        name: Option<String>,
        /// Where to POST.
        url: String,
        /// File holding the signing secret (owner-only).
        secret_file: Option<PathBuf>,
        /// Or the environment variable holding it.
        secret_env: Option<String>,
    },
    /// Zammad's REST API v1.
    Zammad {
        /// Name (default `zammad`).
        name: Option<String>,
        /// Zammad's address, e.g. `https://zammad.example.org`.
        url: String,
        /// File holding the API access token (owner-only).
        token_file: Option<PathBuf>,
        /// Or the environment variable holding it.
        token_env: Option<String>,
        /// The group tickets go to, e.g. `Users`.
        group: String,
        /// The customer tickets are made for (an existing user's email, or
        /// `guess:someone@example.org`).
        customer: String,
    },
    /// GLPI's legacy REST API (`apirest.php`).
    Glpi {
        /// Name (default `glpi`).
        name: Option<String>,
        /// The API's address, ending in `apirest.php`.
        url: String,
        /// File holding the API user's token (owner-only).
        user_token_file: Option<PathBuf>,
        /// Or the environment variable holding it.
        user_token_env: Option<String>,
        /// File holding the App-Token of the API client, if GLPI asks for one.
        app_token_file: Option<PathBuf>,
        /// Or the environment variable holding it.
        app_token_env: Option<String>,
        /// The request source (`requesttypes_id`) of the tickets; GLPI's
        /// default when unset.
        request_source: Option<u32>,
    },
    /// Request Tracker 5's REST 2.0 API.
    Rt {
        /// Name (default `rt`).
        name: Option<String>,
        /// RT's web address, e.g. `https://rt.example.org/rt` (the API is
        /// under `/REST/2.0`).
        url: String,
        /// The queue tickets go to, e.g. `General`.
        queue: String,
        /// File holding an RT auth token (owner-only).
        token_file: Option<PathBuf>,
        /// Or the environment variable holding it.
        token_env: Option<String>,
        /// Or an RT user (HTTP basic authentication) …
        user: Option<String>,
        /// … whose password is in this file (owner-only) …
        password_file: Option<PathBuf>,
        /// … or in this environment variable.
        password_env: Option<String>,
        /// The requestor when the employee's contact is not an email
        /// address; none when unset.
        default_requestor: Option<String>,
    },
}

/// A secret read from a file or the environment. Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret, to put in a header or key a MAC.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// For tests.
    pub fn new(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// One connector, validated.
#[derive(Clone, Debug)]
pub struct ConnectorConfig {
    /// Its unique name.
    pub name: String,
    /// Which system, and how to reach it.
    pub kind: ConnectorKind,
}

/// Which system.
#[derive(Clone, Debug)]
pub enum ConnectorKind {
    /// A signed webhook.
    Webhook {
        /// Where to POST.
        url: String,
        /// The signing secret.
        secret: Secret,
    },
    /// Zammad.
    Zammad {
        /// Base address.
        url: String,
        /// API token.
        token: Secret,
        /// Group.
        group: String,
        /// Customer.
        customer: String,
    },
    /// GLPI.
    Glpi {
        /// `…/apirest.php`.
        url: String,
        /// User token.
        user_token: Secret,
        /// App-Token.
        app_token: Option<Secret>,
        /// `requesttypes_id`.
        request_source: Option<u32>,
    },
    /// Request Tracker.
    Rt {
        /// Web address (REST 2.0 under `/REST/2.0`).
        url: String,
        /// Token or user and password.
        auth: super::rt::RtAuth,
        /// Queue.
        queue: String,
        /// Requestor when the contact is no email address.
        default_requestor: Option<String>,
    },
}

/// `[tickets]`, validated.
#[derive(Clone, Debug)]
pub struct TicketsConfig {
    /// Wait after a first failure.
    pub retry_initial: Duration,
    /// Longest wait.
    pub retry_max: Duration,
    /// Limit of one HTTP exchange.
    pub timeout: Duration,
    /// Certificate authorities trusted for HTTPS; empty: the public ones.
    pub ca_certs: Vec<ureq::tls::Certificate<'static>>,
    /// The connectors.
    pub connectors: Vec<ConnectorConfig>,
}

impl Default for TicketsConfig {
    fn default() -> Self {
        Self {
            retry_initial: DEFAULT_RETRY_INITIAL,
            retry_max: DEFAULT_RETRY_MAX,
            timeout: DEFAULT_TIMEOUT,
            ca_certs: Vec::new(),
            connectors: Vec::new(),
        }
    }
}

impl TicketsFile {
    /// Validates the section and reads the secrets.
    pub fn resolve(self) -> anyhow::Result<TicketsConfig> {
        let duration = |name: &str, text: Option<String>, default: Duration| match text {
            None => Ok(default),
            Some(text) => humantime::parse_duration(&text)
                .with_context(|| format!("invalid [tickets] {name} {text:?} (examples: 2s, 10m)")),
        };
        let retry_initial = duration("retry_initial", self.retry_initial, DEFAULT_RETRY_INITIAL)?;
        let retry_max = duration("retry_max", self.retry_max, DEFAULT_RETRY_MAX)?;
        let timeout = duration("timeout", self.timeout, DEFAULT_TIMEOUT)?;
        if retry_initial.is_zero() || retry_max < retry_initial {
            bail!("[tickets] retry_initial must be above zero and at most retry_max");
        }
        if timeout < Duration::from_secs(1) || timeout > Duration::from_secs(300) {
            bail!("[tickets] timeout must be between 1 s and 5 min, got {timeout:?}");
        }
        let ca_certs = match &self.ca_file {
            None => Vec::new(),
            Some(path) => read_ca_file(path)?,
        };
        let mut connectors: Vec<ConnectorConfig> = Vec::new();
        for file in self.connector {
            let connector = file.resolve()?;
            if connectors.iter().any(|c| c.name == connector.name) {
                bail!(
                    "two [[tickets.connector]] are named {:?}: give each a distinct `name`",
                    connector.name
                );
            }
            connectors.push(connector);
        }
        Ok(TicketsConfig {
            retry_initial,
            retry_max,
            timeout,
            ca_certs,
            connectors,
        })
    }
}

impl ConnectorFile {
    fn resolve(self) -> anyhow::Result<ConnectorConfig> {
        let (name, kind) = match self {
            ConnectorFile::Webhook {
                name,
                url,
                secret_file,
                secret_env,
            } => {
                let name = name.unwrap_or_else(|| "webhook".into());
                let secret = secret(&name, "secret", secret_file, secret_env)?;
                (name, ConnectorKind::Webhook { url, secret })
            }
            ConnectorFile::Zammad {
                name,
                url,
                token_file,
                token_env,
                group,
                customer,
            } => {
                let name = name.unwrap_or_else(|| "zammad".into());
                let token = secret(&name, "token", token_file, token_env)?;
                if group.trim().is_empty() || customer.trim().is_empty() {
                    bail!("connector {name:?}: Zammad needs a `group` and a `customer` for its tickets");
                }
                let url = url.trim_end_matches('/').to_owned();
                (
                    name,
                    ConnectorKind::Zammad {
                        url,
                        token,
                        group,
                        customer,
                    },
                )
            }
            ConnectorFile::Glpi {
                name,
                url,
                user_token_file,
                user_token_env,
                app_token_file,
                app_token_env,
                request_source,
            } => {
                let name = name.unwrap_or_else(|| "glpi".into());
                let user_token = secret(&name, "user_token", user_token_file, user_token_env)?;
                let app_token = match (app_token_file, app_token_env) {
                    (None, None) => None,
                    (file, env) => Some(secret(&name, "app_token", file, env)?),
                };
                let url = url.trim_end_matches('/').to_owned();
                if !url.ends_with("/apirest.php") {
                    bail!("connector {name:?}: the GLPI url must be its API's address, ending in /apirest.php (e.g. https://glpi.example.org/apirest.php)");
                }
                (
                    name,
                    ConnectorKind::Glpi {
                        url,
                        user_token,
                        app_token,
                        request_source,
                    },
                )
            }
            ConnectorFile::Rt {
                name,
                url,
                queue,
                token_file,
                token_env,
                user,
                password_file,
                password_env,
                default_requestor,
            } => {
                let name = name.unwrap_or_else(|| "rt".into());
                let auth = match user {
                    Some(user) => {
                        if token_file.is_some() || token_env.is_some() {
                            bail!("connector {name:?}: set a token (token_file or token_env) or a user with its password, not both");
                        }
                        if user.trim().is_empty() {
                            bail!("connector {name:?}: its user is empty");
                        }
                        let password = secret(&name, "password", password_file, password_env)?;
                        super::rt::RtAuth::Basic { user, password }
                    }
                    None => {
                        if password_file.is_some() || password_env.is_some() {
                            bail!("connector {name:?}: a password needs its `user` (or use a token: token_file)");
                        }
                        super::rt::RtAuth::Token(secret(&name, "token", token_file, token_env)?)
                    }
                };
                if queue.trim().is_empty() {
                    bail!(
                        "connector {name:?}: RT needs the `queue` its tickets go to (e.g. General)"
                    );
                }
                let url = url.trim_end_matches('/').to_owned();
                if url.ends_with("/REST/2.0") {
                    bail!("connector {name:?}: the RT url is its web address, without /REST/2.0 (e.g. https://rt.example.org/rt)");
                }
                (
                    name,
                    ConnectorKind::Rt {
                        url,
                        auth,
                        queue,
                        default_requestor: default_requestor.filter(|r| !r.trim().is_empty()),
                    },
                )
            }
        };
        if name.is_empty()
            || name.len() > 32
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            bail!("connector name {name:?}: use 1 to 32 lowercase letters, digits, - or _");
        }
        let url = match &kind {
            ConnectorKind::Webhook { url, .. }
            | ConnectorKind::Zammad { url, .. }
            | ConnectorKind::Glpi { url, .. }
            | ConnectorKind::Rt { url, .. } => url,
        };
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            bail!("connector {name:?}: url {:?} must start with https:// (or http:// on a trusted network)", super::http::without_query(url));
        }
        Ok(ConnectorConfig { name, kind })
    }
}

/// Reads `what` of connector `name` from its file (owner-only) or its
/// environment variable: exactly one of them.
fn secret(
    name: &str,
    what: &str,
    file: Option<PathBuf>,
    env: Option<String>,
) -> anyhow::Result<Secret> {
    let value = match (file, env) {
        (Some(path), None) => read_secret_file(&path).with_context(|| {
            format!("connector {name:?}: cannot read its {what} from {}", path.display())
        })?,
        (None, Some(var)) => std::env::var(&var).with_context(|| {
            format!("connector {name:?}: the environment variable {var} (its {what}) is not set")
        })?,
        (Some(_), Some(_)) => {
            bail!("connector {name:?}: set {what}_file or {what}_env, not both")
        }
        (None, None) => bail!(
            "connector {name:?} needs its {what}: set {what}_file (a file only the relay's user can read) or {what}_env"
        ),
    };
    let value = value.trim().to_owned();
    if value.is_empty() {
        bail!("connector {name:?}: its {what} is empty");
    }
    Ok(Secret(value))
}

/// The certificates of a PEM file (at least one).
fn read_ca_file(path: &Path) -> anyhow::Result<Vec<ureq::tls::Certificate<'static>>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read [tickets] ca_file {}", path.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => bail!("[tickets] ca_file {}: unreadable PEM ({e})", path.display()),
        }
    }
    if certs.is_empty() {
        bail!(
            "[tickets] ca_file {} holds no certificate (expected PEM \"BEGIN CERTIFICATE\" blocks)",
            path.display()
        );
    }
    Ok(certs)
}

fn read_secret_file(path: &Path) -> anyhow::Result<String> {
    let bytes = deskside_net::files::read_private(path)?;
    String::from_utf8(bytes).context("the file is not UTF-8 text")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<TicketsConfig> {
        #[derive(Deserialize)]
        struct Top {
            tickets: TicketsFile,
        }
        let top: Top = toml::from_str(text)?;
        top.tickets.resolve()
    }

    #[test]
    fn connectors_read_their_secrets_and_bad_sections_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("zammad.token");
        deskside_net::files::write_private(&token, b"tok-123\n").unwrap();
        // A variable cargo sets for every test run (no set_var: other
        // tests' threads may read the environment at the same time).
        let config = parse(&format!(
            r#"
[tickets]
retry_initial = "1s"
[[tickets.connector]]
type = "zammad"
url = "https://zammad.example.org/"
token_file = {token:?}
group = "Users"
customer = "helpdesk@example.org"
[[tickets.connector]]
type = "webhook"
url = "https://hooks.example.org/in"
secret_env = "CARGO_PKG_NAME"
"#
        ))
        .unwrap();
        assert_eq!(config.retry_initial, Duration::from_secs(1));
        assert_eq!(config.connectors.len(), 2);
        match &config.connectors[0].kind {
            ConnectorKind::Zammad { url, token, .. } => {
                assert_eq!(url, "https://zammad.example.org");
                assert_eq!(token.expose(), "tok-123");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            !format!("{config:?}").contains("tok-123"),
            "Debug hides secrets"
        );
        assert_eq!(config.connectors[1].name, "webhook");
        match &config.connectors[1].kind {
            ConnectorKind::Webhook { secret, .. } => assert_eq!(secret.expose(), "deskside-relay"),
            other => panic!("{other:?}"),
        }

        let refused = |text: &str, needle: &str| {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(needle), "{err}");
        };
        refused(
            "[tickets]\n[[tickets.connector]]\ntype = \"zammad\"\nurl = \"https://z\"\ngroup = \"g\"\ncustomer = \"c\"",
            "needs its token",
        );
        refused(
            "[tickets]\n[[tickets.connector]]\ntype = \"glpi\"\nurl = \"https://g/\"\nuser_token_env = \"CARGO_PKG_NAME\"",
            "apirest.php",
        );
        refused(
            "[tickets]\n[[tickets.connector]]\ntype = \"jira\"\nurl = \"https://j\"",
            "jira",
        );
        refused(
            "[tickets]\n[[tickets.connector]]\ntype = \"webhook\"\nurl = \"https://h\"\nsecret_env = \"CARGO_PKG_NAME\"\nsecret = \"inline\"",
            "secret",
        );
        refused(
            "[tickets]\n[[tickets.connector]]\ntype = \"webhook\"\nurl = \"https://h\"\nsecret_env = \"CARGO_PKG_NAME\"\n[[tickets.connector]]\ntype = \"webhook\"\nurl = \"https://i\"\nsecret_env = \"CARGO_PKG_NAME\"",
            "distinct",
        );
        refused(
            "[tickets]\nca_file = \"/nonexistent/ca.pem\"",
            "cannot read [tickets] ca_file",
        );
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        refused(
            &format!("[tickets]\nca_file = {junk:?}"),
            "holds no certificate",
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
            refused(
                &format!("[tickets]\n[[tickets.connector]]\ntype = \"zammad\"\nurl = \"https://z\"\ngroup = \"g\"\ncustomer = \"c\"\ntoken_file = {token:?}"),
                "cannot read its token",
            );
        }
    }

    #[test]
    fn rt_takes_a_token_or_a_user_and_password() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("rt.token");
        deskside_net::files::write_private(&token, b"1-14-abc\n").unwrap();
        let config = parse(&format!(
            "[tickets]\n[[tickets.connector]]\ntype = \"rt\"\nurl = \"https://rt.example.org/rt/\"\nqueue = \"Helpdesk\"\ntoken_file = {token:?}\ndefault_requestor = \"it@example.org\"\n\
             [[tickets.connector]]\ntype = \"rt\"\nname = \"rt-basic\"\nurl = \"http://rt.lan\"\nqueue = \"General\"\nuser = \"deskside\"\npassword_env = \"CARGO_PKG_NAME\""
        ))
        .unwrap();
        match &config.connectors[0].kind {
            ConnectorKind::Rt {
                url,
                auth: super::super::rt::RtAuth::Token(token),
                queue,
                default_requestor,
            } => {
                assert_eq!(url, "https://rt.example.org/rt");
                assert_eq!(token.expose(), "1-14-abc");
                assert_eq!(queue, "Helpdesk");
                assert_eq!(default_requestor.as_deref(), Some("it@example.org"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(config.connectors[0].name, "rt");
        match &config.connectors[1].kind {
            ConnectorKind::Rt {
                auth: super::super::rt::RtAuth::Basic { user, password },
                default_requestor: None,
                ..
            } => assert_eq!(
                (user.as_str(), password.expose()),
                ("deskside", "deskside-relay")
            ),
            other => panic!("{other:?}"),
        }
        let refused = |text: &str, needle: &str| {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(needle), "{err}");
        };
        let head =
            "[tickets]\n[[tickets.connector]]\ntype = \"rt\"\nurl = \"https://rt.example.org\"\n";
        refused(&format!("{head}queue = \"q\""), "needs its token");
        refused(
            &format!("{head}queue = \"\"\ntoken_env = \"CARGO_PKG_NAME\""),
            "queue",
        );
        refused(
            &format!("{head}queue = \"q\"\nuser = \"u\"\npassword_env = \"CARGO_PKG_NAME\"\ntoken_env = \"CARGO_PKG_NAME\""),
            "not both",
        );
        refused(
            &format!("{head}queue = \"q\"\npassword_env = \"CARGO_PKG_NAME\""),
            "needs its `user`",
        );
        refused(
            "[tickets]\n[[tickets.connector]]\ntype = \"rt\"\nurl = \"https://rt.example.org/REST/2.0/\"\nqueue = \"q\"\ntoken_env = \"CARGO_PKG_NAME\"",
            "without /REST/2.0",
        );
    }
}
