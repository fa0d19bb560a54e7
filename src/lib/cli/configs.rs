//! `manman config create|update|list|show`: how a game is run (command, env, ports, probes).

use serde_json::Value;

use super::output::{print, table};
use super::shared::{all_pages, Ctx, Outcome};
use crate::proto::v1 as pb;
use crate::views::config_json;

pub fn config_create(ctx: &Ctx, config: pb::GameConfig) -> Outcome {
    let request = pb::CreateGameConfigRequest {
        config: Some(config),
    };
    let saved = ctx
        .client
        .create_game_config_opt(&request, ctx.opt())?
        .config;
    show_saved(ctx, saved, |c| {
        format!(
            "created config {} ({}) for game {}",
            c.config_id, c.name, c.game_id
        )
    });
    Ok(())
}

pub fn config_update(ctx: &Ctx, id: i64, config: pb::GameConfig) -> Outcome {
    let request = pb::UpdateGameConfigRequest {
        config_id: id,
        config: Some(config),
    };
    let saved = ctx
        .client
        .update_game_config_opt(&request, ctx.opt())?
        .config;
    show_saved(ctx, saved, |c| {
        format!(
            "updated config {} ({}) of game {}: the next session of each deployment runs it \
             (`manman session restart` for one now)",
            c.config_id, c.name, c.game_id
        )
    });
    Ok(())
}

/// The config as the API saved it: JSON, or the `line` it makes for people.
fn show_saved(
    ctx: &Ctx,
    saved: Option<pb::GameConfig>,
    line: impl FnOnce(&pb::GameConfig) -> String,
) {
    let c = saved.unwrap_or_default();
    if ctx.json {
        println!("{}", config_json(&c));
    } else {
        println!("{}", line(&c));
    }
}

pub fn config_list(ctx: &Ctx, game: Option<i64>) -> Outcome {
    let configs = all_pages(|page_after| {
        let r = ctx.client.list_game_configs_opt(
            &pb::ListGameConfigsRequest {
                game_id: game.unwrap_or(0),
                page_after,
                page_size: 0,
            },
            ctx.opt(),
        )?;
        Ok((r.configs, r.next_page_after))
    })?;
    let rows = configs
        .iter()
        .map(|c| {
            vec![
                c.config_id.to_string(),
                c.game_id.to_string(),
                c.name.clone(),
                format!("{} {}", c.program, c.args.join(" "))
                    .trim()
                    .to_string(),
                c.restart_policy.clone(),
            ]
        })
        .collect();
    print(
        ctx,
        configs.iter().map(config_json).collect(),
        &["ID", "GAME", "NAME", "COMMAND", "RESTART"],
        rows,
    );
    Ok(())
}

/// A config's probe in words, for `config show`.
fn probe_words(c: &pb::GameConfig, which: &str) -> String {
    let secs = |v: Option<i32>| v.map_or("-".into(), |s| format!("{s} s"));
    match (which, &c.readiness, &c.liveness) {
        ("readiness", Some(r), _) => {
            let check = match r.tcp_port {
                0 => format!("console line matching {:?}", r.console_pattern),
                port => format!("127.0.0.1:{port} accepting"),
            };
            format!("{check}, within {}", secs(r.timeout_seconds))
        }
        ("liveness", _, Some(l)) => {
            let check = match l.tcp_port {
                0 => format!("{:?} answered by {:?}", l.command, l.reply_pattern),
                port => format!("127.0.0.1:{port} accepting"),
            };
            format!(
                "{check}, every {} within {}; {} failures in a row stop it",
                secs(l.interval_seconds),
                secs(l.timeout_seconds),
                l.failure_threshold.unwrap_or_default()
            )
        }
        _ => "-".into(),
    }
}

pub fn config_show(ctx: &Ctx, id: i64) -> Outcome {
    let r = ctx
        .client
        .get_game_config_opt(&pb::GetGameConfigRequest { config_id: id }, ctx.opt())?;
    let config = r.config.unwrap_or_default();
    let c = config_json(&config);
    if ctx.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&c).expect("serialisable")
        );
    } else if let Value::Object(fields) = c {
        let rows: Vec<Vec<String>> = fields
            .into_iter()
            .map(|(k, v)| {
                let value = match (k.as_str(), v) {
                    ("readiness", Value::Null) => "start duration".into(),
                    ("liveness", Value::Null) => "none".into(),
                    ("readiness" | "liveness", _) => probe_words(&config, &k),
                    (_, Value::String(s)) => s,
                    (_, other) => other.to_string(),
                };
                vec![k, value]
            })
            .collect();
        print!("{}", table(&["FIELD", "VALUE"], &rows));
    }
    Ok(())
}
