//! Test support: a private database and RabbitMQ vhost per test, polling, and a cuttable TCP
//! proxy for simulating an unreachable PostgreSQL. Everything is cleaned up on drop.
#![allow(dead_code)]

pub mod hostile;
pub mod proxy;
pub mod stack;
pub mod webdriver;

use std::time::Duration;

use manman::lifecycle::{StopHandle, Supervisor};
use manman::wire::{HostStatus, SessionStatus};

use amiquip::{
    AmqpProperties, Connection, ConsumerMessage, ConsumerOptions, Exchange, ExchangeDeclareOptions,
    ExchangeType, FieldTable, Publish, QueueDeclareOptions,
};

#[allow(unused_imports)]
pub use manman::testkit::{unique_name, wait_for};

/// A fresh, migrated database for one test.
pub struct TestDb(manman::testkit::ScratchDb);

impl TestDb {
    pub fn new() -> TestDb {
        TestDb(manman::testkit::ScratchDb::new("mmtest"))
    }
}

impl std::ops::Deref for TestDb {
    type Target = manman::testkit::ScratchDb;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// A private vhost for one test.
pub struct TestVhost(manman::testkit::ScratchVhost);

impl TestVhost {
    pub fn new() -> TestVhost {
        TestVhost(manman::testkit::ScratchVhost::new("mmtest"))
    }

    /// Forcibly closes every client connection in this vhost (a broker-side drop).
    pub fn close_all_connections(&self) {
        manman::testkit::rabbitmqctl(&[
            "close_all_connections",
            "--vhost",
            &self.name,
            "--limit",
            "1000",
            "test: simulated broker drop",
        ]);
    }
}

impl std::ops::Deref for TestVhost {
    type Target = manman::testkit::ScratchVhost;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

pub fn declare_topic<'a>(channel: &'a amiquip::Channel, name: &str) -> Exchange<'a> {
    channel
        .exchange_declare(
            ExchangeType::Topic,
            name,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
        )
        .unwrap()
}

/// Publishes JSON to an exchange, like a host would.
pub struct TestPublisher {
    _conn: Connection,
    channel: amiquip::Channel,
}

impl TestPublisher {
    pub fn new(vhost: &TestVhost) -> TestPublisher {
        let mut conn = vhost.connect();
        let channel = conn.open_channel(None).unwrap();
        declare_topic(&channel, "manman");
        TestPublisher {
            _conn: conn,
            channel,
        }
    }

    pub fn publish(&self, key: &str, body: &str, message_id: Option<&str>) {
        self.publish_with(key, body.as_bytes(), message_id);
    }

    /// A body as it is (console batches are bytes already).
    pub fn publish_bytes(&self, key: &str, body: Vec<u8>) {
        self.publish_with(key, &body, None);
    }

    fn publish_with(&self, key: &str, body: &[u8], message_id: Option<&str>) {
        let mut props = AmqpProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
        if let Some(id) = message_id {
            props = props.with_message_id(id.to_string());
        }
        self.channel
            .basic_publish("manman", Publish::with_properties(body, key, props))
            .unwrap();
    }

    /// JSON signed with AMQP `user_id` `user` (the broker refuses one that is not ours).
    pub fn publish_json_signed(&self, key: &str, body: serde_json::Value, user: &str) {
        let props = AmqpProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_user_id(user.to_string());
        self.channel
            .basic_publish(
                "manman",
                Publish::with_properties(body.to_string().as_bytes(), key, props),
            )
            .unwrap();
    }

    pub fn publish_json(&self, key: &str, body: serde_json::Value) {
        self.publish(key, &body.to_string(), Some(&unique_name("msg")));
    }
}

/// A received message: routing key, JSON body, headers.
#[derive(Debug, Clone)]
pub struct Received {
    pub routing_key: String,
    pub body: serde_json::Value,
    pub raw: Vec<u8>,
    pub headers: FieldTable,
}

/// Collects messages from a queue on a background thread.
pub struct Collector {
    rx: crossbeam_channel::Receiver<Received>,
    _thread: std::thread::JoinHandle<()>,
}

impl Collector {
    /// An exclusive queue bound to `exchange` with `pattern`.
    pub fn bind(vhost: &TestVhost, exchange: &str, pattern: &str) -> Collector {
        Self::start(
            vhost,
            Some((exchange.to_string(), pattern.to_string())),
            None,
            false,
        )
    }

    /// Every console line hosts publish (`logs.session.*` batches), one `Received` per line
    /// with a body of `session_id` and the line's fields.
    pub fn console_lines(vhost: &TestVhost) -> Collector {
        Self::start(
            vhost,
            Some(("manman".to_string(), "logs.session.#".to_string())),
            None,
            true,
        )
    }

    /// Reads a queue by name (e.g. a DLQ).
    pub fn queue(vhost: &TestVhost, queue: &str) -> Collector {
        Self::start(vhost, None, Some(queue.to_string()), false)
    }

    fn start(
        vhost: &TestVhost,
        bind: Option<(String, String)>,
        queue: Option<String>,
        flatten_batches: bool,
    ) -> Collector {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let url = vhost.url();
        let thread = std::thread::spawn(move || {
            let mut conn = manman::bus::connection::open(&url).unwrap();
            // A queue the daemon under test already declared is taken as it is (with its own
            // arguments); otherwise it is declared durable, as the daemon will.
            let exists = queue.as_ref().is_some_and(|name| {
                let probe = conn.open_channel(None).unwrap();
                probe.queue_declare_passive(name.clone()).is_ok()
            });
            let channel = conn.open_channel(None).unwrap();
            let q = match (&bind, &queue) {
                (Some((exchange, pattern)), _) => {
                    let ex = declare_topic(&channel, exchange);
                    let q = channel
                        .queue_declare(
                            "",
                            QueueDeclareOptions {
                                exclusive: true,
                                ..Default::default()
                            },
                        )
                        .unwrap();
                    q.bind(&ex, pattern.clone(), FieldTable::new()).unwrap();
                    q
                }
                (None, Some(name)) if exists => {
                    channel.queue_declare_passive(name.clone()).unwrap()
                }
                (None, Some(name)) => channel
                    .queue_declare(
                        name.clone(),
                        QueueDeclareOptions {
                            durable: true,
                            ..Default::default()
                        },
                    )
                    .unwrap(),
                _ => unreachable!(),
            };
            let consumer = q
                .consume(ConsumerOptions {
                    no_ack: true,
                    ..Default::default()
                })
                .unwrap();
            ready_tx.send(()).unwrap();
            for msg in consumer.receiver().iter() {
                match msg {
                    ConsumerMessage::Delivery(d) => {
                        let body: serde_json::Value =
                            serde_json::from_slice(&d.body).unwrap_or(serde_json::Value::Null);
                        let bodies = match body["lines"].as_array() {
                            Some(lines) if flatten_batches => lines
                                .iter()
                                .map(|l| {
                                    let mut line = l.clone();
                                    line["session_id"] = body["session_id"].clone();
                                    line
                                })
                                .collect(),
                            _ => vec![body],
                        };
                        for body in bodies {
                            let received = Received {
                                routing_key: d.routing_key.clone(),
                                body,
                                raw: d.body.clone(),
                                headers: d.properties.headers().clone().unwrap_or_default(),
                            };
                            if tx.send(received).is_err() {
                                return;
                            }
                        }
                    }
                    _ => break,
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("collector ready");
        Collector {
            rx,
            _thread: thread,
        }
    }

    pub fn next(&self, timeout: Duration) -> Option<Received> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Waits for the next message or panics.
    pub fn expect(&self, what: &str) -> Received {
        self.next(Duration::from_secs(15))
            .unwrap_or_else(|| panic!("no message arrived: expected {what}"))
    }

    /// Console lines of `session` that the test game echoed back (`echo: …`), in order, up to
    /// and with `until` (from a [`console_lines`](Self::console_lines) collector).
    pub fn echoed_until(&self, session: i64, until: &str) -> Vec<String> {
        let mut seen = Vec::new();
        wait_for(
            &format!("console line {until:?}"),
            Duration::from_secs(30),
            || {
                while let Some(l) = self.next(Duration::from_millis(200)) {
                    let text = l.body["message"].as_str().unwrap_or_default().to_string();
                    if l.body["session_id"] == session && text.starts_with("echo: ") {
                        seen.push(text);
                    }
                }
                seen.iter().any(|l| l == until).then_some(())
            },
        );
        seen
    }

    /// Everything that arrives within `quiet` of the previous message.
    pub fn drain(&self, quiet: Duration) -> Vec<Received> {
        let mut all = Vec::new();
        while let Some(m) = self.next(quiet) {
            all.push(m);
        }
        all
    }
}

/// The header's string value, if present.
pub fn header(received: &Received, name: &str) -> Option<String> {
    match received.headers.get(name)? {
        amiquip::AmqpValue::LongString(s) => Some(s.clone()),
        other => Some(format!("{other:?}")),
    }
}

/// One HTTP/1.1 request on a fresh connection: (status code, body).
pub fn http_request(port: u16, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// GET, expecting JSON: (status, parsed body).
pub fn get_json(port: u16, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = http_request(port, "GET", path);
    let json = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{path} answered non-JSON ({e}): {body}"));
    (status, json)
}

/// A host row in `status`.
pub fn add_host(c: &mut postgres::Client, status: HostStatus) -> i64 {
    c.query_one(
        "INSERT INTO servers (name, status, last_seen) VALUES ($1, $2, CASE WHEN $2 = 'online' THEN now() END)
         RETURNING server_id",
        &[&unique_name("host"), &status.as_str()],
    )
    .unwrap()
    .get(0)
}

/// A session on `server_id` in `status`, holding `ports`. Returns (sgc_id, session_id).
pub fn add_session(
    c: &mut postgres::Client,
    server_id: i64,
    status: SessionStatus,
    ports: &[i32],
) -> (i64, i64) {
    let game: i64 = c
        .query_one(
            "INSERT INTO games (name) VALUES ($1) RETURNING game_id",
            &[&unique_name("game")],
        )
        .unwrap()
        .get(0);
    let config: i64 = c
        .query_one(
            "INSERT INTO game_configs (game_id, name, command) VALUES ($1, 'default', '/bin/true')
             RETURNING config_id",
            &[&game],
        )
        .unwrap()
        .get(0);
    let sgc: i64 = c
        .query_one(
            "INSERT INTO server_game_configs (server_id, game_config_id) VALUES ($1, $2) RETURNING sgc_id",
            &[&server_id, &config],
        )
        .unwrap()
        .get(0);
    let session: i64 = c
        .query_one(
            "INSERT INTO sessions (sgc_id, status) VALUES ($1, $2) RETURNING session_id",
            &[&sgc, &status.as_str()],
        )
        .unwrap()
        .get(0);
    for port in ports {
        c.execute(
            "INSERT INTO server_ports (server_id, port, session_id) VALUES ($1, $2, $3)",
            &[&server_id, port, &session],
        )
        .unwrap();
    }
    (sgc, session)
}

/// A supervisor running on its own thread, stopped (and drained) on drop.
pub struct Daemon {
    stop: StopHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    pub fn run(sup: Supervisor) -> Daemon {
        let stop = sup.stop_handle();
        let thread = std::thread::spawn(move || {
            sup.run(Duration::from_secs(30));
        });
        Daemon {
            stop,
            thread: Some(thread),
        }
    }

    pub fn shutdown(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A host row with an id of the test's own choosing (for ids no other test uses).
pub fn add_host_with_id(c: &mut postgres::Client, server_id: i64) {
    c.execute(
        "INSERT INTO servers (server_id, name, status) VALUES ($1, $2, 'online')",
        &[&server_id, &unique_name("host")],
    )
    .unwrap();
}

/// A host's own broker user, made by `scripts/provision-host-broker-user` (the script under
/// test) and deleted on drop: users are broker-wide, not per vhost, so a test gives them
/// server ids no other test uses.
pub struct HostBrokerUser {
    pub name: String,
    /// The `RABBITMQ_URL` the script wrote for the host.
    pub url: String,
}

impl HostBrokerUser {
    pub fn provision(server_id: i64, vhost: &TestVhost) -> HostBrokerUser {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(unique_name("mmbroker-user"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("broker.env");
        let out = std::process::Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/provision-host-broker-user"
        ))
        .args([&server_id.to_string(), &vhost.name, file.to_str().unwrap()])
        .output()
        .unwrap();
        // Made before the checks, so a failed one still deletes the user.
        let mut user = HostBrokerUser {
            name: manman::wire::routing::host_broker_user(server_id),
            url: String::new(),
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        user.url = std::fs::read_to_string(&file)
            .unwrap()
            .trim()
            .strip_prefix("RABBITMQ_URL=")
            .unwrap()
            .to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        user
    }

    /// Publishes one JSON message on `manman` as this user, with its AMQP `user_id` when
    /// `signed`; the broker's answer (a refused routing key closes the channel).
    pub fn publish(
        &self,
        signed: bool,
        key: &str,
        body: &serde_json::Value,
    ) -> Result<(), manman::bus::BusError> {
        let mut conn = manman::bus::connection::open(&self.url).unwrap();
        let channel = conn.open_channel(None).unwrap();
        let user = signed
            .then(|| manman::bus::broker_user(&self.url))
            .flatten();
        let mut publisher = manman::bus::ConfirmedPublisher::new(channel)?.signed_as(user);
        let result = publisher.publish_all(
            &[manman::bus::OutgoingMessage::json("manman", key, body)],
            Duration::from_secs(5),
        );
        let _ = conn.close();
        result
    }
}

impl Drop for HostBrokerUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["-q", "delete_user", &self.name])
            .output();
    }
}

/// The check called `name` in a `--json` report of `manman doctor` or `manman-host --check`.
pub fn check_named(report: &serde_json::Value, name: &str) -> serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name} check: {report}"))
}
