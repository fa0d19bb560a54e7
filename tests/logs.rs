//! The log processor against the real broker, PostgreSQL and S3 server (moto on loopback):
//! fan-out, backlog, resume, queue arguments, slow clients, archival and its retries, history,
//! bad requests, dead letters.

mod support;

use std::sync::Arc;
use std::time::Duration;

use grpcio::RpcStatusCode;
use manman::api::history::historical_logs;
use manman::db::{self, PoolSettings};
use manman::lifecycle::Supervisor;
use manman::logs::{self, LogsConfig, RunningLogProcessor};
use manman::logstore::{decode_object, minute_of, object_key, S3Config};
use manman::proto::v1 as pb;
use manman::testkit::ScratchBucket;
use manman::wire::{routing, ConsoleBatch, ConsoleLine, HostStatus, SessionStatus};
use serde_json::json;
use support::proxy::TcpProxy;
use support::*;

const WAIT: Duration = Duration::from_secs(30);
/// A viewer token each test's database holds (put there by `start`).
const VIEWER: &str = "mm_tok_logs_test_viewer";

fn viewer() -> grpcio::CallOption {
    manman::grpc::authorized(Some(VIEWER))
}

struct LogStack {
    running: RunningLogProcessor,
    client: pb::LogProcessorClient,
    instance: String,
    _daemon: Daemon,
}

fn config(vhost: &TestVhost, db: &TestDb, capacity: u32, archive: Option<S3Config>) -> LogsConfig {
    LogsConfig {
        buffer_max_messages: capacity,
        // These tests count lines; the byte bound has its own (unit) test.
        buffer_max_bytes: 64 * 1024 * 1024,
        archive,
        ..LogsConfig::embedded(vhost.url(), Some(db.config.clone()))
    }
}

fn start(config: LogsConfig) -> LogStack {
    let instance = config.instance.clone();
    if let Some(db) = &config.database {
        let mut c = db.connect(postgres::NoTls).unwrap();
        let digest = manman::auth::secret::digest(VIEWER);
        manman::db::tokens::insert(&mut c, "viewer", "viewer", &digest, None, None).unwrap();
    }
    let mut sup = Supervisor::new();
    let running = logs::start(config, &mut sup).unwrap();
    // Ready once its session-events queue is bound: an event published before would be lost.
    wait_for("the log processor ready", WAIT, || {
        manman::testkit::http_get(running.health_port, "/readyz")
            .starts_with("HTTP/1.1 200")
            .then_some(())
    });
    let client = logs::client(&format!("127.0.0.1:{}", running.grpc_port));
    LogStack {
        running,
        client,
        instance,
        _daemon: Daemon::run(sup),
    }
}

impl LogStack {
    /// The session's buffer, as its `running` event would make it. (Lines need no such
    /// step: the instance's queue is bound before `/readyz` answers.)
    fn buffer(&self, session_id: i64) -> Arc<logs::SessionLog> {
        self.running.registry.session_started(session_id)
    }

    /// Every message of a stream until it ends (backlog_only) or `n` lines arrived.
    fn read(
        &self,
        session_id: i64,
        after: i64,
        backlog_only: bool,
        n: usize,
    ) -> Vec<pb::LogMessage> {
        read(&self.client, session_id, after, backlog_only, n)
    }
}

fn read(
    client: &pb::LogProcessorClient,
    session_id: i64,
    after: i64,
    backlog_only: bool,
    n: usize,
) -> Vec<pb::LogMessage> {
    let req = pb::StreamSessionLogsRequest {
        session_id,
        after_sequence_number: after,
        backlog_only,
    };
    let stream = client.stream_session_logs_opt(&req, viewer()).unwrap();
    let mut out = Vec::new();
    for m in futures::executor::block_on_stream(stream) {
        out.push(m.expect("stream item"));
        if out.iter().filter(|m| m.source != "gap").count() >= n {
            break;
        }
    }
    out
}

/// An older agent's single-line message (still read for one release).
fn line_json(session_id: i64, ts: i64, message: &str) -> serde_json::Value {
    json!({"session_id": session_id, "timestamp": ts, "source": "stdout", "message": message})
}

/// Publishes lines as a host does: numbered, in batches of up to 50.
fn publish_lines(
    p: &TestPublisher,
    session_id: i64,
    lines: impl IntoIterator<Item = (i64, String)>,
) {
    let lines: Vec<ConsoleLine> = lines
        .into_iter()
        .enumerate()
        .map(|(i, (timestamp, message))| ConsoleLine {
            seq: i as u64 + 1,
            timestamp,
            source: "stdout".into(),
            message,
            dropped: 0,
        })
        .collect();
    for chunk in lines.chunks(50) {
        let batch = ConsoleBatch {
            session_id,
            lines: chunk.to_vec(),
        };
        p.publish_bytes(&routing::session_logs(session_id), batch.encode());
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn new_session(db: &TestDb) -> (i64, i64) {
    let mut c = db.client();
    let host = add_host(&mut c, HostStatus::Online);
    add_session(&mut c, host, SessionStatus::Running, &[])
}

fn messages(lines: &[pb::LogMessage]) -> Vec<String> {
    lines
        .iter()
        .filter(|m| m.source != "gap")
        .map(|m| m.message.clone())
        .collect()
}

#[test]
fn ten_clients_receive_identical_ordered_lines() {
    let (db, vhost) = (TestDb::new(), TestVhost::new());
    let stack = start(config(&vhost, &db, 5000, None));
    let (_, session) = new_session(&db);
    stack.buffer(session);
    const N: usize = 2000;
    let readers: Vec<_> = (0..10)
        .map(|_| {
            let client = stack.client.clone();
            std::thread::spawn(move || read(&client, session, 0, false, N))
        })
        .collect();
    wait_for("10 streaming clients", WAIT, || {
        (stack.running.metrics.clients.get() == 10).then_some(())
    });
    let p = TestPublisher::new(&vhost);
    publish_lines(&p, session, (0..N).map(|i| (now_ms(), format!("line {i}"))));
    let expected: Vec<String> = (0..N).map(|i| format!("line {i}")).collect();
    for r in readers {
        let got = r.join().unwrap();
        assert_eq!(messages(&got), expected);
        assert!(got
            .windows(2)
            .all(|w| w[1].sequence_number == w[0].sequence_number + 1));
        assert!(got
            .iter()
            .all(|m| m.session_id == session && m.source == "stdout"));
    }
}

#[test]
fn late_clients_get_the_backlog_and_resume_after_a_sequence_number() {
    let (db, vhost) = (TestDb::new(), TestVhost::new());
    let stack = start(config(&vhost, &db, 100, None));
    let (_, session) = new_session(&db);
    let log = stack.buffer(session);
    let p = TestPublisher::new(&vhost);
    publish_lines(
        &p,
        session,
        (0..150).map(|i| (now_ms(), format!("line {i}"))),
    );
    wait_for("150 lines consumed", WAIT, || {
        // Nothing buffered yet is "not yet" (the first poll can come before the first line).
        let first = stack
            .read(session, 0, true, usize::MAX)
            .first()?
            .sequence_number;
        (log.last_sequence_number() - first >= 99).then_some(())
    });
    // A late client: the buffer holds the newest 100 lines.
    let backlog = stack.read(session, 0, true, usize::MAX);
    let expected: Vec<String> = (50..150).map(|i| format!("line {i}")).collect();
    assert_eq!(messages(&backlog), expected);
    // The batched stream carries the same lines with the same numbers.
    let req = pb::StreamSessionLogsRequest {
        session_id: session,
        after_sequence_number: 0,
        backlog_only: true,
    };
    let batches = stack
        .client
        .stream_session_log_batches_opt(&req, viewer())
        .unwrap();
    let batched: Vec<pb::LogMessage> = futures::executor::block_on_stream(batches)
        .flat_map(|b| b.expect("a batch").lines)
        .collect();
    assert_eq!(batched, backlog);
    // Resume after line 119: exactly the lines after it.
    let after = backlog[69].sequence_number;
    assert_eq!(backlog[69].message, "line 119");
    let rest = stack.read(session, after, true, usize::MAX);
    assert_eq!(
        messages(&rest),
        (120..150).map(|i| format!("line {i}")).collect::<Vec<_>>()
    );
    // A resume point that fell out of the buffer is reported as a gap, then the buffer follows.
    let gapped = stack.read(session, backlog[0].sequence_number - 10, true, usize::MAX);
    assert_eq!(gapped[0].source, "gap");
    assert!(
        gapped[0].message.starts_with("9 lines were missed"),
        "{}",
        gapped[0].message
    );
    assert_eq!(messages(&gapped), expected);
}

#[test]
fn the_instance_queue_is_bound_before_any_session_and_a_buffer_closes_when_its_session_ends() {
    let (db, vhost) = (TestDb::new(), TestVhost::new());
    let stack = start(config(&vhost, &db, 321, None));
    let queue = routing::log_ingest_queue(&stack.instance);
    let listed = wait_for("the queue to be listed", WAIT, || {
        let out = manman::testkit::rabbitmqctl(&[
            "list_queues",
            "-p",
            &vhost.name,
            "name",
            "durable",
            "arguments",
            "--formatter",
            "json",
        ]);
        let all: serde_json::Value = serde_json::from_str(out.trim()).ok()?;
        all.as_array()?
            .iter()
            .find(|q| q["name"] == queue.as_str())
            .cloned()
    });
    // Durable: a broker restart finds it still bound, so hosts never publish into nothing.
    assert_eq!(listed["durable"], true);
    let args = listed["arguments"].to_string();
    for expected in [
        "\"x-message-ttl\"",
        "60000",
        "\"x-max-length-bytes\"",
        "\"x-overflow\"",
        "\"drop-head\"",
        "\"x-expires\"",
    ] {
        assert!(args.contains(expected), "{expected} missing in {args}");
    }

    // The first lines of a session nobody has announced yet are all kept.
    let (_, session) = new_session(&db);
    let p = TestPublisher::new(&vhost);
    publish_lines(
        &p,
        session,
        (1..=3).map(|i| (now_ms(), format!("early-{i}"))),
    );
    wait_for("the early lines", WAIT, || {
        (stack.read(session, 0, true, usize::MAX).len() == 3).then_some(())
    });
    assert_eq!(
        messages(&stack.read(session, 0, true, usize::MAX)),
        ["early-1", "early-2", "early-3"]
    );

    // The session ends: its buffer closes after the grace, and streams finish.
    assert!(stack.running.registry.is_open(session));
    publish_external(
        &vhost,
        "manman.session.stopped",
        json!({"session_id": session, "status": "stopped"}),
    );
    wait_for("the buffer to close", WAIT, || {
        (!stack.running.registry.is_open(session)).then_some(())
    });
    let ended = stack.read(session, 0, false, usize::MAX);
    assert_eq!(messages(&ended), ["early-1", "early-2", "early-3"]);
}

fn publish_external(vhost: &TestVhost, key: &str, body: serde_json::Value) {
    let mut conn = vhost.connect();
    let ch = conn.open_channel(None).unwrap();
    let ex = declare_topic(&ch, routing::DEFAULT_EXTERNAL_EXCHANGE);
    ex.publish(amiquip::Publish::new(body.to_string().as_bytes(), key))
        .unwrap();
    let _ = conn.close();
}

#[test]
fn a_slow_client_does_not_hold_up_a_fast_one_and_is_told_what_it_missed() {
    let (db, vhost) = (TestDb::new(), TestVhost::new());
    let stack = start(config(&vhost, &db, 500, None));
    let (_, session) = new_session(&db);
    stack.buffer(session);
    // The slow client (its own connection, as another process would have) opens its stream
    // and then does not read: flow control stalls its server thread.
    let own_connection = grpcio::ChannelBuilder::new(Arc::new(grpcio::Environment::new(1)))
        .primary_user_agent("slow-client")
        .connect(&format!("127.0.0.1:{}", stack.running.grpc_port));
    let slow_client = pb::LogProcessorClient::new(own_connection);
    let slow = slow_client
        .stream_session_logs_opt(
            &pb::StreamSessionLogsRequest {
                session_id: session,
                after_sequence_number: 0,
                backlog_only: false,
            },
            viewer(),
        )
        .unwrap();
    const N: usize = 6000;
    // The fast client counts what it got, and stops at a gap (which would fail the test).
    let fast_count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let fast = {
        let client = stack.client.clone();
        let count = fast_count.clone();
        std::thread::spawn(move || {
            let req = pb::StreamSessionLogsRequest {
                session_id: session,
                after_sequence_number: 0,
                backlog_only: false,
            };
            let mut got = Vec::new();
            let stream = client.stream_session_logs_opt(&req, viewer()).unwrap();
            for m in futures::executor::block_on_stream(stream) {
                let m = m.expect("stream item");
                let gap = m.source == "gap";
                got.push(m);
                count.store(got.len(), std::sync::atomic::Ordering::SeqCst);
                if gap || got.len() >= N {
                    break;
                }
            }
            got
        })
    };
    wait_for("2 clients", WAIT, || {
        (stack.running.metrics.clients.get() == 2).then_some(())
    });
    let p = TestPublisher::new(&vhost);
    let big = "x".repeat(4000);
    // In steps the fast client keeps up with (its lag stays under the ring's 500 lines).
    for step in 0..(N / 200) {
        publish_lines(
            &p,
            session,
            (0..200).map(|i| (now_ms(), format!("{} {big}", step * 200 + i))),
        );
        let want = (step + 1) * 200;
        wait_for("the fast client to keep up", WAIT, || {
            (fast_count.load(std::sync::atomic::Ordering::SeqCst) >= want || fast.is_finished())
                .then_some(())
        });
        if fast.is_finished() {
            break;
        }
    }
    let got = fast.join().unwrap();
    let gaps: Vec<_> = got
        .iter()
        .filter(|m| m.source == "gap")
        .map(|m| &m.message)
        .collect();
    assert_eq!(
        got.len(),
        N,
        "the fast client got every line, no gap: {gaps:?}"
    );
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, m)| m.message.starts_with(&format!("{i} "))));
    // Now the slow client reads: a gap marker, then lines up to the newest.
    let mut slow_lines = Vec::new();
    for m in futures::executor::block_on_stream(slow) {
        let m = m.unwrap();
        let last = m.message.starts_with(&format!("{} ", N - 1));
        slow_lines.push(m);
        if last {
            break;
        }
    }
    let gap = slow_lines
        .iter()
        .position(|m| m.source == "gap")
        .expect("a gap marker");
    assert!(slow_lines[gap].message.contains("lines were missed"));
    assert!(stack.running.metrics.gaps.get() >= 1);
    // Around the marker the numbers account for every line: nothing missing silently.
    let before = slow_lines[..gap].last().map_or(0, |m| m.sequence_number);
    let after = &slow_lines[gap + 1];
    let missed: i64 = slow_lines[gap]
        .message
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    if before > 0 {
        assert_eq!(after.sequence_number - before - 1, missed);
    }
}

#[test]
fn a_backlog_read_of_an_empty_buffer_ends_at_once() {
    let (db, vhost) = (TestDb::new(), TestVhost::new());
    let stack = start(config(&vhost, &db, 10, None));
    let (_, session) = new_session(&db);
    stack.buffer(session);
    assert!(stack.read(session, 0, true, usize::MAX).is_empty());
    // Lines arriving during a backlog read are not waited for either.
    let p = TestPublisher::new(&vhost);
    publish_lines(&p, session, [(now_ms(), "one".to_string())]);
    wait_for("the line", WAIT, || {
        (stack.read(session, 0, true, usize::MAX).len() == 1).then_some(())
    });
}

#[test]
fn bad_requests_get_the_right_codes() {
    let (db, vhost) = (TestDb::new(), TestVhost::new());
    let stack = start(config(&vhost, &db, 10, None));
    let (_, session) = new_session(&db);
    let code = |session_id: i64, after: i64| {
        let req = pb::StreamSessionLogsRequest {
            session_id,
            after_sequence_number: after,
            backlog_only: true,
        };
        let stream = stack
            .client
            .stream_session_logs_opt(&req, viewer())
            .unwrap();
        match futures::executor::block_on_stream(stream).next() {
            Some(Err(grpcio::Error::RpcFailure(s))) => (s.code(), s.message().to_string()),
            other => panic!("expected an error, got {other:?}"),
        }
    };
    assert_eq!(code(0, 0).0, RpcStatusCode::INVALID_ARGUMENT);
    assert_eq!(code(session, -1).0, RpcStatusCode::INVALID_ARGUMENT);
    let (not_found, message) = code(session + 1000, 0);
    assert_eq!(not_found, RpcStatusCode::NOT_FOUND);
    assert!(message.contains("does not exist"), "{message}");
    assert_eq!(code(session, i64::MAX).0, RpcStatusCode::OUT_OF_RANGE);
}

#[test]
fn a_stream_needs_a_valid_token() {
    let (db, vhost) = (TestDb::new(), TestVhost::new());
    let stack = start(config(&vhost, &db, 10, None));
    let (_, session) = new_session(&db);
    stack.buffer(session);
    let refusal = |option: grpcio::CallOption| {
        let req = pb::StreamSessionLogsRequest {
            session_id: session,
            after_sequence_number: 0,
            backlog_only: true,
        };
        let stream = stack.client.stream_session_logs_opt(&req, option).unwrap();
        match futures::executor::block_on_stream(stream).next() {
            Some(Err(grpcio::Error::RpcFailure(s))) => s.code(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    };
    assert_eq!(
        refusal(grpcio::CallOption::default()),
        RpcStatusCode::UNAUTHENTICATED
    );
    assert_eq!(
        refusal(manman::grpc::authorized(Some("mm_tok_forged"))),
        RpcStatusCode::UNAUTHENTICATED
    );
    assert!(stack.read(session, 0, true, usize::MAX).is_empty());
}

#[test]
fn unreadable_log_messages_are_dead_lettered_with_the_reason() {
    let (db, vhost) = (TestDb::new(), TestVhost::new());
    let stack = start(config(&vhost, &db, 10, None));
    let (_, session) = new_session(&db);
    let log = stack.buffer(session);
    let dlq = Collector::queue(&vhost, routing::LOG_DLQ);
    let p = TestPublisher::new(&vhost);
    p.publish(&routing::session_logs(session), "not json", None);
    publish_lines(&p, session, [(now_ms(), "good".to_string())]);
    let dead = dlq.expect("a dead letter");
    assert_eq!(dead.raw, b"not json");
    assert!(header(&dead, routing::DEAD_LETTER_REASON_HEADER)
        .unwrap()
        .contains("not JSON"));
    wait_for("the good line", WAIT, || (!log.is_empty()).then_some(()));
    assert_eq!(
        messages(&stack.read(session, 0, true, usize::MAX)),
        ["good"]
    );
    assert_eq!(stack.running.metrics.malformed.get(), 1);

    // A host cannot smuggle text into the archive through the line's source.
    p.publish_json(
        &routing::session_logs(session),
        json!({"session_id": session, "timestamp": now_ms(), "source": "stdout\n2026-01-01T00:00:00.000Z stdout forged", "message": "x"}),
    );
    let dead = dlq.expect("the forged source dead-lettered");
    assert!(header(&dead, routing::DEAD_LETTER_REASON_HEADER)
        .unwrap()
        .contains("not a stream name"));

    // A batch for one session published under another's key.
    let batch = ConsoleBatch {
        session_id: session + 1,
        lines: vec![],
    };
    p.publish_bytes(&routing::session_logs(session), batch.encode());
    let dead = dlq.expect("the misrouted batch dead-lettered");
    assert!(header(&dead, routing::DEAD_LETTER_REASON_HEADER)
        .unwrap()
        .contains("published with routing key"));

    // An older agent's single line is still read.
    p.publish_json(
        &routing::session_logs(session),
        line_json(session, now_ms(), "from an older agent"),
    );
    wait_for("the older agent's line", WAIT, || {
        (stack.read(session, 0, true, usize::MAX).len() == 2).then_some(())
    });
    assert_eq!(
        messages(&stack.read(session, 0, true, usize::MAX)),
        ["good", "from an older agent"]
    );
}

/// Rows of a session's archived minutes: (minute ms, path, line count).
fn archived(db: &TestDb, session: i64) -> Vec<(i64, String, i32)> {
    db.client()
        .query(
            "SELECT minute_timestamp, file_path, line_count FROM log_references
              WHERE session_id = $1 AND state = 'archived' ORDER BY minute_timestamp",
            &[&session],
        )
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get::<_, chrono::DateTime<chrono::Utc>>(0)
                    .timestamp_millis(),
                r.get(1),
                r.get(2),
            )
        })
        .collect()
}

#[test]
fn lines_are_archived_per_minute_late_lines_appended_and_history_reads_them() {
    let (db, vhost, bucket) = (TestDb::new(), TestVhost::new(), ScratchBucket::new());
    let stack = start(config(&vhost, &db, 100, Some(bucket.config.clone())));
    let (sgc, session) = new_session(&db);
    stack.buffer(session);
    let base = minute_of(now_ms()) - 5 * 60_000; // closed minutes: due at once
    let plan = [(base, 3), (base + 60_000, 2), (base + 120_000, 4)];
    let p = TestPublisher::new(&vhost);
    for (minute, n) in plan {
        publish_lines(
            &p,
            session,
            (0..n).map(|i| {
                (
                    minute + 1000 * i,
                    format!("m{} l{i}", (minute - base) / 60_000),
                )
            }),
        );
    }
    // Lines of a closed minute are archived as they come, so wait for all nine.
    let rows = wait_for("nine lines archived over three minutes", WAIT, || {
        let rows = archived(&db, session);
        (rows.iter().map(|r| r.2).sum::<i32>() == 9).then_some(rows)
    });
    for ((minute, n), (row_minute, path, count)) in plan.iter().zip(&rows) {
        assert_eq!((row_minute, *count), (minute, *n as i32));
        assert_eq!(path, &object_key(sgc, session, *minute));
        let lines = decode_object(&bucket.store.get(path).unwrap().expect("object")).unwrap();
        let k = (minute - base) / 60_000;
        assert_eq!(
            lines.iter().map(|l| l.message.clone()).collect::<Vec<_>>(),
            (0..*n).map(|i| format!("m{k} l{i}")).collect::<Vec<_>>()
        );
        assert!(lines
            .iter()
            .enumerate()
            .all(|(i, l)| l.timestamp == minute + 1000 * i as i64 && l.source == "stdout"));
    }
    // Late lines for the first minute are appended to its object.
    publish_lines(
        &p,
        session,
        [
            (base + 50_000, "late 1".into()),
            (base + 51_000, "late 2".into()),
        ],
    );
    wait_for("the late lines archived", WAIT, || {
        (archived(&db, session)[0].2 == 5).then_some(())
    });
    let first = decode_object(&bucket.store.get(&rows[0].1).unwrap().unwrap()).unwrap();
    assert_eq!(
        first.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
        ["m0 l0", "m0 l1", "m0 l2", "late 1", "late 2"]
    );

    // GetHistoricalLogs reads them back: paging, ranges, and its errors.
    let pool = db::pool(db.config.clone(), &PoolSettings::default()).unwrap();
    let req = |since_ms, until_ms, offset, limit| pb::GetHistoricalLogsRequest {
        session_id: session,
        since_ms,
        until_ms,
        offset,
        limit,
    };
    let all = historical_logs(&pool, Some(&bucket.store), req(0, 0, 0, 100)).unwrap();
    assert_eq!(all.lines.len(), 11);
    assert!(!all.has_more);
    assert_eq!(all.lines[3].message, "late 1");
    let page = historical_logs(&pool, Some(&bucket.store), req(0, 0, 3, 2)).unwrap();
    assert_eq!(messages(&page.lines), ["late 1", "late 2"]);
    assert!(page.has_more);
    let middle = historical_logs(
        &pool,
        Some(&bucket.store),
        req(base + 60_000, base + 120_000, 0, 0),
    )
    .unwrap();
    assert_eq!(messages(&middle.lines), ["m1 l0", "m1 l1"]);
    use manman::api::ApiError;
    assert!(matches!(
        historical_logs(&pool, Some(&bucket.store), req(0, 0, 0, 20_000)),
        Err(ApiError::InvalidArgument(_))
    ));
    assert!(matches!(
        historical_logs(&pool, Some(&bucket.store), req(5, 4, 0, 0)),
        Err(ApiError::InvalidArgument(_))
    ));
    assert!(matches!(
        historical_logs(&pool, None, req(0, 0, 0, 0)),
        Err(ApiError::FailedPrecondition(_))
    ));
    let mut unknown = req(0, 0, 0, 0);
    unknown.session_id = session + 1000;
    assert!(matches!(
        historical_logs(&pool, Some(&bucket.store), unknown),
        Err(ApiError::NotFound(_))
    ));
}

#[test]
fn an_s3_outage_loses_no_line() {
    let (db, vhost, bucket) = (TestDb::new(), TestVhost::new(), ScratchBucket::new());
    let endpoint = manman::testkit::s3_endpoint();
    let proxy = TcpProxy::start(endpoint.trim_start_matches("http://"));
    let mut s3 = bucket.config.clone();
    s3.endpoint = Some(format!("http://127.0.0.1:{}", proxy.port));
    let stack = start(config(&vhost, &db, 100, Some(s3)));
    let (_, session) = new_session(&db);
    stack.buffer(session);
    proxy.disable();
    let base = minute_of(now_ms()) - 3 * 60_000;
    let p = TestPublisher::new(&vhost);
    publish_lines(
        &p,
        session,
        (0..40).map(|i| (base + i * 2000, format!("line {i}"))),
    );
    wait_for("failed flushes while S3 is down", WAIT, || {
        (stack.running.metrics.archive_failures.get() >= 2).then_some(())
    });
    assert!(archived(&db, session).is_empty());
    proxy.enable();
    let rows = wait_for("every line archived after S3 returns", WAIT, || {
        let rows = archived(&db, session);
        (rows.iter().map(|r| r.2).sum::<i32>() == 40).then_some(rows)
    });
    let mut all = Vec::new();
    for (_, path, _) in &rows {
        all.extend(decode_object(&bucket.store.get(path).unwrap().unwrap()).unwrap());
    }
    assert_eq!(
        all.iter().map(|l| l.message.clone()).collect::<Vec<_>>(),
        (0..40).map(|i| format!("line {i}")).collect::<Vec<_>>()
    );
    assert_eq!(stack.running.metrics.archive_dropped.get(), 0);
}

#[test]
fn with_host_broker_users_only_the_sessions_host_writes_its_lines() {
    let (db, vhost) = (TestDb::new(), TestVhost::new());
    let stack = start(LogsConfig {
        require_host_users: true,
        ..config(&vhost, &db, 10, None)
    });
    // Ids of this test's own (broker users are shared by every vhost).
    let base = 7_200_000 + (std::process::id() as i64 % 100_000) * 2;
    let (owner, other) = (base, base + 1);
    let mut c = db.client();
    add_host_with_id(&mut c, owner);
    add_host_with_id(&mut c, other);
    let (_, session) = add_session(&mut c, owner, SessionStatus::Running, &[]);
    let log = stack.buffer(session);
    let dlq = Collector::queue(&vhost, routing::LOG_DLQ);
    let write = |user: &HostBrokerUser, message: &str| {
        let line = line_json(session, now_ms(), message);
        user.publish(true, &routing::session_logs(session), &line)
            .unwrap();
    };
    write(&HostBrokerUser::provision(other, &vhost), "forged");
    let dead = dlq.expect("the other host's line dead-lettered");
    assert!(header(&dead, routing::DEAD_LETTER_REASON_HEADER)
        .unwrap()
        .contains(&format!("\"manman-host-{other}\"")));
    write(&HostBrokerUser::provision(owner, &vhost), "genuine");
    wait_for("the owner's line", WAIT, || (!log.is_empty()).then_some(()));
    assert_eq!(
        messages(&stack.read(session, 0, true, usize::MAX)),
        ["genuine"]
    );
}

#[test]
fn history_of_long_lines_comes_in_pages_and_streams_every_line_exactly_once() {
    let (db, vhost, bucket) = (TestDb::new(), TestVhost::new(), ScratchBucket::new());
    let _stack = start(config(&vhost, &db, 100, Some(bucket.config.clone())));
    let (_, session) = new_session(&db);
    // 2,000 lines of 5 KB over three closed minutes: ~10 MB, more than any one gRPC reply.
    const N: i64 = 2000;
    let base = minute_of(now_ms()) - 5 * 60_000;
    let text = |i: i64| format!("{i:05} {}", "x".repeat(5 * 1024));
    let p = TestPublisher::new(&vhost);
    publish_lines(&p, session, (0..N).map(|i| (base + i * 90, text(i))));
    wait_for("every line archived", WAIT, || {
        (archived(&db, session)
            .iter()
            .map(|r| r.2 as i64)
            .sum::<i64>()
            == N)
            .then_some(())
    });
    let expected: Vec<String> = (0..N).map(text).collect();

    // Pages: each under the size limit, together every line once, in order.
    let pool = db::pool(db.config.clone(), &PoolSettings::default()).unwrap();
    let mut paged = Vec::new();
    let mut pages = 0;
    loop {
        let page = historical_logs(
            &pool,
            Some(&bucket.store),
            pb::GetHistoricalLogsRequest {
                session_id: session,
                since_ms: 0,
                until_ms: 0,
                offset: paged.len() as i64,
                limit: 10_000,
            },
        )
        .unwrap();
        pages += 1;
        let size = prost::Message::encoded_len(&page);
        assert!(size < 4 * 1024 * 1024, "a page of {size} bytes");
        assert!(!page.lines.is_empty());
        paged.extend(page.lines.into_iter().map(|l| l.message));
        if !page.has_more {
            break;
        }
    }
    assert!(pages >= 5, "{pages} pages");
    assert_eq!(paged, expected);

    // The stream, through a real API: every line once, in order, numbered by position.
    let mut sup = Supervisor::new();
    let api = manman::api::start(
        manman::api::ApiConfig {
            archive: Some(bucket.config.clone()),
            ..manman::api::ApiConfig::embedded(vhost.url(), db.config.clone())
        },
        &mut sup,
    )
    .unwrap();
    let _api = Daemon::run(sup);
    let client = manman::api::client(&format!("127.0.0.1:{}", api.port));
    let stream = |since_ms: i64, offset: i64, limit: i64| -> Vec<pb::LogMessage> {
        let req = pb::GetHistoricalLogsRequest {
            session_id: session,
            since_ms,
            until_ms: 0,
            offset,
            limit,
        };
        let stream = client.stream_historical_logs_opt(&req, viewer()).unwrap();
        futures::executor::block_on_stream(stream)
            .flat_map(|b| {
                let b = b.expect("stream item");
                assert!(prost::Message::encoded_len(&b) < 4 * 1024 * 1024);
                b.lines
            })
            .collect()
    };
    let streamed = stream(0, 0, 0);
    assert_eq!(messages(&streamed), expected);
    assert!(streamed
        .iter()
        .enumerate()
        .all(|(i, m)| m.sequence_number == i as i64 + 1));
    // A range, an offset and a limit, as the unary call takes them.
    let part = stream(base + 60_000, 10, 5);
    let first_in_range = (0..N).find(|i| base + i * 90 >= base + 60_000).unwrap();
    assert_eq!(
        messages(&part),
        (first_in_range + 10..first_in_range + 15)
            .map(text)
            .collect::<Vec<_>>()
    );
    // Errors come as statuses on the stream.
    let req = pb::GetHistoricalLogsRequest {
        session_id: session + 1000,
        since_ms: 0,
        until_ms: 0,
        offset: 0,
        limit: 0,
    };
    let missing = client.stream_historical_logs_opt(&req, viewer()).unwrap();
    match futures::executor::block_on_stream(missing).next() {
        Some(Err(grpcio::Error::RpcFailure(s))) => assert_eq!(s.code(), RpcStatusCode::NOT_FOUND),
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
}

#[test]
fn lost_and_throttled_lines_and_the_queue_depth_are_on_metrics() {
    let (db, vhost) = (TestDb::new(), TestVhost::new());
    let stack = start(config(&vhost, &db, 100, None));
    let (_, session) = new_session(&db);
    let p = TestPublisher::new(&vhost);
    let line = |seq: u64, source: &str, message: &str, dropped: u64| ConsoleLine {
        seq,
        timestamp: now_ms(),
        source: source.into(),
        message: message.into(),
        dropped,
    };
    // Lines 3 and 4 never arrive; the host's throttle held 40 back (its marker says so).
    let batches = [
        vec![line(1, "stdout", "one", 0), line(2, "stdout", "two", 0)],
        vec![
            line(5, "stdout", "five", 0),
            line(6, "host", "[manman] 40 lines dropped: output too fast", 40),
        ],
    ];
    for lines in batches {
        let batch = ConsoleBatch {
            session_id: session,
            lines,
        };
        p.publish_bytes(&routing::session_logs(session), batch.encode());
    }
    wait_for("the lines", WAIT, || {
        (stack.read(session, 0, true, usize::MAX).len() == 4).then_some(())
    });
    assert_eq!(stack.running.metrics.lost_in_transit.get(), 2);
    assert_eq!(stack.running.metrics.throttled.get(), 40);
    let metrics = manman::testkit::http_get(stack.running.health_port, "/metrics");
    for expected in [
        "manman_log_lines_dropped_total{reason=\"lost_in_transit\"} 2",
        "manman_log_lines_dropped_total{reason=\"throttled\"} 40",
        "manman_log_queue_depth ",
        "manman_log_consumer_lag_milliseconds ",
        "manman_log_buffered_sessions 1",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing in {metrics}"
        );
    }
}

#[test]
fn a_revoked_token_ends_its_open_stream_within_ten_seconds() {
    let (db, vhost) = (TestDb::new(), TestVhost::new());
    let stack = start(config(&vhost, &db, 10, None));
    let (_, session) = new_session(&db);
    stack.buffer(session);
    let req = pb::StreamSessionLogsRequest {
        session_id: session,
        after_sequence_number: 0,
        backlog_only: false,
    };
    let stream = stack
        .client
        .stream_session_logs_opt(&req, viewer())
        .unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        // A live stream of a quiet session: it ends only when the server ends it.
        let end = futures::executor::block_on_stream(stream).find_map(|item| item.err());
        let _ = tx.send(end);
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(6)).is_err(),
        "the stream ended while its token was valid"
    );
    manman::db::tokens::revoke(&mut db.client(), "viewer")
        .unwrap()
        .expect("the viewer token");
    let revoked_at = std::time::Instant::now();
    let end = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the stream is still open 10 s after its token was revoked");
    match end {
        Some(grpcio::Error::RpcFailure(s)) => {
            assert_eq!(s.code(), RpcStatusCode::UNAUTHENTICATED, "{s:?}")
        }
        other => panic!("expected UNAUTHENTICATED, got {other:?}"),
    }
    assert!(revoked_at.elapsed() <= Duration::from_secs(10));
}

#[test]
fn batches_for_sessions_that_do_not_exist_are_dropped_and_counted() {
    let (db, vhost) = (TestDb::new(), TestVhost::new());
    let stack = start(config(&vhost, &db, 100, None));
    let (_, session) = new_session(&db);
    let p = TestPublisher::new(&vhost);
    // A flood of invented session ids (a game with stolen broker credentials), then a real one.
    let invented: Vec<i64> = (0..50).map(|i| 900_000_000 + i).collect();
    for id in &invented {
        publish_lines(&p, *id, [(now_ms(), "forged".to_string())]);
    }
    publish_lines(&p, session, [(now_ms(), "real".to_string())]);
    wait_for("the real line", WAIT, || {
        (messages(&stack.read(session, 0, true, usize::MAX)) == ["real"]).then_some(())
    });
    // Batches are taken in order: every forged one was seen before the real one.
    assert_eq!(stack.running.metrics.unknown_session_batches.get(), 50);
    let metrics = manman::testkit::http_get(stack.running.health_port, "/metrics");
    assert!(
        metrics.contains("manman_log_unknown_session_batches_total 50"),
        "{metrics}"
    );
    assert!(
        metrics.contains("manman_log_buffered_sessions 1"),
        "{metrics}"
    );
}
