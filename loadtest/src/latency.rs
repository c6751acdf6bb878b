//! Latency measurement: one clock shared by publishers and subscribers (both live in this
//! process), and HDR histograms sharded by subscriber so recording stays uncontended.
//!
//! Latency is measured from the *intended* send time that the publisher writes into the
//! message, not from when the request actually left: a publisher that fell behind schedule
//! (because the hub was slow to answer) must not hide that delay (coordinated omission).

use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Microseconds on a monotonic clock anchored to wall time once, so values written into
/// messages are readable as Unix time yet never jump.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    base_unix_us: u64,
}

impl Clock {
    pub fn new() -> Self {
        let base_unix_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Self {
            base: Instant::now(),
            base_unix_us,
        }
    }

    pub fn now_us(&self) -> u64 {
        self.base_unix_us + self.base.elapsed().as_micros() as u64
    }

    /// The clock value of an `Instant` taken in this process.
    pub fn at(&self, instant: Instant) -> u64 {
        self.base_unix_us + instant.saturating_duration_since(self.base).as_micros() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Highest latency a histogram tracks (values above are clamped): 10 minutes.
const MAX_US: u64 = 600_000_000;
const SHARDS: usize = 32;

fn new_histogram() -> Histogram<u64> {
    // 3 significant digits: 0.1% error, enough for p999.
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

struct Shard {
    total: Histogram<u64>,
    interval: Histogram<u64>,
}

/// Latencies from many tasks: a whole-run histogram and an interval one that the sampler
/// drains every tick (for latency over time).
pub struct LatencyRecorder {
    shards: Vec<Mutex<Shard>>,
}

impl LatencyRecorder {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        total: new_histogram(),
                        interval: new_histogram(),
                    })
                })
                .collect(),
        }
    }

    /// Records one latency in microseconds; `key` picks the shard (the subscriber's id).
    pub fn record(&self, key: usize, latency_us: u64) {
        let v = latency_us.clamp(1, MAX_US);
        let mut shard = self.shards[key % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        shard.total.saturating_record(v);
        shard.interval.saturating_record(v);
    }

    /// Takes the interval histogram (and resets it).
    pub fn take_interval(&self) -> Histogram<u64> {
        let mut out = new_histogram();
        for shard in &self.shards {
            let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
            // Same bounds on both sides: adding cannot fail.
            let _ = out.add(&s.interval);
            s.interval.reset();
        }
        out
    }

    pub fn total(&self) -> Histogram<u64> {
        let mut out = new_histogram();
        for shard in &self.shards {
            let s = shard.lock().unwrap_or_else(|p| p.into_inner());
            let _ = out.add(&s.total);
        }
        out
    }

    /// Clears everything (between a warm-up and the measured part, or two runs).
    pub fn reset(&self) {
        for shard in &self.shards {
            let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
            s.total.reset();
            s.interval.reset();
        }
    }
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

/// Percentiles in milliseconds.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_from_shards() {
        let r = LatencyRecorder::new();
        for i in 1..=1000u64 {
            r.record(i as usize, i * 1000);
        }
        let p = Percentiles::of(&r.total());
        assert_eq!(p.count, 1000);
        assert!((p.p50_ms - 500.0).abs() < 1.0, "{p:?}");
        assert!((p.p99_ms - 990.0).abs() < 1.5, "{p:?}");
        assert!((p.max_ms - 1000.0).abs() < 1.0, "{p:?}");
        let interval = r.take_interval();
        assert_eq!(interval.len(), 1000);
        assert_eq!(r.take_interval().len(), 0);
        assert_eq!(r.total().len(), 1000);
    }

    #[test]
    fn empty_histogram_gives_zeroes() {
        assert_eq!(Percentiles::of(&new_histogram()), Percentiles::default());
    }

    #[test]
    fn clock_is_monotonic_unix_micros() {
        let c = Clock::new();
        let a = c.now_us();
        let b = c.now_us();
        assert!(b >= a);
        assert!(a > 1_600_000_000_000_000);
    }
}
