//! Benchmark of the dashboard's live consoles (run by `scripts/bench-web`, release build):
//! 50 simulated browsers hold an SSE console of one session while it prints 1,000 lines/s for
//! 20 s. The API and the log processor run in this process; manman-web runs as its own
//! process, so its CPU time and RSS are its own. Prints publish → SSE client latency (p50,
//! p99, max) over every line each client received, and the web daemon's CPU and RSS.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use amiquip::{AmqpProperties, Connection, Publish};
use manman::api::{self, ApiConfig};
use manman::auth::Role;
use manman::lifecycle::Supervisor;
use manman::logs::{self, LogsConfig};
use manman::testkit::{
    cpu_seconds, free_port, percentile_ms, rss_kib, sibling_binary, wait_for, ScratchDb,
    ScratchVhost,
};
use manman::wire::{routing, ConsoleBatch, ConsoleLine};

const CLIENTS_DEFAULT: usize = 50;
const LINES_PER_SECOND: u64 = 1_000;
const SECONDS: u64 = 20;
/// The host agent's batching: a batch per 10 ms.
const BATCH_EVERY: Duration = Duration::from_millis(10);

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

fn main() {
    let clients_n: usize = std::env::var("BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CLIENTS_DEFAULT);
    let db = ScratchDb::new("mmbench");
    let vhost = ScratchVhost::new("mmbench");
    let mut c = db.client();
    c.batch_execute(
        "INSERT INTO servers (name, status, last_seen) VALUES ('bench-host', 'online', now());
         INSERT INTO games (name) VALUES ('bench');
         INSERT INTO game_configs (game_id, name, command) VALUES (1, 'default', '/bin/true');
         INSERT INTO server_game_configs (server_id, game_config_id) VALUES (1, 1);
         INSERT INTO sessions (sgc_id, status) VALUES (1, 'running');",
    )
    .unwrap();
    let (_, token) = api::create_token(&mut c, "bench-viewer", Role::Viewer, 0).unwrap();

    let mut sup = Supervisor::new();
    let api = api::start(
        ApiConfig::embedded(vhost.url(), db.config.clone()),
        &mut sup,
    )
    .unwrap();
    let logs = logs::start(
        LogsConfig::embedded(vhost.url(), Some(db.config.clone())),
        &mut sup,
    )
    .unwrap();
    let web_port = free_port();
    let mut web = std::process::Command::new(sibling_binary("manman-web"))
        .env("WEB_PORT", web_port.to_string())
        .env("API_ADDRESS", format!("127.0.0.1:{}", api.port))
        .env(
            "LOG_PROCESSOR_ADDRESS",
            format!("127.0.0.1:{}", logs.grpc_port),
        )
        .env("LOG_LEVEL", "warn")
        .spawn()
        .expect("manman-web next to this benchmark");
    wait_for("manman-web", Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", web_port)).ok()
    });
    let (cookie, _) = manman::testkit::dashboard_login(web_port, &token);

    // What loading the page costs the server: its three files and the two calls it makes,
    // one after another on one keep-alive connection, as a browser's first view does.
    let agent = ureq::AgentBuilder::new().build();
    let mut loads: Vec<i64> = (0..50)
        .map(|_| {
            let started = Instant::now();
            for path in ["/", "/app.js", "/app.css", "/api/me", "/api/overview"] {
                let r = agent
                    .get(&format!("http://127.0.0.1:{web_port}{path}"))
                    .set("Cookie", &cookie)
                    .call()
                    .expect("the page's requests");
                let _ = r.into_string();
            }
            started.elapsed().as_micros() as i64
        })
        .collect();
    loads.sort_unstable();

    // The clients: each an SSE connection that records every line's latency.
    let latencies = Arc::new(Mutex::new(Vec::<i64>::new()));
    let expected = (LINES_PER_SECOND * SECONDS) as usize;
    let (ready_tx, ready) = crossbeam_channel::unbounded();
    let clients: Vec<_> = (0..clients_n)
        .map(|_| {
            let (cookie, latencies, ready_tx) =
                (cookie.clone(), latencies.clone(), ready_tx.clone());
            let mut stream = TcpStream::connect(("127.0.0.1", web_port)).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            write!(
                stream,
                "GET /api/sessions/1/console HTTP/1.1\r\nHost: bench\r\nCookie: {cookie}\r\n\r\n"
            )
            .unwrap();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let (mut mine, mut line) = (Vec::with_capacity(expected), String::new());
                // Open once the server has answered (its `retry:` line ends the preamble).
                while !line.starts_with("retry:") {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        panic!("the console did not open");
                    }
                }
                ready_tx.send(()).unwrap();
                // Until the publisher's last line (or the stream goes quiet for 30 s).
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let Some(data) = line.strip_prefix("data: ") else {
                        continue;
                    };
                    // The message starts with its publish time (µs): read just that, as a
                    // browser would only append the text.
                    let Some(message) = data.split("\"message\":\"").nth(1) else {
                        continue;
                    };
                    if message.starts_with("END\"") {
                        break;
                    }
                    if let Some(sent) = message
                        .split(' ')
                        .next()
                        .and_then(|t| t.parse::<i64>().ok())
                    {
                        mine.push(now_us() - sent);
                    }
                }
                latencies.lock().unwrap().extend(mine);
            })
        })
        .collect();
    for _ in 0..clients_n {
        ready
            .recv_timeout(Duration::from_secs(30))
            .expect("every console open");
    }

    let mut conn = Connection::insecure_open(&vhost.url()).unwrap();
    let channel = conn.open_channel(None).unwrap();
    let topic = channel
        .exchange_declare(
            amiquip::ExchangeType::Topic,
            routing::MANMAN_EXCHANGE,
            amiquip::ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
        )
        .unwrap();
    let (cpu0, rss0) = (cpu_seconds(web.id()), rss_kib(web.id()).0);
    let per_batch = LINES_PER_SECOND * BATCH_EVERY.as_millis() as u64 / 1000;
    let started = Instant::now();
    let mut seq = 0u64;
    for tick in 0..(SECONDS * 1000 / BATCH_EVERY.as_millis() as u64) {
        let due = started + BATCH_EVERY * tick as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let lines = (0..per_batch)
            .map(|_| {
                seq += 1;
                ConsoleLine {
                    seq,
                    timestamp: now_us() / 1000,
                    source: "stdout".into(),
                    message: format!(
                        "{} [Server thread/INFO]: a line of a busy game server",
                        now_us()
                    ),
                    dropped: 0,
                }
            })
            .collect();
        let batch = ConsoleBatch {
            session_id: 1,
            lines,
        };
        topic
            .publish(Publish::with_properties(
                &batch.encode(),
                routing::session_logs(1),
                AmqpProperties::default(),
            ))
            .unwrap();
    }
    let end = ConsoleBatch {
        session_id: 1,
        lines: vec![ConsoleLine {
            seq: seq + 1,
            timestamp: now_us() / 1000,
            source: "stdout".into(),
            message: "END".into(),
            dropped: 0,
        }],
    };
    topic
        .publish(Publish::with_properties(
            &end.encode(),
            routing::session_logs(1),
            AmqpProperties::default(),
        ))
        .unwrap();
    for c in clients {
        c.join().unwrap();
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(web.id()) - cpu0;
    let rss = rss_kib(web.id());
    let mut all = latencies.lock().unwrap().clone();
    all.sort_unstable();
    println!("manman-web SSE consoles — {clients_n} clients on one session, {LINES_PER_SECOND} lines/s for {SECONDS} s");
    println!(
        "lines delivered: {} of {} ({} per client expected)",
        all.len(),
        expected * clients_n,
        expected
    );
    println!(
        "publish → SSE client: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (goal p99 < 100 ms)",
        percentile_ms(&all, 0.5),
        percentile_ms(&all, 0.99),
        *all.last().unwrap() as f64 / 1000.0
    );
    println!(
        "page load (5 requests, server side): p50 {:.1} ms, max {:.1} ms (goal < 1 s)",
        percentile_ms(&loads, 0.5),
        percentile_ms(&loads, 1.0)
    );
    println!(
        "manman-web: {:.1} % of one core ({:.2} CPU-s over {wall:.1} s), RSS {:.1} MiB (was {:.1} MiB before the stream)",
        100.0 * cpu / wall,
        cpu,
        rss.0 as f64 / 1024.0,
        rss0 as f64 / 1024.0
    );
    let _ = conn.close();
    let _ = web.kill();
    let _ = web.wait();
}
