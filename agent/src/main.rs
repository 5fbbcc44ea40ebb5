//! `deskside-agent`: the command-line entry point of the agent.
//!
//! Exit codes: 0 success; 1 the operation failed; 2 usage error; 3 the relay
//! refused this device for good (revoked or unknown) or its local state is
//! unusable, so restarting will not help (service units use
//! `RestartPreventExitStatus=3`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use deskside_agent::link::{self, LinkError};
use deskside_agent::service;
use deskside_agent::state::StateDir;
use tokio::sync::watch;

mod check;
mod help;
mod help_fr;
#[cfg(windows)]
mod service_cmd;

/// The deskside agent: lets your IT helpdesk see this device's health and,
/// only with your consent, help you on screen.
#[derive(Debug, Parser)]
#[command(version, about, disable_help_subcommand = true)]
struct Cli {
    /// State directory (identity, key, status). Default /var/lib/deskside-agent
    /// for root, else ~/.local/state/deskside-agent. Windows:
    /// %ProgramData%\deskside\agent for the service and in an administrator
    /// prompt, else %LOCALAPPDATA%\deskside\agent.
    #[arg(long, global = true, env = "DESKSIDE_AGENT_STATE")]
    state_dir: Option<PathBuf>,
    /// Log more (repeat for more detail).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Language of what `check`, `status` and `history` print (default:
    /// from the locale, LC_ALL, LC_MESSAGES or LANG).
    #[arg(long, global = true, value_parser = ["en", "fr"])]
    lang: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enrolls this device with an enrollment token from IT.
    Enroll {
        /// The token (starts with dse1_). Also read from DESKSIDE_ENROLL_TOKEN.
        #[arg(
            env = "DESKSIDE_ENROLL_TOKEN",
            hide_env_values = true,
            required_unless_present = "from_config"
        )]
        token: Option<String>,
        /// Replace an existing enrollment.
        #[arg(long)]
        force: bool,
        /// Do nothing when this device is already enrolled (for installers,
        /// which may run again with the same token).
        #[arg(long, conflicts_with_all = ["force", "from_config"])]
        if_not_enrolled: bool,
        /// Use the token an installer left in the token file, once: it is
        /// deleted after enrollment succeeds. Does nothing when there is no
        /// such file.
        #[arg(long, conflicts_with = "token")]
        from_config: bool,
        /// The token file for --from-config.
        #[arg(long, default_value = service::TOKEN_FILE, requires = "from_config")]
        token_file: PathBuf,
    },
    /// Stays connected to the relay, reconnecting as needed, until stopped.
    Run {
        /// When not enrolled yet, wait for enrollment instead of exiting (the
        /// installed service does this).
        #[arg(long)]
        wait_for_enrollment: bool,
    },
    /// Shows whether this device is enrolled and connected.
    Status {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Checks this device and its connection, and says in plain words where
    /// a problem comes from: the device, its settings, the Wi‑Fi or home
    /// router, the internet provider, or the support service.
    Check {
        /// One JSON object (snapshot and verdict) instead of the report.
        #[arg(long)]
        json: bool,
        /// Skip the throughput test (about 3 s of traffic to the relay).
        #[arg(long)]
        quick: bool,
        /// The full report: every finding with its measurements and limits,
        /// notes for the technician, and what could not be measured.
        #[arg(long)]
        details: bool,
        /// Show the newest check's result again (the one `history` lists
        /// first) instead of measuring anew: the short report's details, or
        /// what a technician's diagnosis found
        #[arg(long, conflicts_with = "quick")]
        last: bool,
    },
    /// Asks IT for help: a few questions (or the flags), the quick check
    /// attached, and what will be sent shown first. Kept on this computer
    /// until IT's relay has it.
    Help(help::HelpArgs),
    /// Shows your help requests, their progress and IT's replies.
    Requests {
        /// One JSON object per request.
        #[arg(long)]
        json: bool,
    },
    /// Lists the diagnostics collected on this device, and who asked.
    History {
        /// One JSON object per run, with the full snapshot.
        #[arg(long)]
        json: bool,
    },
    /// Runs in your graphical session: asks for your consent when IT
    /// support requests a remote session, shows when one is running (with a
    /// Stop button), and shares the screen only after you accept. Started
    /// automatically at login.
    SessionHelper {
        /// The agent service's socket, or on Windows its named pipe
        /// (default: the installed service's, or the one of an agent run by
        /// you).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// The consent dialog, run by the session helper (request on stdin).
    #[command(name = "consent-dialog", hide = true)]
    ConsentDialog,
    /// The session indicator, run by the session helper.
    #[command(name = "session-indicator", hide = true)]
    SessionIndicator,
    /// The "Ask IT for help" window, run by `help --window` (prints the
    /// answers as one JSON line).
    #[command(name = "help-form", hide = true)]
    HelpForm {
        /// en or fr (default: the locale's).
        lang: Option<String>,
        /// Only show the outcome line read from stdin (no questions).
        #[arg(long)]
        notice: bool,
    },
    /// Installs, removes or runs the deskside-agent Windows service.
    #[cfg(windows)]
    Service {
        #[command(subcommand)]
        action: service_cmd::ServiceAction,
    },
    /// Writes man pages into DIR (for packagers).
    #[command(name = "generate-docs", hide = true)]
    GenerateDocs {
        /// Output directory.
        dir: PathBuf,
    },
}

/// Parses the command line, with the help in French when the locale (or
/// `--lang fr`) is French.
fn parse_cli() -> Cli {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let args: Vec<String> = std::env::args().collect();
    if !help_fr::wants_french(&args, |name| std::env::var(name).ok()) {
        return Cli::parse();
    }
    let matches = help_fr::french(Cli::command()).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

const EXIT_FAILED: u8 = 1;
const EXIT_PERMANENT: u8 = 3;

fn main() -> ExitCode {
    let cli = parse_cli();
    let default_level = match cli.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    #[cfg(windows)]
    let state = StateDir::new(match &cli.command {
        Command::Service { action } => service_cmd::state_dir(action, cli.state_dir.clone()),
        _ => cli.state_dir.clone().unwrap_or_else(StateDir::default_root),
    });
    #[cfg(not(windows))]
    let state = StateDir::new(cli.state_dir.clone().unwrap_or_else(StateDir::default_root));
    // The Windows service has no console: it logs to a file.
    #[cfg(windows)]
    let log_file = match &cli.command {
        Command::Service { action } => service_cmd::log_file(action, state.root()),
        _ => None,
    };
    #[cfg(not(windows))]
    let log_file: Option<std::fs::File> = None;
    let subscriber = tracing_subscriber::fmt().with_env_filter(
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
    );
    match log_file {
        Some(file) => subscriber
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .init(),
        None => subscriber
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let result = match cli.command {
        Command::Enroll {
            token,
            force,
            if_not_enrolled,
            from_config,
            token_file,
        } => match (token, from_config) {
            (Some(token), _) => {
                runtime.block_on(enroll_command(&state, &token, force, if_not_enrolled))
            }
            (None, _) => runtime.block_on(enroll_from_file(&state, &token_file, force)),
        },
        Command::Run {
            wait_for_enrollment,
        } => {
            return finish_employee(runtime.block_on(run(&state, wait_for_enrollment)));
        }
        Command::Status { json } => {
            return finish_employee(check::status(&state, json, cli.lang.as_deref()))
        }
        Command::Check {
            json,
            quick,
            details,
            last,
        } => {
            let args = check::CheckArgs {
                json,
                lang: cli.lang.as_deref(),
                quick,
                details,
                last,
            };
            return finish_employee(runtime.block_on(check::check(&state, args)));
        }
        Command::History { json } => {
            return finish_employee(check::history(&state, json, cli.lang.as_deref()))
        }
        Command::Help(args) => {
            return finish_employee(runtime.block_on(help::help(
                &state,
                args,
                cli.lang.as_deref(),
            )));
        }
        Command::Requests { json } => {
            return finish_employee(runtime.block_on(help::requests(
                &state,
                json,
                cli.lang.as_deref(),
            )))
        }
        Command::SessionHelper { socket } => {
            let addresses = socket.map(|s| vec![s]).unwrap_or_else(|| {
                deskside_agent::session::channel::helper_addresses(state.root())
            });
            runtime.block_on(deskside_agent::session::helper::run(&addresses))
        }
        Command::ConsentDialog => return deskside_session_ui::subprocess::consent_main(),
        Command::SessionIndicator => return deskside_session_ui::subprocess::indicator_main(),
        Command::HelpForm { lang, notice } => {
            return match notice {
                true => deskside_session_ui::help_form::help_notice_main(lang.as_deref()),
                false => deskside_session_ui::help_form::help_form_main(lang.as_deref()),
            };
        }
        #[cfg(windows)]
        Command::Service { action } => return service_cmd::main(action, state, runtime),
        Command::GenerateDocs { dir } => {
            use clap::CommandFactory as _;
            return match deskside_net::docs::generate(Cli::command(), &dir, false) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: cannot write the docs into {}: {e}", dir.display());
                    ExitCode::from(EXIT_FAILED)
                }
            };
        }
    };
    finish(result)
}

/// The exit code of a relay or state operation.
fn finish(result: Result<(), LinkError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if e.is_permanent() {
                EXIT_PERMANENT
            } else {
                EXIT_FAILED
            })
        }
    }
}

/// The exit code of `run`, `check`, `status` and `history`.
fn finish_employee(result: Result<(), check::CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(check::CliError::Link(e)) => finish(Err(e)),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

async fn enroll(state: &StateDir, token: &str, force: bool) -> Result<(), LinkError> {
    let enrollment = link::enroll(state, token, force).await?;
    if service::hand_to_service_user(state.root()).map_err(LinkError::Service)? {
        tracing::info!(
            "gave {} to the {} user",
            state.root().display(),
            service::SERVICE_USER
        );
    }
    println!(
        "Enrolled as {} in organisation {} (relay {}).\nState saved in {}.\nStart the agent with `deskside-agent run` (the installed service does this for you).",
        enrollment.device_id,
        enrollment.organisation,
        enrollment.relay,
        state.root().display()
    );
    Ok(())
}

/// `enroll TOKEN`. With `--if-not-enrolled` an enrolled device says so and
/// succeeds without reading the token or contacting the relay: the MSI runs
/// this at every installation given ENROLL_TOKEN, repairs included.
async fn enroll_command(
    state: &StateDir,
    token: &str,
    force: bool,
    if_not_enrolled: bool,
) -> Result<(), LinkError> {
    if if_not_enrolled && state.is_enrolled() {
        let current = state.enrollment()?;
        println!(
            "Already enrolled as {} (relay {}): nothing to do. Use --force instead of --if-not-enrolled to enroll again.",
            current.device_id, current.relay
        );
        return Ok(());
    }
    enroll(state, token, force).await
}

/// Consumes the token file an installer left: enrolls with it, then deletes
/// it. Missing file: nothing to do. Already enrolled: the file is stale and
/// is deleted so it is not retried at every start.
async fn enroll_from_file(state: &StateDir, path: &Path, force: bool) -> Result<(), LinkError> {
    let Some(token) = service::read_token_file(path).map_err(LinkError::Service)? else {
        println!("No enrollment token at {}: nothing to do.", path.display());
        return Ok(());
    };
    if state.is_enrolled() && !force {
        let current = state.enrollment()?;
        remove_token_file(path)?;
        println!(
            "Already enrolled as {} (relay {}); removed the unused token file {}. Use --force to enroll again.",
            current.device_id,
            current.relay,
            path.display()
        );
        return Ok(());
    }
    enroll(state, &token, force).await?;
    remove_token_file(path)?;
    println!("Removed the token file {}.", path.display());
    Ok(())
}

fn remove_token_file(path: &Path) -> Result<(), LinkError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LinkError::Service(service::ServiceError::RemoveToken {
            path: path.to_owned(),
            source: e,
        })),
    }
}

async fn run(state: &StateDir, wait_for_enrollment: bool) -> Result<(), check::CliError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping");
        let _ = stop_tx.send(true);
    });
    run_until(state, wait_for_enrollment, stop_rx).await
}

/// The agent's loop until `stop_rx` turns true: `run`'s with a signal
/// handler, the Windows service's with the Service Control Manager's stop.
async fn run_until(
    state: &StateDir,
    wait_for_enrollment: bool,
    mut stop_rx: watch::Receiver<bool>,
) -> Result<(), check::CliError> {
    if wait_for_enrollment && !state.is_enrolled() {
        tracing::warn!(
            "this device is not enrolled yet; waiting. Enroll it with {ENROLL_AS_ADMIN}, using a token from IT"
        );
        while !state.is_enrolled() {
            tokio::select! {
                _ = stop_rx.changed() => return Ok(()),
                _ = tokio::time::sleep(ENROLLMENT_POLL) => {}
            }
        }
        tracing::info!("enrolled; connecting");
    }
    // Two agents on one state directory would replace each other's relay
    // connection every few hundred milliseconds: the second one refuses.
    let _lock = state.lock_run()?;
    Ok(link::run(state, stop_rx).await?)
}

/// How an administrator enrolls the installed service's device.
#[cfg(not(windows))]
const ENROLL_AS_ADMIN: &str = "`sudo deskside-agent enroll TOKEN`";
#[cfg(windows)]
const ENROLL_AS_ADMIN: &str =
    "`deskside-agent enroll TOKEN` in an administrator prompt (or the MSI's ENROLL_TOKEN property)";

/// How often a waiting service looks for an enrollment.
const ENROLLMENT_POLL: Duration = Duration::from_secs(2);

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    fn help(command: clap::Command, path: &[&str]) -> String {
        let mut command = command;
        command.build();
        let mut sub = &mut command;
        for name in path {
            sub = sub.find_subcommand_mut(name).expect("subcommand");
        }
        sub.render_help().to_string()
    }

    #[test]
    fn the_french_help_is_french() {
        let english = help(Cli::command(), &["check"]);
        let french = help(help_fr::french(Cli::command()), &["check"]);
        assert!(english.contains("Skip the throughput test"), "{english}");
        for sentence in [
            "Skip the throughput test",
            "The full report",
            "Usage:",
            "Checks this device",
            "Print help",
            "possible values",
        ] {
            assert!(!french.contains(sentence), "{sentence:?} in:\n{french}");
        }
        assert!(french.contains("Sans le test de débit"), "{french}");
        assert!(french.contains("Utilisation\u{a0}:"), "{french}");
        let root = help(help_fr::french(Cli::command()), &[]);
        assert!(root.contains("Inscrit cet ordinateur"), "{root}");
        assert!(root.contains("Demande de l'aide"), "{root}");
        assert!(!root.contains("Asks IT for help"), "{root}");
        let help_fr = help(help_fr::french(Cli::command()), &["help"]);
        assert!(help_fr.contains("Ce qui ne va pas"), "{help_fr}");
        assert!(!root.contains("Enrolls this device"), "{root}");
    }

    #[test]
    fn enroll_if_not_enrolled_leaves_an_enrolled_device_alone() {
        use deskside_agent::state::{Enrollment, AGENT_CERT_NAME};
        let cli = Cli::try_parse_from(["deskside-agent", "enroll", "--if-not-enrolled", "dse1_x"])
            .expect("--if-not-enrolled parses");
        assert!(matches!(
            cli.command,
            Command::Enroll {
                if_not_enrolled: true,
                force: false,
                ..
            }
        ));
        assert!(Cli::try_parse_from([
            "deskside-agent",
            "enroll",
            "--if-not-enrolled",
            "--force",
            "dse1_x"
        ])
        .is_err());

        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("agent"));
        let enrollment = Enrollment {
            device_id: deskside_protocol::DeviceId(7),
            organisation: "Org".into(),
            relay: "127.0.0.1:9".into(),
            fingerprint: deskside_protocol::Fingerprint([1; 32]),
            enrolled_at: 1_700_000_000,
            other_relays: Vec::new(),
        };
        let identity = deskside_net::Identity::generate(&[AGENT_CERT_NAME]).unwrap();
        state.save_enrollment(&identity, &enrollment).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Not a valid token, and no relay at 127.0.0.1:9: only a command that
        // contacts nobody succeeds.
        runtime
            .block_on(enroll_command(&state, "dse1_not-a-token", false, true))
            .expect("an enrolled device is left alone");
        assert_eq!(state.enrollment().unwrap(), enrollment);
        assert!(runtime
            .block_on(enroll_command(&state, "dse1_not-a-token", false, false))
            .is_err());
    }

    #[test]
    fn the_help_language_follows_the_flag_then_the_locale() {
        let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let french_locale = |name: &str| (name == "LANG").then(|| "fr_FR.UTF-8".to_owned());
        assert!(help_fr::wants_french(
            &args(&["deskside-agent", "--help"]),
            french_locale
        ));
        assert!(!help_fr::wants_french(
            &args(&["deskside-agent", "--lang", "en", "--help"]),
            french_locale
        ));
        assert!(help_fr::wants_french(
            &args(&["deskside-agent", "--lang=fr", "check", "--help"]),
            |_| None
        ));
    }
}
