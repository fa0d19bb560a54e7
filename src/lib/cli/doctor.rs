//! `manman doctor`: checks the chain from this terminal to the control plane one link at a
//! time (config, CA, API address, its certificate, the token, the log processor) and says
//! what to fix, so an operator does not decode each command's own failure.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::json;

use super::shared::{Exit, Failure, Outcome};
use crate::config::Env;
use crate::grpc::Endpoint;
use crate::proto::v1 as pb;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        }
    }
}

/// One link of the chain: what was found, and for a warning or failure what fixes it.
#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            verdict: Verdict::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    fn bad(
        name: &'static str,
        verdict: Verdict,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            name,
            verdict,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Where the CLI would connect, as `run` resolved it.
pub struct Target<'a> {
    pub env: &'a Env,
    pub context: Option<&'a str>,
    pub config_file: &'a str,
    pub api: &'a str,
    pub log_processor: &'a str,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs every check (a later link is skipped, as a failure, when the one it needs failed).
pub fn diagnose(target: &Target<'_>) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.push(match target.context {
        Some(name) => Check::ok("config", format!("context {name} ({})", target.config_file)),
        None if target.env.get("API_ADDRESS").is_some() => Check::ok(
            "config",
            format!(
                "no context; API_ADDRESS from the environment ({})",
                target.config_file
            ),
        ),
        None => Check::bad(
            "config",
            Verdict::Warn,
            format!(
                "no context in {} and no API_ADDRESS: using the defaults",
                target.config_file
            ),
            "manman context add NAME --api HOST:PORT --ca CA.pem --token-file FILE --use",
        ),
    });
    let ca = match target.env.get("GRPC_TLS_CA") {
        None => {
            checks.push(Check::bad(
                "ca",
                if is_loopback(target.api) { Verdict::Ok } else { Verdict::Warn },
                "no CA set: gRPC in plaintext",
                "set the context's CA (manman context add … --ca CA.pem --replace) if the API serves TLS",
            ));
            None
        }
        Some(path) => match read_ca(path) {
            Ok(ca) => {
                checks.push(Check::ok("ca", format!("{path} (a PEM certificate)")));
                Some(ca)
            }
            Err(e) => {
                checks.push(Check::bad(
                    "ca",
                    Verdict::Fail,
                    e,
                    "point GRPC_TLS_CA or the context's ca at the CA file that signed the API's certificate",
                ));
                return checks;
            }
        },
    };
    let api_ok = reach(&mut checks, "api", target.api, ca.as_ref(), "manman-api");
    if api_ok {
        checks.push(check_token(target, ca.as_ref()));
    }
    reach(
        &mut checks,
        "log processor",
        target.log_processor,
        ca.as_ref(),
        "manman-log-processor",
    );
    checks
}

fn is_loopback(address: &str) -> bool {
    let host = host_of(address);
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

fn host_of(address: &str) -> &str {
    address.rsplit_once(':').map_or(address, |(h, _)| h)
}

/// The CA file's PEM (for gRPC) and the certificate it holds (for the handshake check).
struct Ca {
    pem: Vec<u8>,
    cert: native_tls::Certificate,
}

fn read_ca(path: &str) -> Result<Ca, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let cert = native_tls::Certificate::from_pem(&pem)
        .map_err(|e| format!("{path} is not a PEM certificate: {e}"))?;
    Ok(Ca { pem, cert })
}

/// TCP to `address`, then (with a CA) a TLS handshake that checks the certificate against the
/// CA and the address's host name. Pushes one check; `true` when the link holds.
fn reach(
    checks: &mut Vec<Check>,
    name: &'static str,
    address: &str,
    ca: Option<&Ca>,
    daemon: &str,
) -> bool {
    let tcp = address
        .to_socket_addrs()
        .map_err(|e| format!("{address}: {e}"))
        .and_then(|mut addrs| addrs.next().ok_or_else(|| format!("{address}: no address")))
        .and_then(|addr| {
            TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
                .map_err(|e| format!("cannot connect to {address}: {e}"))
        });
    let stream = match tcp {
        Ok(s) => s,
        Err(e) => {
            checks.push(Check::bad(
                name,
                Verdict::Fail,
                e,
                format!("is {daemon} running and listening there? (systemctl status {daemon}; the context's address)"),
            ));
            return false;
        }
    };
    let Some(ca) = ca else {
        checks.push(Check::ok(name, format!("{address} answers (plaintext)")));
        return true;
    };
    let _ = stream.set_read_timeout(Some(CONNECT_TIMEOUT));
    let _ = stream.set_write_timeout(Some(CONNECT_TIMEOUT));
    let connector = native_tls::TlsConnector::builder()
        .add_root_certificate(ca.cert.clone())
        .disable_built_in_roots(true)
        .request_alpns(&["h2"])
        .build();
    let host = host_of(address)
        .trim_start_matches('[')
        .trim_end_matches(']');
    match connector.map(|c| c.connect(host, stream)) {
        Ok(Ok(_)) => {
            checks.push(Check::ok(
                name,
                format!("{address} answers with a certificate the CA signed for {host}"),
            ));
            true
        }
        Ok(Err(e)) => {
            checks.push(Check::bad(
                name,
                Verdict::Fail,
                format!("TLS with {address}: {e}"),
                format!("the certificate must be signed by the CA and name {host} (subjectAltName); or the CA is the wrong one"),
            ));
            false
        }
        Err(e) => {
            checks.push(Check::bad(
                name,
                Verdict::Fail,
                format!("TLS: {e}"),
                "check the CA file",
            ));
            false
        }
    }
}

fn check_token(target: &Target<'_>, ca: Option<&Ca>) -> Check {
    let token = match crate::grpc::client_token(target.env) {
        Ok(Some(token)) => token,
        Ok(None) => {
            return Check::bad(
                "token",
                Verdict::Fail,
                "no token: none in the context, MANMAN_TOKEN, MANMAN_TOKEN_FILE or ~/.config/manman/token",
                "ask an admin: manman token create NAME --role operator --output FILE; then manman context add … --token-file FILE --replace",
            )
        }
        Err(e) => {
            return Check::bad(
                "token",
                Verdict::Fail,
                e.to_string(),
                "fix the token file (its mode must be 0600: chmod 600 FILE)",
            )
        }
    };
    let endpoint = Endpoint {
        address: target.api.to_string(),
        tls_ca: ca.map(|c| c.pem.clone()),
    };
    let answer = endpoint.api_client().who_am_i_opt(
        &pb::WhoAmIRequest {},
        crate::grpc::call_option(Some(&token), Duration::from_secs(10)),
    );
    match answer {
        Ok(who) => Check::ok("token", format!("valid: {} (role {})", who.name, who.role)),
        Err(grpcio::Error::RpcFailure(s))
            if s.code() == grpcio::RpcStatusCode::UNAUTHENTICATED =>
        {
            Check::bad(
                "token",
                Verdict::Fail,
                format!("refused by the API: {}", s.message()),
                "the token is revoked, expired or mistyped: ask an admin for a new one (manman token create NAME --role operator --output FILE)",
            )
        }
        Err(e) => Check::bad(
            "token",
            Verdict::Fail,
            format!("the API did not answer: {e}"),
            "look at the API's log (journalctl -u manman-api)",
        ),
    }
}

/// Prints the checks (a line each, the fix under it; or JSON) and fails when any link failed.
pub fn report(checks: &[Check], json: bool) -> Outcome {
    let failed = checks.iter().filter(|c| c.verdict == Verdict::Fail).count();
    if json {
        let items: Vec<_> = checks
            .iter()
            .map(|c| json!({"check": c.name, "status": c.verdict.as_str(), "detail": c.detail, "fix": c.fix}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"checks": items, "ok": failed == 0}))
                .expect("json")
        );
    } else {
        for c in checks {
            println!("{:<5} {:<14} {}", c.verdict.as_str(), c.name, c.detail);
            if let Some(fix) = &c.fix {
                if c.verdict != Verdict::Ok {
                    println!("{:<20} fix: {fix}", "");
                }
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => Err(Failure::new(Exit::Failed, format!("{n} check(s) failed"))),
    }
}
