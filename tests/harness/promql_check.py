"""The PromQL checker the rule and dashboard tests share: the recorded expositions of the collection's exporters and
upstreams, a tokenizer and a small precedence-climbing parser of PromQL's grammar, and a pass that works out which
labels each sub-expression can carry (tests/unit/test_rule_metrics.py describes what it checks).

No PromQL library is available, so the expressions are parsed here.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "collections"))

from ansible_collections.llm_monitor.fleet.plugins.filter.alert_rules import alert_rules, slo_rules  # noqa: E402
from ansible_collections.llm_monitor.fleet.plugins.module_utils.fleet_catalog import EXPORTERS  # noqa: E402

CATALOG = REPO / "files/rules/catalog"
DCGM_RULES = REPO / "files/rules/gpu_dcgm_compat.rules.yml"
HOSTVARS: dict[str, dict[str, Any]] = yaml.safe_load((REPO / "tests/rules/hostvars.yml").read_text())
RUNBOOK_BASE = "https://runbooks.example/docs/runbooks"
EXPOSITIONS = REPO / "tests/unit/fixtures/expositions"
GPU_EXPOSITIONS = sorted((REPO / "tests/unit/fixtures").glob("gpu_exporter_*.prom"))
VLLM_SERIES = REPO / "files/testkit/src/llm_monitor_testkit/samples/vllm/series.json"
LITELLM_METRICS = REPO / "files/exporters/tests/fixtures/litellm/metrics.txt"
PROMETHEUS_DEFAULTS = REPO / "roles/prometheus/defaults/main.yml"
EXAMPLE_INVENTORY = REPO / "inventories/example"

#: one SLO per backend and objective the backends have (as tests/unit/test_slo_rules.py)
SLOS = [
    {"model": "m", "backend": "vllm", "availability": 0.999, "ttft": {"seconds": 1, "target": 0.95},
     "latency": {"seconds": 10, "target": 0.9}},
    {"model": "m", "backend": "litellm", "availability": 0.99, "latency": {"seconds": 2.0, "target": 0.9}},
    {"model": "m", "backend": "ollama", "availability": 0.9, "ttft": {"seconds": 2, "target": 0.9},
     "latency": {"seconds": 30, "target": 0.9}},
]  # fmt: skip

# ------------------------------------------------------------------------------------------------------------------
# Expositions
# ------------------------------------------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{.*\})?\s+\S+(\s+\S+)?\s*$")
_LE = re.compile(r'[{,]\s*le\s*=\s*"([^"]*)"')
_LABEL_PAIR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')


def parse_exposition(text: str, where: str) -> dict[str, frozenset[str]]:
    """Prometheus text format -> {sample name: label names}. A family declared (TYPE) without samples exists with
    the sample names of its type and no labels known."""
    out: dict[str, set[str]] = {}
    declared: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "TYPE":
                declared[parts[2]] = parts[3]
            continue
        m = _SAMPLE.match(line)
        if m is None:
            raise ValueError(f"{where}:{n}: not a sample line: {raw!r}")
        labels = out.setdefault(m.group(1), set())
        body = (m.group(2) or "{}")[1:-1]
        pos = 0
        while pos < len(body):
            pair = _LABEL_PAIR.match(body, pos)
            if pair is None:
                raise ValueError(f"{where}:{n}: bad label set: {raw!r}")
            labels.add(pair.group(1))
            pos = pair.end()
    for family, kind in declared.items():
        names = sample_names(family, kind)
        if not any(name in out for name in names):
            for name, implied in names.items():
                out[name] = set(implied)
    return {k: frozenset(v) for k, v in out.items()}


def sample_names(family: str, kind: str) -> dict[str, frozenset[str]]:
    """The samples of a family as its TYPE line spells it (a counter's name ends in _total in the text format)
    -> the labels its type adds."""
    if kind == "histogram":
        return {f"{family}_bucket": frozenset({"le"}), f"{family}_sum": frozenset(), f"{family}_count": frozenset()}
    if kind == "summary":  # the quantiles, where a summary has them, are samples of their own
        return {f"{family}_sum": frozenset(), f"{family}_count": frozenset()}
    if kind == "counter" and not family.endswith("_total"):
        return {f"{family}_total": frozenset()}
    return {family: frozenset()}


def bucket_bounds(text: str) -> dict[str, frozenset[str]]:
    """{histogram _bucket name: the le values its samples have}."""
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line.strip())
        le = _LE.search(line) if m and m.group(1).endswith("_bucket") else None
        if m and le:
            out.setdefault(m.group(1), set()).add(le.group(1))
    return {k: frozenset(v) for k, v in out.items()}


def series_json_exposition(path: Path) -> dict[str, frozenset[str]]:
    """vLLM's families recorded in series.json (names as the TYPE lines spell them), every condition's groups."""
    doc = json.loads(path.read_text())
    out: dict[str, frozenset[str]] = {}
    for group in doc["groups"].values():
        for fam in group["families"]:
            for name, labels in sample_names(fam["name"], fam["type"]).items():
                out[name] = out.get(name, frozenset()) | labels | frozenset(fam["labels"])
    return out


@dataclass(frozen=True)
class Source:
    """One recorded exposition: its series and the target labels Prometheus gives them besides the common ones."""

    name: str
    series: Mapping[str, frozenset[str]]
    target_labels: frozenset[str] = frozenset()
    #: the bucket bounds of its histograms, where the recording has samples
    bounds: Mapping[str, frozenset[str]] = field(default_factory=dict)


def fleet_labels() -> frozenset[str]:
    """Names of the fleet_labels of the test inventories (tests/rules/hostvars.yml, inventories/example)."""
    names: set[str] = set()
    docs: list[Any] = list(HOSTVARS.values())
    for f in sorted(EXAMPLE_INVENTORY.rglob("*.yml")):
        docs.append(yaml.safe_load(f.read_text()))
    for doc in docs:
        if isinstance(doc, Mapping) and isinstance(doc.get("fleet_labels"), Mapping):
            names.update(str(k) for k in doc["fleet_labels"])
    return frozenset(names)


#: labels Prometheus puts on every series of every target (the prometheus role: instance and host = the inventory
#: hostname, plus the host's fleet_labels)
COMMON_TARGET_LABELS = frozenset({"job", "instance", "host", *fleet_labels()})
#: what Prometheus itself writes for every target
SCRAPE_SERIES = ("up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
                 "scrape_series_added")  # fmt: skip


def load_sources() -> list[Source]:
    sources = [
        Source(f.name, parse_exposition(text, str(f)), bounds=bucket_bounds(text))
        for f in [*sorted(EXPOSITIONS.glob("*.prom")), *GPU_EXPOSITIONS]
        for text in [f.read_text()]
    ]
    sources.append(Source("vllm series.json", series_json_exposition(VLLM_SERIES), frozenset({"container", "model"})))
    litellm = parse_exposition(LITELLM_METRICS.read_text(), str(LITELLM_METRICS))
    # the litellm job keeps a label of LiteLLM's that a target label displaces as litellm_<name> (its
    # metric_relabel_configs in roles/prometheus/defaults/main.yml): team, where the fleet labels have a team
    emitted = frozenset(label for labels in litellm.values() for label in labels)
    displaced = frozenset(f"litellm_{label}" for label in emitted & COMMON_TARGET_LABELS)
    sources.append(Source("litellm metrics.txt", litellm, displaced, bucket_bounds(LITELLM_METRICS.read_text())))
    sources.append(Source("Prometheus (every target)", dict.fromkeys(SCRAPE_SERIES, frozenset())))
    return sources


def scrape_jobs() -> frozenset[str]:
    """The collection's scrape jobs: the prometheus role's prometheus_scrape_jobs, one per exporter of the exporter
    catalog, and vllm (vLLM's own /metrics through the vLLM exporters' HTTP SD)."""
    defaults = yaml.safe_load(PROMETHEUS_DEFAULTS.read_text())
    jobs = {str(j["name"]) for j in defaults["prometheus_scrape_jobs"]} | {e.job for e in EXPORTERS}
    template = (REPO / "roles/prometheus/templates/prometheus.yml.j2").read_text()
    jobs.update(re.findall(r"^\s*- job_name: ([a-z_]+)\s*$", template, re.MULTILINE))
    return frozenset(jobs)


# ------------------------------------------------------------------------------------------------------------------
# PromQL: tokens
# ------------------------------------------------------------------------------------------------------------------


class PromQLError(ValueError):
    pass


@dataclass(frozen=True)
class Token:
    kind: str  # IDENT NUMBER DURATION STRING OP EOF
    text: str
    pos: int
    value: str = ""  # a string's decoded value


_DURATION = re.compile(r"(?:[0-9]+(?:ms|[smhdwy]))+(?![a-zA-Z0-9_:])")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_IDENT_IN_BRACKETS = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_OPS = ("==", "!=", ">=", "<=", "=~", "!~", ">", "<", "=", "+", "-", "*", "/", "%", "^", "(", ")", "{", "}", "[",
        "]", ",", ":", "@")  # fmt: skip
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"', "'": "'"}


def _unquote(text: str) -> str:
    if text[0] == "`":
        return text[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), text[1:-1])


def tokenize(expr: str) -> list[Token]:
    tokens: list[Token] = []
    i, brackets = 0, 0
    while i < len(expr):
        c = expr[i]
        if c.isspace():
            i += 1
            continue
        if c == "#":  # a comment, to the end of the line
            end = expr.find("\n", i)
            i = len(expr) if end < 0 else end
            continue
        if c in "\"'`":
            j = i + 1
            while j < len(expr) and expr[j] != c:
                j += 2 if expr[j] == "\\" and c != "`" else 1
            if j >= len(expr):
                raise PromQLError(f"unterminated string at {i}")
            tokens.append(Token("STRING", expr[i : j + 1], i, _unquote(expr[i : j + 1])))
            i = j + 1
            continue
        m = _DURATION.match(expr, i)
        if m:
            tokens.append(Token("DURATION", m.group(), i))
            i = m.end()
            continue
        m = _NUMBER.match(expr, i)
        if m and not (c == "." and not m.group()[1:2].isdigit()):
            tokens.append(Token("NUMBER", m.group(), i))
            i = m.end()
            continue
        m = (_IDENT_IN_BRACKETS if brackets else _IDENT).match(expr, i)
        if m:
            word = m.group()
            tokens.append(Token("NUMBER" if word.lower() in ("inf", "nan") else "IDENT", word, i))
            i = m.end()
            continue
        op = next((o for o in _OPS if expr.startswith(o, i)), None)
        if op is None:
            raise PromQLError(f"unexpected character {c!r} at {i}")
        brackets += {"[": 1, "]": -1}.get(op, 0)
        tokens.append(Token("OP", op, i))
        i += len(op)
    tokens.append(Token("EOF", "", len(expr)))
    return tokens


# ------------------------------------------------------------------------------------------------------------------
# PromQL: syntax tree and parser
# ------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str


@dataclass
class Selector:
    name: str | None
    matchers: list[Matcher]
    text: str


@dataclass
class Call:
    func: str
    args: list[Node]


@dataclass
class Aggregate:
    op: str
    grouping: list[str] | None  # None: no by/without
    without: bool
    param: Node | None
    expr: Node


@dataclass
class Binary:
    op: str
    lhs: Node
    rhs: Node
    matching: str | None = None  # on | ignoring
    labels: list[str] = field(default_factory=list)
    group: str | None = None  # group_left | group_right
    include: list[str] = field(default_factory=list)


@dataclass
class Wrapped:
    """Parentheses, a unary sign, a range, a subquery, an offset or an @: the labels of what it wraps."""

    expr: Node


@dataclass
class Literal:
    kind: str  # scalar | string
    text: str


Node = Selector | Call | Aggregate | Binary | Wrapped | Literal

AGGREGATORS = {"sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "topk", "bottomk", "count_values",
               "quantile", "limitk", "limit_ratio"}  # fmt: skip
FUNCTIONS = {
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh", "avg_over_time", "ceil",
    "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh", "count_over_time", "day_of_month", "day_of_week",
    "day_of_year", "days_in_month", "deg", "delta", "deriv", "double_exponential_smoothing", "exp", "floor",
    "histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile", "histogram_stddev",
    "histogram_stdvar", "histogram_sum", "hour", "idelta", "increase", "info", "irate", "label_join",
    "label_replace", "last_over_time", "ln", "log10", "log2", "mad_over_time", "max_over_time", "min_over_time",
    "minute", "month", "pi", "predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets",
    "round", "scalar", "sgn", "sin", "sinh", "sort", "sort_by_label", "sort_by_label_desc", "sort_desc", "sqrt",
    "stddev_over_time", "stdvar_over_time", "sum_over_time", "tan", "tanh", "time", "timestamp", "vector", "year",
}  # fmt: skip
#: binary operators by precedence, lowest first; ^ is right-associative
PRECEDENCE = {"or": 1, "and": 2, "unless": 2, "==": 3, "!=": 3, "<=": 3, "<": 3, ">=": 3, ">": 3, "+": 4, "-": 4,
              "*": 5, "/": 5, "%": 5, "atan2": 5, "^": 6}  # fmt: skip
SET_OPERATORS = {"and", "or", "unless"}


class Parser:
    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.tokens = tokenize(expr)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def error(self, what: str) -> PromQLError:
        return PromQLError(f"{what} at {self.tok.pos} ({self.expr[self.tok.pos : self.tok.pos + 30]!r})")

    def take(self, text: str | None = None, kind: str | None = None) -> Token:
        tok = self.tok
        if (text is not None and tok.text != text) or (kind is not None and tok.kind != kind):
            raise self.error(f"expected {text or kind}")
        self.i += 1
        return tok

    def accept(self, text: str) -> bool:
        if self.tok.text == text and self.tok.kind in ("OP", "IDENT"):
            self.i += 1
            return True
        return False

    def parse(self) -> Node:
        node = self.expression(0)
        if self.tok.kind != "EOF":
            raise self.error("unexpected token")
        return node

    def binary_op(self) -> str | None:
        tok = self.tok
        if tok.kind == "OP" and tok.text in PRECEDENCE:
            return tok.text
        if tok.kind == "IDENT" and tok.text.lower() in PRECEDENCE:
            return tok.text.lower()
        return None

    def expression(self, min_prec: int) -> Node:
        lhs = self.unary()
        while (op := self.binary_op()) is not None and PRECEDENCE[op] >= min_prec:
            self.i += 1
            node = Binary(op, lhs, Literal("scalar", ""))
            self.accept("bool")
            if self.tok.text in ("on", "ignoring"):
                node.matching = self.take().text
                node.labels = self.label_list()
                if self.tok.text in ("group_left", "group_right"):
                    node.group = self.take().text
                    node.include = self.label_list() if self.tok.text == "(" else []
            node.rhs = self.expression(PRECEDENCE[op] + (0 if op == "^" else 1))
            lhs = node
        return lhs

    def unary(self) -> Node:
        if self.tok.kind == "OP" and self.tok.text in ("+", "-"):
            self.i += 1
            return Wrapped(self.expression(PRECEDENCE["^"]))
        return self.postfix(self.primary())

    def label_list(self) -> list[str]:
        self.take("(")
        labels: list[str] = []
        while self.tok.text != ")":
            tok = self.tok
            if tok.kind not in ("IDENT", "STRING"):
                raise self.error("expected a label name")
            self.i += 1
            labels.append(tok.value if tok.kind == "STRING" else tok.text)
            if not self.accept(","):
                break
        self.take(")")
        return labels

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind in ("NUMBER", "DURATION"):
            self.i += 1
            return Literal("scalar", tok.text)
        if tok.kind == "STRING":
            self.i += 1
            return Literal("string", tok.value)
        if tok.text == "(":
            self.i += 1
            inner = self.expression(0)
            self.take(")")
            return Wrapped(inner)
        if tok.text == "{":
            return self.selector(None, tok.pos)
        if tok.kind != "IDENT":
            raise self.error("expected an expression")
        self.i += 1
        if tok.text in AGGREGATORS and self.tok.text in ("(", "by", "without"):
            return self.aggregate(tok.text)
        if self.tok.text == "(":
            return Call(tok.text, self.arguments())
        return self.selector(tok.text, tok.pos)

    def arguments(self) -> list[Node]:
        self.take("(")
        args: list[Node] = []
        while self.tok.text != ")":
            args.append(self.expression(0))
            if not self.accept(","):
                break
        self.take(")")
        return args

    def aggregate(self, op: str) -> Aggregate:
        grouping: list[str] | None = None
        without = False
        if self.tok.text in ("by", "without"):
            without = self.take().text == "without"
            grouping = self.label_list()
        args = self.arguments()
        if self.tok.text in ("by", "without"):
            if grouping is not None:
                raise self.error("a second by/without")
            without = self.take().text == "without"
            grouping = self.label_list()
        if len(args) not in (1, 2):
            raise self.error(f"{op} takes one or two arguments")
        return Aggregate(op, grouping, without, args[0] if len(args) == 2 else None, args[-1])

    def selector(self, name: str | None, start: int) -> Selector:
        matchers: list[Matcher] = []
        if self.accept("{"):
            while self.tok.text != "}":
                label = self.tok
                if label.kind == "STRING" and self.tokens[self.i + 1].text in (",", "}"):
                    self.i += 1  # {"metric.name"}: the name, quoted (Prometheus 3)
                    name = label.value
                else:
                    if label.kind not in ("IDENT", "STRING"):
                        raise self.error("expected a label matcher")
                    self.i += 1
                    op = self.take(kind="OP").text
                    if op not in ("=", "!=", "=~", "!~"):
                        raise self.error(f"bad matcher operator {op}")
                    value = self.take(kind="STRING").value
                    matchers.append(Matcher(label.value if label.kind == "STRING" else label.text, op, value))
                if not self.accept(","):
                    break
            self.take("}")
        if name is None:
            name = next((m.value for m in matchers if m.label == "__name__" and m.op == "="), None)
        return Selector(name, matchers, self.expr[start : self.tok.pos].strip())

    def postfix(self, node: Node) -> Node:
        while True:
            if self.accept("["):  # a range [5m], or a subquery [1h:5m]
                while self.tok.text != "]":
                    if self.tok.kind == "EOF":
                        raise self.error("unterminated range")
                    self.i += 1
                self.take("]")
                node = Wrapped(node)
            elif self.accept("offset"):
                self.accept("-")
                if self.tok.kind not in ("DURATION", "NUMBER"):
                    raise self.error("expected a duration after offset")
                self.i += 1
                node = Wrapped(node)
            elif self.accept("@"):
                if self.tok.text in ("start", "end"):
                    self.i += 1
                    self.take("(")
                    self.take(")")
                else:
                    self.accept("-")
                    self.take(kind="NUMBER")
                node = Wrapped(node)
            else:
                return node


def parse(expr: str) -> Node:
    return Parser(expr).parse()


def selectors(node: Node) -> Iterator[Selector]:
    """Every vector selector of an expression, left to right."""
    if isinstance(node, Selector):
        yield node
    elif isinstance(node, Call):
        for a in node.args:
            yield from selectors(a)
    elif isinstance(node, Aggregate):
        if node.param is not None:
            yield from selectors(node.param)
        yield from selectors(node.expr)
    elif isinstance(node, Binary):
        yield from selectors(node.lhs)
        yield from selectors(node.rhs)
    elif isinstance(node, Wrapped):
        yield from selectors(node.expr)


# ------------------------------------------------------------------------------------------------------------------
# The check: which labels each sub-expression can carry
# ------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Value:
    kind: str  # vector | scalar | string
    labels: frozenset[str] = frozenset()
    unknown: bool = False  # labels not known (a metric that does not exist): no label checks on it

    def has(self, label: str) -> bool:
        return self.unknown or label in self.labels


SCALAR = Value("scalar")
_TEMPLATE_LABEL = re.compile(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)")


@dataclass(frozen=True)
class Violation:
    file: str
    rule: str
    metric: str
    label: str
    problem: str

    def __str__(self) -> str:
        where = f"{self.metric}" + (f" label {self.label!r}" if self.label else "")
        return f"{self.file}: {self.rule}: {where}: {self.problem}"


@dataclass(frozen=True)
class Rule:
    file: str
    name: str  # the alert or the recorded name
    expr: str
    labels: Mapping[str, str]
    record: bool
    annotations: Mapping[str, str] = field(default_factory=dict)


class Checker:
    def __init__(self, sources: Iterable[Source], jobs: Iterable[str]) -> None:
        self.sources = list(sources)
        self.jobs = frozenset(jobs)
        self.series: dict[str, frozenset[str]] = {}
        self.bounds: dict[str, frozenset[str]] = {}
        for s in self.sources:
            for name, labels in s.series.items():
                self.series[name] = self.series.get(name, frozenset()) | labels | COMMON_TARGET_LABELS | s.target_labels
            for name, les in s.bounds.items():
                self.bounds[name] = self.bounds.get(name, frozenset()) | les
        self.records: dict[str, frozenset[str]] = {}
        self.violations: list[Violation] = []
        self._rule: Rule | None = None

    # -- rules ------------------------------------------------------------------------------------------------------

    def check(self, rules: list[Rule]) -> list[Violation]:
        """Every violation of every rule; recording rules' label sets are worked out first (to a fixed point, as
        they may use each other)."""
        self.records = {r.name: frozenset() for r in rules if r.record}
        for _ in range(10):
            before = dict(self.records)
            for r in rules:
                if r.record:
                    value = self._value_of(r, report=False)
                    self.records[r.name] = self.records[r.name] | value.labels | frozenset(r.labels)
            if self.records == before:
                break
        self.violations = []
        for r in rules:
            value = self._value_of(r, report=True)
            if r.record or value.unknown:
                continue
            carried = value.labels | set(r.labels)
            for text in r.annotations.values():
                for label in sorted(set(_TEMPLATE_LABEL.findall(text)) - carried):
                    self._report("(annotations)", label, f"$labels.{label}: the alert's series never carry it")
        return self.violations

    def labels_of(self, expr: str) -> Value:
        """What an expression's result can carry, reporting nothing (the recording rules as the last check saw
        them)."""
        saved, self._rule = self._rule, None
        try:
            return self.value(parse(expr))
        finally:
            self._rule = saved

    def _value_of(self, rule: Rule, report: bool) -> Value:
        self._rule = rule if report else None
        try:
            node = parse(rule.expr)
        except PromQLError as exc:
            self._report("(expression)", "", f"cannot parse: {exc}")
            return Value("vector", unknown=True)
        return self.value(node)

    def _report(self, metric: str, label: str, problem: str) -> None:
        if self._rule is not None:
            v = Violation(self._rule.file, self._rule.name, metric, label, problem)
            if v not in self.violations:
                self.violations.append(v)

    # -- expressions ------------------------------------------------------------------------------------------------

    def value(self, node: Node) -> Value:
        if isinstance(node, Literal):
            return Value(node.kind)
        if isinstance(node, Wrapped):
            return self.value(node.expr)
        if isinstance(node, Selector):
            return self.selector(node)
        if isinstance(node, Call):
            return self.call(node)
        if isinstance(node, Aggregate):
            return self.aggregate(node)
        return self.binary(node)

    def selector(self, sel: Selector) -> Value:
        if sel.name is None:
            self._report(sel.text, "", "a selector without a metric name")
            return Value("vector", unknown=True)
        if sel.name in self.records:
            value = Value("vector", self.records[sel.name])
        elif sel.name in self.series:
            value = Value("vector", self.series[sel.name])
        else:
            self._report(sel.name, "", "no such metric in any recorded exposition, nor a recording rule")
            value = Value("vector", COMMON_TARGET_LABELS, unknown=True)
        for m in sel.matchers:
            if m.label == "__name__":
                continue
            if not value.has(m.label):
                self._report(sel.name, m.label, f"used in {m.label}{m.op}{json.dumps(m.value)}, never on this series")
            if m.label == "le" and m.op in ("=", "=~") and sel.name in self.bounds:
                bounds = self.bounds[sel.name]
                if not any(re.fullmatch(m.value if m.op == "=~" else re.escape(m.value), b) for b in bounds):
                    self._report(
                        sel.name, "le", f"le{m.op}{json.dumps(m.value)} matches no bucket bound ({_le(bounds)})"
                    )
            if m.label == "job":
                for job in self._literal_values(m):
                    if job not in self.jobs:
                        self._report(sel.name, "job", f"job {job!r} is no scrape job ({', '.join(sorted(self.jobs))})")
        return value

    @staticmethod
    def _literal_values(m: Matcher) -> list[str]:
        """The values an equality matcher names, or the alternatives of a regex of literal names (a|b|c)."""
        if m.op in ("=", "!="):
            return [m.value]
        if re.fullmatch(r"[A-Za-z0-9_]+(\|[A-Za-z0-9_]+)*", m.value):
            return m.value.split("|")
        return []

    def _need(self, value: Value, label: str, where: str, what: str) -> None:
        if value.kind == "vector" and not value.has(label):
            self._report(where, label, what)

    def call(self, call: Call) -> Value:
        args = [self.value(a) for a in call.args]
        where = f"{call.func}()"
        if call.func not in FUNCTIONS:
            self._report(where, "", "no such PromQL function")
            return Value("vector", unknown=True)
        vectors = [a for a in args if a.kind == "vector"]
        if call.func in ("time", "pi", "scalar"):
            return SCALAR
        if call.func == "vector":
            return Value("vector")
        if call.func in ("label_replace", "label_join") and args and all(isinstance(a, Literal) for a in call.args[1:]):
            strings = [a.text for a in call.args[1:] if isinstance(a, Literal)]
            sources = [strings[2]] if call.func == "label_replace" and len(strings) >= 3 else strings[2:]
            for src in sources:
                if src:
                    self._need(args[0], src, where, "source label of label_replace/label_join, never on the series")
            return Value("vector", args[0].labels | {strings[0]}, args[0].unknown)
        if call.func in ("sort_by_label", "sort_by_label_desc") and args:
            for a in call.args[1:]:
                if isinstance(a, Literal):
                    self._need(args[0], a.text, where, "sort label never on the series")
            return args[0]
        if call.func == "histogram_quantile" and len(args) == 2:
            self._need(args[1], "le", where, "histogram_quantile over series without buckets (no le)")
            return Value("vector", args[1].labels - {"le"}, args[1].unknown)
        return vectors[0] if vectors else Value("vector")

    def aggregate(self, agg: Aggregate) -> Value:
        if agg.param is not None:
            self.value(agg.param)
        inner = self.value(agg.expr)
        where = f"{agg.op} {'without' if agg.without else 'by'} ({', '.join(agg.grouping or [])})"
        for label in agg.grouping or []:
            self._need(inner, label, where, "grouping label carried by no series of the aggregated expression")
        if agg.op in ("topk", "bottomk", "limitk", "limit_ratio"):
            return inner
        if agg.grouping is None:
            labels: frozenset[str] = frozenset()
        elif agg.without:
            labels = inner.labels - set(agg.grouping)
        else:
            labels = frozenset(agg.grouping)
        if agg.op == "count_values" and isinstance(agg.param, Literal):
            labels |= {agg.param.text}
        return Value("vector", labels, inner.unknown and agg.without)

    def binary(self, b: Binary) -> Value:
        lhs, rhs = self.value(b.lhs), self.value(b.rhs)
        if lhs.kind != "vector" or rhs.kind != "vector":
            return lhs if lhs.kind == "vector" else rhs if rhs.kind == "vector" else SCALAR
        where = f"{b.op} {b.matching or ''}({', '.join(b.labels)})".replace(" (", "(")
        for label in b.labels:
            if b.matching == "on":
                for side, value in (("left", lhs), ("right", rhs)):
                    self._need(value, label, where, f"matching label never on the {side}-hand side")
            elif not (lhs.has(label) or rhs.has(label)):
                self._report(where, label, "ignored label on neither side")
        if b.group is not None:
            one = rhs if b.group == "group_left" else lhs
            for label in b.include:
                self._need(one, label, f"{b.group}({', '.join(b.include)})", "label to copy never on the 'one' side")
        unknown = lhs.unknown or rhs.unknown
        if b.op in SET_OPERATORS:
            return Value("vector", lhs.labels | rhs.labels, unknown) if b.op == "or" else lhs
        if b.group == "group_left":
            return Value("vector", lhs.labels | set(b.include), unknown)
        if b.group == "group_right":
            return Value("vector", rhs.labels | set(b.include), unknown)
        if b.matching == "on":
            return Value("vector", frozenset(b.labels), unknown)
        if b.matching == "ignoring":
            return Value("vector", lhs.labels - set(b.labels), unknown)
        return Value("vector", lhs.labels, lhs.unknown)


# ------------------------------------------------------------------------------------------------------------------
# The rules
# ------------------------------------------------------------------------------------------------------------------


def rules_of(file: str, doc: Mapping[str, Any]) -> list[Rule]:
    out = []
    for group in doc.get("groups") or []:
        for r in group.get("rules") or []:
            name = str(r.get("alert") or r.get("record"))
            labels, annotations = dict(r.get("labels") or {}), dict(r.get("annotations") or {})
            out.append(Rule(file, name, str(r["expr"]), labels, "record" in r, annotations))
    return out


def rendered_rules() -> list[Rule]:
    rules: list[Rule] = []
    for file, doc in alert_rules(str(CATALOG), HOSTVARS, list(HOSTVARS), RUNBOOK_BASE).items():
        rules += rules_of(file, doc)
    for file, doc in slo_rules(SLOS, "mon-1", RUNBOOK_BASE).items():
        rules += rules_of(file, doc)
    rules += rules_of(DCGM_RULES.name, yaml.safe_load(DCGM_RULES.read_text()))
    return rules


def _le(bounds: Iterable[str]) -> str:
    return ", ".join(sorted(bounds, key=lambda b: float(b)))
