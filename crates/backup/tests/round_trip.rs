//! Archives written from real directories and restored: byte for byte, links kept as links,
//! excludes honoured, and archives that lie about their contents refused.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use manman_backup::{
    extract_verified, swap_into_place, write_archive, EntryKind, Manifest, Selection,
};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("manman-backup-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn world(root: &Path) {
    fs::create_dir_all(root.join("world/region")).unwrap();
    fs::create_dir_all(root.join("logs")).unwrap();
    for i in 0..50 {
        fs::write(
            root.join(format!("world/region/r.{i}.mca")),
            vec![i as u8; 1000 + i * 37],
        )
        .unwrap();
    }
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(root.join("world/big.dat"), big).unwrap();
    fs::write(root.join("server.properties"), "motd=hi\n").unwrap();
    fs::set_permissions(
        root.join("server.properties"),
        fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    fs::write(root.join("logs/latest.log"), "noise").unwrap();
    std::os::unix::fs::symlink("/etc/shadow", root.join("world/escape")).unwrap();
    // A FIFO would block a reader that opened it without O_NONBLOCK.
    let fifo = std::ffi::CString::new(root.join("world/pipe").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
}

fn archive(root: &Path, selection: &Selection) -> (Vec<u8>, Manifest, Vec<String>) {
    let (bytes, summary) = write_archive(root, selection, Vec::new(), &mut ()).unwrap();
    (bytes, summary.manifest, summary.skipped)
}

fn same_tree(a: &Path, b: &Path, skip: &[&str]) {
    let mut seen = 0;
    for entry in walk(a) {
        let rel = entry.strip_prefix(a).unwrap();
        if skip.iter().any(|s| rel.starts_with(s)) {
            continue;
        }
        let other = b.join(rel);
        let (ma, mb) = (
            fs::symlink_metadata(&entry).unwrap(),
            fs::symlink_metadata(&other).unwrap(),
        );
        assert_eq!(ma.file_type(), mb.file_type(), "{}", rel.display());
        if ma.is_file() {
            assert_eq!(
                fs::read(&entry).unwrap(),
                fs::read(&other).unwrap(),
                "{}",
                rel.display()
            );
            assert_eq!(
                ma.permissions().mode() & 0o777,
                mb.permissions().mode() & 0o777
            );
        }
        if ma.file_type().is_symlink() {
            assert_eq!(
                fs::read_link(&entry).unwrap(),
                fs::read_link(&other).unwrap()
            );
        }
        seen += 1;
    }
    assert!(seen > 50, "compared {seen} entries");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let meta = fs::symlink_metadata(&p).unwrap();
        out.push(p.clone());
        if meta.is_dir() {
            out.extend(walk(&p));
        }
    }
    out
}

#[test]
fn a_world_round_trips_byte_for_byte_without_following_links() {
    let dir = scratch("round");
    let root = dir.join("sgc-1");
    world(&root);
    let selection = Selection::new(&[], &["logs/**".into(), "logs".into()]).unwrap();
    let (bytes, manifest, skipped) = archive(&root, &selection);
    assert_eq!(skipped, vec!["world/pipe".to_string()]);
    assert!(manifest.entries.iter().all(|e| !e.path.starts_with("logs")));
    let link = manifest
        .entries
        .iter()
        .find(|e| e.path == "world/escape")
        .unwrap();
    assert_eq!(
        (link.kind.clone(), link.target.as_deref()),
        (EntryKind::Symlink, Some("/etc/shadow"))
    );
    assert_eq!(manifest.files(), 52);

    let restored = dir.join("restored");
    let summary = extract_verified(&bytes[..], &restored, &manifest, &mut |_| {}).unwrap();
    assert_eq!(summary.files, 52);
    same_tree(&root, &restored, &["logs", "world/pipe"]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_manifest_that_disagrees_with_the_archive_is_refused() {
    let dir = scratch("mismatch");
    let root = dir.join("sgc-1");
    fs::create_dir_all(&root).unwrap();
    fs::write(root.join("a"), "one").unwrap();
    fs::write(root.join("b"), "two").unwrap();
    let all = Selection::new(&[], &[]).unwrap();
    let (bytes, manifest, _) = archive(&root, &all);

    let mut wrong_hash = manifest.clone();
    wrong_hash.entries[0].sha256 = Some("00".repeat(32));
    let err = extract_verified(&bytes[..], &dir.join("x1"), &wrong_hash, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");

    let mut extra = manifest.clone();
    extra.entries.push(manman_backup::ManifestEntry {
        path: "c".into(),
        ..manifest.entries[0].clone()
    });
    let err = extract_verified(&bytes[..], &dir.join("x2"), &extra, &mut |_| {}).unwrap_err();
    assert!(
        err.to_string()
            .contains("c is in the manifest but not in the archive"),
        "{err}"
    );

    let mut fewer = manifest.clone();
    fewer.entries.pop();
    assert!(extract_verified(&bytes[..], &dir.join("x3"), &fewer, &mut |_| {}).is_err());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_hostile_archive_cannot_write_outside_or_through_its_links() {
    let dir = scratch("hostile");
    let outside = dir.join("outside");
    fs::create_dir_all(&outside).unwrap();
    // A link to a directory outside, then a file "through" it.
    let mut tar = tar::Builder::new(zstd::Encoder::new(Vec::new(), 3).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    tar.append_link(&mut h, "out", &outside).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(3);
    h.set_mode(0o644);
    tar.append_data(&mut h, "out/owned", &b"bad"[..]).unwrap();
    let bytes = tar.into_inner().unwrap().finish().unwrap();
    let manifest = Manifest {
        version: 1,
        entries: vec![
            manman_backup::ManifestEntry {
                path: "out".into(),
                kind: EntryKind::Symlink,
                size: 0,
                mode: 0o777,
                mtime: 0,
                sha256: None,
                target: Some(outside.display().to_string()),
                changed_while_read: false,
            },
            manman_backup::ManifestEntry {
                path: "out/owned".into(),
                kind: EntryKind::File,
                size: 3,
                mode: 0o644,
                mtime: 0,
                sha256: None,
                target: None,
                changed_while_read: false,
            },
        ],
    };
    let err = extract_verified(&bytes[..], &dir.join("r"), &manifest, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("behind a link"), "{err}");
    assert!(!outside.join("owned").exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_swap_keeps_the_old_directory_as_previous() {
    let dir = scratch("swap");
    let (live, fresh) = (dir.join("sgc-1"), dir.join("sgc-1.restoring"));
    fs::create_dir_all(&live).unwrap();
    fs::write(live.join("v"), "old").unwrap();
    fs::create_dir_all(&fresh).unwrap();
    fs::write(fresh.join("v"), "new").unwrap();
    let previous = swap_into_place(&fresh, &live).unwrap();
    assert_eq!(fs::read_to_string(live.join("v")).unwrap(), "new");
    assert_eq!(fs::read_to_string(previous.join("v")).unwrap(), "old");
    assert!(!fresh.exists());
    // The next restore replaces the older previous.
    fs::create_dir_all(&fresh).unwrap();
    fs::write(fresh.join("v"), "newer").unwrap();
    swap_into_place(&fresh, &live).unwrap();
    assert_eq!(fs::read_to_string(previous.join("v")).unwrap(), "new");
    let _ = std::io::stdout().flush();
    fs::remove_dir_all(&dir).unwrap();
}
