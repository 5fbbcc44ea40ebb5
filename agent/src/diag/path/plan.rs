//! The time budget of one path measurement: how long each phase may last so
//! that the whole measurement (connection, idle probes, both transfers, the
//! waits between and after them, the close) stays within [`BUDGET`] at any
//! rate, 1 Mbit/s included.
//!
//! Pure: no clock, no I/O. The driver (`path.rs`) passes in how long the
//! measurement has run and what it has measured so far, and is told how
//! long the next phase may last. This module must never read a clock.
//!
//! Where the time went before this plan existed, at 1 Mbit/s with a queue
//! of twice the bandwidth-delay product plus 64 KB (measured with
//! `deskside-bench-path`): each transfer left about half a second of data in
//! the link's queue, which the drain wait after the download and the wait
//! for the relay's answer after the upload each sat out, and the close
//! waited for the connection's draining period (up to 1 s). The plan stops
//! each transfer early by the queue's delay, so the link stays busy until
//! the counted window ends but has drained when it does, and bounds every
//! wait by what is left of the budget.

use std::time::Duration;

/// The whole path measurement with the throughput test, from the first
/// packet to the close (the target).
pub const BUDGET: Duration = Duration::from_secs(5);

/// Longest wait for the queues to drain between the download and the
/// upload when the budget allows it: a full 256 KB home-router queue at
/// 2 Mbit/s. After an early stop the queue is usually empty already.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(1);

/// What the plan keeps for the drain wait when it sizes the transfers: a
/// few round trips, which is what the wait takes after an early stop.
pub const SETTLE_RESERVE: Duration = Duration::from_millis(300);

/// Kept for the relay's report of an upload: its answer crosses the path
/// once the upload's reset has reached the relay.
pub const ANSWER_RESERVE: Duration = Duration::from_millis(500);

/// The relay's report of an upload is awaited at least this long, even
/// past the budget: without it the direction has no result at all.
pub const ANSWER_FLOOR: Duration = Duration::from_millis(500);

/// The close's wait, and what the plan keeps for it: enough for the close
/// to leave. Waiting for the connection to drain took three probe timeouts
/// of a loaded round trip (a whole second at 1 Mbit/s); the endpoint keeps
/// driving the draining connection in the background instead.
pub const CLOSE_RESERVE: Duration = Duration::from_millis(100);

/// Longest transfer per direction: its counted window (the last three
/// quarters) holds about 117 KB at 1 Mbit/s, a hundred packets, so one
/// packet more or less is a 1 % error.
pub const PREFERRED_TRANSFER: Duration = Duration::from_millis(1250);

/// Shortest transfer per direction, when the earlier phases were slow (a
/// loaded machine, a slow handshake): its window still holds about 70
/// packets at 1 Mbit/s.
pub const MIN_TRANSFER: Duration = Duration::from_millis(900);

/// How long each of the two transfers lasts, given the time the
/// measurement has run before the download starts: the preferred length
/// when the budget allows it, shorter (down to [`MIN_TRANSFER`]) when the
/// earlier phases were slow, so that transfers, drain wait, answer and
/// close still end within [`BUDGET`].
pub fn transfer_length(elapsed: Duration, preferred: Duration) -> Duration {
    let reserved = elapsed + SETTLE_RESERVE + ANSWER_RESERVE + CLOSE_RESERVE;
    let each = BUDGET.saturating_sub(reserved) / 2;
    each.min(preferred).max(MIN_TRANSFER.min(preferred))
}

/// How long before a transfer's deadline the sender stops: the path's
/// queue delay under load, read from the latest probe answered beside the
/// transfer (`loaded_rtts_ms`, in send order) against the idle round trip.
/// What the sender had already put into the queue keeps the link busy
/// until about the deadline, and the queue has drained when the window
/// ends instead of holding the next phase up for as long again.
///
/// The latest round trip, not the smallest of the recent ones: congestion
/// control swings a deep queue by half (at 1 Mbit/s behind a 70 KB queue,
/// 300 to 560 ms), and the smallest left half of it to drain after the
/// deadline. A stop that turns out early costs nothing in accuracy: a
/// download's window ends with its last arrival, an upload's when its reset
/// reaches the relay right behind its last data, so the window shortens but
/// never counts idle time. At most half the transfer, so the window stays
/// long.
pub fn stop_lead(idle_rtt_ms: f64, loaded_rtts_ms: &[f64], transfer: Duration) -> Duration {
    let Some(&latest) = loaded_rtts_ms.last() else {
        return Duration::ZERO;
    };
    if !latest.is_finite() || !idle_rtt_ms.is_finite() {
        return Duration::ZERO;
    }
    let queue_ms = (latest - idle_rtt_ms).max(0.0);
    Duration::from_secs_f64(queue_ms / 1000.0).min(transfer / 2)
}

/// How long the drain wait between the download and the upload may last,
/// given the time elapsed when the download ended and the upload's
/// length: [`SETTLE_LIMIT`] when the budget allows it, less otherwise (but
/// a few round trips at least).
pub fn settle_limit(elapsed: Duration, transfer: Duration) -> Duration {
    let after = elapsed + transfer + ANSWER_RESERVE + CLOSE_RESERVE;
    BUDGET
        .saturating_sub(after)
        .clamp(Duration::from_millis(100), SETTLE_LIMIT)
}

/// How long to wait for the relay's report of the upload, given the time
/// elapsed when the agent stopped sending.
pub fn answer_limit(elapsed: Duration) -> Duration {
    BUDGET
        .saturating_sub(elapsed + CLOSE_RESERVE)
        .max(ANSWER_FLOOR)
}

/// How long the close may wait for the connection to drain, given the time
/// elapsed: [`CLOSE_RESERVE`], or what is left of the budget if less. The
/// connection keeps draining in the background when this runs out.
pub fn close_limit(elapsed: Duration) -> Duration {
    BUDGET.saturating_sub(elapsed).min(CLOSE_RESERVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A shaped link like `deskside-bench-path`'s: `mbps` each way, 10 ms
    /// each way, a FIFO queue of twice the bandwidth-delay product plus
    /// 64 KB, and what a full queue delays.
    struct Link {
        mbps: f64,
        rtt: Duration,
    }

    impl Link {
        fn bench(mbps: f64) -> Self {
            Self { mbps, rtt: ms(20) }
        }

        /// Delay of a full queue (what congestion control fills).
        fn queue_delay(&self) -> Duration {
            let bdp = self.mbps * 1e6 / 8.0 * self.rtt.as_secs_f64();
            let queue = 2.0 * bdp + 64.0 * 1024.0;
            Duration::from_secs_f64(queue * 8.0 / (self.mbps * 1e6))
        }

        /// Probes during a transfer: the base round trip plus the queue.
        fn loaded_rtts(&self) -> Vec<f64> {
            let loaded = (self.rtt + self.queue_delay()).as_secs_f64() * 1000.0;
            vec![loaded; 50]
        }
    }

    /// Walks the driver's phases on `link`, with each phase taking what it
    /// takes on such a link (the waits are the leftover queue, which the
    /// early stop empties), and returns the measurement's total time.
    fn planned_total(link: &Link, before_download: Duration) -> Duration {
        let idle_ms = link.rtt.as_secs_f64() * 1000.0;
        let transfer = transfer_length(before_download, PREFERRED_TRANSFER);
        // Download: stopped early by the queue delay; what is left in the
        // queue at the deadline drains during the settle wait.
        let lead = stop_lead(idle_ms, &link.loaded_rtts(), transfer);
        let leftover = (link.queue_delay() + link.rtt).saturating_sub(lead);
        let mut elapsed = before_download + transfer;
        elapsed += leftover.min(settle_limit(elapsed, transfer)) + link.rtt;
        // Upload: the same, then the answer crosses the path.
        let lead = stop_lead(idle_ms, &link.loaded_rtts(), transfer);
        elapsed += transfer;
        let answer = link.queue_delay().saturating_sub(lead) + link.rtt;
        elapsed += answer.min(answer_limit(elapsed));
        elapsed + close_limit(elapsed).min(link.rtt * 3)
    }

    #[test]
    fn at_one_megabit_the_whole_measurement_fits_the_budget() {
        // Before the download: a 1 Mbit/s handshake (~150 ms), 40 probes
        // 20 ms apart and their last answer, the speed-test grant.
        let before = ms(150 + 800 + 30 + 30);
        let link = Link::bench(1.0);
        assert!(link.queue_delay() > ms(500), "{:?}", link.queue_delay());
        let total = planned_total(&link, before);
        assert!(total <= BUDGET, "{total:?}");
        // Today's fixed schedule on the same link: no early stop, so the
        // drain wait and the answer each sat out the full queue, and the
        // close waited out a second of draining.
        let old = before
            + PREFERRED_TRANSFER
            + link.queue_delay().min(SETTLE_LIMIT)
            + PREFERRED_TRANSFER
            + link.queue_delay()
            + link.rtt
            + Duration::from_secs(1);
        assert!(old > BUDGET, "{old:?}");
    }

    #[test]
    fn every_rate_fits_the_budget_and_keeps_the_preferred_transfer() {
        for mbps in [1.0, 2.0, 10.0, 50.0, 100.0, 200.0] {
            let link = Link::bench(mbps);
            let before = ms(1000);
            assert_eq!(
                transfer_length(before, PREFERRED_TRANSFER),
                PREFERRED_TRANSFER
            );
            let total = planned_total(&link, before);
            assert!(total <= BUDGET, "{mbps} Mbit/s: {total:?}");
        }
    }

    #[test]
    fn slow_earlier_phases_shorten_the_transfers_but_never_below_the_floor() {
        assert_eq!(transfer_length(ms(1000), PREFERRED_TRANSFER), ms(1250));
        // 5 s - 1.9 s - 0.9 s of reserves = 2.2 s: 1.1 s each.
        assert_eq!(transfer_length(ms(1900), PREFERRED_TRANSFER), ms(1100));
        assert_eq!(transfer_length(ms(4000), PREFERRED_TRANSFER), MIN_TRANSFER);
        // A caller asking for less gets what it asked for.
        assert_eq!(transfer_length(ms(0), ms(300)), ms(300));
        // The worst case of every wait, from a typical start, stays within
        // the budget: the waits are bounded by what is left of it.
        let before = ms(1100);
        let transfer = transfer_length(before, PREFERRED_TRANSFER);
        let mut elapsed = before + transfer;
        elapsed += settle_limit(elapsed, transfer);
        elapsed += transfer;
        elapsed += answer_limit(elapsed);
        elapsed += close_limit(elapsed);
        assert!(elapsed <= BUDGET, "{elapsed:?}");
    }

    #[test]
    fn the_stop_lead_is_the_latest_queue_delay_and_at_most_half() {
        let transfer = ms(1250);
        // Queue delay 510 ms now, after 300 ms earlier: the latest counts.
        let mut rtts = vec![320.0; 20];
        rtts.extend([560.0, 540.0, 520.0, 530.0]);
        assert_eq!(stop_lead(20.0, &rtts, transfer), ms(510));
        assert_eq!(stop_lead(20.0, &[1020.0], transfer), transfer / 2);
        let rtts = vec![120.0, 130.0, 110.0];
        assert_eq!(stop_lead(20.0, &rtts, transfer), ms(90));
        // No probe answered, or a clean path: stop at the deadline.
        assert_eq!(stop_lead(20.0, &[], transfer), Duration::ZERO);
        assert_eq!(stop_lead(20.0, &[21.0, 19.0], transfer), Duration::ZERO);
        assert_eq!(stop_lead(f64::NAN, &[100.0], transfer), Duration::ZERO);
    }

    #[test]
    fn the_waits_use_what_is_left_but_never_cut_the_answer_short() {
        assert_eq!(settle_limit(ms(2300), ms(1250)), ms(850));
        assert_eq!(settle_limit(ms(1000), ms(1250)), SETTLE_LIMIT);
        assert_eq!(settle_limit(ms(4000), ms(1250)), ms(100));
        assert_eq!(answer_limit(ms(3800)), ms(1100));
        assert_eq!(answer_limit(ms(4800)), ANSWER_FLOOR);
        assert_eq!(close_limit(ms(4950)), ms(50));
        assert_eq!(close_limit(ms(5200)), Duration::ZERO);
        assert_eq!(close_limit(ms(100)), CLOSE_RESERVE);
    }
}
