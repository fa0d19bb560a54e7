//! Maintenance that waits for the players: `session restart|stop --when-empty`. The API keeps
//! a row per request and a thread of every replica tends the active ones every few seconds,
//! each claimed with `FOR UPDATE SKIP LOCKED` (two replicas never act on one): warn the
//! players at the marks, act as soon as the last count is 0 or at the deadline, and for a
//! restart start the deployment again once the session has ended. The acting is the API's
//! own stop and start, so it goes through the same checks and host commands as an operator's.
//!
//! A replica that dies while it tends a row rolls its transaction back: the next tick acts
//! again (a warning may be sent twice; a stop sent twice is answered by a stopping session).

pub mod policy;

use std::time::Duration;

use chrono::Utc;

use super::convert::millis;
use super::error::ApiError;
use super::validate::positive_id;
use super::ApiService;
use crate::auth::Caller;
use crate::db::maintenance::{self, Due, MaintenanceRow, NewMaintenance};
use crate::lifecycle::ShutdownSignal;
use crate::proto::v1 as pb;
use crate::wire::SessionStatus;
use policy::{decide, warn_line, Plan};

/// Active maintenances one tick tends at most (the rest wait for the next tick).
const TICK_BATCH: i64 = 200;
/// A restart whose session has not ended this long after its stop was sent has failed.
const STOP_WAIT: chrono::TimeDelta = chrono::TimeDelta::minutes(15);

pub fn maintenance_pb(m: MaintenanceRow) -> pb::Maintenance {
    pb::Maintenance {
        maintenance_id: m.maintenance_id,
        session_id: m.session_id,
        action: m.action,
        status: m.status,
        deadline_ms: m.deadline.timestamp_millis(),
        warn_command: m.warn_command.unwrap_or_default(),
        warn_at_seconds: m.warn_at_seconds,
        warned_seconds: m.warned_seconds,
        players_seen: m.players_seen.unwrap_or(0),
        players_known: m.players_seen.is_some(),
        reason: m.reason.unwrap_or_default(),
        new_session_id: m.new_session_id.unwrap_or(0),
        created_by: m.created_by,
        created_at_ms: m.created_at.timestamp_millis(),
        acted_at_ms: millis(m.acted_at),
        ended_at_ms: millis(m.ended_at),
    }
}

impl ApiService {
    pub fn schedule_maintenance(
        &self,
        req: pb::ScheduleMaintenanceRequest,
        caller: Option<Caller>,
    ) -> Result<pb::ScheduleMaintenanceResponse, ApiError> {
        if !matches!(req.action.as_str(), "restart" | "stop") {
            return Err(ApiError::InvalidArgument(format!(
                "action must be restart or stop, not {:?}",
                req.action
            )));
        }
        policy::validate(
            req.deadline_seconds,
            &req.warn_command,
            &req.warn_at_seconds,
        )
        .map_err(ApiError::InvalidArgument)?;
        let s = self.session(req.session_id)?;
        let status: SessionStatus = s.status.parse().map_err(ApiError::Internal)?;
        if !matches!(status, SessionStatus::Starting | SessionStatus::Running) {
            return Err(ApiError::FailedPrecondition(format!(
                "session {} is {status}; maintenance needs a starting or running session",
                s.session_id
            )));
        }
        let mut db = self.db()?;
        self.check_counted(&mut *db, s.sgc_id)?;
        let by = caller_name(caller);
        let mut marks = req.warn_at_seconds.clone();
        marks.sort_unstable_by(|a, b| b.cmp(a));
        marks.dedup();
        let warn = req.warn_command.trim();
        let created = maintenance::create(
            &mut *db,
            &NewMaintenance {
                session_id: s.session_id,
                action: &req.action,
                deadline: Utc::now() + chrono::TimeDelta::seconds(req.deadline_seconds),
                warn_command: (!warn.is_empty()).then_some(warn),
                warn_at_seconds: &marks,
                created_by: &by,
            },
        )?;
        match created {
            Ok(m) => {
                log::info!(session_id = m.session_id, maintenance_id = m.maintenance_id,
                    action = m.action.as_str(), by = by.as_str(); "maintenance waits for the players");
                Ok(pb::ScheduleMaintenanceResponse {
                    maintenance: Some(maintenance_pb(m)),
                })
            }
            Err(id) => Err(ApiError::AlreadyExists(format!(
                "session {} already has maintenance {id} pending (session cancel-maintenance {} first)",
                s.session_id, s.session_id
            ))),
        }
    }

    /// Refuses a deployment whose config has no player query: nothing could say it is empty.
    pub(super) fn check_counted(
        &self,
        c: &mut impl postgres::GenericClient,
        sgc_id: i64,
    ) -> Result<(), ApiError> {
        let counted = crate::db::catalog::get_deployment(&mut *c, sgc_id)?
            .map(|d| crate::db::catalog::get_config(&mut *c, d.config_id))
            .transpose()?
            .flatten()
            .is_some_and(|c| c.process.players.is_some());
        if counted {
            return Ok(());
        }
        Err(ApiError::FailedPrecondition(format!(
            "deployment {sgc_id}'s config has no player count (config update --players ...): \
             --when-empty cannot know when its server is empty"
        )))
    }

    pub fn cancel_maintenance(
        &self,
        req: pb::CancelMaintenanceRequest,
        caller: Option<Caller>,
    ) -> Result<pb::CancelMaintenanceResponse, ApiError> {
        let id = positive_id("session_id", req.session_id)?;
        match maintenance::cancel(&mut *self.db()?, id, &caller_name(caller))? {
            Some(m) => Ok(pb::CancelMaintenanceResponse {
                maintenance: Some(maintenance_pb(m)),
            }),
            None => Err(ApiError::NotFound(format!(
                "session {id} has no maintenance pending"
            ))),
        }
    }

    pub fn get_maintenance(
        &self,
        req: pb::GetMaintenanceRequest,
    ) -> Result<pb::GetMaintenanceResponse, ApiError> {
        let id = positive_id("session_id", req.session_id)?;
        Ok(pb::GetMaintenanceResponse {
            maintenance: maintenance::latest_of(&mut *self.db()?, id)?.map(maintenance_pb),
        })
    }

    /// One tick: every active maintenance no other replica holds, tended in one transaction.
    pub fn tend_maintenance(&self) -> Result<(), ApiError> {
        let mut db = self.db()?;
        let mut tx = db.transaction()?;
        for due in maintenance::claim_active(&mut tx, TICK_BATCH)? {
            let id = due.row.maintenance_id;
            let (status, reason, new_session) = match self.tend(&mut tx, &due) {
                Ok(Some(step)) => step,
                Ok(None) => continue,
                Err(e) => ("failed", e.to_string(), None),
            };
            log::info!(maintenance_id = id, session_id = due.row.session_id, status = status; "maintenance: {reason}");
            maintenance::advance(&mut tx, id, status, &reason, new_session)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// What one active maintenance does now: `None` to wait, or its next status, the reason
    /// and the session started after a restart.
    fn tend(&self, tx: &mut postgres::Transaction, due: &Due) -> Result<Option<Step>, ApiError> {
        let m = &due.row;
        let ended = due
            .session_status
            .parse::<SessionStatus>()
            .map_err(ApiError::Internal)?
            .is_terminal();
        let retry_until = |since: chrono::DateTime<Utc>, e: ApiError| {
            if Utc::now() - since > STOP_WAIT {
                return Err(e);
            }
            // A host or broker away for a moment: tried again at the next tick.
            log::warn!(maintenance_id = m.maintenance_id; "tried again at the next tick: {e}");
            Ok(None)
        };
        if m.status == "stopping" {
            if ended {
                let started = match self.start_session(pb::StartSessionRequest {
                    sgc_id: due.sgc_id,
                    force: false,
                }) {
                    Ok(started) => started,
                    Err(e) => return retry_until(m.acted_at.unwrap_or(m.deadline), e),
                };
                let new = started.session.map(|s| s.session_id);
                let reason = format!(
                    "{}; restarted as session {}",
                    m.reason.as_deref().unwrap_or("acted"),
                    new.unwrap_or(0)
                );
                return Ok(Some(("done", reason, new)));
            }
            if m.acted_at.is_some_and(|t| Utc::now() - t > STOP_WAIT) {
                return Err(ApiError::FailedPrecondition(format!(
                    "session {} did not end within {} minutes of its stop",
                    m.session_id,
                    STOP_WAIT.num_minutes()
                )));
            }
            return Ok(None);
        }
        if ended {
            return Ok(Some((
                "cancelled",
                format!("the session ended ({}) first", due.session_status),
                None,
            )));
        }
        let plan = Plan {
            deadline: m.deadline,
            warn_at: m.warn_at_seconds.clone(),
            warned: m.warned_seconds.clone(),
        };
        let decision = decide(Utc::now(), &plan, due.players_online);
        if let (Some(left), Some(template)) = (decision.warn_seconds_left, &m.warn_command) {
            let sent = self.send_input(pb::SendInputRequest {
                session_id: m.session_id,
                input: warn_line(template, left),
            });
            if let Err(e) = sent {
                log::warn!(maintenance_id = m.maintenance_id; "warning not sent: {e}");
            }
        }
        let mut warned = plan.warned;
        warned.extend(&decision.newly_warned);
        maintenance::note_tick(tx, m.maintenance_id, &warned, due.players_online)?;
        let Some(trigger) = decision.act else {
            return Ok(None);
        };
        let stopped = self.stop_session(pb::StopSessionRequest {
            session_id: m.session_id,
            kill: false,
            force: false,
        });
        if let Err(e) = stopped {
            return retry_until(m.deadline.min(Utc::now()), e);
        }
        // A schedule's plain restart or stop is maintenance due at once: no players waited for.
        let reason = if m.deadline <= m.created_at + chrono::TimeDelta::seconds(1) {
            format!("{} (due at once)", m.created_by)
        } else {
            trigger.describe()
        };
        Ok(Some(match m.action.as_str() {
            "restart" => ("stopping", reason, None),
            _ => ("done", format!("{reason}; stopped"), None),
        }))
    }
}

/// A maintenance's next status, the reason, and the session started after a restart.
type Step = (&'static str, String, Option<i64>);

/// Who asked (a token's name), for the record.
pub(super) fn caller_name(caller: Option<Caller>) -> String {
    caller.map(|c| c.name).unwrap_or_else(|| "?".into())
}

/// The thread that tends maintenance every `every`.
pub struct MaintenanceTender {
    pub service: ApiService,
    pub every: Duration,
}

impl MaintenanceTender {
    pub fn run(&self, shutdown: &ShutdownSignal) -> Result<(), String> {
        while !shutdown.wait(self.every) {
            if let Err(e) = self.service.tend_maintenance() {
                log::warn!("maintenance not tended: {e}");
            }
        }
        Ok(())
    }
}
