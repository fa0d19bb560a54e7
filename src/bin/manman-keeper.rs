//! manman-keeper: holds one game server for the host agent (started by manman-host, not by
//! hand): `manman-keeper <keeper-dir>`. All of it is the `manman-keeper` crate, so the binary
//! links none of the agent's gRPC, TLS or database code.

fn main() {
    std::process::exit(manman_keeper::main());
}
