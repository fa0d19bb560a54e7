//! How the manager starts processes: [`Launcher`]. [`LocalLauncher`] makes them our own
//! children (`manman_child::LocalChild`); the keeper launcher (`keeper/client.rs`) has a
//! per-session `manman-keeper` hold each game and its pipes across restarts of the agent. The
//! supervisor (runner.rs) only sees the [`ChildIo`] they return.

use super::{ChildIo, LocalChild, Spec};

/// Starts children, and finds the ones a previous manager left with their keepers.
pub trait Launcher: Send + Sync {
    /// Starts `spec`'s program.
    fn launch(
        &self,
        spec: &Spec,
        global_env: &[(String, String)],
    ) -> std::io::Result<Box<dyn ChildIo>>;
    /// Whether processes outlive the manager (held by keepers), so it can let go of them.
    fn keeps_processes(&self) -> bool {
        false
    }
    /// Re-attaches to `name`'s process (`pid`) from a previous run, resuming output after
    /// `after_seq`; `None` if nothing holds it or its exit any more.
    fn adopt(&self, _name: &str, _pid: u32, _after_seq: u64) -> Option<Box<dyn ChildIo>> {
        None
    }
}

/// Our own children: gone with us.
pub struct LocalLauncher;

impl Launcher for LocalLauncher {
    fn launch(
        &self,
        spec: &Spec,
        global_env: &[(String, String)],
    ) -> std::io::Result<Box<dyn ChildIo>> {
        Ok(Box::new(LocalChild::spawn(&spec.launch(), global_env)?))
    }
}
