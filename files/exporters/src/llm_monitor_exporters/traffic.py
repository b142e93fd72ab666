"""Traffic generator and load tester for Ollama and OpenAI-compatible endpoints.

``llm-monitor-traffic --target URL (--duration S | --count N) [--rate R | --concurrency N] ...`` (also
``llm-monitor-exporter traffic ...``). Sends prompts from a small built-in set (10 categories) to
``/api/generate``, ``/api/chat`` (Ollama) or ``/v1/chat/completions`` (any OpenAI-compatible server)
of the one target given, at a request rate (open loop) or a fixed concurrency (closed loop), with a
steady, burst or ramp profile, streaming or not. A progress line goes to stderr (updated in place at
most once a second); a summary (requests, errors by kind, latency and time-to-first-token p50/p90/p99,
tokens/s, throughput) is printed at the end, optionally also as JSON.

Every run is bounded: ``--duration`` or ``--count`` is required (the first reached ends the run), with
hard caps (1 h, 1,000,000 requests, 1,024 concurrent requests, 10,000 req/s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp

MAX_DURATION = 3600.0
MAX_COUNT = 1_000_000
MAX_CONCURRENCY = 1024
MAX_RATE = 10_000.0
BURST_CYCLE = 5.0  # burst profile: all of a cycle's requests go out in its first second
BURST_ON = 1.0

PROMPTS: dict[str, tuple[str, ...]] = {
    "coding": (
        "Write a Python function that checks whether a string is a palindrome.",
        "Explain the difference between a list and a tuple in Python, with an example.",
    ),
    "creative": (
        "Write a four-line poem about a lighthouse in winter.",
        "Invent a name and a one-sentence backstory for a friendly robot.",
    ),
    "analysis": (
        "List two advantages and two drawbacks of remote work for small teams.",
        "Why might a web service's latency rise while its CPU usage stays low?",
    ),
    "math": ("What is 17 multiplied by 23? Show the steps.", "Solve for x: 3x + 7 = 25."),
    "summarisation": (
        "Summarise in one sentence: The meeting covered the budget, the hiring plan for the next "
        "quarter and the move to a new office, which was postponed to spring.",
        "Give a two-sentence summary of how photosynthesis works.",
    ),
    "translation": (
        "Translate into French: 'The train leaves at seven in the morning.'",
        "Translate into German: 'Where is the nearest pharmacy?'",
    ),
    "trivia": ("What is the capital of Australia?", "Which planet in our solar system has the most moons?"),
    "reasoning": (
        "If all bloops are razzies and all razzies are lazzies, are all bloops lazzies? Explain.",
        "A bat and a ball cost 1.10 in total; the bat costs 1.00 more than the ball. What does the ball cost?",
    ),
    "extraction": (
        "Extract the date and the amount from: 'Invoice 42, due 2025-03-01, total 199.90 EUR'.",
        "List the people named in: 'Ana met Luis and Mei at the station.'",
    ),
    "classification": (
        "Is this review positive or negative? 'The battery died after two days.'",
        "Classify the language of: 'Dankjewel voor je hulp'.",
    ),
}
APIS = ("generate", "chat", "openai")
PROFILES = ("steady", "burst", "ramp")
ERROR_KINDS = ("connect", "timeout", "http_429", "http_4xx", "http_5xx", "truncated", "malformed")


@dataclass
class Result:
    category: str
    ok: bool
    kind: str = ""
    status: int = 0
    latency: float = 0.0
    ttft: float | None = None
    prompt_tokens: int = 0
    generated_tokens: int = 0


@dataclass
class Options:
    target: str
    api: str = "generate"
    model: str = "llama3.2"
    rate: float | None = None
    concurrency: int | None = None
    duration: float | None = None
    count: int | None = None
    profile: str = "steady"
    stream: bool = True
    timeout: float = 120.0
    max_in_flight: int = 256
    seed: int | None = None
    categories: tuple[str, ...] = tuple(PROMPTS)
    max_tokens: int | None = None
    #: sent as "Authorization: Bearer ..." (a LiteLLM or other gateway key); kept out of repr and summaries
    api_key: str | None = field(default=None, repr=False)


class UsageError(Exception):
    """Invalid or unbounded options."""


def validate(o: Options) -> None:
    if not o.target.startswith(("http://", "https://")):
        raise UsageError(f"--target must be an http(s) URL, got {o.target!r}")
    if o.duration is None and o.count is None:
        raise UsageError("refusing to run unbounded: give --duration SECONDS or --count N (or both)")
    if o.duration is not None and not 0 < o.duration <= MAX_DURATION:
        raise UsageError(f"--duration must be in (0, {MAX_DURATION:.0f}] seconds")
    if o.count is not None and not 0 < o.count <= MAX_COUNT:
        raise UsageError(f"--count must be in 1..{MAX_COUNT}")
    if o.rate is not None and o.concurrency is not None:
        raise UsageError("give either --rate or --concurrency, not both")
    if o.rate is not None and not 0 < o.rate <= MAX_RATE:
        raise UsageError(f"--rate must be in (0, {MAX_RATE:.0f}] requests/s")
    if o.concurrency is not None and not 0 < o.concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"--concurrency must be in 1..{MAX_CONCURRENCY}")
    if not 0 < o.max_in_flight <= MAX_CONCURRENCY:
        raise UsageError(f"--max-in-flight must be in 1..{MAX_CONCURRENCY}")
    if o.api not in APIS or o.profile not in PROFILES:
        raise UsageError("unknown --api or --profile")
    unknown = [c for c in o.categories if c not in PROMPTS]
    if unknown or not o.categories:
        raise UsageError(f"unknown categories {unknown} (available: {', '.join(PROMPTS)})")
    if o.timeout <= 0:
        raise UsageError("--timeout must be > 0")


# --- one request -----------------------------------------------------------------------------------
def build_request(o: Options, prompt: str) -> tuple[str, dict[str, Any]]:
    base = o.target.rstrip("/")
    if o.api == "generate":
        body: dict[str, Any] = {"model": o.model, "prompt": prompt}
        path = "/api/generate"
    elif o.api == "chat":
        body = {"model": o.model, "messages": [{"role": "user", "content": prompt}]}
        path = "/api/chat"
    else:
        body = {"model": o.model, "messages": [{"role": "user", "content": prompt}]}
        path = "/v1/chat/completions"
    if o.api == "openai":
        body["stream"] = o.stream
        if o.stream:
            body["stream_options"] = {"include_usage": True}
        if o.max_tokens:
            body["max_tokens"] = o.max_tokens
    else:
        if not o.stream:
            body["stream"] = False  # Ollama streams when "stream" is absent
        if o.max_tokens:
            body["options"] = {"num_predict": o.max_tokens}
    return base + path, body


def _status_kind(status: int) -> str:
    if status == 429:
        return "http_429"
    return "http_5xx" if status >= 500 else "http_4xx"


def _content(obj: dict[str, Any]) -> bool:
    if obj.get("response"):
        return True
    msg = obj.get("message")
    if isinstance(msg, dict) and msg.get("content"):
        return True
    choices = obj.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        delta = choices[0].get("delta")
        return bool(isinstance(delta, dict) and delta.get("content"))
    return False


def _usage(obj: dict[str, Any], r: Result) -> None:
    if "eval_count" in obj or "prompt_eval_count" in obj:
        r.generated_tokens = int(obj.get("eval_count") or 0)
        r.prompt_tokens = int(obj.get("prompt_eval_count") or 0)
    usage = obj.get("usage")
    if isinstance(usage, dict):
        r.generated_tokens = int(usage.get("completion_tokens") or 0)
        r.prompt_tokens = int(usage.get("prompt_tokens") or 0)


async def send_one(session: aiohttp.ClientSession, o: Options, category: str, prompt: str) -> Result:
    url, body = build_request(o, prompt)
    r = Result(category=category, ok=False)
    t0 = time.perf_counter()
    try:
        async with session.post(url, json=body) as resp:
            r.status = resp.status
            if resp.status >= 400:
                await resp.read()
                r.kind = _status_kind(resp.status)
                return r
            if o.stream:
                done = False
                content_chunks = 0
                async for raw in resp.content:
                    line = raw.strip()
                    if not line:
                        continue
                    if line.startswith(b"data:"):
                        line = line[5:].strip()
                        if line == b"[DONE]":
                            done = True
                            continue
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        r.kind = "malformed"
                        continue
                    if not isinstance(obj, dict):
                        r.kind = "malformed"
                        continue
                    if _content(obj):
                        content_chunks += 1
                        if r.ttft is None:
                            r.ttft = time.perf_counter() - t0
                    if obj.get("done") is True:
                        done = True
                    _usage(obj, r)
                if r.generated_tokens == 0:
                    r.generated_tokens = content_chunks
                if not done and not r.kind:
                    r.kind = "truncated"
            else:
                data = await resp.read()
                try:
                    obj = json.loads(data)
                except ValueError:
                    r.kind = "malformed"
                else:
                    if isinstance(obj, dict):
                        _usage(obj, r)
                    else:
                        r.kind = "malformed"
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
        r.kind = "truncated" if r.status else "connect"
    except (aiohttp.ClientConnectorError, aiohttp.ClientOSError):
        r.kind = "truncated" if r.status else "connect"
    except (asyncio.TimeoutError, aiohttp.SocketTimeoutError):
        r.kind = "timeout"
    except aiohttp.ClientError:
        r.kind = "connect"
    r.latency = time.perf_counter() - t0
    r.ok = not r.kind
    return r


# --- the run ---------------------------------------------------------------------------------------
@dataclass
class Run:
    o: Options
    results: list[Result] = field(default_factory=list)
    started: int = 0
    in_flight: int = 0
    t0: float = 0.0
    rng: random.Random = field(default_factory=random.Random)

    def pick(self) -> tuple[str, str]:
        category = self.o.categories[self.started % len(self.o.categories)]
        return category, self.rng.choice(PROMPTS[category])

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def may_start(self) -> bool:
        if self.o.count is not None and self.started >= self.o.count:
            return False
        return not (self.o.duration is not None and self.elapsed() >= self.o.duration)

    def ramp_time(self) -> float:
        if self.o.duration is not None:
            return self.o.duration
        if self.o.rate:
            return 2 * (self.o.count or 1) / self.o.rate
        return 10.0

    def rate_at(self, t: float) -> float:
        assert self.o.rate is not None  # noqa: S101
        if self.o.profile == "burst":
            return self.o.rate * BURST_CYCLE / BURST_ON if (t % BURST_CYCLE) < BURST_ON else 0.0
        if self.o.profile == "ramp":
            return self.o.rate * min(1.0, max(0.05, t / self.ramp_time()))
        return self.o.rate


async def _fire(run: Run, session: aiohttp.ClientSession, sem: asyncio.Semaphore) -> None:
    category, prompt = run.pick()
    run.started += 1
    run.in_flight += 1
    try:
        run.results.append(await send_one(session, run.o, category, prompt))
    finally:
        run.in_flight -= 1
        sem.release()


async def _rate_loop(run: Run, session: aiohttp.ClientSession, tasks: set[asyncio.Task[None]]) -> None:
    sem = asyncio.Semaphore(run.o.max_in_flight)
    next_at = 0.0
    while run.may_start():
        t = run.elapsed()
        r = run.rate_at(t)
        if r <= 0:  # burst profile: wait for the next window
            await asyncio.sleep(min(0.05, BURST_CYCLE - (t % BURST_CYCLE)))
            next_at = run.elapsed()
            continue
        if next_at > t:
            await asyncio.sleep(next_at - t)
            if not run.may_start():
                break
        await sem.acquire()
        task = asyncio.create_task(_fire(run, session, sem))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        next_at = max(next_at, run.elapsed() - 1.0) + 1.0 / r


async def _worker(run: Run, session: aiohttp.ClientSession, index: int, workers: int) -> None:
    if run.o.profile == "ramp":
        await asyncio.sleep(run.ramp_time() * index / workers)
    while run.may_start():
        if run.o.profile == "burst":
            t = run.elapsed() % BURST_CYCLE
            if t >= BURST_ON:
                await asyncio.sleep(BURST_CYCLE - t)
                continue
        category, prompt = run.pick()
        run.started += 1
        run.in_flight += 1
        try:
            run.results.append(await send_one(session, run.o, category, prompt))
        finally:
            run.in_flight -= 1


async def _progress(run: Run, out: TextIO) -> None:
    tty = out.isatty()
    last_line = 0.0
    while True:
        await asyncio.sleep(1.0)
        done = len(run.results)
        errors = sum(1 for r in run.results if not r.ok)
        t = run.elapsed()
        line = (
            f"[{t:6.1f}s] sent {run.started} done {done} in-flight {run.in_flight} errors {errors} "
            f"{done / t if t else 0:.1f} req/s"
        )
        if tty:
            out.write("\r" + line + "\x1b[K")
            out.flush()
        elif t - last_line >= 10:
            out.write(line + "\n")
            out.flush()
            last_line = t


async def execute(o: Options, progress: TextIO | None = None) -> dict[str, Any]:
    """Run the load described by ``o`` (validated first) and return the summary."""
    validate(o)
    run = Run(o=o, rng=random.Random(o.seed))
    limit = o.concurrency or o.max_in_flight
    connector = aiohttp.TCPConnector(limit=limit)
    timeout = aiohttp.ClientTimeout(total=o.timeout)
    tasks: set[asyncio.Task[None]] = set()
    headers = {"Authorization": f"Bearer {o.api_key}"} if o.api_key else None
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:
        run.t0 = time.perf_counter()
        prog = asyncio.create_task(_progress(run, progress)) if progress is not None else None
        # hard bound on the whole run, also with --count only: the sending window plus one request timeout
        deadline = (o.duration if o.duration is not None else MAX_DURATION) + o.timeout + 5
        try:
            if o.concurrency is not None:
                workers = (_worker(run, session, i, o.concurrency) for i in range(o.concurrency))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.gather(*workers), deadline)
            else:
                if o.rate is None:
                    o.rate = 1.0
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(_rate_loop(run, session, tasks), deadline)
                if tasks:
                    await asyncio.wait(tasks, timeout=max(0.1, deadline - run.elapsed()))
        finally:
            for task in list(tasks):
                task.cancel()
            if prog is not None:
                prog.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await prog
                if progress is not None and progress.isatty():
                    progress.write("\n")
        wall = run.elapsed()
    return summarise(o, run.results, wall)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, math.ceil(q / 100 * len(s)) - 1)
    return s[min(k, len(s) - 1)]


def _dist(values: Sequence[float]) -> dict[str, float | None]:
    return {
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "mean": (sum(values) / len(values)) if values else None,
        "max": max(values) if values else None,
    }


def summarise(o: Options, results: Sequence[Result], wall: float) -> dict[str, Any]:
    ok = [r for r in results if r.ok]
    errors = dict.fromkeys(ERROR_KINDS, 0)
    statuses: dict[str, int] = {}
    for r in results:
        if r.kind:
            errors[r.kind] = errors.get(r.kind, 0) + 1
        if r.status:
            statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
    generated = sum(r.generated_tokens for r in results)
    per_request_tps = [
        r.generated_tokens / (r.latency - (r.ttft or 0.0))
        for r in ok
        if r.generated_tokens and r.latency - (r.ttft or 0.0) > 0
    ]
    by_category: dict[str, int] = {}
    for r in results:
        by_category[r.category] = by_category.get(r.category, 0) + 1
    return {
        "target": o.target,
        "api": o.api,
        "model": o.model,
        "stream": o.stream,
        "profile": o.profile,
        "mode": "concurrency" if o.concurrency is not None else "rate",
        "rate": o.rate,
        "concurrency": o.concurrency,
        "requests": len(results),
        "ok": len(ok),
        "errors": errors,
        "statuses": statuses,
        "duration_seconds": wall,
        "throughput_rps": len(results) / wall if wall > 0 else 0.0,
        "latency_seconds": _dist([r.latency for r in ok]),
        "ttft_seconds": _dist([r.ttft for r in ok if r.ttft is not None]),
        "tokens": {"prompt": sum(r.prompt_tokens for r in results), "generated": generated},
        "tokens_per_second": generated / wall if wall > 0 else 0.0,
        "per_request_tokens_per_second": _dist(per_request_tps),
        "by_category": by_category,
    }


def format_summary(s: dict[str, Any]) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v * 1000:.1f} ms"

    lat, ttft = s["latency_seconds"], s["ttft_seconds"]
    errs = ", ".join(f"{k} {v}" for k, v in s["errors"].items() if v) or "none"
    return "\n".join(
        [
            f"target {s['target']} api {s['api']} model {s['model']} stream {s['stream']} profile {s['profile']}",
            f"requests {s['requests']} ok {s['ok']} errors: {errs}",
            f"latency p50 {ms(lat['p50'])} p90 {ms(lat['p90'])} p99 {ms(lat['p99'])}",
            f"ttft    p50 {ms(ttft['p50'])} p90 {ms(ttft['p90'])} p99 {ms(ttft['p99'])}",
            f"tokens generated {s['tokens']['generated']} prompt {s['tokens']['prompt']}, "
            f"{s['tokens_per_second']:.1f} tokens/s",
            f"throughput {s['throughput_rps']:.2f} req/s over {s['duration_seconds']:.2f} s",
        ]
    )


# --- command line ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llm-monitor-traffic",
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--target", required=True, help="base URL of the one server to load, e.g. http://127.0.0.1:11435")
    p.add_argument(
        "--api",
        choices=APIS,
        default="generate",
        help="generate (/api/generate), chat (/api/chat) or openai (/v1/chat/completions)",
    )
    p.add_argument("--model", default="llama3.2")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--rate", type=float, help="requests per second (open loop; default 1 without --concurrency)")
    mode.add_argument("--concurrency", type=int, help="concurrent requests (closed loop)")
    p.add_argument("--duration", type=float, help=f"seconds to send for (<= {MAX_DURATION:.0f})")
    p.add_argument("--count", type=int, help=f"requests to send (<= {MAX_COUNT})")
    p.add_argument(
        "--profile",
        choices=PROFILES,
        default="steady",
        help="steady; burst (a 5 s cycle's requests all in its first second); ramp (0 to full over the run)",
    )
    p.add_argument("--stream", action=argparse.BooleanOptionalAction, default=True, help="streamed answers")
    p.add_argument("--timeout", type=float, default=120.0, help="per-request timeout, seconds")
    p.add_argument(
        "--api-key-file",
        metavar="FILE",
        help="file holding an API key, sent as 'Authorization: Bearer' (e.g. a LiteLLM key; never on the command line)",
    )
    p.add_argument("--max-in-flight", type=int, default=256, help="rate mode: most requests outstanding")
    p.add_argument("--max-tokens", type=int, help="ask for at most this many generated tokens")
    p.add_argument("--categories", help=f"comma-separated subset of: {', '.join(PROMPTS)}")
    p.add_argument("--seed", type=int, help="seed of the prompt choice")
    p.add_argument("--json", metavar="FILE", help="also write the summary as JSON to FILE ('-' = stdout)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        ns = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else 2
    api_key = None
    if ns.api_key_file:
        try:
            api_key = Path(ns.api_key_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            print(f"llm-monitor-traffic: error: --api-key-file: {exc.strerror or exc}", file=sys.stderr)
            return 2
        if not api_key:
            print(f"llm-monitor-traffic: error: --api-key-file {ns.api_key_file} is empty", file=sys.stderr)
            return 2
    o = Options(
        target=ns.target,
        api=ns.api,
        model=ns.model,
        rate=ns.rate,
        concurrency=ns.concurrency,
        duration=ns.duration,
        count=ns.count,
        profile=ns.profile,
        stream=ns.stream,
        timeout=ns.timeout,
        max_in_flight=ns.max_in_flight,
        seed=ns.seed,
        max_tokens=ns.max_tokens,
        api_key=api_key,
        categories=tuple(c.strip() for c in ns.categories.split(",")) if ns.categories else tuple(PROMPTS),
    )
    try:
        validate(o)
    except UsageError as exc:
        print(f"llm-monitor-traffic: error: {exc}", file=sys.stderr)
        return 2
    try:
        summary = asyncio.run(execute(o, None if ns.quiet else sys.stderr))
    except KeyboardInterrupt:
        print("llm-monitor-traffic: interrupted", file=sys.stderr)
        return 130
    if ns.json == "-":
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary))
        if ns.json:
            with open(ns.json, "w", encoding="utf-8") as fh:
                json.dump(summary, fh, indent=2)
                fh.write("\n")
    return 0 if summary["requests"] else 1
