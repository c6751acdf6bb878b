//! `soak`: a long mixed run — churn with resume, slow clients joining, both transports,
//! steady publishing — sampled over time so a leak or a drift shows.

use anyhow::Result;

use super::plan::Plan;
use super::sections::{slow_clients_section, slow_ending_rows, standard_sections};
use super::{Env, Findings};
use crate::cli::SoakArgs;
use crate::monitor::Sample;
use crate::report::{bytes, ms, Section};

/// Median of a slice (sorted copy).
fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

/// Medians over the first, middle and last fifth of the publishing samples. The middle one
/// matters: channel history fills during the first part of a run (up to `--history-size`
/// messages per channel), so growth from the middle to the end is the figure that hints at a
/// leak.
pub fn drift(samples: &[Sample], f: impl Fn(&Sample) -> Option<f64>) -> Option<(f64, f64, f64)> {
    let measured: Vec<&Sample> = samples.iter().filter(|s| s.phase == "publish").collect();
    if measured.len() < 5 {
        return None;
    }
    let fifth = measured.len() / 5;
    let med = |part: &[&Sample]| median(part.iter().filter_map(|s| f(s)).collect());
    let mid_start = (measured.len() - fifth) / 2;
    Some((
        med(&measured[..fifth])?,
        med(&measured[mid_start..mid_start + fifth])?,
        med(&measured[measured.len() - fifth..])?,
    ))
}

pub async fn run(env: &Env, args: &SoakArgs) -> Result<Findings> {
    let plan = Plan {
        slow_recv_buffer: args.slow_recv_buffer,
        slow_every: (args.slow_batch > 0).then_some((args.slow_every, args.slow_batch)),
        churn_per_s: args.churn,
        ..Plan::publishing(&args.clients, &args.publish)
    };
    let o = env.run(&plan).await?;
    let mut d = Section::new("Drift (medians of the first, middle and last fifth of the run)");
    match drift(&o.samples, |s| s.hub_rss_bytes.map(|b| b as f64)) {
        Some((a, m, b)) => {
            d.row(
                "hub RSS",
                format!(
                    "{} → {} → {}",
                    bytes(a as u64),
                    bytes(m as u64),
                    bytes(b as u64)
                ),
            )
            .row(
                "hub RSS growth, middle → end",
                format!("{:+.1}%", (b - m) / m.max(1.0) * 100.0),
            );
        }
        None => {
            d.row("hub RSS", "n/a (no --server-pid or run too short)");
        }
    }
    let p99 = |s: &Sample| (s.latency.count > 0).then_some(s.latency.p99_ms);
    if let Some((a, m, b)) = drift(&o.samples, p99) {
        d.row(
            "latency p99 per interval",
            format!("{} → {} → {}", ms(a), ms(m), ms(b)),
        );
    }
    if let Some((a, m, b)) = drift(&o.samples, |s| Some(s.connections as f64)) {
        d.row("open connections", format!("{a:.0} → {m:.0} → {b:.0}"));
    }
    let mut slow = slow_clients_section("Slow clients added during the run", &o.slow);
    slow_ending_rows(&mut slow, &o.slow);
    let sections = standard_sections(&o, [d, slow]);
    // Churned clients are closed by us, not the hub; slow clients' evictions are expected,
    // but a healthy client closed by the hub is still a problem: the standard problems.
    Findings::of(o, sections, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::Percentiles;

    #[test]
    fn drift_compares_first_middle_and_last_fifth() {
        let samples: Vec<Sample> = (0..10)
            .map(|i| Sample {
                t: i as f64,
                phase: "publish".into(),
                connections: 1,
                deliveries_per_s: 0.0,
                publishes_per_s: 0.0,
                latency: Percentiles::default(),
                hub_rss_bytes: Some(100 + i * 10),
                loadtest_cpu_percent: None,
                machine_busy_percent: None,
                hub_cpu_percent: None,
                tcp_mem_bytes: None,
                hub_closes: 0,
                errors: 0,
            })
            .collect();
        let (a, m, b) = drift(&samples, |s| s.hub_rss_bytes.map(|b| b as f64)).unwrap();
        assert_eq!((a, m, b), (110.0, 150.0, 190.0));
        assert!(drift(&samples[..3], |s| Some(s.t)).is_none());
    }
}
