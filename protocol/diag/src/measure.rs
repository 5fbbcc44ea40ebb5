//! Pure arithmetic of the path measurement: media jitter (RFC 3550),
//! latency under load graded per direction, and responsiveness in round
//! trips per minute (RPM).
//!
//! The agent times its probes and hands the numbers in; nothing here reads a
//! clock or touches a socket, so every rule is tested on exact inputs.

use crate::snapshot::{Grade, LoadedDirection, LoadedLatency, RttStats};

/// Spacing of the round-trip probes used for jitter: one audio packet every
/// 20 ms is what Opus, G.711 and the Teams/Zoom audio paths send, so the
/// path's queues see the same pattern a call puts on them.
pub const MEDIA_PROBE_SPACING_MS: u64 = 20;

/// One answered probe, on the agent's monotonic clock in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProbeTiming {
    /// When the probe left.
    pub sent_ms: f64,
    /// When its echo came back.
    pub arrived_ms: f64,
}

/// The interarrival jitter of RFC 3550 (section 6.4.1) over echoed probes,
/// in milliseconds: for consecutive arrivals i−1, i, the difference of
/// transit times `D = (R_i − R_{i−1}) − (S_i − S_{i−1})` and the running
/// estimate `J += (|D| − J) / 16`, starting at 0. The probes are taken in
/// arrival order, as a media receiver sees them. With echoes the transit is
/// the round trip, so this is the jitter of the round trip (both
/// directions), which is what a call's audio suffers end to end.
///
/// `None` with fewer than two finite probes.
pub fn interarrival_jitter(probes: &[ProbeTiming]) -> Option<f64> {
    let mut ordered: Vec<ProbeTiming> = probes
        .iter()
        .copied()
        .filter(|p| p.sent_ms.is_finite() && p.arrived_ms.is_finite())
        .collect();
    if ordered.len() < 2 {
        return None;
    }
    ordered.sort_by(|a, b| a.arrived_ms.total_cmp(&b.arrived_ms));
    let mut jitter = 0.0;
    for pair in ordered.windows(2) {
        let transit_before = pair[0].arrived_ms - pair[0].sent_ms;
        let transit_now = pair[1].arrived_ms - pair[1].sent_ms;
        let difference = (transit_now - transit_before).abs();
        jitter += (difference - jitter) / 16.0;
    }
    Some(jitter)
}

/// Responsiveness under working conditions in round trips per minute, as
/// the IETF draft "Responsiveness under Working Conditions" and Apple's
/// networkQuality define it: 60 000 / loaded round trip in ms. `None` for
/// a round trip that is not a positive finite number.
pub fn rpm(loaded_rtt_ms: f64) -> Option<f64> {
    (loaded_rtt_ms.is_finite() && loaded_rtt_ms > 0.0).then(|| 60_000.0 / loaded_rtt_ms)
}

/// One direction's latency under load, from the idle median and the probes
/// sent while that transfer ran (`loaded` holds the answered ones).
pub fn loaded_direction(
    idle_median_ms: f64,
    loaded: &RttStats,
    probes_sent: u32,
) -> Option<LoadedDirection> {
    if loaded.samples == 0 || !loaded.median_ms.is_finite() || !idle_median_ms.is_finite() {
        return None;
    }
    let added_ms = (loaded.median_ms - idle_median_ms).max(0.0);
    Some(LoadedDirection {
        median_ms: loaded.median_ms,
        added_ms,
        grade: Grade::from_added_latency(added_ms),
        probes_sent: probes_sent.max(loaded.samples),
        probes_received: loaded.samples,
    })
}

/// Both directions judged separately: the worse one (more added latency)
/// is the path's latency under load, so a bloated download queue is not
/// averaged away by a clean upload. Returns the added latency of the worse
/// direction ([`LoadedLatency::worse`], the one choice the classifier and
/// the report also read) and the loaded latency record with its RPM.
pub fn judge_load(
    download: Option<LoadedDirection>,
    upload: Option<LoadedDirection>,
) -> Option<(f64, LoadedLatency)> {
    let mut load = LoadedLatency {
        download,
        upload,
        rpm: None,
    };
    let (added, worse_median) = load.worse().map(|(_, d)| (d.added_ms, d.median_ms))?;
    load.rpm = rpm(worse_median);
    Some((added, load))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(median_ms: f64, samples: u32) -> RttStats {
        RttStats {
            samples,
            min_ms: median_ms,
            median_ms,
            p95_ms: median_ms,
            max_ms: median_ms,
            jitter_ms: 0.0,
        }
    }

    #[test]
    fn rfc3550_jitter_is_exact_on_known_timings() {
        // Sent every 20 ms; transits 10, 14, 10, 10 ms.
        let probes = [
            ProbeTiming {
                sent_ms: 0.0,
                arrived_ms: 10.0,
            },
            ProbeTiming {
                sent_ms: 20.0,
                arrived_ms: 34.0,
            },
            ProbeTiming {
                sent_ms: 40.0,
                arrived_ms: 50.0,
            },
            ProbeTiming {
                sent_ms: 60.0,
                arrived_ms: 70.0,
            },
        ];
        // J1 = 4/16 = 0.25; J2 = 0.25 + (4 − 0.25)/16 = 0.484375;
        // J3 = 0.484375 − 0.484375/16 = 0.4541015625.
        assert_eq!(interarrival_jitter(&probes), Some(0.4541015625));
        // Arrival order, not send order: the same probes shuffled give the
        // same answer.
        let mut shuffled = probes;
        shuffled.reverse();
        assert_eq!(interarrival_jitter(&shuffled), Some(0.4541015625));
        assert_eq!(interarrival_jitter(&probes[..1]), None);
        assert_eq!(interarrival_jitter(&[]), None);
    }

    #[test]
    fn steady_transit_has_no_jitter_and_a_constant_swing_converges_to_it() {
        let steady: Vec<ProbeTiming> = (0..50)
            .map(|i| ProbeTiming {
                sent_ms: f64::from(i) * 20.0,
                arrived_ms: f64::from(i) * 20.0 + 30.0,
            })
            .collect();
        assert_eq!(interarrival_jitter(&steady), Some(0.0));
        // Transit alternating 30 / 50 ms: |D| = 20 every time; the estimate
        // approaches 20 ms from below (1 − (15/16)^199 of it).
        let swinging: Vec<ProbeTiming> = (0..200)
            .map(|i| ProbeTiming {
                sent_ms: f64::from(i) * 20.0,
                arrived_ms: f64::from(i) * 20.0 + if i % 2 == 0 { 30.0 } else { 50.0 },
            })
            .collect();
        let j = interarrival_jitter(&swinging).unwrap();
        assert!((j - 20.0).abs() < 1e-3, "{j}");
    }

    #[test]
    fn rpm_is_round_trips_per_minute() {
        assert_eq!(rpm(100.0), Some(600.0));
        assert_eq!(rpm(25.0), Some(2400.0));
        assert_eq!(rpm(0.0), None);
        assert_eq!(rpm(f64::NAN), None);
    }

    #[test]
    fn a_bloated_download_is_not_averaged_away_by_a_clean_upload() {
        // Idle 20 ms. Download: 40 probes sent, 30 answered at 500 ms.
        // Upload: 60 answered at 21 ms. Pooled, the median would be 21 ms
        // (+1 ms, grade A+); per direction the download is +480 ms, F.
        let down = loaded_direction(20.0, &stats(500.0, 30), 40).unwrap();
        let up = loaded_direction(20.0, &stats(21.0, 60), 60).unwrap();
        let (added, load) = judge_load(Some(down.clone()), Some(up)).unwrap();
        assert_eq!(added, 480.0);
        assert_eq!(Grade::from_added_latency(added), Grade::F);
        assert_eq!(load.download.as_ref().unwrap().grade, Grade::F);
        assert_eq!(load.upload.as_ref().unwrap().grade, Grade::APlus);
        assert_eq!(load.download.as_ref().unwrap().loss_percent(), Some(25.0));
        assert_eq!(load.rpm, Some(120.0));
        assert_eq!(load.worse(), Some(("download", &down)));
    }

    /// The healthy snapshot with a bloated download, a clean upload, and
    /// only the per-direction record (no summary fields).
    fn bloated_download_snapshot() -> crate::Snapshot {
        use crate::testkit::{healthy, path, With};
        let down = loaded_direction(30.0, &stats(500.0, 30), 40).unwrap();
        let up = loaded_direction(30.0, &stats(31.0, 60), 60).unwrap();
        let (_, load) = judge_load(Some(down), Some(up)).unwrap();
        healthy().with(|s| {
            let p = path(s);
            p.added_latency_ms = None;
            p.bufferbloat = None;
            p.loaded = Some(Box::new(load));
        })
    }

    #[test]
    fn the_classifier_grades_the_worse_direction_and_shows_rpm_and_loss() {
        let verdict = crate::judge(&bloated_download_snapshot(), &crate::Thresholds::default());
        let finding = verdict
            .findings
            .iter()
            .find(|f| f.id == "path.bufferbloat")
            .expect("a bloated download is a bufferbloat finding");
        let metric = |name: &str| {
            finding
                .evidence
                .iter()
                .find(|e| e.metric == name)
                .map(|e| e.value.clone())
        };
        assert_eq!(
            metric("path.added_latency_ms"),
            Some(crate::EvidenceValue::Number(470.0))
        );
        assert_eq!(
            metric("path.loaded.direction"),
            Some(crate::EvidenceValue::Text("download".to_owned()))
        );
        assert_eq!(
            metric("path.loaded.download.loss_percent"),
            Some(crate::EvidenceValue::Number(25.0))
        );
        assert_eq!(
            metric("path.responsiveness_rpm"),
            Some(crate::EvidenceValue::Number(120.0))
        );
    }

    #[test]
    fn the_report_shows_the_direction_the_loss_and_rpm_in_english_and_french() {
        let snapshot = bloated_download_snapshot();
        let verdict = crate::judge(&snapshot, &crate::Thresholds::default());
        let style = crate::Style { color: false };
        let en = crate::render(&verdict, &snapshot, crate::Lang::En, style);
        assert!(
            en.contains("grade F (+470 ms, while receiving, 25 % probe loss), 120 round trips per minute (RPM)"),
            "{en}"
        );
        let fr = crate::render(&verdict, &snapshot, crate::Lang::Fr, style);
        assert!(fr.contains("note F (+470 ms, en réception, 25"), "{fr}");
        assert!(fr.contains("120 allers-retours par minute (RPM)"), "{fr}");
    }

    #[test]
    fn media_jitter_is_judged_and_reported_when_present() {
        use crate::testkit::{healthy, path, With};
        // Back-to-back probes saw 3 ms; probes spaced like audio saw 45.
        let snapshot = healthy().with(|s| path(s).media_jitter_ms = Some(45.0));
        let verdict = crate::judge(&snapshot, &crate::Thresholds::default());
        let finding = verdict
            .findings
            .iter()
            .find(|f| f.id == "path.jitter_high")
            .expect("45 ms of media jitter is high");
        assert_eq!(finding.evidence[0].metric, "path.media_jitter_ms");
        let en = crate::render(
            &verdict,
            &snapshot,
            crate::Lang::En,
            crate::Style { color: false },
        );
        assert!(en.contains("jitter 45 ms"), "{en}");
    }

    #[test]
    fn an_older_snapshot_without_the_new_fields_still_parses() {
        let text = r#"{"format":1,"path":{"measured":{"relay":"r:1","udp_ok":true,
                       "added_latency_ms":12.0,"bufferbloat":"A"}}}"#;
        let snapshot: crate::Snapshot = serde_json::from_str(text).unwrap();
        let path = snapshot.path.value().unwrap();
        assert_eq!(path.loaded, None);
        assert_eq!(path.media_jitter_ms, None);
        assert_eq!(path.added_latency_ms, Some(12.0));
    }

    #[test]
    fn one_measured_direction_is_the_answer_and_none_is_none() {
        let up = loaded_direction(20.0, &stats(80.0, 10), 10).unwrap();
        let (added, load) = judge_load(None, Some(up)).unwrap();
        assert_eq!(added, 60.0);
        assert_eq!(load.rpm, Some(750.0));
        assert_eq!(judge_load(None, None), None);
        assert_eq!(loaded_direction(20.0, &stats(0.0, 0), 10), None);
    }
}
