//! manman: the operator CLI (its arguments and commands live in `manman::cli`).

fn main() {
    let code = manman::cli::run::run();
    // Exit now: the answer is out, and dropping the gRPC client would wait for its
    // completion-queue threads to wind down (up to a second, now and then).
    std::process::exit(code);
}
