//! Compares the renderer with the original algorithm run by Python 3
//! (`tests/python/julia_reference.py`, the original's loop with `c` given) pixel by
//! pixel. They may differ only where `|z|` is within rounding of 2: Python tests
//! `abs(z) > 2` (a correctly rounded hypot), the renderer `zr*zr + zi*zi > 4`.
//!
//! Needs `python3` on the PATH (the test fails, saying so, without it). Set
//! `FAAFO_PY_SCALE=4` (or more) to compare larger images; the default keeps Python
//! under a second per image.

mod support;

use std::path::Path;
use std::process::Command;

use faafo_worker::{CancelToken, ConstantSource, FractalParams, FractalSpec};

/// Largest differing share accepted.
const MAX_DIFFERING_SHARE: f64 = 0.005;

fn python_escape_indices(spec: &FractalSpec, c_re: f64, c_im: f64) -> Vec<u32> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/julia_reference.py");
    let view = spec.viewport;
    let output = Command::new("python3")
        .arg(script)
        .args([
            spec.width.get().to_string(),
            spec.height.get().to_string(),
            spec.iterations.get().to_string(),
        ])
        // {:?} is the shortest round-trip form: Python's float() gets the same bits.
        .args([view.xa(), view.xb(), view.ya(), view.yb(), c_re, c_im].map(|v| format!("{v:?}")))
        .arg("-")
        .output();
    let output = match output {
        Ok(output) => output,
        Err(error) => panic!(
            "this test compares the renderer with the original Python algorithm and needs \
             python3 on the PATH: {error}"
        ),
    };
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
        .stdout
        .chunks_exact(4)
        .map(|bytes| u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
        .collect()
}

#[test]
fn renders_the_same_pixels_as_the_python_original() {
    let scale: i64 = std::env::var("FAAFO_PY_SCALE")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1);
    let cases = [
        // The bench view and c.
        FractalParams {
            width: 96 * scale,
            height: 72 * scale,
            iterations: 256,
            ..Default::default()
        }
        .with_c(-0.8, 0.156),
        // A connected Julia set: a large interior that never escapes.
        FractalParams {
            width: 64 * scale,
            height: 48 * scale,
            iterations: 300,
            xa: -1.6,
            xb: 1.6,
            ya: -1.2,
            yb: 1.2,
            ..Default::default()
        }
        .with_c(0.285, 0.01),
        // c drawn from a seed, an off-centre view.
        FractalParams {
            width: 80 * scale,
            height: 80 * scale,
            iterations: 200,
            xa: -1.3,
            xb: 0.7,
            ya: -0.2,
            yb: 1.1,
            ..Default::default()
        }
        .with_seed(2015),
    ];
    let renderer = support::renderers()
        .pop()
        .expect("at least the portable kernel");
    let (mut differing, mut total) = (0usize, 0usize);
    for params in cases {
        let spec = support::spec(params);
        let rendered = renderer
            .render_escape_indices(&spec, &CancelToken::new())
            .expect("renders");
        let c = match spec.constant {
            ConstantSource::Explicit(c) => c,
            ConstantSource::Seeded(_) => rendered.constant,
        };
        let python = python_escape_indices(&spec, c.re(), c.im());
        let ours = rendered.image.pixels();
        assert_eq!(python.len(), ours.len());
        let here = ours.iter().zip(&python).filter(|(a, b)| a != b).count();
        println!(
            "{}x{}, {} iterations, c = {c}: {here} of {} pixels differ ({:.4}%)",
            spec.width.get(),
            spec.height.get(),
            spec.iterations.get(),
            ours.len(),
            100.0 * here as f64 / ours.len() as f64
        );
        differing += here;
        total += ours.len();
    }
    let share = differing as f64 / total as f64;
    println!(
        "differing share overall: {differing} of {total} pixels = {:.4}%",
        share * 100.0
    );
    assert!(
        share < MAX_DIFFERING_SHARE,
        "{:.4}% of pixels differ",
        share * 100.0
    );
}
