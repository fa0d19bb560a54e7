//! The resource-limit flags of `config create|update` (`--memory-max 4G`, `--cpu-max 2.5`,
//! `--pids-max`, `--disk-max 20G`…), as the API's `ResourceLimits`.

use clap::Args;

use crate::proto::v1 as pb;
use crate::wire::game_process::parse_bytes;

fn size(text: &str) -> Result<i64, String> {
    let bytes = parse_bytes(text)?;
    i64::try_from(bytes).map_err(|_| format!("{text:?} is too large"))
}

#[derive(Args, Default)]
pub struct LimitFlags {
    /// Hard memory limit of a session (`512M`, `4G`): past it the kernel kills the game,
    /// which ends `crashed` with "out of memory". Placement reserves it.
    #[arg(long, value_name = "SIZE", value_parser = size, help_heading = "Limits")]
    pub memory_max: Option<i64>,
    /// Memory at which the game is throttled before the hard limit (cgroup v2 hosts).
    #[arg(long, value_name = "SIZE", value_parser = size, help_heading = "Limits")]
    pub memory_high: Option<i64>,
    /// Let the game use swap (off by default: a swapping server lags).
    #[arg(long, help_heading = "Limits")]
    pub swap: bool,
    /// CPU time in cores (`0.5`, `2.5`).
    #[arg(long, value_name = "CORES", help_heading = "Limits")]
    pub cpu_max: Option<f64>,
    /// CPU share against the host's other sessions, 1-10000 [default: 100].
    #[arg(long, help_heading = "Limits")]
    pub cpu_weight: Option<i32>,
    /// Processes and threads of a session [default: 512].
    #[arg(long, help_heading = "Limits")]
    pub pids_max: Option<i32>,
    /// IO share, 1-10000 (cgroup v2 hosts) [default: 100].
    #[arg(long, help_heading = "Limits")]
    pub io_weight: Option<i32>,
    /// Soft limit on the deployment directory's size (`20G`): no start above it, a console
    /// warning at 90 %.
    #[arg(long, value_name = "SIZE", value_parser = size, help_heading = "Limits")]
    pub disk_max: Option<i64>,
}

impl LimitFlags {
    pub fn into_limits(self) -> pb::ResourceLimits {
        pb::ResourceLimits {
            memory_max_bytes: self.memory_max,
            memory_high_bytes: self.memory_high,
            swap: self.swap,
            cpu_max_cores: self.cpu_max,
            cpu_weight: self.cpu_weight,
            pids_max: self.pids_max,
            io_weight: self.io_weight,
            disk_max_bytes: self.disk_max,
        }
    }
}
