//! Queries on `sessions`, by job: the processor's transitions, starting one, showing them,
//! ending those of lost hosts, and their latest samples.

mod lost;
mod samples;
mod start;
mod transitions;
mod views;

pub use lost::{end_lost, end_sessions_of_lost_hosts, LostScope};
pub use samples::{
    prune_history, server_history, session_history, store_samples, HistoryPoint, StoredSample,
};
pub use start::{create_pending, live_of_deployment, StartConflict};
pub use transitions::{
    apply_changes, lock_many, AppliedChange, LockedSession, Restart, SessionChange,
};
pub use views::{get_view, list_views, ListFilter, SessionView};
