//! `faafo-producer`: generates tasks every `interval` seconds and dispatches
//! them to the workers until SIGTERM or Ctrl-C (`--one-shot`: one batch).

use std::process::ExitCode;

use clap::Parser;
use faafo_common::configuration::{CommandLineValue, ConfigArgs, FaafoConfig};
use faafo_common::console;
use faafo_common::shutdown::Shutdown;
use faafo_common::telemetry::{self, TelemetryGuard, TelemetrySettings};

/// The faafo producer: generates fractal tasks and has workers render them.
#[derive(Debug, Parser)]
#[command(name = "faafo-producer", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    /// Generate one batch, wait until it is rendered, exit 0 if every task
    /// is done (1 otherwise).
    #[arg(long, global = true)]
    one_shot: bool,
    /// URL of the faafo API (overrides [DEFAULT] endpoint_url).
    #[arg(long, global = true)]
    endpoint_url: Option<String>,
    /// Log at debug level.
    #[arg(long, global = true)]
    debug: bool,
    /// Print a sample configuration file with every option and exit.
    #[arg(long)]
    print_sample_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

/// What to run (default: produce).
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Generate and dispatch tasks (the default).
    Run,
    /// Check the configuration files and exit.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_sample_config {
        return console::print_and_exit("faafo-producer", &FaafoConfig::sample());
    }
    // Declared before the runtime so that it is dropped after it: lines
    // logged while the runtime shuts down are written too.
    let mut logging = None;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            faafo_common::say!("faafo-producer: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli, &mut logging));
    // In the log file too, once logging has started.
    let print = match (&result, &logging) {
        (Err(e), Some(logging)) => logging.log_fatal(e),
        _ => true,
    };
    // The log lines first, so that the error is the last line.
    faafo_common::runtime::shut_down(runtime);
    drop(logging);
    match result {
        Ok(code) => code,
        Err(e) => {
            if print {
                faafo_common::say!("faafo-producer: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(
    cli: Cli,
    logging: &mut Option<TelemetryGuard>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    // The command line wins over the files and the environment.
    let mut config = cli.config.load_with(
        cli.endpoint_url
            .into_iter()
            .map(CommandLineValue::endpoint_url)
            .collect(),
    )?;
    config.require_shared_broker("faafo-producer")?;
    if matches!(cli.command, Some(Command::CheckConfig)) {
        return Ok(console::print_and_exit(
            "faafo-producer",
            &config.check_summary("faafo-producer"),
        ));
    }
    config.default.debug |= cli.debug;
    *logging = Some(telemetry::init(&TelemetrySettings::from_config(
        &config.default,
    ))?);
    let shutdown = Shutdown::new();
    shutdown.on_signal();
    let success = faafo_producer::serve(&config, cli.one_shot, shutdown).await?;
    Ok(if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
