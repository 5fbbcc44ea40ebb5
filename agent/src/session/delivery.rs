//! When the agent service gives the session helper its next frame credit:
//! once the console has read a frame off the video stream (its
//! acknowledgement), not once the frame was written into the end-to-end
//! stream's send buffer. Pure (quinn-proto's shape): events come in through
//! `handle_*` with the time passed in, each returning how many credits to
//! give now; [`Delivery::poll_timeout`] says when to call back. No clock,
//! no I/O.
//!
//! Why: a QUIC stream's send buffer holds megabytes, so a write returns at
//! once even when the path carries 150 kbit/s. Crediting on the write let
//! the helper capture frame after frame into that buffer, and the console
//! saw pictures 20–30 s old. Crediting on the console's acknowledgement
//! bounds what is on its way to the helper's frame slots
//! ([`super::pace::FRAMES_IN_FLIGHT`]): nothing else waits unsent, and the
//! damage that piles up meanwhile goes into the one frame captured when a
//! slot frees (the tile encoder compares against the last frame it sent,
//! so that frame carries the union of the changes: newer content replaces
//! older, it never queues behind it).
//!
//! A console that does not acknowledge (older than this agent) never says
//! [`ConsoleToAgent::AcknowledgesFrames`](deskside_protocol::session::ConsoleToAgent::AcknowledgesFrames);
//! after [`ANNOUNCE_WAIT`] without it, frames are credited on the write as
//! before.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long the writer waits for the console to say it acknowledges frames
/// before it falls back to crediting on the write. The console says so as
/// soon as the control stream opens, a round trip after the agent's first
/// message: 3 s covers a 200 ms round trip behind a full 32 KB queue at
/// 150 kbit/s (1.7 s) with room to spare. If it comes later still, frames
/// are paced by acknowledgements from then on.
pub const ANNOUNCE_WAIT: Duration = Duration::from_secs(3);

/// Most frames remembered as unacknowledged. The helper sends one frame
/// per credit, so there are at most `FRAMES_IN_FLIGHT`; this only bounds
/// memory against a helper that does not wait.
const MAX_UNACKNOWLEDGED: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Not yet known whether the console acknowledges: hold credits until
    /// it says so, or until this instant.
    Waiting { until: Instant },
    /// The console acknowledges: credit on acknowledgement.
    Acknowledged,
    /// An older console: credit on the write.
    Written,
}

/// The frame-credit state of one session's video writer.
#[derive(Clone, Debug)]
pub struct Delivery {
    mode: Mode,
    /// Frames written and not acknowledged yet, oldest first.
    unacknowledged: VecDeque<u64>,
}

impl Delivery {
    /// A writer that starts at `now` (it gives the helper its first
    /// `FRAMES_IN_FLIGHT` credits itself).
    pub fn new(now: Instant) -> Self {
        Self {
            mode: Mode::Waiting {
                until: now + ANNOUNCE_WAIT,
            },
            unacknowledged: VecDeque::new(),
        }
    }

    /// Frame `seq` is written into the stream; returns the credits to give.
    pub fn handle_written(&mut self, seq: u64) -> u32 {
        if self.mode == Mode::Written {
            return 1;
        }
        self.unacknowledged.push_back(seq);
        if self.unacknowledged.len() > MAX_UNACKNOWLEDGED {
            self.unacknowledged.pop_front();
            return 1;
        }
        0
    }

    /// The console said it acknowledges frames.
    pub fn handle_announced(&mut self) {
        self.mode = Mode::Acknowledged;
    }

    /// The console has read every frame up to `seq`; returns the credits
    /// to give (one per frame newly acknowledged). An acknowledgement also
    /// says the console acknowledges.
    pub fn handle_received(&mut self, seq: u64) -> u32 {
        self.mode = Mode::Acknowledged;
        let mut credits = 0;
        while self.unacknowledged.front().is_some_and(|&s| s <= seq) {
            self.unacknowledged.pop_front();
            credits += 1;
        }
        credits
    }

    /// When to call [`Delivery::handle_timeout`], if at all.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.mode {
            Mode::Waiting { until } => Some(until),
            _ => None,
        }
    }

    /// The time is `now`; returns the credits to give (the frames held
    /// while waiting, once the console turns out not to acknowledge).
    pub fn handle_timeout(&mut self, now: Instant) -> u32 {
        match self.mode {
            Mode::Waiting { until } if now >= until => {
                self.mode = Mode::Written;
                let held = self.unacknowledged.len();
                self.unacknowledged.clear();
                u32::try_from(held).unwrap_or(u32::MAX)
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_acknowledging_console_credits_on_delivery_not_on_the_write() {
        let t0 = Instant::now();
        let mut d = Delivery::new(t0);
        d.handle_announced();
        assert_eq!(d.handle_written(0), 0, "written is not delivered");
        assert_eq!(d.handle_written(1), 0);
        assert_eq!(d.poll_timeout(), None, "no fallback once announced");
        assert_eq!(d.handle_timeout(t0 + ANNOUNCE_WAIT * 10), 0);
        assert_eq!(d.handle_received(0), 1);
        // Acknowledgements are cumulative: one for frame 3 covers 1 to 3.
        assert_eq!(d.handle_written(2), 0);
        assert_eq!(d.handle_written(3), 0);
        assert_eq!(d.handle_received(3), 3);
        // Repeated or stale acknowledgements give nothing.
        assert_eq!(d.handle_received(3), 0);
        assert_eq!(d.handle_received(1), 0);
    }

    #[test]
    fn frames_written_before_the_announcement_wait_for_their_acknowledgement() {
        let t0 = Instant::now();
        let mut d = Delivery::new(t0);
        assert_eq!(d.handle_written(0), 0);
        assert_eq!(d.handle_written(1), 0);
        assert_eq!(d.poll_timeout(), Some(t0 + ANNOUNCE_WAIT));
        assert_eq!(d.handle_timeout(t0 + ANNOUNCE_WAIT / 2), 0, "not yet");
        d.handle_announced();
        assert_eq!(d.handle_timeout(t0 + ANNOUNCE_WAIT), 0);
        assert_eq!(d.handle_received(1), 2);
    }

    #[test]
    fn a_console_that_never_acknowledges_gets_frames_credited_on_the_write() {
        let t0 = Instant::now();
        let mut d = Delivery::new(t0);
        assert_eq!(d.handle_written(0), 0);
        assert_eq!(d.handle_written(1), 0);
        // The held frames are released at once, then every write credits.
        assert_eq!(d.handle_timeout(t0 + ANNOUNCE_WAIT), 2);
        assert_eq!(d.poll_timeout(), None);
        assert_eq!(d.handle_written(2), 1);
        assert_eq!(d.handle_written(3), 1);
    }

    #[test]
    fn a_late_announcement_switches_to_acknowledgements_from_then_on() {
        let t0 = Instant::now();
        let mut d = Delivery::new(t0);
        assert_eq!(d.handle_timeout(t0 + ANNOUNCE_WAIT), 0);
        assert_eq!(d.handle_written(0), 1, "credited on the write");
        // An acknowledgement of a frame already credited gives nothing.
        assert_eq!(d.handle_received(0), 0);
        assert_eq!(d.handle_written(1), 0, "now paced by delivery");
        assert_eq!(d.handle_received(1), 1);
    }

    #[test]
    fn a_helper_that_does_not_wait_cannot_grow_the_memory() {
        let t0 = Instant::now();
        let mut d = Delivery::new(t0);
        d.handle_announced();
        let credits: u32 = (0..1000).map(|seq| d.handle_written(seq)).sum();
        assert_eq!(credits, 1000 - MAX_UNACKNOWLEDGED as u32);
        assert_eq!(d.handle_received(999), MAX_UNACKNOWLEDGED as u32);
    }
}
