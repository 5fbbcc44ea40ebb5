//! Diagnostic snapshots received from agents: parsed, judged with the
//! organisation's thresholds, and stored with their verdict.

use deskside_diag::thresholds::Thresholds;
use deskside_diag::{verdict, Snapshot, FORMAT_VERSION};

/// What the relay stores next to a snapshot.
#[derive(Debug)]
pub struct Judged {
    /// The snapshot as the agent sent it (valid UTF-8 JSON).
    pub snapshot: String,
    /// The verdict, JSON.
    pub verdict: String,
    /// The primary segment's name, if any.
    pub primary: Option<String>,
    /// The verdict in one line: the primary finding's segment and title,
    /// or that nothing was found (help requests list it).
    pub line: String,
}

/// Parses a snapshot and judges it.
pub fn judge(snapshot_json: Vec<u8>, thresholds: &Thresholds) -> Result<Judged, String> {
    let snapshot: Snapshot = serde_json::from_slice(&snapshot_json).map_err(|e| e.to_string())?;
    if snapshot.format > FORMAT_VERSION {
        tracing::info!(
            format = snapshot.format,
            "snapshot from a newer agent; judging the fields this relay knows"
        );
    }
    let verdict = verdict::judge(&snapshot, thresholds);
    let primary = verdict
        .primary
        .and_then(|segment| serde_json::to_value(segment).ok())
        .and_then(|value| value.as_str().map(str::to_owned));
    Ok(Judged {
        // Stored as the agent sent it: it parsed, so it is valid JSON.
        snapshot: String::from_utf8(snapshot_json).map_err(|e| e.to_string())?,
        verdict: serde_json::to_string(&verdict).map_err(|e| e.to_string())?,
        primary,
        line: line_of(&verdict),
    })
}

/// A verdict in one line: the primary finding's segment and title, or that
/// nothing was found.
pub fn line_of(verdict: &verdict::Verdict) -> String {
    match verdict.primary_finding() {
        Some(finding) => format!("{}: {}", finding.segment.as_str(), finding.title.en),
        None => "no problem found".to_owned(),
    }
}
