//! The audit anchor: the relay signs its audit chain's head with an Ed25519
//! key kept in the data directory, outside the database, so someone who can
//! only write the database cannot rewrite and rehash the chain unnoticed.
//!
//! Signed heads go to consoles (`deskside audit verify` keeps the last one it
//! saw and checks that later chains still extend it), to the relay's log,
//! and, with `--audit-anchor-file`, as one JSON line each to a file that
//! should live on another volume (append-only, owner-only). `deskside-relay
//! audit verify --anchor-file` checks the database against that file.
//!
//! What it cannot do: someone who holds the data directory's key *and* the
//! database can sign a rewritten head; the copies already outside (consoles,
//! the anchor file) still disagree with it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use deskside_net::files::{read_private, write_private};
use deskside_protocol::audit::SignedAuditHead;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

use crate::store::{ChainHead, Store};

/// File name of the anchor key (PKCS#8) in the data directory.
pub const ANCHOR_KEY_FILE: &str = "audit-anchor.key";

/// How often the relay signs its chain head when the head moved.
pub const DEFAULT_ANCHOR_INTERVAL: Duration = Duration::from_secs(60);

/// The relay's audit anchor key.
#[derive(Debug)]
pub struct AnchorKey {
    pair: Ed25519KeyPair,
}

impl AnchorKey {
    /// Loads the key from `data_dir`, creating it on first start.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<AnchorKey> {
        let path = data_dir.join(ANCHOR_KEY_FILE);
        let pkcs8 = if path.exists() {
            read_private(&path)?
        } else {
            let rng = ring::rand::SystemRandom::new();
            let fresh = Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| anyhow::anyhow!("the OS random generator failed"))?;
            write_private(&path, fresh.as_ref())?;
            tracing::info!(path = %path.display(), "created the audit anchor key");
            fresh.as_ref().to_vec()
        };
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| {
            anyhow::anyhow!(
                "{} is not an Ed25519 key; restore it from a backup (signed heads already given out were made with it)",
                path.display()
            )
        })?;
        Ok(AnchorKey { pair })
    }

    /// Loads the key without creating it (offline verification).
    pub fn load(data_dir: &Path) -> anyhow::Result<Option<AnchorKey>> {
        if !data_dir.join(ANCHOR_KEY_FILE).exists() {
            return Ok(None);
        }
        Self::load_or_create(data_dir).map(Some)
    }

    /// The public key (32 bytes).
    pub fn public_key(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// Signs `head` as of `now` (Unix seconds).
    pub fn sign(&self, head: &ChainHead, now: i64) -> SignedAuditHead {
        let message = SignedAuditHead::signed_bytes(head.id, &head.hash, now);
        SignedAuditHead {
            id: head.id,
            hash: head.hash.to_vec(),
            signed_at: now,
            public_key: self.public_key(),
            signature: self.pair.sign(&message).as_ref().to_vec(),
        }
    }
}

/// Whether `head`'s signature is valid for its own public key.
pub fn signature_valid(head: &SignedAuditHead) -> bool {
    UnparsedPublicKey::new(&ED25519, &head.public_key)
        .verify(&head.message(), &head.signature)
        .is_ok()
}

/// One line of the anchor file: a signed head in hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorLine {
    /// Row id.
    pub id: i64,
    /// Its hash, hex.
    pub hash: String,
    /// When signed, Unix seconds.
    pub signed_at: i64,
    /// The anchor public key, hex.
    pub public_key: String,
    /// The signature, hex.
    pub signature: String,
}

impl AnchorLine {
    /// The line of `head`.
    pub fn new(head: &SignedAuditHead) -> AnchorLine {
        AnchorLine {
            id: head.id,
            hash: hex::encode(&head.hash),
            signed_at: head.signed_at,
            public_key: hex::encode(&head.public_key),
            signature: hex::encode(&head.signature),
        }
    }

    /// The signed head, if the hex decodes.
    pub fn head(&self) -> Option<SignedAuditHead> {
        Some(SignedAuditHead {
            id: self.id,
            hash: hex::decode(&self.hash).ok()?,
            signed_at: self.signed_at,
            public_key: hex::decode(&self.public_key).ok()?,
            signature: hex::decode(&self.signature).ok()?,
        })
    }
}

/// Appends `head` to the anchor file (created 0600).
pub fn append_to_file(path: &Path, head: &SignedAuditHead) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot open the audit anchor file {}", path.display()))?;
    let line = serde_json::to_string(&AnchorLine::new(head))?;
    writeln!(file, "{line}")
        .and_then(|()| file.sync_data())
        .with_context(|| format!("cannot append to the audit anchor file {}", path.display()))
}

/// Signs the head if it moved since `last` and records it (log, file).
/// Returns the head signed, if any.
pub fn anchor_once(
    store: &Store,
    key: &AnchorKey,
    file: Option<&PathBuf>,
    last: Option<&ChainHead>,
    now: i64,
) -> anyhow::Result<Option<ChainHead>> {
    let Some(head) = store.audit_head()? else {
        return Ok(None);
    };
    if last == Some(&head) {
        return Ok(None);
    }
    let signed = key.sign(&head, now);
    tracing::info!(
        audit_head = head.id,
        hash = %hex::encode(head.hash),
        signature = %hex::encode(&signed.signature),
        "signed the audit chain head"
    );
    if let Some(path) = file {
        append_to_file(path, &signed)?;
    }
    Ok(Some(head))
}

/// What checking the database against anchors found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AnchorCheck {
    /// Anchors that matched the database.
    pub matched: usize,
    /// The first anchor that did not, and why.
    pub mismatch: Option<(i64, String)>,
}

/// Checks every signed head against the hash the database now holds at its
/// row. `expected_key`, when known, must have signed them all.
pub fn check_against(
    store: &Store,
    heads: &[SignedAuditHead],
    expected_key: Option<&[u8]>,
) -> anyhow::Result<AnchorCheck> {
    let mut check = AnchorCheck::default();
    let mut previous: Option<i64> = None;
    for head in heads {
        let problem = if !signature_valid(head) {
            Some("its signature is not valid: the anchor was altered".to_owned())
        } else if expected_key.is_some_and(|key| key != head.public_key.as_slice()) {
            Some("it was signed by another key than this relay's audit anchor key".to_owned())
        } else {
            match store.audit_hash_at(head.id)? {
                None => Some(format!(
                    "row {} no longer exists: the newest rows were removed",
                    head.id
                )),
                Some(hash) if hash.as_slice() != head.hash.as_slice() => Some(format!(
                    "row {} now has hash {}… but the head signed at {} had {}…: a row {} was changed and the chain rehashed",
                    head.id,
                    hex::encode(&hash[..8]),
                    head.signed_at,
                    hex::encode(&head.hash[..head.hash.len().min(8)]),
                    match previous {
                        Some(before) => format!("after row {before} and up to row {}", head.id),
                        None => format!("up to row {}", head.id),
                    }
                )),
                Some(_) => None,
            }
        };
        match problem {
            Some(problem) => {
                check.mismatch = Some((head.id, problem));
                return Ok(check);
            }
            None => {
                check.matched += 1;
                previous = Some(head.id);
            }
        }
    }
    Ok(check)
}

/// Reads the anchor file's signed heads, oldest first.
pub fn read_file(path: &Path) -> anyhow::Result<Vec<SignedAuditHead>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the audit anchor file {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            serde_json::from_str::<AnchorLine>(line)
                .ok()
                .and_then(|line| line.head())
                .with_context(|| {
                    format!(
                        "line {} of {} is not a signed audit head",
                        number + 1,
                        path.display()
                    )
                })
        })
        .collect()
}

/// The relay's anchoring task: signs the head at start, every `interval`
/// when it moved, and at shutdown. Owned by `Relay` (joined on shutdown).
pub async fn run(
    shared: std::sync::Arc<crate::shared::Shared>,
    file: Option<PathBuf>,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut last: Option<ChainHead> = None;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = shutdown.changed() => true,
            _ = ticks.tick() => false,
        };
        let shared_now = std::sync::Arc::clone(&shared);
        let file_now = file.clone();
        let previous = last.clone();
        let now = crate::clock::now_secs();
        let outcome = tokio::task::spawn_blocking(move || {
            anchor_once(
                &shared_now.store,
                &shared_now.audit_anchor,
                file_now.as_ref(),
                previous.as_ref(),
                now,
            )
        })
        .await;
        match outcome {
            Ok(Ok(Some(head))) => last = Some(head),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!("cannot anchor the audit chain: {e:#}"),
            Err(e) => tracing::warn!("the audit anchor task failed: {e}"),
        }
        if stopping {
            break;
        }
    }
}

/// Answers `VerifyAudit`: checks the whole chain (every organisation's rows:
/// they share one chain; only ids and hashes are shown), signs the current
/// head and reports the hash now stored at `anchor_id`.
pub async fn verify_for_console(
    shared: &crate::shared::Shared,
    anchor_id: Option<i64>,
) -> Result<deskside_protocol::console::ConsoleResponse, deskside_protocol::Refusal> {
    use deskside_protocol::audit::{AuditBreak, AuditVerification};
    let now = crate::clock::now_secs();
    let (check, anchor_hash) = shared
        .store(move |store| -> Result<_, crate::store::StoreError> {
            let check = store.check_audit_chain()?;
            let anchor_hash = match anchor_id {
                Some(id) => store.audit_hash_at(id)?,
                None => None,
            };
            Ok((check, anchor_hash))
        })
        .await?
        .map_err(|e| crate::conn::internal_error(&e))?;
    // Sign the newest row as stored, even past a break: the console compares
    // it with what it kept.
    let head = shared
        .store(|s| s.audit_head())
        .await?
        .map_err(|e| crate::conn::internal_error(&e))?;
    Ok(deskside_protocol::console::ConsoleResponse::AuditVerified(
        AuditVerification {
            rows: check.rows,
            broken: check.broken.map(|b| AuditBreak {
                id: b.id,
                problem: b.problem,
            }),
            head: head.map(|head| shared.audit_anchor.sign(&head, now)),
            anchor_hash: anchor_hash.map(|h| h.to_vec()),
        },
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A test should panic on an unexpected error.
mod tests {
    use super::*;

    #[test]
    fn a_rehashed_chain_is_caught_by_its_anchor() {
        let dir = tempfile::tempdir().unwrap();
        let key = AnchorKey::load_or_create(dir.path()).unwrap();
        let store = Store::open_in_memory().unwrap();
        for n in 0..3 {
            store
                .append_audit(None, "system", "t", "x", &serde_json::json!({ "n": n }), 1)
                .unwrap();
        }
        let file = dir.path().join("anchor.jsonl");
        let head = anchor_once(&store, &key, Some(&file), None, 10)
            .unwrap()
            .unwrap();
        assert_eq!(head.id, 3);
        assert_eq!(
            anchor_once(&store, &key, Some(&file), Some(&head), 11).unwrap(),
            None
        );
        let heads = read_file(&file).unwrap();
        assert_eq!(heads.len(), 1);
        let ok = check_against(&store, &heads, Some(&key.public_key())).unwrap();
        assert_eq!(
            ok,
            AnchorCheck {
                matched: 1,
                mismatch: None
            }
        );

        // Another store with different rows: the anchor disagrees.
        let other = Store::open_in_memory().unwrap();
        for n in 0..3 {
            other
                .append_audit(
                    None,
                    "system",
                    "t",
                    "x",
                    &serde_json::json!({ "n": n + 1 }),
                    1,
                )
                .unwrap();
        }
        let caught = check_against(&other, &heads, Some(&key.public_key())).unwrap();
        assert_eq!(caught.mismatch.as_ref().map(|m| m.0), Some(3), "{caught:?}");

        let mut forged = heads[0].clone();
        forged.signed_at += 1;
        let bad = check_against(&store, &[forged], None).unwrap();
        assert!(bad.mismatch.unwrap().1.contains("signature is not valid"));
        // The key survives a restart.
        let again = AnchorKey::load(dir.path()).unwrap().unwrap();
        assert_eq!(again.public_key(), key.public_key());
    }
}
