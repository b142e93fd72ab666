"""LiteLLM collector: unit tests against responses recorded from a real 1.106.2 proxy (tests/fixtures/litellm)."""

from __future__ import annotations

import json
from collections.abc import Callable

from conftest import FIXTURES
from llm_monitor_exporters.litellm.litellm import host_of, parse_health, parse_model_info, parse_spend, provider_of

REC = FIXTURES / "litellm"


def test_recorded_model_info_catalog_has_no_secrets() -> None:
    data = json.loads((REC / "model_info.json").read_text())
    deps = parse_model_info(data)
    assert deps is not None
    by_name = {d.model_name: d for d in deps}
    assert by_name["mock-gpt"].provider == "openai"
    assert by_name["mock-gpt"].backend == "llm-backend.internal.example"
    assert by_name["mock-gpt"].deployment == "openai/gpt-4o-mini"
    assert by_name["mock-llama"].provider == "ollama"
    assert by_name["mock-llama"].backend == "10.1.2.3"


def test_recorded_health_maps_to_deployments() -> None:
    health = parse_health(json.loads((REC / "health.json").read_text()))
    assert health == {("openai/gpt-4o-mini", "llm-backend.internal.example"): True, ("ollama/llama3", "10.1.2.3"): True}
    assert parse_health(
        {"healthy_endpoints": [], "unhealthy_endpoints": [{"model": "x/y", "api_base": "http://h:1"}]}
    ) == {("x/y", "h"): False}
    assert parse_health([1]) is None


def test_helpers() -> None:
    assert host_of("https://user:pw@api.example.com:8443/v1?key=abc") == "api.example.com"
    assert host_of(None) == "" and host_of("not a url") == "not a url"
    assert provider_of({"model": "gpt-4o", "custom_llm_provider": "azure"}) == "azure"
    assert provider_of({"model": "bedrock/anthropic.claude"}) == "bedrock"
    assert parse_model_info({"data": "x"}) is None
    assert parse_spend([{"key_alias": "k1", "total_spend": 1.5}, {"key_alias": "k1", "total_spend": 0.5}], "keys") == [
        ("k1", 2.0)
    ]
    # /global/spend/teams of LiteLLM 1.106 (spend_management_endpoints.py): built for its admin UI
    teams = {
        "daily_spend": [{"date": "2026-12-01", "ml": 1.25, "Unassigned": 0.5}],
        "teams": ["ml", "Unassigned"],
        "total_spend_per_team": [{"team_id": "ml", "total_spend": 1.25}, {"team_id": "Unassigned", "total_spend": 0.5}],
    }
    assert parse_spend(teams, "teams") == [("Unassigned", 0.5), ("ml", 1.25)]


def test_recorded_litellm_metrics_names(promtool: Callable[[str], None]) -> None:
    """The real proxy's /metrics (prometheus callback) has the names the dashboards and rules use."""
    text = (REC / "metrics.txt").read_text()
    for name in (
        "litellm_proxy_total_requests_metric_total",
        "litellm_deployment_state",
        "litellm_request_total_latency_metric_bucket",
        "litellm_input_tokens_metric_total",
        "litellm_deployment_success_responses_total",
    ):
        assert name in text, name
