//! Which relay to attach to, when an enrollment names several (relays that
//! share one directory): the order to try them in and how far apart to
//! start the attempts.
//!
//! Pure: round trips and losses are passed in, no sockets and no clock, so
//! the order is tested exactly. The rules:
//! - before any round trip is known (a fresh start), the first
//!   [`RACE_WIDTH`] relays are tried at once and the first QUIC handshake to
//!   complete wins: the nearest relay, measured by the handshake itself (no
//!   ping: unprivileged ICMP is off on most systems);
//! - afterwards the relay last attached to comes first, then the others by
//!   their measured round trip, then those never measured, in list order;
//!   each later attempt starts [`STAGGER`] after the one before (or at once
//!   when all earlier ones failed), so a live relay costs one handshake and
//!   a failover does not multiply a reconnect storm by the number of relays;
//! - a relay whose connection was just lost goes last: it is most likely
//!   dead, and its fleet spreads over the others instead of waiting on it.

use std::collections::HashMap;
use std::time::Duration;

use deskside_protocol::token::RelayEndpoint;

/// How many relays are tried at once when no round trip is known yet.
pub const RACE_WIDTH: usize = 3;
/// Delay between the starts of successive attempts once round trips are
/// known: longer than a handshake to a live relay, even a busy one, so only
/// a dead or drowning relay makes the agent knock at the next.
pub const STAGGER: Duration = Duration::from_secs(3);

/// The relays an agent may attach to and what it learnt about them.
#[derive(Clone, Debug)]
pub struct RelayChoice {
    relays: Vec<RelayEndpoint>,
    /// The relay attached to last (address).
    preferred: Option<String>,
    /// The relay whose connection was lost last (address).
    lost: Option<String>,
    /// Smoothed round trips measured on attached connections.
    rtt: HashMap<String, Duration>,
}

impl RelayChoice {
    /// A choice among `relays` (duplicates of an address dropped; the first
    /// is tried first until round trips are known).
    pub fn new(relays: Vec<RelayEndpoint>) -> Self {
        let mut choice = RelayChoice {
            relays: Vec::new(),
            preferred: None,
            lost: None,
            rtt: HashMap::new(),
        };
        choice.handle_list(relays);
        choice
    }

    /// The relays known.
    pub fn relays(&self) -> &[RelayEndpoint] {
        &self.relays
    }

    /// The relays in the order to try them, each with the delay after the
    /// start of the round at which its attempt starts (unless every earlier
    /// attempt already failed).
    pub fn poll_attempts(&self) -> Vec<(RelayEndpoint, Duration)> {
        let mut order: Vec<(usize, &RelayEndpoint)> = self.relays.iter().enumerate().collect();
        order.sort_by_key(|(index, relay)| {
            let lost = self.lost.as_deref() == Some(relay.addr.as_str());
            let preferred = self.preferred.as_deref() == Some(relay.addr.as_str());
            let rtt = self.rtt.get(&relay.addr).copied().unwrap_or(Duration::MAX);
            (lost, !preferred, rtt, *index)
        });
        let racing = self.rtt.is_empty() && self.preferred.is_none();
        let mut start = Duration::ZERO;
        order
            .into_iter()
            .enumerate()
            .map(|(position, (_, relay))| {
                if position > 0 && !(racing && position < RACE_WIDTH) {
                    start += STAGGER;
                }
                (relay.clone(), start)
            })
            .collect()
    }

    /// Attached to `addr`; `rtt` is the connection's smoothed round trip
    /// when it ended (or the handshake time).
    pub fn handle_attached(&mut self, addr: &str, rtt: Duration) {
        self.preferred = Some(addr.to_owned());
        self.rtt.insert(addr.to_owned(), rtt);
        if self.lost.as_deref() == Some(addr) {
            self.lost = None;
        }
    }

    /// The attached connection to `addr` was lost.
    pub fn handle_lost(&mut self, addr: &str) {
        self.lost = Some(addr.to_owned());
        if self.preferred.as_deref() == Some(addr) {
            self.preferred = None;
        }
    }

    /// A relay told the current list (its own entry first): the listed
    /// relays come first, in its order, then the ones known before that it
    /// did not list. A relay missing from one list is most likely
    /// restarting (a rolling upgrade); forgetting it would leave the agent
    /// without a way back when the relay it is on dies next.
    pub fn handle_list(&mut self, relays: Vec<RelayEndpoint>) {
        self.relays = merge_lists(relays, &self.relays);
    }
}

/// `listed` (duplicates of an address dropped, the first kept), then the
/// relays of `known` it does not name, at most
/// [`MAX_OTHER_RELAYS`](deskside_protocol::token::MAX_OTHER_RELAYS) + 1 in
/// all (the unlisted ones are dropped first).
pub fn merge_lists(listed: Vec<RelayEndpoint>, known: &[RelayEndpoint]) -> Vec<RelayEndpoint> {
    let mut merged: Vec<RelayEndpoint> = Vec::new();
    for relay in listed.into_iter().chain(known.iter().cloned()) {
        if !merged.iter().any(|seen| seen.addr == relay.addr) {
            merged.push(relay);
        }
    }
    merged.truncate(deskside_protocol::token::MAX_OTHER_RELAYS + 1);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use deskside_protocol::Fingerprint;

    fn relay(addr: &str, byte: u8) -> RelayEndpoint {
        RelayEndpoint {
            addr: addr.into(),
            fingerprint: Fingerprint([byte; 32]),
        }
    }

    fn addrs(choice: &RelayChoice) -> Vec<(String, u64)> {
        choice
            .poll_attempts()
            .into_iter()
            .map(|(relay, start)| (relay.addr, start.as_secs()))
            .collect()
    }

    fn owned(list: &[(&str, u64)]) -> Vec<(String, u64)> {
        list.iter().map(|(a, s)| (a.to_string(), *s)).collect()
    }

    #[test]
    fn a_fresh_start_races_the_first_relays_for_the_nearest() {
        let choice = RelayChoice::new(vec![
            relay("a:1", 1),
            relay("b:1", 2),
            relay("a:1", 9),
            relay("c:1", 3),
            relay("d:1", 4),
        ]);
        assert_eq!(
            addrs(&choice),
            owned(&[("a:1", 0), ("b:1", 0), ("c:1", 0), ("d:1", 3)])
        );
        // The duplicate address kept its first fingerprint.
        assert_eq!(choice.relays()[0].fingerprint, Fingerprint([1; 32]));
    }

    #[test]
    fn once_attached_the_relay_comes_first_and_the_others_wait_their_turn() {
        let mut choice = RelayChoice::new(vec![relay("a:1", 1), relay("b:1", 2), relay("c:1", 3)]);
        choice.handle_attached("c:1", Duration::from_millis(40));
        assert_eq!(addrs(&choice), owned(&[("c:1", 0), ("a:1", 3), ("b:1", 6)]));
        // Measured round trips order the others.
        choice.handle_attached("b:1", Duration::from_millis(5));
        choice.handle_attached("c:1", Duration::from_millis(40));
        assert_eq!(addrs(&choice), owned(&[("c:1", 0), ("b:1", 3), ("a:1", 6)]));
    }

    #[test]
    fn a_lost_relay_goes_last_so_the_agent_fails_over() {
        let mut choice = RelayChoice::new(vec![relay("a:1", 1), relay("b:1", 2), relay("c:1", 3)]);
        choice.handle_attached("a:1", Duration::from_millis(1));
        choice.handle_lost("a:1");
        assert_eq!(addrs(&choice), owned(&[("b:1", 0), ("c:1", 3), ("a:1", 6)]));
        // Back on a: it leads again.
        choice.handle_attached("a:1", Duration::from_millis(1));
        assert_eq!(addrs(&choice)[0], ("a:1".to_string(), 0));
        // Lost b after failing over to it: a is next (measured), not c.
        choice.handle_attached("b:1", Duration::from_millis(9));
        choice.handle_lost("b:1");
        assert_eq!(addrs(&choice), owned(&[("a:1", 0), ("c:1", 3), ("b:1", 6)]));
    }

    #[test]
    fn a_new_list_adds_relays_and_never_forgets_one() {
        let mut choice = RelayChoice::new(vec![relay("a:1", 1)]);
        choice.handle_attached("a:1", Duration::from_millis(2));
        choice.handle_list(vec![relay("a:1", 1), relay("b:1", 2)]);
        assert_eq!(addrs(&choice), owned(&[("a:1", 0), ("b:1", 3)]));
        choice.handle_list(Vec::new());
        assert_eq!(choice.relays().len(), 2);
        // b restarting is missing from a's list: still tried, after the
        // listed relays.
        choice.handle_list(vec![relay("a:1", 1), relay("c:1", 3)]);
        assert_eq!(addrs(&choice), owned(&[("a:1", 0), ("c:1", 3), ("b:1", 6)]));
        choice.handle_lost("a:1");
        assert_eq!(addrs(&choice), owned(&[("c:1", 0), ("b:1", 3), ("a:1", 6)]));
    }

    #[test]
    fn merged_lists_are_bounded_dropping_unlisted_relays_first() {
        let many: Vec<_> = (0..30u8).map(|i| relay(&format!("r{i}:1"), i)).collect();
        let merged = merge_lists(vec![relay("new:1", 99)], &many);
        assert_eq!(merged.len(), deskside_protocol::token::MAX_OTHER_RELAYS + 1);
        assert_eq!(merged[0].addr, "new:1");
        assert_eq!(merged[1].addr, "r0:1");
    }
}
