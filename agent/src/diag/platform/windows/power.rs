//! Battery (`GetSystemPowerStatus`) and processor time (`GetSystemTimes`).
#![allow(unsafe_code)]

use std::time::Duration;

use deskside_diag::snapshot::Battery;
use deskside_diag::Probe;
use windows_sys::Win32::Foundation::FILETIME;
use windows_sys::Win32::System::Power::{GetSystemPowerStatus, SYSTEM_POWER_STATUS};
use windows_sys::Win32::System::Threading::GetSystemTimes;

use super::map::{self, PowerStatus};

/// The battery, from the system power status.
pub fn battery() -> Probe<Battery> {
    let mut status = SYSTEM_POWER_STATUS {
        ACLineStatus: 0,
        BatteryFlag: 0,
        BatteryLifePercent: 0,
        SystemStatusFlag: 0,
        BatteryLifeTime: 0,
        BatteryFullLifeTime: 0,
    };
    // SAFETY: `status` is a live, writable structure of the expected type.
    if unsafe { GetSystemPowerStatus(&mut status) } == 0 {
        return Probe::unknown("GetSystemPowerStatus failed");
    }
    map::battery(PowerStatus {
        ac_line: status.ACLineStatus,
        battery_flag: status.BatteryFlag,
        life_percent: status.BatteryLifePercent,
    })
}

fn system_times() -> Option<(u64, u64, u64)> {
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut idle, mut kernel, mut user) = (zero, zero, zero);
    // SAFETY: three live, writable FILETIMEs.
    let ok = unsafe { GetSystemTimes(&mut idle, &mut kernel, &mut user) };
    let value = |t: FILETIME| (u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime);
    (ok != 0).then(|| (value(idle), value(kernel), value(user)))
}

/// Whole-machine processor usage over `sample` (blocking: it sleeps).
pub fn cpu_usage(sample: Duration) -> Option<f64> {
    let before = system_times()?;
    std::thread::sleep(sample);
    map::cpu_busy_percent(before, system_times()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processor_time_and_power_status_are_read() {
        let usage = cpu_usage(Duration::from_millis(300));
        // Wine derives the times from /proc/stat: they move.
        let usage = usage.expect("GetSystemTimes answers and time passes");
        assert!((0.0..=100.0).contains(&usage), "{usage}");
        // A machine with or without a battery: never a made-up figure.
        match battery() {
            Probe::Measured(b) => assert!(b.charge_percent.is_none_or(|c| c <= 100.0)),
            other => assert!(other.reason().is_some()),
        }
    }
}
