"""No dead queries: every metric an alert or recording rule of the collection names exists, with the labels the rule
uses, in the recorded exposition of one of the collection's exporters or of a named upstream.

The rules: the alert catalog (files/rules/catalog/*.yml, whatever files it holds) rendered against
tests/rules/hostvars.yml, the SLO rules of every backend and objective, and files/rules/gpu_dcgm_compat.rules.yml.
The expositions: tests/unit/fixtures/expositions/*.prom (the collection's exporters, recorded by
tests/harness/record_expositions.py; node_exporter, Prometheus, Alertmanager), the GPU exporter's
tests/unit/fixtures/gpu_exporter_h200*.prom, vLLM's series (files/testkit/.../samples/vllm/series.json) and LiteLLM's
/metrics (files/exporters/tests/fixtures/litellm/metrics.txt), plus the series Prometheus makes for every target (up,
scrape_*).

A label a rule uses must be one the series carries: a matcher's, on the series it selects; by's and without's, on
some series of the aggregated expression; on's, on both sides; ignoring's, on either; group_left/right's, on the
"one" side; label_replace's source and histogram_quantile's le, on its argument. Carried means emitted by the
exporter, or a target label (job, instance, host, the fleet labels of the test inventory; on vLLM's own series the
HTTP SD's container and model; on LiteLLM's, litellm_<name> for a label of its that a target label displaces, e.g.
litellm_team). A recording rule's series carry what its expression can carry plus its labels. Values of job
matchers must be scrape jobs of the collection, values of le matchers bucket bounds of the histogram (where the
recording has its buckets). The alerts' annotations may use only labels their expression's result can carry.

No PromQL library is available, so the expressions are parsed here: a tokenizer and a small precedence-climbing
parser of PromQL's grammar, and a pass that works out which labels each sub-expression can carry.
"""

from __future__ import annotations

import pytest
import yaml
from promql_check import (
    CATALOG,
    DCGM_RULES,
    Aggregate,
    Binary,
    Checker,
    PromQLError,
    Rule,
    Violation,
    load_sources,
    parse,
    parse_exposition,
    rendered_rules,
    scrape_jobs,
    selectors,
)


@pytest.fixture(scope="module")
def checker() -> Checker:
    return Checker(load_sources(), scrape_jobs())


def _listing(violations: list[Violation]) -> str:
    return f"{len(violations)} dead queries:\n" + "\n".join(f"  {v}" for v in violations)


def test_no_rule_uses_a_metric_or_label_that_no_exposition_has(checker: Checker) -> None:
    rules = rendered_rules()
    violations = checker.check(rules)
    assert not violations, _listing(violations)


def test_every_catalog_file_and_rule_source_is_checked() -> None:
    rules = rendered_rules()
    files = {r.file for r in rules}
    for catalog in sorted(CATALOG.glob("*.yml")):
        group = yaml.safe_load(catalog.read_text())["group"]
        assert f"llm_monitor_{group}.rules.yml" in files, f"{catalog.name}: no rules rendered from it"
    assert {"llm_monitor_slo.rules.yml", DCGM_RULES.name} <= files
    slo = [r for r in rules if r.file == "llm_monitor_slo.rules.yml"]
    assert {r.labels.get("slo") for r in slo if not r.record} == {
        f"m-{backend}-{sli}"
        for backend, slis in (("vllm", "availability ttft latency"), ("litellm", "availability latency"),
                              ("ollama", "availability ttft latency"))
        for sli in slis.split()
    }, "every backend and objective"  # fmt: skip
    every_selector = [s for r in rules for s in selectors(parse(r.expr))]
    assert len(every_selector) > 200


def test_the_expositions_are_read() -> None:
    sources = {s.name: s for s in load_sources()}
    expected = {
        "node_exporter.prom": ("node_filesystem_avail_bytes", {"device", "fstype", "mountpoint"}),
        "prometheus.prom": ("prometheus_rule_evaluation_failures_total", {"rule_group"}),
        "alertmanager.prom": ("alertmanager_notifications_failed_total", {"integration"}),
        "gpu_exporter_h200.prom": ("llm_monitor_gpu_up", {"gpu", "uuid", "name", "pci_bus_id"}),
        "llm_monitor_containers.prom": ("llm_monitor_container_state", {"name", "id", "image", "state"}),
        "llm_monitor_vllm.prom": ("llm_monitor_vllm_http_reachable", {"target", "container", "source"}),
        "llm_monitor_litellm.prom": ("llm_monitor_litellm_up", set()),
        "llm_monitor_langfuse.prom": ("llm_monitor_langfuse_api_requests_total", {"project", "endpoint", "status"}),
        "llm_monitor_ollama_proxy.prom": ("llm_monitor_ollama_time_to_first_token_seconds_bucket", {"model", "le"}),
        "vllm series.json": ("vllm:time_to_first_token_seconds_bucket", {"engine", "model_name", "le"}),
        "litellm metrics.txt": ("litellm_deployment_state", {"litellm_model_name", "api_base"}),
        "Prometheus (every target)": ("up", set()),
    }
    for source, (metric, labels) in expected.items():
        assert source in sources, f"{source} not loaded"
        assert labels <= sources[source].series.get(metric, frozenset({"<missing>"})), (source, metric)
    counted = parse_exposition('# TYPE a_total counter\n# TYPE h histogram\nb{x="a,b=\\"c}"} 1 123\n', "t")
    assert counted == {"a_total": frozenset(), "h_bucket": {"le"}, "h_sum": frozenset(), "h_count": frozenset(),
                       "b": {"x"}}  # fmt: skip


def test_scrape_jobs_are_the_collections() -> None:
    assert {"prometheus", "node", "alertmanager", "litellm", "vllm", "gpu", "containers", "vllm_exporter",
            "litellm_exporter", "langfuse", "ollama_proxy"} <= scrape_jobs()  # fmt: skip


def test_tokenizer_and_parser() -> None:
    text = 'sum by (a, b) (rate(x_total{job="j",le=~"1|2"}[5m:30s] offset 1h)) / on (a) group_left (c) y or vector(1)'
    tree = parse(text)
    assert [(s.name, [m.label for m in s.matchers]) for s in selectors(tree)] == [("x_total", ["job", "le"]), ("y", [])]
    assert isinstance(tree, Binary) and tree.op == "or"
    div = tree.lhs
    assert isinstance(div, Binary) and (div.op, div.matching, div.labels, div.group, div.include) == (
        "/", "on", ["a"], "group_left", ["c"])  # fmt: skip
    assert isinstance(div.lhs, Aggregate) and div.lhs.grouping == ["a", "b"]
    # strings, numbers, durations, keywords and function names are not metrics
    tree = parse('label_replace(up, "dst", "$1", "instance", "(.*):.*") > bool 1e3 and on() time() - 5m < +Inf')
    assert [s.name for s in selectors(tree)] == ["up"]
    tree = parse('max without (reason) (a{r="x"} or b) > 2 unless count(c) by (k) # a comment')
    assert [s.name for s in selectors(tree)] == ["a", "b", "c"]
    assert [s.name for s in selectors(parse('{__name__="q", x!~"y"} @ start()'))] == ["q"]
    assert [s.name for s in selectors(parse("vllm:kv_cache_usage_perc[1h:5m]"))] == ["vllm:kv_cache_usage_perc"]
    for bad in ("sum(", "a{b=}", "a{b='c'", "rate(x[5m]", "a +", "$threshold"):
        with pytest.raises(PromQLError):
            parse(bad)


def _dead(checker: Checker, expr: str, record: bool = False) -> set[tuple[str, str]]:
    rules = [Rule("t.yml", "Test", expr, {}, record)]
    return {(v.metric, v.label) for v in checker.check(rules)}


def test_the_checker_catches_dead_queries(checker: Checker) -> None:
    # a label the exposition lacks (as a peer's proxy never emitted the label its alerts used)
    assert _dead(checker, 'llm_monitor_litellm_up{model_name="x"} == 0') == {("llm_monitor_litellm_up", "model_name")}
    # a metric that does not exist
    assert _dead(checker, "rate(llm_monitor_vllm_requests_total[5m]) > 0") == {("llm_monitor_vllm_requests_total", "")}
    # a job that does not exist
    assert _dead(checker, 'up{job="node_exporter"} == 0') == {("up", "job")}
    assert _dead(checker, 'up{job=~"gpu|litellm_proxy"} == 0') == {("up", "job")}
    # by, on, group_left, label_replace, histogram_quantile on labels the series do not carry
    assert _dead(checker, "sum by (host, model) (rate(litellm_proxy_total_requests_metric_total[5m]))") == {
        ("sum by (host, model)", "model")}  # fmt: skip
    assert _dead(checker, "node_load15 / on (instance, gpu) node_load1") == {("/ on(instance, gpu)", "gpu")}
    assert _dead(checker, "node_load1 * on (instance) group_left (kernel) node_uname_info") == {
        ("group_left(kernel)", "kernel")}  # fmt: skip
    assert _dead(checker, 'label_replace(node_load1, "x", "$1", "nodename", "(.*)")') == {
        ("label_replace()", "nodename")
    }
    assert _dead(checker, "histogram_quantile(0.9, rate(vllm:e2e_request_latency_seconds_count[5m]))") == {
        ("histogram_quantile()", "le")}  # fmt: skip
    assert _dead(checker, "rat(up[5m])") == {("rat()", "")}
    # a bucket bound the histogram does not have (2 s: the Ollama proxy's bounds are 1.0, 2.0, 5.0 ...)
    assert _dead(checker, 'llm_monitor_ollama_load_duration_seconds_bucket{le="2.0"}') == {
        ("llm_monitor_ollama_load_duration_seconds_bucket", "le")
    }
    assert not _dead(checker, 'llm_monitor_ollama_load_duration_seconds_bucket{le=~"2.5|\\+Inf"}')
    # what the series carry is not reported: emitted labels, target labels, vLLM's SD labels on vLLM's series
    assert not _dead(checker, 'sum by (job, instance, host, container, model) (vllm:num_requests_waiting{engine="0"})')
    assert not _dead(checker, 'node_filesystem_avail_bytes{mountpoint="/",datacenter="fra1"}')
    assert _dead(checker, 'llm_monitor_gpu_up{model="x"}') == {("llm_monitor_gpu_up", "model")}
    # a recording rule's series carry what its expression can carry and its labels
    rules = [
        Rule("t.yml", "job:up:count", "count by (job) (up)", {"team": "a", "slo": "x"}, True),
        Rule("t.yml", "Uses", 'job:up:count{slo="x",job="gpu"} > 0 and job:up:count{uuid="y"}', {}, False),
    ]
    assert [(v.rule, v.metric, v.label) for v in checker.check(rules)] == [("Uses", "job:up:count", "uuid")]
    # an annotation on a label the alert's series cannot carry (sum by keeps host only)
    rule = Rule("t.yml", "A", "sum by (host) (llm_monitor_gpu_up) == 0", {"team": "x"}, False,
                {"summary": "{{ $labels.host }} {{ $labels.team }} {{ $labels.gpu }}"})  # fmt: skip
    assert [(v.metric, v.label) for v in checker.check([rule])] == [("(annotations)", "gpu")]
    # every violation at once, with the rule's name
    rules = [Rule("a.yml", "A", "nope_a + nope_b", {}, False), Rule("b.yml", "B", 'up{job="x"}', {}, False)]
    assert [str(v) for v in checker.check(rules)] == [
        "a.yml: A: nope_a: no such metric in any recorded exposition, nor a recording rule",
        "a.yml: A: nope_b: no such metric in any recorded exposition, nor a recording rule",
        "b.yml: B: up label 'job': job 'x' is no scrape job (" + ", ".join(sorted(checker.jobs)) + ")",
    ]
