//! Sessions ↔ managed processes: naming, and the process spec a start command becomes (built
//! with the same validation the API applied to the config).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::game_users::{self, GameUsers};
use super::users;
use crate::procman::{ExitInfo, Manager, Spec};
use crate::wire::commands::StartSession;
use crate::wire::players::PlayerQuery;
use manman_cgroup::Cgroup;

use super::disk::{LABEL_DIR, LABEL_DISK_MAX};

pub fn process_name(session_id: i64) -> String {
    format!("session-{session_id}")
}

pub fn session_of(process: &str) -> Option<i64> {
    process.strip_prefix("session-")?.parse().ok()
}

/// The exit code to report: the process's own, or 128 + signal (the shell's convention).
/// The live sessions and their games' pids.
pub fn live_games(manager: &Manager) -> Vec<(i64, u32)> {
    manager
        .status_all("session-*")
        .iter()
        .filter(|s| s.state.is_live())
        .filter_map(|s| Some((session_of(&s.name)?, s.pid?)))
        .collect()
}

pub fn exit_code(exit: Option<ExitInfo>) -> Option<i32> {
    exit.and_then(|e| e.code.or(e.signal.map(|s| 128 + s)))
}

/// The process spec for a start command, running in `data_dir/sgc-{id}/[working_dir]` with
/// the game's own environment plus `MANMAN_SESSION_ID` and `PORT` (the first host port), as
/// the deployment's own user (`users`) or the config's `run_as` user, never as root; that
/// user is given the deployment's directory (0700).
/// The session runs in `cgroup` (when the host gives it one) with the config's limits, and
/// its deployment's directory and disk limit are kept as labels for the disk check.
pub fn spec_for(
    cmd: &StartSession,
    data_dir: &Path,
    users: &GameUsers,
    cgroup: Option<Cgroup>,
) -> Result<Spec, String> {
    let p = &cmd.process;
    p.validate().map_err(|e| format!("invalid config: {e}"))?;
    let deployment_dir = data_dir.join(format!("sgc-{}", cmd.sgc_id));
    let mut dir = deployment_dir.clone();
    if let Some(d) = p.working_dir.as_deref().filter(|d| !d.is_empty()) {
        dir = dir.join(d);
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("working directory {} is unusable: {e}", dir.display()))?;
    // The game owns everything under its deployment's directory and could have made a part of
    // the working directory's path a link to somewhere else on the host.
    let inside = |d: &Path| d.canonicalize().ok();
    if inside(&dir)
        .zip(inside(&deployment_dir))
        .is_none_or(|(d, root)| !d.starts_with(root))
    {
        return Err(format!(
            "working directory {} leads outside its deployment's directory",
            dir.display()
        ));
    }
    let user = match p.run_as.as_deref() {
        Some(who) => {
            let user = users::resolve(who).map_err(|e| crate::errors::chain(&e))?;
            if user.id.uid == 0 || user.id.gid == 0 {
                return Err(format!("run_as {who:?} is root: games never run as root"));
            }
            Some(user)
        }
        None => users.for_deployment(cmd.sgc_id)?.map(|id| users::User {
            name: format!("manman-sgc-{}", cmd.sgc_id),
            id,
            home: deployment_dir.display().to_string(),
        }),
    };
    let mut spec = Spec::new(&process_name(cmd.session_id), &p.program, &[]);
    spec.args = p.args.clone();
    let mut env: BTreeMap<String, String> = p.env.clone();
    env.insert("MANMAN_SESSION_ID".into(), cmd.session_id.to_string());
    if let Some(user) = &user {
        // Its own home and name, not the agent's (the config's env may still override them).
        for (key, value) in [
            ("HOME", user.home.clone()),
            ("USER", user.name.clone()),
            ("LOGNAME", user.name.clone()),
        ] {
            env.entry(key.into()).or_insert(value);
        }
        for d in [&deployment_dir, &dir] {
            game_users::give_directory(d, user.id)?;
        }
    }
    if let Some(port) = cmd.ports.first() {
        env.entry("PORT".into())
            .or_insert(port.host_port.to_string());
    }
    spec.env = env.into_iter().collect();
    // The agent's environment holds the broker's credentials: a game gets none of it.
    spec.inherit_env = false;
    spec.working_dir = Some(dir);
    spec.restart = p.restart_policy;
    spec.start_duration = Duration::from_millis(p.start_duration_ms.into());
    spec.backoff_initial = Duration::from_millis(p.backoff_initial_ms.into());
    spec.backoff_max = Duration::from_millis(p.backoff_max_ms.into());
    spec.retry_limit = p.retry_limit;
    spec.reset_after = Duration::from_secs(p.reset_after_seconds.into());
    spec.stop_signal = p.signal();
    spec.stop_input = p.stop_command.clone().filter(|c| !c.trim().is_empty());
    spec.stop_timeout = p.stop_timeout();
    spec.run_as = user.map(|u| u.id);
    spec.no_new_privs = true;
    spec.max_open_files = p.max_open_files.map(u64::from);
    spec.max_processes = p.max_processes.map(u64::from);
    spec.cgroup = cgroup;
    spec.limits = p.limits.cgroup();
    spec.labels
        .insert(LABEL_DIR.into(), deployment_dir.display().to_string());
    if let Some(max) = p.limits.disk_max_bytes {
        spec.labels.insert(LABEL_DISK_MAX.into(), max.to_string());
    }
    // A probe names the port as the config does; the game listens on its deployment's binding.
    let on_host = |port: Option<u16>| {
        port.map(|port| {
            cmd.ports
                .iter()
                .find(|b| b.container_port == i32::from(port) && b.protocol == "tcp")
                .and_then(|b| u16::try_from(b.host_port).ok())
                .unwrap_or(port)
        })
    };
    spec.readiness = p.readiness.clone().map(|mut r| {
        r.tcp_port = on_host(r.tcp_port);
        r
    });
    spec.liveness = p.liveness.clone().map(|mut l| {
        l.tcp_port = on_host(l.tcp_port);
        l
    });
    if let Some(mut count) = p.players.clone() {
        match &mut count.query {
            PlayerQuery::A2s { port } | PlayerQuery::Minecraft { port } => {
                // A2S answers on UDP: its binding is looked up whatever the protocol.
                *port = cmd
                    .ports
                    .iter()
                    .find(|b| b.container_port == i32::from(*port))
                    .and_then(|b| u16::try_from(b.host_port).ok())
                    .unwrap_or(*port);
            }
            PlayerQuery::Console { .. } => {}
        }
        spec.labels.insert(
            super::players::LABEL.into(),
            serde_json::to_string(&count).expect("a player query serialises"),
        );
    }
    spec.validate()?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::probes::{LivenessProbe, ReadinessProbe};
    use crate::wire::GameProcess;

    fn agent_user(dir: &Path) -> GameUsers {
        GameUsers::open(game_users::GameUserPolicy::AgentUser, dir).unwrap()
    }

    fn cmd(process: GameProcess) -> StartSession {
        StartSession {
            session_id: 9,
            sgc_id: 4,
            process,
            ports: vec![crate::wire::commands::PortBinding {
                container_port: 25565,
                host_port: 25570,
                protocol: "tcp".into(),
            }],
        }
    }

    #[test]
    fn a_start_command_becomes_a_spec() {
        let dir = std::env::temp_dir().join(format!("mm-spec-{}", std::process::id()));
        let spec = spec_for(
            &cmd(GameProcess {
                program: "/bin/game".into(),
                stop_command: Some("quit".into()),
                stop_timeout_seconds: 20,
                working_dir: Some("world".into()),
                ..GameProcess::default()
            }),
            &dir,
            &agent_user(&dir),
            None,
        )
        .unwrap();
        assert_eq!(spec.name, "session-9");
        assert_eq!(spec.stop_input.as_deref(), Some("quit"));
        assert_eq!(spec.stop_timeout, Duration::from_secs(20));
        assert_eq!(spec.working_dir, Some(dir.join("sgc-4/world")));
        assert!(spec.env.contains(&("PORT".into(), "25570".into())));
        assert!(spec.env.contains(&("MANMAN_SESSION_ID".into(), "9".into())));
        assert!(!spec.inherit_env);
        assert_eq!(spec.readiness, None);
        let probed = spec_for(
            &cmd(GameProcess {
                program: "/bin/game".into(),
                readiness: Some(ReadinessProbe {
                    tcp_port: Some(25565),
                    ..ReadinessProbe::default()
                }),
                liveness: Some(LivenessProbe {
                    tcp_port: Some(9999),
                    ..LivenessProbe::default()
                }),
                ..GameProcess::default()
            }),
            &dir,
            &agent_user(&dir),
            None,
        )
        .unwrap();
        assert_eq!(
            probed.readiness.unwrap().tcp_port,
            Some(25570),
            "the host port"
        );
        assert_eq!(
            probed.liveness.unwrap().tcp_port,
            Some(9999),
            "not a bound port"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn what_the_api_would_refuse_the_host_refuses_too() {
        let err = spec_for(
            &cmd(GameProcess {
                program: "/bin/game".into(),
                stop_signal: "99".into(),
                ..GameProcess::default()
            }),
            Path::new("/nonexistent"),
            &agent_user(Path::new("/nonexistent")),
            None,
        )
        .unwrap_err();
        assert!(err.contains("stop_signal"), "{err}");
        assert_eq!(session_of("session-12"), Some(12));
        assert_eq!(session_of("other"), None);
    }
}
