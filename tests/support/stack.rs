//! The whole system in one test process: processor, API, log processor and an in-process host
//! agent with real RabbitMQ, PostgreSQL (a scratch database and vhost each) and the test game
//! (`scripts/test-game`); the CLI as a real binary.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use manman::api::{self, ApiConfig};
use manman::host::{self, HostConfig, RunningHost};
use manman::lifecycle::Supervisor;
use manman::logs::{self, LogsConfig, RunningLogProcessor};
use manman::processor::{self, ProcessorConfig};
use manman::proto::v1 as pb;
use manman::testkit::http_get;

use super::*;

pub const T: Duration = Duration::from_secs(30);

/// `scripts/test-game` where every game's uid can run it: games run as uids of their own, and
/// the clone may sit in a directory only its owner can enter (/root). One copy per content,
/// shared by every run.
pub fn game_script() -> String {
    static COPY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        let source = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/test-game");
        let script = std::fs::read(source).unwrap();
        let sum = script
            .iter()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(*b)));
        let copy = std::env::temp_dir().join(format!("manman-test-game-{sum:016x}"));
        if !copy.exists() {
            let tmp = copy.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, &script).unwrap();
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::rename(&tmp, &copy).unwrap();
        }
        copy.display().to_string()
    })
    .clone()
}

pub struct Stack {
    pub db: TestDb,
    /// An admin token, created in the database as `manman token create --bootstrap` does.
    pub admin_token: String,
    /// The one-time secret the in-process host enrolls with (`manman host add test-host`).
    pub enrollment: String,
    pub vhost: TestVhost,
    /// What every daemon of the stack connects to: the vhost's URL, or a cluster's node list
    /// ([`Stack::start_on_broker`]).
    pub broker_url: String,
    pub api_port: u16,
    pub api_health_port: u16,
    pub processor_health_port: u16,
    pub logs: RunningLogProcessor,
    /// How it was started (its instance name: a restart takes up its ingest queue).
    pub logs_config: LogsConfig,
    pub server_id: i64,
    pub data_dir: std::path::PathBuf,
    // Dropped in reverse order of start: host first, then API and processor.
    pub host: Option<(RunningHost, Daemon)>,
    /// The in-process agent's console settings (throttle, batches).
    pub console: manman::host::console::ConsoleSettings,
    pub bucket: Option<manman::testkit::ScratchBucket>,
    pub _api: Daemon,
    pub _logs: Daemon,
    pub _processor: Daemon,
}

impl Stack {
    pub fn start() -> Stack {
        Self::start_with(|_| {})
    }

    pub fn start_with(tweak: impl FnOnce(&mut ProcessorConfig)) -> Stack {
        Self::start_full(tweak, None)
    }

    /// A stack whose log processor archives to (and whose API reads from) a bucket of its own.
    pub fn start_archiving() -> Stack {
        Self::start_full(|_| {}, Some(manman::testkit::ScratchBucket::new()))
    }

    /// A stack with a bucket of its own whose API keeps backups there, with its backup
    /// settings tweaked (short deadlines for the fault tests).
    pub fn start_backing_up(tweak: impl FnOnce(&mut manman::api::BackupSettings)) -> Stack {
        Self::start_complete(
            |_| {},
            |api| tweak(&mut api.backups),
            Some(manman::testkit::ScratchBucket::new()),
        )
    }

    pub fn start_full(
        tweak: impl FnOnce(&mut ProcessorConfig),
        bucket: Option<manman::testkit::ScratchBucket>,
    ) -> Stack {
        Self::start_complete(tweak, |_| {}, bucket)
    }

    pub fn start_complete(
        tweak: impl FnOnce(&mut ProcessorConfig),
        tweak_api: impl FnOnce(&mut ApiConfig),
        bucket: Option<manman::testkit::ScratchBucket>,
    ) -> Stack {
        Self::start_inner(tweak, tweak_api, bucket, None)
    }

    /// A stack whose daemons all connect to `broker_url` (a cluster's nodes, comma-separated)
    /// instead of a vhost of the machine's broker.
    pub fn start_on_broker(broker_url: String) -> Stack {
        Self::start_inner(|_| {}, |_| {}, None, Some(broker_url))
    }

    fn start_inner(
        tweak: impl FnOnce(&mut ProcessorConfig),
        tweak_api: impl FnOnce(&mut ApiConfig),
        bucket: Option<manman::testkit::ScratchBucket>,
        broker: Option<String>,
    ) -> Stack {
        let db = TestDb::new();
        // Host ids of this run's own: a test that gives its host a broker user
        // (`manman-host-{id}`, broker-wide) must not touch a user of anything else.
        static STACKS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
        let first_id = 7_400_000
            + (std::process::id() as i64 % 10_000) * 100
            + STACKS.fetch_add(1, Ordering::SeqCst) % 100;
        db.client()
            .batch_execute(&format!(
                "ALTER SEQUENCE servers_server_id_seq RESTART WITH {first_id}"
            ))
            .unwrap();
        let vhost = TestVhost::new();
        let broker_url = broker.unwrap_or_else(|| vhost.url());
        let mut sup = Supervisor::new();
        let mut config = ProcessorConfig::embedded(broker_url.clone(), db.config.clone());
        tweak(&mut config);
        let running = processor::start(config, &mut sup).unwrap();
        wait_for("processor connected", T, || {
            running
                .consumer_connected
                .load(Ordering::SeqCst)
                .then_some(())
        });
        let processor_health_port = running.health_port;
        let processor = Daemon::run(sup);
        let mut sup = Supervisor::new();
        let mut api_config = ApiConfig {
            archive: bucket.as_ref().map(|b| b.config.clone()),
            ..ApiConfig::embedded(broker_url.clone(), db.config.clone())
        };
        tweak_api(&mut api_config);
        let api = api::start(api_config, &mut sup).unwrap();
        let (api_port, api_health_port) = (api.port, api.health_port);
        let api_daemon = Daemon::run(sup);
        let (_, admin_token) =
            manman::api::create_token(&mut db.client(), "test-admin", manman::auth::Role::Admin, 0)
                .unwrap();
        let enrollment = manman::api::client(&format!("127.0.0.1:{api_port}"))
            .add_host_opt(
                &pb::AddHostRequest {
                    name: "test-host".into(),
                    reissue: false,
                },
                manman::grpc::call_option(Some(&admin_token), T),
            )
            .unwrap()
            .enrollment_secret;
        let mut sup = Supervisor::new();
        let logs_config = LogsConfig {
            archive: bucket.as_ref().map(|b| b.config.clone()),
            ..LogsConfig::embedded(broker_url.clone(), Some(db.config.clone()))
        };
        let logs = logs::start(logs_config.clone(), &mut sup).unwrap();
        let logs_daemon = Daemon::run(sup);
        let data_dir = std::env::temp_dir().join(unique_name("mmhost"));
        let mut stack = Stack {
            db,
            admin_token,
            enrollment,
            vhost,
            broker_url,
            api_port,
            api_health_port,
            processor_health_port,
            logs,
            logs_config,
            server_id: 0,
            data_dir,
            host: None,
            console: Default::default(),
            bucket,
            _api: api_daemon,
            _logs: logs_daemon,
            _processor: processor,
        };
        stack.start_host();
        stack
    }

    pub fn host_config(&self) -> HostConfig {
        HostConfig {
            rabbitmq_url: self.broker_url.clone(),
            api: manman::grpc::Endpoint::plain(&format!("127.0.0.1:{}", self.api_port)),
            server_name: "test-host".into(),
            // Used once: later starts find the credential in the data dir.
            enrollment_secret: Some(self.enrollment.clone()),
            data_dir: self.data_dir.clone(),
            health_addr: "127.0.0.1:0".into(),
            heartbeat: Duration::from_secs(5),
            reconcile_every: Duration::from_secs(1),
            keeper: Some(env!("CARGO_BIN_EXE_manman-keeper").into()),
            // The in-process agent's shutdown cleans up after the test.
            stop_sessions_on_shutdown: true,
            console: self.console.clone(),
            port_range: host::DEFAULT_PORT_RANGE,
            game_users: host::game_users::GameUserPolicy::Dynamic {
                low: host::game_users::DEFAULT_UID_RANGE.0,
                high: host::game_users::DEFAULT_UID_RANGE.1,
            },
            cgroup_subtree: Some(self.cgroup_subtree()),
            disk_check_every: Duration::from_secs(1),
        }
    }

    /// This test's own cgroup subtree (tests run agents side by side in one cgroup).
    pub fn cgroup_subtree(&self) -> String {
        format!("manman-{}", self.db.name.replace('_', "-"))
    }

    pub fn start_host(&mut self) {
        let mut sup = Supervisor::new();
        let running = host::start(self.host_config(), &mut sup).unwrap();
        wait_for("host consuming commands", T, || {
            running
                .commands_connected
                .load(Ordering::SeqCst)
                .then_some(())
        });
        self.server_id = running.server_id;
        self.host = Some((running, Daemon::run(sup)));
    }

    pub fn server_id(&self) -> i64 {
        self.server_id
    }

    /// Another in-process host, enrolled as an operator would (`manman host add NAME`), keeping
    /// its files in `data_dir`; it runs until the returned daemon is dropped.
    pub fn start_another_host(
        &self,
        name: &str,
        data_dir: &std::path::Path,
    ) -> (RunningHost, Daemon) {
        let enrollment = self.cli_json(&["host", "add", name])["secret"]
            .as_str()
            .unwrap()
            .to_string();
        let mut config = self.host_config();
        config.server_name = name.into();
        config.enrollment_secret = Some(enrollment);
        config.data_dir = data_dir.to_path_buf();
        let mut sup = Supervisor::new();
        let running = host::start(config, &mut sup).unwrap();
        let daemon = Daemon::run(sup);
        wait_for("the other host consumes commands", T, || {
            running
                .commands_connected
                .load(Ordering::SeqCst)
                .then_some(())
        });
        (running, daemon)
    }

    /// The in-process host runs exactly one game (its own /metrics says so).
    pub fn assert_one_game_running(&self) {
        let (host, _) = self.host.as_ref().unwrap();
        let metrics = http_get(host.health_port, "/metrics");
        assert!(
            metrics.contains("manman_host_processes{state=\"running\"} 1"),
            "{metrics}"
        );
    }

    /// Stops the log processor and starts it again on the same port and ingest queue (a
    /// restart, as systemd would do it): clients must resume.
    pub fn restart_log_processor(&mut self) {
        self._logs.shutdown();
        let mut sup = Supervisor::new();
        let config = LogsConfig {
            listen: format!("127.0.0.1:{}", self.logs.grpc_port),
            ..self.logs_config.clone()
        };
        self.logs = logs::start(config, &mut sup).unwrap();
        self._logs = Daemon::run(sup);
    }

    /// Call options with the admin token.
    pub fn opt(&self) -> grpcio::CallOption {
        manman::grpc::call_option(Some(&self.admin_token), T)
    }

    /// `manman args…` pointed at this stack (API, admin token, log processor) and at no one's
    /// contexts.
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_manman"));
        command
            .args(args)
            .env("API_ADDRESS", format!("127.0.0.1:{}", self.api_port))
            .env("MANMAN_TOKEN", &self.admin_token)
            .env(
                "LOG_PROCESSOR_ADDRESS",
                format!("127.0.0.1:{}", self.logs.grpc_port),
            )
            // Whatever contexts the machine's user has are not this test's.
            .env("MANMAN_CONFIG", "/nonexistent/manman/config.toml");
        command
    }

    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cli_command(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let (code, out, err) = self.cli(&all);
        assert_eq!(code, 0, "manman {args:?} failed: {err}");
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("manman {args:?}: not JSON ({e}): {out}"))
    }

    /// The `config create|update` flags of the test game on config port `port` (after
    /// `--game` and `--name`).
    pub fn test_game_flags(port: u16) -> Vec<String> {
        [
            "--program",
            &game_script(),
            "--stop-command",
            "stop",
            "--stop-timeout",
            "5",
            "--start-duration-ms",
            "200",
            "--port",
            &port.to_string(),
        ]
        .map(String::from)
        .to_vec()
    }

    /// A game, a config running the test game, and a deployment with `port`. Returns sgc_id.
    pub fn deploy_test_game(&self, name: &str, port: u16) -> i64 {
        self.deploy_test_game_with(name, port, &[])
    }

    /// [`deploy_test_game`](Self::deploy_test_game) with `extra` config flags.
    pub fn deploy_test_game_with(&self, name: &str, port: u16, extra: &[&str]) -> i64 {
        let game = self.cli_json(&["game", "create", name]);
        let game_id = game["game_id"].as_i64().unwrap().to_string();
        let flags = Self::test_game_flags(port);
        let mut args = vec!["config", "create", "--game", &game_id, "--name", "default"];
        args.extend(flags.iter().map(String::as_str));
        args.extend_from_slice(extra);
        let config = self.cli_json(&args);
        let config_id = config["config_id"].as_i64().unwrap().to_string();
        let d = self.cli_json(&[
            "deploy",
            "--server",
            &self.server_id().to_string(),
            "--config",
            &config_id,
            "--port",
            &port.to_string(),
        ]);
        d["sgc_id"].as_i64().unwrap()
    }

    pub fn status(&self, session: i64) -> (String, Option<i32>) {
        let r = self
            .db
            .client()
            .query_one(
                "SELECT status, exit_code FROM sessions WHERE session_id = $1",
                &[&session],
            )
            .unwrap();
        (r.get(0), r.get(1))
    }

    pub fn wait_status(&self, session: i64, want: &str) -> Option<i32> {
        wait_for(&format!("session {session} {want}"), T, || {
            let (s, code) = self.status(session);
            (s == want).then_some(code)
        })
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some((_, mut d)) = self.host.take() {
            d.shutdown();
        }
        // What an agent process killed by the test left: its sessions' groups and subtree.
        let cgroups = host::cgroups::SessionCgroups::open(Some(&self.cgroup_subtree()));
        cgroups.sweep(&[]);
        cgroups.close();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

impl Stack {
    /// Replaces the in-process host by a real agent process (same name, so the same server
    /// id), which a test can SIGKILL, SIGSTOP or SIGTERM. `stop_games`: whether its shutdown
    /// stops the games (HOST_STOP_SESSIONS_ON_SHUTDOWN).
    pub fn agent_process(&mut self, data_dir: &std::path::Path, stop_games: bool) -> Agent {
        let url = self.broker_url.clone();
        self.agent_process_as(data_dir, stop_games, &url)
    }

    /// [`agent_process`](Self::agent_process) connecting to the broker with `rabbitmq_url`.
    pub fn agent_process_as(
        &mut self,
        data_dir: &std::path::Path,
        stop_games: bool,
        rabbitmq_url: &str,
    ) -> Agent {
        let child = self
            .agent_command(data_dir, stop_games, rabbitmq_url)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Agent(Some(child))
    }

    /// The command of a real agent process replacing the in-process host (see
    /// [`agent_process`](Self::agent_process)).
    pub fn agent_command(
        &mut self,
        data_dir: &std::path::Path,
        stop_games: bool,
        rabbitmq_url: &str,
    ) -> Command {
        if let Some((_, mut d)) = self.host.take() {
            d.shutdown();
        }
        // The same host moving to another data dir takes its credential along (as a
        // reinstalled machine would be re-enrolled: the test is about the games, not that).
        let credential = host::identity::credential_file(data_dir);
        if !credential.exists() {
            std::fs::create_dir_all(data_dir).unwrap();
            std::fs::copy(host::identity::credential_file(&self.data_dir), &credential).unwrap();
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_manman-host"));
        command
            .env("RABBITMQ_URL", rabbitmq_url)
            .env("API_ADDRESS", format!("127.0.0.1:{}", self.api_port))
            .env("SERVER_NAME", "test-host")
            // Unused (the credential is there) but present, as on a real host's first start:
            // no game may see it.
            .env("HOST_ENROLLMENT_SECRET", &self.enrollment)
            .env("HOST_DATA_DIR", data_dir)
            .env("HOST_KEEPER", env!("CARGO_BIN_EXE_manman-keeper"))
            .env("HOST_STOP_SESSIONS_ON_SHUTDOWN", stop_games.to_string())
            .env("HEALTH_PORT", manman::testkit::free_port().to_string())
            .env("HOST_CGROUP", self.cgroup_subtree())
            .env("HOST_DISK_CHECK_SECONDS", "1")
            .env("HEARTBEAT_SECONDS", "1")
            .env("RECONCILE_SECONDS", "1")
            .env("LOG_LEVEL", "warn");
        command
    }

    /// A config of `program args…` with `extra` CLI flags, deployed on the host. Returns sgc_id.
    pub fn deploy(&self, name: &str, program: &str, args: &[&str], extra: &[&str]) -> i64 {
        let game = self.cli_json(&["game", "create", name])["game_id"]
            .as_i64()
            .unwrap()
            .to_string();
        let mut cmd = vec![
            "config",
            "create",
            "--game",
            &game,
            "--name",
            "default",
            "--program",
            program,
        ];
        for a in args {
            cmd.push("--arg");
            cmd.push(a);
        }
        cmd.extend_from_slice(extra);
        let config = self.cli_json(&cmd)["config_id"]
            .as_i64()
            .unwrap()
            .to_string();
        self.cli_json(&[
            "deploy",
            "--server",
            &self.server_id().to_string(),
            "--config",
            &config,
        ])["sgc_id"]
            .as_i64()
            .unwrap()
    }

    /// The config id of deployment `sgc`, as the CLI takes it.
    pub fn config_of(&self, sgc: i64) -> String {
        let list = self.cli_json(&["deploy", "list"]);
        let deployment = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["sgc_id"] == sgc)
            .expect("the deployment is listed");
        deployment["config_id"].to_string()
    }

    pub fn start_session(&self, sgc: i64) -> i64 {
        self.cli_json(&["session", "start", &sgc.to_string()])["session_id"]
            .as_i64()
            .unwrap()
    }

    /// Starts a session of `sgc`, retrying while a just-started agent process is not yet
    /// consuming its commands.
    pub fn start_session_retrying(&self, sgc: i64) -> i64 {
        wait_for("start", T, || {
            let (code, out, _) = self.cli(&["--json", "session", "start", &sgc.to_string()]);
            (code == 0).then(|| {
                serde_json::from_str::<serde_json::Value>(&out).unwrap()["session_id"]
                    .as_i64()
                    .unwrap()
            })
        })
    }

    /// Starts a session of each deployment on an agent process and waits until all run;
    /// returns the sessions and their games' pids (from the agent's store).
    pub fn start_running_games(
        &self,
        sgcs: &[i64],
        data_dir: &std::path::Path,
    ) -> (Vec<i64>, Vec<u32>) {
        let sessions: Vec<i64> = sgcs
            .iter()
            .map(|sgc| self.start_session_retrying(*sgc))
            .collect();
        for &id in &sessions {
            self.wait_status(id, "running");
        }
        let pids = sessions
            .iter()
            .map(|id| wait_for("game pid", T, || stored_pid(data_dir, *id)))
            .collect();
        (sessions, pids)
    }

    pub fn ports_held(&self) -> i64 {
        self.db
            .client()
            .query_one("SELECT count(*) FROM server_ports", &[])
            .unwrap()
            .get(0)
    }
}

/// A real agent process; on drop (a failed test too) it gets SIGTERM and is waited for, then
/// SIGKILL if it lingers.
pub struct Agent(pub Option<std::process::Child>);

impl Agent {
    pub fn pid(&self) -> i32 {
        self.0.as_ref().unwrap().id() as i32
    }

    pub fn signal(&self, signal: i32) {
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// SIGKILL, and reaped.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        self.0.take().unwrap().wait().unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let until = std::time::Instant::now() + Duration::from_secs(30);
            while std::time::Instant::now() < until {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The PIDs of a session's game in the agent's store.
pub fn stored_pid(data_dir: &std::path::Path, session: i64) -> Option<u32> {
    let store = std::fs::read_to_string(data_dir.join("processes.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&store).ok()?;
    v.as_array()?.iter().find_map(|p| {
        (p["spec"]["name"] == format!("session-{session}"))
            .then(|| p["pid"].as_u64())
            .flatten()
            .map(|p| p as u32)
    })
}

impl Stack {
    /// The dashboard in-process, in front of this stack's API and log processor; its port.
    pub fn start_web(&self) -> (u16, Daemon) {
        let mut sup = Supervisor::new();
        let running = manman::web::start(
            manman::web::WebConfig {
                listen: "127.0.0.1:0".into(),
                api: manman::grpc::Endpoint::plain(&format!("127.0.0.1:{}", self.api_port)),
                logs: manman::grpc::Endpoint::plain(&format!("127.0.0.1:{}", self.logs.grpc_port)),
                workers: 4,
                login_ttl: Duration::from_secs(3600),
                secure_cookies: false,
            },
            &mut sup,
        )
        .unwrap();
        (running.port, Daemon::run(sup))
    }
}
