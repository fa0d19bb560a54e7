//! Small tiny_http helpers shared by the health endpoints and the status API: JSON responses
//! and the one JSON error shape, `{"error": "..."}`.

use std::io::Cursor;

use tiny_http::{Header, Response, StatusCode};

pub type JsonResponse = Response<Cursor<Vec<u8>>>;

fn header(name: &str, value: &str) -> Header {
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

/// The path of a request URL, without its query string.
pub fn path_of(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}
