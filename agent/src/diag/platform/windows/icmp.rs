//! Pings through `IcmpSendEcho2`, which Windows allows every program
//! without privileges (unlike raw sockets).
#![allow(unsafe_code)]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
use windows_sys::Win32::NetworkManagement::IpHelper::{
    IcmpCloseHandle, IcmpCreateFile, IcmpSendEcho2, ICMP_ECHO_REPLY,
};

/// Payload of each echo request.
const PAYLOAD: &[u8; 8] = b"deskside";
/// `IP_SUCCESS`: an echo reply came back.
const IP_SUCCESS: u32 = 0;
/// Unanswered pings after which a router that has answered none is taken
/// to ignore them (the TCP probe follows): waiting out every timeout would
/// add seconds to each check.
const GIVE_UP_AFTER: usize = 3;

/// An ICMP handle, closed on drop.
struct Handle(windows_sys::Win32::Foundation::HANDLE);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: a handle IcmpCreateFile returned, closed once.
        unsafe { IcmpCloseHandle(self.0) };
    }
}

/// Sends `probes` echo requests to `gateway`, `interval` apart, each
/// waiting up to `timeout`: one round trip in milliseconds per probe
/// (`None`: no reply), fewer when the first [`GIVE_UP_AFTER`] all went
/// unanswered. `Err` when Windows refuses ICMP altogether.
pub fn echo(
    gateway: Ipv4Addr,
    probes: u32,
    interval: Duration,
    timeout: Duration,
) -> std::io::Result<Vec<Option<f64>>> {
    // SAFETY: no arguments; the result is checked before use.
    let handle = unsafe { IcmpCreateFile() };
    if handle == INVALID_HANDLE_VALUE || handle.is_null() {
        return Err(std::io::Error::last_os_error());
    }
    let handle = Handle(handle);
    // Room for one reply, its payload and an ICMP error message, as the
    // documentation asks; u64 elements keep the reply aligned.
    let reply_size = std::mem::size_of::<ICMP_ECHO_REPLY>() + PAYLOAD.len() + 8 + 64;
    let mut reply: Vec<u64> = vec![0; reply_size.div_ceil(8)];
    let destination = u32::from_ne_bytes(gateway.octets());
    let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    let mut samples = Vec::with_capacity(probes as usize);
    let mut refused = 0usize;
    for _ in 0..probes {
        let sent = Instant::now();
        // SAFETY: a live ICMP handle; no event or APC (synchronous call);
        // the payload and reply buffers are live and their sizes given.
        let replies = unsafe {
            IcmpSendEcho2(
                handle.0,
                std::ptr::null_mut(),
                None,
                std::ptr::null(),
                destination,
                PAYLOAD.as_ptr().cast(),
                PAYLOAD.len() as u16,
                std::ptr::null(),
                reply.as_mut_ptr().cast(),
                (reply.len() * 8) as u32,
                timeout_ms,
            )
        };
        let elapsed = sent.elapsed();
        if replies == 0 {
            let error = std::io::Error::last_os_error();
            // 11010 IP_REQ_TIMED_OUT: no answer, a lost probe; anything
            // else (no permission, no ICMP stack) is a refusal.
            if error.raw_os_error() != Some(11010) {
                refused += 1;
                // Every call so far refused: ICMP is not available.
                if refused == GIVE_UP_AFTER.min(probes as usize) {
                    return Err(error);
                }
            }
            samples.push(None);
        } else {
            // SAFETY: Windows wrote at least one ICMP_ECHO_REPLY at the
            // start of the aligned buffer.
            let first = unsafe { std::ptr::read(reply.as_ptr().cast::<ICMP_ECHO_REPLY>()) };
            // Our own clock rather than RoundTripTime, which counts whole
            // milliseconds (a LAN answers in one or two).
            samples.push((first.Status == IP_SUCCESS).then_some(elapsed.as_secs_f64() * 1000.0));
        }
        if samples.len() >= GIVE_UP_AFTER && samples.iter().all(Option::is_none) {
            break;
        }
        std::thread::sleep(interval);
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_answers_pings_or_icmp_is_refused_cleanly() {
        // Windows answers; Wine relays to Linux ping sockets, which the
        // machine's ping_group_range may forbid: then a clean Err, which
        // sends the probe to its TCP fallback.
        match echo(
            Ipv4Addr::LOCALHOST,
            3,
            Duration::from_millis(10),
            Duration::from_millis(500),
        ) {
            Ok(samples) => {
                assert_eq!(samples.len(), 3);
                eprintln!("ICMP to loopback: {samples:?}");
            }
            Err(e) => eprintln!("ICMP refused here ({e}): the TCP fallback is used"),
        }
    }
}
