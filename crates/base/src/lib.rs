//! ManMan's ground floor, shared by the root crate and the process manager's crate: the one
//! exponential backoff (retry), the one way to take a lock (sync), and the shutdown signal
//! every long-running thread watches (shutdown). Nothing here knows about games.

pub mod retry;
pub mod shutdown;
pub mod sync;
