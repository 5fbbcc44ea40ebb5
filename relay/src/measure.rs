//! The relay as measurement server for its agents' path diagnostics.
//!
//! An agent opens a separate connection and sends `Measure`; the relay then
//! echoes round-trip probes (QUIC datagrams) and serves timed transfers on
//! streams. Limits keep this from becoming a free bandwidth service: one
//! measurement connection per device at a time, transfers of at most
//! [`MAX_TRANSFER_MS`], and per device and hour a number of speed tests and
//! a byte budget. Refusals name the reason (another measurement running,
//! allowance spent and when it renews) so the agent can say so plainly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deskside_net::{FramedRecv, FramedSend, NetError};
use deskside_protocol::agent::{AgentToRelay, RelayToAgent};
use deskside_protocol::measure::{EchoRequest, MeasureReply, MeasureRequest, MAX_TRANSFER_MS};
use deskside_protocol::message::Nested;
use deskside_protocol::{DeviceId, Refusal, MAX_CLIENT_FRAME_LEN, MAX_RELAY_FRAME_LEN};

use crate::clock::now_millis;
use crate::conn::End;

// Several full checks per support call, by a technician and the employee.
const _: () = assert!(HOURLY_SPEED_TESTS >= 10);

/// Speed tests (a download and an upload each) one device may start per
/// hour: a technician can run several full checks during a support call,
/// and the employee a few more, without the relay becoming a free
/// bandwidth service.
pub const HOURLY_SPEED_TESTS: u32 = 20;
/// Bytes one device may move through throughput tests per hour: a safety
/// net behind [`HOURLY_SPEED_TESTS`], enough for 20 full tests of
/// 2 × 1.25 s at 10 Gbit/s (a fast LAN or loopback).
pub const HOURLY_BYTE_BUDGET: u64 = 64 << 30;
/// Below this, a new speed test is refused rather than cut short (a test
/// that runs out of bytes halfway would report a false low speed): one full
/// test at 10 Gbit/s.
const SPEED_TEST_MIN_BYTES: u64 = 4 << 30;
/// The accounting window.
const BUDGET_WINDOW: Duration = Duration::from_secs(3600);
/// Transfers running at once on one measurement connection.
const MAX_PARALLEL_TRANSFERS: usize = 2;
/// How long a new measurement waits for the device's previous one to end:
/// longer than [`QUIET_LIMIT`], so the slot of an agent that vanished
/// mid-measurement is free by then.
const SLOT_WAIT: Duration = Duration::from_secs(6);
/// A measurement connection with no probe, stream or running transfer for
/// this long is over (the agent died or lost its path): its slot is freed
/// without waiting for the QUIC idle timeout. Agents probe every few ms.
const QUIET_LIMIT: Duration = Duration::from_secs(4);
/// What a refused busy measurement is told to wait.
const BUSY_RETRY: Duration = Duration::from_secs(15);
/// Size of each write of filler.
const FILLER_CHUNK: usize = 64 * 1024;
/// Stream reset / stop code: the hourly byte allowance ran out mid-transfer.
pub const RESET_BUDGET_SPENT: u32 = 1;

/// Per-device measurement accounting.
#[derive(Debug, Default)]
pub struct MeasureLimits {
    devices: Mutex<HashMap<DeviceId, Budget>>,
    stats: MeasureStats,
}

/// Counters of the measurement server, for metrics.
#[derive(Debug, Default)]
pub struct MeasureStats {
    started: AtomicU64,
    busy: AtomicU64,
    granted: AtomicU64,
    budget_spent: AtomicU64,
    bytes: AtomicU64,
}

impl MeasureStats {
    /// Measurements that got their device's slot.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }
    /// Measurements refused because the device's slot was taken.
    pub fn busy(&self) -> u64 {
        self.busy.load(Ordering::Relaxed)
    }
    /// Speed tests granted.
    pub fn granted(&self) -> u64 {
        self.granted.load(Ordering::Relaxed)
    }
    /// Speed tests refused: the hourly allowance was spent.
    pub fn budget_spent(&self) -> u64 {
        self.budget_spent.load(Ordering::Relaxed)
    }
    /// Bytes reserved from hourly byte budgets.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct Budget {
    /// The connection holding the device's measurement slot.
    holder: Option<quinn::Connection>,
    window_start: Instant,
    bytes: u64,
    speed_tests: u32,
}

impl Budget {
    fn renew_if_due(&mut self) {
        if self.window_start.elapsed() > BUDGET_WINDOW {
            self.window_start = Instant::now();
            self.bytes = 0;
            self.speed_tests = 0;
        }
    }

    fn renewed_in(&self) -> u64 {
        BUDGET_WINDOW
            .saturating_sub(self.window_start.elapsed())
            .as_secs()
            .max(1)
    }
}

/// Releases a device's measurement slot when dropped.
#[derive(Debug)]
pub struct Slot {
    limits: Arc<MeasureLimits>,
    device: DeviceId,
    connection_id: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(budget) = self.limits.lock().get_mut(&self.device) {
            if budget.holder.as_ref().map(quinn::Connection::stable_id) == Some(self.connection_id)
            {
                budget.holder = None;
            }
        }
    }
}

impl MeasureLimits {
    /// The counters.
    pub fn stats(&self) -> &MeasureStats {
        &self.stats
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, Budget>> {
        self.devices.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the device's measurement slot for `connection`, or says why
    /// not. A slot held by a connection that is already closed is free.
    pub fn begin(
        self: &Arc<Self>,
        device: DeviceId,
        connection: &quinn::Connection,
    ) -> Result<Slot, Refusal> {
        let mut devices = self.lock();
        let budget = devices.entry(device).or_insert_with(|| Budget {
            holder: None,
            window_start: Instant::now(),
            bytes: 0,
            speed_tests: 0,
        });
        if let Some(holder) = &budget.holder {
            if holder.close_reason().is_none() {
                self.stats.busy.fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::MeasurementBusy {
                    retry_after_s: BUSY_RETRY.as_secs(),
                });
            }
        }
        budget.holder = Some(connection.clone());
        self.stats.started.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            limits: Arc::clone(self),
            device,
            connection_id: connection.stable_id(),
        })
    }

    /// Grants one speed test, or refuses it when the hour's allowance (in
    /// tests or bytes) is spent. Returns the tests left, this one included.
    pub fn grant_speed_test(&self, device: DeviceId) -> Result<u32, Refusal> {
        let mut devices = self.lock();
        let Some(budget) = devices.get_mut(&device) else {
            return Err(Refusal::Invalid(
                "no measurement is running for this device".to_owned(),
            ));
        };
        budget.renew_if_due();
        if budget.speed_tests >= HOURLY_SPEED_TESTS
            || HOURLY_BYTE_BUDGET.saturating_sub(budget.bytes) < SPEED_TEST_MIN_BYTES
        {
            self.stats.budget_spent.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::MeasurementBudgetSpent {
                retry_after_s: budget.renewed_in(),
            });
        }
        let remaining = HOURLY_SPEED_TESTS - budget.speed_tests;
        budget.speed_tests += 1;
        self.stats.granted.fetch_add(1, Ordering::Relaxed);
        Ok(remaining)
    }

    /// Seconds until the device's allowance is renewed.
    fn renewed_in(&self, device: DeviceId) -> u64 {
        self.lock()
            .get(&device)
            .map(Budget::renewed_in)
            .unwrap_or(1)
    }

    /// Reserves up to `wanted` bytes of the device's hourly budget and
    /// returns how many were granted.
    fn reserve(&self, device: DeviceId, wanted: u64) -> u64 {
        let mut devices = self.lock();
        let Some(budget) = devices.get_mut(&device) else {
            return 0;
        };
        budget.renew_if_due();
        let granted = wanted.min(HOURLY_BYTE_BUDGET.saturating_sub(budget.bytes));
        budget.bytes += granted;
        self.stats.bytes.fetch_add(granted, Ordering::Relaxed);
        granted
    }
}

/// Serves a measurement connection until the agent closes it.
pub async fn serve(
    limits: &Arc<MeasureLimits>,
    connection: &quinn::Connection,
    device: DeviceId,
    mut send: FramedSend,
    mut recv: FramedRecv,
) -> End {
    // The device's previous measurement may still be closing (its close
    // travels the same, possibly slow, path): wait a little for its slot.
    let mut attempt = limits.begin(device, connection);
    let deadline = Instant::now() + SLOT_WAIT;
    while attempt.is_err() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        attempt = limits.begin(device, connection);
    }
    let _slot = match attempt {
        Ok(slot) => slot,
        Err(refusal) => {
            let _ = send
                .send(&RelayToAgent::Refused(Nested(refusal.clone())))
                .await;
            crate::conn::finish_and_wait(&mut send).await;
            return End::Refused(refusal);
        }
    };
    if let Err(e) = send
        .send(&RelayToAgent::MeasureReady {
            relay_time_ms: now_millis(),
        })
        .await
    {
        return e.into();
    }
    tracing::debug!("measurement started");
    let mut transfers = tokio::task::JoinSet::new();
    let mut last_activity = tokio::time::Instant::now();
    let end = loop {
        let quiet_until = last_activity + QUIET_LIMIT;
        tokio::select! {
            _ = tokio::time::sleep_until(quiet_until), if transfers.is_empty() => {
                connection.close(0u32.into(), b"measurement idle");
                break End::Lost(format!(
                    "no probe or transfer for {} s: the measurement is over",
                    QUIET_LIMIT.as_secs()
                ));
            }
            datagram = connection.read_datagram() => match datagram {
                Ok(bytes) => match EchoRequest::decode(&bytes) {
                    Some(request) => {
                        last_activity = tokio::time::Instant::now();
                        let reply = request.reply(now_millis()).encode();
                        // A full send buffer drops the reply: that is loss the
                        // agent should see, not a reason to stop.
                        let _ = connection.send_datagram(bytes::Bytes::copy_from_slice(&reply));
                    }
                    None => break End::Violation("a datagram that is not an echo request".to_owned()),
                },
                Err(e) => break End::from(NetError::Connection(e)),
            },
            stream = connection.accept_bi() => match stream {
                Ok((send, recv)) => {
                    if transfers.len() >= MAX_PARALLEL_TRANSFERS {
                        break End::Violation("too many parallel transfers".to_owned());
                    }
                    last_activity = tokio::time::Instant::now();
                    let limits = Arc::clone(limits);
                    transfers.spawn(transfer(limits, device, connection.clone(), send, recv));
                }
                Err(e) => break End::from(NetError::Connection(e)),
            },
            Some(done) = transfers.join_next(), if !transfers.is_empty() => {
                last_activity = tokio::time::Instant::now();
                if let Ok(Err(reason)) = done {
                    break End::Violation(reason);
                }
            }
            message = recv.recv::<AgentToRelay>() => match message {
                Ok(None) => break End::Closed,
                Ok(Some(AgentToRelay::Unknown { .. })) => {}
                Ok(Some(other)) => break End::Violation(format!("unexpected {other:?} on a measurement connection")),
                Err(e) => break e.into(),
            },
        }
    };
    transfers.abort_all();
    tracing::debug!("measurement ended");
    end
}

/// Serves one transfer stream; `Err` is a protocol violation.
async fn transfer(
    limits: Arc<MeasureLimits>,
    device: DeviceId,
    connection: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
) -> Result<(), String> {
    let mut send = FramedSend::new(send, MAX_RELAY_FRAME_LEN);
    let mut recv = FramedRecv::new(recv, MAX_CLIENT_FRAME_LEN);
    let request = match recv.recv::<MeasureRequest>().await {
        Ok(Some(request)) => request,
        Ok(None) => return Ok(()),
        // Only a request that arrived and is malformed breaks the protocol.
        Err(e @ (NetError::Frame(_) | NetError::Message(_))) => {
            return Err(format!("bad measurement request: {e}"));
        }
        // A stream reset before its request arrived (the agent gave up
        // during a short outage, so the request was never retransmitted)
        // or one cut short is a gap in the measurement, not a violation:
        // the connection and its other measurements go on.
        Err(e) => {
            tracing::debug!("a measurement stream ended before its request: {e}");
            return Ok(());
        }
    };
    match request {
        MeasureRequest::Download { duration_ms } => {
            let duration = Duration::from_millis(u64::from(duration_ms.min(MAX_TRANSFER_MS)));
            let filler = vec![0u8; FILLER_CHUNK];
            let start = Instant::now();
            let stream = send.stream();
            while start.elapsed() < duration {
                if limits.reserve(device, FILLER_CHUNK as u64) < FILLER_CHUNK as u64 {
                    tracing::info!("hourly measurement budget spent; ending the download early");
                    // A distinct code, so the agent reports "allowance
                    // spent" instead of a false low speed.
                    let _ = stream.reset(RESET_BUDGET_SPENT.into());
                    return Ok(());
                }
                let remaining = duration.saturating_sub(start.elapsed());
                match tokio::time::timeout(remaining, stream.write_all(&filler)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Ok(()), // agent stopped reading: its choice
                    Err(_) => break,             // duration over while blocked on flow control
                }
            }
            // Unsent data would only delay the agent: drop it.
            let _ = stream.reset(0u32.into());
            Ok(())
        }
        MeasureRequest::Upload { duration_ms } => {
            let planned = Duration::from_millis(u64::from(duration_ms.min(MAX_TRANSFER_MS)));
            // Counted where packets arrive (the connection's UDP receive
            // counter), skipping the first quarter while congestion control
            // ramps up, as the agent does for downloads.
            let started = Instant::now();
            let window_open = tokio::time::Instant::from_std(started + planned / 4);
            let deadline =
                tokio::time::Instant::from_std(started + planned + Duration::from_secs(2));
            let (mut inner, _early_filler) = recv.into_parts();
            let mut opened: Option<(Instant, u64)> = None;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(window_open), if opened.is_none() => {
                        opened = Some((Instant::now(), connection.stats().udp_rx.bytes));
                    }
                    _ = tokio::time::sleep_until(deadline) => break, // over time: stop counting
                    chunk = inner.read_chunk(FILLER_CHUNK, true) => match chunk {
                        Ok(Some(chunk)) => {
                            let len = chunk.bytes.len() as u64;
                            if limits.reserve(device, len) < len {
                                let _ = inner.stop(RESET_BUDGET_SPENT.into());
                                let refusal = Refusal::MeasurementBudgetSpent {
                                    retry_after_s: limits.renewed_in(device),
                                };
                                let _ = send.send(&MeasureReply::Refused(Nested(refusal))).await;
                                send.finish();
                                return Ok(());
                            }
                        }
                        Ok(None) => break,
                        // The agent resets its side when its time is up.
                        Err(quinn::ReadError::Reset(_)) => break,
                        Err(_) => return Ok(()),
                    },
                }
            }
            let (bytes, duration_us) = match opened {
                Some((at, rx)) => (
                    connection.stats().udp_rx.bytes.saturating_sub(rx),
                    at.elapsed().as_micros() as u64,
                ),
                None => (0, 0),
            };
            let reply = MeasureReply::Received { bytes, duration_us };
            let _ = send.send(&reply).await;
            send.finish();
            Ok(())
        }
        MeasureRequest::SpeedTest => {
            let reply = match limits.grant_speed_test(device) {
                Ok(remaining) => MeasureReply::SpeedTestGranted { remaining },
                Err(refusal) => {
                    tracing::info!("speed test refused: {refusal}");
                    MeasureReply::Refused(Nested(refusal))
                }
            };
            let _ = send.send(&reply).await;
            send.finish();
            Ok(())
        }
        MeasureRequest::Unknown { tag } => {
            let refusal = Refusal::Invalid(format!(
                "this relay does not know measurement {tag}; upgrade the relay"
            ));
            let _ = send.send(&MeasureReply::Refused(Nested(refusal))).await;
            send.finish();
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits_with_device(device: DeviceId) -> MeasureLimits {
        let limits = MeasureLimits::default();
        limits.lock().insert(
            device,
            Budget {
                holder: None,
                window_start: Instant::now(),
                bytes: 0,
                speed_tests: 0,
            },
        );
        limits
    }

    #[test]
    fn a_technician_gets_many_speed_tests_an_hour_then_a_refusal_saying_when() {
        let device = DeviceId(1);
        let limits = limits_with_device(device);
        for expected_left in (1..=HOURLY_SPEED_TESTS).rev() {
            assert_eq!(limits.grant_speed_test(device), Ok(expected_left));
        }
        match limits.grant_speed_test(device) {
            Err(Refusal::MeasurementBudgetSpent { retry_after_s }) => {
                assert!((3500..=3600).contains(&retry_after_s), "{retry_after_s}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_spent_byte_budget_refuses_a_new_speed_test_instead_of_cutting_it_short() {
        let device = DeviceId(2);
        let limits = limits_with_device(device);
        assert_eq!(
            limits.reserve(device, HOURLY_BYTE_BUDGET - SPEED_TEST_MIN_BYTES / 2),
            HOURLY_BYTE_BUDGET - SPEED_TEST_MIN_BYTES / 2
        );
        assert!(matches!(
            limits.grant_speed_test(device),
            Err(Refusal::MeasurementBudgetSpent { .. })
        ));
    }
}
