//! The dashboard's HTTP layer against a real control API and log processor (real PostgreSQL
//! and RabbitMQ): assets and their headers, login with API tokens, the cookie's flags, CSRF on
//! every change, roles passed through, and the live console as Server-Sent Events that resume
//! after the last event id and carry a console line as text.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use manman::api::{self, ApiConfig};
use manman::auth::Role;
use manman::grpc::Endpoint;
use manman::lifecycle::Supervisor;
use manman::logs::{self, LogsConfig};
use manman::web::{self, WebConfig};
use manman::wire::{routing, ConsoleBatch, ConsoleLine, HostStatus, SessionStatus};
use serde_json::{json, Value};
use support::*;

const T: Duration = Duration::from_secs(30);

struct Dashboard {
    db: TestDb,
    vhost: TestVhost,
    port: u16,
    /// The health ports of the API and the log processor behind it.
    api_health: u16,
    logs_health: u16,
    admin: String,
    viewer: String,
    _daemons: Vec<Daemon>,
}

impl Dashboard {
    fn start() -> Dashboard {
        let db = TestDb::new();
        let vhost = TestVhost::new();
        let mut sup = Supervisor::new();
        let api = api::start(
            ApiConfig::embedded(vhost.url(), db.config.clone()),
            &mut sup,
        )
        .unwrap();
        let api_daemon = Daemon::run(sup);
        let mut sup = Supervisor::new();
        let logs = logs::start(
            LogsConfig::embedded(vhost.url(), Some(db.config.clone())),
            &mut sup,
        )
        .unwrap();
        wait_for("the log processor ready", T, || {
            manman::testkit::http_get(logs.health_port, "/readyz")
                .starts_with("HTTP/1.1 200")
                .then_some(())
        });
        let logs_daemon = Daemon::run(sup);
        let mut sup = Supervisor::new();
        let running = web::start(
            WebConfig {
                listen: "127.0.0.1:0".into(),
                api: Endpoint::plain(&format!("127.0.0.1:{}", api.port)),
                logs: Endpoint::plain(&format!("127.0.0.1:{}", logs.grpc_port)),
                workers: 2,
                login_ttl: Duration::from_secs(3600),
                secure_cookies: false,
            },
            &mut sup,
        )
        .unwrap();
        let token = |name, role| {
            api::create_token(&mut db.client(), name, role, 0)
                .unwrap()
                .1
        };
        Dashboard {
            admin: token("web-admin", Role::Admin),
            viewer: token("web-viewer", Role::Viewer),
            port: running.port,
            api_health: api.health_port,
            logs_health: logs.health_port,
            db,
            vhost,
            _daemons: vec![Daemon::run(sup), logs_daemon, api_daemon],
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A request with an optional login cookie and CSRF token; (status, headers, JSON body).
    fn call(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        csrf: Option<&str>,
        body: Option<Value>,
    ) -> (u16, ureq::Response) {
        let mut req = ureq::request(method, &self.url(path));
        if let Some(c) = cookie {
            req = req.set("Cookie", c);
        }
        if let Some(t) = csrf {
            req = req.set("X-CSRF-Token", t);
        }
        let r = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        match r {
            Ok(r) => (r.status(), r),
            Err(ureq::Error::Status(code, r)) => (code, r),
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }

    /// Logs in; returns the cookie to send and the CSRF token.
    fn log_in(&self, token: &str) -> (String, String) {
        manman::testkit::dashboard_login(self.port, token)
    }
}

fn json_of(r: ureq::Response) -> Value {
    r.into_json().unwrap()
}

#[test]
fn the_page_needs_a_login_and_every_change_its_csrf_token() {
    let d = Dashboard::start();
    let host = add_host(&mut d.db.client(), HostStatus::Online);
    let (sgc, _) = add_session(&mut d.db.client(), host, SessionStatus::Stopped, &[]);

    // The page and its script are served, with a policy that forbids inline script.
    let (code, page) = d.call("GET", "/", None, None, None);
    assert_eq!(code, 200);
    let csp = page.header("Content-Security-Policy").unwrap().to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(page
        .into_string()
        .unwrap()
        .contains("<script src=\"/app.js\""));
    let (code, script) = d.call("GET", "/app.js", None, None, None);
    assert_eq!(code, 200);
    assert!(
        !script.into_string().unwrap().contains("innerHTML"),
        "text only, never markup"
    );

    // Nothing without a login; a wrong token is refused.
    assert_eq!(d.call("GET", "/api/overview", None, None, None).0, 401);
    let (code, r) = d.call(
        "POST",
        "/api/login",
        None,
        None,
        Some(json!({"token": "mm_tok_nope"})),
    );
    assert_eq!(code, 401);
    assert!(json_of(r)["error"].is_string());

    // An admin logs in: the cookie is HttpOnly and SameSite=Strict.
    let (code, r) = d.call(
        "POST",
        "/api/login",
        None,
        None,
        Some(json!({"token": d.admin})),
    );
    assert_eq!(code, 200);
    let set = r.header("Set-Cookie").unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(
        !set.contains(&d.admin),
        "the API token never goes to the browser"
    );
    let (cookie, csrf) = d.log_in(&d.admin);
    let (code, r) = d.call("GET", "/api/overview", Some(&cookie), None, None);
    assert_eq!(code, 200);
    let overview = json_of(r);
    assert_eq!(overview["hosts"][0]["server_id"], host);
    assert_eq!(overview["hosts"][0]["status"], "online");

    // A change without the CSRF token, or with another login's, is refused before the API.
    let start = format!("/api/deployments/{sgc}/start");
    assert_eq!(
        d.call("POST", &start, Some(&cookie), None, Some(json!({})))
            .0,
        403
    );
    let (_, other_csrf) = d.log_in(&d.admin);
    assert_eq!(
        d.call(
            "POST",
            &start,
            Some(&cookie),
            Some(&other_csrf),
            Some(json!({}))
        )
        .0,
        403
    );
    // With it, the API answers (here: the host has no agent listening, so the start fails).
    let (code, r) = d.call("POST", &start, Some(&cookie), Some(&csrf), Some(json!({})));
    assert_ne!(code, 403, "{}", r.into_string().unwrap());

    // A viewer reads but the API refuses its changes (the role passes through).
    let (viewer_cookie, viewer_csrf) = d.log_in(&d.viewer);
    assert_eq!(
        d.call("GET", "/api/overview", Some(&viewer_cookie), None, None)
            .0,
        200
    );
    let (code, r) = d.call(
        "POST",
        "/api/games",
        Some(&viewer_cookie),
        Some(&viewer_csrf),
        Some(json!({"name": "nope"})),
    );
    assert_eq!(code, 403);
    assert!(json_of(r)["error"].as_str().unwrap().contains("admin"));

    // An admin creates a game through the page's route; logging out ends the login.
    let (code, r) = d.call(
        "POST",
        "/api/games",
        Some(&cookie),
        Some(&csrf),
        Some(json!({"name": "from-the-web"})),
    );
    assert_eq!(code, 200);
    assert_eq!(json_of(r)["name"], "from-the-web");
    assert_eq!(
        d.call(
            "POST",
            "/api/logout",
            Some(&cookie),
            Some(&csrf),
            Some(json!({}))
        )
        .0,
        200
    );
    assert_eq!(
        d.call("GET", "/api/overview", Some(&cookie), None, None).0,
        401
    );
}

/// Reads SSE events (id, event, data) from a raw connection until `n` have arrived.
/// Opens session `session`'s live console with a login cookie (and a `Last-Event-ID` when
/// resuming); returns the stream after its `200` status line.
fn open_console(port: u16, cookie: &str, path: &str, last_id: Option<i64>) -> BufReader<TcpStream> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(T)).unwrap();
    let resume = last_id
        .map(|id| format!("Last-Event-ID: {id}\r\n"))
        .unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n{resume}\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    reader
}

fn read_events(
    port: u16,
    cookie: &str,
    path: &str,
    last_id: Option<i64>,
    n: usize,
) -> Vec<(i64, String, Value)> {
    let mut reader = open_console(port, cookie, path, last_id);
    let (mut events, mut id, mut kind) = (Vec::new(), 0, String::new());
    let mut line = String::new();
    while events.len() < n {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the stream ended early"
        );
        let l = line.trim_end_matches(['\r', '\n']);
        if let Some(v) = l.strip_prefix("id: ") {
            id = v.parse().unwrap();
        } else if let Some(v) = l.strip_prefix("event: ") {
            kind = v.to_string();
        } else if let Some(v) = l.strip_prefix("data: ") {
            events.push((id, kind.clone(), serde_json::from_str(v).unwrap()));
        }
    }
    events
}

#[test]
fn a_live_console_streams_as_events_resumes_after_the_last_id_and_keeps_markup_as_text() {
    let d = Dashboard::start();
    let host = add_host(&mut d.db.client(), HostStatus::Online);
    let (_, session) = add_session(&mut d.db.client(), host, SessionStatus::Running, &[]);
    let publisher = TestPublisher::new(&d.vhost);
    let now = chrono::Utc::now().timestamp_millis();
    let lines: Vec<ConsoleLine> = (1..=5)
        .map(|i| ConsoleLine {
            seq: i,
            timestamp: now,
            source: if i == 2 {
                "stderr".into()
            } else {
                "stdout".into()
            },
            message: if i == 3 {
                "<script>alert(1)</script>".into()
            } else {
                format!("line {i}")
            },
            dropped: 0,
        })
        .collect();
    publisher.publish_bytes(
        &routing::session_logs(session),
        ConsoleBatch {
            session_id: session,
            lines,
        }
        .encode(),
    );
    let (cookie, _) = d.log_in(&d.viewer);
    let path = format!("/api/sessions/{session}/console");
    let events = read_events(d.port, &cookie, &path, None, 5);
    let messages: Vec<&str> = events
        .iter()
        .map(|e| e.2["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            "line 1",
            "line 2",
            "<script>alert(1)</script>",
            "line 4",
            "line 5"
        ]
    );
    assert_eq!(
        events[1].2["source"], "stderr",
        "stdout and stderr told apart"
    );
    assert!(events.iter().all(|e| e.1 == "line"));
    assert!(events.windows(2).all(|w| w[0].0 < w[1].0), "ids increase");

    // A browser reconnecting after the third line gets the fourth and fifth, no repeats.
    let resumed = read_events(d.port, &cookie, &path, Some(events[2].0), 2);
    assert_eq!(resumed[0].0, events[3].0);
    assert_eq!(resumed[1].2["message"], "line 5");

    // Without a login there is no stream.
    let (code, _) = d.call("GET", &path, None, None, None);
    assert_eq!(code, 401);
}

#[test]
fn the_dashboard_and_the_daemons_behind_it_survive_hostile_clients() {
    hostile::watch_for_panics();
    let d = Dashboard::start();
    // A live console open through the whole attack: it is busy, never closed to make room.
    let host = add_host(&mut d.db.client(), HostStatus::Online);
    let (_, session) = add_session(&mut d.db.client(), host, SessionStatus::Running, &[]);
    let (cookie, _) = d.log_in(&d.viewer);
    let path = format!("/api/sessions/{session}/console");
    let mut console = open_console(d.port, &cookie, &path, None);
    hostile::assert_survives("the dashboard", d.port, "/");
    let line = ConsoleLine {
        seq: 1,
        timestamp: chrono::Utc::now().timestamp_millis(),
        source: "stdout".into(),
        message: "still streaming".into(),
        dropped: 0,
    };
    TestPublisher::new(&d.vhost).publish_bytes(
        &routing::session_logs(session),
        ConsoleBatch {
            session_id: session,
            lines: vec![line],
        }
        .encode(),
    );
    let mut text = String::new();
    while !text.contains("still streaming") {
        let mut l = String::new();
        assert!(
            console.read_line(&mut l).unwrap() > 0,
            "the console was closed during the attack"
        );
        text.push_str(&l);
    }
    hostile::assert_survives("the API's health port", d.api_health, "/healthz");
    hostile::assert_survives("the log processor's health port", d.logs_health, "/healthz");
    hostile::assert_slow_head_is_cut(d.port);
    // A body larger than any route takes is refused before it is read.
    let (cookie, csrf) = d.log_in(&d.admin);
    let big = json!({ "name": "x".repeat(70 * 1024) });
    let (code, _) = d.call("POST", "/api/games", Some(&cookie), Some(&csrf), Some(big));
    assert_eq!(code, 413);
}

#[test]
fn a_cross_site_login_is_refused() {
    let d = Dashboard::start();
    let body = json!({ "token": d.viewer }).to_string();
    let post = |content_type: &str, origin: Option<&str>| {
        let mut req = ureq::post(&d.url("/api/login")).set("Content-Type", content_type);
        if let Some(o) = origin {
            req = req.set("Origin", o);
        }
        match req.send_string(&body) {
            Ok(r) => (r.status(), r.header("Set-Cookie").is_some()),
            Err(ureq::Error::Status(code, r)) => (code, r.header("Set-Cookie").is_some()),
            Err(e) => panic!("{e}"),
        }
    };
    // What a form on another site can send without a preflight.
    assert_eq!(
        post("text/plain", Some("http://evil.example")),
        (415, false)
    );
    assert_eq!(
        post("application/x-www-form-urlencoded", None),
        (415, false)
    );
    // JSON from another origin (a preflight we never grant) is refused too.
    assert_eq!(
        post("application/json", Some("http://evil.example")),
        (403, false)
    );
    // Our own page: same origin, JSON.
    let own = format!("http://127.0.0.1:{}", d.port);
    assert_eq!(post("application/json", Some(&own)), (200, true));
}

#[test]
fn a_logout_ends_its_open_consoles() {
    let d = Dashboard::start();
    let host = add_host(&mut d.db.client(), HostStatus::Online);
    let (_, session) = add_session(&mut d.db.client(), host, SessionStatus::Running, &[]);
    let (cookie, csrf) = d.log_in(&d.viewer);
    let path = format!("/api/sessions/{session}/console");
    let mut reader = open_console(d.port, &cookie, &path, None);
    let (code, _) = d.call("POST", "/api/logout", Some(&cookie), Some(&csrf), None);
    assert_eq!(code, 200);
    let logged_out = std::time::Instant::now();
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "the console closed without saying why");
        if line.starts_with("data: ") && line.contains("logged out") {
            break;
        }
    }
    assert!(logged_out.elapsed() < Duration::from_secs(10));
}
