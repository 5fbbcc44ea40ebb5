//! Diagnostic logging to stderr with `tracing`.
//!
//! Stdout belongs to results (and to scripts reading `--json`), so logs
//! always go to stderr. By default only warnings are shown; `RUST_LOG`
//! changes that, and `-v`/`-vv`/`-vvv` override both.

use tracing_subscriber::EnvFilter;

/// The filter for `verbosity` (the number of `-v` flags), or `RUST_LOG`'s
/// when there is none.
pub fn filter(verbosity: u8) -> EnvFilter {
    match verbosity {
        0 => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        1 => EnvFilter::new("info"),
        2 => EnvFilter::new("debug"),
        _ => EnvFilter::new("trace"),
    }
}

/// Installs the stderr logger. Calling it twice keeps the first logger.
pub fn init(verbosity: u8) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(verbosity))
        .with_writer(std::io::stderr)
        .try_init();
}
