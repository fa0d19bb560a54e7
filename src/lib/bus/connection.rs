//! Opening a broker connection, retrying with backoff until it works or shutdown starts.

use amiquip::Connection;

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
        match Connection::insecure_open(url) {
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
