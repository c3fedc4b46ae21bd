//! Property test: over random tasks, every kernel (AVX2 when available, portable)
//! yields exactly the escape indices and work of the plain scalar reference
//! (`faafo_worker::kernel::reference`), pixel by pixel.

mod support;

use faafo_worker::kernel::reference;
use faafo_worker::{CancelToken, FractalParams, JuliaConstant};
use proptest::prelude::*;

/// Random but valid task parameters with an explicit c.
fn params() -> impl Strategy<Value = FractalParams> {
    (
        // Mostly small images; some beyond one 4096-pixel tile, spanning rows.
        prop_oneof![
            4 => (2i64..48, 2i64..48),
            1 => (60i64..200, 20i64..60),
            1 => (2i64..6, 900i64..1500),
        ],
        prop_oneof![1 => 1i64..16, 3 => 1i64..400],
        (-2.5f64..1.0, 0.001f64..3.5),
        (-2.0f64..1.0, 0.001f64..3.0),
        // Mostly near the Mandelbrot set, sometimes far outside.
        prop_oneof![4 => (-2.0f64..0.6, -1.2f64..1.2), 1 => (-6.0f64..6.0, -6.0f64..6.0)],
    )
        .prop_map(
            |((width, height), iterations, (xa, dx), (ya, dy), (c_re, c_im))| {
                FractalParams {
                    width,
                    height,
                    iterations,
                    xa,
                    xb: xa + dx,
                    ya,
                    yb: ya + dy,
                    ..Default::default()
                }
                .with_c(c_re, c_im)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_kernel_matches_the_scalar_reference(params in params()) {
        let spec = support::spec(params.clone());
        let c = JuliaConstant::new(params.c_re.unwrap_or_default(), params.c_im.unwrap_or_default())
            .expect("finite");
        let (width, height) = (spec.width.get(), spec.height.get());
        let iterations = spec.iterations.get();
        let mut expected = Vec::with_capacity(spec.pixel_count() as usize);
        let mut expected_work = 0u64;
        for y in 0..height {
            let zy = spec.viewport.row_im(y, height);
            for x in 0..width {
                let zx = spec.viewport.column_re(x, width);
                let steps = reference::escape_steps(zx, zy, c, iterations);
                expected_work += u64::from(steps);
                expected.push(reference::escape_index(zx, zy, c, iterations));
            }
        }
        for renderer in support::renderers() {
            let rendered = renderer
                .render_escape_indices(&spec, &CancelToken::new())
                .expect("renders");
            prop_assert_eq!(rendered.constant, c);
            let got = rendered.image.pixels();
            let first_difference = got.iter().zip(&expected).position(|(a, b)| a != b);
            prop_assert!(
                first_difference.is_none(),
                "{:?} differs at pixel {:?}", renderer.simd_level(), first_difference
            );
            prop_assert_eq!(got.len(), expected.len());
            prop_assert_eq!(rendered.stats.pixel_iterations, expected_work);

            // Palette indices are the escape indices mod 32.
            let palette = renderer.render(&spec, &CancelToken::new()).expect("renders");
            let mod32: Vec<u8> = expected.iter().map(|&i| (i % 32) as u8).collect();
            prop_assert_eq!(palette.image.pixels(), &mod32[..]);
        }
    }
}
