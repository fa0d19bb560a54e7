//! `manman game create|list|rename`.

use super::output::print;
use super::shared::{all_pages, Ctx, Outcome};
use crate::proto::v1 as pb;
use crate::views::game_json;

pub fn game_create(ctx: &Ctx, name: &str) -> Outcome {
    let r = ctx
        .client
        .create_game_opt(&pb::CreateGameRequest { name: name.into() }, ctx.opt())?;
    show_game(ctx, r.game.unwrap_or_default(), "created");
    Ok(())
}

pub fn game_rename(ctx: &Ctx, id: i64, name: &str) -> Outcome {
    let r = ctx.client.update_game_opt(
        &pb::UpdateGameRequest {
            game_id: id,
            name: name.into(),
        },
        ctx.opt(),
    )?;
    show_game(ctx, r.game.unwrap_or_default(), "renamed");
    Ok(())
}

fn show_game(ctx: &Ctx, g: pb::Game, done: &str) {
    if ctx.json {
        println!("{}", game_json(&g));
    } else {
        println!("{done} game {} ({})", g.game_id, g.name);
    }
}

pub fn game_list(ctx: &Ctx) -> Outcome {
    let games = all_pages(|page_after| {
        let r = ctx.client.list_games_opt(
            &pb::ListGamesRequest {
                page_after,
                page_size: 0,
            },
            ctx.opt(),
        )?;
        Ok((r.games, r.next_page_after))
    })?;
    let rows = games
        .iter()
        .map(|g| vec![g.game_id.to_string(), g.name.clone()])
        .collect();
    print(
        ctx,
        games.iter().map(game_json).collect(),
        &["ID", "NAME"],
        rows,
    );
    Ok(())
}
