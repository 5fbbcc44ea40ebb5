//! Requests that need a device's live agent connection, when another relay
//! holds it: the answer names that relay, and the console asks it.
//!
//! Relays sharing one PostgreSQL directory never talk to each other. A
//! console on relay A that asks for a fresh diagnosis or a session with a
//! device attached to relay B is told, with
//! [`Refusal::HeldElsewhere`], where B is and which certificate it
//! presents; the console connects there and asks again (see
//! `ARCHITECTURE.md`, "Sessions across relays"). Nothing is written on A
//! for such a request: B audits what it does.
//!
//! With the embedded SQLite store there is no other relay, and this never
//! reads the store.

use deskside_protocol::{DeviceId, Fingerprint, Refusal};

use super::run;
use crate::shared::Shared;
use crate::store::RelayRecord;

/// The refusal that sends the console to the relay holding `device`, when
/// the store is shared, this relay does not hold it and a live one does.
/// `named` is the device as the console named it (echoed in the text).
/// `Ok(None)` means no other relay holds it: it is offline.
pub async fn refusal(
    shared: &Shared,
    device: DeviceId,
    named: &str,
) -> Result<Option<Refusal>, Refusal> {
    if !shared.directory.is_shared() || shared.presence.is_online(device) {
        return Ok(None);
    }
    let lease = shared.directory.lease_secs();
    let now = crate::clock::now_secs();
    let holder = run(shared, move |s| s.device_holder(device, now, lease)).await?;
    Ok(redirect_to(holder, &shared.directory.relay_id, named))
}

/// The refusal naming `holder`, unless it is this relay (`this_relay`:
/// the directory is a lease behind what this relay knows, so its own row
/// for a device it no longer holds means "offline") or its row is damaged.
fn redirect_to(holder: Option<RelayRecord>, this_relay: &str, named: &str) -> Option<Refusal> {
    let holder = holder.filter(|relay| relay.id != this_relay)?;
    match holder.fingerprint.parse::<Fingerprint>() {
        Ok(fingerprint) => {
            tracing::info!(
                device = named,
                relay = %holder.id,
                addr = %holder.public_addr,
                "the device is held by another relay: sending the console there"
            );
            Some(Refusal::HeldElsewhere {
                device: named.to_owned(),
                relay_addr: holder.public_addr,
                fingerprint,
            })
        }
        Err(e) => {
            tracing::warn!(
                relay = %holder.id,
                "the directory row of the relay holding {named} has a bad fingerprint ({e}); the device counts as offline"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(id: &str, fingerprint: &str) -> RelayRecord {
        RelayRecord {
            id: id.to_owned(),
            public_addr: "10.0.0.2:4433".to_owned(),
            fingerprint: fingerprint.to_owned(),
            started_at: 1,
            heartbeat_at: 2,
            agents: 1,
            consoles: 0,
        }
    }

    #[test]
    fn another_relay_holding_the_device_is_named_with_its_pinned_certificate() {
        let fingerprint = Fingerprint([0xab; 32]);
        let refusal = redirect_to(
            Some(relay("relay_b", &fingerprint.to_string())),
            "relay_a",
            "laptop",
        );
        assert_eq!(
            refusal,
            Some(Refusal::HeldElsewhere {
                device: "laptop".to_owned(),
                relay_addr: "10.0.0.2:4433".to_owned(),
                fingerprint,
            })
        );
    }

    #[test]
    fn no_holder_this_relay_or_a_damaged_row_mean_offline() {
        let fingerprint = Fingerprint([1; 32]).to_string();
        assert_eq!(redirect_to(None, "relay_a", "laptop"), None);
        assert_eq!(
            redirect_to(Some(relay("relay_a", &fingerprint)), "relay_a", "laptop"),
            None
        );
        assert_eq!(
            redirect_to(Some(relay("relay_b", "sha256:zz")), "relay_a", "laptop"),
            None
        );
    }
}
