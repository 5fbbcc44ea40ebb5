//! The agent's on-disk ring of timeline samples: seven days kept on the
//! device, so nothing is lost while the relay is away, and what the
//! employee can read back with `deskside-agent history`.
//!
//! One append-only file (`timeline.bin`) of records, each
//! `[u32 LE length][u64 LE sequence][format byte][postcard sample]`, and a
//! small file (`timeline-sent.json`) with the last sequence number the
//! relay confirmed. A torn last record (power cut mid-write) is cut off
//! when the ring opens. Once an hour at most, the file is rewritten without
//! the records older than [`KEEP_MS`] (and beyond [`MAX_RECORDS`]), so it
//! stays under about 3.6 MB (records of 72 bytes off Wi‑Fi, about 180 on
//! Wi‑Fi with a hashed access point).
//!
//! Only the samples not yet confirmed are held in memory, already encoded
//! (60–165 bytes each): nothing while the relay is reachable, at most a
//! week's worth when it is not.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use deskside_diag::timeline::{
    batch_from_bodies, decode_sample_body, encode_sample_body, Sample, MAX_BATCH_SAMPLES,
    SAMPLE_FORMAT,
};

/// Samples are kept this long on the device: seven days.
pub const KEEP_MS: i64 = 7 * 86_400_000;
/// At most this many records (a week at one every 30 s), whatever the
/// interval: a test policy sampling every second must not fill the disk.
pub const MAX_RECORDS: usize = 20_160;
/// Compaction runs at most this often.
const COMPACT_EVERY_MS: i64 = 3_600_000;
/// A record longer than this is damage, not a sample.
const MAX_RECORD_LEN: u32 = 16 * 1024;

const RING_FILE: &str = "timeline.bin";
const SENT_FILE: &str = "timeline-sent.json";

/// Why the ring could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// A file could not be read or written.
    #[error("cannot use the timeline file {path}: {source}; check the agent's state directory (permissions, free space)")]
    Io {
        /// Which file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// One record as read back.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Its sequence number.
    pub seq: u64,
    /// The sample.
    pub sample: Sample,
}

/// A batch ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Sequence number of its first sample.
    pub first_seq: u64,
    /// Sequence number of its last sample.
    pub last_seq: u64,
    /// The samples in `deskside-diag`'s batch format.
    pub bytes: Vec<u8>,
}

/// The ring.
#[derive(Debug)]
pub struct Ring {
    path: PathBuf,
    sent_path: PathBuf,
    /// Sequence number of the next record.
    next_seq: u64,
    /// The last sequence number the relay confirmed.
    sent_through: u64,
    /// Unconfirmed samples: sequence, time, postcard body (no format byte).
    pending: VecDeque<(u64, i64, Vec<u8>)>,
    /// Records in the file and the oldest one's time.
    records: usize,
    oldest_ms: Option<i64>,
    last_compaction_ms: i64,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RingError + '_ {
    move |source| RingError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Parses the records of `bytes`; returns them with the length of the
/// well-formed prefix (anything after is a torn or damaged tail).
fn parse(bytes: &[u8]) -> (Vec<(u64, Vec<u8>)>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= 12 {
        let mut len = [0u8; 4];
        len.copy_from_slice(&bytes[at..at + 4]);
        let len = u32::from_le_bytes(len);
        if len == 0 || len > MAX_RECORD_LEN || bytes.len() - at - 12 < len as usize {
            break;
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&bytes[at + 4..at + 12]);
        let payload = bytes[at + 12..at + 12 + len as usize].to_vec();
        out.push((u64::from_le_bytes(seq), payload));
        at += 12 + len as usize;
    }
    (out, at)
}

/// A record's payload (format byte + body) as a sample.
fn payload_sample(payload: &[u8]) -> Option<Sample> {
    let (&format, body) = payload.split_first()?;
    if format != SAMPLE_FORMAT {
        return None;
    }
    decode_sample_body(body).ok()
}

fn record_bytes(seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 12);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn open_append(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}

impl Ring {
    /// Opens (or creates) the ring in the state directory `dir`, dropping a
    /// torn last record and samples older than [`KEEP_MS`] from what is
    /// still to be sent.
    pub fn open(dir: &Path, now_ms: i64) -> Result<Ring, RingError> {
        let path = dir.join(RING_FILE);
        let sent_path = dir.join(SENT_FILE);
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut file) => {
                file.read_to_end(&mut bytes).map_err(io_error(&path))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&path)(e)),
        }
        let (records, good) = parse(&bytes);
        if good < bytes.len() {
            tracing::warn!(
                dropped = bytes.len() - good,
                "the timeline file ended with a partial record (the machine stopped mid-write); cut it off"
            );
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_error(&path))?;
            file.set_len(good as u64).map_err(io_error(&path))?;
        }
        let sent_through = std::fs::read_to_string(&sent_path)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let mut ring = Ring {
            path,
            sent_path,
            next_seq: records.last().map_or(1, |(seq, _)| seq + 1),
            sent_through,
            pending: VecDeque::new(),
            records: records.len(),
            oldest_ms: None,
            last_compaction_ms: i64::MIN,
        };
        for (seq, payload) in &records {
            let Some(sample) = payload_sample(payload) else {
                continue;
            };
            ring.oldest_ms = Some(ring.oldest_ms.map_or(sample.at_ms, |o| o.min(sample.at_ms)));
            if *seq > sent_through && sample.at_ms >= now_ms - KEEP_MS {
                ring.pending
                    .push_back((*seq, sample.at_ms, payload[1..].to_vec()));
            }
        }
        Ok(ring)
    }

    /// Appends `sample`; returns its sequence number.
    pub fn append(&mut self, sample: &Sample, now_ms: i64) -> Result<u64, RingError> {
        let body = encode_sample_body(sample);
        let mut payload = Vec::with_capacity(body.len() + 1);
        payload.push(SAMPLE_FORMAT);
        payload.extend_from_slice(&body);
        let seq = self.next_seq;
        {
            // Closed before a compaction below renames over the file:
            // Windows refuses to replace a file that is still open
            // ("Access denied"), where Unix would swap it silently.
            let mut file = open_append(&self.path).map_err(io_error(&self.path))?;
            file.write_all(&record_bytes(seq, &payload))
                .map_err(io_error(&self.path))?;
        }
        self.next_seq += 1;
        self.records += 1;
        self.oldest_ms = Some(self.oldest_ms.map_or(sample.at_ms, |o| o.min(sample.at_ms)));
        self.pending.push_back((seq, sample.at_ms, body));
        while self.pending.len() > MAX_RECORDS {
            self.pending.pop_front();
        }
        let stale = self.oldest_ms.is_some_and(|o| o < now_ms - KEEP_MS);
        if (stale || self.records > MAX_RECORDS)
            && now_ms.saturating_sub(self.last_compaction_ms) >= COMPACT_EVERY_MS
        {
            self.compact(now_ms)?;
        }
        Ok(seq)
    }

    /// Rewrites the file without records older than [`KEEP_MS`] or beyond
    /// [`MAX_RECORDS`].
    pub fn compact(&mut self, now_ms: i64) -> Result<(), RingError> {
        self.last_compaction_ms = now_ms;
        let bytes = std::fs::read(&self.path).map_err(io_error(&self.path))?;
        let (records, _) = parse(&bytes);
        let mut kept: Vec<(u64, Vec<u8>, i64)> = records
            .into_iter()
            .filter_map(|(seq, payload)| {
                let at = payload_sample(&payload)?.at_ms;
                (at >= now_ms - KEEP_MS).then_some((seq, payload, at))
            })
            .collect();
        if kept.len() > MAX_RECORDS {
            kept.drain(..kept.len() - MAX_RECORDS);
        }
        let temporary = self.path.with_extension("bin.new");
        {
            let mut out = Vec::new();
            for (seq, payload, _) in &kept {
                out.extend_from_slice(&record_bytes(*seq, payload));
            }
            let _ = std::fs::remove_file(&temporary);
            let mut file = open_append(&temporary).map_err(io_error(&temporary))?;
            file.write_all(&out).map_err(io_error(&temporary))?;
            file.sync_all().map_err(io_error(&temporary))?;
        }
        std::fs::rename(&temporary, &self.path).map_err(io_error(&self.path))?;
        self.records = kept.len();
        self.oldest_ms = kept.iter().map(|(_, _, at)| *at).min();
        self.pending.retain(|(_, at, _)| *at >= now_ms - KEEP_MS);
        Ok(())
    }

    /// The oldest unconfirmed samples, at most `max`, as one batch.
    pub fn next_batch(&self, max: usize) -> Option<Batch> {
        let max = max.clamp(1, MAX_BATCH_SAMPLES);
        let (first_seq, _, _) = self.pending.front()?;
        let taken: Vec<&(u64, i64, Vec<u8>)> = self.pending.iter().take(max).collect();
        let bodies: Vec<&[u8]> = taken.iter().map(|(_, _, body)| body.as_slice()).collect();
        Some(Batch {
            first_seq: *first_seq,
            last_seq: taken.last().map_or(*first_seq, |(seq, _, _)| *seq),
            bytes: batch_from_bodies(&bodies),
        })
    }

    /// The relay stored everything through `seq`.
    pub fn confirm(&mut self, seq: u64) -> Result<(), RingError> {
        if seq <= self.sent_through {
            return Ok(());
        }
        self.sent_through = seq;
        while self.pending.front().is_some_and(|(s, _, _)| *s <= seq) {
            self.pending.pop_front();
        }
        let temporary = self.sent_path.with_extension("json.new");
        std::fs::write(&temporary, format!("{seq}\n")).map_err(io_error(&temporary))?;
        std::fs::rename(&temporary, &self.sent_path).map_err(io_error(&self.sent_path))
    }

    /// Samples waiting to be sent.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Records kept on the device, and the oldest one's time.
    pub fn kept(&self) -> (usize, Option<i64>) {
        (self.records, self.oldest_ms)
    }

    /// Every record in the file (for `deskside-agent history`).
    pub fn read_all(dir: &Path) -> Vec<Record> {
        let Ok(bytes) = std::fs::read(dir.join(RING_FILE)) else {
            return Vec::new();
        };
        parse(&bytes)
            .0
            .into_iter()
            .filter_map(|(seq, payload)| {
                Some(Record {
                    seq,
                    sample: payload_sample(&payload)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deskside_diag::timeline::decode_batch;

    const T0: i64 = 1_765_000_000_000;

    fn sample(minute: i64) -> Sample {
        Sample {
            at_ms: T0 + minute * 60_000,
            dns_ms: Some(minute as f32),
            wifi: Some(deskside_diag::timeline::WifiSample {
                access_point: Some(format!("ap-{minute}")),
                signal_dbm: Some(-60.0),
                ..Default::default()
            }),
            ..Sample::default()
        }
    }

    #[test]
    fn unsent_samples_survive_a_restart_and_go_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut ring = Ring::open(dir.path(), T0).unwrap();
        for minute in 0..5 {
            assert_eq!(ring.append(&sample(minute), T0).unwrap(), minute as u64 + 1);
        }
        let batch = ring.next_batch(3).unwrap();
        assert_eq!((batch.first_seq, batch.last_seq), (1, 3));
        let decoded = decode_batch(&batch.bytes).unwrap();
        assert_eq!(decoded, (0..3).map(sample).collect::<Vec<_>>());
        ring.confirm(3).unwrap();
        drop(ring);
        // The agent restarts: samples 4 and 5 are still to be sent, and
        // numbering goes on.
        let mut ring = Ring::open(dir.path(), T0).unwrap();
        assert_eq!(ring.pending(), 2);
        let batch = ring.next_batch(100).unwrap();
        assert_eq!((batch.first_seq, batch.last_seq), (4, 5));
        assert_eq!(
            decode_batch(&batch.bytes).unwrap(),
            vec![sample(3), sample(4)]
        );
        assert_eq!(ring.append(&sample(5), T0).unwrap(), 6);
        ring.confirm(6).unwrap();
        assert_eq!(ring.next_batch(10), None);
        assert_eq!(Ring::read_all(dir.path()).len(), 6);
    }

    #[test]
    fn a_torn_last_record_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let mut ring = Ring::open(dir.path(), T0).unwrap();
        ring.append(&sample(0), T0).unwrap();
        ring.append(&sample(1), T0).unwrap();
        drop(ring);
        let path = dir.path().join(RING_FILE);
        let length = std::fs::metadata(&path).unwrap().len();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(length - 5).unwrap();
        let mut ring = Ring::open(dir.path(), T0).unwrap();
        assert_eq!(ring.pending(), 1);
        assert_eq!(ring.append(&sample(2), T0).unwrap(), 2);
        let all = Ring::read_all(dir.path());
        assert_eq!(
            all.iter().map(|r| r.sample.clone()).collect::<Vec<_>>(),
            vec![sample(0), sample(2)]
        );
    }

    #[test]
    fn records_older_than_a_week_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut ring = Ring::open(dir.path(), T0).unwrap();
        for minute in 0..3 {
            ring.append(&sample(minute), T0).unwrap();
        }
        // Eight days later, unsent: the old samples are gone from the file
        // and from what is still to send.
        let later = T0 + 8 * 86_400_000;
        let mut fresh = sample(0);
        fresh.at_ms = later;
        ring.append(&fresh, later).unwrap();
        assert_eq!(ring.kept(), (1, Some(later)));
        assert_eq!(ring.pending(), 1);
        assert_eq!(Ring::read_all(dir.path()).len(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(RING_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
    }
}
