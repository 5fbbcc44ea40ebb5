//! The current user's proxy settings through WinHTTP: the manual proxy,
//! the setup script (PAC) and automatic detection (WPAD), as Settings >
//! Network & internet > Proxy shows them, plus what the automatic
//! configuration picks for the URL Windows' own connectivity test fetches.
#![allow(unsafe_code)]

use std::sync::mpsc;
use std::time::Duration;

use deskside_diag::snapshot::Proxy;
use windows_sys::Win32::Foundation::GlobalFree;
use windows_sys::Win32::Networking::WinHttp::{
    WinHttpCloseHandle, WinHttpGetIEProxyConfigForCurrentUser, WinHttpGetProxyForUrl, WinHttpOpen,
    WinHttpSetTimeouts, WINHTTP_ACCESS_TYPE_NAMED_PROXY, WINHTTP_ACCESS_TYPE_NO_PROXY,
    WINHTTP_AUTOPROXY_AUTO_DETECT, WINHTTP_AUTOPROXY_CONFIG_URL, WINHTTP_AUTOPROXY_OPTIONS,
    WINHTTP_AUTO_DETECT_TYPE_DHCP, WINHTTP_AUTO_DETECT_TYPE_DNS_A,
    WINHTTP_CURRENT_USER_IE_PROXY_CONFIG, WINHTTP_PROXY_INFO,
};

use super::dll::{from_wide_ptr, wide};
use super::map::{self, AutoProxy, IeProxyConfig};

/// The URL whose proxy the automatic configuration is asked for: the one
/// Windows' connectivity indicator (NCSI) fetches, so the answer also says
/// whether that test goes through a proxy.
const TEST_URL: &str = "http://www.msftconnecttest.com/connecttest.txt";
/// Longest wait for WPAD or a PAC file: discovery can hang on networks
/// without a WPAD server.
const AUTO_PROXY_WAIT: Duration = Duration::from_secs(3);
/// What WinHTTP says when automatic detection finds no WPAD server: the
/// common case at home, where browsers then connect directly.
const ERROR_WINHTTP_AUTODETECTION_FAILED: u32 = 12180;
/// WinHTTP's own timeouts for fetching the PAC file, milliseconds.
const WINHTTP_TIMEOUT_MS: i32 = 2_500;

/// The snapshot's proxy settings for the user this runs as.
pub fn current_user() -> Proxy {
    let Some(config) = ie_config() else {
        return Proxy::default();
    };
    let auto = if config.auto_detect || config.auto_config_url.is_some() {
        auto_proxy(&config)
    } else {
        AutoProxy::NotTried
    };
    map::proxy(&config, &auto)
}

/// Frees a string WinHTTP allocated for the caller.
fn free(ptr: *mut u16) {
    if !ptr.is_null() {
        // SAFETY: WinHTTP documents these strings as GlobalAlloc'ed for the
        // caller to GlobalFree, once.
        unsafe { GlobalFree(ptr.cast()) };
    }
}

fn ie_config() -> Option<IeProxyConfig> {
    let mut raw = WINHTTP_CURRENT_USER_IE_PROXY_CONFIG::default();
    // SAFETY: `raw` is a live, writable structure of the expected type.
    if unsafe { WinHttpGetIEProxyConfigForCurrentUser(&mut raw) } == 0 {
        tracing::debug!("WinHttpGetIEProxyConfigForCurrentUser failed");
        return None;
    }
    let config = IeProxyConfig {
        auto_detect: raw.fAutoDetect != 0,
        // SAFETY: NUL-terminated strings WinHTTP allocated, or null.
        auto_config_url: unsafe { from_wide_ptr(raw.lpszAutoConfigUrl) },
        // SAFETY: as above.
        proxy: unsafe { from_wide_ptr(raw.lpszProxy) },
        // SAFETY: as above.
        bypass: unsafe { from_wide_ptr(raw.lpszProxyBypass) },
    };
    free(raw.lpszAutoConfigUrl);
    free(raw.lpszProxy);
    free(raw.lpszProxyBypass);
    Some(config)
}

/// Runs the automatic configuration on a thread of its own and waits at
/// most [`AUTO_PROXY_WAIT`]: WPAD discovery can take much longer. A thread
/// still blocked in WinHTTP when the wait ends finishes on its own.
fn auto_proxy(config: &IeProxyConfig) -> AutoProxy {
    let (send, receive) = mpsc::channel();
    let config = config.clone();
    let spawned = std::thread::Builder::new()
        .name("deskside-wpad".to_owned())
        .spawn(move || {
            let _ = send.send(resolve(&config));
        });
    if let Err(e) = spawned {
        return AutoProxy::Failed(format!("cannot start the lookup: {e}"));
    }
    receive.recv_timeout(AUTO_PROXY_WAIT).unwrap_or_else(|_| {
        AutoProxy::Failed(format!("no answer within {} s", AUTO_PROXY_WAIT.as_secs()))
    })
}

fn resolve(config: &IeProxyConfig) -> AutoProxy {
    let agent = wide("deskside-agent");
    // SAFETY: a NUL-terminated agent name; null proxy strings are allowed
    // with WINHTTP_ACCESS_TYPE_NO_PROXY.
    let session = unsafe {
        WinHttpOpen(
            agent.as_ptr(),
            WINHTTP_ACCESS_TYPE_NO_PROXY,
            std::ptr::null(),
            std::ptr::null(),
            0,
        )
    };
    if session.is_null() {
        return AutoProxy::Failed("WinHttpOpen failed".to_owned());
    }
    // SAFETY: a session handle just opened.
    unsafe {
        WinHttpSetTimeouts(
            session,
            WINHTTP_TIMEOUT_MS,
            WINHTTP_TIMEOUT_MS,
            WINHTTP_TIMEOUT_MS,
            WINHTTP_TIMEOUT_MS,
        )
    };
    let pac_url = config.auto_config_url.as_deref().map(wide);
    let mut options = WINHTTP_AUTOPROXY_OPTIONS {
        dwFlags: 0,
        dwAutoDetectFlags: 0,
        lpszAutoConfigUrl: std::ptr::null(),
        lpvReserved: std::ptr::null_mut(),
        dwReserved: 0,
        fAutoLogonIfChallenged: 1,
    };
    if let Some(url) = &pac_url {
        options.dwFlags |= WINHTTP_AUTOPROXY_CONFIG_URL;
        options.lpszAutoConfigUrl = url.as_ptr();
    }
    if config.auto_detect {
        options.dwFlags |= WINHTTP_AUTOPROXY_AUTO_DETECT;
        options.dwAutoDetectFlags = WINHTTP_AUTO_DETECT_TYPE_DHCP | WINHTTP_AUTO_DETECT_TYPE_DNS_A;
    }
    let url = wide(TEST_URL);
    let mut info = WINHTTP_PROXY_INFO::default();
    // SAFETY: the session is open; `url`, `pac_url` (borrowed by
    // `options`) and `info` outlive the call.
    let ok = unsafe { WinHttpGetProxyForUrl(session, url.as_ptr(), &mut options, &mut info) };
    let answer = if ok == 0 {
        // SAFETY: reads this thread's last error, set by the failed call.
        let code = unsafe { windows_sys::Win32::Foundation::GetLastError() };
        if code == ERROR_WINHTTP_AUTODETECTION_FAILED {
            AutoProxy::Failed("no proxy configuration was found on this network (WPAD)".to_owned())
        } else {
            AutoProxy::Failed(format!("WinHTTP error {code}"))
        }
    } else if info.dwAccessType == WINHTTP_ACCESS_TYPE_NAMED_PROXY {
        // SAFETY: a NUL-terminated string WinHTTP allocated, or null.
        match unsafe { from_wide_ptr(info.lpszProxy) } {
            Some(list) if !list.trim().is_empty() => AutoProxy::Proxy(list.trim().to_owned()),
            _ => AutoProxy::Direct,
        }
    } else {
        AutoProxy::Direct
    };
    free(info.lpszProxy);
    free(info.lpszProxyBypass);
    // SAFETY: closes the session opened above, once.
    unsafe { WinHttpCloseHandle(session) };
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_proxy_settings_are_read_without_hanging() {
        let started = std::time::Instant::now();
        let proxy = current_user();
        assert!(
            started.elapsed() < AUTO_PROXY_WAIT + Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        eprintln!("proxy settings: {proxy:?}");
    }
}
