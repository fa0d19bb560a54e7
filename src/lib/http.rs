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

/// What one HTTP client may cost any listener we serve (enforced by our patched tiny_http,
/// vendor/tiny_http/PATCHES.md): an 8 KiB line and 64 headers per request head, 10 s for a
/// head to arrive and 10 s for any read or write to make progress (idle keep-alive connections
/// close after that), 512 connections (the longest idle one makes room for a new one; when all
/// are busy a newcomer gets 503), and bodies up to [`MAX_BODY_BYTES`] read by the connection's
/// own thread before a handler sees the request, so no handler ever waits on a slow client.
pub fn limits() -> tiny_http::Limits {
    tiny_http::Limits {
        max_line_bytes: 8 * 1024,
        max_headers: 64,
        head_timeout: std::time::Duration::from_secs(10),
        io_timeout: std::time::Duration::from_secs(10),
        max_connections: 512,
        buffered_body_bytes: MAX_BODY_BYTES as usize,
    }
}

/// Connections the kernel queues for the accept thread (capped by net.core.somaxconn).
const ACCEPT_BACKLOG: libc::c_int = 4096;

/// The largest request body any route accepts (the dashboard's forms; the others take none).
pub const MAX_BODY_BYTES: u64 = 64 * 1024;

/// Why a listener could not be set up (the daemon stops at start, saying which address).
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({step})")]
pub struct ListenError {
    pub addr: String,
    /// What failed: binding, TCP_NODELAY, the accept queue, the server.
    pub step: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

crate::errors::read_as_one_line!(ListenError);

/// A tiny_http server on `addr`, bounded by [`limits`], whose connections send without Nagle's
/// delay. tiny_http writes a response's head and body separately; with Nagle on, a body that
/// follows a small head waits for the client's delayed ACK (40 ms on Linux) on every
/// keep-alive request. Accepted sockets inherit TCP_NODELAY from the listening socket.
pub fn server(addr: &str) -> Result<tiny_http::Server, ListenError> {
    use std::os::fd::AsRawFd;
    let failed = |step, source: Box<dyn std::error::Error + Send + Sync>| ListenError {
        addr: addr.to_string(),
        step,
        source,
    };
    let listener = std::net::TcpListener::bind(addr).map_err(|e| failed("bind", e.into()))?;
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
        let e = std::io::Error::last_os_error();
        return Err(failed("TCP_NODELAY", e.into()));
    }
    // A deeper accept queue than std's 128: in a burst of connections (a flood, or every
    // dashboard reconnecting at once) a full queue drops SYNs, and each dropped client waits a
    // whole second to retry. Calling listen again on a listening socket only resizes it.
    // SAFETY: listen on a socket we own.
    if unsafe { libc::listen(listener.as_raw_fd(), ACCEPT_BACKLOG) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(failed("accept queue", e.into()));
    }
    tiny_http::Server::from_listener_with_limits(listener, None, limits())
        .map_err(|e| failed("server", e))
}

/// A request's body, at most [`MAX_BODY_BYTES`]: 413 beyond it, 411 without a Content-Length
/// (a chunked body would be read by the handler's thread at the client's pace).
pub fn read_body(request: &mut tiny_http::Request) -> Result<Vec<u8>, JsonResponse> {
    use std::io::Read;
    let declared = match request.body_length() {
        Some(n) => n as u64,
        None if has_header(request, "Transfer-Encoding") => {
            return Err(error(411, "send the body with a Content-Length"))
        }
        None => 0,
    };
    if declared > MAX_BODY_BYTES {
        return Err(error(
            413,
            format!("request body too large (at most {MAX_BODY_BYTES} bytes)"),
        ));
    }
    let mut body = Vec::with_capacity(declared as usize);
    match request
        .as_reader()
        .take(MAX_BODY_BYTES)
        .read_to_end(&mut body)
    {
        Ok(_) if body.len() as u64 == declared => Ok(body),
        _ => Err(error(400, "request body shorter than its Content-Length")),
    }
}

fn has_header(request: &tiny_http::Request, name: &'static str) -> bool {
    request_header(request, name).is_some()
}

/// The value of a request's header `name` (the first, if sent twice).
pub fn request_header<'r>(request: &'r tiny_http::Request, name: &'static str) -> Option<&'r str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
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
