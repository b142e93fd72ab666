"""LiteLLM exporter against a REAL LiteLLM proxy (litellm[proxy]==1.106.2 in .cache/litellm-venv).

Skipped with the reason when the venv cannot be built (no PyPI). Only 127.0.0.1 is contacted; the
deployments use mock_response, so no provider is ever called.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import free_port, parse_samples, value
from litellm_proxy import FAKE_API_KEY, MASTER_KEY, LitellmProxy, ensure_venv
from llm_monitor_exporters import traffic
from llm_monitor_exporters.core.collector import SnapshotLoop
from llm_monitor_exporters.litellm.litellm import LitellmCollector, LitellmConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LitellmProxy]:
    ok, msg = ensure_venv()
    if not ok:
        pytest.skip(msg)
    p = LitellmProxy(tmp_path_factory.mktemp("litellm"), free_port())
    p.start()
    yield p
    p.stop()


def _loop(proxy: LitellmProxy, tmp_path: Path, key: str, **kw: object) -> tuple[LitellmCollector, SnapshotLoop]:
    keyfile = tmp_path / "master.key"
    keyfile.write_text(key + "\n")
    cfg = LitellmConfig(base_url=proxy.url, master_key_file=str(keyfile), **kw)  # type: ignore[arg-type]
    col = LitellmCollector(cfg)
    return col, SnapshotLoop(col, interval=1)


def _scrape(loop: SnapshotLoop) -> tuple[str, dict[str, list[tuple[dict[str, str], float]]]]:
    loop.run_once()
    text = loop.latest().decode()
    return text, parse_samples(text)


def test_catalog_readiness_and_cached_health(
    proxy: LitellmProxy, tmp_path: Path, promtool: Callable[[str], None], caplog: pytest.LogCaptureFixture
) -> None:
    col, loop = _loop(proxy, tmp_path, MASTER_KEY, health_interval=300)
    before = proxy.request_count("/health")
    for _ in range(20):
        text, s = _scrape(loop)
    time.sleep(1.0)  # uvicorn's access log is written asynchronously
    assert proxy.request_count("/health") - before == 1, "deployment health must be cached between scrapes"
    assert col.health_calls == 1
    promtool(text)
    assert FAKE_API_KEY not in text and MASTER_KEY not in text
    assert FAKE_API_KEY not in caplog.text and MASTER_KEY not in caplog.text
    assert value(s, "llm_monitor_litellm_up") == 1
    assert value(s, "llm_monitor_litellm_ready", db="Not connected") == 1
    lbl = {
        "model_name": "mock-gpt",
        "provider": "openai",
        "backend": "llm-backend.internal.example",
        "deployment": "openai/gpt-4o-mini",
    }
    assert value(s, "llm_monitor_litellm_deployment_info", **lbl) == 1
    assert value(s, "llm_monitor_litellm_deployment_healthy", **lbl) == 1
    assert (
        value(s, "llm_monitor_litellm_deployment_info", model_name="mock-llama", provider="ollama", backend="10.1.2.3")
        == 1
    )
    age = value(s, "llm_monitor_litellm_health_result_age_seconds")
    assert age is not None and 0 <= age < 60
    # no database: spend is a clear 0, counted once per spend interval, not an error storm
    assert value(s, "llm_monitor_exporter_up", upstream="litellm_spend") == 0
    assert value(s, "llm_monitor_litellm_spend_available", reason="no_database") == 0
    assert value(s, "llm_monitor_exporter_collection_errors_total", kind="no_database") == 1
    assert value(s, "llm_monitor_exporter_up", upstream="litellm_model_info") == 1


def test_wrong_master_key(proxy: LitellmProxy, tmp_path: Path) -> None:
    _col, loop = _loop(proxy, tmp_path, "sk-wrong-key")
    _text, s = _scrape(loop)
    assert value(s, "llm_monitor_litellm_auth_ok") == 0
    assert (value(s, "llm_monitor_exporter_collection_errors_total", kind="auth") or 0) >= 1
    assert value(s, "llm_monitor_exporter_up", upstream="litellm_model_info") == 0
    assert value(s, "llm_monitor_litellm_up") == 1  # the proxy itself is fine
    _text, s = _scrape(loop)  # keeps serving
    assert value(s, "llm_monitor_exporter_collections_total") == 2
    assert "sk-wrong-key" not in _text


def test_proxy_stopped_and_started(proxy: LitellmProxy, tmp_path: Path) -> None:
    _col, loop = _loop(proxy, tmp_path, MASTER_KEY, catalog_interval=0)
    _text, s = _scrape(loop)
    assert value(s, "llm_monitor_litellm_up") == 1
    proxy.stop()
    try:
        t0 = time.monotonic()
        _text, s = _scrape(loop)
        assert time.monotonic() - t0 < 5
        assert value(s, "llm_monitor_litellm_up") == 0
        assert value(s, "llm_monitor_exporter_up", upstream="litellm_ready") == 0
        assert (value(s, "llm_monitor_exporter_collection_errors_total", kind="unreachable") or 0) >= 1
        # the last known catalog is kept while the proxy is down
        assert value(s, "llm_monitor_litellm_deployment_info", model_name="mock-gpt") == 1
    finally:
        proxy.start()
    _text, s = _scrape(loop)
    assert value(s, "llm_monitor_litellm_up") == 1
    assert value(s, "llm_monitor_exporter_up", upstream="litellm_model_info") == 1


def test_master_key_never_on_command_line() -> None:
    from llm_monitor_exporters.cli import build_parser
    from llm_monitor_exporters.registry import by_name

    entry = by_name("litellm")
    parser = build_parser(entry, entry.load())
    help_text = parser._subparsers._group_actions[0].choices["litellm"].format_help()  # type: ignore[union-attr]
    assert "--master-key" not in help_text and "--api-key" not in help_text


def test_traffic_generator_loads_the_real_proxy_with_a_key_file(
    proxy: LitellmProxy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keyfile = tmp_path / "key"
    keyfile.write_text(MASTER_KEY + "\n")
    base = ["--target", proxy.url, "--api", "openai", "--model", "mock-gpt", "--count", "6", "--concurrency", "2"]
    assert traffic.main([*base, "--api-key-file", str(keyfile), "--json", "-", "--quiet"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out)
    assert summary["ok"] == 6 and summary["statuses"] == {"200": 6}
    assert MASTER_KEY not in out
    # without the key LiteLLM refuses every request (400/401 without a database): counted as errors, not crashes
    assert traffic.main([*base, "--json", "-", "--quiet"]) == 0
    refused = json.loads(capsys.readouterr().out)
    assert refused["ok"] == 0 and refused["requests"] == 6
    assert traffic.main([*base, "--api-key-file", str(tmp_path / "missing")]) == 2
    assert "--api-key-file" in capsys.readouterr().err
