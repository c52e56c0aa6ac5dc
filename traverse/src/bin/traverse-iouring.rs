//! `traverse-iouring PATH...`: traverse with the io_uring engine.

fn main() {
    std::process::exit(traverse::cli::main_with(Some(traverse::Engine::Uring)));
}
