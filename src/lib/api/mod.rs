//! `manman-api`: the control-plane gRPC API (`manman.v1.ManManAPI`). Handlers run on grpcio's
//! completion-queue threads and do blocking database work there; host commands go out by
//! request/reply over RabbitMQ with a timeout.

mod access;
pub mod backups;
mod catalog;
mod convert;
mod error;
pub mod history;
mod host_commands;
mod hosts;
pub mod maintenance;
mod metrics;
mod restores;
pub mod schedules;
mod service;
mod sessions;
mod tokens;
mod usage;
mod validate;

use std::sync::Arc;
use std::time::Duration;

use crate::bus::{self, topology, RpcClient};
use crate::config::{self, ConfigError, Env};
use crate::db::{self, PoolSettings};
use crate::grpc::ServerTls;
use crate::health::{HealthServer, ReadinessCheck};
use crate::lifecycle::{ShutdownSignal, Supervisor};
use crate::logstore::{ObjectStore, S3Config};

pub use backups::{BackupDeadlines, BackupSettings};
pub use error::ApiError;
pub use metrics::ApiMetrics;

/// The largest page a list request may ask for.
const MAX_PAGE: i32 = 500;
pub use service::ApiService;
pub use tokens::create as create_token;

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub rabbitmq_url: String,
    pub database: postgres::Config,
    /// `{GRPC_BIND}:{GRPC_PORT}`, loopback by default.
    pub listen: String,
    /// TLS for the gRPC port (`GRPC_TLS_CERT`, `GRPC_TLS_KEY`); required off loopback.
    pub tls: Option<ServerTls>,
    /// `/healthz`, `/readyz`, `/metrics` on `{HEALTH_BIND}:{HEALTH_PORT}`.
    pub health_addr: String,
    pub command_timeout: Duration,
    pub threads: usize,
    pub pool: PoolSettings,
    /// Where archived logs are read from (`GetHistoricalLogs`) and backups are kept; `None`
    /// without `S3_BUCKET`.
    pub archive: Option<S3Config>,
    pub backups: BackupSettings,
    /// How often each replica tends maintenance waiting for the players and schedules
    /// (`MAINTENANCE_TICK_SECONDS`, default 5).
    pub maintenance_tick: Duration,
    /// A schedule's firing later than this (no API was running) is skipped, not run
    /// (`SCHEDULE_GRACE_SECONDS`, default 300).
    pub schedule_grace: Duration,
}

impl ApiConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let listen = config::listen_address(env, "GRPC_BIND", "GRPC_PORT", 50051)?;
        let tls = ServerTls::from_env(env)?;
        // Every call is authenticated; off loopback the tokens also need TLS.
        config::check_exposure(env, "GRPC_BIND", &listen, tls.is_some(), "the API")?;
        Ok(ApiConfig {
            rabbitmq_url: config::rabbitmq_url(env)?,
            database: config::database_config(env)?,
            listen,
            tls,
            health_addr: config::health_address(env, 8084)?,
            command_timeout: env.seconds("COMMAND_TIMEOUT_SECONDS", 10)?,
            threads: env.parse("GRPC_THREADS", 4)?,
            pool: PoolSettings {
                max_size: 8,
                ..PoolSettings::default()
            },
            archive: match env.get("S3_BUCKET") {
                Some(_) => Some(S3Config::from_env(env)?),
                None => None,
            },
            backups: BackupSettings::from_env(env)?,
            maintenance_tick: env.seconds("MAINTENANCE_TICK_SECONDS", 5)?,
            schedule_grace: env.seconds("SCHEDULE_GRACE_SECONDS", 300)?,
        })
    }

    /// For tests and benchmarks: ephemeral loopback ports, no TLS, no archive.
    #[cfg(any(test, feature = "testkit"))]
    pub fn embedded(rabbitmq_url: String, database: postgres::Config) -> Self {
        ApiConfig {
            rabbitmq_url,
            database,
            listen: "127.0.0.1:0".into(),
            tls: None,
            health_addr: "127.0.0.1:0".into(),
            command_timeout: Duration::from_secs(5),
            threads: 2,
            pool: PoolSettings::default(),
            archive: None,
            backups: BackupSettings::default(),
            maintenance_tick: Duration::from_secs(1),
            schedule_grace: Duration::from_secs(300),
        }
    }
}

pub struct RunningApi {
    pub port: u16,
    pub health_port: u16,
}

/// Connects the database and the broker, binds the port, and keeps the server in a supervised
/// thread until shutdown.
pub fn start(config: ApiConfig, supervisor: &mut Supervisor) -> Result<RunningApi, String> {
    log::info!(database = config::describe_database(&config.database).as_str(),
        broker = config::redact_url(&config.rabbitmq_url).as_str(), listen = config.listen.as_str();
        "starting API");
    let pool = db::pool(config.database.clone(), &config.pool)?;
    // Commands are published to the `manman` exchange: make sure it exists.
    {
        let (_keep, signal) = ShutdownSignal::new();
        let mut conn =
            bus::connect(&config.rabbitmq_url, &signal, "api").map_err(|e| e.to_string())?;
        let ch = conn.open_channel(None).map_err(|e| e.to_string())?;
        topology::declare_manman_exchange(&ch).map_err(|e| e.to_string())?;
        let _ = conn.close();
    }
    let rpc = RpcClient::start(&config.rabbitmq_url).map_err(|e| e.to_string())?;
    let archive = match &config.archive {
        Some(s3) => Some(
            ObjectStore::new(s3)
                .map_err(|e| format!("S3 configuration: {}", crate::errors::chain(&e)))?,
        ),
        None => None,
    };
    let service = ApiService::new(
        pool.clone(),
        rpc,
        config.command_timeout,
        archive,
        config.backups.clone(),
    );
    {
        let deadlines = BackupDeadlines {
            service: service.clone(),
            every: config.backups.sweep_every,
        };
        supervisor
            .spawn("backup-deadlines", move |shutdown| deadlines.run(&shutdown))
            .map_err(|e| e.to_string())?;
        let tender = maintenance::MaintenanceTender {
            service: service.clone(),
            every: config.maintenance_tick,
        };
        supervisor
            .spawn("maintenance", move |shutdown| tender.run(&shutdown))
            .map_err(|e| e.to_string())?;
        let runner = schedules::ScheduleRunner {
            service: service.clone(),
            every: schedules::SCHEDULE_TICK,
            grace: config.schedule_grace,
        };
        supervisor
            .spawn("schedules", move |shutdown| runner.run(&shutdown))
            .map_err(|e| e.to_string())?;
    }
    let health = {
        let service = service.clone();
        HealthServer::bind(
            &config.health_addr,
            vec![ReadinessCheck::new("database", move || {
                Ok(db::ping(&pool)?)
            })],
            Some(Arc::new(move || service.metrics())),
        )?
    };
    let health_port = health.start(supervisor)?;
    let port = crate::grpc::serve(
        crate::proto::v1::create_man_man_api(service),
        &config.listen,
        config.tls.as_ref(),
        config.threads,
        supervisor,
    )?;
    Ok(RunningApi { port, health_port })
}

pub use crate::grpc::api_client as client;
