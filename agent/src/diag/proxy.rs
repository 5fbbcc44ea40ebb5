//! Proxy settings without secrets: a proxy URL may carry a user name and a
//! password (`http://alice:hunter2@proxy:3128`); they are removed here, on
//! the device, before a snapshot is stored in the local history, printed or
//! sent to the relay. The snapshot keeps the URL without them and says
//! `credentials: "present"`.
//!
//! Pure: no I/O. Every platform's proxy probe goes through
//! [`without_credentials`], and `collect::snapshot` applies it once more to
//! whatever the platform returned.

use deskside_diag::snapshot::Proxy;

/// What [`Proxy::credentials`] says when a URL carried credentials.
pub const CREDENTIALS_PRESENT: &str = "present";

/// `url` without the user name and password of its authority, and whether
/// there were any. Accepts URLs with or without a scheme
/// (`user:pass@proxy:8080` is accepted by curl and others).
pub fn strip_url(url: &str) -> (String, bool) {
    let authority_start = url.find("://").map_or(0, |at| at + 3);
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    match authority.rfind('@') {
        Some(at) => {
            let mut out = String::with_capacity(url.len());
            out.push_str(&url[..authority_start]);
            out.push_str(&authority[at + 1..]);
            out.push_str(&rest[authority_len..]);
            (out, true)
        }
        None => (url.to_owned(), false),
    }
}

/// `proxy` with the credentials removed from every URL, and `credentials`
/// set to [`CREDENTIALS_PRESENT`] if any URL had some.
pub fn without_credentials(proxy: Proxy) -> Proxy {
    let mut found = proxy.credentials.is_some();
    let mut strip = |value: Option<String>| {
        value.map(|url| {
            let (clean, had) = strip_url(&url);
            found |= had;
            clean
        })
    };
    let http = strip(proxy.http);
    let https = strip(proxy.https);
    let all = strip(proxy.all);
    // no_proxy is a list of hosts, but a pasted URL there would leak too.
    let no_proxy = strip(proxy.no_proxy);
    Proxy {
        http,
        https,
        all,
        no_proxy,
        credentials: found.then(|| CREDENTIALS_PRESENT.to_owned()),
        source: proxy.source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_removed_from_urls() {
        let cases = [
            (
                "http://alice:hunter2@proxy.corp:3128/",
                "http://proxy.corp:3128/",
                true,
            ),
            (
                "http://alice@proxy.corp:3128",
                "http://proxy.corp:3128",
                true,
            ),
            (
                "socks5h://u:p%40ss@10.0.0.1:1080",
                "socks5h://10.0.0.1:1080",
                true,
            ),
            ("alice:s3cret@proxy:8080", "proxy:8080", true),
            (
                "http://a:b@c@proxy:80/path?x=@y",
                "http://proxy:80/path?x=@y",
                true,
            ),
            ("http://proxy.corp:3128", "http://proxy.corp:3128", false),
            (
                "http://proxy/with@in-path",
                "http://proxy/with@in-path",
                false,
            ),
            ("", "", false),
        ];
        for (input, expected, had) in cases {
            assert_eq!(strip_url(input), (expected.to_owned(), had), "{input}");
        }
    }

    #[test]
    fn the_proxy_says_credentials_present_without_showing_them() {
        let proxy = without_credentials(Proxy {
            http: Some("http://alice:hunter2@proxy.corp:3128".into()),
            https: Some("http://proxy.corp:3128".into()),
            all: None,
            no_proxy: Some("localhost,.corp".into()),
            credentials: None,
            source: Some("environment".into()),
        });
        let json = serde_json::to_string(&proxy).unwrap_or_default();
        assert!(
            !json.contains("hunter2") && !json.contains("alice"),
            "{json}"
        );
        assert_eq!(proxy.http.as_deref(), Some("http://proxy.corp:3128"));
        assert_eq!(proxy.credentials.as_deref(), Some(CREDENTIALS_PRESENT));
        assert_eq!(proxy.no_proxy.as_deref(), Some("localhost,.corp"));
        let clean = without_credentials(Proxy {
            http: Some("http://proxy.corp:3128".into()),
            ..Proxy::default()
        });
        assert_eq!(clean.credentials, None);
    }
}
