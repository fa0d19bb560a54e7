//! Small tiny_http helpers shared by the health endpoints, the status API and the dashboard:
//! the listening server, JSON responses and the one JSON error shape, `{"error": "..."}`.

use std::io::Cursor;

use tiny_http::{Header, Response, StatusCode};

pub type JsonResponse = Response<Cursor<Vec<u8>>>;

/// A response header (names and values here are ASCII).
pub fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is valid")
}

pub fn json(status: u16, body: &serde_json::Value) -> JsonResponse {
    Response::from_data(body.to_string().into_bytes())
        .with_status_code(StatusCode(status))
        .with_header(header("Content-Type", "application/json"))
}

pub fn error(status: u16, message: impl Into<String>) -> JsonResponse {
    json(status, &serde_json::json!({ "error": message.into() }))
}

pub fn text(status: u16, content_type: &str, body: String) -> JsonResponse {
    Response::from_data(body.into_bytes())
        .with_status_code(StatusCode(status))
        .with_header(header("Content-Type", content_type))
}

/// A tiny_http server on `addr` whose connections send without Nagle's delay. tiny_http
/// writes a response's head and body separately; with Nagle on, a body that follows a small
/// head waits for the client's delayed ACK (40 ms on Linux) on every keep-alive request.
/// Accepted sockets inherit TCP_NODELAY from the listening socket.
pub fn server(addr: &str) -> Result<tiny_http::Server, String> {
    use std::os::fd::AsRawFd;
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &on as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(format!(
            "cannot set TCP_NODELAY on {addr}: {}",
            std::io::Error::last_os_error()
        ));
    }
    tiny_http::Server::from_listener(listener, None)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// How often, and how many connections at a time, [`drain_queued_connections`] opens: up to
/// 20 queued connections served per second.
const NUDGE_EVERY: std::time::Duration = std::time::Duration::from_millis(200);
const NUDGES: usize = 4;

/// Works around tiny_http 0.12's connection pool: it queues a new connection, instead of
/// giving it a thread, whenever some thread *was* idle when it arrived. In a burst (wrk's 32
/// keep-alive connections, 50 browsers reconnecting their consoles at once) several
/// connections queue behind one idle thread, and a keep-alive connection or a live console
/// holds its thread for as long as it is open: the rest would wait forever. A connection that
/// finds no idle thread gets a new one, which serves it and then takes the next queued one; so
/// a connection to ourselves, closed at once, drains the queue by one. This thread opens a few
/// every 200 ms, which costs nothing measurable.
pub fn drain_queued_connections(
    server: &tiny_http::Server,
    supervisor: &mut crate::lifecycle::Supervisor,
) -> Result<(), String> {
    let Some(address) = server.server_addr().to_ip() else {
        return Ok(());
    };
    supervisor
        .spawn("pool-nudge", move |shutdown| {
            while !shutdown.wait(NUDGE_EVERY) {
                for _ in 0..NUDGES {
                    let _ = std::net::TcpStream::connect_timeout(&address, NUDGE_EVERY);
                }
            }
            Ok(())
        })
        .map(drop)
        .map_err(|e| format!("cannot spawn thread: {e}"))
}

/// The decoded `key=value` pairs of a request URL's query string (`+` is a space).
pub fn query_params(url: &str) -> Vec<(String, String)> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// The path of a request URL, without its query string.
pub fn path_of(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode() {
        assert_eq!(
            query_params("/x?host=my%20host&a=b+c&flag"),
            vec![
                ("host".into(), "my host".into()),
                ("a".into(), "b c".into()),
                ("flag".into(), String::new())
            ]
        );
    }
}
