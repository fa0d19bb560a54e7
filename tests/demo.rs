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
}
