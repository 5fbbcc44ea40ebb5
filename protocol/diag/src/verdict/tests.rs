//! Classifier tests. They read as data: a healthy snapshot, one change, the
//! expected verdict.

use super::*;
use crate::snapshot::{Band, ConnectivityLevel, DnsLookup, Grade, Probe, Temperature};
use crate::testkit::*;

type Edit = fn(&mut Snapshot);

/// One threshold of one rule: a value just on the clean side, one just on
/// the faulty side, and the finding the faulty side gives.
struct Boundary {
    finding: &'static str,
    /// What the clean side gives: no such finding, or (for a step up in
    /// severity) the same finding one level lower.
    clean_gives: Option<Severity>,
    segment: Segment,
    severity: Severity,
    clean: Edit,
    faulty: Edit,
}

fn boundaries() -> Vec<Boundary> {
    use Segment::*;
    use Severity::*;
    let b = |finding, segment, severity, clean: Edit, faulty: Edit| Boundary {
        finding,
        clean_gives: None,
        segment,
        severity,
        clean,
        faulty,
    };
    // A step from warning to critical within one finding.
    let step = |finding, segment, clean: Edit, faulty: Edit| Boundary {
        finding,
        clean_gives: Some(Warning),
        segment,
        severity: Critical,
        clean,
        faulty,
    };
    vec![
        // ----- Device
        b(
            "device.cpu_busy",
            Device,
            Warning,
            |s| pressure(s).cpu_some_avg60 = Some(25.0),
            |s| pressure(s).cpu_some_avg60 = Some(25.1),
        ),
        b(
            "device.cpu_busy",
            Device,
            Warning,
            |s| device(s).cpu.usage_percent = Some(90.0),
            |s| device(s).cpu.usage_percent = Some(90.1),
        ),
        b(
            "device.memory_pressure",
            Device,
            Warning,
            |s| pressure(s).memory_full_avg10 = Some(5.0),
            |s| pressure(s).memory_full_avg10 = Some(5.1),
        ),
        b(
            "device.memory_pressure",
            Device,
            Warning,
            |s| {
                device(s).memory.available_bytes = 16 * GIB / 10 + GIB / 100; // 10.06 %
                device(s).memory.swap_used_bytes = GIB;
            },
            |s| {
                device(s).memory.available_bytes = 16 * GIB / 10 - GIB / 100; // 9.94 %
                device(s).memory.swap_used_bytes = GIB;
            },
        ),
        b(
            "device.memory_pressure",
            Device,
            Warning,
            |s| device(s).memory.available_bytes = GIB, // 6 % available but no swap in use
            |s| {
                device(s).memory.available_bytes = GIB;
                device(s).memory.swap_used_bytes = 1;
            },
        ),
        b(
            "device.io_pressure",
            Device,
            Warning,
            |s| pressure(s).io_full_avg60 = Some(10.0),
            |s| pressure(s).io_full_avg60 = Some(10.1),
        ),
        // Free share at the boundary, with under 5 GiB free: 40 GiB disk.
        b(
            "device.disk_low",
            Device,
            Warning,
            |s| {
                system_disk(s).total_bytes = 40 * GIB;
                system_disk(s).available_bytes = 4 * GIB; // exactly 10 %
            },
            |s| {
                system_disk(s).total_bytes = 40 * GIB;
                system_disk(s).available_bytes = 4 * GIB - 1;
            },
        ),
        // Free space at the boundary, with under 10 % free: 60 GiB disk.
        b(
            "device.disk_low",
            Device,
            Warning,
            |s| {
                system_disk(s).total_bytes = 60 * GIB;
                system_disk(s).available_bytes = 5 * GIB; // 8.3 %, exactly 5 GiB
            },
            |s| {
                system_disk(s).total_bytes = 60 * GIB;
                system_disk(s).available_bytes = 5 * GIB - 1;
            },
        ),
        b(
            "device.disk_full",
            Device,
            Critical,
            |s| system_disk(s).available_bytes = GIB,
            |s| system_disk(s).available_bytes = GIB - 1,
        ),
        b(
            "device.temperature_high",
            Device,
            Warning,
            |s| temperatures(s)[0].celsius = 95.0, // critical 100 − 5
            |s| temperatures(s)[0].celsius = 95.1,
        ),
        b(
            "device.temperature_high",
            Device,
            Warning,
            |s| *temperatures(s) = vec![sensor(88.0, Some(93.0))],
            |s| *temperatures(s) = vec![sensor(88.1, Some(93.0))],
        ),
        b(
            "device.temperature_high",
            Device,
            Warning,
            |s| *temperatures(s) = vec![sensor(95.0, None)],
            |s| *temperatures(s) = vec![sensor(95.1, None)],
        ),
        step(
            "device.temperature_high",
            Device,
            |s| *temperatures(s) = vec![sensor(84.9, Some(85.0))],
            |s| *temperatures(s) = vec![sensor(85.0, Some(85.0))],
        ),
        b(
            "device.battery_worn",
            Device,
            Info,
            |s| battery(s).health_percent = Some(80.0),
            |s| battery(s).health_percent = Some(79.9),
        ),
        // ----- Link
        b(
            "wifi.signal_fair",
            HomeNetwork,
            Info,
            |s| wifi(s).signal_dbm = Some(-67.0),
            |s| wifi(s).signal_dbm = Some(-67.1),
        ),
        b(
            "wifi.signal_weak",
            HomeNetwork,
            Warning,
            |s| wifi(s).signal_dbm = Some(-75.0),
            |s| wifi(s).signal_dbm = Some(-75.1),
        ),
        b(
            "wifi.signal_unusable",
            HomeNetwork,
            Critical,
            |s| wifi(s).signal_dbm = Some(-85.0),
            |s| wifi(s).signal_dbm = Some(-85.1),
        ),
        b(
            "wifi.snr_low",
            HomeNetwork,
            Warning,
            |s| wifi(s).snr_db = Some(25.0),
            |s| wifi(s).snr_db = Some(24.9),
        ),
        b(
            "wifi.snr_low",
            HomeNetwork,
            Warning,
            |s| {
                wifi(s).snr_db = None; // computed: −60 − (−85) = 25 dB
                wifi(s).signal_dbm = Some(-60.0);
                wifi(s).noise_dbm = Some(-85.0);
            },
            |s| {
                wifi(s).snr_db = None;
                wifi(s).signal_dbm = Some(-60.0);
                wifi(s).noise_dbm = Some(-84.9);
            },
        ),
        b(
            "wifi.retries_high",
            HomeNetwork,
            Warning,
            |s| wifi(s).tx_retries_percent = Some(20.0),
            |s| wifi(s).tx_retries_percent = Some(20.1),
        ),
        b(
            "wifi.channel_busy",
            HomeNetwork,
            Warning,
            |s| wifi(s).channel_busy_percent = Some(50.0),
            |s| wifi(s).channel_busy_percent = Some(50.1),
        ),
        b(
            "wifi.band_2_4ghz",
            HomeNetwork,
            Info,
            |s| {
                wifi(s).band = Some(Band::Ghz2_4);
                wifi(s).signal_dbm = Some(-67.0);
            },
            |s| {
                wifi(s).band = Some(Band::Ghz2_4);
                wifi(s).signal_dbm = Some(-67.1);
            },
        ),
        b(
            "wifi.band_2_4ghz",
            HomeNetwork,
            Info,
            |s| {
                wifi(s).band = None; // 5 GHz from the frequency
                wifi(s).freq_mhz = Some(5180.0);
                wifi(s).signal_dbm = Some(-70.0);
            },
            |s| {
                wifi(s).band = None; // 2.4 GHz from the frequency
                wifi(s).freq_mhz = Some(2437.0);
                wifi(s).signal_dbm = Some(-70.0);
            },
        ),
        b("ethernet.slow_link", HomeNetwork, Info, on_ethernet, |s| {
            on_ethernet(s);
            network(s).interfaces[0].speed_mbps = Some(999);
        }),
        b(
            "link.interface_errors",
            HomeNetwork,
            Info,
            |s| network(s).interfaces[0].rx_errors = Some(0),
            |s| network(s).interfaces[0].rx_errors = Some(1),
        ),
        // ----- Gateway
        b(
            "gateway.unreachable",
            HomeNetwork,
            Critical,
            |s| {
                gateway(s).received = 1;
                path(s).udp_ok = false;
            },
            |s| {
                gateway(s).received = 0;
                path(s).udp_ok = false;
            },
        ),
        b(
            "gateway.loss",
            HomeNetwork,
            Warning,
            |s| gateway(s).received = 198,
            |s| gateway(s).received = 197,
        ),
        step(
            "gateway.loss",
            HomeNetwork,
            |s| gateway(s).received = 190,
            |s| gateway(s).received = 189,
        ),
        b(
            "gateway.rtt_high",
            HomeNetwork,
            Warning,
            |s| gateway(s).rtt.as_mut().unwrap().median_ms = 20.0,
            |s| gateway(s).rtt.as_mut().unwrap().median_ms = 20.1,
        ),
        // ----- Configuration
        b(
            "config.no_default_route",
            Configuration,
            Critical,
            |_| {},
            |s| network(s).default_route = None,
        ),
        b(
            "dns.partial_failure",
            Configuration,
            Warning,
            |s| {
                dns(s)
                    .lookups
                    .push(lookup("intranet.example.org", Some(30.0), None))
            },
            |s| {
                dns(s)
                    .lookups
                    .push(lookup("intranet.example.org", None, Some("NXDOMAIN")))
            },
        ),
        b(
            "dns.failing",
            Configuration,
            Critical,
            |s| dns(s).lookups = vec![lookup("relay.example.org", Some(30.0), None)],
            |s| {
                dns(s).lookups = vec![lookup(
                    "relay.example.org",
                    None,
                    Some("no answer within 3 s"),
                )]
            },
        ),
        b(
            "dns.slow",
            Configuration,
            Warning,
            |s| dns(s).lookups[0].duration_ms = Some(200.0),
            |s| dns(s).lookups[0].duration_ms = Some(200.1),
        ),
        b(
            "clock.offset",
            Configuration,
            Warning,
            |s| clock(s).offset_ms = 5_000,
            |s| clock(s).offset_ms = 5_001,
        ),
        b(
            "clock.offset",
            Configuration,
            Warning,
            |s| clock(s).offset_ms = -5_000,
            |s| clock(s).offset_ms = -5_001,
        ),
        step(
            "clock.offset",
            Configuration,
            |s| clock(s).offset_ms = 60_000,
            |s| clock(s).offset_ms = 60_001,
        ),
        b(
            "config.proxy",
            Configuration,
            Info,
            |s| network(s).proxy.https = Some(String::new()),
            |s| network(s).proxy.https = Some("http://proxy.corp:3128".to_owned()),
        ),
        b(
            "config.vpn",
            Configuration,
            Info,
            |s| network(s).relay_via_vpn = Some(false),
            |s| network(s).relay_via_vpn = Some(true),
        ),
        b(
            "path.udp_blocked",
            Configuration,
            Critical,
            |_| {},
            |s| {
                fail_udp(s);
                path(s).tcp_reachable = Some(true);
            },
        ),
        b(
            "path.relay_not_answering",
            Service,
            Critical,
            |s| path(s).last_connected_ms = Some(s.taken_at_ms - 60_000),
            |s| {
                fail_udp(s);
                path(s).tcp_reachable = Some(true);
                path(s).last_connected_ms = Some(s.taken_at_ms - 60_000);
            },
        ),
        b(
            "path.relay_name_unresolved",
            Service,
            Critical,
            |_| {},
            |s| {
                fail_udp(s);
                path(s).relay_resolved = Some(false);
            },
        ),
        // ----- ISP
        b(
            "path.loss",
            Isp,
            Warning,
            |s| path(s).probes_received = 198,
            |s| path(s).probes_received = 197,
        ),
        step(
            "path.loss",
            Isp,
            |s| path(s).probes_received = 190,
            |s| path(s).probes_received = 189,
        ),
        b(
            "path.rtt_high",
            Isp,
            Warning,
            |s| idle_rtt(s).median_ms = 100.0,
            |s| idle_rtt(s).median_ms = 100.1,
        ),
        step(
            "path.rtt_high",
            Isp,
            |s| idle_rtt(s).median_ms = 150.0,
            |s| idle_rtt(s).median_ms = 150.1,
        ),
        b(
            "vpn.rtt_high",
            Configuration,
            Warning,
            |s| {
                network(s).relay_via_vpn = Some(true);
                idle_rtt(s).median_ms = 100.0;
            },
            |s| {
                network(s).relay_via_vpn = Some(true);
                idle_rtt(s).median_ms = 100.1;
            },
        ),
        b(
            "path.jitter_high",
            Isp,
            Warning,
            |s| idle_rtt(s).jitter_ms = 30.0,
            |s| idle_rtt(s).jitter_ms = 30.1,
        ),
        b(
            "path.bufferbloat",
            Isp,
            Warning,
            |s| path(s).bufferbloat = Some(Grade::B),
            |s| path(s).bufferbloat = Some(Grade::C),
        ),
        step(
            "path.bufferbloat",
            Isp,
            |s| path(s).bufferbloat = Some(Grade::C),
            |s| path(s).bufferbloat = Some(Grade::D),
        ),
        b(
            "path.bufferbloat",
            Isp,
            Warning,
            |s| {
                path(s).bufferbloat = None; // graded here from the added latency
                path(s).added_latency_ms = Some(59.9);
            },
            |s| {
                path(s).bufferbloat = None;
                path(s).added_latency_ms = Some(60.0);
            },
        ),
        b(
            "path.download_slow",
            Isp,
            Warning,
            |s| download(s).mbps = 1.5,
            |s| download(s).mbps = 1.49,
        ),
        b(
            "path.upload_slow",
            Isp,
            Warning,
            |s| upload(s).mbps = 1.5,
            |s| upload(s).mbps = 1.49,
        ),
        // ----- Service
        b(
            "service.relay_slow",
            Service,
            Warning,
            |s| path(s).connect_ms = Some(2000.0),
            |s| path(s).connect_ms = Some(2000.1),
        ),
        b(
            "service.relay_unresponsive",
            Service,
            Critical,
            |s| path(s).probes_received = 1,
            |s| path(s).probes_received = 0,
        ),
        // ----- The OS's own verdict (Windows' NCSI) against the relay's answer
        b(
            "config.os_no_internet_false",
            Configuration,
            Warning,
            |s| s.os_connectivity = Some(Probe::Measured(ncsi(ConnectivityLevel::InternetAccess))),
            |s| s.os_connectivity = Some(Probe::Measured(ncsi(ConnectivityLevel::LocalAccess))),
        ),
    ]
}

fn sensor(celsius: f64, critical_celsius: Option<f64>) -> Temperature {
    Temperature {
        label: "Package id 0".to_owned(),
        celsius,
        critical_celsius,
    }
}

fn lookup(name: &str, duration_ms: Option<f64>, error: Option<&str>) -> DnsLookup {
    DnsLookup {
        name: name.to_owned(),
        duration_ms,
        error: error.map(str::to_owned),
    }
}

/// No QUIC connection, as the agent reports it.
fn fail_udp(s: &mut Snapshot) {
    let path = path(s);
    path.udp_ok = false;
    path.udp_error = Some("timed out".to_owned());
    path.connect_ms = None;
    path.idle_rtt = None;
    path.probes_sent = 0;
    path.probes_received = 0;
    path.download = Probe::unknown("no QUIC connection to the relay");
    path.upload = Probe::unknown("no QUIC connection to the relay");
    path.added_latency_ms = None;
    path.bufferbloat = None;
    s.clock = Probe::unknown("no QUIC connection to the relay");
    dns(s).relay_reachable = Some(false);
}

#[test]
fn every_threshold_is_judged_on_the_right_side() {
    for case in boundaries() {
        let clean = judged(&healthy().with(case.clean));
        assert_eq!(
            clean.finding(case.finding).map(|f| f.severity),
            case.clean_gives,
            "{} on the clean side: {:#?}",
            case.finding,
            clean.findings
        );
        let faulty = judged(&healthy().with(case.faulty));
        let finding = faulty.finding(case.finding).unwrap_or_else(|| {
            panic!(
                "{} missing on the faulty side: {:#?}",
                case.finding, faulty.findings
            )
        });
        assert_eq!(
            (finding.segment, finding.severity),
            (case.segment, case.severity),
            "{}",
            case.finding
        );
        assert!(
            !finding.evidence.is_empty(),
            "{} has no evidence",
            case.finding
        );
        assert!(
            !finding.advice.en.is_empty() && !finding.advice.fr.is_empty(),
            "{} lacks advice",
            case.finding
        );
        assert!(
            !finding.title.en.is_empty() && !finding.title.fr.is_empty(),
            "{} lacks a title",
            case.finding
        );
    }
}

/// Every finding id a rule declares is exercised by the boundary table.
#[test]
fn the_boundary_table_covers_every_finding() {
    let tested: Vec<&str> = boundaries().iter().map(|b| b.finding).collect();
    let untested_here = ["path.relay_unreachable"]; // needs a snapshot with nothing upstream known; see below
    for rule in RULES {
        for id in rule.findings {
            assert!(
                tested.contains(id) || untested_here.contains(id),
                "{id} (rule {}) has no boundary case",
                rule.id
            );
        }
    }
}

/// Missing data: the rule becomes an unknown entry, never a finding.
#[test]
fn missing_data_is_unknown_never_a_fault() {
    // (edit, the unknown entry expected)
    let cases: Vec<(Edit, &str)> = vec![
        (
            |s| s.device = Probe::unknown("the local probes failed"),
            "device",
        ),
        (
            |s| {
                pressure(s).cpu_some_avg60 = None;
                device(s).cpu.usage_percent = None;
            },
            "device.cpu",
        ),
        (
            |s| {
                device(s).pressure = Probe::not_applicable("no PSI on this OS");
                device(s).cpu.usage_percent = Some(f64::NAN);
            },
            "device.cpu",
        ),
        (
            |s| {
                pressure(s).memory_full_avg10 = None;
                device(s).memory.total_bytes = 0;
            },
            "device.memory",
        ),
        (
            |s| device(s).pressure = Probe::unknown("/proc/pressure is not readable"),
            "device.pressure",
        ),
        (|s| pressure(s).io_full_avg60 = None, "device.io"),
        (|s| device(s).disks.clear(), "device.disk"),
        (|s| system_disk(s).total_bytes = 0, "device.disk"),
        (
            |s| device(s).temperatures = Probe::unknown("no hwmon sensors readable"),
            "device.temperatures",
        ),
        (
            |s| temperatures(s)[0].celsius = f64::NAN,
            "device.temperature",
        ),
        (|s| battery(s).health_percent = None, "device.battery"),
        (
            |s| s.wifi = Probe::unknown("Access is denied (needs Location permission)"),
            "wifi",
        ),
        (|s| wifi(s).signal_dbm = None, "wifi.signal"),
        (|s| wifi(s).signal_dbm = Some(0.0), "wifi.signal"),
        (
            |s| {
                wifi(s).snr_db = None;
                wifi(s).noise_dbm = None;
            },
            "wifi.snr",
        ),
        (|s| wifi(s).tx_retries_percent = None, "wifi.retries"),
        (|s| wifi(s).tx_retries_percent = Some(140.0), "wifi.retries"),
        (|s| wifi(s).channel_busy_percent = None, "wifi.channel_load"),
        (
            |s| {
                wifi(s).band = None;
                wifi(s).freq_mhz = None;
            },
            "wifi.band",
        ),
        (
            |s| {
                on_ethernet(s);
                network(s).interfaces[0].speed_mbps = None;
            },
            "link.ethernet_speed",
        ),
        (
            |s| {
                network(s).interfaces[0].rx_errors = None;
                network(s).interfaces[0].tx_errors = None;
            },
            "link.errors",
        ),
        (
            |s| s.gateway = Probe::unknown("ICMP not permitted (net.ipv4.ping_group_range)"),
            "gateway",
        ),
        (|s| gateway(s).sent = 0, "gateway.reachable"),
        // The router ignores pings but the relay answers: not a fault.
        (|s| gateway(s).received = 0, "gateway.reachable"),
        (|s| gateway(s).received = 201, "gateway.loss"),
        (|s| gateway(s).rtt = None, "gateway.rtt"),
        (|s| s.network = Probe::unknown("netlink refused"), "network"),
        (|s| dns(s).lookups.clear(), "dns.resolution"),
        (
            |s| dns(s).lookups[0].duration_ms = Some(f64::NAN),
            "dns.latency",
        ),
        (
            |s| s.clock = Probe::unknown("no round-trip probe was answered"),
            "clock",
        ),
        (
            |s| {
                network(s).relay_via_vpn = None;
                network(s).vpn_interfaces = vec!["wg0".to_owned()];
            },
            "network.vpn",
        ),
        (
            |s| s.path = Probe::unknown("not enrolled: no relay to measure"),
            "path",
        ),
        (|s| path(s).probes_sent = 0, "path.loss"),
        (|s| path(s).idle_rtt = None, "path.rtt"),
        (|s| idle_rtt(s).median_ms = f64::INFINITY, "path.rtt"),
        (|s| idle_rtt(s).samples = 1, "path.jitter"),
        (
            |s| {
                path(s).bufferbloat = None;
                path(s).added_latency_ms = None;
            },
            "path.bufferbloat",
        ),
        (
            |s| path(s).download = Probe::unknown("transfer timed out"),
            "path.download",
        ),
        (
            |s| path(s).upload = Probe::unknown("transfer timed out"),
            "path.upload",
        ),
        (|s| upload(s).mbps = f64::NAN, "path.upload"),
        (|s| path(s).connect_ms = None, "service.connect"),
    ];
    for (edit, what) in cases {
        let verdict = judged(&healthy().with(edit));
        assert!(
            verdict
                .unknowns
                .iter()
                .any(|u| u.what == what && !u.reason.is_empty()),
            "no unknown `{what}` in {:#?}",
            verdict.unknowns
        );
        assert_eq!(
            verdict.problems().count(),
            0,
            "`{what}` missing made a fault: {:#?}",
            verdict.findings
        );
        assert!(
            !verdict.ok_checks.iter().any(|c| c == what),
            "`{what}` counted as passed"
        );
    }
}

#[test]
fn unknown_probes_keep_the_snapshots_reason() {
    let verdict = judged(
        &healthy()
            .with(|s| s.wifi = Probe::unknown("Access is denied (needs Location permission)")),
    );
    let unknown = verdict.unknowns.iter().find(|u| u.what == "wifi").unwrap();
    assert_eq!(
        unknown.reason,
        "Access is denied (needs Location permission)"
    );
    // One entry for the probe, however many checks needed it.
    assert_eq!(
        verdict
            .unknowns
            .iter()
            .filter(|u| u.what.starts_with("wifi"))
            .count(),
        1
    );
}

#[test]
fn not_applicable_is_neither_a_fault_nor_an_unknown() {
    let verdict = judged(&healthy().with(|s| {
        on_ethernet(s);
        device(s).battery = Probe::not_applicable("desktop: no battery");
        device(s).pressure = Probe::not_applicable("no PSI on this OS");
        s.dns = Probe::not_applicable("the relay is configured by address");
        path(s).download = Probe::not_applicable("throughput test not requested");
        path(s).upload = Probe::not_applicable("throughput test not requested");
        path(s).bufferbloat = None;
        path(s).added_latency_ms = None;
    }));
    assert_eq!(verdict.findings, vec![]);
    assert_eq!(verdict.unknowns, vec![]);
    assert_eq!(verdict.primary, None);
    for skipped in [
        "wifi.signal",
        "device.battery",
        "device.io",
        "dns.resolution",
        "path.download",
        "path.bufferbloat",
    ] {
        assert!(
            !verdict.ok_checks.iter().any(|c| c == skipped),
            "{skipped} is not applicable, not passed"
        );
    }
    assert!(verdict.ok_checks.iter().any(|c| c == "link.ethernet_speed"));
    assert!(
        verdict.ok_checks.iter().any(|c| c == "device.cpu"),
        "CPU usage is judged without PSI"
    );
}

#[test]
fn a_healthy_snapshot_has_no_findings_and_every_check_passes() {
    let verdict = judged(&healthy());
    assert_eq!(verdict.findings, vec![]);
    assert_eq!(verdict.primary, None);
    assert_eq!(verdict.unknowns, vec![]);
    // On Wi‑Fi, the Ethernet speed check does not apply; all others pass.
    let expected: Vec<&str> = RULES
        .iter()
        .map(|r| r.id)
        // Windows' connectivity indicator is absent from a Linux snapshot.
        .filter(|id| !matches!(*id, "link.ethernet_speed" | "os.connectivity"))
        .collect();
    assert_eq!(verdict.ok_checks, expected);
}

// ----- Precedence ------------------------------------------------------------

/// (case, edit, expected primary, finding to inspect, its expected
/// segment and confidence)
#[test]
fn precedence_follows_the_path() {
    use Confidence::*;
    use Segment::*;
    type Case = (
        &'static str,
        Edit,
        Option<Segment>,
        &'static str,
        Segment,
        Confidence,
    );
    let cases: Vec<Case> = vec![
        (
            "weak Wi‑Fi and ISP loss: home network first, loss kept but doubted",
            |s| {
                wifi(s).signal_dbm = Some(-78.0);
                path(s).probes_received = 190;
            },
            Some(HomeNetwork),
            "path.loss",
            Isp,
            Low,
        ),
        (
            "loss to the router and to the relay: home network",
            |s| {
                gateway(s).received = 190;
                path(s).probes_received = 190;
            },
            Some(HomeNetwork),
            "path.loss",
            Isp,
            Low,
        ),
        (
            "clean link and router, loss to the relay: ISP, sure",
            |s| path(s).probes_received = 190,
            Some(Isp),
            "path.loss",
            Isp,
            High,
        ),
        (
            "Wi‑Fi unknown, loss to the relay: ISP, less sure",
            |s| {
                s.wifi = Probe::unknown("needs Location permission");
                path(s).probes_received = 190;
            },
            Some(Isp),
            "path.loss",
            Isp,
            Medium,
        ),
        (
            "router unmeasurable, loss to the relay: ISP, less sure",
            |s| {
                s.gateway = Probe::unknown("ICMP not permitted");
                path(s).probes_received = 190;
            },
            Some(Isp),
            "path.loss",
            Isp,
            Medium,
        ),
        (
            "a fair signal is information only: it does not doubt the ISP",
            |s| {
                wifi(s).signal_dbm = Some(-70.0);
                path(s).probes_received = 190;
            },
            Some(Isp),
            "path.loss",
            Isp,
            High,
        ),
        (
            "host answers over TCP, UDP gets nothing, DNS and the router work, no earlier connection: blocked or down, not sure",
            |s| {
                fail_udp(s);
                path(s).tcp_reachable = Some(true);
            },
            Some(Configuration),
            "path.udp_blocked",
            Configuration,
            Medium,
        ),
        (
            "host answers over TCP, DNS works, router unmeasurable: blocked or down, less sure",
            |s| {
                fail_udp(s);
                path(s).tcp_reachable = Some(true);
                s.gateway = Probe::unknown("ICMP not permitted");
            },
            Some(Configuration),
            "path.udp_blocked",
            Configuration,
            Low,
        ),
        (
            "host answers over TCP and UDP worked 20 minutes ago: the service is down, not the settings",
            |s| {
                fail_udp(s);
                path(s).tcp_reachable = Some(true);
                path(s).last_connected_ms = Some(s.taken_at_ms - 20 * 60_000);
            },
            Some(Service),
            "path.relay_not_answering",
            Service,
            Medium,
        ),
        (
            "an old connection proves nothing: blocked or down",
            |s| {
                fail_udp(s);
                path(s).tcp_reachable = Some(true);
                path(s).last_connected_ms = Some(s.taken_at_ms - 3 * 24 * 3_600_000);
            },
            Some(Configuration),
            "path.udp_blocked",
            Configuration,
            Medium,
        ),
        (
            "host silent, network works, UDP worked recently: the service's host",
            |s| {
                fail_udp(s);
                path(s).tcp_reachable = Some(false);
                path(s).last_connected_ms = Some(s.taken_at_ms - 60_000);
            },
            Some(Service),
            "path.relay_unreachable",
            Service,
            Medium,
        ),
        (
            "host silent, network works, no earlier connection: unattributed",
            |s| {
                fail_udp(s);
                path(s).tcp_reachable = Some(false);
            },
            Some(Unknown),
            "path.relay_unreachable",
            Unknown,
            Low,
        ),
        (
            "the relay's name alone does not resolve: the service's address",
            |s| {
                fail_udp(s);
                path(s).relay_resolved = Some(false);
                path(s).udp_error = Some("cannot resolve relay.example".to_owned());
            },
            Some(Service),
            "path.relay_name_unresolved",
            Service,
            Medium,
        ),
        (
            "relay unreachable and nothing upstream known: unattributed",
            |s| {
                fail_udp(s);
                s.gateway = Probe::unknown("ICMP not permitted");
                s.dns = Probe::not_applicable("the relay is configured by address");
            },
            Some(Unknown),
            "path.relay_unreachable",
            Unknown,
            Low,
        ),
        (
            "UDP gets nothing but the relay's host answers over TCP, nothing else known: blocked or down, unsure",
            |s| {
                fail_udp(s);
                s.gateway = Probe::unknown("ICMP not permitted");
                s.dns = Probe::not_applicable("the relay is configured by address");
                if let Probe::Measured(path) = &mut s.path {
                    path.tcp_reachable = Some(true);
                }
            },
            Some(Configuration),
            "path.udp_blocked",
            Configuration,
            Low,
        ),
        (
            "disk full, everything else clean: device",
            |s| system_disk(s).available_bytes = GIB / 2,
            Some(Device),
            "device.disk_full",
            Device,
            High,
        ),
        (
            "CPU pegged and jitter: device first, jitter doubted",
            |s| {
                pressure(s).cpu_some_avg60 = Some(80.0);
                idle_rtt(s).jitter_ms = 45.0;
            },
            Some(Device),
            "path.jitter_high",
            Isp,
            Low,
        ),
        (
            "high RTT through a VPN: configuration",
            |s| {
                network(s).relay_via_vpn = Some(true);
                idle_rtt(s).median_ms = 180.0;
            },
            Some(Configuration),
            "vpn.rtt_high",
            Configuration,
            Medium,
        ),
        (
            "loss through a VPN: still the path, but the VPN is a suspect too",
            |s| {
                network(s).relay_via_vpn = Some(true);
                path(s).probes_received = 190;
            },
            Some(Isp),
            "path.loss",
            Isp,
            Medium,
        ),
        (
            "slow relay with a clean path: service",
            |s| path(s).connect_ms = Some(4000.0),
            Some(Service),
            "service.relay_slow",
            Service,
            High,
        ),
        (
            "slow relay, Wi‑Fi unknown: service, less sure",
            |s| {
                s.wifi = Probe::unknown("needs Location permission");
                path(s).connect_ms = Some(4000.0);
            },
            Some(Service),
            "service.relay_slow",
            Service,
            Medium,
        ),
        (
            "gateway loss over weak Wi‑Fi: the Wi‑Fi explains it",
            |s| {
                wifi(s).signal_dbm = Some(-80.0);
                gateway(s).received = 190;
            },
            Some(HomeNetwork),
            "gateway.loss",
            HomeNetwork,
            Low,
        ),
        (
            "DNS failing with no route: the route explains it",
            |s| {
                network(s).default_route = None;
                dns(s).lookups[0] = lookup("relay.example.org", None, Some("no route"));
            },
            Some(Configuration),
            "dns.failing",
            Configuration,
            Low,
        ),
    ];
    for (name, edit, primary, id, segment, confidence) in cases {
        let verdict = judged(&healthy().with(edit));
        assert_eq!(verdict.primary, primary, "{name}: {:#?}", verdict.findings);
        let finding = verdict
            .finding(id)
            .unwrap_or_else(|| panic!("{name}: {id} missing from {:#?}", verdict.findings));
        assert_eq!(
            (finding.segment, finding.confidence),
            (segment, confidence),
            "{name}: {finding:#?}"
        );
    }
}

#[test]
fn a_doubted_finding_names_what_may_explain_it() {
    let verdict = judged(&healthy().with(|s| {
        wifi(s).signal_dbm = Some(-78.0);
        path(s).probes_received = 190;
    }));
    let loss = verdict.finding("path.loss").unwrap();
    assert_eq!(
        loss.may_be_explained_by,
        vec!["wifi.signal_weak".to_owned()]
    );
    assert!(
        loss.technician_note
            .en
            .contains("May be explained by wifi.signal_weak"),
        "{}",
        loss.technician_note.en
    );
}

#[test]
fn an_unmeasured_upstream_is_named_in_the_note() {
    let verdict = judged(&healthy().with(|s| {
        s.wifi = Probe::unknown("needs Location permission");
        path(s).probes_received = 190;
    }));
    let loss = verdict.finding("path.loss").unwrap();
    assert!(
        loss.technician_note
            .en
            .contains("wifi: needs Location permission"),
        "{}",
        loss.technician_note.en
    );
    assert!(verdict.unknowns.iter().any(|u| u.what == "wifi"));
}

#[test]
fn service_findings_need_a_clean_upstream() {
    // A slow connect explained by loss on the path is not blamed on the relay.
    let verdict = judged(&healthy().with(|s| {
        path(s).connect_ms = Some(4000.0);
        path(s).probes_received = 180;
    }));
    assert!(verdict.finding("service.relay_slow").is_none());
    assert_eq!(verdict.primary, Some(Segment::Isp));
    let unknown = verdict
        .unknowns
        .iter()
        .find(|u| u.what == "service.connect")
        .unwrap();
    assert!(unknown.reason.contains("path.loss"), "{}", unknown.reason);
}

#[test]
fn udp_failure_behind_a_dns_failure_is_unknown_not_a_firewall() {
    let verdict = judged(&healthy().with(|s| {
        fail_udp(s);
        dns(s).lookups[0] = lookup("relay.example.org", None, Some("Name or service not known"));
    }));
    assert!(verdict.finding("path.udp_blocked").is_none());
    assert_eq!(verdict.primary, Some(Segment::Configuration));
    assert_eq!(
        verdict.primary_finding().map(|f| f.id.as_str()),
        Some("dns.failing")
    );
    assert!(verdict.unknowns.iter().any(|u| u.what == "path.udp"));
    // Nothing on the path could be measured, and the report says why.
    let path = verdict.unknowns.iter().find(|u| u.what == "path").unwrap();
    assert!(path.reason.contains("timed out"), "{}", path.reason);
}

#[test]
fn a_measurement_that_never_started_is_one_unknown() {
    let verdict = judged(&healthy().with(|s| {
        let path = path(s);
        path.connect_ms = None;
        path.idle_rtt = None;
        path.probes_sent = 0;
        path.probes_received = 0;
        path.download = Probe::unknown("the relay refused the measurement: busy");
        path.upload = Probe::unknown("the relay refused the measurement: busy");
        path.bufferbloat = None;
        path.added_latency_ms = None;
    }));
    assert_eq!(
        verdict.unknowns,
        vec![Unknown {
            what: "path".to_owned(),
            reason: "connected to the relay, but the relay refused the measurement: busy"
                .to_owned(),
        }]
    );
    assert_eq!(verdict.findings, vec![]);
    assert!(verdict.ok_checks.iter().any(|c| c == "path.udp"));
}

#[test]
fn an_empty_verdict_from_an_older_writer_still_reads() {
    let verdict: Verdict = serde_json::from_str("{}").unwrap();
    assert_eq!(verdict, Verdict::default());
}

#[test]
fn a_technician_note_stored_as_plain_english_still_reads() {
    let stored = r#"{"findings":[{"id":"path.loss","segment":"isp","stage":"isp",
        "severity":"warning","confidence":"high",
        "title":{"en":"Data is lost","fr":"Des données se perdent"},"evidence":[],
        "advice":{"en":"Restart","fr":"Redémarrez"},
        "technician_note":"12 of 200 datagram probes were lost."}]}"#;
    let verdict: Verdict = serde_json::from_str(stored).unwrap();
    assert_eq!(
        verdict.findings[0].technician_note,
        Text::new("12 of 200 datagram probes were lost.", "")
    );
    let value: serde_json::Value = serde_json::to_value(&verdict).unwrap();
    assert_eq!(
        value["findings"][0]["technician_note"]["en"],
        "12 of 200 datagram probes were lost."
    );
}

#[test]
fn every_technician_note_has_a_french_version() {
    let edits: [Edit; 6] = [
        |s| wifi(s).signal_dbm = Some(-78.0),
        |s| path(s).probes_received = 190,
        fail_udp,
        |s| network(s).relay_via_vpn = Some(true),
        |s| device(s).cpu.usage_percent = Some(99.0),
        |s| s.wifi = Probe::unknown("needs Location permission"),
    ];
    for edit in edits {
        let verdict = judged(&healthy().with(edit));
        for finding in &verdict.findings {
            let note = &finding.technician_note;
            assert!(
                note.en.is_empty() == note.fr.is_empty() && note.en != note.fr,
                "{}: {note:?}",
                finding.id
            );
        }
    }
}

#[test]
fn a_router_ignoring_probes_is_not_a_fault_when_the_relay_answers() {
    let verdict = judged(&healthy().with(|s| gateway(s).received = 0));
    assert!(verdict.finding("gateway.unreachable").is_none());
    // When the relay could not be measured either, it is a fault, but the
    // router may still only be ignoring probes: medium confidence.
    let verdict = judged(&healthy().with(|s| {
        gateway(s).received = 0;
        s.path = Probe::unknown("not enrolled: no relay to measure");
    }));
    assert_eq!(
        verdict.finding("gateway.unreachable").map(|f| f.confidence),
        Some(Confidence::Medium)
    );
}

#[test]
fn information_alone_is_no_verdict() {
    let verdict = judged(&healthy().with(|s| {
        wifi(s).signal_dbm = Some(-70.0);
        battery(s).health_percent = Some(60.0);
        network(s).proxy.http = Some("http://proxy:3128".to_owned());
    }));
    let ids: Vec<&str> = verdict.findings.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(
        ids,
        ["device.battery_worn", "wifi.signal_fair", "config.proxy"]
    );
    assert_eq!(verdict.primary, None);
}

#[test]
fn a_local_stub_resolver_is_normal() {
    let verdict = judged(&healthy().with(|s| {
        network(s).dns_local_stub = true;
        network(s).dns_servers = vec!["127.0.0.53".to_owned()];
    }));
    assert_eq!(verdict.findings, vec![]);
    // But a DNS finding then points the technician at the stub's upstream.
    let verdict = judged(&healthy().with(|s| {
        network(s).dns_local_stub = true;
        dns(s).lookups[0].duration_ms = Some(450.0);
    }));
    let slow = verdict.finding("dns.slow").unwrap();
    assert!(
        slow.technician_note.en.contains("local stub"),
        "{}",
        slow.technician_note.en
    );
}

#[test]
fn findings_come_in_path_order_most_severe_first() {
    let verdict = judged(&healthy().with(|s| {
        path(s).probes_received = 150;
        clock(s).offset_ms = 90_000;
        gateway(s).received = 196;
        wifi(s).tx_retries_percent = Some(35.0);
        wifi(s).signal_dbm = Some(-90.0);
        pressure(s).io_full_avg60 = Some(40.0);
    }));
    let ids: Vec<&str> = verdict.findings.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "device.io_pressure",
            "wifi.signal_unusable",
            "wifi.retries_high",
            "gateway.loss",
            "clock.offset",
            "path.loss",
        ]
    );
    assert_eq!(verdict.primary, Some(Segment::Device));
}

// ----- Thresholds --------------------------------------------------------------

#[test]
fn overrides_change_outcomes() {
    let signal = healthy().with(|s| wifi(s).signal_dbm = Some(-72.0));
    assert!(judged(&signal).finding("wifi.signal_weak").is_none());
    let stricter =
        Thresholds::with_overrides(&serde_json::json!({"wifi_signal_weak_dbm": -70})).unwrap();
    let verdict = judge(&signal, &stricter);
    let weak = verdict.finding("wifi.signal_weak").unwrap();
    assert_eq!(weak.evidence[0].threshold, "< -70 dBm");
    assert_eq!(verdict.primary, Some(Segment::HomeNetwork));

    let loss = healthy().with(|s| path(s).probes_received = 196); // 2 %
    assert!(judged(&loss).finding("path.loss").is_some());
    let tolerant =
        Thresholds::with_overrides(&serde_json::json!({"path_loss_percent": 3})).unwrap();
    assert!(judge(&loss, &tolerant).finding("path.loss").is_none());

    let bloat = healthy().with(|s| path(s).bufferbloat = Some(Grade::B));
    let strict =
        Thresholds::with_overrides(&serde_json::json!({"bufferbloat_grade": "B"})).unwrap();
    assert_eq!(
        judge(&bloat, &strict)
            .finding("path.bufferbloat")
            .map(|f| f.severity),
        Some(Severity::Warning)
    );
}

#[test]
fn unknown_override_keys_are_refused() {
    let err = Thresholds::with_overrides(&serde_json::json!({"wifi_signal_weakest_dbm": -70}))
        .unwrap_err();
    assert!(
        matches!(err, crate::thresholds::ThresholdError::UnknownKey { .. }),
        "{err}"
    );
}

// ----- Serialisation -------------------------------------------------------

#[test]
fn verdicts_round_trip_through_json() {
    let verdict = judged(&healthy().with(|s| {
        wifi(s).signal_dbm = Some(-78.0);
        path(s).probes_received = 190;
        fail_udp(s);
        network(s).relay_via_vpn = Some(true);
    }));
    let text = serde_json::to_string(&verdict).unwrap();
    assert_eq!(serde_json::from_str::<Verdict>(&text).unwrap(), verdict);
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["primary"], "home_network");
    assert_eq!(value["findings"][0]["id"], "wifi.signal_weak");
    assert_eq!(value["findings"][0]["evidence"][0]["value"], -78.0);
    assert_eq!(value["findings"][0]["severity"], "warning");
}

#[test]
fn rule_ids_are_unique_and_in_path_order() {
    let mut ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
    assert!(
        RULES.windows(2).all(|w| w[0].stage <= w[1].stage),
        "RULES out of path order"
    );
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), RULES.len(), "duplicate rule id");
}

// ----- Properties --------------------------------------------------------------

mod properties {
    use super::*;
    use crate::report::{render, Lang, Style};
    use proptest::prelude::*;

    /// Any number, with the awkward ones made likely.
    fn awkward() -> impl Strategy<Value = f64> {
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(0.0),
            Just(-0.0),
            Just(f64::MAX),
            Just(f64::MIN),
            -1e4..1e4f64,
            any::<f64>(),
        ]
    }

    fn probe_state() -> impl Strategy<Value = u8> {
        // 0–5 measured, 6 unknown, 7 not applicable.
        0u8..8
    }

    fn set<T>(probe: &mut Probe<T>, state: u8) {
        match state {
            6 => *probe = Probe::unknown("fuzzed"),
            7 => *probe = Probe::not_applicable("fuzzed"),
            _ => {}
        }
    }

    /// Every float field of the healthy snapshot, in a fixed order, so a
    /// vector of numbers describes a snapshot.
    fn float_fields(s: &mut Snapshot) -> Vec<&mut f64> {
        let mut fields: Vec<&mut f64> = Vec::new();
        let Snapshot {
            device,
            wifi,
            gateway,
            dns,
            clock,
            path,
            ..
        } = s;
        if let Probe::Measured(d) = device {
            fields.extend(d.cpu.usage_percent.as_mut());
            if let Probe::Measured(p) = &mut d.pressure {
                fields.extend(p.cpu_some_avg60.as_mut());
                fields.extend(p.memory_full_avg10.as_mut());
                fields.extend(p.io_full_avg60.as_mut());
            }
            if let Probe::Measured(t) = &mut d.temperatures {
                for sensor in t {
                    fields.push(&mut sensor.celsius);
                    fields.extend(sensor.critical_celsius.as_mut());
                }
            }
            if let Probe::Measured(b) = &mut d.battery {
                fields.extend(b.health_percent.as_mut());
            }
        }
        if let Probe::Measured(w) = wifi {
            fields.extend(w.signal_dbm.as_mut());
            fields.extend(w.noise_dbm.as_mut());
            fields.extend(w.snr_db.as_mut());
            fields.extend(w.tx_retries_percent.as_mut());
            fields.extend(w.channel_busy_percent.as_mut());
            fields.extend(w.freq_mhz.as_mut());
        }
        if let Probe::Measured(g) = gateway {
            if let Some(rtt) = &mut g.rtt {
                fields.push(&mut rtt.median_ms);
                fields.push(&mut rtt.p95_ms);
            }
        }
        if let Probe::Measured(d) = dns {
            for lookup in &mut d.lookups {
                fields.extend(lookup.duration_ms.as_mut());
            }
        }
        if let Probe::Measured(c) = clock {
            fields.push(&mut c.rtt_ms);
        }
        if let Probe::Measured(p) = path {
            fields.extend(p.connect_ms.as_mut());
            if let Some(rtt) = &mut p.idle_rtt {
                fields.push(&mut rtt.median_ms);
                fields.push(&mut rtt.jitter_ms);
                fields.push(&mut rtt.min_ms);
            }
            if let Probe::Measured(t) = &mut p.download {
                fields.push(&mut t.mbps);
            }
            if let Probe::Measured(t) = &mut p.upload {
                fields.push(&mut t.mbps);
            }
            fields.extend(p.added_latency_ms.as_mut());
        }
        fields
    }

    fn arbitrary_snapshot() -> impl Strategy<Value = Snapshot> {
        (
            prop::collection::vec(awkward(), 40),
            prop::collection::vec(any::<u32>(), 8),
            prop::collection::vec(probe_state(), 10),
            any::<i64>(),
            any::<u64>(),
        )
            .prop_map(|(floats, counts, states, offset, bytes)| {
                let mut s = healthy();
                for (field, value) in float_fields(&mut s).into_iter().zip(floats) {
                    *field = value;
                }
                gateway(&mut s).sent = counts[0] % 300;
                gateway(&mut s).received = counts[1] % 300;
                path(&mut s).probes_sent = counts[2] % 300;
                path(&mut s).probes_received = counts[3] % 300;
                path(&mut s).udp_ok = counts[4] % 4 != 0;
                idle_rtt(&mut s).samples = counts[5] % 4;
                network(&mut s).interfaces[0].speed_mbps = Some(counts[6]);
                network(&mut s).relay_via_vpn =
                    [None, Some(true), Some(false)][counts[7] as usize % 3];
                clock(&mut s).offset_ms = offset;
                system_disk(&mut s).available_bytes = bytes;
                device(&mut s).memory.available_bytes = bytes / 3;
                device(&mut s).memory.swap_used_bytes = bytes % 7;
                set(&mut device(&mut s).pressure, states[0]);
                set(&mut device(&mut s).temperatures, states[1]);
                set(&mut device(&mut s).battery, states[2]);
                set(&mut path(&mut s).download, states[3]);
                set(&mut s.wifi, states[4]);
                set(&mut s.gateway, states[5]);
                set(&mut s.dns, states[6]);
                set(&mut s.clock, states[7]);
                set(&mut s.path, states[8]);
                set(&mut s.network, states[9]);
                s
            })
    }

    proptest! {
        #[test]
        fn judging_and_rendering_never_panic(snapshot in arbitrary_snapshot()) {
            let verdict = judged(&snapshot);
            // Deterministic.
            prop_assert_eq!(&verdict, &judged(&snapshot));
            // Evidence numbers are always real numbers.
            for finding in &verdict.findings {
                for evidence in &finding.evidence {
                    if let EvidenceValue::Number(n) = evidence.value {
                        prop_assert!(n.is_finite(), "{} = {} in {}", evidence.metric, n, finding.id);
                    }
                }
            }
            // The primary is the first problem's segment.
            prop_assert_eq!(verdict.primary, verdict.primary_finding().map(|f| f.segment));
            for lang in [Lang::En, Lang::Fr] {
                let text = render(&verdict, &snapshot, lang, Style { color: false });
                prop_assert!(!text.contains('\x1b'));
            }
        }

        #[test]
        fn nan_never_makes_a_fault(mask in prop::collection::vec(any::<bool>(), 40)) {
            let mut snapshot = healthy();
            for (field, nan) in float_fields(&mut snapshot).into_iter().zip(mask) {
                if nan {
                    *field = f64::NAN;
                }
            }
            let verdict = judged(&snapshot);
            prop_assert_eq!(verdict.findings, vec![]);
        }
    }

    #[test]
    fn every_number_nan_gives_unknowns_only() {
        let mut snapshot = healthy();
        for field in float_fields(&mut snapshot) {
            *field = f64::NAN;
        }
        let verdict = judged(&snapshot);
        assert_eq!(verdict.findings, vec![]);
        assert_eq!(verdict.primary, None);
        for what in [
            "wifi.signal",
            "wifi.retries",
            "gateway.rtt",
            "path.rtt",
            "path.jitter",
            "path.download",
            "service.connect",
        ] {
            assert!(
                verdict.unknowns.iter().any(|u| u.what == what),
                "no unknown {what}: {:#?}",
                verdict.unknowns
            );
        }
    }
}

#[test]
fn a_dns_server_answering_directly_puts_the_blame_on_the_local_resolver() {
    use crate::snapshot::DirectLookup;
    let mut snapshot = healthy();
    let Probe::Measured(dns) = &mut snapshot.dns else {
        panic!("healthy snapshots measure DNS");
    };
    dns.lookups[0].duration_ms = None;
    dns.lookups[0].error = Some("Temporary failure in name resolution".to_owned());
    dns.relay_reachable = Some(false);
    let without_direct = judge(&snapshot, &Thresholds::default());
    let failing = without_direct.finding("dns.failing").expect("dns.failing");
    assert_eq!(
        failing.confidence,
        Confidence::Medium,
        "connectivity unproven"
    );

    let Probe::Measured(dns) = &mut snapshot.dns else {
        unreachable!()
    };
    dns.direct.push(DirectLookup {
        server: "192.0.2.53".to_owned(),
        name: dns.lookups[0].name.clone(),
        duration_ms: Some(12.0),
        answers: 1,
        error: None,
    });
    let with_direct = judge(&snapshot, &Thresholds::default());
    let failing = with_direct.finding("dns.failing").expect("dns.failing");
    assert!(
        failing.technician_note.en.contains("local resolver"),
        "{}",
        failing.technician_note.en
    );
    assert!(failing.technician_note.en.contains("192.0.2.53"));
    assert_eq!(failing.confidence, Confidence::High);
}

/// A busy-CPU note must not claim there is no pressure figure when the
/// snapshot (and the report) has one.
#[test]
fn the_busy_cpu_note_matches_what_the_pressure_probe_reported() {
    let measured = judged(&healthy().with(|s| {
        device(s).cpu.usage_percent = Some(99.0);
        pressure(s).cpu_some_avg60 = Some(3.0);
    }));
    let note = &measured
        .finding("device.cpu_busy")
        .unwrap()
        .technician_note
        .en;
    assert!(!note.contains("no PSI"), "{note}");
    assert!(
        note.contains("CPU pressure (PSI some avg60) was 3 %"),
        "{note}"
    );
    let absent = judged(&healthy().with(|s| {
        device(s).cpu.usage_percent = Some(99.0);
        device(s).pressure = Probe::not_applicable("no PSI on this OS");
    }));
    let note = &absent
        .finding("device.cpu_busy")
        .unwrap()
        .technician_note
        .en;
    assert!(note.contains("reports no pressure figures"), "{note}");
}

/// Without pressure figures (Windows), the CPU finding names the length of
/// the sample it rests on.
#[test]
fn without_pressure_figures_the_cpu_finding_names_its_sample() {
    let windows = |sample_ms: Option<u64>| {
        judged(&healthy().with(|s| {
            device(s).pressure =
                Probe::not_applicable("pressure stall information exists only on Linux");
            device(s).cpu.usage_percent = Some(97.5);
            device(s).cpu.usage_sample_ms = sample_ms;
        }))
    };
    let verdict = windows(Some(2000));
    let finding = verdict.finding("device.cpu_busy").expect("busy");
    assert_eq!(finding.confidence, Confidence::Medium);
    assert!(
        finding
            .technician_note
            .en
            .contains("averaged 97.5 % over a 2 s sample"),
        "{}",
        finding.technician_note.en
    );
    assert!(finding
        .technician_note
        .fr
        .contains("97,5 % sur un échantillon de 2 s"));
    // A short or unreported sample keeps the "burst" wording.
    let short = windows(Some(250));
    let note = &short
        .finding("device.cpu_busy")
        .expect("busy")
        .technician_note
        .en;
    assert!(note.contains("one short sample"), "{note}");
    assert!(windows(None).finding("device.cpu_busy").is_some());
}
