//! Desktop notifications through the freedesktop Notifications D-Bus API
//! (`org.freedesktop.Notifications.Notify` on the session bus), with the
//! smallest D-Bus client that can make that one call: connect to the
//! session bus's Unix socket, authenticate with `EXTERNAL` (the kernel
//! vouches for our uid), say `Hello`, call `Notify`, read its reply.
//!
//! Unix only (the Windows helper does not notify yet). Blocking, with
//! socket timeouts: run it off the async runtime. Incoming messages are
//! read with their lengths checked before anything is allocated; this
//! module never panics on what the bus sends.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// How long one read or write on the bus may take.
const BUS_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest header-field array or body accepted from the bus; a reply to
/// `Hello` or `Notify` is a few dozen bytes.
const MAX_INCOMING: usize = 64 * 1024;
/// Messages read while waiting for one reply (signals such as
/// `NameAcquired` arrive in between).
const MAX_MESSAGES_PER_REPLY: usize = 32;

/// Why a notification could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// No session bus address in the environment and none in the usual
    /// place.
    #[error("no D-Bus session bus found (DBUS_SESSION_BUS_ADDRESS is not set and $XDG_RUNTIME_DIR/bus does not exist); notifications need a desktop session")]
    NoBus,
    /// The bus could not be reached or the conversation failed.
    #[error("the D-Bus session bus failed: {0}")]
    Io(#[from] std::io::Error),
    /// The bus said something this client does not understand.
    #[error("the D-Bus session bus answered unexpectedly: {0}")]
    Protocol(String),
    /// The call failed (e.g. no notification daemon runs).
    #[error("the desktop refused the notification: {0}; is a notification daemon running?")]
    Refused(String),
}

/// Where the session bus listens.
#[derive(Clone, Debug, PartialEq, Eq)]
enum BusAddress {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

/// The session bus's address from `DBUS_SESSION_BUS_ADDRESS` (the first
/// `unix:` one with `path=` or `abstract=`), else `$XDG_RUNTIME_DIR/bus`.
fn session_bus(env: impl Fn(&str) -> Option<String>) -> Option<BusAddress> {
    if let Some(value) = env("DBUS_SESSION_BUS_ADDRESS") {
        for address in value.split(';') {
            let Some(params) = address.trim().strip_prefix("unix:") else {
                continue;
            };
            for param in params.split(',') {
                if let Some(path) = param.strip_prefix("path=") {
                    return Some(BusAddress::Path(PathBuf::from(
                        String::from_utf8_lossy(&unescape(path)).into_owned(),
                    )));
                }
                if let Some(name) = param.strip_prefix("abstract=") {
                    return Some(BusAddress::Abstract(unescape(name)));
                }
            }
        }
    }
    let runtime = env("XDG_RUNTIME_DIR").filter(|d| !d.is_empty())?;
    let path = PathBuf::from(runtime).join("bus");
    path.exists().then_some(BusAddress::Path(path))
}

/// D-Bus address values escape bytes as `%XX`.
fn unescape(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// Shows a notification with `summary` and `body` from "deskside" and
/// returns the daemon's id for it.
pub fn notify(summary: &str, body: &str) -> Result<u32, NotifyError> {
    let address = session_bus(|name| std::env::var(name).ok()).ok_or(NotifyError::NoBus)?;
    let mut bus = Bus::connect(&address)?;
    bus.call(&Call {
        destination: "org.freedesktop.DBus",
        path: "/org/freedesktop/DBus",
        interface: "org.freedesktop.DBus",
        member: "Hello",
        signature: "",
        body: Vec::new(),
    })?;
    let reply = bus.call(&Call {
        destination: "org.freedesktop.Notifications",
        path: "/org/freedesktop/Notifications",
        interface: "org.freedesktop.Notifications",
        member: "Notify",
        signature: "susssasa{sv}i",
        body: notify_body(summary, body),
    })?;
    reply
        .get(..4)
        .map(|id| u32::from_le_bytes([id[0], id[1], id[2], id[3]]))
        .ok_or_else(|| NotifyError::Protocol("Notify's reply has no id".to_owned()))
}

/// A method call to marshal.
struct Call<'a> {
    destination: &'a str,
    path: &'a str,
    interface: &'a str,
    member: &'a str,
    signature: &'a str,
    body: Vec<u8>,
}

/// Little-endian D-Bus marshalling into a buffer whose offset 0 is
/// 8-aligned (a message, or a body).
#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn pad(&mut self, align: usize) {
        while !self.buf.len().is_multiple_of(align) {
            self.buf.push(0);
        }
    }
    fn u32(&mut self, value: u32) {
        self.pad(4);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }
    fn string(&mut self, text: &str) {
        self.u32(text.len() as u32);
        self.buf.extend_from_slice(text.as_bytes());
        self.buf.push(0);
    }
    fn signature(&mut self, text: &str) {
        self.buf.push(text.len() as u8);
        self.buf.extend_from_slice(text.as_bytes());
        self.buf.push(0);
    }
    /// One header field: code, then a variant of type `kind`.
    fn field(&mut self, code: u8, kind: &str, value: &str) {
        self.pad(8);
        self.buf.push(code);
        self.signature(kind);
        match kind {
            "g" => self.signature(value),
            _ => self.string(value),
        }
    }
}

/// `Notify`'s arguments: app name, replaces id, icon, summary, body, no
/// actions, no hints, the daemon's default expiry.
fn notify_body(summary: &str, body: &str) -> Vec<u8> {
    let mut w = Writer::default();
    w.string("deskside");
    w.u32(0);
    w.string("dialog-information");
    w.string(summary);
    w.string(body);
    w.u32(0); // actions: empty array of strings
    w.u32(0); // hints: empty array of dict entries…
    w.pad(8); // …whose elements align to 8 even when there are none
    w.u32(u32::MAX); // expire_timeout -1: the daemon's default
    w.buf
}

/// A method call message with `serial`.
fn method_call(call: &Call<'_>, serial: u32) -> Vec<u8> {
    let mut w = Writer::default();
    w.buf.extend_from_slice(&[b'l', 1, 0, 1]);
    w.u32(call.body.len() as u32);
    w.u32(serial);
    w.u32(0); // header fields' length, filled in below
    let fields_start = w.buf.len();
    w.field(1, "o", call.path);
    w.field(2, "s", call.interface);
    w.field(3, "s", call.member);
    w.field(6, "s", call.destination);
    if !call.signature.is_empty() {
        w.field(8, "g", call.signature);
    }
    let fields_len = (w.buf.len() - fields_start) as u32;
    w.buf[12..16].copy_from_slice(&fields_len.to_le_bytes());
    w.pad(8);
    w.buf.extend_from_slice(&call.body);
    w.buf
}

/// A message read from the bus: its type, the serial it replies to, the
/// error name, and its body (little-endian messages only).
#[derive(Debug, PartialEq, Eq)]
struct Incoming {
    kind: u8,
    reply_serial: Option<u32>,
    error_name: Option<String>,
    body: Vec<u8>,
}

/// The fixed part of a message: endianness, type, body length, header
/// fields' length; the total length to read.
fn header_lengths(fixed: &[u8; 16]) -> Result<(usize, usize), NotifyError> {
    if fixed[0] != b'l' {
        return Err(NotifyError::Protocol(
            "a big-endian message (not supported)".to_owned(),
        ));
    }
    let word = |at: usize| {
        u32::from_le_bytes([fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3]]) as usize
    };
    let (body_len, fields_len) = (word(4), word(12));
    if body_len > MAX_INCOMING || fields_len > MAX_INCOMING {
        return Err(NotifyError::Protocol(format!(
            "a message of {body_len} + {fields_len} bytes (at most {MAX_INCOMING} each)"
        )));
    }
    Ok((fields_len, body_len))
}

/// Reads the header fields `fields` (starting at message offset 16) for
/// the reply serial and the error name; unknown fields end the walk.
fn parse_fields(fields: &[u8]) -> (Option<u32>, Option<String>) {
    let mut reply_serial = None;
    let mut error_name = None;
    let mut at = 0usize;
    // Offsets are relative to the message start, 16 bytes before.
    let align = |at: usize, to: usize| (at + 16).div_ceil(to) * to - 16;
    while at < fields.len() {
        at = align(at, 8);
        let Some(&code) = fields.get(at) else { break };
        let Some(&sig_len) = fields.get(at + 1) else {
            break;
        };
        let sig = fields.get(at + 2..at + 2 + usize::from(sig_len));
        at += 3 + usize::from(sig_len);
        match sig {
            Some(b"u") => {
                at = align(at, 4);
                let Some(v) = fields.get(at..at + 4) else {
                    break;
                };
                let value = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
                if code == 5 {
                    reply_serial = Some(value);
                }
                at += 4;
            }
            Some(b"s" | b"o") => {
                at = align(at, 4);
                let Some(v) = fields.get(at..at + 4) else {
                    break;
                };
                let len = u32::from_le_bytes([v[0], v[1], v[2], v[3]]) as usize;
                let Some(text) = fields.get(at + 4..(at + 4).saturating_add(len)) else {
                    break;
                };
                if code == 4 {
                    error_name = Some(String::from_utf8_lossy(text).into_owned());
                }
                at = at + 4 + len + 1;
            }
            Some(b"g") => {
                let Some(&len) = fields.get(at) else { break };
                at += 2 + usize::from(len);
            }
            _ => break,
        }
    }
    (reply_serial, error_name)
}

/// A connection to the bus.
struct Bus {
    stream: UnixStream,
    serial: u32,
}

impl Bus {
    fn connect(address: &BusAddress) -> Result<Bus, NotifyError> {
        let stream = match address {
            BusAddress::Path(path) => UnixStream::connect(path)?,
            BusAddress::Abstract(name) => {
                #[cfg(target_os = "linux")]
                {
                    use std::os::linux::net::SocketAddrExt as _;
                    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                    UnixStream::connect_addr(&addr)?
                }
                #[cfg(not(target_os = "linux"))]
                {
                    let _ = name;
                    return Err(NotifyError::NoBus);
                }
            }
        };
        stream.set_read_timeout(Some(BUS_TIMEOUT))?;
        stream.set_write_timeout(Some(BUS_TIMEOUT))?;
        let mut bus = Bus { stream, serial: 0 };
        bus.authenticate()?;
        Ok(bus)
    }

    /// SASL `EXTERNAL`: the uid, in hex-encoded decimal.
    fn authenticate(&mut self) -> Result<(), NotifyError> {
        let uid = nix::unistd::Uid::effective().as_raw().to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        self.stream
            .write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())?;
        let line = self.read_line()?;
        if !line.starts_with("OK ") {
            return Err(NotifyError::Protocol(format!(
                "authentication refused: {line:?}"
            )));
        }
        self.stream.write_all(b"BEGIN\r\n")?;
        Ok(())
    }

    fn read_line(&mut self) -> Result<String, NotifyError> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            if line.len() > 512 {
                return Err(NotifyError::Protocol("an overlong auth line".to_owned()));
            }
            self.stream.read_exact(&mut byte)?;
            line.push(byte[0]);
        }
        Ok(String::from_utf8_lossy(&line).trim_end().to_owned())
    }

    /// Sends `call` and returns the body of its reply.
    fn call(&mut self, call: &Call<'_>) -> Result<Vec<u8>, NotifyError> {
        self.serial += 1;
        let serial = self.serial;
        self.stream.write_all(&method_call(call, serial))?;
        for _ in 0..MAX_MESSAGES_PER_REPLY {
            let message = self.read_message()?;
            if message.reply_serial != Some(serial) {
                continue;
            }
            return match message.kind {
                2 => Ok(message.body),
                3 => Err(NotifyError::Refused(format!(
                    "{} ({})",
                    message.error_name.unwrap_or_default(),
                    error_text(&message.body)
                ))),
                other => Err(NotifyError::Protocol(format!(
                    "a message of type {other} in reply"
                ))),
            };
        }
        Err(NotifyError::Protocol(format!(
            "no reply to {} among {MAX_MESSAGES_PER_REPLY} messages",
            call.member
        )))
    }

    fn read_message(&mut self) -> Result<Incoming, NotifyError> {
        let mut fixed = [0u8; 16];
        self.stream.read_exact(&mut fixed)?;
        let (fields_len, body_len) = header_lengths(&fixed)?;
        let padded = (16 + fields_len).div_ceil(8) * 8 - 16;
        let mut rest = vec![0u8; padded + body_len];
        self.stream.read_exact(&mut rest)?;
        let (reply_serial, error_name) = parse_fields(&rest[..fields_len]);
        Ok(Incoming {
            kind: fixed[1],
            reply_serial,
            error_name,
            body: rest[padded..].to_vec(),
        })
    }
}

/// An error reply's message: its first argument, a string.
fn error_text(body: &[u8]) -> String {
    let Some(len) = body.get(..4) else {
        return String::new();
    };
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    body.get(4..4usize.saturating_add(len))
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bus_address_comes_from_the_environment_or_the_runtime_dir() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(
            session_bus(env(&[(
                "DBUS_SESSION_BUS_ADDRESS",
                "unix:path=/run/user/1000/bus"
            )])),
            Some(BusAddress::Path("/run/user/1000/bus".into()))
        );
        assert_eq!(
            session_bus(env(&[(
                "DBUS_SESSION_BUS_ADDRESS",
                "tcp:host=x;unix:abstract=/tmp/dbus-%41b,guid=12"
            )])),
            Some(BusAddress::Abstract(b"/tmp/dbus-Ab".to_vec()))
        );
        assert_eq!(session_bus(env(&[])), None);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bus"), b"").unwrap();
        let runtime = dir.path().to_str().unwrap().to_owned();
        assert_eq!(
            session_bus(|name: &str| (name == "XDG_RUNTIME_DIR").then(|| runtime.clone())),
            Some(BusAddress::Path(dir.path().join("bus")))
        );
    }

    #[test]
    fn a_method_call_is_marshalled_with_aligned_fields_and_body() {
        let message = method_call(
            &Call {
                destination: "d",
                path: "/p",
                interface: "i",
                member: "M",
                signature: "s",
                body: vec![1, 0, 0, 0, b'x', 0],
            },
            7,
        );
        assert_eq!(&message[..4], &[b'l', 1, 0, 1]);
        assert_eq!(&message[4..8], &6u32.to_le_bytes(), "body length");
        assert_eq!(&message[8..12], &7u32.to_le_bytes(), "serial");
        let fields_len = u32::from_le_bytes(message[12..16].try_into().unwrap()) as usize;
        // path: code, "o", value at 20: len 2 "/p\0".
        assert_eq!(&message[16..20], &[1, 1, b'o', 0]);
        assert_eq!(&message[20..27], &[2, 0, 0, 0, b'/', b'p', 0]);
        let body_at = (16 + fields_len).div_ceil(8) * 8;
        assert_eq!(&message[body_at..], &[1, 0, 0, 0, b'x', 0]);
        // Reading our own fields back finds no reply serial.
        assert_eq!(parse_fields(&message[16..16 + fields_len]), (None, None));
    }

    #[test]
    fn the_notify_body_has_empty_arrays_and_the_default_expiry() {
        let body = notify_body("S", "B");
        // "deskside": 4 + 8 + 1 = 13, pad to 16; u32 0 → 20; icon "dialog-
        // information" (18): 4 + 18 + 1 → 43, pad 44; "S" → 50, pad 52;
        // "B" → 58, pad 60; actions 0 → 64; hints 0 → 68, pad 72; -1 → 76.
        assert_eq!(body.len(), 76);
        assert_eq!(&body[72..], &u32::MAX.to_le_bytes());
        assert_eq!(&body[64..68], &[0, 0, 0, 0]);
    }

    #[test]
    fn a_reply_header_yields_its_serial_and_error_name_and_bad_lengths_are_refused() {
        // REPLY_SERIAL (5, "u") = 2; ERROR_NAME (4, "s") = "e.X".
        let mut fields = vec![5, 1, b'u', 0, 2, 0, 0, 0];
        fields.extend_from_slice(&[4, 1, b's', 0, 3, 0, 0, 0, b'e', b'.', b'X', 0]);
        assert_eq!(parse_fields(&fields), (Some(2), Some("e.X".to_owned())));
        assert_eq!(parse_fields(&[5, 1]), (None, None), "truncated: no panic");
        let mut fixed = [0u8; 16];
        fixed[0] = b'l';
        fixed[4..8].copy_from_slice(&(MAX_INCOMING as u32 + 1).to_le_bytes());
        assert!(header_lengths(&fixed).is_err());
        fixed[0] = b'B';
        assert!(header_lengths(&fixed).is_err());
    }
}
