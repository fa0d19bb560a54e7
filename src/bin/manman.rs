//! manman: the operator CLI.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "manman",
    version,
    about = "Operate ManMan game servers",
    long_about = "Operate ManMan: migrate the database, and (with manman-api) manage hosts, \
                  games, deployments and sessions.\n\nConfiguration comes from the environment: \
                  DATABASE_URL (or DB_HOST/DB_PORT/DB_USER/DB_PASSWORD/DB_NAME), API_ADDRESS.\n\n\
                  Exit codes: 0 ok, 1 failed, 2 usage, 3 migrations pending (--status), \
                  69 service unavailable, 78 bad configuration."
)]
struct Cli {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending database migrations (safe to run twice).
    ///
    /// Example: DATABASE_URL=postgres://postgres@127.0.0.1/manman manman migrate
    Migrate {
        /// Only show which migrations are applied; exit 3 if any is pending.
        #[arg(long)]
        status: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Migrate { status } => manman::cli::migrate::run(status, cli.json),
    };
    std::process::exit(code);
}
