//! `manman-log-processor`: live console lines per session, fanned out over gRPC to any number
//! of clients, and archived per minute to S3 with references in PostgreSQL.
//!
//! Threads: the ingest consumer (this instance's queue of every session's console batches →
//! the sessions' rings and the archiver), one per streaming client, the session-events
//! consumer, the archiver, housekeeping, gRPC and health. No thread per session.

mod archiver;
mod directory;
mod events;
mod ingest;
mod metrics;
mod registry;
mod ring;
mod stream;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

pub use archiver::{ArchiveItem, Archiver, ArchiverSettings, ARCHIVER_LOCK_KEY};
pub use directory::{SessionDirectory, SessionInfo};
pub use events::session_event;
pub use metrics::LogMetrics;
pub use registry::{Registry, RegistrySettings};
pub use ring::{PushOutcome, ReadResult, SessionLog, StoredLine, DEFAULT_MAX_BYTES};
pub use stream::LogStreamService;

use crate::auth::{Authenticator, TokenBackend};
use crate::bus::{spawn_consumer, ConsumerSettings};
use crate::config::{self, ConfigError, Env};
use crate::db::{self, PoolSettings};
use crate::grpc::{Endpoint, ServerTls};
use crate::health::{HealthServer, ReadinessCheck};
use crate::lifecycle::Supervisor;
use crate::logstore::{ObjectStore, S3Config};
use crate::wire::routing;
use ingest::{IngestHandler, IngestQueueArgs, OwnerLookup};

#[derive(Debug, Clone)]
pub struct LogsConfig {
    pub rabbitmq_url: String,
    pub external_exchange: String,
    /// `{GRPC_BIND}:{GRPC_PORT}`, loopback by default.
    pub listen: String,
    /// TLS for the gRPC port (`GRPC_TLS_CERT`, `GRPC_TLS_KEY`); required off loopback.
    pub tls: Option<ServerTls>,
    pub health_addr: String,
    /// Names this instance's queues; unique per running instance (default `{hostname}-{GRPC_PORT}`).
    pub instance: String,
    pub buffer_ttl: Duration,
    pub buffer_max_messages: u32,
    /// `LOG_BUFFER_MAX_BYTES`: a session's ring keeps about this much (slots and text).
    pub buffer_max_bytes: usize,
    /// `LOG_INGEST_MAX_BYTES`: what this instance's queue holds while it is away.
    pub ingest_max_bytes: u64,
    pub debug_output: bool,
    pub max_clients: u64,
    /// Where sessions are looked up and stream tokens checked: PostgreSQL when configured,
    /// else the API.
    pub database: Option<postgres::Config>,
    pub api: Endpoint,
    /// This daemon's own token for the API (`MANMAN_TOKEN[_FILE]`; only without a database).
    pub api_token: Option<String>,
    /// Archival: on when both a database and `S3_BUCKET` are configured.
    pub archive: Option<S3Config>,
    pub archiver: ArchiverSettings,
    /// After a session ends, how long its feed waits for trailing lines.
    pub end_grace: Duration,
    pub grpc_threads: usize,
    /// `REQUIRE_HOST_BROKER_USERS`: lines only from the session's host's own broker user.
    pub require_host_users: bool,
}

impl LogsConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let grpc_port = env.port("GRPC_PORT", 50053)?;
        let instance = env.string(
            "LOG_PROCESSOR_INSTANCE",
            &format!("{}-{grpc_port}", config::hostname()),
        );
        if instance.is_empty()
            || !instance
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        {
            return Err(ConfigError::new(
                "LOG_PROCESSOR_INSTANCE",
                "must be letters, digits, - or _",
            ));
        }
        let buffer_ttl = env.seconds("LOG_BUFFER_TTL", 180)?;
        if buffer_ttl.is_zero() || buffer_ttl.as_millis() > u32::MAX as u128 / 2 {
            return Err(ConfigError::new(
                "LOG_BUFFER_TTL",
                "must be 1 .. 2000000 seconds",
            ));
        }
        let buffer_max_messages: u32 = env.parse("LOG_BUFFER_MAX_MESSAGES", 500)?;
        if !(1..=1_000_000).contains(&buffer_max_messages) {
            return Err(ConfigError::new(
                "LOG_BUFFER_MAX_MESSAGES",
                "must be 1 .. 1000000",
            ));
        }
        let buffer_max_bytes: usize = env.parse("LOG_BUFFER_MAX_BYTES", DEFAULT_MAX_BYTES)?;
        if !(1024..=64 * 1024 * 1024).contains(&buffer_max_bytes) {
            return Err(ConfigError::new(
                "LOG_BUFFER_MAX_BYTES",
                "must be 1024 .. 67108864",
            ));
        }
        let ingest_max_bytes: u64 = env.parse("LOG_INGEST_MAX_BYTES", 256 * 1024 * 1024)?;
        if ingest_max_bytes < 1024 * 1024 {
            return Err(ConfigError::new(
                "LOG_INGEST_MAX_BYTES",
                "must be at least 1048576",
            ));
        }
        let has_database = ["DATABASE_URL", "DB_HOST", "DB_NAME"]
            .iter()
            .any(|v| env.get(v).is_some());
        let database = if has_database {
            Some(config::database_config(env)?)
        } else {
            None
        };
        let archive = match (&database, env.get("S3_BUCKET")) {
            (Some(_), Some(_)) => Some(S3Config::from_env(env)?),
            _ => None,
        };
        let listen = config::listen_address(env, "GRPC_BIND", "GRPC_PORT", 50053)?;
        let tls = ServerTls::from_env(env)?;
        config::check_exposure(env, "GRPC_BIND", &listen, tls.is_some(), "the log stream")?;
        Ok(LogsConfig {
            rabbitmq_url: config::rabbitmq_url(env)?,
            external_exchange: env.string("EXTERNAL_EXCHANGE", routing::DEFAULT_EXTERNAL_EXCHANGE),
            listen,
            tls,
            health_addr: config::health_address(env, 8083)?,
            instance,
            buffer_ttl,
            buffer_max_messages,
            buffer_max_bytes,
            ingest_max_bytes,
            debug_output: env.flag("DEBUG_LOG_OUTPUT", false)?,
            max_clients: env.parse("LOG_MAX_CLIENTS", 1000)?,
            database,
            api: Endpoint::from_env(env, "API_ADDRESS", "127.0.0.1:50051")?,
            api_token: crate::grpc::client_token(env)?,
            archive,
            archiver: ArchiverSettings {
                grace: env.seconds("LOG_ARCHIVE_GRACE_SECONDS", 10)?,
                ..ArchiverSettings::default()
            },
            end_grace: Duration::from_secs(3),
            grpc_threads: env.parse("GRPC_THREADS", 2)?,
            require_host_users: env.flag("REQUIRE_HOST_BROKER_USERS", false)?,
        })
    }

    /// For tests and benchmarks: ephemeral ports, a unique instance name, the database for
    /// session lookups, no archival, short grace periods.
    #[cfg(any(test, feature = "testkit"))]
    pub fn embedded(rabbitmq_url: String, database: Option<postgres::Config>) -> Self {
        LogsConfig {
            rabbitmq_url,
            external_exchange: routing::DEFAULT_EXTERNAL_EXCHANGE.into(),
            listen: "127.0.0.1:0".into(),
            tls: None,
            health_addr: "127.0.0.1:0".into(),
            instance: crate::testkit::unique_name("lp"),
            buffer_ttl: Duration::from_secs(60),
            buffer_max_messages: 500,
            buffer_max_bytes: DEFAULT_MAX_BYTES,
            ingest_max_bytes: 64 * 1024 * 1024,
            debug_output: false,
            max_clients: 100,
            database,
            api: Endpoint::plain(""),
            api_token: None,
            archive: None,
            archiver: ArchiverSettings {
                grace: Duration::from_millis(500),
                ..ArchiverSettings::default()
            },
            end_grace: Duration::from_millis(300),
            grpc_threads: 2,
            require_host_users: false,
        }
    }

    fn ingest_args(&self) -> IngestQueueArgs {
        IngestQueueArgs {
            message_ttl_ms: self.buffer_ttl.as_millis() as u32,
            max_bytes: self.ingest_max_bytes,
            // The queue outlives restarts and upgrades; an instance gone for a day leaves none.
            expires_ms: 86_400_000,
        }
    }
}

pub struct RunningLogProcessor {
    pub grpc_port: u16,
    pub health_port: u16,
    pub registry: Arc<Registry>,
    pub metrics: Arc<LogMetrics>,
}

/// Wires every thread of the log processor into `supervisor`.
pub fn start(
    config: LogsConfig,
    supervisor: &mut Supervisor,
) -> Result<RunningLogProcessor, String> {
    log::info!(broker = config::redact_url(&config.rabbitmq_url).as_str(),
        instance = config.instance.as_str(), listen = config.listen.as_str(),
        archival = config.archive.is_some();
        "starting log processor");
    let metrics = Arc::new(LogMetrics::default());
    let pool = match &config.database {
        Some(db) => Some(db::pool(
            db.clone(),
            &PoolSettings {
                max_size: 4,
                min_idle: 1,
                // The archiver must not sit 30 s in a connect while its channel fills up.
                connect_timeout: Duration::from_secs(5),
                ..PoolSettings::default()
            },
        )?),
        None => None,
    };

    let archive_tx = match (&config.archive, &pool, &config.database) {
        (Some(s3), Some(pool), Some(database)) => {
            let store = ObjectStore::new(s3)
                .map_err(|e| format!("S3 configuration: {}", crate::errors::chain(&e)))?;
            // Console batches of up to a few hundred lines each.
            let (tx, rx) = crossbeam_channel::bounded(4_096);
            let archiver = Archiver::new(
                config.archiver.clone(),
                store,
                pool.clone(),
                database
                    .clone()
                    .connect_timeout(Duration::from_secs(5))
                    .to_owned(),
                metrics.clone(),
            );
            supervisor.spawn("archiver", move |s| archiver.run(rx, s))?;
            Some(tx)
        }
        _ => None,
    };

    let shutdown = supervisor.signal();
    let directory = || match &pool {
        Some(pool) => SessionDirectory::Database(pool.clone()),
        None => SessionDirectory::api(&config.api, config.api_token.clone()),
    };
    let registry = Arc::new(Registry::new(
        RegistrySettings {
            capacity: config.buffer_max_messages as usize,
            max_bytes: config.buffer_max_bytes,
            end_grace: config.end_grace,
            keep_after_end: config.buffer_ttl,
        },
        archive_tx.clone(),
        metrics.clone(),
    ));

    // Sessions already live (after a restart) get their buffers back at once.
    match directory().live_sessions() {
        Ok(ids) => {
            for id in ids {
                registry.session_started(id);
            }
        }
        Err(e) => log::warn!("cannot list live sessions: {}", crate::errors::chain(&e)),
    }

    let ingest_connected = Arc::new(AtomicBool::new(false));
    {
        let mut handler = IngestHandler::new(
            registry.clone(),
            &config.instance,
            config.ingest_args(),
            metrics.clone(),
        );
        handler.archive = archive_tx;
        handler.debug_echo = config.debug_output;
        handler.require_signed = config.require_host_users;
        handler.session_owner = Some({
            let directory = directory();
            Arc::new(move |session_id| Ok(directory.lookup(session_id)?.map(|info| info.server_id)))
                as OwnerLookup
        });
        let settings = ConsumerSettings {
            url: config.rabbitmq_url.clone(),
            queue: handler.queue.clone(),
            prefetch: 256,
            max_batch: 128,
            who: "log-ingest",
        };
        spawn_consumer(
            supervisor,
            "log-ingest",
            settings,
            handler,
            ingest_connected.clone(),
        )?;
    }

    let consumer_connected = Arc::new(AtomicBool::new(false));
    {
        let handler = events::SessionEventsHandler {
            registry: registry.clone(),
            queue: format!("log-processor-{}-events", config.instance),
            external_exchange: config.external_exchange.clone(),
        };
        let settings = ConsumerSettings {
            url: config.rabbitmq_url.clone(),
            queue: handler.queue.clone(),
            prefetch: 100,
            max_batch: 100,
            who: "log-events",
        };
        spawn_consumer(
            supervisor,
            "log-events",
            settings,
            handler,
            consumer_connected.clone(),
        )?;
    }

    {
        let registry = registry.clone();
        let directory = directory();
        supervisor.spawn("log-housekeeping", move |s| {
            let mut tick = 0u64;
            while !s.wait(Duration::from_secs(1)) {
                registry.reap();
                tick += 1;
                if tick.is_multiple_of(30) {
                    reconcile(&registry, &directory);
                }
            }
            registry.close_all();
            Ok(())
        })?;
    }

    let auth = Authenticator::new(match &pool {
        Some(pool) => TokenBackend::Database(pool.clone()),
        None => TokenBackend::Api(config.api.api_client()),
    });
    let service = LogStreamService::new(
        auth,
        registry.clone(),
        directory(),
        metrics.clone(),
        config.max_clients,
        shutdown,
    );
    let grpc_port = crate::grpc::serve(
        crate::proto::v1::create_log_processor(service),
        &config.listen,
        config.tls.as_ref(),
        config.grpc_threads,
        supervisor,
    )?;

    let health = {
        let m = metrics.clone();
        HealthServer::bind(
            &config.health_addr,
            vec![
                ReadinessCheck::flag(
                    "broker",
                    consumer_connected,
                    "session-events consumer is not connected",
                ),
                ReadinessCheck::flag(
                    "ingest",
                    ingest_connected,
                    "console-lines consumer is not connected",
                ),
            ],
            Some(Arc::new(move || m.render())),
        )?
    };
    let health_port = health.start(supervisor)?;
    log::info!(grpc_port = grpc_port, health_port = health_port; "log processor ready");
    Ok(RunningLogProcessor {
        grpc_port,
        health_port,
        registry,
        metrics,
    })
}

/// Ends the buffers of sessions the database says are over (an end event we missed while down).
fn reconcile(registry: &Registry, directory: &SessionDirectory) {
    for id in registry.open_sessions() {
        if let Ok(Some(info)) = directory.lookup(id) {
            if info.status.is_terminal() {
                registry.session_ended(id);
            }
        }
    }
}

/// A blocking client for the log processor (`LOG_PROCESSOR_ADDRESS`, the CLI uses it).
pub fn client(address: &str) -> crate::proto::v1::LogProcessorClient {
    crate::proto::v1::LogProcessorClient::new(crate::grpc::channel(address))
}
