//! A child started in a cgroup takes everything it started with it when it ends, even what
//! double-forked out of its process group. Skipped, saying why, only without writable cgroups.

use std::time::{Duration, Instant};

use manman_cgroup::Tree;
use manman_child::{ChildIo, Launch, LocalChild};

#[test]
fn what_escaped_the_process_group_dies_with_the_game() {
    let subtree = format!("manman-test-child-{}", std::process::id());
    let tree = match Tree::open(&subtree) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("SKIPPED: no writable cgroup hierarchy on this machine: {e}");
            return;
        }
    };
    let group = tree.session("session-1");
    group.create().unwrap();
    let mut launch = Launch::new(
        "/bin/sh",
        // The daemon leaves the game's process group and session, then the game exits.
        &[
            "-c",
            "setsid sh -c 'sleep 300' </dev/null >/dev/null 2>&1 & echo started; sleep 0.2",
        ],
    );
    launch.cgroup = Some(group.clone());
    let mut child = Box::new(LocalChild::spawn(&launch, &[]).unwrap());
    let until = Instant::now() + Duration::from_secs(10);
    let mut lines = Vec::new();
    loop {
        if child.service(&mut |_, l| lines.push(l.to_string())) {
            break;
        }
        assert!(Instant::now() < until, "the game did not end");
        std::thread::sleep(Duration::from_millis(10));
    }
    let escaped: Vec<u32> = group
        .pids()
        .into_iter()
        .filter(|p| *p != child.pid())
        .collect();
    assert!(!escaped.is_empty(), "the daemon is in the game's cgroup");
    let exit = child.finish(&mut |_, l| lines.push(l.to_string()));
    assert!(exit.success(), "{exit:?} {lines:?}");
    assert!(
        group.wait_empty(Duration::from_secs(5)),
        "left behind: {:?}",
        group.pids()
    );
    group.remove().unwrap();
    tree.remove_if_empty();
}
