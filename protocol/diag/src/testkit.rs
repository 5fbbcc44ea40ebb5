//! Test helpers: a healthy snapshot to start from, and short accessors so
//! tests read as "healthy, except this one value".

use crate::snapshot::*;
use crate::thresholds::Thresholds;
use crate::verdict::{judge, Verdict};

pub const GIB: u64 = 1024 * 1024 * 1024;

/// A snapshot in which every probe was measured and everything is clean,
/// with values far from every threshold.
pub fn healthy() -> Snapshot {
    let rtt = |median_ms: f64, jitter_ms: f64| RttStats {
        samples: 20,
        min_ms: median_ms * 0.8,
        median_ms,
        p95_ms: median_ms * 1.5,
        max_ms: median_ms * 2.0,
        jitter_ms,
    };
    Snapshot {
        format: FORMAT_VERSION,
        taken_at_ms: 1_700_000_000_000,
        agent_version: "0.1.0".to_owned(),
        duration_ms: 4_000,
        device: Probe::Measured(Device {
            hostname: "laptop-1".to_owned(),
            os_name: "Debian GNU/Linux".to_owned(),
            os_version: "12".to_owned(),
            kernel: "6.1.0".to_owned(),
            uptime_secs: 86_400,
            cpu: Cpu {
                model: "Test CPU".to_owned(),
                logical_cores: 8,
                physical_cores: Some(4),
                usage_percent: Some(12.0),
                usage_sample_ms: Some(250),
                load_average: Some([0.5, 0.4, 0.3]),
            },
            memory: Memory {
                total_bytes: 16 * GIB,
                available_bytes: 8 * GIB,
                swap_total_bytes: 2 * GIB,
                swap_used_bytes: 0,
            },
            pressure: Probe::Measured(Pressure {
                cpu_some_avg10: Some(0.5),
                cpu_some_avg60: Some(0.5),
                memory_some_avg60: Some(0.0),
                memory_full_avg10: Some(0.0),
                io_some_avg60: Some(0.2),
                io_full_avg60: Some(0.1),
            }),
            disks: vec![Disk {
                mount_point: "/".to_owned(),
                file_system: "ext4".to_owned(),
                total_bytes: 500 * GIB,
                available_bytes: 200 * GIB,
                is_system: true,
            }],
            temperatures: Probe::Measured(vec![Temperature {
                label: "Package id 0".to_owned(),
                celsius: 55.0,
                critical_celsius: Some(100.0),
            }]),
            battery: Probe::Measured(Battery {
                charge_percent: Some(90.0),
                health_percent: Some(95.0),
                state: "discharging".to_owned(),
                cycle_count: Some(120),
            }),
        }),
        network: Probe::Measured(NetworkConfig {
            home_gateway: None,
            vpn_server: None,
            interfaces: vec![Interface {
                name: "wlp2s0".to_owned(),
                kind: InterfaceKind::Wifi,
                up: true,
                speed_mbps: None,
                mtu: Some(1500),
                addresses: vec!["192.168.1.23/24".to_owned()],
                rx_errors: Some(0),
                tx_errors: Some(0),
                description: None,
            }],
            default_route: Some(DefaultRoute {
                interface: "wlp2s0".to_owned(),
                gateway: "192.168.1.1".to_owned(),
            }),
            dns_servers: vec!["192.168.1.1".to_owned()],
            dns_local_stub: false,
            proxy: Proxy::default(),
            vpn_interfaces: vec![],
            relay_via_vpn: Some(false),
        }),
        wifi: Probe::Measured(Wifi {
            interface: "wlp2s0".to_owned(),
            ssid: Some("sha256:abcd".to_owned()),
            bssid: Some("sha256:ef01".to_owned()),
            band: Some(Band::Ghz5),
            channel: Some(36),
            freq_mhz: Some(5180.0),
            signal_dbm: Some(-55.0),
            noise_dbm: Some(-95.0),
            snr_db: Some(40.0),
            tx_bitrate_mbps: Some(433.0),
            rx_bitrate_mbps: Some(390.0),
            tx_retries_percent: Some(3.0),
            tx_failed: Some(0),
            channel_busy_percent: Some(20.0),
            source: "iw".to_owned(),
        }),
        gateway: Probe::Measured(Gateway {
            address: "192.168.1.1".to_owned(),
            method: "icmp".to_owned(),
            sent: 200,
            received: 200,
            rtt: Some(rtt(2.0, 0.5)),
        }),
        dns: Probe::Measured(Dns {
            lookups: vec![DnsLookup {
                name: "relay.example.org".to_owned(),
                duration_ms: Some(25.0),
                error: None,
            }],
            direct: Vec::new(),
            relay_reachable: Some(true),
        }),
        clock: Probe::Measured(Clock {
            offset_ms: 120,
            rtt_ms: 30.0,
        }),
        path: Probe::Measured(Path {
            relay: "relay.example.org:4433".to_owned(),
            udp_ok: true,
            udp_error: None,
            tcp_reachable: None,
            connect_ms: Some(150.0),
            idle_rtt: Some(rtt(30.0, 3.0)),
            probes_sent: 200,
            probes_received: 200,
            download: Probe::Measured(Throughput {
                mbps: 80.0,
                bytes: 30_000_000,
                duration_ms: 3_000,
                loaded_rtt: Some(rtt(40.0, 5.0)),
            }),
            upload: Probe::Measured(Throughput {
                mbps: 20.0,
                bytes: 7_500_000,
                duration_ms: 3_000,
                loaded_rtt: Some(rtt(40.0, 5.0)),
            }),
            added_latency_ms: Some(10.0),
            bufferbloat: Some(Grade::A),
            relay_resolved: Some(true),
            last_connected_ms: None,
            speed_test_refused: None,
            media_jitter_ms: None,
            loaded: None,
        }),
        // A Linux snapshot: no OS connectivity indicator.
        os_connectivity: None,
    }
}

/// `snapshot.with(|s| …)`: a changed copy, for one-line test variants.
pub trait With: Sized {
    fn with(self, change: impl FnOnce(&mut Self)) -> Self;
}

impl With for Snapshot {
    fn with(mut self, change: impl FnOnce(&mut Self)) -> Self {
        change(&mut self);
        self
    }
}

/// The measured value of a probe, for editing; panics (failing the test)
/// if the probe is not measured.
fn measured<'a, T>(probe: &'a mut Probe<T>, name: &str) -> &'a mut T {
    match probe {
        Probe::Measured(value) => value,
        _ => panic!("the test snapshot's {name} probe is not measured"),
    }
}

pub fn device(s: &mut Snapshot) -> &mut Device {
    measured(&mut s.device, "device")
}

pub fn pressure(s: &mut Snapshot) -> &mut Pressure {
    measured(&mut device(s).pressure, "device.pressure")
}

pub fn temperatures(s: &mut Snapshot) -> &mut Vec<Temperature> {
    measured(&mut device(s).temperatures, "device.temperatures")
}

pub fn battery(s: &mut Snapshot) -> &mut Battery {
    measured(&mut device(s).battery, "device.battery")
}

pub fn system_disk(s: &mut Snapshot) -> &mut Disk {
    &mut device(s).disks[0]
}

pub fn network(s: &mut Snapshot) -> &mut NetworkConfig {
    measured(&mut s.network, "network")
}

pub fn wifi(s: &mut Snapshot) -> &mut Wifi {
    measured(&mut s.wifi, "wifi")
}

pub fn gateway(s: &mut Snapshot) -> &mut Gateway {
    measured(&mut s.gateway, "gateway")
}

pub fn dns(s: &mut Snapshot) -> &mut Dns {
    measured(&mut s.dns, "dns")
}

pub fn clock(s: &mut Snapshot) -> &mut Clock {
    measured(&mut s.clock, "clock")
}

pub fn path(s: &mut Snapshot) -> &mut Path {
    measured(&mut s.path, "path")
}

pub fn idle_rtt(s: &mut Snapshot) -> &mut RttStats {
    path(s)
        .idle_rtt
        .as_mut()
        .expect("the test snapshot has an idle RTT")
}

pub fn download(s: &mut Snapshot) -> &mut Throughput {
    measured(&mut path(s).download, "path.download")
}

pub fn upload(s: &mut Snapshot) -> &mut Throughput {
    measured(&mut path(s).upload, "path.upload")
}

/// Moves the healthy snapshot from Wi‑Fi to a gigabit Ethernet cable.
pub fn on_ethernet(s: &mut Snapshot) {
    s.wifi = Probe::not_applicable("the default route does not use Wi‑Fi");
    let network = network(s);
    network.interfaces = vec![Interface {
        name: "eth0".to_owned(),
        kind: InterfaceKind::Ethernet,
        up: true,
        speed_mbps: Some(1000),
        mtu: Some(1500),
        addresses: vec!["192.168.1.24/24".to_owned()],
        rx_errors: Some(0),
        tx_errors: Some(0),
        description: None,
    }];
    network.default_route = Some(DefaultRoute {
        interface: "eth0".to_owned(),
        gateway: "192.168.1.1".to_owned(),
    });
}

/// Windows' connectivity indicator (NCSI) at `level`.
pub fn ncsi(level: ConnectivityLevel) -> OsConnectivity {
    OsConnectivity {
        source: "ncsi".to_owned(),
        level,
        ..OsConnectivity::default()
    }
}

/// Judges with the default thresholds.
pub fn judged(snapshot: &Snapshot) -> Verdict {
    judge(snapshot, &Thresholds::default())
}
