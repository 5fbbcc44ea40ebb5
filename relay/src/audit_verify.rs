//! `deskside-relay audit verify`: checks a data directory's audit chain
//! (or a shared PostgreSQL store's, with `--store`) offline, and against
//! the signed heads of an anchor file.
//!
//! Exit codes (from `main`): 0 the chain is intact and extends every
//! anchor, 2 it is broken or an anchor disagrees, 1 it could not be checked.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use crate::audit_anchor::{check_against, read_file, AnchorKey};
use crate::store::{redact_url, Store};

/// What the check found, printed as text or one JSON line.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Always `"audit_verify"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Whether everything verified.
    pub ok: bool,
    /// Rows checked.
    pub rows: u64,
    /// The newest row that verified.
    pub head_id: Option<i64>,
    /// The first row that breaks the chain.
    pub broken_at: Option<i64>,
    /// Anchors (signed heads) that matched.
    pub anchors_matched: usize,
    /// The first anchor that did not match.
    pub anchor_mismatch_at: Option<i64>,
    /// What is wrong, in words.
    pub problem: Option<String>,
}

/// Checks the store at `store_url` (a PostgreSQL database several relays
/// share, `--store`) or else `data_dir`'s database, and `anchor_file` if
/// given (its signing key is read from `data_dir`).
pub fn verify(
    data_dir: &Path,
    store_url: Option<&str>,
    anchor_file: Option<&PathBuf>,
) -> anyhow::Result<Report> {
    let store = match store_url {
        Some(url) => Store::open_url(url).with_context(|| {
            format!(
                "cannot open the store {}: check --store (or DESKSIDE_RELAY_STORE) and that the database server is up",
                redact_url(url)
            )
        })?,
        None => {
            let db = data_dir.join("relay.db");
            if !db.exists() {
                anyhow::bail!(
                    "{} does not exist: give the relay's data directory with --data-dir, or its shared store with --store",
                    db.display()
                );
            }
            Store::open(&db).with_context(|| format!("cannot open {}", db.display()))?
        }
    };
    let check = store.check_audit_chain()?;
    let mut report = Report {
        kind: "audit_verify",
        ok: check.broken.is_none(),
        rows: check.rows,
        head_id: check.head.as_ref().map(|h| h.id),
        broken_at: check.broken.as_ref().map(|b| b.id),
        anchors_matched: 0,
        anchor_mismatch_at: None,
        problem: check
            .broken
            .as_ref()
            .map(|b| format!("row {}: {}", b.id, b.problem)),
    };
    if let Some(path) = anchor_file {
        let heads = read_file(path)?;
        let key = AnchorKey::load(data_dir)?.map(|k| k.public_key());
        let anchors = check_against(&store, &heads, key.as_deref())?;
        report.anchors_matched = anchors.matched;
        if let Some((id, problem)) = anchors.mismatch {
            report.ok = false;
            report.anchor_mismatch_at = Some(id);
            let text = format!("anchor at row {id} ({}): {problem}", path.display());
            report.problem = Some(match report.problem.take() {
                Some(first) => format!("{first}; {text}"),
                None => text,
            });
        }
    }
    Ok(report)
}

impl Report {
    /// The report for people.
    pub fn text(&self) -> String {
        match (&self.problem, self.ok) {
            (Some(problem), _) => format!("The audit log does not verify: {problem}"),
            (None, _) => format!(
                "The audit log verifies: {} rows{}, {} signed anchor(s) matched.",
                self.rows,
                self.head_id
                    .map(|id| format!(" up to row {id}"))
                    .unwrap_or_default(),
                self.anchors_matched
            ),
        }
    }
}
