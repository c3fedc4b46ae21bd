//! `faafo-api`: runs faafo's REST API and web page.
//!
//! ```text
//! faafo-api --config-file api.conf          # serve
//! faafo-api check-config --config-file f    # validate, exit 0 or 1
//! faafo-api --print-sample-config           # every option, with its default
//! ```

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use faafo_api::Application;
use faafo_common::configuration::{ConfigArgs, FaafoConfig};
use faafo_common::console;
use faafo_common::shutdown::stop_signal;
use faafo_common::telemetry::{self, TelemetrySettings};

/// faafo's REST API and web page.
#[derive(Debug, Parser)]
#[command(name = "faafo-api", version, about)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    /// Log at debug level (as [DEFAULT] debug = true).
    #[arg(long, global = true)]
    debug: bool,
    /// Print a sample configuration file with every option and its default, and exit.
    #[arg(long)]
    print_sample_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the configuration and exit (0: valid, 1: not), starting nothing.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_sample_config {
        return console::print_and_exit("faafo-api", &FaafoConfig::sample());
    }
    let mut config = match cli.config.load() {
        Ok(config) => config,
        Err(e) => return fail(&e),
    };
    if let Some(Command::CheckConfig) = cli.command {
        return console::print_and_exit("faafo-api", &config.check_summary("faafo-api"));
    }
    config.default.debug |= cli.debug;
    let guard = match telemetry::init(&TelemetrySettings::from_config(&config.default)) {
        Ok(guard) => guard,
        Err(e) => return fail(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    let result = runtime.block_on(async {
        // Listened for before the database is opened and migrated: a stop
        // then (systemd restarting a unit that has just started) waits for
        // the migration to end instead of killing it halfway, which
        // MariaDB, whose DDL commits as it goes, would keep half-applied.
        // A second signal ends it at once (a database that never answers).
        let stop = stop_signal();
        let app = Application::build(&config)
            .await
            .map_err(|e| e.to_string())?;
        app.run_until_stopped(stop)
            .await
            .map_err(|e| format!("serving failed: {e}"))
    });
    // In the log file too; on standard error once.
    let print = match &result {
        Err(e) => guard.log_fatal(e),
        Ok(()) => true,
    };
    // The log lines first, so that the error is the last line.
    faafo_common::runtime::shut_down(runtime);
    drop(guard);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if print => fail(&e),
        Err(_) => ExitCode::FAILURE,
    }
}

/// Prints the one line that says why, and fails.
fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    faafo_common::say!("faafo-api: {error}");
    ExitCode::FAILURE
}
