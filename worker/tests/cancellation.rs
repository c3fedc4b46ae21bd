//! Cancellation: a render polls its `CancelToken` between tiles and stops with
//! `RenderError::Cancelled`.

mod support;

use std::time::{Duration, Instant};

use faafo_worker::{CancelToken, FractalParams, RenderError};

#[test]
fn a_cancelled_token_stops_the_render_before_it_starts() {
    let spec = support::spec(
        FractalParams {
            width: 64,
            height: 64,
            ..Default::default()
        }
        .with_c(-0.8, 0.156),
    );
    let cancel = CancelToken::new();
    cancel.cancel();
    for renderer in support::renderers() {
        assert_eq!(
            renderer.render(&spec, &cancel).map(|_| ()),
            Err(RenderError::Cancelled)
        );
    }
}

#[test]
fn cancelling_from_another_thread_stops_a_long_render_quickly() {
    // c = 0 with a view inside the unit disc: no pixel ever escapes, so the full
    // render would take 4 Mpixel x 100,000 iterations, hours in a debug build.
    let spec = support::spec(
        FractalParams {
            width: 2048,
            height: 2048,
            iterations: 100_000,
            xa: -0.5,
            xb: 0.5,
            ya: -0.5,
            yb: 0.5,
            ..Default::default()
        }
        .with_c(0.0, 0.0),
    );
    for renderer in support::renderers() {
        let cancel = CancelToken::new();
        let canceller = {
            let cancel = cancel.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                cancel.cancel();
                Instant::now()
            })
        };
        let result = renderer.render(&spec, &cancel).map(|_| ());
        let stopped = Instant::now();
        let cancelled_at = canceller.join().expect("canceller thread");
        assert_eq!(result, Err(RenderError::Cancelled));
        let lag = stopped.saturating_duration_since(cancelled_at);
        println!("{:?}: stopped {lag:?} after cancel", renderer.simd_level());
        assert!(
            lag < Duration::from_secs(5),
            "took {lag:?} to notice the cancellation"
        );
    }
}
