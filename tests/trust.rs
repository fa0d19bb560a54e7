//! Trust on a network: tokens and roles on every RPC, listeners that refuse to be open without
//! TLS, TLS that works (gRPC with a throwaway CA, amqps to the broker's TLS listener,
//! PostgreSQL with sslmode=require), and tokens handled as secrets by the CLI.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use grpcio::RpcStatusCode as C;
use manman::api::{self, ApiConfig};
use manman::auth::Role;
use manman::db::PoolSettings;
use manman::grpc::{call_option, Endpoint, ServerTls};
use manman::lifecycle::Supervisor;
use manman::proto::v1 as pb;
use manman::testkit::KillOnDrop;
use support::*;

const T: Duration = Duration::from_secs(30);

struct Api {
    db: TestDb,
    vhost: TestVhost,
    port: u16,
    admin: String,
    _daemon: Daemon,
}

fn start_api(tls: Option<ServerTls>) -> Api {
    let (db, vhost) = (TestDb::new(), TestVhost::new());
    let mut sup = Supervisor::new();
    let running = api::start(
        ApiConfig {
            tls,
            ..ApiConfig::embedded(vhost.url(), db.config.clone())
        },
        &mut sup,
    )
    .unwrap();
    let (_, admin) = api::create_token(&mut db.client(), "admin", Role::Admin, 0).unwrap();
    Api {
        db,
        vhost,
        port: running.port,
        admin,
        _daemon: Daemon::run(sup),
    }
}

impl Api {
    fn client(&self) -> pb::ManManApiClient {
        manman::api::client(&format!("127.0.0.1:{}", self.port))
    }

    fn token(&self, name: &str, role: &str) -> String {
        self.client()
            .create_token_opt(
                &pb::CreateTokenRequest {
                    name: name.into(),
                    role: role.into(),
                    expires_in_seconds: 0,
                },
                call_option(Some(&self.admin), T),
            )
            .unwrap()
            .secret
    }

    fn cli(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_manman"))
            .args(args)
            .env("API_ADDRESS", format!("127.0.0.1:{}", self.port))
            .env_remove("MANMAN_TOKEN")
            .env_remove("MANMAN_TOKEN_FILE")
            .env("HOME", "/nonexistent")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn failure<T: std::fmt::Debug>(r: grpcio::Result<T>) -> (C, String) {
    match r {
        Err(grpcio::Error::RpcFailure(s)) => (s.code(), s.message().to_string()),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn every_rpc_needs_a_valid_token_with_the_right_role() {
    let api = start_api(None);
    let c = api.client();
    let list = |token: Option<&str>| {
        c.list_games_opt(&pb::ListGamesRequest::default(), call_option(token, T))
    };

    let (code, message) = failure(list(None));
    assert_eq!(code, C::UNAUTHENTICATED);
    assert!(message.contains("MANMAN_TOKEN"), "{message}");
    assert_eq!(failure(list(Some("mm_tok_made_up"))).0, C::UNAUTHENTICATED);
    assert!(list(Some(&api.admin)).is_ok());

    // A viewer reads but cannot act; an operator acts but cannot change the catalog.
    let viewer = api.token("grafana", "viewer");
    let operator = api.token("night-shift", "operator");
    assert!(list(Some(&viewer)).is_ok());
    let start = |token: &str| {
        c.start_session_opt(
            &pb::StartSessionRequest {
                sgc_id: 424_242,
                force: false,
            },
            call_option(Some(token), T),
        )
    };
    let (code, message) = failure(start(&viewer));
    assert_eq!(code, C::PERMISSION_DENIED);
    assert!(
        message.contains("operator role") && message.contains("grafana"),
        "{message}"
    );
    // Past the role check: the deployment does not exist.
    assert_eq!(failure(start(&operator)).0, C::NOT_FOUND);
    let create = c.create_game_opt(
        &pb::CreateGameRequest {
            name: "minecraft".into(),
        },
        call_option(Some(&operator), T),
    );
    assert_eq!(failure(create).0, C::PERMISSION_DENIED);
    let tokens = c.list_tokens_opt(&pb::ListTokensRequest {}, call_option(Some(&operator), T));
    assert_eq!(failure(tokens).0, C::PERMISSION_DENIED);
    // Nobody but an enrolled host registers a host.
    let register = c.register_server_opt(
        &pb::RegisterServerRequest {
            name: "rogue".into(),
        },
        call_option(Some(&api.admin), T),
    );
    assert_eq!(failure(register).0, C::PERMISSION_DENIED);

    // Only digests are stored.
    let stored: i64 = api
        .db
        .client()
        .query_one(
            "SELECT count(*) FROM api_tokens WHERE encode(secret_sha256, 'escape') LIKE '%' || $1 || '%'",
            &[&&viewer[7..20]],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, 0);

    // A revoked token stops working within the cache time.
    c.revoke_token_opt(
        &pb::RevokeTokenRequest {
            name: "grafana".into(),
        },
        call_option(Some(&api.admin), T),
    )
    .unwrap();
    wait_for(
        "the revoked token to be refused",
        Duration::from_secs(15),
        || {
            matches!(
                list(Some(&viewer)),
                Err(grpcio::Error::RpcFailure(s)) if s.code() == C::UNAUTHENTICATED
            )
            .then_some(())
        },
    );
    // Its name can be used again.
    api.token("grafana", "viewer");
}

#[test]
fn an_expired_token_is_refused() {
    let api = start_api(None);
    let c = api.client();
    let secret = c
        .create_token_opt(
            &pb::CreateTokenRequest {
                name: "short".into(),
                role: "viewer".into(),
                expires_in_seconds: 1,
            },
            call_option(Some(&api.admin), T),
        )
        .unwrap()
        .secret;
    wait_for("the token to expire", Duration::from_secs(15), || {
        let r = c.list_games_opt(
            &pb::ListGamesRequest::default(),
            call_option(Some(&secret), T),
        );
        matches!(r, Err(grpcio::Error::RpcFailure(s)) if s.code() == C::UNAUTHENTICATED)
            .then_some(())
    });
}

#[test]
fn the_cli_reads_its_token_from_the_environment_or_a_private_file_only() {
    let api = start_api(None);
    // No token: a clear refusal with the "not allowed" exit code.
    let (code, _, err) = api.cli(&["game", "list"], &[]);
    assert_eq!(code, 77, "{err}");
    assert!(err.contains("MANMAN_TOKEN"), "{err}");

    let dir = std::env::temp_dir().join(unique_name("mmtoken"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ops.token");
    // `token create --output` writes the secret to a 0600 file and does not print it.
    let (code, out, err) = api.cli(
        &[
            "token",
            "create",
            "ops",
            "--role",
            "operator",
            "--output",
            file.to_str().unwrap(),
        ],
        &[("MANMAN_TOKEN", &api.admin)],
    );
    assert_eq!(code, 0, "{err}");
    let secret = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert!(secret.starts_with("mm_tok_"));
    assert!(!out.contains(&secret), "{out}");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let file_env = [("MANMAN_TOKEN_FILE", file.to_str().unwrap())];
    let (code, _, err) = api.cli(
        &["game", "create", "openttd"],
        &[("MANMAN_TOKEN", &api.admin)],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = api.cli(&["game", "list"], &file_env);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("openttd"), "{out}");
    // The operator may not list tokens; the admin sees names and roles, never secrets.
    assert_eq!(api.cli(&["token", "list"], &file_env).0, 77);
    let (code, out, _) = api.cli(&["token", "list"], &[("MANMAN_TOKEN", &api.admin)]);
    assert_eq!(code, 0);
    assert!(out.contains("ops") && out.contains("operator"), "{out}");
    assert!(!out.contains(&secret) && !out.contains("mm_tok_"), "{out}");

    // A token file others can read is refused before anything is sent.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = api.cli(&["game", "list"], &file_env);
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("MANMAN_TOKEN_FILE") && err.contains("chmod 600"),
        "{err}"
    );

    // Revoked through the CLI: refused.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, err) = api.cli(&["token", "revoke", "ops"], &[("MANMAN_TOKEN", &api.admin)]);
    assert_eq!(code, 0, "{err}");
    wait_for(
        "the revoked file token to be refused",
        Duration::from_secs(15),
        || (api.cli(&["game", "list"], &file_env).0 == 77).then_some(()),
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_first_admin_token_is_bootstrapped_through_the_database() {
    let api = start_api(None);
    let (code, out, err) = api.cli(
        &[
            "--json",
            "token",
            "create",
            "root",
            "--role",
            "admin",
            "--bootstrap",
        ],
        &[("DATABASE_URL", &api.db.url())],
    );
    assert_eq!(code, 0, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    let secret = created["secret"].as_str().unwrap();
    let (code, _, err) = api.cli(&["game", "create", "factorio"], &[("MANMAN_TOKEN", secret)]);
    assert_eq!(code, 0, "{err}");
    // The name is taken while that token lives.
    let (code, _, _) = api.cli(
        &["token", "create", "root", "--role", "admin", "--bootstrap"],
        &[("DATABASE_URL", &api.db.url())],
    );
    assert_eq!(code, 5);
}

#[test]
fn the_cli_talks_to_the_api_over_tls_with_the_ca_and_not_without_it() {
    let dir = std::env::temp_dir().join(unique_name("mmtls"));
    manman::testkit::make_test_ca(&dir);
    let tls = ServerTls {
        cert_pem: std::fs::read(dir.join("server.pem")).unwrap(),
        key_pem: std::fs::read(dir.join("server.key")).unwrap(),
    };
    let api = start_api(Some(tls));
    let ca = dir.join("ca.pem");
    let with_ca = [
        ("MANMAN_TOKEN", api.admin.as_str()),
        ("GRPC_TLS_CA", ca.to_str().unwrap()),
    ];
    let (code, out, err) = api.cli(&["--json", "game", "create", "valheim"], &with_ca);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("valheim"));
    // A plaintext client gets nothing from a TLS port.
    let (code, _, _) = api.cli(&["game", "list"], &[("MANMAN_TOKEN", api.admin.as_str())]);
    assert_eq!(code, 69);
    // Nor does a client trusting another CA.
    let other = std::env::temp_dir().join(unique_name("mmtls-other"));
    manman::testkit::make_test_ca(&other);
    let other_ca = other.join("ca.pem");
    let (code, _, _) = api.cli(
        &["game", "list"],
        &[
            ("MANMAN_TOKEN", api.admin.as_str()),
            ("GRPC_TLS_CA", other_ca.to_str().unwrap()),
        ],
    );
    assert_eq!(code, 69);
    // The host agent's client side uses the same endpoint code.
    let endpoint = Endpoint {
        address: format!("127.0.0.1:{}", api.port),
        tls_ca: Some(std::fs::read(&ca).unwrap()),
    };
    let games = endpoint
        .api_client()
        .list_games_opt(
            &pb::ListGamesRequest::default(),
            call_option(Some(&api.admin), T),
        )
        .unwrap();
    assert_eq!(games.games.len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&other).unwrap();
}

/// Runs a daemon binary with `env` until it exits (it must fail at start).
fn refused_at_start(binary: &str, env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(binary)
        .envs(env.iter().copied())
        .env("LOG_LEVEL", "warn")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn daemons_refuse_to_listen_on_the_network_without_tls_unless_told_loudly() {
    let port = manman::testkit::free_port().to_string();
    for (binary, var) in [
        (env!("CARGO_BIN_EXE_manman-api"), "GRPC_BIND"),
        (env!("CARGO_BIN_EXE_manman-log-processor"), "GRPC_BIND"),
        (env!("CARGO_BIN_EXE_manman-status-api"), "STATUS_BIND"),
        (env!("CARGO_BIN_EXE_manman-processor"), "HEALTH_BIND"),
    ] {
        let (code, err) = refused_at_start(
            binary,
            &[
                (var, "0.0.0.0"),
                ("GRPC_PORT", &port),
                ("STATUS_PORT", &port),
                ("HEALTH_PORT", &port),
            ],
        );
        assert_eq!(code, 78, "{binary}: {err}");
        assert!(
            err.contains(var) && err.contains("MANMAN_ALLOW_INSECURE_NETWORK"),
            "{binary}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{binary}: {err}");
    }
}

#[test]
fn the_status_api_off_loopback_needs_a_viewer_token() {
    let db = TestDb::new();
    let mut sup = Supervisor::new();
    let running = manman::status::start(
        manman::status::StatusConfig {
            database: db.config.clone(),
            listen: "0.0.0.0:0".into(),
            require_token: true,
            allowed_hosts: Vec::new(),
            workers: 1,
            stale_threshold: Duration::from_secs(10),
            system_cache: Duration::from_millis(0),
            pool: PoolSettings {
                max_size: 2,
                min_idle: 1,
                ..PoolSettings::default()
            },
        },
        &mut sup,
    )
    .unwrap();
    let _daemon = Daemon::run(sup);
    let (code, body) = http_request(running.port, "GET", "/status/system");
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("\"error\""), "{body}");
    let (_, viewer) = api::create_token(&mut db.client(), "dash", Role::Viewer, 0).unwrap();
    let get = |token: &str| {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", running.port)).unwrap();
        use std::io::{Read, Write};
        write!(
            stream,
            "GET /status/system HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply
    };
    assert!(get(&viewer).starts_with("HTTP/1.1 200"), "{}", get(&viewer));
    assert!(get("mm_tok_nope").starts_with("HTTP/1.1 401"));
}

/// The processor (a real binary) connects to RabbitMQ over amqps (the broker's TLS listener that
/// `scripts/services` starts, its CA given by `SSL_CERT_FILE`) and to PostgreSQL with
/// `sslmode=require` (Debian's server certificate, issued to `localhost`), and is ready; the
/// connections are encrypted, as PostgreSQL's `pg_stat_ssl` shows.
#[test]
fn a_daemon_connects_over_amqps_and_to_postgresql_with_sslmode_require() {
    let (db, vhost) = (TestDb::new(), TestVhost::new());
    let broker_ca = manman::testkit::services_tls_dir().join("ca.pem");
    assert!(
        broker_ca.exists(),
        "{} is missing: run scripts/services (it starts RabbitMQ's TLS listener)",
        broker_ca.display()
    );
    // One file of trusted roots for the daemon: the broker's CA and the database's certificate.
    let dir = std::env::temp_dir().join(unique_name("mmroots"));
    std::fs::create_dir_all(&dir).unwrap();
    let roots = dir.join("roots.pem");
    let mut pem = std::fs::read(&broker_ca).unwrap();
    pem.extend(std::fs::read("/etc/ssl/certs/ssl-cert-snakeoil.pem").unwrap());
    std::fs::write(&roots, pem).unwrap();
    let app = unique_name("mmtls");
    let database_url = format!(
        "postgres://postgres@localhost:5432/{}?sslmode=require&application_name={app}",
        db.name
    );
    let amqps = format!("amqps://guest:guest@localhost:5671/{}", vhost.name);
    let health = manman::testkit::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_manman-processor"))
        .env("DATABASE_URL", &database_url)
        .env("RABBITMQ_URL", &amqps)
        .env("SSL_CERT_FILE", &roots)
        .env("SSL_CERT_DIR", "/nonexistent")
        .env("HEALTH_PORT", health.to_string())
        .env("LOG_LEVEL", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(child);
    wait_for("the processor ready over TLS", T, || {
        manman::testkit::http_get(health, "/readyz")
            .starts_with("HTTP/1.1 200")
            .then_some(())
    });
    let encrypted: bool = wait_for("its database connection", T, || {
        db.client()
            .query_opt(
                "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                  WHERE a.application_name = $1 LIMIT 1",
                &[&app],
            )
            .unwrap()
            .map(|r| r.get(0))
    });
    assert!(encrypted);
    let broker_tls =
        manman::testkit::rabbitmqctl(&["list_connections", "-p", &vhost.name, "ssl", "--silent"]);
    assert!(broker_tls.contains("true"), "{broker_tls}");

    // Without the CA, neither the broker nor the database is trusted: the daemon says why
    // (it keeps retrying a broker it cannot trust, so it is read, then ended).
    let mut untrusting = Command::new(env!("CARGO_BIN_EXE_manman-processor"))
        .env("DATABASE_URL", &database_url)
        .env("RABBITMQ_URL", &amqps)
        .env("SSL_CERT_FILE", "/dev/null")
        .env("SSL_CERT_DIR", "/nonexistent")
        .env("HEALTH_PORT", manman::testkit::free_port().to_string())
        .env("LOG_LEVEL", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = untrusting.stderr.take().unwrap();
    let _guard = KillOnDrop(untrusting);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let refusal = wait_for("a certificate error", T, || {
        rx.recv_timeout(Duration::from_millis(100))
            .ok()
            .filter(|line| line.contains("certificate"))
    });
    assert!(refusal.contains("verify failed"), "{refusal}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A log processor without a database checks stream tokens with the API (`WhoAmI`) and looks
/// sessions up there with its own token.
#[test]
fn a_log_processor_without_a_database_checks_tokens_with_the_api() {
    let api = start_api(None);
    let own = api.token("log-processor", "viewer");
    let operator = api.token("ops", "operator");
    let mut sup = Supervisor::new();
    let running = manman::logs::start(
        manman::logs::LogsConfig {
            api: Endpoint::plain(&format!("127.0.0.1:{}", api.port)),
            api_token: Some(own),
            ..manman::logs::LogsConfig::embedded(api.vhost.url(), None)
        },
        &mut sup,
    )
    .unwrap();
    let _daemon = Daemon::run(sup);
    let client = manman::logs::client(&format!("127.0.0.1:{}", running.grpc_port));
    let first = |token: Option<&str>| {
        let req = pb::StreamSessionLogsRequest {
            session_id: 424_242,
            after_sequence_number: 0,
            backlog_only: true,
        };
        let stream = client
            .stream_session_logs_opt(&req, manman::grpc::authorized(token))
            .unwrap();
        match futures::executor::block_on_stream(stream).next() {
            Some(Err(grpcio::Error::RpcFailure(s))) => s.code(),
            other => panic!("expected a failure, got {other:?}"),
        }
    };
    assert_eq!(first(None), C::UNAUTHENTICATED);
    assert_eq!(first(Some("mm_tok_forged")), C::UNAUTHENTICATED);
    // Past the token check, the session is looked up through the API: it does not exist.
    assert_eq!(first(Some(&operator)), C::NOT_FOUND);
}
