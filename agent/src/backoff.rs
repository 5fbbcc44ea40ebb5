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

#[cfg(test)]
mod tests {
    use super::*;

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
