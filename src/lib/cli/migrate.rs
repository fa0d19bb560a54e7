//! `manman migrate [--status]`.

use crate::config::{self, Env};
use crate::db::migrate;

use super::output;
use super::shared::Exit;

/// `manman migrate --status` exits with this when a migration is pending, so scripts can check.
pub const MIGRATIONS_PENDING: i32 = 3;

/// Runs the subcommand; returns the process exit code.
pub fn run(status_only: bool, json: bool) -> i32 {
    let env = Env::from_process();
    let db = match config::database_config(&env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Config.code();
        }
    };
    let target = config::describe_database(&db);
    let mut client = match crate::db::connect_once(&db) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot connect to {target}: {}", String::from(e));
            return Exit::Unavailable.code();
        }
    };
    if !status_only {
        match migrate::run(&mut client) {
            Ok(applied) if !json => {
                for m in &applied {
                    println!("applied {}", m.name);
                }
                println!(
                    "{target}: {} migration(s) applied, schema is up to date",
                    applied.len()
                );
                return 0;
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Failed.code();
            }
        }
    }
    let states = match migrate::status(&mut client) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Failed.code();
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&states).expect("serialisable")
        );
    } else {
        let rows: Vec<Vec<String>> = states
            .iter()
            .map(|s| {
                vec![
                    s.version.to_string(),
                    s.name.to_string(),
                    s.applied_at
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                        .unwrap_or_else(|| "pending".into()),
                ]
            })
            .collect();
        print!("{}", output::table(&["VERSION", "NAME", "APPLIED"], &rows));
    }
    if states.iter().any(|s| s.applied_at.is_none()) {
        MIGRATIONS_PENDING
    } else {
        0
    }
}
