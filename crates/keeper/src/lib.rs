//! `manman-keeper`: one small process per session that holds the game, its console pipes and
//! its exit status, so the host agent can restart (upgrade, crash) without stopping a game,
//! the way conmon holds a container. The binary's `main` is [`main`]; the agent uses
//! [`protocol`] to talk to it.

mod buffer;
pub mod protocol;
mod server;

pub use server::run;

/// The keeper's `main`: `manman-keeper <keeper-dir>`. Returns the exit code.
pub fn main() -> i32 {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: manman-keeper <keeper-dir>   (started by manman-host)");
        return 64;
    };
    manman_log_line::StderrLogger::init_from_env();
    run(std::path::Path::new(&dir))
}
