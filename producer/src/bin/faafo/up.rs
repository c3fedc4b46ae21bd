//! `faafo up`: the whole system in one process.

use std::error::Error;
use std::process::ExitCode;

use clap::Args;
use faafo_common::configuration::FaafoConfig;

/// Options of `up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Don't run the producer (only the API and a worker).
    #[arg(long)]
    pub no_producer: bool,
}

/// Runs the API, a worker and the producer until Ctrl-C.
pub async fn run(_config: FaafoConfig, _args: UpArgs) -> Result<ExitCode, Box<dyn Error>> {
    Err("faafo up needs the API, which is not in this build yet".into())
}
