//! `traverse [--engine sync|tokio|uring] [--json] PATH...`

fn main() {
    std::process::exit(traverse::cli::main_with(None));
}
