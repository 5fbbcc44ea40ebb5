//! The relay's configuration: defaults < TOML file < command-line flags,
//! validated once into [`RelayConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
#[cfg(feature = "test-utils")]
use deskside_protocol::Fingerprint;
use deskside_protocol::SessionId;
use serde::Deserialize;

use crate::admission::AdmissionLimits;

/// Default UDP port.
pub const DEFAULT_PORT: u16 = 4433;

/// Default path of the configuration file outside `--dev`.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/deskside/relay.toml";

/// Default idle timeout: agents keep-alive every 4 s, so 12 s is three missed
/// keep-alives before a device is reported offline.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(12);

/// Renders a first configuration file for `deskside-relay init-config`.
pub fn render_initial(listen: SocketAddr, public_addr: &str) -> String {
    include_str!("relay.toml.in")
        .replace("@LISTEN@", &listen.to_string())
        .replace("@PUBLIC_ADDR@", public_addr)
}

/// The settings file, `/etc/deskside/relay.toml`. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address and UDP port to listen on. Default `0.0.0.0:4433`.
    pub listen: Option<SocketAddr>,
    /// `host:port` written into enrollment tokens and login strings.
    /// Required when `listen` is a wildcard address.
    pub public_addr: Option<String>,
    /// State directory. Default `/var/lib/deskside-relay`.
    pub data_dir: Option<PathBuf>,
    /// PEM certificate file. Required outside `--dev`.
    pub cert: Option<PathBuf>,
    /// PEM private key file (PKCS#8). Required outside `--dev`.
    pub key: Option<PathBuf>,
    /// Use a self-signed certificate kept in the data directory instead of
    /// `cert`/`key`. Agents pin its fingerprint through their enrollment
    /// tokens, so no certificate authority is needed; the packages start
    /// with this so that the relay runs right after installation.
    pub self_signed: Option<bool>,
    /// Name of the organisation created on first start. Default `Default`.
    pub organisation: Option<String>,
    /// Idle timeout, humantime syntax (e.g. `12s`).
    pub idle_timeout: Option<String>,
    /// Bytes of UDP receive and send buffer asked of the kernel for the
    /// relay's socket. Default 8 MiB (`udp_buffers`).
    pub udp_buffer: Option<usize>,
    /// Limits on new and unauthenticated connections (`[limits]`).
    #[serde(default)]
    pub limits: LimitsFile,
    /// Prometheus metrics (`[metrics]`).
    #[serde(default)]
    pub metrics: MetricsFile,
    /// Where the relay keeps its state (`[store]`).
    #[serde(default)]
    pub store: StoreFile,
    /// Ticketing connectors (`[tickets]`, see `tickets::config`).
    #[serde(default)]
    pub tickets: crate::tickets::TicketsFile,
}

/// `[store]`: the relay's database. By default an embedded SQLite file,
/// `relay.db` in the data directory.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    /// `postgres://user[:password]@host[:port]/database`: a PostgreSQL
    /// server that several relays may share. Unset: SQLite.
    pub url: Option<String>,
}

/// `[metrics]`: the Prometheus endpoint. Off unless `listen` is set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsFile {
    /// TCP address serving `GET /metrics`, e.g. `127.0.0.1:9474`. Keep it
    /// on loopback (or a management network): the endpoint has no
    /// authentication.
    pub listen: Option<SocketAddr>,
}

/// `[limits]`: how much the relay lets connections that have not
/// authenticated yet cost it. Every field is optional; the defaults are
/// those of [`AdmissionLimits`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Handshakes in progress from which new addresses must answer a QUIC
    /// Retry first (0: always). Default 32.
    pub retry_above_handshakes: Option<usize>,
    /// Most QUIC handshakes in progress. Default 256.
    pub max_handshakes: Option<usize>,
    /// Most connections not yet authenticated. Default 1024.
    pub max_unauthenticated: Option<usize>,
    /// Most connections not yet authenticated per source address (IPv6:
    /// per /64). Default 16.
    pub max_unauthenticated_per_source: Option<usize>,
    /// Failed authentications a source may make in a row. Default 10.
    pub auth_failure_burst: Option<u32>,
    /// Then one more per this interval (humantime). Default `6s`.
    pub auth_failure_interval: Option<String>,
    /// One summary log line of failed and refused connections per this
    /// interval (humantime). Default `10s`.
    pub log_interval: Option<String>,
    /// Agents attached per second in a reconnect storm; agents spread
    /// their reconnections over the fleet divided by this. Default 800.
    pub attach_rate: Option<u32>,
}

impl LimitsFile {
    /// The file's values over the defaults, validated.
    pub fn resolve(self) -> anyhow::Result<AdmissionLimits> {
        let defaults = AdmissionLimits::default();
        let duration = |name: &str, text: Option<String>, default: Duration| match text {
            None => Ok(default),
            Some(text) => humantime::parse_duration(&text)
                .with_context(|| format!("invalid [limits] {name} {text:?} (examples: 6s, 1m)")),
        };
        let limits = AdmissionLimits {
            retry_above_handshakes: self
                .retry_above_handshakes
                .unwrap_or(defaults.retry_above_handshakes),
            max_handshakes: self.max_handshakes.unwrap_or(defaults.max_handshakes),
            max_unauthenticated: self
                .max_unauthenticated
                .unwrap_or(defaults.max_unauthenticated),
            max_unauthenticated_per_source: self
                .max_unauthenticated_per_source
                .unwrap_or(defaults.max_unauthenticated_per_source),
            auth_failure_burst: self
                .auth_failure_burst
                .unwrap_or(defaults.auth_failure_burst),
            auth_failure_interval: duration(
                "auth_failure_interval",
                self.auth_failure_interval,
                defaults.auth_failure_interval,
            )?,
            auth_deadline: defaults.auth_deadline,
            log_interval: duration("log_interval", self.log_interval, defaults.log_interval)?,
            attach_rate: self.attach_rate.unwrap_or(defaults.attach_rate),
        };
        limits
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid [limits] in the configuration: {e}"))?;
        Ok(limits)
    }
}

impl FileConfig {
    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("invalid configuration in {}", path.display()))
    }
}

/// Where the relay's TLS certificate comes from.
#[derive(Clone, Debug)]
pub enum CertSource {
    /// Self-signed, created in the data directory on first start (`--dev`).
    SelfSigned,
    /// PEM files.
    Files {
        /// Certificate chain.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
}

/// Which way a forwarded session packet went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the console to the agent.
    ToAgent,
    /// From the agent to the console.
    ToConsole,
}

/// Called with every forwarded session packet: the session id, the
/// direction and the opaque inner packet.
pub type ForwardHook = Arc<dyn Fn(SessionId, Direction, &[u8]) + Send + Sync>;

/// Test hooks: ways to observe or misbehave that only tests set, in code.
/// They are never read from the command line or the configuration file, so
/// a deployed relay always has the default (no hooks).
#[derive(Clone, Default)]
pub struct RelayHooks {
    /// Sees every forwarded packet (tests check that the relay only ever
    /// sees ciphertext).
    pub on_forward: Option<ForwardHook>,
    /// Replaces the keys the relay hands out: the first is told to consoles
    /// as the device's key, the second to agents as the technician's key.
    /// Tests use it to play a relay that substitutes keys, which the
    /// end-to-end handshake must catch. Compiled only with the
    /// `test-utils` feature, so a shipped relay cannot be made to do it.
    #[cfg(feature = "test-utils")]
    pub substitute_keys: Option<(Fingerprint, Fingerprint)>,
}

impl std::fmt::Debug for RelayHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("RelayHooks");
        out.field("on_forward", &self.on_forward.is_some());
        #[cfg(feature = "test-utils")]
        out.field("substitute_keys", &self.substitute_keys);
        out.finish()
    }
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Address advertised in tokens; `None` means the bound address.
    pub public_addr: Option<String>,
    /// State directory.
    pub data_dir: PathBuf,
    /// TLS certificate source.
    pub cert: CertSource,
    /// Organisation created on first start.
    pub organisation: String,
    /// QUIC idle timeout.
    pub idle_timeout: Duration,
    /// Limits on new and unauthenticated connections.
    pub limits: AdmissionLimits,
    /// Test hooks; always the default outside tests (see [`RelayHooks`]).
    pub hooks: RelayHooks,
    /// A file (best on another volume) the signed audit heads are appended
    /// to; `--audit-anchor-file`, default none.
    pub audit_anchor_file: Option<PathBuf>,
    /// How often the audit head is signed when it moved; default 60 s.
    pub audit_anchor_interval: Duration,
    /// TCP address of the Prometheus endpoint (`[metrics] listen`,
    /// `--metrics-listen`); `None`: no endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// Ticketing connectors (`[tickets]`); none by default.
    pub tickets: crate::tickets::TicketsConfig,
    /// UDP socket buffer size asked for, each way (`udp_buffer`).
    pub udp_buffer: usize,
    /// The PostgreSQL store (`[store] url`, `--store`); `None`: the
    /// data directory's SQLite file.
    pub store_url: Option<String>,
}

/// Flags that override the file.
#[derive(Debug, Default)]
pub struct Overrides {
    /// `--dev`.
    pub dev: bool,
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--public-addr`.
    pub public_addr: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--idle-timeout`.
    pub idle_timeout: Option<Duration>,
    /// `--metrics-listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// `--store`.
    pub store: Option<String>,
}

impl RelayConfig {
    /// Merges defaults, the file (if any) and flags, and validates the result.
    pub fn resolve(file: FileConfig, flags: Overrides) -> anyhow::Result<Self> {
        let default_listen: SocketAddr = if flags.dev {
            ([127, 0, 0, 1], DEFAULT_PORT).into()
        } else {
            ([0, 0, 0, 0], DEFAULT_PORT).into()
        };
        let listen = flags.listen.or(file.listen).unwrap_or(default_listen);
        if flags.dev && !listen.ip().is_loopback() {
            bail!("--dev binds loopback only, but --listen is {listen}; drop --dev and configure a certificate to serve other hosts");
        }
        let data_dir = flags.data_dir.or(file.data_dir).unwrap_or_else(|| {
            PathBuf::from(if flags.dev {
                "deskside-relay-data"
            } else {
                "/var/lib/deskside-relay"
            })
        });
        let self_signed = file.self_signed.unwrap_or(false);
        let cert = match (self_signed, file.cert, file.key) {
            _ if flags.dev => CertSource::SelfSigned,
            (true, None, None) => CertSource::SelfSigned,
            (true, _, _) => bail!(
                "both `self_signed = true` and `cert`/`key` are set in the configuration: keep one of them"
            ),
            (false, Some(cert), Some(key)) => CertSource::Files { cert, key },
            (false, _, _) => bail!(
                "no TLS certificate configured: set `cert` and `key` in {DEFAULT_CONFIG_PATH} (or --config), or `self_signed = true` to let the relay make its own, or run with --dev for a local relay"
            ),
        };
        let idle_timeout = match (flags.idle_timeout, file.idle_timeout) {
            (Some(d), _) => d,
            (None, Some(text)) => humantime::parse_duration(&text)
                .with_context(|| format!("invalid idle_timeout {text:?} (examples: 12s, 1m)"))?,
            (None, None) => DEFAULT_IDLE_TIMEOUT,
        };
        // Agents and consoles send keep-alives every 4 s: a shorter idle
        // timeout would drop every quiet connection.
        if idle_timeout < Duration::from_secs(5) || idle_timeout > Duration::from_secs(600) {
            bail!("idle timeout must be between 5 s and 10 min (agents and consoles send keep-alives every 4 s), got {idle_timeout:?}");
        }
        let public_addr = flags.public_addr.or(file.public_addr);
        let udp_buffer = file
            .udp_buffer
            .unwrap_or(crate::udp_buffers::DEFAULT_UDP_BUFFER);
        if !(crate::udp_buffers::MIN_UDP_BUFFER..=crate::udp_buffers::MAX_UDP_BUFFER)
            .contains(&udp_buffer)
        {
            bail!("udp_buffer must be between 65536 (64 KiB) and 1073741824 (1 GiB) bytes, got {udp_buffer} (the default is 8388608, 8 MiB)");
        }
        if public_addr.is_none() && listen.ip().is_unspecified() {
            bail!("listening on {listen} (all interfaces) needs a public address for enrollment tokens: set `public_addr` in the configuration or pass --public-addr host:port");
        }
        Ok(Self {
            listen,
            public_addr,
            data_dir,
            cert,
            organisation: file.organisation.unwrap_or_else(|| "Default".to_owned()),
            idle_timeout,
            limits: file.limits.resolve()?,
            hooks: RelayHooks::default(),
            audit_anchor_file: None,
            audit_anchor_interval: crate::audit_anchor::DEFAULT_ANCHOR_INTERVAL,
            metrics_listen: flags.metrics_listen.or(file.metrics.listen),
            tickets: file.tickets.resolve()?,
            udp_buffer,
            store_url: store_url(flags.store.or(file.store.url))?,
        })
    }
}

/// A `[store] url` checked: PostgreSQL only (SQLite is the default and
/// needs no URL).
fn store_url(url: Option<String>) -> anyhow::Result<Option<String>> {
    match url {
        Some(url) if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) => bail!(
            "[store] url must be a PostgreSQL URL (postgres://user@host:5432/deskside), got {:?}; remove it to use the embedded SQLite database",
            crate::store::redact_url(&url)
        ),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_defaults_to_loopback_and_self_signed() {
        let config = RelayConfig::resolve(
            FileConfig::default(),
            Overrides {
                dev: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:4433".parse().unwrap());
        assert!(matches!(config.cert, CertSource::SelfSigned));
        assert_eq!(config.idle_timeout, DEFAULT_IDLE_TIMEOUT);
    }

    #[test]
    fn production_needs_a_certificate_and_a_public_address() {
        let err = RelayConfig::resolve(FileConfig::default(), Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("no TLS certificate configured"));
        let file: FileConfig = toml::from_str("cert = \"/c.pem\"\nkey = \"/k.pem\"").unwrap();
        let err = RelayConfig::resolve(file, Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("public address"));
        let file: FileConfig =
            toml::from_str("cert = \"/c.pem\"\nkey = \"/k.pem\"\npublic_addr = \"relay.example.org:4433\"\nidle_timeout = \"20s\"").unwrap();
        let config = RelayConfig::resolve(file, Overrides::default()).unwrap();
        assert_eq!(config.idle_timeout, Duration::from_secs(20));
    }

    #[test]
    fn the_initial_file_is_valid_and_starts_a_relay() {
        let text = render_initial("0.0.0.0:4433".parse().unwrap(), "relay.example.org:4433");
        let file: FileConfig = toml::from_str(&text).unwrap();
        let config = RelayConfig::resolve(file, Overrides::default()).unwrap();
        assert!(matches!(config.cert, CertSource::SelfSigned));
        assert_eq!(
            config.public_addr.as_deref(),
            Some("relay.example.org:4433")
        );
        assert_eq!(config.listen.port(), 4433);
    }

    #[test]
    fn self_signed_replaces_certificate_files() {
        let file: FileConfig =
            toml::from_str("self_signed = true\npublic_addr = \"relay.example.org:4433\"").unwrap();
        let config = RelayConfig::resolve(file, Overrides::default()).unwrap();
        assert!(matches!(config.cert, CertSource::SelfSigned));
        let file: FileConfig = toml::from_str(
            "self_signed = true\ncert = \"/c.pem\"\nkey = \"/k.pem\"\npublic_addr = \"r:1\"",
        )
        .unwrap();
        let err = RelayConfig::resolve(file, Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("keep one of them"));
    }

    #[test]
    fn flags_override_the_file_and_unknown_keys_are_refused() {
        let file: FileConfig = toml::from_str("listen = \"127.0.0.1:1\"").unwrap();
        let config = RelayConfig::resolve(
            file,
            Overrides {
                dev: true,
                listen: Some("127.0.0.1:2".parse().unwrap()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(config.listen.port(), 2);
        assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
    }

    #[test]
    fn limits_come_from_the_file_and_are_validated() {
        let dev = || Overrides {
            dev: true,
            ..Default::default()
        };
        let file: FileConfig = toml::from_str(
            "[limits]\nmax_unauthenticated_per_source = 3\nauth_failure_interval = \"1m\"",
        )
        .unwrap();
        let config = RelayConfig::resolve(file, dev()).unwrap();
        assert_eq!(config.limits.max_unauthenticated_per_source, 3);
        assert_eq!(config.limits.auth_failure_interval, Duration::from_secs(60));
        assert_eq!(
            config.limits.max_handshakes,
            AdmissionLimits::default().max_handshakes
        );
        let file: FileConfig = toml::from_str("[limits]\nmax_handshakes = 5000").unwrap();
        let err = RelayConfig::resolve(file, dev()).unwrap_err();
        assert!(err.to_string().contains("max_handshakes"), "{err}");
        assert!(toml::from_str::<FileConfig>("[limits]\nmax_handshake = 1").is_err());
    }

    #[test]
    fn udp_buffer_defaults_to_8_mib_and_is_validated() {
        let dev = || Overrides {
            dev: true,
            ..Default::default()
        };
        let config = RelayConfig::resolve(FileConfig::default(), dev()).unwrap();
        assert_eq!(config.udp_buffer, 8 << 20);
        let file: FileConfig = toml::from_str("udp_buffer = 33554432").unwrap();
        assert_eq!(
            RelayConfig::resolve(file, dev()).unwrap().udp_buffer,
            32 << 20
        );
        for bad in ["udp_buffer = 1024", "udp_buffer = 2147483648"] {
            let file: FileConfig = toml::from_str(bad).unwrap();
            let error = RelayConfig::resolve(file, dev()).unwrap_err().to_string();
            assert!(error.contains("udp_buffer must be between"), "{error}");
        }
    }

    #[test]
    fn metrics_are_off_unless_an_address_is_set() {
        let dev = || Overrides {
            dev: true,
            ..Default::default()
        };
        let config = RelayConfig::resolve(FileConfig::default(), dev()).unwrap();
        assert_eq!(config.metrics_listen, None);
        let file =
            || -> FileConfig { toml::from_str("[metrics]\nlisten = \"127.0.0.1:9474\"").unwrap() };
        let config = RelayConfig::resolve(file(), dev()).unwrap();
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9474".parse().unwrap())
        );
        // The flag wins over the file.
        let flag = Overrides {
            metrics_listen: Some("127.0.0.1:9475".parse().unwrap()),
            ..dev()
        };
        let config = RelayConfig::resolve(file(), flag).unwrap();
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9475".parse().unwrap())
        );
        assert!(toml::from_str::<FileConfig>("[metrics]\nport = 1").is_err());
        assert!(toml::from_str::<FileConfig>("[metrics]\nlisten = \"nowhere\"").is_err());
    }

    #[test]
    fn dev_refuses_non_loopback() {
        let err = RelayConfig::resolve(
            FileConfig::default(),
            Overrides {
                dev: true,
                listen: Some("0.0.0.0:4433".parse().unwrap()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("loopback"));
    }
}
