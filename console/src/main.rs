//! `deskside`, the technician's command-line tool.
//!
//! This file stays thin: parse flags, validate them into a configuration,
//! run, and map the outcome to an exit code. Everything else is in the
//! `deskside_console` library.
//!
//! Exit codes (also printed at the end of `deskside --help`):
//! - 0: success, including when stdout is closed early (`| head -1`);
//! - 1: the operation failed: one line `error: REASON` on stderr, and with
//!   `--json` also `{"type":"error","message":REASON}` on stdout;
//! - 2: usage error (bad flag, bad value, missing argument);
//! - 3: a fleet run (`diag --all|--group [--where]`) matched no device.

use std::process::ExitCode;

use clap::Parser as _;
use deskside_console::cli::{Cli, Environment};
use deskside_console::{exit, logging};

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.verbose);
    let format = cli.format();
    let config = match cli.into_config(Environment::from_process()) {
        Ok(config) => config,
        Err(usage) => return exit::usage(&usage),
    };
    exit::report(deskside_console::run(config), format)
}
