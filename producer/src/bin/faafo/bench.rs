//! `faafo bench-render`: what the renderer alone does with the producer's
//! tasks, to compare the whole pipeline with (docs/benchmarks.md).

use std::error::Error;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use faafo_common::configuration::FaafoConfig;
use faafo_common::fractal::Task;
use faafo_producer::{ProducerSettings, TaskGenerator};
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
}

/// Renders `tasks` generated tasks one after the other on every core, PNG
/// and sha256 included, as a worker would; prints the rates.
pub fn run(config: &FaafoConfig, args: &BenchArgs) -> Result<ExitCode, Box<dyn Error>> {
    let settings = ProducerSettings::from_config(config);
    let mut generator = TaskGenerator::with_seed(args.seed);
    let renderer = JuliaRenderer::new(RenderLimits {
        max_pixels: config.default.pixel_limit,
        max_iterations: config.default.iteration_limit,
    });
    // The tasks exactly as the producer would send them to `process`.
    let tasks: Vec<Task> = (0..args.tasks)
        .map(|_| Task::from_new(&generator.task(&settings)))
        .collect();
    let started = Instant::now();
    let (mut pixel_iterations, mut pixels, mut bytes) = (0u64, 0u64, 0u64);
    for task in &tasks {
        let spec = FractalSpec::try_from(FractalParams::from(task))?;
        let mut png = Vec::new();
        let output = renderer.render_png(&spec, &CancelToken::new(), &mut png)?;
        pixel_iterations += output.render.pixel_iterations;
        pixels += spec.pixel_count();
        bytes += png.len() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "rendered {} task(s) (seed {}) in {seconds:.2} s: {:.1} tasks/s, {:.2} G pixel-iterations/s, \
         {:.1} Mpixel/s, {} bytes of PNG",
        tasks.len(),
        args.seed,
        tasks.len() as f64 / seconds,
        pixel_iterations as f64 / seconds / 1e9,
        pixels as f64 / seconds / 1e6,
        bytes
    );
    Ok(ExitCode::SUCCESS)
}
