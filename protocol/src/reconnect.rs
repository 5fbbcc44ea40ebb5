//! Reconnect storms: how wide a window a relay asks its agents to spread
//! their reconnections over, and how an agent reads that advice.
//!
//! When a relay restarts, every agent learns of it within one keep-alive
//! and, left alone, reconnects at once: tens of thousands of TLS
//! handshakes in the same second, most of them lost. So the relay tells
//! each agent, right after `Attached`, a window
//! ([`RelayToAgent::ReconnectAdvice`](crate::agent::RelayToAgent::ReconnectAdvice))
//! sized to its fleet and to the rate at which it completes attachments;
//! an agent that loses the relay waits a uniformly random delay within the
//! window before its first attempt. Pure: no clock, no randomness (the
//! caller passes a uniform number in `[0, 1)`).

use std::time::Duration;

/// The narrowest window a relay advises: a handful of agents come back
/// within it at once, which any relay takes.
pub const MIN_SPREAD: Duration = Duration::from_millis(500);
/// The widest window an agent honours, whatever the relay says (a relay
/// that advised more, by mistake or malice, would keep devices offline).
pub const MAX_SPREAD: Duration = Duration::from_secs(180);
/// The window an agent uses until a relay advised one (an older relay).
pub const DEFAULT_SPREAD: Duration = Duration::from_secs(5);

/// The window a relay with `fleet` agents, attaching at most
/// `attach_rate` of them a second, advises: long enough that the fleet's
/// reconnections arrive no faster than that rate, within
/// [`MIN_SPREAD`]..=[`MAX_SPREAD`]. A rate of 0 is taken as 1.
pub fn spread_for_fleet(fleet: usize, attach_rate: u32) -> Duration {
    let rate = u64::from(attach_rate.max(1));
    let millis = (fleet as u64).saturating_mul(1000) / rate;
    Duration::from_millis(millis).clamp(MIN_SPREAD, MAX_SPREAD)
}

/// The window an agent uses after a relay advised `spread_ms`: the advice,
/// kept within [`MIN_SPREAD`]..=[`MAX_SPREAD`].
pub fn advised_spread(spread_ms: u32) -> Duration {
    Duration::from_millis(u64::from(spread_ms)).clamp(MIN_SPREAD, MAX_SPREAD)
}

/// The advice as it travels: the window in ms (saturating).
pub fn spread_ms(spread: Duration) -> u32 {
    u32::try_from(spread.as_millis()).unwrap_or(u32::MAX)
}

/// The delay before the first reconnection after losing the relay, for a
/// uniform `unit` in `[0, 1)`: anywhere in the window, so that a fleet's
/// arrivals are spread evenly over it.
pub fn first_delay(spread: Duration, unit: f64) -> Duration {
    spread.mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_grows_with_the_fleet_at_the_attach_rate() {
        let s = Duration::from_secs;
        assert_eq!(spread_for_fleet(50_000, 500), s(100));
        assert_eq!(spread_for_fleet(30_000, 500), s(60));
        assert_eq!(spread_for_fleet(10_000, 1000), s(10));
        // A small fleet still spreads over the minimum; a huge one is
        // capped so no device waits minutes.
        assert_eq!(spread_for_fleet(3, 500), MIN_SPREAD);
        assert_eq!(spread_for_fleet(0, 500), MIN_SPREAD);
        assert_eq!(spread_for_fleet(10_000_000, 500), MAX_SPREAD);
        assert_eq!(spread_for_fleet(usize::MAX, 1), MAX_SPREAD);
        // A rate of 0 (a bad configuration) does not divide by zero.
        assert_eq!(spread_for_fleet(100, 0), s(100));
    }

    #[test]
    fn an_agent_keeps_the_advice_within_bounds() {
        assert_eq!(advised_spread(20_000), Duration::from_secs(20));
        assert_eq!(advised_spread(0), MIN_SPREAD);
        assert_eq!(advised_spread(u32::MAX), MAX_SPREAD);
        assert_eq!(spread_ms(Duration::from_secs(20)), 20_000);
        assert_eq!(spread_ms(Duration::MAX), u32::MAX);
        assert_eq!(
            advised_spread(spread_ms(spread_for_fleet(30_000, 500))),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn first_delays_cover_the_whole_window_evenly() {
        let spread = Duration::from_secs(60);
        assert_eq!(first_delay(spread, 0.0), Duration::ZERO);
        assert_eq!(first_delay(spread, 0.5), Duration::from_secs(30));
        assert_eq!(first_delay(spread, 0.25), Duration::from_secs(15));
        // Out-of-range draws stay inside the window.
        assert_eq!(first_delay(spread, 7.0), spread);
        assert_eq!(first_delay(spread, -1.0), Duration::ZERO);
        // 10 equal steps of the unit land in 10 equal slices of the window.
        let slices: Vec<u64> = (0..10)
            .map(|i| first_delay(spread, (i as f64 + 0.5) / 10.0).as_secs() / 6)
            .collect();
        assert_eq!(slices, (0..10).collect::<Vec<u64>>());
    }
}
