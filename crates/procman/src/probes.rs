//! Readiness and liveness probes of a game config: when a starting server counts as up, and
//! when a running one has stopped answering. The API validates them with the config; the host
//! agent's supervisor runs them (procman/probe.rs).

use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::game_process::{field as error, FieldError};

/// The server is up when a console line (stdout or stderr) matches `console_pattern`, or when
/// `tcp_port` on 127.0.0.1 accepts a connection; not up within `timeout_seconds` of the start
/// → the run fails with that reason (the restart policy decides what follows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReadinessProbe {
    pub console_pattern: Option<String>,
    pub tcp_port: Option<u16>,
    pub timeout_seconds: u32,
}

impl Default for ReadinessProbe {
    fn default() -> Self {
        ReadinessProbe {
            console_pattern: None,
            tcp_port: None,
            timeout_seconds: 120,
        }
    }
}

/// Every `interval_seconds` once the server is up: `tcp_port` on 127.0.0.1 must accept a
/// connection, or `command` written to the console must be answered by a line matching
/// `reply_pattern`, within `timeout_seconds`. After `failure_threshold` failures in a row the
/// server is stopped (its stop signal, SIGKILL at the stop timeout) and the run counts as a
/// failure with the probe's reason: the restart policy restarts it or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LivenessProbe {
    pub tcp_port: Option<u16>,
    pub command: Option<String>,
    pub reply_pattern: Option<String>,
    pub interval_seconds: u32,
    pub timeout_seconds: u32,
    pub failure_threshold: u32,
}

impl Default for LivenessProbe {
    fn default() -> Self {
        LivenessProbe {
            tcp_port: None,
            command: None,
            reply_pattern: None,
            interval_seconds: 30,
            timeout_seconds: 5,
            failure_threshold: 3,
        }
    }
}

/// The longest any probe timeout or interval may be.
pub const MAX_PROBE_SECONDS: u32 = 3600;

fn seconds(field: &'static str, value: u32) -> Result<(), FieldError> {
    if value == 0 || value > MAX_PROBE_SECONDS {
        return Err(error(
            field,
            format!("must be 1 to {MAX_PROBE_SECONDS} seconds"),
        ));
    }
    Ok(())
}

/// Compiles a probe's pattern; the error names the field.
pub fn compile(field: &'static str, pattern: &str) -> Result<Regex, FieldError> {
    if pattern.is_empty() {
        return Err(error(field, "must not be empty"));
    }
    Regex::new(pattern).map_err(|e| error(field, format!("is not a valid regex: {e}")))
}

fn port(field: &'static str, port: Option<u16>) -> Result<(), FieldError> {
    if port == Some(0) {
        return Err(error(field, "must be 1 to 65535"));
    }
    Ok(())
}

impl ReadinessProbe {
    pub fn validate(&self) -> Result<(), FieldError> {
        match (&self.console_pattern, self.tcp_port) {
            (Some(p), None) => {
                compile("readiness.console_pattern", p)?;
            }
            (None, Some(_)) => port("readiness.tcp_port", self.tcp_port)?,
            _ => {
                return Err(error(
                    "readiness",
                    "needs exactly one of console_pattern and tcp_port",
                ))
            }
        }
        seconds("readiness.timeout_seconds", self.timeout_seconds)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds.into())
    }

    /// What it waits for, in words: `console line matching "Done \("`, `127.0.0.1:25565 accepting`.
    pub fn describe(&self) -> String {
        match (&self.console_pattern, self.tcp_port) {
            (Some(p), _) => format!("a console line matching {p:?}"),
            (_, Some(port)) => format!("127.0.0.1:{port} accepting connections"),
            _ => "nothing".into(),
        }
    }
}

impl LivenessProbe {
    pub fn validate(&self) -> Result<(), FieldError> {
        match (self.tcp_port, &self.command, &self.reply_pattern) {
            (Some(_), None, None) => port("liveness.tcp_port", self.tcp_port)?,
            (None, Some(command), Some(reply)) => {
                if command.trim().is_empty() || command.contains(['\n', '\r', '\0']) {
                    return Err(error("liveness.command", "must be one non-empty line"));
                }
                compile("liveness.reply_pattern", reply)?;
            }
            (None, Some(_), None) => {
                return Err(error(
                    "liveness.reply_pattern",
                    "is required with a command",
                ))
            }
            _ => {
                return Err(error(
                    "liveness",
                    "needs exactly one of tcp_port and command (with reply_pattern)",
                ))
            }
        }
        seconds("liveness.interval_seconds", self.interval_seconds)?;
        seconds("liveness.timeout_seconds", self.timeout_seconds)?;
        if self.failure_threshold == 0 || self.failure_threshold > 100 {
            return Err(error("liveness.failure_threshold", "must be 1 to 100"));
        }
        Ok(())
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_seconds.into())
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_needs_exactly_one_check_and_sane_numbers() {
        let ready = ReadinessProbe {
            console_pattern: Some(r"Done \(".into()),
            ..ReadinessProbe::default()
        };
        ready.validate().unwrap();
        let cases = [
            (ReadinessProbe::default(), "readiness"),
            (
                ReadinessProbe {
                    tcp_port: Some(25565),
                    ..ready.clone()
                },
                "readiness",
            ),
            (
                ReadinessProbe {
                    console_pattern: Some("Done (".into()),
                    ..ReadinessProbe::default()
                },
                "readiness.console_pattern",
            ),
            (
                ReadinessProbe {
                    timeout_seconds: 0,
                    ..ready.clone()
                },
                "readiness.timeout_seconds",
            ),
        ];
        for (probe, field) in cases {
            assert_eq!(probe.validate().unwrap_err().field, field, "{probe:?}");
        }

        let live = LivenessProbe {
            command: Some("list".into()),
            reply_pattern: Some("players online".into()),
            ..LivenessProbe::default()
        };
        live.validate().unwrap();
        let cases = [
            (LivenessProbe::default(), "liveness"),
            (
                LivenessProbe {
                    reply_pattern: None,
                    ..live.clone()
                },
                "liveness.reply_pattern",
            ),
            (
                LivenessProbe {
                    command: Some("a\nb".into()),
                    ..live.clone()
                },
                "liveness.command",
            ),
            (
                LivenessProbe {
                    failure_threshold: 0,
                    ..live.clone()
                },
                "liveness.failure_threshold",
            ),
            (
                LivenessProbe {
                    tcp_port: Some(0),
                    command: None,
                    reply_pattern: None,
                    ..LivenessProbe::default()
                },
                "liveness.tcp_port",
            ),
        ];
        for (probe, field) in cases {
            assert_eq!(probe.validate().unwrap_err().field, field, "{probe:?}");
        }
    }
}
