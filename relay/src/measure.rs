//! The relay as measurement server for its agents' path diagnostics.
//!
//! An agent opens a separate connection and sends `Measure`; the relay then
//! echoes round-trip probes (QUIC datagrams) and serves timed transfers on
//! streams. Limits keep this from becoming a free bandwidth service: one
//! measurement connection per device at a time, transfers of at most
//! [`MAX_TRANSFER_MS`], and a per-device byte budget per hour.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deskside_net::{FramedRecv, FramedSend, NetError};
use deskside_protocol::agent::{AgentToRelay, RelayToAgent};
use deskside_protocol::measure::{EchoRequest, MeasureReply, MeasureRequest, MAX_TRANSFER_MS};
use deskside_protocol::message::Nested;
use deskside_protocol::{DeviceId, Refusal, MAX_CLIENT_FRAME_LEN, MAX_RELAY_FRAME_LEN};

use crate::server::{now_millis, End};

/// Bytes one device may move through throughput tests per hour: about a
/// dozen full 3-second tests at 200 Mbit/s.
pub const HOURLY_BYTE_BUDGET: u64 = 2 << 30;
/// Transfers running at once on one measurement connection.
const MAX_PARALLEL_TRANSFERS: usize = 2;
/// How long a new measurement waits for the device's previous one to end.
const SLOT_WAIT: Duration = Duration::from_secs(3);
/// Size of each write of filler.
const FILLER_CHUNK: usize = 64 * 1024;

/// Per-device measurement accounting.
#[derive(Debug, Default)]
pub struct MeasureLimits {
    devices: Mutex<HashMap<DeviceId, Budget>>,
}

#[derive(Debug)]
struct Budget {
    active: bool,
    window_start: Instant,
    bytes: u64,
}

/// Releases a device's measurement slot when dropped.
#[derive(Debug)]
pub struct Slot {
    limits: Arc<MeasureLimits>,
    device: DeviceId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(budget) = self.limits.lock().get_mut(&self.device) {
            budget.active = false;
        }
    }
}

impl MeasureLimits {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, Budget>> {
        self.devices.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the device's measurement slot, or says why not.
    pub fn begin(self: &Arc<Self>, device: DeviceId) -> Result<Slot, Refusal> {
        let mut devices = self.lock();
        let budget = devices.entry(device).or_insert_with(|| Budget {
            active: false,
            window_start: Instant::now(),
            bytes: 0,
        });
        if budget.active {
            return Err(Refusal::Invalid(
                "a measurement for this device is already running; wait for it to finish"
                    .to_owned(),
            ));
        }
        budget.active = true;
        Ok(Slot {
            limits: Arc::clone(self),
            device,
        })
    }

    /// Reserves up to `wanted` bytes of the device's hourly budget and
    /// returns how many were granted.
    fn reserve(&self, device: DeviceId, wanted: u64) -> u64 {
        let mut devices = self.lock();
        let Some(budget) = devices.get_mut(&device) else {
            return 0;
        };
        if budget.window_start.elapsed() > Duration::from_secs(3600) {
            budget.window_start = Instant::now();
            budget.bytes = 0;
        }
        let granted = wanted.min(HOURLY_BYTE_BUDGET.saturating_sub(budget.bytes));
        budget.bytes += granted;
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
    let mut attempt = limits.begin(device);
    let deadline = Instant::now() + SLOT_WAIT;
    while attempt.is_err() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        attempt = limits.begin(device);
    }
    let _slot = match attempt {
        Ok(slot) => slot,
        Err(refusal) => {
            let _ = send
                .send(&RelayToAgent::Refused(Nested(refusal.clone())))
                .await;
            crate::server::finish_and_wait(&mut send).await;
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
    let end = loop {
        tokio::select! {
            datagram = connection.read_datagram() => match datagram {
                Ok(bytes) => match EchoRequest::decode(&bytes) {
                    Some(request) => {
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
                    let limits = Arc::clone(limits);
                    transfers.spawn(transfer(limits, device, connection.clone(), send, recv));
                }
                Err(e) => break End::from(NetError::Connection(e)),
            },
            Some(done) = transfers.join_next(), if !transfers.is_empty() => {
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
        Err(e) => return Err(format!("bad measurement request: {e}")),
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
                    break;
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
                                let _ = inner.stop(0u32.into());
                                break;
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
