//! manman-notify against a real broker and a real local webhook that fails for a while.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use manman::lifecycle::{StopHandle, Supervisor};
use manman::notify::{self, NotifyConfig, RunningNotifier};
use manman::retry::Backoff;
use serde_json::{json, Value};
use support::*;

/// A webhook on loopback that answers 500 to its first `failures` posts, then 200; every
/// body it accepts is sent down the returned channel.
fn webhook(failures: u32) -> (String, crossbeam_channel::Receiver<Value>, Arc<AtomicU32>) {
    let (url, rx, calls, _) = webhook_with_signatures(failures);
    (url, rx, calls)
}

/// Each accepted post's `X-ManMan-Signature` and raw body.
type Signed = crossbeam_channel::Receiver<(Option<String>, String)>;

/// [`webhook`], also handing over each accepted post's signature header and raw body.
fn webhook_with_signatures(
    failures: u32,
) -> (
    String,
    crossbeam_channel::Receiver<Value>,
    Arc<AtomicU32>,
    Signed,
) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/hook",
        server.server_addr().to_ip().unwrap().port()
    );
    let (tx, rx) = crossbeam_channel::unbounded();
    let (signed_tx, signed_rx) = crossbeam_channel::unbounded();
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    std::thread::spawn(move || {
        for mut request in server.incoming_requests() {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let mut body = String::new();
            let _ = request.as_reader().read_to_string(&mut body);
            if n < failures {
                let _ =
                    request.respond(tiny_http::Response::from_string("down").with_status_code(500));
            } else {
                let signature = request
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv(notify::SIGNATURE_HEADER))
                    .map(|h| h.value.to_string());
                let _ = signed_tx.send((signature, body.clone()));
                let _ = tx.send(serde_json::from_str(&body).unwrap());
                let _ = request.respond(tiny_http::Response::from_string("ok"));
            }
        }
    });
    (url, rx, calls, signed_rx)
}

struct Notifier {
    running: RunningNotifier,
    stop: StopHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start(vhost: &TestVhost, url: &str, attempts: u32) -> Notifier {
    start_signing(vhost, url, attempts, None)
}

fn start_signing(vhost: &TestVhost, url: &str, attempts: u32, secret: Option<&str>) -> Notifier {
    let config = NotifyConfig {
        rabbitmq_url: vhost.url(),
        external_exchange: "external".into(),
        webhook_url: url.into(),
        notify_patterns: vec!["manman.session.crashed".into(), "manman.host.*".into()],
        attempts,
        backoff: Backoff::new(Duration::from_millis(20), Duration::from_millis(200), 2.0),
        webhook_timeout: Duration::from_secs(5),
        health_addr: "127.0.0.1:0".into(),
        webhook_secret: secret.map(str::to_string),
    };
    let mut sup = Supervisor::new();
    let running = notify::start(config, &mut sup).unwrap();
    let stop = sup.stop_handle();
    let thread = std::thread::spawn(move || {
        sup.run(Duration::from_secs(10));
    });
    wait_for("notifier connected", Duration::from_secs(20), || {
        running.connected.load(Ordering::SeqCst).then_some(())
    });
    Notifier {
        running,
        stop,
        thread: Some(thread),
    }
}

fn publish_external(vhost: &TestVhost, key: &str, body: Value) {
    let mut conn = vhost.connect();
    let ch = conn.open_channel(None).unwrap();
    let ex = declare_topic(&ch, "external");
    ex.publish(amiquip::Publish::new(body.to_string().as_bytes(), key))
        .unwrap();
    let _ = conn.close();
}

#[test]
fn a_webhook_outage_is_ridden_out_and_only_chosen_events_are_posted() {
    let vhost = TestVhost::new();
    let (url, posted, calls) = webhook(3);
    let n = start(&vhost, &url, 8);

    publish_external(
        &vhost,
        "manman.session.running",
        json!({"session_id": 1, "server_id": 2}),
    );
    publish_external(
        &vhost,
        "manman.session.crashed",
        json!({"session_id": 7, "server_id": 2, "exit_code": 137}),
    );
    let body = posted
        .recv_timeout(Duration::from_secs(20))
        .expect("crash notification");
    assert_eq!(
        body["event"], "manman.session.crashed",
        "running was not posted"
    );
    assert_eq!(
        body["text"],
        ":boom: session 7 on host 2 crashed (exit code 137)"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "three failures, then success"
    );
    wait_for("delivery counted", Duration::from_secs(10), || {
        (n.running.metrics.delivered.get() == 1).then_some(())
    });
    assert_eq!(n.running.metrics.retries.get(), 3);
    assert_eq!(
        n.running.metrics.events.get(),
        2,
        "every event is seen (and logged)"
    );

    publish_external(
        &vhost,
        "manman.host.stale",
        json!({"server_id": 3, "name": "beta"}),
    );
    let body = posted.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(body["text"]
        .as_str()
        .unwrap()
        .contains("beta stopped sending heartbeats"));
}

#[test]
fn a_webhook_that_stays_down_sends_the_event_to_the_dlq_with_the_reason() {
    let vhost = TestVhost::new();
    let (url, posted, calls) = webhook(u32::MAX);
    let dlq = Collector::queue(&vhost, "notify-events-dlq");
    let n = start(&vhost, &url, 3);

    publish_external(
        &vhost,
        "manman.host.offline",
        json!({"server_id": 5, "name": "gamma"}),
    );
    let dead = dlq.expect("dead-lettered notification");
    assert_eq!(
        header(&dead, "x-manman-dead-letter-reason").as_deref(),
        Some("gave up after 3 attempts: webhook answered HTTP 500")
    );
    assert_eq!(dead.body["name"], "gamma", "the original event is kept");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(posted.try_recv().is_err());
    wait_for("dead letter counted", Duration::from_secs(10), || {
        (n.running.metrics.dead_lettered.get() == 1).then_some(())
    });
}

#[test]
fn posts_are_signed_with_the_webhook_secret() {
    let vhost = TestVhost::new();
    let (url, posted, _, signed) = webhook_with_signatures(0);
    let _n = start_signing(&vhost, &url, 3, Some("whsec-test"));
    publish_external(
        &vhost,
        "manman.session.crashed",
        json!({"session_id": 7, "server_id": 2, "exit_code": 1}),
    );
    let body = posted
        .recv_timeout(Duration::from_secs(20))
        .expect("a post");
    let (signature, raw) = signed.recv_timeout(Duration::from_secs(1)).unwrap();
    let signature = signature.expect("an X-ManMan-Signature header");
    let t: i64 = signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split(',').next())
        .and_then(|t| t.parse().ok())
        .expect("t=<unix seconds>");
    assert!((chrono::Utc::now().timestamp() - t).abs() < 60);
    // The receiver's check: the same HMAC over "<t>.<raw body>" with the shared secret.
    assert_eq!(
        signature,
        notify::signature("whsec-test", t, raw.as_bytes())
    );
    assert_ne!(
        signature,
        notify::signature("another-secret", t, raw.as_bytes())
    );
    assert_eq!(
        body["text"],
        ":boom: session 7 on host 2 crashed (exit code 1)"
    );
}
