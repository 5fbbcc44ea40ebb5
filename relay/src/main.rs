//! `deskside-relay`: the command-line entry point of the relay.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use deskside_protocol::token::LoginString;
use deskside_relay::config::{FileConfig, Overrides, DEFAULT_CONFIG_PATH};
use deskside_relay::{Relay, RelayConfig};

/// The deskside relay: agents and technicians meet here over QUIC.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the relay until interrupted (SIGINT or SIGTERM).
    ///
    /// Prints one JSON line `{"type":"ready",…}` on stdout once it accepts
    /// connections.
    Serve(ServeArgs),
    /// Writes a first configuration file (self-signed certificate, this
    /// host's name as the public address) unless one exists.
    InitConfig(InitArgs),
    /// The audit log: `audit verify` checks its hash chain offline.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Issues a new admin token when the first one was lost, straight in
    /// the data directory's database (audited; works with the relay stopped).
    ///
    /// Takes the same --config/--dev/--data-dir as `serve`, prints the token
    /// and a `deskside login` string, and writes the token to the data
    /// directory's admin-token file (mode 0600).
    AdminToken(AdminTokenArgs),
    /// Creates the relay's store if missing and brings its schema to this
    /// relay's version, then exits (what `serve` does first). Takes the
    /// same --config/--dev/--data-dir/--store as `serve`.
    Migrate(MigrateArgs),
    /// Copies the relay's whole store (every row, the audit chain intact)
    /// into an empty one, e.g. from the embedded SQLite file to a
    /// PostgreSQL database: stop the relay, copy, set `[store] url`, start.
    CopyStore(CopyStoreArgs),
    /// Writes man pages into DIR (for packagers).
    #[command(name = "generate-docs", hide = true)]
    GenerateDocs {
        /// Output directory.
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Checks the audit chain in a data directory, or in the PostgreSQL
    /// store several relays share with --store (the relays may be running)
    /// and, with --anchor-file, that it still extends every signed head in
    /// that file. Exit code 0: intact; 2: broken (the output says where);
    /// 1: could not check.
    Verify(AuditVerifyArgs),
}

#[derive(Debug, clap::Args)]
struct AuditVerifyArgs {
    /// The relay's data directory.
    #[arg(
        long,
        env = "DESKSIDE_RELAY_DATA",
        default_value = "/var/lib/deskside-relay"
    )]
    data_dir: PathBuf,
    /// The file the relay appends signed heads to (--audit-anchor-file of serve).
    #[arg(long)]
    anchor_file: Option<PathBuf>,
    /// The store to check when it is not the data directory's `relay.db`:
    /// `postgres://user[:password]@host[:port]/database`, the database
    /// several relays share (`--store` / `[store] url` of serve).
    #[arg(long, env = "DESKSIDE_RELAY_STORE", value_name = "URL")]
    store: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct InitArgs {
    /// The file to write.
    #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// UDP address to listen on.
    #[arg(long, env = "DESKSIDE_RELAY_LISTEN", default_value = "0.0.0.0:4433")]
    listen: SocketAddr,
    /// host:port agents and consoles use to reach the relay (default: this
    /// host's name and the listening port).
    #[arg(long, env = "DESKSIDE_RELAY_PUBLIC_ADDR")]
    public_addr: Option<String>,
}

#[derive(Debug, clap::Args)]
struct MigrateArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Where the relay is: the same flags as `serve`.
    #[command(flatten)]
    relay: ServeArgs,
}

#[derive(Debug, clap::Args)]
struct CopyStoreArgs {
    /// The empty target: `postgres://user@host:5432/database`, or the path
    /// of a new SQLite file.
    #[arg(long, value_name = "URL")]
    to: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Where the relay (the source) is: the same flags as `serve`.
    #[command(flatten)]
    relay: ServeArgs,
}

#[derive(Debug, clap::Args)]
struct AdminTokenArgs {
    /// Issue a new admin token (the old ones stay valid until revoked with
    /// `deskside tokens revoke`).
    #[arg(long, required = true)]
    new: bool,
    /// Where the relay is: the same flags as `serve`.
    #[command(flatten)]
    relay: ServeArgs,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Local development mode: loopback only, self-signed certificate kept in
    /// the data directory, no configuration file needed.
    #[arg(long)]
    dev: bool,
    /// Configuration file (TOML). Default /etc/deskside/relay.toml outside --dev.
    #[arg(long, env = "DESKSIDE_RELAY_CONFIG")]
    config: Option<PathBuf>,
    /// UDP address to listen on (default 127.0.0.1:4433 with --dev, else 0.0.0.0:4433).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// host:port written into enrollment tokens and login strings, when
    /// clients reach the relay by another address (NAT, DNS name).
    #[arg(long)]
    public_addr: Option<String>,
    /// State directory (database, keys). Default ./deskside-relay-data with
    /// --dev, else /var/lib/deskside-relay.
    #[arg(long, env = "DESKSIDE_RELAY_DATA")]
    data_dir: Option<PathBuf>,
    /// QUIC idle timeout before a silent peer counts as gone (e.g. 12s).
    #[arg(long, value_parser = humantime::parse_duration)]
    idle_timeout: Option<Duration>,
    /// Append each signed audit chain head to this file (put it on another
    /// volume than the data directory); `deskside-relay audit verify
    /// --anchor-file` checks the database against it.
    #[arg(long)]
    audit_anchor_file: Option<PathBuf>,
    /// How often the audit chain head is signed when it moved (e.g. 60s).
    #[arg(long, value_parser = humantime::parse_duration)]
    audit_anchor_interval: Option<Duration>,
    /// Serve Prometheus metrics at http://ADDR/metrics (TCP), e.g.
    /// 127.0.0.1:9474; overrides `[metrics] listen`. Off by default. The
    /// endpoint has no authentication: keep it on loopback or a
    /// management network.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// The relay's store: `postgres://user[:password]@host[:port]/database`
    /// for a PostgreSQL database several relays share; overrides `[store]
    /// url`. Default: `relay.db` (SQLite) in the data directory.
    #[arg(long, env = "DESKSIDE_RELAY_STORE", value_name = "URL")]
    store: Option<String>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::InitConfig(args) => init_config(args),
        Command::AdminToken(args) => admin_token(args),
        Command::Migrate(args) => migrate(args),
        Command::CopyStore(args) => copy_store(args),
        Command::Audit(AuditCommand::Verify(args)) => {
            return match deskside_relay::audit_verify::verify(
                &args.data_dir,
                args.store.as_deref(),
                args.anchor_file.as_ref(),
            ) {
                Ok(report) => {
                    if args.json {
                        println!("{}", serde_json::to_string(&report).unwrap_or_default());
                    } else {
                        println!("{}", report.text());
                    }
                    if report.ok {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(2)
                    }
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::GenerateDocs { dir } => {
            use clap::CommandFactory as _;
            deskside_net::docs::generate(Cli::command(), &dir, false)
                .with_context(|| format!("cannot write the docs into {}", dir.display()))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration `serve` runs with: defaults < file < flags.
fn resolve_config(args: &ServeArgs) -> anyhow::Result<RelayConfig> {
    let file = match (&args.config, args.dev) {
        (Some(path), _) => FileConfig::load(path)?,
        (None, true) => FileConfig::default(),
        (None, false) => {
            let path = PathBuf::from(DEFAULT_CONFIG_PATH);
            if path.exists() {
                FileConfig::load(&path)?
            } else {
                FileConfig::default()
            }
        }
    };
    RelayConfig::resolve(
        file,
        Overrides {
            dev: args.dev,
            listen: args.listen,
            public_addr: args.public_addr.clone(),
            data_dir: args.data_dir.clone(),
            idle_timeout: args.idle_timeout,
            metrics_listen: args.metrics_listen,
            store: args.store.clone(),
        },
    )
}

fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let config = resolve_config(&args.relay)?;
    let migrated = deskside_relay::store_admin::migrate(&config)?;
    if args.json {
        println!("{}", serde_json::to_string(&migrated)?);
    } else {
        println!(
            "{} ({}) is at schema version {}",
            migrated.store, migrated.backend, migrated.schema_version
        );
    }
    Ok(())
}

fn copy_store(args: CopyStoreArgs) -> anyhow::Result<()> {
    let config = resolve_config(&args.relay)?;
    let copied = deskside_relay::store_admin::copy_store(&config, &args.to)?;
    if args.json {
        println!("{}", serde_json::to_string(&copied)?);
    } else {
        println!(
            "copied {} rows from {} to {}; set `[store] url` in relay.toml (or --store) to use it",
            copied.rows, copied.from, copied.to
        );
    }
    Ok(())
}

/// A start that failed after creating the organisation never showed its
/// admin login: say how to get one once the problem is fixed.
fn with_recovery_hint(
    error: anyhow::Error,
    data_dir: &std::path::Path,
    started: std::time::SystemTime,
) -> anyhow::Error {
    let token_file = data_dir.join(deskside_relay::admin_token::ADMIN_TOKEN_FILE);
    let created_now = std::fs::metadata(&token_file)
        .and_then(|m| m.modified())
        .is_ok_and(|modified| modified >= started);
    if created_now {
        error.context(format!(
            "this first start created the organisation and its admin token ({}) before failing (the cause follows); once it starts, run `deskside-relay admin-token --new` with the same options for a ready-made `deskside login` string",
            token_file.display()
        ))
    } else {
        error
    }
}

fn admin_token(args: AdminTokenArgs) -> anyhow::Result<()> {
    debug_assert!(args.new, "clap requires --new");
    let config = resolve_config(&args.relay)?;
    let recovery =
        deskside_relay::admin_token::recover(&config, deskside_relay::clock::now_secs())?;
    println!(
        "New admin token {:?} (shown only this once, also saved with mode 0600 in {}):\n\n    {}\n",
        recovery.name,
        recovery.token_file.display(),
        recovery.token
    );
    match &recovery.login {
        Some(login) => println!(
            "Log in the console with:\n\n    deskside login {}\n",
            login.encode()
        ),
        None => println!(
            "The relay has not made its certificate yet: start it once, then log in with\n\n    deskside login --relay HOST:PORT --fingerprint sha256:… --token {}\n",
            recovery.token
        ),
    }
    println!(
        "Earlier admin tokens stay valid: list them with `deskside tokens list` and revoke the lost one."
    );
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = resolve_config(&args)?;
    if let Some(file) = &args.audit_anchor_file {
        let dir = file.parent().and_then(|p| p.canonicalize().ok());
        if dir.is_some() && dir == config.data_dir.canonicalize().ok() {
            tracing::warn!(
                file = %file.display(),
                "the audit anchor file is in the data directory: whoever can rewrite the database can rewrite it too; put it on another volume"
            );
        }
    }
    config.audit_anchor_file = args.audit_anchor_file;
    if let Some(interval) = args.audit_anchor_interval {
        if interval < Duration::from_secs(1) {
            anyhow::bail!("--audit-anchor-interval must be at least 1s");
        }
        config.audit_anchor_interval = interval;
    }
    let data_dir = config.data_dir.clone();
    let started = std::time::SystemTime::now();
    let relay = match Relay::spawn(config).await {
        Ok(relay) => relay,
        Err(error) => return Err(with_recovery_hint(error, &data_dir, started)),
    };
    let local = relay
        .local_addr()
        .context("cannot read the bound address")?;
    if let Some(bootstrap) = &relay.bootstrap {
        let login = LoginString {
            relay: relay.public_addr().to_owned(),
            fingerprint: relay.fingerprint(),
            token: bootstrap.admin_token.clone(),
            // At the first start no other relay shares the new store yet.
            other_relays: Vec::new(),
        };
        // The token is a secret: shown on a terminal, never written into a
        // log (systemd's journal, a redirected stderr).
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprintln!(
                "\nFirst start: created the organisation and an admin token (shown only this once,\n\
                 also saved with mode 0600 in {}):\n\n    {}\n\n\
                 Log in the console with:\n\n    deskside login {}\n",
                bootstrap.token_file.display(),
                bootstrap.admin_token,
                login.encode()
            );
        } else {
            eprintln!(
                "First start: created the organisation and an admin token, saved with mode 0600 in {} \
                 (not printed here: this output may be a log). Log in with:\n    \
                 deskside login --relay {} --fingerprint {} --token \"$(cat {})\"",
                bootstrap.token_file.display(),
                login.relay,
                login.fingerprint,
                bootstrap.token_file.display()
            );
        }
    }
    let ready = serde_json::json!({
        "type": "ready",
        "listen": local.to_string(),
        "public_addr": relay.public_addr(),
        "fingerprint": relay.fingerprint().to_string(),
        "data_dir": data_dir.display().to_string(),
        "version": env!("CARGO_PKG_VERSION"),
        "metrics": relay.metrics_addr().map(|addr| addr.to_string()),
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{ready}").context("cannot write the ready line")?;
    stdout.flush().context("cannot write the ready line")?;
    drop(stdout);
    tracing::info!(%local, fingerprint = %relay.fingerprint(), "relay ready");

    wait_for_signal().await?;
    tracing::info!("shutting down");
    relay.shutdown().await;
    Ok(())
}

fn init_config(args: InitArgs) -> anyhow::Result<()> {
    if args.config.exists() {
        println!("Kept the existing configuration {}.", args.config.display());
        return Ok(());
    }
    let public_addr = match args.public_addr {
        Some(addr) => addr,
        None => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .context("cannot read this host's name; pass --public-addr host:port")?;
            format!("{host}:{}", args.listen.port())
        }
    };
    let text = deskside_relay::config::render_initial(args.listen, &public_addr);
    let tmp = args.config.with_extension("toml.new");
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, &args.config)
        .with_context(|| format!("cannot create {}", args.config.display()))?;
    println!(
        "Wrote {}: agents and consoles will reach this relay at {public_addr}.
         If that name does not work from employees' homes, set public_addr there and restart the relay.",
        args.config.display()
    );
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for Ctrl-C")?;
    Ok(())
}
