//! The README's first command: `scripts/demo`, run in a clean state (a fresh database name,
//! vhost, bucket, run directory and ports) with the binaries this test run built. The demo
//! session must reach `running` and its live console lines must arrive.

mod support;

use std::path::Path;
use std::process::Command;

use manman::testkit::{admin_db_url, free_port};
use support::*;

/// Stops the demo's daemons and drops its database, pass or fail.
struct DemoCleanup {
    env: Vec<(String, String)>,
    database: String,
    run_dir: std::path::PathBuf,
    host_data: std::path::PathBuf,
}

impl Drop for DemoCleanup {
    fn drop(&mut self) {
        let _ = Command::new("scripts/demo")
            .arg("stop")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output();
        // After the stop: it reads the daemons' pid files from the run directory.
        let _ = std::fs::remove_dir_all(&self.run_dir);
        let _ = std::fs::remove_dir_all(&self.host_data);
        if let Ok(mut admin) = postgres::Client::connect(&admin_db_url(), postgres::NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.database
            ));
        }
    }
}

#[test]
fn the_demo_script_runs_a_session_and_shows_its_live_console() {
    let vhost = TestVhost::new();
    let database = unique_name("mmdemo");
    let run_dir = std::env::temp_dir().join(unique_name("mmdemo"));
    // Where the demo host's games (uids of their own) can reach their directories.
    let host_data = std::env::temp_dir().join(unique_name("mmdemo-host"));
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_manman")).parent().unwrap();
    let env: Vec<(String, String)> = [
        (
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:5432/{database}"),
        ),
        ("RABBITMQ_URL", vhost.url()),
        ("API_ADDRESS", format!("127.0.0.1:{}", free_port())),
        (
            "LOG_PROCESSOR_ADDRESS",
            format!("127.0.0.1:{}", free_port()),
        ),
        ("STATUS_PORT", free_port().to_string()),
        ("WEB_PORT", free_port().to_string()),
        ("PROCESSOR_HEALTH_PORT", free_port().to_string()),
        ("HOST_HEALTH_PORT", free_port().to_string()),
        ("LOGS_HEALTH_PORT", free_port().to_string()),
        ("API_HEALTH_PORT", free_port().to_string()),
        ("S3_BUCKET", unique_name("mmdemo").replace('_', "-")),
        ("DEMO_RUN_DIR", run_dir.display().to_string()),
        ("DEMO_HOST_DATA_DIR", host_data.display().to_string()),
        ("MANMAN_BIN_DIR", bin_dir.display().to_string()),
        // The demo context goes here, not into the home directory of whoever runs the tests.
        (
            "MANMAN_CONFIG",
            run_dir.join("config.toml").display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let _cleanup = DemoCleanup {
        env: env.clone(),
        database: database.clone(),
        run_dir: run_dir.clone(),
        host_data: host_data.clone(),
    };
    let mode = |p: &Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).unwrap().mode()
    };
    let temp_mode = mode(&std::env::temp_dir());
    let out = Command::new("scripts/demo")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    // The demo makes its own directories; it changes no one else's (it once made /tmp 0711).
    assert_eq!(
        mode(&std::env::temp_dir()),
        temp_mode,
        "the demo changed the mode of {}",
        std::env::temp_dir().display()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/demo failed\n{stdout}\n{stderr}"
    );
    // The session show table and the status summary name the running session.
    assert!(stdout.contains("running"), "{stdout}");
    // Live console lines, through the log processor: the demo's `say hello` echoed back.
    assert!(stdout.contains("[stdout] echo: say hello"), "{stdout}");
    assert!(
        stdout.contains("stop it all: scripts/demo stop"),
        "{stdout}"
    );
    assert!(stdout.contains("dashboard http://127.0.0.1:"), "{stdout}");
    // The demo used the fresh database: it has exactly the demo's one session, running.
    let mut c = postgres::Client::connect(
        &format!("postgres://postgres@127.0.0.1:5432/{database}"),
        postgres::NoTls,
    )
    .unwrap();
    let statuses: Vec<String> = c
        .query("SELECT status FROM sessions", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(statuses, ["running"]);
    // The dashboard it started lets the demo's admin in and shows the demo host online.
    let port: u16 = env
        .iter()
        .find(|(k, _)| k == "WEB_PORT")
        .unwrap()
        .1
        .parse()
        .unwrap();
    let token = std::fs::read_to_string(run_dir.join("admin.token")).unwrap();
    let (cookie, _) = manman::testkit::dashboard_login(port, token.trim());
    let overview: serde_json::Value = ureq::get(&format!("http://127.0.0.1:{port}/api/overview"))
        .set("Cookie", &cookie)
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(overview["hosts"][0]["name"], "demo-host", "{overview}");
    assert_eq!(overview["hosts"][0]["status"], "online", "{overview}");
    assert_eq!(overview["live_total"], 1, "{overview}");

    // A new shell: no address, CA or token exported; the demo context is current.
    let config = run_dir.join("config.toml");
    let status = Command::new(env!("CARGO_BIN_EXE_manman"))
        .args(["status", "--json"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &run_dir)
        .env("MANMAN_CONFIG", &config)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "manman status through the demo context: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(status.to_string().contains("demo-host"), "{status}");

    doctor_names_each_broken_link(&run_dir, &config);
}

/// `manman doctor` in a new shell through the demo context: every link ok, then each fault
/// injected in turn is named with its fix.
fn doctor_names_each_broken_link(run_dir: &Path, config: &Path) {
    let doctor = |extra: &[(&str, &str)]| -> (i32, serde_json::Value) {
        let out = Command::new(env!("CARGO_BIN_EXE_manman"))
            .args(["doctor", "--json"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", run_dir)
            .env("MANMAN_CONFIG", config)
            .envs(extra.iter().copied())
            .output()
            .unwrap();
        let report = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("doctor: {e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code().unwrap_or(-1), report)
    };
    let check = check_named;
    let (code, report) = doctor(&[]);
    assert_eq!(code, 0, "{report}");
    for c in report["checks"].as_array().unwrap() {
        assert_eq!(c["status"], "ok", "{report}");
    }
    assert!(check(&report, "token")["detail"]
        .as_str()
        .unwrap()
        .contains("role admin"));

    // A CA that did not sign the API's certificate.
    let other_ca = run_dir.join("other-ca");
    assert!(Command::new("scripts/make-test-ca")
        .arg(&other_ca)
        .status()
        .unwrap()
        .success());
    let (code, report) = doctor(&[("GRPC_TLS_CA", other_ca.join("ca.pem").to_str().unwrap())]);
    assert_eq!(code, 1, "{report}");
    let api = check(&report, "api");
    assert_eq!(api["status"], "fail", "{report}");
    assert!(
        api["fix"].as_str().unwrap().contains("signed by the CA"),
        "{report}"
    );

    // A token file others can read.
    let loose = run_dir.join("loose.token");
    std::fs::copy(run_dir.join("admin.token"), &loose).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, report) = doctor(&[("MANMAN_TOKEN_FILE", loose.to_str().unwrap())]);
    assert_eq!(code, 1);
    assert!(
        check(&report, "token")["fix"]
            .as_str()
            .unwrap()
            .contains("chmod 600"),
        "{report}"
    );

    // A revoked token.
    let manman = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_manman"))
            .args(args)
            .env("MANMAN_CONFIG", config)
            .env_remove("API_ADDRESS")
            .env_remove("MANMAN_TOKEN")
            .env_remove("MANMAN_TOKEN_FILE")
            .env_remove("GRPC_TLS_CA")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "manman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let revoked = run_dir.join("revoked.token");
    manman(&[
        "token",
        "create",
        "doctor-test",
        "--role",
        "viewer",
        "--output",
        revoked.to_str().unwrap(),
    ]);
    manman(&["token", "revoke", "doctor-test"]);
    let (code, report) = doctor(&[("MANMAN_TOKEN_FILE", revoked.to_str().unwrap())]);
    assert_eq!(code, 1);
    let token = check(&report, "token");
    assert!(
        token["detail"].as_str().unwrap().contains("refused"),
        "{report}"
    );
    assert!(
        token["fix"].as_str().unwrap().contains("revoked"),
        "{report}"
    );

    // The API stopped (by the pid the demo recorded).
    let pid: i32 = std::fs::read_to_string(run_dir.join("manman-api.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    unsafe { libc::kill(pid, libc::SIGTERM) };
    manman::testkit::wait_for(
        "the API to stop",
        std::time::Duration::from_secs(30),
        || (unsafe { libc::kill(pid, 0) } != 0).then_some(()),
    );
    let (code, report) = doctor(&[]);
    assert_eq!(code, 1);
    let api = check(&report, "api");
    assert!(
        api["detail"].as_str().unwrap().contains("cannot connect"),
        "{report}"
    );
    assert!(
        api["fix"].as_str().unwrap().contains("manman-api"),
        "{report}"
    );
    assert_eq!(check(&report, "log processor")["status"], "ok", "{report}");
}
