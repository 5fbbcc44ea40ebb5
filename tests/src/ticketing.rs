//! Ticketing systems for the connector tests: HTTP servers on loopback that
//! implement the documented endpoints the relay's connectors use, strictly
//! enough to refuse a wrong request (wrong path or method, missing or wrong
//! authentication header, wrong content type, missing required fields),
//! and that record what they accepted.
//!
//! - [`FakeZammad`]: Zammad's REST API v1 (`POST /api/v1/tickets`,
//!   `POST /api/v1/ticket_articles`, `Authorization: Token token=…`).
//! - [`FakeGlpi`]: GLPI's `apirest.php` (`GET initSession` with
//!   `Authorization: user_token …` and `App-Token`, `POST Ticket`,
//!   `POST ITILFollowup` with `Session-Token`, `GET killSession`), errors
//!   as GLPI's `["ERROR_…", "message"]` arrays.
//! - [`FakeWebhook`]: a receiver that checks the HMAC-SHA256 signature and
//!   drops repeats by delivery id.
//!
//! Each can answer 500 a number of times ([`FakeServer::fail_next`]) or be
//! stopped and started again on the same port ([`FakeServer::stop`],
//! [`FakeServer::start`]) to play a system that is down.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

/// Largest request head and body the fakes read.
const MAX_HEAD: usize = 64 << 10;
const MAX_BODY: usize = 16 << 20;

/// One HTTP request as a fake sees it.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// `GET`, `POST`…
    pub method: String,
    /// The path with its query.
    pub path: String,
    /// Headers, names in lower case.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    fn is_json(&self) -> bool {
        self.header("content-type")
            .map(|t| t.split(';').next().unwrap_or_default().trim() == "application/json")
            .unwrap_or(false)
    }
}

/// An answer: status and JSON body.
pub type HttpAnswer = (u16, Value);

type Handler = Arc<dyn Fn(&HttpRequest) -> HttpAnswer + Send + Sync>;

/// A small HTTP/1.1 server on 127.0.0.1: one connection at a time, one
/// request per connection (`Connection: close`).
pub struct FakeServer {
    port: u16,
    handler: Handler,
    failures_left: Arc<AtomicU32>,
    lost: Arc<Mutex<Vec<(String, String)>>>,
    running: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

impl std::fmt::Debug for FakeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeServer")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl FakeServer {
    fn spawn(handler: Handler) -> Self {
        let mut server = Self {
            port: 0,
            handler,
            failures_left: Arc::default(),
            lost: Arc::default(),
            running: None,
        };
        server.start();
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Answers the next `n` requests with HTTP 500, whatever they are.
    pub fn fail_next(&self, n: u32) {
        self.failures_left.store(n, Ordering::SeqCst);
    }

    /// Handles the next request with `method` and `path` (its effect is
    /// kept) but answers it with HTTP 500, as if the answer were lost: a
    /// client that retries must not do it twice.
    pub fn lose_answer_to(&self, method: &str, path: &str) {
        self.lost
            .lock()
            .expect("lost answers")
            .push((method.to_owned(), path.to_owned()));
    }

    /// Stops listening: connections are refused until [`FakeServer::start`].
    pub fn stop(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            stop.store(true, Ordering::SeqCst);
            // Wake the accept loop.
            let _ = TcpStream::connect_timeout(&self.addr(), Duration::from_secs(1));
            let _ = thread.join();
        }
    }

    /// Listens again, on the same port once it had one.
    pub fn start(&mut self) {
        if self.running.is_some() {
            return;
        }
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("bind the fake server");
        self.port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let (handler, failures, lost, flag) = (
            Arc::clone(&self.handler),
            Arc::clone(&self.failures_left),
            Arc::clone(&self.lost),
            Arc::clone(&stop),
        );
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                serve(stream, &handler, &failures, &lost);
            }
        });
        self.running = Some((stop, thread));
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    mut stream: TcpStream,
    handler: &Handler,
    failures: &AtomicU32,
    lost: &Mutex<Vec<(String, String)>>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let (status, body) = match read_request(&stream) {
        Err(reason) => (400, json!({ "error": reason })),
        Ok(request) => {
            let fail = failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if fail {
                (
                    500,
                    json!({ "error": "internal server error (the test asked for it)" }),
                )
            } else {
                let answer = handler(&request);
                let mut lost = lost.lock().expect("lost answers");
                let losing = lost
                    .iter()
                    .position(|(m, p)| *m == request.method && *p == request.path);
                match losing {
                    Some(index) => {
                        lost.remove(index);
                        (
                            500,
                            json!({ "error": "the answer was lost (the test asked for it)" }),
                        )
                    }
                    None => answer,
                }
            }
        }
    };
    let body = body.to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    );
    let _ = stream.flush();
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

fn read_request(stream: &TcpStream) -> Result<HttpRequest, String> {
    let mut reader = BufReader::new(stream);
    let mut head_len = 0;
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| format!("unreadable request line: {e}"))?;
    head_len += line.len();
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("bad request line {line:?}"));
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(format!("bad HTTP version {version:?}"));
    }
    let (method, path) = (method.to_owned(), path.to_owned());
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .map_err(|e| format!("unreadable header: {e}"))?;
        head_len += line.len();
        if head_len > MAX_HEAD {
            return Err("request head too large".into());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    if headers.contains_key("transfer-encoding") {
        return Err("chunked bodies are not accepted: send Content-Length".into());
    }
    let length: usize = match headers.get("content-length") {
        Some(v) => v.parse().map_err(|_| format!("bad Content-Length {v:?}"))?,
        None => 0,
    };
    if length > MAX_BODY {
        return Err("body too large".into());
    }
    let mut body = vec![0; length];
    reader
        .read_exact(&mut body)
        .map_err(|e| format!("short body: {e}"))?;
    Ok(HttpRequest {
        method,
        path,
        headers,
        body,
    })
}

fn json_body(request: &HttpRequest) -> Option<Value> {
    serde_json::from_slice(&request.body).ok()
}

fn nonempty_str(v: &Value) -> bool {
    v.as_str().map(|s| !s.trim().is_empty()).unwrap_or(false)
}

// ----------------------------------------------------------------------
// Zammad

/// What the fake Zammad holds.
#[derive(Debug, Default, Clone)]
pub struct ZammadState {
    /// Tickets made: the POSTed document plus `id` and `number`.
    pub tickets: Vec<Value>,
    /// Articles: the ticket's first one (from the ticket's `article`), each
    /// `POST /api/v1/ticket_articles` and each update's `article`, with
    /// `ticket_id`.
    pub articles: Vec<Value>,
    /// Each accepted `PUT /api/v1/tickets/{id}`: `ticket_id` and `body`.
    pub updates: Vec<Value>,
}

/// Zammad's REST API v1, as far as the connector uses it.
#[derive(Debug)]
pub struct FakeZammad {
    /// The server (stop, start, fail).
    pub server: FakeServer,
    state: Arc<Mutex<ZammadState>>,
}

impl FakeZammad {
    /// Accepts `Authorization: Token token=<token>` only.
    pub fn start(token: &str) -> Self {
        let state: Arc<Mutex<ZammadState>> = Arc::default();
        let (expected, held) = (format!("Token token={token}"), Arc::clone(&state));
        let server = FakeServer::spawn(Arc::new(move |r: &HttpRequest| {
            zammad(r, &expected, &mut held.lock().expect("state"))
        }));
        Self { server, state }
    }

    /// What it holds now.
    pub fn state(&self) -> ZammadState {
        self.state.lock().expect("state").clone()
    }
}

fn zammad_error(status: u16, text: &str) -> HttpAnswer {
    (status, json!({ "error": text, "error_human": text }))
}

fn check_zammad_attachments(article: &Value) -> Result<(), String> {
    let Some(attachments) = article.get("attachments") else {
        return Ok(());
    };
    let list = attachments
        .as_array()
        .ok_or("attachments must be an array")?;
    for a in list {
        if !nonempty_str(&a["filename"]) || !nonempty_str(&a["mime-type"]) {
            return Err("each attachment needs filename and mime-type".into());
        }
        let data = a["data"].as_str().ok_or("attachment without data")?;
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|_| "attachment data is not base64".to_string())?;
    }
    Ok(())
}

fn check_zammad_article(article: &Value) -> Result<(), String> {
    if !nonempty_str(&article["body"]) {
        return Err("article needs a body".into());
    }
    if let Some(kind) = article.get("type") {
        if !["note", "email", "phone", "web"].contains(&kind.as_str().unwrap_or("")) {
            return Err(format!("unknown article type {kind}"));
        }
    }
    if let Some(internal) = article.get("internal") {
        if !internal.is_boolean() {
            return Err("internal must be true or false".into());
        }
    }
    check_zammad_attachments(article)
}

fn zammad(r: &HttpRequest, expected: &str, state: &mut ZammadState) -> HttpAnswer {
    let route = (r.method.as_str(), r.path.as_str());
    let updated: Option<u64> = match route {
        ("PUT", path) => path
            .strip_prefix("/api/v1/tickets/")
            .and_then(|id| id.parse().ok()),
        _ => None,
    };
    if updated.is_none()
        && !matches!(
            route,
            ("POST", "/api/v1/tickets") | ("POST", "/api/v1/ticket_articles")
        )
    {
        return zammad_error(
            404,
            &format!("No route matches [{}] {:?}", r.method, r.path),
        );
    }
    match r.header("authorization") {
        Some(value) if value == expected => {}
        _ => return zammad_error(401, "authentication failed"),
    }
    if !r.is_json() {
        return zammad_error(415, "Content-Type must be application/json");
    }
    let Some(body) = json_body(r).filter(Value::is_object) else {
        return zammad_error(422, "the body is not a JSON object");
    };
    if let Some(id) = updated {
        return zammad_update(id, &body, state);
    }
    if route.1 == "/api/v1/tickets" {
        if !nonempty_str(&body["title"]) {
            return zammad_error(422, "Need title");
        }
        if !nonempty_str(&body["group"]) && !body["group_id"].is_u64() {
            return zammad_error(422, "Need group");
        }
        if !nonempty_str(&body["customer"]) && !body["customer_id"].is_u64() {
            return zammad_error(422, "Need customer");
        }
        if let Err(e) = check_zammad_article(&body["article"]) {
            return zammad_error(422, &e);
        }
        let id = state.tickets.len() as u64 + 1;
        let number = format!("{}", 31000 + id);
        let mut ticket = body.clone();
        ticket["id"] = json!(id);
        ticket["number"] = json!(number);
        if ticket.get("state").is_none() {
            ticket["state"] = json!("new");
        }
        let mut article = body["article"].clone();
        article["ticket_id"] = json!(id);
        state.tickets.push(ticket);
        state.articles.push(article);
        let article_id = state.articles.len();
        (
            201,
            json!({ "id": id, "number": number, "title": body["title"], "state_id": 1, "article_ids": [article_id] }),
        )
    } else {
        let Some(ticket_id) = body["ticket_id"].as_u64() else {
            return zammad_error(422, "Need ticket_id");
        };
        if !state
            .tickets
            .iter()
            .any(|t| t["id"].as_u64() == Some(ticket_id))
        {
            return zammad_error(422, "No such ticket");
        }
        if let Err(e) = check_zammad_article(&body) {
            return zammad_error(422, &e);
        }
        state.articles.push(body.clone());
        let id = state.articles.len();
        (
            201,
            json!({ "id": id, "ticket_id": ticket_id, "body": body["body"] }),
        )
    }
}

/// Zammad's default ticket states.
const ZAMMAD_STATES: [&str; 6] = [
    "new",
    "open",
    "pending reminder",
    "closed",
    "merged",
    "pending close",
];

/// `PUT /api/v1/tickets/{id}`: the fields given (here `state`) change, and
/// an `article` in the body is added to the ticket.
fn zammad_update(id: u64, body: &Value, state: &mut ZammadState) -> HttpAnswer {
    let Some(index) = state
        .tickets
        .iter()
        .position(|t| t["id"].as_u64() == Some(id))
    else {
        return zammad_error(404, &format!("Couldn't find Ticket with 'id'={id}"));
    };
    let known = [
        "state", "article", "title", "group", "priority", "owner", "customer",
    ];
    if let Some(field) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| !known.contains(&k.as_str())))
    {
        return zammad_error(422, &format!("unknown attribute {field:?} for Ticket"));
    }
    if let Some(given) = body.get("state") {
        if !given
            .as_str()
            .is_some_and(|name| ZAMMAD_STATES.contains(&name))
        {
            return zammad_error(422, &format!("No lookup value found for 'state': {given}"));
        }
    }
    if let Some(article) = body.get("article") {
        if let Err(e) = check_zammad_article(article) {
            return zammad_error(422, &e);
        }
    }
    if let Some(given) = body.get("state") {
        state.tickets[index]["state"] = given.clone();
    }
    if let Some(article) = body.get("article") {
        let mut article = article.clone();
        article["ticket_id"] = json!(id);
        state.articles.push(article);
    }
    state.updates.push(json!({ "ticket_id": id, "body": body }));
    let ticket = &state.tickets[index];
    (
        200,
        json!({ "id": id, "number": ticket["number"], "state": ticket["state"] }),
    )
}

// ----------------------------------------------------------------------
// GLPI

/// What the fake GLPI holds.
#[derive(Debug, Default, Clone)]
pub struct GlpiState {
    /// Open sessions.
    pub sessions: HashSet<String>,
    /// Sessions opened so far.
    pub opened: u32,
    /// Sessions closed by killSession.
    pub killed: u32,
    /// Tickets: their `input` plus `id`.
    pub tickets: Vec<Value>,
    /// Follow-ups: their `input` plus `id`.
    pub followups: Vec<Value>,
    /// Solutions (`ITILSolution`): their `input` plus `id`; each sets its
    /// ticket's `status` to 5 (solved).
    pub solutions: Vec<Value>,
    /// Each accepted `PUT Ticket/{id}`: `id` and `input`.
    pub updates: Vec<Value>,
    /// Documents: their manifest's `input` plus `id` and the uploaded
    /// file's `file_name` and `content` (as text).
    pub documents: Vec<Value>,
}

/// GLPI's `apirest.php`, as far as the connector uses it.
#[derive(Debug)]
pub struct FakeGlpi {
    /// The server (stop, start, fail).
    pub server: FakeServer,
    state: Arc<Mutex<GlpiState>>,
}

impl FakeGlpi {
    /// Accepts `user_token` and requires `App-Token: app_token` on every call.
    pub fn start(user_token: &str, app_token: &str) -> Self {
        let state: Arc<Mutex<GlpiState>> = Arc::default();
        let (user, app, held) = (
            user_token.to_owned(),
            app_token.to_owned(),
            Arc::clone(&state),
        );
        let server = FakeServer::spawn(Arc::new(move |r: &HttpRequest| {
            glpi(r, &user, &app, &mut held.lock().expect("state"))
        }));
        Self { server, state }
    }

    /// `http://127.0.0.1:PORT/apirest.php`.
    pub fn api_url(&self) -> String {
        format!("{}/apirest.php", self.server.base())
    }

    /// What it holds now.
    pub fn state(&self) -> GlpiState {
        self.state.lock().expect("state").clone()
    }
}

fn glpi_error(status: u16, code: &str, text: &str) -> HttpAnswer {
    (status, json!([code, text]))
}

fn glpi(r: &HttpRequest, user: &str, app: &str, state: &mut GlpiState) -> HttpAnswer {
    let Some(endpoint) = r.path.strip_prefix("/apirest.php/") else {
        return glpi_error(404, "ERROR_NOT_FOUND", "not the API's address");
    };
    let endpoint = endpoint.trim_end_matches('/');
    match r.header("app-token") {
        None => {
            return glpi_error(
                400,
                "ERROR_APP_TOKEN_PARAMETERS_MISSING",
                "missing parameter app_token",
            )
        }
        Some(given) if given != app => {
            return glpi_error(
                400,
                "ERROR_WRONG_APP_TOKEN_PARAMETER",
                "parameter app_token seems wrong",
            )
        }
        Some(_) => {}
    }
    if r.method == "GET" && !r.body.is_empty() {
        return glpi_error(
            400,
            "ERROR_JSON_PAYLOAD_FORBIDDEN",
            "GET Request should not have json payload (http body)",
        );
    }
    if endpoint == "initSession" {
        if r.method != "GET" {
            return glpi_error(400, "ERROR_METHOD_NOT_ALLOWED", "initSession is a GET");
        }
        let Some(auth) = r.header("authorization") else {
            return glpi_error(
                400,
                "ERROR_LOGIN_PARAMETERS_MISSING",
                "parameter(s) login, password or user_token are missing",
            );
        };
        if auth != format!("user_token {user}") {
            return glpi_error(
                401,
                "ERROR_GLPI_LOGIN_USER_TOKEN",
                "parameter user_token seems invalid",
            );
        }
        state.opened += 1;
        let token = format!("session{:032x}", rand::random::<u128>());
        state.sessions.insert(token.clone());
        return (200, json!({ "session_token": token }));
    }
    let session = match r.header("session-token") {
        None => {
            return glpi_error(
                400,
                "ERROR_SESSION_TOKEN_MISSING",
                "parameter session_token is missing or empty",
            )
        }
        Some(s) if !state.sessions.contains(s) => {
            return glpi_error(
                401,
                "ERROR_SESSION_TOKEN_INVALID",
                "session_token seems invalid",
            )
        }
        Some(s) => s.to_owned(),
    };
    if endpoint == "killSession" {
        if r.method != "GET" {
            return glpi_error(400, "ERROR_METHOD_NOT_ALLOWED", "killSession is a GET");
        }
        state.sessions.remove(&session);
        state.killed += 1;
        return (200, json!(true));
    }
    if r.method == "PUT" {
        return glpi_update(r, endpoint, state);
    }
    if r.method == "GET" {
        let ticket = endpoint
            .strip_prefix("Ticket/")
            .and_then(|id| id.parse::<u64>().ok())
            .and_then(|id| state.tickets.iter().find(|t| t["id"].as_u64() == Some(id)));
        return match ticket {
            Some(ticket) => (200, ticket.clone()),
            None => glpi_error(404, "ERROR_ITEM_NOT_FOUND", "item not found"),
        };
    }
    if r.method != "POST" {
        return glpi_error(
            400,
            "ERROR_METHOD_NOT_ALLOWED",
            "only POST and PUT are implemented here",
        );
    }
    if endpoint == "Document" {
        return match glpi_document(r, state) {
            Ok(id) => (
                201,
                json!({ "id": id, "message": "Document move succeeded." }),
            ),
            Err(reason) => glpi_error(400, "ERROR_UPLOAD_FILE_TOO_BIG_POST_MAX_SIZE", &reason),
        };
    }
    if !r.is_json() {
        return glpi_error(
            400,
            "ERROR_BAD_ARRAY",
            "Content-Type must be application/json",
        );
    }
    let Some(input) = json_body(r)
        .and_then(|b| b.get("input").cloned())
        .filter(Value::is_object)
    else {
        return glpi_error(400, "ERROR_BAD_ARRAY", "input parameter must be an object");
    };
    let level_ok =
        |v: &Value| v.is_null() || v.as_u64().map(|n| (1..=5).contains(&n)).unwrap_or(false);
    match endpoint {
        "Ticket" => {
            if !nonempty_str(&input["name"]) || !nonempty_str(&input["content"]) {
                return glpi_error(400, "ERROR_GLPI_ADD", "a ticket needs a name and a content");
            }
            if !level_ok(&input["urgency"]) || !level_ok(&input["impact"]) {
                return glpi_error(400, "ERROR_GLPI_ADD", "urgency and impact are 1 to 5");
            }
            if input.get("status").is_some() && !glpi_status_ok(&input["status"]) {
                return glpi_error(400, "ERROR_GLPI_ADD", "status is 1 to 6");
            }
            let id = state.tickets.len() as u64 + 1;
            let mut ticket = input.clone();
            ticket["id"] = json!(id);
            if ticket.get("status").is_none() {
                ticket["status"] = json!(1);
            }
            state.tickets.push(ticket);
            (201, json!({ "id": id, "message": "" }))
        }
        "ITILSolution" => {
            if input["itemtype"] != "Ticket" {
                return glpi_error(400, "ERROR_GLPI_ADD", "itemtype must be Ticket");
            }
            let Some(index) = state
                .tickets
                .iter()
                .position(|t| t["id"].as_u64().is_some() && t["id"] == input["items_id"])
            else {
                return glpi_error(400, "ERROR_GLPI_ADD", "items_id is not a ticket");
            };
            if !nonempty_str(&input["content"]) {
                return glpi_error(400, "ERROR_GLPI_ADD", "a solution needs a content");
            }
            // GLPI refuses a solution on a ticket already solved or closed.
            if matches!(state.tickets[index]["status"].as_u64(), Some(5 | 6)) {
                return glpi_error(
                    400,
                    "ERROR_GLPI_ADD",
                    "the ticket is already solved or closed",
                );
            }
            let id = state.solutions.len() as u64 + 1;
            let mut solution = input.clone();
            solution["id"] = json!(id);
            state.solutions.push(solution);
            state.tickets[index]["status"] = json!(5);
            (201, json!({ "id": id, "message": "" }))
        }
        "ITILFollowup" => {
            if input["itemtype"] != "Ticket" {
                return glpi_error(400, "ERROR_GLPI_ADD", "itemtype must be Ticket");
            }
            let items_id = input["items_id"].as_u64();
            if !state
                .tickets
                .iter()
                .any(|t| t["id"].as_u64() == items_id && items_id.is_some())
            {
                return glpi_error(400, "ERROR_GLPI_ADD", "items_id is not a ticket");
            }
            if !nonempty_str(&input["content"]) {
                return glpi_error(400, "ERROR_GLPI_ADD", "a follow-up needs a content");
            }
            let id = state.followups.len() as u64 + 1;
            let mut followup = input.clone();
            followup["id"] = json!(id);
            state.followups.push(followup);
            (201, json!({ "id": id, "message": "" }))
        }
        other => glpi_error(
            400,
            "ERROR_ITEMTYPE_NOT_FOUND_NOR_COMMONDBTM",
            &format!("resource {other} not found"),
        ),
    }
}

/// GLPI's ticket statuses: 1 new, 2 processing (assigned), 3 processing
/// (planned), 4 pending, 5 solved, 6 closed.
fn glpi_status_ok(v: &Value) -> bool {
    v.as_u64().is_some_and(|n| (1..=6).contains(&n))
}

/// `PUT apirest.php/Ticket/{id}` with `{"input": {…}}`: here the `status`.
fn glpi_update(r: &HttpRequest, endpoint: &str, state: &mut GlpiState) -> HttpAnswer {
    let Some(id) = endpoint
        .strip_prefix("Ticket/")
        .and_then(|id| id.parse::<u64>().ok())
    else {
        return glpi_error(
            400,
            "ERROR_RESOURCE_MISSING",
            "PUT needs an existing Ticket/{id} here",
        );
    };
    if !r.is_json() {
        return glpi_error(
            400,
            "ERROR_BAD_ARRAY",
            "Content-Type must be application/json",
        );
    }
    let Some(input) = json_body(r)
        .and_then(|b| b.get("input").cloned())
        .filter(Value::is_object)
    else {
        return glpi_error(400, "ERROR_BAD_ARRAY", "input parameter must be an object");
    };
    let Some(index) = state
        .tickets
        .iter()
        .position(|t| t["id"].as_u64() == Some(id))
    else {
        return glpi_error(404, "ERROR_ITEM_NOT_FOUND", "item not found");
    };
    if input.get("status").is_none() || !glpi_status_ok(&input["status"]) {
        return glpi_error(400, "ERROR_GLPI_UPDATE", "status is 1 to 6");
    }
    state.tickets[index]["status"] = input["status"].clone();
    state.updates.push(json!({ "id": id, "input": input }));
    (200, json!([{ id.to_string(): true, "message": "" }]))
}

/// One part of a `multipart/form-data` body.
#[derive(Debug)]
struct FormPart {
    name: String,
    filename: Option<String>,
    data: Vec<u8>,
}

/// The parts of a `multipart/form-data` body (RFC 7578), or why it is not one.
fn form_parts(r: &HttpRequest) -> Result<Vec<FormPart>, String> {
    let content_type = r.header("content-type").unwrap_or_default();
    let boundary = content_type
        .strip_prefix("multipart/form-data;")
        .and_then(|rest| rest.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"').to_owned())
        .ok_or("a Document upload must be multipart/form-data with a boundary")?;
    let delimiter = format!("--{boundary}");
    let body = String::from_utf8_lossy(&r.body).into_owned();
    let mut sections = body.split(delimiter.as_str());
    if sections.next() != Some("") {
        return Err("the body does not start with the boundary".into());
    }
    let mut parts = Vec::new();
    let mut closed = false;
    for section in sections {
        if section.starts_with("--") {
            closed = true;
            break;
        }
        let section = section
            .strip_prefix("\r\n")
            .and_then(|s| s.strip_suffix("\r\n"))
            .ok_or("a part is not framed by CRLF")?;
        let (head, data) = section
            .split_once("\r\n\r\n")
            .ok_or("a part has no blank line after its headers")?;
        let disposition = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Disposition: form-data;"))
            .ok_or("a part has no Content-Disposition: form-data")?;
        let attribute = |key: &str| {
            disposition.split(';').find_map(|kv| {
                kv.trim()
                    .strip_prefix(&format!("{key}=\""))
                    .and_then(|v| v.strip_suffix('"'))
                    .map(str::to_owned)
            })
        };
        parts.push(FormPart {
            name: attribute("name").ok_or("a part has no name")?,
            filename: attribute("filename"),
            data: data.as_bytes().to_vec(),
        });
    }
    if !closed {
        return Err("the body has no closing boundary".into());
    }
    Ok(parts)
}

fn glpi_document(r: &HttpRequest, state: &mut GlpiState) -> Result<u64, String> {
    let parts = form_parts(r)?;
    let manifest = parts
        .iter()
        .find(|p| p.name == "uploadManifest")
        .ok_or("no uploadManifest part")?;
    let manifest: Value =
        serde_json::from_slice(&manifest.data).map_err(|_| "uploadManifest is not JSON")?;
    let input = manifest["input"].clone();
    if !nonempty_str(&input["name"]) {
        return Err("the document needs a name".into());
    }
    let filenames = input["_filename"]
        .as_array()
        .filter(|l| l.len() == 1)
        .ok_or("_filename must list the one uploaded file")?;
    let file = parts
        .iter()
        .find(|p| p.name == "filename[0]")
        .ok_or("no filename[0] part")?;
    if file.filename.as_deref() != filenames[0].as_str() {
        return Err("the file part's filename is not the manifest's _filename".into());
    }
    if input["itemtype"] != "Ticket"
        || !state
            .tickets
            .iter()
            .any(|t| t["id"].as_u64().is_some() && t["id"] == input["items_id"])
    {
        return Err("the document must name an existing Ticket (itemtype, items_id)".into());
    }
    let id = state.documents.len() as u64 + 1;
    let mut document = input;
    document["id"] = json!(id);
    document["file_name"] = json!(file.filename);
    document["content"] = json!(String::from_utf8_lossy(&file.data));
    state.documents.push(document);
    Ok(id)
}

// ----------------------------------------------------------------------
// Webhook

/// What the fake webhook receiver holds.
#[derive(Debug, Default, Clone)]
pub struct WebhookState {
    /// Accepted documents, one per delivery id, in arrival order.
    pub deliveries: Vec<Value>,
    /// Repeats of an accepted delivery id (acknowledged, not kept).
    pub repeats: u32,
    /// Requests refused for a bad or missing signature.
    pub bad_signatures: u32,
}

/// A receiver that checks `X-Deskside-Signature` and drops repeats.
#[derive(Debug)]
pub struct FakeWebhook {
    /// The server (stop, start, fail).
    pub server: FakeServer,
    state: Arc<Mutex<WebhookState>>,
}

/// `sha256=` and the hex HMAC-SHA256 of `body` (the receiver's own code,
/// independent of the relay's).
pub fn hmac_sha256_hex(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    format!(
        "sha256={}",
        hex::encode(ring::hmac::sign(&key, body).as_ref())
    )
}

impl FakeWebhook {
    /// Accepts POSTs to `/hooks/deskside` signed with `secret`.
    pub fn start(secret: &str) -> Self {
        let state: Arc<Mutex<WebhookState>> = Arc::default();
        let (secret, held) = (secret.to_owned(), Arc::clone(&state));
        let server = FakeServer::spawn(Arc::new(move |r: &HttpRequest| {
            webhook(r, &secret, &mut held.lock().expect("state"))
        }));
        Self { server, state }
    }

    /// The URL to configure.
    pub fn url(&self) -> String {
        format!("{}/hooks/deskside", self.server.base())
    }

    /// What it holds now.
    pub fn state(&self) -> WebhookState {
        self.state.lock().expect("state").clone()
    }
}

fn webhook(r: &HttpRequest, secret: &str, state: &mut WebhookState) -> HttpAnswer {
    if r.path != "/hooks/deskside" {
        return (404, json!({ "error": "no such hook" }));
    }
    if r.method != "POST" {
        return (405, json!({ "error": "POST only" }));
    }
    if !r.is_json() {
        return (415, json!({ "error": "JSON only" }));
    }
    // ring's verify compares in constant time.
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let same = r
        .header("x-deskside-signature")
        .and_then(|s| s.strip_prefix("sha256="))
        .and_then(|hex_tag| hex::decode(hex_tag).ok())
        .map(|tag| ring::hmac::verify(&key, &r.body, &tag).is_ok())
        .unwrap_or(false);
    if !same {
        state.bad_signatures += 1;
        return (401, json!({ "error": "bad signature" }));
    }
    let Some(id) = r.header("x-deskside-delivery").map(str::to_owned) else {
        return (400, json!({ "error": "no delivery id" }));
    };
    let Some(document) = json_body(r) else {
        return (400, json!({ "error": "not JSON" }));
    };
    if document["delivery_id"] != id.as_str()
        || r.header("x-deskside-event") != document["event"]["kind"].as_str()
    {
        return (400, json!({ "error": "headers and document disagree" }));
    }
    if state
        .deliveries
        .iter()
        .any(|d| d["delivery_id"] == id.as_str())
    {
        state.repeats += 1;
        return (200, json!({ "duplicate": true }));
    }
    let created = document["event"]["kind"] == "created";
    let number = document["request"]["number"].clone();
    state.deliveries.push(document);
    if created {
        (201, json!({ "ticket_id": format!("HOOK-{number}") }))
    } else {
        (200, json!({}))
    }
}

/// Sends one raw HTTP/1.1 request and returns the status and body (for
/// tests of the fakes themselves).
pub fn raw_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the fake");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write");
    stream.write_all(body).expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: (&str, &str) = ("Content-Type", "application/json");

    #[test]
    fn the_zammad_fake_refuses_wrong_requests() {
        let fake = FakeZammad::start("tok");
        let addr = fake.server.addr();
        let auth = ("Authorization", "Token token=tok");
        let ticket = json!({
            "title": "t", "group": "Users", "customer": "c@example.org",
            "article": { "body": "b", "type": "note", "internal": true,
                "attachments": [{ "filename": "s.json", "data": "e30=", "mime-type": "application/json" }] }
        })
        .to_string();
        let post = |path: &str, headers: &[(&str, &str)], body: &str| {
            raw_request(addr, "POST", path, headers, body.as_bytes()).0
        };
        assert_eq!(
            post("/api/v1/ticket", &[auth, JSON], &ticket),
            404,
            "wrong path"
        );
        assert_eq!(
            post("/api/v1/tickets", &[JSON], &ticket),
            401,
            "no authentication"
        );
        assert_eq!(
            post(
                "/api/v1/tickets",
                &[("Authorization", "Bearer tok"), JSON],
                &ticket
            ),
            401,
            "wrong scheme"
        );
        assert_eq!(
            post(
                "/api/v1/tickets",
                &[("Authorization", "Token token=nope"), JSON],
                &ticket
            ),
            401,
            "wrong token"
        );
        assert_eq!(
            post(
                "/api/v1/tickets",
                &[auth, ("Content-Type", "text/plain")],
                &ticket
            ),
            415,
            "wrong content type"
        );
        let without = |field: &str| {
            let mut t: Value = serde_json::from_str(&ticket).unwrap();
            t.as_object_mut().unwrap().remove(field);
            t.to_string()
        };
        for field in ["title", "group", "customer", "article"] {
            assert_eq!(
                post("/api/v1/tickets", &[auth, JSON], &without(field)),
                422,
                "{field}"
            );
        }
        let mut bad = serde_json::from_str::<Value>(&ticket).unwrap();
        bad["article"]["attachments"][0]["data"] = json!("not base64!");
        assert_eq!(
            post("/api/v1/tickets", &[auth, JSON], &bad.to_string()),
            422
        );
        assert_eq!(post("/api/v1/tickets", &[auth, JSON], &ticket), 201);
        let article = |id: u64| {
            json!({ "ticket_id": id, "body": "later", "type": "note", "internal": true })
                .to_string()
        };
        assert_eq!(
            post("/api/v1/ticket_articles", &[auth, JSON], &article(9)),
            422,
            "no such ticket"
        );
        assert_eq!(
            post("/api/v1/ticket_articles", &[auth, JSON], &article(1)),
            201
        );
        let state = fake.state();
        assert_eq!((state.tickets.len(), state.articles.len()), (1, 2));
    }

    #[test]
    fn the_fakes_refuse_wrong_state_changes() {
        let zammad = FakeZammad::start("tok");
        let auth = ("Authorization", "Token token=tok");
        let call = |method: &str, path: &str, headers: &[(&str, &str)], body: Value| {
            raw_request(
                zammad.server.addr(),
                method,
                path,
                headers,
                body.to_string().as_bytes(),
            )
            .0
        };
        let ticket =
            json!({ "title": "t", "group": "g", "customer": "c", "article": { "body": "b" } });
        assert_eq!(call("POST", "/api/v1/tickets", &[auth, JSON], ticket), 201);
        let close = json!({ "state": "closed", "article": { "body": "done", "type": "note", "internal": true } });
        assert_eq!(
            call("PUT", "/api/v1/tickets/2", &[auth, JSON], close.clone()),
            404
        );
        assert_eq!(
            call("PUT", "/api/v1/tickets/1", &[JSON], close.clone()),
            401
        );
        assert_eq!(
            call("PATCH", "/api/v1/tickets/1", &[auth, JSON], close.clone()),
            404
        );
        assert_eq!(
            call(
                "PUT",
                "/api/v1/tickets/1",
                &[auth, JSON],
                json!({ "state": "solved" })
            ),
            422,
            "not a Zammad state"
        );
        assert_eq!(
            call(
                "PUT",
                "/api/v1/tickets/1",
                &[auth, JSON],
                json!({ "status": "closed" })
            ),
            422,
            "not a ticket attribute"
        );
        assert_eq!(
            call(
                "PUT",
                "/api/v1/tickets/1",
                &[auth, JSON],
                json!({ "state": "closed", "article": {} })
            ),
            422,
            "an article without a body"
        );
        assert_eq!(zammad.state().tickets[0]["state"], "new");
        assert_eq!(call("PUT", "/api/v1/tickets/1", &[auth, JSON], close), 200);
        let state = zammad.state();
        assert_eq!(state.tickets[0]["state"], "closed");
        assert_eq!((state.articles.len(), state.updates.len()), (2, 1));

        let glpi = FakeGlpi::start("u", "a");
        let app = ("App-Token", "a");
        let (_, body) = raw_request(
            glpi.server.addr(),
            "GET",
            "/apirest.php/initSession",
            &[app, ("Authorization", "user_token u"), JSON],
            b"",
        );
        let session: Value = serde_json::from_str(&body).unwrap();
        let s = ("Session-Token", session["session_token"].as_str().unwrap());
        let call = |method: &str, path: &str, body: Value| {
            raw_request(
                glpi.server.addr(),
                method,
                path,
                &[app, s, JSON],
                body.to_string().as_bytes(),
            )
            .0
        };
        let ticket = json!({ "input": { "name": "n", "content": "c" } });
        assert_eq!(call("POST", "/apirest.php/Ticket", ticket), 201);
        assert_eq!(glpi.state().tickets[0]["status"], 1);
        let get = |path: &str| raw_request(glpi.server.addr(), "GET", path, &[app, s, JSON], b"");
        let (status, body) = get("/apirest.php/Ticket/1");
        assert_eq!(status, 200);
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["status"], 1);
        assert_eq!(get("/apirest.php/Ticket/7").0, 404);
        let solution = |id: u64| json!({ "input": { "itemtype": "Ticket", "items_id": id, "content": "fixed" } });
        assert_eq!(call("POST", "/apirest.php/ITILSolution", solution(4)), 400);
        assert_eq!(call("POST", "/apirest.php/ITILSolution", solution(1)), 201);
        assert_eq!(glpi.state().tickets[0]["status"], 5);
        assert_eq!(
            call("POST", "/apirest.php/ITILSolution", solution(1)),
            400,
            "already solved"
        );
        let status = |n: u64| json!({ "input": { "status": n } });
        assert_eq!(call("PUT", "/apirest.php/Ticket", status(2)), 400, "no id");
        assert_eq!(call("PUT", "/apirest.php/Ticket/9", status(2)), 404);
        assert_eq!(call("PUT", "/apirest.php/Ticket/1", status(9)), 400);
        assert_eq!(
            call("PUT", "/apirest.php/Ticket/1", json!({ "status": 2 })),
            400,
            "no input"
        );
        assert_eq!(call("PUT", "/apirest.php/Ticket/1", status(2)), 200);
        let state = glpi.state();
        assert_eq!(state.tickets[0]["status"], 2);
        assert_eq!((state.solutions.len(), state.updates.len()), (1, 1));
    }

    #[test]
    fn the_glpi_fake_refuses_wrong_requests() {
        let fake = FakeGlpi::start("user-tok", "app-tok");
        let addr = fake.server.addr();
        let app = ("App-Token", "app-tok");
        let user = ("Authorization", "user_token user-tok");
        let get = |path: &str, headers: &[(&str, &str)], body: &str| {
            raw_request(addr, "GET", path, headers, body.as_bytes())
        };
        assert_eq!(
            get("/initSession", &[app, user, JSON], "").0,
            404,
            "outside apirest.php"
        );
        assert_eq!(
            get("/apirest.php/initSession", &[user, JSON], "").0,
            400,
            "no App-Token"
        );
        assert_eq!(
            get(
                "/apirest.php/initSession",
                &[("App-Token", "x"), user, JSON],
                ""
            )
            .0,
            400,
            "wrong App-Token"
        );
        assert_eq!(
            get("/apirest.php/initSession", &[app, JSON], "").0,
            400,
            "no user token"
        );
        assert_eq!(
            get(
                "/apirest.php/initSession",
                &[app, ("Authorization", "user_token x"), JSON],
                ""
            )
            .0,
            401
        );
        assert_eq!(
            get("/apirest.php/initSession", &[app, user, JSON], "{}").0,
            400,
            "GET with a body"
        );
        let (status, body) = get("/apirest.php/initSession", &[app, user, JSON], "");
        assert_eq!(status, 200);
        let session: Value = serde_json::from_str(&body).unwrap();
        let session = session["session_token"].as_str().unwrap().to_owned();
        let s = ("Session-Token", session.as_str());
        let post = |path: &str, headers: &[(&str, &str)], body: Value| {
            raw_request(addr, "POST", path, headers, body.to_string().as_bytes()).0
        };
        let ticket = json!({ "input": { "name": "n", "content": "c", "urgency": 4, "impact": 2 } });
        assert_eq!(
            post("/apirest.php/Ticket", &[app, JSON], ticket.clone()),
            400,
            "no session"
        );
        assert_eq!(
            post(
                "/apirest.php/Ticket",
                &[app, ("Session-Token", "forged"), JSON],
                ticket.clone()
            ),
            401
        );
        assert_eq!(
            post("/apirest.php/Ticket", &[app, s], ticket.clone()),
            400,
            "no content type"
        );
        assert_eq!(
            post(
                "/apirest.php/Ticket",
                &[app, s, JSON],
                json!({ "name": "n" })
            ),
            400,
            "no input"
        );
        assert_eq!(
            post(
                "/apirest.php/Ticket",
                &[app, s, JSON],
                json!({ "input": { "name": "n" } })
            ),
            400,
            "no content"
        );
        assert_eq!(
            post(
                "/apirest.php/Ticket",
                &[app, s, JSON],
                json!({ "input": { "name": "n", "content": "c", "urgency": 7 } })
            ),
            400
        );
        assert_eq!(
            post("/apirest.php/Tickets", &[app, s, JSON], ticket.clone()),
            400,
            "no such itemtype"
        );
        assert_eq!(
            post("/apirest.php/Ticket", &[app, s, JSON], ticket.clone()),
            201
        );
        let followup =
            |id: u64| json!({ "input": { "itemtype": "Ticket", "items_id": id, "content": "x" } });
        assert_eq!(
            post("/apirest.php/ITILFollowup", &[app, s, JSON], followup(5)),
            400
        );
        assert_eq!(
            post("/apirest.php/ITILFollowup", &[app, s, JSON], followup(1)),
            201
        );
        let upload = |content_type: &str, body: &str| {
            raw_request(
                addr,
                "POST",
                "/apirest.php/Document",
                &[app, s, ("Content-Type", content_type)],
                body.as_bytes(),
            )
            .0
        };
        let form = |manifest: &str, file_name: &str| {
            format!(
                "--xy\r\nContent-Disposition: form-data; name=\"uploadManifest\"\r\nContent-Type: application/json\r\n\r\n{manifest}\r\n\
                 --xy\r\nContent-Disposition: form-data; name=\"filename[0]\"; filename=\"{file_name}\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--xy--\r\n"
            )
        };
        let manifest = |items_id: u64| {
            json!({ "input": { "name": "d", "_filename": ["a.txt"], "itemtype": "Ticket", "items_id": items_id } })
                .to_string()
        };
        let multipart = "multipart/form-data; boundary=xy";
        assert_eq!(
            upload("application/json", &manifest(1)),
            400,
            "not multipart"
        );
        assert_eq!(
            upload(multipart, &form(&manifest(1), "b.txt")),
            400,
            "file name differs"
        );
        assert_eq!(
            upload(multipart, &form(&manifest(9), "a.txt")),
            400,
            "no such ticket"
        );
        assert_eq!(
            upload(
                multipart,
                &form(&manifest(1), "a.txt").replace("--xy--", "")
            ),
            400,
            "unclosed"
        );
        assert_eq!(upload(multipart, &form(&manifest(1), "a.txt")), 201);
        assert_eq!(fake.state().documents[0]["content"], "hello");
        assert_eq!(get("/apirest.php/killSession", &[app, s, JSON], "").0, 200);
        assert_eq!(
            post("/apirest.php/Ticket", &[app, s, JSON], ticket),
            401,
            "killed session"
        );
        let state = fake.state();
        assert_eq!(
            (
                state.opened,
                state.killed,
                state.tickets.len(),
                state.followups.len()
            ),
            (1, 1, 1, 1)
        );
    }

    #[test]
    fn the_webhook_fake_checks_signatures_drops_repeats_and_can_fail() {
        let mut fake = FakeWebhook::start("hook-secret");
        let addr = fake.server.addr();
        let body = json!({
            "delivery_id": "1-1", "event": { "kind": "created" }, "request": { "number": 1 }
        })
        .to_string();
        let good = hmac_sha256_hex("hook-secret", body.as_bytes());
        let wrong = hmac_sha256_hex("other", body.as_bytes());
        let post = |path: &str, signature: &str| {
            raw_request(
                addr,
                "POST",
                path,
                &[
                    JSON,
                    ("X-Deskside-Signature", signature),
                    ("X-Deskside-Delivery", "1-1"),
                    ("X-Deskside-Event", "created"),
                ],
                body.as_bytes(),
            )
            .0
        };
        assert_eq!(post("/hooks/other", &good), 404);
        assert_eq!(post("/hooks/deskside", &wrong), 401);
        assert_eq!(post("/hooks/deskside", ""), 401);
        fake.server.fail_next(2);
        assert_eq!(post("/hooks/deskside", &good), 500);
        assert_eq!(post("/hooks/deskside", &good), 500);
        assert_eq!(post("/hooks/deskside", &good), 201);
        assert_eq!(
            post("/hooks/deskside", &good),
            200,
            "a repeat is acknowledged"
        );
        let state = fake.state();
        assert_eq!(
            (state.deliveries.len(), state.repeats, state.bad_signatures),
            (1, 1, 2)
        );
        // Down: refused; up again on the same port.
        fake.server.stop();
        assert!(TcpStream::connect(addr).is_err(), "a stopped fake refuses");
        fake.server.start();
        assert_eq!(fake.server.addr(), addr);
        assert_eq!(post("/hooks/deskside", &good), 200);
    }
}
