//! The `manman.v1.ManManAPI` service: shared state, and the gRPC glue that turns each RPC into
//! a plain function returning `Result<_, ApiError>` (catalog.rs, sessions.rs).

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use grpcio::{RpcContext, ServerStreamingSink, UnarySink};

use super::access;
use super::error::ApiError;
use super::metrics::ApiMetrics;
use crate::auth::{bearer_of, Authenticator, Caller, Role, TokenBackend};
use crate::bus::RpcClient;
use crate::db::catalog::DeleteScope;
use crate::db::DbPool;
use crate::logstore::ObjectStore;
use crate::proto::v1 as pb;
use crate::slots::Slots;

#[derive(Clone)]
pub struct ApiService {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub pool: DbPool,
    pub auth: Authenticator,
    pub rpc: RpcClient,
    pub command_timeout: Duration,
    pub archive: Option<ObjectStore>,
    pub backups: super::backups::BackupSettings,
    pub metrics: ApiMetrics,
    /// History streams open now (a thread each).
    pub history_streams: Slots,
}

/// History streams one API serves at once; beyond it a new one is RESOURCE_EXHAUSTED.
pub const MAX_HISTORY_STREAMS: usize = 64;

/// Answers through the sink (the only place futures appear: grpcio's completion queue runs them).
pub(crate) fn respond<T: Send + 'static>(
    ctx: &RpcContext,
    sink: UnarySink<T>,
    result: Result<T, ApiError>,
) {
    let reply = match result {
        Ok(value) => sink.success(value),
        Err(e) => {
            if matches!(e, ApiError::Internal(_) | ApiError::Unavailable(_)) {
                log::warn!("request failed: {e}");
            }
            sink.fail(e.status())
        }
    };
    ctx.spawn(reply.map(|r| {
        if let Err(e) = r {
            log::debug!("reply not delivered: {e}");
        }
    }));
}

impl ApiService {
    pub fn new(
        pool: DbPool,
        rpc: RpcClient,
        command_timeout: Duration,
        archive: Option<ObjectStore>,
        backups: super::backups::BackupSettings,
    ) -> Self {
        ApiService {
            inner: Arc::new(Inner {
                auth: Authenticator::new(TokenBackend::Database(pool.clone())),
                pool,
                rpc,
                command_timeout,
                archive,
                backups,
                metrics: ApiMetrics::default(),
                history_streams: Slots::new(MAX_HISTORY_STREAMS),
            }),
        }
    }

    /// `/metrics`: requests and backups, and when each deployment last completed a backup
    /// (read from the database at scrape time, so every API replica tells the same).
    pub fn metrics(&self) -> String {
        let mut out = self.inner.metrics.render();
        if let Ok(last) = self
            .db()
            .map_err(|_| ())
            .and_then(|mut db| crate::db::backups::last_completed(&mut *db).map_err(|_| ()))
        {
            let samples: Vec<(String, u64)> = last
                .iter()
                .map(|(sgc, at)| (format!("sgc_id=\"{sgc}\""), (*at).max(0) as u64))
                .collect();
            let refs: Vec<(&str, u64)> = samples.iter().map(|(l, n)| (l.as_str(), *n)).collect();
            crate::metrics::render_sample(
                &mut out,
                "manman_backup_last_success_timestamp_seconds",
                "gauge",
                "When each deployment's newest completed backup ended (alert on its age).",
                &refs,
            );
        }
        out
    }

    /// The caller of `rpc` if its token allows it (`None` for the one call made without a
    /// token).
    fn authorize(&self, ctx: &RpcContext, rpc: &str) -> Result<Option<Caller>, ApiError> {
        self.authorize_token(bearer_of(ctx.request_headers()).as_deref(), rpc)
    }

    /// [`authorize`](Self::authorize) for a token already read from a call's metadata.
    fn authorize_token(&self, token: Option<&str>, rpc: &str) -> Result<Option<Caller>, ApiError> {
        if access::any_role(rpc) {
            return Ok(Some(self.inner.auth.authenticate(token)?));
        }
        match access::needed_role(rpc) {
            None => Ok(None),
            Some(role) => Ok(Some(self.inner.auth.authorize_either(
                token,
                role,
                access::host_may(rpc).then_some(Role::Host),
                rpc,
            )?)),
        }
    }

    pub(crate) fn db(&self) -> Result<crate::db::PooledConnection, ApiError> {
        Ok(self.inner.pool.get()?)
    }
}

macro_rules! rpc {
    (streaming { $($streaming:item)* }
     $($name:ident($req:ty) -> $resp:ty => |$s:ident, $r:ident, $c:ident| $body:expr;)*) => {
        impl pb::ManManApi for ApiService {
            $($streaming)*
            $(
                fn $name(&mut self, ctx: RpcContext, $r: $req, sink: UnarySink<$resp>) {
                    let started = std::time::Instant::now();
                    let $s = &*self;
                    let result = match $s.authorize(&ctx, stringify!($name)) {
                        #[allow(unused_variables)]
                        Ok($c) => $body,
                        Err(e) => Err(e),
                    };
                    $s.inner.metrics.record(stringify!($name), &result, started.elapsed());
                    respond(&ctx, sink, result);
                }
            )*
        }
    };
}

rpc! {
    streaming {
        fn stream_historical_logs(
            &mut self,
            ctx: RpcContext,
            req: pb::GetHistoricalLogsRequest,
            sink: ServerStreamingSink<pb::LogBatch>,
        ) {
            let rpc = "stream_historical_logs";
            if let Err(e) = self.authorize(&ctx, rpc) {
                ctx.spawn(sink.fail(e.status()).map(|_| ()));
                return;
            }
            let Some(slot) = self.inner.history_streams.take() else {
                let busy = ApiError::ResourceExhausted(format!(
                    "this API already streams {} histories; try again later",
                    MAX_HISTORY_STREAMS
                ));
                ctx.spawn(sink.fail(busy.status()).map(|_| ()));
                return;
            };
            let service = self.clone();
            // The stream ends if its token is revoked or expires meanwhile.
            let token = bearer_of(ctx.request_headers());
            let still_allowed = move || {
                !matches!(
                    service.authorize_token(token.as_deref(), rpc),
                    Err(ApiError::Unauthenticated(_) | ApiError::PermissionDenied(_))
                )
            };
            let inner = self.inner.clone();
            // A plain thread per stream: S3 reads and the client's pace block only it.
            let spawned = std::thread::Builder::new()
                .name("history-stream".into())
                .spawn(move || {
                    let _slot = slot;
                    super::history::stream(&inner, req, sink, &still_allowed)
                });
            if let Err(e) = spawned {
                log::error!("cannot start a history stream: {e}");
            }
        }
    }
    register_server(pb::RegisterServerRequest) -> pb::RegisterServerResponse => |s, r, c| s.register_server(r, c);
    add_host(pb::AddHostRequest) -> pb::AddHostResponse => |s, r, _c| s.add_host(r);
    enroll_host(pb::EnrollHostRequest) -> pb::EnrollHostResponse => |s, r, _c| s.enroll_host(r);
    revoke_host(pb::RevokeHostRequest) -> pb::RevokeHostResponse => |s, r, _c| s.revoke_host(r);
    create_token(pb::CreateTokenRequest) -> pb::CreateTokenResponse => |s, r, c| s.create_token(r, c);
    list_tokens(pb::ListTokensRequest) -> pb::ListTokensResponse => |s, _r, _c| s.list_tokens();
    revoke_token(pb::RevokeTokenRequest) -> pb::RevokeTokenResponse => |s, r, c| s.revoke_token(r, c);
    who_am_i(pb::WhoAmIRequest) -> pb::WhoAmIResponse => |_s, _r, c| Ok(super::tokens::who_am_i(c));
    list_servers(pb::ListServersRequest) -> pb::ListServersResponse => |s, r, _c| s.list_servers(r);
    get_server(pb::GetServerRequest) -> pb::GetServerResponse => |s, r, _c| s.get_server(r);
    create_game(pb::CreateGameRequest) -> pb::CreateGameResponse => |s, r, _c| s.create_game(r);
    list_games(pb::ListGamesRequest) -> pb::ListGamesResponse => |s, r, _c| s.list_games(r);
    create_game_config(pb::CreateGameConfigRequest) -> pb::CreateGameConfigResponse => |s, r, _c| s.create_game_config(r);
    list_game_configs(pb::ListGameConfigsRequest) -> pb::ListGameConfigsResponse => |s, r, _c| s.list_game_configs(r);
    get_game_config(pb::GetGameConfigRequest) -> pb::GetGameConfigResponse => |s, r, _c| s.get_game_config(r);
    deploy_game_config(pb::DeployGameConfigRequest) -> pb::DeployGameConfigResponse => |s, r, _c| s.deploy_game_config(r);
    list_deployments(pb::ListDeploymentsRequest) -> pb::ListDeploymentsResponse => |s, r, _c| s.list_deployments(r);
    update_game_config(pb::UpdateGameConfigRequest) -> pb::UpdateGameConfigResponse => |s, r, _c| s.update_game_config(r);
    update_game(pb::UpdateGameRequest) -> pb::UpdateGameResponse => |s, r, _c| s.update_game(r);
    delete_game(pb::DeleteRequest) -> pb::DeleteResponse => |s, r, _c| s.delete(DeleteScope::Game(r.id), r.force);
    delete_game_config(pb::DeleteRequest) -> pb::DeleteResponse => |s, r, _c| s.delete(DeleteScope::Config(r.id), r.force);
    delete_deployment(pb::DeleteRequest) -> pb::DeleteResponse => |s, r, _c| s.delete(DeleteScope::Deployment(r.id), r.force);
    list_sessions(pb::ListSessionsRequest) -> pb::ListSessionsResponse => |s, r, c| super::hosts::own_sessions_only(r, c).and_then(|r| s.list_sessions(r));
    get_session(pb::GetSessionRequest) -> pb::GetSessionResponse => |s, r, _c| s.get_session(r);
    start_session(pb::StartSessionRequest) -> pb::StartSessionResponse => |s, r, _c| s.start_session(r);
    stop_session(pb::StopSessionRequest) -> pb::StopSessionResponse => |s, r, _c| s.stop_session(r);
    send_input(pb::SendInputRequest) -> pb::SendInputResponse => |s, r, _c| s.send_input(r);
    drain_server(pb::DrainServerRequest) -> pb::DrainServerResponse => |s, r, _c| s.drain_server(r);
    get_historical_logs(pb::GetHistoricalLogsRequest) -> pb::GetHistoricalLogsResponse => |s, r, _c|
        super::history::historical_logs(&s.inner.pool, s.inner.archive.as_ref(), r);
    create_backup(pb::CreateBackupRequest) -> pb::CreateBackupResponse => |s, r, _c| s.create_backup(r);
    list_backups(pb::ListBackupsRequest) -> pb::ListBackupsResponse => |s, r, _c| s.list_backups(r);
    get_backup(pb::GetBackupRequest) -> pb::GetBackupResponse => |s, r, _c| s.get_backup(r);
    delete_backup(pb::DeleteBackupRequest) -> pb::DeleteBackupResponse => |s, r, _c| s.delete_backup(r);
    pin_backup(pb::PinBackupRequest) -> pb::PinBackupResponse => |s, r, _c| s.pin_backup(r);
    restore_backup(pb::RestoreBackupRequest) -> pb::RestoreBackupResponse => |s, r, _c| s.restore_backup(r);
    get_restore(pb::GetRestoreRequest) -> pb::GetRestoreResponse => |s, r, _c| s.get_restore(r);
    presign_backup_parts(pb::PresignBackupPartsRequest) -> pb::PresignBackupPartsResponse => |s, r, c| s.presign_backup_parts(r, c);
    report_backup_progress(pb::ReportBackupProgressRequest) -> pb::ReportBackupProgressResponse => |s, r, c| s.report_backup_progress(r, c);
    finish_backup(pb::FinishBackupRequest) -> pb::FinishBackupResponse => |s, r, c| s.finish_backup(r, c);
    finish_restore(pb::FinishRestoreRequest) -> pb::FinishRestoreResponse => |s, r, c| s.finish_restore(r, c);
    schedule_maintenance(pb::ScheduleMaintenanceRequest) -> pb::ScheduleMaintenanceResponse => |s, r, c| s.schedule_maintenance(r, c);
    cancel_maintenance(pb::CancelMaintenanceRequest) -> pb::CancelMaintenanceResponse => |s, r, c| s.cancel_maintenance(r, c);
    get_maintenance(pb::GetMaintenanceRequest) -> pb::GetMaintenanceResponse => |s, r, _c| s.get_maintenance(r);
    get_session_history(pb::GetSessionHistoryRequest) -> pb::GetSessionHistoryResponse => |s, r, _c| s.get_session_history(r);
    get_server_history(pb::GetServerHistoryRequest) -> pb::GetServerHistoryResponse => |s, r, _c| s.get_server_history(r);
    create_schedule(pb::CreateScheduleRequest) -> pb::CreateScheduleResponse => |s, r, c| s.create_schedule(r, c);
    list_schedules(pb::ListSchedulesRequest) -> pb::ListSchedulesResponse => |s, r, _c| s.list_schedules(r);
    get_schedule(pb::GetScheduleRequest) -> pb::GetScheduleResponse => |s, r, _c| s.get_schedule(r);
    pause_schedule(pb::PauseScheduleRequest) -> pb::PauseScheduleResponse => |s, r, _c| s.pause_schedule(r);
    delete_schedule(pb::DeleteScheduleRequest) -> pb::DeleteScheduleResponse => |s, r, _c| s.delete_schedule(r);
    run_schedule_now(pb::RunScheduleNowRequest) -> pb::RunScheduleNowResponse => |s, r, _c| s.run_schedule_now(r);
}
