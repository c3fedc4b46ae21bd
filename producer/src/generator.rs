//! Random tasks, drawn as the original producer drew them.

use faafo_common::fractal::NewFractal;

use crate::settings::{ProducerSettings, Range};

/// Draws tasks from the configured ranges.
pub struct TaskGenerator {
    rng: fastrand::Rng,
}

impl Default for TaskGenerator {
    fn default() -> Self {
        Self::new()
    }
}

impl TaskGenerator {
    /// A generator seeded from the OS.
    pub fn new() -> Self {
        Self {
            rng: fastrand::Rng::new(),
        }
    }

    /// The generator the settings ask for: seeded, or random.
    pub fn for_settings(settings: &ProducerSettings) -> Self {
        settings
            .generator_seed
            .map_or_else(Self::new, Self::with_seed)
    }

    /// A generator with a fixed seed (reproducible runs, tests).
    pub fn with_seed(seed: u64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// `random.randint(a, b)`: an integer between the two ends, inclusive.
    pub fn int(&mut self, range: Range<u32>) -> u32 {
        let (lo, hi) = if range.a <= range.b {
            (range.a, range.b)
        } else {
            (range.b, range.a)
        };
        self.rng.u32(lo..=hi)
    }

    /// `random.uniform(a, b)`: a float between the two ends.
    pub fn uniform(&mut self, range: Range<f64>) -> f64 {
        range.a + (range.b - range.a) * self.rng.f64()
    }

    /// How many tasks the next batch has.
    pub fn batch_size(&mut self, settings: &ProducerSettings) -> u32 {
        self.int(settings.tasks)
    }

    /// One task with a fresh uuid. Bounds are drawn until `xa < xb` and
    /// `ya < yb` (with the original's ranges they always are).
    pub fn task(&mut self, settings: &ProducerSettings) -> NewFractal {
        let (mut xa, mut xb) = (self.uniform(settings.xa), self.uniform(settings.xb));
        for _ in 0..100 {
            if xa < xb {
                break;
            }
            (xa, xb) = (self.uniform(settings.xa), self.uniform(settings.xb));
        }
        if xa >= xb {
            (xa, xb) = (xa.min(xb), xa.max(xb) + 1.0);
        }
        let (mut ya, mut yb) = (self.uniform(settings.ya), self.uniform(settings.yb));
        for _ in 0..100 {
            if ya < yb {
                break;
            }
            (ya, yb) = (self.uniform(settings.ya), self.uniform(settings.yb));
        }
        if ya >= yb {
            (ya, yb) = (ya.min(yb), ya.max(yb) + 1.0);
        }
        NewFractal {
            // Time-ordered (UUIDv7): the API's database appends instead of
            // writing a random page per task.
            uuid: Some(uuid::Uuid::now_v7().to_string()),
            width: self.int(settings.width),
            height: self.int(settings.height),
            iterations: self.int(settings.iterations),
            xa,
            xb,
            ya,
            yb,
            seed: Some(self.rng.u64(..)),
            c_re: None,
            c_im: None,
            status: None,
            attempts: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_stay_in_the_original_ranges() {
        let settings = ProducerSettings::default();
        let mut g = TaskGenerator::with_seed(7);
        for _ in 0..1000 {
            let t = g.task(&settings);
            assert!((256..=1024).contains(&t.width) && (256..=1024).contains(&t.height));
            assert!((128..=512).contains(&t.iterations));
            assert!((-4.0..=-1.0).contains(&t.xa) && (1.0..=4.0).contains(&t.xb));
            assert!((-3.0..=-0.5).contains(&t.ya) && (0.5..=3.0).contains(&t.yb));
            assert!(t.xa < t.xb && t.ya < t.yb);
            assert!(t.uuid.is_some() && t.seed.is_some());
            let n = g.batch_size(&settings);
            assert!((1..=10).contains(&n));
        }
    }

    #[test]
    fn reversed_or_overlapping_ranges_still_give_valid_bounds() {
        let settings = ProducerSettings {
            xa: Range { a: 0.0, b: 2.0 },
            xb: Range { a: -1.0, b: 1.0 },
            ..ProducerSettings::default()
        };
        let mut g = TaskGenerator::with_seed(1);
        for _ in 0..1000 {
            let t = g.task(&settings);
            assert!(t.xa < t.xb, "{t:?}");
        }
    }
}
