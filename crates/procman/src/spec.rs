//! What to run and how to supervise it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::game_process::{parse_signal, RestartPolicy, StopPlan};
use crate::probes::{LivenessProbe, ReadinessProbe};
use manman_base::retry::Backoff;
use manman_cgroup::{Cgroup, Limits};
pub use manman_child::{Launch, RunAs, PASSED_THROUGH_ENV};

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// A process to supervise. `program` is executed directly with `args` (no shell); to use a
/// shell, say so: `program: "/bin/sh", args: ["-c", "..."]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub name: String,
    pub program: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Added to the manager's global environment (which is added to the manager's own).
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Whether the process inherits the manager's whole environment (default). When false it
    /// gets only [`PASSED_THROUGH_ENV`] from it, then the global and its own env: a game
    /// server never sees the agent's credentials.
    #[serde(default = "yes")]
    pub inherit_env: bool,
    #[serde(default)]
    pub working_dir: Option<PathBuf>,
    /// For `start_n`: how many instances (`name-1..name-N`).
    #[serde(default = "one")]
    pub instances: u32,
    pub restart: RestartPolicy,
    #[serde(with = "millis")]
    pub backoff_initial: Duration,
    #[serde(with = "millis")]
    pub backoff_max: Duration,
    pub backoff_multiplier: f64,
    /// Consecutive failed runs tolerated before giving up (`Failed`).
    pub retry_limit: u32,
    /// How long a process must stay up to count as started (supervisord's `startsecs`).
    /// An exit sooner, even with code 0, is a failed start.
    #[serde(with = "millis")]
    pub start_duration: Duration,
    /// A run lasting this long resets the count of consecutive failures.
    #[serde(with = "millis", default = "ten_minutes")]
    pub reset_after: Duration,
    /// Signal number sent to the process group to stop it (default SIGTERM).
    pub stop_signal: i32,
    /// Written to stdin (with a newline) to ask the process to stop, before the signal.
    #[serde(default)]
    pub stop_input: Option<String>,
    /// From the start of a stop to SIGKILL ([`StopPlan`]: with `stop_input`, the signal comes
    /// at three quarters of it; without, at once).
    #[serde(with = "millis")]
    pub stop_timeout: Duration,
    /// When it counts as up (instead of `start_duration`); see probe.rs.
    #[serde(default)]
    pub readiness: Option<ReadinessProbe>,
    /// Whether it still answers once up; failing stops it as a failed run.
    #[serde(default)]
    pub liveness: Option<LivenessProbe>,
    /// The user and group it runs as (None: ours).
    #[serde(default)]
    pub run_as: Option<RunAs>,
    /// Runs with `no_new_privs` and none of our ambient capabilities (game servers do).
    #[serde(default)]
    pub no_new_privs: bool,
    /// RLIMIT_NOFILE and RLIMIT_NPROC (soft and hard), when set.
    #[serde(default)]
    pub max_open_files: Option<u64>,
    #[serde(default)]
    pub max_processes: Option<u64>,
    /// The cgroup each run starts in (created, and given `limits`, before each launch), so
    /// the game and all it starts are limited, counted and killed together.
    #[serde(default)]
    pub cgroup: Option<Cgroup>,
    #[serde(default)]
    pub limits: Limits,
    /// The caller's own notes about the process, kept with its spec (and across a restart of
    /// the manager): the agent's deployment directory and disk limit.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

fn ten_minutes() -> Duration {
    Duration::from_secs(600)
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

impl Spec {
    /// The part of the spec that matters at `exec` (what `manman_child` and the keeper run).
    pub fn launch(&self) -> Launch {
        Launch {
            program: self.program.clone(),
            args: self.args.clone(),
            env: self.env.clone(),
            inherit_env: self.inherit_env,
            working_dir: self.working_dir.clone(),
            run_as: self.run_as,
            no_new_privs: self.no_new_privs,
            max_open_files: self.max_open_files,
            max_processes: self.max_processes,
            cgroup: self.cgroup.clone(),
        }
    }

    /// A spec with sensible defaults: no restart, 1 s start duration, SIGTERM then SIGKILL
    /// after 10 s, backoff 1 s doubling to 60 s, 5 retries.
    pub fn new(name: &str, program: &str, args: &[&str]) -> Spec {
        Spec {
            name: name.to_string(),
            program: program.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            inherit_env: true,
            working_dir: None,
            instances: 1,
            restart: RestartPolicy::Never,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            backoff_multiplier: 2.0,
            retry_limit: 5,
            start_duration: Duration::from_secs(1),
            reset_after: ten_minutes(),
            stop_signal: libc::SIGTERM,
            stop_input: None,
            stop_timeout: Duration::from_secs(10),
            readiness: None,
            liveness: None,
            run_as: None,
            no_new_privs: false,
            max_open_files: None,
            max_processes: None,
            cgroup: None,
            limits: Limits::default(),
            labels: Default::default(),
        }
    }

    pub fn stop_plan(&self) -> StopPlan {
        StopPlan::new(self.stop_timeout, self.stop_input.is_some())
    }

    pub fn backoff(&self) -> Backoff {
        Backoff::new(
            self.backoff_initial,
            self.backoff_max,
            self.backoff_multiplier,
        )
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.contains(['*', '/', '\0']) {
            return Err(format!("invalid process name {:?}", self.name));
        }
        if self.program.is_empty() {
            return Err("program must not be empty".into());
        }
        if self.instances == 0 {
            return Err("instances must be at least 1".into());
        }
        parse_signal(&self.stop_signal.to_string())
            .map_err(|e| format!("invalid stop signal: {e}"))?;
        if let Some(r) = &self.readiness {
            r.validate().map_err(|e| e.to_string())?;
        }
        if let Some(l) = &self.liveness {
            l.validate().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The spec for instance `i` (1-based) of `start_n`.
    pub fn instance(&self, i: u32) -> Spec {
        Spec {
            name: format!("{}-{i}", self.name),
            instances: 1,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_and_instances() {
        let spec = Spec::new("web", "/bin/true", &[]);
        assert!(spec.validate().is_ok());
        assert_eq!(spec.instance(3).name, "web-3");
        assert!(Spec::new("a*b", "/bin/true", &[]).validate().is_err());
        assert!(Spec::new("ok", "", &[]).validate().is_err());
    }

    #[test]
    fn signals_and_policies_parse() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("int").unwrap(), libc::SIGINT);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert!(parse_signal("SIGNOPE").is_err());
        let mut bad = Spec::new("x", "/bin/true", &[]);
        bad.stop_signal = 99;
        assert!(bad.validate().is_err());
        assert_eq!(
            "on-failure".parse::<RestartPolicy>().unwrap(),
            RestartPolicy::OnFailure
        );
        assert!("sometimes".parse::<RestartPolicy>().is_err());
    }

    #[test]
    fn specs_serialise_durations_as_millis() {
        let spec = Spec::new("x", "/bin/true", &["a"]);
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["stop_timeout"], 10_000);
        assert_eq!(serde_json::from_value::<Spec>(json).unwrap(), spec);
    }

    #[test]
    fn a_spec_reads_as_its_launch_and_says_when_it_needs_a_pre_exec_hook() {
        let mut spec = Spec::new("game", "/usr/games/openttd", &["-D"]);
        spec.env = vec![("A".into(), "1".into())];
        spec.inherit_env = false;
        assert!(!spec.launch().needs_pre_exec(), "unconfined: posix_spawn");
        spec.run_as = Some(RunAs {
            uid: 61184,
            gid: 61184,
        });
        spec.no_new_privs = true;
        spec.max_open_files = Some(4096);
        let launch = spec.launch();
        assert!(launch.needs_pre_exec());
        // The keeper reads `spec.json`: a spec written whole reads as the same launch.
        let whole = serde_json::to_value(&spec).unwrap();
        assert_eq!(serde_json::from_value::<Launch>(whole).unwrap(), launch);
        let only = serde_json::to_value(&launch).unwrap();
        assert_eq!(serde_json::from_value::<Launch>(only).unwrap(), launch);
    }
}
