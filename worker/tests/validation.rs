//! Bad parameters and resource caps: every one is a typed error, never a panic or an
//! endless loop.

mod support;

use faafo_worker::{
    CancelToken, FractalParams, FractalSpec, JuliaRenderer, ParamError, RenderError, RenderLimits,
    SimdLevel,
};

fn parse(params: FractalParams) -> Result<FractalSpec, ParamError> {
    FractalSpec::try_from(params)
}

fn valid() -> FractalParams {
    FractalParams {
        width: 16,
        height: 12,
        iterations: 64,
        ..Default::default()
    }
    .with_c(-0.8, 0.156)
}

#[test]
fn sizes_below_two_pixels_are_refused() {
    for value in [i64::MIN, -1024, -1, 0, 1] {
        assert_eq!(
            parse(FractalParams {
                width: value,
                ..valid()
            }),
            Err(ParamError::InvalidWidth { value })
        );
        assert_eq!(
            parse(FractalParams {
                height: value,
                ..valid()
            }),
            Err(ParamError::InvalidHeight { value })
        );
    }
    assert!(
        parse(FractalParams {
            width: 2,
            height: 2,
            ..valid()
        })
        .is_ok()
    );
}

#[test]
fn iterations_below_one_are_refused() {
    for value in [-3, 0] {
        assert_eq!(
            parse(FractalParams {
                iterations: value,
                ..valid()
            }),
            Err(ParamError::InvalidIterations { value })
        );
    }
}

#[test]
fn non_finite_and_empty_views_are_refused() {
    let nan = f64::NAN;
    let inf = f64::INFINITY;
    let cases = [
        FractalParams { xa: nan, ..valid() },
        FractalParams { xb: inf, ..valid() },
        FractalParams {
            ya: -inf,
            ..valid()
        },
        FractalParams { yb: nan, ..valid() },
        FractalParams {
            xa: 1.0,
            xb: 1.0,
            ..valid()
        },
        FractalParams {
            xa: 2.0,
            xb: -2.0,
            ..valid()
        },
        FractalParams {
            ya: 0.5,
            yb: -0.5,
            ..valid()
        },
        FractalParams {
            xa: -1e308,
            xb: 1e308,
            ..valid()
        },
        valid().with_c(nan, 0.0),
        valid().with_c(0.0, -inf),
        FractalParams {
            c_im: None,
            ..valid()
        },
        FractalParams {
            c_re: None,
            c_im: None,
            ..valid()
        },
        FractalParams {
            c_re: None,
            c_im: None,
            uuid: Some("not-a-uuid".into()),
            ..valid()
        },
    ];
    for params in cases {
        let error = parse(params.clone()).expect_err("invalid parameters are refused");
        // Every error explains itself.
        assert!(!error.to_string().is_empty(), "{params:?}");
    }
}

#[test]
fn limits_are_enforced_before_rendering() {
    let limits = RenderLimits {
        max_pixels: 100,
        max_iterations: 50,
    };
    let renderer = JuliaRenderer::new(limits);
    let cancel = CancelToken::new();
    let too_big = support::spec(FractalParams {
        width: 11,
        height: 10,
        ..valid()
    });
    assert_eq!(
        renderer.render(&too_big, &cancel).map(|_| ()),
        Err(RenderError::TooManyPixels {
            pixels: 110,
            max: 100
        })
    );
    let too_long = support::spec(FractalParams {
        width: 10,
        height: 10,
        iterations: 51,
        ..valid()
    });
    assert_eq!(
        renderer.render(&too_long, &cancel).map(|_| ()),
        Err(RenderError::TooManyIterations {
            iterations: 51,
            max: 50
        })
    );
    let at_caps = support::spec(FractalParams {
        width: 10,
        height: 10,
        iterations: 50,
        ..valid()
    });
    assert!(renderer.render(&at_caps, &cancel).is_ok());
}

#[test]
fn default_limits_refuse_huge_tasks_without_allocating() {
    let renderer = JuliaRenderer::new(RenderLimits::default());
    let huge = support::spec(FractalParams {
        width: 65_536,
        height: 65_536,
        ..valid()
    });
    assert!(matches!(
        renderer.render(&huge, &CancelToken::new()),
        Err(RenderError::TooManyPixels { .. })
    ));
    let endless = support::spec(FractalParams {
        iterations: 100_001,
        ..valid()
    });
    assert!(matches!(
        renderer.render(&endless, &CancelToken::new()),
        Err(RenderError::TooManyIterations {
            iterations: 100_001,
            max: 100_000
        })
    ));
}

#[test]
fn a_seed_with_too_few_iterations_is_an_error_not_an_endless_loop() {
    let renderer = JuliaRenderer::new(RenderLimits::default());
    let spec = support::spec(
        FractalParams {
            iterations: 11,
            ..valid()
        }
        .with_seed(1),
    );
    assert_eq!(
        renderer.render(&spec, &CancelToken::new()).map(|_| ()),
        Err(RenderError::NoQualifyingConstant {
            attempts: 0,
            iterations: 11
        })
    );
    // An explicit c renders with any iteration count.
    let spec = support::spec(FractalParams {
        iterations: 1,
        ..valid()
    });
    let rendered = renderer
        .render_escape_indices(&spec, &CancelToken::new())
        .expect("renders");
    assert!(rendered.image.pixels().iter().all(|&i| i == 0));
}

#[test]
fn extreme_but_valid_views_render_without_panicking() {
    let renderer = JuliaRenderer::new(RenderLimits::default());
    let cases = [
        // Coordinates whose squares overflow to infinity: escape at once.
        FractalParams {
            xa: -1e300,
            xb: -1e299,
            ya: 1e299,
            yb: 1e300,
            ..valid()
        },
        // A view narrower than one ulp per pixel.
        FractalParams {
            xa: 0.1,
            xb: 0.1 + 1e-16,
            ya: 0.0,
            yb: 5e-324,
            ..valid()
        },
        // Huge c.
        valid().with_c(1e300, -1e300),
    ];
    for params in cases {
        for renderer in [
            renderer,
            renderer
                .with_simd_level(SimdLevel::Portable)
                .expect("portable"),
        ] {
            let spec = support::spec(params.clone());
            renderer
                .render_png(&spec, &CancelToken::new(), std::io::sink())
                .expect("renders");
        }
    }
}

#[test]
fn forcing_an_unavailable_simd_level_is_an_error() {
    let renderer = JuliaRenderer::new(RenderLimits::default());
    match renderer.with_simd_level(SimdLevel::Avx2) {
        Ok(forced) => {
            assert!(SimdLevel::Avx2.is_available() && forced.simd_level() == SimdLevel::Avx2)
        }
        Err(error) => assert_eq!(error, RenderError::SimdUnavailable(SimdLevel::Avx2)),
    }
}
