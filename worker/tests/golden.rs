//! Golden tests: fixed tasks whose PNG sha256 is pinned. They guard determinism
//! across runs, machines and SIMD levels (every available kernel must produce the
//! very same bytes), and across refactorings. A change of the `png` or `fdeflate`
//! crate versions may legitimately change the bytes: re-pin only after checking
//! that the decoded pixels are unchanged (the other tests check those).

mod support;

use faafo_worker::{CancelToken, FractalParams, FractalSpec, Seed};
use sha2::{Digest, Sha256};

struct Golden {
    name: &'static str,
    spec: FractalSpec,
    c: &'static str,
    sha256: &'static str,
}

fn goldens() -> Vec<Golden> {
    let uuid = "212e8c23-e67f-4bd3-86e1-5a5e811ee2f4";
    vec![
        Golden {
            name: "bench view, explicit c",
            spec: support::spec(
                FractalParams {
                    width: 64,
                    height: 48,
                    iterations: 128,
                    ..Default::default()
                }
                .with_c(-0.8, 0.156),
            ),
            c: "-0.8+0.156i",
            sha256: "4e783791524e3234dbd1a8c0f94a3c543b6066a767f07daa838b57a861da5862",
        },
        Golden {
            name: "seeded c",
            spec: support::spec(
                FractalParams {
                    width: 80,
                    height: 60,
                    iterations: 256,
                    xa: -1.5,
                    xb: 1.5,
                    ya: -1.0,
                    yb: 1.0,
                    ..Default::default()
                }
                .with_seed(42),
            ),
            c: "0.4125874935097551-0.23995426283556465i",
            sha256: "e516a5ccfd50a7c7ca0b9399e2a7423c2d6eeeb991d4edd94c28419f4dfd5f8e",
        },
        Golden {
            // The task of the original's example log, its seed derived from its uuid.
            name: "original log task, c from uuid",
            spec: support::spec(FractalParams {
                width: 510,
                height: 278,
                iterations: 281,
                xa: -3.3528957195683087,
                xb: 1.1428457603077387,
                ya: -2.1341119130263717,
                yb: 2.478654026560605,
                uuid: Some(uuid.to_owned()),
                ..Default::default()
            }),
            c: "-0.1933024971673416+0.8503918029847899i",
            sha256: "1e72b161c449e7e9076435d0825456b01f6c2ff295ab0fc8da55012dd69ec248",
        },
        Golden {
            // The benchmark task, full size.
            name: "bench task",
            spec: support::spec(FractalParams::default().with_c(-0.8, 0.156)),
            c: "-0.8+0.156i",
            sha256: "3684edf9e5fe891cdbd33c3fbd1668b0644e29f6083d17ef0132015afaf1ab60",
        },
        Golden {
            // 9000 pixels: several tiles, each spanning rows.
            name: "wide strip across tiles",
            spec: support::spec(
                FractalParams {
                    width: 3000,
                    height: 3,
                    iterations: 200,
                    xa: -1.6,
                    xb: 1.6,
                    ya: -0.01,
                    yb: 0.01,
                    ..Default::default()
                }
                .with_c(-0.4, 0.6),
            ),
            c: "-0.4+0.6i",
            sha256: "156e0469772be1d35fa095a0d0a6d860068cdebe924348439bbe2cf31b1a14da",
        },
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[test]
fn golden_tasks_render_pinned_bytes_on_every_kernel() {
    let mut mismatches = Vec::new();
    for golden in goldens() {
        let mut first: Option<Vec<u8>> = None;
        for renderer in support::renderers() {
            let mut png = Vec::new();
            let output = renderer
                .render_png(&golden.spec, &CancelToken::new(), &mut png)
                .expect("golden task renders");
            println!(
                "{} [{:?}]: c = {}, sha256 = {}, {} bytes, {} pixel-iterations",
                golden.name,
                renderer.simd_level(),
                output.constant,
                output.png.checksum,
                output.png.size,
                output.render.pixel_iterations,
            );
            // The checksum computed while writing is the checksum of the file.
            assert_eq!(output.png.checksum.to_string(), hex(&Sha256::digest(&png)));
            assert_eq!(output.png.size, png.len() as u64);
            match &first {
                None => first = Some(png),
                Some(bytes) => assert!(bytes == &png, "{}: kernels differ", golden.name),
            }
            if output.png.checksum.to_string() != golden.sha256
                || output.constant.to_string() != golden.c
            {
                mismatches.push((golden.name, renderer.simd_level()));
            }
        }
    }
    assert!(mismatches.is_empty(), "golden mismatch: {mismatches:?}");
}

/// Rendered in turns on a shared pool (as a worker's render slots do), the
/// bytes are the same, whatever the pool's size (the largest golden takes
/// several turns on one thread).
#[test]
fn golden_tasks_render_pinned_bytes_in_turns() {
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        for golden in goldens() {
            let mut png = Vec::new();
            let output = faafo_worker::JuliaRenderer::new(Default::default())
                .render_png_on(&pool, &golden.spec, &CancelToken::new(), &mut png)
                .expect("golden task renders");
            assert_eq!(
                (output.png.checksum.to_string(), output.png.size),
                (golden.sha256.to_string(), png.len() as u64),
                "{} on {threads} thread(s)",
                golden.name
            );
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_c_and_checksum_on_every_run() {
    let spec = support::spec(
        FractalParams {
            width: 40,
            height: 30,
            iterations: 200,
            ..Default::default()
        }
        .with_seed(7),
    );
    let renderer = support::renderers()
        .pop()
        .expect("at least the portable kernel");
    let runs: Vec<_> = (0..3)
        .map(|_| {
            renderer
                .render_png(&spec, &CancelToken::new(), std::io::sink())
                .expect("renders")
        })
        .map(|output| {
            (
                output.constant,
                output.png.checksum,
                output.render.pixel_iterations,
            )
        })
        .collect();
    assert!(runs.windows(2).all(|pair| pair[0] == pair[1]), "{runs:?}");
}

#[test]
fn the_png_decodes_to_the_original_colours() {
    let spec = goldens().remove(0).spec;
    let renderer = support::renderers()
        .pop()
        .expect("at least the portable kernel");
    let mut png = Vec::new();
    renderer
        .render_png(&spec, &CancelToken::new(), &mut png)
        .expect("renders");
    let escape = renderer
        .render_escape_indices(&spec, &CancelToken::new())
        .expect("renders");

    let mut decoder = png::Decoder::new(std::io::Cursor::new(png));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().expect("valid PNG");
    let mut rgb = vec![0; reader.output_buffer_size().expect("small image")];
    let frame = reader.next_frame(&mut rgb).expect("one frame");
    assert_eq!((frame.width, frame.height), (64, 48));
    assert_eq!(frame.color_type, png::ColorType::Rgb);
    for (pixel, &i) in rgb.chunks_exact(3).zip(escape.image.pixels()) {
        let original = [(i % 8 * 32) as u8, (i % 16 * 16) as u8, (i % 32 * 8) as u8];
        assert_eq!(pixel, original);
    }
}

#[test]
fn a_seed_derived_from_a_uuid_is_stable() {
    let seed = Seed::from_uuid_str("212e8c23-e67f-4bd3-86e1-5a5e811ee2f4").expect("valid uuid");
    assert_eq!(seed, Seed(0xa7cf_d67d_6761_a927));
    let c = faafo_worker::ConstantSource::Seeded(seed)
        .resolve(&goldens()[2].spec.viewport, goldens()[2].spec.iterations)
        .expect("a qualifying c exists");
    assert_eq!(c.to_string(), goldens()[2].c);
}
