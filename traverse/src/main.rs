//! `traverse [--engine sync|tokio|tokio-per-entry|uring] [--json] PATH...`

fn main() {
    std::process::exit(traverse::cli::main_with(None));
}
