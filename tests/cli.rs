//! The binaries as an operator meets them: `manman migrate`, and bad configuration at start.

mod support;

use std::process::Command;

use support::TestDb;

fn manman(db: &TestDb, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_manman"))
        .args(args)
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap()
}

#[test]
fn migrate_is_safe_to_run_twice_and_status_reports_it() {
    // TestDb is already migrated; drop the record of it to start from a bare database.
    let db = TestDb::new();
    db.client()
        .batch_execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        .unwrap();

    let status = manman(&db, &["migrate", "--status"]);
    assert_eq!(status.status.code(), Some(3), "pending migrations exit 3");
    assert!(String::from_utf8_lossy(&status.stdout).contains("pending"));

    let first = manman(&db, &["migrate"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(out.contains("applied 0001_core_schema.sql"), "{out}");

    let second = manman(&db, &["migrate"]);
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("0 migration(s) applied"));

    let json = manman(&db, &["migrate", "--status", "--json"]);
    assert_eq!(json.status.code(), Some(0));
    let states: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let states = states.as_array().unwrap();
    assert_eq!(states.len(), manman::db::migrate::MIGRATIONS.len());
    assert!(states.iter().all(|s| s["applied_at"].is_string()));
}

#[test]
fn migrate_refuses_an_edited_migration() {
    let db = TestDb::new();
    db.client()
        .execute(
            "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1",
            &[],
        )
        .unwrap();
    let out = manman(&db, &["migrate"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum differs"));
}

#[test]
fn bad_configuration_stops_the_processor_with_one_line_naming_the_variable() {
    for (var, value) in [
        ("STALE_HOST_THRESHOLD_SECONDS", "ten"),
        ("HEALTH_PORT", "0"),
        ("RABBITMQ_URL", "http://nope"),
        ("DATABASE_URL", "::::"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_manman-processor"))
            .env(var, value)
            .env("DB_PASSWORD", "hunter2")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{var}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{var}: {stderr}");
        assert!(stderr.contains(var), "{var}: {stderr}");
        assert!(!stderr.contains("hunter2"));
        let line: serde_json::Value = serde_json::from_str(stderr.trim()).unwrap();
        assert_eq!(line["level"], "ERROR");
    }
}

#[test]
fn unreachable_database_fails_the_processor_fast_and_clearly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(env!("CARGO_BIN_EXE_manman-processor"))
        .env(
            "DATABASE_URL",
            format!("postgres://postgres:s3cret@127.0.0.1:{port}/manman"),
        )
        .env("HEALTH_PORT", "0")
        .output()
        .unwrap();
    // HEALTH_PORT=0 is refused first: configuration is checked before anything is contacted.
    assert_eq!(out.status.code(), Some(78));
    let out = Command::new(env!("CARGO_BIN_EXE_manman-processor"))
        .env(
            "DATABASE_URL",
            format!("postgres://postgres:s3cret@127.0.0.1:{port}/manman"),
        )
        .env("HEALTH_PORT", port.to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("database is not reachable"), "{stderr}");
    assert!(!stderr.contains("s3cret"));
}
