//! The session state machine, enforced by the processor:
//!
//! ```text
//! pending → starting → running → stopping → stopped
//!    └──────────┴──────────┴──────────┴──→ crashed | lost
//! ```
//! plus `starting → stopping` (an operator stopping a server that has not finished starting).
//! `stopped`, `crashed` and `lost` are terminal; a repeated status is a no-op.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    Pending,
    Starting,
    Running,
    Stopping,
    Stopped,
    Crashed,
    Lost,
}

/// What applying a reported status to the current one means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// A real change of state.
    Move,
    /// The same status again: nothing to do, not an error.
    Repeat,
    /// Not allowed by the state machine.
    Invalid,
}

impl SessionStatus {
    pub const ALL: [SessionStatus; 7] = [
        SessionStatus::Pending,
        SessionStatus::Starting,
        SessionStatus::Running,
        SessionStatus::Stopping,
        SessionStatus::Stopped,
        SessionStatus::Crashed,
        SessionStatus::Lost,
    ];

    /// Statuses in which a session still holds its host's resources.
    pub const LIVE: [SessionStatus; 4] = [
        SessionStatus::Pending,
        SessionStatus::Starting,
        SessionStatus::Running,
        SessionStatus::Stopping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Pending => "pending",
            SessionStatus::Starting => "starting",
            SessionStatus::Running => "running",
            SessionStatus::Stopping => "stopping",
            SessionStatus::Stopped => "stopped",
            SessionStatus::Crashed => "crashed",
            SessionStatus::Lost => "lost",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SessionStatus::Stopped | SessionStatus::Crashed | SessionStatus::Lost
        )
    }

    pub fn is_live(self) -> bool {
        !self.is_terminal()
    }

    /// Whether the state machine allows going from `self` to `next` (a repeat is not a move).
    pub fn can_move_to(self, next: SessionStatus) -> bool {
        use SessionStatus::*;
        match (self, next) {
            (from, Crashed | Lost) => from.is_live(),
            (Pending, Starting)
            | (Starting, Running)
            | (Starting, Stopping)
            | (Running, Stopping)
            | (Stopping, Stopped) => true,
            _ => false,
        }
    }

    pub fn transition_to(self, next: SessionStatus) -> Transition {
        if self == next {
            Transition::Repeat
        } else if self.can_move_to(next) {
            Transition::Move
        } else {
            Transition::Invalid
        }
    }

    /// Position along the lifecycle, used to recognise a stale redelivery (a report of a state
    /// the session has already left behind).
    pub fn lifecycle_rank(self) -> u8 {
        match self {
            SessionStatus::Pending => 0,
            SessionStatus::Starting => 1,
            SessionStatus::Running => 2,
            SessionStatus::Stopping => 3,
            SessionStatus::Stopped | SessionStatus::Crashed | SessionStatus::Lost => 4,
        }
    }

    /// The external event announcing entry into this status, for the statuses worth announcing.
    pub fn external_event(self) -> Option<&'static str> {
        match self {
            SessionStatus::Running => Some("manman.session.running"),
            SessionStatus::Stopped => Some("manman.session.stopped"),
            SessionStatus::Crashed => Some("manman.session.crashed"),
            SessionStatus::Lost => Some("manman.session.lost"),
            _ => None,
        }
    }
}

impl std::fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SessionStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SessionStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown session status {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::SessionStatus::*;
    use super::*;

    /// The full table: every (from, to) pair and whether it is allowed.
    #[test]
    fn every_pair_of_states() {
        let allowed = [
            (Pending, Starting),
            (Pending, Crashed),
            (Pending, Lost),
            (Starting, Running),
            (Starting, Stopping),
            (Starting, Crashed),
            (Starting, Lost),
            (Running, Stopping),
            (Running, Crashed),
            (Running, Lost),
            (Stopping, Stopped),
            (Stopping, Crashed),
            (Stopping, Lost),
        ];
        let mut checked = 0;
        for from in SessionStatus::ALL {
            for to in SessionStatus::ALL {
                let expected = if from == to {
                    Transition::Repeat
                } else if allowed.contains(&(from, to)) {
                    Transition::Move
                } else {
                    Transition::Invalid
                };
                assert_eq!(from.transition_to(to), expected, "{from} -> {to}");
                assert_eq!(from.can_move_to(to), expected == Transition::Move);
                checked += 1;
            }
        }
        assert_eq!(checked, 49);
    }

    #[test]
    fn terminal_states_are_final() {
        for from in [Stopped, Crashed, Lost] {
            assert!(from.is_terminal());
            for to in SessionStatus::ALL {
                assert!(!from.can_move_to(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn parse_and_serde_agree() {
        for st in SessionStatus::ALL {
            assert_eq!(st.as_str().parse::<SessionStatus>().unwrap(), st);
            assert_eq!(serde_json::to_string(&st).unwrap(), format!("\"{st}\""));
        }
        assert!("exploded".parse::<SessionStatus>().is_err());
    }

    #[test]
    fn only_some_states_are_announced() {
        let announced: Vec<_> = SessionStatus::ALL
            .into_iter()
            .filter(|s| s.external_event().is_some())
            .collect();
        assert_eq!(announced, vec![Running, Stopped, Crashed, Lost]);
    }
}
