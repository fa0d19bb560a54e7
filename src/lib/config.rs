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

pub fn rabbitmq_url(env: &Env) -> Result<String, ConfigError> {
    let url = env.string("RABBITMQ_URL", DEFAULT_RABBITMQ_URL);
    if !url.starts_with("amqp://") {
        return Err(ConfigError::new(
            "RABBITMQ_URL",
            "must start with amqp:// (amqps is not built in)",
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
    let url = env.string("DATABASE_URL", DEFAULT_DATABASE_URL);
    url.parse::<postgres::Config>().map_err(|e| {
        // The parser's message never includes the password, but the URL might: do not echo it.
        ConfigError::new(
            "DATABASE_URL",
            format!("is not a valid PostgreSQL URL: {e}"),
        )
    })
}

/// A URL with its password replaced, fit for a log line.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{}:***@{}", &url[..scheme_end], user, &rest[at + 1..])
        }
        None => url.to_string(),
    }
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
    }
}
