//! The `manman` CLI's arguments: the clap tree (every noun, flag and help text) and the one
//! mapping from flags to a request that is more than a copy (`ConfigCreate::into_config`).

use clap::{Args, Parser, Subcommand};

use crate::proto::v1 as pb;

#[derive(Parser)]
#[command(
    name = "manman",
    version,
    about = "Operate ManMan game servers",
    long_about = "Operate ManMan: migrate the database; define games and configs; deploy them to \
                  hosts; start, watch, talk to and stop sessions.\n\n\
                  A typical first run:\n  \
                  manman migrate\n  \
                  manman token create root --role admin --bootstrap --output ~/.config/manman/token\n  \
                  manman host add game-host-1 --output enrollment.secret\n  \
                  manman game create minecraft\n  \
                  manman config create --game 1 --name vanilla --program java --arg -jar --arg server.jar --port 25565 --stop-command stop\n  \
                  manman host list\n  \
                  manman deploy --server 1 --config 1 --port 25565\n  \
                  manman session start 1\n  \
                  manman session input 1 'say hello'\n  \
                  manman logs 1 -f\n  \
                  manman session stop 1\n\n\
                  Where to connect comes from a context (`manman context add`, kept in \
                  ~/.config/manman/config.toml or MANMAN_CONFIG; --context or MANMAN_CONTEXT \
                  picks one, else the current one), and the environment overrides it: \
                  API_ADDRESS (default 127.0.0.1:50051) for everything but migrate; the API token from MANMAN_TOKEN, or the file \
                  MANMAN_TOKEN_FILE (mode 0600; default ~/.config/manman/token); GRPC_TLS_CA, \
                  the CA of the API's and log processor's certificates when they serve TLS; \
                  DATABASE_URL (or DB_HOST/DB_PORT/DB_USER/DB_PASSWORD/DB_NAME) for migrate and \
                  `token create --bootstrap`.\n\n\
                  Exit codes: 0 ok, 1 failed, 2 usage, 3 migrations pending (migrate --status), \
                  4 not found, 5 conflict (exists already, port taken, session live), \
                  65 invalid argument, 69 service unavailable, 73 cannot write a file, \
                  74 cannot write the output, \
                  77 not allowed (no valid token, or its role is too weak), 78 bad configuration."
)]
pub struct Cli {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// The API to talk to [default: the context's, else 127.0.0.1:50051].
    #[arg(long, global = true, env = "API_ADDRESS")]
    pub api: Option<String>,
    /// The context to use (see `manman context list`) instead of the current one.
    #[arg(long, global = true, env = "MANMAN_CONTEXT")]
    pub context: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Apply pending database migrations (safe to run twice).
    Migrate {
        /// Only show which migrations are applied; exit 3 if any is pending.
        #[arg(long)]
        status: bool,
    },
    /// Hosts (machines running manman-host).
    #[command(subcommand)]
    Host(HostCmd),
    /// API tokens: who may use ManMan, with which role.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Games (kinds of game server).
    #[command(subcommand)]
    Game(GameCmd),
    /// Game configs: how to run a game.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Place a config on a host with its port bindings (a deployment); deploying it there
    /// again replaces the bindings (and says so). `manman deploy list` lists deployments.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Deploy {
        #[command(subcommand)]
        list: Option<DeployCmd>,
        /// Host id (see `manman host list`); without it, the online host with the most free
        /// memory that fits the config's --memory-mb.
        #[arg(long)]
        server: Option<i64>,
        /// Config id (see `manman config list`).
        #[arg(long, required = true)]
        config: Option<i64>,
        /// HOST[:CONTAINER][/PROTOCOL], repeatable, e.g. --port 25565 --port 19132/udp.
        /// `auto` binds every port of the config to a free port of the host's range
        /// (HOST_PORT_RANGE, 7000-8000); `auto:25565` just that one.
        #[arg(long = "port")]
        ports: Vec<String>,
    },
    /// Sessions: runs of a deployment.
    #[command(subcommand)]
    Session(SessionCmd),
    /// A session's console: the lines still buffered live, `-f` to follow, or archived
    /// lines with --since/--until.
    Logs {
        /// Session id (see `manman session list`).
        session: i64,
        /// Keep streaming new lines (resumes after a reconnect without repeats).
        #[arg(short, long, conflicts_with_all = ["since", "until"])]
        follow: bool,
        /// Archived lines from this time: RFC 3339 (2026-11-23T18:00:00Z) or an age (10m, 2h, 1d).
        #[arg(long)]
        since: Option<String>,
        /// Archived lines before this time (same forms as --since).
        #[arg(long)]
        until: Option<String>,
        /// Most archived lines to print (0: every line in the range).
        #[arg(long, default_value_t = 10_000)]
        limit: i64,
        /// The log processor serving live lines [default: the context's, else 127.0.0.1:50053].
        #[arg(long, env = "LOG_PROCESSOR_ADDRESS")]
        log_processor: Option<String>,
        /// Print control characters as the game sent them (by default they are escaped when
        /// writing to a terminal, so a game cannot drive your terminal).
        #[arg(long)]
        raw: bool,
    },
    /// Backups of deployments' files to S3, and restores.
    #[command(subcommand)]
    Backup(super::backups::BackupCmd),
    /// A deployment's chores on a cron expression: restarts, backups, console commands.
    #[command(subcommand)]
    Schedule(super::schedules::ScheduleCmd),
    /// Hosts and live sessions at a glance.
    Status,
    /// Named control planes (addresses, CA, token) in ~/.config/manman/config.toml.
    #[command(subcommand)]
    Context(ContextCmd),
    /// Check the chain to the control plane (context, CA, API, its certificate, token, log
    /// processor) one link at a time and say what to fix. Exit 1 when a link fails.
    Doctor,
    /// Print a shell completion script: `source <(manman completions bash)`, or save it where
    /// your shell loads completions (the Debian package installs them).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (manman.1 and one per subcommand) into DIR.
    #[command(hide = true)]
    ManPages { dir: std::path::PathBuf },
}

#[derive(Subcommand)]
pub enum ContextCmd {
    /// Every context; `*` marks the current one.
    List,
    /// Make NAME the current context (used when --context and MANMAN_CONTEXT are unset).
    Use { name: String },
    /// Save a context (the first one saved becomes current).
    Add {
        name: String,
        /// The API's address, HOST:PORT.
        #[arg(long)]
        api: String,
        /// The log processor's address, HOST:PORT.
        #[arg(long)]
        log_processor: Option<String>,
        /// The CA file of the API's and log processor's certificates (TLS when given).
        #[arg(long)]
        ca: Option<std::path::PathBuf>,
        /// A file holding the API token (mode 0600).
        #[arg(long, conflicts_with = "token_stdin")]
        token_file: Option<std::path::PathBuf>,
        /// Read the API token from stdin and keep it in the config file (0600).
        #[arg(long)]
        token_stdin: bool,
        /// Make it the current context.
        #[arg(long = "use")]
        make_current: bool,
        /// Overwrite a context of that name.
        #[arg(long)]
        replace: bool,
    },
    /// Forget a context.
    Remove { name: String },
    /// The settings a command would use now (the chosen context, or NAME), and where each
    /// comes from: environment, context or default (a flag given with a command beats all three).
    Show { name: Option<String> },
}

#[derive(Subcommand)]
pub enum DeployCmd {
    /// Delete a deployment (history stays readable). Refused while its session is live,
    /// unless --force (stops it first).
    Delete(DeleteArgs),
    /// List deployments (all, or of one host and/or one config).
    List {
        /// Only this host's.
        #[arg(long)]
        server: Option<i64>,
        /// Only this config's.
        #[arg(long)]
        config: Option<i64>,
    },
}

#[derive(Subcommand)]
pub enum HostCmd {
    /// List hosts with their status and last heartbeat.
    List,
    /// One host: its status, last heartbeat, deployments and live sessions.
    Show { id: i64 },
    /// Add a host (admin) and issue its one-time enrollment secret: the agent started with
    /// SERVER_NAME=NAME and HOST_ENROLLMENT_SECRET (or _FILE) enrolls once and keeps its own
    /// credential in HOST_DATA_DIR. Another agent with the same name is then refused.
    Add {
        name: String,
        /// Issue a new secret for a host that enrolled already (a reinstalled machine); its
        /// old credential stops working when the new agent enrolls.
        #[arg(long)]
        reissue: bool,
        /// Write the secret to this file (mode 0600) instead of printing it.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
    /// End a host's credential (admin): its agent is refused from its next call and exits,
    /// naming `host add --reissue`. Its games keep running under their keepers until a new
    /// agent (enrolled again) or an operator stops them.
    Revoke { id: i64 },
    /// Stop every game on a host gracefully (each session's console stop command, its stop
    /// timeout, then signals) and wait until none is left, showing progress. Exit 0 when the
    /// host runs nothing, 1 if sessions are still live at --timeout.
    Drain {
        id: i64,
        /// Seconds to wait for the sessions to end.
        #[arg(long, default_value_t = 330)]
        timeout: u64,
    },
    /// A host's CPU, memory and players over time, summed over its sessions.
    History {
        id: i64,
        #[command(flatten)]
        window: super::usage::WindowArgs,
    },
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create a token (admin). Its secret is shown once; only its hash is stored.
    Create {
        name: String,
        /// admin (hosts, configs, deployments, tokens), operator (start, stop, input, logs)
        /// or viewer (read, logs).
        #[arg(long)]
        role: String,
        /// Expire after this many days (default: never).
        #[arg(long)]
        expires_in_days: Option<i64>,
        /// Write the secret to this file (mode 0600) instead of printing it.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
        /// Create it directly in the database (DATABASE_URL) instead of through the API:
        /// the way to the first admin token.
        #[arg(long)]
        bootstrap: bool,
    },
    /// List tokens (admin): names, roles, last use; never secrets.
    List,
    /// Revoke a token (admin); it stops working within 5 seconds.
    Revoke { name: String },
}

#[derive(Subcommand)]
pub enum GameCmd {
    /// Create a game.
    Create { name: String },
    /// List games.
    List,
    /// Give a game a new name (its configs, deployments and history stay with it).
    Rename { id: i64, name: String },
    /// Delete a game with its configs and deployments (history stays readable). Refused
    /// while one of its sessions is live, unless --force (stops them first).
    Delete(DeleteArgs),
}

#[derive(Args)]
pub struct DeleteArgs {
    pub id: i64,
    /// Stop its live sessions first (console stop command, stop timeout), then delete.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args)]
pub struct ConfigUpdate {
    /// Config id (see `manman config list`).
    pub id: i64,
    #[command(flatten)]
    pub config: ConfigCreate,
}

impl ConfigCreate {
    /// The config the flags describe; refuses a malformed `--env`, `--secret-env` or `--port`.
    pub fn into_config(self) -> Result<pb::GameConfig, String> {
        let mut config = pb::GameConfig {
            game_id: self.game,
            name: self.name,
            program: self.program,
            args: self.args,
            working_dir: self.workdir.unwrap_or_default(),
            stop_signal: self.stop_signal.unwrap_or_default(),
            stop_command: self.stop_command.unwrap_or_default(),
            stop_timeout_seconds: self.stop_timeout,
            restart_policy: self.restart.unwrap_or_default(),
            start_duration_ms: self.start_duration_ms,
            backoff_initial_ms: self.backoff_ms,
            backoff_max_ms: self.backoff_max_ms,
            retry_limit: self.retry_limit,
            reset_after_seconds: self.reset_after,
            readiness: (self.ready_line.is_some() || self.ready_port.is_some()).then(|| {
                pb::ReadinessProbe {
                    console_pattern: self.ready_line.unwrap_or_default(),
                    tcp_port: self.ready_port.unwrap_or_default(),
                    timeout_seconds: self.ready_timeout,
                }
            }),
            liveness: (self.live_port.is_some() || self.live_command.is_some()).then(|| {
                pb::LivenessProbe {
                    tcp_port: self.live_port.unwrap_or_default(),
                    command: self.live_command.unwrap_or_default(),
                    reply_pattern: self.live_reply.unwrap_or_default(),
                    interval_seconds: self.live_interval,
                    timeout_seconds: self.live_timeout,
                    failure_threshold: self.live_failures,
                }
            }),
            memory_estimate_mb: self.memory_mb.unwrap_or_default(),
            run_as: self.run_as.unwrap_or_default(),
            max_open_files: self.max_open_files,
            max_processes: self.max_processes,
            backup: Some(self.backup.into_policy()),
            limits: Some(self.limits.into_limits()),
            players: self.players.into_query()?,
            ..Default::default()
        };
        for (flag, list, secret) in [
            ("--env", self.env, false),
            ("--secret-env", self.secret_env, true),
        ] {
            for kv in list {
                let (k, v) = kv.split_once('=').ok_or_else(|| {
                    // A secret without its `=` may be all value (`RCON:hunter2`): not echoed.
                    let shown = if secret {
                        String::new()
                    } else {
                        format!("; got {kv:?}")
                    };
                    format!("invalid {flag} value (expected KEY=VALUE{shown})")
                })?;
                config.env.insert(k.into(), v.into());
                if secret {
                    config.secret_env_keys.push(k.into());
                }
            }
        }
        for p in &self.ports {
            let (port, protocol) = crate::wire::ports::parse_port(p)?;
            config.ports.push(pb::PortDefinition { port, protocol });
        }
        Ok(config)
    }
}

#[derive(Args)]
pub struct ConfigCreate {
    #[arg(long)]
    pub game: i64,
    #[arg(long)]
    pub name: String,
    /// The program to run (no shell; use --program /bin/sh --arg -c --arg '...' for one).
    #[arg(long)]
    pub program: String,
    /// An argument, repeatable, in order.
    #[arg(long = "arg", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// KEY=VALUE, repeatable.
    #[arg(long = "env")]
    pub env: Vec<String>,
    /// KEY=VALUE whose value is secret (an RCON password): given to the game, shown to no
    /// one (`***`); repeatable.
    #[arg(long = "secret-env")]
    pub secret_env: Vec<String>,
    /// Working directory, relative to the deployment's directory on the host.
    #[arg(long)]
    pub workdir: Option<String>,
    /// Signal sent to the game's process group to stop it (name or number) [default: SIGTERM].
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Console command that stops the game cleanly (e.g. `stop`), sent first.
    #[arg(long)]
    pub stop_command: Option<String>,
    /// Seconds from the start of a stop to SIGKILL, 1-300 [default: 30]. With a stop command,
    /// the game gets the first 3/4 of it to exit by itself, then the stop signal; without one,
    /// the signal goes at once. SIGKILL comes at this timeout either way.
    #[arg(long)]
    pub stop_timeout: Option<i32>,
    /// never, on-failure or always [default: never]. A stop you ask for is never restarted.
    #[arg(long)]
    pub restart: Option<String>,
    /// How long the process must stay up to count as running; an earlier exit is a failed
    /// start [default: 1000].
    #[arg(long)]
    pub start_duration_ms: Option<i32>,
    /// First delay before a restart, in ms (at least 100) [default: 1000].
    #[arg(long)]
    pub backoff_ms: Option<i32>,
    /// Longest delay between restarts, in ms; each quick exit doubles the delay up to it
    /// [default: 60000].
    #[arg(long)]
    pub backoff_max_ms: Option<i32>,
    /// Consecutive failed runs before giving up (the session then ends crashed) [default: 5].
    #[arg(long)]
    pub retry_limit: Option<i32>,
    /// A run lasting this many seconds resets the failure count [default: 600].
    #[arg(long)]
    pub reset_after: Option<i32>,
    /// PORT[/PROTOCOL] the game listens on, repeatable.
    #[arg(long = "port")]
    pub ports: Vec<String>,
    /// Readiness: the session is running once a console line matches this regex (e.g.
    /// 'Done \(' for Minecraft) instead of after --start-duration-ms.
    #[arg(long, conflicts_with = "ready_port", help_heading = "Probes")]
    pub ready_line: Option<String>,
    /// Readiness: the session is running once this port accepts TCP on 127.0.0.1 (a --port of
    /// the config means its deployment's host port).
    #[arg(long, help_heading = "Probes")]
    pub ready_port: Option<i32>,
    /// Seconds to become ready; later, the run fails with that reason [default: 120].
    #[arg(long, help_heading = "Probes")]
    pub ready_timeout: Option<i32>,
    /// Liveness: this port must accept TCP on 127.0.0.1 at every check.
    #[arg(long, conflicts_with = "live_command", help_heading = "Probes")]
    pub live_port: Option<i32>,
    /// Liveness: this console command (e.g. `list`) must be answered by a line matching
    /// --live-reply at every check.
    #[arg(long, requires = "live_reply", help_heading = "Probes")]
    pub live_command: Option<String>,
    /// Liveness: the regex the reply to --live-command must match (e.g. 'players online').
    #[arg(long, help_heading = "Probes")]
    pub live_reply: Option<String>,
    /// Liveness: seconds between checks [default: 30].
    #[arg(long, help_heading = "Probes")]
    pub live_interval: Option<i32>,
    /// Liveness: seconds a check may take [default: 5].
    #[arg(long, help_heading = "Probes")]
    pub live_timeout: Option<i32>,
    /// Liveness: failed checks in a row that stop the server as a failed run (then the
    /// restart policy decides) [default: 3].
    #[arg(long, help_heading = "Probes")]
    pub live_failures: Option<i32>,
    /// Memory a session needs, in MiB: `deploy` without --server picks a host with room.
    #[arg(long)]
    pub memory_mb: Option<i32>,
    /// USER or USER:GROUP the game runs as on its host (the agent needs CAP_SETUID,
    /// CAP_SETGID and CAP_CHOWN: see the README) [default: the agent's user].
    #[arg(long)]
    pub run_as: Option<String>,
    /// The game's limit of open files (RLIMIT_NOFILE).
    #[arg(long)]
    pub max_open_files: Option<i32>,
    /// The game's limit of processes (RLIMIT_NPROC, counted per user: use with --run-as).
    #[arg(long)]
    pub max_processes: Option<i32>,
    #[command(flatten)]
    pub limits: super::limits::LimitFlags,
    #[command(flatten)]
    pub players: super::players::PlayerFlags,
    #[command(flatten)]
    pub backup: super::backups::BackupFlags,
}

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Create a config for a game.
    Create(Box<ConfigCreate>),
    /// Replace a config's whole definition (the same flags as create; --game must be its
    /// game). Each deployment's next session runs it; `manman session restart` applies it now.
    Update(Box<ConfigUpdate>),
    /// Delete a config with its deployments (history stays readable). Refused while one of
    /// its sessions is live, unless --force (stops them first).
    Delete(DeleteArgs),
    /// List configs (of one game with --game).
    List {
        #[arg(long)]
        game: Option<i64>,
    },
    /// Show one config.
    Show { id: i64 },
}

#[derive(Subcommand)]
pub enum SessionCmd {
    /// Start a session of a deployment. Refused if it already has a live one, unless
    /// --force, which first ends that one as `stop --force` does.
    Start {
        deployment: i64,
        #[arg(long)]
        force: bool,
    },
    /// Stop a session: its console stop command, then its stop signal, then SIGKILL at the
    /// config's stop timeout.
    Stop {
        id: i64,
        /// SIGKILL at once.
        #[arg(long)]
        kill: bool,
        /// End the session (`lost`) now even if its host does not answer (a host that is
        /// gone); the host stops the game if it comes back.
        #[arg(long, conflicts_with = "when_empty")]
        force: bool,
        #[command(flatten)]
        when: super::maintenance::WhenEmptyArgs,
    },
    /// Stop a live session the usual way (console stop command, its stop timeout), wait
    /// until it has ended, and start a new session of the same deployment, with its config
    /// as it is now. A session that has ended already is just started again.
    Restart {
        id: i64,
        /// Give up (exit 1) if the session has not ended after this many seconds.
        #[arg(long, default_value_t = 330)]
        timeout: u64,
        #[command(flatten)]
        when: super::maintenance::WhenEmptyArgs,
    },
    /// Cancel a session's pending `--when-empty` restart or stop.
    CancelMaintenance { id: i64 },
    /// A session's CPU, memory and players over time (one row a minute).
    History {
        id: i64,
        #[command(flatten)]
        window: super::usage::WindowArgs,
    },
    /// List sessions, newest first.
    List(SessionListArgs),
    /// Show one session.
    Show { id: i64 },
    /// Send a line to the game server's console (stdin).
    Input { id: i64, text: String },
    /// Watch and type into a session's console: the recent lines, then live ones (stderr and
    /// the host's lines marked), an input line with history (arrow keys), a status line;
    /// Ctrl-] detaches. Line by line when stdin or stdout is not a terminal (each stdin line
    /// is sent).
    Attach {
        id: i64,
        /// The log processor serving live lines [default: the context's, else 127.0.0.1:50053].
        #[arg(long, env = "LOG_PROCESSOR_ADDRESS")]
        log_processor: Option<String>,
    },
}

/// `manman session list`'s filters and paging.
#[derive(Args, Debug)]
pub struct SessionListArgs {
    #[arg(long)]
    server: Option<i64>,
    #[arg(long)]
    deployment: Option<i64>,
    /// Comma-separated statuses, e.g. running,crashed.
    #[arg(long)]
    status: Option<String>,
    /// Only pending, starting, running and stopping sessions.
    #[arg(long)]
    live: bool,
    #[arg(long, default_value_t = 50)]
    limit: i32,
    /// Skip this many (slow on long histories; prefer --after).
    #[arg(long, default_value_t = 0, conflicts_with = "after")]
    offset: i32,
    /// Sessions older than this id: the next page after the one that ended at it.
    #[arg(long)]
    after: Option<i64>,
}

impl SessionListArgs {
    pub fn into_request(self) -> pb::ListSessionsRequest {
        pb::ListSessionsRequest {
            server_id: self.server.unwrap_or(0),
            sgc_id: self.deployment.unwrap_or(0),
            status: self.status.unwrap_or_default(),
            live_only: self.live,
            limit: self.limit,
            offset: self.offset,
            page_after: self.after.unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("manman").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn config_flags_become_the_request() {
        let cli = parse(&[
            "config",
            "create",
            "--game",
            "3",
            "--name",
            "vanilla",
            "--program",
            "java",
            "--arg",
            "-Xmx2G",
            "--arg",
            "-jar",
            "--stop-command",
            "stop",
            "--stop-timeout",
            "60",
            "--ready-line",
            "Done \\(",
            "--live-command",
            "list",
            "--live-reply",
            "players online",
            "--run-as",
            "minecraft",
            "--memory-mb",
            "2048",
        ]);
        let Command::Config(ConfigCmd::Create(c)) = cli.command else {
            panic!("not config create");
        };
        let config = c.into_config().unwrap();
        assert_eq!((config.game_id, config.name.as_str()), (3, "vanilla"));
        assert_eq!(config.args, ["-Xmx2G", "-jar"]);
        assert_eq!(config.stop_command, "stop");
        assert_eq!(config.stop_timeout_seconds, Some(60));
        assert_eq!(config.readiness.unwrap().console_pattern, "Done \\(");
        let live = config.liveness.unwrap();
        assert_eq!(
            (live.command.as_str(), live.reply_pattern.as_str()),
            ("list", "players online")
        );
        assert_eq!(config.run_as, "minecraft");
        assert_eq!(config.memory_estimate_mb, 2048);
        // Unset flags stay unset: the API fills in its documented defaults.
        assert_eq!(config.start_duration_ms, None);
        assert_eq!(config.retry_limit, None);
    }

    #[test]
    fn env_and_port_flags_become_the_request_and_bad_ones_are_refused() {
        let create = |extra: &[&str]| {
            let mut args = vec![
                "config",
                "create",
                "--game",
                "1",
                "--name",
                "n",
                "--program",
                "p",
            ];
            args.extend_from_slice(extra);
            let Command::Config(ConfigCmd::Create(c)) = parse(&args).command else {
                panic!("not config create");
            };
            c.into_config()
        };
        let config = create(&[
            "--env",
            "A=1=2",
            "--secret-env",
            "RCON=hunter2",
            "--port",
            "25565",
            "--port",
            "19132/udp",
        ])
        .unwrap();
        assert_eq!(config.env["A"], "1=2");
        assert_eq!(config.env["RCON"], "hunter2");
        assert_eq!(config.secret_env_keys, ["RCON"]);
        let ports: Vec<_> = config
            .ports
            .iter()
            .map(|p| (p.port, p.protocol.as_str()))
            .collect();
        assert_eq!(ports, [(25565, "tcp"), (19132, "udp")]);
        // A malformed secret is never echoed (it may be all value); a plain one is.
        let err = create(&["--secret-env", "RCON:hunter2"]).unwrap_err();
        assert!(
            err.contains("--secret-env") && !err.contains("hunter2"),
            "{err}"
        );
        let err = create(&["--env", "MODE:fast"]).unwrap_err();
        assert!(err.contains("MODE:fast"), "{err}");
        assert!(create(&["--port", "minecraft"])
            .unwrap_err()
            .contains("invalid port"));
    }

    #[test]
    fn global_flags_and_subcommands_parse() {
        let cli = parse(&["session", "list", "--live", "--json"]);
        assert!(cli.json);
        assert!(matches!(
            cli.command,
            Command::Session(SessionCmd::List(SessionListArgs { live: true, .. }))
        ));
        assert!(Cli::try_parse_from(["manman", "session", "start"]).is_err());
        assert!(matches!(
            parse(&["host", "revoke", "7"]).command,
            Command::Host(HostCmd::Revoke { id: 7 })
        ));
    }

    #[test]
    fn session_list_flags_become_the_request() {
        let Command::Session(SessionCmd::List(args)) = parse(&[
            "session",
            "list",
            "--server",
            "2",
            "--deployment",
            "9",
            "--status",
            "running,crashed",
            "--limit",
            "10",
            "--after",
            "40",
        ])
        .command
        else {
            panic!("not session list");
        };
        let req = args.into_request();
        assert_eq!((req.server_id, req.sgc_id, req.page_after), (2, 9, 40));
        assert_eq!(
            (req.status.as_str(), req.limit, req.offset),
            ("running,crashed", 10, 0)
        );
        assert!(!req.live_only);
        // Unset filters mean "all", as the API reads 0 and "".
        let Command::Session(SessionCmd::List(args)) = parse(&["session", "list"]).command else {
            panic!("not session list");
        };
        let req = args.into_request();
        assert_eq!((req.server_id, req.sgc_id, req.limit), (0, 0, 50));
        assert!(Cli::try_parse_from([
            "manman", "session", "list", "--offset", "5", "--after", "3"
        ])
        .is_err());
    }
}
