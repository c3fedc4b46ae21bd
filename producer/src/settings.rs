//! The producer's settings, from `[producer]`, `[messaging]` and `[DEFAULT]`.

use std::time::Duration;

use faafo_common::configuration::FaafoConfig;

/// The tasks this configuration's producer would generate beyond the
/// limits an API of the same configuration takes (`[DEFAULT] pixel_limit`,
/// `iteration_limit`), one sentence each: that API refuses such tasks,
/// each an error in the producer's log, none on the page.
pub fn tasks_over_limits(config: &FaafoConfig) -> Vec<String> {
    let (p, d) = (&config.producer, &config.default);
    let mut over = Vec::new();
    if u64::from(p.max_width) * u64::from(p.max_height) > d.pixel_limit {
        over.push(format!(
            "[producer] max_width x max_height ({} x {}) is more than [DEFAULT] pixel_limit ({})",
            p.max_width, p.max_height, d.pixel_limit
        ));
    }
    if p.max_iterations > d.iteration_limit {
        over.push(format!(
            "[producer] max_iterations ({}) is more than [DEFAULT] iteration_limit ({})",
            p.max_iterations, d.iteration_limit
        ));
    }
    over
}

/// A range to draw from: `randint` for integers, `uniform` for floats, as
/// the original did (the two ends may come in either order).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range<T> {
    /// One end.
    pub a: T,
    /// The other end.
    pub b: T,
}

/// What the producer generates and how it dispatches.
#[derive(Debug, Clone, PartialEq)]
pub struct ProducerSettings {
    /// Workers' RPC topic.
    pub topic: String,
    /// Time between two batches.
    pub interval: Duration,
    /// Tasks per batch.
    pub tasks: Range<u32>,
    /// Widths.
    pub width: Range<u32>,
    /// Heights.
    pub height: Range<u32>,
    /// Iterations.
    pub iterations: Range<u32>,
    /// Left bounds.
    pub xa: Range<f64>,
    /// Right bounds.
    pub xb: Range<f64>,
    /// Bottom bounds.
    pub ya: Range<f64>,
    /// Top bounds.
    pub yb: Range<f64>,
    /// Calls in flight at once.
    pub max_in_flight: usize,
    /// Time a call may take.
    pub call_timeout: Duration,
    /// Call-monitor timeout, if any.
    pub call_monitor_timeout: Option<Duration>,
    /// Age after which a running task is dispatched again.
    pub task_timeout: Duration,
    /// Time between two scans for stale running tasks.
    pub recovery_interval: Duration,
    /// Time between two looks for pending tasks.
    pub poll_interval: Duration,
    /// Time between two checks that a task in flight is still in the API
    /// (`None`: never check).
    pub deletion_check_interval: Option<Duration>,
    /// Dispatches per task before it is marked failed.
    pub max_attempts: u32,
    /// Where results the API has not taken by a stop are kept for the
    /// next start (`<state_path>/producer-results`; `None`: not kept).
    pub kept_results_dir: Option<std::path::PathBuf>,
    /// Time to wait for calls in flight when stopping.
    pub shutdown_grace: Duration,
    /// Seed of the task generator (`None`: random).
    pub generator_seed: Option<u64>,
}

impl ProducerSettings {
    /// The settings of a loaded configuration.
    pub fn from_config(config: &FaafoConfig) -> Self {
        let p = &config.producer;
        let secs = |s: f64| Duration::from_secs_f64(s.max(0.001));
        Self {
            topic: p.topic.clone(),
            interval: secs(p.interval),
            tasks: Range {
                a: p.min_tasks,
                b: p.max_tasks,
            },
            width: Range {
                a: p.min_width,
                b: p.max_width,
            },
            height: Range {
                a: p.min_height,
                b: p.max_height,
            },
            iterations: Range {
                a: p.min_iterations,
                b: p.max_iterations,
            },
            xa: Range {
                a: p.min_xa,
                b: p.max_xa,
            },
            xb: Range {
                a: p.min_xb,
                b: p.max_xb,
            },
            ya: Range {
                a: p.min_ya,
                b: p.max_ya,
            },
            yb: Range {
                a: p.min_yb,
                b: p.max_yb,
            },
            max_in_flight: p.max_in_flight.max(1),
            call_timeout: Duration::from_secs(p.call_timeout.max(1)),
            call_monitor_timeout: Some(config.messaging.call_monitor_timeout)
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
            task_timeout: Duration::from_secs(p.task_timeout.max(1)),
            recovery_interval: Duration::from_secs(p.recovery_interval.max(1)),
            poll_interval: secs(p.poll_interval),
            deletion_check_interval: Some(p.deletion_check_interval)
                .filter(|s| *s > 0.0)
                .map(secs),
            max_attempts: p.max_attempts.max(1),
            kept_results_dir: Some(config.state_path().join("producer-results")),
            shutdown_grace: Duration::from_secs(p.shutdown_grace),
            generator_seed: Some(p.generator_seed).filter(|s| *s != 0),
        }
    }
}

impl Default for ProducerSettings {
    fn default() -> Self {
        Self::from_config(&FaafoConfig::default())
    }
}
