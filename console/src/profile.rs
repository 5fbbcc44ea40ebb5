//! The technician's profile: which relay to reach, the certificate
//! fingerprint to pin, and the technician token.
//!
//! The profile is a small JSON file (`{"relay", "fingerprint", "token"}`)
//! holding a secret, so it is written through `deskside_net::files`: a
//! temporary file created with mode 0600 in the same directory (itself
//! created 0700), then renamed into place, so the token is never readable by
//! others, not even for an instant. Loading refuses a file that others can
//! read. This module never prints the token, not even in `Debug` output.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use deskside_net::files::{read_private, write_private, FileError};
use deskside_protocol::token::{LoginString, RelayEndpoint};
use deskside_protocol::Fingerprint;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Where the profile lives under the configuration directory.
const PROFILE_RELATIVE: &str = "deskside/profile.json";

/// Everything the console needs to reach and authenticate to its relay.
#[derive(Clone, PartialEq, Eq)]
pub struct Profile {
    /// Relay address as `host:port`.
    pub relay: String,
    /// Fingerprint of the relay's certificate, pinned on every connection.
    pub fingerprint: Fingerprint,
    /// The technician token (a secret).
    pub token: String,
    /// Other relays sharing the directory of `relay` (from a login string
    /// naming several), tried in order when `relay` cannot be reached.
    pub other_relays: Vec<RelayEndpoint>,
}

impl Profile {
    /// Every relay to try, `relay` first.
    pub fn relays(&self) -> Vec<RelayEndpoint> {
        deskside_protocol::token::all_relays(&self.relay, self.fingerprint, &self.other_relays)
    }
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile")
            .field("relay", &self.relay)
            .field("fingerprint", &self.fingerprint)
            .field("other_relays", &self.other_relays)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl From<LoginString> for Profile {
    fn from(login: LoginString) -> Self {
        Self {
            relay: login.relay,
            fingerprint: login.fingerprint,
            token: login.token,
            other_relays: login.other_relays,
        }
    }
}

/// The profile as stored: plain strings, so the file is easy to read and
/// the fingerprint appears as `sha256:…` rather than an array of numbers.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    relay: String,
    fingerprint: String,
    token: String,
    /// Absent with one relay, so such a profile reads in older consoles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    other_relays: Vec<OtherRelayFile>,
}

/// One of [`Profile::other_relays`] as stored.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtherRelayFile {
    relay: String,
    fingerprint: String,
}

/// Errors finding, reading or writing the profile.
#[derive(Debug, Error)]
pub enum ProfileError {
    /// There is no profile yet: the technician has not logged in.
    #[error("no profile at {}: run `deskside login LOGIN_STRING` first (ask an administrator for a login string)", path.display())]
    Missing {
        /// Where the profile was looked for.
        path: PathBuf,
    },
    /// The file exists but cannot be read, or others can read it.
    #[error("cannot use the profile: {0}")]
    Unreadable(FileError),
    /// The file is not a profile this console understands.
    #[error("the profile at {} is damaged ({reason}): run `deskside login LOGIN_STRING` again to replace it", path.display())]
    Damaged {
        /// Which file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The profile could not be written.
    #[error("cannot save the profile: {0}")]
    Unwritable(FileError),
    /// Neither `--profile`, `DESKSIDE_PROFILE`, `XDG_CONFIG_HOME` nor `HOME`
    /// says where the profile lives.
    #[error("cannot tell where to keep the profile: HOME is not set; pass --profile FILE or set DESKSIDE_PROFILE")]
    NoHome,
}

/// The default profile location: `$XDG_CONFIG_HOME/deskside/profile.json`
/// when `XDG_CONFIG_HOME` is an absolute path (the XDG specification says to
/// ignore relative ones), else `$HOME/.config/deskside/profile.json`.
pub fn default_path(
    xdg_config_home: Option<OsString>,
    home: Option<OsString>,
) -> Result<PathBuf, ProfileError> {
    if let Some(xdg) = xdg_config_home
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        return Ok(xdg.join(PROFILE_RELATIVE));
    }
    match home.filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".config").join(PROFILE_RELATIVE)),
        None => Err(ProfileError::NoHome),
    }
}

/// Reads the profile at `path`.
pub fn load(path: &Path) -> Result<Profile, ProfileError> {
    let bytes = read_private(path).map_err(|error| match &error {
        FileError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            ProfileError::Missing {
                path: path.to_owned(),
            }
        }
        _ => ProfileError::Unreadable(error),
    })?;
    let damaged = |reason: String| ProfileError::Damaged {
        path: path.to_owned(),
        reason,
    };
    let file: ProfileFile = serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
    let fingerprint = file
        .fingerprint
        .parse()
        .map_err(|e: deskside_protocol::ids::ParseError| damaged(e.to_string()))?;
    if file.relay.is_empty() || file.token.is_empty() {
        return Err(damaged("empty relay or token".to_owned()));
    }
    let mut other_relays = Vec::new();
    for other in file.other_relays {
        let fingerprint = other
            .fingerprint
            .parse()
            .map_err(|e: deskside_protocol::ids::ParseError| damaged(e.to_string()))?;
        other_relays.push(RelayEndpoint {
            addr: other.relay,
            fingerprint,
        });
    }
    Ok(Profile {
        relay: file.relay,
        fingerprint,
        token: file.token,
        other_relays,
    })
}

/// Writes `profile` to `path` atomically, readable only by its owner,
/// creating the directory (mode 0700) if needed.
pub fn save(path: &Path, profile: &Profile) -> Result<(), ProfileError> {
    let file = ProfileFile {
        relay: profile.relay.clone(),
        fingerprint: profile.fingerprint.to_string(),
        token: profile.token.clone(),
        other_relays: profile
            .other_relays
            .iter()
            .map(|other| OtherRelayFile {
                relay: other.addr.clone(),
                fingerprint: other.fingerprint.to_string(),
            })
            .collect(),
    };
    // Serialising a struct of strings cannot fail; map it anyway rather than
    // unwrap, so that this stays panic-free if the type ever grows.
    let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| ProfileError::Damaged {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    bytes.push(b'\n');
    write_private(path, &bytes).map_err(ProfileError::Unwritable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        Profile {
            relay: "relay.example.org:4433".into(),
            fingerprint: Fingerprint([0xab; 32]),
            token: "dst_secret".into(),
            other_relays: Vec::new(),
        }
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn save_then_load_round_trips_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config/deskside/profile.json");
        save(&path, &profile()).unwrap();
        assert_eq!(load(&path).unwrap(), profile());
        #[cfg(unix)]
        {
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().unwrap()), 0o700);
        }
        // Saving again replaces the profile and leaves no temporary file.
        let mut other = profile();
        other.token = "dst_other".into();
        save(&path, &other).unwrap();
        assert_eq!(load(&path).unwrap(), other);
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[test]
    fn a_profile_keeps_the_other_relays_of_its_login_string() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profile.json");
        let mut listed = profile();
        listed.other_relays = vec![RelayEndpoint {
            addr: "relay-b.example.org:4433".into(),
            fingerprint: Fingerprint([0xcd; 32]),
        }];
        save(&path, &listed).unwrap();
        assert_eq!(load(&path).unwrap(), listed);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(&Fingerprint([0xcd; 32]).to_string()),
            "{text}"
        );
        let relays = listed.relays();
        assert_eq!(relays.len(), 2);
        assert_eq!(relays[0].addr, "relay.example.org:4433");
        // A single-relay profile is written as before (older consoles read it).
        save(&path, &profile()).unwrap();
        assert!(!std::fs::read_to_string(&path)
            .unwrap()
            .contains("other_relays"));
    }

    #[test]
    fn stored_profile_is_readable_json_with_the_three_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profile.json");
        save(&path, &profile()).unwrap();
        let value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let expected = serde_json::json!({
            "relay": "relay.example.org:4433",
            "fingerprint": format!("sha256:{}", "ab".repeat(32)),
            "token": "dst_secret",
        });
        assert_eq!(value, expected);
    }

    #[test]
    fn missing_profile_says_to_log_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nothing/profile.json");
        let error = load(&path).unwrap_err();
        assert!(matches!(error, ProfileError::Missing { .. }));
        assert_eq!(
            error.to_string(),
            format!(
                "no profile at {}: run `deskside login LOGIN_STRING` first (ask an administrator for a login string)",
                path.display()
            )
        );
    }

    #[test]
    #[cfg(unix)]
    fn profile_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profile.json");
        save(&path, &profile()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = load(&path).unwrap_err();
        assert!(matches!(error, ProfileError::Unreadable(_)), "{error}");
        assert!(error.to_string().contains("chmod 600"), "{error}");
    }

    #[test]
    fn damaged_profiles_say_how_to_recover() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profile.json");
        for contents in [
            "not json",
            r#"{"relay":"r:1","fingerprint":"sha256:00","token":"t"}"#,
            r#"{"relay":"","fingerprint":"sha256:00","token":"t"}"#,
        ] {
            write_private(&path, contents.as_bytes()).unwrap();
            let error = load(&path).unwrap_err();
            assert!(
                matches!(error, ProfileError::Damaged { .. }),
                "{contents}: {error}"
            );
            assert!(error.to_string().contains("deskside login"), "{error}");
        }
    }

    #[test]
    fn debug_output_hides_the_token() {
        let text = format!("{:?}", profile());
        assert!(!text.contains("dst_secret"), "{text}");
        assert!(text.contains("relay.example.org"), "{text}");
    }

    #[test]
    fn default_path_prefers_absolute_xdg_config_home() {
        let xdg = Some(OsString::from("/xdg"));
        let home = Some(OsString::from("/home/ana"));
        assert_eq!(
            default_path(xdg, home.clone()).unwrap(),
            PathBuf::from("/xdg/deskside/profile.json")
        );
        assert_eq!(
            default_path(Some(OsString::from("relative")), home.clone()).unwrap(),
            PathBuf::from("/home/ana/.config/deskside/profile.json")
        );
        assert_eq!(
            default_path(Some(OsString::new()), home).unwrap(),
            PathBuf::from("/home/ana/.config/deskside/profile.json")
        );
        assert!(matches!(
            default_path(None, None),
            Err(ProfileError::NoHome)
        ));
        assert!(matches!(
            default_path(None, Some(OsString::new())),
            Err(ProfileError::NoHome)
        ));
    }
}
