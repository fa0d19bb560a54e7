//! `manman doctor`: checks the chain from this terminal to the control plane one link at a
//! time (config, CA, API address, its certificate, the token, the log processor) and says
//! what to fix, so an operator does not decode each command's own failure.

use std::time::Duration;

use super::shared::{Exit, Failure, Outcome};
use crate::config::Env;
use crate::diagnosis::{is_loopback, reach, read_ca, report_all, Ca, Check, Verdict};
use crate::grpc::Endpoint;
use crate::proto::v1 as pb;

/// Where the CLI would connect, as `run` resolved it.
pub struct Target<'a> {
    pub env: &'a Env,
    pub context: Option<&'a str>,
    pub config_file: &'a str,
    pub api: &'a str,
    pub log_processor: &'a str,
}

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

/// Prints the checks and fails (exit 1) when any link failed.
pub fn report(checks: &[Check], json: bool) -> Outcome {
    match report_all(checks, json) {
        0 => Ok(()),
        n => Err(Failure::new(Exit::Failed, format!("{n} check(s) failed"))),
    }
}
