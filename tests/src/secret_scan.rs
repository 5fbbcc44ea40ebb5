//! Finds secrets in logs: every token and key the harness sees created is
//! remembered here, and every process log is scanned for them.
//!
//! The harness remembers the relay's bootstrap admin token and TLS key,
//! tokens printed by `deskside … --json` (`token` fields) or passed with
//! `--token`, enrollment tokens and their secret part, and agents' private
//! keys. [`crate::Proc`] checks its own log when it is dropped (a test that
//! passed fails if one of its processes logged a secret), and
//! [`assert_no_secret_in_logs`] checks every log of a world at once.

use std::path::Path;
use std::sync::Mutex;

use deskside_protocol::token::{EnrollToken, LoginString};

/// Secrets shorter than this are not remembered: they would match by chance.
const MIN_LEN: usize = 16;

static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn secrets() -> std::sync::MutexGuard<'static, Vec<String>> {
    SECRETS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Remembers `secret` (ignored if shorter than 16 characters).
pub fn remember(secret: &str) {
    let secret = secret.trim();
    if secret.len() < MIN_LEN {
        return;
    }
    let mut known = secrets();
    if !known.iter().any(|s| s == secret) {
        known.push(secret.to_owned());
    }
}

/// Remembers a token: the whole text and, for an enrollment token, its
/// secret part (which travels alone in `Enroll`).
pub fn remember_token(token: &str) {
    remember(token);
    if let Ok(decoded) = EnrollToken::decode(token.trim()) {
        remember(&decoded.secret);
    }
    if let Ok(login) = LoginString::decode(token.trim()) {
        remember(&login.token);
    }
}

/// Remembers the base64 lines of a PEM private key file (if readable).
pub fn remember_key_file(path: &Path) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    for line in text.lines().filter(|l| !l.starts_with("-----")) {
        remember(line);
    }
}

/// Remembers every `token` and `login` string field of JSON lines.
pub fn remember_json_tokens(stdout: &str) {
    for line in stdout.lines() {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        for key in ["token", "login", "login_string", "admin_token"] {
            if let Some(text) = value.get(key).and_then(|v| v.as_str()) {
                remember_token(text);
            }
        }
    }
}

/// Remembers the value after `--token` in `args`.
pub fn remember_args(args: &[&str]) {
    for pair in args.windows(2) {
        if pair[0] == "--token" {
            remember_token(pair[1]);
        }
    }
}

/// The remembered secrets found in `text`, shortened so a failure message
/// does not spread them further.
pub fn found_in(text: &str) -> Vec<String> {
    secrets()
        .iter()
        .filter(|secret| text.contains(secret.as_str()))
        .map(|secret| format!("{}… ({} characters)", &secret[..6], secret.len()))
        .collect()
}

/// How many secrets are remembered (tests check the scan has something to
/// look for).
pub fn remembered() -> usize {
    secrets().len()
}

/// Panics if any `*.log` file in `dir` holds a remembered secret.
pub fn assert_no_secret_in_logs(dir: &Path) {
    let mut leaks = Vec::new();
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for secret in found_in(&text) {
                leaks.push(format!("{}: {secret}", path.display()));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "secrets found in process logs:\n{}",
        leaks.join("\n")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_secrets_are_found_and_short_ones_ignored() {
        remember("short");
        let secret = "dst_remembered_for_the_scan_test_0001";
        remember_args(&["login", "--token", secret]);
        assert!(found_in("a log line with short in it").is_empty());
        let found = found_in(&format!("token={secret} leaked"));
        // Reported by its first six characters and its length, never whole.
        assert_eq!(
            found,
            vec![format!("dst_re… ({} characters)", secret.len())]
        );
    }
}
