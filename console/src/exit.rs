//! Exit codes, and how a failure is reported to a person or a script.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success; also when stdout is closed early (`deskside devices list \| head -1`) |
//! | 1 | the operation failed: one line `error: REASON` on stderr, and with `--json` also `{"type":"error","message":REASON}` on stdout |
//! | 2 | usage error: unknown flag, bad value, missing argument (clap's own errors use 2 too) |
//! | 3 | nothing matched: a fleet run (`diag --all/--group`, with or without `--where`, or `timeline --all --where`) selected no device; `no device matched: …` on stderr, and with `--json` `{"type":"no_match","message":…}` on stdout |
//!
//! This module only formats and writes; it decides nothing about what
//! failed. A broken pipe on stdout is not an error: the reader has all it
//! wanted.

use std::fmt;
use std::io::{self, Write as _};
use std::process::ExitCode;

use crate::output::{json_line, ErrorRecord, Format};

/// The command did what was asked.
pub const SUCCESS: u8 = 0;
/// The operation failed (relay unreachable, refused, not logged in, …).
pub const FAILURE: u8 = 1;
/// The command line was wrong.
pub const USAGE: u8 = 2;
/// The command ran, but its selection matched no device.
pub const NO_MATCH: u8 = 3;

/// Exit codes as shown at the end of `deskside --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success (also when stdout is closed early, as in `deskside devices list | head -1`)
  1  the operation failed: one line `error: REASON` on stderr; with --json also
     {\"type\":\"error\",\"message\":REASON} on stdout
  2  usage error: unknown flag, bad value or missing argument (also an unknown
     field in `diag --where` or `timeline --where`)
  3  no device matched: a fleet run (`diag --all|--group [--where EXPR]`,
     `timeline --all --where EXPR`) selected no device; with --json
     {\"type\":\"no_match\",\"message\":…}";

/// A command line that parsed but makes no sense (for example a login string
/// together with `--relay`). Reported like clap's own errors, exit code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
    /// What is wrong and how to say it right.
    pub message: String,
    /// The help command to suggest, e.g. `deskside login --help`.
    pub help: &'static str,
}

impl UsageError {
    /// A usage error suggesting `help` for more information.
    pub fn new(message: impl Into<String>, help: &'static str) -> Self {
        Self {
            message: message.into(),
            help,
        }
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UsageError {}

/// A fleet run selected no device: not a failure, but scripts must be able
/// to tell it from a run that printed rows. Exit code 3.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoMatch(pub String);

/// Reports a usage error on stderr and returns exit code 2.
pub fn usage(error: &UsageError) -> ExitCode {
    // If stderr itself is gone there is no one left to tell.
    let _ = writeln!(
        io::stderr(),
        "error: {}\n\nFor more information, try '{}'.",
        error.message,
        error.help
    );
    ExitCode::from(USAGE)
}

/// Maps the outcome of a command to its exit code, reporting a failure on
/// stderr (and on stdout as a JSON record with `--json`).
pub fn report(outcome: anyhow::Result<()>, format: Format) -> ExitCode {
    let error = match outcome {
        Ok(()) => return ExitCode::from(SUCCESS),
        Err(error) if is_broken_pipe(&error) => return ExitCode::from(SUCCESS),
        // A command may find a usage error only once it runs (flags that
        // make no sense together for that command): still exit code 2.
        Err(error) => match error.downcast_ref::<UsageError>() {
            Some(usage_error) => return usage(usage_error),
            None => error,
        },
    };
    if let Some(NoMatch(message)) = error.downcast_ref::<NoMatch>() {
        let _ = writeln!(io::stderr(), "{message}");
        if format == Format::Json {
            let record = serde_json::json!({"type": "no_match", "message": message});
            let _ = writeln!(io::stdout(), "{record}");
        }
        return ExitCode::from(NO_MATCH);
    }
    let message = one_line(&error);
    let _ = writeln!(io::stderr(), "error: {message}");
    if format == Format::Json {
        if let Ok(line) = json_line(&ErrorRecord::new(&message)) {
            let _ = writeln!(io::stdout(), "{line}");
        }
    }
    ExitCode::from(FAILURE)
}

/// Whether `error` comes from writing to a closed pipe.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<io::Error>())
        .any(|io_error| io_error.kind() == io::ErrorKind::BrokenPipe)
}

/// The error and its causes as one line.
///
/// Many errors already include their cause in their own message (`"lost the
/// connection: {0}"` with the cause as source), so a cause whose text is
/// already in the line is not repeated.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("lost the connection: {0}")]
    struct Wrapper(#[from] io::Error);

    #[test]
    fn one_line_does_not_repeat_causes_already_in_the_message() {
        let error = anyhow::Error::from(Wrapper(io::Error::other("reset by peer")));
        assert_eq!(one_line(&error), "lost the connection: reset by peer");
        let error =
            anyhow::Error::from(io::Error::other("timed out")).context("cannot reach the relay");
        assert_eq!(one_line(&error), "cannot reach the relay: timed out");
        let error = anyhow::anyhow!("two\nlines");
        assert_eq!(one_line(&error), "two lines");
    }

    #[test]
    fn broken_pipe_is_recognised_through_context() {
        let error =
            anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe)).context("printing");
        assert!(is_broken_pipe(&error));
        assert!(!is_broken_pipe(&anyhow::anyhow!("broken pipe")));
    }
}
