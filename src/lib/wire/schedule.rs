//! Schedules on the wire: a schedule's steps (the one validation, used by the API before
//! storing them and again before running them) and when it fires next, a pure function of its
//! cron expression, its time zone and the clock, DST included.

use std::str::FromStr;

use chrono::{DateTime, SubsecRound, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};

/// Steps a schedule may have.
pub const MAX_STEPS: usize = 32;
/// The longest wait between two steps.
pub const MAX_WAIT_SECONDS: u32 = 24 * 3600;

/// What one step does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum StepAction {
    /// A console line to the running game.
    Command {
        command: String,
    },
    /// Stop the live session the usual way and start the deployment again.
    Restart,
    Stop,
    Start,
    /// A backup of the deployment (waits until it ends).
    Backup,
    /// Waits before the next step.
    Wait {
        seconds: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    #[serde(flatten)]
    pub action: StepAction,
    /// A failure of this step does not end the run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continue_on_failure: bool,
    /// A restart or stop that waits for the players (as `session restart --when-empty`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_empty: Option<WhenEmpty>,
}

/// Maintenance that waits for the players, as a step: act once the count is 0, or at the
/// deadline, warning at the marks (checked by the API as `--when-empty` is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhenEmpty {
    pub deadline_seconds: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_command: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warn_at_seconds: Vec<i32>,
}

impl Step {
    /// `command:say hi`, `wait:540`, `restart`, `stop`, `start`, `backup`.
    pub fn describe(&self) -> String {
        if let Some(w) = &self.when_empty {
            return format!(
                "{} when empty (deadline {} s)",
                kind(&self.action),
                w.deadline_seconds
            );
        }
        match &self.action {
            StepAction::Command { command } => format!("command {command:?}"),
            StepAction::Wait { seconds } => format!("wait {seconds} s"),
            other => kind(other).to_string(),
        }
    }
}

pub fn kind(action: &StepAction) -> &'static str {
    match action {
        StepAction::Command { .. } => "command",
        StepAction::Restart => "restart",
        StepAction::Stop => "stop",
        StepAction::Start => "start",
        StepAction::Backup => "backup",
        StepAction::Wait { .. } => "wait",
    }
}

/// Checks a schedule's steps: 1 to [`MAX_STEPS`], commands one line, waits within a day, and
/// not only waits.
pub fn validate_steps(steps: &[Step]) -> Result<(), String> {
    if steps.is_empty() || steps.len() > MAX_STEPS {
        return Err(format!("a schedule has 1 to {MAX_STEPS} steps"));
    }
    for (i, step) in steps.iter().enumerate() {
        match &step.action {
            StepAction::Command { command } => {
                if command.trim().is_empty() || command.len() > 1000 {
                    return Err(format!("step {}: a command is 1 to 1000 bytes", i + 1));
                }
                if let Some(c) = command.chars().find(|c| c.is_control()) {
                    return Err(format!(
                        "step {}: a command is one line without control characters (found U+{:04X})",
                        i + 1,
                        c as u32
                    ));
                }
            }
            StepAction::Wait { seconds } if !(1..=MAX_WAIT_SECONDS).contains(seconds) => {
                return Err(format!(
                    "step {}: a wait is 1 s to {} h",
                    i + 1,
                    MAX_WAIT_SECONDS / 3600
                ));
            }
            _ => {}
        }
        if step.when_empty.is_some()
            && !matches!(step.action, StepAction::Restart | StepAction::Stop)
        {
            return Err(format!(
                "step {}: only a restart or a stop waits for the players",
                i + 1
            ));
        }
    }
    if steps
        .iter()
        .all(|s| matches!(s.action, StepAction::Wait { .. }))
    {
        return Err("a schedule that only waits does nothing".into());
    }
    Ok(())
}

/// A cron expression (five fields: minute hour day-of-month month day-of-week, or `@daily`
/// and friends) in a time zone (an IANA name, `UTC` by default).
#[derive(Debug, Clone)]
pub struct When {
    cron: Cron,
    zone: Tz,
}

impl When {
    pub fn parse(cron: &str, timezone: &str) -> Result<When, String> {
        if cron.split_whitespace().count() > 5 {
            return Err(format!(
                "cron {cron:?}: five fields (minute hour day month weekday), no seconds"
            ));
        }
        let parsed = Cron::from_str(cron).map_err(|e| format!("cron {cron:?}: {e}"))?;
        let zone = Tz::from_str(timezone).map_err(|_| {
            format!("unknown time zone {timezone:?} (an IANA name such as Europe/Berlin)")
        })?;
        Ok(When { cron: parsed, zone })
    }

    /// The first time strictly after `after` it fires, in real time: a time the spring-forward
    /// gap skips fires once just after it, a time the fall-back overlap repeats fires once.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Whole seconds: croner keeps the fraction it is given, and a firing is on the minute.
        let local = after.trunc_subsecs(0).with_timezone(&self.zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    /// Every firing from `from` until `until`.
    fn firings(when: &When, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = from;
        while let Some(next) = when.next_after(t).filter(|n| *n < until) {
            out.push(next);
            t = next;
        }
        out
    }

    #[test]
    fn a_0230_job_on_the_spring_forward_day_runs_once() {
        // Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
        let when = When::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let day = firings(&when, utc(2026, 3, 28, 12, 0), utc(2026, 3, 29, 12, 0));
        assert_eq!(day.len(), 1, "{day:?}");
        // Just after the gap: 03:00 CEST is 01:00 UTC.
        assert_eq!(day[0], utc(2026, 3, 29, 1, 0));
        // The next day it is 02:30 CEST again.
        assert_eq!(when.next_after(day[0]), Some(utc(2026, 3, 30, 0, 30)));
    }

    #[test]
    fn a_0230_job_on_the_fall_back_day_runs_once() {
        // Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
        let when = When::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let day = firings(&when, utc(2026, 10, 24, 12, 0), utc(2026, 10, 25, 12, 0));
        assert_eq!(day, vec![utc(2026, 10, 25, 0, 30)], "the first 02:30 only");
    }

    #[test]
    fn an_hourly_job_fires_each_real_hour_of_the_spring_forward_day() {
        let when = When::parse("0 * * * *", "Europe/Berlin").unwrap();
        // 24 real hours around the change: 24 firings (the wall clock shows 23 hours).
        let fired = firings(&when, utc(2026, 3, 28, 22, 30), utc(2026, 3, 29, 22, 30));
        assert_eq!(fired.len(), 24, "{fired:?}");
    }

    #[test]
    fn an_hourly_job_fires_the_repeated_hour_of_the_fall_back_day_once() {
        // croner 3.0.1 (the released one) runs the repeated 02:00 once, as a fixed-time job;
        // its fix for wildcard hours (upstream 7dd71c1) is not released yet. When an upgrade
        // brings it, this becomes 24 and the README's schedules section says so.
        let when = When::parse("0 * * * *", "Europe/Berlin").unwrap();
        let fired = firings(&when, utc(2026, 10, 24, 21, 30), utc(2026, 10, 25, 21, 30));
        assert_eq!(fired.len(), 23, "{fired:?}");
        assert!(
            !fired.contains(&utc(2026, 10, 25, 1, 0)),
            "the second 02:00"
        );
    }

    #[test]
    fn utc_is_the_default_and_bad_expressions_are_named() {
        let when = When::parse("0 4 * * *", "UTC").unwrap();
        let late = utc(2026, 12, 5, 4, 0) + chrono::TimeDelta::milliseconds(1_250);
        assert_eq!(
            when.next_after(late),
            Some(utc(2026, 12, 6, 4, 0)),
            "on the minute"
        );
        assert_eq!(
            when.next_after(utc(2026, 12, 5, 4, 0)),
            Some(utc(2026, 12, 6, 4, 0))
        );
        assert!(When::parse("0 4 * *", "UTC").unwrap_err().contains("cron"));
        assert!(When::parse("0 0 4 * * *", "UTC")
            .unwrap_err()
            .contains("no seconds"));
        assert!(When::parse("0 4 * * *", "Mars/Olympus")
            .unwrap_err()
            .contains("time zone"));
    }

    #[test]
    fn steps_are_checked() {
        let step = |action| Step {
            action,
            continue_on_failure: false,
            when_empty: None,
        };
        assert!(validate_steps(&[step(StepAction::Restart)]).is_ok());
        assert!(validate_steps(&[]).is_err());
        assert!(validate_steps(&[step(StepAction::Wait { seconds: 60 })]).is_err());
        assert!(validate_steps(&[
            step(StepAction::Wait { seconds: 0 }),
            step(StepAction::Stop)
        ])
        .is_err());
        assert!(validate_steps(&[step(StepAction::Command {
            command: "say a\nstop".into()
        })])
        .is_err());
        let json = serde_json::to_value(step(StepAction::Command {
            command: "say hi".into(),
        }))
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"action": "command", "command": "say hi"})
        );
    }
}
