//! The summary sections every scenario draws from an engine `Outcome`, and the problems
//! (broken promises) it found.

use super::figures::{Outcome, SlowFigures};
use crate::frame::eviction_figures;
use crate::report::{bytes, ms, rate, signed_bytes, Section};

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
    if o.lp_responses > 0 {
        s.row(
            "long-poll responses (whole run)",
            format!(
                "{}, {:.2} frames each on average",
                o.lp_responses,
                o.lp_frames as f64 / o.lp_responses as f64
            ),
        );
    }
    if let Some(cpu) = o.hub_cpu_seconds {
        s.row("hub CPU time", format!("{cpu:.2} s"));
    }
    if let Some(us) = o.hub_cpu_us_per_delivery {
        let split = o.hub_cpu_kernel_share.map_or(String::new(), |k| {
            format!(
                " ({:.2} µs kernel, {:.2} µs user space)",
                us * k,
                us * (1.0 - k)
            )
        });
        s.row("hub CPU per delivery", format!("{us:.2} µs{split}"));
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

/// What broke the promise. Slow clients' evictions are expected and do not count; a healthy
/// client the hub closed does (the storm's and churn's drops are the tool's, not the hub's).
pub fn problems(o: &Outcome) -> Vec<String> {
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
    if o.hub_closes_during_run > 0 {
        p.push(format!(
            "the hub closed {} healthy connections",
            o.hub_closes_during_run
        ));
    }
    if o.client_errors > 0 {
        p.push(format!(
            "{} client-side errors (see Errors)",
            o.client_errors
        ));
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

/// A publishing run's sections: the scenario's own (`lead`) first, then the standard ones.
pub fn standard_sections(o: &Outcome, lead: impl IntoIterator<Item = Section>) -> Vec<Section> {
    let mut v: Vec<Section> = lead.into_iter().collect();
    v.extend([
        connection_section(o),
        delivery_section(o),
        accounting_section(o),
        memory_section(o),
        machine_section(o),
    ]);
    v.extend(errors_section(o));
    v
}

/// A run without publishing: the scenario's own sections (`lead`) first, then connections,
/// memory, the machine and errors.
pub fn hold_sections(o: &Outcome, lead: impl IntoIterator<Item = Section>) -> Vec<Section> {
    let mut v: Vec<Section> = lead.into_iter().collect();
    v.extend([connection_section(o), memory_section(o), machine_section(o)]);
    v.extend(errors_section(o));
    v
}

/// How the slow clients fared: connected, ended by the hub, evicted as slow.
pub fn slow_clients_section(title: &str, slow: &SlowFigures) -> Section {
    let mut s = Section::new(title);
    s.row(
        "connected",
        format!("{} of {}", slow.connected, slow.wanted),
    )
    .row("ended by the hub (any way)", slow.ended_by_hub.to_string())
    .row(
        "of which with close code 4000 slow",
        slow.evicted_slow.to_string(),
    );
    s
}

/// One row per way the slow clients ended (`ended: 4000 slow`).
pub fn slow_ending_rows(s: &mut Section, slow: &SlowFigures) {
    for (ending, n) in &slow.endings {
        s.row(&format!("ended: {ending}"), n.to_string());
    }
}
