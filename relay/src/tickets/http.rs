//! The connectors' HTTP client: ureq (blocking, rustls with ring, the
//! webpki roots), with one timeout for the whole exchange, no redirects (a
//! redirect would carry a token to another address), and every answer read
//! whatever its status, so that each connector decides what a status means.
//!
//! Errors never hold a header: tokens travel only in headers, so no error
//! message, and so no log line, can show one.

use std::time::Duration;

use thiserror::Error;

/// Largest answer read from a ticketing system.
const MAX_ANSWER: u64 = 1 << 20;
/// Longest excerpt of an answer kept in an error.
const MAX_EXCERPT: usize = 300;

/// Why a delivery failed. Each message says what to check.
#[derive(Debug, Error)]
pub enum ConnectorError {
    /// The system could not be reached (refused, timed out, TLS).
    #[error("cannot reach {url}: {reason}; check the address in [[tickets.connector]] and that the system is up (the relay retries)")]
    Unreachable {
        /// The URL without its query.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The system answered with an error status.
    #[error("{url} answered HTTP {status}{hint}: {excerpt}")]
    Status {
        /// The URL without its query.
        url: String,
        /// The status.
        status: u16,
        /// What to check for this status.
        hint: &'static str,
        /// The start of its answer.
        excerpt: String,
    },
    /// The answer was not what the API documents.
    #[error("unexpected answer from {url}: {reason}")]
    Answer {
        /// The URL without its query.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The relay's own store failed while recording the ticket.
    #[error("cannot record the ticket in the relay's store: {0}")]
    Store(String),
}

/// An answer.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body, as text.
    pub body: String,
    url: String,
}

impl Answer {
    /// The body as JSON when the status is one of `expected`, else the
    /// error that names the status.
    pub fn json(self, expected: &[u16]) -> Result<serde_json::Value, ConnectorError> {
        if !expected.contains(&self.status) {
            return Err(self.status_error());
        }
        serde_json::from_str(&self.body).map_err(|e| ConnectorError::Answer {
            url: self.url.clone(),
            reason: format!("HTTP {} with a body that is not JSON ({e})", self.status),
        })
    }

    /// Succeeds when the status is one of `expected`.
    pub fn expect(self, expected: &[u16]) -> Result<(), ConnectorError> {
        if expected.contains(&self.status) {
            Ok(())
        } else {
            Err(self.status_error())
        }
    }

    /// The URL (without query) the answer came from.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn status_error(&self) -> ConnectorError {
        let hint = match self.status {
            401 | 403 => " (check the connector's token and the API user's rights)",
            404 => " (check the connector's url)",
            400 | 415 | 422 => " (the system refused the ticket's fields)",
            _ => "",
        };
        ConnectorError::Status {
            url: self.url.clone(),
            status: self.status,
            hint,
            excerpt: excerpt(&self.body),
        }
    }
}

fn excerpt(body: &str) -> String {
    let flat: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_EXCERPT)
        .collect();
    flat.trim().to_owned()
}

/// The URL without its query string (a webhook URL may carry a key there).
pub fn without_query(url: &str) -> String {
    url.split('?').next().unwrap_or_default().to_owned()
}

/// One HTTP client per connector.
#[derive(Debug, Clone)]
pub struct Http {
    agent: ureq::Agent,
}

impl Http {
    /// A client whose every exchange ends within `timeout`, trusting
    /// `roots` for HTTPS (none: the public certificate authorities).
    pub fn new(timeout: Duration, roots: &[ureq::tls::Certificate<'static>]) -> Self {
        let root_certs = if roots.is_empty() {
            ureq::tls::RootCerts::WebPki
        } else {
            ureq::tls::RootCerts::new_with_certs(roots)
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(root_certs)
                    .build(),
            )
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("deskside-relay/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self { agent }
    }

    /// `GET url` with `headers` and no body.
    pub fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Answer, ConnectorError> {
        let mut request = self.agent.get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        finish(url, request.call())
    }

    /// `POST url` of a JSON body with `headers`.
    pub fn post_json(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Answer, ConnectorError> {
        send_json(self.agent.post(url), url, headers, body)
    }

    /// `PUT url` of a JSON body with `headers` (an update of an existing
    /// item, e.g. a ticket's status).
    pub fn put_json(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Answer, ConnectorError> {
        send_json(self.agent.put(url), url, headers, body)
    }
}

/// Sends `body` as JSON with `headers` on a request that carries a body.
fn send_json(
    request: ureq::RequestBuilder<ureq::typestate::WithBody>,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Answer, ConnectorError> {
    let mut request = request.header("Content-Type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    finish(url, request.send(body))
}

/// One part of a `multipart/form-data` body.
#[derive(Debug)]
pub struct Part<'a> {
    /// The form field's name.
    pub name: &'a str,
    /// The file name, for a file.
    pub filename: Option<&'a str>,
    /// The part's content type.
    pub content_type: &'a str,
    /// Its bytes.
    pub data: &'a [u8],
}

impl Http {
    /// `POST url` of a `multipart/form-data` body (RFC 7578) with `headers`.
    pub fn post_multipart(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        parts: &[Part<'_>],
    ) -> Result<Answer, ConnectorError> {
        let boundary = format!(
            "deskside-{}",
            hex::encode(crate::secrets::random_bytes::<12>().unwrap_or([7; 12]))
        );
        let body = multipart_body(&boundary, parts);
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let mut request = self.agent.post(url).header("Content-Type", &content_type);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        finish(url, request.send(&body[..]))
    }
}

/// The body of `parts` between `boundary` lines. Names and file names are
/// ours (never the employee's text), so they need no escaping beyond
/// dropping quotes.
fn multipart_body(boundary: &str, parts: &[Part<'_>]) -> Vec<u8> {
    let clean = |s: &str| s.replace(['"', '\r', '\n'], "");
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disposition = format!("form-data; name=\"{}\"", clean(part.name));
        if let Some(filename) = part.filename {
            disposition.push_str(&format!("; filename=\"{}\"", clean(filename)));
        }
        body.extend_from_slice(
            format!(
                "Content-Disposition: {disposition}\r\nContent-Type: {}\r\n\r\n",
                part.content_type
            )
            .as_bytes(),
        );
        body.extend_from_slice(part.data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

fn finish(
    url: &str,
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Answer, ConnectorError> {
    let unreachable = |e: ureq::Error| ConnectorError::Unreachable {
        url: without_query(url),
        reason: e.to_string(),
    };
    let mut response = result.map_err(unreachable)?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_string()
        .map_err(unreachable)?;
    Ok(Answer {
        status,
        body,
        url: without_query(url),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An HTTPS server on 127.0.0.1 with a self-signed certificate that
    /// answers `ok` to each connection; returns its port and certificate.
    fn https_server() -> (u16, String) {
        let identity = deskside_net::Identity::generate(&["127.0.0.1"]).unwrap();
        let config = std::sync::Arc::new(identity.server_config(b"http/1.1").unwrap());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(2) {
                let Ok(stream) = stream else { continue };
                let Ok(connection) = rustls::ServerConnection::new(config.clone()) else {
                    continue;
                };
                let mut tls = rustls::StreamOwned::new(connection, stream);
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match std::io::Read::read(&mut tls, &mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                let _ = std::io::Write::write_all(
                    &mut tls,
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
                tls.conn.send_close_notify();
                let _ = std::io::Write::flush(&mut tls);
            }
        });
        (port, identity.cert_pem())
    }

    #[test]
    fn https_trusts_the_configured_authority_and_only_it() {
        let (port, cert_pem) = https_server();
        let url = format!("https://127.0.0.1:{port}/");
        let public_roots = Http::new(Duration::from_secs(5), &[]);
        let refused = public_roots.get(&url, &[]).unwrap_err().to_string();
        assert!(refused.contains("cannot reach"), "{refused}");
        let roots: Vec<_> = ureq::tls::parse_pem(cert_pem.as_bytes())
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
                _ => None,
            })
            .collect();
        let trusting = Http::new(Duration::from_secs(5), &roots);
        let answer = trusting.get(&url, &[]).unwrap();
        assert_eq!((answer.status, answer.body.as_str()), (200, "ok"));
    }

    #[test]
    fn multipart_bodies_frame_each_part() {
        let body = multipart_body(
            "b0",
            &[
                Part {
                    name: "uploadManifest",
                    filename: None,
                    content_type: "application/json",
                    data: b"{}",
                },
                Part {
                    name: "filename[0]",
                    filename: Some("a\"b.txt"),
                    content_type: "text/plain",
                    data: b"hi",
                },
            ],
        );
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "--b0\r\nContent-Disposition: form-data; name=\"uploadManifest\"\r\nContent-Type: application/json\r\n\r\n{}\r\n\
             --b0\r\nContent-Disposition: form-data; name=\"filename[0]\"; filename=\"ab.txt\"\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
             --b0--\r\n"
        );
    }

    #[test]
    fn errors_name_the_status_and_never_the_query() {
        assert_eq!(
            without_query("https://h.example/hook?key=s3cret"),
            "https://h.example/hook"
        );
        let answer = Answer {
            status: 401,
            body: "{\"error\":\"authentication failed\"}\n".into(),
            url: without_query("https://h.example/api?x=1"),
        };
        let text = answer.json(&[201]).unwrap_err().to_string();
        assert!(text.contains("HTTP 401"), "{text}");
        assert!(text.contains("check the connector's token"), "{text}");
        assert!(!text.contains("x=1"), "{text}");
    }
}
