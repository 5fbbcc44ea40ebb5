//! Signed heads of the relay's audit chain (the audit anchor).
//!
//! The relay signs the newest audit row's id and hash with an Ed25519 key
//! that lives in its data directory, outside the database, and hands the
//! signed head to consoles (`deskside audit verify`) and to an anchor file.
//! A later chain that no longer has that hash at that id was rewritten, even
//! if every hash in it was recomputed. This module only defines the bytes
//! that are signed; signing and checking happen in the binaries (ring).

use serde::{Deserialize, Serialize};

/// Domain separation for the signed bytes.
const CONTEXT: &[u8] = b"deskside audit head v1\0";

/// A signed audit chain head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAuditHead {
    /// The newest row's id.
    pub id: i64,
    /// Its hash (32 bytes).
    pub hash: Vec<u8>,
    /// When the relay signed it, Unix seconds.
    pub signed_at: i64,
    /// The relay's anchor public key (Ed25519, 32 bytes).
    pub public_key: Vec<u8>,
    /// Ed25519 signature over [`SignedAuditHead::signed_bytes`].
    pub signature: Vec<u8>,
}

impl SignedAuditHead {
    /// The bytes the signature covers: a context string, then the id and
    /// time as 8-byte big-endian integers, then the hash's length (u64 big
    /// endian) and bytes.
    pub fn signed_bytes(id: i64, hash: &[u8], signed_at: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(CONTEXT.len() + 24 + hash.len());
        out.extend_from_slice(CONTEXT);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&signed_at.to_be_bytes());
        out.extend_from_slice(&(hash.len() as u64).to_be_bytes());
        out.extend_from_slice(hash);
        out
    }

    /// The bytes this head's signature must cover.
    pub fn message(&self) -> Vec<u8> {
        Self::signed_bytes(self.id, &self.hash, self.signed_at)
    }
}

/// Where the relay's chain check found the first break.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditBreak {
    /// The first row that does not verify.
    pub id: i64,
    /// What differs.
    pub problem: String,
}

/// Answer to `ConsoleRequest::VerifyAudit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditVerification {
    /// Rows the relay checked.
    pub rows: u64,
    /// The first break of the hash chain, if any.
    pub broken: Option<AuditBreak>,
    /// The current head, freshly signed (none when the log is empty or the
    /// relay has no anchor key).
    pub head: Option<SignedAuditHead>,
    /// The hash now stored at the row the console asked about (the id of
    /// the last signed head it kept); `None` if that row is gone.
    pub anchor_hash: Option<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_bytes_cover_every_field() {
        let base = SignedAuditHead::signed_bytes(7, &[1; 32], 100);
        assert_ne!(base, SignedAuditHead::signed_bytes(8, &[1; 32], 100));
        assert_ne!(base, SignedAuditHead::signed_bytes(7, &[2; 32], 100));
        assert_ne!(base, SignedAuditHead::signed_bytes(7, &[1; 32], 101));
        assert!(base.starts_with(CONTEXT));
    }
}
