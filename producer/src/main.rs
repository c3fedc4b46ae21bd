//! faafo-producer: generates fractal tasks and dispatches them (being built; see issue 5).

fn main() {
    eprintln!("faafo-producer is not built yet");
    std::process::exit(2);
}
