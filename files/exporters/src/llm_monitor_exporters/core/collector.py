"""Collector interface and the background collection loop.

Every exporter implements :class:`Collector`. A :class:`SnapshotLoop` calls
``collect_snapshot()`` on its own thread every ``interval`` seconds and renders the result (plus
the self-metrics) into exposition bytes once. HTTP scrapes only copy the last rendered bytes, so a
slow or hung upstream never blocks or slows a scrape: it only makes the snapshot older.
"""

from __future__ import annotations

import abc
import gzip
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest

from llm_monitor_exporters.core.selfmetrics import SelfMetrics, snapshot_age_text

log = logging.getLogger(__name__)


@dataclass
class Snapshot:
    """One collection result.

    ``families``: metric families to expose. ``upstreams``: upstream name -> answered (exported as
    ``llm_monitor_exporter_up``). ``errors``: error kind -> count in this cycle.
    """

    families: list[Metric] = field(default_factory=list)
    upstreams: dict[str, bool] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)


class Collector(abc.ABC):
    """What an exporter implements."""

    #: exporter name (``gpu``, ``containers``): used in the ``exporter`` label of self-metrics
    name: str = "base"
    #: error kinds pre-declared at 0 in ``llm_monitor_exporter_collection_errors_total``
    error_kinds: tuple[str, ...] = ()
    #: upstreams reported as down until the first cycle says otherwise
    upstream_names: tuple[str, ...] = ()

    def start(self) -> None:  # noqa: B027 - optional hook
        """Start helper threads (event watchers, slow samplers). Called once before the loop starts."""

    @abc.abstractmethod
    def collect_snapshot(self) -> Snapshot:
        """Collect one snapshot. Must not raise for upstream errors it can report as data."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop helper threads and release resources."""

    def http_routes(self) -> dict[str, Callable[[], tuple[int, str, bytes]]]:
        """Extra GET paths served next to the metrics (same TLS/basic auth): path -> () -> (code, type, body)."""
        return {}


class _View:
    """Registered in the per-loop CollectorRegistry; yields the current families."""

    def __init__(self, loop: SnapshotLoop) -> None:
        self._loop = loop

    def collect(self) -> Iterator[Metric]:
        yield from self._loop.current_families()


class SnapshotLoop:
    """Runs a collector on a background thread and keeps the last rendered snapshot."""

    def __init__(self, collector: Collector, interval: float) -> None:
        self.collector = collector
        self.interval = interval
        self.self_metrics = SelfMetrics(collector.name)
        self.self_metrics.declare_error_kinds(("exception", *collector.error_kinds))
        self.self_metrics.upstreams.update(dict.fromkeys(collector.upstream_names, False))
        self._families: list[Metric] = []
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_View(self))
        self._lock = threading.Lock()
        self._rendered = generate_latest(self.registry)
        self._gzipped: bytes | None = None
        self._rendered_at = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.first_cycle_done = threading.Event()

    def current_families(self) -> list[Metric]:
        return [*self._families, *self.self_metrics.families()]

    def run_once(self) -> None:
        """Run one collection cycle and render it (called by the loop thread; tests call it directly)."""
        t0 = time.perf_counter()
        c0 = time.thread_time()
        ok = True
        try:
            snap = self.collector.collect_snapshot()
        except Exception:
            log.exception("collection cycle of exporter %s failed", self.collector.name)
            snap = Snapshot(families=self._families, errors={"exception": 1})
            ok = False
        self._families = snap.families
        self.self_metrics.record_cycle(
            duration=time.perf_counter() - t0,
            cpu=time.thread_time() - c0,
            ok=ok,
            finished_at=time.time(),
            upstreams=snap.upstreams,
            errors=snap.errors,
        )
        body = generate_latest(self.registry)
        with self._lock:
            self._rendered = body
            self._gzipped = None
            self._rendered_at = time.time()
        self.first_cycle_done.set()

    def latest(self, want_gzip: bool = False) -> bytes:
        """The last rendered snapshot plus the per-scrape snapshot age (optionally gzip-compressed).

        The gzip form is computed once per snapshot. The age line is appended uncompressed data
        when not gzipping; with gzip, a second gzip member is appended (valid per RFC 1952).
        """
        with self._lock:
            body, rendered_at = self._rendered, self._rendered_at
            if want_gzip and self._gzipped is None:
                self._gzipped = gzip.compress(body, compresslevel=1)
            zipped = self._gzipped
        age = snapshot_age_text(self.collector.name, max(0.0, time.time() - rendered_at))
        if want_gzip and zipped is not None:
            return zipped + gzip.compress(age, compresslevel=1)
        return body + age

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.run_once()
            elapsed = time.monotonic() - started
            self._stop.wait(max(0.0, self.interval - elapsed))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"collect-{self.collector.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning(
                    "collection thread of exporter %s did not stop within %.0fs (upstream hung?)",
                    self.collector.name,
                    timeout,
                )
