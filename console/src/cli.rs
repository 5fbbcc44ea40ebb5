//! The command line: global options, their validation into a [`Config`],
//! and the value parsers shared by several command groups.
//!
//! Parsing and validation only: nothing here touches the network, the
//! profile file or the clock. The few environment variables that clap does
//! not read itself come in through [`Environment`], so validation is
//! testable. Subcommands are defined next to their code in [`crate::cmd`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};

use crate::cmd::{Action, Command};
use crate::exit::{UsageError, EXIT_CODES_HELP};
use crate::output::Format;
use crate::profile;

const LONG_ABOUT: &str = "\
deskside is the technician's tool for deskside remote support: list and \
inspect enrolled devices, diagnose them one by one or as a fleet (device, \
configuration, home network, ISP or service?), open remote sessions the \
employee accepts, create enrollment tokens for new devices, and manage \
technician tokens, the diagnostics policy and the audit log.

Start with `deskside login LOGIN_STRING` (an administrator creates the \
string with `deskside tokens create`). Every command accepts --json to print \
one JSON object per line, each with a \"type\" field, for scripts. Shell \
completions: `deskside completion bash|zsh|fish|elvish|powershell`.";

/// Help heading of the options every command accepts.
const GLOBAL: &str = "Global options";

/// The `deskside` command line.
#[derive(Debug, Parser)]
#[command(
    name = "deskside",
    version,
    about = "Remote support from the technician's side: devices, diagnostics, sessions, tokens, audit",
    long_about = LONG_ABOUT,
    after_long_help = EXIT_CODES_HELP
)]
pub struct Cli {
    /// Profile file: relay address, certificate fingerprint and your token
    /// [default: $XDG_CONFIG_HOME/deskside/profile.json, else ~/.config/deskside/profile.json]
    #[arg(long, global = true, env = "DESKSIDE_PROFILE", value_name = "FILE", help_heading = GLOBAL)]
    pub profile: Option<PathBuf>,

    /// Print one JSON object per line, each with a "type" field
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,

    /// Log to stderr: -v info, -vv debug, -vvv trace [default: warnings, or RUST_LOG]
    #[arg(short, long, global = true, action = ArgAction::Count, help_heading = GLOBAL)]
    pub verbose: u8,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Environment variables read outside clap, captured once at start-up.
#[derive(Clone, Default)]
pub struct Environment {
    /// `XDG_CONFIG_HOME`.
    pub xdg_config_home: Option<OsString>,
    /// `HOME`.
    pub home: Option<OsString>,
    /// `DESKSIDE_TOKEN`: the technician token for `deskside login --relay …
    /// --fingerprint …` without putting it on the command line. Read here
    /// rather than by clap so that it never conflicts with a login string.
    pub token: Option<String>,
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environment")
            .field("xdg_config_home", &self.xdg_config_home)
            .field("home", &self.home)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Environment {
    /// Reads the variables from this process's environment.
    pub fn from_process() -> Self {
        Self {
            xdg_config_home: std::env::var_os("XDG_CONFIG_HOME"),
            home: std::env::var_os("HOME"),
            token: std::env::var("DESKSIDE_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        }
    }
}

/// A validated command line: everything a command needs to run.
#[derive(Debug)]
pub struct Config {
    /// Where the profile is read from (and written to by `login`).
    pub profile_path: PathBuf,
    /// How results are printed.
    pub format: Format,
    /// The validated command.
    pub action: Action,
}

impl Cli {
    /// The output format asked for, known even if validation fails.
    pub fn format(&self) -> Format {
        if self.json {
            Format::Json
        } else {
            Format::Human
        }
    }

    /// Checks what clap cannot and resolves defaults.
    pub fn into_config(self, env: Environment) -> Result<Config, UsageError> {
        let format = self.format();
        // clap already refuses an empty --profile.
        let profile_path = match self.profile {
            Some(path) => path,
            None => profile::default_path(env.xdg_config_home.clone(), env.home.clone())
                .map_err(|e| UsageError::new(e.to_string(), "deskside --help"))?,
        };
        let action = self.command.validate(&env)?;
        Ok(Config {
            profile_path,
            format,
            action,
        })
    }
}

/// Parses a lifetime such as `30m`, `24h`, `7d` or `1h 30m` (humantime
/// syntax); at least one second.
pub fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|e| format!("{e}; write a duration such as 30m, 24h or 7d"))?;
    if duration.as_secs() == 0 {
        return Err("must be at least 1s; write a duration such as 30m, 24h or 7d".to_owned());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_names_what_the_tool_does_today() {
        let cmd = Cli::command();
        let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
        for word in ["devices", "diagnostics", "sessions", "tokens", "audit"] {
            assert!(about.contains(word), "{about}");
        }
        let help = cmd.clone().render_long_help().to_string();
        assert!(help.contains("remote sessions"), "{help}");
        assert!(help.contains("deskside completion"), "{help}");
    }

    #[test]
    fn help_documents_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit codes:"), "{help}");
        assert!(help.contains("2  usage error"), "{help}");
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("deskside").chain(args.iter().copied()))
    }

    fn env() -> Environment {
        Environment {
            home: Some("/home/ana".into()),
            ..Environment::default()
        }
    }

    #[test]
    fn global_options_go_before_or_after_the_subcommand() {
        for args in [
            &["--json", "--profile", "/p.json", "devices", "list"][..],
            &["devices", "list", "--json", "--profile", "/p.json"][..],
            &["devices", "--json", "list", "--profile=/p.json"][..],
        ] {
            let config = parse(args).unwrap().into_config(env()).unwrap();
            assert_eq!(config.format, Format::Json, "{args:?}");
            assert_eq!(config.profile_path, PathBuf::from("/p.json"), "{args:?}");
        }
    }

    #[test]
    fn default_profile_path_comes_from_the_environment() {
        if std::env::var_os("DESKSIDE_PROFILE").is_some() {
            return; // clap would read it; this test is about the fallback.
        }
        let config = parse(&["whoami"]).unwrap().into_config(env()).unwrap();
        assert_eq!(
            config.profile_path,
            PathBuf::from("/home/ana/.config/deskside/profile.json")
        );
        assert_eq!(config.format, Format::Human);
        let error = parse(&["whoami"])
            .unwrap()
            .into_config(Environment::default())
            .unwrap_err();
        assert!(error.message.contains("--profile"), "{error}");
        assert_eq!(
            parse(&["whoami", "--profile", ""]).unwrap_err().exit_code(),
            2
        );
    }

    #[test]
    fn verbose_counts() {
        assert_eq!(parse(&["-vv", "whoami"]).unwrap().verbose, 2);
        assert_eq!(parse(&["whoami", "--verbose"]).unwrap().verbose, 1);
        assert_eq!(parse(&["whoami"]).unwrap().verbose, 0);
    }

    #[test]
    fn lifetimes_parse_humantime_syntax() {
        assert_eq!(parse_lifetime("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_lifetime("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_lifetime("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_lifetime("1h 30m"), Ok(Duration::from_secs(5_400)));
    }

    #[test]
    fn bad_lifetimes_are_refused_with_an_example() {
        for text in ["", "soon", "24", "10x", "-1h", "0s", "500ms"] {
            let error = parse_lifetime(text).unwrap_err();
            assert!(error.contains("30m, 24h or 7d"), "{text:?}: {error}");
        }
    }

    #[test]
    fn bad_lifetime_on_the_command_line_is_a_usage_error() {
        let error = parse(&["enroll-token", "create", "--expires", "tomorrow"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("30m, 24h or 7d"), "{error}");
        let error = parse(&[
            "tokens",
            "create",
            "--name",
            "a",
            "--role",
            "admin",
            "--expires",
            "0s",
        ])
        .unwrap_err();
        assert_eq!(error.exit_code(), 2);
    }
}
