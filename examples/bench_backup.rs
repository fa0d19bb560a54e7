//! Backup benchmark (`scripts/bench-backup`): a world of BENCH_WORLD_MB MiB (2048; 20,000 small
//! files and four large ones, half of the bytes incompressible as region files are) of a running
//! game, backed up by a real agent process into the local S3 server, against `tar --zstd |
//! boto3 multipart upload` (what `aws s3 cp -` does) in the same run. Also: the agent's RSS
//! growth while it backs up, how long the game's saves were paused, a restore into another
//! deployment, and what verifying against the manifest costs over a plain `tar -x`.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use manman::api::{self, ApiConfig};
use manman::lifecycle::Supervisor;
use manman::processor::{self, ProcessorConfig};
use manman::proto::v1 as pb;
use manman::testkit::{
    free_port, noise, rss_kib, unique_name, wait_for, ScratchBucket, ScratchDb, ScratchVhost,
};

const T: Duration = Duration::from_secs(60);

/// 20,000 small files (4 .. 44 KiB) and the rest in four large ones; every other file is noise.
fn write_world(dir: &std::path::Path, total_mb: u64) -> (u64, usize) {
    let mut bytes = 0u64;
    let mut files = 0;
    let small_budget = (total_mb << 20) / 4;
    let mut i = 0u64;
    while bytes < small_budget && i < 20_000 {
        let sub = dir.join(format!("world/region-{}", i / 500));
        if i.is_multiple_of(500) {
            std::fs::create_dir_all(&sub).unwrap();
        }
        let len = 4096 + (i as usize * 7919) % (40 << 10);
        let body = if i.is_multiple_of(2) {
            noise(len, i)
        } else {
            format!("chunk {i} block stone dirt grass\n")
                .repeat(len / 32)
                .into_bytes()
        };
        std::fs::write(sub.join(format!("r.{i}.mca")), &body).unwrap();
        bytes += body.len() as u64;
        files += 1;
        i += 1;
    }
    let large = ((total_mb << 20) - bytes) / 4;
    for n in 0..4u64 {
        let path = dir.join(format!("world/large-{n}.dat"));
        let mut f = std::fs::File::create(&path).unwrap();
        let mut left = large;
        while left > 0 {
            let chunk = left.min(8 << 20) as usize;
            let block = if n.is_multiple_of(2) {
                noise(chunk, n * 1000 + left)
            } else {
                "level data, mostly repeated\n"
                    .repeat(chunk / 28 + 1)
                    .into_bytes()[..chunk]
                    .to_vec()
            };
            f.write_all(&block).unwrap();
            left -= chunk as u64;
        }
        bytes += large;
        files += 1;
    }
    (bytes, files)
}

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1048576.0 / d.as_secs_f64()
}

/// The test game where the game's uid can run it.
fn game_script() -> String {
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/test-game");
    let copy = std::env::temp_dir().join(unique_name("mmbench-game"));
    std::fs::copy(source, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    copy.display().to_string()
}

fn main() {
    let world_mb: u64 = std::env::var("BENCH_WORLD_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2048);
    let python = std::env::var("BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let db = ScratchDb::new("mmbench");
    let vhost = ScratchVhost::new("mmbench");
    let bucket = ScratchBucket::new();
    let mut sups = Vec::new();
    let mut sup = Supervisor::new();
    let p = processor::start(
        ProcessorConfig::embedded(vhost.url(), db.config.clone()),
        &mut sup,
    )
    .unwrap();
    wait_for("processor", T, || {
        p.consumer_connected.load(Ordering::SeqCst).then_some(())
    });
    sups.push(sup);
    let mut sup = Supervisor::new();
    let a = api::start(
        ApiConfig {
            archive: Some(bucket.config.clone()),
            ..ApiConfig::embedded(vhost.url(), db.config.clone())
        },
        &mut sup,
    )
    .unwrap();
    sups.push(sup);
    let address = format!("127.0.0.1:{}", a.port);
    let (_, admin) = api::create_token(
        &mut db.config.connect(postgres::NoTls).unwrap(),
        "bench-admin",
        manman::auth::Role::Admin,
        0,
    )
    .unwrap();
    let client = api::client(&address);
    let opt = || manman::grpc::call_option(Some(&admin), T);
    let enrollment = client
        .add_host_opt(
            &pb::AddHostRequest {
                name: "bench-host".into(),
                reissue: false,
            },
            opt(),
        )
        .unwrap()
        .enrollment_secret;

    // A real agent process, whose memory is its own.
    // BENCH_SNAPSHOT=1: the agent's data on an XFS filesystem (reflinks), where backups read
    // a copy-on-write snapshot and the game's saves pause only while it is taken.
    let reflink_fs = std::env::var("BENCH_SNAPSHOT")
        .is_ok_and(|v| v == "1")
        .then(|| {
            manman::testkit::ReflinkFs::sized((world_mb << 20) * 4).expect("an XFS filesystem")
        });
    let data_dir = match &reflink_fs {
        Some(fs) => fs.mount.join("mmbench-backup"),
        None => std::env::temp_dir().join(unique_name("mmbench-backup")),
    };
    std::fs::create_dir_all(&data_dir).unwrap();
    let mut agent = Command::new(manman::testkit::sibling_binary("manman-host"))
        .env("RABBITMQ_URL", vhost.url())
        .env("API_ADDRESS", &address)
        .env("SERVER_NAME", "bench-host")
        .env("HOST_ENROLLMENT_SECRET", &enrollment)
        .env("HOST_DATA_DIR", &data_dir)
        .env(
            "HOST_KEEPER",
            manman::testkit::sibling_binary("manman-keeper"),
        )
        .env("HEALTH_PORT", free_port().to_string())
        .env("HOST_STOP_SESSIONS_ON_SHUTDOWN", "true")
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let server_id = wait_for("the agent registers", T, || {
        let servers = client
            .list_servers_opt(&pb::ListServersRequest::default(), opt())
            .ok()?;
        servers
            .servers
            .iter()
            .find(|s| s.status == "online")
            .map(|s| s.server_id)
    });

    let game = client
        .create_game_opt(
            &pb::CreateGameRequest {
                name: "bench".into(),
            },
            opt(),
        )
        .unwrap()
        .game
        .unwrap();
    let program = game_script();
    let config = |name: &str, backup: Option<pb::BackupPolicy>| {
        client
            .create_game_config_opt(
                &pb::CreateGameConfigRequest {
                    config: Some(pb::GameConfig {
                        game_id: game.game_id,
                        name: name.into(),
                        program: program.clone(),
                        stop_command: "stop".into(),
                        start_duration_ms: Some(200),
                        backup,
                        ..Default::default()
                    }),
                },
                opt(),
            )
            .unwrap()
            .config
            .unwrap()
            .config_id
    };
    let deploy = |config_id| {
        client
            .deploy_game_config_opt(
                &pb::DeployGameConfigRequest {
                    server_id,
                    config_id,
                    ports: vec![],
                },
                opt(),
            )
            .unwrap()
            .deployment
            .unwrap()
            .sgc_id
    };
    // Minecraft's way: saves off while the files are read, on again after.
    let action = |c: &str| pb::ConsoleAction {
        command: c.into(),
        wait_for: format!("echo: {c}"),
        timeout_seconds: Some(30),
    };
    let policy = pb::BackupPolicy {
        pre: vec![action("save-off")],
        post: vec![action("save-on")],
        ..Default::default()
    };
    let sgc = deploy(config("world", Some(policy)));
    let target = deploy(config("moved", None));
    let session = client
        .start_session_opt(
            &pb::StartSessionRequest {
                sgc_id: sgc,
                force: false,
            },
            opt(),
        )
        .unwrap()
        .session
        .unwrap()
        .session_id;
    wait_for("the game runs", T, || {
        let s = client
            .get_session_opt(
                &pb::GetSessionRequest {
                    session_id: session,
                },
                opt(),
            )
            .ok()?;
        (s.session?.status == "running").then_some(())
    });
    let world = data_dir.join(format!("sgc-{sgc}"));
    let started = Instant::now();
    let (bytes, files) = write_world(&world, world_mb);
    println!(
        "world: {} MiB in {files} files (written in {:.1} s); part size 8 MiB",
        bytes >> 20,
        started.elapsed().as_secs_f64()
    );
    // Whatever the page cache holds, both runs read from it alike: one read first.
    let _ = Command::new("tar")
        .args(["-cf", "/dev/null", "-C"])
        .arg(&world)
        .arg("world")
        .status();

    // The baseline pipeline.
    let started = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar --zstd -cf - -C '{}' world | '{python}' '{}' '{}' '{}' 'baseline.tar.zst'",
            world.display(),
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/bench_backup_upload.py"
            ),
            manman::testkit::s3_endpoint(),
            bucket.config.bucket,
        ))
        .status()
        .unwrap();
    assert!(status.success(), "the baseline pipeline failed");
    let baseline = started.elapsed();

    // ManMan's backup, the agent's memory sampled meanwhile.
    let pid = agent.id();
    let before = rss_kib(pid).0;
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid).0, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let started = Instant::now();
    let created = client
        .create_backup_opt(
            &pb::CreateBackupRequest {
                sgc_id: sgc,
                note: "bench".into(),
                pinned: false,
            },
            opt(),
        )
        .unwrap()
        .backup
        .unwrap();
    let backup = wait_for("the backup", Duration::from_secs(3600), || {
        let b = client
            .get_backup_opt(
                &pb::GetBackupRequest {
                    backup_id: created.backup_id,
                },
                opt(),
            )
            .ok()?
            .backup?;
        (b.status != "pending" && b.status != "running").then_some(b)
    });
    let ours = started.elapsed();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert_eq!(backup.status, "completed", "{}", backup.reason);
    let growth = peak.load(Ordering::Relaxed).saturating_sub(before);
    println!(
        "baseline tar --zstd | boto3 multipart: {:.1} s, {:.0} MiB/s of world",
        baseline.as_secs_f64(),
        mib_s(bytes, baseline)
    );
    println!(
        "manman backup: {:.1} s, {:.0} MiB/s of world ({:.0} % of the baseline); archive {} MiB ({:.0} % of the world)",
        ours.as_secs_f64(),
        mib_s(bytes, ours),
        100.0 * baseline.as_secs_f64() / ours.as_secs_f64(),
        backup.size_bytes >> 20,
        100.0 * backup.size_bytes as f64 / bytes as f64
    );
    println!(
        "agent RSS: {} MiB before, peak {} MiB during (+{} MiB)",
        before >> 10,
        peak.load(Ordering::Relaxed) >> 10,
        growth >> 10
    );
    println!(
        "game saves paused {:.3} s (save-off → save-on), {}",
        backup.paused_ms as f64 / 1000.0,
        if backup.snapshot {
            "while a copy-on-write snapshot was taken (the files are read from it after)"
        } else {
            "while the files were read (the last parts still upload)"
        }
    );

    // A restore into another deployment (no session there): download, verify, swap.
    let started = Instant::now();
    let restore = client
        .restore_backup_opt(
            &pb::RestoreBackupRequest {
                backup_id: backup.backup_id,
                to_sgc_id: target,
            },
            opt(),
        )
        .unwrap()
        .restore
        .unwrap();
    let restored = wait_for("the restore", Duration::from_secs(3600), || {
        let r = client
            .get_restore_opt(
                &pb::GetRestoreRequest {
                    restore_id: restore.restore_id,
                },
                opt(),
            )
            .ok()?
            .restore?;
        (r.status == "completed" || r.status == "failed").then_some(r)
    });
    let restore_time = started.elapsed();
    assert_eq!(restored.status, "completed", "{}", restored.reason);
    println!(
        "restore into another deployment: {:.1} s, {:.0} MiB/s of world",
        restore_time.as_secs_f64(),
        mib_s(bytes, restore_time)
    );

    // What verification costs: the same archive unpacked with the manifest checks, and by tar.
    let archive = bucket.store.get(&backup.s3_key).unwrap().unwrap();
    let manifest_key = backup.s3_key.replace(".tar.zst", ".manifest.json");
    let manifest =
        manman_backup::Manifest::from_json(&bucket.store.get(&manifest_key).unwrap().unwrap())
            .unwrap();
    let scratch = std::env::temp_dir().join(unique_name("mmbench-unpack"));
    std::fs::create_dir_all(&scratch).unwrap();
    let started = Instant::now();
    manman_backup::extract_verified(
        &archive[..],
        &scratch.join("verified"),
        &manifest,
        &mut |_| {},
    )
    .unwrap();
    let verified = started.elapsed();
    std::fs::create_dir_all(scratch.join("plain")).unwrap();
    let started = Instant::now();
    let mut tar = Command::new("tar")
        .args(["--zstd", "-xf", "-", "-C"])
        .arg(scratch.join("plain"))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    tar.stdin.take().unwrap().write_all(&archive).unwrap();
    assert!(tar.wait().unwrap().success());
    let plain = started.elapsed();
    println!(
        "unpack from memory: verified {:.1} s ({:.0} MiB/s), tar --zstd -x {:.1} s ({:.0} MiB/s): verification costs {:+.0} %",
        verified.as_secs_f64(),
        mib_s(bytes, verified),
        plain.as_secs_f64(),
        mib_s(bytes, plain),
        100.0 * (verified.as_secs_f64() / plain.as_secs_f64() - 1.0)
    );

    // The agent's own shutdown stops its game (HOST_STOP_SESSIONS_ON_SHUTDOWN).
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = agent.wait();
    drop(sups);
    let _ = std::fs::remove_dir_all(&scratch);
    let _ = std::fs::remove_dir_all(&data_dir);
}
