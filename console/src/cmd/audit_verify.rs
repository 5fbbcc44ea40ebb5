//! `deskside audit verify`: asks the relay to check its audit hash chain and
//! to sign its head, and checks that the chain still extends the last
//! signed head this console kept.
//!
//! The kept head (`PROFILE.audit-head.json`, owner-only, next to the
//! profile) is the anchor: someone who rewrites an old audit row in the
//! relay's database and rehashes every row after it passes the relay's own
//! chain check, but the row this console saw signed no longer has the same
//! hash. The new head is kept only when everything verified, so a failed
//! check keeps failing until someone looks.

use std::path::{Path, PathBuf};

use deskside_protocol::audit::{AuditVerification, SignedAuditHead};
use deskside_protocol::console::{ConsoleRequest, ConsoleResponse};
use serde::{Deserialize, Serialize};

use super::{printed, unexpected, Context};
use crate::output::rfc3339;

/// The signed head kept between runs, hex-encoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptHead {
    /// Row id.
    pub id: i64,
    /// Its hash, hex.
    pub hash: String,
    /// When the relay signed it, Unix seconds.
    pub signed_at: i64,
    /// The relay's anchor key, hex.
    pub public_key: String,
    /// The signature, hex.
    pub signature: String,
}

impl KeptHead {
    fn new(head: &SignedAuditHead) -> Self {
        Self {
            id: head.id,
            hash: hex::encode(&head.hash),
            signed_at: head.signed_at,
            public_key: hex::encode(&head.public_key),
            signature: hex::encode(&head.signature),
        }
    }
}

/// Where the kept head of `profile` lives.
pub fn kept_head_path(profile: &Path) -> PathBuf {
    profile.with_extension("audit-head.json")
}

/// The JSON record printed.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct VerifyRecord {
    /// Always `"audit_verify"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Whether the chain verified and extends the kept head.
    pub ok: bool,
    /// Rows the relay checked.
    pub rows: u64,
    /// The newest row, as signed now.
    pub head_id: Option<i64>,
    /// The row of the head kept from an earlier run, if any.
    pub anchor_id: Option<i64>,
    /// The first row that breaks the chain, per the relay.
    pub broken_at: Option<i64>,
    /// What is wrong.
    pub problem: Option<String>,
}

fn signature_valid(head: &SignedAuditHead) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &head.public_key)
        .verify(&head.message(), &head.signature)
        .is_ok()
}

/// Judges the relay's answer against the kept head. Pure.
pub fn judge(kept: Option<&KeptHead>, answer: &AuditVerification) -> VerifyRecord {
    let mut problems = Vec::new();
    if let Some(head) = &answer.head {
        if !signature_valid(head) {
            problems.push(format!(
                "the relay's signature of its head (row {}) does not verify",
                head.id
            ));
        }
    }
    if let Some(kept) = kept {
        let when = rfc3339(kept.signed_at);
        match &answer.head {
            Some(head) if hex::encode(&head.public_key) != kept.public_key => problems.push(format!(
                "the relay signed with another audit anchor key than the one that signed row {} at {when}: its key was replaced (or this profile now points at another relay; then delete the kept head)",
                kept.id
            )),
            _ => {}
        }
        match &answer.anchor_hash {
            None => problems.push(format!(
                "row {} (the head signed at {when}) no longer exists: the newest rows were removed",
                kept.id
            )),
            Some(hash) if hex::encode(hash) != kept.hash => problems.push(format!(
                "the chain no longer extends the head signed at {when}: row {} now has hash {}… instead of {}…, so a row up to {} was changed and the chain rehashed",
                kept.id,
                hex::encode(hash).get(..16).unwrap_or_default(),
                kept.hash.get(..16).unwrap_or(&kept.hash),
                kept.id
            )),
            Some(_) => {}
        }
    }
    if let Some(broken) = &answer.broken {
        problems.push(format!("row {}: {}", broken.id, broken.problem));
    }
    VerifyRecord {
        kind: "audit_verify",
        ok: problems.is_empty(),
        rows: answer.rows,
        head_id: answer.head.as_ref().map(|h| h.id),
        anchor_id: kept.map(|k| k.id),
        broken_at: answer.broken.as_ref().map(|b| b.id),
        problem: (!problems.is_empty()).then(|| problems.join("; ")),
    }
}

/// Runs `deskside audit verify`.
pub async fn run(ctx: &mut Context<'_>) -> anyhow::Result<()> {
    let path = kept_head_path(&ctx.profile_path);
    let kept: Option<KeptHead> = match std::fs::read(&path) {
        Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "the kept audit head {} is damaged ({e}); it is the only proof of what the log looked like: inspect it, and delete it only if you accept losing that",
                path.display()
            )
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    };
    let request = ConsoleRequest::VerifyAudit {
        anchor_id: kept.as_ref().map(|k| k.id),
    };
    let answer = match super::request(ctx, request).await? {
        ConsoleResponse::AuditVerified(answer) => answer,
        other => return Err(unexpected(&other)),
    };
    let record = judge(kept.as_ref(), &answer);
    if record.ok {
        if let Some(head) = &answer.head {
            let text = serde_json::to_vec(&KeptHead::new(head))?;
            deskside_net::files::write_private(&path, &text)?;
        }
    }
    if ctx.out.is_json() {
        printed(ctx.out.json(&record))?;
    } else if record.ok {
        let extends = match &kept {
            Some(kept) => format!(
                "; it extends the head signed at {} (row {})",
                rfc3339(kept.signed_at),
                kept.id
            ),
            None => format!(
                "; first check from this console: kept the signed head in {}",
                path.display()
            ),
        };
        printed(ctx.out.text(&format!(
            "The audit log verifies: {} rows{}{extends}.",
            record.rows,
            record
                .head_id
                .map(|id| format!(" up to row {id}"))
                .unwrap_or_default()
        )))?;
    }
    match &record.problem {
        Some(problem) => Err(anyhow::anyhow!(
            "the audit log does not verify: {problem}; keep a copy of the relay's database and of {} for the investigation",
            path.display()
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use deskside_protocol::audit::AuditBreak;
    use ring::signature::{Ed25519KeyPair, KeyPair as _};

    fn signed(pair: &Ed25519KeyPair, id: i64, hash: [u8; 32], at: i64) -> SignedAuditHead {
        let message = SignedAuditHead::signed_bytes(id, &hash, at);
        SignedAuditHead {
            id,
            hash: hash.to_vec(),
            signed_at: at,
            public_key: pair.public_key().as_ref().to_vec(),
            signature: pair.sign(&message).as_ref().to_vec(),
        }
    }

    fn pair() -> Ed25519KeyPair {
        let rng = ring::rand::SystemRandom::new();
        Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap()
    }

    #[test]
    fn a_chain_that_extends_the_kept_head_verifies_and_a_rewritten_one_does_not() {
        let key = pair();
        let kept = KeptHead::new(&signed(&key, 3, [3; 32], 100));
        let answer = AuditVerification {
            rows: 5,
            broken: None,
            head: Some(signed(&key, 5, [5; 32], 200)),
            anchor_hash: Some(vec![3; 32]),
        };
        assert!(judge(Some(&kept), &answer).ok);
        assert!(judge(None, &answer).ok);

        let rewritten = AuditVerification {
            anchor_hash: Some(vec![9; 32]),
            ..answer.clone()
        };
        let record = judge(Some(&kept), &rewritten);
        assert!(!record.ok);
        assert!(record.problem.unwrap().contains("no longer extends"));

        let removed = AuditVerification {
            anchor_hash: None,
            ..answer.clone()
        };
        assert!(judge(Some(&kept), &removed)
            .problem
            .unwrap()
            .contains("no longer exists"));

        let other_key = AuditVerification {
            head: Some(signed(&pair(), 5, [5; 32], 200)),
            ..answer.clone()
        };
        assert!(judge(Some(&kept), &other_key)
            .problem
            .unwrap()
            .contains("another audit anchor key"));

        let mut forged = answer.clone();
        if let Some(head) = forged.head.as_mut() {
            head.hash = vec![6; 32];
        }
        assert!(judge(None, &forged)
            .problem
            .unwrap()
            .contains("does not verify"));

        let broken = AuditVerification {
            broken: Some(AuditBreak {
                id: 4,
                problem: "changed".into(),
            }),
            ..answer
        };
        let record = judge(None, &broken);
        assert_eq!(record.broken_at, Some(4));
        assert_eq!(record.problem.as_deref(), Some("row 4: changed"));
    }
}
