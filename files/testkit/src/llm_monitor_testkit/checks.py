"""Helpers the exporters' and the testkit's tests share: free loopback ports, polling, reading an exposition."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

Samples = dict[str, list[tuple[dict[str, str], float]]]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float = 10, step: float = 0.05) -> bool:
    """Poll `predicate` until it is true (an exception counts as false) or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # noqa: S110 - not ready yet
            pass
        time.sleep(step)
    return False


def parse_samples(text: str) -> Samples:
    """A Prometheus text exposition, for assertions: sample name -> [(labels, value)]."""
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return out


def value(samples: Samples, metric: str, /, **labels: str) -> float | None:
    """The value of the first sample of `metric` whose labels include `labels`, or None."""
    for sample_labels, sample_value in samples.get(metric, []):
        if all(sample_labels.get(k) == v for k, v in labels.items()):
            return sample_value
    return None
