//! Running the consent dialog and the indicator in child processes.
//!
//! Why: a dialog in its own process can be killed, can crash, or can fail to
//! find a display without taking the agent's session helper with it, and
//! every such end counts as a refusal (or a Stop), never as consent. It also
//! sidesteps winit's one-event-loop-per-process rule.
//!
//! The child is any program whose `main` calls [`consent_main`] or
//! [`indicator_main`] (this crate's `deskside-session-ui consent|indicator`
//! binary does; the agent can do the same behind a hidden subcommand of its
//! own binary). The wire format is JSON, one value per line:
//!
//! - consent: the parent writes one [`ConsentRequest`] line to the child's
//!   stdin, and later possibly the line `{"event":"withdrawn"}` (the
//!   technician gave up: the dialog says so and offers nothing to accept);
//!   the child writes one
//!   `{"answer":"accepted"|"refused"|"timed_out"|"withdrawn"}` line to
//!   stdout and exits 0 (exit 2 with the reason on stderr if the window
//!   could not open).
//! - indicator: the parent writes one [`IndicatorInfo`] line, then
//!   [`IndicatorEvent`] lines; the child writes [`IndicatorCommand`] lines.
//!   The child closes when told `ended` or when its stdin closes; the parent
//!   treats the child's stdout closing as [`IndicatorCommand::Stop`].

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deskside_protocol::session::EndedBy;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{
    ask_consent_withdrawable, indicator_channel, run_indicator, ConsentAnswer, ConsentRequest,
    IndicatorCommand, IndicatorEvent, IndicatorInfo, UiError, Withdrawal, DEFAULT_CONSENT_TIMEOUT,
};

/// Extra time the parent gives a consent process past the request's timeout
/// (start-up, a slow display) before killing it and calling it timed out.
const CONSENT_PROCESS_GRACE: Duration = Duration::from_secs(15);

/// Largest request or event line accepted on stdin (a chat line is far less).
const MAX_LINE: u64 = 64 * 1024;

/// The consent child's answer line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentReply {
    /// The employee's answer.
    pub answer: ConsentAnswer,
}

/// The line that tells a consent child the request was withdrawn.
const WITHDRAWN_EVENT: &str = r#"{"event":"withdrawn"}"#;

/// `main` of a consent child process: reads a [`ConsentRequest`] (JSON
/// line) from stdin, shows the dialog, prints a [`ConsentReply`] line. A
/// later `{"event":"withdrawn"}` line on stdin withdraws the request; stdin
/// closing changes nothing.
pub fn consent_main() -> ExitCode {
    let mut input = String::new();
    // Stdin's own buffer, never a BufReader of ours: one dropped after the
    // first line would take the lines behind it along (a withdrawal sent
    // right after the request was lost that way).
    let mut reader = std::io::stdin().lock();
    if let Err(error) = (&mut reader).take(MAX_LINE).read_line(&mut input) {
        eprintln!("deskside consent: could not read the request from stdin: {error}");
        return ExitCode::from(2);
    }
    drop(reader);
    let withdrawal = Withdrawal::default();
    let told = withdrawal.clone();
    std::thread::spawn(move || {
        let mut reader = std::io::stdin().lock();
        loop {
            let mut line = String::new();
            match (&mut reader).take(MAX_LINE).read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if line.trim() == WITHDRAWN_EVENT => told.withdraw(),
                Ok(_) => eprintln!("deskside consent: ignoring an unknown stdin line"),
            }
        }
    });
    let request: ConsentRequest = match serde_json::from_str(&input) {
        Ok(request) => request,
        Err(error) => {
            eprintln!("deskside consent: the request on stdin is not valid JSON for a consent request: {error}");
            return ExitCode::from(2);
        }
    };
    match ask_consent_withdrawable(request, withdrawal) {
        Ok(answer) => match serde_json::to_string(&ConsentReply { answer }) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("deskside consent: could not encode the answer: {error}");
                ExitCode::from(2)
            }
        },
        Err(error) => {
            eprintln!("deskside consent: {error}");
            ExitCode::from(2)
        }
    }
}

/// Runs the consent dialog in a child process started from `command` (its
/// stdin and stdout are replaced by pipes) and waits for the answer.
///
/// Blocking; call it from `tokio::task::spawn_blocking`. If the child gives
/// no answer within the request's timeout plus a grace period it is killed
/// and the answer is [`ConsentAnswer::TimedOut`]; any error (child killed,
/// crashed, no display) must be treated as a refusal.
pub fn ask_consent_in_subprocess(
    command: Command,
    request: &ConsentRequest,
) -> Result<ConsentAnswer, UiError> {
    // Stdin closes at once, as before withdrawals existed: the child
    // reads its request to the end.
    ask_consent_in_subprocess_withdrawable(command, request, |withdrawer| withdrawer.close())
}

/// Withdraws the request of a consent child process from another thread
/// (see [`ask_consent_in_subprocess_withdrawable`]).
#[derive(Clone, Debug)]
pub struct ConsentWithdrawer {
    stdin: Arc<Mutex<Option<ChildStdin>>>,
}

impl ConsentWithdrawer {
    /// Tells the dialog the technician withdrew the request: it drops
    /// Accept, says so, and its answer becomes [`ConsentAnswer::Withdrawn`].
    /// Fails when the dialog has already gone.
    pub fn withdraw(&self) -> std::io::Result<()> {
        let mut stdin = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
        let pipe = stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the consent dialog's stdin is closed"))?;
        writeln!(pipe, "{WITHDRAWN_EVENT}")?;
        pipe.flush()
    }

    /// Closes the child's stdin: no withdrawal can come any more.
    fn close(&self) {
        self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// Like [`ask_consent_in_subprocess`], keeping the child's stdin open:
/// `on_start` gets a [`ConsentWithdrawer`] as soon as the child runs.
/// Starts a window's child process from `command` with a pipe to its
/// stdin and `stdout` for its stdout; a failure names the `window`.
pub(crate) fn spawn_window(
    mut command: Command,
    window: &'static str,
    stdout: Stdio,
) -> Result<Child, UiError> {
    command
        .stdin(Stdio::piped())
        .stdout(stdout)
        .spawn()
        .map_err(|source| UiError::Spawn { window, source })
}

pub fn ask_consent_in_subprocess_withdrawable(
    command: Command,
    request: &ConsentRequest,
    on_start: impl FnOnce(ConsentWithdrawer),
) -> Result<ConsentAnswer, UiError> {
    const WINDOW: &str = "consent";
    let spawn_error = |source| UiError::Spawn {
        window: WINDOW,
        source,
    };
    let mut child = spawn_window(command, WINDOW, Stdio::piped())?;
    let body = serde_json::to_vec(request).map_err(|error| UiError::NoAnswer {
        window: WINDOW,
        detail: format!("could not encode the request: {error}"),
    })?;
    let stdin = Arc::new(Mutex::new(None));
    if let Some(mut pipe) = child.stdin.take() {
        if let Err(error) = pipe.write_all(&body).and_then(|()| pipe.write_all(b"\n")) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(spawn_error(error));
        }
        // Kept open for a withdrawal; closed when this function returns.
        *stdin.lock().unwrap_or_else(|p| p.into_inner()) = Some(pipe);
    }
    on_start(ConsentWithdrawer {
        stdin: Arc::clone(&stdin),
    });
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(UiError::NoAnswer {
            window: WINDOW,
            detail: "the child's stdout was not captured".into(),
        });
    };
    let (tx, rx) = std_mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let result = BufReader::new(stdout.take(MAX_LINE))
            .read_line(&mut line)
            .map(|_| line);
        let _ = tx.send(result);
    });
    let wait_for = request.timeout.unwrap_or(DEFAULT_CONSENT_TIMEOUT) + CONSENT_PROCESS_GRACE;
    let outcome = match rx.recv_timeout(wait_for) {
        Ok(Ok(line)) => parse_reply(&line),
        Ok(Err(error)) => Err(format!("reading its answer failed: {error}")),
        Err(std_mpsc::RecvTimeoutError::Timeout) => {
            tracing::warn!("the consent process did not answer in time; killing it");
            let _ = child.kill();
            let _ = child.wait();
            return Ok(ConsentAnswer::TimedOut);
        }
        Err(std_mpsc::RecvTimeoutError::Disconnected) => Err("its output reader stopped".into()),
    };
    stdin.lock().unwrap_or_else(|p| p.into_inner()).take();
    let status = child.wait();
    outcome.map_err(|detail| UiError::NoAnswer {
        window: WINDOW,
        detail: match status {
            Ok(status) => format!("{detail}; {status}"),
            Err(error) => format!("{detail}; waiting for it failed: {error}"),
        },
    })
}

fn parse_reply(line: &str) -> Result<ConsentAnswer, String> {
    if line.trim().is_empty() {
        return Err("it printed no answer".into());
    }
    serde_json::from_str::<ConsentReply>(line.trim())
        .map(|reply| reply.answer)
        .map_err(|error| format!("its answer {:?} is not valid: {error}", line.trim()))
}

/// `main` of an indicator child process: reads an [`IndicatorInfo`] line,
/// then [`IndicatorEvent`] lines, from stdin; prints [`IndicatorCommand`]
/// lines to stdout.
pub fn indicator_main() -> ExitCode {
    // Stdin's own buffer (see consent_main): events sent right after the
    // session information stay readable by the thread below.
    let mut lines = std::io::stdin().lock();
    let mut first = String::new();
    if let Err(error) = (&mut lines).take(MAX_LINE).read_line(&mut first) {
        eprintln!("deskside indicator: could not read the session information from stdin: {error}");
        return ExitCode::from(2);
    }
    let info: IndicatorInfo = match serde_json::from_str(first.trim()) {
        Ok(info) => info,
        Err(error) => {
            eprintln!("deskside indicator: the first stdin line is not valid session information: {error}");
            return ExitCode::from(2);
        }
    };
    drop(lines);
    let (io, remote, mut commands) = indicator_channel();
    std::thread::spawn(move || {
        let mut reader = std::io::stdin().lock();
        loop {
            let mut line = String::new();
            match (&mut reader).take(MAX_LINE).read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => match serde_json::from_str::<IndicatorEvent>(line.trim()) {
                    Ok(event) => remote.send(event),
                    Err(error) => {
                        eprintln!("deskside indicator: ignoring an invalid event line: {error}")
                    }
                },
            }
        }
        // The session helper is gone: nothing can go on without it.
        remote.send(IndicatorEvent::Ended {
            by: EndedBy::HelperGone,
        });
    });
    let writer = std::thread::spawn(move || {
        let stdout = std::io::stdout();
        while let Some(command) = commands.blocking_recv() {
            let Ok(line) = serde_json::to_string(&command) else {
                continue;
            };
            let mut out = stdout.lock();
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                break;
            }
        }
    });
    let result = run_indicator(info, io);
    if writer.join().is_err() {
        eprintln!("deskside indicator: the output thread failed");
    }
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("deskside indicator: {error}");
            ExitCode::from(2)
        }
    }
}

/// An indicator running in a child process.
#[derive(Debug)]
pub struct IndicatorProcess {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl IndicatorProcess {
    /// Starts the indicator from `command` (stdin and stdout become pipes)
    /// and returns it with the receiver of the employee's commands. When the
    /// child's output ends for any reason the receiver yields a final
    /// [`IndicatorCommand::Stop`], so a killed indicator stops the session.
    pub fn spawn(
        command: Command,
        info: &IndicatorInfo,
    ) -> Result<(Self, mpsc::UnboundedReceiver<IndicatorCommand>), UiError> {
        const WINDOW: &str = "session indicator";
        let mut child = spawn_window(command, WINDOW, Stdio::piped())?;
        let stdout = child.stdout.take();
        let mut process = Self {
            stdin: child.stdin.take(),
            child,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        if let Some(stdout) = stdout {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stdout);
                loop {
                    let mut line = String::new();
                    match (&mut reader).take(MAX_LINE).read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => match serde_json::from_str::<IndicatorCommand>(line.trim()) {
                            Ok(command) => {
                                if tx.send(command).is_err() {
                                    return;
                                }
                            }
                            Err(error) => {
                                tracing::warn!(%error, "ignoring an invalid line from the indicator")
                            }
                        },
                    }
                }
                let _ = tx.send(IndicatorCommand::Stop);
            });
        } else {
            let _ = tx.send(IndicatorCommand::Stop);
        }
        process.write_line(info).map_err(|source| UiError::Spawn {
            window: WINDOW,
            source,
        })?;
        Ok((process, rx))
    }

    /// Sends an event to the indicator. Fails when it has exited.
    pub fn send(&mut self, event: &IndicatorEvent) -> std::io::Result<()> {
        self.write_line(event)
    }

    fn write_line<T: Serialize>(&mut self, value: &T) -> std::io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the indicator's stdin is closed"))?;
        let line = serde_json::to_string(value).map_err(std::io::Error::other)?;
        writeln!(stdin, "{line}")?;
        stdin.flush()
    }

    /// Closes the indicator's stdin (it closes its window) and waits for it.
    pub fn close(mut self) -> std::io::Result<std::process::ExitStatus> {
        self.stdin = None;
        self.child.wait()
    }

    /// Kills the indicator process at once.
    pub fn kill(mut self) -> std::io::Result<()> {
        self.child.kill()?;
        self.child.wait().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_parse_and_garbage_is_no_answer() {
        assert_eq!(
            parse_reply("{\"answer\":\"accepted\"}\n"),
            Ok(ConsentAnswer::Accepted)
        );
        assert_eq!(
            parse_reply("{\"answer\":\"timed_out\"}"),
            Ok(ConsentAnswer::TimedOut)
        );
        assert!(parse_reply("").is_err());
        assert!(parse_reply("{\"answer\":\"yes\"}").is_err());
    }

    #[test]
    fn commands_and_events_have_stable_json() {
        assert_eq!(
            serde_json::to_string(&IndicatorCommand::Stop)
                .ok()
                .as_deref(),
            Some("\"stop\"")
        );
        assert_eq!(
            serde_json::to_string(&IndicatorCommand::Chat("hi".into()))
                .ok()
                .as_deref(),
            Some("{\"chat\":\"hi\"}")
        );
        let event: IndicatorEvent =
            serde_json::from_str("{\"ended\":{\"by\":\"Employee\"}}").expect("valid event");
        assert_eq!(
            event,
            IndicatorEvent::Ended {
                by: EndedBy::Employee
            }
        );
    }

    #[test]
    fn a_child_that_dies_without_answering_is_an_error() {
        // Reads the request, then dies without an answer.
        #[cfg(unix)]
        let command = {
            let mut command = Command::new("sh");
            command.args(["-c", "cat >/dev/null; exit 3"]);
            command
        };
        #[cfg(windows)]
        let command = {
            let mut command = Command::new("cmd");
            command.args(["/c", "set /p request= & exit 3"]);
            command
        };
        let request = ConsentRequest {
            technician: "A".into(),
            organisation: "B".into(),
            capabilities: deskside_protocol::session::Capabilities::VIEW,
            reason: String::new(),
            verification_code: "1".into(),
            timeout: Some(Duration::from_secs(5)),
            accept_after: None,
        };
        assert!(matches!(
            ask_consent_in_subprocess(command, &request),
            Err(UiError::NoAnswer { .. })
        ));
    }
}
