//! `faafo bench-render`: what the renderer alone does with the producer's
//! tasks, to compare the whole pipeline with (docs/benchmarks.md).
//!
//! It renders the way a worker does, so that the comparison is with the
//! most the renderer gets out of the same cores: `executor_size` tasks at
//! once on one pool of `render_threads` threads (the `[worker]` settings of
//! the configuration: by default twice the CPUs' worth of tasks on one
//! thread per CPU). One task at a time would
//! leave a core idle whenever that task is in its single-threaded part
//! (PNG and sha256).

use std::error::Error;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use clap::Args;
use faafo_common::configuration::FaafoConfig;
use faafo_common::fractal::Task;
use faafo_producer::{ProducerSettings, TaskGenerator};
use faafo_worker::service::WorkerSettings;
use faafo_worker::{CancelToken, FractalParams, FractalSpec, JuliaRenderer, RenderLimits};

/// Options of `bench-render`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// How many tasks to render.
    #[arg(long, default_value_t = 100)]
    pub tasks: u32,
    /// Seed of the task generator (the same as the producer's
    /// generator_seed gives the same tasks).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Tasks rendered at once (default: the worker's executor_size).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub executor_size: Option<u32>,
}

/// What the render threads add up.
#[derive(Debug, Default)]
struct Totals {
    pixel_iterations: u64,
    pixels: u64,
    bytes: u64,
}

/// Renders `tasks` generated tasks as a worker would (PNG and sha256
/// included, `executor_size` at once on `render_threads` threads); prints
/// the rates.
pub fn run(config: &FaafoConfig, args: &BenchArgs) -> Result<ExitCode, Box<dyn Error>> {
    let settings = ProducerSettings::from_config(config);
    let worker = WorkerSettings::from_config(config);
    // No more render threads than tasks.
    let executor_size = args
        .executor_size
        .map_or(worker.executor_size, |n| n as usize)
        .clamp(1, (args.tasks as usize).max(1));
    let mut generator = TaskGenerator::with_seed(args.seed);
    let renderer = JuliaRenderer::new(RenderLimits {
        max_pixels: config.default.pixel_limit,
        max_iterations: config.default.iteration_limit,
    });
    // The tasks exactly as the producer would send them to `process`.
    let specs = (0..args.tasks)
        .map(|_| {
            FractalSpec::try_from(FractalParams::from(&Task::from_new(
                &generator.task(&settings),
            )))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(worker.render_threads)
        .thread_name(|i| format!("faafo-render-{i}"))
        .build()?;
    let next = AtomicUsize::new(0);
    let totals = Mutex::new(Totals::default());
    let started = Instant::now();
    let outcome: Result<(), String> = std::thread::scope(|scope| {
        let mut renderers = Vec::with_capacity(executor_size);
        for i in 0..executor_size {
            let spawned = std::thread::Builder::new()
                .name(format!("bench-render-{i}"))
                .spawn_scoped(scope, || -> Result<(), String> {
                    let mut mine = Totals::default();
                    while let Some(spec) = specs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let mut png = Vec::new();
                        let rendered =
                            renderer.render_png_on(&pool, spec, &CancelToken::new(), &mut png);
                        let output = match rendered {
                            Ok(output) => output,
                            Err(e) => {
                                // The others stop after their current task.
                                next.store(usize::MAX / 2, Ordering::Relaxed);
                                return Err(e.to_string());
                            }
                        };
                        mine.pixel_iterations += output.render.pixel_iterations;
                        mine.pixels += spec.pixel_count();
                        mine.bytes += png.len() as u64;
                    }
                    let mut all = totals.lock().unwrap_or_else(|p| p.into_inner());
                    all.pixel_iterations += mine.pixel_iterations;
                    all.pixels += mine.pixels;
                    all.bytes += mine.bytes;
                    Ok(())
                });
            match spawned {
                Ok(handle) => renderers.push(handle),
                Err(e) => {
                    next.store(usize::MAX / 2, Ordering::Relaxed);
                    return Err(format!("cannot start render thread {i}: {e}"));
                }
            }
        }
        renderers.into_iter().try_for_each(|r| {
            r.join()
                .unwrap_or_else(|_| Err("a render thread panicked".into()))
        })
    });
    outcome?;
    let seconds = started.elapsed().as_secs_f64();
    let totals = totals.into_inner().unwrap_or_else(|p| p.into_inner());
    // The reader gone is no error (docs/cli.md), here as in `main`: this
    // runs on a blocking thread whose errors reach `main` as text.
    let printed = crate::output::line(format_args!(
        "rendered {} task(s) (seed {}, {executor_size} at once on {} threads) in {seconds:.2} s: \
         {:.1} tasks/s, {:.2} G pixel-iterations/s, {:.1} Mpixel/s, {} bytes of PNG",
        specs.len(),
        args.seed,
        worker.render_threads,
        specs.len() as f64 / seconds,
        totals.pixel_iterations as f64 / seconds / 1e9,
        totals.pixels as f64 / seconds / 1e6,
        totals.bytes
    ));
    match printed {
        Err(e) if !e.is::<crate::output::ReaderGone>() => Err(e),
        _ => Ok(ExitCode::SUCCESS),
    }
}
