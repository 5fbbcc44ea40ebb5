//! `deskside-agent service install|uninstall|run` (Windows): the command
//! line over `deskside_agent::platform::windows::service`, and the service's
//! log file. The service runs the same loop as `deskside-agent run`
//! ([`crate::run_until`]), with Windows' stop request as its stop signal.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use deskside_agent::platform::windows::{paths, service};
use deskside_agent::state::StateDir;

use crate::{check, EXIT_FAILED, EXIT_PERMANENT};

/// `service` subcommands.
#[derive(Debug, Subcommand)]
pub enum ServiceAction {
    /// Registers this deskside-agent.exe as the deskside-agent Windows
    /// service (automatic start, LocalSystem, restarted after a crash).
    /// Run in an administrator prompt.
    Install,
    /// Stops and removes the deskside-agent service (its state stays in
    /// %ProgramData%\deskside\agent). Run in an administrator prompt.
    Uninstall,
    /// The service itself, started by Windows (not by hand): state and log
    /// in %ProgramData%\deskside\agent.
    Run,
}

/// The log of the running service (it has no console): `service.log` in
/// its state directory; the previous one is kept as `service.log.1` once
/// it passes this size.
const LOG_ROTATE_BYTES: u64 = 8 << 20;

/// The state directory of `service run` unless `--state-dir` is given.
pub fn state_dir(action: &ServiceAction, given: Option<PathBuf>) -> PathBuf {
    match (given, action) {
        (Some(dir), _) => dir,
        (None, ServiceAction::Run) => paths::service_state_dir(),
        (None, _) => StateDir::default_root(),
    }
}

/// The file the service logs to, for `service run`; `None` for the other
/// commands (they log to stderr) or if it cannot be opened (then stderr,
/// which Windows discards).
pub fn log_file(action: &ServiceAction, state_root: &Path) -> Option<std::fs::File> {
    if !matches!(action, ServiceAction::Run) {
        return None;
    }
    deskside_net::files::create_private_dir(state_root).ok()?;
    let path = state_root.join("service.log");
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let _ = std::fs::rename(&path, state_root.join("service.log.1"));
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .ok()
}

/// Runs a `service` subcommand.
pub fn main(action: ServiceAction, state: StateDir, runtime: tokio::runtime::Runtime) -> ExitCode {
    let outcome = match action {
        ServiceAction::Install => service::install().map(|report| {
            let verb = match report.installed {
                service::Installed::Created => "Installed",
                service::Installed::Updated => "Updated",
            };
            println!(
                "{verb} the {} service: \"{}\" service run, as LocalSystem, started at boot, restarted after a crash.",
                service::SERVICE_NAME,
                report.executable.display()
            );
            for warning in &report.warnings {
                println!("Warning: {warning}.");
            }
            println!(
                "Start it now with `sc start {}`. Until this device is enrolled it waits: enroll it in an administrator prompt with `deskside-agent enroll TOKEN` (state in {}).",
                service::SERVICE_NAME,
                paths::service_state_dir().display()
            );
        }),
        ServiceAction::Uninstall => service::uninstall().map(|done| match done {
            service::Uninstalled::Removed => println!(
                "Stopped and removed the {} service. Its state stays in {}: delete that folder to forget this device's enrollment.",
                service::SERVICE_NAME,
                paths::service_state_dir().display()
            ),
            service::Uninstalled::NotInstalled => {
                println!("The {} service is not installed: nothing to do.", service::SERVICE_NAME)
            }
        }),
        ServiceAction::Run => service::run(Box::new(move |stop| {
            let result = runtime.block_on(crate::run_until(&state, true, stop));
            exit_code(&result)
        })),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// The service's exit code for the loop's result (logged: the service has
/// no console).
fn exit_code(result: &Result<(), check::CliError>) -> u8 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("the agent stopped: {e}");
            match e {
                check::CliError::Link(link) if link.is_permanent() => EXIT_PERMANENT,
                _ => EXIT_FAILED,
            }
        }
    }
}
