//! A host's availability: `online` ↔ `offline`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostStatus {
    Online,
    Offline,
}

impl HostStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HostStatus::Online => "online",
            HostStatus::Offline => "offline",
        }
    }

    /// The external event published when a host enters this status.
    pub fn external_event(self) -> &'static str {
        match self {
            HostStatus::Online => "manman.host.online",
            HostStatus::Offline => "manman.host.offline",
        }
    }
}

impl std::str::FromStr for HostStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "online" => Ok(HostStatus::Online),
            "offline" => Ok(HostStatus::Offline),
            other => Err(format!("unknown host status {other:?}")),
        }
    }
}
