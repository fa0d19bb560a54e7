//! Bounds on what one client may cost the server: the size of a request head, how long it may
//! take to arrive, how long a socket may stall, how many connections a listener holds. (ManMan
//! patch: see PATCHES.md; upstream tiny-http#290 and #219 ask for the same.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::connection::Connection;

/// Limits applied to every connection of a [`crate::Server`].
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest request line or header line, in bytes (431 beyond it).
    pub max_line_bytes: usize,
    /// Most header lines in one request (431 beyond it).
    pub max_headers: usize,
    /// Time from a request's first byte to the end of its head (and of a buffered body);
    /// a client slower than this gets 408 and is disconnected.
    pub head_timeout: Duration,
    /// Longest a single read or write may block (SO_RCVTIMEO/SO_SNDTIMEO); an idle
    /// keep-alive connection is closed after this long without a new request.
    pub io_timeout: Duration,
    /// Connections held at once. At the cap, the connection idle the longest is closed to make
    /// room; when none is idle the new one is answered 503 and closed.
    pub max_connections: usize,
    /// Bodies up to this size (with a `Content-Length`) are read by the connection's own
    /// thread before the request is handed out, so a handler never waits on a slow client.
    pub buffered_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line_bytes: 8 * 1024,
            max_headers: 64,
            head_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(10),
            max_connections: 512,
            buffered_body_bytes: 1024,
        }
    }
}

/// The connections a listener holds, with when each became idle (waiting for the first byte of
/// its next request), so the accept thread can make room at the cap.
#[derive(Default)]
pub(crate) struct ConnectionTable {
    next_id: AtomicU64,
    entries: Mutex<HashMap<u64, Entry>>,
}

struct Entry {
    socket: Connection,
    idle_since: Option<Instant>,
}

impl ConnectionTable {
    /// Registers a connection if there is room, making room by closing the longest-idle one at
    /// the cap. `None`: full of busy connections.
    pub(crate) fn admit(self: &Arc<Self>, socket: Connection, max: usize) -> Option<Slot> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= max {
            let oldest_idle = entries
                .iter()
                .filter_map(|(id, e)| e.idle_since.map(|since| (since, *id)))
                .min()
                .map(|(_, id)| id)?;
            if let Some(evicted) = entries.remove(&oldest_idle) {
                // Its thread wakes from its read with EOF and ends.
                evicted.socket.shutdown(std::net::Shutdown::Both).ok();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        entries.insert(
            id,
            Entry {
                socket,
                idle_since: None,
            },
        );
        Some(Slot {
            table: Arc::clone(self),
            id,
        })
    }

    fn set_idle(&self, id: u64, idle: bool) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = entries.get_mut(&id) {
            entry.idle_since = if idle { Some(Instant::now()) } else { None };
        }
    }
}

/// One connection's place in its listener's table; freed when dropped.
pub(crate) struct Slot {
    table: Arc<ConnectionTable>,
    id: u64,
}

impl Slot {
    /// Waiting for a new request: this connection may be closed to make room.
    pub(crate) fn idle(&self) {
        self.table.set_idle(self.id, true);
    }

    /// A request is arriving or being answered.
    pub(crate) fn busy(&self) {
        self.table.set_idle(self.id, false);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut entries = self.table.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(&self.id);
    }
}
