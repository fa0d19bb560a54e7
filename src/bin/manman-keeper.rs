//! manman-keeper: holds one game server for the host agent (started by manman-host, not by
//! hand): `manman-keeper <keeper-dir>`.

fn main() {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: manman-keeper <keeper-dir>   (started by manman-host)");
        std::process::exit(64);
    };
    manman::telemetry::init();
    std::process::exit(manman::keeper::server::run(std::path::Path::new(&dir)));
}
