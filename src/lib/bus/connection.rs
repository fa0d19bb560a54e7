//! Opening a broker connection, retrying with backoff until it works or shutdown starts, and
//! the one reconnect loop every long-lived broker user runs its sessions in
//! ([`stay_connected`]).

use std::net::ToSocketAddrs;
use std::time::Duration;

use amiquip::{Auth, Connection, ConnectionOptions, ConnectionTuning};
use percent_encoding::percent_decode_str;

use super::BusError;
use crate::config::redact_url;
use crate::lifecycle::ShutdownSignal;
use crate::retry::Backoff;

/// Connects to `url`, retrying forever (logging each failure) until success or shutdown.
pub fn connect(url: &str, shutdown: &ShutdownSignal, who: &str) -> Result<Connection, BusError> {
    let backoff = Backoff::reconnect();
    let mut attempt = 0;
    loop {
        if shutdown.is_triggered() {
            return Err(BusError::Shutdown);
        }
        match open_first(url, who) {
            Ok(conn) => {
                if attempt > 0 {
                    log::info!(who = who; "connected to broker after {attempt} retries");
                }
                return Ok(conn);
            }
            Err(e) => {
                let delay = backoff.delay(attempt);
                log::warn!(who = who, url = redact_url(url).as_str();
                    "broker connection failed: {}; retrying in {delay:?}", crate::errors::chain(&e));
                if shutdown.wait(delay) {
                    return Err(BusError::Shutdown);
                }
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

/// A session that stayed up this long was healthy: the next failure starts the backoff over.
pub const STABLE_SESSION: Duration = Duration::from_secs(10);

/// The number of failures in a row, after a session that lasted `lasted` failed.
pub fn failures_after(failures: u32, lasted: Duration) -> u32 {
    if lasted >= STABLE_SESSION {
        1
    } else {
        failures.saturating_add(1)
    }
}

/// Runs `session` on a connection to `url` until it ends well (`Ok`, or shutdown), opening a
/// new connection after each failure, with the reconnect backoff between them; the count of
/// failures starts over after a session that stayed up [`STABLE_SESSION`]. What the session
/// did not finish (unacknowledged deliveries, unconfirmed publishes) is its to redo.
pub fn stay_connected(
    url: &str,
    who: &str,
    shutdown: &ShutdownSignal,
    mut session: impl FnMut(&mut Connection) -> Result<(), BusError>,
) {
    let backoff = Backoff::reconnect();
    let mut failures = 0;
    loop {
        let Ok(mut conn) = connect(url, shutdown, who) else {
            return; // only fails on shutdown
        };
        let began = std::time::Instant::now();
        match session(&mut conn) {
            Ok(()) | Err(BusError::Shutdown) => {
                let _ = conn.close();
                return;
            }
            Err(e) => {
                failures = failures_after(failures, began.elapsed());
                let delay = backoff.delay(failures - 1);
                log::warn!(who = who;
                    "lost the broker: {}; reconnecting in {delay:?}", crate::errors::chain(&e));
                drop(conn);
                if shutdown.wait(delay) {
                    return;
                }
            }
        }
    }
}

/// Opens a connection to the first node of `urls` (one or several, comma-separated) that
/// answers, in their order: a dead node costs one connect timeout, not the daemon. The error
/// is the last node's.
pub fn open_first(urls: &str, who: &str) -> Result<Connection, BusError> {
    let mut last = BusError::InvalidUrl("no broker address".into());
    let nodes = crate::config::url_list(urls);
    for (i, url) in nodes.iter().enumerate() {
        match open(url) {
            Ok(conn) => {
                if i > 0 {
                    log::info!(who = who, url = redact_url(url).as_str();
                        "connected to broker node {} of {}", i + 1, nodes.len());
                }
                return Ok(conn);
            }
            Err(e) => {
                if nodes.len() > 1 {
                    log::warn!(who = who, url = redact_url(url).as_str();
                        "broker node unreachable: {}", crate::errors::chain(&e));
                }
                last = e;
            }
        }
    }
    Err(last)
}

/// Opens one connection to an `amqp://user:pass@host:port/vhost?heartbeat=N` URL, or
/// `amqps://…` (TLS, port 5671 by default; the broker's certificate is checked against the
/// system's trust store, or the PEM that `SSL_CERT_FILE` names, and against the host name).
///
/// amiquip's own `insecure_open` leaves Nagle's algorithm on, which delays small frames (acks,
/// confirms) by up to 40 ms; we open the socket ourselves with `TCP_NODELAY`.
pub fn open(url: &str) -> Result<Connection, BusError> {
    let bad = |why: &str| BusError::InvalidUrl(why.to_string());
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    let tls = match parsed.scheme() {
        "amqp" => false,
        "amqps" => true,
        _ => return Err(bad("scheme must be amqp or amqps")),
    };
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .unwrap_or("localhost");
    let port = parsed.port().unwrap_or(if tls { 5671 } else { 5672 });
    let mut options = ConnectionOptions::<Auth>::default()
        .heartbeat(30)
        .connection_timeout(Some(Duration::from_secs(10)));
    let vhost = parsed.path().trim_start_matches('/');
    if !vhost.is_empty() {
        options = options.virtual_host(decode(vhost));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        options = options.auth(Auth::Plain {
            username: decode(match parsed.username() {
                "" => "guest",
                u => u,
            }),
            password: decode(parsed.password().unwrap_or("guest")),
        });
    }
    for (k, v) in parsed.query_pairs() {
        if k == "heartbeat" {
            options = options.heartbeat(v.parse().map_err(|_| bad("heartbeat must be a number"))?);
        }
    }
    let connect_error = |source| BusError::Connect {
        address: format!("{host}:{port}"),
        source,
    };
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(connect_error)?
        .next()
        .ok_or_else(|| connect_error(std::io::Error::other("the name resolves to nothing")))?;
    let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(connect_error)?;
    stream.set_nodelay(true).map_err(connect_error)?;
    let stream = mio::net::TcpStream::from_stream(stream).map_err(connect_error)?;
    if tls {
        let connector = native_tls::TlsConnector::new().map_err(BusError::Tls)?;
        return Ok(Connection::open_tls_stream(
            connector,
            host,
            stream,
            options,
            ConnectionTuning::default(),
        )?);
    }
    Ok(Connection::insecure_open_stream(
        stream,
        options,
        ConnectionTuning::default(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_starts_over_after_a_stable_session() {
        let quick = Duration::from_millis(50);
        assert_eq!(failures_after(0, quick), 1);
        assert_eq!(failures_after(4, quick), 5);
        assert_eq!(failures_after(4, STABLE_SESSION), 1);
        assert_eq!(failures_after(u32::MAX, quick), u32::MAX);
    }
}
