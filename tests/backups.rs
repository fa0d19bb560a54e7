//! Backups and restores end to end: API, processor, log processor and host agent with real
//! RabbitMQ, PostgreSQL, the S3 server and the test game. Archives are read back from S3 and
//! checked byte for byte; faults (a pre action that never sees its line, an agent killed mid-
//! backup, a stop during a backup) end as the operator would expect.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use manman::testkit::noise;
use manman_backup::{extract_verified, Manifest};
use support::stack::*;
use support::*;

/// A world of many small files, one large one, a config file and logs (excluded).
fn write_world(dir: &Path) {
    std::fs::create_dir_all(dir.join("world/region")).unwrap();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    for i in 0..200 {
        let body = format!("region {i}\n").repeat(i % 50 + 1);
        std::fs::write(dir.join(format!("world/region/r.{i}.mca")), body).unwrap();
    }
    std::fs::write(dir.join("world/big.dat"), noise(12 << 20, 7)).unwrap();
    std::fs::write(dir.join("server.properties"), "motd=backed up\n").unwrap();
    std::fs::write(dir.join("logs/latest.log"), "not wanted in a backup\n").unwrap();
}

/// Every regular file under `dir` (relative path → bytes).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The test game deployed with a console stop (5 s) and `backup` flags; its deployment id.
fn deploy_game(s: &Stack, name: &str, backup: &[&str]) -> i64 {
    let mut flags = vec![
        "--stop-command",
        "stop",
        "--stop-timeout",
        "5",
        "--start-duration-ms",
        "200",
    ];
    flags.extend_from_slice(backup);
    s.deploy(name, &game_script(), &[], &flags)
}

fn deployment_dir(s: &Stack, sgc: i64) -> PathBuf {
    s.data_dir.join(format!("sgc-{sgc}"))
}

fn bucket(s: &Stack) -> &manman::logstore::ObjectStore {
    &s.bucket.as_ref().unwrap().store
}

/// The backup's archive as stored, unpacked and verified against its manifest.
fn unpack(s: &Stack, backup: &serde_json::Value) -> BTreeMap<String, Vec<u8>> {
    let key = backup["s3_key"].as_str().unwrap();
    let archive = bucket(s).get(key).unwrap().expect("the archive is in S3");
    let manifest_key = key.replace(".tar.zst", ".manifest.json");
    let manifest = bucket(s)
        .get(&manifest_key)
        .unwrap()
        .expect("the manifest is in S3");
    let manifest = Manifest::from_json(&manifest).unwrap();
    assert_eq!(
        backup["sha256"].as_str().unwrap(),
        manman_backup_sha(&archive),
        "the recorded SHA-256 is the archive's"
    );
    let dir = std::env::temp_dir().join(unique_name("mmrestored"));
    extract_verified(&archive[..], &dir, &manifest, &mut |_| {}).expect("verified");
    let out = files(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    out
}

fn manman_backup_sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn no_open_uploads(s: &Stack) {
    let open = bucket(s).open_multiparts("backups/").unwrap();
    assert!(open.is_empty(), "multipart uploads left open: {open:?}");
}

#[test]
fn a_running_world_is_backed_up_while_it_changes_and_restored_exactly() {
    // Small parts and one URL in the command: the archive takes several parts and the host
    // asks the API for more URLs as it goes.
    let s = Stack::start_backing_up(|b| {
        b.part_size = 5 << 20;
        b.first_part_urls = 1;
    });
    let events = Collector::bind(
        &s.vhost,
        manman::wire::routing::DEFAULT_EXTERNAL_EXCHANGE,
        "manman.backup.#",
    );
    let logs = Collector::console_lines(&s.vhost);
    let sgc = deploy_game(
        &s,
        "backed-up",
        &[
            "--backup-exclude",
            "logs/**",
            "--backup-pre",
            "save-off",
            "--backup-pre",
            "save-all flush=>echo: save-all flush",
            "--backup-post",
            "save-on",
            "--backup-wait-timeout",
            "20",
        ],
    );
    let session = s.start_session(sgc);
    s.wait_status(session, "running");
    let dir = deployment_dir(&s, sgc);
    write_world(&dir);
    let before = files(&dir);

    // The game keeps writing while the backup runs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (dir, stop) = (dir.clone(), stop.clone());
        std::thread::spawn(move || {
            std::fs::create_dir_all(dir.join("world/live")).unwrap();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::fs::write(
                    dir.join(format!("world/live/chunk-{}.dat", n % 20)),
                    noise(4096, n),
                )
                .unwrap();
                n += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let backup = s.cli_json(&["backup", "create", &sgc.to_string(), "--note", "nightly"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(backup["status"], "completed", "{backup}");
    assert_eq!(backup["note"], "nightly");
    assert!(
        backup["size_bytes"].as_i64().unwrap() > 12 << 20,
        "{backup}"
    );

    // The pre and post actions reached the game in order.
    assert_eq!(
        logs.echoed_until(session, "echo: save-on"),
        ["echo: save-off", "echo: save-all flush", "echo: save-on"]
    );
    // The archive holds the world byte for byte (logs excluded).
    let archived = unpack(&s, &backup);
    for (path, bytes) in before.iter().filter(|(p, _)| !p.starts_with("logs")) {
        assert!(
            archived.get(path) == Some(bytes),
            "{path} differs in the archive"
        );
    }
    assert!(
        !archived.keys().any(|p| p.starts_with("logs")),
        "excluded: {:?}",
        archived
            .keys()
            .filter(|p| p.starts_with("logs"))
            .collect::<Vec<_>>()
    );
    no_open_uploads(&s);
    let event = events.expect("manman.backup.completed");
    assert_eq!(event.routing_key, "manman.backup.completed");
    assert_eq!(event.body["backup_id"], backup["backup_id"]);

    // The world is changed and partly deleted; the restore puts back exactly the backup.
    std::fs::write(dir.join("world/region/r.0.mca"), "griefed").unwrap();
    for i in 1..50 {
        std::fs::remove_file(dir.join(format!("world/region/r.{i}.mca"))).unwrap();
    }
    std::fs::write(dir.join("world/added-later.dat"), "new").unwrap();
    let id = backup["backup_id"].to_string();
    let restore = s.cli_json(&["backup", "restore", &id]);
    assert_eq!(restore["status"], "completed", "{restore}");
    assert_eq!(restore["stopped_session_id"], session);
    let restarted = restore["started_session_id"]
        .as_i64()
        .expect("started again");
    s.wait_status(restarted, "running");
    let now = files(&dir);
    let expected: BTreeMap<_, _> = archived;
    assert_eq!(
        now.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    assert!(
        now == expected,
        "the restored directory is the archive, byte for byte"
    );
    // The replaced directory is kept beside it until the next restore.
    let previous = s.data_dir.join(format!("sgc-{sgc}.previous"));
    assert_eq!(
        std::fs::read(previous.join("world/added-later.dat")).unwrap(),
        b"new"
    );
    assert_eq!(s.cli(&["session", "stop", &restarted.to_string()]).0, 0);
    s.wait_status(restarted, "stopped");
}

#[test]
fn a_pre_action_that_never_sees_its_line_fails_the_backup_and_the_post_actions_still_run() {
    let s = Stack::start_backing_up(|_| {});
    let logs = Collector::console_lines(&s.vhost);
    let sgc = deploy_game(
        &s,
        "stubborn",
        &[
            "--backup-pre",
            "save-all flush=>Saved the game",
            "--backup-post",
            "save-on",
            "--backup-wait-timeout",
            "1",
        ],
    );
    let session = s.start_session(sgc);
    s.wait_status(session, "running");
    let (code, out, err) = s.cli(&["--json", "backup", "create", &sgc.to_string()]);
    assert_eq!(code, 1, "a failed backup exits 1: {out} {err}");
    let backup: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(backup["status"], "failed");
    let reason = backup["reason"].as_str().unwrap();
    assert!(
        reason.contains("pre action 1 (\"save-all flush\")")
            && reason.contains("Saved the game")
            && reason.contains("within 1 s"),
        "{reason}"
    );
    assert_eq!(
        logs.echoed_until(session, "echo: save-on"),
        ["echo: save-all flush", "echo: save-on"]
    );
    no_open_uploads(&s);
    // A second backup may run at once: the failed one no longer holds the deployment.
    let (code, _, err) = s.cli(&["backup", "create", &sgc.to_string(), "--no-wait"]);
    assert_eq!(code, 0, "{err}");
    // ... but not a third while it runs.
    let (code, _, err) = s.cli(&["backup", "create", &sgc.to_string(), "--no-wait"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("under way"), "{err}");
}

#[test]
fn retention_keeps_the_newest_n_and_the_pinned() {
    let s = Stack::start_backing_up(|_| {});
    let sgc = s.deploy("kept", &game_script(), &[], &["--keep-last", "2"]);
    // A deployment that never ran: its directory holds what an operator copied there.
    let dir = deployment_dir(&s, sgc);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("world.dat"), "v1").unwrap();
    let mut ids = Vec::new();
    let deployment = sgc.to_string();
    for i in 0..4 {
        std::fs::write(dir.join("world.dat"), format!("v{i}")).unwrap();
        let mut args = vec!["backup", "create", &deployment];
        if i == 0 {
            args.push("--pin");
        }
        let b = s.cli_json(&args);
        assert_eq!(b["status"], "completed", "{b}");
        ids.push(b);
    }
    let list = s.cli_json(&["backup", "list", "--deployment", &sgc.to_string()]);
    let statuses: Vec<(i64, String)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["backup_id"].as_i64().unwrap(),
                b["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let id = |i: usize| ids[i]["backup_id"].as_i64().unwrap();
    assert_eq!(
        statuses,
        vec![
            (id(3), "completed".into()),
            (id(2), "completed".into()),
            (id(1), "pruned".into()),
            (id(0), "completed".into()),
        ],
        "newest first: the two newest and the pinned one stay"
    );
    // Operators alert on the age of the last good backup.
    let metrics = manman::testkit::http_get(s.api_health_port, "/metrics");
    let done_at = ids[3]["ended_at"].as_str().unwrap();
    let done_at = chrono::DateTime::parse_from_rfc3339(done_at)
        .unwrap()
        .timestamp();
    assert!(
        metrics.contains(&format!(
            "manman_backup_last_success_timestamp_seconds{{sgc_id=\"{sgc}\"}} {done_at}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("manman_api_backups_total{outcome=\"completed\"} 4"),
        "{metrics}"
    );
    // The pruned backup's objects are gone; the kept ones are there.
    assert!(bucket(&s)
        .get(ids[1]["s3_key"].as_str().unwrap())
        .unwrap()
        .is_none());
    assert!(bucket(&s)
        .get(ids[2]["s3_key"].as_str().unwrap())
        .unwrap()
        .is_some());
    // A pinned backup is not deleted by mistake; unpinned, it is.
    let (code, _, err) = s.cli(&["backup", "delete", &id(0).to_string()]);
    assert_eq!(code, 5, "{err}");
    s.cli_json(&["backup", "unpin", &id(0).to_string()]);
    let deleted = s.cli_json(&["backup", "delete", &id(0).to_string()]);
    assert_eq!(deleted["status"], "deleted");
    assert!(bucket(&s)
        .get(ids[0]["s3_key"].as_str().unwrap())
        .unwrap()
        .is_none());
    // A restore into another deployment: how a server moves.
    let other = s.deploy("moved", &game_script(), &[], &[]);
    let restore = s.cli_json(&[
        "backup",
        "restore",
        &id(3).to_string(),
        "--to",
        &other.to_string(),
    ]);
    assert_eq!(restore["status"], "completed", "{restore}");
    assert_eq!(
        restore["started_session_id"],
        serde_json::Value::Null,
        "nothing ran there"
    );
    assert_eq!(
        std::fs::read(deployment_dir(&s, other).join("world.dat")).unwrap(),
        b"v3"
    );
}

#[test]
fn an_agent_killed_mid_backup_leaves_a_failed_backup_and_no_open_upload() {
    let s = &mut Stack::start_backing_up(|b| {
        b.timeout = Duration::from_secs(8);
        b.sweep_every = Duration::from_millis(300);
    });
    let logs = Collector::console_lines(&s.vhost);
    let sgc = deploy_game(
        s,
        "killed",
        &[
            "--backup-pre",
            "save-all flush=>Saved the game",
            "--backup-wait-timeout",
            "60",
        ],
    );
    let data_dir = s.data_dir.clone();
    let mut agent = s.agent_process(&data_dir, false);
    let session = s.start_session_retrying(sgc);
    s.wait_status(session, "running");
    std::fs::write(deployment_dir(s, sgc).join("level.dat"), "world").unwrap();
    let first = s.cli_json(&["backup", "create", &sgc.to_string(), "--no-wait"]);
    // The agent is inside the backup (waiting for its pre action's line) when it dies.
    logs.echoed_until(session, "echo: save-all flush");
    agent.kill();
    let id = first["backup_id"].to_string();
    let failed = wait_for("the backup failed by its deadline", T, || {
        let b = s.cli_json(&["backup", "show", &id]);
        (b["status"] == "failed").then_some(b)
    });
    assert!(
        failed["reason"].as_str().unwrap().contains("deadline"),
        "{failed}"
    );
    no_open_uploads(s);

    // The game outlived the agent; a new agent backs it up (the test says the line the
    // pre action waits for into the console: the game echoes it).
    let _agent = s.agent_process(&data_dir, false);
    let second = wait_for("the new agent takes the backup", T, || {
        let (code, out, _) = s.cli(&["--json", "backup", "create", &sgc.to_string(), "--no-wait"]);
        (code == 0).then(|| serde_json::from_str::<serde_json::Value>(&out).unwrap())
    });
    logs.echoed_until(session, "echo: save-all flush");
    assert_eq!(
        s.cli(&["session", "input", &session.to_string(), "Saved the game"])
            .0,
        0
    );
    let id = second["backup_id"].to_string();
    let done = wait_for("the second backup", T, || {
        let b = s.cli_json(&["backup", "show", &id]);
        (b["status"] != "running" && b["status"] != "pending").then_some(b)
    });
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        unpack(s, &done).get("level.dat").map(Vec::as_slice),
        Some(&b"world"[..])
    );
    no_open_uploads(s);
}

#[test]
fn a_stop_during_a_backup_wins() {
    let s = Stack::start_backing_up(|_| {});
    let logs = Collector::console_lines(&s.vhost);
    let sgc = deploy_game(
        &s,
        "stopped-mid-backup",
        &[
            "--backup-pre",
            "save-all flush=>Saved the game",
            "--backup-wait-timeout",
            "120",
        ],
    );
    let session = s.start_session(sgc);
    s.wait_status(session, "running");
    let backup = s.cli_json(&["backup", "create", &sgc.to_string(), "--no-wait"]);
    logs.echoed_until(session, "echo: save-all flush");
    let asked = std::time::Instant::now();
    assert_eq!(s.cli(&["session", "stop", &session.to_string()]).0, 0);
    s.wait_status(session, "stopped");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "stopped within its stop timeout"
    );
    let id = backup["backup_id"].to_string();
    let failed = wait_for("the backup gave way", T, || {
        let b = s.cli_json(&["backup", "show", &id]);
        (b["status"] == "failed").then_some(b)
    });
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("stopped during the backup"),
        "{failed}"
    );
    no_open_uploads(&s);
}

#[test]
fn backup_requests_are_checked() {
    let s = Stack::start_backing_up(|_| {});
    let (code, _, err) = s.cli(&["backup", "create", "999999"]);
    assert_eq!(code, 4, "{err}");
    let (code, _, err) = s.cli(&["backup", "show", "0"]);
    assert_eq!(code, 65, "{err}");
    let game = s.cli_json(&["game", "create", "hostile"])["game_id"].to_string();
    for (flag, value, says) in [
        ("--backup-path", "../../etc", "invalid path"),
        ("--backup-exclude", "[", "invalid exclude pattern"),
        ("--backup-pre", "save-all=>(", "wait_for"),
        ("--keep-last", "0", "keep_last"),
    ] {
        let (code, _, err) = s.cli(&[
            "config",
            "create",
            "--game",
            &game,
            "--name",
            "x",
            "--program",
            "/bin/true",
            flag,
            value,
        ]);
        assert_eq!(code, 65, "{flag} {value}: {err}");
        assert!(err.contains(says), "{flag} {value}: {err}");
    }
    // A host may not report on another host's backup, nor an operator's token as a host.
    let client = manman::api::client(&format!("127.0.0.1:{}", s.api_port));
    let r = client.finish_backup_opt(
        &manman::proto::v1::FinishBackupRequest {
            backup_id: 1,
            ok: true,
            ..Default::default()
        },
        s.opt(),
    );
    assert!(
        matches!(r, Err(grpcio::Error::RpcFailure(ref st)) if st.code() == grpcio::RpcStatusCode::PERMISSION_DENIED || st.code() == grpcio::RpcStatusCode::NOT_FOUND),
        "{r:?}"
    );
}

#[test]
fn the_dashboard_backs_up_now_and_restores() {
    let s = Stack::start_backing_up(|_| {});
    let sgc = s.deploy(
        "from-the-web",
        &game_script(),
        &[],
        &["--start-duration-ms", "200"],
    );
    let dir = deployment_dir(&s, sgc);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("world.dat"), "saved").unwrap();
    let (web_port, _web) = s.start_web();
    let (cookie, csrf) = manman::testkit::dashboard_login(web_port, &s.admin_token);
    let url = |path: &str| format!("http://127.0.0.1:{web_port}{path}");
    let post = |path: &str, with_csrf: bool| {
        let mut req = ureq::post(&url(path)).set("Cookie", &cookie);
        if with_csrf {
            req = req.set("X-CSRF-Token", &csrf);
        }
        match req.send_json(serde_json::json!({})) {
            Ok(r) => (r.status(), r.into_json::<serde_json::Value>().unwrap()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap_or_default()),
            Err(e) => panic!("{path}: {e}"),
        }
    };
    // A change without its CSRF token is refused.
    assert_eq!(
        post(&format!("/api/deployments/{sgc}/backups"), false).0,
        403
    );
    let (code, created) = post(&format!("/api/deployments/{sgc}/backups"), true);
    assert_eq!(code, 200, "{created}");
    let list = || -> serde_json::Value {
        ureq::get(&url(&format!("/api/deployments/{sgc}/backups")))
            .set("Cookie", &cookie)
            .call()
            .unwrap()
            .into_json()
            .unwrap()
    };
    let backup = wait_for("the backup completes", T, || {
        let items = list()["items"].as_array().unwrap().clone();
        items
            .into_iter()
            .find(|b| b["backup_id"] == created["backup_id"] && b["status"] == "completed")
    });
    std::fs::write(dir.join("world.dat"), "griefed").unwrap();
    let (code, restore) = post(
        &format!("/api/backups/{}/restore", backup["backup_id"]),
        true,
    );
    assert_eq!(code, 200, "{restore}");
    wait_for("the world is back", T, || {
        (std::fs::read(dir.join("world.dat")).ok()? == b"saved").then_some(())
    });
}

#[test]
fn a_server_moves_to_another_host_by_restore() {
    let s = Stack::start_backing_up(|_| {});
    let sgc = s.deploy(
        "moving",
        &game_script(),
        &[],
        &["--start-duration-ms", "200"],
    );
    std::fs::create_dir_all(deployment_dir(&s, sgc).join("world")).unwrap();
    std::fs::write(
        deployment_dir(&s, sgc).join("world/level.dat"),
        "the old host's world",
    )
    .unwrap();
    let backup = s.cli_json(&["backup", "create", &sgc.to_string()]);
    assert_eq!(backup["status"], "completed", "{backup}");

    let second_dir = std::env::temp_dir().join(unique_name("mmhost2"));
    let (second, _second) = s.start_another_host("second-host", &second_dir);
    // The second host's own credential cannot report on (forge the end of) the first host's
    // backup, nor ask for its upload URLs.
    let forged = manman::host::identity::credential_file(&second_dir);
    let forged = std::fs::read_to_string(forged).unwrap();
    let client = manman::api::client(&format!("127.0.0.1:{}", s.api_port));
    let as_second = manman::grpc::call_option(Some(forged.trim()), T);
    let id = backup["backup_id"].as_i64().unwrap();
    let refused = |r: Result<(), grpcio::Error>| matches!(r, Err(grpcio::Error::RpcFailure(ref st)) if st.code() == grpcio::RpcStatusCode::PERMISSION_DENIED);
    assert!(refused(
        client
            .finish_backup_opt(
                &manman::proto::v1::FinishBackupRequest {
                    backup_id: id,
                    ok: false,
                    reason: "forged".into(),
                    ..Default::default()
                },
                as_second.clone(),
            )
            .map(|_| ())
    ));
    assert!(refused(
        client
            .presign_backup_parts_opt(
                &manman::proto::v1::PresignBackupPartsRequest {
                    backup_id: id,
                    first_part: 1,
                    count: 1
                },
                as_second,
            )
            .map(|_| ())
    ));
    assert_eq!(
        s.cli_json(&["backup", "show", &id.to_string()])["status"],
        "completed"
    );
    let config_id = s.config_of(sgc);
    let moved = s.cli_json(&[
        "deploy",
        "--server",
        &second.server_id.to_string(),
        "--config",
        &config_id,
    ])["sgc_id"]
        .as_i64()
        .unwrap();
    let restore = s.cli_json(&[
        "backup",
        "restore",
        &backup["backup_id"].to_string(),
        "--to",
        &moved.to_string(),
    ]);
    assert_eq!(restore["status"], "completed", "{restore}");
    assert_eq!(
        std::fs::read_to_string(second_dir.join(format!("sgc-{moved}/world/level.dat"))).unwrap(),
        "the old host's world"
    );
    // The moved server runs on its new host with its world.
    let session = s.start_session(moved);
    s.wait_status(session, "running");
    assert_eq!(s.cli(&["session", "stop", &session.to_string()]).0, 0);
    s.wait_status(session, "stopped");
    let _ = std::fs::remove_dir_all(&second_dir);
}
