//! The timeline on synthetic series: each test impairs a healthy, noisy
//! series (seeded, so deterministic) the way a real fault would and checks
//! the episodes, their attribution and recurrences.

use super::synth::*;
use super::*;
use crate::verdict::{Confidence, Segment, Severity};

fn judge(samples: &[Sample]) -> Timeline {
    judge_timeline(samples, &Thresholds::default(), &EpisodeRules::default())
}

fn ids(timeline: &Timeline) -> Vec<String> {
    timeline
        .episodes
        .iter()
        .map(|e| format!("{} {}..{:?} {}", e.id, e.start_ms, e.end_ms, e.segment))
        .collect()
}

fn of<'t>(timeline: &'t Timeline, id: &str) -> Vec<&'t Episode> {
    timeline.episodes.iter().filter(|e| e.id == id).collect()
}

#[test]
fn a_healthy_week_with_realistic_noise_has_no_episode() {
    let week = series(7, 7 * DAY_MIN, &Noise::default(), |_, _, _| {});
    let timeline = judge(&week);
    assert!(timeline.episodes.is_empty(), "{:#?}", ids(&timeline));
    assert!(
        timeline.recurrences.is_empty(),
        "{:#?}",
        timeline.recurrences
    );
    assert_eq!(timeline.samples as usize, 7 * DAY_MIN);
    assert_eq!(timeline.interval_ms, MINUTE_MS);
    // The noise does cross the thresholds, one minute at a time: without
    // hysteresis this week would be full of episodes.
    let thresholds = Thresholds::default();
    let rules = EpisodeRules::default();
    for metric in [
        Metric::WifiSignal,
        Metric::RelayRtt,
        Metric::RelayLoss,
        Metric::DnsSlow,
        Metric::CpuBusy,
    ] {
        let blips = week
            .iter()
            .filter(|s| {
                matches!(
                    episodes::read(metric, s, false, None, &thresholds, &rules),
                    episodes::Reading::Bad { .. }
                )
            })
            .count();
        assert!(
            blips >= 5,
            "{}: only {blips} bad minutes in the noise",
            metric.id()
        );
    }
}

#[test]
fn a_five_minute_wifi_dip_is_one_home_network_episode_with_exact_bounds() {
    // Minutes 60..65: the employee carries the laptop to the garden. The
    // weak signal drags everything downstream with it.
    let samples = series(11, 120, &Noise::default(), |minute, rng, s| {
        if (60..65).contains(&minute) {
            wifi(s).signal_dbm = Some(-81.0 + rng.normal(0.0, 1.5) as f32);
            wifi(s).retries_percent = Some(38.0);
            let g = gateway(s);
            g.received = 1;
            g.rtt_ms = Some(35.0);
            let r = relay(s);
            r.lost_packets = 5;
            r.jitter_ms = Some(40.0);
        }
    });
    let timeline = judge(&samples);
    let signal = of(&timeline, "wifi.signal");
    assert_eq!(signal.len(), 1, "{:#?}", ids(&timeline));
    assert_eq!(signal[0].start_ms, at(60));
    assert_eq!(signal[0].end_ms, Some(at(65)));
    assert_eq!(signal[0].severity, Severity::Warning);
    assert_eq!(signal[0].bad_samples, 5);
    assert_eq!(signal[0].access_point.as_deref(), Some("ap-office"));
    // Everything during the dip is the home network's, including the loss
    // and jitter on the way to the relay (the path-order rule).
    assert!(timeline.episodes.len() >= 4, "{:#?}", ids(&timeline));
    for episode in &timeline.episodes {
        assert_eq!(
            episode.segment,
            Segment::HomeNetwork,
            "{:#?}",
            ids(&timeline)
        );
        assert!(episode.start_ms >= at(60) && episode.end_or(0) <= at(65));
    }
    let loss = of(&timeline, "relay.loss");
    assert_eq!(loss.len(), 1, "{:#?}", ids(&timeline));
    assert_eq!(loss[0].confidence, Confidence::Low);
    assert!(
        loss[0].explained_by.contains(&signal[0].key()),
        "{:?}",
        loss[0].explained_by
    );
    assert!(timeline.recurrences.is_empty());
}

#[test]
fn relay_loss_is_the_isp_alone_and_the_home_network_when_the_router_loses_too() {
    // (router loses probes at the same time?, expected segment)
    for (router_too, expected) in [(false, Segment::Isp), (true, Segment::HomeNetwork)] {
        let samples = series(23, 90, &Noise::default(), |minute, _, s| {
            if (30..40).contains(&minute) {
                relay(s).lost_packets = 4;
                if router_too {
                    gateway(s).received = 1;
                }
            }
        });
        let timeline = judge(&samples);
        let loss = of(&timeline, "relay.loss");
        assert_eq!(loss.len(), 1, "{:#?}", ids(&timeline));
        assert_eq!(loss[0].segment, expected, "router too: {router_too}");
        assert_eq!((loss[0].start_ms, loss[0].end_ms), (at(30), Some(at(40))));
        assert_eq!(of(&timeline, "gateway.loss").len(), usize::from(router_too));
    }
}

#[test]
fn evening_congestion_over_a_week_is_a_daily_isp_recurrence() {
    // Every evening from 19:00 to 21:00 local time (UTC+1), the ISP's
    // network is saturated: the round trip doubles, packets are lost.
    let samples = series(3, 7 * DAY_MIN, &Noise::default(), |minute, rng, s| {
        let local = (minute + 60) % DAY_MIN;
        if (19 * 60..21 * 60).contains(&local) {
            let r = relay(s);
            r.rtt_ms = Some(rng.normal(170.0, 15.0) as f32);
            r.jitter_ms = Some(rng.normal(12.0, 3.0) as f32);
            r.lost_packets = rng.losses(r.sent_packets, 0.12).max(2);
        }
    });
    let timeline = judge(&samples);
    let rtt = of(&timeline, "relay.rtt");
    assert_eq!(rtt.len(), 7, "{:#?}", ids(&timeline));
    for (day, episode) in rtt.iter().enumerate() {
        let evening = day * DAY_MIN + 18 * 60; // 19:00 local is 18:00 UTC
        assert_eq!(episode.start_ms, at(evening), "day {day}");
        assert_eq!(episode.end_ms, Some(at(evening + 120)), "day {day}");
        assert_eq!(episode.segment, Segment::Isp);
        assert_eq!(episode.severity, Severity::Critical);
    }
    assert_eq!(
        of(&timeline, "relay.loss").len(),
        7,
        "{:#?}",
        ids(&timeline)
    );
    assert!(timeline.episodes.iter().all(|e| e.segment == Segment::Isp));
    let daily = timeline
        .recurrences
        .iter()
        .find(|r| r.id == "relay.rtt")
        .expect("a daily recurrence of relay.rtt");
    assert_eq!(
        daily.pattern,
        Pattern::DailyAt {
            from_min: 19 * 60,
            to_min: 19 * 60,
            days: 7
        }
    );
    assert_eq!(daily.episodes.len(), 7);
    assert!(
        daily.description.en.contains("19:00"),
        "{}",
        daily.description.en
    );
}

#[test]
fn a_vpn_dropping_every_twenty_minutes_is_a_periodic_configuration_problem() {
    // The VPN is up all afternoon, but its server drops the tunnel every
    // 20 minutes; the client reconnects within one or two minutes.
    let samples = series(5, 240, &Noise::default(), |minute, _, s| {
        let phase = minute % 20;
        s.vpn_up = Some(!(minute >= 20 && (phase == 7 || (phase == 8 && minute % 40 == 8))));
    });
    let timeline = judge(&samples);
    let drops = of(&timeline, "vpn.down");
    let expected: Vec<i64> = (1..12).map(|k| at(20 * k + 7)).collect();
    let starts: Vec<i64> = drops.iter().map(|e| e.start_ms).collect();
    assert_eq!(starts, expected, "{:#?}", ids(&timeline));
    for episode in &drops {
        assert_eq!(episode.segment, Segment::Configuration);
        let minutes = (episode.end_ms.expect("ended") - episode.start_ms) / MINUTE_MS;
        assert!((1..=2).contains(&minutes), "{minutes}");
    }
    let periodic = timeline
        .recurrences
        .iter()
        .find(|r| r.id == "vpn.down")
        .expect("a periodic recurrence");
    assert_eq!(periodic.pattern, Pattern::Every { minutes: 20 });
    assert_eq!(
        timeline.episodes.len(),
        drops.len(),
        "{:#?}",
        ids(&timeline)
    );
}

#[test]
fn a_vpn_that_was_never_up_is_not_down() {
    let samples = series(5, 60, &Noise::default(), |_, _, s| s.vpn_up = Some(false));
    assert!(of(&judge(&samples), "vpn.down").is_empty());
}

#[test]
fn a_roam_between_two_access_points_is_an_event_not_an_episode() {
    // Walking from the office to the living room: the signal fades, one
    // sample catches the worst of it just before the roam, then the second
    // access point takes over.
    let samples = series(17, 180, &Noise::default(), |minute, _, s| {
        if (70..90).contains(&minute) {
            wifi(s).signal_dbm = Some(-58.0 - (minute - 70) as f32 * 0.7);
        }
        if minute == 89 {
            wifi(s).signal_dbm = Some(-79.0);
            gateway(s).received = 2;
        }
        if minute >= 90 {
            wifi(s).access_point = Some("ap-living-room".to_owned());
            wifi(s).signal_dbm = Some(-52.0);
        }
    });
    let timeline = judge(&samples);
    assert!(timeline.episodes.is_empty(), "{:#?}", ids(&timeline));
    let roams: Vec<&Event> = timeline
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Roam { .. }))
        .collect();
    assert_eq!(roams.len(), 1, "{:#?}", timeline.events);
    assert_eq!(roams[0].at_ms, at(90));
    assert_eq!(
        roams[0].kind,
        EventKind::Roam {
            from: "ap-office".to_owned(),
            to: "ap-living-room".to_owned()
        }
    );
}

#[test]
fn weak_wifi_on_one_access_point_only_is_recognised() {
    // Three days: lunch in the kitchen (its own access point, weak) from
    // 12:00 to 12:30, the rest of the day in the office.
    let samples = series(29, 3 * DAY_MIN, &Noise::default(), |minute, rng, s| {
        let local = (minute + 60) % DAY_MIN;
        if (12 * 60..12 * 60 + 30).contains(&local) {
            let w = wifi(s);
            w.access_point = Some("ap-kitchen".to_owned());
            w.signal_dbm = Some(rng.normal(-80.0, 1.5) as f32);
        }
    });
    let timeline = judge(&samples);
    let signal = of(&timeline, "wifi.signal");
    assert_eq!(signal.len(), 3, "{:#?}", ids(&timeline));
    assert!(signal
        .iter()
        .all(|e| e.access_point.as_deref() == Some("ap-kitchen")));
    let place = timeline
        .recurrences
        .iter()
        .find(|r| matches!(r.pattern, Pattern::AccessPoint { .. }))
        .expect("an access-point recurrence");
    assert!(
        matches!(&place.pattern, Pattern::AccessPoint { access_point, .. } if access_point == "ap-kitchen"),
        "{place:?}"
    );
    // Six roams: into the kitchen and back, each day.
    let roams = timeline
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Roam { .. }))
        .count();
    assert_eq!(roams, 6);
}

#[test]
fn a_value_hovering_at_the_threshold_stays_one_episode() {
    // Round trip at 130 ms for three minutes, then alternating 130 ms and
    // 95 ms (inside 100 ms but not by the 20 % margin): one episode, not
    // nine. Alternating alone never opens one: no two bad minutes in a row.
    // On a 60 ms path, so that the absolute limit is the one that holds
    // (its floor + 60 ms of queue is above 100 ms); on a shorter path 95 ms
    // is a queue filling (see the bufferbloat test below).
    let long_path = Noise {
        relay_rtt_ms: 60.0,
        ..Noise::default()
    };
    let samples = series(31, 90, &long_path, |minute, _, s| {
        let bad = (20..23).contains(&minute) || ((23..40).contains(&minute) && minute % 2 == 0);
        if bad {
            relay(s).rtt_ms = Some(130.0);
        } else if (23..40).contains(&minute) || (60..70).contains(&minute) {
            relay(s).rtt_ms = Some(95.0);
        }
        if (60..70).contains(&minute) && minute % 2 == 0 {
            relay(s).rtt_ms = Some(130.0);
        }
    });
    let timeline = judge(&samples);
    let rtt = of(&timeline, "relay.rtt");
    assert_eq!(rtt.len(), 1, "{:#?}", ids(&timeline));
    assert_eq!((rtt[0].start_ms, rtt[0].end_ms), (at(20), Some(at(40))));
}

#[test]
fn a_gap_ends_an_episode_where_the_samples_stopped_and_is_an_event() {
    let mut samples = series(37, 60, &Noise::default(), |minute, _, s| {
        if minute >= 30 {
            relay(s).rtt_ms = Some(180.0);
        }
    });
    // The laptop sleeps from minute 40 to 50.
    samples.retain(|s| !(at(40)..at(50)).contains(&s.at_ms));
    if let Some(s) = samples.iter_mut().find(|s| s.at_ms == at(50)) {
        s.marker = Some(Marker::Resumed { asleep_s: 600 });
    }
    let timeline = judge(&samples);
    let rtt = of(&timeline, "relay.rtt");
    assert_eq!(rtt.len(), 2, "{:#?}", ids(&timeline));
    assert_eq!((rtt[0].start_ms, rtt[0].end_ms), (at(30), Some(at(40))));
    // Still going at the end of the samples.
    assert_eq!((rtt[1].start_ms, rtt[1].end_ms), (at(50), None));
    assert!(timeline.events.contains(&Event {
        at_ms: at(40),
        kind: EventKind::Gap { until_ms: at(50) }
    }));
    assert!(timeline.events.contains(&Event {
        at_ms: at(50),
        kind: EventKind::Resumed { asleep_s: 600 }
    }));
}

#[test]
fn order_and_duplicates_do_not_change_the_judgement() {
    let samples = series(41, 120, &Noise::default(), |minute, _, s| {
        if (50..60).contains(&minute) {
            relay(s).lost_packets = 6;
        }
    });
    let mut shuffled = samples.clone();
    shuffled.reverse();
    shuffled.extend(samples.iter().take(10).cloned());
    assert_eq!(judge(&samples), judge(&shuffled));
    assert_eq!(
        judge(&[]),
        Timeline {
            interval_ms: 60_000,
            ..Timeline::default()
        }
    );
}

/// A 15 ms path whose upload queue fills for 20 minutes (a backup, a
/// large attachment): 70 ms queued, so about 85 ms, under the 100 ms
/// absolute limit. Bufferbloat grade C (60 ms added or more) is the
/// classifier's warning: one ISP episode, exact to the minute.
#[test]
fn a_queue_filling_on_a_short_path_is_one_isp_rtt_episode_under_the_absolute_limit() {
    let short_path = Noise {
        relay_rtt_ms: 15.0,
        ..Noise::default()
    };
    let samples = series(41, 180, &short_path, |minute, rng, s| {
        if (60..80).contains(&minute) {
            relay(s).rtt_ms = Some(rng.normal(15.0 + 70.0, 5.0) as f32);
        }
    });
    // The absolute limit alone never sees it.
    assert!(
        samples[60..80]
            .iter()
            .filter_map(|s| s.relay.as_ref()?.rtt_ms)
            .all(|rtt| rtt < 100.0),
        "the queued minutes stay under 100 ms"
    );
    let timeline = judge(&samples);
    let rtt = of(&timeline, "relay.rtt");
    assert_eq!(rtt.len(), 1, "{:#?}", ids(&timeline));
    let episode = rtt[0];
    assert_eq!((episode.start_ms, episode.end_ms), (at(60), Some(at(80))));
    assert_eq!(episode.segment, Segment::Isp);
    assert_eq!(episode.severity, Severity::Warning);
    let evidence = &episode.evidence[0];
    assert_eq!(evidence.metric, "relay.rtt_ms");
    assert!(
        evidence.threshold.contains("queued (bufferbloat grade C)"),
        "{}",
        evidence.threshold
    );
    assert_eq!(timeline.episodes.len(), 1, "{:#?}", ids(&timeline));
}

/// A slower link is another path, not a queue: Ethernet at 12 ms, then the
/// phone's tethering at 85 ms for an hour, then a restart onto a relay
/// 80 ms away. The floor starts again at each: no episode.
#[test]
fn a_slower_link_or_relay_is_a_new_floor_not_bufferbloat() {
    let samples = series(43, 180, &Noise::default(), |minute, rng, s| {
        s.wifi = None;
        let (link, rtt) = match minute {
            0..60 => (LinkKind::Ethernet, 12.0),
            60..120 => (LinkKind::Mobile, 85.0),
            _ => (LinkKind::Ethernet, 80.0),
        };
        s.link = link;
        relay(s).rtt_ms = Some(rng.normal(rtt, 3.0) as f32);
        relay(s).jitter_ms = Some(2.0);
        if minute == 120 {
            s.marker = Some(Marker::Started);
        }
    });
    let timeline = judge(&samples);
    assert!(
        of(&timeline, "relay.rtt").is_empty(),
        "{:#?}",
        ids(&timeline)
    );
    // Samples that resume after a gap (the laptop slept and woke on
    // another network) start a floor too, marker or not.
    let mut gapped = series(47, 150, &Noise::default(), |minute, rng, s| {
        let rtt = if minute < 60 { 12.0 } else { 85.0 };
        relay(s).rtt_ms = Some(rng.normal(rtt, 3.0) as f32);
        relay(s).jitter_ms = Some(2.0);
    });
    gapped.retain(|s| !(60..75).contains(&((s.at_ms - DAY0_MS) / MINUTE_MS)));
    let timeline = judge(&gapped);
    assert!(
        of(&timeline, "relay.rtt").is_empty(),
        "{:#?}",
        ids(&timeline)
    );
}

#[test]
fn the_rtt_floor_is_a_sliding_minimum_over_the_window() {
    let mut floor = episodes::RttFloor::new(3);
    let with = |rtt: Option<f32>| Sample {
        relay: Some(RelaySample {
            rtt_ms: rtt,
            ..RelaySample::default()
        }),
        ..Sample::default()
    };
    let mut floors = Vec::new();
    for rtt in [
        Some(5.0),
        Some(3.0),
        Some(4.0),
        Some(6.0),
        Some(7.0),
        None,
        None,
        None,
    ] {
        floor.push(&with(rtt));
        floors.push(floor.floor());
    }
    assert_eq!(
        floors,
        [
            Some(5.0),
            Some(3.0),
            Some(3.0),
            Some(3.0),
            Some(4.0),
            Some(6.0),
            Some(7.0),
            None
        ]
    );
    floor.push(&with(Some(9.0)));
    floor.reset();
    assert_eq!(floor.floor(), None);
}
