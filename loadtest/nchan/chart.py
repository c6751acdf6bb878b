#!/usr/bin/env python3
"""Draws the crier-vs-nchan comparison from a compare.sh output directory as one SVG.

Usage: loadtest/nchan/chart.py target/nchan-compare > docs/benchmarks-vs-nchan.svg

Reads the JSON results the load tool saved (nothing is typed in by hand) and draws four
panels, lower is better in each: RSS per idle WebSocket at 15k, hub CPU per delivery at
saturation, p99 publish->receive at 20k deliveries/s, and hub memory growth with 200 stuck
clients among 2000.
"""
import json
import sys
from pathlib import Path


def load(out, hub, run):
    return json.loads((out / f"{hub}-{run}.json").read_text())["result"]


def figures(out, hub):
    idle = load(out, hub, "idle15k")["memory"]["hub_rss_per_connection"] / 1024
    sat = load(out, hub, "sat")["hub_cpu_us_per_delivery"]
    moderate = load(out, hub, "rate20k")["hub_cpu_us_per_delivery"]
    p99 = load(out, hub, "rate20k")["latency"]["p99_ms"]
    slow = load(out, hub, "slow")["with_slow"]["memory"]
    growth = (slow["hub_peak_rss"] - slow["hub_rss_after_ramp"]) / (1 << 20)
    return [idle, moderate, sat, p99, growth]


PANELS = [
    ("RSS per idle WebSocket, 15k connections", "KiB"),
    ("hub CPU per delivery at 20k deliveries/s", "µs"),
    ("hub CPU per delivery at saturation", "µs"),
    ("p99 publish→receive at 20k deliveries/s", "ms"),
    ("memory growth, 200 stuck clients of 2000", "MiB"),
]
HUBS = [("nchan", "#9ca3af"), ("crier", "#4f46e5")]


def main():
    out = Path(sys.argv[1])
    values = {hub: figures(out, hub) for hub, _ in HUBS}
    width, panel_h, bar_h, left, right = 760, 92, 22, 170, 90
    height = 40 + panel_h * len(PANELS)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="13">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        '<text x="16" y="24" font-size="15" font-weight="bold">crier vs nginx + nchan, same '
        "machine, same load generator (lower is better)</text>",
    ]
    for i, (title, unit) in enumerate(PANELS):
        top = 40 + i * panel_h
        parts.append(f'<text x="16" y="{top + 18}" font-weight="bold">{title}</text>')
        scale = max(values[hub][i] for hub, _ in HUBS) or 1
        for j, (hub, colour) in enumerate(HUBS):
            y = top + 28 + j * (bar_h + 6)
            value = values[hub][i]
            length = (width - left - right) * value / scale
            parts.append(f'<text x="{left - 10}" y="{y + 16}" text-anchor="end">{hub}</text>')
            parts.append(
                f'<rect x="{left}" y="{y}" width="{length:.1f}" height="{bar_h}" fill="{colour}"/>'
            )
            parts.append(f'<text x="{left + length + 6:.1f}" y="{y + 16}">{value:.1f} {unit}</text>')
    parts.append("</svg>")
    print("\n".join(parts))


if __name__ == "__main__":
    main()
