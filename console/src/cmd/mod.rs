//! The command groups, one file each, and the table that dispatches to them.
//!
//! Adding a command group (`deskside diag …`) means adding its file with
//! its clap `Subcommand` and a `run` function, then one variant in
//! [`Command`], one in [`Action`] and one arm in each `match` below. A group
//! file owns its request, its JSON records and its human output; the
//! connection, the profile and the printer come from here and from
//! [`Context`].
//!
//! Commands never read the clock: `Context::now` was read once at start-up.

pub mod audit;
pub mod audit_verify;
pub mod devices;
pub mod diag;
pub mod enroll;
pub mod interrupt;
pub mod login;
pub mod org_key;
pub mod policy;
pub mod requests;
pub mod session;
pub mod session_admin;
pub mod session_link;
pub mod stats;
pub mod timeline;
pub mod tokens;

use anyhow::Context as _;
use clap::Subcommand;
use deskside_protocol::console::{ConsoleRequest, ConsoleResponse};
use std::path::PathBuf;

use crate::cli::Environment;
use crate::client::Client;
use crate::exit::UsageError;
use crate::output::Printer;
use crate::profile::{self, Profile};

/// The subcommands, as parsed by clap.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in to a relay and save the profile
    #[command(long_about = login::LONG_ABOUT)]
    Login(login::LoginArgs),
    /// Show who the relay says you are
    Whoami,
    /// List, show and revoke enrolled devices
    #[command(subcommand)]
    Devices(devices::DevicesCommand),
    /// Create enrollment tokens for new devices
    #[command(name = "enroll-token", subcommand)]
    EnrollToken(enroll::EnrollTokenCommand),
    /// Create, list and revoke technician tokens (admin)
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// Diagnose a device: where does its problem come from?
    Diag(diag::DiagArgs),
    /// Show or change the organisation's diagnostics policy
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// What happened to a device's link and path over time: episodes,
    /// their segment, and a chart (`--all` for the fleet)
    Timeline(timeline::TimelineArgs),
    /// Open a remote session with a device (the employee must accept)
    #[command(visible_alias = "view")]
    Session(session::SessionArgs),
    /// Help requests from employees: list, show, claim, reply, resolve, reopen
    #[command(subcommand)]
    Requests(requests::RequestsCommand),
    /// Help request statistics: by category of verdict, frequent findings,
    /// devices that asked again, median response and resolution times
    Stats(stats::StatsArgs),
    /// Read the audit log (admin)
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// The organisation key that certifies session keys (admin)
    #[command(name = "org-key", subcommand)]
    OrgKey(org_key::OrgKeyCommand),
    /// Print a shell completion script, e.g. `deskside completion bash > ~/.local/share/bash-completion/completions/deskside`
    Completion {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: deskside_net::docs::Shell,
    },
    /// Writes man pages and shell completions into DIR (for packagers)
    #[command(name = "generate-docs", hide = true)]
    GenerateDocs {
        /// Output directory.
        dir: PathBuf,
    },
}

/// A subcommand after validation: what `run` executes.
#[derive(Debug)]
pub enum Action {
    /// Authenticate to this relay with this token, then save it as the profile.
    Login(login::LoginTarget),
    /// Print who the profile's token belongs to.
    Whoami,
    /// A `devices` subcommand.
    Devices(devices::DevicesCommand),
    /// An `enroll-token` subcommand.
    EnrollToken(enroll::EnrollTokenCommand),
    /// A `tokens` subcommand.
    Tokens(tokens::TokensCommand),
    /// A `diag` command.
    Diag(diag::DiagArgs),
    /// A `policy` subcommand.
    Policy(policy::PolicyCommand),
    /// A `timeline` command.
    Timeline(timeline::TimelineArgs),
    /// A `session` command.
    Session(session::SessionArgs),
    /// A `requests` subcommand.
    Requests(requests::RequestsCommand),
    /// The `stats` command.
    Stats(stats::StatsArgs),
    /// An `audit` subcommand.
    Audit(audit::AuditCommand),
    /// An `org-key` subcommand.
    OrgKey(org_key::OrgKeyCommand),
    /// Print the completion script for this shell.
    Completion(deskside_net::docs::Shell),
    /// Write man pages and completions into this directory.
    GenerateDocs(PathBuf),
}

impl Command {
    /// Checks what clap cannot check on its own.
    pub fn validate(self, env: &Environment) -> Result<Action, UsageError> {
        Ok(match self {
            Command::Login(args) => Action::Login(login::validate_target(args, env.token.clone())?),
            Command::Whoami => Action::Whoami,
            Command::Devices(command) => Action::Devices(command),
            Command::EnrollToken(command) => Action::EnrollToken(command),
            Command::Tokens(command) => Action::Tokens(command),
            Command::Diag(args) => Action::Diag(args),
            Command::Policy(command) => Action::Policy(command),
            Command::Timeline(args) => Action::Timeline(args),
            Command::Session(args) => Action::Session(args),
            Command::Requests(command) => Action::Requests(command),
            Command::Stats(args) => Action::Stats(args),
            Command::Audit(command) => Action::Audit(command),
            Command::OrgKey(command) => Action::OrgKey(command),
            Command::Completion { shell } => Action::Completion(shell),
            Command::GenerateDocs { dir } => Action::GenerateDocs(dir),
        })
    }
}

/// What every command gets: where the profile is, the time, where to print.
#[derive(Debug)]
pub struct Context<'a> {
    /// The profile file.
    pub profile_path: PathBuf,
    /// Now, in Unix seconds, read once at start-up.
    pub now: i64,
    /// Where results go.
    pub out: Printer<'a>,
}

/// Runs one validated command.
pub async fn run(action: Action, ctx: &mut Context<'_>) -> anyhow::Result<()> {
    match action {
        Action::Login(target) => login::login(target, ctx).await,
        Action::Whoami => login::whoami(ctx).await,
        Action::Devices(command) => devices::run(command, ctx).await,
        Action::EnrollToken(command) => enroll::run(command, ctx).await,
        Action::Tokens(command) => tokens::run(command, ctx).await,
        Action::Diag(args) => diag::run(args, ctx).await,
        Action::Policy(command) => policy::run(command, ctx).await,
        Action::Timeline(args) => timeline::run(args, ctx).await,
        Action::Session(args) => session::run(args, ctx).await,
        Action::Requests(command) => requests::run(command, ctx).await,
        Action::Stats(args) => stats::run(args, ctx).await,
        Action::Audit(command) => audit::run(command, ctx).await,
        Action::OrgKey(command) => org_key::run(command, ctx).await,
        Action::Completion(shell) => {
            use clap::CommandFactory as _;
            let mut script = Vec::new();
            deskside_net::docs::completions(crate::cli::Cli::command(), shell, &mut script);
            printed(ctx.out.text(&String::from_utf8_lossy(&script)))
        }
        Action::GenerateDocs(dir) => {
            use clap::CommandFactory as _;
            deskside_net::docs::generate(crate::cli::Cli::command(), &dir, true)
                .with_context(|| format!("cannot write the docs into {}", dir.display()))
        }
    }
}

/// Connects and authenticates with the saved profile.
pub async fn connect(ctx: &Context<'_>) -> anyhow::Result<(Profile, Client)> {
    let profile = profile::load(&ctx.profile_path)?;
    tracing::info!(relay = %profile.relay, profile = %ctx.profile_path.display(), "connecting");
    let client = crate::failover::connect_any(&profile).await?;
    Ok((profile, client))
}

/// Connects with the saved profile, makes one request and closes the
/// connection before the answer is printed.
pub async fn request(
    ctx: &Context<'_>,
    request: ConsoleRequest,
) -> anyhow::Result<ConsoleResponse> {
    let (_, mut client) = connect(ctx).await?;
    let answer = client.request(request).await;
    client.close().await;
    Ok(answer?)
}

/// The error for an answer that does not match the request.
pub fn unexpected(response: &ConsoleResponse) -> anyhow::Error {
    let kind = match response {
        ConsoleResponse::Devices(_) => "device list",
        ConsoleResponse::Device(_) => "device",
        ConsoleResponse::DeviceRevoked(_) => "revoked device",
        ConsoleResponse::EnrollToken(_) => "enrollment token",
        ConsoleResponse::TechnicianToken(_) => "technician token",
        ConsoleResponse::TechnicianTokens(_) => "technician token list",
        ConsoleResponse::TechnicianTokenRevoked(_) => "revoked technician token",
        ConsoleResponse::Diagnostics(_) => "diagnostic snapshot",
        ConsoleResponse::DiagnosticsHistory(_) => "diagnostic history",
        ConsoleResponse::Policy(_) => "policy",
        ConsoleResponse::Done => "plain acknowledgement",
        ConsoleResponse::SessionOpened(_) => "session",
        ConsoleResponse::Audit(_) => "audit log",
        ConsoleResponse::PolicySet(_) => "policy change",
        ConsoleResponse::EnrollTokens(_) => "enrollment token list",
        ConsoleResponse::EnrollTokenRevoked(_) => "revoked enrollment token",
        ConsoleResponse::Sessions(_) => "session list",
        ConsoleResponse::AuditVerified(_) => "audit verification",
        ConsoleResponse::Timeline(_) => "timeline",
        ConsoleResponse::TimelineFleet(_) => "fleet timeline",
        ConsoleResponse::Requests(_) => "help request list",
        ConsoleResponse::Request(_) => "help request",
        ConsoleResponse::RequestStats(_) => "help request statistics",
        ConsoleResponse::Unknown { .. } => "unknown answer",
    };
    anyhow::anyhow!(
        "the relay answered with a {kind}, which does not match the request; check that the console and relay versions match"
    )
}

/// Prints to the context's printer, naming what failed if it is not a
/// closed pipe (which `main` treats as success).
pub fn printed(result: std::io::Result<()>) -> anyhow::Result<()> {
    result.context("cannot write to stdout")
}
