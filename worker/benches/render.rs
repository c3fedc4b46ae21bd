//! Throughput of the renderer on the reference task: 1024x1024, 512 iterations,
//! view `[-2, 2] x [-1.5, 1.5]`, c = -0.8 + 0.156i.
//!
//! `cargo bench -p faafo-worker --bench render`. Render throughput is reported as
//! pixel-iterations per second (criterion's "elements"), PNG throughput as pixels
//! per second.

use std::hint::black_box;
use std::io;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use faafo_worker::{
    CancelToken, FractalParams, FractalSpec, JuliaRenderer, RenderLimits, SimdLevel, encode_png,
};

fn bench_spec() -> FractalSpec {
    let params = FractalParams::default().with_c(-0.8, 0.156);
    FractalSpec::try_from(params).expect("the bench task is valid")
}

fn render(c: &mut Criterion) {
    let spec = bench_spec();
    let cancel = CancelToken::new();
    let renderer = JuliaRenderer::new(RenderLimits::default());
    let portable = renderer
        .with_simd_level(SimdLevel::Portable)
        .expect("always available");
    let work = renderer
        .render(&spec, &cancel)
        .expect("renders")
        .stats
        .pixel_iterations;
    let one_core = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let all_cores = rayon::ThreadPoolBuilder::new().build().expect("pool");

    let mut group = c.benchmark_group("render");
    group.throughput(Throughput::Elements(work));
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(6));
    for (name, pool) in [("one_core", &one_core), ("all_cores", &all_cores)] {
        let label = format!("{name}_{:?}", renderer.simd_level()).to_lowercase();
        group.bench_function(label, |b| {
            pool.install(|| b.iter(|| renderer.render(black_box(&spec), &cancel)))
        });
    }
    group.bench_function("one_core_portable", |b| {
        one_core.install(|| b.iter(|| portable.render(black_box(&spec), &cancel)))
    });
    group.finish();
}

fn png_and_sha256(c: &mut Criterion) {
    let spec = bench_spec();
    let renderer = JuliaRenderer::new(RenderLimits::default());
    let image = renderer
        .render(&spec, &CancelToken::new())
        .expect("renders")
        .image;

    let mut group = c.benchmark_group("png");
    group.throughput(Throughput::Elements(spec.pixel_count()));
    group
        .sample_size(50)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("encode_and_sha256", |b| {
        b.iter(|| encode_png(black_box(&image), io::sink()).expect("encodes"))
    });
    group.finish();
}

criterion_group!(benches, render, png_and_sha256);
criterion_main!(benches);
