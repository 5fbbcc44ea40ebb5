//! The relays a token, a login string or an attached agent is told about:
//! this relay first, then the others the shared directory says are up, each
//! with the certificate fingerprint it registered (clients pin it).
//!
//! With the embedded SQLite store the list is this relay alone, and the
//! tokens it issues are written exactly as before relay lists existed.

use deskside_protocol::token::RelayEndpoint;

use crate::shared::Shared;
use crate::store::RelayRecord;

/// The other live relays sharing this relay's directory (empty when the
/// store is not shared, or when the directory cannot be read: a token
/// naming only this relay still works).
pub async fn other_relays(shared: &Shared) -> Vec<RelayEndpoint> {
    if !shared.directory.is_shared() {
        return Vec::new();
    }
    let lease = shared.directory.lease_secs();
    let now = crate::clock::now_secs();
    let records = match shared
        .store(move |store| store.live_relays(now, lease))
        .await
    {
        Ok(Ok(records)) => records,
        Ok(Err(e)) => {
            tracing::warn!("cannot read the relay directory; naming this relay alone: {e}");
            return Vec::new();
        }
        Err(_) => return Vec::new(),
    };
    others_from_records(&shared.directory.relay_id, &shared.public_addr, &records)
}

/// Every live relay, this one first (what [`RelayToAgent::RelayList`]
/// carries).
///
/// [`RelayToAgent::RelayList`]: deskside_protocol::agent::RelayToAgent::RelayList
pub async fn all_relays(shared: &Shared) -> Vec<RelayEndpoint> {
    let mut all = vec![RelayEndpoint {
        addr: shared.public_addr.clone(),
        fingerprint: shared.fingerprint,
    }];
    all.extend(other_relays(shared).await);
    all
}

/// The directory's records other than this relay (by id and by address),
/// with a fingerprint that parses, at most
/// [`MAX_OTHER_RELAYS`](deskside_protocol::token::MAX_OTHER_RELAYS).
fn others_from_records(
    own_id: &str,
    own_addr: &str,
    records: &[RelayRecord],
) -> Vec<RelayEndpoint> {
    let mut others: Vec<RelayEndpoint> = Vec::new();
    for record in records {
        if record.id == own_id || record.public_addr == own_addr {
            continue;
        }
        let Ok(fingerprint) = record.fingerprint.parse() else {
            tracing::warn!(relay = %record.id, "the directory holds a relay with a bad fingerprint; leaving it out of tokens");
            continue;
        };
        if others.iter().any(|known| known.addr == record.public_addr) {
            continue;
        }
        others.push(RelayEndpoint {
            addr: record.public_addr.clone(),
            fingerprint,
        });
    }
    others.truncate(deskside_protocol::token::MAX_OTHER_RELAYS);
    others
}

#[cfg(test)]
mod tests {
    use super::*;
    use deskside_protocol::Fingerprint;

    fn record(id: &str, addr: &str, fingerprint: String) -> RelayRecord {
        RelayRecord {
            id: id.into(),
            public_addr: addr.into(),
            fingerprint,
            started_at: 0,
            heartbeat_at: 0,
            agents: 0,
            consoles: 0,
        }
    }

    #[test]
    fn others_leave_out_this_relay_and_bad_rows() {
        let good = Fingerprint([5; 32]);
        let records = [
            record("relay_a", "a:1", Fingerprint([1; 32]).to_string()),
            record("relay_b", "b:1", good.to_string()),
            record("relay_c", "c:1", "not a fingerprint".into()),
            record("relay_old", "a:1", good.to_string()),
            record("relay_b2", "b:1", good.to_string()),
        ];
        assert_eq!(
            others_from_records("relay_a", "a:1", &records),
            [RelayEndpoint {
                addr: "b:1".into(),
                fingerprint: good
            }]
        );
    }
}
