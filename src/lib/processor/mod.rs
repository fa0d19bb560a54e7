//! `manman-processor`: consumes host events, keeps PostgreSQL true to the session and host
//! state machines, publishes external events through an outbox, and detects stale hosts.
//!
//! Threads: `consumer` (batches → one transaction each → ack), `outbox-relay` (outbox →
//! external exchange with confirms), `stale-checker`, `health`.

pub mod handlers;
pub mod metrics;
pub mod pipeline;
pub mod relay;
pub mod stale;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::bus::{spawn_consumer, ConsumerSettings};
use crate::config::{self, ConfigError, Env};
use crate::db::{self, PoolSettings};
use crate::health::{HealthServer, ReadinessCheck};
use crate::lifecycle::Supervisor;
use crate::wire::routing;

pub use metrics::ProcessorMetrics;

#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    pub rabbitmq_url: String,
    pub database: postgres::Config,
    pub external_exchange: String,
    pub stale_threshold: Duration,
    pub stale_interval: Duration,
    /// A host offline for longer than this loses its live sessions (`HOST_LOST_AFTER_SECONDS`).
    pub host_lost_after: Duration,
    /// Address of the health server (`{HEALTH_BIND}:{HEALTH_PORT}`, loopback by default).
    pub health_addr: String,
    pub prefetch: u16,
    pub max_batch: usize,
    pub pool: PoolSettings,
    /// Each host publishes as its own broker user (`REQUIRE_HOST_BROKER_USERS`): a host's and
    /// a session's events are then accepted only when signed (AMQP `user_id`, checked by the
    /// broker) by the user of the host they concern, `manman-host-{server_id}`.
    pub require_host_users: bool,
    /// Usage history: one point per session per `history_resolution`
    /// (`SAMPLE_HISTORY_RESOLUTION_SECONDS`, 60), kept `history_keep` (`SAMPLE_HISTORY_DAYS`, 7).
    pub history_resolution: Duration,
    pub history_keep: Duration,
}

impl ProcessorConfig {
    /// For running the processor inside another program (tests, benchmarks): the contract's
    /// external exchange, an ephemeral loopback health port, stale-host checks effectively
    /// off (hourly, one-hour threshold), default batching and pool.
    #[cfg(any(test, feature = "testkit"))]
    pub fn embedded(rabbitmq_url: String, database: postgres::Config) -> Self {
        ProcessorConfig {
            rabbitmq_url,
            database,
            external_exchange: routing::DEFAULT_EXTERNAL_EXCHANGE.into(),
            stale_threshold: Duration::from_secs(3600),
            stale_interval: Duration::from_secs(3600),
            host_lost_after: Duration::from_secs(120),
            health_addr: "127.0.0.1:0".into(),
            prefetch: 500,
            max_batch: 200,
            pool: PoolSettings::default(),
            require_host_users: false,
            // A point per heartbeat: tests see a series in seconds, not minutes.
            history_resolution: Duration::from_secs(1),
            history_keep: Duration::from_secs(7 * 86_400),
        }
    }

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(ProcessorConfig {
            rabbitmq_url: config::rabbitmq_url(env)?,
            database: config::database_config(env)?,
            external_exchange: env.string("EXTERNAL_EXCHANGE", routing::DEFAULT_EXTERNAL_EXCHANGE),
            stale_threshold: env.seconds("STALE_HOST_THRESHOLD_SECONDS", 10)?,
            stale_interval: env.seconds("STALE_CHECK_INTERVAL_SECONDS", 60)?,
            host_lost_after: env.seconds("HOST_LOST_AFTER_SECONDS", 120)?,
            health_addr: config::health_address(env, 8080)?,
            prefetch: env.parse("PROCESSOR_PREFETCH", 500)?,
            max_batch: env.parse("PROCESSOR_MAX_BATCH", 200)?,
            pool: PoolSettings::default(),
            require_host_users: env.flag("REQUIRE_HOST_BROKER_USERS", false)?,
            history_resolution: env.seconds("SAMPLE_HISTORY_RESOLUTION_SECONDS", 60)?,
            history_keep: match env.parse::<u64>("SAMPLE_HISTORY_DAYS", 7)? {
                days @ 1..=3650 => Duration::from_secs(86_400 * days),
                _ => return Err(ConfigError::new("SAMPLE_HISTORY_DAYS", "must be 1 to 3650")),
            },
        })
    }
}

/// What a running processor exposes to its embedder (the binary, or a test).
pub struct RunningProcessor {
    pub metrics: Arc<ProcessorMetrics>,
    pub health_port: u16,
    pub consumer_connected: Arc<AtomicBool>,
}

/// Connects to the database (failing fast if it is unreachable), binds the health port, and
/// spawns the processor's threads under `supervisor`.
pub fn start(
    config: ProcessorConfig,
    supervisor: &mut Supervisor,
) -> Result<RunningProcessor, String> {
    log::info!(database = config::describe_database(&config.database).as_str(),
        broker = config::redact_url(&config.rabbitmq_url).as_str(); "starting processor");
    let pool = db::pool(config.database.clone(), &config.pool)?;
    let metrics = Arc::new(ProcessorMetrics::default());
    let connected = Arc::new(AtomicBool::new(false));
    let (wake_tx, wake_rx) = crossbeam_channel::bounded(1);

    let health = {
        let pool = pool.clone();
        let connected = connected.clone();
        let m = metrics.clone();
        let counted = pool.clone();
        HealthServer::bind(
            &config.health_addr,
            vec![
                ReadinessCheck::new("database", move || Ok(db::ping(&pool)?)),
                ReadinessCheck::flag("broker", connected, "consumer is not connected"),
            ],
            Some(Arc::new(move || {
                m.render() + &metrics::render_state_gauges(&counted)
            })),
        )?
    };
    let health_port = health.start(supervisor)?;

    let settings = ConsumerSettings {
        url: config.rabbitmq_url.clone(),
        queue: routing::PROCESSOR_QUEUE.into(),
        prefetch: config.prefetch,
        max_batch: config.max_batch.max(1),
        who: "processor-consumer",
    };
    let pipeline = pipeline::EventPipeline::new(
        pool.clone(),
        metrics.clone(),
        wake_tx.clone(),
        handlers::SenderCheck {
            require_host_users: config.require_host_users,
        },
        i32::try_from(config.history_resolution.as_secs()).unwrap_or(i32::MAX),
    );
    spawn_consumer(
        supervisor,
        "consumer",
        settings,
        pipeline,
        connected.clone(),
    )?;

    let relay = relay::OutboxRelay {
        rabbitmq_url: config.rabbitmq_url.clone(),
        exchange: config.external_exchange.clone(),
        pool: pool.clone(),
        wakeup: wake_rx,
        metrics: metrics.clone(),
    };
    supervisor.spawn("outbox-relay", move |s| relay.run(&s))?;

    let checker = stale::StaleHostChecker {
        pool,
        threshold: config.stale_threshold,
        interval: config.stale_interval,
        host_lost_after: config.host_lost_after,
        history_keep: config.history_keep,
        started: std::time::Instant::now(),
        relay_wakeup: wake_tx,
        metrics: metrics.clone(),
    };
    supervisor.spawn("stale-checker", move |s| checker.run(&s))?;

    Ok(RunningProcessor {
        metrics,
        health_port,
        consumer_connected: connected,
    })
}
