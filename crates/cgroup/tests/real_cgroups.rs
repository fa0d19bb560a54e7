//! The cgroup code against this machine's real cgroups: a subtree and a session group are
//! made, limited, joined at exec, sampled, killed whole and removed. Skipped, saying what is
//! missing, only where no hierarchy can be written.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;
use std::time::{Duration, Instant};

use manman_cgroup::group::Dir;
use manman_cgroup::{JoinFds, Limits, Tree};

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_session_group_is_limited_joined_sampled_killed_whole_and_removed() {
    let subtree = format!("manman-test-cgroup-{}", std::process::id());
    let tree = match Tree::open(&subtree) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("SKIPPED: no writable cgroup hierarchy on this machine: {e}");
            return;
        }
    };
    let group = tree.session("session-1");
    group.create().unwrap();
    let limits = Limits {
        memory_max: Some(64 << 20),
        cpu_max_cores: Some(0.5),
        pids_max: Some(16),
        ..Limits::default()
    };
    let not_enforced = limits.apply(&group).unwrap();
    // What this host has is written and reads back; what it lacks is said, not dropped.
    match group.locate("memory", "memory") {
        Some(Dir::V1(d)) => assert_eq!(
            std::fs::read_to_string(d.join("memory.limit_in_bytes"))
                .unwrap()
                .trim(),
            (64u64 << 20).to_string()
        ),
        Some(Dir::V2(d)) => assert_eq!(
            std::fs::read_to_string(d.join("memory.max"))
                .unwrap()
                .trim(),
            (64u64 << 20).to_string()
        ),
        None => assert!(
            not_enforced.iter().any(|w| w.contains("memory limit")),
            "{not_enforced:?}"
        ),
    }
    if let Some(Dir::V1(d) | Dir::V2(d)) = group.locate("pids", "pids") {
        assert_eq!(
            std::fs::read_to_string(d.join("pids.max")).unwrap().trim(),
            "16"
        );
    }

    // A shell with two children that left its process group: all three are in the group.
    let join = group.join_fds().unwrap();
    let fds = join.raw();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "setsid sleep 300 & setsid sleep 300 & wait"]);
    // SAFETY: join_in_child only writes to descriptors opened above.
    unsafe {
        cmd.pre_exec(move || JoinFds::join_in_child(&fds));
    }
    let mut child = cmd.spawn().unwrap();
    drop(join);
    let pids = wait_for("three processes in the group", || {
        let p = group.pids();
        (p.len() == 3).then_some(p)
    });
    assert!(pids.contains(&child.id()), "{pids:?}");
    let usage = group.usage();
    assert!(usage.counters.cpu_usec.is_some(), "{usage:?}");
    if group.locate("memory", "memory").is_some() {
        assert!(
            usage.counters.memory_bytes.is_some_and(|m| m > 0),
            "{usage:?}"
        );
        assert_eq!(usage.oom_kills, Some(0));
    }
    if group.locate("pids", "pids").is_some() {
        assert_eq!(usage.counters.pids, Some(3), "{usage:?}");
    }
    assert!(!group.is_empty());
    // The heartbeat's held-open counters read the same files again with one call each.
    let counters = manman_cgroup::Counters::open(&group);
    let mut buf = Vec::new();
    for _ in 0..2 {
        let sample = counters.read(&mut buf);
        assert_eq!(sample.processes, Some(3), "{sample:?}");
        assert!(
            sample
                .cpu_usec
                .is_some_and(|c| c >= usage.counters.cpu_usec.unwrap()),
            "{sample:?}"
        );
        assert_eq!(
            sample.memory_bytes.is_some(),
            usage.counters.memory_bytes.is_some()
        );
    }

    group.kill_all();
    assert!(
        group.wait_empty(Duration::from_secs(5)),
        "left: {:?}",
        group.pids()
    );
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "{pid} outlived the kill"
        );
    }
    group.remove().unwrap();
    for dir in group.dirs() {
        assert!(!dir.exists(), "{} was not removed", dir.display());
    }
    tree.remove_if_empty();
    assert!(tree.sessions().is_empty());
}
