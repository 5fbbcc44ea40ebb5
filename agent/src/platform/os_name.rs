//! How the agent names a Windows release, from numbers the OS reports.
//!
//! Pure: the caller reads the numbers (`windows/os_version.rs`), so every
//! rule here is tested on any OS.

/// Windows as an administrator names it: `Windows 11 23H2 (22631)`,
/// `Windows 10 22H2 (19045)`, or without a feature-update name (Windows 10
/// before 20H2, Wine) `Windows 10 (18362)`.
///
/// `major.minor.build` come from the kernel (RtlGetVersion, which, unlike
/// GetVersionEx, does not pretend to be Windows 8 to programs without a
/// compatibility manifest). Windows 11 still reports 10.0: only its build
/// number (22000 and later) tells it apart. `display_version` is the
/// registry's `DisplayVersion` (`23H2`).
pub fn windows_name(major: u32, minor: u32, build: u32, display_version: Option<&str>) -> String {
    /// The first Windows 11 build (21H2).
    const FIRST_WINDOWS_11_BUILD: u32 = 22_000;
    let release = match (major, minor) {
        (10, 0) if build >= FIRST_WINDOWS_11_BUILD => "11".to_owned(),
        (10, 0) => "10".to_owned(),
        (6, 3) => "8.1".to_owned(),
        (6, 2) => "8".to_owned(),
        (6, 1) => "7".to_owned(),
        (6, 0) => "Vista".to_owned(),
        _ => format!("NT {major}.{minor}"),
    };
    match display_version.map(str::trim).filter(|v| !v.is_empty()) {
        Some(feature_update) => format!("Windows {release} {feature_update} ({build})"),
        None => format!("Windows {release} ({build})"),
    }
}

#[cfg(test)]
mod tests {
    use super::windows_name;

    #[test]
    fn releases_are_named_as_administrators_name_them() {
        let cases = [
            ((10, 0, 22631, Some("23H2")), "Windows 11 23H2 (22631)"),
            ((10, 0, 22000, Some("21H2")), "Windows 11 21H2 (22000)"),
            ((10, 0, 19045, Some("22H2")), "Windows 10 22H2 (19045)"),
            // Wine 8.0's "win10" and Windows 10 1903: no DisplayVersion.
            ((10, 0, 18362, None), "Windows 10 (18362)"),
            ((10, 0, 18362, Some(" ")), "Windows 10 (18362)"),
            // Wine's default prefix.
            ((6, 1, 7601, None), "Windows 7 (7601)"),
            ((6, 3, 9600, None), "Windows 8.1 (9600)"),
            ((12, 1, 30000, None), "Windows NT 12.1 (30000)"),
        ];
        for ((major, minor, build, display), expected) in cases {
            assert_eq!(windows_name(major, minor, build, display), expected);
        }
    }
}
