//! Convergence between this host and the database. The one rule:
//! - a game running here whose session the database does not consider live is stopped (its
//!   stop plan: console command, signal, SIGKILL);
//! - a session the database considers live on this host, that no process of ours backs, is
//!   reported `lost` (a `pending` one only once it is older than [`PENDING_GRACE`], since its
//!   start command may still be on its way).
//!
//! It runs when the agent starts (after ending processes a crashed agent left behind) and
//! every `RECONCILE_SECONDS`, so it holds after an agent restart or kill -9, a broker or
//! processor restart, an API timeout, or a host returning from an outage.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::commands::Accepted;
use super::publisher::Outbound;
use super::reporting::{status_message, Report};
use super::sessions::{process_name, session_of};
use crate::lifecycle::ShutdownSignal;
use crate::procman::{Manager, Recovered};
use crate::proto::v1 as pb;
use crate::wire::SessionStatus;

/// A `pending` session younger than this may still have its start command in flight.
pub const PENDING_GRACE: Duration = Duration::from_secs(60);

/// A session as this host knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalSession {
    pub session_id: i64,
    /// Its process is live (starting, running, stopping, or waiting to restart).
    pub live: bool,
    /// Accepted before the database was asked (so the answer can speak about it).
    pub known_to_query: bool,
}

/// A session the database considers live on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveInDatabase {
    pub session_id: i64,
    pub status: SessionStatus,
    pub age: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The game runs here but its session is over: stop it.
    Stop(i64),
    /// The session is live in the database but nothing runs it here: report it lost.
    ReportLost(i64),
    /// A finished process whose session the database has closed too: forget it.
    Forget(i64),
}

/// After the process manager has looked at what the previous agent left: sessions whose
/// games outlived it are supervised again (their keepers held them); games found running
/// without a keeper were just ended, and their sessions are reported lost. Anything else
/// stored but not running is history from a previous run and is forgotten.
pub fn settle_recovered(
    server_id: i64,
    manager: &Manager,
    recovered: Vec<Recovered>,
    out: &Outbound,
) {
    for r in recovered {
        if r.adopted {
            log::info!(process = r.name.as_str(), pid = r.pid; "re-attached to a game that outlived the previous agent");
            continue;
        }
        if let Some(session_id) = session_of(&r.name) {
            log::warn!(session_id = session_id, pid = r.pid; "session's process survived an agent crash; ended it, reporting lost");
            out.send(status_message(
                server_id,
                session_id,
                SessionStatus::Lost,
                Report {
                    reason: Some(
                        "its game outlived a crash of the host agent and was ended".into(),
                    ),
                    ..Report::default()
                },
            ));
        }
        let _ = manager.remove(&r.name);
    }
    for s in manager.status_all("session-*") {
        if !s.state.is_live() {
            let _ = manager.remove(&s.name);
        }
    }
}

/// The reconciliation rule as a pure function.
pub fn plan(local: &[LocalSession], database: &[LiveInDatabase]) -> Vec<Action> {
    let live_in_db: HashSet<i64> = database.iter().map(|s| s.session_id).collect();
    let here: HashMap<i64, &LocalSession> = local.iter().map(|l| (l.session_id, l)).collect();
    let mut actions = Vec::new();
    for l in local {
        if live_in_db.contains(&l.session_id) || !l.known_to_query {
            continue;
        }
        actions.push(if l.live {
            Action::Stop(l.session_id)
        } else {
            Action::Forget(l.session_id)
        });
    }
    for s in database {
        let pending_young = s.status == SessionStatus::Pending && s.age < PENDING_GRACE;
        if !here.contains_key(&s.session_id) && !pending_young {
            actions.push(Action::ReportLost(s.session_id));
        }
    }
    actions
}

pub struct Reconciler {
    pub server_id: i64,
    pub manager: Arc<Manager>,
    pub out: Outbound,
    pub accepted: Accepted,
    pub api: pb::ManManApiClient,
    /// This host's credential (it may list its own sessions).
    pub credential: String,
}

/// Why a reconciliation pass did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The API no longer takes this host's credential: it was revoked. The agent must stop.
    #[error(
        "the API refused this host's credential ({0}): it was revoked (`manman host revoke`); \
         to bring this host back, `manman host add NAME --reissue` and start the agent with the \
         new HOST_ENROLLMENT_SECRET"
    )]
    CredentialRevoked(String),
    #[error("cannot list this host's sessions: {0}")]
    Api(grpcio::Error),
}

impl Reconciler {
    /// The database's live sessions on this host, page by page.
    fn live_in_database(&self) -> Result<Vec<LiveInDatabase>, ReconcileError> {
        let now = chrono::Utc::now().timestamp_millis();
        let mut all = Vec::new();
        loop {
            let page = self
                .api
                .list_sessions_opt(
                    &pb::ListSessionsRequest {
                        server_id: self.server_id,
                        live_only: true,
                        limit: 500,
                        offset: all.len() as i32,
                        ..Default::default()
                    },
                    crate::grpc::call_option(Some(&self.credential), Duration::from_secs(30)),
                )
                .map_err(|e| match e {
                    grpcio::Error::RpcFailure(s)
                        if matches!(
                            s.code(),
                            grpcio::RpcStatusCode::UNAUTHENTICATED
                                | grpcio::RpcStatusCode::PERMISSION_DENIED
                        ) =>
                    {
                        ReconcileError::CredentialRevoked(s.message().to_string())
                    }
                    other => ReconcileError::Api(other),
                })?;
            let n = page.sessions.len();
            for s in page.sessions {
                all.push(LiveInDatabase {
                    session_id: s.session_id,
                    status: s.status.parse().unwrap_or(SessionStatus::Running),
                    age: Duration::from_millis((now - s.created_at_ms).max(0) as u64),
                });
            }
            if n == 0 || all.len() as i64 >= page.total {
                return Ok(all);
            }
        }
    }

    /// One pass of the rule; returns what it did.
    /// The `reconciler` thread: reconciles every `every` until shutdown. A revoked credential
    /// ends the agent, saying why (nothing it does is accepted any more).
    pub fn run_every(&self, every: Duration, shutdown: &ShutdownSignal) -> Result<(), String> {
        while !shutdown.wait(every) {
            match self.run_once() {
                Ok(_) => {}
                Err(e @ ReconcileError::CredentialRevoked(_)) => return Err(e.to_string()),
                Err(e) => log::warn!("reconciliation skipped: {e}"),
            }
        }
        Ok(())
    }

    pub fn run_once(&self) -> Result<Vec<Action>, ReconcileError> {
        let asked_at = Instant::now();
        let database = self.live_in_database()?;
        let accepted = crate::sync::lock(&self.accepted).clone();
        let local: Vec<LocalSession> = self
            .manager
            .status_all("session-*")
            .iter()
            .filter_map(|s| {
                let id = session_of(&s.name)?;
                Some(LocalSession {
                    session_id: id,
                    live: s.state.is_live(),
                    known_to_query: accepted.get(&id).is_none_or(|t| *t < asked_at),
                })
            })
            .collect();
        let actions = plan(&local, &database);
        for action in &actions {
            match *action {
                Action::Stop(id) => {
                    log::warn!(session_id = id; "session is not live in the database; stopping its game");
                    let _ = self.manager.request_stop(&process_name(id), false);
                }
                Action::ReportLost(id) => {
                    log::warn!(session_id = id; "session is live in the database but not running here; reporting lost");
                    self.out.send(status_message(
                        self.server_id,
                        id,
                        SessionStatus::Lost,
                        Report {
                            reason: Some("its host has no process for it".into()),
                            ..Report::default()
                        },
                    ));
                }
                Action::Forget(id) => {
                    let _ = self.manager.remove(&process_name(id));
                    crate::sync::lock(&self.accepted).remove(&id);
                }
            }
        }
        Ok(actions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(id: i64, live: bool) -> LocalSession {
        LocalSession {
            session_id: id,
            live,
            known_to_query: true,
        }
    }

    fn db(id: i64, status: SessionStatus, age_s: u64) -> LiveInDatabase {
        LiveInDatabase {
            session_id: id,
            status,
            age: Duration::from_secs(age_s),
        }
    }

    #[test]
    fn a_game_whose_session_is_over_is_stopped() {
        assert_eq!(plan(&[local(1, true)], &[]), vec![Action::Stop(1)]);
    }

    #[test]
    fn a_live_session_without_a_process_is_lost() {
        assert_eq!(
            plan(&[], &[db(2, SessionStatus::Running, 600)]),
            vec![Action::ReportLost(2)]
        );
    }

    #[test]
    fn agreement_needs_nothing() {
        assert!(plan(&[local(3, true)], &[db(3, SessionStatus::Running, 5)]).is_empty());
        // Ended here, the report on its way: the database catches up by itself.
        assert!(plan(&[local(4, false)], &[db(4, SessionStatus::Running, 5)]).is_empty());
    }

    #[test]
    fn young_pending_sessions_and_fresh_starts_are_left_alone() {
        assert!(plan(&[], &[db(5, SessionStatus::Pending, 1)]).is_empty());
        assert_eq!(
            plan(&[], &[db(5, SessionStatus::Pending, 3600)]),
            vec![Action::ReportLost(5)]
        );
        let fresh = LocalSession {
            known_to_query: false,
            ..local(6, true)
        };
        assert!(plan(&[fresh], &[]).is_empty());
    }

    #[test]
    fn finished_processes_of_closed_sessions_are_forgotten() {
        assert_eq!(plan(&[local(7, false)], &[]), vec![Action::Forget(7)]);
    }
}
