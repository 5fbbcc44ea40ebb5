//! The Windows service: `deskside-agent service install|uninstall|run`.
//!
//! `install` registers `"<exe>" service run` as the `deskside-agent`
//! service: automatic start, the LocalSystem account (the session helper is
//! started in the signed-in user's session with WTSQueryUserToken and
//! CreateProcessAsUser, which only LocalSystem may call), restarted by the
//! Service Control Manager after a crash. `uninstall` stops and deletes it.
//! `run` is the entry point the Service Control Manager starts: it reports
//! SERVICE_RUNNING, runs the same loop as `deskside-agent run` (the caller
//! passes it in, so reconnection and backoff are the Linux ones), and turns
//! STOP and SHUTDOWN into that loop's stop signal.
//!
//! The service's status handle is used only on the thread the Service
//! Control Manager gave `service_main`; the control handler and the agent's
//! loop send it events over a channel. That thread also starts the session
//! helper in the signed-in user's session, at start and at each session
//! change (`session::launcher`). This file never calls the relay.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::watch;
use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

/// The service's name (`sc start deskside-agent`); the MSI uses it too.
pub const SERVICE_NAME: &str = "deskside-agent";
/// What the Services console shows.
pub const DISPLAY_NAME: &str = "deskside agent";
/// The arguments after the executable in the service's command line.
pub const SERVICE_ARGUMENTS: [&str; 2] = ["service", "run"];
const DESCRIPTION: &str = "Connects this device to your IT helpdesk: health checks on request, and remote help on screen only after the signed-in user accepts.";

/// Restart after a crash: after 5 s, then 30 s, then every 2 minutes; the
/// count starts over after a day without a crash. A clean stop with an
/// error (the relay revoked this device: exit code 3) is not restarted,
/// as `RestartPreventExitStatus=3` does in the systemd unit.
const RESTART_DELAYS: [Duration; 3] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
];
const FAILURE_RESET: Duration = Duration::from_secs(24 * 3600);
/// How long `uninstall` waits for a running service to stop.
const STOP_WAIT: Duration = Duration::from_secs(30);
/// What the service tells the Service Control Manager to wait for a stop:
/// the agent's loop ends its relay connection within a few seconds.
const STOP_HINT: Duration = Duration::from_secs(10);

/// Win32 error codes met here.
const ERROR_ACCESS_DENIED: i32 = 5;
const ERROR_SERVICE_DOES_NOT_EXIST: i32 = 1060;
const ERROR_SERVICE_NOT_ACTIVE: i32 = 1062;
const ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: i32 = 1063;
const ERROR_SERVICE_MARKED_FOR_DELETE: i32 = 1072;

/// What went wrong managing or running the service.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// A Service Control Manager call failed.
    #[error("cannot {action} the {SERVICE_NAME} service: {reason}; {fix}")]
    Manager {
        /// What was being done ("register", "stop", …).
        action: &'static str,
        /// The system's reason.
        reason: String,
        /// What to do about it.
        fix: &'static str,
    },
    /// `service run` was started by hand, not by the Service Control
    /// Manager.
    #[error("`deskside-agent service run` is started by Windows as the {SERVICE_NAME} service, not by hand: run `sc start {SERVICE_NAME}` in an administrator prompt, or `deskside-agent run` to run the agent in this window")]
    NotStartedByWindows,
    /// A running service did not stop in time.
    #[error("the {SERVICE_NAME} service did not stop within {0:?}; stop it with `sc stop {SERVICE_NAME}` or end deskside-agent.exe in Task Manager, then run this again")]
    StopTimeout(Duration),
    /// The path of this executable is unknown.
    #[error("cannot find the path of deskside-agent.exe ({0}); run it by its full path")]
    Executable(std::io::Error),
}

impl ServiceError {
    fn manager(action: &'static str, error: &windows_service::Error) -> Self {
        let code = os_error(error);
        let fix = match code {
            Some(ERROR_ACCESS_DENIED) => {
                "run this in an administrator prompt (right-click Terminal, Run as administrator)"
            }
            Some(ERROR_SERVICE_MARKED_FOR_DELETE) => {
                "a removal is still pending: close the Services console and any `sc` window, or restart Windows, then try again"
            }
            _ => "see the reason; `sc query deskside-agent` shows the service's state",
        };
        Self::Manager {
            action,
            reason: describe(error),
            fix,
        }
    }
}

/// The Win32 error code inside a windows-service error.
fn os_error(error: &windows_service::Error) -> Option<i32> {
    match error {
        windows_service::Error::Winapi(io) => io.raw_os_error(),
        _ => None,
    }
}

/// windows-service prints "IO error in winapi call" for every system
/// error: the system's own text says more.
fn describe(error: &windows_service::Error) -> String {
    match error {
        windows_service::Error::Winapi(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// What `install` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// The service was registered.
    Created,
    /// It existed: its command line, account and start type were updated.
    Updated,
}

/// What `install` set and could not set.
#[derive(Debug)]
pub struct InstallReport {
    /// Created or updated.
    pub installed: Installed,
    /// The executable the service runs.
    pub executable: PathBuf,
    /// Settings the system refused, each with its reason (Wine does not
    /// store failure actions): the service works without them.
    pub warnings: Vec<String>,
}

/// The service's registration, for `exe`.
fn service_info(exe: &Path) -> ServiceInfo {
    ServiceInfo {
        name: OsString::from(SERVICE_NAME),
        display_name: OsString::from(DISPLAY_NAME),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: exe.to_owned(),
        launch_arguments: SERVICE_ARGUMENTS.iter().map(OsString::from).collect(),
        dependencies: Vec::new(),
        // LocalSystem (see the module comment).
        account_name: None,
        account_password: None,
    }
}

fn failure_actions() -> ServiceFailureActions {
    ServiceFailureActions {
        reset_period: ServiceFailureResetPeriod::After(FAILURE_RESET),
        reboot_msg: None,
        command: None,
        actions: Some(
            RESTART_DELAYS
                .iter()
                .map(|&delay| ServiceAction {
                    action_type: ServiceActionType::Restart,
                    delay,
                })
                .collect(),
        ),
    }
}

/// Registers this executable as the service (or updates the registration).
/// It does not start it: `sc start deskside-agent` does, or the next boot.
pub fn install() -> Result<InstallReport, ServiceError> {
    let exe = std::env::current_exe().map_err(ServiceError::Executable)?;
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .map_err(|e| ServiceError::manager("reach the Service Control Manager to register", &e))?;
    let info = service_info(&exe);
    let access = ServiceAccess::CHANGE_CONFIG | ServiceAccess::QUERY_CONFIG;
    let (service, installed) = match manager.open_service(SERVICE_NAME, access) {
        Ok(service) => {
            service
                .change_config(&info)
                .map_err(|e| ServiceError::manager("update", &e))?;
            (service, Installed::Updated)
        }
        Err(e) if os_error(&e) == Some(ERROR_SERVICE_DOES_NOT_EXIST) => {
            let service = manager
                .create_service(&info, access)
                .map_err(|e| ServiceError::manager("register", &e))?;
            (service, Installed::Created)
        }
        Err(e) => return Err(ServiceError::manager("open", &e)),
    };
    let mut warnings = Vec::new();
    if let Err(e) = service.set_description(DESCRIPTION) {
        warnings.push(format!("could not set the description: {}", describe(&e)));
    }
    if let Err(e) = service.update_failure_actions(failure_actions()) {
        warnings.push(format!(
            "could not set the restart-after-crash actions: {}",
            describe(&e)
        ));
    }
    Ok(InstallReport {
        installed,
        executable: exe,
        warnings,
    })
}

/// What `uninstall` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uninstalled {
    /// Stopped if it ran, then deleted.
    Removed,
    /// There was no such service.
    NotInstalled,
}

/// Stops the service if it runs, waits for it, and deletes it.
pub fn uninstall() -> Result<Uninstalled, ServiceError> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(|e| ServiceError::manager("reach the Service Control Manager to remove", &e))?;
    let service = match manager.open_service(
        SERVICE_NAME,
        ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
    ) {
        Ok(service) => service,
        Err(e) if os_error(&e) == Some(ERROR_SERVICE_DOES_NOT_EXIST) => {
            return Ok(Uninstalled::NotInstalled)
        }
        Err(e) => return Err(ServiceError::manager("open", &e)),
    };
    let state = |service: &windows_service::service::Service| {
        service
            .query_status()
            .map(|s| s.current_state)
            .map_err(|e| ServiceError::manager("query", &e))
    };
    if state(&service)? != ServiceState::Stopped {
        match service.stop() {
            Ok(_) => {}
            Err(e) if os_error(&e) == Some(ERROR_SERVICE_NOT_ACTIVE) => {}
            Err(e) => return Err(ServiceError::manager("stop", &e)),
        }
        let deadline = Instant::now() + STOP_WAIT;
        while state(&service)? != ServiceState::Stopped {
            if Instant::now() >= deadline {
                return Err(ServiceError::StopTimeout(STOP_WAIT));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    service
        .delete()
        .map_err(|e| ServiceError::manager("delete", &e))?;
    Ok(Uninstalled::Removed)
}

/// The agent's loop as the service runs it: given the stop signal, runs
/// until it is set (or fails), and returns the exit code (0 for a clean
/// stop; 3 when the relay refused this device for good).
pub type ServiceBody = Box<dyn FnOnce(watch::Receiver<bool>) -> u8 + Send>;

/// Handed from [`run`] to `service_main`, which Windows calls with no
/// context.
static BODY: Mutex<Option<ServiceBody>> = Mutex::new(None);

/// `deskside-agent service run`: connects to the Service Control Manager
/// and runs `body` as the service until Windows stops it. Returns when the
/// service has stopped.
pub fn run(body: ServiceBody) -> Result<(), ServiceError> {
    *BODY.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(body);
    match entry::start_dispatcher() {
        Ok(()) => Ok(()),
        Err(e) if os_error(&e) == Some(ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) => {
            Err(ServiceError::NotStartedByWindows)
        }
        Err(e) => Err(ServiceError::manager("start", &e)),
    }
}

/// The generated `extern "system"` entry point: its only `unsafe` reads the
/// argument array Windows passes, inside windows-service's macro.
#[allow(unsafe_code)]
mod entry {
    windows_service::define_windows_service!(ffi_service_main, service_main);

    fn service_main(_arguments: Vec<std::ffi::OsString>) {
        super::service_main();
    }

    /// Blocks in the service control dispatcher until the service stops.
    pub(super) fn start_dispatcher() -> windows_service::Result<()> {
        windows_service::service_dispatcher::start(super::SERVICE_NAME, ffi_service_main)
    }
}

/// What the service's main thread waits for.
#[derive(Debug)]
enum Event {
    /// STOP or SHUTDOWN arrived.
    StopRequested,
    /// The agent's loop returned this exit code.
    Finished(u8),
    /// SESSION_CHANGE: a `WTS_*` reason code and the session's id.
    SessionChange {
        /// The raw `WTS_*` reason.
        code: u32,
        /// The session.
        session: u32,
    },
}

fn service_main() {
    let body = BODY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    let Some(body) = body else {
        tracing::error!("the service started twice in one process; ignoring the second start");
        return;
    };
    if let Err(e) = serve(body) {
        tracing::error!(
            "cannot report the service's state to Windows: {}",
            describe(&e)
        );
    }
}

fn status(state: ServiceState, exit_code: ServiceExitCode, wait_hint: Duration) -> ServiceStatus {
    let controls_accepted = if state == ServiceState::Running {
        ServiceControlAccept::STOP
            | ServiceControlAccept::SHUTDOWN
            | ServiceControlAccept::SESSION_CHANGE
    } else {
        ServiceControlAccept::empty()
    };
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted,
        exit_code,
        checkpoint: 0,
        wait_hint,
        process_id: None,
    }
}

fn serve(body: ServiceBody) -> Result<(), windows_service::Error> {
    let (events_tx, events) = mpsc::channel::<Event>();
    let control_events = events_tx.clone();
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            let _ = control_events.send(Event::StopRequested);
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        ServiceControl::SessionChange(change) => {
            // Handled on the service's main thread: starting a helper
            // (CreateProcessAsUser) is too slow for the control handler.
            let _ = control_events.send(Event::SessionChange {
                code: change.reason.to_raw(),
                session: change.notification.session_id,
            });
            ServiceControlHandlerResult::NoError
        }
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let handle = service_control_handler::register(SERVICE_NAME, handler)?;
    handle.set_service_status(status(
        ServiceState::Running,
        ServiceExitCode::NO_ERROR,
        Duration::ZERO,
    ))?;
    tracing::info!("the {SERVICE_NAME} service is running");
    // Someone may be signed in already (the service started after logon,
    // or was restarted): their session gets its helper now.
    let mut launcher = crate::session::launcher::Launcher::default();
    launcher.start_in_console_session();
    let (stop_tx, stop_rx) = watch::channel(false);
    let worker = std::thread::Builder::new()
        .name("deskside-agent".into())
        .spawn(move || {
            let code = body(stop_rx);
            let _ = events_tx.send(Event::Finished(code));
        });
    let code = match worker {
        Ok(_) => loop {
            match events.recv() {
                Ok(Event::StopRequested) => {
                    tracing::info!("Windows asked the service to stop");
                    stop_tx.send_replace(true);
                    handle.set_service_status(status(
                        ServiceState::StopPending,
                        ServiceExitCode::NO_ERROR,
                        STOP_HINT,
                    ))?;
                }
                Ok(Event::SessionChange { code, session }) => {
                    launcher.on_session_change(code, session);
                }
                Ok(Event::Finished(code)) => break code,
                // Both senders gone without a result: the loop panicked.
                Err(_) => break 1,
            }
        },
        Err(e) => {
            tracing::error!("cannot start the agent's thread: {e}");
            1
        }
    };
    let exit_code = if code == 0 {
        ServiceExitCode::NO_ERROR
    } else {
        ServiceExitCode::ServiceSpecific(u32::from(code))
    };
    tracing::info!(code, "the {SERVICE_NAME} service stopped");
    handle.set_service_status(status(ServiceState::Stopped, exit_code, Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registration_is_the_agreed_one() {
        let exe = Path::new(r"C:\Program Files\deskside\deskside-agent.exe");
        let info = service_info(exe);
        assert_eq!(info.name, "deskside-agent");
        assert_eq!(info.display_name, "deskside agent");
        assert_eq!(info.launch_arguments, ["service", "run"]);
        assert_eq!(info.start_type, ServiceStartType::AutoStart);
        assert_eq!(info.account_name, None, "LocalSystem");
        let actions = failure_actions().actions.expect("restart actions");
        assert!(actions
            .iter()
            .all(|a| a.action_type == ServiceActionType::Restart));
        assert_eq!(actions[0].delay, Duration::from_secs(5));
    }

    /// Under Wine and on Windows: a process not started by the Service
    /// Control Manager is told so instead of hanging.
    #[test]
    fn run_by_hand_says_how_to_start_the_service() {
        let err = run(Box::new(|_| 0)).expect_err("not started by Windows");
        assert!(matches!(err, ServiceError::NotStartedByWindows), "{err}");
        assert!(err.to_string().contains("sc start deskside-agent"));
    }
}
