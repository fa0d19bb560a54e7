//! Readiness and liveness probes as a supervisor thread runs them (wire/probes.rs defines
//! them): console lines are matched as they are read, a TCP probe is one connect to
//! 127.0.0.1, and every probe's next moment feeds the supervisor's own poll timeout, so probes
//! need no thread of their own and cost nothing between checks.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use regex::Regex;

use super::Spec;
use crate::probes::{compile, LivenessProbe, ReadinessProbe};

/// How often a readiness port is tried while the server starts.
const PORT_RETRY: Duration = Duration::from_millis(200);
/// A readiness connect on loopback answers at once; this only bounds a filtered port.
const READY_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What the probes concluded at one look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The readiness probe succeeded: the server is up.
    Ready,
    /// The server must be stopped; the reason reads after "the server ...".
    Fail(String),
}

/// A spec's probe patterns, compiled once where the process is started: compiling a regex
/// needs more stack than a supervisor thread has (and need not be redone for each run).
#[derive(Clone, Default)]
pub struct Patterns {
    ready: Option<Regex>,
    reply: Option<Regex>,
}

impl Patterns {
    /// Spec::validate checked them; a pattern that fails here disables its probe.
    pub fn compile(spec: &Spec) -> Patterns {
        let compiled = |field, p: Option<&String>| p.and_then(|p| compile(field, p).ok());
        Patterns {
            ready: compiled(
                "readiness.console_pattern",
                spec.readiness
                    .as_ref()
                    .and_then(|r| r.console_pattern.as_ref()),
            ),
            reply: compiled(
                "liveness.reply_pattern",
                spec.liveness
                    .as_ref()
                    .and_then(|l| l.reply_pattern.as_ref()),
            ),
        }
    }
}

pub struct Probes {
    ready: Option<ReadyWatch>,
    live: Option<LiveWatch>,
}

struct ReadyWatch {
    probe: ReadinessProbe,
    pattern: Option<Regex>,
    deadline: Instant,
    next_try: Instant,
    matched: bool,
}

struct LiveWatch {
    probe: LivenessProbe,
    reply: Option<Regex>,
    next_check: Instant,
    /// A console command was sent; its reply is due by then.
    awaiting_until: Option<Instant>,
    replied: bool,
    failures: u32,
}

fn connect(port: u16, timeout: Duration) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, timeout)
        .map(drop)
        .map_err(|e| format!("127.0.0.1:{port}: {e}"))
}

impl Probes {
    /// The probes of `spec` for a run that started at `started`; `running` for a process that
    /// was up already (adopted from a previous agent): only liveness applies.
    pub fn new(spec: &Spec, patterns: &Patterns, started: Instant, running: bool) -> Probes {
        let ready = spec
            .readiness
            .clone()
            .filter(|_| !running)
            .map(|probe| ReadyWatch {
                pattern: patterns.ready.clone(),
                deadline: started + probe.timeout(),
                next_try: started,
                matched: false,
                probe,
            });
        let live = spec.liveness.clone().map(|probe| LiveWatch {
            reply: patterns.reply.clone(),
            next_check: started + probe.interval(),
            awaiting_until: None,
            replied: false,
            failures: 0,
            probe,
        });
        Probes { ready, live }
    }

    /// Whether "up" is decided by a readiness probe (instead of the start duration).
    pub fn decides_readiness(&self) -> bool {
        self.ready.is_some()
    }

    /// Every console line of the process, as it is read.
    pub fn on_line(&mut self, line: &str) {
        if let Some(r) = &mut self.ready {
            if !r.matched && r.pattern.as_ref().is_some_and(|p| p.is_match(line)) {
                r.matched = true;
            }
        }
        if let Some(l) = &mut self.live {
            if l.awaiting_until.is_some() && l.reply.as_ref().is_some_and(|p| p.is_match(line)) {
                l.replied = true;
            }
        }
    }

    /// A console command due now for the liveness probe (the caller writes it to stdin).
    pub fn due_command(&mut self, now: Instant, running: bool) -> Option<String> {
        let l = self.live.as_mut().filter(|_| running)?;
        let command = l.probe.command.clone()?;
        if l.awaiting_until.is_some() || now < l.next_check {
            return None;
        }
        l.awaiting_until = Some(now + l.probe.timeout());
        l.replied = false;
        Some(command)
    }

    /// Looks at whatever is due; `running`: the process counts as up.
    pub fn check(&mut self, now: Instant, running: bool, name: &str) -> Option<Verdict> {
        if !running {
            return self.check_readiness(now);
        }
        let l = self.live.as_mut()?;
        let outcome = match (l.awaiting_until, l.probe.tcp_port) {
            (Some(_), _) if l.replied => Ok(()),
            (Some(until), _) if now >= until => Err(format!(
                "no reply matching {:?} to {:?} within {} s",
                l.probe.reply_pattern.as_deref().unwrap_or_default(),
                l.probe.command.as_deref().unwrap_or_default(),
                l.probe.timeout_seconds
            )),
            (None, Some(port)) if now >= l.next_check => connect(port, l.probe.timeout()),
            _ => return None,
        };
        l.awaiting_until = None;
        l.next_check = now + l.probe.interval();
        match outcome {
            Ok(()) => l.failures = 0,
            Err(e) => {
                l.failures += 1;
                log::warn!(process = name;
                    "liveness probe failed ({}/{}): {e}", l.failures, l.probe.failure_threshold);
                if l.failures >= l.probe.failure_threshold {
                    return Some(Verdict::Fail(format!(
                        "failed its liveness probe {} times in a row ({e})",
                        l.failures
                    )));
                }
            }
        }
        None
    }

    fn check_readiness(&mut self, now: Instant) -> Option<Verdict> {
        let r = self.ready.as_mut()?;
        if !r.matched && now >= r.next_try {
            if let Some(port) = r.probe.tcp_port {
                r.matched = connect(port, READY_CONNECT_TIMEOUT).is_ok();
                r.next_try = now + PORT_RETRY;
            }
        }
        if r.matched {
            return Some(Verdict::Ready);
        }
        (now >= r.deadline).then(|| {
            Verdict::Fail(format!(
                "was not ready within {} s (waiting for {})",
                r.probe.timeout_seconds,
                r.probe.describe()
            ))
        })
    }

    /// When the probes next need a look (for the supervisor's poll timeout).
    pub fn next_moment(&self, running: bool) -> Option<Instant> {
        if !running {
            let r = self.ready.as_ref()?;
            return Some(match r.probe.tcp_port {
                Some(_) => r.next_try.min(r.deadline),
                None => r.deadline,
            });
        }
        let l = self.live.as_ref()?;
        Some(l.awaiting_until.unwrap_or(l.next_check))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn probes(spec: &Spec, started: Instant, running: bool) -> Probes {
        Probes::new(spec, &Patterns::compile(spec), started, running)
    }

    fn spec(ready: Option<ReadinessProbe>, live: Option<LivenessProbe>) -> Spec {
        let mut s = Spec::new("game", "/bin/game", &[]);
        s.readiness = ready;
        s.liveness = live;
        s
    }

    #[test]
    fn a_console_line_makes_it_ready_and_silence_times_out() {
        let t0 = Instant::now();
        let ready = ReadinessProbe {
            console_pattern: Some(r"^Done \(\d+".into()),
            timeout_seconds: 5,
            ..ReadinessProbe::default()
        };
        let mut p = probes(&spec(Some(ready.clone()), None), t0, false);
        assert!(p.decides_readiness());
        p.on_line("Loading world");
        assert_eq!(p.check(t0, false, "g"), None);
        assert_eq!(p.next_moment(false), Some(t0 + Duration::from_secs(5)));
        p.on_line("Done (3.2s)! For help, type \"help\"");
        assert_eq!(p.check(t0, false, "g"), Some(Verdict::Ready));

        let mut silent = probes(&spec(Some(ready), None), t0, false);
        let late = t0 + Duration::from_secs(5);
        match silent.check(late, false, "g") {
            Some(Verdict::Fail(reason)) => {
                assert!(reason.starts_with("was not ready within 5 s"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // An adopted process is up already: no readiness.
        assert!(!probes(&spec(silent.ready.map(|r| r.probe), None), t0, true).decides_readiness());
    }

    #[test]
    fn a_port_probe_succeeds_once_the_port_accepts() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let t0 = Instant::now();
        let ready = ReadinessProbe {
            tcp_port: Some(port),
            ..ReadinessProbe::default()
        };
        let mut p = probes(&spec(Some(ready), None), t0, false);
        assert_eq!(p.check(Instant::now(), false, "g"), Some(Verdict::Ready));
    }

    #[test]
    fn liveness_fails_after_the_threshold_and_a_reply_resets_it() {
        let t0 = Instant::now();
        let live = LivenessProbe {
            command: Some("list".into()),
            reply_pattern: Some("players online".into()),
            interval_seconds: 10,
            timeout_seconds: 2,
            failure_threshold: 2,
            ..LivenessProbe::default()
        };
        let mut p = probes(&spec(None, Some(live)), t0, true);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(p.due_command(at(5), true), None);
        assert_eq!(p.due_command(at(10), true).as_deref(), Some("list"));
        assert_eq!(p.due_command(at(11), true), None, "one command at a time");
        assert_eq!(p.check(at(11), true, "g"), None);
        assert_eq!(p.check(at(12), true, "g"), None, "first failure only");
        // Answered the next time: the count starts again.
        assert_eq!(p.due_command(at(22), true).as_deref(), Some("list"));
        p.on_line("There are 0 of a max of 20 players online");
        assert_eq!(p.check(at(22), true, "g"), None);
        assert_eq!(p.live.as_ref().unwrap().failures, 0);
        assert!(p.due_command(at(32), true).is_some());
        assert_eq!(p.check(at(34), true, "g"), None);
        assert!(p.due_command(at(44), true).is_some());
        match p.check(at(46), true, "g") {
            Some(Verdict::Fail(reason)) => assert!(
                reason.starts_with("failed its liveness probe 2 times in a row (no reply matching"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
    }
}
