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

/// `manman` with nothing in the environment but PATH, HOME, the config file and `extra`.
fn manman_in_shell(
    config: &std::path::Path,
    args: &[&str],
    extra: &[(&str, &str)],
) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_manman"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", config.parent().unwrap())
        .env("MANMAN_CONFIG", config)
        .envs(extra.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn contexts_pick_the_control_plane_and_the_environment_overrides_them() {
    use std::os::unix::fs::PermissionsExt as _;
    let stack = support::stack::Stack::start();
    let dir = std::env::temp_dir().join(manman::testkit::unique_name("mmctx"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("manman/config.toml");
    let token_file = dir.join("admin.token");
    manman::secret::write_file(&token_file, &stack.admin_token).unwrap();
    let api = format!("127.0.0.1:{}", stack.api_port);
    let dead = format!("127.0.0.1:{}", manman::testkit::free_port());
    let run = |args: &[&str], extra: &[(&str, &str)]| manman_in_shell(&config, args, extra);

    let (code, out, err) = run(
        &[
            "context",
            "add",
            "prod",
            "--api",
            &api,
            "--token-file",
            token_file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("(current)"),
        "the first context becomes current: {out}"
    );
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The second context, with the token kept in the file (read from stdin, never an argument).
    let mut add = Command::new(env!("CARGO_BIN_EXE_manman"))
        .args(["context", "add", "staging", "--api", &dead, "--token-stdin"])
        .env("MANMAN_CONFIG", &config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    add.stdin
        .take()
        .unwrap()
        .write_all(b"mm_tok_staging\n")
        .unwrap();
    assert!(add.wait().unwrap().success());
    let (code, _, _) = run(&["context", "add", "prod", "--api", &dead], &[]);
    assert_eq!(
        code, 5,
        "an existing name is not overwritten without --replace"
    );

    // The current context (prod) reaches the API with its token.
    let (code, out, err) = run(&["--json", "game", "list"], &[]);
    assert_eq!(code, 0, "through the current context: {err}");
    assert!(out.contains("\"items\""), "{out}");
    // --context picks another: nothing listens there.
    let (code, _, err) = run(&["--context", "staging", "game", "list"], &[]);
    assert_eq!(code, 69, "staging's API is down: {err}");
    let (code, _, err) = run(&["--context", "nope", "game", "list"], &[]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("no context \"nope\""), "{err}");

    // `use` switches; the environment overrides the context's address and token.
    let (code, _, _) = run(&["context", "use", "staging"], &[]);
    assert_eq!(code, 0);
    let (code, _, _) = run(&["game", "list"], &[]);
    assert_eq!(code, 69);
    let (code, _, err) = run(
        &["game", "list"],
        &[("API_ADDRESS", &api), ("MANMAN_TOKEN", &stack.admin_token)],
    );
    assert_eq!(code, 0, "the environment wins: {err}");
    // staging's own token is refused by the real API once the address is right.
    let (code, _, _) = run(&["game", "list"], &[("API_ADDRESS", &api)]);
    assert_eq!(code, 77, "the context's token, not prod's");

    let (code, out, _) = run(&["--json", "context", "show"], &[("API_ADDRESS", &api)]);
    assert_eq!(code, 0);
    let show: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(show["context"], "staging", "{show}");
    assert_eq!(show["api"]["value"], api.as_str(), "{show}");
    assert_eq!(show["api"]["from"], "environment (API_ADDRESS)", "{show}");
    assert_eq!(show["token"]["from"], "context", "{show}");
    assert!(
        !out.contains("mm_tok_staging"),
        "a token is never shown: {out}"
    );
    let (_, list, _) = run(&["context", "list"], &[]);
    assert!(!list.contains("mm_tok_staging"), "{list}");
    assert!(
        list.lines()
            .any(|l| l.starts_with('*') && l.contains("staging")),
        "{list}"
    );

    // A config file others may read (it can hold a token) is refused with the fix.
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = run(&["game", "list"], &[]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();

    let (code, _, _) = run(&["context", "remove", "staging"], &[]);
    assert_eq!(code, 0);
    let (code, out, _) = run(&["--json", "context", "list"], &[]);
    assert_eq!(code, 0);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(
        list["items"][0]["current"], false,
        "the removed one was current: {list}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn completions_and_man_pages_come_from_the_flags() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef manman"),
        ("fish", "complete -c manman"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_manman"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("token-stdin"),
            "{shell} completes context add's flags"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_manman"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );

    let dir = std::env::temp_dir().join(manman::testkit::unique_name("mmman"));
    let out = Command::new(env!("CARGO_BIN_EXE_manman"))
        .args(["man-pages", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(dir.join("manman-context-add.1")).unwrap();
    assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
    assert!(page.contains("token\\-stdin"), "{page}");
    assert!(dir.join("manman.1").exists() && dir.join("manman-session-start.1").exists());
    assert!(
        !dir.join("manman-man-pages.1").exists(),
        "the hidden command has no page"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
