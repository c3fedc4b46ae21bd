//! `faafo-worker`: the faafo worker.
//!
//! `faafo-worker --config-file worker.conf` serves `process` on topic `tasks`
//! until SIGTERM or Ctrl-C; `faafo-worker render` renders one fractal to a PNG
//! file without any service; `faafo-worker check-config` validates the
//! configuration without starting anything.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use faafo_common::configuration::{ConfigArgs, FaafoConfig};
use faafo_common::console;
use faafo_common::shutdown;
use faafo_common::telemetry::{self, TelemetryGuard, TelemetrySettings};
use faafo_worker::service;
use faafo_worker::{
    CancelToken, FractalOutput, FractalParams, FractalSpec, JuliaRenderer, RenderLimits, encode_png,
};

/// The faafo worker: renders Julia-set fractals.
#[derive(Debug, Parser)]
#[command(name = "faafo-worker", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: ConfigArgs,
    /// Log at debug level.
    #[arg(long, global = true)]
    debug: bool,
    /// Print a sample configuration file with every option and exit.
    #[arg(long)]
    print_sample_config: bool,
}

/// What to run.
#[derive(Debug, Subcommand)]
enum Command {
    /// Serve `process` on the tasks topic (the default).
    Serve,
    /// Render one fractal to a PNG file, no services needed.
    Render(RenderArgs),
    /// Check the configuration files and exit.
    CheckConfig,
}

/// Options of `render`; the defaults are the benchmark view.
#[derive(Debug, Args)]
struct RenderArgs {
    /// Image width in pixels (>= 2).
    #[arg(long, default_value_t = 1024, allow_negative_numbers = true)]
    width: i64,
    /// Image height in pixels (>= 2).
    #[arg(long, default_value_t = 1024, allow_negative_numbers = true)]
    height: i64,
    /// Maximum iterations per pixel (>= 1).
    #[arg(long, default_value_t = 512, allow_negative_numbers = true)]
    iterations: i64,
    /// Left edge of the view.
    #[arg(long, default_value_t = -2.0, allow_negative_numbers = true)]
    xa: f64,
    /// Right edge of the view.
    #[arg(long, default_value_t = 2.0, allow_negative_numbers = true)]
    xb: f64,
    /// Edge of the view in row 0.
    #[arg(long, default_value_t = -1.5, allow_negative_numbers = true)]
    ya: f64,
    /// Edge of the view in the last row.
    #[arg(long, default_value_t = 1.5, allow_negative_numbers = true)]
    yb: f64,
    /// Seed for drawing c by the original's rule (default 0 when c is not given).
    #[arg(long, conflicts_with_all = ["c_re", "c_im"])]
    seed: Option<u64>,
    /// Real part of an explicit c.
    #[arg(long, requires = "c_im", allow_negative_numbers = true)]
    c_re: Option<f64>,
    /// Imaginary part of an explicit c.
    #[arg(long, requires = "c_re", allow_negative_numbers = true)]
    c_im: Option<f64>,
    /// Largest accepted width * height.
    #[arg(long, default_value_t = RenderLimits::DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
    /// Largest accepted iteration count.
    #[arg(long, default_value_t = RenderLimits::DEFAULT_MAX_ITERATIONS)]
    max_iterations: u32,
    /// Output PNG file.
    #[arg(short, long, default_value = "fractal.png")]
    output: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_sample_config {
        return console::print_and_exit("faafo-worker", &FaafoConfig::sample());
    }
    match cli.command.as_ref().unwrap_or(&Command::Serve) {
        Command::Render(args) => match render(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                faafo_common::say!("faafo-worker render: {error}");
                ExitCode::FAILURE
            }
        },
        Command::CheckConfig => match cli.config.load() {
            Ok(config) => match config.require_shared_broker("faafo-worker") {
                Ok(()) => {
                    console::print_and_exit("faafo-worker", &config.check_summary("faafo-worker"))
                }
                Err(error) => {
                    faafo_common::say!("faafo-worker: {error}");
                    ExitCode::FAILURE
                }
            },
            Err(error) => {
                faafo_common::say!("faafo-worker: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Serve => {
            // Declared before the runtime so that it is dropped after it:
            // lines logged while the runtime shuts down are written too.
            let mut logging = None;
            let runtime = match faafo_common::runtime::build() {
                Ok(runtime) => runtime,
                Err(error) => {
                    faafo_common::say!("faafo-worker: cannot start the async runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            let result = runtime.block_on(serve(&cli, &mut logging));
            // In the log file too, once logging has started.
            let print = match (&result, &logging) {
                (Err(error), Some(logging)) => logging.log_fatal(error),
                _ => true,
            };
            // The log lines first, so that the error is the last line.
            faafo_common::runtime::shut_down(runtime);
            drop(logging);
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    if print {
                        faafo_common::say!("faafo-worker: {error}");
                    }
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Serves until SIGTERM or Ctrl-C, then finishes the tasks in progress (for
/// up to `shutdown_grace`; the rest go back to the queue).
async fn serve(
    cli: &Cli,
    logging: &mut Option<TelemetryGuard>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = cli.config.load()?;
    config.require_shared_broker("faafo-worker")?;
    config.default.debug |= cli.debug;
    *logging = Some(telemetry::init(&TelemetrySettings::from_config(
        &config.default,
    ))?);
    service::serve(&config, shutdown::stop_signal()).await?;
    Ok(())
}
fn render(args: &RenderArgs) -> Result<(), Box<dyn std::error::Error>> {
    let params = FractalParams {
        width: args.width,
        height: args.height,
        iterations: args.iterations,
        xa: args.xa,
        xb: args.xb,
        ya: args.ya,
        yb: args.yb,
        c_re: args.c_re,
        c_im: args.c_im,
        seed: match (args.c_re, args.seed) {
            (Some(_), _) => None,
            (None, seed) => Some(seed.unwrap_or(0)),
        },
        uuid: None,
    };
    let spec = FractalSpec::try_from(params)?;
    let limits = RenderLimits {
        max_pixels: args.max_pixels,
        max_iterations: args.max_iterations,
    };
    let renderer = JuliaRenderer::new(limits);
    // Render first: a refused or failed task leaves no empty file behind.
    let rendered = renderer.render(&spec, &CancelToken::new())?;
    let file = File::create(&args.output)
        .map_err(|error| format!("cannot create {}: {error}", args.output.display()))?;
    let mut out = BufWriter::new(file);
    let png = encode_png(&rendered.image, &mut out)?;
    out.into_inner()
        .map_err(|error| error.into_error())?
        .sync_all()?;
    let output = FractalOutput {
        constant: rendered.constant,
        render: rendered.stats,
        png,
    };

    let report = format!(
        "c:                  {}\n\
         simd:               {:?}\n\
         render duration:    {:.6} s\n\
         encode duration:    {:.6} s\n\
         size:               {} bytes\n\
         pixel-iterations:   {}\n\
         pixel-iterations/s: {:.3e}\n\
         checksum (sha256):  {}\n\
         output:             {}\n",
        output.constant,
        renderer.simd_level(),
        output.render.duration.as_secs_f64(),
        output.png.duration.as_secs_f64(),
        output.png.size,
        output.render.pixel_iterations,
        output.render.pixel_iterations_per_second(),
        output.png.checksum,
        args.output.display()
    );
    console::print(&report).map_err(|e| format!("cannot write to standard output: {e}"))?;
    Ok(())
}
