//! `traverse-tokio PATH...`: traverse with the tokio engine.

fn main() {
    std::process::exit(traverse::cli::main_with(Some(traverse::Engine::Tokio)));
}
