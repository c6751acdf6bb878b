//! The scenarios. Each turns its arguments into an engine `Plan` (or two), runs it and turns
//! the outcome into a `RunReport`: summary sections, problems, machine-readable result.

pub mod engine;
pub mod fanout;
pub mod idle;
pub mod slow;
pub mod smoke;
pub mod soak;
pub mod storm;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use crate::ctx::Ctx;
use crate::frame::eviction_figures;
use crate::monitor::ProgressMode;
use crate::report::{bytes, ms, rate, signed_bytes, Section};
use crate::target::{check_fd_budget, Target};
use engine::{Outcome, Plan};

/// What every scenario needs from the global options.
pub struct Env {
    pub target: Target,
    pub hub_procs: Option<crate::procfs::HubProcs>,
    pub progress: ProgressMode,
    pub sample_interval: Duration,
    pub nofile_limit: u64,
    pub interrupted: CancellationToken,
    pub command: String,
}

impl Env {
    /// Runs one plan on a fresh context (counters and histograms start at zero).
    pub async fn run(&self, plan: &Plan) -> Result<Outcome> {
        check_fd_budget(sockets_needed(plan), self.nofile_limit)?;
        let ctx: Arc<Ctx> = Ctx::new(
            self.target.clone(),
            self.hub_procs.clone(),
            self.interrupted.clone(),
        )?;
        engine::run(ctx, plan, self.progress, self.sample_interval).await
    }
}

/// Client sockets a plan holds at its peak: subscribers (a long-poll client briefly holds a
/// second one while its previous poll is torn down), slow clients, publishers.
pub fn sockets_needed(plan: &Plan) -> u64 {
    let slow_extra = plan
        .slow_every
        .map(|(every, batch)| {
            (plan.duration.as_secs_f64() / every.as_secs_f64().max(0.001)).ceil() as u64
                * batch as u64
        })
        .unwrap_or(0);
    let lp_share = match plan.transport {
        crate::client::Transport::Lp => plan.clients,
        crate::client::Transport::Mix => plan.clients / 2,
        crate::client::Transport::Ws => 0,
    } as u64;
    let publishers = plan.publish.map(|p| p.publishers as u64).unwrap_or(0);
    plan.clients as u64 + lp_share / 10 + plan.slow as u64 + slow_extra + publishers + 16
}

fn opt_bytes(v: Option<u64>) -> String {
    v.map(bytes)
        .unwrap_or_else(|| "n/a (no --server-pid)".into())
}

/// The connection-side sections every scenario shows.
pub fn connection_section(o: &Outcome) -> Section {
    let mut s = Section::new("Connections");
    s.row(
        "subscribed",
        format!("{} of {}", o.ramp.subscribed, o.ramp.wanted),
    )
    .row(
        "ramp",
        format!(
            "{:.2} s, {} connects",
            o.ramp.seconds,
            rate(o.ramp.connects_per_s)
        ),
    )
    .row("connect failures", o.ramp.connect_failures.to_string())
    .row(
        "SYNs dropped, accept queue full (ramp)",
        o.ramp
            .listen_overflows
            .map_or_else(|| "n/a".to_owned(), |n| n.to_string()),
    )
    .row(
        "closed by the hub during the run",
        o.hub_closes_during_run.to_string(),
    )
    .row("reconnects (resume)", o.reconnects.to_string());
    if !o.close_reasons.is_empty() {
        let reasons: Vec<String> = o
            .close_reasons
            .iter()
            .map(|(r, n)| format!("{r}: {n}"))
            .collect();
        s.row("hub close reasons", reasons.join(", "));
    }
    s
}

pub fn memory_section(o: &Outcome) -> Section {
    let m = &o.memory;
    let mut s = Section::new("Memory");
    s.row("hub RSS before", opt_bytes(m.hub_rss_before))
        .row("hub RSS after ramp", opt_bytes(m.hub_rss_after_ramp))
        .row("hub RSS at end", opt_bytes(m.hub_rss_end))
        .row("hub peak RSS (VmHWM)", opt_bytes(m.hub_peak_rss));
    if let Some(p) = m.hub_rss_per_connection {
        s.row("hub RSS per connection", signed_bytes(p as i64));
    }
    if let (Some(b), Some(a), Some(p)) = (
        m.hub_pss_before,
        m.hub_pss_after_ramp,
        m.hub_pss_per_connection,
    ) {
        s.row(
            "hub PSS before → after ramp",
            format!(
                "{} → {} ({} per connection)",
                bytes(b),
                bytes(a),
                signed_bytes(p as i64)
            ),
        );
    }
    if let (Some(b), Some(a)) = (m.tcp_mem_before, m.tcp_mem_after_ramp) {
        s.row(
            "kernel TCP buffers",
            format!("{} → {} (both ends, whole machine)", bytes(b), bytes(a)),
        );
    }
    // Socket memory counts queued data only and moves with everything else on the machine:
    // a per-connection figure means something only when it grew.
    if let Some(p) = m.tcp_mem_per_connection.filter(|p| *p > 0.0) {
        s.row("kernel TCP per connection", signed_bytes(p as i64));
    }
    s
}

pub fn delivery_section(o: &Outcome) -> Section {
    let mut s = Section::new("Throughput and latency");
    s.row(
        "publishes accepted",
        format!(
            "{} ({}), errors {}, rejected {}, pushed back (503 overloaded) {}",
            o.publishes_accepted,
            rate(o.publishes_per_s),
            o.publish_errors,
            o.publish_rejected,
            o.publish_pushback
        ),
    )
    .row(
        "deliveries",
        if o.hub_enqueued > 0 {
            format!(
                "{} ({}); hub reported {} enqueued",
                o.deliveries,
                rate(o.deliveries_per_s),
                o.hub_enqueued
            )
        } else {
            format!("{} ({})", o.deliveries, rate(o.deliveries_per_s))
        },
    )
    .row(
        "latency p50 / p99 / p99.9 / max",
        format!(
            "{} / {} / {} / {}",
            ms(o.latency.p50_ms),
            ms(o.latency.p99_ms),
            ms(o.latency.p999_ms),
            ms(o.latency.max_ms)
        ),
    );
    if o.publish_rtt.count > 0 {
        s.row(
            "publish round trip p50 / p99 / max",
            format!(
                "{} / {} / {}",
                ms(o.publish_rtt.p50_ms),
                ms(o.publish_rtt.p99_ms),
                ms(o.publish_rtt.max_ms)
            ),
        );
    }
    if let Some(cpu) = o.hub_cpu_seconds {
        s.row("hub CPU time", format!("{cpu:.2} s"));
    }
    if let Some(us) = o.hub_cpu_us_per_delivery {
        s.row("hub CPU per delivery", format!("{us:.2} µs"));
    }
    s
}

pub fn accounting_section(o: &Outcome) -> Section {
    let t = &o.tally;
    let mut s = Section::new("Exactly-once accounting (by offset)");
    s.row("subscribers checked", t.subscribers.to_string())
        .row("messages received", t.received.to_string())
        .row("lost", t.lost.to_string())
        .row("duplicated", t.duplicates.to_string())
        .row("out of order", t.reordered.to_string())
        .row(
            "`missed` notices (told, not lost)",
            format!("{} ({} offsets)", t.missed_notices, t.told_missed),
        );
    if t.unknown_offsets > 0 {
        s.row(
            "offsets with no publish reply",
            t.unknown_offsets.to_string(),
        );
    }
    if o.tally_by_transport.len() > 1 {
        for (k, v) in &o.tally_by_transport {
            s.row(
                &format!("{k}: received / lost / dup / reorder"),
                format!(
                    "{} / {} / {} / {}",
                    v.received, v.lost, v.duplicates, v.reordered
                ),
            );
        }
    }
    s
}

pub fn errors_section(o: &Outcome) -> Option<Section> {
    let evictions: Vec<(String, u64)> = o
        .hub_stats_after
        .as_ref()
        .map(eviction_figures)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    if o.errors.is_empty() && evictions.is_empty() {
        return None;
    }
    let mut s = Section::new("Errors and hub counters");
    for (k, n) in &o.errors {
        s.row(k, n.to_string());
    }
    for (k, n) in evictions {
        s.row(&format!("hub /api/stats {k}"), n.to_string());
    }
    Some(s)
}

/// What broke the promise. `allow_hub_closes`: closes are expected (slow clients, storms).
pub fn problems(o: &Outcome, allow_hub_closes: bool) -> Vec<String> {
    let mut p = Vec::new();
    let t = &o.tally;
    if t.lost > 0 {
        p.push(format!("{} messages lost", t.lost));
    }
    if t.duplicates > 0 {
        p.push(format!("{} messages duplicated", t.duplicates));
    }
    if t.reordered > 0 {
        p.push(format!("{} messages out of order", t.reordered));
    }
    if t.epoch_changes > 0 {
        p.push(format!("{} unexpected epoch changes", t.epoch_changes));
    }
    if o.ramp.subscribed < o.ramp.wanted {
        p.push(format!(
            "only {} of {} clients subscribed",
            o.ramp.subscribed, o.ramp.wanted
        ));
    }
    if o.ramp.connect_failures > 0 {
        p.push(format!("{} connect failures", o.ramp.connect_failures));
    }
    if o.publish_errors + o.publish_rejected > 0 {
        p.push(format!(
            "{} publishes failed, {} rejected",
            o.publish_errors, o.publish_rejected
        ));
    }
    if !allow_hub_closes && o.hub_closes_during_run > 0 {
        p.push(format!(
            "the hub closed {} healthy connections",
            o.hub_closes_during_run
        ));
    }
    let other_errors: u64 = o
        .errors
        .iter()
        .filter(|(k, _)| !k.starts_with("ws connect") && !k.starts_with("lp connect"))
        .filter(|(k, _)| !k.starts_with("publish"))
        .map(|(_, n)| n)
        .sum();
    if other_errors > 0 {
        p.push(format!("{other_errors} client-side errors (see Errors)"));
    }
    if o.interrupted {
        p.push("interrupted (Ctrl-C): partial figures".into());
    }
    p
}

pub fn machine_section(o: &Outcome) -> Section {
    let m = &o.machine;
    let mut s = Section::new("Machine (hub and load generator share it)");
    let f = |v: Option<f64>, unit: &str| {
        v.map(|v| format!("{v:.1}{unit}"))
            .unwrap_or_else(|| "n/a".into())
    };
    s.row(
        "load average before → after",
        format!("{} → {}", f(m.loadavg_before, ""), f(m.loadavg_after, "")),
    )
    .row(
        "machine busy during the run",
        f(m.busy_percent, "% of all cores"),
    )
    .row("load generator CPU", f(m.loadtest_cpu_seconds, " s"));
    s
}

/// Standard sections for a publishing run.
pub fn standard_sections(o: &Outcome) -> Vec<Section> {
    let mut v = vec![
        connection_section(o),
        delivery_section(o),
        accounting_section(o),
        memory_section(o),
        machine_section(o),
    ];
    v.extend(errors_section(o));
    v
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
