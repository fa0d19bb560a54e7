//! The hostile-client corpus run against every HTTP listener we ship: after each attack, with
//! its connections still open, the listener must answer a normal request within a second,
//! and nothing may have panicked.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static PANICKED: AtomicBool = AtomicBool::new(false);

/// Records any panic in any thread of the test process (tiny_http's threads included): a
/// daemon's panic hook would end it with exit code 70.
pub fn watch_for_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.store(true, Ordering::SeqCst);
        previous(info);
    }));
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(5),
    )
    .expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// A normal request's status code, which must come within 1 s.
fn normal_request(port: u16, path: &str) -> Result<u16, String> {
    let started = Instant::now();
    let mut s = connect(port);
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)
        .map_err(|e| format!("no answer within 1 s: {e}"))?;
    if started.elapsed() > Duration::from_secs(1) {
        return Err(format!("answered after {:?}", started.elapsed()));
    }
    let text = String::from_utf8_lossy(&head);
    text[9..12]
        .parse()
        .map_err(|_| format!("not an HTTP answer: {text:?}"))
}

/// What a hostile client sent, kept open until the check after it is done.
struct Attack {
    name: &'static str,
    open: Vec<TcpStream>,
}

fn send_raw(port: u16, bytes: &[u8]) -> TcpStream {
    let mut s = connect(port);
    let _ = s.write_all(bytes); // the server may cut us off midway: that is the point
    s
}

fn attacks(port: u16) -> Vec<Box<dyn Fn() -> Attack>> {
    let head = |length: &str| {
        format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n\r\n")
    };
    vec![
        Box::new(move || Attack {
            name: "Content-Length 2^63-1",
            open: vec![send_raw(port, head("9223372036854775807").as_bytes())],
        }),
        Box::new(move || Attack {
            name: "Content-Length 2^64-1 and beyond",
            open: vec![
                send_raw(port, head("18446744073709551615").as_bytes()),
                send_raw(port, head("99999999999999999999999999").as_bytes()),
                send_raw(port, head("-1").as_bytes()),
            ],
        }),
        Box::new(move || Attack {
            name: "bodies shorter than declared, held open (8 and 1 KiB+)",
            open: (0..8)
                .map(|i| {
                    let length = if i % 2 == 0 { "5000" } else { "900" };
                    let mut bytes = head(length).into_bytes();
                    bytes.extend_from_slice(b"0123456789");
                    send_raw(port, &bytes)
                })
                .collect(),
        }),
        Box::new(move || {
            let mut bytes = b"GET /healthz HTTP/1.1\r\nX-Big: ".to_vec();
            bytes.extend(std::iter::repeat_n(b'a', 1 << 20));
            bytes.extend_from_slice(b"\r\n\r\n");
            Attack {
                name: "a 1 MiB header line",
                open: vec![send_raw(port, &bytes)],
            }
        }),
        Box::new(move || {
            let mut bytes = b"GET /healthz HTTP/1.1\r\n".to_vec();
            for i in 0..10_000 {
                bytes.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
            }
            bytes.extend_from_slice(b"\r\n");
            Attack {
                name: "10,000 headers",
                open: vec![send_raw(port, &bytes)],
            }
        }),
        Box::new(move || Attack {
            name: "2,000 idle connections",
            open: (0..2000).map(|_| connect(port)).collect(),
        }),
        Box::new(move || Attack {
            name: "invalid UTF-8 and NUL bytes in the path",
            open: vec![
                send_raw(port, b"GET /\xff\xfe\x00status HTTP/1.1\r\nHost: x\r\n\r\n"),
                send_raw(port, b"GET /%00%ff/../.. HTTP/1.1\r\nHost: \x00\r\n\r\n"),
                send_raw(port, b"\x00\x01\x02\x03\r\n\r\n"),
            ],
        }),
    ]
}

/// Runs the corpus against `port`, checking `path` (a route answering GET) after each attack.
pub fn assert_survives(what: &str, port: u16, path: &str) {
    assert!(
        normal_request(port, path).is_ok(),
        "{what}: no answer before any attack"
    );
    for attack in attacks(port) {
        let started = Instant::now();
        let attack = attack();
        eprintln!("{what}: {} sent in {:?}", attack.name, started.elapsed());
        let answer = normal_request(port, path);
        assert!(
            answer.is_ok(),
            "{what}: after {}: {}",
            attack.name,
            answer.unwrap_err()
        );
        drop(attack.open);
    }
    // One byte a second: the normal request is answered while it trickles.
    let slow = std::thread::spawn(move || {
        let mut s = connect(port);
        for b in b"GET /healthz HTTP/1.1\r\n".iter().take(3) {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        s
    });
    std::thread::sleep(Duration::from_millis(1500));
    let answer = normal_request(port, path);
    assert!(
        answer.is_ok(),
        "{what}: while a request trickles in: {}",
        answer.unwrap_err()
    );
    drop(slow.join());
    assert!(
        !PANICKED.load(Ordering::SeqCst),
        "{what}: a thread panicked (see the output above)"
    );
}

/// A request whose head never completes is cut at the head deadline (10 s) with 408.
pub fn assert_slow_head_is_cut(port: u16) {
    let mut s = connect(port);
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    for b in b"GET /healthz HTTP/1.1\r\nX-Slow: "
        .iter()
        .chain(std::iter::repeat(&b'a'))
    {
        if s.write_all(&[*b]).is_err() || started.elapsed() > Duration::from_secs(20) {
            break;
        }
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => {} // nothing yet: the next byte
        }
    }
    let elapsed = started.elapsed();
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "a trickling head got {:?} after {elapsed:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(elapsed < Duration::from_secs(15), "cut after {elapsed:?}");
}
