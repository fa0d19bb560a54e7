//! Who may use the dashboard: logging in with an API token (from our own page only), the
//! CSRF token every state-changing request carries, and logging out.

use serde_json::{json, Value};
use tiny_http::Request;

use super::logins::{set_cookie, Login};
use super::routes::{Web, CALL_TIMEOUT};
use super::transport::{Call, Failure};
use crate::http::{self, JsonResponse};
use crate::proto::v1 as pb;

/// A login must come from our own page: a JSON body (a cross-site form can only send
/// `text/plain`, `application/x-www-form-urlencoded` or `multipart/form-data` without a CORS
/// preflight we never grant) and, when the browser says where from, our own origin. This
/// stops login CSRF (a page logging the victim into the attacker's account).
pub(super) fn same_origin_json(request: &Request) -> Result<(), JsonResponse> {
    let content_type = http::request_header(request, "Content-Type").unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(http::error(
            415,
            "log in with a JSON body (Content-Type: application/json)",
        ));
    }
    if let Some(origin) = http::request_header(request, "Origin") {
        let host = http::request_header(request, "Host").unwrap_or("");
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        if origin_host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
            return Err(http::error(
                403,
                format!("cross-origin login refused (Origin {origin})"),
            ));
        }
    }
    Ok(())
}

/// A request that changes something must carry the login's CSRF token (a header a
/// cross-site form cannot set).
pub(super) fn csrf_checked(request: &Request, login: &Login) -> Result<(), JsonResponse> {
    let sent = http::request_header(request, "X-CSRF-Token");
    if sent == Some(login.csrf.as_str()) {
        Ok(())
    } else {
        Err(http::error(
            403,
            "missing or wrong X-CSRF-Token (reload the page)",
        ))
    }
}

/// What the page knows of its login.
pub(super) fn me(login: &Login) -> Value {
    json!({"name": login.name, "role": login.role, "csrf": login.csrf})
}

impl Web {
    /// `POST /api/login {"token"}`: the token is checked by the API (`WhoAmI`); a host's
    /// credential is refused. Returns the response and the cookie to set.
    pub(super) fn log_in(&self, call: &Call<'_>) -> (JsonResponse, Option<String>) {
        let token = call.text("token");
        if token.is_empty() {
            return (http::error(400, "token is required"), None);
        }
        let who = self.api.who_am_i_opt(
            &pb::WhoAmIRequest {},
            crate::grpc::call_option(Some(&token), CALL_TIMEOUT),
        );
        match who {
            Ok(who) if who.role != "host" => {
                log::info!(name = who.name.as_str(), role = who.role.as_str(); "dashboard login");
                let (id, login) = self.logins.create(token, who.name, who.role);
                (
                    http::json(200, &me(&login)),
                    Some(set_cookie(&id, self.secure_cookies)),
                )
            }
            Ok(_) => (http::error(403, "a host's credential cannot log in"), None),
            Err(e) => {
                let Failure(status, message) = e.into();
                (http::error(status, message), None)
            }
        }
    }

    /// `POST /api/logout`: the login ends (and with it its open consoles).
    pub(super) fn log_out(&self, request: &Request) -> (JsonResponse, Option<String>) {
        if let Some(id) = self.cookie_of(request) {
            self.logins.remove(&id);
        }
        (
            http::json(200, &json!({"logged_out": true})),
            Some(set_cookie("", self.secure_cookies)),
        )
    }
}
