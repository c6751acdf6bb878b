//! `slow`: fanout plus K clients that never read, next to a baseline run without them. The
//! question: do healthy clients notice? (They should not: the hub evicts the slow ones.)

use anyhow::Result;

use super::figures::Outcome;
use super::sections::{problems, slow_clients_section, slow_ending_rows, standard_sections};
use super::{fanout, Env, Findings};
use crate::cli::SlowArgs;
use crate::frame::eviction_figures;
use crate::monitor::Sample;
use crate::report::{bytes, ms, rate, Section};

fn eviction_delta(o: &Outcome) -> Vec<(String, i64)> {
    let before = o
        .hub_stats_before
        .as_ref()
        .map(eviction_figures)
        .unwrap_or_default();
    o.hub_stats_after
        .as_ref()
        .map(eviction_figures)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, after)| {
            let b = before.iter().find(|(bk, _)| *bk == k).map_or(0, |x| x.1);
            (k, after as i64 - b as i64)
        })
        .collect()
}

fn peak_sampled_rss(samples: &[Sample]) -> Option<u64> {
    samples.iter().filter_map(|s| s.hub_rss_bytes).max()
}

pub async fn run(env: &Env, args: &SlowArgs) -> Result<Findings> {
    let healthy_plan = fanout::plan(&args.fanout);
    let baseline = if args.no_baseline {
        None
    } else {
        eprintln!("slow: baseline run without slow clients");
        Some(env.run(&healthy_plan).await?)
    };
    let mut plan = healthy_plan;
    plan.slow = args.slow;
    plan.slow_recv_buffer = args.slow_recv_buffer;
    eprintln!("slow: run with {} slow clients", args.slow);
    let o = env.run(&plan).await?;

    let mut cmp = Section::new("Healthy clients: baseline vs with slow clients");
    let fmt = |x: &Outcome| {
        format!(
            "p50 {} p99 {} p99.9 {} max {}; {} deliveries; hub peak sampled RSS {}",
            ms(x.latency.p50_ms),
            ms(x.latency.p99_ms),
            ms(x.latency.p999_ms),
            ms(x.latency.max_ms),
            rate(x.deliveries_per_s),
            peak_sampled_rss(&x.samples)
                .map(bytes)
                .unwrap_or_else(|| "n/a".into())
        )
    };
    if let Some(b) = &baseline {
        cmp.row("baseline", fmt(b));
    }
    cmp.row(&format!("with {} slow", args.slow), fmt(&o));
    let mut slow_sec = slow_clients_section("Slow clients", &o.slow);
    slow_sec.row(
        "frames waiting when they read at the end",
        o.slow.frames_read_at_end.to_string(),
    );
    slow_ending_rows(&mut slow_sec, &o.slow);
    for (k, d) in eviction_delta(&o).into_iter().filter(|(_, d)| *d != 0) {
        slow_sec.row(&format!("hub /api/stats {k} (delta)"), d.to_string());
    }
    if let Some(peak) = o.memory.hub_peak_rss {
        slow_sec.row("hub VmHWM at end", bytes(peak));
    }
    if o.slow.connected > 0 && o.slow.ended_by_hub == 0 {
        let per_channel = o.publishes_accepted / args.fanout.clients.channels.max(1) as u64;
        slow_sec.row(
            "note",
            format!(
                "the hub ended no slow client: each channel carried about {per_channel} messages, \
                 which the hub's queue plus socket buffers absorbed; raise --rate or --duration, \
                 or start the hub with a smaller --queue-capacity"
            ),
        );
    }
    let sections = standard_sections(&o, [cmp, slow_sec]);

    // Healthy clients must not be evicted; slow ones are expected to be.
    let mut probs = problems(&o);
    if let Some(b) = &baseline {
        probs.extend(problems(b).into_iter().map(|p| format!("baseline: {p}")));
    }
    let mut samples: Vec<Sample> = Vec::new();
    let mut offset = 0.0;
    if let Some(b) = &baseline {
        for s in &b.samples {
            let mut s = s.clone();
            s.phase = format!("baseline {}", s.phase);
            samples.push(s);
        }
        offset = b.samples.last().map_or(0.0, |s| s.t);
    }
    for s in &o.samples {
        let mut s = s.clone();
        s.t += offset;
        samples.push(s);
    }
    let result = serde_json::json!({
        "baseline": baseline,
        "with_slow": o,
        "hub_eviction_delta": eviction_delta(&o),
    });
    Ok(Findings {
        result,
        sections,
        problems: probs,
        samples,
    })
}
