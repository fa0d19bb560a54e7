//! The dashboard's HTTP plumbing shared by every route: a request as the routes see it
//! ([`Call`]), their typed answer ([`Reply`]: JSON or a download) and failure (an HTTP status
//! and a message, mapped from the API's gRPC status), and writing a response with the
//! security headers every answer carries.

use std::io::Read;

use grpcio::RpcStatusCode;
use serde_json::Value;
use tiny_http::{Method, Request, Response};

use crate::http::{header, query_params};

/// Every answer carries these: no inline script may run (a game's console line is text,
/// never markup, and even injected markup could not execute), no framing, no sniffing.
const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
];

/// A request failed: the status and what to tell the page.
#[derive(Debug)]
pub(super) struct Failure(pub u16, pub String);

impl From<grpcio::Error> for Failure {
    fn from(e: grpcio::Error) -> Failure {
        match e {
            grpcio::Error::RpcFailure(s) => {
                let status = match s.code() {
                    RpcStatusCode::INVALID_ARGUMENT | RpcStatusCode::OUT_OF_RANGE => 400,
                    RpcStatusCode::UNAUTHENTICATED => 401,
                    RpcStatusCode::PERMISSION_DENIED => 403,
                    RpcStatusCode::NOT_FOUND => 404,
                    RpcStatusCode::ALREADY_EXISTS | RpcStatusCode::FAILED_PRECONDITION => 409,
                    RpcStatusCode::RESOURCE_EXHAUSTED => 429,
                    RpcStatusCode::UNAVAILABLE | RpcStatusCode::DEADLINE_EXCEEDED => 503,
                    _ => 502,
                };
                Failure(status, s.message().to_string())
            }
            other => Failure(503, format!("the control API is unavailable: {other}")),
        }
    }
}

pub(super) fn bad(message: impl Into<String>) -> Failure {
    Failure(400, message.into())
}

/// What a route answers: JSON for the page, or a file for the browser to save.
#[derive(Debug)]
pub(super) enum Reply {
    Json(Value),
    Download { filename: String, text: String },
}

impl From<Value> for Reply {
    fn from(value: Value) -> Reply {
        Reply::Json(value)
    }
}

pub(super) type Answer = Result<Reply, Failure>;

/// A request as the JSON routes see it.
pub(super) struct Call<'a> {
    pub method: &'a Method,
    pub segments: Vec<&'a str>,
    pub query: Vec<(String, String)>,
    pub body: Value,
}

impl Call<'_> {
    pub fn id(&self, i: usize) -> Result<i64, Failure> {
        self.segments
            .get(i)
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|id| *id > 0)
            .ok_or_else(|| {
                bad(format!(
                    "invalid id {:?}",
                    self.segments.get(i).unwrap_or(&"")
                ))
            })
    }

    pub fn text(&self, field: &str) -> String {
        self.body[field]
            .as_str()
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    pub fn number(&self, field: &str) -> Result<i64, Failure> {
        match &self.body[field] {
            Value::Null => Ok(0),
            Value::Number(n) => n
                .as_i64()
                .ok_or_else(|| bad(format!("{field}: not an integer"))),
            Value::String(s) if s.trim().is_empty() => Ok(0),
            Value::String(s) => s
                .trim()
                .parse()
                .map_err(|_| bad(format!("{field}: not an integer"))),
            _ => Err(bad(format!("{field}: not an integer"))),
        }
    }

    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Where a reconnecting console resumes: the browser's `Last-Event-ID`, or `?after=`.
pub(super) fn last_event_id(request: &Request, url: &str) -> i64 {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Last-Event-ID"))
        .map(|h| h.value.as_str().to_string())
        .or_else(|| {
            query_params(url)
                .into_iter()
                .find(|(k, _)| k == "after")
                .map(|(_, v)| v)
        })
        .and_then(|v| v.trim().parse().ok())
        .filter(|n: &i64| *n >= 0)
        .unwrap_or(0)
}

pub(super) fn respond<R: Read>(request: Request, response: Response<R>, cookie: Option<String>) {
    let mut response = response;
    for (name, value) in SECURITY_HEADERS {
        response.add_header(header(name, value));
    }
    if let Some(cookie) = cookie {
        response.add_header(header("Set-Cookie", &cookie));
    }
    if let Err(e) = request.respond(response) {
        log::debug!("client went away: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_failures_map_to_http_statuses() {
        let status = |code| {
            Failure::from(grpcio::Error::RpcFailure(grpcio::RpcStatus::with_message(
                code,
                "why".into(),
            )))
            .0
        };
        assert_eq!(status(RpcStatusCode::UNAUTHENTICATED), 401);
        assert_eq!(status(RpcStatusCode::PERMISSION_DENIED), 403);
        assert_eq!(status(RpcStatusCode::FAILED_PRECONDITION), 409);
        assert_eq!(status(RpcStatusCode::INVALID_ARGUMENT), 400);
        assert_eq!(status(RpcStatusCode::UNAVAILABLE), 503);
    }
}
