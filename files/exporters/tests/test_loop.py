"""The collection loop: snapshots, errors, self-metrics, hang isolation."""

from __future__ import annotations

import gzip
import threading
import time

from prometheus_client.core import GaugeMetricFamily

from conftest import parse_samples, value
from llm_monitor_exporters.core.collector import Collector, Snapshot, SnapshotLoop


class FakeCollector(Collector):
    name = "fake"
    upstream_names = ("thing",)

    def __init__(self) -> None:
        self.n = 0
        self.fail = False
        self.block = threading.Event()
        self.block.set()

    def collect_snapshot(self) -> Snapshot:
        self.block.wait()
        if self.fail:
            raise RuntimeError("boom")
        self.n += 1
        g = GaugeMetricFamily("fake_value", "A value.")
        g.add_metric([], self.n)
        return Snapshot(families=[g], upstreams={"thing": True}, errors={"minor": 1})


def test_snapshot_and_self_metrics() -> None:
    c = FakeCollector()
    loop = SnapshotLoop(c, interval=1)
    before = parse_samples(loop.latest().decode())
    assert value(before, "llm_monitor_exporter_up", upstream="thing") == 0
    loop.run_once()
    s = parse_samples(loop.latest().decode())
    assert value(s, "fake_value") == 1
    assert value(s, "llm_monitor_exporter_up", exporter="fake", upstream="thing") == 1
    assert value(s, "llm_monitor_exporter_collections_total", exporter="fake") == 1
    assert value(s, "llm_monitor_exporter_collection_errors_total", kind="minor") == 1
    assert value(s, "llm_monitor_exporter_collection_errors_total", kind="exception") == 0
    assert value(s, "llm_monitor_exporter_last_success_timestamp_seconds") > time.time() - 60
    assert value(s, "llm_monitor_exporter_snapshot_age_seconds") is not None
    # gzip form is valid and has the same content
    assert gzip.decompress(loop.latest(want_gzip=True)).startswith(
        loop.latest().split(b"# HELP llm_monitor_exporter_snapshot_age")[0]
    )


def test_exception_keeps_last_families() -> None:
    c = FakeCollector()
    loop = SnapshotLoop(c, interval=1)
    loop.run_once()
    c.fail = True
    loop.run_once()
    s = parse_samples(loop.latest().decode())
    assert value(s, "fake_value") == 1
    assert value(s, "llm_monitor_exporter_collection_errors_total", kind="exception") == 1


def test_hung_collector_does_not_block_latest() -> None:
    c = FakeCollector()
    loop = SnapshotLoop(c, interval=0.05)
    loop.run_once()
    c.block.clear()  # the next collection hangs
    loop.start()
    time.sleep(0.2)
    t0 = time.perf_counter()
    for _ in range(100):
        body = loop.latest()
    elapsed = time.perf_counter() - t0
    assert b"fake_value 1.0" in body
    assert elapsed < 0.5
    c.block.set()
    loop.stop()
