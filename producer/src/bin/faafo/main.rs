//! `faafo`: the command line of faafo.
//!
//! ```text
//! faafo up                                  # everything in one process, nothing to install
//! faafo create --tasks 5 --wait             # random fractals, a progress bar until rendered
//! faafo create --width 800 --height 600 --iterations 256
//! faafo list --status done
//! faafo show <uuid>
//! faafo get <uuid> -o julia.png
//! faafo delete <uuid>
//! faafo api | faafo worker | faafo producer   # one service in the foreground
//! ```
//!
//! Every command but `up` talks to the API at `--endpoint-url` (or
//! `[DEFAULT] endpoint_url`; when not set, the configuration's `[api]
//! bind_host:bind_port`, `http://127.0.0.1:5000` by default).
//!
//! The options' doc comments are their `--help` texts, which name
//! configuration options as `[api] bind_port`: not links.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

mod bench;
mod commands;
mod output;
mod up;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use faafo_common::configuration::ConfigArgs;
use faafo_common::fractal::MIN_DRAWN_ITERATIONS;

/// The heading of the options that only commands talking to the API use
/// (clap's global options show on every command's help).
const CLIENT_OPTIONS: &str =
    "Options of the API's clients (create, list, show, get, delete, producer)";

/// faafo: renders Julia-set fractals, on one machine or many.
#[derive(Debug, Parser)]
#[command(name = "faafo", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Print a sample configuration file with every option and exit.
    #[arg(long)]
    print_sample_config: bool,
    #[command(flatten)]
    config: ConfigArgs,
    /// URL of the faafo API, or of several API hosts separated by commas, tried in turn (default: [DEFAULT] endpoint_url of the configuration).
    #[arg(long, global = true, value_name = "URL", help_heading = CLIENT_OPTIONS)]
    endpoint_url: Option<String>,
    /// Token for an API that requires one (auth_strategy = token; default:
    /// [DEFAULT] auth_token).
    #[arg(long, global = true, value_name = "TOKEN", help_heading = CLIENT_OPTIONS)]
    token: Option<String>,
    /// How to print results.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table, help_heading = CLIENT_OPTIONS)]
    output: Format,
    /// Log at debug level: the services and `up`, which log (the client
    /// commands print only their results and errors).
    #[arg(long, global = true)]
    debug: bool,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Human-readable tables.
    Table,
    /// JSON, for scripts.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API, a worker and the producer in this process (SQLite and
    /// the in-memory broker unless configured otherwise) until Ctrl-C.
    Up(up::UpArgs),
    /// Create fractals: given values are fixed, the others drawn at random
    /// (a missing bound of the viewport next to the given one).
    Create(CreateArgs),
    /// List fractals (all pages).
    List(ListArgs),
    /// Show one fractal (pending ones too).
    Show(UuidArg),
    /// Download a fractal's PNG.
    Get(GetArgs),
    /// Delete a fractal.
    Delete(UuidArg),
    /// Render the producer's tasks with the renderer alone and print the
    /// rates (to compare the whole pipeline with).
    BenchRender(bench::BenchArgs),
    /// Check the configuration files and exit (0: valid).
    CheckConfig,
    /// Run only the API in the foreground (as faafo-api does).
    Api,
    /// Run only a worker in the foreground (as faafo-worker does).
    Worker,
    /// Run only the producer in the foreground (as faafo-producer does).
    Producer(ProducerArgs),
}

/// Options of `producer`.
#[derive(Debug, Args)]
struct ProducerArgs {
    /// One batch, then exit 0 if every task is done.
    #[arg(long)]
    one_shot: bool,
}

/// Options of `create`.
#[derive(Debug, Args)]
struct CreateArgs {
    /// Width in pixels (2 to 65,536; width x height at most the API's
    /// pixel_limit).
    #[arg(long, allow_negative_numbers = true, value_parser = side())]
    width: Option<u32>,
    /// Height in pixels (2 to 65,536).
    #[arg(long, allow_negative_numbers = true, value_parser = side())]
    height: Option<u32>,
    /// Iterations per pixel (at least 12 unless --c-re and --c-im are given;
    /// at most the API's iteration_limit).
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..))]
    iterations: Option<u32>,
    /// Left bound of the plane (less than --xb; alone, --xb is drawn to its
    /// right).
    #[arg(long, allow_hyphen_values = true, value_parser = finite)]
    xa: Option<f64>,
    /// Right bound (alone, --xa is drawn to its left).
    #[arg(long, allow_hyphen_values = true, value_parser = finite)]
    xb: Option<f64>,
    /// Lower bound of the imaginary part (less than --yb), drawn as the
    /// image's top row as in the original (alone, a larger --yb is picked
    /// at random).
    #[arg(long, allow_hyphen_values = true, value_parser = finite)]
    ya: Option<f64>,
    /// Upper bound of the imaginary part: the image's bottom row (alone, a
    /// smaller --ya is picked at random).
    #[arg(long, allow_hyphen_values = true, value_parser = finite)]
    yb: Option<f64>,
    /// Seed of the Julia constant (random when absent).
    #[arg(long, conflicts_with_all = ["c_re", "c_im"])]
    seed: Option<u64>,
    /// Real part of the Julia constant c, given instead of drawn (with --c-im).
    #[arg(long, allow_hyphen_values = true, value_parser = finite, requires = "c_im")]
    c_re: Option<f64>,
    /// Imaginary part of the Julia constant c (with --c-re).
    #[arg(long, allow_hyphen_values = true, value_parser = finite, requires = "c_re")]
    c_im: Option<f64>,
    /// How many fractals (1 to 100,000).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    tasks: u32,
    /// Wait, with a progress bar, until they are rendered.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up waiting after this many seconds (the fractals
    /// stay queued), showing them as they are and exiting non-zero.
    #[arg(long, value_name = "SECONDS", requires = "wait", value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    timeout: Option<u64>,
}

impl CreateArgs {
    /// A mistake of the command line said before anything is sent (the
    /// API would refuse every fractal of the batch): bounds in the wrong
    /// order, or too few iterations to draw a Julia constant.
    fn mistake(&self) -> Option<String> {
        if let Some(iterations) = self.iterations
            && iterations < MIN_DRAWN_ITERATIONS
            && self.c_re.is_none()
        {
            return Some(format!(
                "--iterations {iterations}: a worker draws the Julia constant only for \
                 {MIN_DRAWN_ITERATIONS} iterations or more; give --c-re and --c-im to render fewer"
            ));
        }
        self.viewport_mistake()
    }

    /// A pair of bounds given in the wrong order.
    fn viewport_mistake(&self) -> Option<String> {
        let pairs = [
            ("--xa", self.xa, "--xb", self.xb, "left", "right"),
            ("--ya", self.ya, "--yb", self.yb, "lower", "upper"),
        ];
        pairs
            .into_iter()
            .find_map(
                |(low_flag, low, high_flag, high, low_name, high_name)| match (low, high) {
                    (Some(low), Some(high)) if low >= high => Some(format!(
                        "{low_flag} {low} is not less than {high_flag} {high}: \
                     the {low_name} bound must be less than the {high_name} one"
                    )),
                    _ => None,
                },
            )
    }
}

/// A width or a height a worker renders: 2 to its largest side.
fn side() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(2..=i64::from(faafo_worker::dimensions::MAX_SIDE))
}

/// A fractal's uuid as the API names it (8-4-4-4-12 hex digits), checked
/// before anything is sent: a usage mistake.
fn fractal_uuid(text: &str) -> Result<String, String> {
    if faafo_common::api_client::is_fractal_uuid(text) {
        Ok(text.to_string())
    } else {
        Err("not a UUID (expected 8-4-4-4-12 hex digits)".into())
    }
}

/// A finite number (NaN and infinities would reach the API as null).
fn finite(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        Ok(_) => Err("must be a finite number".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Options of `list`.
#[derive(Debug, Args)]
struct ListArgs {
    /// Only fractals in this status.
    #[arg(long, value_parser = ["pending", "running", "done", "failed"])]
    status: Option<String>,
}

/// A fractal's uuid.
#[derive(Debug, Args)]
struct UuidArg {
    /// The fractal's uuid.
    #[arg(value_parser = fractal_uuid)]
    uuid: String,
}

/// Options of `get`.
#[derive(Debug, Args)]
struct GetArgs {
    /// The fractal's uuid.
    #[arg(value_parser = fractal_uuid)]
    uuid: String,
    /// Where to write the PNG: a file, a directory (DIR/<uuid>.png), or `-`
    /// for standard output (default: <uuid>.png). Only `-o` is short for
    /// it: `--output` is the global output format.
    #[arg(short = 'o', long = "file", value_name = "FILE|DIR")]
    file: Option<std::path::PathBuf>,
}

impl GetArgs {
    /// `-o -`, or a path that is the standard output itself
    /// (`/dev/stdout`, the file it was sent to): the PNG to standard output.
    fn writes_to_stdout(&self) -> bool {
        match self.file.as_deref() {
            Some(path) if path == std::path::Path::new("-") => true,
            Some(path) => commands::standard_stream(path) == Some(commands::Stream::Out),
            None => false,
        }
    }
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if cli.print_sample_config {
        let sample = faafo_common::configuration::FaafoConfig::sample();
        return match output::put(format_args!("{sample}")) {
            Err(e) if !e.is::<output::ReaderGone>() => {
                faafo_common::say!("faafo: {e}");
                ExitCode::FAILURE
            }
            _ => ExitCode::SUCCESS,
        };
    }
    let Some(command) = cli.command.take() else {
        usage_error(
            None,
            clap::error::ErrorKind::MissingSubcommand,
            "a command is required (or --print-sample-config)",
        )
    };
    if let Command::Create(args) = &command
        && let Some(mistake) = args.mistake()
    {
        usage_error(
            Some("create"),
            clap::error::ErrorKind::ArgumentConflict,
            &mistake,
        )
    }
    if let Command::Get(args) = &command
        && args.writes_to_stdout()
        && cli.output == Format::Json
    {
        usage_error(
            Some("get"),
            clap::error::ErrorKind::ArgumentConflict,
            &format!(
                "--output json and -o {} both want the standard output: give -o a file or a directory",
                args.file
                    .as_deref()
                    .unwrap_or(std::path::Path::new("-"))
                    .display()
            ),
        )
    }
    // Declared before the runtime so that it is dropped after it: lines
    // logged while the runtime shuts down are written too.
    let mut logging = None;
    let runtime = match faafo_common::runtime::build() {
        Ok(runtime) => runtime,
        Err(e) => {
            faafo_common::say!("faafo: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(commands::run(cli, command, &mut logging));
    // In the log file too, for the commands that log (`up`, the services).
    let print = match (&result, &logging) {
        (Err(e), Some(logging)) if !e.is::<output::ReaderGone>() => logging.log_fatal(e),
        _ => true,
    };
    // The log lines first, so that the error is the last line.
    faafo_common::runtime::shut_down(runtime);
    drop(logging);
    match result {
        Ok(code) => code,
        // The reader of the output is done (`faafo list | head`): not an
        // error (docs/cli.md).
        Err(e) if e.is::<output::ReaderGone>() => ExitCode::SUCCESS,
        Err(e) => {
            if print {
                faafo_common::say!("faafo: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Exits with clap's usage error (status 2), about `subcommand` or about
/// `faafo` itself, as for a mistake clap finds.
fn usage_error(subcommand: Option<&str>, kind: clap::error::ErrorKind, message: &str) -> ! {
    let mut command = <Cli as clap::CommandFactory>::command();
    // Built, so that a subcommand's usage line starts with `faafo`.
    command.build();
    if let Some(name) = subcommand
        && let Some(found) = command.find_subcommand_mut(name)
    {
        found.error(kind, message).exit()
    }
    command.error(kind, message).exit()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command};

    fn create(args: &[&str]) -> super::CreateArgs {
        let cli = Cli::try_parse_from([&["faafo", "create"][..], args].concat())
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        match cli.command {
            Some(Command::Create(create)) => create,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn negative_numbers_in_every_spelling_are_values() {
        let args = create(&[
            "--xa", "-.5", "--xb", "-1e-3", "--ya", "-2", "--yb", "-1E-1", "--c-re", "-.8",
            "--c-im", "-0.156",
        ]);
        assert_eq!(
            (args.xa, args.xb, args.ya, args.yb, args.c_re, args.c_im),
            (
                Some(-0.5),
                Some(-0.001),
                Some(-2.0),
                Some(-0.1),
                Some(-0.8),
                Some(-0.156)
            )
        );
    }

    #[test]
    fn few_iterations_need_a_constant() {
        assert!(create(&["--iterations", "11"]).mistake().is_some());
        assert!(create(&["--iterations", "12"]).mistake().is_none());
        assert!(
            create(&["--iterations", "1", "--c-re", "0", "--c-im", "0.7"])
                .mistake()
                .is_none()
        );
    }
}
