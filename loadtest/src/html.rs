//! The self-contained HTML report: the summary tables plus inline SVG charts of connections,
//! hub memory, latency percentiles and throughput over time. No script, no external asset.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::monitor::Sample;
use crate::report::RunReport;

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;
const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A series: name and points (t, value), a missing value breaks the line.
pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, Option<f64>)>,
}

/// A round step for axis ticks covering `span` with about five ticks.
fn nice_step(span: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm < 1.5 {
        1.0
    } else if norm < 3.5 {
        2.0
    } else if norm < 7.5 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v.abs() >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// An inline SVG line chart.
pub fn line_chart(title: &str, unit: &str, series: &[Series], phases: &[(f64, String)]) -> String {
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let t_max = xs.fold(0.0f64, f64::max).max(1.0);
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().filter_map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let y_step = nice_step(y_max.max(1e-9));
    let y_top = ((y_max / y_step).ceil() * y_step).max(y_step);
    let pw = WIDTH - LEFT - RIGHT;
    let ph = HEIGHT - TOP - BOTTOM;
    let x = |t: f64| LEFT + t / t_max * pw;
    let y = |v: f64| TOP + ph - (v / y_top).clamp(0.0, 1.0) * ph;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{t}"><text x="{LEFT}" y="18" class="title">{t} ({u})</text>"##,
        t = escape(title),
        u = escape(unit)
    );
    // Grid and y ticks.
    let mut v = 0.0;
    while v <= y_top + y_step / 2.0 {
        let yy = y(v);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" class="grid"/><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            fmt_tick(v)
        );
        v += y_step;
    }
    let t_step = nice_step(t_max);
    let mut t = 0.0;
    while t <= t_max + 1e-9 {
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" class="tick" text-anchor="middle">{}s</text>"##,
            x(t),
            HEIGHT - BOTTOM + 16.0,
            fmt_tick(t)
        );
        t += t_step;
    }
    for (at, name) in phases {
        let _ = write!(
            svg,
            r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{:.1}" class="phase"/><text x="{:.1}" y="{:.1}" class="phasel">{}</text>"##,
            TOP + ph,
            x(*at) + 3.0,
            TOP + 10.0,
            escape(name),
            xx = x(*at)
        );
    }
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut d = String::new();
        let mut pen_down = false;
        for &(t, v) in &s.points {
            match v.filter(|v| v.is_finite()) {
                Some(v) => {
                    let _ = write!(
                        d,
                        "{}{:.1},{:.1} ",
                        if pen_down { "L" } else { "M" },
                        x(t),
                        y(v)
                    );
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        let _ = write!(
            svg,
            r##"<path d="{d}" fill="none" stroke="{color}" stroke-width="1.6"/><rect x="{:.1}" y="{:.1}" width="10" height="10" fill="{color}"/><text x="{:.1}" y="{:.1}" class="legend">{}</text>"##,
            LEFT + 10.0 + i as f64 * 150.0,
            HEIGHT - 14.0,
            LEFT + 24.0 + i as f64 * 150.0,
            HEIGHT - 5.0,
            escape(s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Where the phase changes in the samples.
fn phases(samples: &[Sample]) -> Vec<(f64, String)> {
    let mut out: Vec<(f64, String)> = Vec::new();
    for s in samples {
        if out.last().is_none_or(|(_, p)| *p != s.phase) {
            out.push((s.t, s.phase.clone()));
        }
    }
    out
}

pub fn render(report: &RunReport) -> String {
    let s = &report.samples;
    let ph = phases(s);
    let series = |name: &'static str, f: &dyn Fn(&Sample) -> Option<f64>| Series {
        name,
        points: s.iter().map(|x| (x.t, f(x))).collect(),
    };
    let mib = |b: Option<u64>| b.map(|b| b as f64 / 1048576.0);
    let has_latency = s.iter().any(|x| x.latency.count > 0);
    let mut charts = Vec::new();
    charts.push(line_chart(
        "Open connections",
        "clients",
        &[series("connections", &|x| Some(x.connections as f64))],
        &ph,
    ));
    charts.push(line_chart(
        "Memory",
        "MiB",
        &[
            series("hub RSS", &|x| mib(x.hub_rss_bytes)),
            series("kernel TCP buffers", &|x| mib(x.tcp_mem_bytes)),
        ],
        &ph,
    ));
    if has_latency {
        let lat = |f: fn(&crate::latency::Percentiles) -> f64| {
            move |x: &Sample| (x.latency.count > 0).then(|| f(&x.latency))
        };
        charts.push(line_chart(
            "Publish → receive latency per interval",
            "ms",
            &[
                series("p50", &lat(|p| p.p50_ms)),
                series("p99", &lat(|p| p.p99_ms)),
                series("p99.9", &lat(|p| p.p999_ms)),
                series("max", &lat(|p| p.max_ms)),
            ],
            &ph,
        ));
    }
    charts.push(line_chart(
        "Deliveries",
        "messages/s received",
        &[series("deliveries/s", &|x| Some(x.deliveries_per_s))],
        &ph,
    ));
    charts.push(line_chart(
        "Publishes",
        "accepted/s",
        &[series("publishes/s", &|x| Some(x.publishes_per_s))],
        &ph,
    ));
    if s.iter().any(|x| x.hub_cpu_percent.is_some()) {
        charts.push(line_chart(
            "CPU",
            "% of one core; machine: % of all cores",
            &[
                series("hub", &|x| x.hub_cpu_percent),
                series("load generator", &|x| x.loadtest_cpu_percent),
                series("whole machine", &|x| x.machine_busy_percent),
            ],
            &ph,
        ));
    }

    let mut html = String::new();
    let _ = write!(
        html,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>crier-loadtest {sc}</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:920px;color:#222}}
table{{border-collapse:collapse;margin:.5em 0 1.5em}}td,th{{padding:2px 10px;border-bottom:1px solid #ddd;text-align:left}}
td.v{{font-family:ui-monospace,monospace}}code{{background:#f4f4f4;padding:2px 4px}}
.ok{{color:#2a7a2a}}.bad{{color:#b00}}svg{{margin:1em 0;display:block}}
.title{{font-weight:600;font-size:14px}}.tick,.legend{{font-size:11px;fill:#444}}.grid{{stroke:#eee}}
.phase{{stroke:#999;stroke-dasharray:4 3}}.phasel{{font-size:10px;fill:#777}}
</style></head><body><h1>crier-loadtest: {sc}</h1><p><code>{cmd}</code></p>"#,
        sc = escape(&report.scenario),
        cmd = escape(&report.command)
    );
    if report.problems.is_empty() {
        html.push_str(r#"<p class="ok"><b>OK</b>: no loss, duplicate, reorder or error.</p>"#);
    } else {
        html.push_str(r#"<p class="bad"><b>Problems</b>:</p><ul>"#);
        for p in &report.problems {
            let _ = write!(html, "<li class=\"bad\">{}</li>", escape(p));
        }
        html.push_str("</ul>");
    }
    for section in &report.sections {
        let _ = write!(html, "<h2>{}</h2><table>", escape(&section.title));
        for (k, v) in &section.rows {
            let _ = write!(
                html,
                "<tr><th>{}</th><td class=\"v\">{}</td></tr>",
                escape(k),
                escape(v)
            );
        }
        html.push_str("</table>");
    }
    html.push_str("<h2>Over time</h2>");
    for c in charts {
        html.push_str(&c);
    }
    let _ = writeln!(
        html,
        "<h2>Settings</h2><pre>{}</pre></body></html>",
        escape(&serde_json::to_string_pretty(&report.settings).unwrap_or_default())
    );
    html
}

/// Writes `DIR/<scenario>-<unix time>.html`; returns the path.
pub fn write(dir: &Path, report: &RunReport) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!(
        "{}-{}.html",
        report.scenario, report.started_unix_s
    ));
    std::fs::write(&path, render(report)).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::Percentiles;
    use crate::report::Section;

    fn sample(t: f64, phase: &str) -> Sample {
        Sample {
            t,
            phase: phase.into(),
            connections: (t * 10.0) as i64,
            deliveries_per_s: 100.0,
            publishes_per_s: 10.0,
            latency: Percentiles {
                count: 5,
                p50_ms: 1.0,
                p90_ms: 2.0,
                p99_ms: 3.0,
                p999_ms: 4.0,
                max_ms: 5.0,
                mean_ms: 1.2,
            },
            hub_rss_bytes: Some(10 << 20),
            loadtest_cpu_percent: None,
            machine_busy_percent: None,
            hub_cpu_percent: Some(50.0),
            tcp_mem_bytes: None,
            hub_closes: 0,
            errors: 0,
        }
    }

    #[test]
    fn report_is_self_contained_and_escaped() {
        let mut sec = Section::new("Latency <all>");
        sec.row("p99", "3.00 ms");
        let report = RunReport {
            scenario: "fanout".into(),
            command: "crier-loadtest fanout --rate 10 & more".into(),
            started_unix_s: 1,
            settings: serde_json::json!({"rate": 10}),
            result: serde_json::json!({}),
            problems: vec![],
            sections: vec![sec],
            samples: vec![
                sample(0.0, "ramp"),
                sample(1.0, "publish"),
                sample(2.0, "publish"),
            ],
        };
        let html = render(&report);
        assert!(html.starts_with("<!doctype html>"));
        assert!(!html.contains("<script"), "no script needed");
        assert!(!html.contains("src=\"http"), "no external asset");
        assert!(html.contains("Latency &lt;all&gt;"));
        assert!(html.contains("--rate 10 &amp; more"));
        assert_eq!(html.matches("<svg").count(), 6);
        assert!(html.contains("publish</text>"), "phase marker");
    }

    #[test]
    fn chart_breaks_line_on_missing_values() {
        let svg = line_chart(
            "x",
            "y",
            &[Series {
                name: "s",
                points: vec![(0.0, Some(1.0)), (1.0, None), (2.0, Some(2.0))],
            }],
            &[],
        );
        let d = svg
            .split("d=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap();
        assert_eq!(d.matches('M').count(), 2, "{d}");
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(10.0), 2.0);
        assert_eq!(nice_step(1000.0), 200.0);
        assert_eq!(nice_step(0.0), 1.0);
    }
}
