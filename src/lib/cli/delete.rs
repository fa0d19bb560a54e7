//! `manman game|config|deploy delete`: one way to delete any of the catalog's nouns.

use serde_json::json;

use super::shared::{Ctx, Outcome};
use crate::proto::v1 as pb;

/// What `delete` removes.
#[derive(Debug, Clone, Copy)]
pub enum Deletable {
    Game,
    Config,
    Deployment,
}

pub fn delete(ctx: &Ctx, what: Deletable, id: i64, force: bool) -> Outcome {
    let req = pb::DeleteRequest { id, force };
    let (noun, reply) = match what {
        Deletable::Game => ("game", ctx.client.delete_game_opt(&req, ctx.opt())?),
        Deletable::Config => (
            "config",
            ctx.client.delete_game_config_opt(&req, ctx.opt())?,
        ),
        Deletable::Deployment => (
            "deployment",
            ctx.client.delete_deployment_opt(&req, ctx.opt())?,
        ),
    };
    if ctx.json {
        println!(
            "{}",
            json!({"deleted": noun, "id": id, "stopped_sessions": reply.stopped_sessions})
        );
    } else if reply.stopped_sessions.is_empty() {
        println!("deleted {noun} {id}");
    } else {
        let ids: Vec<String> = reply.stopped_sessions.iter().map(i64::to_string).collect();
        println!(
            "deleted {noun} {id}; stopping session(s) {} (see `manman session show`)",
            ids.join(", ")
        );
    }
    Ok(())
}
