//! Reconnection delays: exponential backoff with jitter.
//!
//! Pure: the random source is passed in, so the schedule is tested exactly.
//! Jitter matters at scale: when a relay restarts, thousands of agents lose
//! their connection at the same instant; spreading their retries avoids a
//! thundering herd of TLS handshakes.

use std::time::Duration;

/// Exponential backoff between `initial` and `max`, each delay drawn
/// uniformly from its upper half ("equal jitter").
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// A schedule starting at `initial`, doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            current: initial,
        }
    }

    /// The next delay; `unit` is a random number in `[0, 1)`.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let ceiling = self.current;
        self.current = (self.current * 2).min(self.max);
        let unit = unit.clamp(0.0, 1.0);
        ceiling / 2 + ceiling.mul_f64(unit / 2.0)
    }

    /// Starts over after a successful connection.
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

/// When to try the relay again: after losing an attached connection, a
/// random delay within the window the relay advised (so a restarted
/// relay's fleet comes back spread over it, not in one burst); after a
/// failed attempt, the exponential [`Backoff`].
///
/// Pure like [`Backoff`]: the caller passes the random draws.
#[derive(Clone, Debug)]
pub struct Reconnect {
    backoff: Backoff,
    spread: Duration,
    honour_advice: bool,
}

impl Reconnect {
    /// A schedule with `backoff` between failed attempts and the default
    /// spread until a relay advises one. `honour_advice` false keeps the
    /// old behaviour (no spread: the backoff right after a loss), for
    /// comparisons in benchmarks.
    pub fn new(backoff: Backoff, honour_advice: bool) -> Self {
        Self {
            backoff,
            spread: deskside_protocol::reconnect::DEFAULT_SPREAD,
            honour_advice,
        }
    }

    /// The relay advised a window of `spread_ms` (bounded, see
    /// [`deskside_protocol::reconnect::advised_spread`]).
    pub fn handle_advice(&mut self, spread_ms: u32) {
        self.spread = deskside_protocol::reconnect::advised_spread(spread_ms);
    }

    /// The window in force.
    pub fn spread(&self) -> Duration {
        self.spread
    }

    /// An attempt succeeded: the next failure starts the backoff over.
    pub fn handle_attached(&mut self) {
        self.backoff.reset();
    }

    /// The delay after an attached connection was lost; `unit` in `[0, 1)`.
    /// With a session running (`in_session`) the backoff instead: the
    /// session's end-to-end connection must not time out meanwhile, and
    /// one agent more in a storm changes nothing.
    pub fn poll_after_loss(&mut self, unit: f64, in_session: bool) -> Duration {
        if self.honour_advice && !in_session {
            deskside_protocol::reconnect::first_delay(self.spread, unit)
        } else {
            self.backoff.next_delay(unit)
        }
    }

    /// The delay after a failed attempt; `unit` in `[0, 1)`.
    pub fn poll_after_failure(&mut self, unit: f64) -> Duration {
        self.backoff.next_delay(unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(honour_advice: bool) -> Reconnect {
        Reconnect::new(
            Backoff::new(Duration::from_millis(500), Duration::from_secs(10)),
            honour_advice,
        )
    }

    #[test]
    fn a_lost_connection_waits_within_the_advised_window() {
        let mut r = schedule(true);
        assert_eq!(r.spread(), deskside_protocol::reconnect::DEFAULT_SPREAD);
        r.handle_advice(60_000);
        assert_eq!(r.poll_after_loss(0.0, false), Duration::ZERO);
        assert_eq!(r.poll_after_loss(0.5, false), Duration::from_secs(30));
        assert_eq!(
            r.poll_after_loss(0.999, false),
            Duration::from_millis(59_940)
        );
        // Failed attempts then back off from the start, whatever the window.
        assert_eq!(r.poll_after_failure(1.0), Duration::from_millis(500));
        assert_eq!(r.poll_after_failure(1.0), Duration::from_secs(1));
        r.handle_attached();
        assert_eq!(r.poll_after_failure(1.0), Duration::from_millis(500));
        // Advice beyond the bounds is kept within them.
        r.handle_advice(u32::MAX);
        assert_eq!(
            r.poll_after_loss(1.0, false),
            deskside_protocol::reconnect::MAX_SPREAD
        );
        r.handle_advice(0);
        assert_eq!(
            r.poll_after_loss(1.0, false),
            deskside_protocol::reconnect::MIN_SPREAD
        );
    }

    #[test]
    fn an_agent_in_a_session_comes_back_at_once_whatever_the_window() {
        let mut r = schedule(true);
        r.handle_advice(60_000);
        assert_eq!(r.poll_after_loss(1.0, true), Duration::from_millis(500));
        assert_eq!(r.poll_after_loss(0.0, false), Duration::ZERO);
    }

    #[test]
    fn without_honouring_advice_a_loss_backs_off_as_before() {
        let mut r = schedule(false);
        r.handle_advice(60_000);
        assert_eq!(r.poll_after_loss(0.0, false), Duration::from_millis(250));
        assert_eq!(r.poll_after_loss(0.0, false), Duration::from_millis(500));
    }

    #[test]
    fn doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(4));
        let lows: Vec<_> = (0..6).map(|_| b.next_delay(0.0)).collect();
        let ms = |v: u64| Duration::from_millis(v);
        assert_eq!(
            lows,
            [ms(250), ms(500), ms(1000), ms(2000), ms(2000), ms(2000)]
        );
        b.reset();
        assert_eq!(b.next_delay(1.0), ms(500));
        assert_eq!(b.next_delay(0.5), ms(750));
    }
}
