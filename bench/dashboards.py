#!/usr/bin/env python3
"""Query times of the collection's Grafana dashboards on a fleet's real Prometheus.

    bench/dashboards.py                        # the demo fleet, every query 5 times
    bench/dashboards.py --fleet probe --runs 10

Every Prometheus query of every dashboard (files/dashboards, its template variables All, as
tests/harness/dashboard_queries.py resolves them) runs N times as a range query over the last hour at the step
Grafana gives a 1 h panel (15 s), and N times as an instant query. Printed per dashboard: its queries, the
median and p95 of each kind (over every run of every query), and the slowest query (by its median range time).
Then the queries that read recording rules (a series named level:metric:operations) against those that compute
a quantile from raw histogram buckets (histogram_quantile over _bucket), side by side. Times are the HTTP round
trip to the fleet's published Prometheus (127.0.0.1), or curl's own time inside the monitoring host where the
fleet publishes none.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "tests" / "harness"))

import fleet as harness  # noqa: E402
from dashboard_queries import PanelQuery, load_dashboards, panel_queries  # noqa: E402

STEP = 15  # Grafana's step for a 1 h panel of about 1,000 px at the data source's 15 s scrape interval
RANGE = 3600
# A recorded series (level:metric:operations, as the collection's rules name them); vLLM's own names have one colon.
RECORDED = re.compile(r"\b[a-zA-Z_][a-zA-Z0-9_]*:[a-zA-Z0-9_]+:[a-zA-Z0-9_]+\b")


def kind(expr: str) -> str:
    if "histogram_quantile(" in expr and "_bucket" in expr:
        return "raw histogram"
    if RECORDED.search(expr):
        return "recording rule"
    return "other"


@dataclass
class Timed:
    query: PanelQuery
    instant_ms: list[float] = field(default_factory=list)
    range_ms: list[float] = field(default_factory=list)
    errors: int = 0


class Client:
    """GET a Prometheus API path and time it."""

    def __init__(self, fleet: harness.Fleet) -> None:
        self.fleet = fleet

    def get(self, path: str) -> tuple[float, bool]:
        """(milliseconds, answered with success)."""
        if self.fleet.publish is not None:
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.fleet.publish}{path}", timeout=60) as response:
                    ok = json.loads(response.read()).get("status") == "success"
            except OSError:
                ok = False
            return (time.perf_counter() - start) * 1000, ok
        # no published port: curl's own timing inside the monitoring host (docker exec would dominate otherwise)
        mon = harness.first_monitoring_host(self.fleet)
        url = f"http://127.0.0.1:9090{path}"
        out = harness.docker(
            "exec", self.fleet.container(mon), "curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", url
        )
        code, seconds = out.stdout.split()
        return float(seconds) * 1000, code == "200"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))] if ordered else 0.0


def run(client: Client, queries: list[PanelQuery], runs: int) -> list[Timed]:
    timed = [Timed(q) for q in queries]
    for _ in range(runs):
        end = time.time()
        for t in timed:
            expr = urllib.parse.quote(t.query.expr)
            ms, ok = client.get(f"/api/v1/query?query={expr}&time={end:.3f}")
            t.instant_ms.append(ms)
            t.errors += not ok
            ms, ok = client.get(f"/api/v1/query_range?query={expr}&start={end - RANGE:.3f}&end={end:.3f}&step={STEP}")
            t.range_ms.append(ms)
            t.errors += not ok
    return timed


def report(timed: list[Timed], runs: int) -> None:
    print(f"dashboard queries: {runs} runs each, range = last {RANGE // 60} min at step {STEP}s, and instant")
    head = f"  {'dashboard':<34} {'queries':>7} {'inst med':>9} {'inst p95':>9} {'range med':>9} {'range p95':>9}"
    print(head + "   slowest query (range median)")
    by_board: dict[str, list[Timed]] = {}
    for t in timed:
        by_board.setdefault(t.query.dashboard, []).append(t)
    for board, items in by_board.items():
        instant = [ms for t in items for ms in t.instant_ms]
        ranged = [ms for t in items for ms in t.range_ms]
        slow = max(items, key=lambda t: statistics.median(t.range_ms))
        name = f"{slow.query.panel} {slow.query.ref_id}"
        print(
            f"  {board.removeprefix('llm-monitor-'):<34} {len(items):>7} {statistics.median(instant):>7.1f}ms "
            f"{pct(instant, 95):>7.1f}ms {statistics.median(ranged):>7.1f}ms {pct(ranged, 95):>7.1f}ms"
            f"   {statistics.median(slow.range_ms):.1f} ms  {name[:48]}"
        )
    everything_i = [ms for t in timed for ms in t.instant_ms]
    everything_r = [ms for t in timed for ms in t.range_ms]
    print(
        f"  {'all':<34} {len(timed):>7} {statistics.median(everything_i):>7.1f}ms {pct(everything_i, 95):>7.1f}ms "
        f"{statistics.median(everything_r):>7.1f}ms {pct(everything_r, 95):>7.1f}ms"
    )
    errors = sum(t.errors for t in timed)
    if errors:
        print(f"  {errors} requests were answered with an error:")
        for t in timed:
            if t.errors:
                print(f"    {t.query.dashboard} / {t.query.panel} {t.query.ref_id}: {t.query.expr[:100]}")
    print("recording-rule queries vs raw-histogram queries (median over every run)")
    groups: dict[str, list[Timed]] = {}
    for t in timed:
        groups.setdefault(kind(t.query.expr), []).append(t)
    rec, raw = groups.get("recording rule", []), groups.get("raw histogram", [])
    for label, attr in (("instant", "instant_ms"), ("range 1h", "range_ms")):
        r = statistics.median([ms for t in rec for ms in getattr(t, attr)]) if rec else 0.0
        h = statistics.median([ms for t in raw for ms in getattr(t, attr)]) if raw else 0.0
        ratio = f"{h / r:5.2f}" if r else "  n/a"
        print(
            f"  {label:<9} recording rules ({len(rec)} queries) {r:7.1f} ms   raw histograms ({len(raw)} queries) "
            f"{h:7.1f} ms   ratio raw/recorded {ratio}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fleet", default="demo", help="fleet name (tests/harness/fleet.py; default: demo)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each query, of each kind (default: 5)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    fleet = harness.Fleet.load(args.fleet)
    queries = [q for board in load_dashboards() for q in panel_queries(board, {})]
    timed = run(Client(fleet), queries, args.runs)
    report(timed, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
