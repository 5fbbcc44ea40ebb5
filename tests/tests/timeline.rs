//! End-to-end timeline: a real agent sampling its link and path every
//! second (test policy), through the userspace impairment proxy in front of
//! a real relay, and a technician reading the episodes with
//! `deskside timeline`.

use std::time::{Duration, Instant};

use deskside_agent::timeline::ring::Ring;
use deskside_tests::impair::{ImpairProxy, Impairment, LinkShape};
use deskside_tests::{wait_for, Agent, Console, Proc, ProxiedRelay, Relay, World};
use serde_json::Value;

/// A relay behind an impairment proxy, one enrolled agent reaching it
/// through the proxy, monitoring every second.
struct Lab {
    world: World,
    relay: Option<Relay>,
    admin: Console,
    agent: Agent,
    device: String,
    proxy: ImpairProxy,
    _runtime: tokio::runtime::Runtime,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

impl Lab {
    fn new() -> Self {
        let mut world = World::new();
        let ProxiedRelay {
            relay,
            proxy,
            runtime,
        } = world.relay_behind_proxy();
        let admin = world.console("admin");
        admin.login_admin(&relay);
        admin
            .run(&["policy", "set", "monitoring_interval", "1"])
            .ok();
        // The test machine is shared by parallel builds: its processor
        // pressure is real but not what these tests are about, and a busy
        // processor rightly explains path timing upstream.
        admin
            .run(&[
                "policy",
                "set",
                "thresholds.cpu_pressure_some_avg60_percent",
                "100",
            ])
            .ok();
        admin
            .run(&["policy", "set", "thresholds.cpu_usage_percent", "100"])
            .ok();
        let agent = world.agent("laptop");
        let device = agent.enroll(&admin.enroll_token(1, "10m"));
        Self {
            world,
            relay: Some(relay),
            admin,
            agent,
            device,
            proxy,
            _runtime: runtime,
        }
    }

    /// A new relay on the same port and data directory, behind the same
    /// proxy.
    fn restart_relay(&mut self) {
        let public = self.proxy.local_addr().to_string();
        let port = self.proxy.upstream().port();
        self.relay = Some(
            self.world
                .relay_with(Some(port), &["--public-addr", &public]),
        );
    }

    fn run_agent(&mut self) -> Proc {
        let agent = self.agent.clone();
        let proc = self.world.run_agent(&agent);
        self.admin
            .wait_status(&self.device, "online", Duration::from_secs(60));
        proc
    }

    /// `deskside timeline DEVICE --since WINDOW --json --samples`, split by
    /// record type.
    fn timeline(&self, since: &str) -> Timeline {
        let lines = self
            .admin
            .run(&[
                "timeline",
                &self.device,
                "--since",
                since,
                "--json",
                "--samples",
            ])
            .ok()
            .json_lines();
        let of = |kind: &str| -> Vec<Value> {
            lines
                .iter()
                .filter(|l| l["type"] == kind)
                .cloned()
                .collect()
        };
        Timeline {
            header: of("timeline")
                .into_iter()
                .next()
                .expect("a timeline record"),
            episodes: of("episode"),
            samples: of("sample"),
        }
    }

    /// Waits until the relay holds at least `n` samples of the last
    /// `since`.
    fn wait_samples(&self, n: usize, since: &str, timeout: Duration) -> Timeline {
        wait_for(
            &format!("{n} timeline samples on the relay"),
            timeout,
            || {
                let timeline = self.timeline(since);
                (timeline.samples.len() >= n).then_some(timeline)
            },
        )
    }
}

#[derive(Debug)]
struct Timeline {
    header: Value,
    episodes: Vec<Value>,
    samples: Vec<Value>,
}

impl Timeline {
    fn episodes_of(&self, id: &str) -> Vec<&Value> {
        self.episodes.iter().filter(|e| e["id"] == id).collect()
    }
}

#[test]
fn a_slow_path_is_one_isp_episode_and_the_technician_sees_it() {
    let mut lab = Lab::new();
    let status = lab.agent.run(&["status"]).ok().stdout;
    assert!(status.contains("Monitoring: on"), "{status}");
    let mut agent = lab.run_agent();
    let before = lab.wait_samples(8, "10m", Duration::from_secs(90));
    assert_eq!(before.header["monitoring"], true);
    assert!(before.episodes.is_empty(), "{:#?}", before.episodes);
    // Every sample read the relay path from the presence connection.
    assert!(
        before
            .samples
            .iter()
            .all(|s| s["relay"]["rtt_ms"].is_number()),
        "{:#?}",
        before.samples
    );

    // 250 ms each way for 20 s: the round trip to the relay is ~500 ms.
    let impaired_at = now_ms();
    lab.proxy.set(Impairment::symmetric(
        LinkShape::default().delay(Duration::from_millis(250)),
    ));
    let hold = Instant::now();
    wait_for("20 s of impairment", Duration::from_secs(30), || {
        (hold.elapsed() >= Duration::from_secs(20)).then_some(())
    });
    lab.proxy.set(Impairment::default());
    let cleared_at = now_ms();

    // QUIC's smoothed round trip falls back over several keep-alives; the
    // episode ends once two samples are clear again.
    let after = wait_for(
        "the relay.rtt episode to end",
        Duration::from_secs(180),
        || {
            let timeline = lab.timeline("15m");
            let rtt = timeline.episodes_of("relay.rtt");
            (rtt.len() == 1 && rtt[0]["end_ms"].is_number()).then_some(timeline)
        },
    );
    let rtt = after.episodes_of("relay.rtt");
    assert_eq!(rtt.len(), 1, "{:#?}", after.episodes);
    let episode = rtt[0];
    assert_eq!(episode["segment"], "isp", "{episode:#}");
    let start = episode["start_ms"].as_i64().expect("start");
    let end = episode["end_ms"].as_i64().expect("end");
    eprintln!(
        "relay.rtt episode: starts {} ms after the impairment, ends {} ms after it was lifted",
        start - impaired_at,
        end - cleared_at
    );
    // Starts after the impairment did, within the few keep-alives QUIC's
    // smoothed estimate needs to cross 100 ms; ends after it was lifted.
    assert!(
        start >= impaired_at - 1_000 && start <= impaired_at + 15_000,
        "episode starts {} ms after the impairment",
        start - impaired_at
    );
    assert!(
        end >= cleared_at && end <= cleared_at + 120_000,
        "episode ends {} ms after the impairment was lifted",
        end - cleared_at
    );
    // Nothing upstream was blamed: only the path to the relay.
    for e in &after.episodes {
        assert_eq!(e["segment"], "isp", "{:#?}", after.episodes);
    }

    // Asked around the time the employee gave (RFC 3339 here; HH:MM reads
    // the device's local time), the episode is there and marked.
    let at = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + Duration::from_millis(start as u64 + 5_000),
    )
    .to_string();
    let around = lab
        .admin
        .run(&["timeline", &lab.device, "--at", &at, "--json"])
        .ok()
        .json_lines();
    // (RFC 3339 to the second.)
    assert_eq!(
        around[0]["at_ms"],
        (start + 5_000) / 1000 * 1000,
        "{around:#?}"
    );
    assert!(
        around
            .iter()
            .any(|l| l["type"] == "episode" && l["id"] == "relay.rtt" && l["start_ms"] == start),
        "{around:#?}"
    );

    // The technician's text view and chart, and the fleet view.
    let text = lab
        .admin
        .run(&["timeline", &lab.device, "--since", "15m"])
        .ok()
        .stdout;
    eprintln!("{text}");
    assert!(
        text.contains("The round trip to the relay was long"),
        "{text}"
    );
    assert!(text.contains("relay RTT ms"), "{text}");
    let svg = lab.world.path("timeline.svg");
    lab.admin
        .run(&[
            "timeline",
            &lab.device,
            "--since",
            "15m",
            "--svg",
            svg.to_str().expect("path"),
        ])
        .ok();
    let svg = std::fs::read_to_string(&svg).expect("svg written");
    assert!(svg.starts_with("<svg") && svg.contains("relay RTT ms"));
    let fleet = lab
        .admin
        .run(&["timeline", "--all", "--since", "1h", "--json"])
        .ok()
        .json_lines();
    let row = fleet
        .iter()
        .find(|r| r["type"] == "device_timeline" && r["device"] == lab.device.as_str())
        .unwrap_or_else(|| panic!("the device is listed: {fleet:#?}"));
    assert!(row["segments"]["isp"].as_u64().unwrap_or(0) >= 1, "{row}");
    assert!(fleet
        .iter()
        .any(|r| r["type"] == "group_segment" && r["segment"] == "isp"));
    agent.terminate();
}

#[test]
fn a_relay_restart_loses_no_sample_and_monitoring_off_stops_sampling() {
    let mut lab = Lab::new();
    let mut agent = lab.run_agent();
    lab.wait_samples(5, "10m", Duration::from_secs(90));
    // The relay dies; the agent keeps sampling the connection it believes
    // alive, and those uploads are lost with the relay.
    let relay = lab.relay.take().expect("relay");
    let mut relay_proc = relay.proc;
    relay_proc.kill();
    let killed_at = now_ms();
    let state_dir = lab.agent.state_dir.clone();
    wait_for(
        "three samples taken while the relay is down",
        Duration::from_secs(30),
        || {
            let during = Ring::read_all(&state_dir)
                .iter()
                .filter(|r| r.sample.at_ms > killed_at)
                .count();
            (during >= 3).then_some(())
        },
    );
    lab.restart_relay();
    let restarted_at = now_ms();
    // Every sample the agent took before the restart reaches the relay.
    let taken: Vec<i64> = Ring::read_all(&state_dir)
        .iter()
        .map(|r| r.sample.at_ms)
        .filter(|at| *at < restarted_at)
        .collect();
    let during_outage = taken.iter().filter(|at| **at > killed_at).count();
    assert!(during_outage >= 3, "{during_outage}");
    let stored = wait_for(
        "every sample taken before the restart on the relay",
        Duration::from_secs(90),
        || {
            let timeline = lab.timeline("10m");
            let on_relay: std::collections::BTreeSet<i64> = timeline
                .samples
                .iter()
                .filter_map(|s| s["at_ms"].as_i64())
                .collect();
            taken
                .iter()
                .all(|at| on_relay.contains(at))
                .then_some(on_relay)
        },
    );
    assert!(stored.len() >= taken.len());

    // The organisation switches monitoring off: the agent stops sampling
    // and tells the employee.
    lab.admin.run(&["policy", "set", "monitoring", "off"]).ok();
    let status = wait_for(
        "the agent to apply the policy",
        Duration::from_secs(30),
        || {
            let status = lab.agent.run(&["status"]).ok().stdout;
            status.contains("Monitoring: off").then_some(status)
        },
    );
    assert!(status.contains("earlier samples kept here"), "{status}");
    let stopped_at = now_ms();
    let count_after = || {
        Ring::read_all(&state_dir)
            .iter()
            .filter(|r| r.sample.at_ms > stopped_at + 1_500)
            .count()
    };
    // Several intervals later, nothing new.
    let pause = Instant::now();
    wait_for("five sample intervals", Duration::from_secs(10), || {
        (pause.elapsed() >= Duration::from_secs(5)).then_some(())
    });
    assert_eq!(count_after(), 0);
    let history = lab.agent.run(&["history", "--json"]).ok().json_lines();
    let monitoring = history
        .iter()
        .find(|l| l["type"] == "monitoring")
        .expect("a monitoring line");
    assert_eq!(monitoring["monitoring"], false);
    assert!(monitoring["kept_samples"].as_u64().unwrap_or(0) >= taken.len() as u64);
    agent.terminate();
}

/// Loss is seen through the path probes the relay echoes (QUIC's
/// keep-alives alone are too few): clean, 30 s of 25 % loss each way on
/// the path to the relay, clean again, sampling every 2 s. One
/// `relay.loss` episode, on the ISP segment (the gateway is not behind the
/// proxy), starting and ending close to the impairment.
///
/// 25 %, not 10 %: each sample has 16 probes, and at 10 % each way (about
/// 19 % of round trips lost) one sample in six reads 0 or 1 lost by chance,
/// which delays the episode's start by an interval (with 20 probes it was
/// one in twelve, and it happened in CI: a sample at +2.3 s lost 1 of 20).
/// At 25 % each way (44 % of round trips) that chance is 0.14 % a sample.
#[test]
fn a_lossy_period_is_one_relay_loss_episode_seen_by_the_probes() {
    const INTERVAL_MS: i64 = 2_000;
    let mut lab = Lab::new();
    lab.admin
        .run(&["policy", "set", "monitoring_interval", "2"])
        .ok();
    let mut agent = lab.run_agent();
    let before = lab.wait_samples(8, "10m", Duration::from_secs(120));
    assert!(before.episodes.is_empty(), "{:#?}", before.episodes);
    // The probes came back: every recent sample has 16 probes' worth of
    // packets and a per-probe jitter.
    let last = before.samples.last().expect("a sample");
    assert!(
        last["relay"]["sent_packets"].as_u64().unwrap_or(0) >= 16,
        "{last:#}"
    );
    assert!(last["relay"]["jitter_ms"].is_number(), "{last:#}");

    let impaired_at = now_ms();
    lab.proxy
        .set(Impairment::symmetric(LinkShape::default().loss(0.25)));
    let hold = Instant::now();
    wait_for("30 s of loss", Duration::from_secs(40), || {
        (hold.elapsed() >= Duration::from_secs(30)).then_some(())
    });
    lab.proxy.set(Impairment::default());
    let cleared_at = now_ms();

    let after = wait_for(
        "the relay.loss episode to end",
        Duration::from_secs(120),
        || {
            let timeline = lab.timeline("15m");
            let loss = timeline.episodes_of("relay.loss");
            (!loss.is_empty() && loss.iter().all(|e| e["end_ms"].is_number())).then_some(timeline)
        },
    );
    // What each sample saw, relative to the impairment (shown on failure).
    for s in &after.samples {
        let at = s["at_ms"].as_i64().unwrap_or(0);
        if at >= impaired_at - 5_000 {
            eprintln!(
                "sample +{} ms (cleared at +{} ms): lost {} of {}",
                at - impaired_at,
                cleared_at - impaired_at,
                s["relay"]["lost_packets"],
                s["relay"]["sent_packets"]
            );
        }
    }
    let loss = after.episodes_of("relay.loss");
    assert_eq!(loss.len(), 1, "one episode: {:#?}", after.episodes);
    let episode = loss[0];
    assert_eq!(episode["segment"], "isp", "{episode:#}");
    for e in &after.episodes {
        assert_eq!(e["segment"], "isp", "{:#?}", after.episodes);
    }
    let start = episode["start_ms"].as_i64().expect("start");
    let end = episode["end_ms"].as_i64().expect("end");
    eprintln!(
        "relay.loss episode: starts {} ms after the impairment, ends {} ms after it was lifted (interval {INTERVAL_MS} ms)",
        start - impaired_at,
        end - cleared_at
    );
    // A sample's time is when its probe burst started: the first sample
    // inside the impairment (and the first after it) comes within one
    // interval, plus 1 s for the shared test machine's scheduling (a
    // sample's reading can take that long when other tests run).
    let slack = INTERVAL_MS + 1_000;
    assert!(
        (start - impaired_at).abs() <= slack,
        "episode starts {} ms after the impairment",
        start - impaired_at
    );
    assert!(
        (end - cleared_at).abs() <= slack,
        "episode ends {} ms after the impairment was lifted",
        end - cleared_at
    );
    agent.terminate();
}

/// A bulk upload sharing the agent's path: it keeps `queued` worth of the
/// link's rate in the bottleneck's queue, as a sender whose window is that
/// much larger than the path needs does (which is how a queue bloats), the
/// proxy's forwarded count standing in for its acknowledgements. Its
/// datagrams are QUIC long-header packets of no connection the relay
/// knows, which quinn drops unanswered. Returns the bytes it sent.
fn bulk_upload(
    proxy: &ImpairProxy,
    rate_bps: u64,
    queued: Duration,
    stop: &std::sync::atomic::AtomicBool,
) -> u64 {
    const DATAGRAM: usize = 1_200;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind the upload's socket");
    socket
        .connect(proxy.local_addr())
        .expect("point the upload at the proxy");
    // Handshake packet (0xE0), QUIC v1, an 8-byte destination id nobody
    // issued, no source id, no payload length: never a connection.
    let mut datagram = [0u8; DATAGRAM];
    datagram[..7].copy_from_slice(&[0xE0, 0, 0, 0, 1, 8, 0xAB]);
    let bytes_per_s = rate_bps as f64 / 8.0;
    let window = (bytes_per_s * queued.as_secs_f64()) as u64;
    let started = Instant::now();
    let mut sent = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let up = lab_queue(proxy);
        // Never more than the window ahead of the link's own pace either, so
        // datagrams the proxy has not read yet cannot pile up behind it.
        let paced = window + (bytes_per_s * started.elapsed().as_secs_f64()) as u64;
        if up < window && sent < paced {
            if socket.send(&datagram).is_ok() {
                sent += DATAGRAM as u64;
            }
            continue;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    sent
}

/// Bytes inside the proxy on the way to the relay (queued or being sent).
fn lab_queue(proxy: &ImpairProxy) -> u64 {
    let up = proxy.stats().up;
    up.received_bytes.saturating_sub(up.forwarded_bytes)
}

/// The second run: a bloated queue. The path to the relay becomes
/// an 8 Mbit/s link with a deep (1 MiB) buffer, and a bulk upload keeps
/// 85 ms of it queued for 20 s (the 2 minutes, compressed like the
/// loss test's) while the agent samples every 2 s. The agent's probes wait
/// behind the upload: about 86 ms where the path's usual round trip is
/// 1 ms. Under the 100 ms absolute limit, so only the floor rule sees it
/// (this test fails without it): one `relay.rtt` episode, ISP, its bounds
/// within one interval of the upload's.
///
/// Statistically: the buffer never overflows (checked), so there is no
/// loss; the queue holds within a datagram of 85 ms unless the upload's
/// thread stalls, and a sample only reads clear (≤ 49 ms) if it stalls for
/// most of a 400 ms probe burst, and an episode only closes after two
/// such samples in a row.
#[test]
fn a_bloated_queue_is_one_isp_rtt_episode_within_an_interval() {
    const INTERVAL_MS: i64 = 2_000;
    const RATE_BPS: u64 = 8_000_000;
    let mut lab = Lab::new();
    lab.admin
        .run(&["policy", "set", "monitoring_interval", "2"])
        .ok();
    let mut agent = lab.run_agent();
    let before = lab.wait_samples(6, "10m", Duration::from_secs(120));
    assert!(before.episodes.is_empty(), "{:#?}", before.episodes);

    let link = LinkShape::default().rate_bps(RATE_BPS).queue_bytes(1 << 20);
    lab.proxy.set(Impairment::up_only(link));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (impaired_at, cleared_at, uploaded) = std::thread::scope(|scope| {
        let upload =
            scope.spawn(|| bulk_upload(&lab.proxy, RATE_BPS, Duration::from_millis(85), &stop));
        let impaired_at = now_ms();
        let hold = Instant::now();
        wait_for("20 s of a bloated queue", Duration::from_secs(30), || {
            (hold.elapsed() >= Duration::from_secs(20)).then_some(())
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let uploaded = upload.join().expect("the upload's thread");
        (impaired_at, now_ms(), uploaded)
    });
    // The queue drains in 85 ms; then the link is clean again.
    wait_for("the queue to drain", Duration::from_secs(10), || {
        (lab_queue(&lab.proxy) == 0).then_some(())
    });
    let stats = lab.proxy.stats();
    lab.proxy.set(Impairment::default());
    eprintln!(
        "upload: {uploaded} bytes in {} ms ({:.1} Mbit/s); proxy up: {:?}",
        cleared_at - impaired_at,
        uploaded as f64 * 8.0 / ((cleared_at - impaired_at) as f64 / 1000.0) / 1e6,
        stats.up
    );
    assert_eq!(
        stats.up.dropped_queue, 0,
        "the deep buffer never overflowed"
    );

    let after = wait_for(
        "the relay.rtt episode to end",
        Duration::from_secs(60),
        || {
            let timeline = lab.timeline("15m");
            let rtt = timeline.episodes_of("relay.rtt");
            (!rtt.is_empty() && rtt.iter().all(|e| e["end_ms"].is_number())).then_some(timeline)
        },
    );
    for s in &after.samples {
        let at = s["at_ms"].as_i64().unwrap_or(0);
        if at >= impaired_at - 5_000 {
            eprintln!(
                "sample +{} ms (cleared at +{} ms): relay round trip {} ms, jitter {} ms, lost {} of {}",
                at - impaired_at,
                cleared_at - impaired_at,
                s["relay"]["rtt_ms"],
                s["relay"]["jitter_ms"],
                s["relay"]["lost_packets"],
                s["relay"]["sent_packets"]
            );
        }
    }
    // One episode for the impairment, and nothing else.
    assert_eq!(after.episodes.len(), 1, "{:#?}", after.episodes);
    let episode = &after.episodes[0];
    assert_eq!(episode["id"], "relay.rtt", "{episode:#}");
    assert_eq!(episode["segment"], "isp", "{episode:#}");
    let threshold = episode["evidence"][0]["threshold"].as_str().unwrap_or("");
    assert!(
        threshold.contains("queued (bufferbloat grade C)"),
        "the floor rule saw it: {episode:#}"
    );
    let start = episode["start_ms"].as_i64().expect("start");
    let end = episode["end_ms"].as_i64().expect("end");
    eprintln!(
        "relay.rtt episode: starts {} ms after the upload began, ends {} ms after it stopped (interval {INTERVAL_MS} ms); {threshold}",
        start - impaired_at,
        end - cleared_at
    );
    // As in the loss test: within one interval, plus 1 s for the shared
    // machine's scheduling.
    let slack = INTERVAL_MS + 1_000;
    assert!(
        (start - impaired_at).abs() <= slack,
        "episode starts {} ms after the upload began",
        start - impaired_at
    );
    assert!(
        (end - cleared_at).abs() <= slack,
        "episode ends {} ms after the upload stopped",
        end - cleared_at
    );
    agent.terminate();
}
