//! The echo of agents' path probes: session packets with the reserved id
//! [`deskside_net::tunnel::PROBE_SESSION_ID`] on an agent's presence
//! connection go straight back to the same connection, unchanged, so the
//! agent's timeline measures round-trip loss and jitter to the relay (a few
//! probes per sample). The echo is no bigger than the probe, and each
//! connection gets at most [`ECHO_BURST`] at once and [`ECHO_PER_SECOND`]
//! sustained: beyond that probes are dropped (seen as loss by a
//! misbehaving agent only). Consoles' probes are not echoed.

use std::time::Instant;

/// Probes echoed back to back on one connection.
pub const ECHO_BURST: f64 = 50.0;
/// Probes echoed per second on one connection, sustained: an agent sends
/// 20 per sample, one sample a minute by default (the shortest policy
/// interval, one second, needs 20 a second). At most about 1.5 KB/s back.
pub const ECHO_PER_SECOND: f64 = 25.0;
/// Largest probe echoed (session id included); agents send 10 bytes.
pub const MAX_PROBE_LEN: usize = 64;

/// A token bucket: one per agent connection.
#[derive(Debug)]
pub struct EchoLimit {
    tokens: f64,
    at: Instant,
}

impl EchoLimit {
    /// A full bucket at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            tokens: ECHO_BURST,
            at: now,
        }
    }

    /// Whether one more probe may be echoed at `now` (and takes it).
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = self.at.max(now);
        self.tokens = (self.tokens + elapsed * ECHO_PER_SECOND).min(ECHO_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_is_capped_then_refills_at_the_sustained_rate() {
        let t0 = Instant::now();
        let mut limit = EchoLimit::new(t0);
        let first = (0..100).filter(|_| limit.allow(t0)).count();
        assert_eq!(first, ECHO_BURST as usize);
        // One second later: the sustained rate's worth, not a new burst.
        let t1 = t0 + Duration::from_secs(1);
        let more = (0..100).filter(|_| limit.allow(t1)).count();
        assert_eq!(more, ECHO_PER_SECOND as usize);
        // A sample's 20 probes every second are all echoed.
        for s in 2..20 {
            let t = t0 + Duration::from_secs(s);
            assert!((0..20).all(|_| limit.allow(t)), "second {s}");
        }
    }
}
