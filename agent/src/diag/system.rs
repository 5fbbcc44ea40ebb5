//! The device probe: OS, CPU, memory, disks, temperatures (through sysinfo,
//! portable), plus pressure stall information and the battery where the
//! platform module provides them.

use std::time::Duration;

use deskside_diag::snapshot::{Cpu, Device, Disk, Memory, Temperature};
use deskside_diag::Probe;

use super::platform;

/// Collects the device probe. Blocking (file reads, a sleep of
/// `platform::CPU_SAMPLE`: 250 ms beside Linux PSI, 2 s on Windows, which
/// has no pressure figures): run it on a blocking thread.
pub fn collect() -> Device {
    let mut system = sysinfo::System::new();
    // sysinfo needs two readings at least MINIMUM_CPU_UPDATE_INTERVAL apart.
    let sample: Duration = platform::CPU_SAMPLE.max(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
    let platform_usage = platform::cpu_usage(sample);
    if platform_usage.is_none() {
        system.refresh_cpu_usage();
        std::thread::sleep(sample);
    }
    system.refresh_cpu_all();
    system.refresh_memory();
    let load = sysinfo::System::load_average();
    let cpu = Cpu {
        model: system
            .cpus()
            .first()
            .map(|c| c.brand().trim().to_owned())
            .unwrap_or_default(),
        logical_cores: system.cpus().len() as u32,
        physical_cores: system.physical_core_count().map(|n| n as u32),
        usage_percent: platform_usage
            .or_else(|| Some(f64::from(system.global_cpu_usage())))
            .filter(|u| u.is_finite()),
        usage_sample_ms: u64::try_from(sample.as_millis()).ok(),
        load_average: cfg!(unix).then_some([load.one, load.five, load.fifteen]),
    };
    let memory = Memory {
        total_bytes: system.total_memory(),
        available_bytes: system.available_memory(),
        swap_total_bytes: system.total_swap(),
        swap_used_bytes: system.used_swap(),
    };
    let mut disks: Vec<Disk> = sysinfo::Disks::new_with_refreshed_list()
        .iter()
        .filter(|d| d.total_space() > 0)
        .map(|d| {
            let mount_point = d.mount_point().to_string_lossy().into_owned();
            Disk {
                is_system: platform::is_system_mount(&mount_point),
                mount_point,
                file_system: d.file_system().to_string_lossy().into_owned(),
                total_bytes: d.total_space(),
                available_bytes: d.available_space(),
            }
        })
        .collect();
    if disks.is_empty() {
        disks = platform::system_disks();
    }
    let components = sysinfo::Components::new_with_refreshed_list();
    let temperatures: Vec<Temperature> = components
        .iter()
        .filter(|c| c.temperature().is_finite() && c.temperature() > -50.0)
        .map(|c| Temperature {
            label: c.label().to_owned(),
            celsius: f64::from(c.temperature()),
            critical_celsius: c
                .critical()
                .map(f64::from)
                .filter(|t| t.is_finite() && *t > 0.0),
        })
        .collect();
    Device {
        hostname: sysinfo::System::host_name().unwrap_or_default(),
        os_name: sysinfo::System::name().unwrap_or_default(),
        os_version: sysinfo::System::os_version().unwrap_or_default(),
        kernel: sysinfo::System::kernel_version().unwrap_or_default(),
        uptime_secs: sysinfo::System::uptime(),
        cpu,
        memory,
        pressure: platform::pressure(),
        disks,
        temperatures: if temperatures.is_empty() {
            Probe::unknown("no temperature sensor is readable (common in virtual machines)")
        } else {
            Probe::Measured(temperatures)
        },
        battery: platform::battery(),
    }
}
