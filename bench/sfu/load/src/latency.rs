//! One-way latency over all stamped packets of a window: a fixed histogram,
//! so recording a sample costs an index and an add however many arrive.

use serde::Serialize;

/// Exact (1 µs buckets) below this: loopback latencies live here.
const LINEAR_US: u64 = 10_000;
/// Above `LINEAR_US`, each bucket is this much wider than the last.
const LOG_STEP: f64 = 0.01;
/// The largest latency counted; later packets are counted in the last bucket.
const MAX_US: u64 = 60_000_000;

pub struct Histogram {
    counts: Vec<u64>,
    n: u64,
    max_us: u64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Summary {
    pub n: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

fn log_buckets() -> usize {
    ((MAX_US as f64 / LINEAR_US as f64).ln() / LOG_STEP.ln_1p()).ceil() as usize + 1
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; LINEAR_US as usize + log_buckets()],
            n: 0,
            max_us: 0,
        }
    }
}

impl Histogram {
    fn bucket(us: u64) -> usize {
        if us < LINEAR_US {
            return us as usize;
        }
        let k = ((us as f64 / LINEAR_US as f64).ln() / LOG_STEP.ln_1p()) as usize;
        LINEAR_US as usize + k.min(log_buckets() - 1)
    }

    /// The value a bucket stands for: its lower edge.
    fn value(bucket: usize) -> f64 {
        if bucket < LINEAR_US as usize {
            return bucket as f64;
        }
        LINEAR_US as f64 * (1.0 + LOG_STEP).powi((bucket - LINEAR_US as usize) as i32)
    }

    pub fn record(&mut self, us: u64) {
        let us = us.min(MAX_US);
        self.counts[Self::bucket(us)] += 1;
        self.n += 1;
        self.max_us = self.max_us.max(us);
    }

    pub fn reset(&mut self) {
        self.counts.fill(0);
        self.n = 0;
        self.max_us = 0;
    }

    fn quantile(&self, q: f64) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        let want = ((q * self.n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Self::value(i).min(self.max_us as f64);
            }
        }
        self.max_us as f64
    }

    pub fn summary(&self) -> Summary {
        // Whole µs: the log buckets' edges carry no meaningful fraction.
        let q = |p| self.quantile(p).round();
        Summary {
            n: self.n,
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            max: self.max_us as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_below_ten_ms() {
        let mut h = Histogram::default();
        for us in 1..=100 {
            h.record(us);
        }
        let s = h.summary();
        assert_eq!(
            (s.n, s.p50, s.p90, s.p99, s.max),
            (100, 50.0, 90.0, 99.0, 100.0)
        );
        h.reset();
        assert_eq!(
            h.summary(),
            Summary {
                n: 0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                max: 0.0
            }
        );
    }

    #[test]
    fn within_a_percent_above_ten_ms() {
        let mut h = Histogram::default();
        h.record(250_000);
        h.record(u64::MAX);
        let p50 = h.summary().p50;
        assert!((p50 - 250_000.0).abs() / 250_000.0 < LOG_STEP, "{p50}");
        assert_eq!(h.summary().max, MAX_US as f64);
    }
}
