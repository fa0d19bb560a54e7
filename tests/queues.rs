//! Durable queues against a real RabbitMQ: quorum queues dead-letter a message redelivered past
//! the delivery limit, and a move from classic to quorum interrupted half-way goes on where it
//! stopped, in order. Each test has its own vhost.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amiquip::{
    AmqpProperties, AmqpValue, Channel, ConsumerMessage, ConsumerOptions, Delivery, FieldTable,
    Publish, QueueDeclareOptions,
};
use manman::bus::durable_queue::{DurableQueue, Stage, DELIVERY_LIMIT};
use manman::bus::{spawn_consumer, BatchContext, BatchHandler, BusError, ConsumerSettings};
use manman::lifecycle::Supervisor;
use manman::testkit::{wait_for, ScratchVhost};

const T: Duration = Duration::from_secs(20);

fn spec() -> DurableQueue {
    DurableQueue {
        name: "work".into(),
        dead_letters_to: Some("work-dlq".into()),
        declare_dead_letter_queue: true,
        single_active_consumer: true,
        bindings: vec![("jobs".into(), "job.#".into())],
        arguments: FieldTable::new(),
    }
}

fn declare_exchange(channel: &Channel) {
    channel
        .exchange_declare(
            amiquip::ExchangeType::Topic,
            "jobs",
            amiquip::ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
        )
        .unwrap();
}

fn publish(channel: &Channel, exchange: &str, key: &str, body: &str) {
    channel
        .basic_publish(
            exchange,
            Publish::with_properties(
                body.as_bytes(),
                key,
                AmqpProperties::default().with_delivery_mode(2),
            ),
        )
        .unwrap();
}

#[test]
fn a_message_redelivered_past_the_limit_is_dead_lettered_with_the_reason() {
    let vhost = ScratchVhost::new("mmqueues");
    let mut conn = vhost.connect();
    let channel = conn.open_channel(None).unwrap();
    declare_exchange(&channel);
    assert_eq!(
        spec().prepare(&mut conn).unwrap(),
        vec![Stage::Consume("work".into())]
    );
    publish(&channel, "jobs", "job.1", "poison");
    publish(&channel, "jobs", "job.2", "fine");
    let consumer = channel
        .basic_consume("work", ConsumerOptions::default())
        .unwrap();
    let mut poison_deliveries = 0;
    let mut fine = 0;
    while let Ok(ConsumerMessage::Delivery(d)) =
        consumer.receiver().recv_timeout(Duration::from_secs(2))
    {
        if d.body == b"poison" {
            // A consumer that fails on it every time (as one crashing would).
            poison_deliveries += 1;
            consumer.nack(d, true).unwrap();
        } else {
            fine += 1;
            consumer.ack(d).unwrap();
        }
    }
    assert_eq!(fine, 1, "the message behind it flows");
    assert_eq!(poison_deliveries, DELIVERY_LIMIT + 1);
    let dead = channel
        .basic_get("work-dlq", false)
        .unwrap()
        .expect("dead-lettered");
    assert_eq!(dead.delivery.body, b"poison");
    let headers = dead.delivery.properties.headers().clone().unwrap();
    assert!(
        matches!(headers.get("x-first-death-reason"), Some(AmqpValue::LongString(r)) if r == "delivery_limit"),
        "{headers:?}"
    );
    let _ = conn.close();
}

/// Records what it is given, in order, and acknowledges it.
struct Recorder {
    seen: Arc<Mutex<Vec<String>>>,
}

impl BatchHandler for Recorder {
    fn declare(&mut self, channel: &Channel) -> Result<(), BusError> {
        declare_exchange(channel);
        Ok(())
    }

    fn durable_queue(&self) -> Option<DurableQueue> {
        Some(spec())
    }

    fn handle(&mut self, ctx: &mut BatchContext<'_>, batch: Vec<Delivery>) -> Result<(), BusError> {
        let mut seen = self.seen.lock().unwrap();
        let mut last = None;
        for d in batch {
            seen.push(String::from_utf8_lossy(&d.body).into_owned());
            last = Some(d);
        }
        if let Some(d) = last {
            ctx.ack_through(d)?;
        }
        Ok(())
    }
}

fn queue_exists(vhost: &ScratchVhost, name: &str) -> bool {
    let mut conn = vhost.connect();
    let exists = conn
        .open_channel(None)
        .unwrap()
        .queue_declare_passive(name)
        .is_ok();
    let _ = conn.close();
    exists
}

/// Runs the batch consumer with a [`Recorder`] until it has seen `n` messages.
fn consume(vhost: &ScratchVhost, n: usize) -> Vec<String> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut sup = Supervisor::new();
    let settings = ConsumerSettings {
        url: vhost.url(),
        queue: "work".into(),
        prefetch: 10,
        max_batch: 3,
        who: "test",
    };
    let recorder = Recorder { seen: seen.clone() };
    spawn_consumer(
        &mut sup,
        "consumer",
        settings,
        recorder,
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    let stop = sup.stop_handle();
    let thread = std::thread::spawn(move || sup.run(Duration::from_secs(10)));
    let all = wait_for("every message consumed", T, || {
        let seen = seen.lock().unwrap();
        (seen.len() >= n).then(|| seen.clone())
    });
    wait_for("the migrating queue deleted", T, || {
        (!queue_exists(vhost, "work-migrating")).then_some(())
    });
    stop.stop();
    thread.join().unwrap();
    all
}

#[test]
fn a_move_to_quorum_interrupted_after_the_new_queue_goes_on_in_order() {
    let vhost = ScratchVhost::new("mmqueues");
    let mut conn = vhost.connect();
    let channel = conn.open_channel(None).unwrap();
    declare_exchange(&channel);
    // As a consumer that died in stage 3 left it: the quorum queue declared and bound, the
    // migrating queue still holding older messages.
    spec().prepare(&mut conn).unwrap();
    channel
        .queue_declare(
            "work-migrating",
            QueueDeclareOptions {
                durable: true,
                arguments: spec().quorum_arguments(false),
                ..Default::default()
            },
        )
        .unwrap();
    for body in ["a1", "a2", "a3", "a4"] {
        publish(&channel, "", "work-migrating", body);
    }
    for body in ["b1", "b2", "b3"] {
        publish(&channel, "jobs", "job.x", body);
    }
    let _ = conn.close();
    assert_eq!(
        consume(&vhost, 7),
        ["a1", "a2", "a3", "a4", "b1", "b2", "b3"],
        "what waited in the migrating queue first"
    );
}

#[test]
fn a_classic_queue_with_a_backlog_moves_to_quorum_in_order() {
    let vhost = ScratchVhost::new("mmqueues");
    let mut conn = vhost.connect();
    let channel = conn.open_channel(None).unwrap();
    declare_exchange(&channel);
    let q = channel
        .queue_declare(
            "work",
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
        )
        .unwrap();
    q.bind(
        &channel.exchange_declare_passive("jobs").unwrap(),
        "job.#",
        FieldTable::new(),
    )
    .unwrap();
    let backlog: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    for body in &backlog {
        publish(&channel, "jobs", "job.x", body);
    }
    let _ = conn.close();
    assert_eq!(consume(&vhost, 50), backlog);
    // Quorum now: declaring it with its quorum arguments is accepted as it is, and it is
    // bound (a message published now reaches it).
    let mut conn = vhost.connect();
    let channel = conn.open_channel(None).unwrap();
    channel
        .queue_declare(
            "work",
            QueueDeclareOptions {
                durable: true,
                arguments: spec().quorum_arguments(true),
                ..Default::default()
            },
        )
        .expect("work is a quorum queue");
    publish(&channel, "jobs", "job.y", "after");
    assert_eq!(consume(&vhost, 1), ["after"]);
    let _ = conn.close();
}
