//! Resource limits end to end on the machine's real cgroups: a config's limits reach the
//! session's cgroup through the API and the agent; a game past its memory limit ends
//! `crashed` "out of memory" while its neighbour runs on; a busy loop gets its CPU quota and
//! no more; a fork bomb is contained and the host still starts sessions; what a game
//! double-forked dies with it; `session show` memory is the cgroup's; a deployment over its
//! disk limit does not start. Each test skips, saying what is missing, only where the machine
//! has no controller it needs.

mod support;

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use manman::testkit::http_get;
use manman_cgroup::{Cgroup, Tree};
use support::stack::*;
use support::*;

/// CPU measurements are not made while another test of this file burns CPU.
static CPU_HEAVY: Mutex<()> = Mutex::new(());

/// The stack, or `None` (with the reason printed) when the machine lacks `controllers`.
fn stack_with(controllers: &[&str]) -> Option<Stack> {
    let probe = format!("manman-probe-{}", std::process::id());
    let missing: Vec<&str> = match Tree::open(&probe) {
        Ok(tree) => {
            let missing = controllers
                .iter()
                .copied()
                .filter(|c| !tree.has(c))
                .collect();
            tree.remove_if_empty();
            missing
        }
        Err(e) => {
            eprintln!("SKIPPED: no writable cgroup hierarchy: {e}");
            return None;
        }
    };
    if !missing.is_empty() {
        eprintln!("SKIPPED: this machine gives no {missing:?} controller to write");
        return None;
    }
    Some(Stack::start())
}

/// The cgroup of a session of the stack's agent.
fn cgroup_of(s: &Stack, session: i64) -> Cgroup {
    Tree::open(&s.cgroup_subtree())
        .unwrap()
        .session(&format!("session-{session}"))
}

fn show(s: &Stack, session: i64) -> serde_json::Value {
    s.cli_json(&["session", "show", &session.to_string()])
}

/// The console lines of a session in the log processor's live buffer, as `manman logs` gives
/// them.
fn console(s: &Stack, session: i64) -> Vec<String> {
    let (code, out, err) = s.cli(&["--json", "logs", &session.to_string()]);
    assert_eq!(code, 0, "{err}");
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|l| l["message"].as_str().map(str::to_string))
        .collect()
}

/// A number read from a cgroup file of `controller` (v1 name, v2 name).
fn read_number(group: &Cgroup, v1: (&str, &str), v2: (&str, &str)) -> u64 {
    let path = match group.locate(v1.0, v2.0).expect("the controller") {
        manman_cgroup::group::Dir::V1(d) => d.join(v1.1),
        manman_cgroup::group::Dir::V2(d) => d.join(v2.1),
    };
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| stat.contains(") Z "))
}

#[test]
fn a_game_past_its_memory_limit_crashes_out_of_memory_while_its_neighbour_runs() {
    let Some(s) = stack_with(&["memory"]) else {
        return;
    };
    let neighbour = s.deploy_test_game("neighbour", manman::testkit::free_port());
    let neighbour = s.start_session(neighbour);
    s.wait_status(neighbour, "running");
    // First it tries to lift its own limit (the files are the agent's, not the game's uid's),
    // then `tail` keeps the last "line" of /dev/zero (which has no newline) in memory: it
    // grows until the kernel kills it at the limit.
    let hog = s.deploy(
        "hog",
        "/bin/sh",
        &[
            "-c",
            "v1=/sys/fs/cgroup/memory$(grep :memory: /proc/self/cgroup | cut -d: -f3); \
             v2=/sys/fs/cgroup$(grep '^0::' /proc/self/cgroup | cut -d: -f3); \
             (echo -1 > $v1/memory.limit_in_bytes) 2>/dev/null && echo raised v1; \
             (echo max > $v2/memory.max) 2>/dev/null && echo raised v2; \
             echo allocating; head -c 400M /dev/zero | tail",
        ],
        &["--memory-max", "64M", "--start-duration-ms", "0"],
    );
    let config = s.cli_json(&["config", "show", &s.config_of(hog)]);
    assert_eq!(config["limits"]["memory_max_bytes"], 64 << 20);
    assert!(
        config["memory_estimate_mb"].as_i64() >= Some(64),
        "placement reserves the limit: {config}"
    );
    let session = s.start_session(hog);
    s.wait_status(session, "crashed");
    let shown = show(&s, session);
    let reason = shown["reason"].as_str().unwrap_or_default();
    assert_eq!(
        reason, "out of memory: the server used its 64 MiB limit",
        "{shown}"
    );
    assert_eq!(shown["exit_code"], 128 + 9, "{shown}");
    let lines = wait_for("the console marker", T, || {
        let lines = console(&s, session);
        lines
            .iter()
            .any(|l| l == "[manman] out of memory: the server used its 64 MiB limit")
            .then_some(lines)
    });
    assert!(lines.iter().any(|l| l == "allocating"), "{lines:?}");
    assert!(
        !lines.iter().any(|l| l.starts_with("raised")),
        "the game lifted its own limit: {lines:?}"
    );
    assert_eq!(s.status(neighbour).0, "running", "the neighbour runs on");
    // The ended session's cgroup is removed.
    wait_for("the hog's cgroup removed", T, || {
        cgroup_of(&s, session)
            .dirs()
            .iter()
            .all(|d| !d.exists())
            .then_some(())
    });
}

#[test]
fn a_busy_loop_gets_its_cpu_quota_and_no_more() {
    let Some(s) = stack_with(&["cpu"]) else {
        return;
    };
    let _alone = CPU_HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let sgc = s.deploy(
        "spinner",
        "/bin/sh",
        &["-c", "while :; do :; done"],
        &["--cpu-max", "0.5", "--start-duration-ms", "0"],
    );
    let session = s.start_session(sgc);
    s.wait_status(session, "running");
    let group = cgroup_of(&s, session);
    let cpu = || {
        group
            .usage()
            .counters
            .cpu_usec
            .expect("the cgroup's CPU time")
    };
    // Measured over 5 s of the kernel's own accounting of the group.
    let (before, at) = (cpu(), Instant::now());
    std::thread::sleep(Duration::from_secs(5));
    let used = (cpu() - before) as f64 / 1e6 / at.elapsed().as_secs_f64();
    assert!(
        (0.45..=0.55).contains(&used),
        "a busy loop under --cpu-max 0.5 used {used:.3} of a core"
    );
    s.cli_json(&["session", "stop", &session.to_string()]);
    s.wait_status(session, "stopped");
}

#[test]
fn a_fork_bomb_is_contained_and_the_host_still_starts_sessions() {
    let Some(s) = stack_with(&["pids"]) else {
        return;
    };
    let _alone = CPU_HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let bomb = s.deploy(
        "bomb",
        "/bin/sh",
        // The leader execs (no fork left to fail) and holds the session while the bomb runs.
        &["-c", "echo armed; b() { b | b & }; b; exec sleep 600"],
        &[
            "--pids-max",
            "32",
            "--start-duration-ms",
            "0",
            "--stop-timeout",
            "2",
        ],
    );
    let session = s.start_session(bomb);
    let group = cgroup_of(&s, session);
    let pids_current = || read_number(&group, ("pids", "pids.current"), ("pids", "pids.current"));
    // The bomb reaches its ceiling and stays under it.
    wait_for("the bomb at its limit", T, || {
        (pids_current() >= 30).then_some(())
    });
    let max_seen = (0..20)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            pids_current()
        })
        .max()
        .unwrap();
    assert!(max_seen <= 32, "{max_seen} tasks under --pids-max 32");
    // The host still starts and runs another session meanwhile.
    let other = s.deploy_test_game("after-the-bomb", manman::testkit::free_port());
    let other = s.start_session(other);
    s.wait_status(other, "running");
    // Stopping it ends every process of the bomb.
    let pids = group.pids();
    assert!(!pids.is_empty());
    stop_until_gone(&s, session, &pids);
}

/// A running game that double-forked a daemon out of its process group and session (only
/// the cgroup holds it): its session, group and the processes in it.
fn run_forker(s: &Stack, name: &str, extra: &[&str]) -> (i64, Cgroup, Vec<u32>) {
    let sgc = s.deploy(
        name,
        "/bin/sh",
        &[
            "-c",
            "setsid sh -c 'sleep 600' </dev/null >/dev/null 2>&1 & echo up; exec sleep 600",
        ],
        extra,
    );
    let session = s.start_session(sgc);
    s.wait_status(session, "running");
    let group = cgroup_of(s, session);
    let pids = wait_for("the game and its daemon in the cgroup", T, || {
        let p = group.pids();
        (p.len() >= 3).then_some(p)
    });
    (session, group, pids)
}

/// Stops a session and waits until it has ended and every one of `pids` is gone.
fn stop_until_gone(s: &Stack, session: i64, pids: &[u32]) {
    s.cli_json(&["session", "stop", &session.to_string()]);
    wait_for("the session ended", T, || {
        let status = s.status(session).0;
        (status == "stopped" || status == "crashed").then_some(())
    });
    wait_for("every process of the session gone", T, || {
        pids.iter().all(|p| gone(*p)).then_some(())
    });
}

#[test]
fn what_a_game_double_forked_dies_with_it_at_stop() {
    let Some(s) = stack_with(&[]) else {
        return;
    };
    let (session, group, pids) = run_forker(
        &s,
        "forker",
        &["--start-duration-ms", "0", "--stop-timeout", "2"],
    );
    // The daemon's own process group is not the game's: a group signal would miss it.
    let pgid = |pid: u32| unsafe { libc::getpgid(pid as i32) };
    let leader = pids.iter().copied().min().unwrap();
    assert!(
        pids.iter().any(|p| pgid(*p) != pgid(leader)),
        "a process left the game's process group: {pids:?}"
    );
    stop_until_gone(&s, session, &pids);
    assert!(
        group.dirs().iter().all(|d| !d.exists()),
        "its cgroup is removed"
    );
}

#[test]
fn a_dead_keeper_takes_everything_its_game_started_with_it() {
    let Some(s) = stack_with(&[]) else {
        return;
    };
    let (session, _, pids) = run_forker(&s, "orphaned", &["--start-duration-ms", "0"]);
    // The keeper is the game leader's parent.
    let leader = pids.iter().copied().min().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{leader}/stat")).unwrap();
    let keeper: i32 = stat[stat.rfind(')').unwrap() + 2..]
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        std::fs::read_to_string(format!("/proc/{keeper}/comm"))
            .unwrap()
            .starts_with("manman-keeper"),
        "the leader's parent is its keeper"
    );
    // SAFETY: SIGKILL to the keeper this test's agent started.
    unsafe { libc::kill(keeper, libc::SIGKILL) };
    s.wait_status(session, "crashed");
    wait_for("nothing the game started left", T, || {
        pids.iter().all(|p| gone(*p)).then_some(())
    });
    let reason = show(&s, session)["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("keeper died"), "{reason}");
}

#[test]
fn session_show_memory_is_the_cgroups() {
    let Some(s) = stack_with(&["memory"]) else {
        return;
    };
    // A game holding a steady 48 MiB.
    let sgc = s.deploy(
        "holder",
        "/usr/bin/python3",
        &[
            "-c",
            "import time; x = bytearray(48 << 20); x[::4096] = b'x' * len(x[::4096]); print('up', flush=True); time.sleep(600)",
        ],
        &["--start-duration-ms", "0", "--stop-timeout", "2"],
    );
    let session = s.start_session(sgc);
    s.wait_status(session, "running");
    let group = cgroup_of(&s, session);
    let current = || {
        read_number(
            &group,
            ("memory", "memory.usage_in_bytes"),
            ("memory", "memory.current"),
        )
    };
    wait_for("the game's memory held", T, || {
        (current() > 48 << 20).then_some(())
    });
    // A heartbeat sampled after the game holds its memory.
    let shown = wait_for("a sample of the full game", T, || {
        let shown = show(&s, session);
        (shown["sample"]["rss_bytes"].as_u64()? > 48 << 20).then_some(shown)
    });
    let shown_bytes = shown["sample"]["rss_bytes"].as_u64().unwrap() as f64;
    let file = current() as f64;
    assert!(
        (shown_bytes - file).abs() / file <= 0.05,
        "session show says {shown_bytes} bytes, the cgroup {file}"
    );
    assert!(
        shown["sample"]["memory_peak_bytes"].as_u64() >= Some(48 << 20),
        "{shown}"
    );
    // The agent's /metrics says the same, and how sessions are confined.
    let (host, _) = s.host.as_ref().unwrap();
    let metrics = http_get(host.health_port, "/metrics");
    assert!(
        metrics.contains(&format!(
            "manman_host_session_rss_bytes{{session_id=\"{session}\""
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("manman_host_session_oom_kills_total{"),
        "{metrics}"
    );
    assert!(
        ["v2", "hybrid", "v1"]
            .iter()
            .any(|m| metrics.contains(&format!("manman_host_cgroup_mode{{mode=\"{m}\"}} 1"))),
        "{metrics}"
    );
    s.cli_json(&["session", "stop", &session.to_string()]);
    s.wait_status(session, "stopped");
}

#[test]
fn a_deployment_over_its_disk_limit_is_warned_then_refused() {
    let Some(s) = stack_with(&[]) else {
        return;
    };
    let port = manman::testkit::free_port();
    let sgc = s.deploy_test_game("world-eater", port);
    // The same deployment with a 2 MiB soft limit: its config replaced, as an operator would.
    let config = s.config_of(sgc);
    let game = s.cli_json(&["config", "show", &config])["game_id"].to_string();
    let flags = Stack::test_game_flags(port);
    let mut update = vec![
        "config", "update", &config, "--game", &game, "--name", "default",
    ];
    update.extend(flags.iter().map(String::as_str));
    update.extend(["--disk-max", "2M"]);
    let (code, _, err) = s.cli(&update);
    assert_eq!(code, 0, "{err}");
    let dir = s.data_dir.join(format!("sgc-{sgc}"));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, bytes: usize| {
        std::fs::write(dir.join(name), manman::testkit::noise(bytes, 3)).unwrap();
    };
    // At 95 % it starts, and the console is told.
    write("world.dat", 1_950_000);
    let session = s.start_session(sgc);
    s.wait_status(session, "running");
    wait_for("the 90 % warning", T, || {
        console(&s, session)
            .iter()
            .any(|l| {
                l.starts_with("[manman] disk: the deployment uses") && l.contains("2 MiB limit")
            })
            .then_some(())
    });
    assert!(
        wait_for("a sample with the disk size", T, || show(&s, session)
            ["sample"]["disk_bytes"]
            .as_u64())
            >= 1_950_000
    );
    s.cli_json(&["session", "stop", &session.to_string()]);
    s.wait_status(session, "stopped");
    // Over the limit, the next start is refused with the reason.
    write("more.dat", 300_000);
    let refused = s.start_session(sgc);
    s.wait_status(refused, "crashed");
    let reason = show(&s, refused)["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.starts_with("disk limit: the deployment's directory holds")
            && reason.contains("of its 2 MiB limit"),
        "{reason}"
    );
    assert!(Path::new(&dir).exists(), "nothing of the world was touched");
}

#[test]
fn limits_the_host_cannot_use_are_refused_with_the_field_named() {
    let s = Stack::start();
    let game = s.cli_json(&["game", "create", "limited"])["game_id"].to_string();
    let create = |extra: &[&str]| {
        let mut args = vec![
            "config",
            "create",
            "--game",
            &game,
            "--name",
            "x",
            "--program",
            "/bin/true",
        ];
        args.extend_from_slice(extra);
        s.cli(&args)
    };
    for (flags, field) in [
        (&["--memory-max", "1K"][..], "memory_max"),
        (
            &["--memory-max", "64M", "--memory-high", "1G"][..],
            "memory_high",
        ),
        (&["--cpu-max", "0"][..], "cpu_max"),
        (&["--cpu-max", "NaN"][..], "cpu_max"),
        (&["--cpu-weight", "0"][..], "cpu_weight"),
        (&["--pids-max", "2"][..], "pids_max"),
        (&["--io-weight", "20000"][..], "io_weight"),
        (&["--disk-max", "10"][..], "disk_max"),
    ] {
        let (code, _, err) = create(flags);
        assert_ne!(code, 0, "{flags:?} was accepted");
        assert!(err.contains(field), "{flags:?}: {err}");
    }
    // A size the CLI cannot read never reaches the API.
    let (code, _, err) = create(&["--memory-max", "lots"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a size"), "{err}");
    // The same through the API directly: INVALID_ARGUMENT with the field.
    let client = manman::grpc::Endpoint::plain(&format!("127.0.0.1:{}", s.api_port)).api_client();
    let refused = client
        .create_game_config_opt(
            &manman::proto::v1::CreateGameConfigRequest {
                config: Some(manman::proto::v1::GameConfig {
                    game_id: game.parse().unwrap(),
                    name: "y".into(),
                    program: "/bin/true".into(),
                    limits: Some(manman::proto::v1::ResourceLimits {
                        memory_max_bytes: Some(-1),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
            s.opt(),
        )
        .unwrap_err();
    match refused {
        grpcio::Error::RpcFailure(st) => {
            assert_eq!(st.code(), grpcio::RpcStatusCode::INVALID_ARGUMENT);
            assert!(st.message().contains("memory_max"), "{}", st.message());
        }
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
}
