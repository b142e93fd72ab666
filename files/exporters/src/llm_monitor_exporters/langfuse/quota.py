"""Langfuse Cloud's API quotas per plan, and the call budget that keeps the exporter inside them.

Langfuse rate-limits per organisation, per resource, in fixed windows that start with the first call
(rate-limiter-flexible). A sliding window over the exporter's own calls never exceeds a fixed one, so
the budget below is safe whatever the window's phase. Self-hosted servers have no quota.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

# Langfuse web v4.16.0, web/src/features/public-api/server/RateLimitService.ts (getPlanBasedRateLimitConfig):
# resource -> (calls, window seconds). "core" carries the pro limits for v1 there ("TEMPORARY"), kept as is.
DAILY_LEGACY = "public-api-daily-metrics-legacy"
METRICS_V1 = "public-api-metrics"
METRICS_V2 = "public-api-v2-metrics"
RESOURCES = (DAILY_LEGACY, METRICS_V1, METRICS_V2)

PLAN_QUOTAS: dict[str, dict[str, tuple[int, float]]] = {
    "self_hosted": {},
    "hobby": {DAILY_LEGACY: (10, 86400.0), METRICS_V1: (100, 86400.0), METRICS_V2: (100, 86400.0)},
    "core": {DAILY_LEGACY: (200, 86400.0), METRICS_V1: (2000, 86400.0), METRICS_V2: (100, 3600.0)},
    "pro": {DAILY_LEGACY: (200, 86400.0), METRICS_V1: (2000, 86400.0), METRICS_V2: (500, 3600.0)},
}
PLAN_QUOTAS["team"] = PLAN_QUOTAS["pro"]
PLAN_QUOTAS["enterprise"] = PLAN_QUOTAS["pro"]
PLANS = ("auto", *PLAN_QUOTAS)

CLOUD_SUFFIX = ".langfuse.com"


def resolve_plan(plan: str, host: str) -> str:
    """``auto``: Langfuse Cloud hosts get the smallest plan (hobby), any other host is self-hosted."""
    if plan != "auto":
        return plan
    hostname = host.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0].lower()
    return "hobby" if hostname == "langfuse.com" or hostname.endswith(CLOUD_SUFFIX) else "self_hosted"


@dataclass
class CallBudget:
    """At most ``calls`` calls in any ``window`` seconds (monotonic clock)."""

    calls: int
    window: float
    _made: deque[float] = field(default_factory=deque)

    def _expire(self, now: float) -> None:
        while self._made and self._made[0] <= now - self.window:
            self._made.popleft()

    def remaining(self, now: float) -> int:
        self._expire(now)
        return max(0, self.calls - len(self._made))

    def ready_at(self, now: float, need: int) -> float:
        """When ``need`` calls fit (``now`` if they fit already)."""
        self._expire(now)
        if need <= 0 or self.calls - len(self._made) >= need:
            return now
        if need > self.calls:
            return float("inf")
        # the call that must leave the window for ``need`` to fit
        return self._made[len(self._made) - (self.calls - need) - 1] + self.window

    def take(self, now: float) -> None:
        self._made.append(now)


def budget_for(plan: str, resource: str, share: float) -> CallBudget | None:
    """The exporter's share of one plan quota (None: no quota)."""
    quota = PLAN_QUOTAS[plan].get(resource)
    if quota is None:
        return None
    calls, window = quota
    return CallBudget(max(1, int(calls * share)), window)


def interval_for(plan: str, need: dict[str, int], share: float, projects_in_org: int) -> float:
    """Shortest poll interval at which ``need`` calls per poll (per resource) of every project of one
    organisation fit in its share of the plan's quotas; 0 when the plan has no quota."""
    out = 0.0
    for resource, n in need.items():
        quota = PLAN_QUOTAS[plan].get(resource)
        if quota is None or n <= 0:
            continue
        calls, window = quota
        out = max(out, window * n * projects_in_org / max(1, int(calls * share)))
    return out
