//! Benchmark of the agent's player queries (issue 26, `scripts/bench-players`, release build):
//! 200 servers on one host answering Steam A2S (a challenge, A2S_INFO, then A2S_PLAYER with
//! five names) from responder threads, asked one after another as the agent's `players` thread
//! does. Prints the querying thread's own CPU per round and what it costs at the default 30 s
//! interval (goal < 1 % of a core), and the same for the Minecraft status ping.

use std::net::{TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use manman::host::players::{a2s, minecraft};
use manman::testkit::cpu_time;

const SERVERS: usize = 200;
const ROUNDS: usize = 20;
const INTERVAL: Duration = Duration::from_secs(30);

/// An A2S server: challenge first, then info (12 of 64 players) and five names.
fn a2s_server() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let challenge = [7u8, 7, 7, 7];
        let mut buf = [0u8; 1400];
        let head = [0xFFu8; 4];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                return;
            };
            let data = &buf[..n];
            let reply: Vec<u8> = match (data.get(4), data.ends_with(&challenge)) {
                (Some(b'T'), true) => {
                    let mut r = head.to_vec();
                    r.extend_from_slice(b"I\x11bench\0map\0dir\0Game\0\0\0");
                    r.extend_from_slice(&[12, 64, 0, b'd', b'l', 0, 1]);
                    r.extend_from_slice(b"1.0\0");
                    r
                }
                (Some(b'U'), true) => {
                    let mut r = head.to_vec();
                    r.extend_from_slice(b"D\x05");
                    for i in 0..5u8 {
                        r.push(i);
                        r.extend_from_slice(format!("player{i}\0").as_bytes());
                        r.extend_from_slice(&[0; 8]);
                    }
                    r
                }
                _ => [&head[..], b"A", &challenge[..]].concat(),
            };
            let _ = socket.send_to(&reply, peer);
        }
    });
    port
}

/// A Minecraft server answering the status ping.
fn minecraft_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let json = br#"{"version":{"name":"1.21.1","protocol":767},"players":{"max":20,"online":2,"sample":[{"name":"Notch","id":"x"},{"name":"jeb_","id":"y"}]}}"#;
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            use std::io::{Read, Write};
            let mut req = [0u8; 64];
            let _ = s.read(&mut req);
            let mut body = vec![0u8];
            minecraft::write_varint(&mut body, json.len() as i32);
            body.extend_from_slice(json);
            let mut out = Vec::new();
            minecraft::write_varint(&mut out, body.len() as i32);
            out.extend(body);
            let _ = s.write_all(&out);
        }
    });
    port
}

fn measure(name: &str, ports: &[u16], ask: impl Fn(u16) -> Result<u32, String>) {
    for &p in ports {
        ask(p).expect("the stand-in answers");
    }
    let (cpu0, wall0) = (cpu_time(libc::RUSAGE_THREAD), Instant::now());
    for _ in 0..ROUNDS {
        for &p in ports {
            ask(p).expect("the stand-in answers");
        }
    }
    let per_round = (cpu_time(libc::RUSAGE_THREAD) - cpu0) / ROUNDS as u32;
    let wall = wall0.elapsed() / ROUNDS as u32;
    println!(
        "{name}: {SERVERS} servers per round, CPU {:.2} ms (wall {:.1} ms); at a {} s interval {:.3} % of one core (goal < 1 %)",
        per_round.as_secs_f64() * 1e3,
        wall.as_secs_f64() * 1e3,
        INTERVAL.as_secs(),
        100.0 * per_round.as_secs_f64() / INTERVAL.as_secs_f64()
    );
}

fn main() {
    let timeout = Duration::from_secs(2);
    let a2s_ports: Vec<u16> = (0..SERVERS).map(|_| a2s_server()).collect();
    measure("A2S (info + players, with challenges)", &a2s_ports, |p| {
        a2s::query(p, timeout).map(|players| players.online)
    });
    let mc_ports: Vec<u16> = (0..SERVERS).map(|_| minecraft_server()).collect();
    measure("Minecraft status ping", &mc_ports, |p| {
        minecraft::query(p, timeout).map(|players| players.online)
    });
}
