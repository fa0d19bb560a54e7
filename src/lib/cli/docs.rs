//! The CLI's documentation generated from its clap tree: shell completions and man pages, so
//! neither drifts from the flags.

use std::path::Path;

use clap::CommandFactory as _;

use super::args::Cli;
use super::shared::{Exit, Failure, Outcome};

/// `manman completions SHELL`: the script on stdout.
pub fn completions(shell: clap_complete::Shell) -> Outcome {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "manman", &mut std::io::stdout());
    Ok(())
}

/// `manman man-pages DIR`: `manman.1`, and `manman-NOUN.1`/`manman-NOUN-VERB.1` for every
/// subcommand (as git's are), written into `dir`.
pub fn man_pages(dir: &Path) -> Outcome {
    let cannot =
        |e: std::io::Error| Failure::new(Exit::CannotWrite, format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(cannot)?;
    let mut written = 0;
    let mut pending = vec![("manman".to_string(), Cli::command())];
    while let Some((name, cmd)) = pending.pop() {
        if cmd.is_hide_set() {
            continue;
        }
        for sub in cmd.get_subcommands() {
            pending.push((format!("{name}-{}", sub.get_name()), sub.clone()));
        }
        let cmd = cmd.name(name.clone());
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd)
            .render(&mut page)
            .map_err(cannot)?;
        std::fs::write(dir.join(format!("{name}.1")), page).map_err(cannot)?;
        written += 1;
    }
    println!("{written} man pages written to {}", dir.display());
    Ok(())
}
