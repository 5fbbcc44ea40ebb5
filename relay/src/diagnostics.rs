//! Diagnostic snapshots received from agents: parsed, judged with the
//! organisation's thresholds, and stored with their verdict.

use deskside_diag::thresholds::Thresholds;
use deskside_diag::{verdict, Snapshot, FORMAT_VERSION};

/// Parses a snapshot and judges it. Returns the snapshot as stored text, the
/// verdict as JSON text and the primary segment's name.
pub fn judge(
    snapshot_json: &[u8],
    thresholds: &Thresholds,
) -> Result<(String, String, Option<String>), String> {
    let snapshot: Snapshot = serde_json::from_slice(snapshot_json).map_err(|e| e.to_string())?;
    if snapshot.format > FORMAT_VERSION {
        tracing::info!(
            format = snapshot.format,
            "snapshot from a newer agent; judging the fields this relay knows"
        );
    }
    let verdict = verdict::judge(&snapshot, thresholds);
    let verdict_json = serde_json::to_string(&verdict).map_err(|e| e.to_string())?;
    let primary = verdict
        .primary
        .and_then(|segment| serde_json::to_value(segment).ok())
        .and_then(|value| value.as_str().map(str::to_owned));
    // Store the agent's text as sent (it parsed, so it is valid JSON).
    let snapshot_text = String::from_utf8(snapshot_json.to_vec()).map_err(|e| e.to_string())?;
    Ok((snapshot_text, verdict_json, primary))
}
