//! faafo-api: the REST API and web page (being built; see issue 4).

fn main() {
    eprintln!("faafo-api is not built yet");
    std::process::exit(2);
}
