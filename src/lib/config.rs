//! Typed configuration from environment variables, with one clear error line naming the variable.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

/// A bad or missing configuration value; its message names the variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("configuration error: {var} {problem}")]
pub struct ConfigError {
    pub var: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(var: &str, problem: impl Into<String>) -> Self {
        ConfigError {
            var: var.to_string(),
            problem: problem.into(),
        }
    }
}

/// Where configuration is read from: the process environment, or a fixed map (tests).
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn from_process() -> Self {
        Env {
            vars: std::env::vars().collect(),
        }
    }

    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Env {
            vars: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Sets `var` to `value` unless it is set already (a lower layer of settings: the CLI's
    /// context under the environment).
    pub fn set_default(&mut self, var: &str, value: &str) {
        if self.get(var).is_none() {
            self.vars.insert(var.to_string(), value.to_string());
        }
    }

    /// The value of `var`, treating an empty value as unset.
    pub fn get(&self, var: &str) -> Option<&str> {
        self.vars
            .get(var)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub fn string(&self, var: &str, default: &str) -> String {
        self.get(var).unwrap_or(default).to_string()
    }

    pub fn parse<T>(&self, var: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e| ConfigError::new(var, format!("has invalid value {raw:?}: {e}"))),
        }
    }

    /// A strictly positive number of seconds.
    pub fn seconds(&self, var: &str, default_secs: u64) -> Result<Duration, ConfigError> {
        let secs: u64 = self.parse(var, default_secs)?;
        if secs == 0 {
            return Err(ConfigError::new(var, "must be at least 1 second"));
        }
        Ok(Duration::from_secs(secs))
    }

    pub fn port(&self, var: &str, default: u16) -> Result<u16, ConfigError> {
        let port: u16 = self.parse(var, default)?;
        if port == 0 {
            return Err(ConfigError::new(var, "must be a port between 1 and 65535"));
        }
        Ok(port)
    }

    pub fn flag(&self, var: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(var).map(|v| v.to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => Ok(true),
            Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => Ok(false),
            Some(v) => Err(ConfigError::new(
                var,
                format!("has invalid value {v:?}: expected true or false"),
            )),
        }
    }
}

pub const DEFAULT_RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/manman";

/// `RABBITMQ_URL`, checked for an amqp scheme. The vhost inside it isolates environments.
/// This machine's name (a default for names that must differ between machines).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// `RABBITMQ_URL`: one broker URL, or a cluster's nodes as several, comma-separated, tried in
/// order at each (re)connect.
pub fn rabbitmq_url(env: &Env) -> Result<String, ConfigError> {
    let url = env.string("RABBITMQ_URL", DEFAULT_RABBITMQ_URL);
    let nodes = url_list(&url);
    if nodes.is_empty()
        || nodes
            .iter()
            .any(|u| !u.starts_with("amqp://") && !u.starts_with("amqps://"))
    {
        return Err(ConfigError::new(
            "RABBITMQ_URL",
            "must be amqp:// or amqps:// (TLS) URLs, several separated by commas",
        ));
    }
    Ok(url)
}

/// The database to use: `DATABASE_URL`, else one built from `DB_HOST` `DB_PORT` `DB_USER`
/// `DB_PASSWORD` `DB_NAME` when any of them is set.
pub fn database_config(env: &Env) -> Result<postgres::Config, ConfigError> {
    let parts = ["DB_HOST", "DB_PORT", "DB_USER", "DB_PASSWORD", "DB_NAME"];
    if env.get("DATABASE_URL").is_none() && parts.iter().any(|p| env.get(p).is_some()) {
        let mut config = postgres::Config::new();
        config
            .host(&env.string("DB_HOST", "127.0.0.1"))
            .port(env.port("DB_PORT", 5432)?)
            .user(&env.string("DB_USER", "postgres"))
            .dbname(&env.string("DB_NAME", "manman"));
        if let Some(password) = env.get("DB_PASSWORD") {
            config.password(password);
        }
        return Ok(config);
    }
    parse_database_url(
        "DATABASE_URL",
        &env.string("DATABASE_URL", DEFAULT_DATABASE_URL),
    )
}

/// A database for reads only when `var` names one (`STATUS_DATABASE_URL`: a streaming
/// replica), else the one [`database_config`] gives.
pub fn read_database_config(env: &Env, var: &str) -> Result<postgres::Config, ConfigError> {
    match env.get(var) {
        Some(url) => parse_database_url(var, url),
        None => database_config(env),
    }
}

/// Parses a PostgreSQL URL from `var`; several hosts (`postgres://a:5432,b:5432/manman`) are
/// tried in order, and `target_session_attrs=read-write` passes over a standby.
fn parse_database_url(var: &str, url: &str) -> Result<postgres::Config, ConfigError> {
    // libpq's `verify-full` is what `require` does here (see db::tls_for); the parser knows
    // only disable, prefer and require.
    let url = url.replace("sslmode=verify-full", "sslmode=require");
    if url.contains("sslmode=verify-ca") {
        return Err(ConfigError::new(
            var,
            "sslmode=verify-ca is not supported: use sslmode=require (verifies the certificate \
             and the host name, as verify-full)",
        ));
    }
    url.parse::<postgres::Config>().map_err(|e| {
        // The parser's message never includes the password, but the URL might: do not echo it.
        ConfigError::new(var, format!("is not a valid PostgreSQL URL: {e}"))
    })
}

/// The URLs of a list such as a broker cluster's nodes (`amqp://a/vh,amqp://b/vh`): split only
/// where a comma starts the next URL (`,amqp://`, `,amqps://`), so a comma inside a password
/// never cuts it in two (nor shows half of it in a log line).
pub fn url_list(urls: &str) -> Vec<&str> {
    let starts_url = |s: &str| {
        let s = s.trim_start();
        s.starts_with("amqp://") || s.starts_with("amqps://")
    };
    let mut out = Vec::new();
    let mut start = 0;
    for (i, _) in urls.match_indices(',') {
        if starts_url(&urls[i + 1..]) {
            out.push(urls[start..i].trim());
            start = i + 1;
        }
    }
    out.push(urls[start..].trim());
    out.retain(|u| !u.is_empty());
    out
}

/// A URL (or a list of them, see [`url_list`]) with each password replaced, fit for a log
/// line.
pub fn redact_url(url: &str) -> String {
    let nodes = url_list(url);
    if nodes.len() > 1 {
        return nodes
            .iter()
            .map(|u| redact_one_url(u))
            .collect::<Vec<_>>()
            .join(",");
    }
    redact_one_url(url)
}

/// A URL with its password replaced, fit for a log line. The userinfo ends at the last `@`
/// (a password may hold `/`, `@` or `:` unencoded; a host never holds `@`), and everything
/// after the user name's `:` is hidden.
fn redact_one_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    format!("{}://{}:***@{}", &url[..scheme_end], user, &rest[at + 1..])
                }
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

/// Set to `true` to let a daemon listen on a network address without TLS (or, for health
/// ports, at all): a loud, explicit opt-out, warned about at start.
pub const ALLOW_INSECURE_NETWORK: &str = "MANMAN_ALLOW_INSECURE_NETWORK";

/// A listen address from `{bind_var}` (an IP address; default loopback) and `{port_var}`.
pub fn listen_address(
    env: &Env,
    bind_var: &str,
    port_var: &str,
    default_port: u16,
) -> Result<String, ConfigError> {
    let bind = env.string(bind_var, "127.0.0.1");
    let ip: std::net::IpAddr = bind.parse().map_err(|_| {
        ConfigError::new(
            bind_var,
            format!(
                "has invalid value {bind:?}: expected an IP address such as 127.0.0.1 or 0.0.0.0"
            ),
        )
    })?;
    let port = env.port(port_var, default_port)?;
    Ok(std::net::SocketAddr::new(ip, port).to_string())
}

/// The health server's address (`HEALTH_BIND`, `HEALTH_PORT`): `/healthz`, `/readyz` and
/// `/metrics` have no authentication, so a network address needs the opt-out.
pub fn health_address(env: &Env, default_port: u16) -> Result<String, ConfigError> {
    let listen = listen_address(env, "HEALTH_BIND", "HEALTH_PORT", default_port)?;
    check_exposure(env, "HEALTH_BIND", &listen, false, "the health server")?;
    Ok(listen)
}

/// Whether `listen` (`ip:port`) is reachable only from this machine.
pub fn is_loopback(listen: &str) -> bool {
    listen
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip().is_loopback())
        .unwrap_or(false)
}

/// Refuses a network-reachable `listen` that is not `secured` (TLS and authentication), unless
/// [`ALLOW_INSECURE_NETWORK`] is set; then warns at every start.
pub fn check_exposure(
    env: &Env,
    bind_var: &str,
    listen: &str,
    secured: bool,
    what: &str,
) -> Result<(), ConfigError> {
    if secured || is_loopback(listen) {
        return Ok(());
    }
    if env.flag(ALLOW_INSECURE_NETWORK, false)? {
        log::warn!(
            "{what} listens on {listen} without TLS and authentication because \
             {ALLOW_INSECURE_NETWORK} is set: anyone who reaches it can use it"
        );
        return Ok(());
    }
    Err(ConfigError::new(
        bind_var,
        format!(
            "is {listen}, reachable from the network, but {what} has no TLS there; configure \
             TLS, bind to 127.0.0.1, or set {ALLOW_INSECURE_NETWORK}=true"
        ),
    ))
}

/// A short description of where a database config points, without credentials.
pub fn describe_database(config: &postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{}:{}/{}",
        config.get_user().unwrap_or("?"),
        host,
        port,
        config.get_dbname().unwrap_or("?")
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_broker_list_splits_between_urls_never_inside_a_password() {
        use super::{redact_url, url_list};
        let two = "amqp://a:p,w@n1:5672/vh, amqps://b:q@n2/vh";
        assert_eq!(
            url_list(two),
            ["amqp://a:p,w@n1:5672/vh", "amqps://b:q@n2/vh"]
        );
        assert_eq!(
            redact_url(two),
            "amqp://a:***@n1:5672/vh,amqps://b:***@n2/vh"
        );
        assert_eq!(url_list("amqp://guest:guest@h/"), ["amqp://guest:guest@h/"]);
        assert!(url_list(" , ").len() == 1 && url_list("").is_empty());
    }

    use super::*;

    #[test]
    fn bad_number_names_the_variable() {
        let env = Env::from_pairs(&[("STALE_HOST_THRESHOLD_SECONDS", "ten")]);
        let err = env.seconds("STALE_HOST_THRESHOLD_SECONDS", 10).unwrap_err();
        assert_eq!(err.var, "STALE_HOST_THRESHOLD_SECONDS");
        assert!(err.to_string().contains("STALE_HOST_THRESHOLD_SECONDS"));
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn zero_seconds_is_refused_and_empty_means_default() {
        let env = Env::from_pairs(&[("A", "0"), ("B", "  ")]);
        assert!(env.seconds("A", 5).is_err());
        assert_eq!(env.seconds("B", 5).unwrap(), Duration::from_secs(5));
    }

    #[test]
    fn flags_accept_common_spellings() {
        let env = Env::from_pairs(&[("X", "TRUE"), ("Y", "off"), ("Z", "maybe")]);
        assert!(env.flag("X", false).unwrap());
        assert!(!env.flag("Y", true).unwrap());
        assert_eq!(env.flag("Z", true).unwrap_err().var, "Z");
    }

    #[test]
    fn rabbitmq_url_must_be_amqp() {
        let env = Env::from_pairs(&[("RABBITMQ_URL", "http://x")]);
        assert_eq!(rabbitmq_url(&env).unwrap_err().var, "RABBITMQ_URL");
        assert_eq!(
            rabbitmq_url(&Env::from_pairs(&[])).unwrap(),
            DEFAULT_RABBITMQ_URL
        );
    }

    #[test]
    fn database_from_parts_or_url() {
        let env = Env::from_pairs(&[("DB_HOST", "db.example"), ("DB_PASSWORD", "s3cret")]);
        let config = database_config(&env).unwrap();
        assert_eq!(
            describe_database(&config),
            "postgres@db.example:5432/manman"
        );
        let env = Env::from_pairs(&[("DATABASE_URL", "not a url at all ===")]);
        assert_eq!(database_config(&env).unwrap_err().var, "DATABASE_URL");
        let env = Env::from_pairs(&[("DB_PORT", "99999")]);
        assert_eq!(database_config(&env).unwrap_err().var, "DB_PORT");
    }

    #[test]
    fn redaction_hides_passwords_only() {
        assert_eq!(
            redact_url("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(redact_url("amqp://host/"), "amqp://host/");
        assert!(!redact_url("postgres://u:p@ss@h/db").contains("p@ss"));
        // A `/` (or `:`) in the password used to end the userinfo early and leak it all.
        assert_eq!(
            redact_url("amqp://manman:pa/ss:w@rd@broker:5671/prod"),
            "amqp://manman:***@broker:5671/prod"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn listeners_are_loopback_unless_opened_explicitly() {
        let env = Env::from_pairs(&[]);
        let listen = listen_address(&env, "GRPC_BIND", "GRPC_PORT", 50051).unwrap();
        assert_eq!(listen, "127.0.0.1:50051");
        assert!(check_exposure(&env, "GRPC_BIND", &listen, false, "the API").is_ok());

        let env = Env::from_pairs(&[("GRPC_BIND", "0.0.0.0")]);
        let listen = listen_address(&env, "GRPC_BIND", "GRPC_PORT", 50051).unwrap();
        let err = check_exposure(&env, "GRPC_BIND", &listen, false, "the API").unwrap_err();
        assert_eq!(err.var, "GRPC_BIND");
        assert!(err.to_string().contains(ALLOW_INSECURE_NETWORK), "{err}");
        assert!(check_exposure(&env, "GRPC_BIND", &listen, true, "the API").is_ok());

        let env = Env::from_pairs(&[("GRPC_BIND", "::"), (ALLOW_INSECURE_NETWORK, "true")]);
        let listen = listen_address(&env, "GRPC_BIND", "GRPC_PORT", 50051).unwrap();
        assert_eq!(listen, "[::]:50051");
        assert!(check_exposure(&env, "GRPC_BIND", &listen, false, "the API").is_ok());

        let env = Env::from_pairs(&[("GRPC_BIND", "example.com")]);
        assert_eq!(
            listen_address(&env, "GRPC_BIND", "GRPC_PORT", 1)
                .unwrap_err()
                .var,
            "GRPC_BIND"
        );
    }
}
