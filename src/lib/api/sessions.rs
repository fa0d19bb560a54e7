//! Session operations: list, show, start, stop (graceful, kill, or forced), console input.

use std::time::Duration;

use super::convert::session_pb;
use super::error::ApiError;
use super::validate::positive_id;
use super::{ApiService, MAX_PAGE};
use crate::db::catalog;
use crate::db::sessions::{self, ListFilter, LostScope, SessionView, StartConflict};
use crate::proto::v1 as pb;
use crate::wire::commands::{CommandKind, SendInput, SessionRef, StartSession};
use crate::wire::SessionStatus;

/// How long a forced stop waits for the host to confirm its kill (it does not need it).
const FORCE_KILL_WAIT: Duration = Duration::from_secs(2);

impl ApiService {
    pub fn list_sessions(
        &self,
        req: pb::ListSessionsRequest,
    ) -> Result<pb::ListSessionsResponse, ApiError> {
        if req.server_id < 0
            || req.sgc_id < 0
            || req.offset < 0
            || req.page_after < 0
            || !(0..=MAX_PAGE).contains(&req.limit)
        {
            return Err(ApiError::InvalidArgument(format!(
                "ids, offset and page_after must not be negative; limit must be 0 (default 50) to {MAX_PAGE}"
            )));
        }
        if req.offset > 0 && req.page_after > 0 {
            return Err(ApiError::InvalidArgument(
                "use either page_after (a cursor) or offset, not both".into(),
            ));
        }
        let mut statuses: Vec<SessionStatus> = Vec::new();
        for s in req
            .status
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            statuses.push(s.parse().map_err(ApiError::InvalidArgument)?);
        }
        if req.live_only {
            statuses = if statuses.is_empty() {
                SessionStatus::LIVE.to_vec()
            } else {
                statuses.into_iter().filter(|s| s.is_live()).collect()
            };
            if statuses.is_empty() {
                return Ok(pb::ListSessionsResponse::default());
            }
        }
        let filter = ListFilter {
            server_id: Some(req.server_id).filter(|i| *i > 0),
            sgc_id: Some(req.sgc_id).filter(|i| *i > 0),
            statuses,
            limit: if req.limit == 0 { 50 } else { req.limit as i64 },
            offset: req.offset as i64,
            before: req.page_after,
        };
        let (views, total) = sessions::list_views(&mut *self.db()?, &filter)?;
        let next_page_after = match views.last() {
            Some(last) if views.len() as i64 == filter.limit => last.session_id,
            _ => 0,
        };
        Ok(pb::ListSessionsResponse {
            sessions: views.into_iter().map(session_pb).collect(),
            total,
            next_page_after,
        })
    }

    pub(super) fn session(&self, id: i64) -> Result<SessionView, ApiError> {
        let id = positive_id("session_id", id)?;
        sessions::get_view(&mut *self.db()?, id)?
            .ok_or_else(|| ApiError::NotFound(format!("no session with id {id}")))
    }

    pub fn get_session(
        &self,
        req: pb::GetSessionRequest,
    ) -> Result<pb::GetSessionResponse, ApiError> {
        Ok(pb::GetSessionResponse {
            session: Some(session_pb(self.session(req.session_id)?)),
        })
    }

    pub fn start_session(
        &self,
        req: pb::StartSessionRequest,
    ) -> Result<pb::StartSessionResponse, ApiError> {
        let sgc_id = positive_id("sgc_id", req.sgc_id)?;
        let mut db = self.db()?;
        let d = catalog::get_deployment(&mut *db, sgc_id)?
            .ok_or_else(|| ApiError::NotFound(format!("no deployment with id {sgc_id}")))?;
        if d.status == "retired" {
            return Err(ApiError::FailedPrecondition(format!(
                "deployment {sgc_id} was deleted; deploy the config again to start it"
            )));
        }
        let c = catalog::get_config(&mut *db, d.config_id)?
            .ok_or_else(|| ApiError::NotFound(format!("deployment {sgc_id} has no config")))?;
        // A config stored before validation existed may still be one no host can run.
        c.process.validate().map_err(|e| {
            ApiError::InvalidArgument(format!("config {} cannot run: {e}", c.config_id))
        })?;
        if let Some(restore) = crate::db::backups::active_restore(&mut *db, sgc_id)? {
            return Err(ApiError::FailedPrecondition(format!(
                "deployment {sgc_id} is being restored (restore {restore}); it starts again when done"
            )));
        }
        if req.force {
            for old in sessions::live_of_deployment(&mut *db, sgc_id)? {
                drop(db);
                self.end_forcibly(d.server_id, old, "replaced by a forced start")?;
                db = self.db()?;
            }
        }
        let session_id = match sessions::create_pending(&mut *db, sgc_id, d.server_id, &d.ports)? {
            Ok(id) => id,
            Err(StartConflict::LiveSession(id)) => {
                return Err(ApiError::FailedPrecondition(format!(
                    "deployment {sgc_id} already has live session {id} (stop it, or start with --force)"
                )))
            }
            Err(StartConflict::PortTaken { port, protocol }) => {
                return Err(ApiError::AlreadyExists(format!(
                    "port {port}/{protocol} on server {} is held by another live session",
                    d.server_id
                )))
            }
        };
        let command = StartSession {
            session_id,
            sgc_id,
            process: c.process,
            ports: d.ports,
        };
        drop(db);
        if let Err(e) = self.command(d.server_id, CommandKind::Start, &command) {
            // Never leave it pending: a session the host did not take is lost. The command
            // expires with the wait, so a host that gets it late does not act on it.
            let lost = sessions::end_lost(
                &mut *self.db()?,
                session_id,
                LostScope::PendingOnly,
                &e.to_string(),
            )?;
            log::warn!(session_id = session_id, lost = lost; "session start failed: {e}");
            return Err(e);
        }
        Ok(pb::StartSessionResponse {
            session: Some(session_pb(self.session(session_id)?)),
        })
    }

    /// Ends a session `lost` in the database at once, then asks its host (briefly, best
    /// effort) to kill the game; a host that is away stops it when it reconciles on return.
    fn end_forcibly(&self, server_id: i64, session_id: i64, reason: &str) -> Result<(), ApiError> {
        let ended = sessions::end_lost(&mut *self.db()?, session_id, LostScope::AnyLive, reason)?;
        log::warn!(session_id = session_id, ended = ended; "session ended by force: {reason}");
        let kill = SessionRef { session_id };
        if let Err(e) = self.command_within(server_id, CommandKind::Kill, &kill, FORCE_KILL_WAIT) {
            log::info!(session_id = session_id; "host did not confirm the kill ({e}); it stops the game when it reconciles");
        }
        Ok(())
    }

    pub fn stop_session(
        &self,
        req: pb::StopSessionRequest,
    ) -> Result<pb::StopSessionResponse, ApiError> {
        let s = self.session(req.session_id)?;
        let status: SessionStatus = s.status.parse().map_err(ApiError::Internal)?;
        if status.is_terminal() {
            return Err(ApiError::FailedPrecondition(format!(
                "session {} is already {status}",
                s.session_id
            )));
        }
        if req.force {
            self.end_forcibly(
                s.server_id,
                s.session_id,
                "ended by an operator (stop --force)",
            )?;
        } else {
            let kind = if req.kill {
                CommandKind::Kill
            } else {
                CommandKind::Stop
            };
            self.command(
                s.server_id,
                kind,
                &SessionRef {
                    session_id: s.session_id,
                },
            )?;
        }
        Ok(pb::StopSessionResponse {
            session: Some(session_pb(self.session(s.session_id)?)),
        })
    }

    pub fn send_input(&self, req: pb::SendInputRequest) -> Result<pb::SendInputResponse, ApiError> {
        // One console line: a trailing newline is the line's end, any other control character
        // (an embedded newline would be a second command, ESC sequences, NUL) is refused.
        let line = req.input.strip_suffix('\n').unwrap_or(&req.input);
        if line.is_empty() {
            return Err(ApiError::InvalidArgument("input must not be empty".into()));
        }
        if let Some(c) = line.chars().find(|c| c.is_control() && *c != '\t') {
            return Err(ApiError::InvalidArgument(format!(
                "input must be one line without control characters (found U+{:04X})",
                c as u32
            )));
        }
        let s = self.session(req.session_id)?;
        if !matches!(s.status.as_str(), "starting" | "running") {
            return Err(ApiError::FailedPrecondition(format!(
                "session {} is {}; input needs a starting or running session",
                s.session_id, s.status
            )));
        }
        let input = format!("{line}\n");
        self.command(
            s.server_id,
            CommandKind::SendInput,
            &SendInput {
                session_id: s.session_id,
                input,
            },
        )?;
        Ok(pb::SendInputResponse {})
    }

    /// Asks the host to stop each of its live sessions (its stop plan), one command each.
    pub fn drain_server(
        &self,
        req: pb::DrainServerRequest,
    ) -> Result<pb::DrainServerResponse, ApiError> {
        let server_id = positive_id("server_id", req.server_id)?;
        if catalog::get_host(&mut *self.db()?, server_id)?.is_none() {
            return Err(ApiError::NotFound(format!("no server with id {server_id}")));
        }
        let (live, _) = sessions::list_views(
            &mut *self.db()?,
            &ListFilter {
                server_id: Some(server_id),
                statuses: vec![SessionStatus::Starting, SessionStatus::Running],
                limit: i64::from(MAX_PAGE) * 20,
                ..ListFilter::default()
            },
        )?;
        let mut response = pb::DrainServerResponse::default();
        for s in live {
            let stop = SessionRef {
                session_id: s.session_id,
            };
            match self.command(server_id, CommandKind::Stop, &stop) {
                Ok(()) => response.stopping.push(s.session_id),
                Err(e) => response.failed.push(format!("{}: {e}", s.session_id)),
            }
        }
        log::info!(server_id = server_id, stopping = response.stopping.len(), failed = response.failed.len(); "draining host");
        Ok(response)
    }
}
