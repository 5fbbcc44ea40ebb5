//! Battery (`GetSystemPowerStatus` for charge and state, the battery
//! driver's `IOCTL_BATTERY_QUERY_INFORMATION` for its capacities) and
//! processor time (`GetSystemTimes`).
#![allow(unsafe_code)]

use std::ptr::{addr_of, null, null_mut};
use std::time::Duration;

use deskside_diag::snapshot::Battery;
use deskside_diag::Probe;
use windows_sys::Win32::Devices::DeviceAndDriverInstallation::{
    SetupDiDestroyDeviceInfoList, SetupDiEnumDeviceInterfaces, SetupDiGetClassDevsW,
    SetupDiGetDeviceInterfaceDetailW, DIGCF_DEVICEINTERFACE, DIGCF_PRESENT, GUID_DEVCLASS_BATTERY,
    SP_DEVICE_INTERFACE_DATA, SP_DEVICE_INTERFACE_DETAIL_DATA_W,
};
use windows_sys::Win32::Foundation::{
    CloseHandle, FILETIME, GENERIC_READ, GENERIC_WRITE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_ATTRIBUTE_NORMAL, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
};
use windows_sys::Win32::System::Power::{
    BatteryInformation, GetSystemPowerStatus, BATTERY_INFORMATION, BATTERY_QUERY_INFORMATION,
    IOCTL_BATTERY_QUERY_INFORMATION, IOCTL_BATTERY_QUERY_TAG, SYSTEM_POWER_STATUS,
};
use windows_sys::Win32::System::Threading::GetSystemTimes;
use windows_sys::Win32::System::IO::DeviceIoControl;

use super::dll::from_wide_ptr;
use super::map::{self, PowerStatus};

/// The battery: charge and state from the system power status, health and
/// cycles from the first battery's driver when it answers.
pub fn battery() -> Probe<Battery> {
    let probe = power_status();
    if probe.value().is_none() {
        return probe;
    }
    map::with_health(probe, first_battery_information())
}

/// The device path of the first battery (`\\?\acpi#pnp0c0a#…`).
fn first_battery_path() -> Option<String> {
    // SAFETY: a GUID constant and flags; the returned set is destroyed
    // below on every path.
    let devices = unsafe {
        SetupDiGetClassDevsW(
            &GUID_DEVCLASS_BATTERY,
            null(),
            null_mut(),
            DIGCF_PRESENT | DIGCF_DEVICEINTERFACE,
        )
    };
    if devices == INVALID_HANDLE_VALUE as isize {
        return None;
    }
    let path = (|| {
        // SAFETY: plain data; cbSize is set as the API requires.
        let mut interface: SP_DEVICE_INTERFACE_DATA = unsafe { std::mem::zeroed() };
        interface.cbSize = std::mem::size_of::<SP_DEVICE_INTERFACE_DATA>() as u32;
        // SAFETY: a live device set and interface structure.
        let found = unsafe {
            SetupDiEnumDeviceInterfaces(devices, null(), &GUID_DEVCLASS_BATTERY, 0, &mut interface)
        };
        if found == 0 {
            return None;
        }
        let mut required = 0u32;
        // SAFETY: asks for the size only (null buffer of size 0).
        unsafe {
            SetupDiGetDeviceInterfaceDetailW(
                devices,
                &interface,
                null_mut(),
                0,
                &mut required,
                null_mut(),
            )
        };
        let size = std::mem::size_of::<SP_DEVICE_INTERFACE_DETAIL_DATA_W>();
        if (required as usize) < size {
            return None;
        }
        // u64 elements: aligned for the structure.
        let mut buffer: Vec<u64> = vec![0; (required as usize).div_ceil(8)];
        let detail = buffer
            .as_mut_ptr()
            .cast::<SP_DEVICE_INTERFACE_DETAIL_DATA_W>();
        // SAFETY: the buffer holds `required` bytes, at least one structure;
        // cbSize is the size of the fixed part, as documented.
        let filled = unsafe {
            (*detail).cbSize = size as u32;
            SetupDiGetDeviceInterfaceDetailW(
                devices,
                &interface,
                detail,
                required,
                null_mut(),
                null_mut(),
            )
        };
        if filled == 0 {
            return None;
        }
        // SAFETY: DevicePath is a NUL-terminated string inside the buffer.
        unsafe { from_wide_ptr(addr_of!((*detail).DevicePath).cast::<u16>()) }
    })();
    // SAFETY: the set created above, destroyed once.
    unsafe { SetupDiDestroyDeviceInfoList(devices) };
    path
}

/// Capacities and cycles of the first battery, from its driver.
fn first_battery_information() -> Option<map::BatteryInformation> {
    let path = super::dll::wide(&first_battery_path()?);
    // SAFETY: a NUL-terminated device path; no security attributes or
    // template; the handle is closed below.
    let device = unsafe {
        CreateFileW(
            path.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            FILE_SHARE_READ | FILE_SHARE_WRITE,
            null(),
            OPEN_EXISTING,
            FILE_ATTRIBUTE_NORMAL,
            null_mut(),
        )
    };
    if device == INVALID_HANDLE_VALUE {
        return None;
    }
    let information = (|| {
        let wait = 0u32; // do not wait for a battery to appear
        let mut tag = 0u32;
        let mut returned = 0u32;
        // SAFETY: an open battery handle; input and output are live u32s
        // of the sizes given; synchronous (no OVERLAPPED).
        let ok = unsafe {
            DeviceIoControl(
                device,
                IOCTL_BATTERY_QUERY_TAG,
                (&wait as *const u32).cast(),
                4,
                (&mut tag as *mut u32).cast(),
                4,
                &mut returned,
                null_mut(),
            )
        };
        if ok == 0 || tag == 0 {
            return None;
        }
        let query = BATTERY_QUERY_INFORMATION {
            BatteryTag: tag,
            InformationLevel: BatteryInformation,
            AtRate: 0,
        };
        // SAFETY: plain data, filled by the call.
        let mut info: BATTERY_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: as above, with the query and information structures.
        let ok = unsafe {
            DeviceIoControl(
                device,
                IOCTL_BATTERY_QUERY_INFORMATION,
                (&query as *const BATTERY_QUERY_INFORMATION).cast(),
                std::mem::size_of::<BATTERY_QUERY_INFORMATION>() as u32,
                (&mut info as *mut BATTERY_INFORMATION).cast(),
                std::mem::size_of::<BATTERY_INFORMATION>() as u32,
                &mut returned,
                null_mut(),
            )
        };
        (ok != 0).then_some(map::BatteryInformation {
            capabilities: info.Capabilities,
            designed_capacity: info.DesignedCapacity,
            full_charged_capacity: info.FullChargedCapacity,
            cycle_count: info.CycleCount,
        })
    })();
    // SAFETY: the handle opened above, closed once.
    unsafe { CloseHandle(device) };
    information
}

/// Charge and state from the system power status.
fn power_status() -> Probe<Battery> {
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
