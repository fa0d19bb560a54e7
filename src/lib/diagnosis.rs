//! Checks that say what is wrong and how to fix it, one link of a chain at a time: the
//! types, the network reachability check and the report that `manman doctor` and
//! `manman-host --check` share.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
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
    pub fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            verdict: Verdict::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    pub fn bad(
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

/// How long a TCP connect or TLS handshake may take before the link counts as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub fn is_loopback(address: &str) -> bool {
    let host = host_of(address);
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

fn host_of(address: &str) -> &str {
    address.rsplit_once(':').map_or(address, |(h, _)| h)
}

/// The CA file's PEM (for gRPC) and the certificate it holds (for the handshake check).
pub struct Ca {
    pub pem: Vec<u8>,
    pub cert: native_tls::Certificate,
}

pub fn read_ca(path: &str) -> Result<Ca, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    Ca::from_pem(pem).map_err(|e| format!("{path} {e}"))
}

impl Ca {
    /// A CA already read (an `Endpoint`'s `tls_ca`).
    pub fn from_pem(pem: Vec<u8>) -> Result<Ca, String> {
        let cert = native_tls::Certificate::from_pem(&pem)
            .map_err(|e| format!("is not a PEM certificate: {e}"))?;
        Ok(Ca { pem, cert })
    }
}

/// TCP to `address`, then (with a CA) a TLS handshake that checks the certificate against the
/// CA and the address's host name. Pushes one check; `true` when the link holds.
pub fn reach(
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

/// Prints the checks (a line each, the fix under it; or JSON); returns how many failed.
pub fn report_all(checks: &[Check], json: bool) -> usize {
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
    failed
}
