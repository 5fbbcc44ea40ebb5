//! `deskside devices list|show|revoke`: the organisation's enrolled devices.
//!
//! The relay resolves a DEVICE argument (full id, unique id prefix or
//! hostname); this module only asks and prints. Host names and OS strings
//! come from agents, so human output passes them through
//! [`crate::output::printable`].

use clap::{Args, Subcommand};
use deskside_protocol::console::{ConsoleRequest, ConsoleResponse, DeviceSummary};
use serde::Serialize;

use super::{printed, unexpected, Context};
use crate::output::{
    absolute_and_relative, key_values, printable, relative, rfc3339, rfc3339_opt, Column, Printer,
    Table,
};

/// `deskside devices …`.
#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// List the organisation's devices
    List,
    /// Show one device in detail
    Show(DeviceArg),
    /// Revoke a device: its agent is disconnected and refused from now on (admin)
    Revoke(DeviceArg),
}

/// The device a command is about.
#[derive(Debug, Args)]
pub struct DeviceArg {
    /// Device id (dev_…), unique id prefix (dev_ and at least 4 hex digits), or hostname
    #[arg(value_name = "DEVICE")]
    pub device: String,
}

/// Runs a `devices` subcommand.
pub async fn run(command: DevicesCommand, ctx: &mut Context<'_>) -> anyhow::Result<()> {
    let request = match &command {
        DevicesCommand::List => ConsoleRequest::ListDevices,
        DevicesCommand::Show(arg) => ConsoleRequest::ShowDevice {
            device: arg.device.clone(),
        },
        DevicesCommand::Revoke(arg) => ConsoleRequest::RevokeDevice {
            device: arg.device.clone(),
        },
    };
    let response = super::request(ctx, request).await?;
    let now = ctx.now;
    match (command, response) {
        (DevicesCommand::List, ConsoleResponse::Devices(devices)) => {
            printed(print_list(&mut ctx.out, &devices, now))
        }
        (DevicesCommand::Show(_), ConsoleResponse::Device(device)) => {
            printed(print_show(&mut ctx.out, &device, now))
        }
        (DevicesCommand::Revoke(_), ConsoleResponse::DeviceRevoked(device)) => {
            printed(print_revoked(&mut ctx.out, &device))
        }
        (_, other) => Err(unexpected(&other)),
    }
}

/// `online`, `offline` or `revoked` (revocation wins over a connection the
/// relay has not closed yet).
pub fn status(device: &DeviceSummary) -> &'static str {
    if device.revoked_at.is_some() {
        "revoked"
    } else if device.online {
        "online"
    } else {
        "offline"
    }
}

/// The JSON record of a device (`type` is `device` or `device_revoked`).
#[derive(Debug, Serialize)]
pub struct DeviceRecord {
    /// `"device"` or `"device_revoked"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `dev_` and 16 hex digits.
    pub id: String,
    /// Host name reported by the agent.
    pub hostname: String,
    /// OS reported by the agent.
    pub os: String,
    /// Agent version.
    pub agent_version: String,
    /// `online`, `offline` or `revoked`.
    pub status: &'static str,
    /// Whether an agent connection is attached right now.
    pub online: bool,
    /// Enrollment time, RFC 3339.
    pub first_seen: String,
    /// Last connection time, RFC 3339.
    pub last_seen: String,
    /// Address of its last connection, if known.
    pub last_address: Option<String>,
    /// Revocation time, RFC 3339, if revoked.
    pub revoked_at: Option<String>,
    /// Device group, if its enrollment token named one.
    pub group: Option<String>,
}

impl DeviceRecord {
    /// The record of `device` with this `type`.
    pub fn new(kind: &'static str, device: &DeviceSummary) -> Self {
        Self {
            kind,
            id: device.id.to_string(),
            hostname: device.hostname.clone(),
            os: device.os.clone(),
            agent_version: device.agent_version.clone(),
            status: status(device),
            online: device.online,
            first_seen: rfc3339(device.first_seen),
            last_seen: rfc3339(device.last_seen),
            last_address: device.last_address.clone(),
            revoked_at: rfc3339_opt(device.revoked_at),
            group: device.group.clone(),
        }
    }
}

/// `now` for a device attached right now, else how long ago it was seen.
fn last_seen(device: &DeviceSummary, now: i64) -> String {
    if status(device) == "online" {
        "now".to_owned()
    } else {
        relative(now, device.last_seen)
    }
}

/// The human table of devices.
pub fn list_table(devices: &[DeviceSummary], now: i64) -> Table {
    let mut table = Table::new(&[
        Column::new("ID"),
        Column::capped("HOSTNAME", 32),
        Column::capped("OS", 32),
        Column::capped("GROUP", 24),
        Column::new("STATUS"),
        Column::new("LAST SEEN"),
    ]);
    for device in devices {
        table.row([
            device.id.to_string(),
            device.hostname.clone(),
            device.os.clone(),
            device.group.clone().unwrap_or_else(|| "-".to_owned()),
            status(device).to_owned(),
            last_seen(device, now),
        ]);
    }
    table
}

/// Shown instead of an empty table.
pub const NO_DEVICES: &str = "No devices enrolled yet.\n\
To enroll one, create a token with `deskside enroll-token create`, then run\n\
`sudo deskside-agent enroll TOKEN` on the employee's device.";

fn print_list(out: &mut Printer<'_>, devices: &[DeviceSummary], now: i64) -> std::io::Result<()> {
    if out.is_json() {
        return devices
            .iter()
            .try_for_each(|device| out.json(&DeviceRecord::new("device", device)));
    }
    if devices.is_empty() {
        return out.text(NO_DEVICES);
    }
    out.text(&list_table(devices, now).render())
}

/// The human key/value block of one device.
pub fn show_text(device: &DeviceSummary, now: i64) -> String {
    let last_seen = if status(device) == "online" {
        format!("now (connected, {})", rfc3339(device.last_seen))
    } else {
        absolute_and_relative(now, device.last_seen)
    };
    let mut pairs = vec![
        ("id", device.id.to_string()),
        ("hostname", device.hostname.clone()),
        ("os", device.os.clone()),
        ("agent version", device.agent_version.clone()),
        (
            "group",
            device.group.clone().unwrap_or_else(|| "none".to_owned()),
        ),
        ("status", status(device).to_owned()),
        ("first seen", absolute_and_relative(now, device.first_seen)),
        ("last seen", last_seen),
        (
            "last address",
            device
                .last_address
                .clone()
                .unwrap_or_else(|| "unknown".to_owned()),
        ),
    ];
    if let Some(revoked_at) = device.revoked_at {
        pairs.push(("revoked", absolute_and_relative(now, revoked_at)));
    }
    key_values(&pairs)
}

fn print_show(out: &mut Printer<'_>, device: &DeviceSummary, now: i64) -> std::io::Result<()> {
    if out.is_json() {
        out.json(&DeviceRecord::new("device", device))
    } else {
        out.text(&show_text(device, now))
    }
}

/// The human line after a revocation.
pub fn revoked_text(device: &DeviceSummary) -> String {
    format!(
        "Revoked {} ({}): its agent is disconnected and refused from now on.",
        device.id,
        printable(&device.hostname)
    )
}

fn print_revoked(out: &mut Printer<'_>, device: &DeviceSummary) -> std::io::Result<()> {
    if out.is_json() {
        out.json(&DeviceRecord::new("device_revoked", device))
    } else {
        out.text(&revoked_text(device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Format;
    use deskside_protocol::DeviceId;

    const NOW: i64 = 1_700_000_000;

    fn device(id: u64, hostname: &str, online: bool, last_seen_ago: i64) -> DeviceSummary {
        DeviceSummary {
            id: DeviceId(id),
            hostname: hostname.into(),
            os: "Debian 12".into(),
            agent_version: "0.1.0".into(),
            online,
            first_seen: NOW - 10 * 86_400,
            last_seen: NOW - last_seen_ago,
            last_address: online.then(|| "203.0.113.7:50123".to_owned()),
            revoked_at: None,
            group: None,
        }
    }

    fn output(
        format: Format,
        print: impl FnOnce(&mut Printer<'_>) -> std::io::Result<()>,
    ) -> String {
        let mut buffer = Vec::new();
        print(&mut Printer::new(&mut buffer, format)).unwrap();
        String::from_utf8(buffer).unwrap()
    }

    #[test]
    fn status_prefers_revoked() {
        let mut d = device(1, "a", true, 0);
        assert_eq!(status(&d), "online");
        d.online = false;
        assert_eq!(status(&d), "offline");
        d.online = true;
        d.revoked_at = Some(NOW);
        assert_eq!(status(&d), "revoked");
    }

    #[test]
    fn list_table_shows_status_and_last_seen() {
        let mut revoked = device(3, "old-laptop", false, 5 * 86_400);
        revoked.revoked_at = Some(NOW - 86_400);
        let mut in_paris = device(1, "ana-laptop", true, 0);
        in_paris.group = Some("paris".to_owned());
        let devices = [in_paris, device(2, "bob-pc", false, 180), revoked];
        assert_eq!(
            list_table(&devices, NOW).render(),
            "ID                    HOSTNAME    OS         GROUP  STATUS   LAST SEEN\n\
             dev_0000000000000001  ana-laptop  Debian 12  paris  online   now\n\
             dev_0000000000000002  bob-pc      Debian 12  -      offline  3m ago\n\
             dev_0000000000000003  old-laptop  Debian 12  -      revoked  5d ago\n"
        );
        let mut shown = device(4, "cal-pc", false, 60);
        assert!(
            show_text(&shown, NOW).contains("group"),
            "{}",
            show_text(&shown, NOW)
        );
        shown.group = Some("lyon".to_owned());
        assert!(show_text(&shown, NOW).contains("lyon"));
    }

    #[test]
    fn empty_list_explains_how_to_enroll() {
        let text = output(Format::Human, |out| print_list(out, &[], NOW));
        assert!(text.contains("deskside enroll-token create"), "{text}");
        assert_eq!(output(Format::Json, |out| print_list(out, &[], NOW)), "");
    }

    #[test]
    fn device_json_has_the_documented_keys() {
        let mut d = device(0xabc, "ana-laptop", true, 0);
        let value = serde_json::to_value(DeviceRecord::new("device", &d)).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "type": "device",
                "id": "dev_0000000000000abc",
                "hostname": "ana-laptop",
                "os": "Debian 12",
                "agent_version": "0.1.0",
                "status": "online",
                "online": true,
                "first_seen": "2023-11-04T22:13:20Z",
                "last_seen": "2023-11-14T22:13:20Z",
                "last_address": "203.0.113.7:50123",
                "revoked_at": null,
                "group": null,
            })
        );
        d.revoked_at = Some(NOW);
        d.online = false;
        let revoked = serde_json::to_value(DeviceRecord::new("device_revoked", &d)).unwrap();
        let keys =
            |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            keys(&revoked),
            keys(&value),
            "device_revoked has the device's keys"
        );
        let value = revoked;
        assert_eq!(value["type"], "device_revoked");
        assert_eq!(value["status"], "revoked");
        assert_eq!(value["revoked_at"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn json_list_is_one_device_per_line() {
        let devices = [device(1, "a", true, 0), device(2, "b", false, 60)];
        let text = output(Format::Json, |out| print_list(out, &devices, NOW));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        for line in lines {
            assert!(line.starts_with(r#"{"type":"device","id":"dev_"#), "{line}");
            serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
    }

    #[test]
    fn show_text_is_a_key_value_block() {
        let mut d = device(1, "bob-pc", false, 7_200);
        d.revoked_at = Some(NOW - 60);
        assert_eq!(
            show_text(&d, NOW),
            "id:            dev_0000000000000001\n\
             hostname:      bob-pc\n\
             os:            Debian 12\n\
             agent version: 0.1.0\n\
             group:         none\n\
             status:        revoked\n\
             first seen:    2023-11-04T22:13:20Z (10d ago)\n\
             last seen:     2023-11-14T20:13:20Z (2h ago)\n\
             last address:  unknown\n\
             revoked:       2023-11-14T22:12:20Z (1m ago)\n"
        );
        let online = show_text(&device(2, "ana", true, 0), NOW);
        assert!(
            online.contains("last seen:     now (connected, 2023-11-14T22:13:20Z)"),
            "{online}"
        );
        assert!(
            online.contains("last address:  203.0.113.7:50123"),
            "{online}"
        );
    }

    #[test]
    fn revoked_line_names_the_device() {
        let text = output(Format::Human, |out| {
            print_revoked(out, &device(1, "bob-pc", false, 0))
        });
        assert_eq!(
            text,
            "Revoked dev_0000000000000001 (bob-pc): its agent is disconnected and refused from now on.\n"
        );
        let json = output(Format::Json, |out| {
            print_revoked(out, &device(1, "bob-pc", false, 0))
        });
        assert!(
            json.starts_with(r#"{"type":"device_revoked","id":"dev_0000000000000001""#),
            "{json}"
        );
    }
}
