//! When maintenance that waits for the players acts: one decision, a pure function of the
//! clock, the plan and the last player count (tested here without a game or a clock).

use chrono::{DateTime, Utc};

/// The longest a maintenance may wait for its players.
pub const MAX_WAIT_SECONDS: i64 = 7 * 24 * 3600;
/// Warning marks a maintenance may have.
pub const MAX_MARKS: usize = 16;
/// The longest warning line (after `{minutes}` is filled in).
pub const MAX_WARN_LEN: usize = 400;

/// What a waiting maintenance was asked to do and has done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub deadline: DateTime<Utc>,
    /// Seconds before the deadline to warn the players at.
    pub warn_at: Vec<i32>,
    /// Marks already warned at (or passed over for a closer one).
    pub warned: Vec<i32>,
}

/// Why the maintenance acts now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The last count said nobody is playing.
    Empty,
    /// The deadline came, with this many players (None: the count was unknown).
    Deadline(Option<i32>),
}

impl Trigger {
    pub fn describe(self) -> String {
        match self {
            Trigger::Empty => "the server was empty".into(),
            Trigger::Deadline(Some(n)) => {
                format!("the deadline passed with {n} player{}", plural(n))
            }
            Trigger::Deadline(None) => "the deadline came (player count unknown)".into(),
        }
    }
}

/// What to do at this tick.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Warn the players now: the seconds left, for the line's `{minutes}`.
    pub warn_seconds_left: Option<i64>,
    /// Marks that are due now (all recorded as warned; only the closest one is announced, so
    /// a maintenance asked for late does not send three warnings at once).
    pub newly_warned: Vec<i32>,
    pub act: Option<Trigger>,
}

/// The decision for a waiting maintenance at `now`, given the last player count (`None`:
/// unknown, which never counts as empty).
pub fn decide(now: DateTime<Utc>, plan: &Plan, players: Option<i32>) -> Decision {
    if players == Some(0) {
        return Decision {
            act: Some(Trigger::Empty),
            ..Decision::default()
        };
    }
    let left = (plan.deadline - now).num_milliseconds();
    if left <= 0 {
        return Decision {
            act: Some(Trigger::Deadline(players)),
            ..Decision::default()
        };
    }
    let newly_warned: Vec<i32> = plan
        .warn_at
        .iter()
        .copied()
        .filter(|m| i64::from(*m) * 1000 >= left && !plan.warned.contains(m))
        .collect();
    Decision {
        warn_seconds_left: (!newly_warned.is_empty()).then_some((left + 999) / 1000),
        newly_warned,
        act: None,
    }
}

/// The warning line with `{minutes}` (rounded up) and `{seconds}` filled in.
pub fn warn_line(template: &str, seconds_left: i64) -> String {
    let minutes = (seconds_left + 59) / 60;
    template
        .replace("{minutes}", &minutes.to_string())
        .replace("{seconds}", &seconds_left.to_string())
}

/// Checks a request's plan: the wait, the marks (within the wait, at most [`MAX_MARKS`]) and
/// the warning line (one line, no control characters).
pub fn validate(wait_seconds: i64, warn_command: &str, warn_at: &[i32]) -> Result<(), String> {
    if !(1..=MAX_WAIT_SECONDS).contains(&wait_seconds) {
        return Err(format!(
            "the deadline must be 1 s to {} days away",
            MAX_WAIT_SECONDS / 86_400
        ));
    }
    if warn_at.len() > MAX_MARKS {
        return Err(format!("at most {MAX_MARKS} warning marks"));
    }
    if let Some(m) = warn_at
        .iter()
        .find(|m| **m <= 0 || i64::from(**m) > wait_seconds)
    {
        return Err(format!(
            "warning mark {m} s is not within the wait of {wait_seconds} s"
        ));
    }
    if !warn_at.is_empty() && warn_command.trim().is_empty() {
        return Err("warning marks need a warning line (--warn)".into());
    }
    if let Some(c) = warn_command.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the warning must be one line without control characters (found U+{:04X})",
            c as u32
        ));
    }
    if warn_line(warn_command, MAX_WAIT_SECONDS).len() > MAX_WARN_LEN {
        return Err(format!("the warning is longer than {MAX_WARN_LEN} bytes"));
    }
    Ok(())
}

fn plural(n: i32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn plan(now: DateTime<Utc>, wait_s: i64, marks: &[i32], warned: &[i32]) -> Plan {
        Plan {
            deadline: now + Duration::seconds(wait_s),
            warn_at: marks.to_vec(),
            warned: warned.to_vec(),
        }
    }

    #[test]
    fn an_empty_server_is_acted_on_at_once_and_an_unknown_count_is_not_empty() {
        let now = Utc::now();
        let p = plan(now, 600, &[300, 60], &[]);
        assert_eq!(decide(now, &p, Some(0)).act, Some(Trigger::Empty));
        assert_eq!(decide(now, &p, None).act, None);
        assert_eq!(decide(now, &p, Some(3)).act, None);
    }

    #[test]
    fn the_deadline_acts_whatever_the_count() {
        let now = Utc::now();
        let p = plan(now, 600, &[], &[]);
        let later = now + Duration::seconds(600);
        assert_eq!(
            decide(later, &p, Some(5)).act,
            Some(Trigger::Deadline(Some(5)))
        );
        assert_eq!(decide(later, &p, None).act, Some(Trigger::Deadline(None)));
    }

    #[test]
    fn each_mark_warns_once_when_it_comes() {
        let now = Utc::now();
        let mut p = plan(now, 600, &[300, 60], &[]);
        assert_eq!(decide(now, &p, Some(2)), Decision::default());
        let at_5m = now + Duration::seconds(300);
        let d = decide(at_5m, &p, Some(2));
        assert_eq!(d.newly_warned, vec![300]);
        assert_eq!(d.warn_seconds_left, Some(300));
        p.warned.extend(d.newly_warned);
        assert_eq!(
            decide(at_5m + Duration::seconds(2), &p, Some(2)),
            Decision::default()
        );
        let d = decide(now + Duration::seconds(541), &p, Some(2));
        assert_eq!((d.newly_warned, d.warn_seconds_left), (vec![60], Some(59)));
    }

    #[test]
    fn marks_passed_already_give_one_warning_with_the_time_really_left() {
        let now = Utc::now();
        // Asked for 7 minutes with marks at 10, 5 and 1: one warning now ("7 minutes").
        let p = plan(now, 420, &[600, 300, 60], &[]);
        let d = decide(now, &p, Some(4));
        assert_eq!(d.newly_warned, vec![600]);
        assert_eq!(
            warn_line("say restart in {minutes} min", d.warn_seconds_left.unwrap()),
            "say restart in 7 min"
        );
    }

    #[test]
    fn plans_are_checked() {
        assert!(validate(1800, "say bye in {minutes}", &[600, 60]).is_ok());
        assert!(validate(0, "", &[]).is_err());
        assert!(validate(MAX_WAIT_SECONDS + 1, "", &[]).is_err());
        assert!(validate(600, "say x", &[900]).unwrap_err().contains("900"));
        assert!(validate(600, "", &[60]).unwrap_err().contains("--warn"));
        assert!(validate(600, "say a\nstop", &[60]).is_err());
        assert!(validate(600, &"x".repeat(500), &[60]).is_err());
    }
}
