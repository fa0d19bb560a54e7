//! The `manman` CLI's entry: parse, connect, dispatch each subcommand to its implementation,
//! and report an error as a line (or JSON with `--json`) with its exit code.

use std::time::Duration;

use clap::Parser;

use super::args::*;
use super::contexts::{DEFAULT_API, DEFAULT_LOG_PROCESSOR};
use super::delete::{delete, Deletable};
use super::shared::{Ctx, Exit, Failure, Outcome};
use super::{configs, deployments, games, hosts, sessions, status, tokens};
use crate::grpc::Endpoint;

/// Parses the arguments, runs the command, and returns the exit code (documented in `--help`).
pub fn run() -> i32 {
    // A closed pipe (`manman logs 7 | head -1`) ends the command quietly, as for any Unix
    // tool, instead of a panic in `println!`. gRPC's sockets send with MSG_NOSIGNAL.
    // SAFETY: setting a signal's disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    if let Command::Migrate { status } = cli.command {
        return super::migrate::run(status, cli.json);
    }
    match &cli.command {
        Command::Completions { shell } => {
            return finish(cli.json, super::docs::completions(*shell));
        }
        Command::ManPages { dir } => return finish(cli.json, super::docs::man_pages(dir)),
        _ => {}
    }
    if let Command::Context(cmd) = cli.command {
        return finish(cli.json, run_context(cmd, cli.context.as_deref(), cli.json));
    }
    // The chosen context under the environment; clap has read API_ADDRESS into `cli.api`.
    let (env, context) = match super::contexts::resolve(cli.context.as_deref()) {
        Ok(resolved) => resolved,
        Err(e) => return finish(cli.json, Err(e.into())),
    };
    let api_address = cli
        .api
        .clone()
        .or_else(|| env.get("API_ADDRESS").map(str::to_string))
        .unwrap_or_else(|| DEFAULT_API.to_string());
    if let Command::Doctor = cli.command {
        let config_file = super::contexts::config_path(&env)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "no config file".into());
        let log_processor = env.string("LOG_PROCESSOR_ADDRESS", DEFAULT_LOG_PROCESSOR);
        let checks = super::doctor::diagnose(&super::doctor::Target {
            env: &env,
            context: context.as_deref(),
            config_file: &config_file,
            api: &api_address,
            log_processor: &log_processor,
        });
        return finish(cli.json, super::doctor::report(&checks, cli.json));
    }
    let connection = crate::grpc::client_token(&env)
        .and_then(|token| Ok((token, Endpoint::at(&api_address, &env)?)));
    let (token, api) = match connection {
        Ok(c) => c,
        Err(e) => return finish(cli.json, Err(Failure::new(Exit::Config, e.to_string()))),
    };
    let json = cli.json;
    let ctx = Ctx::new(&api, token, json);
    // The log processor: a flag (or LOG_PROCESSOR_ADDRESS), the context's, the default; TLS
    // as for the API.
    let log_endpoint = |flag: Option<String>| Endpoint {
        address: flag
            .or_else(|| env.get("LOG_PROCESSOR_ADDRESS").map(str::to_string))
            .unwrap_or_else(|| DEFAULT_LOG_PROCESSOR.to_string()),
        ..api.clone()
    };
    let result = match cli.command {
        Command::Migrate { .. }
        | Command::Context(_)
        | Command::Completions { .. }
        | Command::ManPages { .. }
        | Command::Doctor => unreachable!(),
        Command::Host(HostCmd::List) => hosts::host_list(&ctx),
        Command::Host(HostCmd::Show { id }) => hosts::host_show(&ctx, id),
        Command::Host(HostCmd::Add {
            name,
            reissue,
            output,
        }) => tokens::host_add(&ctx, &name, reissue, output.as_deref()),
        Command::Token(TokenCmd::Create {
            name,
            role,
            expires_in_days,
            output,
            bootstrap,
        }) => {
            let create = tokens::TokenCreate {
                name: &name,
                role: &role,
                expires_in_seconds: expires_in_days.unwrap_or(0).saturating_mul(86_400),
                output: output.as_deref(),
            };
            if bootstrap {
                tokens::token_bootstrap(&ctx, &create)
            } else {
                tokens::token_create(&ctx, &create)
            }
        }
        Command::Host(HostCmd::Revoke { id }) => tokens::host_revoke(&ctx, id),
        Command::Token(TokenCmd::List) => tokens::token_list(&ctx),
        Command::Token(TokenCmd::Revoke { name }) => tokens::token_revoke(&ctx, &name),
        Command::Host(HostCmd::Drain { id, timeout }) => {
            hosts::host_drain(&ctx, id, Duration::from_secs(timeout))
        }
        Command::Game(GameCmd::Create { name }) => games::game_create(&ctx, &name),
        Command::Game(GameCmd::List) => games::game_list(&ctx),
        Command::Game(GameCmd::Rename { id, name }) => games::game_rename(&ctx, id, &name),
        Command::Game(GameCmd::Delete(d)) => delete(&ctx, Deletable::Game, d.id, d.force),
        Command::Config(ConfigCmd::Delete(d)) => delete(&ctx, Deletable::Config, d.id, d.force),
        Command::Deploy {
            list: Some(DeployCmd::Delete(d)),
            ..
        } => delete(&ctx, Deletable::Deployment, d.id, d.force),
        Command::Config(ConfigCmd::Create(c)) => c
            .into_config()
            .map_err(Failure::invalid)
            .and_then(|config| configs::config_create(&ctx, config)),
        Command::Config(ConfigCmd::Update(u)) => {
            let ConfigUpdate { id, config } = *u;
            config
                .into_config()
                .map_err(Failure::invalid)
                .and_then(|config| configs::config_update(&ctx, id, config))
        }
        Command::Config(ConfigCmd::List { game }) => configs::config_list(&ctx, game),
        Command::Config(ConfigCmd::Show { id }) => configs::config_show(&ctx, id),
        Command::Deploy {
            list: Some(DeployCmd::List { server, config }),
            ..
        } => deployments::deploy_list(&ctx, server, config),
        Command::Deploy {
            list: None,
            server,
            config,
            ports,
        } => deployments::deploy(
            &ctx,
            server.unwrap_or(0),
            config.expect("clap requires --config"),
            &ports,
        ),
        Command::Session(SessionCmd::Start { deployment, force }) => {
            sessions::session_start(&ctx, deployment, force)
        }
        Command::Session(SessionCmd::Stop {
            id,
            kill,
            force,
            when,
        }) => match when.when_empty {
            true => super::maintenance::schedule(&ctx, id, "stop", &when),
            false => sessions::session_stop(&ctx, id, kill, force),
        },
        Command::Session(SessionCmd::Restart { id, timeout, when }) => match when.when_empty {
            true => super::maintenance::schedule(&ctx, id, "restart", &when),
            false => sessions::session_restart(&ctx, id, Duration::from_secs(timeout)),
        },
        Command::Session(SessionCmd::CancelMaintenance { id }) => {
            super::maintenance::cancel(&ctx, id)
        }
        Command::Session(SessionCmd::History { id, window }) => {
            super::usage::session_history(&ctx, id, &window)
        }
        Command::Host(HostCmd::History { id, window }) => {
            super::usage::host_history(&ctx, id, &window)
        }
        Command::Session(SessionCmd::List(args)) => {
            sessions::session_list(&ctx, args.into_request())
        }
        Command::Session(SessionCmd::Show { id }) => sessions::session_show(&ctx, id),
        Command::Session(SessionCmd::Attach { id, log_processor }) => {
            super::attach::attach(&ctx, &log_endpoint(log_processor), id)
        }
        Command::Session(SessionCmd::Input { id, text }) => {
            sessions::session_input(&ctx, id, &text)
        }
        Command::Logs {
            session,
            follow,
            since,
            until,
            limit,
            log_processor,
            raw,
        } => super::logs::run(
            &ctx,
            &log_endpoint(log_processor),
            &super::logs::LogsRequest {
                session_id: session,
                follow,
                since,
                until,
                limit,
                json: cli.json,
                raw,
            },
        ),
        Command::Backup(cmd) => super::backups::run(&ctx, cmd),
        Command::Schedule(cmd) => super::schedules::run(&ctx, cmd),
        Command::Status => status::status(&ctx),
    };
    finish(json, result)
}

/// `manman context …`: the config file only, no connection.
fn run_context(cmd: ContextCmd, chosen: Option<&str>, json: bool) -> Outcome {
    use super::contexts::{commands, ContextAdd};
    match cmd {
        ContextCmd::List => commands::list(json),
        ContextCmd::Use { name } => commands::use_context(&name),
        ContextCmd::Remove { name } => commands::remove(&name),
        ContextCmd::Show { name } => commands::show(name.as_deref().or(chosen), json),
        ContextCmd::Add {
            name,
            api,
            log_processor,
            ca,
            token_file,
            token_stdin,
            make_current,
            replace,
        } => commands::add(&ContextAdd {
            name: &name,
            api: &api,
            log_processor: log_processor.as_deref(),
            ca: ca.as_deref(),
            token_file: token_file.as_deref(),
            token_stdin,
            make_current,
            replace,
        }),
    }
}

/// Reports a failure and returns the exit code.
fn finish(json: bool, result: Outcome) -> i32 {
    let code = match result {
        Ok(()) => 0,
        Err(f) => {
            report_error(json, &f.message, f.exit.code());
            f.exit.code()
        }
    };
    use std::io::Write;
    let _ = std::io::stdout().flush();
    code
}

/// An error on stderr: a line for people, or with `--json` an object scripts can read.
fn report_error(json: bool, message: &str, code: i32) {
    if json {
        eprintln!(
            "{}",
            serde_json::json!({"error": message, "exit_code": code})
        );
    } else {
        eprintln!("error: {message}");
    }
}
