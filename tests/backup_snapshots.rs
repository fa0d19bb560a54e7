//! Copy-on-write snapshots for backups, on a real XFS filesystem (reflinks) loop-mounted for
//! each test: a snapshot is the world as it was when taken whatever the game writes after,
//! shares its blocks instead of copying them, keeps modes, times and links, and follows no
//! link a game swapped in; a filesystem without reflinks gives way to reading the live files;
//! and a running game's backup on such a host is read from a snapshot, with its saves resumed
//! as soon as the snapshot is taken.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use manman::testkit::{noise, ReflinkFs};
use manman_backup::{take_snapshot, write_archive, Selection, Snapshotted};
use support::stack::*;
use support::*;

/// An XFS filesystem for the test, or None (the test is skipped, saying why).
fn reflink_fs() -> Option<ReflinkFs> {
    match ReflinkFs::new() {
        Ok(fs) => Some(fs),
        Err(why) => {
            eprintln!("skipped: no reflink filesystem: {why}");
            None
        }
    }
}

/// Every entry under `dir`: path → (kind, mode, mtime, contents or link target).
fn tree(dir: &Path) -> BTreeMap<String, (char, u32, i64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let mode = meta.mode() & 0o7777;
            let entry = if meta.is_dir() {
                stack.push(p.clone());
                ('d', mode, meta.mtime(), Vec::new())
            } else if meta.is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                ('l', 0, 0, target.display().to_string().into_bytes())
            } else {
                ('f', mode, meta.mtime(), std::fs::read(&p).unwrap())
            };
            out.insert(rel, entry);
        }
    }
    out
}

fn used_bytes(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statvfs fills the struct it is given for a NUL-terminated path.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut s) }, 0);
    (s.f_blocks - s.f_bfree) * s.f_frsize
}

fn set_mtime(path: &Path, secs: u64) {
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    std::fs::File::open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

#[test]
fn a_snapshot_is_the_world_as_it_was_and_shares_its_blocks() {
    let Some(fs) = reflink_fs() else { return };
    let live = fs.mount.join("sgc-1");
    std::fs::create_dir_all(live.join("world/region")).unwrap();
    std::fs::create_dir_all(live.join("world/locked")).unwrap();
    std::fs::create_dir_all(live.join("logs")).unwrap();
    for i in 0..40 {
        std::fs::write(
            live.join(format!("world/region/r.{i}.mca")),
            noise(1000 + i * 97, i as u64),
        )
        .unwrap();
    }
    std::fs::write(live.join("world/big.dat"), noise(24 << 20, 3)).unwrap();
    std::fs::write(live.join("world/locked/secret.dat"), "0640").unwrap();
    std::fs::set_permissions(
        live.join("world/locked/secret.dat"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    set_mtime(&live.join("world/locked/secret.dat"), 1_000_000_000);
    std::fs::set_permissions(
        live.join("world/locked"),
        std::fs::Permissions::from_mode(0o555),
    )
    .unwrap();
    std::os::unix::fs::symlink("region/r.0.mca", live.join("world/latest")).unwrap();
    // What a game turned against its host leaves: a link to a host directory.
    std::os::unix::fs::symlink("/etc", live.join("world/escape")).unwrap();
    std::fs::write(live.join("logs/latest.log"), "excluded").unwrap();
    std::fs::write(live.join("server.properties"), "motd=snap\n").unwrap();
    let selection = Selection::new(&[], &["logs/**".to_string()]).unwrap();
    let before = tree(&live);
    let (_, archived_live) = write_archive(&live, &selection, Vec::new(), &mut ()).unwrap();

    // SAFETY: sync has no preconditions; the world's blocks are allocated before counting.
    unsafe { libc::sync() };
    let used = used_bytes(&fs.mount);
    let dest = fs.mount.join("sgc-1.snapshot");
    let snapshot = match take_snapshot(&live, &selection, &dest).unwrap() {
        Snapshotted::Taken(s) => s,
        Snapshotted::Unsupported(why) => panic!("XFS with reflinks cannot snapshot: {why}"),
    };
    assert_eq!(snapshot.files(), 43);
    let grew = used_bytes(&fs.mount) - used;
    assert!(
        grew < 4 << 20,
        "the snapshot shares the world's 25 MiB instead of copying them: it took {grew} bytes"
    );
    assert_eq!(
        std::fs::metadata(&dest).unwrap().mode() & 0o777,
        0o700,
        "out of the game's reach"
    );

    // The game goes on writing: in place, appended, deleted, added.
    std::fs::OpenOptions::new()
        .write(true)
        .open(live.join("world/big.dat"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"overwritten in place"))
        .unwrap();
    std::fs::write(live.join("world/region/r.1.mca"), "rewritten").unwrap();
    std::fs::remove_file(live.join("world/region/r.2.mca")).unwrap();
    std::fs::write(live.join("world/region/new.mca"), "added after").unwrap();

    let expected: BTreeMap<_, _> = before
        .into_iter()
        .filter(|(p, _)| !p.starts_with("logs/") && p != "world/escape")
        .collect();
    let mut taken = tree(snapshot.dir());
    let escape = taken.remove("world/escape").expect("the link is kept");
    assert_eq!(escape.3, b"/etc", "as a link, never followed");
    assert!(
        taken == expected,
        "the snapshot is the world as it was, modes and times kept"
    );
    // Its archive is the one the live world had when the snapshot was taken.
    let (_, archived_snapshot) =
        write_archive(snapshot.dir(), &selection, Vec::new(), &mut ()).unwrap();
    assert_eq!(archived_snapshot.manifest, archived_live.manifest);

    let dir = snapshot.dir().to_path_buf();
    drop(snapshot);
    assert!(!dir.exists(), "a snapshot is removed when done with");
}

#[test]
fn a_filesystem_without_reflinks_gives_way_and_leaves_nothing() {
    // tmpfs has no reflinks on any kernel.
    let base = Path::new("/dev/shm").join(unique_name("mmnoreflink"));
    let live = base.join("sgc-1");
    std::fs::create_dir_all(live.join("world")).unwrap();
    std::fs::write(live.join("world/level.dat"), "level").unwrap();
    let dest = base.join("sgc-1.snapshot");
    let taken = take_snapshot(&live, &Selection::new(&[], &[]).unwrap(), &dest).unwrap();
    match taken {
        Snapshotted::Unsupported(why) => assert!(why.contains("no reflinks"), "{why}"),
        Snapshotted::Taken(_) => panic!("tmpfs took a snapshot"),
    }
    assert!(!dest.exists(), "the partial snapshot is removed");
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_running_game_on_a_reflink_filesystem_is_backed_up_from_a_snapshot() {
    let Some(fs) = reflink_fs() else { return };
    let s = Stack::start_backing_up(|_| {});
    let data_dir = fs.mount.join("host");
    // What an agent killed during a backup left: removed when the next one starts.
    std::fs::create_dir_all(data_dir.join("sgc-77.snapshot/world")).unwrap();
    let (host, _daemon) = s.start_another_host("xfs-host", &data_dir);
    assert!(
        !data_dir.join("sgc-77.snapshot").exists(),
        "a left snapshot is removed at start"
    );
    let first = s.deploy(
        "snapshotted",
        &game_script(),
        &[],
        &[
            "--stop-command",
            "stop",
            "--stop-timeout",
            "5",
            "--start-duration-ms",
            "200",
            "--backup-pre",
            "save-all flush=>echo: save-all flush",
            "--backup-post",
            "save-on",
        ],
    );
    let sgc = s.cli_json(&[
        "deploy",
        "--server",
        &host.server_id.to_string(),
        "--config",
        &s.config_of(first),
    ])["sgc_id"]
        .as_i64()
        .unwrap();
    let session = s.start_session(sgc);
    s.wait_status(session, "running");
    let dir = data_dir.join(format!("sgc-{sgc}"));
    std::fs::create_dir_all(dir.join("world")).unwrap();
    std::fs::write(dir.join("world/big.dat"), noise(8 << 20, 11)).unwrap();
    std::fs::write(dir.join("world/level.dat"), "the level").unwrap();

    let backup = s.cli_json(&["backup", "create", &sgc.to_string()]);
    assert_eq!(backup["status"], "completed", "{backup}");
    assert_eq!(backup["snapshot"], true, "read from a snapshot: {backup}");
    assert!(
        !data_dir.join(format!("sgc-{sgc}.snapshot")).exists(),
        "the snapshot is gone once read"
    );
    let shown = s
        .cli(&["backup", "show", &backup["backup_id"].to_string()])
        .1;
    assert!(shown.contains("copy-on-write snapshot"), "{shown}");

    // The archive restores the world exactly.
    std::fs::write(dir.join("world/level.dat"), "griefed").unwrap();
    let restore = s.cli_json(&["backup", "restore", &backup["backup_id"].to_string()]);
    assert_eq!(restore["status"], "completed", "{restore}");
    assert_eq!(
        std::fs::read_to_string(dir.join("world/level.dat")).unwrap(),
        "the level"
    );
    assert_eq!(
        std::fs::read(dir.join("world/big.dat")).unwrap(),
        noise(8 << 20, 11)
    );
    let restarted = restore["started_session_id"].as_i64().unwrap();
    s.wait_status(restarted, "running");
    assert_eq!(s.cli(&["session", "stop", &restarted.to_string()]).0, 0);
    s.wait_status(restarted, "stopped");
}
