//! The diagnostic snapshot: what the agent measured, at one moment.
//!
//! Format rules (the snapshot is stored by the relay, printed as JSON by
//! `deskside-agent check --json` and `deskside diag --json`, and judged
//! offline from files, so it must stay readable across versions):
//! - `format` is [`FORMAT_VERSION`]; readers accept any snapshot whose format
//!   they know and ignore fields they do not know.
//! - Every measurement is a [`Probe`]: the value, or why there is none.
//!   Missing, refused or unmeasurable data is never a zero and never a fault.
//! - Units are in the field names (`_ms`, `_dbm`, `_mbps`, `_bytes`,
//!   `_percent`); percentages are 0–100.
//! - Personal identifiers (SSID, BSSID) are hashed with the organisation's
//!   identifier key (HMAC-SHA256) unless its policy allows them in clear;
//!   the field's prefix says which.

use serde::{Deserialize, Serialize};

/// Version of the snapshot format described here.
pub const FORMAT_VERSION: u32 = 1;

/// A measurement, or the reason there is none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe<T> {
    /// Measured.
    Measured(T),
    /// Could not be measured (no permission, tool missing, timed out…).
    Unknown {
        /// Why, in words a technician understands.
        reason: String,
    },
    /// Does not apply to this device (no battery, not on Wi‑Fi…).
    NotApplicable {
        /// Why.
        reason: String,
    },
}

impl<T> Probe<T> {
    /// An unknown probe with `reason`.
    pub fn unknown(reason: impl Into<String>) -> Self {
        Probe::Unknown {
            reason: reason.into(),
        }
    }

    /// A not-applicable probe with `reason`.
    pub fn not_applicable(reason: impl Into<String>) -> Self {
        Probe::NotApplicable {
            reason: reason.into(),
        }
    }

    /// The value, if measured.
    pub fn value(&self) -> Option<&T> {
        match self {
            Probe::Measured(value) => Some(value),
            _ => None,
        }
    }

    /// The reason there is no value, if any.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Probe::Measured(_) => None,
            Probe::Unknown { reason } | Probe::NotApplicable { reason } => Some(reason),
        }
    }
}

impl<T> Default for Probe<T> {
    fn default() -> Self {
        Probe::unknown("not collected by this agent version")
    }
}

/// Everything one diagnostic run measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Snapshot {
    /// [`FORMAT_VERSION`] of the writer.
    pub format: u32,
    /// When the run started, Unix milliseconds on the agent's clock.
    pub taken_at_ms: i64,
    /// Version of the agent that took it.
    pub agent_version: String,
    /// How long the whole run took.
    pub duration_ms: u64,
    /// The machine itself.
    pub device: Probe<Device>,
    /// Interfaces, routes, DNS servers, proxies, VPNs.
    pub network: Probe<NetworkConfig>,
    /// The Wi‑Fi link, when the default route goes over Wi‑Fi.
    pub wifi: Probe<Wifi>,
    /// The home gateway (router) as seen from the device.
    pub gateway: Probe<Gateway>,
    /// Name resolution.
    pub dns: Probe<Dns>,
    /// The device's clock against the relay's.
    pub clock: Probe<Clock>,
    /// The path to the relay over QUIC.
    pub path: Probe<Path>,
    /// The operating system's own connectivity verdict (Windows' NCSI),
    /// reported beside ours. Absent from snapshots of agents that do not
    /// read one (other systems, older agents).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_connectivity: Option<Probe<OsConnectivity>>,
}

/// Facts and load of the machine.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Device {
    /// Host name.
    pub hostname: String,
    /// OS name, e.g. `Debian GNU/Linux`.
    pub os_name: String,
    /// OS version, e.g. `12`.
    pub os_version: String,
    /// Kernel version.
    pub kernel: String,
    /// Seconds since boot.
    pub uptime_secs: u64,
    /// Processor and its load.
    pub cpu: Cpu,
    /// Memory and swap.
    pub memory: Memory,
    /// Linux pressure stall information.
    pub pressure: Probe<Pressure>,
    /// Mounted file systems.
    pub disks: Vec<Disk>,
    /// Temperature sensors.
    pub temperatures: Probe<Vec<Temperature>>,
    /// Battery, if the machine has one.
    pub battery: Probe<Battery>,
}

/// Processor facts and load.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cpu {
    /// Model name.
    pub model: String,
    /// Logical cores.
    pub logical_cores: u32,
    /// Physical cores, if known.
    pub physical_cores: Option<u32>,
    /// Whole-machine CPU usage over the sampling interval.
    pub usage_percent: Option<f64>,
    /// Length of that interval (longer where the OS has no pressure
    /// figures to say whether the load lasts).
    pub usage_sample_ms: Option<u64>,
    /// Load averages over 1, 5 and 15 minutes (Unix).
    pub load_average: Option<[f64; 3]>,
}

/// Memory and swap.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Memory {
    /// Installed memory.
    pub total_bytes: u64,
    /// Memory available to new work without swapping.
    pub available_bytes: u64,
    /// Swap size.
    pub swap_total_bytes: u64,
    /// Swap in use.
    pub swap_used_bytes: u64,
}

/// Pressure stall averages (percent of time some/all tasks stalled).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Pressure {
    /// CPU, some tasks, 10 s average.
    pub cpu_some_avg10: Option<f64>,
    /// CPU, some tasks, 60 s average.
    pub cpu_some_avg60: Option<f64>,
    /// Memory, some tasks, 60 s average.
    pub memory_some_avg60: Option<f64>,
    /// Memory, all tasks, 10 s average.
    pub memory_full_avg10: Option<f64>,
    /// I/O, some tasks, 60 s average.
    pub io_some_avg60: Option<f64>,
    /// I/O, all tasks, 60 s average.
    pub io_full_avg60: Option<f64>,
}

/// A mounted file system.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Disk {
    /// Where it is mounted.
    pub mount_point: String,
    /// File system type.
    pub file_system: String,
    /// Size.
    pub total_bytes: u64,
    /// Space available to the user.
    pub available_bytes: u64,
    /// Whether it holds the OS (`/` or the system drive).
    pub is_system: bool,
}

/// One temperature sensor.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Temperature {
    /// Sensor label.
    pub label: String,
    /// Current reading.
    pub celsius: f64,
    /// The sensor's critical threshold, if it reports one.
    pub critical_celsius: Option<f64>,
}

/// Battery state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Battery {
    /// Charge, 0–100.
    pub charge_percent: Option<f64>,
    /// Full-charge capacity ÷ design capacity, 0–100.
    pub health_percent: Option<f64>,
    /// `charging`, `discharging`, `full`, `unknown`.
    pub state: String,
    /// Charge cycles, if reported.
    pub cycle_count: Option<u32>,
}

/// Kinds of network interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterfaceKind {
    /// IEEE 802.11.
    Wifi,
    /// Wired Ethernet.
    Ethernet,
    /// A VPN tunnel (tun/tap, WireGuard, …).
    Vpn,
    /// Loopback.
    Loopback,
    /// Anything else (bridges, containers, cellular…).
    #[default]
    Other,
}

/// One network interface.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Interface {
    /// OS name, e.g. `wlp2s0`.
    pub name: String,
    /// Its kind.
    pub kind: InterfaceKind,
    /// Link up (operstate up, or carrier).
    pub up: bool,
    /// Negotiated link speed.
    pub speed_mbps: Option<u32>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Addresses with prefix length, e.g. `192.168.1.23/24`.
    pub addresses: Vec<String>,
    /// Receive errors since boot.
    pub rx_errors: Option<u64>,
    /// Transmit errors since boot.
    pub tx_errors: Option<u64>,
    /// The adapter's model or driver name, where the OS names it apart
    /// from the interface (Windows: `Intel(R) Wi-Fi 6 AX201`, `Cisco
    /// AnyConnect … Virtual Miniport Adapter`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The default route.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DefaultRoute {
    /// Interface it leaves by.
    pub interface: String,
    /// Gateway address.
    pub gateway: String,
}

/// Proxy settings that apply to this user.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Proxy {
    /// `http_proxy`.
    pub http: Option<String>,
    /// `https_proxy`.
    pub https: Option<String>,
    /// `all_proxy`.
    pub all: Option<String>,
    /// `no_proxy`.
    pub no_proxy: Option<String>,
    /// `present` when a proxy URL carried a user name or password; the
    /// agent removes them from the URLs above before anything is stored or
    /// sent.
    pub credentials: Option<String>,
    /// Where these came from (`environment`, `gsettings`, …).
    pub source: Option<String>,
}

/// Network configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkConfig {
    /// Interfaces, loopback excluded.
    pub interfaces: Vec<Interface>,
    /// The IPv4 default route.
    pub default_route: Option<DefaultRoute>,
    /// DNS servers the system resolver uses.
    pub dns_servers: Vec<String>,
    /// Whether resolv.conf points at a local stub resolver only.
    pub dns_local_stub: bool,
    /// Proxy settings.
    pub proxy: Proxy,
    /// Names of VPN interfaces that are up.
    pub vpn_interfaces: Vec<String>,
    /// Whether the path to the relay leaves through a VPN interface.
    pub relay_via_vpn: Option<bool>,
    /// With a full-tunnel VPN (general traffic goes into the tunnel): the
    /// router on the physical interface, which the gateway probe measures
    /// instead of the tunnel's far end. Absent without such a VPN, where
    /// `default_route` already names the home router.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home_gateway: Option<DefaultRoute>,
    /// With a full-tunnel VPN: its server (the host route through the home
    /// router) and its round trip, measured apart from the home router and
    /// the relay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpn_server: Option<VpnServer>,
}

/// The server a full-tunnel VPN sends its encrypted packets to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VpnServer {
    /// Its address.
    pub address: String,
    /// Round trip to it (ICMP, or a TCP connection attempt), outside the
    /// tunnel; `None` when the probe did not run.
    #[serde(default)]
    pub round_trip: Option<Probe<Gateway>>,
}

/// Wi‑Fi frequency bands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Band {
    /// 2.4 GHz.
    #[serde(rename = "2.4GHz")]
    Ghz2_4,
    /// 5 GHz.
    #[serde(rename = "5GHz")]
    Ghz5,
    /// 6 GHz.
    #[serde(rename = "6GHz")]
    Ghz6,
}

/// The Wi‑Fi link.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Wifi {
    /// Interface name.
    pub interface: String,
    /// Network name: in clear if policy allows, else `hmac-sha256:` + the
    /// keyed hash under the organisation's identifier key (`sha256:` + a
    /// salted hash from agents of older relays).
    pub ssid: Option<String>,
    /// Access point: in clear if policy allows, else hashed like `ssid`.
    pub bssid: Option<String>,
    /// Band.
    pub band: Option<Band>,
    /// Channel number.
    pub channel: Option<u32>,
    /// Centre frequency.
    pub freq_mhz: Option<f64>,
    /// Received signal strength.
    pub signal_dbm: Option<f64>,
    /// Noise floor.
    pub noise_dbm: Option<f64>,
    /// Signal minus noise.
    pub snr_db: Option<f64>,
    /// Transmit bit rate.
    pub tx_bitrate_mbps: Option<f64>,
    /// Receive bit rate.
    pub rx_bitrate_mbps: Option<f64>,
    /// Share of transmitted frames that needed retries during the sample.
    pub tx_retries_percent: Option<f64>,
    /// Frames that failed during the sample.
    pub tx_failed: Option<u64>,
    /// Share of time the channel was busy during the sample.
    pub channel_busy_percent: Option<f64>,
    /// Which tool the values came from (`iw`, `proc`, `netsh`…).
    pub source: String,
}

/// Reachability of the home gateway.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Gateway {
    /// Its address.
    pub address: String,
    /// How it was probed (`icmp`, `tcp`).
    pub method: String,
    /// Probes sent.
    pub sent: u32,
    /// Probes answered.
    pub received: u32,
    /// Round-trip times of the answered probes.
    pub rtt: Option<RttStats>,
}

/// Round-trip time statistics, milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RttStats {
    /// Number of samples.
    pub samples: u32,
    /// Minimum.
    pub min_ms: f64,
    /// Median.
    pub median_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// Maximum.
    pub max_ms: f64,
    /// Mean absolute difference between consecutive samples.
    pub jitter_ms: f64,
}

/// One DNS lookup.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsLookup {
    /// Name looked up.
    pub name: String,
    /// How long it took, if it answered.
    pub duration_ms: Option<f64>,
    /// The error, if it failed.
    pub error: Option<String>,
}

/// One lookup sent straight to a DNS server, bypassing the system resolver.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DirectLookup {
    /// The server asked.
    pub server: String,
    /// Name looked up.
    pub name: String,
    /// How long the answer took, if one came.
    pub duration_ms: Option<f64>,
    /// Addresses in the answer.
    pub answers: u16,
    /// The error, if it failed.
    pub error: Option<String>,
}

/// Name resolution.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dns {
    /// Lookups through the system resolver.
    pub lookups: Vec<DnsLookup>,
    /// The same names asked straight to the configured DNS servers (another
    /// path: a broken local resolver, stub or VPN split-DNS setup fails the
    /// system lookups while these succeed).
    pub direct: Vec<DirectLookup>,
    /// Whether the relay (reached by address) was also reachable, which
    /// tells a DNS failure from no connectivity at all.
    pub relay_reachable: Option<bool>,
}

/// Clock offset against the relay.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Clock {
    /// Relay clock minus device clock, corrected by half the round trip.
    pub offset_ms: i64,
    /// Round trip of the exchange used.
    pub rtt_ms: f64,
}

/// Bufferbloat grades, by latency added under load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Grade {
    /// < 5 ms.
    #[serde(rename = "A+")]
    APlus,
    /// < 30 ms.
    A,
    /// < 60 ms.
    B,
    /// < 200 ms.
    C,
    /// < 400 ms.
    D,
    /// ≥ 400 ms.
    F,
}

impl Grade {
    /// The grade for `added_ms` of latency under load.
    pub fn from_added_latency(added_ms: f64) -> Grade {
        match added_ms {
            x if x < 5.0 => Grade::APlus,
            x if x < 30.0 => Grade::A,
            x if x < 60.0 => Grade::B,
            x if x < 200.0 => Grade::C,
            x if x < 400.0 => Grade::D,
            _ => Grade::F,
        }
    }

    /// The least added latency that earns this grade, ms: the lower edge of
    /// its band in [`Grade::from_added_latency`] (0 for A+).
    pub fn least_added_ms(self) -> f64 {
        match self {
            Grade::APlus => 0.0,
            Grade::A => 5.0,
            Grade::B => 30.0,
            Grade::C => 60.0,
            Grade::D => 200.0,
            Grade::F => 400.0,
        }
    }

    /// The grade as the public bufferbloat tests write it: `A+`, `A` … `F`.
    pub fn name(self) -> &'static str {
        match self {
            Grade::APlus => "A+",
            Grade::A => "A",
            Grade::B => "B",
            Grade::C => "C",
            Grade::D => "D",
            Grade::F => "F",
        }
    }
}

/// Throughput in one direction.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Throughput {
    /// Goodput over the measured interval.
    pub mbps: f64,
    /// Bytes counted.
    pub bytes: u64,
    /// Measured interval.
    pub duration_ms: u64,
    /// Round trips measured while this transfer ran.
    pub loaded_rtt: Option<RttStats>,
}

/// The path to the relay.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Path {
    /// Relay address.
    pub relay: String,
    /// Whether a QUIC (UDP) connection could be made at all.
    pub udp_ok: bool,
    /// Why not, when it could not.
    pub udp_error: Option<String>,
    /// When QUIC failed: whether the relay's host answered a TCP connection
    /// attempt (accepted or refused) on the same port. An answer over TCP
    /// while UDP gets nothing means UDP is blocked on the way.
    pub tcp_reachable: Option<bool>,
    /// Time to connect and authenticate.
    pub connect_ms: Option<f64>,
    /// Round trips of small probes on an idle connection.
    pub idle_rtt: Option<RttStats>,
    /// Datagram probes sent.
    pub probes_sent: u32,
    /// Datagram probes answered.
    pub probes_received: u32,
    /// Download (relay → device).
    pub download: Probe<Throughput>,
    /// Upload (device → relay).
    pub upload: Probe<Throughput>,
    /// Median latency under load minus idle median.
    pub added_latency_ms: Option<f64>,
    /// Bufferbloat grade from `added_latency_ms`.
    pub bufferbloat: Option<Grade>,
    /// Whether the relay's name resolved; `None` when not tried (an
    /// address needs no lookup).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_resolved: Option<bool>,
    /// The agent's last successful QUIC (UDP) connection to this relay
    /// before this run, Unix milliseconds, from its own records: proof that
    /// the relay was reachable over UDP from this device before. Left out
    /// when that connection was made on another network (default route).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_connected_ms: Option<i64>,
    /// Why the speed test (throughput) was asked for but not run, when the
    /// relay said why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed_test_refused: Option<SpeedTestRefusal>,
    /// Jitter as real-time media sees it: the RFC 3550 interarrival jitter
    /// of the idle probes, sent 20 ms apart like audio packets. Older
    /// agents left it out (their `idle_rtt.jitter_ms` came from
    /// back-to-back probes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_jitter_ms: Option<f64>,
    /// Latency under load of each direction, graded separately;
    /// `added_latency_ms` is the worse one's.
    /// Boxed: most snapshots (quick checks) have none, and a snapshot
    /// travels inside wire enums whose variants should stay similar in size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded: Option<Box<LoadedLatency>>,
}

/// Latency under load, per direction, with responsiveness.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoadedLatency {
    /// While the download ran.
    pub download: Option<LoadedDirection>,
    /// While the upload ran.
    pub upload: Option<LoadedDirection>,
    /// Responsiveness under working conditions, round trips per minute
    /// (60 000 / the worse direction's median loaded round trip in ms), as
    /// the IETF responsiveness draft and Apple's networkQuality report it.
    pub rpm: Option<f64>,
}

impl LoadedLatency {
    /// The direction with more added latency (`"download"` or `"upload"`).
    pub fn worse(&self) -> Option<(&'static str, &LoadedDirection)> {
        match (&self.download, &self.upload) {
            (Some(d), Some(u)) if u.added_ms > d.added_ms => Some(("upload", u)),
            (Some(d), _) => Some(("download", d)),
            (None, Some(u)) => Some(("upload", u)),
            (None, None) => None,
        }
    }
}

/// Round trips measured while one transfer ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadedDirection {
    /// Median round trip under load.
    pub median_ms: f64,
    /// Median under load minus the idle median, never negative.
    pub added_ms: f64,
    /// Bufferbloat grade of `added_ms`.
    pub grade: Grade,
    /// Probes sent during the transfer.
    pub probes_sent: u32,
    /// Probes answered during the transfer.
    pub probes_received: u32,
}

impl LoadedDirection {
    /// Probe loss during the transfer, 0–100.
    pub fn loss_percent(&self) -> Option<f64> {
        (self.probes_sent > 0).then(|| {
            100.0 * f64::from(self.probes_sent.saturating_sub(self.probes_received))
                / f64::from(self.probes_sent)
        })
    }
}

/// The operating system's own verdict on connectivity: on Windows, the
/// Network Connectivity Status Indicator (NCSI) behind the taskbar's
/// "No Internet" icon, read with `GetNetworkConnectivityHint`. Reported
/// beside the agent's measurements, which it does not replace: NCSI probes
/// a Microsoft web server, so a proxy, firewall or VPN can make it say "no
/// internet" while the internet works.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OsConnectivity {
    /// Where the verdict comes from (`ncsi`).
    pub source: String,
    /// What the OS says the machine can reach.
    pub level: ConnectivityLevel,
    /// How the OS charges the connection.
    pub cost: ConnectionCost,
    /// The connection is close to its data limit.
    pub approaching_data_limit: bool,
    /// The connection is over its data limit.
    pub over_data_limit: bool,
    /// The connection is roaming (mobile broadband).
    pub roaming: bool,
}

impl OsConnectivity {
    /// Whether the OS tells its user there is no (full) internet access:
    /// no network, local network only, or a captive portal.
    pub fn says_no_internet(&self) -> bool {
        matches!(
            self.level,
            ConnectivityLevel::None
                | ConnectivityLevel::LocalAccess
                | ConnectivityLevel::ConstrainedInternetAccess
        )
    }

    /// Whether the OS treats the connection as metered (updates and
    /// background sync are deferred).
    pub fn metered(&self) -> bool {
        matches!(self.cost, ConnectionCost::Fixed | ConnectionCost::Variable)
    }
}

/// The OS's connectivity level (Windows' `NL_NETWORK_CONNECTIVITY_LEVEL_HINT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectivityLevel {
    /// No network at all.
    None,
    /// The local network only ("No Internet").
    LocalAccess,
    /// The internet.
    InternetAccess,
    /// Limited internet access, typically a captive portal that wants a
    /// sign-in.
    ConstrainedInternetAccess,
    /// A network the OS hides from applications.
    Hidden,
    /// The OS has no verdict (yet), or a newer agent sent one this
    /// version does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

impl ConnectivityLevel {
    /// Stable lowercase name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectivityLevel::Unknown => "unknown",
            ConnectivityLevel::None => "none",
            ConnectivityLevel::LocalAccess => "local_access",
            ConnectivityLevel::InternetAccess => "internet_access",
            ConnectivityLevel::ConstrainedInternetAccess => "constrained_internet_access",
            ConnectivityLevel::Hidden => "hidden",
        }
    }
}

/// How the OS charges a connection (Windows' `NL_NETWORK_CONNECTIVITY_COST_HINT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionCost {
    /// Not metered.
    Unrestricted,
    /// Metered with a data limit.
    Fixed,
    /// Metered per byte.
    Variable,
    /// Not known.
    #[default]
    #[serde(other)]
    Unknown,
}

/// Why the relay did not run a speed test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpeedTestRefusal {
    /// Another measurement of this device was running.
    Busy {
        /// When to try again, seconds.
        retry_after_s: u64,
    },
    /// The device's hourly speed-test allowance on the relay is spent.
    BudgetSpent {
        /// Seconds until the allowance is renewed.
        retry_after_s: u64,
    },
}

impl Path {
    /// Loss of datagram probes, 0–100, if any were sent.
    pub fn loss_percent(&self) -> Option<f64> {
        (self.probes_sent > 0).then(|| {
            100.0 * f64::from(self.probes_sent.saturating_sub(self.probes_received))
                / f64::from(self.probes_sent)
        })
    }

    /// Latency added under load: the summary `added_latency_ms`, or, in a
    /// snapshot that carries only the per-direction record (written by
    /// hand, or trimmed), its worse direction's.
    pub fn added_latency_under_load_ms(&self) -> Option<f64> {
        self.added_latency_ms.or_else(|| {
            let (_, worse) = self.loaded.as_ref()?.worse()?;
            Some(worse.added_ms)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_grade_starts_at_its_least_added_latency_and_is_named_as_serialised() {
        for grade in [
            Grade::APlus,
            Grade::A,
            Grade::B,
            Grade::C,
            Grade::D,
            Grade::F,
        ] {
            let edge = grade.least_added_ms();
            assert_eq!(Grade::from_added_latency(edge), grade, "{edge} ms");
            if grade != Grade::APlus {
                assert!(Grade::from_added_latency(edge - 0.001) < grade, "{edge} ms");
            }
            assert_eq!(
                serde_json::to_string(&grade).unwrap(),
                format!("\"{}\"", grade.name())
            );
        }
    }

    #[test]
    fn probes_serialise_readably() {
        let measured: Probe<u32> = Probe::Measured(3);
        assert_eq!(
            serde_json::to_string(&measured).unwrap(),
            r#"{"measured":3}"#
        );
        let unknown: Probe<u32> = Probe::unknown("needs location permission");
        assert_eq!(
            serde_json::to_string(&unknown).unwrap(),
            r#"{"unknown":{"reason":"needs location permission"}}"#
        );
    }

    #[test]
    fn older_readers_ignore_newer_fields_and_fill_missing_ones() {
        let text = r#"{"format":1,"agent_version":"9.9","future_field":{"x":1},
                       "path":{"measured":{"relay":"r:1","udp_ok":true,"new":2}}}"#;
        let snapshot: Snapshot = serde_json::from_str(text).unwrap();
        assert_eq!(snapshot.format, 1);
        assert_eq!(snapshot.path.value().map(|p| p.udp_ok), Some(true));
        assert!(matches!(snapshot.wifi, Probe::Unknown { .. }));
    }

    #[test]
    fn the_os_connectivity_verdict_is_optional_and_tolerates_new_levels() {
        let old: Snapshot = serde_json::from_str(r#"{"format":1}"#).unwrap();
        assert_eq!(old.os_connectivity, None);
        assert!(!serde_json::to_string(&old)
            .unwrap()
            .contains("os_connectivity"));
        let text = r#"{"format":1,"os_connectivity":{"measured":{"source":"ncsi","level":"local_access","cost":"fixed"}}}"#;
        let windows: Snapshot = serde_json::from_str(text).unwrap();
        let ncsi = windows.os_connectivity.unwrap();
        let ncsi = ncsi.value().unwrap();
        assert!(ncsi.says_no_internet() && ncsi.metered());
        let newer = r#"{"level":"quantum_access","cost":"by_the_minute"}"#;
        let newer: OsConnectivity = serde_json::from_str(newer).unwrap();
        assert_eq!(newer.level, ConnectivityLevel::Unknown);
        assert_eq!(newer.cost, ConnectionCost::Unknown);
        assert!(!newer.says_no_internet());
    }

    #[test]
    fn grades_follow_the_published_bands() {
        let cases = [
            (0.0, Grade::APlus),
            (4.9, Grade::APlus),
            (5.0, Grade::A),
            (29.9, Grade::A),
            (30.0, Grade::B),
            (60.0, Grade::C),
            (199.0, Grade::C),
            (200.0, Grade::D),
            (399.9, Grade::D),
            (400.0, Grade::F),
        ];
        for (added, grade) in cases {
            assert_eq!(Grade::from_added_latency(added), grade, "{added} ms");
        }
    }

    #[test]
    fn loss_is_unknown_without_probes() {
        let mut path = Path::default();
        assert_eq!(path.loss_percent(), None);
        path.probes_sent = 200;
        path.probes_received = 190;
        assert_eq!(path.loss_percent(), Some(5.0));
    }
}
