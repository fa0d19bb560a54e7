//! The `manman.v1.ManManAPI` service: shared state, and the gRPC glue that turns each RPC into
//! a plain function returning `Result<_, ApiError>` (catalog.rs, sessions.rs).

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use grpcio::{RpcContext, UnarySink};

use super::error::ApiError;
use super::metrics::ApiMetrics;
use crate::bus::RpcClient;
use crate::db::DbPool;
use crate::logstore::ObjectStore;
use crate::proto::v1 as pb;

#[derive(Clone)]
pub struct ApiService {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub pool: DbPool,
    pub rpc: RpcClient,
    pub command_timeout: Duration,
    pub archive: Option<ObjectStore>,
    pub metrics: ApiMetrics,
}

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
    ) -> Self {
        ApiService {
            inner: Arc::new(Inner {
                pool,
                rpc,
                command_timeout,
                archive,
                metrics: ApiMetrics::default(),
            }),
        }
    }

    pub fn metrics(&self) -> String {
        self.inner.metrics.render()
    }

    pub(crate) fn db(&self) -> Result<crate::db::PooledConnection, ApiError> {
        Ok(self.inner.pool.get()?)
    }
}

macro_rules! rpc {
    ($($name:ident($req:ty) -> $resp:ty => |$s:ident, $r:ident| $body:expr;)*) => {
        impl pb::ManManApi for ApiService {
            $(
                fn $name(&mut self, ctx: RpcContext, $r: $req, sink: UnarySink<$resp>) {
                    let started = std::time::Instant::now();
                    let $s = &*self;
                    let result = $body;
                    $s.inner.metrics.record(stringify!($name), &result, started.elapsed());
                    respond(&ctx, sink, result);
                }
            )*
        }
    };
}

rpc! {
    register_server(pb::RegisterServerRequest) -> pb::RegisterServerResponse => |s, r| s.register_server(r);
    list_servers(pb::ListServersRequest) -> pb::ListServersResponse => |s, _r| s.list_servers();
    get_server(pb::GetServerRequest) -> pb::GetServerResponse => |s, r| s.get_server(r);
    create_game(pb::CreateGameRequest) -> pb::CreateGameResponse => |s, r| s.create_game(r);
    list_games(pb::ListGamesRequest) -> pb::ListGamesResponse => |s, _r| s.list_games();
    create_game_config(pb::CreateGameConfigRequest) -> pb::CreateGameConfigResponse => |s, r| s.create_game_config(r);
    list_game_configs(pb::ListGameConfigsRequest) -> pb::ListGameConfigsResponse => |s, r| s.list_game_configs(r);
    get_game_config(pb::GetGameConfigRequest) -> pb::GetGameConfigResponse => |s, r| s.get_game_config(r);
    deploy_game_config(pb::DeployGameConfigRequest) -> pb::DeployGameConfigResponse => |s, r| s.deploy_game_config(r);
    list_sessions(pb::ListSessionsRequest) -> pb::ListSessionsResponse => |s, r| s.list_sessions(r);
    get_session(pb::GetSessionRequest) -> pb::GetSessionResponse => |s, r| s.get_session(r);
    start_session(pb::StartSessionRequest) -> pb::StartSessionResponse => |s, r| s.start_session(r);
    stop_session(pb::StopSessionRequest) -> pb::StopSessionResponse => |s, r| s.stop_session(r);
    send_input(pb::SendInputRequest) -> pb::SendInputResponse => |s, r| s.send_input(r);
    drain_server(pb::DrainServerRequest) -> pb::DrainServerResponse => |s, r| s.drain_server(r);
    get_historical_logs(pb::GetHistoricalLogsRequest) -> pb::GetHistoricalLogsResponse => |s, r|
        super::history::historical_logs(&s.inner.pool, s.inner.archive.as_ref(), r);
}
