//! Opening a broker connection, retrying with backoff until it works or shutdown starts.

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
        match open(url) {
            Ok(conn) => {
                if attempt > 0 {
                    log::info!(who = who; "connected to broker after {attempt} retries");
                }
                return Ok(conn);
            }
            Err(e) => {
                let delay = backoff.delay(attempt);
                log::warn!(who = who, url = redact_url(url).as_str();
                    "broker connection failed: {e}; retrying in {delay:?}");
                if shutdown.wait(delay) {
                    return Err(BusError::Shutdown);
                }
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

/// Opens one connection to an `amqp://user:pass@host:port/vhost?heartbeat=N` URL, or
/// `amqps://…` (TLS, port 5671 by default; the broker's certificate is checked against the
/// system's trust store, or the PEM that `SSL_CERT_FILE` names, and against the host name).
///
/// amiquip's own `insecure_open` leaves Nagle's algorithm on, which delays small frames (acks,
/// confirms) by up to 40 ms; we open the socket ourselves with `TCP_NODELAY`.
pub fn open(url: &str) -> Result<Connection, BusError> {
    let bad = |why: &str| BusError::Other(format!("invalid RABBITMQ_URL: {why}"));
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
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| BusError::Other(format!("cannot resolve {host}:{port}: {e}")))?
        .next()
        .ok_or_else(|| BusError::Other(format!("{host}:{port} resolves to nothing")))?;
    let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| BusError::Other(format!("cannot connect to {host}:{port}: {e}")))?;
    stream
        .set_nodelay(true)
        .map_err(|e| BusError::Other(e.to_string()))?;
    let stream =
        mio::net::TcpStream::from_stream(stream).map_err(|e| BusError::Other(e.to_string()))?;
    if tls {
        let connector = native_tls::TlsConnector::new()
            .map_err(|e| BusError::Other(format!("cannot set up TLS: {e}")))?;
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
