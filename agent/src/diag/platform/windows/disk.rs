//! The system drive's size and free space (`GetDiskFreeSpaceExW`), for when
//! sysinfo's volume enumeration lists nothing (it does so under Wine).
#![allow(unsafe_code)]

use deskside_diag::snapshot::Disk;
use windows_sys::Win32::Storage::FileSystem::{GetDiskFreeSpaceExW, GetVolumeInformationW};

use super::dll::{from_wide_array, wide};

/// The system drive (`%SystemDrive%\`), or nothing if Windows cannot say.
pub fn system_disks() -> Vec<Disk> {
    let root = format!("{}\\", super::system_drive());
    let root_wide = wide(&root);
    let (mut available, mut total, mut free) = (0u64, 0u64, 0u64);
    // SAFETY: a NUL-terminated path and three live, writable counters.
    let ok =
        unsafe { GetDiskFreeSpaceExW(root_wide.as_ptr(), &mut available, &mut total, &mut free) };
    if ok == 0 || total == 0 {
        return Vec::new();
    }
    let mut file_system = [0u16; 64];
    // SAFETY: the same path; the only buffer asked for is `file_system`,
    // whose length in UTF-16 units is given; the other outputs are null,
    // which the function allows.
    let named = unsafe {
        GetVolumeInformationW(
            root_wide.as_ptr(),
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            file_system.as_mut_ptr(),
            file_system.len() as u32,
        )
    };
    vec![Disk {
        mount_point: root,
        file_system: if named != 0 {
            from_wide_array(&file_system)
        } else {
            String::new()
        },
        total_bytes: total,
        available_bytes: available,
        is_system: true,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_drive_has_a_size() {
        let disks = system_disks();
        assert_eq!(disks.len(), 1, "{disks:?}");
        assert!(
            disks[0].total_bytes >= disks[0].available_bytes,
            "{disks:?}"
        );
        assert!(super::super::is_system_mount(&disks[0].mount_point));
    }
}
